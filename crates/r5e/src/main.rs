//! `r5e`: the command line and the composition root. This is the only crate that names concrete
//! backends (see [`backends`]).

mod backends;
mod commands;
mod manifests;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// r5e: a governed control plane for AI-agent work.
#[derive(Debug, Parser)]
#[command(name = "r5e", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the stores live.
#[derive(Debug, Clone, clap::Args)]
struct DataDir {
    /// The data directory: the blob store, and the embedded SQLite database unless
    /// `--database-url` is given.
    #[arg(long, env = "R5E_DATA_DIR", default_value = ".r5e")]
    data_dir: PathBuf,
    /// Keep resources and events in Postgres (`postgres://user:password@host/db`) instead of the
    /// embedded database.
    #[arg(long, env = "R5E_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the manifests in a directory (or file) to the embedded control plane, verify the
    /// audit chain, and print a summary.
    Run {
        /// A directory of `.yaml`/`.yml`/`.json` manifests, or one manifest file.
        path: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
    /// The audit log: export, verify, read.
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// The content-addressed store: put, get, list blobs.
    Cas {
        #[command(subcommand)]
        command: commands::cas::CasCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("R5E_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { path, data } => commands::run::run(&path, &data).await,
            Command::Audit { command } => commands::audit::run(command).await,
            Command::Cas { command } => commands::cas::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
