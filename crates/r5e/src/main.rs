//! `r5e`: the command line and the composition root. This is the only crate that names concrete
//! backends (see [`backends`]).

mod backends;
mod commands;
mod listener;
mod manifests;
mod output;
mod private;
mod sessions;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// `--database-url` is given. Made private to this user (0700) by commands that write.
    #[arg(long, env = "R5E_DATA_DIR", default_value = ".r5e")]
    data_dir: PathBuf,
    /// Keep resources and events in Postgres (`postgres://user:password@host/db`) instead of the
    /// embedded database.
    #[arg(long, env = "R5E_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where sessions' workspaces are made (one directory per session; never inside the data
    /// directory). Default: `$TMPDIR/r5e-work-<digest of the data directory's path>`.
    #[arg(long, env = "R5E_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Where artifacts' bytes are kept: `files` (the blob store in the data directory) or
    /// `database` (a table in the `--database-url` database, which every process on it reads;
    /// what replicas need). Choose once: blobs are not moved from one to the other.
    #[arg(long, env = "R5E_CAS", value_enum, default_value_t = CasChoice::Files)]
    cas: CasChoice,
}

/// Where the CAS keeps blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CasChoice {
    /// Files under `<data dir>/blobs`.
    Files,
    /// The Postgres database given by `--database-url`.
    Database,
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
        /// Give up (and exit non-zero) if the work has not finished after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// How long a session's lease lasts unless renewed; after a crash, another run adopts
        /// (and marks Degraded) the sessions whose leases have lapsed.
        #[arg(long, default_value_t = 30)]
        lease_seconds: u64,
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
    /// Create or update resources on the server from manifests (YAML or JSON).
    Apply {
        /// A manifest file or a directory of them.
        #[arg(short = 'f', long = "filename")]
        path: PathBuf,
        /// The namespace of manifests that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Show resources: a table by default, or json, yaml, name.
    Get {
        /// The kind (`tasks`, `task`, `tk`, `Task`, `tasks.r5e.ai`).
        kind: String,
        /// One resource's name.
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// A label selector (`team=docs,tier in (gold)`).
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// `table`, `wide`, `json`, `yaml` or `name`.
        #[arg(short, long, default_value = "table")]
        output: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Show one resource in full, with the recent events about it.
    Describe {
        kind: String,
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Delete a resource.
    Delete {
        kind: String,
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Print each change to resources of a kind as it happens.
    Watch {
        kind: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Say whether admission would allow manifests, and why, without writing anything.
    Explain {
        #[arg(short = 'f', long = "filename")]
        path: PathBuf,
        /// `create`, `update`, `update_status` or `delete`.
        #[arg(long, default_value = "create")]
        operation: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
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

/// When stdout is a pipe that closed early (`r5e get tasks | head`), stop quietly with the
/// conventional status 141 instead of reporting a panic.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    // Before anything is created: what r5e writes is its user's alone (see `private`).
    private::restrict_umask();
    // The harness launcher runs before any thread exists (it blocks signals process-wide).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(runtime::sandbox::SUBCOMMAND) {
        return ExitCode::from(sessions::sandbox_exec(&args[2..]));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("R5E_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { path, data, timeout, lease_seconds } => {
                let (timeout, lease) = (Duration::from_secs(timeout), Duration::from_secs(lease_seconds.max(1)));
                commands::run::run(&path, &data, timeout, lease).await
            }
            Command::Serve { data, listen } => commands::serve::run(&data, &listen).await,
            Command::Token { command } => commands::token::run(command).await,
            Command::Apply { path, namespace, remote } => commands::remote::apply(&remote, &path, &namespace).await,
            Command::Get { kind, name, namespace, all_namespaces, selector, output, remote } => {
                commands::remote::get(
                    &remote,
                    &kind,
                    name.as_deref(),
                    &namespace,
                    all_namespaces,
                    selector.as_deref(),
                    &output,
                )
                .await
            }
            Command::Describe { kind, name, namespace, remote } => {
                commands::remote::describe(&remote, &kind, &name, &namespace).await
            }
            Command::Delete { kind, name, namespace, remote } => {
                commands::remote::delete(&remote, &kind, &name, &namespace).await
            }
            Command::Watch { kind, namespace, all_namespaces, selector, remote } => {
                commands::remote::watch(&remote, &kind, &namespace, all_namespaces, selector.as_deref()).await
            }
            Command::Explain { path, operation, namespace, remote } => {
                commands::remote::explain(&remote, &path, &operation, &namespace).await
            }
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
