//! Label selectors with the Kubernetes syntax: `key=value`, `key==value`, `key!=value`,
//! `key in (a,b)`, `key notin (a,b)`, `key`, `!key`, joined by `,` (and). Also the structured
//! `matchLabels`/`matchExpressions` form used inside specs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{check_label_key, check_label_value};

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// All must hold.
    pub requirements: Vec<Requirement>,
}

/// One condition on one label key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// What must hold of its value.
    pub op: Operator,
}

/// The condition a [`Requirement`] puts on a key's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` or `key==value`: present with this value.
    Equals(String),
    /// `key!=value`: absent, or present with another value.
    NotEquals(String),
    /// `key in (a,b)`: present with one of these values.
    In(BTreeSet<String>),
    /// `key notin (a,b)`: absent, or present with none of these values.
    NotIn(BTreeSet<String>),
    /// `key`: present.
    Exists,
    /// `!key`: absent.
    DoesNotExist,
}

impl Selector {
    /// True if `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl Requirement {
    /// True if `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Operator::Equals(v) => value == Some(v),
            Operator::NotEquals(v) => value != Some(v),
            Operator::In(set) => value.is_some_and(|v| set.contains(v)),
            Operator::NotIn(set) => !value.is_some_and(|v| set.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        match &self.op {
            Operator::Equals(v) => write!(f, "{}={}", self.key, v),
            Operator::NotEquals(v) => write!(f, "{}!={}", self.key, v),
            Operator::In(s) => write!(f, "{} in ({})", self.key, set(s)),
            Operator::NotIn(s) => write!(f, "{} notin ({})", self.key, set(s)),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The longest selector string accepted, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// The most requirements one selector may have.
pub const MAX_REQUIREMENTS: usize = 64;
/// The most values all the `in` and `notin` sets of one selector may list together.
pub const MAX_VALUES: usize = 256;

/// Why a selector string does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector `{}` at position {position}: {message}", crate::json::shorten(.input, 100))]
pub struct ParseError {
    /// The whole selector as given.
    pub input: String,
    /// Character offset where the problem was found.
    pub position: usize,
    /// What was wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Comma,
    Open,
    Close,
    End,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    len: usize,
}

impl Lexer<'_> {
    /// The next token and the position it starts at.
    fn next(&mut self) -> Result<(usize, Token), (usize, String)> {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some((pos, c)) = self.chars.next() else { return Ok((self.len, Token::End)) };
        let token = match c {
            ',' => Token::Comma,
            '(' => Token::Open,
            ')' => Token::Close,
            '=' if self.chars.next_if(|(_, c)| *c == '=').is_some() => Token::DoubleEq,
            '=' => Token::Eq,
            '!' if self.chars.next_if(|(_, c)| *c == '=').is_some() => Token::NotEq,
            '!' => Token::Not,
            '<' | '>' => return Err((pos, format!("operator `{c}` is not supported on labels"))),
            _ => {
                let mut word = c.to_string();
                while let Some((_, c)) = self.chars.next_if(|(_, c)| !c.is_whitespace() && !"!=,()<>".contains(*c)) {
                    word.push(c);
                }
                Token::Word(word)
            }
        };
        Ok((pos, token))
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(usize, Token)>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&(usize, Token), (usize, String)> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<(usize, Token), (usize, String)> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    fn key(&mut self) -> Result<String, (usize, String)> {
        match self.next()? {
            (pos, Token::Word(k)) => check_label_key(&k).map(|_| k).map_err(|e| (pos, e)),
            (pos, t) => Err((pos, format!("expected a label key, found {}", describe(&t)))),
        }
    }

    /// A value after `=`, `==` or `!=`: a word, or nothing (the empty value).
    fn value(&mut self) -> Result<String, (usize, String)> {
        match self.peek()?.clone() {
            (pos, Token::Word(v)) => {
                self.next()?;
                check_label_value(&v).map(|_| v).map_err(|e| (pos, e))
            }
            (_, Token::Comma | Token::End) => Ok(String::new()),
            (pos, t) => Err((pos, format!("expected a label value, found {}", describe(&t)))),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, (usize, String)> {
        match self.next()? {
            (_, Token::Open) => {}
            (pos, t) => return Err((pos, format!("expected `(`, found {}", describe(&t)))),
        }
        let mut values = BTreeSet::new();
        loop {
            let v = match self.peek()?.clone() {
                (_, Token::Word(_)) => self.value()?,
                (_, Token::Comma | Token::Close) => String::new(),
                (pos, t) => return Err((pos, format!("expected a value or `)`, found {}", describe(&t)))),
            };
            values.insert(v);
            match self.next()? {
                (_, Token::Comma) => continue,
                (_, Token::Close) => break,
                (pos, t) => return Err((pos, format!("expected `,` or `)`, found {}", describe(&t)))),
            }
        }
        if values.len() == 1 && values.contains("") {
            return Err((self.lexer.len, "a value set must not be empty".into()));
        }
        Ok(values)
    }

    fn requirement(&mut self) -> Result<Requirement, (usize, String)> {
        if let (_, Token::Not) = self.peek()? {
            self.next()?;
            return Ok(Requirement { key: self.key()?, op: Operator::DoesNotExist });
        }
        let key = self.key()?;
        let op = match self.peek()?.clone() {
            (_, Token::Comma | Token::End) => Operator::Exists,
            (_, Token::Eq | Token::DoubleEq) => {
                self.next()?;
                Operator::Equals(self.value()?)
            }
            (_, Token::NotEq) => {
                self.next()?;
                Operator::NotEquals(self.value()?)
            }
            (_, Token::Word(w)) if w == "in" => {
                self.next()?;
                Operator::In(self.set()?)
            }
            (_, Token::Word(w)) if w == "notin" => {
                self.next()?;
                Operator::NotIn(self.set()?)
            }
            (pos, t) => {
                return Err((
                    pos,
                    format!("expected `=`, `==`, `!=`, `in`, `notin`, `,` or the end, found {}", describe(&t)),
                ));
            }
        };
        Ok(Requirement { key, op })
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("`{w}`"),
        Token::Not => "`!`".into(),
        Token::Eq => "`=`".into(),
        Token::DoubleEq => "`==`".into(),
        Token::NotEq => "`!=`".into(),
        Token::Comma => "`,`".into(),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::End => "the end".into(),
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.len() > MAX_SELECTOR_BYTES {
            return Err(ParseError {
                input: input.to_string(),
                position: MAX_SELECTOR_BYTES,
                message: format!(
                    "a selector may be at most {MAX_SELECTOR_BYTES} bytes long (this one has {})",
                    input.len()
                ),
            });
        }
        let mut p = Parser { lexer: Lexer { chars: input.char_indices().peekable(), len: input.len() }, peeked: None };
        let run = |p: &mut Parser<'_>| -> Result<Selector, (usize, String)> {
            let mut requirements = Vec::new();
            if let (_, Token::End) = p.peek()? {
                return Ok(Selector { requirements });
            }
            let mut values = 0;
            loop {
                let at = p.peek()?.0;
                let requirement = p.requirement()?;
                values += match &requirement.op {
                    Operator::In(v) | Operator::NotIn(v) => v.len(),
                    _ => 0,
                };
                requirements.push(requirement);
                if requirements.len() > MAX_REQUIREMENTS {
                    return Err((at, format!("a selector may have at most {MAX_REQUIREMENTS} requirements")));
                }
                if values > MAX_VALUES {
                    return Err((at, format!("a selector's sets may list at most {MAX_VALUES} values in all")));
                }
                match p.next()? {
                    (_, Token::Comma) => continue,
                    (_, Token::End) => return Ok(Selector { requirements }),
                    (pos, t) => return Err((pos, format!("expected `,` or the end, found {}", describe(&t)))),
                }
            }
        };
        run(&mut p).map_err(|(position, message)| ParseError { input: input.to_string(), position, message })
    }
}

/// The structured selector of Kubernetes (`metav1.LabelSelector`), as written inside specs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Each key must have exactly this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Each expression must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One expression of a [`LabelSelector`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In` and `NotIn`; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The equivalent [`Selector`], or what is wrong with this one.
    pub fn to_selector(&self) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for (k, v) in &self.match_labels {
            check_label_key(k)?;
            check_label_value(v)?;
            requirements.push(Requirement { key: k.clone(), op: Operator::Equals(v.clone()) });
        }
        for e in &self.match_expressions {
            check_label_key(&e.key)?;
            for v in &e.values {
                check_label_value(v)?;
            }
            let values: BTreeSet<String> = e.values.iter().cloned().collect();
            let op = match (e.operator.as_str(), values.is_empty()) {
                ("In", false) => Operator::In(values),
                ("NotIn", false) => Operator::NotIn(values),
                ("Exists", true) => Operator::Exists,
                ("DoesNotExist", true) => Operator::DoesNotExist,
                ("In" | "NotIn", true) => {
                    return Err(format!("`{}` on `{}` needs at least one value", e.operator, e.key));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(format!("`{}` on `{}` takes no values", e.operator, e.key));
                }
                (other, _) => return Err(format!("unknown operator `{other}`: use In, NotIn, Exists or DoesNotExist")),
            };
            requirements.push(Requirement { key: e.key.clone(), op });
        }
        Ok(Selector { requirements })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn selectors_are_bounded_at_and_just_past_each_limit() {
        let terms = |n: usize| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
        assert!(terms(MAX_REQUIREMENTS).parse::<super::Selector>().is_ok());
        let e = terms(MAX_REQUIREMENTS + 1).parse::<super::Selector>().unwrap_err();
        assert!(e.message.contains("at most 64 requirements"), "{e}");
        let values = |n: usize| format!("k in ({})", (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>().join(","));
        assert!(values(MAX_VALUES).parse::<super::Selector>().is_ok());
        assert!(values(MAX_VALUES + 1).parse::<super::Selector>().is_err());
        let long = format!("k={}", "v".repeat(MAX_SELECTOR_BYTES));
        let e = long.parse::<super::Selector>().unwrap_err();
        assert!(e.to_string().len() < 300, "the error does not echo the whole input: {e}");
        assert!(e.message.contains("at most 4096 bytes"));
    }

    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("r5e.ai/role", "reviewer")]);
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "tier in (front,back)",
            "tier notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "r5e.ai/role=reviewer",
            " app = web , tier ",
            "app in (web)",
        ];
        let no =
            ["app=db", "app!=web", "tier in (back)", "tier notin (front, back)", "missing", "!app", "missing in (x)"];
        for s in yes {
            assert!(s.parse::<Selector>().unwrap().matches(&l), "{s}");
        }
        for s in no {
            assert!(!s.parse::<Selector>().unwrap().matches(&l), "{s}");
        }
        assert!("app=".parse::<Selector>().unwrap().matches(&labels(&[("app", "")])));
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            ("app in (a", "expected `,` or `)`, found the end"),
            ("app in a", "expected `(`"),
            ("app ~ x", "expected `=`, `==`, `!=`, `in`, `notin`"),
            ("=x", "expected a label key, found `=`"),
            ("app>1", "operator `>` is not supported"),
            ("bad key!x", "expected `=`"),
            ("a=b=c", "expected `,` or the end, found `=`"),
            ("Bad/x=1", "label key prefix"),
            ("app=-x", "must start and end"),
            ("a in ()", "must not be empty"),
            ("a,", "expected a label key, found the end"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Selector>().unwrap_err();
            assert!(err.to_string().contains(want), "{input}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid label selector `{input}` at position")));
        }
        assert_eq!("app in (a".parse::<Selector>().unwrap_err().position, 9);
        assert_eq!("x,=y".parse::<Selector>().unwrap_err().position, 2);
    }

    #[test]
    fn structured_form() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"role": "reviewer"},
            "matchExpressions": [{"key": "model", "operator": "NotIn", "values": ["m1"]}, {"key": "gpu", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let s = ls.to_selector().unwrap();
        assert_eq!(s.to_string(), "role=reviewer,model notin (m1),!gpu");
        assert!(s.matches(&labels(&[("role", "reviewer"), ("model", "m2")])));
        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Exists".into(),
                values: vec!["x".into()],
            }],
            ..Default::default()
        };
        assert!(bad.to_selector().unwrap_err().contains("takes no values"));
        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Near".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(bad.to_selector().unwrap_err().contains("unknown operator `Near`"));
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "r5e.ai/c"]).prop_map(str::to_string)
    }
    fn val() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "x", "y", "z-1"]).prop_map(str::to_string)
    }
    fn set() -> impl Strategy<Value = BTreeSet<String>> {
        prop::collection::btree_set(val().prop_filter("non-empty", |v| !v.is_empty()), 1..3)
    }
    fn requirement() -> impl Strategy<Value = Requirement> {
        (
            key(),
            prop_oneof![
                val().prop_map(Operator::Equals),
                val().prop_map(Operator::NotEquals),
                set().prop_map(Operator::In),
                set().prop_map(Operator::NotIn),
                Just(Operator::Exists),
                Just(Operator::DoesNotExist),
            ],
        )
            .prop_map(|(key, op)| Requirement { key, op })
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_selector(reqs in prop::collection::vec(requirement(), 0..5)) {
            let s = Selector { requirements: reqs };
            let text = s.to_string();
            prop_assert_eq!(text.parse::<Selector>().unwrap(), s, "{}", text);
        }

        /// Negations are exact complements, and a conjunction is the and of its parts.
        #[test]
        fn semantics(req in requirement(), l in prop::collection::btree_map(key(), val(), 0..3), reqs in prop::collection::vec(requirement(), 0..4)) {
            let negated = Requirement { key: req.key.clone(), op: match &req.op {
                Operator::Equals(v) => Operator::NotEquals(v.clone()),
                Operator::NotEquals(v) => Operator::Equals(v.clone()),
                Operator::In(s) => Operator::NotIn(s.clone()),
                Operator::NotIn(s) => Operator::In(s.clone()),
                Operator::Exists => Operator::DoesNotExist,
                Operator::DoesNotExist => Operator::Exists,
            }};
            prop_assert_ne!(req.matches(&l), negated.matches(&l));
            let all = Selector { requirements: reqs.clone() };
            prop_assert_eq!(all.matches(&l), reqs.iter().all(|r| r.matches(&l)));
        }
    }
}
