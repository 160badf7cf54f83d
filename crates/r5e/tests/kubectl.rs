//! kubectl, unchanged, against the real server over TLS: discovery, apply twice, get with label
//! selectors and JSONPath, label (a patch), watch, delete. Skipped with one line when kubectl is
//! not installed, unless `R5E_REQUIRE_KUBECTL=1` (as CI sets it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use std::time::Duration;

fn kubectl_available() -> bool {
    let found = Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("R5E_REQUIRE_KUBECTL").as_deref() != Ok("1"),
            "R5E_REQUIRE_KUBECTL=1 but kubectl is not installed"
        );
        eprintln!("kubectl: NOT RUN: kubectl is not installed");
    }
    found
}

/// The client's minor version (`kubectl version --client`).
fn client_minor() -> u32 {
    let out = Command::new("kubectl").args(["version", "--client", "-o", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.pointer("/clientVersion/minor")
        .and_then(|m| m.as_str())
        .map(|m| m.trim_end_matches('+'))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    // Clients before 1.26 validate against the protobuf OpenAPI v2 document, which r5e does not
    // serve; newer ones see from /openapi/v3 that the server validates fields itself.
    if args.first() == Some(&"apply") && client_minor() < 26 {
        cmd.arg("--validate=false");
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart").canonicalize().unwrap()
}

#[test]
fn kubectl_works_unchanged() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = common::start(&data, false);
    let kc = data.join("kubeconfig");
    let examples = examples();

    let resources = ok(kubectl(&kc, &["api-resources", "--api-group=r5e.ai", "-o", "name"]));
    for plural in ["graphs.r5e.ai", "tasks.r5e.ai", "agentsessions.r5e.ai", "policies.r5e.ai"] {
        assert!(resources.lines().any(|l| l == plural), "{plural} missing from: {resources}");
    }
    let applied = ok(kubectl(&kc, &["apply", "-f", examples.to_str().unwrap()]));
    assert!(applied.contains("graph.r5e.ai/release-notes created"), "{applied}");
    let again = ok(kubectl(&kc, &["apply", "-f", examples.to_str().unwrap()]));
    assert!(again.contains("graph.r5e.ai/release-notes unchanged"), "{again}");

    let table = ok(kubectl(&kc, &["get", "nodes.r5e.ai"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "GRAPH", "TYPE", "PHASE", "STEP", "AGE"], "{table}");
    assert!(table.lines().any(|l| l.starts_with("notes ") && l.contains("release-notes")), "{table}");
    let names = ok(kubectl(&kc, &["get", "nodes.r5e.ai", "-o", "jsonpath={.items[*].metadata.name}"]));
    assert_eq!(names, "announce notes");
    let reviewers = ok(kubectl(&kc, &["get", "agents", "-l", "r5e.ai/role=reviewer", "-o", "name"]));
    assert_eq!(reviewers.trim(), "agent.r5e.ai/reviewer");

    // A watch sees a change made while it runs.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "graphs", "--watch", "-o", "jsonpath={.metadata.labels.approved}{\"\\n\"}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "", "the current state first");
    ok(kubectl(&kc, &["label", "graph", "release-notes", "approved=yes"]));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next());
    });
    let seen = rx.recv_timeout(Duration::from_secs(20)).expect("the watch reports the label");
    assert_eq!(seen.unwrap().unwrap(), "yes");
    let _ = watch.kill();
    let _ = watch.wait();

    let labels = ok(kubectl(&kc, &["get", "graph", "release-notes", "-o", "jsonpath={.metadata.labels.approved}"]));
    assert_eq!(labels, "yes");
    ok(kubectl(&kc, &["delete", "node.r5e.ai", "announce"]));
    let left = ok(kubectl(&kc, &["get", "nodes.r5e.ai", "-o", "name"]));
    assert_eq!(left.trim(), "node.r5e.ai/notes");

    // A CustomResourceDefinition serves a new kind that kubectl can use at once.
    let crd = dir.path().join("crd.yaml");
    std::fs::write(
        &crd,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: crontabs.stable.example.com}\n\
         spec:\n  group: stable.example.com\n  scope: Namespaced\n  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n\
         \x20       properties:\n          spec:\n            type: object\n            required: [cronSpec]\n\
         \x20           properties: {cronSpec: {type: string}}\n---\n",
    )
    .unwrap();
    ok(kubectl(&kc, &["apply", "-f", crd.to_str().unwrap()]));
    let tab = dir.path().join("tab.yaml");
    std::fs::write(
        &tab,
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: nightly}\nspec: {cronSpec: '0 3 * * *'}\n",
    )
    .unwrap();
    ok(kubectl(&kc, &["apply", "-f", tab.to_str().unwrap()]));
    assert_eq!(ok(kubectl(&kc, &["get", "ct", "-o", "name"])).trim(), "crontab.stable.example.com/nightly");
    std::fs::write(&tab, "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: broken}\nspec: {}\n")
        .unwrap();
    let refused = kubectl(&kc, &["apply", "-f", tab.to_str().unwrap()]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("cronSpec"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Admission speaks through kubectl too: a widened grant is refused with the reason.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: wide}\nspec: {graphRef: {name: release-notes}, authority: {capabilities: [deploy]}}\n",
    )
    .unwrap();
    let refused = kubectl(&kc, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("capability `deploy` is not held by the parent"), "{err}");
}
