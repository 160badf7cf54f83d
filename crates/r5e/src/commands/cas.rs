//! `r5e cas put|get|ls`: the content-addressed blob store of a data directory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use domain::Digest;

use crate::backends::open_cas;
use crate::output::table;

#[derive(Debug, Subcommand)]
pub enum CasCommand {
    /// Store files (or stdin with `-`) and print each digest.
    Put {
        #[command(flatten)]
        data: crate::DataDir,
        /// Files to store; `-` reads stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a blob's bytes (verified against its digest) to stdout or a file.
    Get {
        #[command(flatten)]
        data: crate::DataDir,
        /// The digest, `sha256:<64 hex>`.
        digest: Digest,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List stored blobs with their sizes.
    Ls {
        #[command(flatten)]
        data: crate::DataDir,
    },
}

pub async fn run(command: CasCommand) -> Result<ExitCode> {
    match command {
        CasCommand::Put { data, files } => {
            crate::private::prepare_data_dir(&data.data_dir)?;
            let cas = open_cas(&data).await?;
            for file in files {
                let bytes = if file.as_os_str() == "-" {
                    let mut b = Vec::new();
                    std::io::stdin().read_to_end(&mut b)?;
                    b
                } else {
                    std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
                };
                let digest = cas.store(bytes).await?;
                println!("{digest}  {}", file.display());
            }
        }
        CasCommand::Get { data, digest, output } => {
            let bytes = open_cas(&data).await?.resolve(&digest).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => std::io::stdout().lock().write_all(&bytes)?,
            }
        }
        CasCommand::Ls { data } => {
            let files = storage::FsCas::open(&data.data_dir)?;
            let cas = open_cas(&data).await?;
            let mut t = table(&["digest", "size"]);
            for d in cas.list_digests().await? {
                let size = match data.cas {
                    crate::CasChoice::Files => std::fs::metadata(files.blob_path(&d)).map(|m| m.len()).ok(),
                    crate::CasChoice::Database => cas.resolve(&d).await.map(|b| b.len() as u64).ok(),
                };
                t.add_row(vec![d.to_string(), size.map_or_else(|| "?".into(), |s| s.to_string())]);
            }
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
