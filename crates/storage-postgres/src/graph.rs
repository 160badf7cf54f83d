//! Graph Storage on Postgres: reads, and the bulk row writes of a committed batch.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::{ObjectKey, Resource};
use sqlx::{Postgres, QueryBuilder, Row};
use storage::{Direction, Error, GraphBackend, Hit, ListQuery, Prepared, Result, TraverseQuery, Write};

use crate::log::{Tx, read_head};
use crate::{PostgresBackend, db, selector_sql};

/// Three parallel arrays of kind, namespace and name, for `UNNEST`.
fn key_arrays<'a>(keys: impl Iterator<Item = &'a ObjectKey>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for k in keys {
        out.0.push(k.kind.clone());
        out.1.push(k.namespace.clone());
        out.2.push(k.name.clone());
    }
    out
}

/// The stored resourceVersion of each key (`None` where absent), read inside the write lock.
pub(crate) async fn versions(tx: &mut Tx<'_>, keys: &[ObjectKey]) -> Result<HashMap<ObjectKey, Option<u64>>> {
    let mut out: HashMap<ObjectKey, Option<u64>> = keys.iter().map(|k| (k.clone(), None)).collect();
    if keys.is_empty() {
        return Ok(out);
    }
    let (kinds, namespaces, names) = key_arrays(keys.iter());
    let rows = sqlx::query(
        "SELECT r.kind, r.namespace, r.name, r.resource_version FROM resources r \
         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k(kind, namespace, name) \
         ON r.kind = k.kind AND r.namespace = k.namespace AND r.name = k.name",
    )
    .bind(kinds)
    .bind(namespaces)
    .bind(names)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    for row in rows {
        let key = ObjectKey { kind: row.get(0), namespace: row.get(1), name: row.get(2) };
        out.insert(key, Some(row.get::<i64, _>(3) as u64));
    }
    Ok(out)
}

/// Write the graph rows of a planned batch: only the last write to each key matters, so every
/// touched key's edges are cleared, removed keys deleted, and the final objects upserted, each
/// as one statement.
pub(crate) async fn apply(tx: &mut Tx<'_>, prepared: &[Prepared]) -> Result<()> {
    let mut last: HashMap<ObjectKey, &Write> = HashMap::new();
    let mut order: Vec<ObjectKey> = Vec::new();
    for p in prepared {
        if let Some(w) = &p.write {
            let key = match w {
                Write::Put { object, .. } | Write::Remove { object } => object.key(),
            };
            if last.insert(key.clone(), w).is_none() {
                order.push(key);
            }
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let (kinds, namespaces, names) = key_arrays(order.iter());
    sqlx::query(
        "DELETE FROM edges e USING UNNEST($1::text[], $2::text[], $3::text[]) AS k(kind, namespace, name) \
         WHERE e.kind = k.kind AND e.namespace = k.namespace AND e.name = k.name",
    )
    .bind(&kinds)
    .bind(&namespaces)
    .bind(&names)
    .execute(&mut **tx)
    .await
    .map_err(db)?;

    let removed: Vec<&ObjectKey> = order.iter().filter(|k| matches!(last[*k], Write::Remove { .. })).collect();
    if !removed.is_empty() {
        let (kinds, namespaces, names) = key_arrays(removed.into_iter());
        sqlx::query(
            "DELETE FROM resources r USING UNNEST($1::text[], $2::text[], $3::text[]) AS k(kind, namespace, name) \
             WHERE r.kind = k.kind AND r.namespace = k.namespace AND r.name = k.name",
        )
        .bind(kinds)
        .bind(namespaces)
        .bind(names)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }

    let mut rows = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut edges: [Vec<String>; 7] = Default::default();
    for key in &order {
        let Write::Put { object, references } = last[key] else { continue };
        rows.0.push(key.kind.clone());
        rows.1.push(key.namespace.clone());
        rows.2.push(key.name.clone());
        rows.3.push(object.metadata.uid.clone().unwrap_or_default());
        rows.4.push(object.resource_version().unwrap_or_default() as i64);
        rows.5.push(serde_json::to_string(&object.metadata.labels).map_err(|e| Error::Invalid(e.to_string()))?);
        rows.6.push(serde_json::to_string(object).map_err(|e| Error::Invalid(e.to_string()))?);
        for r in references {
            for (column, value) in edges.iter_mut().zip([
                &key.kind,
                &key.namespace,
                &key.name,
                &r.edge,
                &r.target.kind,
                &r.target.namespace,
                &r.target.name,
            ]) {
                column.push(value.clone());
            }
        }
    }
    if !rows.0.is_empty() {
        sqlx::query(
            "INSERT INTO resources (kind, namespace, name, uid, resource_version, labels, body) \
             SELECT k, ns, n, u, rv, l::jsonb, b::jsonb \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[]) \
                  AS t(k, ns, n, u, rv, l, b) \
             ON CONFLICT (kind, namespace, name) DO UPDATE SET uid = EXCLUDED.uid, \
                resource_version = EXCLUDED.resource_version, labels = EXCLUDED.labels, body = EXCLUDED.body",
        )
        .bind(rows.0)
        .bind(rows.1)
        .bind(rows.2)
        .bind(rows.3)
        .bind(rows.4)
        .bind(rows.5)
        .bind(rows.6)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    if !edges[0].is_empty() {
        let [a, b, c, d, e, f, g] = edges;
        sqlx::query(
            "INSERT INTO edges (kind, namespace, name, edge, to_kind, to_namespace, to_name) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(a)
        .bind(b)
        .bind(c)
        .bind(d)
        .bind(e)
        .bind(f)
        .bind(g)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// The resource of a row selected as `kind, namespace, name, body::text, ...`.
fn resource_of(row: &sqlx::postgres::PgRow) -> Result<Resource> {
    let key = ObjectKey { kind: row.get(0), namespace: row.get(1), name: row.get(2) };
    storage::parse_row(&key, row.get(3))
}

/// The list query after `prefix` (empty, or `EXPLAIN ` to see its plan).
fn list_query(prefix: &str, query: &ListQuery) -> QueryBuilder<Postgres> {
    let mut q = QueryBuilder::<Postgres>::new(prefix);
    q.push("SELECT r.kind, r.namespace, r.name, r.body::text FROM resources r WHERE true");
    if let Some(kind) = &query.kind {
        q.push(" AND r.kind = ").push_bind(kind.clone());
    }
    if let Some(ns) = &query.namespace {
        q.push(" AND r.namespace = ").push_bind(ns.clone());
    }
    if let Some(after) = &query.after {
        q.push(" AND (r.kind, r.namespace, r.name) > (");
        q.push_bind(after.kind.clone()).push(", ").push_bind(after.namespace.clone()).push(", ");
        q.push_bind(after.name.clone()).push(")");
    }
    selector_sql::push(&mut q, &query.selector);
    q.push(" ORDER BY r.kind, r.namespace, r.name");
    if let Some(limit) = query.limit {
        q.push(" LIMIT ").push_bind(limit as i64);
    }
    q
}

impl PostgresBackend {
    /// The plan Postgres chooses for a list, as `EXPLAIN` prints it (for operators checking that
    /// label selectors use the GIN index on `labels`).
    pub async fn explain_list(&self, query: &ListQuery) -> Result<String> {
        let rows = list_query("EXPLAIN ", query).build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n"))
    }
}

#[async_trait]
impl GraphBackend for PostgresBackend {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Resource>> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body::text FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3")
                .bind(&key.kind)
                .bind(&key.namespace)
                .bind(&key.name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        body.as_deref().map(|b| storage::parse_row(key, b)).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<(Vec<Resource>, u64)> {
        // One snapshot for the head and the rows.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        let rows = list_query("", query).build().fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let items = rows.iter().map(resource_of).collect::<Result<Vec<_>>>()?;
        Ok((items, head.seq))
    }

    async fn traverse(&self, start: &ObjectKey, query: &TraverseQuery) -> Result<Vec<Hit>> {
        // Postgres allows one recursive reference, so both directions go through one LATERAL.
        let mut q = QueryBuilder::<Postgres>::new("WITH RECURSIVE walk(kind, namespace, name, depth) AS (SELECT ");
        q.push_bind(start.kind.clone()).push("::text, ").push_bind(start.namespace.clone()).push("::text, ");
        q.push_bind(start.name.clone())
            .push("::text, 0 UNION SELECT n.kind, n.namespace, n.name, w.depth + 1 FROM walk w CROSS JOIN LATERAL (");
        let edge_filter = |q: &mut QueryBuilder<Postgres>| {
            if !query.edges.is_empty() {
                q.push(" AND e.edge = ANY(").push_bind(query.edges.clone()).push(")");
            }
        };
        let mut parts = 0;
        if matches!(query.direction, Direction::Outgoing | Direction::Both) {
            q.push(
                "SELECT e.to_kind AS kind, e.to_namespace AS namespace, e.to_name AS name FROM edges e \
                 WHERE e.kind = w.kind AND e.namespace = w.namespace AND e.name = w.name",
            );
            edge_filter(&mut q);
            parts += 1;
        }
        if matches!(query.direction, Direction::Incoming | Direction::Both) {
            if parts > 0 {
                q.push(" UNION ALL ");
            }
            q.push(
                "SELECT e.kind, e.namespace, e.name FROM edges e \
                 WHERE e.to_kind = w.kind AND e.to_namespace = w.namespace AND e.to_name = w.name",
            );
            edge_filter(&mut q);
        }
        q.push(") n WHERE w.depth < ").push_bind(query.max_depth as i32);
        q.push(
            ") SELECT r.kind, r.namespace, r.name, r.body::text, d.depth FROM \
             (SELECT kind, namespace, name, MIN(depth) AS depth FROM walk WHERE depth > 0 GROUP BY kind, namespace, name) d \
             JOIN resources r ON r.kind = d.kind AND r.namespace = d.namespace AND r.name = d.name \
             ORDER BY d.depth, r.kind, r.namespace, r.name",
        );
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let resource = resource_of(&row)?;
            if resource.key() != *start {
                hits.push(Hit { resource, depth: row.get::<i32, _>(4) as u32 });
            }
        }
        Ok(hits)
    }
}
