//! The hash-chained event: its fixed format, how an event is sealed onto the chain, and how a
//! chain is verified. `docs/audit-format.md` specifies the same rules for outside verifiers.
//!
//! An event is a JSON object with the members `actor`, `data`, `hash`, `prev_hash`, `seq`,
//! `subject`, `time` and `type`. `hash` is `sha256:` + hex SHA-256 of the RFC 8785 canonical bytes
//! of the event without `hash`; `prev_hash` is the previous event's `hash` (all zeros for seq 1).
//! The stored form of an event is the canonical bytes of the whole object, `hash` included.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::{canonical, canonical_form};

/// What a writer supplies; the chain adds `seq`, `time`, `prev_hash` and `hash`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
    /// Dotted event type, e.g. `resource.created`, `admission.decision`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Who caused it, e.g. `user:admin`, `system`.
    pub actor: String,
    /// What it is about, e.g. `Task/default/write-notes`.
    pub subject: String,
    /// Type-specific payload.
    pub data: Value,
}

/// An event on the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position on the chain: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// When it was sealed, RFC 3339 UTC with microseconds.
    pub time: String,
    /// Dotted event type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Who caused it.
    pub actor: String,
    /// What it is about.
    pub subject: String,
    /// Type-specific payload.
    pub data: Value,
    /// The previous event's hash ([`Digest::ZERO`] for seq 1).
    pub prev_hash: Digest,
    /// This event's hash.
    pub hash: Digest,
}

/// The end of a chain: the last seq (0 when empty) and its hash ([`Digest::ZERO`] when empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The last event's seq, which is also the number of events.
    pub seq: u64,
    /// The last event's hash.
    pub hash: Digest,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const GENESIS: ChainHead = ChainHead { seq: 0, hash: Digest::ZERO };
}

/// An event together with the exact canonical bytes that are stored and exported.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedEvent {
    /// The event.
    pub event: Event,
    /// Its canonical bytes, `hash` included.
    pub bytes: Vec<u8>,
}

/// Why an event could not be sealed: its data is not expressible as canonical JSON.
#[derive(Debug, thiserror::Error)]
#[error("event data cannot be canonicalised: {0}")]
pub struct SealError(#[from] serde_json::Error);

/// Format a time the way events carry it: RFC 3339, UTC, microseconds, `Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Seal `draft` as the event after `head`, at `time`. The caller stores the returned bytes and
/// moves its head to `(event.seq, event.hash)`.
pub fn seal(head: &ChainHead, draft: EventDraft, time: DateTime<Utc>) -> Result<SealedEvent, SealError> {
    let seq = head.seq + 1;
    let time = format_time(time);
    // The members in RFC 8785 order (all keys are ASCII, so code-unit order is byte order):
    // actor, data, [hash], prev_hash, seq, subject, time, type.
    let mut head_part = b"{\"actor\":".to_vec();
    head_part.extend(canonical::to_vec(&draft.actor)?);
    head_part.extend(b",\"data\":");
    head_part.extend(canonical::to_vec(&draft.data)?);
    let mut tail = b",\"prev_hash\":".to_vec();
    tail.extend(canonical::to_vec(&head.hash)?);
    tail.extend(format!(",\"seq\":{seq},\"subject\":").as_bytes());
    tail.extend(canonical::to_vec(&draft.subject)?);
    tail.extend(b",\"time\":");
    tail.extend(canonical::to_vec(&time)?);
    tail.extend(b",\"type\":");
    tail.extend(canonical::to_vec(&draft.type_)?);
    tail.push(b'}');

    let mut hasher = crate::digest::Hasher::new();
    hasher.update(&head_part);
    hasher.update(&tail);
    let hash = hasher.finish();

    let mut bytes = head_part;
    bytes.extend(format!(",\"hash\":\"{hash}\"").as_bytes());
    bytes.extend(tail);
    let event = Event {
        seq,
        time,
        type_: draft.type_,
        actor: draft.actor,
        subject: draft.subject,
        data: draft.data,
        prev_hash: head.hash,
        hash,
    };
    Ok(SealedEvent { event, bytes })
}

/// The first place a chain fails verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at seq {seq}: {reason}")]
pub struct ChainError {
    /// The seq of the first event that does not verify (its position on the chain).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks events in order, one at a time, against everything before them.
#[derive(Clone, Debug)]
pub struct Verifier {
    head: ChainHead,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A verifier for a chain that starts at seq 1.
    pub fn new() -> Self {
        Verifier { head: ChainHead::GENESIS }
    }

    /// A verifier that continues after an already-verified `head`.
    pub fn resume(head: ChainHead) -> Self {
        Verifier { head }
    }

    /// The head verified so far: `seq` is the count of events checked (plus where it resumed).
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Check the stored bytes of the next event; on success the head moves to it and is returned.
    ///
    /// Checks, in order: the bytes are one JSON object in RFC 8785 canonical form; its `seq` is
    /// the next one; `time`, `type`, `actor`, `subject` and `data` are present; `prev_hash` is the
    /// previous event's hash; `hash` is the SHA-256 of the event without its `hash` member. The
    /// check runs on the bytes directly (no values are built), so it is close to hashing speed.
    pub fn check(&mut self, bytes: &[u8]) -> Result<ChainHead, ChainError> {
        let seq = self.head.seq + 1;
        let fail = |reason: String| ChainError { seq, reason };
        let text = std::str::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
        let members = canonical_form::object_members(text)
            .map_err(|e| fail(format!("not in RFC 8785 canonical form: {} (at byte {})", e.what, e.at)))?;
        let member = |name: &str| members.iter().find(|m| m.key == name);
        let value = |name: &str| member(name).map(|m| &text[m.value.clone()]);
        let found = value("seq");
        if found.and_then(|v| v.parse::<u64>().ok()) != Some(seq) {
            return Err(fail(format!(
                "expected seq {seq}, found {} (an event was removed, inserted or reordered)",
                found.unwrap_or("none")
            )));
        }
        for name in ["time", "type", "actor", "subject"] {
            if !value(name).is_some_and(|v| v.starts_with('"')) {
                return Err(fail(format!("member `{name}` is missing or not a string")));
            }
        }
        if member("data").is_none() {
            return Err(fail("member `data` is missing".into()));
        }
        let digest = |name: &str| -> Result<Digest, ChainError> {
            value(name)
                .and_then(|v| v.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                .ok_or_else(|| fail(format!("member `{name}` is missing or not a digest")))
        };
        if digest("prev_hash")? != self.head.hash {
            return Err(fail(format!(
                "prev_hash does not match the hash of seq {} (that event or this one was altered)",
                self.head.seq
            )));
        }
        let hash = digest("hash")?;
        // The canonical form without `hash` is these bytes with the member and one comma cut out.
        let span = member("hash").map(|m| m.span.clone()).expect("checked above");
        let (cut_start, cut_end) =
            if bytes[span.start - 1] == b',' { (span.start - 1, span.end) } else { (span.start, span.end + 1) };
        let mut hasher = crate::digest::Hasher::new();
        hasher.update(&bytes[..cut_start]);
        hasher.update(&bytes[cut_end..]);
        if hasher.finish() != hash {
            return Err(fail("hash does not match the event's contents (the event was modified)".into()));
        }
        self.head = ChainHead { seq, hash };
        Ok(self.head)
    }
}

/// A chain that verifies but does not end at the head recorded for it elsewhere: events were cut
/// off its tail, or it was rewritten.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("head mismatch: the chain ends at seq {} with head {}, expected {expected}", found.seq, found.hash)]
pub struct HeadMismatch {
    /// Where the chain actually ends.
    pub found: ChainHead,
    /// The head recorded for it.
    pub expected: Digest,
}

impl ChainHead {
    /// This head, if it is the `expected` one (when one was recorded).
    pub fn expect(self, expected: Option<&Digest>) -> Result<ChainHead, HeadMismatch> {
        match expected {
            Some(e) if *e != self.hash => Err(HeadMismatch { found: self, expected: *e }),
            _ => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn draft(n: u64) -> EventDraft {
        EventDraft {
            type_: "test.event".into(),
            actor: "user:admin".into(),
            subject: format!("Thing/default/t{n}"),
            data: json!({"n": n, "text": "h\u{e9}llo \"q\"", "nested": {"hash": "x", "z": [1, 2]}}),
        }
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut head = ChainHead::GENESIS;
        (1..=n)
            .map(|i| {
                let s = seal(&head, draft(i), Utc.timestamp_opt(1_800_000_000 + i as i64, 0).unwrap()).unwrap();
                head = ChainHead { seq: s.event.seq, hash: s.event.hash };
                s.bytes
            })
            .collect()
    }

    fn verify(lines: &[Vec<u8>]) -> Result<ChainHead, ChainError> {
        let mut v = Verifier::new();
        for l in lines {
            v.check(l)?;
        }
        Ok(v.head())
    }

    #[test]
    fn sealed_bytes_are_canonical_and_the_hash_follows_the_rule() {
        let s = seal(&ChainHead::GENESIS, draft(1), Utc.timestamp_opt(0, 0).unwrap()).unwrap();
        let value: Value = serde_json::from_slice(&s.bytes).unwrap();
        assert_eq!(canonical::to_vec(&value).unwrap(), s.bytes);
        let mut without = value.clone();
        without.as_object_mut().unwrap().remove("hash");
        assert_eq!(canonical::digest(&without).unwrap(), s.event.hash);
        assert_eq!(value["prev_hash"], json!(format!("sha256:{}", "0".repeat(64))));
        assert_eq!(value["time"], json!("1970-01-01T00:00:00.000000Z"));
        assert_eq!(value["seq"], json!(1));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let lines = chain(5);
        let head = verify(&lines).unwrap();
        assert_eq!(head.seq, 5);
        let last: Event = serde_json::from_slice(&lines[4]).unwrap();
        assert_eq!(head.hash, last.hash);
        assert_eq!(verify(&[]).unwrap(), ChainHead::GENESIS);
    }

    #[test]
    fn a_modified_event_is_named() {
        let mut lines = chain(5);
        lines[2] = String::from_utf8(lines[2].clone()).unwrap().replace("\"n\":3", "\"n\":4").into_bytes();
        let e = verify(&lines).unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(e.reason.contains("was modified"), "{e}");
    }

    #[test]
    fn a_modified_and_rehashed_event_breaks_the_next_link() {
        let mut lines = chain(5);
        let mut ev: Event = serde_json::from_slice(&lines[2]).unwrap();
        ev.data["n"] = json!(99);
        let head = ChainHead { seq: 2, hash: ev.prev_hash };
        let t = chrono::DateTime::parse_from_rfc3339(&ev.time).unwrap().with_timezone(&Utc);
        lines[2] = seal(&head, EventDraft { type_: ev.type_, actor: ev.actor, subject: ev.subject, data: ev.data }, t)
            .unwrap()
            .bytes;
        let e = verify(&lines).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.reason.contains("prev_hash"), "{e}");
    }

    #[test]
    fn deleted_inserted_reordered_and_reformatted_events_are_named() {
        let lines = chain(6);
        let mut deleted = lines.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted).unwrap_err().seq, 4);

        let mut inserted = lines.clone();
        inserted.insert(2, lines[4].clone());
        assert_eq!(verify(&inserted).unwrap_err().seq, 3);

        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered).unwrap_err().seq, 2);

        let mut spaced = lines.clone();
        spaced[4] = String::from_utf8(lines[4].clone()).unwrap().replacen(',', ", ", 1).into_bytes();
        let e = verify(&spaced).unwrap_err();
        assert_eq!(e.seq, 5);
        assert!(e.reason.contains("canonical"), "{e}");

        let mut garbage = lines.clone();
        garbage[0] = b"not json".to_vec();
        assert_eq!(verify(&garbage).unwrap_err().seq, 1);
    }

    #[test]
    fn a_cut_tail_is_caught_only_against_a_recorded_head() {
        let lines = chain(4);
        let full_head = verify(&lines).unwrap();
        let mut v = Verifier::new();
        for l in &lines[..3] {
            v.check(l).unwrap();
        }
        assert!(v.head().expect(None).is_ok());
        let e = v.head().expect(Some(&full_head.hash)).unwrap_err();
        assert_eq!(e.found.seq, 3);
        assert!(e.to_string().starts_with("head mismatch: the chain ends at seq 3 with head sha256:"), "{e}");
    }

    proptest! {
        /// Changing any single byte of any event is detected, and at that very event.
        #[test]
        fn any_single_byte_change_is_detected(n in 1u64..6, pick in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut lines = chain(n);
            let i = pick.index(lines.len());
            let j = pick.index(lines[i].len());
            prop_assume!(lines[i][j] != byte);
            lines[i][j] = byte;
            let e = verify(&lines).unwrap_err();
            prop_assert_eq!(e.seq, i as u64 + 1, "{}", e);
        }
    }
}
