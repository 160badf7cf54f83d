//! Policy evaluation, including the rules the API documentation promises are expressible.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn user(name: &str, groups: &[&str]) -> Principal {
    Principal { kind: PrincipalKind::User, id: name.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
}

fn target(kind: &str, ns: &str, name: &str, labels: &[(&str, &str)], spec: serde_json::Value) -> Target {
    Target {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        spec,
        graph: None,
    }
}

fn set(sources: &[(&str, &str)]) -> PolicySet {
    PolicySet::from_sources(&sources.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap()
}

#[test]
fn with_no_policy_only_admins_act() {
    let p = PolicySet::admins_only();
    let g = target("Graph", "a", "g", &[], json!({}));
    let d = p.evaluate(&user("root", &["admins"]), Action::Create, &g);
    assert!(d.allowed);
    assert_eq!(d.determining, [ADMINS_RULE]);
    let d = p.evaluate(&user("alice", &["team-a"]), Action::Create, &g);
    assert!(!d.allowed);
    assert!(d.determining.is_empty());
    assert!(d.explanation().contains("only members of group `admins`"), "{}", d.explanation());
    assert_eq!(d.policy_set, p.digest());
}

#[test]
fn the_digest_names_the_exact_set() {
    let a = set(&[("x/p", "permit(principal, action, resource);")]);
    let b = set(&[("x/p", "permit(principal, action, resource);")]);
    let c = set(&[("x/p", "permit(principal, action == r5e::Action::\"get\", resource);")]);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_ne!(a.digest(), PolicySet::admins_only().digest());
    assert_eq!(a.sources(), 1);
}

#[test]
fn only_team_a_creates_graphs_in_namespace_a() {
    let p = set(&[(
        "a/graph-owners",
        r#"
        permit(principal in r5e::Group::"team-a", action == r5e::Action::"create", resource is r5e::Graph)
          when { resource.namespace == "a" };
        forbid(principal, action == r5e::Action::"create", resource is r5e::Graph)
          when { resource.namespace == "a" } unless { principal in r5e::Group::"team-a" };
        "#,
    )]);
    let in_a = target("Graph", "a", "g", &[], json!({}));
    assert!(p.evaluate(&user("alice", &["team-a"]), Action::Create, &in_a).allowed);
    let d = p.evaluate(&user("bob", &["team-b"]), Action::Create, &in_a);
    assert!(!d.allowed);
    assert_eq!(d.determining, ["a/graph-owners#1"]);
    assert_eq!(d.explanation(), "forbidden by a/graph-owners#1");
    // Even an administrator outside team-a is refused: forbid wins over permit.
    assert!(!p.evaluate(&user("root", &["admins"]), Action::Create, &in_a).allowed);
    // Team-a has no grant in namespace b.
    assert!(
        !p.evaluate(&user("alice", &["team-a"]), Action::Create, &target("Graph", "b", "g", &[], json!({}))).allowed
    );
}

#[test]
fn guidelines_labelled_secret_are_forbidden_to_everyone() {
    let p = set(&[(
        "ops/no-secrets",
        r#"forbid(principal, action, resource is r5e::Guideline) when { resource.labels has "secret" };"#,
    )]);
    let secret = target("Guideline", "ops", "keys", &[("secret", "true")], json!({"content": "..."}));
    let d = p.evaluate(&user("root", &["admins"]), Action::Create, &secret);
    assert!(!d.allowed);
    assert_eq!(d.determining, ["ops/no-secrets#0"]);
    let plain = target("Guideline", "ops", "style", &[("team", "docs")], json!({"content": "..."}));
    assert!(p.evaluate(&user("root", &["admins"]), Action::Create, &plain).allowed);
}

#[test]
fn deploy_tasks_need_an_approved_graph() {
    let p = set(&[(
        "prod/deploy-needs-approval",
        r#"forbid(principal, action == r5e::Action::"create", resource is r5e::Task)
             when { resource.spec has authority && resource.spec.authority has capabilities
                    && resource.spec.authority.capabilities.contains("deploy") }
             unless { resource has graph && resource.graph.labels has "approved" };"#,
    )]);
    let admin = user("root", &["admins"]);
    let task = |caps: serde_json::Value, graph_labels: Option<&[(&str, &str)]>| {
        let mut t = target(
            "Task",
            "prod",
            "t",
            &[],
            json!({"authority": {"capabilities": caps, "budgets": {"tokens": 10}}, "ratio": 0.5, "none": null}),
        );
        t.graph = graph_labels.map(|l| Box::new(target("Graph", "prod", "release", l, json!({"description": "d"}))));
        t
    };
    let d = p.evaluate(&admin, Action::Create, &task(json!(["deploy", "fs.read"]), Some(&[])));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.determining, ["prod/deploy-needs-approval#0"]);
    assert!(!p.evaluate(&admin, Action::Create, &task(json!(["deploy"]), None)).allowed);
    assert!(p.evaluate(&admin, Action::Create, &task(json!(["deploy"]), Some(&[("approved", "yes")]))).allowed);
    let d = p.evaluate(&admin, Action::Create, &task(json!(["fs.read"]), Some(&[])));
    assert!(d.allowed && d.errors.is_empty(), "{d:?}");
}

#[test]
fn bad_policy_text_is_refused_naming_its_source() {
    let err =
        PolicySet::from_sources(&BTreeMap::from([("a/broken".to_string(), "permit(principal, action".to_string())]))
            .unwrap_err();
    assert!(err.to_string().starts_with("policy a/broken is not valid Cedar"), "{err}");
    let err = check("a/template", "permit(principal == ?principal, action, resource);").unwrap_err();
    assert!(err.to_string().contains("templates"), "{err}");
    assert_eq!(
        check("a/two", "permit(principal, action, resource); forbid(principal, action, resource) when { false };")
            .unwrap(),
        2
    );
}

#[test]
fn sessions_and_service_accounts_are_principals_too() {
    let p = set(&[(
        "w/agents",
        r#"permit(principal is r5e::Session, action == r5e::Action::"create", resource is r5e::Artifact)
             when { principal.namespace == resource.namespace };"#,
    )]);
    let session = Principal { kind: PrincipalKind::Session, id: "w/s1".into(), groups: vec![] };
    assert!(p.evaluate(&session, Action::Create, &target("Artifact", "w", "out", &[], json!({}))).allowed);
    assert!(!p.evaluate(&session, Action::Create, &target("Artifact", "x", "out", &[], json!({}))).allowed);
    assert!(!p.evaluate(&session, Action::Delete, &target("Artifact", "w", "out", &[], json!({}))).allowed);
    let sa = Principal { kind: PrincipalKind::ServiceAccount, id: "w/ci".into(), groups: vec![] };
    assert!(!p.evaluate(&sa, Action::Create, &target("Artifact", "w", "out", &[], json!({}))).allowed);
}

#[test]
fn a_policy_governs_only_its_own_namespace() {
    let p = set(&[
        ("team-a/open", "permit(principal, action, resource);"),
        ("team-b/lock", "forbid(principal, action, resource);"),
    ]);
    let alice = user("alice", &["team-a"]);
    let root = user("root", &["admins"]);
    assert!(p.evaluate(&alice, Action::Get, &target("Graph", "team-a", "g", &[], json!({}))).allowed);
    // The permit written in team-a opens nothing elsewhere, not even lists across namespaces.
    assert!(!p.evaluate(&alice, Action::Get, &target("Graph", "team-c", "g", &[], json!({}))).allowed);
    assert!(!p.evaluate(&alice, Action::List, &target("Graph", "", "", &[], json!({}))).allowed);
    // The forbid written in team-b binds only team-b.
    assert!(!p.evaluate(&root, Action::Delete, &target("Graph", "team-b", "g", &[], json!({}))).allowed);
    assert!(p.evaluate(&root, Action::Delete, &target("Graph", "team-c", "g", &[], json!({}))).allowed);
    assert!(p.evaluate(&root, Action::List, &target("Graph", "", "", &[], json!({}))).allowed);
}

#[test]
fn cluster_policies_apply_everywhere() {
    let p = set(&[(
        &format!("{CLUSTER_NAMESPACE}/readers"),
        r#"permit(principal in r5e::Group::"auditors", action == r5e::Action::"get", resource);"#,
    )]);
    let eve = user("eve", &["auditors"]);
    for ns in ["a", "b", ""] {
        assert!(p.evaluate(&eve, Action::Get, &target("Graph", ns, "g", &[], json!({}))).allowed, "{ns}");
    }
    let p = set(&[
        (
            &format!("{CLUSTER_NAMESPACE}/readers"),
            r#"permit(principal in r5e::Group::"auditors", action == r5e::Action::"get", resource);"#,
        ),
        ("a/deny", "forbid(principal, action, resource);"),
    ]);
    assert!(!p.evaluate(&eve, Action::Get, &target("Graph", "a", "g", &[], json!({}))).allowed);
    assert!(p.evaluate(&eve, Action::Get, &target("Graph", "b", "g", &[], json!({}))).allowed);
}

#[test]
fn a_permit_that_needs_the_object_leaves_a_decision_on_the_request_open() {
    let p = set(&[(
        "a/labelled",
        r#"permit(principal in r5e::Group::"team-a", action, resource) when { resource.labels.team == "a" };"#,
    )]);
    let alice = user("alice", &["team-a"]);
    let bare = target("Graph", "a", "g", &[], json!({}));
    let d = p.evaluate(&alice, Action::Update, &bare);
    assert!(!d.allowed && d.conditional, "{d:?}");
    let d = p.evaluate(&alice, Action::Update, &target("Graph", "a", "g", &[("team", "a")], json!({})));
    assert!(d.allowed && !d.conditional);
    let d = p.evaluate(&alice, Action::Update, &target("Graph", "a", "g", &[("team", "b")], json!({})));
    assert!(!d.allowed && !d.conditional);
    // Nothing applies at all: a plain refusal.
    let d = p.evaluate(&user("bob", &[]), Action::Update, &bare);
    assert!(!d.allowed && !d.conditional);
}
