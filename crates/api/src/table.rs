//! `meta.k8s.io/v1` Table responses, what `kubectl get` asks for (`Accept: ...;as=Table`): one
//! row per object, with the kind's printer columns, dates shown as ages.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::discovery::ServedKind;

/// True if the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("as=Table"))
}

/// A Table of `objects`.
pub fn table(kind: &ServedKind, objects: &[Value], resource_version: &str, now: DateTime<Utc>) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "the resource's name", "priority": 0}),
    ];
    columns.extend(kind.columns.iter().map(|c| {
        let type_ = if c.type_ == "date" { "string" } else { c.type_.as_str() };
        json!({"name": c.name, "type": type_, "format": "", "description": c.json_path, "priority": 0})
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(kind.columns.iter().map(|c| cell(o, &c.json_path, &c.type_, now)));
            json!({"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns, "rows": rows,
    })
}

/// The value at a simple JSONPath (`.a.b`), shown for a table cell.
fn cell(object: &Value, path: &str, type_: &str, now: DateTime<Utc>) -> Value {
    let pointer = format!("/{}", path.trim_start_matches('.').replace('.', "/"));
    match object.pointer(&pointer) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if type_ == "date" => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(age(now.signed_duration_since(t.with_timezone(&Utc)))),
            Err(_) => json!(s),
        },
        Some(Value::String(s)) => json!(s),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(v) => json!(v.to_string()),
    }
}

/// An age the way kubectl shows one: `45s`, `3m12s`, `17m`, `5h3m`, `20h`, `3d4h`, `12d`, `2y`.
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (m, h, days) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if days < 8 => format!("{days}d{}h", h % 24),
        _ if days < 730 => format!("{days}d"),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (45, "45s"),
            (192, "3m12s"),
            (1020, "17m"),
            (18180, "5h3m"),
            (72000, "20h"),
            (273600, "3d4h"),
            (1036800, "12d"),
            (63072000, "2y"),
        ];
        for (secs, want) in cases {
            assert_eq!(age(Duration::seconds(secs)), want);
        }
    }
}
