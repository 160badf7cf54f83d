//! The r5e domain: resource types, kinds and their schemas, label selectors, digests, canonical
//! JSON and the hash-chain math, the authority algebra, and the rules by which stored resources
//! are checked against the log.
//!
//! This crate does no IO and knows nothing of tokio, databases or HTTP: everything here is a pure
//! function of its inputs, so it is cheap to test exhaustively (see the property tests).

pub mod authority;
pub mod canonical;
pub mod canonical_form;
pub mod chain;
pub mod digest;
pub mod json;
pub mod kinds;
pub mod names;
pub mod resource;
pub mod review;
pub mod schema;
pub mod selector;
pub mod state;

pub use authority::Authority;
pub use digest::Digest;
pub use resource::{ObjectKey, ObjectMeta, Reference, Resource};
pub use selector::Selector;
