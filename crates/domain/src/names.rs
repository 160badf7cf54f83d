//! Syntax rules for names, namespaces, label keys and label values (the Kubernetes rules), with
//! error messages that say what is wrong.

/// A DNS-1123 subdomain: at most 253 characters of `a-z`, `0-9`, `-` and `.`, starting and ending
/// with an alphanumeric. Resource names must be one.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("must be at most 253 characters (is {})", name.len()));
    }
    for part in name.split('.') {
        check_dns_label_chars(part).map_err(|e| format!("`{name}` {e}"))?;
    }
    Ok(())
}

/// A DNS-1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting and ending with an
/// alphanumeric. Namespaces must be one.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.len() > 63 {
        return Err(format!("`{ns}` must be at most 63 characters"));
    }
    check_dns_label_chars(ns).map_err(|e| format!("`{ns}` {e}"))
}

fn check_dns_label_chars(s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if s.is_empty() {
        return Err("must not have empty parts".into());
    }
    if !s.chars().all(ok_char) {
        return Err("may contain only lower-case letters, digits, `-` and `.`".into());
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err("must start and end with a lower-case letter or digit".into());
    }
    Ok(())
}

/// A label name part or value: at most 63 characters of alphanumerics, `-`, `_` and `.`,
/// starting and ending with an alphanumeric.
fn check_label_token(s: &str, what: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if s.len() > 63 {
        return Err(format!("{what} `{s}` must be at most 63 characters"));
    }
    if !s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{what} `{s}` may contain only letters, digits, `-`, `_` and `.`"));
    }
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return Err(format!("{what} `{s}` must start and end with a letter or digit"));
    }
    Ok(())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_name(p).map_err(|e| format!("label key prefix {e}"))?;
    }
    if name.is_empty() {
        return Err(format!("label key `{key}` has an empty name"));
    }
    check_label_token(name, "label key")
}

/// A label value: empty, or a token of at most 63 characters.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() { Ok(()) } else { check_label_token(value, "label value") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("release-notes").is_ok());
        assert!(check_name("a.b-c.d").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Upper").unwrap_err().contains("lower-case"));
        assert!(check_name("-lead").unwrap_err().contains("start and end"));
        assert!(check_name(&"a".repeat(254)).unwrap_err().contains("253"));
        assert!(check_namespace("a.b").is_err());
        assert!(check_namespace("team-a").is_ok());
    }

    #[test]
    fn labels() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("r5e.ai/role").is_ok());
        assert!(check_label_key("Team_A.x").is_ok());
        assert!(check_label_key("r5e.ai/").is_err());
        assert!(check_label_key("bad key").is_err());
        assert!(check_label_key("UPPER.PREFIX/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value(&"x".repeat(64)).is_err());
    }
}
