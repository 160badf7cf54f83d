//! The real server over real HTTP: bootstrap token and kubeconfig, discovery, a create and a
//! watch, tokens created and revoked while it runs, and a graceful stop.

use std::io::{Read, Write};

mod common;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One HTTP/1.1 request; returns the status code and the body.
fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

#[test]
fn serve_bootstraps_then_answers_over_http_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::start(&data, true);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
    let kubeconfig = std::fs::read_to_string(data.join("kubeconfig")).unwrap();
    assert!(kubeconfig.contains(&format!("server: {}", server.url)) && kubeconfig.contains(&token));

    assert_eq!(request(server.addr(), "GET", "/healthz", None, None).0, 200);
    assert_eq!(request(server.addr(), "GET", "/apis", None, None).0, 401);
    let (code, body) = request(server.addr(), "GET", "/apis/r5e.ai/v1alpha1", Some(&token), None);
    assert_eq!(code, 200);
    assert!(body.contains("\"agentsessions\""));
    let graph = r#"{"metadata":{"name":"g"},"spec":{"authority":{"capabilities":["fs.read"]}}}"#;
    let (code, body) =
        request(server.addr(), "POST", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&token), Some(graph));
    assert_eq!(code, 201, "{body}");
    let (code, body) = request(
        server.addr(),
        "GET",
        "/apis/r5e.ai/v1alpha1/namespaces/default/graphs?watch=true&timeoutSeconds=1",
        Some(&token),
        None,
    );
    assert_eq!(code, 200);
    assert!(body.contains("\"type\":\"ADDED\""), "{body}");

    // A token made while the server runs works at once, and stops working when revoked.
    let made = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["token", "create", "alice", "--group", "admins", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let alice = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert_eq!(
        request(server.addr(), "GET", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&alice), None).0,
        200
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["token", "list", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("alice") && !listed.contains(&alice), "tokens are never shown again: {listed}");
    let revoked = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["token", "revoke", "alice", "--data-dir", data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(revoked.success());
    // The server catches up with the chain on every request; the deadline only bounds a failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let code =
            request(server.addr(), "GET", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&alice), None).0;
        if code == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the revoked token still works");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut server = server;
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");
    let verify = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8(verify.stdout).unwrap().starts_with("verified "));
    // Issuing and revoking tokens are writes on the chain, each with its decision; the chain
    // holds the tokens' digests, never the tokens.
    let log = |kind: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
            .args(["audit", "log", "-o", "json", "--type", kind, "--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let issued = log("token.issued");
    assert!(issued.contains("token:user:admin") && issued.contains("token:user:alice"), "{issued}");
    assert!(issued.contains("\"actor\":\"user:system:bootstrap\"") && issued.contains("\"actor\":\"user:local\""));
    assert!(!issued.contains(&token), "the chain holds the admin token itself");
    assert!(log("token.revoked").contains("token:user:alice"));
    let decisions = log("admission.decision");
    assert!(decisions.contains("Token//alice") || decisions.contains("Token/alice"), "{decisions}");
}

fn r5e_in(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(args)
        .env("R5E_DATA_DIR", data)
        .env_remove("R5E_SERVER")
        .env_remove("R5E_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn the_cli_drives_a_running_server_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::start(&data, false);
    assert!(server.url.starts_with("https://"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let examples = examples.to_str().unwrap();

    let applied = stdout(&r5e_in(&data, &["apply", "-f", examples]));
    assert!(applied.contains("graph.r5e.ai/release-notes created"), "{applied}");
    assert!(stdout(&r5e_in(&data, &["apply", "-f", examples])).contains("graph.r5e.ai/release-notes unchanged"));
    let table = stdout(&r5e_in(&data, &["get", "nodes"]));
    assert!(
        table.lines().next().unwrap().split_whitespace().eq(["NAME", "GRAPH", "TYPE", "PHASE", "STEP", "AGE"]),
        "{table}"
    );
    assert_eq!(
        stdout(&r5e_in(&data, &["get", "agents", "-l", "r5e.ai/role=reviewer", "-o", "name"])).trim(),
        "agent.r5e.ai/reviewer"
    );
    let yaml = stdout(&r5e_in(&data, &["get", "graph", "release-notes", "-o", "yaml"]));
    assert!(yaml.contains("kind: Graph") && yaml.contains("resourceVersion:"), "{yaml}");
    let described = stdout(&r5e_in(&data, &["describe", "graph", "release-notes"]));
    assert!(described.contains("admission.decision") && described.contains("resource.created"), "{described}");
    assert!(stdout(&r5e_in(&data, &["delete", "node", "announce"])).contains("node.r5e.ai/announce deleted"));
    assert_eq!(stdout(&r5e_in(&data, &["get", "nodes", "-o", "name"])).trim(), "node.r5e.ai/notes");

    // explain: a widened grant is refused by the refs stage, and nothing is written.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: wide}\nspec: {graphRef: {name: release-notes}, authority: {capabilities: [deploy]}}\n").unwrap();
    let explained = r5e_in(&data, &["explain", "-f", bad.to_str().unwrap()]);
    assert_eq!(explained.status.code(), Some(1));
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains(
            "refused (refs stage refused it: spec.authority exceeds the authority of Graph/default/release-notes"
        ),
        "{text}"
    );
    let refused = r5e_in(&data, &["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("capability `deploy` is not held by the parent"));

    // The audit commands read a server too, and verify what it serves here.
    let server_url = std::fs::read_to_string(data.join("kubeconfig"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .unwrap();
    let remote = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", server_url.as_str()]);
        r5e_in(&data, &all)
    };
    let verified = stdout(&remote(&["audit", "verify"]));
    assert!(verified.starts_with("verified ") && verified.contains(" events, head sha256:"), "{verified}");
    let local = stdout(&r5e_in(&data, &["audit", "verify"]));
    assert_eq!(verified, local, "the server's log and the store's are the same chain");
    let exported = stdout(&remote(&["audit", "export"]));
    assert_eq!(exported.lines().count(), verified.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap());
    let log = stdout(&remote(&["audit", "log", "--type", "resource.deleted"]));
    assert!(log.contains("Node/default/announce"), "{log}");

    // A wrong token is told so.
    let denied = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["get", "graphs"])
        .env("R5E_DATA_DIR", &data)
        .env("R5E_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("unknown bearer token (401 Unauthorized)"));
}

#[test]
fn the_server_runs_the_work_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart").canonicalize().unwrap();
    let _server = common::start_with(&data, false, &["--base-dir", examples.to_str().unwrap()]);
    stdout(&r5e_in(&data, &["apply", "-f", examples.to_str().unwrap()]));
    // Watch the Graph until the controllers in the server have done the work.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let graph = stdout(&r5e_in(&data, &["get", "graph", "release-notes", "-o", "json"]));
        let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
        match graph["status"]["phase"].as_str() {
            Some("Succeeded") => break,
            Some("Failed" | "Blocked") => panic!("the work ended {}", graph["status"]),
            _ => assert!(std::time::Instant::now() < deadline, "no result in 60 s: {}", graph["status"]),
        }
        std::thread::yield_now();
    }
    let sessions = stdout(&r5e_in(&data, &["get", "agentsessions"]));
    assert_eq!(sessions.lines().filter(|l| l.contains("Succeeded")).count(), 4, "{sessions}");
    let artifacts = stdout(&r5e_in(&data, &["get", "artifacts", "-l", "r5e.ai/task=notes-write"]));
    assert!(artifacts.contains("Approved"), "{artifacts}");
}
