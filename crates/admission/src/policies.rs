//! The policy set in force, rebuilt from the Policy resources whenever they change (in this
//! process or any other sharing the store). If the stored policies cannot be built into a set,
//! admission fails closed: nothing is permitted until they are fixed.

use std::collections::BTreeMap;
use std::sync::Arc;

use policy::PolicySet;
use storage::Store;
use tokio::sync::Mutex;

/// Every Policy resource's `namespace/name` and resourceVersion.
type Fingerprint = Vec<(String, u64)>;

/// The current set and what it was built from.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    inner: Mutex<Option<(Fingerprint, Arc<Built>)>>,
}

/// A built set, or why none could be built.
#[derive(Debug)]
pub(crate) struct Built {
    pub set: PolicySet,
    /// Set when the stored policies are broken: every request is refused with this reason.
    pub broken: Option<String>,
}

impl Built {
    pub fn digest(&self) -> domain::Digest {
        self.set.digest()
    }
}

impl Cache {
    /// The set for the Policy resources stored now.
    pub async fn current(&self, store: &Store) -> Arc<Built> {
        let (fingerprint, sources) = match stored_policies(store).await {
            Ok(v) => v,
            Err(e) => {
                return Arc::new(Built {
                    set: PolicySet::admins_only(),
                    broken: Some(format!("the policies cannot be read ({e}); nothing is permitted until they can")),
                });
            }
        };
        let mut inner = self.inner.lock().await;
        if let Some((f, built)) = inner.as_ref()
            && *f == fingerprint
        {
            return built.clone();
        }
        let built = Arc::new(match PolicySet::from_sources(&sources) {
            Ok(set) => Built { set, broken: None },
            Err(e) => Built {
                set: PolicySet::admins_only(),
                broken: Some(format!("{e}; nothing is permitted until the stored policies are fixed")),
            },
        });
        *inner = Some((fingerprint, built.clone()));
        built
    }

    /// Forget the cached set (after a Policy write).
    pub async fn invalidate(&self) {
        *self.inner.lock().await = None;
    }
}

/// Every enabled Policy's Cedar text by `namespace/name`, and a fingerprint of all Policy
/// resources (keys and versions) that changes whenever any of them does.
async fn stored_policies(store: &Store) -> storage::Result<(Fingerprint, BTreeMap<String, String>)> {
    let policies = store.graph.query_by_labels(&Default::default(), Some("Policy"), None).await?;
    let mut fingerprint = Vec::new();
    let mut sources = BTreeMap::new();
    for p in policies {
        let name = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or_default(), p.metadata.name);
        fingerprint.push((name.clone(), p.resource_version().unwrap_or_default()));
        let enabled = p.spec.get("enabled").and_then(serde_json::Value::as_bool).unwrap_or(true);
        if let (true, Some(cedar)) = (enabled, p.spec.get("cedar").and_then(serde_json::Value::as_str)) {
            sources.insert(name, cedar.to_string());
        }
    }
    Ok((fingerprint, sources))
}
