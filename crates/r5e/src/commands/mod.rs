//! One module per top-level command.

pub mod audit;
pub mod cas;
pub mod remote;
pub mod run;
pub mod serve;
pub mod summary;
pub mod token;
