//! End-to-end tests of the governed work chain through the real binary: `r5e run` on the
//! quickstart and on variations of it, with real subprocess agents, including hostile ones
//! (tests/harnesses/): a rejected-then-approved draft, a reviewer that is not independent, a
//! missing reflection, a decline re-planned by an orchestrator (which also tries to widen its
//! authority), harnesses that crash, hang or print garbage, and tool calls beyond authority.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn harnesses() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harnesses").canonicalize().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The quickstart's governance, agents and scripts in a fresh directory, with `work` as its
/// work manifest.
fn scenario(work: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    common::copy_dir(&repo().join("examples/quickstart"), &root);
    std::fs::write(root.join("20-work.yaml"), work).unwrap();
    (dir, root)
}

fn run(dir: &Path, work: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", work.to_str().unwrap(), "--timeout", "120", "--data-dir"])
        .arg(dir.join("data"))
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .output()
        .expect("r5e runs")
}

fn audit_log(dir: &Path, kind: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "log", "-o", "json", "--type", kind, "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    text(&out.stdout)
}

const GRAPH: &str = "apiVersion: r5e.ai/v1alpha1
kind: Graph
metadata: {name: g}
spec:
  authority: {capabilities: [text.analyse, notes.write], budgets: {tool_calls: 10}}
  guidelineRefs: [{name: house-style}]
";

fn workflow(name: &str, role: &str, reviewer: &str) -> String {
    format!(
        "apiVersion: r5e.ai/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  steps:
    - name: write
      agentSelector: {{matchLabels: {{r5e.ai/role: {role}}}}}
      review: {{reviewerSelector: {{matchLabels: {{r5e.ai/role: {reviewer}}}}}, maxRounds: 2}}
"
    )
}

fn node(name: &str, workflow: &str, inputs: &str) -> String {
    format!(
        "apiVersion: r5e.ai/v1alpha1
kind: Node
metadata: {{name: {name}}}
spec: {{graphRef: {{name: g}}, description: release notes, workflowRef: {{name: {workflow}}}, inputs: {inputs}}}
"
    )
}

/// A command Harness and an Agent of `role` (labelled with it) running `script` from
/// tests/harnesses.
fn agent(name: &str, role: &str, script: &str, provider: &str, capabilities: &str) -> String {
    let program = if script.ends_with(".py") { "python3" } else { "sh" };
    let path = harnesses().join(script);
    // Short for the agent that hangs, roomy for the others on a busy machine.
    let timeout = if script == "hang.sh" { 2 } else { 30 };
    format!(
        "apiVersion: r5e.ai/v1alpha1
kind: Harness
metadata: {{name: {name}}}
spec: {{type: command, command: {{program: {program}, args: [\"{}\"], timeoutSeconds: {timeout}, readPaths: [\"{}\"]}}}}
---
apiVersion: r5e.ai/v1alpha1
kind: Agent
metadata: {{name: {name}, labels: {{r5e.ai/role: {name}}}}}
spec:
  role: {role}
  harnessRef: {{name: {name}}}
  model: {{provider: {provider}, name: {name}-model}}
  capabilities: {capabilities}
",
        path.display(),
        harnesses().display()
    )
}

const CHANGES: &str =
    "{mode: notes, version: '2.4', changes: ['feat: one thing', 'fix: another thing', 'perf: a third']}";

fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

#[test]
fn the_quickstart_does_its_work_with_independent_review_and_reflections() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &repo().join("examples/quickstart"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("graph release-notes: Succeeded (2 of 2 nodes succeeded)"), "{stdout}");
    assert!(stdout.contains("sessions:    4 (2 producer, 2 reviewer): 4 succeeded"), "{stdout}");
    assert!(stdout.contains("reviews:     2 approving, 0 rejecting; outputs 2 approved, 0 rejected"), "{stdout}");
    assert!(stdout.contains("reflections: 4 given, 0 missing"), "{stdout}");
    assert!(stdout.contains("tool calls:  4 allowed, 0 refused"), "{stdout}");
    assert!(stdout.contains("audit chain verified: "), "{stdout}");
    let progress = text(&out.stderr);
    assert!(progress.contains("AgentSession notes-write-a1-review-1"), "{progress}");
    // Every tool call is on the chain with the digests of its arguments and result.
    let calls = audit_log(dir.path(), "tool.call");
    assert_eq!(calls.lines().count(), 4, "{calls}");
    assert!(calls.contains("\"argumentsDigest\":\"sha256:") && calls.contains("\"resultDigest\":\"sha256:"), "{calls}");
    // The announcement was built from the approved notes of the first node.
    let cas = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["cas", "ls", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(text(&cas.stdout).lines().count() > 10, "{}", text(&cas.stdout));
}

#[test]
fn a_rejected_draft_goes_back_with_its_review_and_is_then_approved() {
    let work = std::fs::read_to_string(repo().join("examples/quickstart/20-work.yaml"))
        .unwrap()
        .replace("    mode: notes\n", "    mode: notes\n    sloppyFirstDraft: true\n");
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("reviews:     2 approving, 1 rejecting; outputs 2 approved, 1 rejected"), "{stdout}");
    assert!(stdout.contains("sessions:    6 (3 producer, 3 reviewer)"), "{stdout}");
    let progress = text(&out.stderr);
    assert!(progress.contains("notes-write-a2 "), "a second attempt ran: {progress}");
}

#[test]
fn a_reviewer_that_is_not_independent_leaves_the_task_blocked() {
    // The only reviewer runs on the writer's provider: no independent review is possible.
    let work = docs(&[
        GRAPH.to_string(),
        agent("same-provider-reviewer", "Reviewer", "reflects_when_asked.py", "local", "[]"),
        workflow("w", "writer", "same-provider-reviewer"),
        node("n", "w", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("graph g: Blocked"), "{stdout}");
    assert!(
        stdout.contains("no independent reviewer for n-write-a1-out-1: same-provider-reviewer: producer and reviewer share the provider `local`"),
        "{stdout}"
    );
    assert!(stdout.contains("outputs 0 approved"), "nothing advanced: {stdout}");
    // An independent reviewer arrives: the same run, again, finishes the work.
    std::fs::write(
        root.join("30-fresh-eyes.yaml"),
        "apiVersion: r5e.ai/v1alpha1
kind: Agent
metadata: {name: fresh-eyes, labels: {r5e.ai/role: same-provider-reviewer}}
spec: {role: Reviewer, harnessRef: {name: python-reviewer}, model: {provider: elsewhere, name: checker-2}}
",
    )
    .unwrap();
    let again = run(dir.path(), &root);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert!(stdout.contains("graph g: Succeeded"), "{stdout}");
    assert!(stdout.contains("outputs 1 approved"), "{stdout}");
}

#[test]
fn a_session_that_never_reflects_fails_visibly_and_one_that_reflects_when_asked_succeeds() {
    let work = docs(&[
        GRAPH.to_string(),
        agent("unreflective", "Task", "unreflective.py", "test-a", "[notes.write]"),
        agent("forgetful", "Task", "reflects_when_asked.py", "test-b", "[notes.write]"),
        workflow("w1", "unreflective", "reviewer"),
        workflow("w2", "forgetful", "reviewer"),
        node("never", "w1", CHANGES),
        node("asked", "w2", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("graph g: Failed (1 of 2 nodes succeeded)"), "{stdout}");
    for attempt in 1..=3 {
        assert!(
            stdout.contains(&format!(
                "never-write-a{attempt}: the session would have ended Succeeded but gave no reflection, even when asked"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("reflections: 2 given, 3 missing"), "{stdout}");
    let progress = text(&out.stderr);
    assert!(progress.lines().any(|l| l.contains("asked-write-a1 ") && l.contains("Reflecting")), "{progress}");
    assert!(stdout.contains(" asked ") && stdout.contains("task never-write failed: 3 attempt(s) failed"), "{stdout}");
}

#[test]
fn a_declined_task_is_replanned_by_an_orchestrator_that_cannot_widen_its_authority() {
    // The Graph's scope lets its sessions create the Nodes `part-*` and `too-wide`, no other.
    let graph = GRAPH
        .replace("budgets: {tool_calls: 10}", "scope: [r5e:Node/part-*, r5e:Node/too-wide], budgets: {tool_calls: 10}");
    let work = docs(&[
        graph,
        "apiVersion: r5e.ai/v1alpha1
kind: Policy
metadata: {name: sessions-may-plan}
spec:
  cedar: |
    permit(principal is r5e::Session, action == r5e::Action::\"create\", resource is r5e::Node);
"
        .to_string(),
        agent("splitter", "Task", "splitter.py", "test-a", "[notes.write]"),
        agent("planner", "Orchestrator", "orchestrator.py", "test-b", "[notes.write, text.analyse]"),
        workflow("too-big", "splitter", "reviewer"),
        node("everything", "too-big", CHANGES),
        workflow("write-and-review", "writer", "reviewer"),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("graph g: Succeeded (2 of 3 nodes succeeded)"), "{stdout}");
    assert!(
        stdout.contains("task everything-write was declined: split by everything-write-a1-replan into part-1, part-2"),
        "{stdout}"
    );
    assert!(stdout.contains("declines:    1"), "{stdout}");
    // The widened Node was refused by admission, on the record.
    let decisions = audit_log(dir.path(), "admission.decision");
    let refused = decisions
        .lines()
        .find(|l| l.contains("Node/default/too-wide"))
        .unwrap_or_else(|| panic!("no decision about too-wide: {decisions}"));
    assert!(refused.contains("\"verdict\":\"deny\"") && refused.contains("deploy.prod"), "{refused}");
    assert!(refused.contains("\"actor\":\"session:default/everything-write-a1-replan\""), "{refused}");
    // So was the Node outside its scope, by its token.
    let stray = decisions
        .lines()
        .find(|l| l.contains("Node/default/stray"))
        .unwrap_or_else(|| panic!("no decision about stray: {decisions}"));
    assert!(stray.contains("\"verdict\":\"deny\"") && stray.contains("does not allow this"), "{stray}");
}

#[test]
fn harnesses_that_crash_hang_or_print_garbage_fail_with_clear_reasons() {
    let mut parts = vec![GRAPH.to_string()];
    for (name, script) in [("crasher", "crash.sh"), ("hanger", "hang.sh"), ("babbler", "garbage.sh")] {
        parts.push(agent(name, "Task", script, &format!("test-{name}"), "[notes.write]"));
        parts.push(workflow(&format!("w-{name}"), name, "reviewer"));
        parts.push(node(&format!("n-{name}"), &format!("w-{name}"), CHANGES));
    }
    let (dir, root) = scenario(&docs(&parts));
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("graph g: Failed (0 of 3 nodes succeeded)"), "{stdout}");
    assert!(
        stdout.contains("n-crasher-write-a1: the harness stopped before saying done: it exited with status 3; last stderr line: something broke inside the agent"),
        "{stdout}"
    );
    assert!(stdout.contains("n-hanger-write-a1: the harness did not finish within 2 s"), "{stdout}");
    assert!(stdout.contains("n-babbler-write-a1: harness output line 1 is not a protocol message"), "{stdout}");
    assert!(stdout.contains("reflections: 0 given, 9 missing"), "{stdout}");
    // No harness process is left behind.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let scripts = [harnesses().join("hang.sh"), harnesses().join("garbage.sh")];
    let left: Vec<String> = text(&ps.stdout)
        .lines()
        .filter(|l| scripts.iter().any(|s| l.contains(s.to_str().unwrap())))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn tool_calls_beyond_the_session_authority_are_refused_and_audited() {
    // The step names only word-count, and the agent may write notes but not analyse text
    // (word-count needs text.analyse).
    let step = workflow("w", "overreacher", "reviewer")
        .replace("      agentSelector:", "      toolRefs: [{name: word-count}]\n      agentSelector:");
    let work = docs(&[
        GRAPH.to_string(),
        agent("overreacher", "Task", "overreach.py", "test-a", "[notes.write]"),
        step,
        node("n", "w", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("tool calls:  0 allowed, 2 refused"), "{stdout}");
    let calls = audit_log(dir.path(), "tool.call");
    assert!(calls.contains("does not hold the capability `text.analyse`"), "{calls}");
    assert!(calls.contains("the Workflow step names the Tools word-count, not `deploy`"), "{calls}");
    assert!(calls.contains("\"actor\":\"session:default/n-write-a1\""), "{calls}");
}

#[test]
fn a_session_whose_process_was_killed_is_marked_degraded_and_its_task_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("starts");
    let script = harnesses().join("stuck.sh");
    let work = docs(&[
        GRAPH.to_string(),
        format!(
            "apiVersion: r5e.ai/v1alpha1
kind: Harness
metadata: {{name: stuck}}
spec: {{type: command, sandbox: none, command: {{program: sh, args: [\"{}\"], env: {{MARKER: \"{}\"}}, timeoutSeconds: 120}}}}
---
apiVersion: r5e.ai/v1alpha1
kind: Agent
metadata: {{name: stuck, labels: {{r5e.ai/role: stuck}}}}
spec: {{role: Task, harnessRef: {{name: stuck}}, model: {{provider: test, name: slow}}, capabilities: [notes.write]}}
",
            script.display(),
            marker.display()
        ),
        workflow("w", "stuck", "reviewer"),
        node("n", "w", CHANGES),
    ]);
    let (_work_dir, root) = scenario(&work);
    let data = dir.path().join("data");
    let r5e = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
        c.args(["run", root.to_str().unwrap(), "--lease-seconds", "2", "--data-dir"]).arg(&data).args(extra);
        c.env_remove("R5E_DATABASE_URL");
        c
    };
    // Kill -9 the first run while its session is at work (its harness has started).
    let mut first = r5e(&[]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&marker).is_ok_and(|s| s.contains("started")) {
        assert!(std::time::Instant::now() < deadline, "the harness never started");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        std::thread::yield_now();
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The next run finds the lapsed lease: the session is Degraded, never run again, and the
    // Task's retry policy starts a second attempt, which finishes the work.
    let second = r5e(&["--timeout", "60"]).output().unwrap();
    let stdout = text(&second.stdout);
    assert_eq!(second.status.code(), Some(0), "{stdout}\n{}", text(&second.stderr));
    assert!(stdout.contains("graph g: Succeeded"), "{stdout}");
    assert!(stdout.contains("n-write-a1: the process running it (r5e-"), "{stdout}");
    let starts = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["started", "started again"], "one start per attempt");
    // No process of the killed run is left: its harness died with it.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!text(&ps.stdout).contains(marker.to_str().unwrap()), "{}", text(&ps.stdout));
}

#[test]
fn a_draft_rejected_in_every_round_fails_the_task() {
    let work = docs(&[
        GRAPH.to_string(),
        agent("careless", "Task", "incomplete.py", "test-a", "[notes.write]"),
        workflow("w", "careless", "reviewer"),
        node("n", "w", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("task n-write failed: the output was rejected in 2 review round(s)"), "{stdout}");
    assert!(stdout.contains("reviews:     0 approving, 2 rejecting; outputs 0 approved, 2 rejected"), "{stdout}");
    // The second attempt was given the rejected draft and the review that rejected it.
    let created = audit_log(dir.path(), "resource.created");
    let second = created.lines().find(|l| l.contains("AgentSession/default/n-write-a2\"")).expect("a second attempt");
    assert!(
        second.contains("rejected:n-write-a1-out-1") && second.contains("review:n-write-a1-review-1-verdict"),
        "{second}"
    );
}

#[test]
fn a_task_agent_cannot_delegate_and_guidelines_are_recorded_by_digest() {
    let work = docs(&[
        GRAPH.to_string(),
        agent("delegator", "Task", "delegator.py", "test-a", "[notes.write]"),
        workflow("w", "delegator", "reviewer"),
        node("n", "w", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("n-write-a1: only an orchestrating session may create Nodes: a task agent declines with NeedsSplitting instead"),
        "{stdout}"
    );
    let created = audit_log(dir.path(), "resource.created");
    assert!(!created.contains("Node/default/someone-else"), "{created}");
    // The Graph's guideline was given by digest, and the digest is on the session.
    let house_style = "Use the active voice. Start each line with what changed for the user. No trailing periods.";
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(house_style.as_bytes())));
    let session = created.lines().find(|l| l.contains("AgentSession/default/n-write-a1\"")).unwrap();
    assert!(session.contains(&format!("\"guidelineDigests\":[\"{digest}\"]")), "{session}");
}

#[test]
fn tool_calls_are_held_to_the_input_schema_and_the_call_budget_ends_the_session() {
    // The Graph's authority allows 10 tool calls.
    let work = docs(&[
        GRAPH.to_string(),
        agent("spender", "Task", "spender.py", "test-a", "[notes.write, text.analyse]"),
        workflow("w", "spender", "reviewer"),
        node("n", "w", CHANGES),
    ]);
    let (dir, root) = scenario(&work);
    let out = run(dir.path(), &root);
    let stdout = text(&out.stdout);
    // Each attempt: the malformed call refused, ten allowed, and the eleventh ends the session,
    // which fails naming the budget.
    assert!(!out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("tool calls:  30 allowed, 6 refused"), "{stdout}");
    assert!(
        stdout.contains("n-write-a1: the session reached its budget: budget `tool_calls` of 10 is spent"),
        "{stdout}"
    );
    let calls = audit_log(dir.path(), "tool.call");
    assert!(calls.contains("the arguments do not match Tool/default/word-count's input schema"), "{calls}");
    assert!(calls.contains("refused: budget `tool_calls` of 10 is spent"), "{calls}");
}
