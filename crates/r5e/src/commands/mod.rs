//! One module per top-level command.

pub mod audit;
pub mod cas;
pub mod run;
