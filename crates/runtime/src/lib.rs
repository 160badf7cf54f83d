//! The live execution plane: controllers that drive the work chain from durable state, a
//! supervisor that restarts what fails, sessions that run harnesses, and the tools they call.

pub mod controller;
pub mod error;
pub mod protocol;
pub mod supervisor;

pub use error::{Error, Result};
pub mod context;
pub mod harness;
