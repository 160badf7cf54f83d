//! The API attacked through the real server over real HTTP, one test per attack: reading hidden
//! objects through PATCH and explain, growing a document with a short patch, policies that reach
//! outside their namespace or lock administrators out, requests over every limit, and the
//! Kubernetes contract where a lenient reading would let a client do more than it asked.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const API: &str = "/apis/r5e.ai/v1alpha1";

/// One HTTP/1.1 response.
struct Reply {
    code: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A server and the tokens of its users.
struct Target {
    server: common::Server,
    data: std::path::PathBuf,
    admin: String,
    _dir: tempfile::TempDir,
}

fn send(addr: &str, method: &str, path: &str, token: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(c) = content_type {
        req.push_str(&format!("Content-Type: {c}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before it has read a large body; the answer still arrives.
    let _ = s.write_all(body);
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {response}"));
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Reply { code, head: head.to_string(), body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Target {
    fn start(extra: &[&str]) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut args = vec!["--no-controllers"];
        args.extend_from_slice(extra);
        let server = common::start_with(&data, true, &args);
        let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
        Target { server, data, admin, _dir: dir }
    }

    /// A token for `name` in `groups`.
    fn user(&self, name: &str, groups: &[&str], more: &[&str]) -> String {
        let mut args = vec!["token", "create", name, "--data-dir", self.data.to_str().unwrap()];
        for g in groups {
            args.extend(["--group", g]);
        }
        args.extend_from_slice(more);
        let out = Command::new(env!("CARGO_BIN_EXE_r5e")).args(&args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn call(&self, method: &str, path: &str, token: &str, content_type: &str, body: &Value) -> Reply {
        let bytes = if body.is_null() { Vec::new() } else { serde_json::to_vec(body).unwrap() };
        let ct = (!bytes.is_empty()).then_some(content_type);
        send(self.server.addr(), method, path, Some(token), ct, &bytes)
    }

    fn admin(&self, method: &str, path: &str, body: &Value) -> Reply {
        self.call(method, path, &self.admin, "application/json", body)
    }

    /// The decisions on the chain, newest last.
    fn decisions(&self) -> Vec<Value> {
        let r = send(self.server.addr(), "GET", "/r5e/v1/events?type=admission.decision", Some(&self.admin), None, b"");
        assert_eq!(r.code, 200, "{}", r.body);
        r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn path(ns: &str, plural: &str) -> String {
    format!("{API}/namespaces/{ns}/{plural}")
}

fn guideline(name: &str, text: &str) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Guideline", "metadata": {"name": name},
           "spec": {"content": text}})
}

fn policy(name: &str, cedar: &str) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Policy", "metadata": {"name": name}, "spec": {"cedar": cedar}})
}

const TEAM_A_ALL: &str = r#"permit(principal in r5e::Group::"team-a", action, resource);"#;

/// team-a may do anything in namespace team-a; a secret Guideline lives in team-b.
fn two_teams() -> (Target, String) {
    let t = Target::start(&[]);
    assert_eq!(t.admin("POST", &path("team-a", "policies"), &policy("team-a-all", TEAM_A_ALL)).code, 201);
    let r = t.admin("POST", &path("team-b", "guidelines"), &guideline("secret", "the launch code is 0000"));
    assert_eq!(r.code, 201, "{}", r.body);
    let alice = t.user("alice", &["team-a"], &[]);
    (t, alice)
}

#[test]
fn patch_copying_hidden_content_into_the_name_reveals_nothing() {
    let (t, alice) = two_teams();
    let leak = json!([{"op": "copy", "from": "/spec/content", "path": "/metadata/name"}]);
    for name in ["secret", "no-such-guideline"] {
        let r = t.call(
            "PATCH",
            &format!("{}/{name}", path("team-b", "guidelines")),
            &alice,
            "application/json-patch+json",
            &leak,
        );
        assert_eq!(r.code, 403, "{name}: {}", r.body);
        assert!(!r.body.contains("launch code"), "{}", r.body);
        assert_eq!(r.json()["reason"], "Forbidden");
    }
    // The same patch by someone who may read it is refused by the schema, and only quotes a prefix.
    let r = t.admin("PATCH", &format!("{}/secret", path("team-b", "guidelines")), &Value::Null);
    assert_eq!(r.code, 415, "a PATCH needs a patch type: {}", r.body);
}

#[test]
fn a_test_op_gets_the_same_answer_whether_the_guess_is_right_or_wrong() {
    let (t, alice) = two_teams();
    let guess = |value: &str| json!([{"op": "test", "path": "/spec/content", "value": value}]);
    let url = format!("{}/secret", path("team-b", "guidelines"));
    let right = t.call("PATCH", &url, &alice, "application/json-patch+json", &guess("the launch code is 0000"));
    let wrong = t.call("PATCH", &url, &alice, "application/json-patch+json", &guess("the launch code is 1234"));
    assert_eq!((right.code, wrong.code), (403, 403));
    assert_eq!(right.json()["message"], wrong.json()["message"]);
    // An administrator's failed test is refused and on the record.
    let r = t.call("PATCH", &url, &t.admin, "application/json-patch+json", &guess("nope"));
    assert_eq!(r.code, 422, "{}", r.body);
    let last = t.decisions().pop().unwrap();
    assert_eq!((last["data"]["verdict"].as_str(), last["data"]["stage"].as_str()), (Some("deny"), Some("request")));
    assert_eq!(last["subject"], "Guideline/team-b/secret");
}

#[test]
fn existence_is_not_revealed_by_patch_dry_run_delete_or_explain() {
    let (t, alice) = two_teams();
    let merge = json!({"metadata": {"labels": {"x": "y"}}});
    for name in ["secret", "missing"] {
        let url = format!("{}/{name}", path("team-b", "guidelines"));
        let patch = t.call("PATCH", &url, &alice, "application/merge-patch+json", &merge);
        let delete = t.call("DELETE", &format!("{url}?dryRun=All"), &alice, "application/json", &Value::Null);
        let get = t.call("GET", &url, &alice, "application/json", &Value::Null);
        assert_eq!((patch.code, delete.code, get.code), (403, 403, 403), "{name}");
        let mut object = guideline(name, "x");
        object["metadata"]["namespace"] = json!("team-b");
        let explain = t.call(
            "POST",
            "/r5e/v1/explain",
            &alice,
            "application/json",
            &json!({"operation": "delete", "object": object}),
        );
        assert_eq!(explain.code, 200, "{}", explain.body);
        assert_eq!(explain.json()["allowed"], false);
        assert!(explain.json()["reason"].as_str().unwrap().contains("no policy permits it"), "{}", explain.body);
    }
}

#[test]
fn a_doubling_json_patch_is_refused_before_it_exhausts_memory() {
    let (t, alice) = two_teams();
    let ops: Vec<Value> =
        (0..40).map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/a{i}")})).collect();
    let bomb = Value::Array(ops);
    // Without permission: refused before the patch is looked at.
    let url = format!("{}/secret", path("team-b", "guidelines"));
    assert_eq!(t.call("PATCH", &url, &alice, "application/json-patch+json", &bomb).code, 403);
    // With it: refused at the size limit, and the server is fine.
    let r = t.call("PATCH", &url, &t.admin, "application/json-patch+json", &bomb);
    assert_eq!(r.code, 413, "{}", r.body);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(send(t.server.addr(), "GET", "/readyz", None, None, b"").code, 200);
    // The operation count is bounded too, at and just past the limit.
    let test = json!({"op": "test", "path": "/spec/content", "value": "the launch code is 0000"});
    let r = t.call("PATCH", &url, &t.admin, "application/json-patch+json", &Value::Array(vec![test.clone(); 1000]));
    assert_eq!(r.code, 200, "{}", r.body);
    let r = t.call("PATCH", &url, &t.admin, "application/json-patch+json", &Value::Array(vec![test; 1001]));
    assert_eq!(r.code, 413, "{}", r.body);
}

#[test]
fn a_permit_all_policy_written_in_one_namespace_opens_no_other() {
    let (t, alice) = two_teams();
    let r = t.call(
        "POST",
        &path("team-a", "policies"),
        &alice,
        "application/json",
        &policy("mine", "permit(principal, action, resource);"),
    );
    assert_eq!(r.code, 201, "alice holds everything in team-a, so she may grant it there: {}", r.body);
    assert_eq!(t.call("GET", &format!("{}/secret", path("team-b", "guidelines")), &alice, "", &Value::Null).code, 403);
    assert_eq!(t.call("GET", &format!("{API}/guidelines"), &alice, "", &Value::Null).code, 403);
    assert_eq!(t.call("GET", &path("team-a", "guidelines"), &alice, "", &Value::Null).code, 200);
}

#[test]
fn a_policy_cannot_grant_more_than_its_writer_holds() {
    let t = Target::start(&[]);
    let writers = r#"permit(principal in r5e::Group::"writers", action in [r5e::Action::"create", r5e::Action::"get"], resource is r5e::Policy);"#;
    assert_eq!(t.admin("POST", &path("team-c", "policies"), &policy("writers", writers)).code, 201);
    let bob = t.user("bob", &["writers"], &[]);
    let r = t.call(
        "POST",
        &path("team-c", "policies"),
        &bob,
        "application/json",
        &policy("all", "permit(principal, action, resource);"),
    );
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("only what its writer holds"), "{}", r.body);
    // What bob holds he may pass on.
    let narrow = r#"permit(principal, action == r5e::Action::"get", resource is r5e::Policy);"#;
    let r = t.call("POST", &path("team-c", "policies"), &bob, "application/json", &policy("readers", narrow));
    assert_eq!(r.code, 201, "{}", r.body);
}

#[test]
fn a_forbid_cannot_lock_administrators_out_of_the_policies() {
    let t = Target::start(&[]);
    let owners = r#"permit(principal in r5e::Group::"team-b", action, resource);"#;
    assert_eq!(t.admin("POST", &path("team-b", "policies"), &policy("owners", owners)).code, 201);
    let mallory = t.user("mallory", &["team-b"], &[]);
    let lock = policy("lock", "forbid(principal, action, resource);");
    assert_eq!(t.call("POST", &path("team-b", "policies"), &mallory, "application/json", &lock).code, 201);
    // Everything in team-b is now forbidden, administrators included...
    assert_eq!(t.admin("GET", &format!("{}/owners", path("team-b", "policies")), &Value::Null).code, 200);
    assert_eq!(t.admin("POST", &path("team-b", "guidelines"), &guideline("g", "x")).code, 403);
    // ...but not the policies themselves: break-glass, on the record.
    let r = t.admin("DELETE", &format!("{}/lock", path("team-b", "policies")), &Value::Null);
    assert_eq!(r.code, 200, "{}", r.body);
    let last = t.decisions().pop().unwrap();
    assert_eq!(last["data"]["policies"], json!(["r5e:break-glass"]));
    assert_eq!(last["data"]["break_glass"]["overridden"], json!(["team-b/lock#0"]));
    assert_eq!(t.admin("POST", &path("team-b", "guidelines"), &guideline("g", "x")).code, 201);
    // Outside team-b the forbid never applied.
    assert_eq!(t.call("POST", &path("team-b", "policies"), &mallory, "application/json", &lock).code, 201);
    assert_eq!(t.admin("POST", &path("other", "guidelines"), &guideline("g", "x")).code, 201);
}

#[test]
fn only_administrators_write_cluster_wide_policy() {
    let t = Target::start(&[]);
    let everyone = r#"permit(principal, action, resource);"#;
    // Even a permit-everything cluster policy does not let others write in the cluster namespace.
    assert_eq!(t.admin("POST", &path("r5e-system", "policies"), &policy("open", everyone)).code, 201);
    let eve = t.user("eve", &[], &[]);
    let r = t.call("POST", &path("r5e-system", "policies"), &eve, "application/json", &policy("x", everyone));
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("only members of group `admins`"), "{}", r.body);
    // The cluster policy applies in every namespace.
    assert_eq!(
        t.call("POST", &path("anywhere", "guidelines"), &eve, "application/json", &guideline("g", "x")).code,
        201
    );
}

#[test]
fn refused_requests_cannot_grow_the_audit_log_by_much() {
    let (t, alice) = two_teams();
    let huge = "x".repeat(2 << 20);
    let mut g = guideline("big", "x");
    g["metadata"]["labels"] = json!({ "k": huge });
    // Permitted but invalid (a label value of 2 MiB), and refused without permission.
    for token in [&t.admin, &alice] {
        let r = t.call("POST", &path("team-b", "guidelines"), token, "application/json", &g);
        assert!(r.code == 422 || r.code == 403, "{}: {}", r.code, &r.body[..r.body.len().min(300)]);
        assert!(r.body.len() < 8192, "the answer quotes a bounded prefix: {} bytes", r.body.len());
        let last = t.decisions().pop().unwrap();
        assert!(serde_json::to_vec(&last).unwrap().len() < 4096, "{last}");
    }
}

#[test]
fn bodies_selectors_and_content_types_are_bounded_at_and_past_their_limits() {
    let t = Target::start(&[]);
    // A body of exactly the limit is read; one byte past it is a Status, not a dropped connection.
    let mut exact = serde_json::to_vec(&guideline("exact", "x")).unwrap();
    exact.resize(3 << 20, b' ');
    let r = send(t.server.addr(), "POST", &path("w", "guidelines"), Some(&t.admin), Some("application/json"), &exact);
    assert_eq!(r.code, 201, "{}", &r.body[..r.body.len().min(300)]);
    let big = vec![b' '; (3 << 20) + 1];
    let r = send(t.server.addr(), "POST", &path("w", "guidelines"), Some(&t.admin), Some("application/json"), &big);
    assert_eq!(r.code, 413);
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge", "{}", r.body);
    let terms = |n: usize| (0..n).map(|i| format!("k{i}%3Dv")).collect::<Vec<_>>().join(",");
    let list = |sel: String| t.admin("GET", &format!("{}?labelSelector={sel}", path("w", "guidelines")), &Value::Null);
    assert_eq!(list(terms(64)).code, 200);
    assert_eq!(list(terms(65)).code, 400);
    let r = list(terms(3000));
    assert_eq!(r.code, 400, "{}", &r.body[..r.body.len().min(300)]);
    // Content-Type is required and checked.
    let body = serde_json::to_vec(&guideline("g", "x")).unwrap();
    for ct in [None, Some("text/plain"), Some("application/yaml")] {
        let r = send(t.server.addr(), "POST", &path("w", "guidelines"), Some(&t.admin), ct, &body);
        assert_eq!(r.code, 415, "{ct:?}: {}", r.body);
    }
    // Duplicate keys, and integers the log could not record exactly.
    let dup = br#"{"apiVersion":"r5e.ai/v1alpha1","kind":"Guideline","metadata":{"name":"g"},"spec":{"text":"a","text":"b"}}"#;
    let r = send(t.server.addr(), "POST", &path("w", "guidelines"), Some(&t.admin), Some("application/json"), dup);
    assert_eq!(r.code, 400, "{}", r.body);
    assert!(r.body.contains("appears twice"), "{}", r.body);
    let mut g = guideline("g", "x");
    g["metadata"]["annotations"] = json!({});
    g["spec"]["priority"] = json!(9007199254740993u64);
    let r = t.admin("POST", &path("w", "guidelines"), &g);
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(r.body.contains("2^53"), "{}", r.body);
}

#[test]
fn durations_are_bounded_by_the_schema() {
    let t = Target::start(&[]);
    let harness = |seconds: u64| {
        json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Harness", "metadata": {"name": format!("h{seconds}")},
               "spec": {"type": "command", "command": {"program": "true", "timeoutSeconds": seconds}}})
    };
    assert_eq!(t.admin("POST", &path("w", "harnesses"), &harness(604800)).code, 201);
    let r = t.admin("POST", &path("w", "harnesses"), &harness(604801));
    assert_eq!(r.code, 422, "{}", r.body);
    let r = t.admin("POST", &path("w", "harnesses"), &harness(u64::MAX));
    assert_eq!(r.code, 422, "{}", r.body);
    // A field the type holds in 32 bits refuses what does not fit, at and just past the limit.
    let graph = |n: u64| {
        json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "metadata": {"name": format!("g{n}")},
                                 "spec": {"maxParallelNodes": n, "authority": {}}})
    };
    let r = t.admin("POST", &path("w", "graphs"), &graph(4294967295));
    assert_eq!(r.code, 201, "{}", r.body);
    let r = t.admin("POST", &path("w", "graphs"), &graph(4294967296));
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(r.body.contains("maxParallelNodes"), "{}", r.body);
}

#[test]
fn dry_run_values_other_than_all_are_refused_and_write_nothing() {
    let t = Target::start(&[]);
    for value in ["all", "true", "None", ""] {
        let r = t.admin("POST", &format!("{}?dryRun={value}", path("w", "guidelines")), &guideline("g", "x"));
        assert_eq!(r.code, 400, "{value}: {}", r.body);
    }
    assert_eq!(t.admin("GET", &format!("{}/g", path("w", "guidelines")), &Value::Null).code, 404);
    assert_eq!(t.admin("POST", &format!("{}?dryRun=All", path("w", "guidelines")), &guideline("g", "x")).code, 201);
    assert_eq!(t.admin("GET", &format!("{}/g", path("w", "guidelines")), &Value::Null).code, 404);
}

#[test]
fn delete_honours_uid_and_numeric_resource_version_preconditions() {
    let t = Target::start(&[]);
    let created = t.admin("POST", &path("w", "guidelines"), &guideline("g", "x")).json();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let rv: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let url = format!("{}/g", path("w", "guidelines"));
    let delete = |pre: Value| {
        t.admin("DELETE", &url, &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": pre}))
    };
    assert_eq!(delete(json!({"uid": "not-the-uid"})).code, 409);
    assert_eq!(delete(json!({"resourceVersion": rv + 1})).code, 409);
    assert_eq!(delete(json!({"resourceVersion": "x"})).code, 400);
    assert_eq!(t.admin("GET", &url, &Value::Null).code, 200, "nothing was deleted");
    assert_eq!(delete(json!({"uid": uid, "resourceVersion": rv})).code, 200);
    assert_eq!(t.admin("GET", &url, &Value::Null).code, 404);
}

/// Open a watch of namespace `w` (which holds one Guideline) with `token`, and read until its
/// first event has arrived: the watch is then open.
fn open_watch(addr: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "GET {API}/namespaces/w/guidelines?watch=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("ADDED") {
        s.read_exact(&mut byte).expect("the watch sends the Guideline");
        seen.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    s
}

/// Read until the server ends the watch (the read deadline fails the test); the time it took.
fn until_closed(mut s: TcpStream) -> Duration {
    let start = Instant::now();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the server ends the watch before the read deadline");
    start.elapsed()
}

#[test]
fn a_watch_ends_when_its_token_is_revoked_or_expires() {
    let t = Target::start(&[]);
    assert_eq!(t.admin("POST", &path("w", "guidelines"), &guideline("g", "x")).code, 201);
    let alice = t.user("alice", &["admins"], &[]);
    let watch = open_watch(t.server.addr(), &alice);
    let revoke = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["token", "revoke", "alice", "--data-dir", t.data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(revoke.status.success());
    until_closed(watch);

    let bob = t.user("bob", &["admins"], &["--expires-in", "2"]);
    let took = until_closed(open_watch(t.server.addr(), &bob));
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(t.call("GET", &path("w", "guidelines"), &bob, "", &Value::Null).code, 401);
}

#[test]
fn writes_beyond_the_rate_limit_get_429_with_retry_after() {
    // One write a second, in bursts of two: the third write in a row is refused, reads go on.
    let t = Target::start(&["--write-rate-limit", "1"]);
    for i in 0..2 {
        assert_eq!(t.admin("POST", &path("w", "guidelines"), &guideline(&format!("g{i}"), "x")).code, 201);
    }
    let r = t.admin("POST", &path("w", "guidelines"), &guideline("g-late", "x"));
    assert_eq!(r.code, 429, "{}", r.body);
    assert!(r.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.head);
    assert_eq!(t.admin("GET", &path("w", "guidelines"), &Value::Null).code, 200);
}

#[test]
fn a_reference_into_another_namespace_does_not_probe_it() {
    let (t, alice) = two_teams();
    let g = |name: &str| {
        json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "metadata": {"name": name},
                                "spec": {"authority": {"capabilities": ["fs.read"]}}})
    };
    assert_eq!(t.admin("POST", &path("team-b", "graphs"), &g("hidden")).code, 201);
    for target in ["hidden", "missing"] {
        let node = json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Node", "metadata": {"name": format!("n-{target}")},
                          "spec": {"graphRef": {"name": target, "namespace": "team-b"},
                                   "authority": {"capabilities": ["fs.write"]}}});
        let r = t.call("POST", &path("team-a", "nodes"), &alice, "application/json", &node);
        assert_eq!(r.code, 403, "{target}: {}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains("in another namespace, which user:alice may not read"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("fs.read"), "{}", r.body);
    }
}

#[test]
fn dry_runs_check_what_the_write_would_and_lenient_parameters_are_refused() {
    let t = Target::start(&[]);
    let created = t.admin("POST", &path("w", "guidelines"), &guideline("g", "x")).json();
    let rv: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let url = format!("{}/g", path("w", "guidelines"));
    // A dry-run PATCH answers with the patched object and writes nothing.
    let merge = json!({"metadata": {"labels": {"dry": "yes"}}});
    let r = t.call("PATCH", &format!("{url}?dryRun=All"), &t.admin, "application/merge-patch+json", &merge);
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.json()["metadata"]["labels"]["dry"], "yes");
    assert!(t.admin("GET", &url, &Value::Null).json()["metadata"]["labels"].is_null());
    // A dry-run replace of nothing is a 404, as the write would be; a stale delete a 409.
    let missing = format!("{}/missing/status?dryRun=All", path("w", "guidelines"));
    assert_eq!(t.admin("PUT", &missing, &guideline("missing", "x")).code, 404);
    let stale = json!({"preconditions": {"resourceVersion": (rv + 7).to_string()}});
    assert_eq!(t.admin("DELETE", &format!("{url}?dryRun=All"), &stale).code, 409);
    // Parameters that mean nothing are refused rather than guessed at.
    assert_eq!(t.admin("GET", &format!("{}?watch=abc", path("w", "guidelines")), &Value::Null).code, 400);
    assert_eq!(
        t.admin("POST", &format!("{}?fieldValidation=AAA", path("w", "guidelines")), &guideline("h", "x")).code,
        400
    );
    let mut odd = guideline("h", "x");
    odd["metadata"]["namespace"] = json!({});
    assert_eq!(t.admin("POST", &path("w", "guidelines"), &odd).code, 400);
    assert_eq!(t.admin("POST", "/apis/", &Value::Null).json()["kind"], "Status");
    let bookmarks = format!("{}?allowWatchBookmarks=null", path("w", "guidelines"));
    assert_eq!(t.admin("GET", &bookmarks, &Value::Null).code, 400);
    // A method the path does not take is 405 naming those it does, whatever the body.
    let r = t.call("PATCH", &path("w", "guidelines"), &t.admin, "application/json", &guideline("g", "x"));
    assert_eq!(r.code, 405, "{}", r.body);
    assert!(r.head.to_ascii_lowercase().contains("allow: get, post"), "{}", r.head);
}
