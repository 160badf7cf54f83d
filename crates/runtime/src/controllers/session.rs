//! The session controller: takes a lease on each pending session and runs it in this process.
//! A session found started (Running or Reflecting) whose lease has lapsed, or whose holder is
//! known to be gone (`liveness`: same machine, no such process), belonged to a process that died.
//! A producing or reviewing session on a `model` harness is resumed here: its journal replays
//! the turns already answered and its recorded tool calls, so nothing paid for is asked again.
//! One on a `command` harness that declares `resume` is started again and told what was
//! recorded; it accepts or refuses.
//! Any other is marked Degraded rather than run again, so that nothing an agent did is silently
//! repeated under its name; its Task's retry policy then decides (a new attempt, or Blocked for
//! a person when none is left).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::kinds::agents::{AgentSpec, HarnessSpec, HarnessType};
use domain::kinds::task::{AgentSessionSpec, AgentSessionStatus, Lease, SessionPhase, SessionRole};
use domain::{ObjectKey, Resource};

use crate::context::{Context, spec, status};
use crate::controller::{Next, Reconciler};
use crate::error::Result;

/// How often one session may be resumed before it is Degraded instead.
pub const MAX_RESUMES: u32 = 3;

pub(crate) struct Sessions {
    pub ctx: Arc<Context>,
}

#[async_trait::async_trait]
impl Reconciler for Sessions {
    fn kind(&self) -> &'static str {
        "AgentSession"
    }

    fn workers(&self) -> usize {
        8
    }

    async fn wakes(&self, changed: &Resource) -> Vec<ObjectKey> {
        match changed.kind.as_str() {
            "AgentSession" => vec![changed.key()],
            _ => vec![],
        }
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Next> {
        let Some(session) = self.ctx.get(key).await? else { return Ok(Next::Done) };
        let s: AgentSessionStatus = status(&session)?;
        let started = match s.phase {
            None | Some(SessionPhase::Pending) => false,
            Some(SessionPhase::Running | SessionPhase::Reflecting) => true,
            _ => return Ok(Next::Done),
        };
        if self.ctx.running.lock().expect("running lock").contains(key) {
            return Ok(Next::Done);
        }
        let now = Utc::now();
        // A holder known to be gone (same machine, no such process) holds nothing.
        let gone = s.lease.as_ref().and_then(|l| l.process.as_deref()).is_some_and(crate::liveness::is_gone);
        if let Some(lease) = &s.lease
            && lease.holder != self.ctx.config.holder
            && lease.expires_at > now
            && !gone
        {
            let wait = (lease.expires_at - now).to_std().unwrap_or_default() + Duration::from_millis(100);
            return Ok(Next::After(wait));
        }
        if started && self.resumable(&session).await? {
            return self.adopt(key, now).await;
        }
        if started {
            let holder = s.lease.as_ref().map(|l| l.holder.clone()).unwrap_or_else(|| "an unknown process".into());
            let how = if gone { "is gone" } else { "stopped renewing its lease" };
            let failure = format!(
                "the process running it ({holder}) {how}; the session was not run on, and its Task's retry policy decides what follows"
            );
            let seen = s.lease.clone();
            self.ctx
                .patch_status::<AgentSessionStatus, _>(key, |_, st| {
                    // Only the session as it was seen: not one another process took or renewed since.
                    if matches!(st.phase, Some(SessionPhase::Running | SessionPhase::Reflecting)) && st.lease == seen {
                        st.phase = Some(SessionPhase::Degraded);
                        st.failure = Some(failure.clone());
                        st.finished_at = Some(now);
                        st.lease = None;
                    }
                })
                .await?;
            return Ok(Next::Done);
        }
        if self.ctx.running.lock().expect("running lock").len() >= self.ctx.config.session_workers {
            return Ok(Next::After(Duration::from_millis(200)));
        }
        self.take(key, now, false).await
    }
}

impl Sessions {
    /// Whether a session cut off by its process's death can be resumed here: a producing or
    /// reviewing session on a `model` harness, whose turns are journaled, or on a `command`
    /// harness that declares `resume` (an orchestrator's Nodes may already exist).
    async fn resumable(&self, session: &Resource) -> Result<bool> {
        let s: AgentSessionSpec = spec(session)?;
        // A session whose every resumption ends with its process is not resumed forever.
        if s.role == SessionRole::Orchestrator || status::<AgentSessionStatus>(session)?.resumed >= MAX_RESUMES {
            return Ok(false);
        }
        let ns = session.metadata.namespace.clone().unwrap_or_default();
        let Some(agent) = self.ctx.get(&ObjectKey::new("Agent", &ns, &s.agent_ref.name)).await? else {
            return Ok(false);
        };
        let agent: AgentSpec = spec(&agent)?;
        let Some(harness) = self.ctx.get(&ObjectKey::new("Harness", &ns, &agent.harness_ref.name)).await? else {
            return Ok(false);
        };
        let harness: HarnessSpec = spec(&harness)?;
        Ok(match harness.type_ {
            HarnessType::Model => true,
            // A program takes a session up only if its Harness says it can (it then still
            // answers `resume`, and may refuse).
            HarnessType::Command => harness.command.is_some_and(|c| c.resume),
        })
    }

    /// Take over a started session whose process died, and run it again from its journal.
    async fn adopt(&self, key: &ObjectKey, now: chrono::DateTime<Utc>) -> Result<Next> {
        if self.ctx.running.lock().expect("running lock").len() >= self.ctx.config.session_workers {
            return Ok(Next::After(Duration::from_millis(200)));
        }
        self.take(key, now, true).await
    }

    /// Take the lease of a session that is pending (or, `resuming`, started by a process that
    /// died) and run it in this process.
    async fn take(&self, key: &ObjectKey, now: chrono::DateTime<Utc>, resuming: bool) -> Result<Next> {
        let holder = self.ctx.config.holder.clone();
        let ttl = chrono::Duration::from_std(self.ctx.config.lease_ttl).unwrap_or_default();
        let mut took = false;
        let written = self
            .ctx
            .patch_status::<AgentSessionStatus, _>(key, |_, st| {
                took = false;
                let free = st.lease.as_ref().is_none_or(|l| {
                    l.holder == holder
                        || l.expires_at <= now
                        || l.process.as_deref().is_some_and(crate::liveness::is_gone)
                });
                let takeable = match resuming {
                    false => matches!(st.phase, None | Some(SessionPhase::Pending)),
                    true => matches!(st.phase, Some(SessionPhase::Running | SessionPhase::Reflecting)),
                };
                if takeable && free {
                    if resuming {
                        st.resumed += 1;
                    } else {
                        st.started_at = Some(now);
                    }
                    st.phase = Some(SessionPhase::Running);
                    st.lease = Some(Lease {
                        holder: holder.clone(),
                        acquired_at: now,
                        renewed_at: now,
                        expires_at: now + ttl,
                        process: crate::liveness::this_process(),
                    });
                    took = true;
                }
            })
            .await?;
        if took && written.is_some() {
            self.ctx.running.lock().expect("running lock").insert(key.clone());
            tokio::spawn(crate::session::run(self.ctx.clone(), key.clone()));
        }
        Ok(Next::Done)
    }
}
