//! The Leases contract: `acquire`, `release`, `list`. A lease is a short claim, by name, that
//! lets the processes sharing one store divide live work between them (which process reconciles
//! which shard of the controllers' keys). It is liveness, not truth: leases are not resources and
//! are not on the chain, every one of them runs out unless renewed, and losing them all loses
//! nothing durable. Correctness never rests on a lease alone: the writes the holder makes are
//! conditional like everyone's.
//!
//! Expiry is measured by the backend's clock (the database server's, on a shared database), so
//! processes whose clocks differ still agree on when a lease has lapsed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Error, Result};

/// One lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// What is held.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// How to tell whether the holder's process is still alive (opaque to storage).
    pub process: Option<String>,
    /// How long it still runs by the backend's clock; zero once it has lapsed.
    pub remaining: Duration,
}

impl Lease {
    /// Whether it has run out.
    pub fn lapsed(&self) -> bool {
        self.remaining.is_zero()
    }
}

/// A place that keeps leases.
///
/// Contract: `acquire` atomically makes `holder` the holder of `name` until `ttl` from now by the
/// backend's clock, and returns `true`, exactly when the lease is absent, already `holder`'s,
/// lapsed, or held by `take_from` (a holder the caller knows to be dead); otherwise it changes
/// nothing and returns `false`. `release` removes the lease only if `holder` holds it. `list`
/// returns every lease whose name starts with `prefix`, lapsed ones included, by name.
#[async_trait]
pub trait LeaseBackend: Send + Sync + 'static {
    /// Take or renew `name`.
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        take_from: Option<&str>,
    ) -> Result<bool>;
    /// Give `name` up.
    async fn release(&self, name: &str, holder: &str) -> Result<bool>;
    /// The leases under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Lease>>;
}

/// The Leases handle.
#[derive(Clone)]
pub struct Leases {
    backend: Arc<dyn LeaseBackend>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

/// The longest a lease may be taken for: long enough for any renewal period, short enough that a
/// mistaken value cannot park work for days.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The longest lease name or holder.
pub const MAX_NAME: usize = 256;

fn check(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::Invalid(format!("a lease {what} must be 1 to {MAX_NAME} bytes, got {}", value.len())));
    }
    Ok(())
}

impl Leases {
    /// A handle over `backend`.
    pub fn new(backend: Arc<dyn LeaseBackend>) -> Self {
        Leases { backend }
    }

    /// Take `name` for `holder` for `ttl`, or renew it if `holder` has it; `take_from` names a
    /// holder the caller knows to be dead, whose lease may be taken before it lapses. Whether
    /// `holder` holds it now.
    pub async fn acquire(
        &self,
        name: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        take_from: Option<&str>,
    ) -> Result<bool> {
        check("name", name)?;
        check("holder", holder)?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(Error::Invalid(format!("a lease lasts more than 0 and at most {} s", MAX_TTL.as_secs())));
        }
        self.backend.acquire(name, holder, process, ttl, take_from.filter(|t| *t != holder)).await
    }

    /// Give `name` up if `holder` holds it; whether it did.
    pub async fn release(&self, name: &str, holder: &str) -> Result<bool> {
        self.backend.release(name, holder).await
    }

    /// Every lease whose name starts with `prefix`, lapsed ones included.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Lease>> {
        self.backend.list(prefix).await
    }
}

/// Milliseconds as a `Duration`, negative as zero (a lapsed lease's remaining time).
pub fn remaining_ms(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}
