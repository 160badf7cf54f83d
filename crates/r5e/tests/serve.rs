//! The real server over real HTTP: bootstrap token and kubeconfig, discovery, a create and a
//! watch, tokens created and revoked while it runs, and a graceful stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["serve", "--plain-http", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("r5e serving on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Server { child, addr }
}

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
    let server = start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
    let kubeconfig = std::fs::read_to_string(data.join("kubeconfig")).unwrap();
    assert!(kubeconfig.contains(&format!("server: http://{}", server.addr)) && kubeconfig.contains(&token));

    assert_eq!(request(&server.addr, "GET", "/healthz", None, None).0, 200);
    assert_eq!(request(&server.addr, "GET", "/apis", None, None).0, 401);
    let (code, body) = request(&server.addr, "GET", "/apis/r5e.ai/v1alpha1", Some(&token), None);
    assert_eq!(code, 200);
    assert!(body.contains("\"agentsessions\""));
    let graph = r#"{"metadata":{"name":"g"},"spec":{"authority":{"capabilities":["fs.read"]}}}"#;
    let (code, body) =
        request(&server.addr, "POST", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&token), Some(graph));
    assert_eq!(code, 201, "{body}");
    let (code, body) = request(
        &server.addr,
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
        request(&server.addr, "GET", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&alice), None).0,
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
    // The token file's modification time may not move within the same instant on every
    // filesystem; wait for the revocation to be seen, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let code =
            request(&server.addr, "GET", "/apis/r5e.ai/v1alpha1/namespaces/default/graphs", Some(&alice), None).0;
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
    assert!(String::from_utf8(verify.stdout).unwrap().starts_with("verified 2 events"));
}
