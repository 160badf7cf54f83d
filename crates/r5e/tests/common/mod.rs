//! A real `r5e serve` for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server, stopped (killed) when dropped.
pub struct Server {
    pub child: Child,
    /// Its URL, `https://127.0.0.1:PORT` (or `http://` with `plain`).
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.url.split_once("://").map_or(&self.url, |(_, a)| a)
    }
}

/// Start `r5e serve` on a free port with `data` as its data directory, over TLS unless `plain`,
/// without the execution plane (these tests look at the API alone).
pub fn start(data: &Path, plain: bool) -> Server {
    start_with(data, plain, &["--no-controllers"])
}

/// `start`, with more arguments for `r5e serve`.
pub fn start_with(data: &Path, plain: bool, extra: &[&str]) -> Server {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    if plain {
        args.push("--plain-http");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_r5e")).args(&args).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("r5e serving on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Server { child, url }
}
