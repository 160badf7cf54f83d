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
use crate::backends::open_store;
use crate::commands::token;

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

pub async fn run(data: &DataDir, listen: &str, watch_window: u64) -> Result<ExitCode> {
    std::fs::create_dir_all(&data.data_dir).with_context(|| format!("cannot create {}", data.data_dir.display()))?;
    let store = open_store(data).await?;
    let admin_token = token::bootstrap_admin(&data.data_dir)?;
    let tokens = Tokens::from_file(&token::file(&data.data_dir)).context("cannot read the token file")?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let server = format!("http://{addr}");
    write_kubeconfig(&data.data_dir, &server, &admin_token)?;
    let state = AppState {
        admission: Arc::new(Admission::new(store)),
        tokens,
        watch_window,
        bookmark_interval: BOOKMARK_INTERVAL,
    };
    eprintln!("r5e serving on {server}");
    eprintln!("  admin token: {}", data.data_dir.join("admin.token").display());
    eprintln!("  kubeconfig:  {}", data.data_dir.join("kubeconfig").display());
    axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown()).await.context("the server failed")?;
    eprintln!("r5e stopped");
    Ok(ExitCode::SUCCESS)
}

/// Until SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A kubeconfig for `server` with the administrator's token.
pub fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: r5e\n  cluster:\n    server: {server}\ncontexts:\n- name: r5e\n  context:\n    cluster: r5e\n    user: r5e-admin\n    namespace: default\ncurrent-context: r5e\nusers:\n- name: r5e-admin\n  user:\n    token: {token}\n"
    )
}

fn write_kubeconfig(dir: &Path, server: &str, token: &str) -> Result<()> {
    token::write_private(&dir.join("kubeconfig"), kubeconfig(server, token).as_bytes())
        .with_context(|| format!("cannot write {}", dir.join("kubeconfig").display()))
}
