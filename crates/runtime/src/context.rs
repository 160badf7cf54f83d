//! What every controller and session shares: admission (the only way the runtime writes), the
//! CAS, the settings, and small helpers to read typed resources and write status safely.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admission::{Admission, Identity};
use domain::resource::{ObjectRef, OwnerReference};
use domain::selector::LabelSelector;
use domain::{ObjectKey, Resource, Selector};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use storage::Cas;

use crate::error::{Error, Result};

/// Labels the runtime puts on what it creates, so that children are found by selector.
pub mod labels {
    /// The Graph a Task belongs to.
    pub const GRAPH: &str = "r5e.ai/graph";
    /// The Node a Task belongs to.
    pub const NODE: &str = "r5e.ai/node";
    /// The Task a session or Artifact belongs to.
    pub const TASK: &str = "r5e.ai/task";
    /// The Agent running a session.
    pub const AGENT: &str = "r5e.ai/agent";
    /// The session that produced an Artifact.
    pub const SESSION: &str = "r5e.ai/session";
}

/// The user the controllers act as in admission and in the audit log.
pub const CONTROLLER: &str = "system:controller";

/// Settings of the execution plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// Relative harness and tool programs and working directories are resolved against this.
    pub base_dir: PathBuf,
    /// Each session gets a scratch directory under this.
    pub work_dir: PathBuf,
    /// How long a session's lease lasts unless renewed.
    pub lease_ttl: Duration,
    /// How often every object is reconciled even without a wake-up.
    pub resync: Duration,
    /// How many sessions run at once in this process.
    pub session_workers: usize,
    /// Who holds leases taken by this process.
    pub holder: String,
    /// How command harnesses are confined.
    pub sandbox: SandboxConfig,
    /// How sessions get their tokens; `None`: they get none, and act only on their stdio.
    pub credentials: Option<SessionCredentials>,
}

/// What sessions' tokens are minted with, and where a harness may use them.
#[derive(Clone, Debug)]
pub struct SessionCredentials {
    /// The server's token key.
    pub issuer: Arc<tokens::Issuer>,
    /// The API a harness may call with its token (`R5E_API`), if this process serves one.
    pub api: Option<ApiAccess>,
}

/// The API a harness is told about.
#[derive(Clone, Debug)]
pub struct ApiAccess {
    /// Its base URL.
    pub url: String,
    /// The certificate (PEM) of the authority that signed the API's, for TLS (`R5E_API_CA`).
    pub ca_pem: Option<String>,
}

/// How this process confines command harnesses (see [`crate::sandbox`]).
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// The `r5e` binary whose `sandbox-exec` launches a confined harness. `None`: this process
    /// cannot confine, and a session of a Harness that does not choose `sandbox: none` fails.
    pub launcher: Option<PathBuf>,
    /// Paths no harness may read, even below a path it is given: the data directory, and the
    /// directory of all sessions' workspaces (each gets only its own).
    pub hidden: Vec<PathBuf>,
    /// TCP ports every confined harness may connect to (the API's).
    pub connect_ports: Vec<u16>,
    /// Put each confined harness in a cgroup of its own (process and memory limits, and a way
    /// to find every process it started) where the host lets this process create one.
    pub cgroups: bool,
}

impl Config {
    /// Defaults for a process whose relative paths start at `base_dir` and whose scratch space
    /// is `work_dir`.
    pub fn new(base_dir: PathBuf, work_dir: PathBuf) -> Config {
        Config {
            base_dir,
            work_dir,
            lease_ttl: Duration::from_secs(30),
            resync: Duration::from_secs(30),
            session_workers: 64,
            holder: format!("r5e-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            sandbox: SandboxConfig::default(),
            credentials: None,
        }
    }
}

/// The shared state of the execution plane.
#[derive(Debug)]
pub struct Context {
    /// Every write goes through here.
    pub admission: Arc<Admission>,
    /// Where artifact bytes live.
    pub cas: Cas,
    /// Settings.
    pub config: Config,
    /// The controllers' identity.
    pub who: Identity,
    /// For model providers.
    pub http: reqwest::Client,
    /// Sessions this process is running now.
    pub running: Mutex<HashSet<ObjectKey>>,
}

impl Context {
    /// A context over `admission` and `cas`.
    pub fn new(admission: Arc<Admission>, cas: Cas, config: Config) -> Arc<Context> {
        Arc::new(Context {
            admission,
            cas,
            config,
            who: Identity::user(CONTROLLER, &["admins"]),
            http: reqwest::Client::builder().timeout(Duration::from_secs(300)).build().expect("an HTTP client"),
            running: Mutex::new(HashSet::new()),
        })
    }

    /// The store behind admission.
    pub fn store(&self) -> &storage::Store {
        self.admission.store()
    }

    /// The resource at `key`, or `None`.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Resource>> {
        match self.store().graph.get(key).await {
            Ok(r) => Ok(Some(r)),
            Err(storage::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Resources of `kind` in `namespace` whose labels include `labels`.
    pub async fn list(&self, kind: &str, namespace: &str, labels: &[(&str, &str)]) -> Result<Vec<Resource>> {
        let selector = LabelSelector {
            match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
        .to_selector()
        .unwrap_or_else(|_| Selector::default());
        Ok(self.store().graph.query_by_labels(&selector, Some(kind), Some(namespace)).await?)
    }

    /// Create `resource` through admission; if it exists already (a retry of this very step),
    /// return the stored one, so that creating is idempotent.
    pub async fn create(&self, resource: Resource) -> Result<Resource> {
        let key = resource.key();
        match self.admission.create(&self.who, resource.to_value()).await {
            Ok(r) => Ok(r),
            Err(admission::Error::Storage(storage::Error::AlreadyExists(_))) => {
                self.get(&key).await?.ok_or_else(|| Error::Invalid(format!("{key} vanished while being created")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read `key`'s status as `S`, let `change` edit it, and write it back through admission if
    /// it changed, retrying on a lost race. Returns the resource as stored afterwards, or `None`
    /// if it does not exist.
    pub async fn patch_status<S, F>(&self, key: &ObjectKey, mut change: F) -> Result<Option<Resource>>
    where
        S: Serialize + DeserializeOwned + Default,
        F: FnMut(&Resource, &mut S),
    {
        for _ in 0..20 {
            let Some(mut current) = self.get(key).await? else { return Ok(None) };
            let mut status: S = status(&current)?;
            change(&current, &mut status);
            let next = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
            if next == current.status || (current.status.is_null() && next == Value::Object(Default::default())) {
                return Ok(Some(current));
            }
            current.status = next;
            match self.admission.update_status(&self.who, current.to_value()).await {
                Ok(r) => return Ok(Some(r)),
                Err(admission::Error::Storage(storage::Error::Conflict(_))) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Invalid(format!("{key}: status kept changing under 20 attempts to write it")))
    }
}

/// `resource.spec` as `T`.
pub fn spec<T: DeserializeOwned>(resource: &Resource) -> Result<T> {
    serde_json::from_value(resource.spec.clone()).map_err(|e| Error::Invalid(format!("{}: {e}", resource.key())))
}

/// `resource.status` as `T` (the default when there is none yet).
pub fn status<T: DeserializeOwned + Default>(resource: &Resource) -> Result<T> {
    if resource.status.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(resource.status.clone())
        .map_err(|e| Error::Invalid(format!("{} status: {e}", resource.key())))
}

/// A reference to `name` in the same namespace.
pub fn local_ref(name: &str) -> ObjectRef {
    ObjectRef { name: name.to_string(), namespace: None }
}

/// An owner reference to `owner` (the controller of the new resource).
pub fn owned_by(owner: &Resource) -> OwnerReference {
    OwnerReference {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.metadata.name.clone(),
        uid: owner.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// A new resource of `kind` in `namespace`, with labels, from a typed spec.
pub fn new_resource<T: Serialize>(
    kind: &str,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    spec: &T,
) -> Resource {
    let mut r = Resource::new(kind, Some(namespace), name, serde_json::to_value(spec).expect("specs serialise"));
    r.metadata.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    r
}

/// A name derived from `base` and `suffix`, kept within the 253 characters a name may have.
pub fn child_name(base: &str, suffix: &str) -> String {
    let name = format!("{base}-{suffix}");
    if name.len() <= 253 {
        return name;
    }
    let digest = domain::Digest::of(name.as_bytes()).hex();
    let keep = 253usize.saturating_sub(suffix.len() + 18);
    format!("{}-{}-{suffix}", base.get(..keep).unwrap_or(base).trim_end_matches('-'), &digest[..16])
}
