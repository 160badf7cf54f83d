//! The runtime's error type.

/// What can go wrong while reconciling or running a session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Admission refused a write the runtime tried to make.
    #[error(transparent)]
    Admission(#[from] admission::Error),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A resource the runtime reads is not what its kind promises.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the error is a lost compare-and-set race (read again and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Storage(storage::Error::Conflict(_))
                | Error::Admission(admission::Error::Storage(storage::Error::Conflict(_)))
        )
    }

    /// Whether the error says the resource is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Storage(storage::Error::NotFound(_))
                | Error::Admission(admission::Error::Storage(storage::Error::NotFound(_)))
        )
    }

    /// Whether the error says the resource already exists.
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            Error::Storage(storage::Error::AlreadyExists(_))
                | Error::Admission(admission::Error::Storage(storage::Error::AlreadyExists(_)))
        )
    }
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
