//! The governance gates of the work chain, attacked directly through admission, as an
//! administrator would (administrators are bound by them too): forged approvals, self-review,
//! approvals of other bytes, sessions ending without a reflection, skipped review, and sessions
//! delegating authority they do not hold.

mod common;

use common::{admin, fixture, manifest};
use domain::{Authority, Digest};
use r5e_admission::{Admission, Error, Identity};
use serde_json::{Value, json};

fn digest(s: &str) -> String {
    Digest::of(s.as_bytes()).to_string()
}

async fn create(a: &Admission, v: Value) {
    a.create(&admin(), v).await.unwrap_or_else(|e| panic!("setup write refused: {e}"));
}

/// A Graph/Node/Task, a writer and two would-be reviewers, a producing session with an output,
/// and three verdicts: an independent one, one by the writer's own model, one on other bytes.
async fn world(a: &Admission) {
    let authority = json!({"capabilities": ["notes.write"]});
    create(a, manifest("Graph", "w", "g", json!({"authority": authority}))).await;
    create(a, manifest("Node", "w", "n", json!({"graphRef": {"name": "g"}}))).await;
    create(
        a,
        manifest(
            "Task",
            "w",
            "t",
            json!({"nodeRef": {"name": "n"}, "graphRef": {"name": "g"}, "authority": authority}),
        ),
    )
    .await;
    create(a, manifest("Harness", "w", "h", json!({"type": "command", "command": {"program": "true"}}))).await;
    for (agent, provider, model) in [("writer", "a", "x"), ("checker", "b", "y")] {
        let spec = json!({"harnessRef": {"name": "h"}, "model": {"provider": provider, "name": model}});
        create(a, manifest("Agent", "w", agent, spec)).await;
    }
    let session = |agent: &str, provider: &str, model: &str, review: Option<&str>| {
        let mut spec = json!({"taskRef": {"name": "t"}, "agentRef": {"name": agent}, "authority": authority,
                              "model": {"provider": provider, "name": model}});
        if let Some(d) = review {
            spec["role"] = json!("Reviewer");
            spec["reviewOf"] = json!({"artifactRef": {"name": "out"}, "digest": d});
        }
        spec
    };
    create(a, manifest("AgentSession", "w", "p", session("writer", "a", "x", None))).await;
    let artifact = |kind: &str, session: &str, agent: &str, what: &str, extra: Value| {
        let mut spec = json!({"digest": digest(what), "size": what.len(), "artifactType": kind,
                              "producedBy": {"session": {"name": session}, "agent": {"name": agent}}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    };
    create(a, manifest("Artifact", "w", "out", artifact("Output", "p", "writer", "notes", json!({})))).await;
    create(a, manifest("AgentSession", "w", "r", session("checker", "b", "y", Some(&digest("notes"))))).await;
    create(a, manifest("AgentSession", "w", "self", session("writer", "a", "x", Some(&digest("notes"))))).await;
    let approve = |of: &str| json!({"verdict": "Approve", "reviewOf": digest(of)});
    create(a, manifest("Artifact", "w", "ok", artifact("Review", "r", "checker", "v1", approve("notes")))).await;
    create(a, manifest("Artifact", "w", "mine", artifact("Review", "self", "writer", "v2", approve("notes")))).await;
    create(a, manifest("Artifact", "w", "other", artifact("Review", "r", "checker", "v3", approve("draft")))).await;
    create(a, manifest("Artifact", "w", "refl", artifact("Reflection", "p", "writer", "r1", json!({})))).await;
}

async fn set_status(a: &Admission, kind: &str, name: &str, status: Value) -> Result<(), Error> {
    let mut current = a.store().graph.get(&domain::ObjectKey::new(kind, "w", name)).await.unwrap().to_value();
    current["status"] = status;
    a.update_status(&admin(), current).await.map(|_| ())
}

fn refusal(r: Result<(), Error>) -> String {
    match r {
        Err(e @ (Error::Forbidden { .. } | Error::Invalid { .. })) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn approval(verdict: &str, session: &str) -> Value {
    json!({"review": "Approved", "reviews": [
        {"artifactRef": {"name": verdict}, "session": {"name": session}, "verdict": "Approve", "digest": digest("notes")}]})
}

#[tokio::test]
async fn an_approval_needs_an_independent_verdict_on_exactly_these_bytes() {
    let f = fixture().await;
    let a = &f.admission;
    world(a).await;
    let bare = refusal(set_status(a, "Artifact", "out", json!({"review": "Approved"})).await);
    assert!(bare.contains("no review record approves it"), "{bare}");
    let own = refusal(set_status(a, "Artifact", "out", approval("mine", "self")).await);
    assert!(own.contains("agent `writer` may not review its own work"), "{own}");
    let other = refusal(set_status(a, "Artifact", "out", approval("other", "r")).await);
    assert!(other.contains("approves other bytes"), "{other}");
    let borrowed = refusal(set_status(a, "Artifact", "out", approval("ok", "self")).await);
    assert!(borrowed.contains("was not produced by self"), "{borrowed}");
    set_status(a, "Artifact", "out", approval("ok", "r")).await.expect("an independent approval is admitted");
    // A rejection needs no such proof: holding work back is always allowed.
    set_status(a, "Artifact", "ok", json!({"review": "Rejected"})).await.unwrap();
}

#[tokio::test]
async fn no_session_ends_without_a_reflection_or_a_visible_record_of_its_absence() {
    let f = fixture().await;
    let a = &f.admission;
    world(a).await;
    for phase in ["Succeeded", "Declined", "Failed"] {
        let r = refusal(set_status(a, "AgentSession", "p", json!({"phase": phase})).await);
        assert!(r.contains("without a reflection"), "{phase}: {r}");
    }
    let wrong = refusal(
        set_status(a, "AgentSession", "p", json!({"phase": "Succeeded", "reflectionRef": {"name": "out"}})).await,
    );
    assert!(wrong.contains("is not a reflection produced by"), "{wrong}");
    let someone_elses = refusal(
        set_status(a, "AgentSession", "r", json!({"phase": "Succeeded", "reflectionRef": {"name": "refl"}})).await,
    );
    assert!(someone_elses.contains("is not a reflection produced by"), "{someone_elses}");
    // Failing visibly without one is allowed; succeeding with one is.
    let missing = json!({"phase": "Failed", "conditions": [{"type": "Reflected", "status": "False", "reason": "ReflectionMissing"}]});
    set_status(a, "AgentSession", "self", missing).await.unwrap();
    set_status(a, "AgentSession", "p", json!({"phase": "Succeeded", "reflectionRef": {"name": "refl"}})).await.unwrap();
}

#[tokio::test]
async fn review_cannot_be_switched_off() {
    let f = fixture().await;
    let a = &f.admission;
    let wf = manifest("Workflow", "w", "wf", json!({"steps": [{"name": "s", "review": {"required": false}}]}));
    let r = refusal(a.create(&admin(), wf).await.map(|_| ()));
    assert!(r.contains("spec.steps[0].review.required is false, but review is mandatory"), "{r}");
}

#[tokio::test]
async fn a_session_delegates_only_what_it_holds_and_always_says_what() {
    let f = fixture().await;
    let a = &f.admission;
    world(a).await;
    let permit = r#"permit(principal is r5e::Session, action == r5e::Action::"create", resource is r5e::Node);"#;
    create(a, manifest("Policy", "w", "plan", json!({"cedar": permit}))).await;
    let held = Authority {
        capabilities: ["notes.write".to_string()].into(),
        scope: ["r5e:Node/*".to_string()].into(),
        ..Default::default()
    };
    let session = Identity::session("w", "p", held);
    let mut silent = manifest("Node", "w", "inherits", json!({"graphRef": {"name": "g"}}));
    silent["metadata"]["labels"] = json!({"r5e.ai/planned-by": "p"});
    let r = refusal(a.create(&session, silent).await.map(|_| ()));
    assert!(r.contains("must state spec.authority"), "{r}");
    let mut narrower = manifest(
        "Node",
        "w",
        "part",
        json!({"graphRef": {"name": "g"}, "authority": {"capabilities": ["notes.write"]}}),
    );
    narrower["metadata"]["labels"] = json!({"r5e.ai/planned-by": "p"});
    a.create(&session, narrower).await.expect("a node within the session's authority is admitted");
}
