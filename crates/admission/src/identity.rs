//! Who is acting: a user, a service account or an agent session, as policy and the audit log
//! name it.

use domain::Authority;
use policy::{Principal, PrincipalKind};

/// An authenticated actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The policy principal.
    pub principal: Principal,
    /// For a session, the authority its token carries: everything it writes must stay within it.
    pub authority: Option<Authority>,
    /// The credential the actor presented, when admission must check it on every request (a
    /// session's token): see [`crate::Credentials`].
    pub credential: Option<std::sync::Arc<str>>,
}

impl Identity {
    /// A person, with the groups it belongs to (`admins` may do anything no policy forbids).
    pub fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            principal: Principal {
                kind: PrincipalKind::User,
                id: name.to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            authority: None,
            credential: None,
        }
    }

    /// A program confined to its namespace.
    pub fn service_account(namespace: &str, name: &str, groups: &[&str]) -> Identity {
        Identity {
            principal: Principal {
                kind: PrincipalKind::ServiceAccount,
                id: format!("{namespace}/{name}"),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            authority: None,
            credential: None,
        }
    }

    /// An agent session acting with the authority delegated to it.
    pub fn session(namespace: &str, name: &str, authority: Authority) -> Identity {
        Identity {
            principal: Principal {
                kind: PrincipalKind::Session,
                id: format!("{namespace}/{name}"),
                groups: Vec::new(),
            },
            authority: Some(authority),
            credential: None,
        }
    }

    /// This identity, bound to `credential`: admission checks it on every request.
    pub fn with_credential(mut self, credential: &str) -> Identity {
        self.credential = Some(credential.into());
        self
    }

    /// How the audit log names this actor: `user:alice`, `serviceaccount:ns/name`,
    /// `session:ns/name`.
    pub fn actor(&self) -> String {
        let prefix = match self.principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "serviceaccount",
            PrincipalKind::Session => "session",
        };
        format!("{prefix}:{}", self.principal.id)
    }

    /// The namespace a service account or session belongs to (none for users).
    pub fn namespace(&self) -> Option<&str> {
        match self.principal.kind {
            PrincipalKind::User => None,
            _ => self.principal.id.split_once('/').map(|(ns, _)| ns),
        }
    }
}
