//! Conformance cases of the state check: the stored resources against the event log, untouched,
//! while being written, and after rows were edited, rolled back, removed, put back or made up
//! behind the contract's back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use domain::state::Mismatch;
use domain::{ObjectKey, Resource};
use serde_json::json;

use super::{Fixture, draft, graph_res, store};
use crate::{EventQuery, Store};

const FORBID: &str = "forbid(principal, action, resource);";
const PERMIT: &str = "permit(principal, action, resource);";

fn policy(name: &str, cedar: &str) -> Resource {
    Resource::new("Policy", Some("default"), name, json!({"cedar": cedar}))
}

async fn assert_clean(s: &Store, resources: u64) {
    let report = s.verify_state().await.unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert_eq!((report.resources, report.live), (resources, resources));
    assert_eq!(report.head, s.events.head().await.unwrap());
    let checked = s.check_stored().await.unwrap();
    assert!(checked.mismatches.is_empty(), "{:?}", checked.mismatches);
    assert_eq!(checked.resources, resources);
}

/// After every kind of write (create, update, status, delete, finalizers, plain events) the
/// stored resources are exactly what the log says.
pub async fn state_of_an_untouched_store_matches(f: &dyn Fixture) {
    let s = store(f).await;
    assert_clean(&s, 0).await;
    let p = s.graph.create(policy("p", FORBID), "user:test").await.unwrap();
    let mut next = p.clone();
    next.spec["description"] = json!("no writes at all");
    next.spec["weight"] = json!(1.5);
    next.spec["ratio"] = json!(2.0);
    s.graph.update(next, "user:test").await.unwrap();
    let mut g = s.graph.create(graph_res("default", "g"), "user:test").await.unwrap();
    g.status = json!({"phase": "Running", "nodes": {"total": 3}});
    s.graph.update_status(g, "controller").await.unwrap();
    let gone = s.graph.create(graph_res("default", "gone"), "user:test").await.unwrap();
    s.graph.delete(&gone.key(), None, "user:test").await.unwrap();
    let mut held = graph_res("default", "held");
    held.metadata.finalizers = vec!["r5e.ai/cleanup".into()];
    let held = s.graph.create(held, "user:test").await.unwrap();
    s.graph.delete(&held.key(), None, "user:test").await.unwrap();
    s.events.append(super::draft(1)).await.unwrap();
    assert_clean(&s, 3).await;
}

/// A row edited in place (a Policy's forbid turned into permit) is named, with the edited field,
/// by the point check and by the replay; putting the row back clears it.
pub async fn state_edited_row_is_named(f: &dyn Fixture) {
    let s = store(f).await;
    let p = s.graph.create(policy("p", FORBID), "user:test").await.unwrap();
    s.graph.create(policy("q", FORBID), "user:test").await.unwrap();
    let mut edited = p.to_value();
    edited["spec"]["cedar"] = json!(PERMIT);
    f.set_row(&p.key(), Some(edited)).await;
    let want = Mismatch::Differs { key: p.key(), seq: 1, paths: vec!["spec.cedar".into()] };
    assert_eq!(s.check_stored().await.unwrap().mismatches, std::slice::from_ref(&want));
    assert_eq!(s.verify_state().await.unwrap().mismatches, [want]);
    let stored = s.graph.get(&p.key()).await.unwrap();
    assert_eq!(s.check_written(&[stored], 2).await.unwrap().len(), 1);
    f.set_row(&p.key(), Some(p.to_value())).await;
    assert_clean(&s, 2).await;
}

/// A row put back to an earlier version that the log really wrote matches that event, but a
/// later write of its key exists: the point check calls it stale, the replay names the fields
/// that differ from the last write.
pub async fn state_rolled_back_row_is_named(f: &dyn Fixture) {
    let s = store(f).await;
    let v1 = s.graph.create(policy("p", PERMIT), "user:test").await.unwrap();
    let mut tighter = v1.clone();
    tighter.spec["cedar"] = json!(FORBID);
    let v2 = s.graph.update(tighter, "user:test").await.unwrap();
    s.events.append(super::draft(3)).await.unwrap();
    f.set_row(&v1.key(), Some(v1.to_value())).await;
    assert_eq!(
        s.check_stored().await.unwrap().mismatches,
        [Mismatch::Stale { key: v1.key(), resource_version: 1, later: 2 }]
    );
    let report = s.verify_state().await.unwrap();
    let Some(Mismatch::Differs { seq: 2, paths, .. }) = report.mismatches.first() else {
        panic!("{:?}", report.mismatches)
    };
    assert!(paths.contains(&"spec.cedar".to_string()) && paths.contains(&"metadata.resourceVersion".to_string()));
    assert_eq!(report.mismatches.len(), 1);
    f.set_row(&v2.key(), Some(v2.to_value())).await;
    assert_clean(&s, 1).await;
}

/// A removed row is missing (the point check counts it, the replay names it); a deleted resource
/// put back, and a resource no event ever wrote, are unwritten.
pub async fn state_removed_and_made_up_rows_are_named(f: &dyn Fixture) {
    let s = store(f).await;
    let kept = s.graph.create(policy("kept", FORBID), "user:test").await.unwrap();
    let removed = s.graph.create(policy("removed", FORBID), "user:test").await.unwrap();
    let deleted = s.graph.create(policy("deleted", FORBID), "user:test").await.unwrap();
    let last = s.graph.delete(&deleted.key(), None, "user:test").await.unwrap();
    // Without a replay, a removed row shows only as a count: the log leaves two in place, one is stored.
    f.set_row(&removed.key(), None).await;
    let head = s.events.head().await.unwrap().seq;
    assert_eq!(s.check_stored().await.unwrap().mismatches, [Mismatch::MissingRows { count: 1, head }]);

    f.set_row(&deleted.key(), Some(deleted.to_value())).await;
    let mut made_up = kept.to_value();
    made_up["metadata"]["name"] = json!("made-up");
    made_up["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    let made_up_key = ObjectKey::new("Policy", "default", "made-up");
    f.set_row(&made_up_key, Some(made_up)).await;
    // The rows that are there but should not be are named (and fill the count).
    let point = s.check_stored().await.unwrap();
    assert_eq!(point.resources, 3);
    assert!(
        matches!(&point.mismatches[..], [
            Mismatch::Stale { key: stale, resource_version: 3, later },
            Mismatch::Unwritten { key: unwritten, resource_version: Some(1), .. },
        ] if *stale == deleted.key() && Some(*later) == last.resource_version() && *unwritten == made_up_key),
        "{:?}",
        point.mismatches
    );

    let report = s.verify_state().await.unwrap();
    let mut found: Vec<(String, &str)> = report
        .mismatches
        .iter()
        .map(|m| {
            let what = match m {
                Mismatch::Unwritten { .. } => "unwritten",
                Mismatch::Missing { .. } => "missing",
                _ => "other",
            };
            (m.key().unwrap().name.clone(), what)
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [("deleted".into(), "unwritten"), ("made-up".into(), "unwritten"), ("removed".into(), "missing")]
    );
    assert_eq!((report.resources, report.live), (3, 2));
}

/// Checking a store while it is being written (creates, updates, status writes, deletes, over
/// more than one page of resources) reports nothing that is not there.
pub async fn state_check_while_writing_reports_nothing_false(f: &dyn Fixture) {
    let s = store(f).await;
    let creates = (0..1200).map(|i| s.graph.create(graph_res("many", &format!("r{i}")), "user:test"));
    futures::future::try_join_all(creates).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, done) = (s.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                let key = ObjectKey::new("Graph", "busy", &format!("b{}", i % 40));
                match s.graph.get(&key).await {
                    Err(_) => drop(s.graph.create(graph_res("busy", &key.name), "user:test").await.unwrap()),
                    Ok(r) if i % 3 == 0 => drop(s.graph.delete(&r.key(), None, "user:test").await.unwrap()),
                    Ok(mut r) if i % 3 == 1 => {
                        r.status = json!({"n": i});
                        s.graph.update_status(r, "controller").await.unwrap();
                    }
                    Ok(mut r) => {
                        r.spec = json!({"description": format!("v{i}")});
                        s.graph.update(r, "user:test").await.unwrap();
                    }
                }
                // Resources on both sides of every page boundary change too.
                let far = ObjectKey::new("Graph", "many", &format!("r{}", (i * 7) % 1200));
                let mut r = s.graph.get(&far).await.unwrap();
                r.status = json!({"touched": i});
                s.graph.update_status(r, "controller").await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut checks = 0;
    while !done.load(Ordering::SeqCst) || checks < 2 {
        let report = s.verify_state().await.unwrap();
        assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
        let point = s.check_stored().await.unwrap();
        assert!(point.mismatches.is_empty(), "{:?}", point.mismatches);
        checks += 1;
    }
    writer.await.unwrap();
    let live = s.verify_state().await.unwrap().live;
    assert_clean(&s, live).await;
    assert!(live > 1200);
}

/// The batched point reads answer exactly what one query per seq or per subject would, across
/// statement-sized chunks, for seqs that are missing, repeated or out of order.
pub async fn batched_reads_match_single_queries(f: &dyn Fixture) {
    let s = store(f).await;
    s.events.append_all((1..=1200).map(draft).collect()).await.unwrap();
    let mut seqs: Vec<u64> = (0..700).map(|i| (i * 7919) % 1300).collect();
    seqs.extend([0, 5, 5, u64::MAX, i64::MAX as u64 + 1]);
    let got = s.events.query_at(&seqs).await.unwrap();
    let mut want = Vec::new();
    for seq in seqs.iter().copied().filter(|s| (1..=1200).contains(s)) {
        let one = EventQuery { from_seq: Some(seq), to_seq: Some(seq), ..Default::default() };
        want.extend(s.events.query_raw(&one).await.unwrap());
    }
    want.sort_by_key(|e| e.seq);
    want.dedup_by_key(|e| e.seq);
    assert_eq!(got, want);
    assert!(s.events.query_at(&[]).await.unwrap().is_empty());

    let types = vec!["test.odd".to_string()];
    let starts: Vec<(String, u64)> =
        (0..700).map(|i| (format!("Thing/default/t{}", i % 4), (i as u64 * 13) % 1250)).collect();
    for (to_seq, types) in [(1000, types.clone()), (1200, Vec::new()), (u64::MAX, types)] {
        let got = s.events.next_by_subject(&starts, &types, to_seq).await.unwrap();
        let mut want = Vec::new();
        for (subject, after) in &starts {
            let one = EventQuery {
                from_seq: Some(after + 1),
                to_seq: Some(to_seq.min(i64::MAX as u64)),
                types: types.clone(),
                subject: Some(subject.clone()),
                limit: Some(1),
            };
            want.push(s.events.query_raw(&one).await.unwrap().first().map(|e| e.seq));
        }
        assert_eq!(got, want, "up to {to_seq}, types {types:?}");
        assert!(got.iter().any(Option::is_some) && got.iter().any(Option::is_none));
    }
    assert!(s.events.next_by_subject(&[], &[], 10).await.unwrap().is_empty());
}
