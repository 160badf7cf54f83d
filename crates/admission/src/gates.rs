//! The governance gates admission holds for the work chain, whoever writes: review is never
//! skipped, an approval is bound to an independent reviewer's verdict on exactly the approved
//! bytes, and no session ends without a reflection (or a visible record that it gave none).

use domain::kinds::artifact::{ArtifactSpec, ArtifactStatus, ArtifactType, ReviewState, Verdict};
use domain::kinds::task::{AgentSessionSpec, AgentSessionStatus, SessionPhase};
use domain::resource::ConditionStatus;
use domain::review::{Party, independence};
use domain::{ObjectKey, Resource};
use serde_json::Value;

use crate::stages::Reads;
use crate::{Error, Operation, Stage};

/// The condition a session carries when it ended without a reflection.
pub const REFLECTED: &str = "Reflected";

fn refuse(reason: impl Into<String>) -> Error {
    Error::Forbidden { stage: Stage::Refs, reason: reason.into() }
}

/// Apply every gate that concerns `resource`.
pub(crate) async fn check(reads: &mut Reads<'_>, op: Operation, resource: &Resource) -> Result<(), Error> {
    match (op, resource.kind.as_str()) {
        (Operation::Create | Operation::Update, "Task" | "Workflow") => review_not_skipped(resource),
        (Operation::UpdateStatus, "AgentSession") => reflection_before_the_end(reads, resource).await,
        (Operation::UpdateStatus, "Artifact") => approval_is_bound(reads, resource).await,
        _ => Ok(()),
    }
}

/// `review.required: false` is refused: review is mandatory.
fn review_not_skipped(resource: &Resource) -> Result<(), Error> {
    let skipped = |v: Option<&Value>| v.and_then(|r| r.get("required")).and_then(Value::as_bool) == Some(false);
    let mut places = vec![];
    if skipped(resource.spec.get("review")) {
        places.push("spec.review.required".to_string());
    }
    if let Some(steps) = resource.spec.get("steps").and_then(Value::as_array) {
        for (i, s) in steps.iter().enumerate() {
            if skipped(s.get("review")) {
                places.push(format!("spec.steps[{i}].review.required"));
            }
        }
    }
    match places.is_empty() {
        true => Ok(()),
        false => Err(refuse(format!("{} is false, but review is mandatory for every Artifact", places.join(", ")))),
    }
}

async fn get_typed<T: serde::de::DeserializeOwned>(
    reads: &mut Reads<'_>,
    key: &ObjectKey,
) -> Result<Option<(Resource, T)>, Error> {
    let Some(r) = reads.get(key).await? else { return Ok(None) };
    match serde_json::from_value(r.spec.clone()) {
        Ok(spec) => Ok(Some((r, spec))),
        Err(e) => Err(refuse(format!("{key} cannot be read: {e}"))),
    }
}

fn status_of<T: serde::de::DeserializeOwned + Default>(r: &Resource) -> Result<T, Error> {
    if r.status.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(r.status.clone()).map_err(|e| refuse(format!("{} status cannot be read: {e}", r.key())))
}

/// Succeeded and Declined need a reflection Artifact of this session; Failed needs one or the
/// `Reflected=False` condition that shows, visibly, that none was given.
async fn reflection_before_the_end(reads: &mut Reads<'_>, session: &Resource) -> Result<(), Error> {
    let status: AgentSessionStatus = status_of(session)?;
    let phase = match status.phase {
        Some(p @ (SessionPhase::Succeeded | SessionPhase::Declined | SessionPhase::Failed)) => p,
        _ => return Ok(()),
    };
    let namespace = session.metadata.namespace.clone().unwrap_or_default();
    let Some(reflection) = &status.reflection_ref else {
        let admitted_missing =
            status.conditions.iter().any(|c| c.type_ == REFLECTED && c.status == ConditionStatus::False);
        if phase == SessionPhase::Failed && admitted_missing {
            return Ok(());
        }
        return Err(refuse(format!(
            "{} may not become {phase:?} without a reflection (status.reflectionRef)",
            session.key()
        )));
    };
    let key = ObjectKey::new("Artifact", reflection.namespace.as_deref().unwrap_or(&namespace), &reflection.name);
    let Some((_, spec)) = get_typed::<ArtifactSpec>(reads, &key).await? else {
        return Err(refuse(format!("the reflection {key} does not exist")));
    };
    if spec.artifact_type != ArtifactType::Reflection || spec.produced_by.session.name != session.metadata.name {
        return Err(refuse(format!("{key} is not a reflection produced by {}", session.key())));
    }
    Ok(())
}

/// `status.review: Approved` needs an approving verdict, by an independent session, on exactly
/// this Artifact's digest.
async fn approval_is_bound(reads: &mut Reads<'_>, artifact: &Resource) -> Result<(), Error> {
    let status: ArtifactStatus = status_of(artifact)?;
    if status.review != Some(ReviewState::Approved) {
        return Ok(());
    }
    let spec: ArtifactSpec = serde_json::from_value(artifact.spec.clone())
        .map_err(|e| refuse(format!("{} cannot be read: {e}", artifact.key())))?;
    let namespace = artifact.metadata.namespace.clone().unwrap_or_default();
    let mut reasons = Vec::new();
    for record in status.reviews.iter().filter(|r| r.verdict == Verdict::Approve) {
        match approving_record(reads, &namespace, artifact, &spec, record).await? {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        reasons.push("no review record approves it".into());
    }
    Err(refuse(format!("{} may not be Approved: {}", artifact.key(), reasons.join("; "))))
}

async fn approving_record(
    reads: &mut Reads<'_>,
    namespace: &str,
    artifact: &Resource,
    spec: &ArtifactSpec,
    record: &domain::kinds::artifact::ReviewRecord,
) -> Result<Result<(), String>, Error> {
    let ns = |r: &domain::resource::ObjectRef| r.namespace.clone().unwrap_or_else(|| namespace.to_string());
    let verdict_key = ObjectKey::new("Artifact", &ns(&record.artifact_ref), &record.artifact_ref.name);
    let Some((_, verdict)) = get_typed::<ArtifactSpec>(reads, &verdict_key).await? else {
        return Ok(Err(format!("the verdict {verdict_key} does not exist")));
    };
    if verdict.artifact_type != ArtifactType::Review || verdict.verdict != Some(Verdict::Approve) {
        return Ok(Err(format!("{verdict_key} is not an approving review")));
    }
    if verdict.review_of != Some(spec.digest) || record.digest != spec.digest {
        return Ok(Err(format!("{verdict_key} approves other bytes than {}", spec.digest)));
    }
    if verdict.produced_by.session.name != record.session.name {
        return Ok(Err(format!("{verdict_key} was not produced by {}", record.session.name)));
    }
    let session = |r: &domain::resource::ObjectRef| ObjectKey::new("AgentSession", &ns(r), &r.name);
    let Some((p, producer)) = get_typed::<AgentSessionSpec>(reads, &session(&spec.produced_by.session)).await? else {
        return Ok(Err(format!("the producing session of {} does not exist", artifact.key())));
    };
    let Some((r, reviewer)) = get_typed::<AgentSessionSpec>(reads, &session(&record.session)).await? else {
        return Ok(Err(format!("the reviewing session {} does not exist", record.session.name)));
    };
    if reviewer.review_of.as_ref().map(|t| t.digest) != Some(spec.digest) {
        return Ok(Err(format!("session {} was not asked to review {}", record.session.name, spec.digest)));
    }
    let party = |s: &Resource, spec: &AgentSessionSpec| -> (String, Vec<String>, String) {
        (s.metadata.uid.clone().unwrap_or_default(), spec.lineage.clone(), spec.agent_ref.name.clone())
    };
    let (pu, pl, pa) = party(&p, &producer);
    let (ru, rl, ra) = party(&r, &reviewer);
    let a = Party { session_uid: &pu, lineage: &pl, agent: &pa, model: producer.model.as_ref() };
    let b = Party { session_uid: &ru, lineage: &rl, agent: &ra, model: reviewer.model.as_ref() };
    Ok(independence(&a, &b))
}
