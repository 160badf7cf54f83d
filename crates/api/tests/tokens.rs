//! People's and service accounts' tokens live on the audit chain: issuing and revoking one is a
//! write through admission with its decision, every process on the store sees the same set on
//! its next request, and nobody issues a token with more than they hold.

use std::sync::Arc;

use admission::{Admission, Error, Identity, Stage};
use axum::http::{HeaderMap, HeaderValue};
use domain::{Digest, ObjectKey};
use r5e_api::{TOKEN_ISSUED, TokenRecord, Tokens};
use serde_json::json;
use storage::{EventQuery, Store};
use storage_sqlite::SqliteBackend;

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

fn record(token: &str, kind: &str, name: &str, groups: &[&str]) -> TokenRecord {
    TokenRecord {
        hash: Digest::of(token.as_bytes()),
        kind: kind.into(),
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        revoked: false,
        expires_at: None,
    }
}

async fn issue(a: &Admission, who: &Identity, r: &TokenRecord) -> Result<(), Error> {
    a.change_credentials(who, policy::Action::Create, &r.target(), &r.groups, r.issued(&who.actor())).await
}

#[tokio::test]
async fn tokens_are_issued_and_revoked_on_the_chain_and_every_process_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r5e.db");
    // Two handles on one database: two processes.
    let one = Store::open(Arc::new(SqliteBackend::open(&path).await.unwrap())).await.unwrap();
    let two = Store::open(Arc::new(SqliteBackend::open(&path).await.unwrap())).await.unwrap();
    let admission = Admission::new(one);
    let admin = Identity::user("root", &["admins"]);
    // Bob may issue tokens in namespace `team`, for service accounts there.
    let policy = json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Policy",
        "metadata": {"name": "bob-issues", "namespace": "team"},
        "spec": {"cedar": "permit(principal == r5e::User::\"bob\", action, resource is r5e::Token);"}});
    admission.create(&admin, policy).await.unwrap();
    let bob = Identity::user("bob", &["team"]);
    let seen = Tokens::from_store(two.clone()).await.unwrap();

    let ci = "c1".repeat(32);
    issue(&admission, &bob, &record(&ci, "serviceaccount", "team/ci", &["team"])).await.unwrap();
    let who = seen.authenticate(&headers(&ci)).await.unwrap();
    assert_eq!(who.actor(), "serviceaccount:team/ci");

    // More than bob holds, or outside the namespace his permit governs: refused, and recorded.
    let wide = issue(&admission, &bob, &record(&"d2".repeat(32), "serviceaccount", "team/root", &["admins"])).await;
    assert!(matches!(wide, Err(Error::Forbidden { stage: Stage::Identity, .. })), "{wide:?}");
    let user = issue(&admission, &bob, &record(&"e3".repeat(32), "user", "eve", &[])).await;
    assert!(matches!(user, Err(Error::Forbidden { stage: Stage::Policy, .. })), "{user:?}");
    for t in ["d2", "e3"] {
        assert!(seen.authenticate(&headers(&t.repeat(32))).await.is_err(), "a refused token authenticates");
    }

    // Revoked by one process: the other refuses it on its next request.
    let r = record(&ci, "serviceaccount", "team/ci", &["team"]);
    let target = r.target();
    assert_eq!(target, ObjectKey::new("Token", "team", "ci"));
    admission
        .change_credentials(&bob, policy::Action::Delete, &target, &[], r.revoked(&bob.actor(), &[r.hash]))
        .await
        .unwrap();
    let e = seen.authenticate(&headers(&ci)).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");

    // On the chain: the issue with its decision (the digest, never the token), and the refusals.
    let events = two.events.query(&EventQuery::default()).await.unwrap();
    let issued: Vec<_> = events.iter().filter(|e| e.type_ == TOKEN_ISSUED).collect();
    assert_eq!(issued.len(), 1);
    assert!(!serde_json::to_string(&issued[0].data).unwrap().contains(&ci));
    let before = &events[(issued[0].seq - 2) as usize];
    assert_eq!(before.type_, "admission.decision");
    assert_eq!(before.data["verdict"], "allow");
    let denied = events.iter().filter(|e| e.type_ == "admission.decision" && e.data["verdict"] == "deny").count();
    assert_eq!(denied, 2);
    two.events.verify_chain().await.unwrap();
}
