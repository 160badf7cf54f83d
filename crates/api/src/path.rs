//! Parsing `/apis/...` paths into what they address.

use crate::Error;

/// What a path under `/apis/` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/apis/{group}`.
    Group { group: String },
    /// `/apis/{group}/{version}`.
    GroupVersion { group: String, version: String },
    /// A collection, an object, or an object's status.
    Resource(ResourcePath),
}

/// A path to resources of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// `None` for cluster-scoped kinds and for lists across all namespaces.
    pub namespace: Option<String>,
    /// `None` for the collection.
    pub name: Option<String>,
    /// True for `.../{name}/status`.
    pub status: bool,
}

/// Parse the part of the path after `/apis/`.
pub fn parse(rest: &str) -> Result<Target, Error> {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let s = |p: &str| p.to_string();
    let resource = |group: &str, version: &str, namespace: Option<&str>, rest: &[&str]| -> Result<Target, Error> {
        let (plural, name, status) = match rest {
            [plural] => (plural, None, false),
            [plural, name] => (plural, Some(s(name)), false),
            [plural, name, "status"] => (plural, Some(s(name)), true),
            _ => return Err(Error::NotFound(format!("no such path: /apis/{rest_all}", rest_all = rest.join("/")))),
        };
        Ok(Target::Resource(ResourcePath {
            group: s(group),
            version: s(version),
            plural: s(plural),
            namespace: namespace.map(s),
            name,
            status,
        }))
    };
    match parts.as_slice() {
        [group] if !group.is_empty() => Ok(Target::Group { group: s(group) }),
        [group, version] => Ok(Target::GroupVersion { group: s(group), version: s(version) }),
        [group, version, "namespaces", ns, rest @ ..] if !rest.is_empty() => resource(group, version, Some(ns), rest),
        [group, version, rest @ ..] if !rest.is_empty() => resource(group, version, None, rest),
        _ => Err(Error::NotFound(format!("no such path: /apis/{rest}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("r5e.ai").unwrap(), Target::Group { group: "r5e.ai".into() });
        assert_eq!(
            parse("r5e.ai/v1alpha1/").unwrap(),
            Target::GroupVersion { group: "r5e.ai".into(), version: "v1alpha1".into() }
        );
        let Target::Resource(p) = parse("r5e.ai/v1alpha1/namespaces/w/tasks/t1/status").unwrap() else { panic!() };
        assert_eq!(
            (p.namespace.as_deref(), p.plural.as_str(), p.name.as_deref(), p.status),
            (Some("w"), "tasks", Some("t1"), true)
        );
        let Target::Resource(p) = parse("r5e.ai/v1alpha1/tasks").unwrap() else { panic!() };
        assert_eq!((p.namespace, p.name), (None, None));
        let Target::Resource(p) = parse("apiextensions.k8s.io/v1/customresourcedefinitions/x.example.com").unwrap()
        else {
            panic!()
        };
        assert_eq!(p.name.as_deref(), Some("x.example.com"));
        assert!(parse("r5e.ai/v1alpha1/namespaces/w/tasks/t1/logs").is_err());
        assert!(parse("").is_err());
    }
}
