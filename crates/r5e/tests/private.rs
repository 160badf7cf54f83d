//! What r5e keeps is its user's alone: after `r5e serve` (with writes through it) and after
//! `r5e run`, nothing in the data directory has group or other permissions, and a data
//! directory left wide open by an older r5e is tightened when the server starts on it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every entry under `dir` (and `dir` itself) with a group or other permission bit, with its
/// mode; symbolic links are skipped. Also returns how many entries were looked at.
fn open_to_others(dir: &Path) -> (Vec<String>, usize) {
    fn walk(p: &Path, wide: &mut Vec<String>, seen: &mut usize) {
        let meta = std::fs::symlink_metadata(p).unwrap();
        if meta.file_type().is_symlink() {
            return;
        }
        *seen += 1;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            wide.push(format!("{:o} {}", mode, p.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), wide, seen);
            }
        }
    }
    let (mut wide, mut seen) = (Vec::new(), 0);
    walk(dir, &mut wide, &mut seen);
    (wide, seen)
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

#[test]
fn serve_keeps_the_data_dir_private_and_tightens_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::start(&data, false);
    let quickstart = repo().join("examples/quickstart");
    let applied = r5e_in(&data, &["apply", "-f", quickstart.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let put = r5e_in(&data, &["cas", "put", quickstart.join("00-governance.yaml").to_str().unwrap()]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    for name in ["r5e.db", "session.key", "admin.token", "kubeconfig", "tls/ca.crt", "tls/server.key", "blobs/sha256"] {
        assert!(data.join(name).exists(), "{name} is made by now");
    }
    let (wide, seen) = open_to_others(&data);
    assert!(wide.is_empty(), "readable by others after serve: {wide:#?}");
    assert!(seen >= 10, "the walk looked at {seen} entries");
    drop(server);

    // An older r5e left everything open to the group and others.
    let chmod = Command::new("chmod").args(["-R", "go+rwX"]).arg(&data).status().unwrap();
    assert!(chmod.success());
    assert!(open_to_others(&data).0.len() >= 10);
    let _server = common::start(&data, false);
    let (wide, _) = open_to_others(&data);
    assert!(wide.is_empty(), "not tightened when the server started: {wide:#?}");
}

#[test]
fn run_keeps_the_data_dir_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let quickstart = repo().join("examples/quickstart");
    let work = dir.path().join("work");
    let run = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", quickstart.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--work-dir", work.to_str().unwrap()])
        .env_remove("R5E_DATA_DIR")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for name in ["r5e.db", "blobs/sha256"] {
        assert!(data.join(name).exists(), "{name} is made by the run");
    }
    // Sessions' workspaces are kept apart from the data directory, just as private.
    assert!(!data.join("sessions").exists(), "workspaces were made inside the data directory");
    assert!(work.join("default").is_dir(), "the sessions ran in the work dir");
    for dir in [&data, &work] {
        let (wide, seen) = open_to_others(dir);
        assert!(wide.is_empty(), "readable by others after run: {wide:#?}");
        assert!(seen >= 5, "the walk looked at {seen} entries");
    }
}
