//! Reading manifests: YAML (several documents per file) or JSON files, from a file or a
//! directory, each checked against its kind's schema before anything is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use domain::kinds;
use domain::{ObjectKey, Resource};
use serde_json::Value;

/// A manifest read from disk, valid for its kind.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it came from (`file` or `file#N` for the N-th document).
    pub origin: String,
    /// The resource, with the default namespace filled in.
    pub resource: Resource,
}

/// The manifest files under `path`: the file itself, or the `.yaml`, `.yml` and `.json` files of
/// a directory (not recursive), sorted by name so that the order is predictable.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("no manifests (.yaml, .yml, .json) in {}", path.display());
    }
    Ok(out)
}

/// Read every document under `path` without checking it against a kind (for a server, which
/// checks each itself, custom kinds included), as `(origin, document)`.
pub fn load_documents(path: &Path) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for file in files(path)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let docs = parse_documents(&file, &text).with_context(|| file.display().to_string())?;
        let many = docs.len() > 1;
        for (i, doc) in docs.into_iter().enumerate() {
            let origin = if many { format!("{}#{}", file.display(), i + 1) } else { file.display().to_string() };
            out.push((origin, doc));
        }
    }
    Ok(out)
}

/// Read and validate every manifest under `path`. Either all are valid, or the error lists every
/// problem found (so a user fixes them in one pass and nothing is applied half-way).
pub fn load(path: &Path, default_namespace: &str) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for file in files(path)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let docs: Vec<Value> = match parse_documents(&file, &text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let many = docs.len() > 1;
        for (i, doc) in docs.into_iter().enumerate() {
            let origin = if many { format!("{}#{}", file.display(), i + 1) } else { file.display().to_string() };
            match check(doc, default_namespace) {
                Ok(resource) => manifests.push(Manifest { origin, resource }),
                Err(e) => problems.push(format!("{origin}: {e}")),
            }
        }
    }
    if !problems.is_empty() {
        bail!("{} invalid manifest(s), nothing was applied:\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(manifests)
}

/// The manifests reordered so that each comes after the ones it references (by spec reference or
/// owner), keeping file order otherwise; references in a cycle keep their file order.
pub fn in_reference_order(manifests: Vec<Manifest>) -> Vec<Manifest> {
    let keys: Vec<ObjectKey> = manifests.iter().map(|m| m.resource.key()).collect();
    let needs: Vec<Vec<usize>> = manifests
        .iter()
        .map(|m| {
            storage::references(&m.resource).iter().filter_map(|r| keys.iter().position(|k| *k == r.target)).collect()
        })
        .collect();
    let mut placed = vec![false; manifests.len()];
    let mut order = Vec::with_capacity(manifests.len());
    while order.len() < manifests.len() {
        let ready = (0..manifests.len()).find(|&i| !placed[i] && needs[i].iter().all(|&j| placed[j] || j == i));
        // In a cycle nothing is ready: take the first unplaced one and let admission judge it.
        let next = ready.unwrap_or_else(|| placed.iter().position(|p| !p).expect("one is unplaced"));
        placed[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Manifest>> = manifests.into_iter().map(Some).collect();
    order.into_iter().map(|i| slots[i].take().expect("each placed once")).collect()
}

fn parse_documents(file: &Path, text: &str) -> Result<Vec<Value>> {
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        return Ok(vec![serde_json::from_str(text).context("not valid JSON")?]);
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc).context("not valid YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Validate one document and turn it into a resource.
fn check(mut doc: Value, default_namespace: &str) -> Result<Resource> {
    let kind = doc.get("kind").and_then(Value::as_str).context("`kind` is missing")?.to_string();
    let info = kinds::find(&kind).filter(|k| k.kind == kind).with_context(|| {
        format!(
            "unknown kind `{kind}`: the built-in kinds are {}",
            kinds::builtin().iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
        )
    })?;
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if api_version != info.api_version() {
        bail!("{kind} needs `apiVersion: {}`, not `{api_version}`", info.api_version());
    }
    if info.namespaced
        && doc.pointer("/metadata/namespace").is_none()
        && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), Value::String(default_namespace.into()));
    }
    if let Err(errors) = domain::schema::validate(info, &doc) {
        bail!("{kind} is not valid: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    }
    serde_json::from_value(doc).context("not a resource")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn multi_document_yaml_and_json_with_default_namespace() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: g1}\nspec: {content: be brief}\n---\n---\napiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: g2, namespace: team-a}\nspec: {content: cite sources}\n",
        );
        write(
            dir.path(),
            "b.json",
            r#"{"apiVersion":"r5e.ai/v1alpha1","kind":"Capability","metadata":{"name":"fs.read"},"spec":{}}"#,
        );
        write(dir.path(), "notes.txt", "ignored");
        let m = load(dir.path(), "default").unwrap();
        let keys: Vec<String> = m.iter().map(|m| m.resource.key().to_string()).collect();
        assert_eq!(keys, ["Guideline/default/g1", "Guideline/team-a/g2", "Capability/default/fs.read"]);
        assert!(m[0].origin.ends_with("a.yaml#1"));
    }

    #[test]
    fn referenced_manifests_come_first() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: b}\nspec: {graphRef: {name: g}, dependsOn: [a]}\n---\napiVersion: r5e.ai/v1alpha1\nkind: Node\nmetadata: {name: a}\nspec: {graphRef: {name: g}}\n---\napiVersion: r5e.ai/v1alpha1\nkind: Graph\nmetadata: {name: g}\nspec: {authority: {}}\n---\napiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: x}\nspec: {content: c}\n",
        );
        let order: Vec<String> = in_reference_order(load(dir.path(), "default").unwrap())
            .iter()
            .map(|m| m.resource.key().to_string())
            .collect();
        assert_eq!(order, ["Graph/default/g", "Node/default/a", "Node/default/b", "Guideline/default/x"]);
    }

    #[test]
    fn every_problem_is_reported_and_nothing_loads() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "1.yaml",
            "apiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: ok}\nspec: {content: x}\n",
        );
        write(dir.path(), "2.yaml", "apiVersion: r5e.ai/v1alpha1\nkind: Gadget\nmetadata: {name: x}\n");
        write(
            dir.path(),
            "3.yaml",
            "apiVersion: r5e.ai/v1alpha1\nkind: Guideline\nmetadata: {name: Bad_Name}\nspec: {content: x, colour: red}\n",
        );
        write(dir.path(), "4.yaml", "kind: [unclosed\n");
        write(dir.path(), "5.yaml", "apiVersion: v1\nkind: Guideline\nmetadata: {name: x}\nspec: {content: x}\n");
        let err = load(dir.path(), "default").unwrap_err().to_string();
        assert!(err.starts_with("4 invalid manifest(s), nothing was applied"), "{err}");
        assert!(err.contains("unknown kind `Gadget`"), "{err}");
        assert!(err.contains("metadata.name"), "{err}");
        assert!(err.contains("spec.colour"), "{err}");
        assert!(err.contains("4.yaml: not valid YAML"), "{err}");
        assert!(err.contains("needs `apiVersion: r5e.ai/v1alpha1`"), "{err}");
    }
}
