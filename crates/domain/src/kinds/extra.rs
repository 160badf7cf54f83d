//! Two kinds at the edge of the work chain: GANRun (a generator agent and a discriminator agent
//! iterating until a score threshold) and WebhookSubscription (pushing audit events out).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AGE, Edges, KindInfo, integer_column, owners_only, r5e_schema, string_column};
use crate::resource::{Condition, GROUP, ObjectRef, Reference, Resource, VERSION};
use crate::selector::LabelSelector;

// ---------------------------------------------------------------------------------------------
// GANRun

/// An adversarial loop: a generator proposes, a discriminator scores, until the score reaches
/// the threshold or the rounds run out. Each proposal and score is an Artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GanRunSpec {
    /// The Graph whose authority the loop runs under.
    pub graph_ref: ObjectRef,
    /// What the generator is asked to produce, and the discriminator to judge.
    pub objective: String,
    /// The generating Agent.
    pub generator_ref: ObjectRef,
    /// The judging Agent; it must be independent of the generator.
    pub discriminator_ref: ObjectRef,
    /// At most this many rounds.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// The score (0 to 1) at which the loop stops with success.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
}

fn default_max_rounds() -> u32 {
    5
}

fn default_threshold() -> f64 {
    0.8
}

/// What the system observes of a GANRun.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GanRunStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the loop stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<GanRunPhase>,
    /// The current round, from 1.
    #[serde(default)]
    pub round: u32,
    /// The discriminator's score of each round so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<f64>,
    /// The best-scoring generated Artifact so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_artifact: Option<ObjectRef>,
}

/// The phases of a GANRun.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GanRunPhase {
    /// Not started.
    Pending,
    /// Rounds are running.
    Running,
    /// A round reached the threshold.
    Succeeded,
    /// The rounds ran out, or a session failed.
    Failed,
    /// No independent discriminator is available.
    Blocked,
}

fn gan_run_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).object("graphRef", "Graph").object("generatorRef", "Agent").object("discriminatorRef", "Agent").done()
}

/// The GANRun kind.
pub const GAN_RUN: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "GANRun",
    plural: "ganruns",
    singular: "ganrun",
    short_names: &["gan"],
    namespaced: true,
    schema: || {
        r5e_schema::<GanRunSpec, GanRunStatus>(
            "GANRun",
            "A generator agent and an independent discriminator agent iterating to a threshold.",
        )
    },
    references: gan_run_references,
    printer_columns: &[string_column("Phase", ".status.phase"), integer_column("Round", ".status.round"), AGE],
};

// ---------------------------------------------------------------------------------------------
// WebhookSubscription

/// Delivers audit events to an HTTP endpoint, in sequence order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSubscriptionSpec {
    /// Where events are POSTed (`http://` or `https://`).
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// The event types delivered (e.g. `resource.created`); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Only events about resources whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The server's environment variable holding the secret that signs each delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The first event sequence number to deliver; absent means events from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
}

/// What the system observes of a WebhookSubscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSubscriptionStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The sequence number of the last event delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_seq: Option<u64>,
    /// Failed deliveries since the last success.
    #[serde(default)]
    pub failures: u64,
    /// The last delivery error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The WebhookSubscription kind.
pub const WEBHOOK_SUBSCRIPTION: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "WebhookSubscription",
    plural: "webhooksubscriptions",
    singular: "webhooksubscription",
    short_names: &["whs", "webhook", "webhooks"],
    namespaced: true,
    schema: || {
        r5e_schema::<WebhookSubscriptionSpec, WebhookSubscriptionStatus>(
            "WebhookSubscription",
            "Delivers audit events to an HTTP endpoint.",
        )
    },
    references: owners_only,
    printer_columns: &[
        string_column("URL", ".spec.url"),
        integer_column("Delivered", ".status.lastDeliveredSeq"),
        integer_column("Failures", ".status.failures"),
        AGE,
    ],
};
