//! [`Store`]: Graph Storage and the Event Log opened together over one backend, sharing one
//! sequencer so that each graph write and its event commit in one transaction.

use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::events::{EventLog, LogBackend};
use crate::graph::{Graph, GraphBackend};
use crate::leases::{LeaseBackend, Leases};
use crate::sequencer::Sequencer;

/// A database that serves Graph Storage, the Event Log and Leases.
pub trait Backend: GraphBackend + LogBackend + LeaseBackend {}
impl<T: GraphBackend + LogBackend + LeaseBackend> Backend for T {}

/// The durable control plane and the event log, opened over one backend.
#[derive(Clone, Debug)]
pub struct Store {
    /// Graph Storage.
    pub graph: Graph,
    /// The Event Log.
    pub events: EventLog,
    /// Leases on the same database.
    pub leases: Leases,
}

impl Store {
    /// Default interval at which a live stream looks for events written by other processes.
    pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

    /// Open the handles over `backend` and start its sequencer.
    pub async fn open(backend: Arc<dyn Backend>) -> Result<Store> {
        Store::open_with_poll(backend, Store::DEFAULT_POLL).await
    }

    /// As [`Store::open`], with the poll interval of live streams.
    pub async fn open_with_poll(backend: Arc<dyn Backend>, poll: Duration) -> Result<Store> {
        let log: Arc<dyn LogBackend> = backend.clone();
        let leases = Leases::new(backend.clone());
        let head = log.head().await?;
        let sequencer = Sequencer::start(log.clone(), head.seq);
        Ok(Store { graph: Graph::new(backend, sequencer.clone()), events: EventLog::new(log, sequencer, poll), leases })
    }
}
