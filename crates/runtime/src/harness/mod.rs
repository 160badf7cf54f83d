//! Harnesses: how a session's agent runs. Both kinds speak the same messages
//! ([`crate::protocol`]): `command` is a subprocess on stdio, `model` the built-in tool-calling
//! loop against a model provider. The session runner drives either through [`Harness`].

pub mod command;
pub mod model;
pub mod providers;

use std::collections::BTreeMap;
use std::fmt;

use crate::protocol::{AgentMessage, HostMessage};

/// Why a harness cannot go on. Each fails the session with this as its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A line that is not a protocol message.
    Garbage {
        /// Which line of its output, from 1.
        line: usize,
        /// What is wrong with it.
        error: String,
        /// The start of the line.
        excerpt: String,
    },
    /// More output than the harness is allowed.
    OutputLimit(u64),
    /// The harness could not be started or talked to.
    Io(String),
    /// The model provider failed.
    Provider(String),
    /// The harness could not be confined, so it was not started.
    Sandbox(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Garbage { line, error, excerpt } => {
                write!(f, "harness output line {line} is not a protocol message ({error}): {excerpt:?}")
            }
            Fault::OutputLimit(n) => write!(f, "harness printed more than its limit of {n} bytes"),
            Fault::Io(m) => write!(f, "harness i/o failed: {m}"),
            Fault::Provider(m) => write!(f, "model provider failed: {m}"),
            Fault::Sandbox(m) => write!(f, "the harness cannot be confined, so it was not started: {m}"),
        }
    }
}

/// A running harness.
#[async_trait::async_trait]
pub trait Harness: Send {
    /// Send one message.
    async fn send(&mut self, message: &HostMessage) -> Result<(), Fault>;
    /// The next message, or `None` once the harness has ended its output.
    async fn next(&mut self) -> Result<Option<AgentMessage>, Fault>;
    /// Stop the harness (politely, then by force) and say how it ended.
    async fn finish(&mut self) -> String;
    /// What it spent beyond tool calls (model tokens), by budget name.
    fn usage(&self) -> BTreeMap<String, u64>;
}
