//! What the admission tests share: a fresh store and manifest builders.

#![allow(dead_code)]

use std::sync::Arc;

use r5e_admission::{Admission, Identity};
use serde_json::{Value, json};
use storage::Store;
use storage_sqlite::SqliteBackend;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub admission: Admission,
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("r5e.db")).await.unwrap();
    let store = Store::open(Arc::new(backend)).await.unwrap();
    Fixture { _dir: dir, admission: Admission::new(store) }
}

pub fn admin() -> Identity {
    Identity::user("root", &["admins"])
}

pub fn manifest(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec})
}
