//! The three storage contracts of r5e and the handles the rest of the code uses:
//!
//! - **Graph Storage** ([`Graph`]): `create`, `get`, `update`, `list`, `traverse`,
//!   `query_by_labels` (plus `update_status` and `delete`, which the API needs).
//! - **Event Log** ([`EventLog`]): `append`, `query`, `verify_chain`, `stream`.
//! - **CAS** ([`Cas`]): `store`, `resolve`, `exists`, `delete`, `list_digests`.
//! - **Leases** ([`Leases`]): `acquire`, `release`, `list`: short claims that divide live work
//!   between the processes on one store; liveness, not truth, and not on the chain.
//!
//! Each contract is a small object-safe backend trait ([`GraphBackend`], [`LogBackend`],
//! [`CasBackend`]) wrapped by a cloneable handle that owns every rule that must not differ between
//! backends: metadata bookkeeping, event sealing and chain linking, group commit, digest checks.
//! Graph writes and events share one transaction: a graph write is an [`Entry`] whose event is
//! committed with it, so a backend that serves Graph Storage also serves the Event Log on the same
//! database ([`Backend`]). Only the binary names a concrete backend.

mod cas;
mod cas_fs;
mod error;
mod events;
mod graph;
mod leases;
mod sequencer;
mod state;
mod store;
mod write;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use cas::{Cas, CasBackend};
pub use cas_fs::FsCas;
pub use error::Error;
pub use events::{EventLog, EventQuery, LogBackend, StoredEvent};
pub use graph::{Direction, Graph, GraphBackend, Hit, ListQuery, Page, TraverseQuery, parse_row};
pub use leases::{Lease, LeaseBackend, Leases, MAX_TTL, remaining_ms};
pub use sequencer::CommitStats;
pub use state::{StateReport, StoredCheck};
pub use store::{Backend, Store};
pub use write::{
    Committed, Entry, Mutation, Plan, Precondition, Prepared, Write, check_precondition, mutated_keys, plan, prepare,
    references,
};

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
