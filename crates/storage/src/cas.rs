//! The CAS contract: `store`, `resolve`, `exists`, `delete`, `list_digests`. Blobs are named by
//! the SHA-256 of their bytes; the handle computes digests and re-verifies every read, so a
//! backend cannot return bytes that do not match their name.

use std::sync::Arc;

use async_trait::async_trait;
use domain::Digest;

use crate::{Error, Result};

/// A place that keeps blobs by digest.
///
/// Contract: `put` makes `bytes` durable under `digest` atomically, replacing whatever is stored
/// under that digest (a reader sees the old bytes or the new ones, never a mix or a partial blob);
/// the backend trusts the digest it is given, and the handle decides whether a write is needed.
/// Concurrent `put`s of the same digest carry the same bytes, so either may win. `get` returns the
/// stored bytes or `None`; it does not verify them. `remove` returns whether something was
/// removed. `digests` lists every stored digest in ascending order.
#[async_trait]
pub trait CasBackend: Send + Sync + 'static {
    /// Store `bytes` under `digest`, replacing what is there.
    async fn put(&self, digest: &Digest, bytes: Vec<u8>) -> Result<()>;
    /// The bytes stored under `digest`.
    async fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    /// Whether `digest` is present.
    async fn contains(&self, digest: &Digest) -> Result<bool>;
    /// Remove `digest`.
    async fn remove(&self, digest: &Digest) -> Result<bool>;
    /// Every stored digest, ascending.
    async fn digests(&self) -> Result<Vec<Digest>>;
}

/// The CAS handle.
#[derive(Clone)]
pub struct Cas {
    backend: Arc<dyn CasBackend>,
}

impl std::fmt::Debug for Cas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cas").finish_non_exhaustive()
    }
}

impl Cas {
    /// A handle over `backend`.
    pub fn new(backend: Arc<dyn CasBackend>) -> Self {
        Cas { backend }
    }

    /// Store `bytes` and return their digest. Storing bytes that are already stored intact
    /// writes nothing; storing them over a corrupt copy (stored bytes that no longer hash to the
    /// digest) replaces that copy, so putting the right bytes back repairs a blob.
    pub async fn store(&self, bytes: Vec<u8>) -> Result<Digest> {
        let (bytes, digest) = digest_off_thread(bytes).await?;
        // The bytes given hash to `digest`, so a stored copy is intact exactly when it equals
        // them: comparing is cheaper than hashing the copy again.
        match self.backend.get(&digest).await {
            Ok(Some(stored)) if stored == bytes => return Ok(digest),
            Ok(Some(_)) => tracing::warn!(%digest, "the stored blob did not match its digest; rewriting it"),
            Ok(None) => {}
            // An unreadable copy is no better than a corrupt one: write the bytes again, and
            // report the error of that write if it fails too.
            Err(e) => tracing::warn!(%digest, error = %e, "cannot read the stored blob; rewriting it"),
        }
        self.backend.put(&digest, bytes).await?;
        Ok(digest)
    }

    /// The bytes named by `digest`, re-verified: [`Error::NotFound`] if absent,
    /// [`Error::Corrupt`] if the stored bytes no longer match the digest.
    pub async fn resolve(&self, digest: &Digest) -> Result<Vec<u8>> {
        let bytes = self.backend.get(digest).await?.ok_or_else(|| Error::NotFound(format!("blob {digest}")))?;
        let (bytes, actual) = digest_off_thread(bytes).await?;
        if actual != *digest {
            return Err(Error::Corrupt(format!(
                "blob {digest} is corrupt: its bytes hash to {actual}; restore it from a copy or delete it"
            )));
        }
        Ok(bytes)
    }

    /// Whether a blob with this digest is stored (not verified; see [`Cas::resolve`]).
    pub async fn exists(&self, digest: &Digest) -> Result<bool> {
        self.backend.contains(digest).await
    }

    /// Remove a blob; returns whether it was there.
    pub async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.backend.remove(digest).await
    }

    /// Every stored digest, ascending.
    pub async fn list_digests(&self) -> Result<Vec<Digest>> {
        self.backend.digests().await
    }
}

/// The digest of `bytes`, computed on a blocking thread when they are large enough for that to
/// be worth the hop (hashing runs at about a gigabyte per second).
async fn digest_off_thread(bytes: Vec<u8>) -> Result<(Vec<u8>, Digest)> {
    if bytes.len() < 1 << 16 {
        let d = Digest::of(&bytes);
        return Ok((bytes, d));
    }
    tokio::task::spawn_blocking(move || {
        let d = Digest::of(&bytes);
        (bytes, d)
    })
    .await
    .map_err(Error::unavailable)
}
