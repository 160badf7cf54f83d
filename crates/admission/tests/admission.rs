//! Admission, stage by stage, by trying to get around each one.

use domain::{Authority, ObjectKey};
use r5e_admission::{Admission, Error, Identity, Operation, Stage};
use serde_json::{Value, json};
use storage::EventQuery;

mod common;
use common::{admin, fixture, manifest};

fn graph(ns: &str, name: &str, caps: &[&str]) -> Value {
    manifest(
        "Graph",
        ns,
        name,
        json!({"description": "d", "authority": {"capabilities": caps, "budgets": {"tool_calls": 100}}}),
    )
}

fn node(ns: &str, name: &str, graph: &str, authority: Option<Value>) -> Value {
    let mut spec = json!({"graphRef": {"name": graph}, "description": "n"});
    if let Some(a) = authority {
        spec["authority"] = a;
    }
    manifest("Node", ns, name, spec)
}

fn task(ns: &str, name: &str, node: &str, graph: &str, caps: &[&str], calls: u64) -> Value {
    manifest(
        "Task",
        ns,
        name,
        json!({"nodeRef": {"name": node}, "graphRef": {"name": graph}, "step": "write",
               "authority": {"capabilities": caps, "budgets": {"tool_calls": calls}}}),
    )
}

async fn decisions(a: &Admission) -> Vec<Value> {
    a.store()
        .events
        .query(&EventQuery { types: vec!["admission.decision".into()], ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|e| json!({"actor": e.actor, "subject": e.subject, "verdict": e.data["verdict"], "stage": e.data["stage"], "policy_set": e.data["policy_set"]}))
        .collect()
}

fn stage_of(e: &Error) -> Stage {
    match e {
        Error::Invalid { stage, .. } | Error::Forbidden { stage, .. } => *stage,
        Error::Storage(e) => panic!("expected an admission refusal, got {e}"),
    }
}

#[tokio::test]
async fn an_allowed_write_and_its_decision_commit_together() {
    let f = fixture().await;
    let g = f.admission.create(&admin(), graph("a", "g", &["fs.read"])).await.unwrap();
    let events = f.admission.store().events.query(&EventQuery::default()).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].type_.as_str(), events[1].type_.as_str()), ("admission.decision", "resource.created"));
    assert_eq!(events[0].data["verdict"], "allow");
    assert_eq!(events[0].data["operation"], "create");
    assert_eq!(events[0].data["policies"], json!(["r5e:admins"]));
    assert_eq!(events[0].actor, "user:root");
    assert_eq!(events[1].actor, "user:root");
    assert_eq!(g.resource_version(), Some(2));
    let digest = events[0].data["policy_set"].as_str().unwrap();
    assert_eq!(digest, policy::PolicySet::admins_only().digest().to_string());
}

#[tokio::test]
async fn the_schema_stage_names_the_field_and_nothing_but_the_decision_is_written() {
    let f = fixture().await;
    let mut bad = graph("a", "g", &[]);
    bad["spec"]["colour"] = json!("red");
    let err = f.admission.create(&admin(), bad).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Schema);
    assert!(err.to_string().contains("spec.colour"), "{err}");
    let unknown =
        json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Gadget", "metadata": {"name": "x", "namespace": "a"}});
    let err = f.admission.create(&admin(), unknown).await.unwrap_err();
    assert!(err.to_string().contains("unknown kind `Gadget`"), "{err}");
    let policy = manifest("Policy", "a", "broken", json!({"cedar": "permit(principal, action"}));
    let err = f.admission.create(&admin(), policy).await.unwrap_err();
    assert!(err.to_string().contains("spec.cedar: policy a/broken is not valid Cedar"), "{err}");

    assert!(matches!(
        f.admission.store().graph.get(&ObjectKey::new("Graph", "a", "g")).await,
        Err(storage::Error::NotFound(_))
    ));
    let d = decisions(&f.admission).await;
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d["verdict"] == "deny" && d["stage"] == "schema"));
    assert_eq!(f.admission.store().events.head().await.unwrap().seq, 3, "a refusal leaves only its decision");
}

#[tokio::test]
async fn the_refs_stage_refuses_dangling_references() {
    let f = fixture().await;
    let err = f.admission.create(&admin(), node("a", "n", "missing", None)).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Refs);
    assert!(err.to_string().contains("spec.graphRef: Graph/a/missing does not exist"), "{err}");
    f.admission.create(&admin(), graph("a", "g", &["fs.read"])).await.unwrap();
    let mut owned = node("a", "n", "g", None);
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "name": "g", "uid": "00000000-0000-7000-8000-000000000000"}]);
    let err = f.admission.create(&admin(), owned).await.unwrap_err();
    assert!(err.to_string().contains("metadata.ownerReferences[0].uid"), "{err}");
    f.admission.create(&admin(), node("a", "n", "g", None)).await.unwrap();
}

#[tokio::test]
async fn authority_only_narrows_from_graph_to_node_to_task_to_session() {
    let f = fixture().await;
    let a = admin();
    f.admission.create(&a, graph("w", "g", &["fs.read", "fs.write"])).await.unwrap();
    // A Node may not take a capability its Graph lacks, nor lift its budget.
    let wide = json!({"capabilities": ["fs.read", "deploy"], "budgets": {"tool_calls": 100}});
    let err = f.admission.create(&a, node("w", "n", "g", Some(wide))).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Refs);
    assert!(err.to_string().contains("exceeds the authority of Graph/w/g: capability `deploy`"), "{err}");
    let unlimited = json!({"capabilities": ["fs.read"]});
    let err = f.admission.create(&a, node("w", "n", "g", Some(unlimited))).await.unwrap_err();
    assert!(err.to_string().contains("budget `tool_calls` is unlimited"), "{err}");
    let narrow = json!({"capabilities": ["fs.read"], "budgets": {"tool_calls": 10}});
    f.admission.create(&a, node("w", "n", "g", Some(narrow))).await.unwrap();
    // A Task derives from its Node, which is narrower than the Graph.
    let err = f.admission.create(&a, task("w", "t", "n", "g", &["fs.write"], 5)).await.unwrap_err();
    assert!(err.to_string().contains("exceeds the authority of Node/w/n: capability `fs.write`"), "{err}");
    let err = f.admission.create(&a, task("w", "t", "n", "g", &["fs.read"], 11)).await.unwrap_err();
    assert!(err.to_string().contains("budget `tool_calls` of 11 exceeds the parent's 10"), "{err}");
    f.admission.create(&a, task("w", "t", "n", "g", &["fs.read"], 10)).await.unwrap();
    // A Node without its own authority inherits: its Tasks answer to the Graph.
    f.admission.create(&a, node("w", "open", "g", None)).await.unwrap();
    f.admission.create(&a, task("w", "t2", "open", "g", &["fs.write"], 100)).await.unwrap();
    // Widening by update is refused too.
    let mut t = f.admission.store().graph.get(&ObjectKey::new("Task", "w", "t")).await.unwrap().to_value();
    t["spec"]["authority"]["capabilities"] = json!(["fs.read", "fs.write"]);
    let err = f.admission.update(&a, t).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Refs);
    // A session derives from its Task.
    let session = |caps: &[&str]| {
        manifest(
            "AgentSession",
            "w",
            "s",
            json!({"taskRef": {"name": "t"}, "agentRef": {"name": "writer"},
                  "authority": {"capabilities": caps, "budgets": {"tool_calls": 1}}}),
        )
    };
    f.admission
        .create(&a, manifest("Harness", "w", "h", json!({"type": "command", "command": {"program": "true"}})))
        .await
        .unwrap();
    f.admission.create(&a, manifest("Agent", "w", "writer", json!({"harnessRef": {"name": "h"}}))).await.unwrap();
    let err = f.admission.create(&a, session(&["fs.write"])).await.unwrap_err();
    assert!(err.to_string().contains("exceeds the authority of Task/w/t"), "{err}");
    f.admission.create(&a, session(&["fs.read"])).await.unwrap();
}

#[tokio::test]
async fn policy_decides_and_a_policy_change_is_itself_admitted() {
    let f = fixture().await;
    let alice = Identity::user("alice", &["team-a"]);
    let bob = Identity::user("bob", &["team-b"]);
    // No policy: only administrators.
    let err = f.admission.create(&alice, graph("a", "g", &[])).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    assert!(err.to_string().contains("only members of group `admins`"), "{err}");
    // Changing policy is a write like any other: alice cannot grant herself anything.
    let grant = manifest(
        "Policy",
        "a",
        "team-a-graphs",
        json!({"cedar": "permit(principal in r5e::Group::\"team-a\", action == r5e::Action::\"create\", resource is r5e::Graph) when { resource.namespace == \"a\" };"}),
    );
    let err = f.admission.create(&alice, grant.clone()).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    f.admission.create(&admin(), grant).await.unwrap();
    f.admission.create(&alice, graph("a", "g", &[])).await.unwrap();
    let err = f.admission.create(&bob, graph("a", "g2", &[])).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    let err = f.admission.create(&alice, graph("b", "g", &[])).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    // Every decision names the policy set in force, which changed with the Policy.
    let d = decisions(&f.admission).await;
    let sets: Vec<&str> = d.iter().map(|d| d["policy_set"].as_str().unwrap()).collect();
    assert_eq!(sets[0], sets[1]);
    assert_eq!(sets[1], sets[2], "the policy write itself is judged by the set before it");
    assert_ne!(sets[2], sets[3]);
    assert_eq!(d.iter().filter(|d| d["verdict"] == "allow").count(), 2);
}

#[tokio::test]
async fn policies_about_labels_and_the_graph_of_a_task() {
    let f = fixture().await;
    let a = admin();
    f.admission
        .create(
            &a,
            manifest(
                "Policy",
                "p",
                "rules",
                json!({"cedar": r#"
            forbid(principal, action, resource is r5e::Guideline) when { resource.labels has "secret" };
            forbid(principal, action == r5e::Action::"create", resource is r5e::Task)
              when { resource.spec.authority.capabilities.contains("deploy") }
              unless { resource has graph && resource.graph.labels has "approved" };"#}),
            ),
        )
        .await
        .unwrap();
    let mut secret = manifest("Guideline", "p", "keys", json!({"content": "the keys are ..."}));
    secret["metadata"]["labels"] = json!({"secret": "true"});
    let err = f.admission.create(&a, secret).await.unwrap_err();
    assert!(err.to_string().contains("forbidden by p/rules#0"), "{err}");

    f.admission.create(&a, graph("p", "g", &["deploy", "fs.read"])).await.unwrap();
    f.admission.create(&a, node("p", "n", "g", None)).await.unwrap();
    let err = f.admission.create(&a, task("p", "ship", "n", "g", &["deploy"], 1)).await.unwrap_err();
    assert!(err.to_string().contains("forbidden by p/rules#1"), "{err}");
    f.admission.create(&a, task("p", "read", "n", "g", &["fs.read"], 1)).await.unwrap();
    let mut g = f.admission.store().graph.get(&ObjectKey::new("Graph", "p", "g")).await.unwrap().to_value();
    g["metadata"]["labels"] = json!({"approved": "2026-11-26"});
    f.admission.update(&a, g).await.unwrap();
    f.admission.create(&a, task("p", "ship", "n", "g", &["deploy"], 1)).await.unwrap();
}

#[tokio::test]
async fn the_identity_gate_keeps_actors_in_their_place() {
    let f = fixture().await;
    let a = admin();
    // A cluster-wide Policy, so that what refuses below is the identity gate.
    f.admission
        .create(&a, manifest("Policy", "r5e-system", "open", json!({"cedar": "permit(principal, action, resource);"})))
        .await
        .unwrap();
    f.admission.create(&a, graph("w", "g", &["fs.read", "fs.write"])).await.unwrap();
    // A service account acts only in its namespace.
    let ci = Identity::service_account("w", "ci", &[]);
    f.admission.create(&ci, node("w", "n", "g", None)).await.unwrap();
    let err = f.admission.create(&ci, graph("other", "g", &[])).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Identity);
    assert!(err.to_string().contains("may act only in namespace `w`"), "{err}");
    // A session never authorises itself: no sessions, policies, capabilities or kinds...
    let held = Authority {
        capabilities: ["fs.read".to_string()].into(),
        scope: ["r5e:Node/split*".to_string()].into(),
        budgets: [("tool_calls".to_string(), 10), ("nodes".to_string(), 2)].into(),
        ..Authority::default()
    };
    let session = Identity::session("w", "s1", held);
    for (kind, spec) in [
        ("Policy", json!({"cedar": "permit(principal, action, resource);"})),
        ("Capability", json!({})),
        ("AgentSession", json!({"taskRef": {"name": "t"}, "agentRef": {"name": "x"}, "authority": {}})),
    ] {
        let err = f.admission.create(&session, manifest(kind, "w", "mine", spec)).await.unwrap_err();
        assert!(matches!(stage_of(&err), Stage::Identity | Stage::Refs), "{kind}: {err}");
    }
    let err = f
        .admission
        .create(&session, manifest("Policy", "w", "mine", json!({"cedar": "permit(principal, action, resource);"})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a session never authorises itself"), "{err}");
    // ...and grants no more than it holds, even where the Graph would allow it.
    let planned = |name: &str, authority: Value| {
        let mut n = node("w", name, "g", Some(authority));
        n["metadata"]["labels"] = json!({"r5e.ai/planned-by": "s1"});
        n
    };
    let wide = json!({"capabilities": ["fs.read", "fs.write"], "budgets": {"tool_calls": 10, "nodes": 2}});
    let err = f.admission.create(&session, planned("split", wide)).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Identity);
    assert!(err.to_string().contains("may not grant more than it holds: capability `fs.write`"), "{err}");
    let within = json!({"capabilities": ["fs.read"], "budgets": {"tool_calls": 5, "nodes": 0}});
    // It writes only what its scope covers...
    let err = f.admission.create(&session, planned("elsewhere", within.clone())).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Identity);
    assert!(err.to_string().contains("`r5e:Node/elsewhere` is outside its scope"), "{err}");
    // ...names itself on every Node it plans...
    let unlabelled = node("w", "split-x", "g", Some(within.clone()));
    let err = f.admission.create(&session, unlabelled).await.unwrap_err();
    assert!(err.to_string().contains("must carry the label r5e.ai/planned-by=s1"), "{err}");
    // ...and plans no more Nodes than its `nodes` budget, however it asks.
    f.admission.create(&session, planned("split", within.clone())).await.unwrap();
    f.admission.create(&session, planned("split-2", within.clone())).await.unwrap();
    let err = f.admission.create(&session, planned("split-3", within)).await.unwrap_err();
    assert!(err.to_string().contains("budget `nodes` of 2 is spent (2 used, 1 more asked)"), "{err}");
    let d = decisions(&f.admission).await;
    assert!(d.iter().any(|d| d["actor"] == "session:w/s1" && d["verdict"] == "deny" && d["stage"] == "identity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_node_creates_of_one_session_do_not_overspend_its_nodes_budget() {
    let f = fixture().await;
    let a = admin();
    f.admission
        .create(&a, manifest("Policy", "r5e-system", "open", json!({"cedar": "permit(principal, action, resource);"})))
        .await
        .unwrap();
    f.admission.create(&a, graph("w", "g", &["fs.read"])).await.unwrap();
    let held = Authority {
        capabilities: ["fs.read".to_string()].into(),
        scope: ["r5e:Node/*".to_string()].into(),
        budgets: [("tool_calls".to_string(), 10), ("nodes".to_string(), 3)].into(),
        ..Authority::default()
    };
    let session = Identity::session("w", "s1", held);
    let within = json!({"capabilities": ["fs.read"], "budgets": {"tool_calls": 1, "nodes": 0}});
    let admission = std::sync::Arc::new(f.admission);
    let creates: Vec<_> = (0..16)
        .map(|i| {
            let (admission, session) = (admission.clone(), session.clone());
            let mut n = node("w", &format!("part-{i}"), "g", Some(within.clone()));
            n["metadata"]["labels"] = json!({"r5e.ai/planned-by": "s1"});
            tokio::spawn(async move { admission.create(&session, n).await })
        })
        .collect();
    let mut made = 0;
    for c in creates {
        match c.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert!(e.to_string().contains("budget `nodes` of 3 is spent"), "{e}"),
        }
    }
    assert_eq!(made, 3, "16 creates at once, a budget of 3");
}

#[tokio::test]
async fn artifacts_are_immutable_and_status_goes_through_its_own_write() {
    let f = fixture().await;
    let a = admin();
    let digest = domain::Digest::of(b"notes").to_string();
    let art = manifest(
        "Artifact",
        "w",
        "out",
        json!({"digest": digest, "size": 5, "mediaType": "text/plain", "artifactType": "Output",
        "producedBy": {"session": {"name": "s"}, "agent": {"name": "writer"}}}),
    );
    // References to a session and agent that do not exist are refused first.
    let err = f.admission.create(&a, art.clone()).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Refs);
    f.admission
        .create(&a, manifest("Harness", "w", "h", json!({"type": "command", "command": {"program": "true"}})))
        .await
        .unwrap();
    f.admission.create(&a, manifest("Agent", "w", "writer", json!({"harnessRef": {"name": "h"}}))).await.unwrap();
    let mut producer = art.clone();
    producer["spec"]["producedBy"] = json!({"session": {"name": "s"}, "agent": {"name": "writer"}});
    // Create the producing session's chain so the references resolve.
    f.admission.create(&a, graph("w", "g", &["fs.read"])).await.unwrap();
    f.admission.create(&a, node("w", "n", "g", None)).await.unwrap();
    f.admission.create(&a, task("w", "t", "n", "g", &["fs.read"], 1)).await.unwrap();
    f.admission
        .create(
            &a,
            manifest(
                "AgentSession",
                "w",
                "s",
                json!({"taskRef": {"name": "t"}, "agentRef": {"name": "writer"},
            "authority": {"capabilities": ["fs.read"], "budgets": {"tool_calls": 1}}}),
            ),
        )
        .await
        .unwrap();
    let stored = f.admission.create(&a, producer).await.unwrap();
    let mut changed = stored.to_value();
    changed["spec"]["size"] = json!(6);
    let err = f.admission.update(&a, changed).await.unwrap_err();
    assert!(err.to_string().contains("an Artifact's spec never changes"), "{err}");
    let mut status = stored.to_value();
    // (Approving needs an independent verdict: tests/gates.rs.)
    status["status"] = json!({"review": "Rejected"});
    let reviewed = f.admission.update_status(&a, status).await.unwrap();
    assert_eq!(reviewed.status["review"], "Rejected");
    assert_eq!(reviewed.spec, stored.spec);
}

#[tokio::test]
async fn custom_kinds_are_validated_like_built_ins() {
    let f = fixture().await;
    let a = admin();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["cronSpec"], "properties": {
                         "cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}}}}}}]}
    });
    f.admission.create(&a, crd).await.unwrap();
    let tab = |spec: Value| json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "nightly", "namespace": "w"}, "spec": spec});
    let err = f.admission.create(&a, tab(json!({"replicas": "three"}))).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Schema);
    assert!(err.to_string().contains("spec.cronSpec") && err.to_string().contains("spec.replicas"), "{err}");
    f.admission.create(&a, tab(json!({"cronSpec": "0 3 * * *", "replicas": 1}))).await.unwrap();
}

#[tokio::test]
async fn broken_stored_policies_fail_closed_and_review_explains_without_writing() {
    let f = fixture().await;
    // Written behind admission's back (as a restore from a bad backup could): not valid Cedar.
    let broken = serde_json::from_value(manifest("Policy", "x", "bad", json!({"cedar": "permit(principal,"}))).unwrap();
    f.admission.store().graph.create(broken, "system").await.unwrap();
    let err = f.admission.create(&admin(), graph("a", "g", &[])).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    assert!(err.to_string().contains("nothing is permitted until the stored policies are fixed"), "{err}");
    // Deleting the bad policy is a write too; with the set broken even that is refused, so an
    // operator repairs it with the store directly and admission recovers at once.
    f.admission.store().graph.delete(&ObjectKey::new("Policy", "x", "bad"), None, "system").await.unwrap();
    let before = f.admission.store().events.head().await.unwrap().seq;
    let review = f.admission.review(&Identity::user("eve", &[]), Operation::Create, graph("a", "g", &[])).await;
    assert!(matches!(review.outcome, Err(Error::Forbidden { stage: Stage::Policy, .. })));
    let review = f.admission.review(&admin(), Operation::Create, graph("a", "g", &[])).await;
    assert_eq!(review.outcome, Ok(()));
    assert_eq!(review.policies, ["r5e:admins"]);
    assert_eq!(f.admission.store().events.head().await.unwrap().seq, before, "a review writes nothing");
}

#[tokio::test]
async fn reads_are_decided_by_policy_and_only_refusals_are_recorded() {
    let f = fixture().await;
    let key = ObjectKey::new("Graph", "a", "");
    f.admission.authorize_request(&admin(), policy::Action::List, &key).await.unwrap();
    assert_eq!(f.admission.store().events.head().await.unwrap().seq, 0);
    let err = f
        .admission
        .authorize_request(&Identity::user("eve", &[]), policy::Action::Get, &ObjectKey::new("Graph", "a", "g"))
        .await
        .unwrap_err();
    assert_eq!(stage_of(&err), Stage::Policy);
    let ci = Identity::service_account("w", "ci", &["admins"]);
    let err = f.admission.authorize_request(&ci, policy::Action::Watch, &key).await.unwrap_err();
    assert_eq!(stage_of(&err), Stage::Identity);
    let d = decisions(&f.admission).await;
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d["verdict"] == "deny"));
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_on_the_record() {
    let f = fixture().await;
    let a = admin();
    let g = f.admission.create(&a, graph("w", "g", &["fs.read"])).await.unwrap();
    let owned_by = |owner: &domain::Resource| {
        json!([{"apiVersion": "r5e.ai/v1alpha1", "kind": owner.kind, "name": owner.metadata.name,
                "uid": owner.metadata.uid, "controller": true}])
    };
    let mut n = node("w", "n", "g", None);
    n["metadata"]["ownerReferences"] = owned_by(&g);
    let n = f.admission.create(&a, n).await.unwrap();
    let mut t = task("w", "t", "n", "g", &["fs.read"], 1);
    t["metadata"]["ownerReferences"] = owned_by(&n);
    f.admission.create(&a, t).await.unwrap();
    f.admission.create(&a, node("w", "free", "g", None)).await.unwrap();

    f.admission.delete(&a, &ObjectKey::new("Graph", "w", "g"), None).await.unwrap();
    let gone = |kind: &str, name: &str| {
        let key = ObjectKey::new(kind, "w", name);
        let store = f.admission.store().clone();
        async move { matches!(store.graph.get(&key).await, Err(storage::Error::NotFound(_))) }
    };
    assert!(gone("Node", "n").await && gone("Task", "t").await, "owned resources go with their owner");
    assert!(!gone("Node", "free").await, "a resource that only references the Graph stays");
    let d = decisions(&f.admission).await;
    let collected: Vec<&str> = d
        .iter()
        .filter(|d| d["actor"] == "user:system:garbage-collector")
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    assert_eq!(collected, ["Node/w/n", "Task/w/t"]);
}
