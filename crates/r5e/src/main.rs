//! `r5e`: the command line and the composition root. This is the only crate that names concrete
//! backends (see [`backends`]).

mod backends;
mod commands;
mod manifests;
mod output;
mod tls;

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
    /// Serve the API (Kubernetes-style; kubectl works against it).
    Serve {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        listen: commands::serve::Listen,
    },
    /// Bearer tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        command: commands::token::TokenCommand,
    },
    /// Print a kubeconfig for the server of this data directory (after `r5e serve` made its token).
    Kubeconfig {
        #[command(flatten)]
        data: DataDir,
        /// The server's address.
        #[arg(long, env = "R5E_SERVER", default_value = "https://127.0.0.1:7450")]
        server: String,
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
            Command::Serve { data, listen } => commands::serve::run(&data, &listen).await,
            Command::Token { command } => commands::token::run(command),
            Command::Kubeconfig { data, server } => {
                let token = std::fs::read_to_string(data.data_dir.join("admin.token")).map_err(|e| {
                    anyhow::anyhow!("no admin token in {} ({e}): start `r5e serve` once first", data.data_dir.display())
                })?;
                let ca = tls::files(&data.data_dir).ca;
                let ca = (server.starts_with("https://") && ca.exists()).then_some(ca.as_path());
                print!("{}", commands::serve::kubeconfig(&server, token.trim(), ca));
                Ok(ExitCode::SUCCESS)
            }
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
