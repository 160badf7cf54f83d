//! The API and admission: resource creates over HTTP with 1 and 32 concurrent clients against
//! the same creates straight into Graph Storage (no HTTP, no admission), and the cost of each
//! admission stage against parsing the same manifest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::{Admission, Identity, Operation};
use anyhow::Result;
use domain::{Digest, Resource};
use serde_json::{Value, json};
use storage::{Backend, Store};

use crate::Args;
use crate::report::{Report, Row, median};

const TOKEN: &str = "bench-token-bench-token-bench-token";

fn node(i: usize) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Node", "metadata": {"name": format!("n{i}"), "namespace": "bench", "labels": {"team": "bench"}},
           "spec": {"graphRef": {"name": "g"}, "description": "a node", "authority": {"capabilities": ["fs.read"], "budgets": {"tool_calls": 5}}}})
}

fn graph() -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "metadata": {"name": "g", "namespace": "bench"},
           "spec": {"description": "bench", "authority": {"capabilities": ["fs.read"], "budgets": {"tool_calls": 100}}}})
}

/// Serve the API for `store` on a free loopback port; returns its address.
async fn serve(store: Store) -> Result<String> {
    let tokens = api::Tokens::new(vec![api::TokenRecord {
        hash: Digest::of(TOKEN.as_bytes()),
        kind: "user".into(),
        name: "bench".into(),
        groups: vec!["admins".into()],
        revoked: false,
        expires_at: None,
    }]);
    let state = api::AppState {
        admission: Arc::new(Admission::new(store)),
        tokens,
        watch_window: api::DEFAULT_WATCH_WINDOW,
        bookmark_interval: Duration::from_secs(10),
        metrics: Default::default(),
        write_limit: api::RateLimit::unlimited(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    Ok(format!("http://{addr}"))
}

/// `n` creates over HTTP from `clients` concurrent clients.
async fn http_creates(base: &str, n: usize, clients: usize) -> Result<Duration> {
    let http = reqwest::Client::new();
    let url = format!("{base}/apis/r5e.ai/v1alpha1/namespaces/bench/nodes");
    http.post(format!("{base}/apis/r5e.ai/v1alpha1/namespaces/bench/graphs"))
        .bearer_auth(TOKEN)
        .json(&graph())
        .send()
        .await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                let res = http.post(&url).bearer_auth(TOKEN).json(&node(i)).send().await?;
                anyhow::ensure!(res.status() == 201, "create failed: {}", res.text().await?);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// The same `n` creates straight into Graph Storage from `clients` concurrent tasks.
async fn direct_creates(store: &Store, n: usize, clients: usize) -> Result<Duration> {
    store.graph.create(serde_json::from_value(graph())?, "bench").await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                let r: Resource = serde_json::from_value(node(i))?;
                store.graph.create(r, "bench").await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// Creates/s over HTTP beside direct creates, on the backend `open` makes fresh each run.
pub async fn creates<F, Fut>(args: &Args, label: &str, open: F, report: &mut Report) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<dyn Backend>>>,
{
    eprintln!("API creates ({label})");
    let n = (args.events / 4).max(200);
    for clients in [1, 32] {
        let ours = median(args.runs, |_| {
            let open = &open;
            async move { http_creates(&serve(Store::open(open().await?).await?).await?, n, clients).await }
        })
        .await?;
        let direct = median(args.runs, |_| {
            let open = &open;
            async move { direct_creates(&Store::open(open().await?).await?, n, clients).await }
        })
        .await?;
        report.add(Row {
            what: format!(
                "{label} creates through the HTTP API, {clients} client{}",
                if clients > 1 { "s" } else { "" }
            ),
            unit: "creates/s",
            ours: n as f64 / ours.as_secs_f64(),
            baseline_name: "the same creates straight into Graph Storage (no HTTP, no admission)".into(),
            baseline: n as f64 / direct.as_secs_f64(),
        });
    }
    Ok(())
}

/// Time `f` over `rounds` calls; the median of `runs` such timings, per call.
async fn per_call<F, Fut>(runs: usize, rounds: usize, mut f: F) -> Result<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for i in 0..rounds {
            f(i).await?;
        }
        times.push(start.elapsed() / rounds as u32);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The cost of each admission stage for one Task create, against parsing the same manifest.
pub async fn stages(
    args: &Args,
    open: impl std::future::Future<Output = Result<Arc<dyn Backend>>>,
    report: &mut Report,
) -> Result<()> {
    eprintln!("admission stages (SQLite)");
    let store = Store::open(open.await?).await?;
    let admission = Admission::new(store.clone());
    let admin = Identity::user("bench", &["admins"]);
    admission.create(&admin, graph()).await?;
    admission.create(&admin, node(0)).await?;
    admission
        .create(&admin, json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Policy", "metadata": {"name": "p", "namespace": "bench"},
            "spec": {"cedar": "forbid(principal, action, resource is r5e::Guideline) when { resource.labels has \"secret\" };"}}))
        .await?;
    let task = json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Task", "metadata": {"name": "t", "namespace": "bench"},
        "spec": {"nodeRef": {"name": "n0"}, "graphRef": {"name": "g"}, "step": "write", "authority": {"capabilities": ["fs.read"], "budgets": {"tool_calls": 1}}}});
    let bytes = serde_json::to_vec(&task)?;
    let rounds = 2000;
    let parse = per_call(args.runs, rounds, |_| {
        let bytes = &bytes;
        async move {
            let _: Value = serde_json::from_slice(bytes)?;
            Ok(())
        }
    })
    .await?;
    let info = domain::kinds::find("Task").expect("Task is built in");
    let schema = per_call(args.runs, rounds, |_| {
        let task = &task;
        async move {
            domain::schema::validate(info, task).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Ok(())
        }
    })
    .await?;
    let set = policy::PolicySet::from_sources(
        &[(
            "bench/p".to_string(),
            "forbid(principal, action, resource is r5e::Guideline) when { resource.labels has \"secret\" };"
                .to_string(),
        )]
        .into(),
    )?;
    let target = policy::Target {
        kind: "Task".into(),
        namespace: "bench".into(),
        name: "t".into(),
        labels: Default::default(),
        spec: task["spec"].clone(),
        graph: None,
    };
    let cedar = per_call(args.runs, rounds, |_| {
        let (set, target, admin) = (&set, &target, &admin);
        async move {
            anyhow::ensure!(set.evaluate(&admin.principal, policy::Action::Create, target).allowed);
            Ok(())
        }
    })
    .await?;
    let refs = per_call(args.runs, rounds / 4, |_| {
        let store = &store;
        async move {
            // What the refs stage reads for a Task: its Node and its Graph.
            store.graph.get(&domain::ObjectKey::new("Node", "bench", "n0")).await?;
            store.graph.get(&domain::ObjectKey::new("Graph", "bench", "g")).await?;
            Ok(())
        }
    })
    .await?;
    let whole = per_call(args.runs, rounds / 4, |_| {
        let (admission, admin, task) = (&admission, &admin, &task);
        async move {
            admission.review(admin, Operation::Create, task.clone()).await.outcome?;
            Ok(())
        }
    })
    .await?;
    let per_sec = |d: Duration| 1.0 / d.as_secs_f64();
    for (what, d) in [
        ("schema stage", schema),
        ("refs stage (two reads)", refs),
        ("policy stage (Cedar)", cedar),
        ("all four stages", whole),
    ] {
        report.add(Row {
            what: format!("admission {what}, one Task (median {:.1} µs)", d.as_secs_f64() * 1e6),
            unit: "per s",
            ours: per_sec(d),
            baseline_name: format!("parsing the same manifest ({:.1} µs)", parse.as_secs_f64() * 1e6),
            baseline: per_sec(parse),
        });
    }
    Ok(())
}
