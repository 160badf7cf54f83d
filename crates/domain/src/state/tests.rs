//! Unit and property tests of the state check's pure half.

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::chain::{self, ChainHead, EventDraft, SealedEvent};

fn policy(name: &str, cedar: &str, rv: u64) -> Resource {
    let mut r = Resource::new("Policy", Some("default"), name, json!({"cedar": cedar}));
    r.metadata.uid = Some(format!("uid-{name}"));
    r.metadata.resource_version = Some(rv.to_string());
    r.metadata.generation = Some(1);
    r
}

/// The event r5e seals for a write of `object` (whose resourceVersion is its seq).
fn write_event(type_: &str, object: &Resource) -> SealedEvent {
    let seq = object.resource_version().unwrap();
    let head = ChainHead { seq: seq - 1, hash: Digest::ZERO };
    let draft = EventDraft {
        type_: type_.into(),
        actor: "user:admin".into(),
        subject: object.key().to_string(),
        data: json!({ "object": object.to_value() }),
    };
    chain::seal(&head, draft, chrono::Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()).unwrap()
}

fn decision_event(seq: u64, subject: &str) -> SealedEvent {
    let head = ChainHead { seq: seq - 1, hash: Digest::ZERO };
    let draft = EventDraft {
        type_: "admission.decision".into(),
        actor: "system".into(),
        subject: subject.into(),
        data: json!({"verdict": "allow"}),
    };
    chain::seal(&head, draft, chrono::Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()).unwrap()
}

fn write(type_: &str, object: &Resource) -> Write {
    let sealed = write_event(type_, object);
    Write::parse(sealed.event.seq, &sealed.bytes).unwrap().unwrap()
}

const FORBID: &str = "forbid(principal, action, resource);";
const PERMIT: &str = "permit(principal, action, resource);";

#[test]
fn equal_values_have_no_differences() {
    let v = json!({"a": 1, "b": [1, {"c": "x"}], "d": null});
    assert!(differences(&v, &v.clone()).is_empty());
}

#[test]
fn differences_name_each_path() {
    let recorded = json!({
        "spec": {"cedar": "forbid", "steps": [{"name": "a"}, {"name": "b"}], "tags": [1, 2]},
        "metadata": {"labels": {"env": "prod", "app.kubernetes.io/name": "x"}, "name": "p"},
    });
    let stored = json!({
        "spec": {"cedar": "permit", "steps": [{"name": "a"}, {"name": "c"}], "tags": [1, 2, 3], "extra": true},
        "metadata": {"labels": {"env": "dev", "app.kubernetes.io/name": "y"}},
    });
    assert_eq!(
        differences(&recorded, &stored),
        [
            "metadata.labels[\"app.kubernetes.io/name\"]",
            "metadata.labels.env",
            "metadata.name",
            "spec.cedar",
            "spec.extra",
            "spec.steps[1].name",
            "spec.tags",
        ]
    );
}

#[test]
fn numbers_are_compared_by_value() {
    assert!(differences(&json!({"n": 1}), &json!({"n": 1.0})).is_empty());
    assert!(differences(&json!({"n": 0.5}), &serde_json::from_str::<Value>(r#"{"n": 5e-1}"#).unwrap()).is_empty());
    assert_eq!(differences(&json!({"n": 1}), &json!({"n": 2})), ["n"]);
    assert_eq!(differences(&json!({"n": -1}), &json!({"n": u64::MAX})), ["n"]);
    assert!(differences(&json!({"n": 9007199254740993u64}), &json!({"n": 9007199254740992.0})).is_empty());
    assert_eq!(differences(&json!({"n": 1}), &json!({"n": "1"})), ["n"]);
    assert_eq!(differences(&json!(1), &json!("x")), ["(the whole object)"]);
}

#[test]
fn a_written_resource_checks_against_its_event() {
    let stored = policy("p", FORBID, 7);
    let event = write_event(CREATED, &stored).event;
    assert_eq!(check_written(&stored, Some(&event)), None);
    // As read back from a row: through JSON text, with a number spelled differently.
    let mut with_float = stored.clone();
    with_float.spec["weight"] = json!(2);
    let event = write_event(UPDATED, &with_float).event;
    let row: Resource =
        serde_json::from_str(&serde_json::to_string(&with_float).unwrap().replace(":2}", ":2.0}")).unwrap();
    assert_eq!(row.spec["weight"], json!(2.0));
    assert_eq!(check_written(&row, Some(&event)), None);
}

#[test]
fn an_edited_row_differs_from_its_event_at_the_edited_field() {
    let written = policy("p", FORBID, 7);
    let event = write_event(CREATED, &written).event;
    let tampered = policy("p", PERMIT, 7);
    assert_eq!(
        check_written(&tampered, Some(&event)),
        Some(Mismatch::Differs { key: written.key(), seq: 7, paths: vec!["spec.cedar".into()] })
    );
    let message = check_written(&tampered, Some(&event)).unwrap().to_string();
    assert_eq!(message, "Policy/default/p differs from event 7, which wrote it last, at spec.cedar");
}

#[test]
fn a_row_the_named_event_did_not_write_is_unwritten() {
    let stored = policy("p", PERMIT, 7);
    let unwritten = |event: Option<&Event>| match check_written(&stored, event) {
        Some(Mismatch::Unwritten { resource_version: Some(7), reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(unwritten(None), "the log has no event 7");
    let decision = decision_event(7, "Policy/default/p").event;
    assert_eq!(unwritten(Some(&decision)), "event 7 is a `admission.decision` about Policy/default/p");
    let other = write_event(CREATED, &policy("q", PERMIT, 7)).event;
    assert_eq!(unwritten(Some(&other)), "event 7 wrote Policy/default/q");
    let deleted = write_event(DELETED, &stored).event;
    assert!(unwritten(Some(&deleted)).contains("resource.deleted"));
    let mut no_version = stored.clone();
    no_version.metadata.resource_version = Some("seven".into());
    assert!(matches!(check_written(&no_version, None), Some(Mismatch::Unwritten { resource_version: None, .. })));
}

#[test]
fn writes_are_read_from_the_stored_bytes() {
    let object = policy("p", FORBID, 3);
    let sealed = write_event(UPDATED, &object);
    let w = Write::parse(3, &sealed.bytes).unwrap().unwrap();
    assert_eq!(w.key, object.key());
    assert!(!w.removed);
    assert_eq!(w.object, crate::canonical::digest(&object.to_value()).unwrap());
    assert!(Write::parse(3, &write_event(DELETED, &object).bytes).unwrap().unwrap().removed);
    assert_eq!(Write::parse(4, &decision_event(4, "Policy/default/p").bytes).unwrap(), None);
    assert!(matches!(Write::parse(4, &sealed.bytes), Err(Mismatch::Event { seq: 4, .. })));
}

#[test]
fn a_resource_event_that_is_not_a_write_r5e_makes_is_reported() {
    let object = policy("p", FORBID, 3);
    let seal = |subject: &str, data: Value| {
        let draft = EventDraft { type_: CREATED.into(), actor: "a".into(), subject: subject.into(), data };
        chain::seal(&ChainHead { seq: 2, hash: Digest::ZERO }, draft, chrono::Utc::now()).unwrap().bytes
    };
    let reason = |bytes: Vec<u8>| match Write::parse(3, &bytes) {
        Err(Mismatch::Event { seq: 3, reason }) => reason,
        other => panic!("{other:?}"),
    };
    assert!(reason(seal("Policy/default/q", json!({"object": object.to_value()}))).contains("its subject is"));
    assert!(reason(seal("Policy/default/p", json!({}))).contains("no `data.object`"));
    let mut wrong_version = object.clone();
    wrong_version.metadata.resource_version = Some("2".into());
    assert!(reason(seal("Policy/default/p", json!({"object": wrong_version.to_value()}))).contains("resourceVersion"));
}

#[test]
fn the_replay_leaves_the_last_write_of_each_key_in_place() {
    let mut replay = Replay::new();
    replay.apply(write(CREATED, &policy("p", FORBID, 1)));
    replay.apply(write(CREATED, &policy("q", FORBID, 2)));
    replay.apply(write(UPDATED, &policy("p", PERMIT, 3)));
    replay.apply(write(UPDATED, &policy("p", FORBID, 4)));
    replay.apply(write(DELETED, &policy("q", FORBID, 5)));
    replay.apply(write(CREATED, &policy("r", FORBID, 6)));
    assert_eq!(replay.len(), 2);
    assert_eq!(replay.last_write(&policy("p", "", 1).key()), Some(4));
    assert_eq!(replay.last_write(&policy("q", "", 1).key()), None);

    // As written: the same.
    assert_eq!(replay.stored(&policy("p", FORBID, 4)), Ok(Expected::Same));
    // Rolled back to an earlier genuine version, or edited: compare with event 4.
    assert_eq!(replay.stored(&policy("p", PERMIT, 3)), Ok(Expected::Compare(4)));
    assert_eq!(replay.stored(&policy("p", PERMIT, 4)), Ok(Expected::Compare(4)));
    // Deleted, then put back.
    let Err(Mismatch::Unwritten { key, resource_version: Some(2), reason }) = replay.stored(&policy("q", FORBID, 2))
    else {
        panic!("a deleted key that is stored is unwritten")
    };
    assert_eq!(key.name, "q");
    assert!(reason.contains("no event leaves it in place"), "{reason}");
    // r was never stored.
    assert_eq!(replay.unseen(), [(policy("r", "", 1).key(), 6)]);
}

#[test]
fn a_key_deleted_and_created_again_after_it_was_seen_is_unseen_again() {
    let mut replay = Replay::new();
    replay.apply(write(CREATED, &policy("p", FORBID, 1)));
    assert_eq!(replay.stored(&policy("p", FORBID, 1)), Ok(Expected::Same));
    replay.apply(write(UPDATED, &policy("p", PERMIT, 2)));
    assert!(replay.unseen().is_empty(), "an update of a stored key keeps it seen");
    replay.apply(write(DELETED, &policy("p", PERMIT, 3)));
    replay.apply(write(CREATED, &policy("p", FORBID, 4)));
    assert_eq!(replay.unseen(), [(policy("p", "", 1).key(), 4)]);
}

#[test]
fn messages_name_the_resource_and_what_to_compare() {
    let key = ObjectKey::new("Policy", "default", "p");
    let missing = Mismatch::Missing { key: key.clone(), seq: 9 };
    assert_eq!(missing.to_string(), "Policy/default/p is missing: event 9 wrote it and no later event removed it");
    let stale = Mismatch::Stale { key: key.clone(), resource_version: 3, later: 9 };
    assert_eq!(
        stale.to_string(),
        "Policy/default/p is stored as event 3 wrote it, but event 9 changed or removed it since"
    );
    let many = Mismatch::Differs { key, seq: 9, paths: (0..20).map(|i| format!("spec.f{i}")).collect() };
    assert!(many.to_string().ends_with("spec.f11 and 8 more"), "{many}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z.\\-/é]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z.\\-/]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// What the chain records (canonical bytes) and what a store hands back (its own spelling of
    /// the same JSON) never differ.
    #[test]
    fn a_value_and_its_canonical_form_never_differ(v in json_value()) {
        let canonical: Value = serde_json::from_slice(&crate::canonical::to_vec(&v).unwrap()).unwrap();
        prop_assert!(differences(&canonical, &v).is_empty());
        prop_assert!(differences(&v, &canonical).is_empty());
    }

    /// Any change to a member is reported, at that member's path.
    #[test]
    fn a_changed_member_is_reported_at_its_path(v in json_value(), key in "[a-z]{1,6}") {
        let recorded = json!({"spec": {"inner": v.clone()}});
        let mut stored = recorded.clone();
        stored["spec"]["inner"] = json!({ key.clone(): ["changed"] });
        let paths = differences(&recorded, &stored);
        if v == stored["spec"]["inner"] {
            prop_assert!(paths.is_empty());
        } else {
            prop_assert!(!paths.is_empty());
            prop_assert!(paths.iter().all(|p| p.starts_with("spec.inner")), "{:?}", paths);
        }
    }
}
