//! Tests of the registry: a realistic manifest of every built-in kind, lookups by name, the
//! schemas themselves, printer columns and reference edges. [`manifest`] is shared with the
//! validation tests in `crate::schema`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::resource::OWNER_EDGE;
use crate::schema::validate;

/// A digest in examples.
pub(crate) const DIGEST_A: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// Another digest in examples.
pub(crate) const DIGEST_B: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const API: &str = "r5e.ai/v1alpha1";

/// A minimal but realistic manifest of the built-in kind `kind`.
pub(crate) fn manifest(kind: &str) -> Value {
    let meta = |name: &str| json!({ "name": name, "namespace": "team-a" });
    let (metadata, spec, status) = match kind {
        "Graph" => (
            json!({ "name": "release-notes", "namespace": "team-a", "labels": { "app": "docs" } }),
            json!({
                "description": "Write the 2.4 release notes",
                "authority": {
                    "capabilities": ["fs.read", "fs.write", "tool.*"],
                    "scope": ["repo:acme/web/*"],
                    "budgets": { "tokens": 2000000, "tool_calls": 500 },
                    "expiresAt": "2030-01-01T00:00:00Z"
                },
                "policyRefs": [{ "name": "no-prod-writes" }],
                "guidelineRefs": [{ "name": "house-style" }],
                "maxParallelNodes": 4
            }),
            json!({ "phase": "Running", "nodes": { "total": 3, "running": 1, "pending": 2 } }),
        ),
        "Node" => (
            json!({
                "name": "draft", "namespace": "team-a",
                "ownerReferences": [{ "apiVersion": API, "kind": "Graph", "name": "release-notes",
                                      "uid": "0190f5c2-7d7a-7cc0-8000-000000000001", "controller": true }]
            }),
            json!({
                "graphRef": { "name": "release-notes" },
                "description": "Draft the notes from the merged changes",
                "dependsOn": ["collect-changes", "collect-issues"],
                "workflowRef": { "name": "write-and-review", "namespace": "shared" },
                "inputs": { "version": "2.4.0", "audience": ["users", "operators"] },
                "authority": { "capabilities": ["fs.read"], "budgets": { "tokens": 200000, "tool_calls": 100 },
                               "expiresAt": "2029-06-01T00:00:00Z" }
            }),
            Value::Null,
        ),
        "Task" => (
            meta("draft-write-1"),
            json!({
                "nodeRef": { "name": "draft" },
                "graphRef": { "name": "release-notes" },
                "step": "write",
                "instructions": "Write the notes in Markdown.",
                "agentSelector": { "matchLabels": { "r5e.ai/role": "writer" } },
                "authority": { "capabilities": ["fs.read"], "budgets": { "tokens": 50000, "tool_calls": 20 } },
                "inputs": [{ "name": "changes", "digest": DIGEST_A }],
                "maxAttempts": 2,
                "review": { "reviewerSelector": { "matchExpressions": [
                    { "key": "r5e.ai/role", "operator": "In", "values": ["reviewer"] } ] } }
            }),
            json!({
                "observedGeneration": 1, "phase": "Reviewing", "attempts": 1, "reviewRound": 1,
                "agentRef": { "name": "writer" },
                "sessionRefs": [{ "name": "draft-write-1-a1" }],
                "nextRetryAt": "2026-03-01T12:00:00Z",
                "conditions": [{ "type": "Reviewed", "status": "False", "reason": "InReview" }]
            }),
        ),
        "AgentSession" => (
            meta("draft-write-1-a1"),
            json!({
                "taskRef": { "name": "draft-write-1" },
                "agentRef": { "name": "writer" },
                "role": "Producer",
                "lineage": ["0190f5c2-7d7a-7cc0-8000-00000000000a"],
                "authority": { "capabilities": ["fs.read"], "budgets": { "tokens": 50000 } },
                "model": { "provider": "anthropic", "name": "claude-sonnet", "version": "4.5" },
                "guidelineDigests": [DIGEST_B],
                "attempt": 1
            }),
            json!({
                "phase": "Declined",
                "lease": { "holder": "r5e-0:4242", "acquiredAt": "2026-03-01T12:00:00Z",
                           "renewedAt": "2026-03-01T12:00:10Z", "expiresAt": "2026-03-01T12:00:40Z" },
                "startedAt": "2026-03-01T12:00:00Z",
                "decline": { "reason": "NeedsSplitting", "message": "two unrelated releases" },
                "reflectionRef": { "name": "draft-write-1-a1-reflection" },
                "usage": { "tokens": 1200, "tool_calls": 3 },
                "transcriptDigest": DIGEST_A
            }),
        ),
        "Workflow" => (
            meta("write-and-review"),
            json!({
                "description": "Write, then check facts",
                "steps": [
                    { "name": "write", "instructions": "Write the draft.",
                      "agentSelector": { "matchLabels": { "r5e.ai/role": "writer" } },
                      "toolRefs": [{ "name": "git-log" }], "timeoutSeconds": 600 },
                    { "name": "fact-check", "instructions": "Check every claim against the log.",
                      "review": { "required": true, "maxRounds": 3 },
                      "toolRefs": [{ "name": "git-log" }, { "name": "web-search", "namespace": "shared" }] }
                ],
                "guidelineRefs": [{ "name": "house-style" }]
            }),
            Value::Null,
        ),
        "Agent" => (
            json!({ "name": "writer", "namespace": "team-a", "labels": { "r5e.ai/role": "writer" } }),
            json!({
                "description": "Writes prose from change logs",
                "role": "Task",
                "harnessRef": { "name": "claude" },
                "model": { "provider": "anthropic", "name": "claude-sonnet" },
                "capabilities": ["fs.read", "tool.git-log"],
                "maxConcurrentSessions": 2
            }),
            json!({ "phase": "Ready", "activeSessions": 1 }),
        ),
        "Harness" => (
            meta("scripted"),
            json!({
                "type": "model",
                "model": { "provider": "scripted", "model": "echo",
                           "script": [{ "say": "done" }], "maxTurns": 4 }
            }),
            json!({ "phase": "Ready" }),
        ),
        "Tool" => (
            meta("git-log"),
            json!({
                "description": "The commit log between two refs",
                "inputSchema": { "type": "object", "required": ["from"],
                                 "properties": { "from": { "type": "string" }, "to": { "type": "string" } } },
                "capability": "tool.git-log",
                "command": { "program": "git", "args": ["log", "--oneline"], "timeoutSeconds": 30 }
            }),
            Value::Null,
        ),
        "Artifact" => (
            meta("draft-write-a1-out-1"),
            json!({
                "digest": DIGEST_A,
                "size": 4096,
                "mediaType": "text/markdown",
                "artifactType": "Output",
                "producedBy": {
                    "session": { "name": "draft-write-1-a1" },
                    "agent": { "name": "writer" },
                    "model": { "provider": "anthropic", "name": "claude-sonnet" },
                    "lineage": ["0190f5c2-7d7a-7cc0-8000-00000000000a"]
                },
                "inputs": [{ "name": "changes", "digest": DIGEST_B }],
                "taskRef": { "name": "draft-write-1" }
            }),
            json!({
                "review": "Approved",
                "reviews": [{ "artifactRef": { "name": "draft-write-1-r1-review" },
                              "session": { "name": "draft-write-1-r1" },
                              "verdict": "Approve", "digest": DIGEST_B }]
            }),
        ),
        "Capability" => (
            meta("tool.git-log"),
            json!({ "description": "Read the commit log", "risk": "Low", "tools": ["git-log"] }),
            Value::Null,
        ),
        "Guideline" => (
            meta("house-style"),
            json!({
                "description": "How we write",
                "content": "Use the active voice. Name the user-visible change first.",
                "appliesTo": { "agentSelector": { "matchLabels": { "r5e.ai/role": "writer" } },
                               "workflows": ["write-and-review"] }
            }),
            json!({ "digest": DIGEST_B }),
        ),
        "Policy" => (
            meta("no-prod-writes"),
            json!({
                "description": "Agents never write to production",
                "cedar": "forbid(principal, action == Action::\"update\", resource) when { resource.namespace == \"prod\" };"
            }),
            json!({ "digest": DIGEST_A, "valid": true }),
        ),
        "GANRun" => (
            meta("tagline"),
            json!({
                "graphRef": { "name": "release-notes" },
                "objective": "A one-line tagline for the release",
                "generatorRef": { "name": "writer" },
                "discriminatorRef": { "name": "critic" },
                "maxRounds": 4,
                "threshold": 0.9
            }),
            json!({ "phase": "Running", "round": 2, "scores": [0.4, 0.7] }),
        ),
        "WebhookSubscription" => (
            meta("audit-sink"),
            json!({
                "url": "https://audit.example.com/r5e",
                "eventTypes": ["admission.decision"],
                "selector": { "matchLabels": { "app": "docs" } },
                "secretEnv": "AUDIT_SINK_SECRET",
                "fromSeq": 1
            }),
            json!({ "lastDeliveredSeq": 41, "failures": 0 }),
        ),
        "CustomResourceDefinition" => {
            let crd = crontab_crd();
            (crd["metadata"].clone(), crd["spec"].clone(), Value::Null)
        }
        other => panic!("no example manifest of {other}"),
    };
    let info = find(kind).expect("a built-in kind");
    let mut out = json!({ "apiVersion": info.api_version(), "kind": kind, "metadata": metadata, "spec": spec });
    if !status.is_null() {
        out["status"] = status;
    }
    out
}

/// The CronTab CRD of the Kubernetes documentation, with the extra fields real manifests carry.
pub(crate) fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "crontabs.stable.example.com",
            "annotations": { "controller-gen.kubebuilder.io/version": "v0.16.0" }
        },
        "spec": {
            "group": "stable.example.com",
            "versions": [
                { "name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                  "deprecationWarning": "stable.example.com/v1beta1 CronTab is deprecated",
                  "schema": { "openAPIV3Schema": { "type": "object" } } },
                { "name": "v1", "served": true, "storage": true,
                  "schema": { "openAPIV3Schema": {
                      "type": "object",
                      "properties": {
                          "spec": { "type": "object", "required": ["cronSpec"], "properties": {
                              "cronSpec": { "type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$" },
                              "image": { "type": "string" },
                              "replicas": { "type": "integer", "minimum": 1, "maximum": 10 },
                              "note": { "type": "string", "nullable": true }
                          } },
                          "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                      }
                  } },
                  "subresources": { "status": {}, "scale": { "specReplicasPath": ".spec.replicas",
                                                             "statusReplicasPath": ".status.replicas" } },
                  "additionalPrinterColumns": [
                      { "name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec" },
                      { "name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1 },
                      { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
                  ] }
            ],
            "scope": "Namespaced",
            "names": { "plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                       "shortNames": ["ct"], "listKind": "CronTabList", "categories": ["all"] },
            "conversion": { "strategy": "None" },
            "preserveUnknownFields": false
        }
    })
}

fn resource(value: Value) -> Resource {
    serde_json::from_value(value).expect("a resource")
}

#[test]
fn every_builtin_manifest_validates() {
    for info in builtin() {
        let m = manifest(info.kind);
        assert_eq!(validate(info, &m), Ok(()), "{}", info.kind);
    }
}

/// Parses spec and status into the typed structs, writes them back out, and validates that.
fn round_trip<S: Serialize + DeserializeOwned, T: Serialize + DeserializeOwned>(kind: &str) {
    let mut m = manifest(kind);
    let spec: S = serde_json::from_value(m["spec"].clone()).unwrap_or_else(|e| panic!("{kind} spec: {e}"));
    m["spec"] = serde_json::to_value(&spec).unwrap();
    let status = m.get("status").cloned().unwrap_or_else(|| json!({}));
    let status: T = serde_json::from_value(status).unwrap_or_else(|e| panic!("{kind} status: {e}"));
    m["status"] = serde_json::to_value(&status).unwrap();
    assert_eq!(validate(find(kind).unwrap(), &m), Ok(()), "{kind} after a typed round trip");
}

#[test]
fn typed_structs_agree_with_the_schemas() {
    use super::{agents::*, artifact::*, crd::*, extra::*, governance::*, task::*, work::*};
    round_trip::<GraphSpec, GraphStatus>("Graph");
    round_trip::<NodeSpec, NodeStatus>("Node");
    round_trip::<TaskSpec, TaskStatus>("Task");
    round_trip::<AgentSessionSpec, AgentSessionStatus>("AgentSession");
    round_trip::<WorkflowSpec, WorkflowStatus>("Workflow");
    round_trip::<AgentSpec, AgentStatus>("Agent");
    round_trip::<HarnessSpec, HarnessStatus>("Harness");
    round_trip::<ToolSpec, ToolStatus>("Tool");
    round_trip::<ArtifactSpec, ArtifactStatus>("Artifact");
    round_trip::<CapabilitySpec, CapabilityStatus>("Capability");
    round_trip::<GuidelineSpec, GuidelineStatus>("Guideline");
    round_trip::<PolicySpec, PolicyStatus>("Policy");
    round_trip::<GanRunSpec, GanRunStatus>("GANRun");
    round_trip::<WebhookSubscriptionSpec, WebhookSubscriptionStatus>("WebhookSubscription");
    round_trip::<CustomResourceDefinitionSpec, CustomResourceDefinitionStatus>("CustomResourceDefinition");

    let task: TaskSpec = serde_json::from_value(manifest("Task")["spec"].clone()).unwrap();
    assert_eq!(task.review.max_rounds, 2, "defaults apply");
    assert!(task.review.required);
    let policy: PolicySpec =
        serde_json::from_value(json!({ "cedar": "permit(principal, action, resource);" })).unwrap();
    assert!(policy.enabled);
}

/// Every property of every schema has a description (they become `kubectl explain` and docs).
fn assert_described(kind: &str, at: &str, schema: &Value) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let described = prop.get("description").is_some()
                || prop.get("$ref").is_some()
                || ["apiVersion", "kind", "metadata", "spec", "status"].contains(&name.as_str());
            assert!(described, "{kind}: {at}.{name} has no description");
        }
    }
}

#[test]
fn schemas_compile_and_describe_every_field() {
    for info in builtin() {
        let schema = (info.schema)();
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", info.kind));
        assert_eq!(schema["properties"]["kind"]["const"], info.kind);
        assert_eq!(schema["properties"]["apiVersion"]["const"], info.api_version());
        assert_described(info.kind, "", &schema);
        for (name, def) in schema["$defs"].as_object().unwrap() {
            assert_described(info.kind, name, def);
        }
    }
    let required = |k: &str| (find(k).unwrap().schema)()["required"].clone();
    assert_eq!(required("Task"), json!(["apiVersion", "kind", "metadata", "spec"]));
    assert_eq!(required("Capability"), json!(["apiVersion", "kind", "metadata"]), "no required spec field");
}

#[test]
fn find_by_kind_plural_singular_and_short_name_ignoring_case() {
    assert_eq!(builtin().len(), 15);
    for info in builtin() {
        let names = [info.kind, info.plural, info.singular].into_iter().chain(info.short_names.iter().copied());
        for name in names {
            for spelling in [name.to_string(), name.to_uppercase(), name.to_lowercase()] {
                let found = find(&spelling).unwrap_or_else(|| panic!("{spelling} not found"));
                assert!(std::ptr::eq(found, info), "{spelling} found {}", found.kind);
            }
        }
        let expected_group = if info.kind == "CustomResourceDefinition" { "apiextensions.k8s.io/v1" } else { API };
        assert_eq!(info.api_version(), expected_group);
        assert_eq!(info.namespaced, info.kind != "CustomResourceDefinition");
    }
    assert_eq!(find("crd").unwrap().kind, "CustomResourceDefinition");
    assert_eq!(find("AGENTSESSIONS").unwrap().kind, "AgentSession");
    assert_eq!(find("ganrun").unwrap().kind, "GANRun");
    assert!(find("pods").is_none());
    assert!(find("").is_none());
}

#[test]
fn printer_columns_are_well_formed() {
    for info in builtin() {
        assert_eq!(info.printer_columns.last(), Some(&AGE), "{} ends with Age", info.kind);
        for c in info.printer_columns {
            assert!(c.json_path.starts_with('.'), "{}: {}", info.kind, c.json_path);
            assert!(["string", "integer", "number", "boolean", "date"].contains(&c.type_));
        }
        let has_phase = (info.schema)()
            .pointer("/$defs")
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .any(|(name, d)| name.ends_with("Status") && d.pointer("/properties/phase").is_some());
        let phase_column = info.printer_columns.iter().any(|c| c.name == "Phase");
        assert_eq!(has_phase, phase_column, "{}: a Phase column where there is a phase", info.kind);
    }
}

fn edges(r: &Resource) -> Vec<(String, String)> {
    let info = find(&r.kind).unwrap();
    (info.references)(r).into_iter().map(|e| (e.edge, e.target.to_string())).collect()
}

#[test]
fn node_references_default_the_namespace_and_honour_an_explicit_one() {
    let node = resource(manifest("Node"));
    assert_eq!(
        edges(&node),
        [
            (OWNER_EDGE, "Graph/team-a/release-notes"),
            ("spec.graphRef", "Graph/team-a/release-notes"),
            ("spec.dependsOn", "Node/team-a/collect-changes"),
            ("spec.dependsOn", "Node/team-a/collect-issues"),
            ("spec.workflowRef", "Workflow/shared/write-and-review"),
        ]
        .map(|(e, t)| (e.to_string(), t.to_string()))
    );
}

#[test]
fn other_kinds_name_their_nested_and_listed_references() {
    let wf = edges(&resource(manifest("Workflow")));
    assert!(wf.contains(&("spec.steps.toolRefs".into(), "Tool/shared/web-search".into())), "{wf:?}");
    assert_eq!(wf.iter().filter(|(e, _)| e == "spec.steps.toolRefs").count(), 3);
    assert!(wf.contains(&("spec.guidelineRefs".into(), "Guideline/team-a/house-style".into())));

    let art = edges(&resource(manifest("Artifact")));
    assert!(art.contains(&("spec.producedBy.session".into(), "AgentSession/team-a/draft-write-1-a1".into())));
    assert!(art.contains(&("spec.producedBy.agent".into(), "Agent/team-a/writer".into())));
    assert!(art.contains(&("spec.taskRef".into(), "Task/team-a/draft-write-1".into())));

    let task = edges(&resource(manifest("Task")));
    assert_eq!(task.len(), 2, "status refs are not spec edges: {task:?}");
    let agent = edges(&resource(manifest("Agent")));
    assert_eq!(agent, vec![("spec.harnessRef".to_string(), "Harness/team-a/claude".to_string())]);
    let gan = edges(&resource(manifest("GANRun")));
    assert_eq!(gan.len(), 3);
    assert!(
        edges(&resource(manifest("Guideline")))
            .contains(&("spec.appliesTo.workflows".into(), "Workflow/team-a/write-and-review".into()))
    );
    assert!(edges(&resource(manifest("CustomResourceDefinition"))).is_empty());
}

#[test]
fn references_of_a_malformed_spec_are_what_can_be_read() {
    let odd_specs = [
        json!(null),
        json!("graph"),
        json!([1, 2]),
        json!({ "graphRef": "release-notes", "dependsOn": "a" }),
        json!({ "graphRef": { "name": 7 }, "dependsOn": [1, null, "ok"], "workflowRef": { "namespace": "x" } }),
        json!({ "steps": [null, { "toolRefs": "x" }, { "toolRefs": [null, { "name": "t" }] }],
                "producedBy": [], "reviewOf": { "artifactRef": { "name": "" } } }),
    ];
    for info in builtin() {
        for spec in &odd_specs {
            let r = Resource::new(info.kind, Some("ns"), "x", spec.clone());
            let _ = (info.references)(&r);
        }
    }
    let r = Resource::new("Node", Some("ns"), "x", odd_specs[4].clone());
    assert_eq!(edges(&r), vec![("spec.dependsOn".to_string(), "Node/ns/ok".to_string())]);
    let r = Resource::new("Workflow", Some("ns"), "x", odd_specs[5].clone());
    assert_eq!(edges(&r), vec![("spec.steps.toolRefs".to_string(), "Tool/ns/t".to_string())]);
}
