//! A real `r5e serve` for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running server, stopped (killed) when dropped.
pub struct Server {
    pub child: Child,
    /// Its URL, `https://127.0.0.1:PORT` (or `http://` with `plain`).
    pub url: String,
    /// What it has written to stderr after its first line, so far (the first MiB).
    pub stderr: Arc<Mutex<String>>,
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

fn serve_args<'a>(data: &'a Path, plain: bool, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    if plain {
        args.push("--plain-http");
    }
    args
}

/// `start`, with more arguments for `r5e serve`.
pub fn start_with(data: &Path, plain: bool, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_r5e"));
    command.args(serve_args(data, plain, extra));
    spawn(command)
}

/// `start_with`, the server allowed at most `open_files` open file descriptors.
pub fn start_with_open_files(data: &Path, plain: bool, extra: &[&str], open_files: u32) -> Server {
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_r5e"));
    command.args(serve_args(data, plain, extra));
    spawn(command)
}

fn spawn(mut command: Command) -> Server {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("r5e serving on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    let rest = Arc::new(Mutex::new(String::new()));
    let sink = rest.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            let mut kept = sink.lock().unwrap();
            // Enough to see a flood; not enough to run the tests out of memory.
            if kept.len() < 1 << 20 {
                kept.push_str(&line);
            }
            line.clear();
        }
    });
    Server { child, url, stderr: rest }
}

/// Copy the directory `from` to `to` (made if need be), leaving Python caches out.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
