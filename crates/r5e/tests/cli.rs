//! End-to-end tests of the `r5e` binary: the main job, the audit export and its verification
//! (by r5e and by the independent Python verifier), hand-edited exports, and the CAS.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn r5e(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r5e")).args(args).env_remove("R5E_DATA_DIR").output().expect("r5e runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The quickstart applied into a fresh data dir, and its export.
fn quickstart() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let example = repo().join("examples/quickstart");
    let out = r5e(&["run", example.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let export = dir.path().join("audit.jsonl");
    let out = r5e(&["audit", "export", "--data-dir", data.to_str().unwrap(), "--output", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = std::fs::read_to_string(&export).unwrap().lines().map(str::to_string).collect();
    (dir, export, lines)
}

fn verify_file(path: &Path) -> Output {
    r5e(&["audit", "verify", "--file", path.to_str().unwrap()])
}

fn python_verify(path: &Path) -> Output {
    Command::new("python3")
        .arg(repo().join("scripts/verify-audit.py"))
        .arg(path)
        .output()
        .expect("python3 is needed to cross-check exports with the independent verifier")
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[test]
fn the_main_job_applies_manifests_and_verifies_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let example = repo().join("examples/quickstart");
    let first = r5e(&["run", example.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    assert!(stdout.contains("14 created, 0 updated, 0 unchanged, 0 refused"), "{stdout}");
    assert!(stdout.contains("graph release-notes: Succeeded"), "{stdout}");
    let events = |out: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with("audit chain verified: ")).expect("a verified chain");
        line["audit chain verified: ".len()..].split(' ').next().unwrap().parse().unwrap()
    };
    let first_events = events(&stdout);
    // Running again changes nothing and writes no event: the work is done.
    let again = r5e(&["run", example.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("0 created, 0 updated, 14 unchanged, 0 refused"));
    assert_eq!(events(&text(&again.stdout)), first_events, "{}", text(&again.stdout));
    let log =
        r5e(&["audit", "log", "--data-dir", data.to_str().unwrap(), "--type", "resource.created", "--limit", "3"]);
    let log = text(&log.stdout);
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(log.contains("Capability/default/notes.write"));
}

#[test]
fn a_manifest_admission_refuses_fails_the_run_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("m");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("a.yaml"),
        "apiVersion: r5e.ai/v1alpha1\nkind: Graph\nmetadata: {name: g}\nspec: {authority: {capabilities: [fs.read]}}\n---\n\
         apiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: n}\nspec: {graphRef: {name: g}, authority: {capabilities: [deploy]}}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = r5e(&["run", manifests.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("1 created, 0 updated, 0 unchanged, 1 refused"), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "refs stage refused it: spec.authority exceeds the authority of Graph/default/g: capability `deploy`"
        ),
        "{err}"
    );
    let log = text(&r5e(&["audit", "log", "--data-dir", data.to_str().unwrap(), "-o", "json"]).stdout);
    assert!(log.contains("\"verdict\":\"deny\""), "the refusal is on the record: {log}");
}

#[test]
fn invalid_manifests_are_all_reported_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("m");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("a.yaml"),
        "apiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: fine}\nspec: {content: x}\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("b.yaml"),
        "apiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: n}\nspec: {graphRef: {name: g}, dependsOn: oops}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = r5e(&["run", manifests.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("1 invalid manifest(s), nothing was applied"), "{err}");
    assert!(err.contains("spec.dependsOn"), "{err}");
    assert!(!data.join("r5e.db").exists(), "nothing may be written when a manifest is invalid");
}

#[test]
fn an_export_verifies_here_and_with_the_independent_verifier() {
    let (_dir, export, lines) = quickstart();
    assert!(lines.len() > 28, "the manifests (28 events) and the work: {}", lines.len());
    let ours = verify_file(&export);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    let theirs = python_verify(&export);
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    assert_eq!(text(&ours.stdout), text(&theirs.stdout), "both verifiers agree on count and head");
}

#[test]
fn a_hand_edited_export_is_refused_naming_the_seq() {
    let (dir, _export, lines) = quickstart();
    let edited = dir.path().join("edited.jsonl");
    let harness = lines.iter().position(|l| l.contains("resource.created") && l.contains("python-writer")).unwrap();
    let harness_seq = format!("seq {}", harness + 1);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "modified",
            {
                let mut l = lines.clone();
                l[harness] = l[harness].replace("python-writer", "python-writ3r");
                l
            },
            &harness_seq,
        ),
        (
            "deleted",
            {
                let mut l = lines.clone();
                l.remove(2);
                l
            },
            "seq 3",
        ),
        (
            "inserted",
            {
                let mut l = lines.clone();
                let c = l[8].clone();
                l.insert(6, c);
                l
            },
            "seq 7",
        ),
        (
            "reordered",
            {
                let mut l = lines.clone();
                l.swap(8, 9);
                l
            },
            "seq 9",
        ),
        (
            "reformatted",
            {
                let mut l = lines.clone();
                l[1] = l[1].replacen(':', ": ", 1);
                l
            },
            "seq 2",
        ),
    ];
    for (what, edited_lines, want) in cases {
        write_lines(&edited, &edited_lines);
        let out = verify_file(&edited);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = text(&out.stderr);
        assert!(err.starts_with(&format!("chain broken at {want}:")), "{what}: {err}");
        assert_eq!(python_verify(&edited).status.code(), Some(1), "{what}: the independent verifier agrees");
    }
}

#[test]
fn a_cut_tail_is_caught_against_a_recorded_head() {
    let (dir, export, lines) = quickstart();
    let head = text(&verify_file(&export).stdout).trim().rsplit(' ').next().unwrap().to_string();
    let cut = dir.path().join("cut.jsonl");
    write_lines(&cut, &lines[..9]);
    assert!(verify_file(&cut).status.success(), "a prefix is a valid chain on its own");
    let out = r5e(&["audit", "verify", "--file", cut.to_str().unwrap(), "--expect-head", &head]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("head mismatch: the chain ends at seq 9 with head sha256:"),
        "{}",
        text(&out.stderr)
    );
    // A last line without its newline was cut mid-write.
    std::fs::write(&cut, format!("{}\n{}", lines[0], &lines[1][..40])).unwrap();
    let out = verify_file(&cut);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("seq 2"), "{}", text(&out.stderr));
}

#[test]
fn the_documented_example_verifies() {
    let example = repo().join("docs/examples/audit-example.jsonl");
    let out = verify_file(&example);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "verified 3 events, head sha256:687bd115442715c1ceeb06e9fc4ba695b80a8ae2cbd0657a2b531c495b6eabc9"
    );
}

#[test]
fn verify_of_a_live_store_and_of_a_missing_one() {
    let (dir, _export, _lines) = quickstart();
    let data = dir.path().join("data");
    let out = r5e(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("verified "), "{}", text(&out.stdout));
    let out = r5e(&["audit", "verify", "--data-dir", dir.path().join("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no r5e data in"), "{}", text(&out.stderr));
}

#[test]
fn cas_put_get_ls_and_a_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("notes.md");
    std::fs::write(&file, "# 2.4\n- faster lists\n").unwrap();
    let put = r5e(&["cas", "put", "--data-dir", d, file.to_str().unwrap()]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let digest = text(&put.stdout).split_whitespace().next().unwrap().to_string();
    let sha = Command::new("sha256sum").arg(&file).output().unwrap();
    assert_eq!(
        digest,
        format!("sha256:{}", text(&sha.stdout).split_whitespace().next().unwrap()),
        "the digest is plain sha256 of the bytes"
    );
    let get = r5e(&["cas", "get", "--data-dir", d, &digest]);
    assert_eq!(get.stdout, std::fs::read(&file).unwrap());
    let ls = text(&r5e(&["cas", "ls", "--data-dir", d]).stdout);
    assert!(ls.contains(&digest) && ls.contains(" 21 "), "{ls}");

    let blob = data.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, "# 2.4\n- faster listz\n").unwrap();
    let get = r5e(&["cas", "get", "--data-dir", d, &digest]);
    assert_eq!(get.status.code(), Some(2));
    assert!(get.stdout.is_empty(), "corrupt bytes are never written out");
    assert!(text(&get.stderr).contains("is corrupt"), "{}", text(&get.stderr));
    let bad = r5e(&["cas", "get", "--data-dir", d, "sha256:abc"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("64 lower-case hex"), "{}", text(&bad.stderr));
}

#[test]
fn cas_put_of_the_right_bytes_repairs_a_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("notes.md");
    std::fs::write(&file, "# 2.4\n- faster lists\n").unwrap();
    let put = r5e(&["cas", "put", "--data-dir", d, file.to_str().unwrap()]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let digest = text(&put.stdout).split_whitespace().next().unwrap().to_string();
    let blob = data.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, "# 2.4\n- faster listz\n").unwrap();
    assert_eq!(r5e(&["cas", "get", "--data-dir", d, &digest]).status.code(), Some(2), "the damage is seen");

    let again = r5e(&["cas", "put", "--data-dir", d, file.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).starts_with(&digest), "{}", text(&again.stdout));
    let get = r5e(&["cas", "get", "--data-dir", d, &digest]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(get.stdout, std::fs::read(&file).unwrap(), "the blob holds the right bytes again");
    assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(&file).unwrap());
}

#[tokio::test]
async fn the_main_job_on_postgres() {
    let Some(url) = storage_postgres::testing::fresh_database_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/quickstart");
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap(), "--database-url", url.as_str()];
    let run = r5e(&[&["run", example.to_str().unwrap()][..], &args].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("14 created, 0 updated, 0 unchanged, 0 refused in Postgres"),
        "{}",
        text(&run.stdout)
    );
    assert!(!data.join("r5e.db").exists(), "with a database URL nothing goes to the embedded database");
    let verify = r5e(&[&["audit", "verify"][..], &args].concat());
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).starts_with("verified "), "{}", text(&verify.stdout));
    assert!(text(&run.stdout).contains("graph release-notes: Succeeded"), "{}", text(&run.stdout));
    // The same through the environment variable.
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "log", "--data-dir", data.to_str().unwrap(), "--type", "resource.created", "--limit", "1"])
        .env("R5E_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("Capability/default/notes.write"), "{}", text(&out.stdout));
    let bad = r5e(&["audit", "verify", "--database-url", "postgres://nobody@127.0.0.1:1/none"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("cannot open the Postgres store"), "{}", text(&bad.stderr));
}

#[test]
fn the_database_cas_needs_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for args in [
        vec!["cas", "ls"],
        vec!["cas", "get", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ] {
        let mut args = args.clone();
        args.extend(["--cas", "database", "--data-dir", data]);
        let out = Command::new(env!("CARGO_BIN_EXE_r5e")).args(&args).env_remove("R5E_DATABASE_URL").output().unwrap();
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("--cas database needs --database-url"), "{}", text(&out.stderr));
    }
}

#[test]
fn a_blob_write_that_fails_midway_is_a_clear_error_and_corrupts_nothing() {
    // The file size limit stands in for a full disk: the write of the second blob fails part way
    // (EFBIG, with SIGXFSZ ignored, as ENOSPC would), after the first blob was stored whole.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (small, big) = (dir.path().join("small"), dir.path().join("big"));
    std::fs::write(&small, b"kept whole").unwrap();
    std::fs::write(&big, vec![7u8; 1 << 20]).unwrap();
    let put = |file: &Path, limited: bool| {
        let limit = if limited { "trap '' XFSZ; ulimit -f 256; " } else { "" };
        Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" cas put \"$1\" --data-dir \"$2\""))
            .arg(env!("CARGO_BIN_EXE_r5e"))
            .arg(file)
            .arg(&data)
            .env_remove("R5E_DATA_DIR")
            .output()
            .unwrap()
    };
    let first = put(&small, false);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let digest = text(&first.stdout).split_whitespace().next().unwrap().to_string();
    let failed = put(&big, true);
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("File too large") && stderr.contains("blobs/tmp"), "{stderr}");
    // Nothing half-written is left or listed, and the first blob is intact.
    assert_eq!(std::fs::read_dir(data.join("blobs/tmp")).unwrap().count(), 0);
    let ls = text(&r5e(&["cas", "ls", "--data-dir", data.to_str().unwrap()]).stdout);
    assert!(ls.contains(&digest) && ls.lines().filter(|l| l.contains("sha256:")).count() == 1, "{ls}");
    let got = r5e(&["cas", "get", &digest, "--data-dir", data.to_str().unwrap()]);
    assert_eq!(got.stdout, b"kept whole");
    // With room again, the same write succeeds.
    assert!(put(&big, false).status.success());
}
