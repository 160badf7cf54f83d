//! `r5e audit export|verify|log`: the audit chain, for operators and outside auditors.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use domain::Digest;
use domain::chain::{ChainError, ChainHead, Verifier};
use storage::{EventQuery, Store};

use crate::backends::open_existing_store;
use crate::output::table;

/// Events read per page when exporting.
const PAGE: usize = 4096;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the whole chain as JSON Lines: one event per line, its canonical bytes exactly.
    Export {
        #[command(flatten)]
        data: crate::DataDir,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify the chain of a data directory or of an export file; exit 0 and print the count and
    /// head hash, or exit 1 naming the first bad seq.
    Verify {
        #[command(flatten)]
        data: crate::DataDir,
        /// Verify this export (`-` for stdin) instead of a data directory.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also require that the chain ends at this head hash (recorded earlier, elsewhere);
        /// catches a cut-off tail.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<Digest>,
    },
    /// Show events as a table (or JSON Lines with `-o json`).
    Log {
        #[command(flatten)]
        data: crate::DataDir,
        /// First seq to show.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Only events of this type (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only events about this subject, e.g. `Graph/default/release-notes`.
        #[arg(long)]
        subject: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// `table` or `json`.
        #[arg(long, short, default_value = "table")]
        output: String,
    },
}

pub async fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Export { data, output } => {
            let store = open_existing_store(&data).await?;
            let count = match output {
                Some(path) => {
                    let file =
                        std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let n = export(&store, &mut w).await?;
                    w.flush()?;
                    w.get_ref().sync_all()?;
                    n
                }
                None => export(&store, &mut std::io::stdout().lock()).await?,
            };
            eprintln!("exported {count} events");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { data, file, expect_head } => {
            let verified = match file {
                Some(path) => verify_file(&path)?,
                None => {
                    let store = open_existing_store(&data).await?;
                    match store.events.verify_chain().await {
                        Ok(head) => Ok(head),
                        Err(storage::Error::ChainBroken(e)) => Err(e),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let result = verified
                .map_err(|e| e.to_string())
                .and_then(|head| head.expect(expect_head.as_ref()).map_err(|e| e.to_string()));
            match result {
                Ok(head) => {
                    println!("verified {} events, head {}", head.seq, head.hash);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Log { data, from, types, subject, limit, output } => {
            let store = open_existing_store(&data).await?;
            let query = EventQuery { from_seq: Some(from), types, subject, limit: Some(limit), ..Default::default() };
            let events = store.events.query_raw(&query).await?;
            if output == "json" {
                let mut out = std::io::stdout().lock();
                for e in events {
                    out.write_all(&e.bytes)?;
                    out.write_all(b"\n")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["seq", "time", "type", "actor", "subject"]);
            for stored in events {
                let e = stored.event()?;
                t.add_row(vec![e.seq.to_string(), e.time, e.type_, e.actor, e.subject]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn export(store: &Store, out: &mut impl Write) -> Result<u64> {
    let mut next = 1;
    loop {
        let page = store
            .events
            .query_raw(&EventQuery { from_seq: Some(next), limit: Some(PAGE), ..Default::default() })
            .await?;
        let Some(last) = page.last() else { return Ok(next - 1) };
        next = last.seq + 1;
        for e in &page {
            out.write_all(&e.bytes)?;
            out.write_all(b"\n")?;
        }
    }
}

/// Verify an export: one canonical event per line, each terminated by `\n`.
fn verify_file(path: &Path) -> Result<Result<ChainHead, ChainError>> {
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut verifier = Verifier::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", path.display()))? == 0 {
            return Ok(Ok(verifier.head()));
        }
        if line.pop() != Some(b'\n') {
            let seq = verifier.head().seq + 1;
            return Ok(Err(ChainError {
                seq,
                reason: "line is not terminated by a newline (the file was cut short?)".into(),
            }));
        }
        if let Err(e) = verifier.check(&line) {
            return Ok(Err(e));
        }
    }
}
