//! Bearer tokens. A token is 64 random hex characters shown once; only its SHA-256 is kept, with
//! the identity it stands for. Every request but the health checks must carry one.

use std::collections::HashMap;
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

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: Arc<RwLock<HashMap<Digest, TokenRecord>>>,
}

impl Tokens {
    /// Tokens from their records.
    pub fn new(records: Vec<TokenRecord>) -> Tokens {
        let map = records.into_iter().map(|r| (r.hash, r)).collect();
        Tokens { by_hash: Arc::new(RwLock::new(map)) }
    }

    /// The identity behind the `Authorization: Bearer ...` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Error> {
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
            Some(r) if !r.revoked => {
                r.identity().ok_or_else(|| Error::Unauthorized(format!("token of unknown kind `{}`", r.kind)))
            }
            Some(_) => Err(Error::Unauthorized("this token was revoked".into())),
            None => Err(Error::Unauthorized("unknown bearer token".into())),
        }
    }
}
