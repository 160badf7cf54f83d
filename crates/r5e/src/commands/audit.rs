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
        #[command(flatten)]
        server: Server,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify the chain of a data directory or of an export file; exit 0 and print the count and
    /// head hash, or exit 1 naming the first bad seq. With `--state`, also check that the stored
    /// resources are exactly what the log wrote.
    Verify {
        #[command(flatten)]
        data: crate::DataDir,
        #[command(flatten)]
        server: Server,
        /// Verify this export (`-` for stdin) instead of a data directory.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also require that the chain ends at this head hash (recorded earlier, elsewhere);
        /// catches a cut-off tail.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<Digest>,
        /// Also rebuild the current resources from the log and compare them with the stored ones
        /// (a live store only); exit 1 naming every resource that differs, is missing, or was
        /// never written by an event.
        #[arg(long, conflicts_with_all = ["file", "server"])]
        state: bool,
    },
    /// Show events as a table (or JSON Lines with `-o json`).
    Log {
        #[command(flatten)]
        data: crate::DataDir,
        #[command(flatten)]
        server: Server,
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

/// Read the log from a running server instead of the store.
#[derive(Debug, Clone, clap::Args)]
pub struct Server {
    /// Read the events from this server (`https://host:port`) instead of the store; the chain is
    /// then verified here, trusting nothing the server says about it.
    #[arg(long, env = "R5E_SERVER")]
    server: Option<String>,
    /// The bearer token for --server (defaults to the data directory's administrator token).
    #[arg(long, env = "R5E_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Where events come from: the store, or a server's `/r5e/v1/events`.
enum Source {
    Store(Box<Store>),
    Server(client::Client),
}

impl Source {
    async fn open(data: &crate::DataDir, server: &Server) -> Result<Source> {
        match &server.server {
            Some(url) => {
                let remote = crate::commands::remote::Remote {
                    server: Some(url.clone()),
                    token: server.token.clone(),
                    data_dir: data.data_dir.clone(),
                };
                Ok(Source::Server(remote.connect()?))
            }
            None => Ok(Source::Store(Box::new(open_existing_store(data).await?))),
        }
    }

    /// Stored bytes of events from `from` on, at most `limit`.
    async fn page(&self, from: u64, limit: usize, types: &[String], subject: Option<&str>) -> Result<Vec<Vec<u8>>> {
        match self {
            Source::Store(store) => {
                let query = EventQuery {
                    from_seq: Some(from),
                    types: types.to_vec(),
                    subject: subject.map(str::to_string),
                    limit: Some(limit),
                    ..Default::default()
                };
                Ok(store.events.query_raw(&query).await?.into_iter().map(|e| e.bytes).collect())
            }
            Source::Server(client) => {
                let lines = client.events(from, limit, types, subject).await?;
                Ok(lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
            }
        }
    }

    /// Verify the whole chain: with the store's own `verify_chain`, or here on the served bytes.
    async fn verify(&self) -> Result<Result<ChainHead, ChainError>> {
        if let Source::Store(store) = self {
            return match store.events.verify_chain().await {
                Ok(head) => Ok(Ok(head)),
                Err(storage::Error::ChainBroken(e)) => Ok(Err(e)),
                Err(e) => Err(e.into()),
            };
        }
        let mut verifier = Verifier::new();
        loop {
            let page = self.page(verifier.head().seq + 1, PAGE, &[], None).await?;
            if page.is_empty() {
                return Ok(Ok(verifier.head()));
            }
            for bytes in page {
                if let Err(e) = verifier.check(&bytes) {
                    return Ok(Err(e));
                }
            }
        }
    }
}

pub async fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Export { data, server, output } => {
            let store = Source::open(&data, &server).await?;
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
        AuditCommand::Verify { data, state: true, expect_head, .. } => verify_state(&data, expect_head).await,
        AuditCommand::Verify { data, server, file, expect_head, state: false } => {
            let verified = match file {
                Some(path) => verify_file(&path)?,
                None => Source::open(&data, &server).await?.verify().await?,
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
        AuditCommand::Log { data, server, from, types, subject, limit, output } => {
            let source = Source::open(&data, &server).await?;
            let events = source.page(from, limit, &types, subject.as_deref()).await?;
            if output == "json" {
                let mut out = std::io::stdout().lock();
                for bytes in events {
                    out.write_all(&bytes)?;
                    out.write_all(b"\n")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["seq", "time", "type", "actor", "subject"]);
            for bytes in events {
                let e: domain::chain::Event =
                    serde_json::from_slice(&bytes).context("a stored event cannot be parsed")?;
                t.add_row(vec![e.seq.to_string(), e.time, e.type_, e.actor, e.subject]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Verify the chain of the store and the stored resources against it, in one pass over the log.
async fn verify_state(data: &crate::DataDir, expect_head: Option<Digest>) -> Result<ExitCode> {
    let store = open_existing_store(data).await?;
    let report = match store.verify_state().await {
        Ok(report) => report,
        Err(storage::Error::ChainBroken(e)) => {
            eprintln!("{e}");
            eprintln!("the state cannot be checked against a chain that does not verify");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e).context("cannot check the stored resources against the log"),
    };
    let head = match report.head.expect(expect_head.as_ref()) {
        Ok(head) => head,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    println!("verified {} events, head {}", head.seq, head.hash);
    if report.mismatches.is_empty() {
        println!("verified state: {} stored resources are exactly what the log wrote", report.resources);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &report.mismatches {
        eprintln!("{m}");
    }
    eprintln!(
        "state does not match the log: {} difference(s) ({} resources stored, {} written and not deleted by the log); \
         the stored rows were changed outside r5e: restore them from a backup or from the objects of the events named",
        report.mismatches.len(),
        report.resources,
        report.live
    );
    Ok(ExitCode::from(1))
}

async fn export(source: &Source, out: &mut impl Write) -> Result<u64> {
    let mut count = 0;
    loop {
        let page = source.page(count + 1, PAGE, &[], None).await?;
        if page.is_empty() {
            return Ok(count);
        }
        for bytes in &page {
            out.write_all(bytes)?;
            out.write_all(b"\n")?;
        }
        count += page.len() as u64;
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
