//! `r5e serve`: the API server over the chosen store. On first start it makes the bootstrap
//! administrator token (`DIR/admin.token`, mode 0600) and a kubeconfig (`DIR/kubeconfig`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use admission::Admission;
use anyhow::{Context, Result};
use api::{AppState, Tokens};

use crate::DataDir;
use crate::backends::{open_cas, open_checked_store};
use crate::commands::token;
use crate::{listener, tls};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// How `r5e serve` listens.
#[derive(Debug, Clone, clap::Args)]
pub struct Listen {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "R5E_LISTEN", default_value = "127.0.0.1:7450")]
    pub listen: String,
    /// Serve plain HTTP instead of TLS (kubectl will then not send its token).
    #[arg(long)]
    pub plain_http: bool,
    /// Another name or address for the server certificate (repeatable; made on first start).
    #[arg(long = "tls-san")]
    pub tls_names: Vec<String>,
    /// How many events back a watch may start; older ones get `410 Gone`.
    #[arg(long, default_value_t = api::DEFAULT_WATCH_WINDOW)]
    pub watch_window: u64,
    /// Writes per second each identity may make over the API (in bursts of twice that); 0 for no
    /// limit. Beyond it a client gets `429 Too Many Requests` with `Retry-After`.
    #[arg(long, default_value_t = api::DEFAULT_WRITES_PER_SECOND)]
    pub write_rate_limit: u32,
    /// Serve the API only, without running the execution plane (controllers and sessions).
    #[arg(long)]
    pub no_controllers: bool,
    /// Relative harness and tool programs are resolved against this directory.
    #[arg(long, default_value = ".")]
    pub base_dir: std::path::PathBuf,
    /// Most connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a client has to complete the TLS handshake before it is disconnected.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_seconds: u64,
    /// How long a session's lease lasts unless renewed: after this process dies, another
    /// process on the same store (a restart, or a replica) takes over its sessions this long
    /// after the last renewal.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_seconds: u64,
    /// Seconds a client has to send its first bytes and, on HTTP/1, each request's headers
    /// (an idle keep-alive connection is closed after it too).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_seconds: u64,
}

impl Listen {
    fn limits(&self) -> listener::Limits {
        listener::Limits {
            max_connections: self.max_connections as usize,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_seconds),
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
        }
    }
}

pub async fn run(data: &DataDir, listen: &Listen) -> Result<ExitCode> {
    crate::private::prepare_data_dir(&data.data_dir)?;
    let store = open_checked_store(data).await?;
    let issuer = Arc::new(crate::backends::session_issuer(data).await?);
    let admission = Arc::new(Admission::new(store).with_credentials(Arc::new(issuer.verifier())));
    let admin_token = token::bootstrap_admin(&data.data_dir, &admission).await?;
    let tokens = Tokens::from_store(admission.store().clone())
        .await
        .context("cannot read the tokens from the store")?
        .with_sessions(issuer.verifier());
    let tcp = tokio::net::TcpListener::bind(&listen.listen)
        .await
        .with_context(|| format!("cannot listen on {}", listen.listen))?;
    let addr = tcp.local_addr()?;
    let (server, acceptor, ca) = if listen.plain_http {
        (format!("http://{addr}"), None, None)
    } else {
        let files = tls::ensure(&data.data_dir, &listen.tls_names)?;
        (format!("https://{addr}"), Some(tls::acceptor(&files)?), Some(files.ca))
    };
    write_kubeconfig(&data.data_dir, &kubeconfig(&server, &admin_token, ca.as_deref()))?;
    let runtime = match listen.no_controllers {
        true => None,
        false => {
            let base = std::fs::canonicalize(&listen.base_dir)
                .with_context(|| format!("cannot resolve --base-dir {}", listen.base_dir.display()))?;
            let (work, sandbox, strays) =
                crate::sessions::prepare(&data.data_dir, data.work_dir.as_deref(), Some(addr.port()))?;
            let ca_pem = match &ca {
                Some(path) => Some(std::fs::read_to_string(path).context("cannot read the CA certificate")?),
                None => None,
            };
            let api = runtime::context::ApiAccess { url: server.clone(), ca_pem };
            let credentials = runtime::context::SessionCredentials { issuer: issuer.clone(), api: Some(api) };
            let config = runtime::Config {
                sandbox,
                credentials: Some(credentials),
                lease_ttl: Duration::from_secs(listen.lease_seconds),
                ..runtime::Config::new(base, work)
            };
            let ctx = runtime::Context::new(admission.clone(), open_cas(data).await?, config);
            runtime::session::record_strays(&ctx, &strays).await;
            Some(runtime::Runtime::start(ctx))
        }
    };
    let state = AppState {
        admission,
        tokens,
        watch_window: listen.watch_window,
        bookmark_interval: BOOKMARK_INTERVAL,
        metrics: Default::default(),
        write_limit: api::RateLimit::per_second(listen.write_rate_limit),
    };
    let app = api::router(state);
    announce(&server, &data.data_dir);
    listener::serve(tcp, acceptor, app, listen.limits(), shutdown()).await;
    if let Some(rt) = runtime {
        rt.stop().await;
    }
    eprintln!("r5e stopped");
    Ok(ExitCode::SUCCESS)
}

fn announce(server: &str, dir: &Path) {
    eprintln!("r5e serving on {server}");
    eprintln!("  admin token: {}", dir.join("admin.token").display());
    eprintln!("  kubeconfig:  {}", dir.join("kubeconfig").display());
}

/// Until SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A kubeconfig for `server` with the administrator's token, trusting `ca` if given.
pub fn kubeconfig(server: &str, token: &str, ca: Option<&Path>) -> String {
    let ca = match ca {
        Some(path) => format!(
            "    certificate-authority: {}\n",
            std::path::absolute(path).unwrap_or(path.to_path_buf()).display()
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: r5e\n  cluster:\n    server: {server}\n{ca}contexts:\n- name: r5e\n  context:\n    cluster: r5e\n    user: r5e-admin\n    namespace: default\ncurrent-context: r5e\nusers:\n- name: r5e-admin\n  user:\n    token: {token}\n"
    )
}

fn write_kubeconfig(dir: &Path, text: &str) -> Result<()> {
    token::write_private(&dir.join("kubeconfig"), text.as_bytes())
        .with_context(|| format!("cannot write {}", dir.join("kubeconfig").display()))
}
