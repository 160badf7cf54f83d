//! `r5e run PATH`: open the control plane in-process, apply the manifests under PATH through
//! admission (every one validated first, so nothing is applied half-way, and in reference order,
//! so that what a manifest refers to exists before it), verify the audit chain, and print a
//! summary.

use std::path::Path;
use std::process::ExitCode;

use admission::{Admission, Identity};
use anyhow::{Result, bail};

use crate::DataDir;
use crate::backends::open_store;
use crate::manifests;
use crate::output::table;

/// Who `r5e run` acts as: the operator of this data directory, an administrator (policies that
/// forbid things bind administrators too).
fn operator() -> Identity {
    Identity::user("local", &["admins"])
}

pub async fn run(path: &Path, data: &DataDir) -> Result<ExitCode> {
    let manifests = manifests::in_reference_order(manifests::load(path, "default")?);
    let admission = Admission::new(open_store(data).await?);
    let who = operator();
    let mut t = table(&["kind", "name", "result", "resource version", "from"]);
    let (mut created, mut updated, mut unchanged, mut refused) = (0, 0, 0, Vec::new());
    for m in manifests {
        let key = m.resource.key();
        let before = match admission.store().graph.get(&key).await {
            Ok(current) => Some(current.resource_version()),
            Err(storage::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut object = m.resource;
        object.metadata.resource_version = None;
        let outcome = match before {
            None => admission.create(&who, object.to_value()).await,
            Some(_) => admission.update(&who, object.to_value()).await,
        };
        let (result, version) = match (outcome, before) {
            (Ok(r), None) => {
                created += 1;
                ("created".to_string(), r.resource_version())
            }
            (Ok(r), Some(v)) if r.resource_version() == v => {
                unchanged += 1;
                ("unchanged".to_string(), v)
            }
            (Ok(r), Some(_)) => {
                updated += 1;
                ("updated".to_string(), r.resource_version())
            }
            (Err(e), _) => {
                refused.push(format!("{}: {e}", m.origin));
                ("refused".to_string(), None)
            }
        };
        let name = if key.namespace.is_empty() { key.name } else { format!("{}/{}", key.namespace, key.name) };
        t.add_row(vec![key.kind, name, result, version.map(|v| v.to_string()).unwrap_or_default(), m.origin]);
    }
    println!("{t}");
    let head = admission.store().events.verify_chain().await?;
    let place = match &data.database_url {
        Some(_) => "Postgres".to_string(),
        None => data.data_dir.display().to_string(),
    };
    println!();
    println!("{created} created, {updated} updated, {unchanged} unchanged, {} refused in {place}", refused.len());
    println!("audit chain verified: {} events, head {}", head.seq, head.hash);
    if !refused.is_empty() {
        bail!("admission refused {} manifest(s):\n  {}", refused.len(), refused.join("\n  "));
    }
    Ok(ExitCode::SUCCESS)
}
