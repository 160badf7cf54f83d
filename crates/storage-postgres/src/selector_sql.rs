//! Label selectors as SQL over the JSONB `labels` column, written so that the GIN index serves
//! them: `@>` for equality and sets, `?` for existence. Negations are the same conditions under
//! `NOT`, so `!=` and `notin` also match resources without the key, as in Kubernetes.

use domain::selector::{Operator, Selector};
use serde_json::json;
use sqlx::{Postgres, QueryBuilder};

/// Append ` AND ...` conditions on the row aliased `r` for every requirement of `selector`.
pub(crate) fn push(q: &mut QueryBuilder<Postgres>, selector: &Selector) {
    for req in &selector.requirements {
        let contains = |q: &mut QueryBuilder<Postgres>, values: &mut dyn Iterator<Item = &String>| {
            q.push("(");
            for (i, v) in values.enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("r.labels @> ").push_bind(json!({ &req.key: v }).to_string()).push("::jsonb");
            }
            q.push(")");
        };
        match &req.op {
            Operator::Equals(v) => {
                q.push(" AND ");
                contains(q, &mut std::iter::once(v));
            }
            Operator::NotEquals(v) => {
                q.push(" AND NOT ");
                contains(q, &mut std::iter::once(v));
            }
            Operator::In(set) => {
                q.push(" AND ");
                contains(q, &mut set.iter());
            }
            Operator::NotIn(set) => {
                q.push(" AND NOT ");
                contains(q, &mut set.iter());
            }
            Operator::Exists => {
                q.push(" AND r.labels ? ").push_bind(req.key.clone());
            }
            Operator::DoesNotExist => {
                q.push(" AND NOT (r.labels ? ").push_bind(req.key.clone()).push(")");
            }
        }
    }
}
