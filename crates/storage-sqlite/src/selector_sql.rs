//! Label selectors as SQL over the `labels` table: each requirement becomes an `EXISTS` or
//! `NOT EXISTS` on the resource's label rows, so the semantics are exactly those of
//! `domain::selector` (a `!=` or `notin` also matches a resource without the key).

use domain::selector::{Operator, Selector};
use sqlx::{QueryBuilder, Sqlite};

/// Append ` AND ...` conditions on the row aliased `r` for every requirement of `selector`.
pub(crate) fn push(q: &mut QueryBuilder<Sqlite>, selector: &Selector) {
    for req in &selector.requirements {
        let (negate, values): (bool, Option<Vec<&String>>) = match &req.op {
            Operator::Exists => (false, None),
            Operator::DoesNotExist => (true, None),
            Operator::Equals(v) => (false, Some(vec![v])),
            Operator::NotEquals(v) => (true, Some(vec![v])),
            Operator::In(set) => (false, Some(set.iter().collect())),
            Operator::NotIn(set) => (true, Some(set.iter().collect())),
        };
        q.push(if negate { " AND NOT EXISTS" } else { " AND EXISTS" });
        q.push(" (SELECT 1 FROM labels l WHERE l.kind = r.kind AND l.namespace = r.namespace AND l.name = r.name AND l.key = ");
        q.push_bind(req.key.clone());
        if let Some(values) = values {
            q.push(" AND l.value IN (");
            let mut list = q.separated(", ");
            for v in values {
                list.push_bind(v.clone());
            }
            q.push(")");
        }
        q.push(")");
    }
}
