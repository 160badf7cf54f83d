//! The listener's limits through the real server: TLS handshake and header timeouts, the most
//! connections open at once, and the open-file limit, each at and just past the limit.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

/// Whether `s` is still open after `wait`: a read that times out says yes, EOF says no.
fn open_after(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    match s.read(&mut [0u8; 1024]) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
        Ok(0) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        other => panic!("expected silence or the end, got {other:?}"),
    }
}

/// Read until the server closes `s`, for at most `deadline`; the time it took, `None` if it
/// was still open at the deadline.
fn closed_within(s: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(start.elapsed()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Send one `GET path` on `s` and read the response, keeping the connection open; returns the
/// status code.
fn keep_alive_get(s: &mut TcpStream, addr: &str, path: &str) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse().unwrap()))
                .expect("a content-length");
            if body.len() >= length {
                return head.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

/// The status of a `GET path` with `Connection: close` sent on `s`, read with `deadline`; `None`
/// if no answer came in time.
fn get_and_close(s: &mut TcpStream, addr: &str, path: &str, deadline: Duration) -> Option<u16> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    s.set_read_timeout(Some(deadline)).unwrap();
    let mut response = Vec::new();
    match s.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) && response.is_empty() => {
            return None;
        }
        Err(e) => panic!("{e}"),
    }
    let text = String::from_utf8_lossy(&response);
    Some(text.split_whitespace().nth(1).unwrap_or_else(|| panic!("not a response: {text}")).parse().unwrap())
}

#[test]
fn a_client_that_never_finishes_the_tls_handshake_is_disconnected_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::start_with(&data, false, &["--no-controllers", "--handshake-timeout-seconds", "2"]);
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    let mut halfway = TcpStream::connect(server.addr()).unwrap();
    // The start of a TLS record that never comes whole.
    halfway.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let start = Instant::now();
    assert!(open_after(&mut silent, Duration::from_secs(1)), "closed before the 2 s handshake timeout");
    assert!(open_after(&mut halfway, Duration::from_millis(100)), "closed before the 2 s handshake timeout");
    for s in [&mut silent, &mut halfway] {
        let closed = closed_within(s, Duration::from_secs(5));
        assert!(closed.is_some(), "still open {:?} after connecting", start.elapsed());
    }
    assert!(start.elapsed() < Duration::from_secs(5), "closed only after {:?}", start.elapsed());

    // A client that does the handshake is served, by the same listener.
    let got = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["get", "graphs"])
        .env("R5E_DATA_DIR", &data)
        .env_remove("R5E_SERVER")
        .env_remove("R5E_TOKEN")
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
}

#[test]
fn a_request_whose_headers_do_not_arrive_in_time_is_cut_off_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::start_with(&dir.path().join("data"), true, &["--no-controllers", "--header-timeout-seconds", "2"]);
    let addr = server.addr();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes()).unwrap();
    let mut in_time = TcpStream::connect(addr).unwrap();
    in_time.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes()).unwrap();
    let start = Instant::now();
    assert!(open_after(&mut in_time, Duration::from_secs(1)), "closed before the 2 s header timeout");
    // Headers finished after 1 s, within the 2 s limit: served.
    in_time.write_all(b"\r\n").unwrap();
    let mut response = String::new();
    in_time.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    in_time.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    assert!(open_after(&mut partial, Duration::from_millis(100)), "closed before the header timeout");
    for s in [&mut partial, &mut silent] {
        assert!(closed_within(s, Duration::from_secs(5)).is_some(), "still open {:?} in", start.elapsed());
    }
    assert!(start.elapsed() < Duration::from_secs(5), "closed only after {:?}", start.elapsed());
    assert_eq!(
        get_and_close(&mut TcpStream::connect(addr).unwrap(), addr, "/healthz", Duration::from_secs(10)),
        Some(200)
    );
}

#[test]
fn beyond_max_connections_a_client_waits_until_a_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_with(
        &dir.path().join("data"),
        true,
        &["--no-controllers", "--max-connections", "2", "--header-timeout-seconds", "60"],
    );
    let addr = server.addr();
    // Two connections, each served once and kept open: at the limit, both are served.
    let mut a = TcpStream::connect(addr).unwrap();
    assert_eq!(keep_alive_get(&mut a, addr, "/healthz"), 200);
    let mut b = TcpStream::connect(addr).unwrap();
    assert_eq!(keep_alive_get(&mut b, addr, "/healthz"), 200);
    // A third one, past the limit, waits in the backlog...
    let mut c = TcpStream::connect(addr).expect("the kernel queues the connection");
    assert_eq!(get_and_close(&mut c, addr, "/healthz", Duration::from_secs(1)), None, "served past the limit");
    // ...until one of the two closes; then it is served.
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert_eq!(keep_alive_get(&mut b, addr, "/healthz"), 200, "the connection kept open still works");
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn out_of_file_descriptors_the_server_backs_off_logs_little_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_with_open_files(
        &dir.path().join("data"),
        true,
        &["--no-controllers", "--header-timeout-seconds", "120"],
        64,
    );
    let addr = server.addr().to_string();
    assert_eq!(
        get_and_close(&mut TcpStream::connect(&addr).unwrap(), &addr, "/healthz", Duration::from_secs(10)),
        Some(200)
    );
    // Far more idle connections than 64 descriptors allow: accept starts failing.
    let idle: Vec<TcpStream> = (0..150).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr.lock().unwrap().contains("cannot accept connections") {
        assert!(Instant::now() < deadline, "no accept failure reported: {}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stay out of descriptors for three seconds: a loop that spun would log thousands of lines
    // and burn a core.
    let (cpu_before, lines_before) = (cpu_time(server.child.id()), server.stderr.lock().unwrap().lines().count());
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_time(server.child.id()) - cpu_before;
    let lines = server.stderr.lock().unwrap().lines().count() - lines_before;
    assert!(lines <= 2, "{lines} lines in 3 s: {}", server.stderr.lock().unwrap());
    assert!(cpu < Duration::from_millis(500), "{cpu:?} of CPU in 3 s while out of descriptors");

    // Descriptors come back: the server accepts and serves again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = TcpStream::connect(&addr).unwrap();
        if get_and_close(&mut s, &addr, "/healthz", Duration::from_secs(5)) == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "not serving again: {}", server.stderr.lock().unwrap());
    }
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("accepting connections again after"), "{log}");
    assert!(log.lines().count() <= 10, "{log}");
}
