//! Bearer tokens. A token is 64 random hex characters shown once; only its SHA-256 is kept, with
//! the identity it stands for. Every request but the health checks must carry one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

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

/// The tokens a server accepts: fixed, or read from a file and re-read whenever it changes (so
/// `r5e token create|revoke` take effect at once).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: Arc<RwLock<HashMap<Digest, TokenRecord>>>,
    file: Option<Arc<TokenFile>>,
    /// Checks sessions' tokens (Biscuit), if this server issues them.
    sessions: Option<tokens::Verifier>,
}

#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    modified: RwLock<Option<SystemTime>>,
}

/// Read the token records in `path` (none if it does not exist).
pub fn read_token_file(path: &Path) -> std::io::Result<Vec<TokenRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Write token records to `path` atomically, readable by the owner only.
pub fn write_token_file(path: &Path, records: &[TokenRecord]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Tokens {
    /// Tokens from their records.
    pub fn new(records: Vec<TokenRecord>) -> Tokens {
        let map = records.into_iter().map(|r| (r.hash, r)).collect();
        Tokens { by_hash: Arc::new(RwLock::new(map)), file: None, sessions: None }
    }

    /// Tokens kept in `path`, re-read whenever the file changes.
    pub fn from_file(path: &Path) -> std::io::Result<Tokens> {
        let tokens = Tokens {
            file: Some(Arc::new(TokenFile { path: path.to_path_buf(), modified: RwLock::new(None) })),
            ..Tokens::default()
        };
        tokens.refresh()?;
        Ok(tokens)
    }

    /// Also accept sessions' tokens signed by the key behind `verifier`. A session's token
    /// stands for the session; admission checks the token itself on every request.
    pub fn with_sessions(mut self, verifier: tokens::Verifier) -> Tokens {
        self.sessions = Some(verifier);
        self
    }

    /// Re-read the file if it changed since the last read.
    fn refresh(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let modified = std::fs::metadata(&file.path).and_then(|m| m.modified()).ok();
        if *file.modified.read().expect("token file lock") == modified && modified.is_some() {
            return Ok(());
        }
        let records = read_token_file(&file.path)?;
        *self.by_hash.write().expect("token map lock") = records.into_iter().map(|r| (r.hash, r)).collect();
        *file.modified.write().expect("token file lock") = modified;
        Ok(())
    }

    /// The identity behind the `Authorization: Bearer ...` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Error> {
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "cannot re-read the token file; using the tokens read before");
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
                // Not one of the tokens on file: it may be a session's.
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
            match self.authenticate(&headers) {
                Ok(who) if admission.credential_live(&who).await => {}
                _ => return,
            }
        }
    }
}
