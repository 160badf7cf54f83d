//! The independence rule for reviews: who may review whose work. Admission applies it when an
//! approval is recorded, and the runtime when it picks a reviewer, so both agree by construction.

use crate::kinds::agents::ModelIdentity;

/// One side of a review: the session that produced an Artifact, or the one reviewing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party<'a> {
    /// The session's uid (empty when the session does not exist yet).
    pub session_uid: &'a str,
    /// The uids of the session's ancestors.
    pub lineage: &'a [String],
    /// The Agent's name.
    pub agent: &'a str,
    /// The model identity the session ran under.
    pub model: Option<&'a ModelIdentity>,
}

/// Why `reviewer` may not review `producer`'s work, or `Ok` if it is independent: another agent,
/// another provider, another model, and neither session descends from the other.
pub fn independence(producer: &Party<'_>, reviewer: &Party<'_>) -> Result<(), String> {
    let (Some(pm), Some(rm)) = (producer.model, reviewer.model) else {
        return Err("both sessions must state a model identity for their independence to be shown".into());
    };
    if producer.agent == reviewer.agent {
        return Err(format!("agent `{}` may not review its own work", reviewer.agent));
    }
    if pm.provider == rm.provider {
        return Err(format!("producer and reviewer share the provider `{}`", pm.provider));
    }
    if pm.name == rm.name {
        return Err(format!("producer and reviewer share the model `{}`", pm.name));
    }
    let related =
        |a: &Party<'_>, b: &Party<'_>| !a.session_uid.is_empty() && b.lineage.iter().any(|u| u == a.session_uid);
    if (!producer.session_uid.is_empty() && producer.session_uid == reviewer.session_uid)
        || related(producer, reviewer)
        || related(reviewer, producer)
    {
        return Err("the reviewing session shares its lineage with the producing session".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(provider: &str, name: &str) -> ModelIdentity {
        ModelIdentity { provider: provider.into(), name: name.into(), version: None }
    }

    #[test]
    fn only_a_different_agent_provider_model_and_lineage_is_independent() {
        let (m1, m2, m3) = (model("a", "x"), model("b", "y"), model("a", "z"));
        let lineage = vec!["p-uid".to_string()];
        let producer = Party { session_uid: "p-uid", lineage: &[], agent: "writer", model: Some(&m1) };
        let good = Party { session_uid: "r-uid", lineage: &[], agent: "checker", model: Some(&m2) };
        assert_eq!(independence(&producer, &good), Ok(()));
        let same_agent = Party { agent: "writer", ..good.clone() };
        assert!(independence(&producer, &same_agent).unwrap_err().contains("own work"));
        let same_provider = Party { model: Some(&m3), ..good.clone() };
        assert!(independence(&producer, &same_provider).unwrap_err().contains("provider"));
        let same_model = Party { model: Some(&model("c", "x")), ..good.clone() };
        assert!(independence(&producer, &same_model).unwrap_err().contains("model"));
        let child = Party { lineage: &lineage, ..good.clone() };
        assert!(independence(&producer, &child).unwrap_err().contains("lineage"));
        let same_session = Party { session_uid: "p-uid", ..good.clone() };
        assert!(independence(&producer, &same_session).is_err());
        let unknown = Party { model: None, ..good };
        assert!(independence(&producer, &unknown).unwrap_err().contains("model identity"));
    }
}
