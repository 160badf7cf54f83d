//! Bearer tokens. A person's or service account's token is 64 random hex characters shown once;
//! only its SHA-256 is kept, with the identity it stands for, in the `token.issued` event that
//! issued it. Every request but the health checks must carry one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use admission::Identity;
use axum::http::HeaderMap;
use domain::Digest;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Who a token stands for, as stored (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// `sha256:` of the token.
    pub hash: Digest,
    /// `user` or `serviceaccount`.
    pub kind: String,
    /// The user name, or `namespace/name` for a service account.
    pub name: String,
    /// Groups (`admins` may do anything no policy forbids).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Revoked tokens authenticate nobody.
    #[serde(default)]
    pub revoked: bool,
    /// After this instant the token authenticates nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TokenRecord {
    fn identity(&self) -> Option<Identity> {
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        match self.kind.as_str() {
            "user" => Some(Identity::user(&self.name, &groups)),
            "serviceaccount" => {
                let (ns, name) = self.name.split_once('/')?;
                Some(Identity::service_account(ns, name, &groups))
            }
            _ => None,
        }
    }
}

/// The event types of people's and service accounts' tokens on the audit chain. Issuing and
/// revoking a token is a write through admission (`Admission::change_credentials`); the tokens a
/// server accepts are these events folded in order, so every process on the store sees the same
/// set.
pub const TOKEN_ISSUED: &str = "token.issued";
/// See [`TOKEN_ISSUED`].
pub const TOKEN_REVOKED: &str = "token.revoked";

impl TokenRecord {
    /// What the token is about on the chain: `token:<kind>:<name>`.
    pub fn subject(&self) -> String {
        format!("token:{}:{}", self.kind, self.name)
    }

    /// Where policy decides about it: `Token/<name>` (a service account's in its namespace).
    pub fn target(&self) -> domain::ObjectKey {
        match (self.kind.as_str(), self.name.split_once('/')) {
            ("serviceaccount", Some((ns, name))) => domain::ObjectKey::new("Token", ns, name),
            _ => domain::ObjectKey::new("Token", "", &self.name),
        }
    }

    /// The event that issues it (the record holds the token's digest, never the token).
    pub fn issued(&self, actor: &str) -> domain::chain::EventDraft {
        domain::chain::EventDraft {
            type_: TOKEN_ISSUED.into(),
            actor: actor.into(),
            subject: self.subject(),
            data: serde_json::to_value(self).expect("token records serialise"),
        }
    }

    /// The event that revokes the tokens `hashes` of this record's holder.
    pub fn revoked(&self, actor: &str, hashes: &[Digest]) -> domain::chain::EventDraft {
        domain::chain::EventDraft {
            type_: TOKEN_REVOKED.into(),
            actor: actor.into(),
            subject: self.subject(),
            data: serde_json::json!({"kind": self.kind, "name": self.name, "hashes": hashes}),
        }
    }
}

/// The tokens a server accepts: fixed ([`Tokens::new`]), or those the audit chain of a store
/// issued and has not revoked ([`Tokens::from_store`]), caught up with the chain on every
/// request, so an issue or a revocation by any process counts from its next request on.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: Arc<RwLock<HashMap<Digest, TokenRecord>>>,
    store: Option<storage::Store>,
    /// The last event applied.
    seen: Arc<tokio::sync::Mutex<u64>>,
    /// Checks sessions' tokens (Biscuit), if this server issues them.
    sessions: Option<tokens::Verifier>,
}

/// Read the token records in `path` (none if it does not exist): the token file of older
/// releases, which `r5e serve` imports into the store once.
pub fn read_token_file(path: &Path) -> std::io::Result<Vec<TokenRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Tokens {
    /// Tokens from their records.
    pub fn new(records: Vec<TokenRecord>) -> Tokens {
        let map = records.into_iter().map(|r| (r.hash, r)).collect();
        Tokens { by_hash: Arc::new(RwLock::new(map)), ..Tokens::default() }
    }

    /// The tokens the audit chain of `store` issued and has not revoked.
    pub async fn from_store(store: storage::Store) -> Result<Tokens, storage::Error> {
        let tokens = Tokens { store: Some(store), ..Tokens::default() };
        tokens.catch_up().await?;
        Ok(tokens)
    }

    /// Also accept sessions' tokens signed by the key behind `verifier`. A session's token
    /// stands for the session; admission checks the token itself on every request.
    pub fn with_sessions(mut self, verifier: tokens::Verifier) -> Tokens {
        self.sessions = Some(verifier);
        self
    }

    /// Every token record, revoked ones included.
    pub fn records(&self) -> Vec<TokenRecord> {
        let mut out: Vec<TokenRecord> = self.by_hash.read().expect("token map lock").values().cloned().collect();
        out.sort_by(|a, b| (&a.kind, &a.name, a.hash.hex()).cmp(&(&b.kind, &b.name, b.hash.hex())));
        out
    }

    /// Apply the token events the store has that this process has not seen.
    pub async fn catch_up(&self) -> Result<(), storage::Error> {
        const PAGE: usize = 1000;
        let Some(store) = &self.store else { return Ok(()) };
        let mut seen = self.seen.lock().await;
        loop {
            let query = storage::EventQuery {
                from_seq: Some(*seen + 1),
                types: vec![TOKEN_ISSUED.into(), TOKEN_REVOKED.into()],
                limit: Some(PAGE),
                ..Default::default()
            };
            let page = store.events.query(&query).await?;
            let mut map = self.by_hash.write().expect("token map lock");
            for e in &page {
                apply(&mut map, e);
                *seen = e.seq;
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }

    /// The identity behind the `Authorization: Bearer ...` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Error> {
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "cannot read the token events; using the tokens read before");
        }
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| Error::Unauthorized("no bearer token: send `Authorization: Bearer <token>`".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Error::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
        let hash = Digest::of(token.trim().as_bytes());
        let map = self.by_hash.read().expect("token map lock");
        match map.get(&hash) {
            Some(r) if r.revoked => Err(Error::Unauthorized("this token was revoked".into())),
            Some(r) if r.expires_at.is_some_and(|at| at <= chrono::Utc::now()) => {
                Err(Error::Unauthorized("this token has expired".into()))
            }
            Some(r) => r.identity().ok_or_else(|| Error::Unauthorized(format!("token of unknown kind `{}`", r.kind))),
            None => match &self.sessions {
                // Not a person's token: it may be a session's.
                Some(verifier) if tokens::inspect(token).is_ok() => {
                    let claims = verifier
                        .identify(token, chrono::Utc::now())
                        .map_err(|e| Error::Unauthorized(format!("session token refused: {e}")))?;
                    Ok(Identity::session(&claims.namespace, &claims.session, claims.authority).with_credential(token))
                }
                _ => Err(Error::Unauthorized("unknown bearer token".into())),
            },
        }
    }

    /// Resolves once the token in `headers` no longer authenticates (revoked, expired, or gone)
    /// or, for a session's token, no longer acts (the session ended), checking every `every`:
    /// what ends a watch opened with it.
    pub async fn until_invalid(
        &self,
        headers: HeaderMap,
        every: std::time::Duration,
        admission: Arc<admission::Admission>,
    ) {
        loop {
            tokio::time::sleep(every).await;
            match self.authenticate(&headers).await {
                Ok(who) if admission.credential_live(&who).await => {}
                _ => return,
            }
        }
    }
}

/// Fold one token event into the map; an event that does not parse changes nothing.
fn apply(map: &mut HashMap<Digest, TokenRecord>, e: &domain::chain::Event) {
    match e.type_.as_str() {
        TOKEN_ISSUED => {
            if let Ok(r) = serde_json::from_value::<TokenRecord>(e.data.clone()) {
                map.insert(r.hash, r);
            }
        }
        TOKEN_REVOKED => {
            let hashes: Vec<Digest> = serde_json::from_value(e.data["hashes"].clone()).unwrap_or_default();
            for h in hashes {
                if let Some(r) = map.get_mut(&h) {
                    r.revoked = true;
                }
            }
        }
        _ => {}
    }
}
