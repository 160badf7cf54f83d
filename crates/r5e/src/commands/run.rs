//! `r5e run PATH`, the main job: open the control plane in-process, apply the manifests under
//! PATH through admission (every one validated first, so nothing is applied half-way, and in
//! reference order, so that what a manifest refers to exists before it), then run the work of
//! every Graph they declare to completion with the execution plane, showing progress on
//! stderr, and print a summary: the work, the sessions, the reviews and reflections, and the
//! verified audit chain. Exits non-zero if the work or the governance failed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::{Admission, Identity};
use anyhow::{Context as _, Result, bail};
use domain::kinds::work::{GraphPhase, GraphStatus};
use domain::{ObjectKey, Resource};
use futures::StreamExt;
use runtime::{Config, Runtime};

use crate::DataDir;
use crate::backends::{open_cas, open_checked_store};
use crate::manifests;
use crate::output::table;

use super::summary;

/// Who `r5e run` acts as: the operator of this data directory, an administrator (policies that
/// forbid things bind administrators too).
fn operator() -> Identity {
    Identity::user("local", &["admins"])
}

pub async fn run(path: &Path, data: &DataDir, timeout: Duration, lease: Duration) -> Result<ExitCode> {
    let manifests = manifests::in_reference_order(manifests::load(path, "default")?);
    crate::private::prepare_data_dir(&data.data_dir)?;
    let issuer = Arc::new(crate::backends::session_issuer(data).await?);
    let admission =
        Arc::new(Admission::new(open_checked_store(data).await?).with_credentials(Arc::new(issuer.verifier())));
    let graphs: Vec<ObjectKey> = manifests.iter().map(|m| m.resource.key()).filter(|k| k.kind == "Graph").collect();
    let start_seq = admission.store().events.head().await?.seq;
    let place = match &data.database_url {
        Some(_) => "Postgres".to_string(),
        None => data.data_dir.display().to_string(),
    };
    apply(&admission, manifests, &place).await?;
    if graphs.is_empty() {
        let head = admission.store().events.verify_chain().await?;
        println!("no Graph to run");
        println!("audit chain verified: {} events, head {}", head.seq, head.hash);
        return Ok(ExitCode::SUCCESS);
    }
    let base = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let base = std::fs::canonicalize(&base).with_context(|| format!("cannot resolve {}", base.display()))?;
    let (api, api_url, stop_api) = sessions_api(&admission, &issuer).await?;
    let (work_dir, sandbox, strays) =
        crate::sessions::prepare(&data.data_dir, data.work_dir.as_deref(), Some(api.port()))?;
    let access = runtime::context::ApiAccess { url: api_url, ca_pem: None };
    let credentials = runtime::context::SessionCredentials { issuer, api: Some(access) };
    let config = Config { lease_ttl: lease, sandbox, credentials: Some(credentials), ..Config::new(base, work_dir) };
    let ctx = runtime::Context::new(admission.clone(), open_cas(data).await?, config);
    runtime::session::record_strays(&ctx, &strays).await;
    eprintln!("running {} graph(s): {}", graphs.len(), names(&graphs));
    let rt = Runtime::start(ctx);
    let finished = follow(&admission, &graphs, start_seq, timeout).await;
    rt.stop().await;
    let _ = stop_api.send(());
    let outcome = summary::print(&admission, &graphs, start_seq).await?;
    match finished? {
        true if outcome.succeeded() => Ok(ExitCode::SUCCESS),
        true => Ok(ExitCode::FAILURE),
        false => bail!("the work did not finish within {} s (--timeout)", timeout.as_secs()),
    }
}

/// The API the sessions of this run may call with their tokens: on a free loopback port, plain
/// HTTP, accepting sessions' tokens only (no person's token is valid on it). Returns its address,
/// its URL and what stops it.
async fn sessions_api(
    admission: &Arc<Admission>,
    issuer: &tokens::Issuer,
) -> Result<(std::net::SocketAddr, String, tokio::sync::oneshot::Sender<()>)> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen for the sessions' API")?;
    let addr = tcp.local_addr()?;
    let state = api::AppState {
        admission: admission.clone(),
        tokens: api::Tokens::new(Vec::new()).with_sessions(issuer.verifier()),
        watch_window: api::DEFAULT_WATCH_WINDOW,
        bookmark_interval: Duration::from_secs(10),
        metrics: Default::default(),
        write_limit: api::RateLimit::per_second(api::DEFAULT_WRITES_PER_SECOND),
    };
    let limits = crate::listener::Limits {
        max_connections: 64,
        handshake_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(10),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::listener::serve(tcp, None, api::router(state), limits, async move {
        let _ = stopped.await;
    }));
    Ok((addr, format!("http://{addr}"), stop))
}

fn names(keys: &[ObjectKey]) -> String {
    keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>().join(", ")
}

/// Apply every manifest through admission, printing what happened to each.
async fn apply(admission: &Admission, manifests: Vec<manifests::Manifest>, place: &str) -> Result<()> {
    let who = operator();
    let mut t = table(&["kind", "name", "result", "resource version", "from"]);
    let mut refused = Vec::new();
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for m in manifests {
        let key = m.resource.key();
        let before = match admission.store().graph.get(&key).await {
            Ok(current) => Some(current.resource_version()),
            Err(storage::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut object = m.resource;
        object.metadata.resource_version = None;
        let outcome = match before {
            None => admission.create(&who, object.to_value()).await,
            Some(_) => admission.update(&who, object.to_value()).await,
        };
        let (result, version) = match (outcome, before) {
            (Ok(r), None) => {
                created += 1;
                ("created", r.resource_version())
            }
            (Ok(r), Some(v)) if r.resource_version() == v => {
                unchanged += 1;
                ("unchanged", v)
            }
            (Ok(r), Some(_)) => {
                updated += 1;
                ("updated", r.resource_version())
            }
            (Err(e), _) => {
                refused.push(format!("{}: {e}", m.origin));
                ("refused", None)
            }
        };
        let name = if key.namespace.is_empty() { key.name } else { format!("{}/{}", key.namespace, key.name) };
        t.add_row(vec![key.kind, name, result.into(), version.map(|v| v.to_string()).unwrap_or_default(), m.origin]);
    }
    println!("{t}\n");
    println!("{created} created, {updated} updated, {unchanged} unchanged, {} refused in {place}", refused.len());
    if !refused.is_empty() {
        bail!("admission refused {} manifest(s):\n  {}", refused.len(), refused.join("\n  "));
    }
    Ok(())
}

/// How long the log must stay quiet before Graphs that are Blocked count as finished (Blocked
/// waits on something outside the run, such as a missing Agent, but may also clear by itself
/// as the controllers catch up).
const QUIET: Duration = Duration::from_secs(2);

/// Show progress from the event log until every Graph is Succeeded or Failed, or Blocked with
/// nothing left happening (true), or `timeout` passes (false).
async fn follow(admission: &Admission, graphs: &[ObjectKey], after: u64, timeout: Duration) -> Result<bool> {
    let began = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut phases: BTreeMap<ObjectKey, String> = BTreeMap::new();
    let mut open: BTreeMap<ObjectKey, Option<GraphPhase>> = BTreeMap::new();
    for g in graphs {
        let phase = admission.store().graph.get(g).await.ok().and_then(|r| graph_phase(&r));
        // Graphs finished by an earlier run of the same manifests stay finished.
        if !matches!(phase, Some(GraphPhase::Succeeded | GraphPhase::Failed)) {
            open.insert(g.clone(), phase);
        }
    }
    let mut events = admission.store().events.stream(after);
    while !open.is_empty() {
        let all_blocked = open.values().all(|p| *p == Some(GraphPhase::Blocked));
        let wait_until = if all_blocked { deadline.min(tokio::time::Instant::now() + QUIET) } else { deadline };
        let event = match tokio::time::timeout_at(wait_until, events.next()).await {
            Err(_) if all_blocked => return Ok(true),
            Err(_) => return Ok(false),
            Ok(None) => bail!("the event stream ended"),
            Ok(Some(e)) => e?,
        };
        let Some(object) = event.data.get("object") else { continue };
        let Ok(r) = serde_json::from_value::<Resource>(object.clone()) else { continue };
        if !matches!(r.kind.as_str(), "Graph" | "Node" | "Task" | "AgentSession") {
            continue;
        }
        if r.kind == "Graph"
            && let Some(slot) = open.get_mut(&r.key())
        {
            *slot = graph_phase(&r);
            if matches!(*slot, Some(GraphPhase::Succeeded | GraphPhase::Failed)) {
                open.remove(&r.key());
            }
        }
        let phase = r.status.get("phase").and_then(|p| p.as_str()).unwrap_or_default().to_string();
        if phase.is_empty() || phases.get(&r.key()) == Some(&phase) {
            continue;
        }
        phases.insert(r.key(), phase.clone());
        eprintln!(
            "[{:>6.1}s] {:<12} {:<44} {:<10} {}",
            began.elapsed().as_secs_f64(),
            r.kind,
            r.metadata.name,
            phase,
            detail(&r)
        );
    }
    Ok(true)
}

fn graph_phase(graph: &Resource) -> Option<GraphPhase> {
    serde_json::from_value::<GraphStatus>(graph.status.clone()).ok().and_then(|s| s.phase)
}

/// A few words on what a progress line is about.
fn detail(r: &Resource) -> String {
    let whole = r.to_value();
    let s = |p: &str| whole.pointer(p).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    match r.kind.as_str() {
        "AgentSession" => {
            let mut d = format!("{} by {}", s("/spec/role").to_lowercase(), s("/spec/agentRef/name"));
            let failure = s("/status/failure");
            if !failure.is_empty() {
                d.push_str(&format!(": {failure}"));
            }
            d
        }
        "Task" | "Node" => s("/status/message"),
        "Graph" => {
            let n = |f: &str| r.status.pointer(&format!("/nodes/{f}")).and_then(|v| v.as_u64()).unwrap_or(0);
            format!("{}/{} nodes succeeded", n("succeeded"), n("total"))
        }
        _ => String::new(),
    }
}
