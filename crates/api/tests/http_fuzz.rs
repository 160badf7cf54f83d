//! Property tests over the HTTP layer, through the router without a socket: random JSON patches
//! (with copy chains), merge patches, label and field selectors, manifests of every kind, and
//! random bodies to every method of every path. Whatever comes in, the server answers below 500,
//! never panics, answers every error with a Kubernetes `Status`, and leaves an audit chain that
//! verifies.
//!
//! `R5E_FUZZ_CASES` sets the number of cases per property (default 48, well under a second
//! each), `R5E_FUZZ_SEED` the seed (a number, or `random`; by default every run is the same);
//! `R5E_FUZZ_KEEP_GOING=1` reports every kind of violation found instead of the first;
//! `R5E_FUZZ_TRACE=1` prints each request before sending it. `scripts/fuzz` runs them long.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{ADMIN, ALICE, Answer, Api, api, crontab_crd};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

const NS: &str = "/apis/r5e.ai/v1alpha1/namespaces/w";
const GRAPHS: &str = "/apis/r5e.ai/v1alpha1/namespaces/w/graphs";
const PLURALS: [&str; 14] = [
    "graphs",
    "nodes",
    "tasks",
    "agents",
    "harnesses",
    "tools",
    "agentsessions",
    "workflows",
    "artifacts",
    "capabilities",
    "guidelines",
    "policies",
    "ganruns",
    "webhooksubscriptions",
];

/// How many cases each property runs.
fn cases() -> u32 {
    std::env::var("R5E_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48)
}

/// The same cases every run unless `R5E_FUZZ_SEED` names a seed (a number, or `random`).
fn runner() -> TestRunner {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    match std::env::var("R5E_FUZZ_SEED").as_deref() {
        Err(_) => TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha)),
        Ok("random") => TestRunner::new(config),
        Ok(seed) => {
            let seed: u64 = seed.parse().expect("R5E_FUZZ_SEED is a number or `random`");
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
        }
    }
}

/// Caps this test process's address space a few GiB above what it uses now, so that an input
/// that makes the server allocate without bound fails this test (an allocation failure aborts
/// it) instead of exhausting the machine.
fn cap_memory() {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let used_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let cap = used_kib * 1024 + (4 << 30);
        if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, cap, cap) {
            eprintln!("could not cap memory: {e}");
        }
    }
}

/// A runtime and an API with objects to aim at: Graph `w/g` (with a label and a status) and
/// the `crontabs.stable.example.com` custom kind with CronTab `w/nightly`.
fn setup() -> (tokio::runtime::Runtime, Arc<Api>) {
    cap_memory();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let a = Arc::new(rt.block_on(api()));
    rt.block_on(async {
        let g = json!({"metadata": {"name": "g", "labels": {"team": "docs"}},
                       "spec": {"description": "d", "authority": {"capabilities": ["fs.read"]}}});
        let created = a.admin("POST", GRAPHS, Some(&g)).await;
        assert_eq!(created.status, StatusCode::CREATED);
        let mut with_status = created.json();
        with_status["status"] = json!({"phase": "Running"});
        assert_eq!(a.admin("PUT", &format!("{GRAPHS}/g/status"), Some(&with_status)).await.status, StatusCode::OK);
        let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        assert_eq!(a.admin("POST", crds, Some(&crontab_crd())).await.status, StatusCode::CREATED);
        let tab = json!({"metadata": {"name": "nightly"}, "spec": {"cronSpec": "0 3 * * *"}});
        let tabs = "/apis/stable.example.com/v1/namespaces/w/crontabs";
        assert_eq!(a.admin("POST", tabs, Some(&tab)).await.status, StatusCode::CREATED);
    });
    (rt, a)
}

/// A request body, shown short.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = String::from_utf8_lossy(&self.0[..self.0.len().min(3000)]).into_owned();
        if self.0.len() > 3000 { write!(f, "{} bytes: {shown:?}...", self.0.len()) } else { write!(f, "{shown:?}") }
    }
}

/// One request, as the properties see it.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    uri: String,
    token: Option<&'static str>,
    content_type: Option<String>,
    body: Option<Bytes>,
}

impl Call {
    fn admin(method: &str, uri: String, content_type: &str, body: Vec<u8>) -> Call {
        Call {
            method: method.into(),
            uri,
            token: Some(ADMIN),
            content_type: Some(content_type.into()),
            body: Some(Bytes(body)),
        }
    }

    fn describe(&self) -> String {
        let uri: String = self.uri.chars().take(3000).collect();
        format!(
            "{} {uri} (token {:?}, content-type {:?}) body {:?}",
            self.method,
            self.token.map(|t| &t[..5]),
            self.content_type,
            self.body
        )
    }
}

/// With `R5E_FUZZ_KEEP_GOING=1` a run records every kind of violation (one example each) and
/// reports them all at its end, instead of stopping at the first and shrinking it.
fn keep_going() -> bool {
    std::env::var("R5E_FUZZ_KEEP_GOING").as_deref() == Ok("1")
}

static FOUND: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// True if `a` and `b` are the same JSON, numbers compared as numbers: integers exactly, and
/// anything else as doubles (so `-0.0` is `0`, as canonical JSON writes it).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// What is wrong with `answer`, if anything: a server error, an error that is not a `Status`, or
/// an object that the audit log (canonical JSON, numbers as doubles) cannot record as it is.
fn violation(answer: &Answer) -> Option<&'static str> {
    if answer.status.is_server_error() {
        return Some("a server error");
    }
    let v = answer.json();
    if answer.status.is_success() && v.is_object() {
        let recorded = domain::canonical::to_vec(&v).ok().and_then(|c| serde_json::from_slice::<Value>(&c).ok());
        if !recorded.is_some_and(|r| same(&r, &v)) {
            return Some("an object the audit log cannot record as it was answered");
        }
    }
    let is_status = v["kind"] == "Status"
        && v["apiVersion"] == "v1"
        && v["status"] == "Failure"
        && v["code"].as_u64() == Some(u64::from(answer.status.as_u16()))
        && v["reason"].as_str().is_some_and(|r| !r.is_empty())
        && v["message"].as_str().is_some_and(|m| !m.is_empty());
    (answer.status.is_client_error() && !is_status).then_some("an error that is not a Status")
}

/// Sends `call` and checks what every answer must be.
fn check(rt: &tokio::runtime::Runtime, a: &Api, call: &Call) -> Result<Answer, TestCaseError> {
    if std::env::var("R5E_FUZZ_TRACE").as_deref() == Ok("1") {
        // The last line before a crash (an allocation failure aborts) names the request.
        eprintln!("fuzz: {}", call.describe());
    }
    let body = call.body.as_ref().map(|b| b.0.clone());
    let answer = rt.block_on(a.send(&call.method, &call.uri, call.token, call.content_type.as_deref(), body));
    if let Some(what) = violation(&answer) {
        let text = String::from_utf8_lossy(&answer.bytes[..answer.bytes.len().min(600)]).into_owned();
        let shown = format!("{what} for {}\nanswered {}: {text}", call.describe(), answer.status);
        if !keep_going() {
            return Err(TestCaseError::fail(shown));
        }
        // One example per kind of violation, status and (digits aside) answer.
        let key = format!(
            "{what} {} {}",
            answer.status,
            text.chars().filter(|c| !c.is_ascii_digit()).take(80).collect::<String>()
        );
        FOUND.lock().unwrap().entry(key).or_insert(shown);
    }
    Ok(answer)
}

/// After a run: the audit chain still verifies (and nothing was recorded under
/// `R5E_FUZZ_KEEP_GOING`).
fn chain_verifies(rt: &tokio::runtime::Runtime, a: &Api) {
    let head = rt.block_on(a.admission.store().events.verify_chain());
    let mut problems: Vec<String> = std::mem::take(&mut *FOUND.lock().unwrap()).into_values().collect();
    if let Err(e) = head {
        problems.push(format!("the audit chain no longer verifies: {e}"));
    }
    assert!(problems.is_empty(), "{} problems:\n\n{}", problems.len(), problems.join("\n\n"));
}

/// Runs `strategy` through `test`; on failure, panics with the smallest failing input.
fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{e}");
    }
}

// ---- values ----

/// Strings that tend to break things: escapes, unicode, control characters, long runs.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,12}",
        "\\PC{0,24}",
        "[\u{0}-\u{1f}\"\\\\/~]{0,8}",
        (1usize..5000).prop_map(|n| "x".repeat(n)),
    ]
}

/// Numbers at the edges: beyond 2^53, the extremes of i64 and u64, tiny and huge floats.
fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(9_007_199_254_740_993u64)),
        Just(json!(-9_007_199_254_740_993i64)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        Just(json!(1e300)),
        Just(json!(5e-324)),
        Just(json!(-0.0)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        edge_number(),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(prop_oneof!["[a-z]{1,6}", nasty_string()], inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON text a `Value` cannot hold: duplicate keys, integers past u64, numbers past f64,
/// unusual spellings, deep nesting; and some that is not JSON at all.
fn raw_json_text() -> impl Strategy<Value = Vec<u8>> {
    let number = prop::sample::select(vec![
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1E+2",
        "0.1e1",
        "-0",
        "1.0",
        "9007199254740993",
        "4294967296",
        "1e-400",
    ]);
    prop_oneof![
        // A manifest with a duplicated key somewhere.
        (prop::sample::select(vec!["metadata", "spec", "name", "kind", "apiVersion", "description"]), number.clone())
            .prop_map(|(key, n)| {
                format!(
                    r#"{{"metadata": {{"name": "dup", "name": "dup2", "labels": {{"a": "1", "a": "2"}}}},
                        "spec": {{"description": "x", "authority": {{"capabilities": ["fs.read"]}}, "maxParallelNodes": {n}}},
                        "{key}": {{"{key}": {n}}}, "{key}": {n}}}"#
                )
                .into_bytes()
            }),
        number.prop_map(|n| format!(
            r#"{{"metadata": {{"name": "n{}"}}, "spec": {{"description": "x", "authority": {{"capabilities": ["fs.read"]}}, "maxParallelNodes": {n}}}}}"#,
            n.len()
        )
        .into_bytes()),
        (1usize..200_000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(b"{\"metadata\": {\"name\": \"\xff\xfe\"}}".to_vec()),
    ]
}

// ---- requests ----

/// A JSON pointer into a Graph, existing or not, sometimes malformed.
fn pointer() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "",
        "/",
        "/metadata",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/uid",
        "/metadata/resourceVersion",
        "/metadata/generation",
        "/metadata/labels",
        "/metadata/labels/team",
        "/metadata/labels/new",
        "/metadata/labels/a~1b",
        "/metadata/finalizers",
        "/metadata/finalizers/-",
        "/metadata/ownerReferences",
        "/metadata/deletionTimestamp",
        "/spec",
        "/spec/description",
        "/spec/authority",
        "/spec/authority/capabilities",
        "/spec/authority/capabilities/0",
        "/spec/authority/capabilities/-",
        "/spec/authority/capabilities/18446744073709551616",
        "/spec/maxParallelNodes",
        "/spec/x",
        "/status",
        "/status/phase",
        "/apiVersion",
        "/kind",
        "/~2",
        "nope",
        "/spec/~",
    ]);
    prop_oneof![
        4 => known.prop_map(String::from),
        1 => prop::collection::vec(nasty_string(), 1..5).prop_map(|parts| format!("/{}", parts.join("/"))),
    ]
}

fn patch_op() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test", "frobnicate"]);
    prop_oneof![
        8 => (op, pointer(), pointer(), json_value()).prop_map(|(op, path, from, value)| {
            json!({"op": op, "path": path, "from": from, "value": value})
        }),
        // Operations missing fields or with fields of the wrong type.
        1 => json_value(),
        1 => (pointer(), json_value()).prop_map(|(path, value)| json!({"op": value, "path": path})),
    ]
}

/// A chain of copies of `/spec` into itself, each doubling it.
fn copy_chain(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/a{i}")})).collect())
}

/// The path a patch or a write aims at.
fn object_path() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        format!("{GRAPHS}/g"),
        format!("{GRAPHS}/g/status"),
        format!("{GRAPHS}/missing"),
        "/apis/stable.example.com/v1/namespaces/w/crontabs/nightly".to_string(),
        "/apis/stable.example.com/v1/namespaces/w/crontabs/nightly/status".to_string(),
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.stable.example.com".to_string(),
    ])
}

fn query_suffix() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "?dryRun=All", "?fieldValidation=Strict", "?dryRun=None", "?fieldManager=x"])
        .prop_map(String::from)
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn label_selector() -> impl Strategy<Value = String> {
    let key = prop_oneof!["[a-z]{1,8}", "[a-z]{1,5}\\.[a-z]{2,4}/[a-z]{1,8}", "[A-Za-z0-9_.-]{1,70}"];
    let value = "[A-Za-z0-9_.-]{0,70}";
    let requirement = prop_oneof![
        key.clone(),
        key.clone().prop_map(|k| format!("!{k}")),
        (key.clone(), prop::sample::select(vec!["=", "==", "!="]), value).prop_map(|(k, op, v)| format!("{k}{op}{v}")),
        (key, prop::sample::select(vec![" in ", " notin "]), prop::collection::vec(value, 0..4))
            .prop_map(|(k, op, vs)| format!("{k}{op}({})", vs.join(","))),
    ];
    // Long ones stay within what a URI may hold (64 KiB, once percent-encoded).
    prop_oneof![
        4 => prop::collection::vec(requirement.clone(), 1..6).prop_map(|r| r.join(",")),
        2 => "\\PC{0,64}",
        1 => "[(), !=a-z]{0,64}",
        1 => (requirement, 50usize..2000).prop_map(|(r, n)| {
            let long = vec![r; n].join(",");
            long.chars().take(12_000).collect()
        }),
        1 => (1usize..12_000).prop_map(|n| format!("a in ({})", "(".repeat(n))),
    ]
}

fn field_selector() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec!["metadata.name", "metadata.namespace", "spec.x", ""]),
            prop::sample::select(vec!["=", "==", "!=", "", "=="]),
            "\\PC{0,12}"
        )
            .prop_map(|(f, op, v)| format!("{f}{op}{v}")),
        "\\PC{0,64}",
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "application/json".to_string(),
        "application/json; charset=utf-8".to_string(),
        "application/merge-patch+json".to_string(),
        "application/json-patch+json".to_string(),
        "application/strategic-merge-patch+json".to_string(),
        "application/apply-patch+yaml".to_string(),
        "application/yaml".to_string(),
        "text/plain".to_string(),
        "APPLICATION/JSON;;q=\"x\"".to_string(),
        "".to_string(),
    ]))
}

/// Every path the server routes, and some it does not.
fn any_path() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "/apis",
        "/apis/r5e.ai",
        "/apis/r5e.ai/v1alpha1",
        "/apis/r5e.ai/v1alpha1/graphs",
        "/apis/r5e.ai/v1alpha1/graphs/g",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.stable.example.com",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/crontabs.stable.example.com/status",
        "/apis/apiextensions.k8s.io/v1/namespaces/w/customresourcedefinitions",
        "/apis/stable.example.com/v1/namespaces/w/crontabs",
        "/apis/stable.example.com/v1/namespaces/w/crontabs/nightly",
        "/apis/stable.example.com/v1/crontabs",
        "/apis/r5e.ai/v1alpha1/namespaces/w/graphs/g/logs",
        "/apis/",
        "/api",
        "/version",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi/v3",
        "/openapi/v3/apis/r5e.ai/v1alpha1",
        "/openapi/v3/apis/nope/v1",
        "/r5e/v1/explain",
        "/r5e/v1/events",
        "/r5e/v1/events?from=x",
        "/nope",
    ])
    .prop_map(String::from);
    let kind_path = (prop::sample::select(PLURALS.to_vec()), prop::sample::select(vec!["", "/x", "/x/status", "/g"]))
        .prop_map(|(plural, rest)| format!("{NS}/{plural}{rest}"));
    let garbage = prop::collection::vec(nasty_string(), 1..6)
        .prop_map(|parts| format!("/apis/{}", parts.iter().map(|p| encode(p)).collect::<Vec<_>>().join("/")));
    prop_oneof![3 => fixed, 3 => kind_path, 1 => garbage]
}

fn raw_query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z=&%0-9]{0,40}".prop_map(|q| format!("?{q}")),
        Just("?limit=-1".to_string()),
        Just("?limit=18446744073709551616".to_string()),
        Just("?continue=%ff%fe".to_string()),
        Just("?labelSelector=%zz".to_string()),
        Just("?timeoutSeconds=18446744073709551615&watch=false".to_string()),
        Just("?resourceVersion=-1&watch=true&timeoutSeconds=0".to_string()),
    ]
}

fn any_body() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        4 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => raw_json_text(),
        1 => Just(vec![b' '; (3 << 20) + 1]),
    ])
}

/// A manifest of a random kind, from nearly right to nonsense.
fn manifest() -> impl Strategy<Value = (String, Value)> {
    let kind = prop::sample::select(
        PLURALS
            .iter()
            .map(|p| format!("{NS}/{p}"))
            .chain(["/apis/stable.example.com/v1/namespaces/w/crontabs".to_string()])
            .collect::<Vec<_>>(),
    );
    let name = prop_oneof!["[a-z][a-z0-9-]{0,10}", nasty_string()];
    let labels = prop::collection::btree_map(
        prop_oneof!["[a-z]{1,8}", nasty_string()],
        prop_oneof!["[a-z]{0,8}", nasty_string()],
        0..4,
    );
    let body = (name, labels, json_value(), json_value(), prop::option::of(json_value())).prop_map(
        |(name, labels, spec, status, extra)| {
            let mut m = json!({"metadata": {"name": name, "labels": labels}, "spec": spec, "status": status});
            if let Some(extra) = extra {
                m["metadata"]["annotations"] = json!({"x": extra.to_string()});
                m["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Graph", "name": "g", "uid": extra}]);
            }
            m
        },
    );
    (kind, prop_oneof![4 => body, 1 => json_value()])
}

// ---- the properties ----

#[test]
fn random_json_patches() {
    let (rt, a) = setup();
    let strategy = (
        object_path(),
        query_suffix(),
        prop_oneof![
            6 => prop::collection::vec(patch_op(), 0..12).prop_map(Value::Array),
            // Short copy chains (each copy doubles `/spec`).
            1 => (1usize..10).prop_map(copy_chain),
            1 => json_value(),
        ],
    );
    run(strategy, |(path, query, ops)| {
        let call = Call::admin(
            "PATCH",
            format!("{path}{query}"),
            "application/json-patch+json",
            serde_json::to_vec(&ops).unwrap(),
        );
        check(&rt, &a, &call).map(drop)
    });
    chain_verifies(&rt, &a);
}

/// A JSON patch that copies an object into itself again and again doubles it each time; the
/// server must refuse it (the body is small) rather than build it.
#[test]
fn copy_chains_do_not_grow_an_object_without_bound() {
    let (rt, a) = setup();
    run((prop::sample::select(vec![format!("{GRAPHS}/g"), format!("{GRAPHS}/g/status")]), 16usize..48), |(path, n)| {
        let call =
            Call::admin("PATCH", path, "application/json-patch+json", serde_json::to_vec(&copy_chain(n)).unwrap());
        let answer = check(&rt, &a, &call)?;
        prop_assert!(answer.status.is_client_error(), "a copy chain of {n} was applied: {}", answer.status);
        Ok(())
    });
    chain_verifies(&rt, &a);
}

#[test]
fn random_merge_patches() {
    let (rt, a) = setup();
    let patch = prop_oneof![
        4 => json_value(),
        1 => (json_value(), json_value()).prop_map(|(labels, spec)| json!({"metadata": {"labels": labels}, "spec": spec})),
        1 => json_value().prop_map(|v| json!({"metadata": {"resourceVersion": v, "name": v}})),
    ];
    run((object_path(), query_suffix(), patch), |(path, query, patch)| {
        let call = Call::admin(
            "PATCH",
            format!("{path}{query}"),
            "application/merge-patch+json",
            serde_json::to_vec(&patch).unwrap(),
        );
        check(&rt, &a, &call).map(drop)
    });
    chain_verifies(&rt, &a);
}

#[test]
fn random_selectors() {
    let (rt, a) = setup();
    let lists = prop::sample::select(vec![
        GRAPHS.to_string(),
        "/apis/r5e.ai/v1alpha1/graphs".to_string(),
        "/apis/stable.example.com/v1/namespaces/w/crontabs".to_string(),
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_string(),
    ]);
    let extra = prop::sample::select(vec![
        "",
        "&watch=true&timeoutSeconds=0",
        "&limit=1",
        "&watch=1&resourceVersion=1&timeoutSeconds=0",
    ]);
    run((lists, label_selector(), field_selector(), extra), |(list, labels, fields, extra)| {
        let uri = format!("{list}?labelSelector={}&fieldSelector={}{extra}", encode(&labels), encode(&fields));
        let call = Call { method: "GET".into(), uri, token: Some(ADMIN), content_type: None, body: None };
        let answer = check(&rt, &a, &call)?;
        if answer.status == StatusCode::OK && !extra.contains("watch") {
            prop_assert!(answer.json()["items"].is_array(), "{}", call.describe());
        }
        Ok(())
    });
    chain_verifies(&rt, &a);
}

#[test]
fn random_manifests() {
    let (rt, a) = setup();
    let method = prop::sample::select(vec!["POST", "PUT", "PUT/status"]);
    run((manifest(), method, query_suffix(), any::<bool>()), |((collection, body), method, query, raw)| {
        let name = body.pointer("/metadata/name").and_then(Value::as_str).map(encode).unwrap_or_else(|| "x".into());
        let (method, uri) = match method {
            "POST" => ("POST", format!("{collection}{query}")),
            "PUT" => ("PUT", format!("{collection}/{name}{query}")),
            _ => ("PUT", format!("{collection}/{name}/status{query}")),
        };
        let bytes = if raw { serde_json::to_vec_pretty(&body).unwrap() } else { serde_json::to_vec(&body).unwrap() };
        check(&rt, &a, &Call::admin(method, uri, "application/json", bytes)).map(drop)
    });
    // JSON text a parsed value cannot express.
    run((prop::sample::select(vec!["POST", "PUT"]), raw_json_text()), |(method, bytes)| {
        let uri = if method == "POST" { GRAPHS.to_string() } else { format!("{GRAPHS}/dup") };
        check(&rt, &a, &Call::admin(method, uri, "application/json", bytes)).map(drop)
    });
    chain_verifies(&rt, &a);
}

/// Numbers the audit log cannot record as sent (canonical JSON writes numbers as doubles, exact
/// only within 2^53) or that a field's integer format cannot hold are refused, not stored.
#[test]
fn numbers_out_of_range_are_refused() {
    let (rt, a) = setup();
    let beyond_doubles = vec![
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "123456789012345678901234567890",
        "1e400",
    ];
    let target = prop::sample::select(vec![
        // `maxParallelNodes` is a uint32.
        (
            GRAPHS,
            r#"{"metadata": {"name": "n"}, "spec": {"description": "x", "authority": {"capabilities": ["fs.read"]}, "maxParallelNodes": N}}"#,
            true,
        ),
        (
            "/apis/stable.example.com/v1/namespaces/w/crontabs",
            r#"{"metadata": {"name": "n"}, "spec": {"cronSpec": "x", "replicas": N}}"#,
            false,
        ),
    ]);
    let number = prop::sample::select([beyond_doubles, vec!["4294967296", "-1"]].concat());
    run((target, number), |((uri, template, uint32), number)| {
        let body = template.replace('N', number);
        let call = Call::admin("POST", format!("{uri}?dryRun=All"), "application/json", body.into_bytes());
        let answer = check(&rt, &a, &call)?;
        let out_of_range = uint32 || !matches!(number, "4294967296" | "-1");
        if out_of_range {
            prop_assert!(answer.status.is_client_error(), "{} was answered {}", call.describe(), answer.status);
        }
        Ok(())
    });
    chain_verifies(&rt, &a);
}

/// A body with a key twice is refused, whichever copy each reader would take (Kubernetes'
/// strict field validation refuses it too).
#[test]
fn duplicate_keys_are_refused() {
    let (rt, a) = setup();
    let duplicated = prop::sample::select(vec![
        r#"{"metadata": {"name": "dup", "name": "dup2"}, "spec": {"description": "x", "authority": {"capabilities": ["fs.read"]}}}"#,
        r#"{"metadata": {"name": "dup", "labels": {"a": "1", "a": "2"}}, "spec": {"description": "x", "authority": {"capabilities": ["fs.read"]}}}"#,
        r#"{"metadata": {"name": "dup"}, "spec": {"description": "x", "description": "y", "authority": {"capabilities": ["fs.read"]}}}"#,
        r#"{"metadata": {"name": "dup"}, "spec": {"description": "x", "authority": {"capabilities": ["fs.read"]}}, "spec": {"description": "y", "authority": {"capabilities": ["fs.read"]}}}"#,
    ]);
    let target = prop::sample::select(vec![
        ("POST", GRAPHS.to_string(), "application/json"),
        ("PUT", format!("{GRAPHS}/dup"), "application/json"),
        ("PATCH", format!("{GRAPHS}/g"), "application/merge-patch+json"),
    ]);
    run((target, duplicated), |((method, uri, content_type), body)| {
        let body =
            if method == "PATCH" { body.replace(r#""name": "dup""#, r#""name": "g""#) } else { body.to_string() };
        let call = Call::admin(method, uri, content_type, body.into_bytes());
        let answer = check(&rt, &a, &call)?;
        prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", call.describe());
        Ok(())
    });
    chain_verifies(&rt, &a);
}

#[test]
fn random_requests_to_every_path() {
    let (rt, a) = setup();
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FROB"]);
    let token = prop::sample::select(vec![Some(ADMIN), Some(ALICE), None, Some("not-a-token")]);
    run(
        (method, any_path(), raw_query(), token, content_type(), any_body()),
        |(method, path, query, token, ct, body)| {
            let uri = if path.contains('?') { path } else { format!("{path}{query}") };
            let call = Call { method: method.into(), uri, token, content_type: ct, body: body.map(Bytes) };
            check(&rt, &a, &call).map(drop)
        },
    );
    chain_verifies(&rt, &a);
}
