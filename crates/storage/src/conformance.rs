//! The conformance suite: one async function per behaviour of the storage contracts. Every backend
//! runs all of them, through [`graph_and_log_conformance!`](crate::graph_and_log_conformance) and
//! [`cas_conformance!`](crate::cas_conformance), which expand into one named test per case.
//!
//! A case takes a fixture that can open the same data more than once (a restart, or a second
//! process) and can tamper with stored rows the way someone with access to the database could.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::chain::EventDraft;
use domain::resource::OwnerReference;
use domain::{Digest, ObjectKey, Resource, Selector};
use futures::StreamExt;
use serde_json::json;

use crate::{Backend, Cas, CasBackend, Direction, Error, EventQuery, ListQuery, Store, TraverseQuery};

mod state;
pub use state::{
    batched_reads_match_single_queries, state_check_while_writing_reports_nothing_false, state_edited_row_is_named,
    state_of_an_untouched_store_matches, state_removed_and_made_up_rows_are_named, state_rolled_back_row_is_named,
};

/// Rows of the event table as `(seq, stored bytes)`, in seq order.
pub type Rows = Vec<(u64, Vec<u8>)>;

/// A way to rewrite rows behind the contract's back.
pub type RowEdit = Box<dyn FnOnce(Rows) -> Rows + Send>;

/// What a Graph Storage + Event Log backend provides to the suite.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// Open a backend over this fixture's data; each call opens the same data again.
    async fn open(&self) -> Arc<dyn Backend>;
    /// Replace the stored event rows with `edit(rows)`, bypassing every guard.
    async fn tamper(&self, edit: RowEdit);
    /// Make writes through every backend this fixture opened fail as they do on a full disk
    /// (`true`), or give the space back (`false`).
    async fn fill_disk(&self, full: bool);
    /// Write the resource row of `key` behind the contract's back: store `body` as it (its uid
    /// and resourceVersion columns read from it), or remove the row when `None`.
    async fn set_row(&self, key: &ObjectKey, body: Option<serde_json::Value>);
}

/// What a CAS backend provides to the suite.
#[async_trait]
pub trait CasFixture: Send + Sync + 'static {
    /// Open a backend over this fixture's data.
    async fn open(&self) -> Arc<dyn CasBackend>;
    /// Overwrite the stored bytes of `digest` directly.
    async fn corrupt(&self, digest: &Digest, bytes: &[u8]);
}

async fn store(f: &dyn Fixture) -> Store {
    Store::open_with_poll(f.open().await, Duration::from_millis(50)).await.expect("store opens")
}

fn graph_res(ns: &str, name: &str) -> Resource {
    Resource::new("Graph", Some(ns), name, json!({"description": "d"}))
}

fn labelled(kind: &str, ns: &str, name: &str, labels: &[(&str, &str)]) -> Resource {
    let mut r = Resource::new(kind, Some(ns), name, json!({}));
    r.metadata.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    r
}

async fn event_count(s: &Store) -> u64 {
    s.events.head().await.unwrap().seq
}

/// Create assigns uid, generation 1, creationTimestamp and resourceVersion = the event's seq.
pub async fn create_then_get(f: &dyn Fixture) {
    let s = store(f).await;
    let created = s.graph.create(graph_res("default", "g1"), "user:test").await.unwrap();
    let m = &created.metadata;
    assert!(m.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert_eq!(m.generation, Some(1));
    assert!(m.creation_timestamp.is_some());
    assert_eq!(created.resource_version(), Some(1));
    assert_eq!(s.graph.get(&created.key()).await.unwrap(), created);
    assert_eq!(
        s.graph.get(&ObjectKey::new("Graph", "default", "nope")).await,
        Err(Error::NotFound("Graph/default/nope".into()))
    );

    let mut with_status = graph_res("default", "g3");
    with_status.status = json!({"phase": "Succeeded"});
    let stored = s.graph.create(with_status, "user:test").await.unwrap();
    assert_eq!(stored.status, serde_json::Value::Null, "create must not write status");

    let mut with_rv = graph_res("default", "g2");
    with_rv.metadata.resource_version = Some("5".into());
    assert!(matches!(s.graph.create(with_rv, "user:test").await, Err(Error::Invalid(_))));
}

/// A second create of the same key fails and leaves no event behind.
pub async fn create_twice_is_refused_without_a_trace(f: &dyn Fixture) {
    let s = store(f).await;
    s.graph.create(graph_res("default", "g"), "user:test").await.unwrap();
    let before = event_count(&s).await;
    let err = s.graph.create(graph_res("default", "g"), "user:test").await.unwrap_err();
    assert_eq!(err, Error::AlreadyExists("Graph/default/g".into()));
    assert_eq!(event_count(&s).await, before);
    // The same name in another namespace or kind is a different resource.
    s.graph.create(graph_res("other", "g"), "user:test").await.unwrap();
    s.graph.create(Resource::new("Node", Some("default"), "g", json!({})), "user:test").await.unwrap();
}

/// Update is compare-and-set on resourceVersion; generation follows the spec; status is kept;
/// immutable fields stay immutable.
pub async fn update_rules(f: &dyn Fixture) {
    let s = store(f).await;
    let v1 = s.graph.create(graph_res("default", "g"), "user:test").await.unwrap();

    let mut change = v1.clone();
    change.spec = json!({"description": "changed"});
    change.status = json!({"phase": "Ignored"});
    let v2 = s.graph.update(change.clone(), "user:test").await.unwrap();
    assert!(v2.resource_version() > v1.resource_version());
    assert_eq!(v2.metadata.generation, Some(2));
    assert_eq!(v2.status, serde_json::Value::Null, "update must not write status");
    assert_eq!(v2.metadata.uid, v1.metadata.uid);

    // The same write again, with the now-stale version, conflicts and writes nothing.
    let before = event_count(&s).await;
    let err = s.graph.update(change, "user:test").await.unwrap_err();
    assert!(matches!(&err, Error::Conflict(m) if m.contains("resourceVersion")), "{err:?}");
    assert_eq!(event_count(&s).await, before);

    // Labels only: no generation bump.
    let mut relabel = v2.clone();
    relabel.metadata.labels.insert("team".into(), "a".into());
    let v3 = s.graph.update(relabel, "user:test").await.unwrap();
    assert_eq!(v3.metadata.generation, Some(2));
    assert_eq!(v3.metadata.labels["team"], "a");

    // Status only through update_status, which leaves spec and generation alone.
    let mut status = v3.clone();
    status.status = json!({"phase": "Running", "observedGeneration": 2});
    status.spec = json!({"description": "ignored"});
    let v4 = s.graph.update_status(status, "system").await.unwrap();
    assert_eq!(v4.status["phase"], "Running");
    assert_eq!(v4.spec, v3.spec);
    assert_eq!(v4.metadata.generation, Some(2));

    // Unconditional update (no resourceVersion) applies to what is current.
    let mut blind = v4.clone();
    blind.metadata.resource_version = None;
    blind.spec = json!({"description": "blind"});
    let v5 = s.graph.update(blind, "user:test").await.unwrap();
    assert_eq!(v5.metadata.generation, Some(3));
    assert_eq!(v5.status, v4.status);

    let mut bad_uid = v5.clone();
    bad_uid.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    assert!(
        matches!(s.graph.update(bad_uid, "user:test").await, Err(Error::Invalid(m)) if m.contains("uid is immutable"))
    );
    let mut bad_rv = v5.clone();
    bad_rv.metadata.resource_version = Some("abc".into());
    assert!(matches!(s.graph.update(bad_rv, "user:test").await, Err(Error::Invalid(_))));
    let missing = graph_res("default", "missing");
    assert!(matches!(s.graph.update(missing, "user:test").await, Err(Error::NotFound(_))));

    // An update that changes nothing writes nothing.
    let before = event_count(&s).await;
    assert_eq!(s.graph.update(v5.clone(), "user:test").await.unwrap(), v5);
    assert_eq!(event_count(&s).await, before);
}

/// Every graph write appends exactly one event, in the same transaction, whose seq is the
/// resource's new resourceVersion and whose data holds the object as written.
pub async fn each_write_is_exactly_one_event(f: &dyn Fixture) {
    let s = store(f).await;
    let created = s.graph.create(graph_res("default", "g"), "user:alice").await.unwrap();
    let mut next = created.clone();
    next.spec = json!({"description": "v2"});
    let updated = s.graph.update(next, "user:bob").await.unwrap();
    let deleted = s.graph.delete(&created.key(), None, "user:carol").await.unwrap();
    let events = s.events.query(&EventQuery::default()).await.unwrap();
    assert_eq!(events.len(), 3);
    for (event, (object, type_, actor)) in events.iter().zip([
        (&created, "resource.created", "user:alice"),
        (&updated, "resource.updated", "user:bob"),
        (&deleted, "resource.deleted", "user:carol"),
    ]) {
        assert_eq!(event.type_, type_);
        assert_eq!(event.actor, actor);
        assert_eq!(event.subject, "Graph/default/g");
        assert_eq!(object.resource_version(), Some(event.seq));
        assert_eq!(event.data["object"], object.to_value());
    }
    s.events.verify_chain().await.unwrap();
}

/// Delete removes at once without finalizers; with finalizers it marks the resource and the
/// removal of the last finalizer completes it.
pub async fn delete_and_finalizers(f: &dyn Fixture) {
    let s = store(f).await;
    let plain = s.graph.create(graph_res("default", "plain"), "user:test").await.unwrap();
    let stale = plain.resource_version().unwrap() + 100;
    assert!(matches!(s.graph.delete(&plain.key(), Some(stale), "user:test").await, Err(Error::Conflict(_))));
    s.graph.delete(&plain.key(), plain.resource_version(), "user:test").await.unwrap();
    assert!(matches!(s.graph.get(&plain.key()).await, Err(Error::NotFound(_))));
    assert!(matches!(s.graph.delete(&plain.key(), None, "user:test").await, Err(Error::NotFound(_))));

    let mut guarded = graph_res("default", "guarded");
    guarded.metadata.finalizers = vec!["r5e.ai/cleanup".into()];
    let guarded = s.graph.create(guarded, "user:test").await.unwrap();
    let marked = s.graph.delete(&guarded.key(), None, "user:test").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(s.graph.get(&guarded.key()).await.unwrap(), marked);
    let mut add = marked.clone();
    add.metadata.finalizers.push("r5e.ai/another".into());
    assert!(matches!(s.graph.update(add, "user:test").await, Err(Error::Invalid(_))));
    let mut release = marked.clone();
    release.metadata.finalizers.clear();
    let last = s.graph.update(release, "controller").await.unwrap();
    assert!(last.metadata.finalizers.is_empty());
    assert!(matches!(s.graph.get(&guarded.key()).await, Err(Error::NotFound(_))));
    let events = s
        .events
        .query(&EventQuery { subject: Some("Graph/default/guarded".into()), ..Default::default() })
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.type_.as_str()).collect();
    assert_eq!(types, ["resource.created", "resource.updated", "resource.deleted"]);
}

/// A recorded event commits just before the write it goes with, once, even when the write fails
/// its precondition; a write that changes nothing records nothing.
pub async fn recorded_events_precede_their_write(f: &dyn Fixture) {
    let s = store(f).await;
    let decision = |n: u32| EventDraft {
        type_: "admission.decision".into(),
        actor: "user:test".into(),
        subject: "Graph/default/g".into(),
        data: json!({"n": n}),
    };
    let created = s.graph.recording(decision(1)).create(graph_res("default", "g"), "user:test").await.unwrap();
    let events = s.events.query(&EventQuery::default()).await.unwrap();
    assert_eq!(
        events.iter().map(|e| (e.seq, e.type_.as_str())).collect::<Vec<_>>(),
        [(1, "admission.decision"), (2, "resource.created")]
    );
    assert_eq!(created.resource_version(), Some(2));

    let err = s.graph.recording(decision(2)).create(graph_res("default", "g"), "user:test").await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)));
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    stale.spec = json!({"description": "stale"});
    assert!(matches!(s.graph.recording(decision(3)).update(stale, "user:test").await, Err(Error::Conflict(_))));
    let unchanged = s.graph.recording(decision(4)).update(created.clone(), "user:test").await.unwrap();
    assert_eq!(unchanged, created);
    let mut blind = created.clone();
    blind.metadata.resource_version = None;
    blind.spec = json!({"description": "v2"});
    s.graph.recording(decision(5)).update(blind, "user:test").await.unwrap();
    let events = s.events.query(&EventQuery { from_seq: Some(3), ..Default::default() }).await.unwrap();
    let seen: Vec<(String, serde_json::Value)> =
        events.iter().map(|e| (e.type_.clone(), e.data["n"].clone())).collect();
    assert_eq!(
        seen,
        [
            ("admission.decision".to_string(), json!(2)),
            ("admission.decision".to_string(), json!(3)),
            ("admission.decision".to_string(), json!(5)),
            ("resource.updated".to_string(), serde_json::Value::Null),
        ]
    );
    s.events.verify_chain().await.unwrap();
}

/// Lists are ordered, filtered by kind and namespace, and paginate with continue tokens.
pub async fn list_and_paginate(f: &dyn Fixture) {
    let s = store(f).await;
    for i in 0..12 {
        s.graph.create(graph_res(if i % 2 == 0 { "a" } else { "b" }, &format!("g{i:02}")), "user:test").await.unwrap();
        s.graph.create(Resource::new("Node", Some("a"), &format!("n{i:02}"), json!({})), "user:test").await.unwrap();
    }
    let q = ListQuery { kind: Some("Graph".into()), limit: Some(5), ..Default::default() };
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.graph.list(q.clone(), token.as_deref()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 5);
        assert!(page.items.iter().all(|r| r.resource_version().unwrap() <= page.resource_version));
        names.extend(
            page.items.iter().map(|r| format!("{}/{}", r.metadata.namespace.as_deref().unwrap(), r.metadata.name)),
        );
        match page.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> =
        (0..12).map(|i| format!("{}/g{i:02}", if i % 2 == 0 { "a" } else { "b" })).collect();
    expected.sort();
    assert_eq!(names, expected);

    let in_a = s
        .graph
        .list(ListQuery { kind: Some("Graph".into()), namespace: Some("a".into()), ..Default::default() }, None)
        .await
        .unwrap();
    assert_eq!(in_a.items.len(), 6);
    assert!(in_a.continue_token.is_none());
    let everything = s.graph.list(ListQuery::default(), None).await.unwrap();
    assert_eq!(everything.items.len(), 24);
    assert_eq!(everything.resource_version, event_count(&s).await);
    assert!(
        matches!(s.graph.list(q, Some("not-a-token")).await, Err(Error::Invalid(m)) if m.contains("continue token"))
    );
}

/// `query_by_labels` agrees with the selector semantics of the domain, operator by operator.
pub async fn query_by_labels_matches_selector_semantics(f: &dyn Fixture) {
    let s = store(f).await;
    type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let specs: &[Spec] = &[
        ("Agent", "a1", &[("role", "reviewer"), ("model", "m1")]),
        ("Agent", "a2", &[("role", "task"), ("model", "m2")]),
        ("Agent", "a3", &[("role", "task")]),
        ("Agent", "a4", &[]),
        ("Tool", "t1", &[("role", "reviewer"), ("r5e.ai/tier", "gold")]),
    ];
    let mut all = Vec::new();
    for (kind, name, labels) in specs {
        all.push(s.graph.create(labelled(kind, "default", name, labels), "user:test").await.unwrap());
    }
    s.graph.create(labelled("Agent", "other", "a9", &[("role", "task")]), "user:test").await.unwrap();
    for sel in [
        "",
        "role=reviewer",
        "role==task",
        "role!=task",
        "model in (m1,m2)",
        "model notin (m1)",
        "model",
        "!model",
        "role=task,model",
        "r5e.ai/tier=gold",
        "role in (reviewer),!r5e.ai/tier",
        "missing=x",
    ] {
        let selector: Selector = sel.parse().unwrap();
        for kind in [None, Some("Agent")] {
            let got = s.graph.query_by_labels(&selector, kind, Some("default")).await.unwrap();
            let mut want: Vec<&Resource> = all
                .iter()
                .filter(|r| selector.matches(&r.metadata.labels) && kind.is_none_or(|k| r.kind == k))
                .collect();
            want.sort_by_key(|r| r.key());
            let got_keys: Vec<ObjectKey> = got.iter().map(Resource::key).collect();
            let want_keys: Vec<ObjectKey> = want.iter().map(|r| r.key()).collect();
            assert_eq!(got_keys, want_keys, "selector `{sel}` kind {kind:?}");
        }
    }
    let everywhere = s.graph.query_by_labels(&"role=task".parse().unwrap(), None, None).await.unwrap();
    assert_eq!(everywhere.len(), 3);
}

/// Traversal follows spec references and owner references, both ways, to a bounded depth.
pub async fn traverse_typed_edges(f: &dyn Fixture) {
    let s = store(f).await;
    let g = s.graph.create(graph_res("w", "g"), "user:test").await.unwrap();
    s.graph
        .create(Resource::new("Node", Some("w"), "n1", json!({"graphRef": {"name": "g"}})), "user:test")
        .await
        .unwrap();
    let n2 = s
        .graph
        .create(
            Resource::new("Node", Some("w"), "n2", json!({"graphRef": {"name": "g"}, "dependsOn": ["n1"]})),
            "user:test",
        )
        .await
        .unwrap();
    let mut task = Resource::new("Task", Some("w"), "t", json!({"nodeRef": {"name": "n2"}, "graphRef": {"name": "g"}}));
    task.metadata.owner_references = vec![OwnerReference {
        api_version: domain::resource::API_VERSION.into(),
        kind: "Node".into(),
        name: "n2".into(),
        uid: n2.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: None,
    }];
    let t = s.graph.create(task, "user:test").await.unwrap();
    // A reference to something that does not exist yet is stored but reaches nothing.
    s.graph
        .create(Resource::new("Node", Some("w"), "n3", json!({"graphRef": {"name": "absent"}})), "user:test")
        .await
        .unwrap();

    let names = |hits: Vec<crate::Hit>| -> Vec<(String, u32)> {
        hits.into_iter().map(|h| (format!("{}/{}", h.resource.kind, h.resource.metadata.name), h.depth)).collect()
    };
    let q = |direction, depth, edges: &[&str]| TraverseQuery {
        direction,
        max_depth: depth,
        edges: edges.iter().map(|e| e.to_string()).collect(),
    };
    assert_eq!(
        names(s.graph.traverse(&t.key(), &q(Direction::Outgoing, 1, &[])).await.unwrap()),
        [("Graph/g".into(), 1), ("Node/n2".into(), 1)]
    );
    assert_eq!(
        names(s.graph.traverse(&t.key(), &q(Direction::Outgoing, 2, &[])).await.unwrap()),
        [("Graph/g".into(), 1), ("Node/n2".into(), 1), ("Node/n1".into(), 2)]
    );
    assert_eq!(
        names(s.graph.traverse(&t.key(), &q(Direction::Outgoing, 5, &["owner"])).await.unwrap()),
        [("Node/n2".into(), 1)]
    );
    assert_eq!(
        names(s.graph.traverse(&g.key(), &q(Direction::Incoming, 1, &[])).await.unwrap()),
        [("Node/n1".into(), 1), ("Node/n2".into(), 1), ("Task/t".into(), 1)]
    );
    assert_eq!(
        names(s.graph.traverse(&n2.key(), &q(Direction::Both, 1, &["spec.dependsOn", "spec.nodeRef"])).await.unwrap()),
        [("Node/n1".into(), 1), ("Task/t".into(), 1)]
    );
    // Cycles terminate: n1 -> g <- n2 -> n1 ... within the depth bound.
    let both = names(s.graph.traverse(&g.key(), &q(Direction::Both, 6, &[])).await.unwrap());
    assert_eq!(both.len(), 3, "{both:?}");
    assert!(matches!(s.graph.traverse(&g.key(), &q(Direction::Both, 0, &[])).await, Err(Error::Invalid(_))));
}

/// Appends get contiguous seqs, each linked to the one before.
pub async fn append_links_events(f: &dyn Fixture) {
    let s = store(f).await;
    assert_eq!(s.events.verify_chain().await.unwrap(), domain::chain::ChainHead::GENESIS);
    let mut prev = Digest::ZERO;
    for i in 1..=10u64 {
        let e = s.events.append(draft(i)).await.unwrap();
        assert_eq!(e.seq, i);
        assert_eq!(e.prev_hash, prev);
        prev = e.hash;
    }
    let head = s.events.verify_chain().await.unwrap();
    assert_eq!((head.seq, head.hash), (10, prev));
    assert_eq!(s.events.head().await.unwrap(), head);
    let many = s.events.append_all((11..=15).map(draft).collect()).await.unwrap();
    assert_eq!(many.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12, 13, 14, 15]);
}

fn draft(i: u64) -> EventDraft {
    EventDraft {
        type_: if i.is_multiple_of(2) { "test.even".into() } else { "test.odd".into() },
        actor: "user:test".into(),
        subject: format!("Thing/default/t{}", i % 3),
        data: json!({"i": i}),
    }
}

/// Many concurrent writers, graph writes and plain appends mixed, are batched into few
/// transactions and still produce one contiguous chain with no gap and no fork.
pub async fn concurrent_writers_make_one_chain(f: &dyn Fixture) {
    let s = store(f).await;
    let writers = 16;
    let per_writer = 100;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..per_writer {
                if i % 10 == 0 {
                    let r = s.graph.create(graph_res("load", &format!("w{w}-{i}")), "user:test").await.unwrap();
                    seqs.push(r.resource_version().unwrap());
                } else {
                    seqs.push(s.events.append(draft(i)).await.unwrap().seq);
                }
            }
            seqs
        }));
    }
    let mut seqs: Vec<u64> = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    let total = writers * per_writer;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "every seq exactly once, no gap");
    assert_eq!(s.events.verify_chain().await.unwrap().seq, total);
    let stats = s.events.stats();
    assert_eq!(stats.entries, total);
    assert!(stats.batches < total, "concurrent writers must share transactions: {stats:?}");
}

/// Two independently opened handles on the same data (two processes) append concurrently and
/// still produce one chain.
pub async fn two_handles_share_one_chain(f: &dyn Fixture) {
    let a = store(f).await;
    let b = store(f).await;
    let mut tasks = Vec::new();
    for (n, s) in [a.clone(), b.clone()].into_iter().enumerate() {
        for w in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    if i % 5 == 0 {
                        s.graph.create(graph_res("x", &format!("h{n}-w{w}-{i}")), "user:test").await.unwrap();
                    } else {
                        s.events.append(draft(i)).await.unwrap();
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.events.verify_chain().await.unwrap().seq, 400);
    assert_eq!(b.events.verify_chain().await.unwrap(), a.events.head().await.unwrap());
    let all = a.graph.list(ListQuery { namespace: Some("x".into()), ..Default::default() }, None).await.unwrap();
    assert_eq!(all.items.len(), 80);
}

/// Reopening the same data sees every resource and event, and new events continue the chain.
pub async fn reopen_continues_the_chain(f: &dyn Fixture) {
    let s = store(f).await;
    s.graph.create(graph_res("default", "g"), "user:test").await.unwrap();
    s.events.append(draft(1)).await.unwrap();
    let head = s.events.head().await.unwrap();
    drop(s);
    let again = store(f).await;
    assert_eq!(again.events.head().await.unwrap(), head);
    assert!(again.graph.get(&ObjectKey::new("Graph", "default", "g")).await.is_ok());
    let e = again.events.append(draft(2)).await.unwrap();
    assert_eq!((e.seq, e.prev_hash), (3, head.hash));
    again.events.verify_chain().await.unwrap();
}

/// `query` filters by seq range, type, subject and limit.
pub async fn query_filters(f: &dyn Fixture) {
    let s = store(f).await;
    s.events.append_all((1..=20).map(draft).collect()).await.unwrap();
    let seqs = |q: EventQuery| {
        let s = s.clone();
        async move { s.events.query(&q).await.unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    assert_eq!(seqs(EventQuery { from_seq: Some(5), to_seq: Some(8), ..Default::default() }).await, [5, 6, 7, 8]);
    assert_eq!(
        seqs(EventQuery { types: vec!["test.even".into()], limit: Some(3), ..Default::default() }).await,
        [2, 4, 6]
    );
    assert_eq!(
        seqs(EventQuery { subject: Some("Thing/default/t0".into()), ..Default::default() }).await,
        [3, 6, 9, 12, 15, 18]
    );
    assert_eq!(
        seqs(EventQuery {
            types: vec!["test.odd".into()],
            subject: Some("Thing/default/t0".into()),
            from_seq: Some(4),
            ..Default::default()
        })
        .await,
        [9, 15]
    );
    assert!(seqs(EventQuery { from_seq: Some(21), ..Default::default() }).await.is_empty());
    let raw =
        s.events.query_raw(&EventQuery { from_seq: Some(1), limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(raw[0].event().unwrap().seq, 1);
}

/// A stream replays from a seq, then tails new events as they commit, including events written
/// through another handle (another process) that sends no local wake-up.
pub async fn stream_replays_then_tails(f: &dyn Fixture) {
    let s = store(f).await;
    s.events.append_all((1..=5).map(draft).collect()).await.unwrap();
    let mut stream = s.events.stream(2);
    for want in 3..=5 {
        assert_eq!(next_seq(&mut stream).await, want);
    }
    s.events.append(draft(6)).await.unwrap();
    assert_eq!(next_seq(&mut stream).await, 6);
    let other = store(f).await;
    other.events.append(draft(7)).await.unwrap();
    other.graph.create(graph_res("default", "from-other"), "user:test").await.unwrap();
    assert_eq!(next_seq(&mut stream).await, 7);
    assert_eq!(next_seq(&mut stream).await, 8);
}

async fn next_seq(stream: &mut crate::events::EventStream) -> u64 {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream delivers within the deadline")
        .expect("the stream does not end")
        .expect("no error")
        .seq
}

async fn chain_with(f: &dyn Fixture, n: u64) -> Store {
    let s = store(f).await;
    s.graph.create(graph_res("default", "g"), "user:test").await.unwrap();
    s.events.append_all((2..=n).map(draft).collect()).await.unwrap();
    s.events.verify_chain().await.unwrap();
    s
}

async fn broken_at(s: &Store) -> u64 {
    match s.events.verify_chain().await {
        Err(Error::ChainBroken(e)) => e.seq,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

/// A modified event (even a one-byte change in the stored row) is named by its seq.
pub async fn tampering_modified_event_is_named(f: &dyn Fixture) {
    let s = chain_with(f, 8).await;
    f.tamper(Box::new(|mut rows| {
        let text = String::from_utf8(rows[4].1.clone()).unwrap().replace("\"i\":5", "\"i\":50");
        rows[4].1 = text.into_bytes();
        rows
    }))
    .await;
    assert_eq!(broken_at(&s).await, 5);
}

/// A deleted event is named: the seq that is missing.
pub async fn tampering_deleted_event_is_named(f: &dyn Fixture) {
    let s = chain_with(f, 8).await;
    f.tamper(Box::new(|mut rows| {
        rows.remove(3);
        rows
    }))
    .await;
    assert_eq!(broken_at(&s).await, 4);
}

/// An inserted event (a copy of another, renumbered in) is named at the insertion point.
pub async fn tampering_inserted_event_is_named(f: &dyn Fixture) {
    let s = chain_with(f, 8).await;
    f.tamper(Box::new(|rows| {
        let mut bytes: Vec<Vec<u8>> = rows.into_iter().map(|r| r.1).collect();
        let copy = bytes[6].clone();
        bytes.insert(2, copy);
        bytes.into_iter().enumerate().map(|(i, b)| (i as u64 + 1, b)).collect()
    }))
    .await;
    assert_eq!(broken_at(&s).await, 3);
}

/// Two swapped events are named at the first swapped position.
pub async fn tampering_reordered_events_are_named(f: &dyn Fixture) {
    let s = chain_with(f, 8).await;
    f.tamper(Box::new(|mut rows| {
        let (a, b) = (rows[5].1.clone(), rows[6].1.clone());
        rows[5].1 = b;
        rows[6].1 = a;
        rows
    }))
    .await;
    assert_eq!(broken_at(&s).await, 6);
}

/// An untampered chain with resources and plain events verifies, and the stored bytes are
/// exactly what the verifier hashes.
pub async fn stored_bytes_verify_independently(f: &dyn Fixture) {
    let s = chain_with(f, 6).await;
    let raw = s.events.query_raw(&EventQuery::default()).await.unwrap();
    let mut v = domain::chain::Verifier::new();
    for r in &raw {
        assert_eq!(v.check(&r.bytes).unwrap().seq, r.seq);
    }
    assert_eq!(v.head(), s.events.head().await.unwrap());
}

/// On a full disk every write fails with `Unavailable` and the same cause (never for a
/// transaction a failed write left behind), nothing is written, reads go on, and the store
/// reports that it cannot write; once space is back a probe says so without any write, and
/// writes succeed again on the same handle with no gap in the chain.
pub async fn a_full_disk_fails_writes_until_space_returns(f: &dyn Fixture) {
    let s = store(f).await;
    let kept = s.graph.create(graph_res("default", "kept"), "user:test").await.unwrap();
    let head = event_count(&s).await;
    assert_eq!(s.events.write_failure(), None);
    s.events.check_writable().await.unwrap();

    f.fill_disk(true).await;
    let big = |name: &str| Resource::new("Graph", Some("default"), name, json!({"description": "x".repeat(1 << 18)}));
    let mut causes = Vec::new();
    for i in 0..3 {
        match s.graph.create(big(&format!("big-{i}")), "user:test").await {
            Err(Error::Unavailable(cause)) => causes.push(cause),
            other => panic!("a write on a full disk must fail as unavailable, got {other:?}"),
        }
    }
    assert!(causes.iter().all(|c| *c == causes[0]), "every write fails for the disk, not for the last one: {causes:?}");
    assert!(matches!(s.events.write_failure(), Some(Error::Unavailable(_))));
    match s.events.check_writable().await {
        Err(Error::Unavailable(m)) => assert!(m.contains("writes are failing"), "{m}"),
        other => panic!("the probe must fail while the disk is full, got {other:?}"),
    }
    assert_eq!(s.graph.get(&kept.key()).await.unwrap(), kept, "reads go on");
    assert_eq!(event_count(&s).await, head, "a failed write leaves no event");

    f.fill_disk(false).await;
    // Nobody writes: the probe alone must notice that space is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = s.events.check_writable().await {
        assert!(std::time::Instant::now() < deadline, "still not writable 10 s after space came back: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.events.write_failure(), None);
    assert_eq!(event_count(&s).await, head, "the probe writes no event");
    for i in 0..3 {
        let created = s.graph.create(big(&format!("big-{i}")), "user:test").await.unwrap();
        assert_eq!(created.resource_version(), Some(head + 1 + i));
    }
    assert_eq!(s.events.verify_chain().await.unwrap().seq, head + 3);
    // A second handle (another process) writes too.
    store(f).await.graph.create(graph_res("default", "after"), "user:test").await.unwrap();
}

/// A lease is held by one holder at a time: taken when free, renewed by its holder, refused to
/// anyone else, released only by its holder, seen alike through a second handle, and listed by
/// prefix in name order.
pub async fn leases_are_held_renewed_and_released(f: &dyn Fixture) {
    let a = store(f).await.leases;
    let b = store(f).await.leases;
    let ttl = Duration::from_secs(60);
    assert!(a.acquire("shard/1", "one", Some("proc-1"), ttl, None).await.unwrap());
    assert!(!b.acquire("shard/1", "two", None, ttl, None).await.unwrap(), "a held lease is refused");
    assert!(a.acquire("shard/1", "one", Some("proc-1"), ttl, None).await.unwrap(), "its holder renews it");
    assert!(b.acquire("shard/2", "two", None, ttl, None).await.unwrap());
    assert!(a.acquire("member/one", "one", None, ttl, None).await.unwrap());
    let listed = b.list("shard/").await.unwrap();
    let names: Vec<(&str, &str)> = listed.iter().map(|l| (l.name.as_str(), l.holder.as_str())).collect();
    assert_eq!(names, [("shard/1", "one"), ("shard/2", "two")]);
    assert_eq!(listed[0].process.as_deref(), Some("proc-1"));
    assert!(listed.iter().all(|l| !l.lapsed() && l.remaining <= ttl), "{listed:?}");
    assert!(!b.release("shard/1", "two").await.unwrap(), "only the holder releases");
    assert!(a.release("shard/1", "one").await.unwrap());
    assert!(!a.release("shard/1", "one").await.unwrap(), "released once");
    assert!(b.acquire("shard/1", "two", None, ttl, None).await.unwrap(), "a released lease is free");
    for bad in [("", "one", ttl), ("x", "", ttl), ("x", "one", Duration::ZERO), ("x", "one", Duration::from_secs(7200))]
    {
        assert!(matches!(a.acquire(bad.0, bad.1, None, bad.2, None).await, Err(Error::Invalid(_))), "{bad:?}");
    }
    assert!(matches!(a.acquire(&"n".repeat(300), "one", None, ttl, None).await, Err(Error::Invalid(_))));
}

/// A lease that lapsed is listed as lapsed and taken by the next caller; one whose holder the
/// caller names as dead is taken before it lapses; nobody else's is.
pub async fn leases_lapse_or_are_taken_from_the_dead(f: &dyn Fixture) {
    let l = store(f).await.leases;
    let long = Duration::from_secs(60);
    assert!(l.acquire("shard/a", "dead", None, long, None).await.unwrap());
    assert!(!l.acquire("shard/a", "new", None, long, Some("someone-else")).await.unwrap());
    assert!(l.acquire("shard/a", "new", None, long, Some("dead")).await.unwrap(), "the dead holder's is taken");
    assert_eq!(l.list("shard/a").await.unwrap()[0].holder, "new");

    assert!(l.acquire("shard/b", "brief", None, Duration::from_millis(200), None).await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = l.list("shard/b").await.unwrap();
        if listed[0].lapsed() {
            break;
        }
        if listed[0].remaining > Duration::from_millis(100) {
            assert!(!l.acquire("shard/b", "next", None, long, None).await.unwrap(), "held until it lapses");
        }
        assert!(std::time::Instant::now() < deadline, "a 200 ms lease has not lapsed after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(l.acquire("shard/b", "next", None, long, None).await.unwrap(), "a lapsed lease is taken");
}

/// Many processes racing for one lease: exactly one wins.
pub async fn concurrent_acquires_have_one_winner(f: &dyn Fixture) {
    let handles = [store(f).await.leases, store(f).await.leases];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let l = handles[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            l.acquire("contested", &format!("holder-{i}"), None, Duration::from_secs(60), None).await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

async fn cas(f: &dyn CasFixture) -> Cas {
    Cas::new(f.open().await)
}

/// Store returns the SHA-256 digest; resolve returns the same bytes; sizes from 0 to 1 MiB.
pub async fn cas_round_trip(f: &dyn CasFixture) {
    let c = cas(f).await;
    for size in [0usize, 1, 1000, 1 << 20] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let d = c.store(bytes.clone()).await.unwrap();
        assert_eq!(d, Digest::of(&bytes));
        assert!(c.exists(&d).await.unwrap());
        assert_eq!(c.resolve(&d).await.unwrap(), bytes);
    }
    assert_eq!(
        c.store(b"abc".to_vec()).await.unwrap().to_string(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Storing the same bytes twice is one blob; list is sorted; delete removes; a missing blob is
/// NotFound and deleting it again says so.
pub async fn cas_idempotent_list_delete(f: &dyn CasFixture) {
    let c = cas(f).await;
    let a = c.store(b"one".to_vec()).await.unwrap();
    assert_eq!(c.store(b"one".to_vec()).await.unwrap(), a);
    let b = c.store(b"two".to_vec()).await.unwrap();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(c.list_digests().await.unwrap(), want);
    assert!(c.delete(&a).await.unwrap());
    assert!(!c.delete(&a).await.unwrap());
    assert!(!c.exists(&a).await.unwrap());
    assert!(matches!(c.resolve(&a).await, Err(Error::NotFound(_))));
    assert_eq!(c.list_digests().await.unwrap(), vec![b]);
    // Reopening sees the same blobs.
    assert_eq!(cas(f).await.list_digests().await.unwrap(), vec![b]);
}

/// Concurrent stores of the same and different blobs all succeed and leave one copy each.
pub async fn cas_concurrent_stores(f: &dyn CasFixture) {
    let c = cas(f).await;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.store(vec![i % 4; 4096]).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.list_digests().await.unwrap().len(), 4);
}

/// A blob whose stored bytes were changed is refused on read, never returned.
pub async fn cas_corrupt_blob_is_refused(f: &dyn CasFixture) {
    let c = cas(f).await;
    let d = c.store(b"the real bytes".to_vec()).await.unwrap();
    f.corrupt(&d, b"the fake bytes").await;
    match c.resolve(&d).await {
        Err(Error::Corrupt(m)) => assert!(m.contains(&d.to_string()), "{m}"),
        other => panic!("a corrupt blob must be refused, got {other:?}"),
    }
}

/// Storing the right bytes over a corrupt blob repairs it, whether the copy was changed in place,
/// cut short or emptied; storing them over an intact blob leaves it as it is.
pub async fn cas_store_repairs_a_corrupt_blob(f: &dyn CasFixture) {
    let c = cas(f).await;
    let real = b"the real bytes".to_vec();
    let d = c.store(real.clone()).await.unwrap();
    for damage in [&b"the fake bytes"[..], b"the real", b""] {
        f.corrupt(&d, damage).await;
        assert!(matches!(c.resolve(&d).await, Err(Error::Corrupt(_))), "the damage is seen first");
        assert_eq!(c.store(real.clone()).await.unwrap(), d);
        assert_eq!(c.resolve(&d).await.unwrap(), real, "the blob is whole again after {damage:?}");
        // A second handle (another process) sees the repaired blob too.
        assert_eq!(cas(f).await.resolve(&d).await.unwrap(), real);
    }
    assert_eq!(c.store(real.clone()).await.unwrap(), d);
    assert_eq!(c.list_digests().await.unwrap(), vec![d]);
}

/// Expand the Graph Storage + Event Log suite into one test per case. `$fixture` is an
/// expression whose value is a future of `Option<impl Fixture>`; `None` skips the case (the
/// fixture says why).
#[macro_export]
macro_rules! graph_and_log_conformance {
    ($fixture:expr) => {
        $crate::conformance_cases!($fixture;
            create_then_get, create_twice_is_refused_without_a_trace, update_rules,
            recorded_events_precede_their_write,
            each_write_is_exactly_one_event, delete_and_finalizers, list_and_paginate,
            query_by_labels_matches_selector_semantics, traverse_typed_edges, append_links_events,
            concurrent_writers_make_one_chain, two_handles_share_one_chain, reopen_continues_the_chain,
            query_filters, stream_replays_then_tails, tampering_modified_event_is_named,
            tampering_deleted_event_is_named, tampering_inserted_event_is_named,
            tampering_reordered_events_are_named, stored_bytes_verify_independently,
            a_full_disk_fails_writes_until_space_returns,
            state_of_an_untouched_store_matches, state_edited_row_is_named, state_rolled_back_row_is_named,
            state_removed_and_made_up_rows_are_named, state_check_while_writing_reports_nothing_false,
            batched_reads_match_single_queries, leases_are_held_renewed_and_released,
            leases_lapse_or_are_taken_from_the_dead, concurrent_acquires_have_one_winner);
    };
}

/// Expand the CAS suite into one test per case (see [`graph_and_log_conformance!`]).
#[macro_export]
macro_rules! cas_conformance {
    ($fixture:expr) => {
        $crate::conformance_cases!($fixture;
            cas_round_trip, cas_idempotent_list_delete, cas_concurrent_stores, cas_corrupt_blob_is_refused,
            cas_store_repairs_a_corrupt_blob);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    ($fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $fixture.await else { return };
                $crate::conformance::$case(&fixture).await;
            }
        )*
    };
}
