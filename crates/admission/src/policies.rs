//! The policy set in force, rebuilt from the Policy resources whenever they change (in this
//! process or any other sharing the store). If the stored policies cannot be built into a set,
//! admission fails closed: nothing is permitted until they are fixed.
//!
//! A set is built only from Policies the event log vouches for: on each rebuild every Policy is
//! checked against the event that wrote it (`Store::check_written`, a point read or two per
//! Policy, never on the per-request path). A Policy whose row was changed outside r5e makes the
//! set broken, and such a set is not cached, so that restoring the row restores admission at
//! once. A set built before the row was changed stays in force until the Policies change: it was
//! built from what the log vouches for.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::Resource;
use policy::PolicySet;
use storage::{ListQuery, Store};
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
        let (fingerprint, pages) = match stored_policies(store).await {
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
        if let Some(reason) = unvouched(store, &pages).await {
            return Arc::new(Built { set: PolicySet::admins_only(), broken: Some(reason) });
        }
        let sources = sources(pages.into_iter().flat_map(|(_, page)| page));
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

/// Every Policy resource, a page at a time with the chain head the page was read at, and a
/// fingerprint of all of them (keys and versions) that changes whenever any of them does.
async fn stored_policies(store: &Store) -> storage::Result<(Fingerprint, Vec<(u64, Vec<Resource>)>)> {
    let mut query = ListQuery { kind: Some("Policy".into()), ..ListQuery::default() };
    let mut fingerprint = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = store.graph.list(query.clone(), None).await?;
        for p in &page.items {
            let name = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or_default(), p.metadata.name);
            fingerprint.push((name, p.resource_version().unwrap_or_default()));
        }
        query.after = page.items.last().map(Resource::key);
        let more = page.continue_token.is_some();
        pages.push((page.resource_version, page.items));
        if !more {
            return Ok((fingerprint, pages));
        }
    }
}

/// Why the event log does not vouch for these Policies, if it does not.
async fn unvouched(store: &Store, pages: &[(u64, Vec<Resource>)]) -> Option<String> {
    let mut found = Vec::new();
    for (head, page) in pages {
        match store.check_written(page, *head).await {
            Ok(mismatches) => found.extend(mismatches.iter().map(ToString::to_string)),
            Err(e) => {
                return Some(format!(
                    "the policies cannot be checked against the event log ({e}); nothing is permitted until they can"
                ));
            }
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "{}; nothing is permitted until the stored policies match the events that wrote them: restore them, \
             and run `r5e audit verify --state` to see every difference",
            found.join("; ")
        )
    })
}

/// Every enabled Policy's Cedar text by `namespace/name`.
fn sources(policies: impl Iterator<Item = Resource>) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    for p in policies {
        let name = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or_default(), p.metadata.name);
        let enabled = p.spec.get("enabled").and_then(serde_json::Value::as_bool).unwrap_or(true);
        if let (true, Some(cedar)) = (enabled, p.spec.get("cedar").and_then(serde_json::Value::as_str)) {
            sources.insert(name, cedar.to_string());
        }
    }
    sources
}
