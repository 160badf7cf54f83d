//! The commands that talk to a running server: `apply`, `get`, `describe`, `delete`, `watch`,
//! `explain`. `--server` and `--token` (or `R5E_SERVER`, `R5E_TOKEN`) default to the local data
//! directory's server and administrator token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use client::{ApiResource, Client};
use futures::StreamExt;
use serde_json::Value;

use crate::output::table;

/// How to reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The server (`https://host:port`); defaults to the one in the data directory's kubeconfig.
    #[arg(long, env = "R5E_SERVER", global = true)]
    pub server: Option<String>,
    /// The bearer token; defaults to the data directory's administrator token.
    #[arg(long, env = "R5E_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The data directory whose server, token and CA are the defaults.
    #[arg(long, env = "R5E_DATA_DIR", default_value = ".r5e", global = true)]
    pub data_dir: PathBuf,
}

impl Remote {
    /// A client for the chosen server.
    pub fn connect(&self) -> Result<Client> {
        let server = match &self.server {
            Some(s) => s.clone(),
            None => kubeconfig_server(&self.data_dir).with_context(|| {
                format!("no server given and none recorded in {}: pass --server or R5E_SERVER", self.data_dir.display())
            })?,
        };
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                std::fs::read_to_string(self.data_dir.join("admin.token")).map(|t| t.trim().to_string()).with_context(
                    || format!("no token given and none in {}: pass --token or R5E_TOKEN", self.data_dir.display()),
                )?
            }
        };
        let ca = std::fs::read(crate::tls::files(&self.data_dir).ca).ok();
        Ok(Client::new(&server, &token, ca.as_deref())?)
    }
}

/// The `server:` line of a data directory's kubeconfig.
fn kubeconfig_server(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("kubeconfig")).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
}

fn namespace_of(r: &ApiResource, ns: &str) -> Option<String> {
    r.namespaced.then(|| ns.to_string())
}

/// `r5e apply -f PATH`: create what does not exist, replace what does (spec, labels,
/// annotations), leave alone what is the same.
pub async fn apply(remote: &Remote, path: &Path, default_namespace: &str) -> Result<ExitCode> {
    let client = remote.connect()?;
    let mut refused = Vec::new();
    for (origin, mut doc) in crate::manifests::load_documents(path)? {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let r = match client.resolve_kind(&api_version, &kind).await {
            Ok(r) => r,
            Err(e) => {
                refused.push(format!("{origin}: {e}"));
                continue;
            }
        };
        let ns = match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => Some(ns.to_string()),
            None => namespace_of(&r, default_namespace),
        };
        let shown = format!("{}.{}/{name}", r.singular, r.group);
        let outcome = match client.get(&r, ns.as_deref(), &name).await? {
            None => client.create(&r, ns.as_deref(), &doc).await.map(|_| "created"),
            Some(current) => {
                doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
                client.replace(&r, ns.as_deref(), &name, &doc).await.map(|after| {
                    if after["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"] {
                        "unchanged"
                    } else {
                        "configured"
                    }
                })
            }
        };
        match outcome {
            Ok(what) => println!("{shown} {what}"),
            Err(e) => refused.push(format!("{origin}: {e}")),
        }
    }
    if !refused.is_empty() {
        bail!("{} manifest(s) not applied:\n  {}", refused.len(), refused.join("\n  "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `r5e get KIND [NAME]`.
pub async fn get(
    remote: &Remote,
    kind: &str,
    name: Option<&str>,
    ns: &str,
    all: bool,
    selector: Option<&str>,
    output: &str,
) -> Result<ExitCode> {
    let client = remote.connect()?;
    let r = client.resolve(kind).await?;
    let ns = if all { None } else { namespace_of(&r, ns) };
    let value = match (output, name) {
        ("table" | "wide", _) => {
            print_table(&client.table(&r, ns.as_deref(), name, selector).await?, all);
            return Ok(ExitCode::SUCCESS);
        }
        (_, Some(n)) => client.get(&r, ns.as_deref(), n).await?.with_context(|| format!("{kind} {n} not found"))?,
        (_, None) => client.list(&r, ns.as_deref(), selector).await?,
    };
    match output {
        "json" => println!("{}", serde_json::to_string_pretty(&value)?),
        "yaml" => print!("{}", serde_yaml::to_string(&value)?),
        "name" => {
            let items = value["items"].as_array().cloned().unwrap_or_else(|| vec![value.clone()]);
            for i in items {
                println!("{}.{}/{}", r.singular, r.group, i["metadata"]["name"].as_str().unwrap_or_default());
            }
        }
        other => bail!("output `{other}`: use table, wide, json, yaml or name"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Print a server Table (`kubectl get` layout), with a namespace column when listing across all.
fn print_table(t: &Value, with_namespace: bool) {
    let mut headers: Vec<String> = Vec::new();
    if with_namespace {
        headers.push("namespace".into());
    }
    headers.extend(
        t["columnDefinitions"].as_array().into_iter().flatten().map(|c| c["name"].as_str().unwrap_or("").to_string()),
    );
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut out = table(&refs);
    for row in t["rows"].as_array().into_iter().flatten() {
        let mut cells: Vec<String> = Vec::new();
        if with_namespace {
            cells.push(row.pointer("/object/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string());
        }
        cells.extend(row["cells"].as_array().into_iter().flatten().map(|c| match c {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
        out.add_row(cells);
    }
    println!("{out}");
}

/// `r5e describe KIND NAME`: the object, then the recent events about it.
pub async fn describe(remote: &Remote, kind: &str, name: &str, ns: &str) -> Result<ExitCode> {
    let client = remote.connect()?;
    let r = client.resolve(kind).await?;
    let ns = namespace_of(&r, ns);
    let object = client.get(&r, ns.as_deref(), name).await?.with_context(|| format!("{kind} {name} not found"))?;
    print!("{}", serde_yaml::to_string(&object)?);
    let subject = match &ns {
        Some(ns) => format!("{}/{ns}/{name}", r.kind),
        None => format!("{}/{name}", r.kind),
    };
    let lines = client.events(1, 10_000, &[], Some(&subject)).await?;
    let mut t = table(&["seq", "time", "type", "actor", "verdict"]);
    let events: Vec<Value> =
        lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| serde_json::from_slice(l).ok()).collect();
    for e in events.iter().rev().take(20).rev() {
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        t.add_row(vec![
            e["seq"].to_string(),
            s("time"),
            s("type"),
            s("actor"),
            e["data"]["verdict"].as_str().unwrap_or("").to_string(),
        ]);
    }
    println!("\nEvents:\n{t}");
    Ok(ExitCode::SUCCESS)
}

/// `r5e delete KIND NAME`.
pub async fn delete(remote: &Remote, kind: &str, name: &str, ns: &str) -> Result<ExitCode> {
    let client = remote.connect()?;
    let r = client.resolve(kind).await?;
    let last = client.delete(&r, namespace_of(&r, ns).as_deref(), name).await?;
    let pending = last.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    println!(
        "{}.{}/{name} {}",
        r.singular,
        r.group,
        if pending { "marked for deletion (finalizers pending)" } else { "deleted" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `r5e watch KIND`: one line per change until interrupted.
pub async fn watch(remote: &Remote, kind: &str, ns: &str, all: bool, selector: Option<&str>) -> Result<ExitCode> {
    let client = remote.connect()?;
    let r = client.resolve(kind).await?;
    let ns = if all { None } else { namespace_of(&r, ns) };
    let mut events = Box::pin(client.watch(&r, ns.as_deref(), selector).await?);
    while let Some(e) = events.next().await {
        let e = e?;
        let meta = &e["object"]["metadata"];
        println!(
            "{:<9} {}/{} {}",
            e["type"].as_str().unwrap_or(""),
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or(""),
            meta["resourceVersion"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `r5e explain -f FILE`: what admission would decide for each manifest, and why.
pub async fn explain(remote: &Remote, path: &Path, operation: &str, default_namespace: &str) -> Result<ExitCode> {
    let client = remote.connect()?;
    let mut all_allowed = true;
    for (origin, mut doc) in crate::manifests::load_documents(path)? {
        if doc.pointer("/metadata/namespace").is_none()
            && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String(default_namespace.into()));
        }
        let v = client.explain(operation, &doc).await?;
        let allowed = v["allowed"].as_bool().unwrap_or(false);
        all_allowed &= allowed;
        println!("{origin}: {} ({})", if allowed { "allowed" } else { "refused" }, v["reason"].as_str().unwrap_or(""));
        println!("  as {}, policy set {}", v["actor"].as_str().unwrap_or(""), v["policySet"].as_str().unwrap_or(""));
    }
    Ok(if all_allowed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
