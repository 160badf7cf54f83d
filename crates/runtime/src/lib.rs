//! The live execution plane: controllers that drive the work chain from durable state, a
//! supervisor that restarts what fails, sessions that run harnesses, and the tools they call.
//!
//! Nothing here is authoritative: every decision is re-derived from the store, so the whole
//! plane can be stopped at any moment and started again (in this process or another).

pub mod budgets;
pub mod context;
pub mod controller;
pub mod controllers;
pub mod error;
pub mod harness;
pub mod liveness;
pub mod protocol;
pub mod sandbox;
pub mod session;
pub mod shards;
pub mod supervisor;
pub mod tools;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use context::{Config, Context};
pub use error::{Error, Result};
pub use shards::Shards;

/// The running execution plane.
#[derive(Debug)]
pub struct Runtime {
    supervisor: supervisor::Supervisor,
    ctx: Arc<Context>,
    shards: Arc<Shards>,
}

impl Runtime {
    /// Start the controllers of the work chain under a supervisor, reconciling the keys of the
    /// shards this process holds (see [`shards`]).
    pub fn start(ctx: Arc<Context>) -> Runtime {
        let mut supervisor = supervisor::Supervisor::new(CancellationToken::new());
        let shards = Shards::new(ctx.store().leases.clone(), ctx.config.holder.clone(), ctx.config.lease_ttl);
        let s = shards.clone();
        supervisor.spawn("shards", move |stop| {
            let shards = s.clone();
            async move {
                shards.run(stop).await;
                Ok(())
            }
        });
        let (c, s) = (ctx.clone(), shards.clone());
        supervisor.spawn("controllers", move |stop| {
            let (ctx, shards) = (c.clone(), s.clone());
            async move {
                let reconcilers = controllers::all(&ctx);
                controller::run(ctx.store().clone(), reconcilers, shards, ctx.config.resync, stop).await
            }
        });
        Runtime { supervisor, ctx, shards }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The shards this process holds.
    pub fn shards(&self) -> &Arc<Shards> {
        &self.shards
    }

    /// Stop the controllers and give up this process's shards. Sessions still running are left to finish or be killed with the
    /// process; their leases lapse and another process marks them Degraded.
    pub async fn stop(self) {
        self.supervisor.shutdown().await;
    }
}
