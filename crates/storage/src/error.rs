//! `storage::Error`: one variant per thing a caller does next.

use domain::chain::ChainError;

/// What went wrong in a storage operation, named for what the caller does next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The resource, event or blob does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A resource with this kind, namespace and name already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The resource changed since it was read (stale resourceVersion): read it again and retry.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (bad continue token, changed immutable field, ...).
    #[error("{0}")]
    Invalid(String),
    /// Stored data failed an integrity check (a blob whose bytes do not match its digest).
    #[error("{0}")]
    Corrupt(String),
    /// The event chain does not verify.
    #[error(transparent)]
    ChainBroken(#[from] ChainError),
    /// The backend could not be reached or failed; the operation did not take effect.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// An [`Error::Unavailable`] from any backend error.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Error::Unavailable(e.to_string())
    }
}
