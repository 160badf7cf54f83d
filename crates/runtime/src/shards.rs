//! Controller work divided between the processes on one store. Every key belongs to one of
//! [`SHARDS`] shards (a hash of its kind, namespace and name). Each process holds a member lease
//! (`member/<holder>`) and, for every shard that rendezvous hashing over the live members gives
//! it, the shard's lease (`shard/<n>`); its controllers reconcile only the keys of the shards it
//! holds. A member that stops renewing, or that this machine sees gone, drops out, and the
//! others take its shards: at once when it is on this machine, after a lease period otherwise.
//!
//! The leases divide work; they do not make it correct. Two processes can briefly both think
//! they own a shard (one has not seen the change yet), and then they act as processes did before
//! sharding: their writes are conditional, and the second is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain::ObjectKey;
use storage::Leases;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How many shards the keys are divided into (at most 64: the owned set is a bit mask).
pub const SHARDS: u32 = 16;

const MEMBER: &str = "member/";
const SHARD: &str = "shard/";

/// 64-bit FNV-1a: stable across processes, builds and machines (unlike the std hasher).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Spread every input bit over the output (the 64-bit finalizer of MurmurHash3): FNV alone
/// barely changes its high bits for a change in the last byte, and rendezvous hashing compares
/// whole values.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The shard `key` belongs to.
pub fn shard_of(key: &ObjectKey) -> u32 {
    (mix(fnv(&[&key.kind, &key.namespace, &key.name])) % u64::from(SHARDS)) as u32
}

/// Which member should hold `shard`: the one with the highest hash of (member, shard), so that a
/// member joining or leaving moves only the shards it wins or held.
pub fn owner_of(shard: u32, members: &BTreeSet<String>) -> Option<&str> {
    let n = shard.to_string();
    members.iter().max_by_key(|m| mix(fnv(&[m, &n]))).map(String::as_str)
}

/// The shards this process holds.
#[derive(Debug)]
pub struct Shards {
    leases: Leases,
    holder: String,
    process: Option<String>,
    ttl: Duration,
    owned: AtomicU64,
    /// Bumped each time a shard is gained: the controllers then look at every key again.
    gained: watch::Sender<u64>,
}

impl Shards {
    /// Shards held as `holder` through `leases`, each lease taken for `ttl`.
    pub fn new(leases: Leases, holder: String, ttl: Duration) -> Arc<Shards> {
        Arc::new(Shards {
            leases,
            holder,
            process: crate::liveness::this_process(),
            ttl,
            owned: AtomicU64::new(0),
            gained: watch::channel(0).0,
        })
    }

    /// Whether this process reconciles `key` now.
    pub fn owns(&self, key: &ObjectKey) -> bool {
        self.owned.load(Ordering::Acquire) & (1 << shard_of(key)) != 0
    }

    /// The shards held, as a bit mask.
    pub fn owned(&self) -> u64 {
        self.owned.load(Ordering::Acquire)
    }

    /// Told each time a shard is gained.
    pub fn gains(&self) -> watch::Receiver<u64> {
        self.gained.subscribe()
    }

    /// Renew membership and take, keep or give up shards, every third of the lease period,
    /// until `stop`; then give every shard and the membership up so that the others take them at
    /// once. A round that fails keeps what is held until its leases would have lapsed.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut valid_until = Instant::now();
        loop {
            let started = Instant::now();
            match self.round().await {
                Ok(mask) => {
                    valid_until = started + self.ttl;
                    self.publish(mask);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew this process's shards");
                    if Instant::now() >= valid_until {
                        self.publish(0);
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.ttl / 3) => {}
            }
        }
        self.publish(0);
        for n in 0..SHARDS {
            let _ = self.leases.release(&format!("{SHARD}{n}"), &self.holder).await;
        }
        let _ = self.leases.release(&format!("{MEMBER}{}", self.holder), &self.holder).await;
    }

    /// One round; the shards held after it.
    pub async fn round(&self) -> storage::Result<u64> {
        let me = self.holder.as_str();
        let process = self.process.as_deref();
        self.leases.acquire(&format!("{MEMBER}{me}"), me, process, self.ttl, None).await?;
        let mut members: BTreeSet<String> = self
            .leases
            .list(MEMBER)
            .await?
            .into_iter()
            .filter(|l| !l.lapsed() && !l.process.as_deref().is_some_and(crate::liveness::is_gone))
            .map(|l| l.holder)
            .collect();
        members.insert(me.to_string());
        let held = self.leases.list(SHARD).await?;
        let mut mask = 0u64;
        for n in 0..SHARDS {
            let name = format!("{SHARD}{n}");
            let current = held.iter().find(|l| l.name == name);
            if owner_of(n, &members) == Some(me) {
                // A holder that is no live member is dead (its membership lapsed or its process
                // is gone): its shard is taken now rather than when its lease runs out.
                let dead = current.map(|l| l.holder.as_str()).filter(|h| *h != me && !members.contains(*h));
                if self.leases.acquire(&name, me, process, self.ttl, dead).await? {
                    mask |= 1 << n;
                }
            } else if current.is_some_and(|l| l.holder == me) {
                self.leases.release(&name, me).await?;
            }
        }
        Ok(mask)
    }

    fn publish(&self, mask: u64) {
        let before = self.owned.swap(mask, Ordering::AcqRel);
        if mask & !before != 0 {
            self.gained.send_modify(|n| *n += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_shard_has_one_owner_and_a_leaver_moves_only_its_own() {
        let three = members(&["r5e-101-a", "r5e-102-b", "r5e-103-c"]);
        let two = members(&["r5e-101-a", "r5e-102-b"]);
        let mut counts = std::collections::HashMap::new();
        for n in 0..SHARDS {
            let before = owner_of(n, &three).unwrap();
            *counts.entry(before).or_insert(0) += 1;
            let after = owner_of(n, &two).unwrap();
            if before != "r5e-103-c" {
                assert_eq!(before, after, "shard {n} moved although its owner stayed");
            }
        }
        assert_eq!(counts.len(), 3, "every member gets some of {SHARDS} shards: {counts:?}");
        assert_eq!(owner_of(0, &BTreeSet::new()), None);
    }

    #[test]
    fn a_key_always_lands_in_the_same_shard() {
        let key = ObjectKey::new("Task", "default", "write-1");
        assert_eq!(shard_of(&key), shard_of(&key.clone()));
        assert!(shard_of(&key) < SHARDS);
        // Fixed: a change of hash would move every key at an upgrade with replicas of two versions.
        assert_eq!(fnv(&["a"]), 0x089b_e207_b544_f1e4, "FNV-1a of \"a\\0\"");
        let spread: BTreeSet<u32> =
            (0..200).map(|i| shard_of(&ObjectKey::new("Task", "d", &format!("t-{i}")))).collect();
        assert_eq!(spread.len(), SHARDS as usize, "200 keys reach every shard");
    }
}
