//! `r5e run PATH`: open the embedded control plane in-process, apply the manifests under PATH
//! (every one validated first, so nothing is applied half-way), verify the audit chain, and
//! print a summary.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::DataDir;
use crate::backends::open_store;
use crate::manifests;
use crate::output::table;

/// The actor recorded for writes made by `r5e run`.
const ACTOR: &str = "user:local";

pub async fn run(path: &Path, data: &DataDir) -> Result<ExitCode> {
    let manifests = manifests::load(path, "default")?;
    let store = open_store(data).await?;
    let mut t = table(&["kind", "name", "result", "resource version", "from"]);
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for m in manifests {
        let key = m.resource.key();
        let origin = m.origin;
        let (result, version) = match store.graph.get(&key).await {
            Err(storage::Error::NotFound(_)) => {
                let r = store.graph.create(m.resource, ACTOR).await?;
                created += 1;
                ("created", r.resource_version())
            }
            Err(e) => return Err(e.into()),
            Ok(current) => {
                let mut next = m.resource;
                next.metadata.resource_version = None;
                let before = current.resource_version();
                let r = store.graph.update(next, ACTOR).await?;
                if r.resource_version() == before {
                    unchanged += 1;
                    ("unchanged", before)
                } else {
                    updated += 1;
                    ("updated", r.resource_version())
                }
            }
        };
        let name = if key.namespace.is_empty() { key.name } else { format!("{}/{}", key.namespace, key.name) };
        t.add_row(vec![key.kind, name, result.to_string(), version.map(|v| v.to_string()).unwrap_or_default(), origin]);
    }
    println!("{t}");
    let head = store.events.verify_chain().await?;
    println!();
    let place = match &data.database_url {
        Some(_) => "Postgres".to_string(),
        None => data.data_dir.display().to_string(),
    };
    println!("{created} created, {updated} updated, {unchanged} unchanged in {place}");
    println!("audit chain verified: {} events, head {}", head.seq, head.hash);
    Ok(ExitCode::SUCCESS)
}
