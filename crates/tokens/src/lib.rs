//! Session credentials: each AgentSession gets a [Biscuit](https://www.biscuitsec.org) token
//! that says exactly what the session may do, and every request it makes (on the harness's stdio
//! or over the HTTP API) is checked against that token by the one function [`Verifier::authorize`].
//!
//! A token is a chain of blocks. The first is signed by the server's key and names the session
//! (namespace, name, uid), the authority recorded on it, the objects it may read outright (its
//! own session, Task, Node and Graph, and its inputs), and the operations a session may ask for
//! at all. Then one block per level of the work chain (Graph, Node, Task, Session), each signed
//! with a fresh key that the previous block commits to, adds the checks of that level's
//! authority: its capabilities and its expiry. Biscuit checks are conjunctive and a block can
//! only add checks, so a later block can narrow what the token allows but never widen it: that is
//! structural, not a matter of the server remembering to compare.
//!
//! A token is verified offline with the server's public key ([`Verifier`]); it is bound to its
//! session by [`Claims::check_live`]: the session must exist with the same uid, still be running,
//! and record this token's revocation id, so a token dies when its session ends (or is
//! re-minted after a restart).

use std::path::Path;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{AuthorizerBuilder, BlockBuilder};
use biscuit_auth::macros::{authorizer, biscuit, block};
use biscuit_auth::{AuthorizerLimits, Biscuit, KeyPair, PrivateKey, PublicKey, UnverifiedBiscuit};
use chrono::{DateTime, Utc};
use domain::Authority;

/// Why a token does not allow a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a token, or not signed by this server's key.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// A check of the token failed for this request.
    #[error("the token does not allow this: {0}")]
    Refused(String),
    /// The token's session is over, or the token was replaced or revoked.
    #[error("the token is no longer live: {0}")]
    Dead(String),
    /// The key could not be made, read or written.
    #[error("the token key: {0}")]
    Key(String),
}

/// The operations a session token may ask for at all; admission decides each one again. Only an
/// orchestrating session's token may ask for `create` (it plans Nodes).
pub const SESSION_OPERATIONS: &[&str] = &["get", "list", "watch", "create", "call_tool"];

/// The time a run of the checks may take (Biscuit's default of 1 ms is too tight unoptimised).
const CHECK_TIME: Duration = Duration::from_millis(100);

/// The server's signing key for session tokens.
pub struct Issuer {
    root: KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("public_key", &self.root.public().to_string()).finish()
    }
}

/// One level of the work chain, and the authority it holds.
#[derive(Debug, Clone)]
pub struct Level {
    /// `Graph/g`, `Node/n`, `Task/t` or `AgentSession/s`.
    pub name: String,
    /// Its authority.
    pub authority: Authority,
}

/// What a session token is minted for.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The session's namespace.
    pub namespace: String,
    /// The session's name.
    pub session: String,
    /// The session's uid (a token outlives no incarnation of its name).
    pub uid: String,
    /// The work chain from the Graph down to the session.
    pub chain: Vec<Level>,
    /// `(kind, name)` in the namespace that the session may read outright.
    pub reads: Vec<(String, String)>,
    /// The session may ask to create (an orchestrating session plans Nodes); other sessions
    /// read and call tools only.
    pub creates: bool,
    /// The token expires then, whatever the authority says.
    pub expires_at: DateTime<Utc>,
}

/// A minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token (URL-safe base64).
    pub token: String,
    /// The revocation id of its first block, as the session's status records it.
    pub revocation_id: String,
}

impl Issuer {
    /// A new random key.
    pub fn generate() -> Issuer {
        Issuer { root: KeyPair::new() }
    }

    /// The key written as [`Issuer::key_text`] gives it.
    pub fn from_key_text(text: &str) -> Result<Issuer, Error> {
        let private: PrivateKey = text.trim().parse().map_err(|e| Error::Key(format!("not a key: {e}")))?;
        Ok(Issuer { root: KeyPair::from(&private) })
    }

    /// The private key as text (`ed25519-private/<hex>`), to keep where only the server reads it.
    pub fn key_text(&self) -> String {
        self.root.private().to_prefixed_string()
    }

    /// The key kept at `path` (created, readable by the owner only, if it does not exist).
    pub fn load_or_create(path: &Path) -> Result<Issuer, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let private: PrivateKey =
                    text.trim().parse().map_err(|e| Error::Key(format!("{} is not a key: {e}", path.display())))?;
                Ok(Issuer { root: KeyPair::from(&private) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let issuer = Issuer::generate();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
                f.write_all(issuer.root.private().to_prefixed_string().as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::Key(format!("cannot write {}: {e}", path.display())))?;
                Ok(issuer)
            }
            Err(e) => Err(Error::Key(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// The verifier for tokens this key signs.
    pub fn verifier(&self) -> Verifier {
        Verifier { root: self.root.public() }
    }

    /// Mint the token of a session.
    pub fn mint(&self, grant: &Grant) -> Result<Minted, Error> {
        let fail = |e: biscuit_auth::error::Token| Error::Key(format!("cannot mint: {e}"));
        let (ns, session, uid) = (grant.namespace.as_str(), grant.session.as_str(), grant.uid.as_str());
        let own = grant.chain.last().map(|l| l.authority.clone()).unwrap_or_default();
        let authority = serde_json::to_string(&own).expect("authorities serialise");
        let expires: SystemTime = grant.expires_at.into();
        let operations: std::collections::BTreeSet<biscuit_auth::builder::Term> =
            SESSION_OPERATIONS.iter().filter(|o| grant.creates || **o != "create").map(|o| (*o).into()).collect();
        let mut root = biscuit!(
            r#"
            session({ns}, {session}, {uid});
            authority({authority});
            check if time($t), $t <= {expires};
            check if operation($op), {operations}.contains($op);
            reject if resource($k, $ns, $n), session($own, $s, $u), $k != "", $ns != $own;
            "#
        );
        for (kind, name) in &grant.reads {
            let (kind, name) = (kind.as_str(), name.as_str());
            root = root.fact(biscuit_auth::macros::fact!(r#"read({kind}, {ns}, {name})"#)).map_err(fail)?;
        }
        let mut token = root.build(&self.root).map_err(fail)?;
        let reads: std::collections::BTreeSet<biscuit_auth::builder::Term> =
            grant.reads.iter().map(|(kind, name)| domain::authority::object_scope(kind, name).into()).collect();
        for level in &grant.chain {
            token = token.append(level_block(level, &reads).map_err(fail)?).map_err(fail)?;
        }
        let revocation_id = token.revocation_identifiers().first().map(hex::encode).unwrap_or_default();
        Ok(Minted { token: token.to_base64().map_err(fail)?, revocation_id })
    }
}

/// The checks one level of the chain adds: its capabilities bound every capability a request
/// uses, its scope bounds everything a request touches (but the reads granted outright), and its
/// expiry bounds the time.
fn level_block(
    level: &Level,
    reads: &std::collections::BTreeSet<biscuit_auth::builder::Term>,
) -> Result<BlockBuilder, biscuit_auth::error::Token> {
    let name = level.name.as_str();
    let mut b = block!(r#"level({name});"#);
    // Any capability the request uses that none of the level's patterns covers is rejected (a
    // request that uses none passes).
    let (condition, params) = patterns_condition("$c", &level.authority.capabilities);
    b = b.code_with_params(format!("reject if capability($c), !({condition});"), params, Default::default())?;
    // Whatever a request touches (a control-plane object, or what a Tool call names) must be
    // covered by one of the level's scope patterns, unless it is a read granted outright.
    let (condition, mut params) = patterns_condition("$t", &level.authority.scope);
    let mut condition = condition;
    if !reads.is_empty() {
        condition.push_str(" || ($op == \"get\" && {reads}.contains($t))");
        params.insert("reads".to_string(), biscuit_auth::builder::Term::Set(reads.clone()));
    }
    b = b.code_with_params(
        format!("reject if touches($t), operation($op), !({condition});"),
        params,
        Default::default(),
    )?;
    if let Some(at) = level.authority.expires_at {
        let at: SystemTime = at.into();
        b = b.code_with_params(
            "check if time($t), $t <= {at};",
            [("at".to_string(), at.into())].into_iter().collect(),
            Default::default(),
        )?;
    }
    Ok(b)
}

/// A Datalog expression true when `var` is covered by one of `patterns` (equal, or starting with
/// what precedes a final `*`), with its parameters; `false` when there are no patterns.
fn patterns_condition(
    var: &str,
    patterns: &std::collections::BTreeSet<String>,
) -> (String, std::collections::HashMap<String, biscuit_auth::builder::Term>) {
    let exact: std::collections::BTreeSet<biscuit_auth::builder::Term> =
        patterns.iter().filter(|p| !p.ends_with('*')).map(|p| p.as_str().into()).collect();
    let mut condition = String::from("false");
    let mut params = std::collections::HashMap::new();
    if !exact.is_empty() {
        condition.push_str(&format!(" || {{exact}}.contains({var})"));
        params.insert("exact".to_string(), biscuit_auth::builder::Term::Set(exact));
    }
    for (i, prefix) in patterns.iter().filter_map(|p| p.strip_suffix('*')).enumerate() {
        condition.push_str(&format!(" || {var}.starts_with({{p{i}}})"));
        params.insert(format!("p{i}"), prefix.into());
    }
    (condition, params)
}

/// Checks tokens offline against the server's public key.
#[derive(Debug, Clone, Copy)]
pub struct Verifier {
    root: PublicKey,
}

/// One request a token is asked to allow.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The action (`get`, `create`, `call_tool`, ...).
    pub action: &'a str,
    /// The kind of the target.
    pub kind: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name (empty for a list or watch).
    pub name: &'a str,
    /// The capability the request uses (a tool call's), if any.
    pub capability: Option<&'a str>,
    /// What a Tool call touches outside r5e (`repo:notes/2.4.md`), if anything.
    pub touches: Option<&'a str>,
}

/// What a token that allowed a request says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The session's namespace.
    pub namespace: String,
    /// The session's name.
    pub session: String,
    /// The session's uid.
    pub uid: String,
    /// The authority the token was minted with.
    pub authority: Authority,
    /// The revocation id of the first block.
    pub revocation_id: String,
    /// The request is a read the token grants outright (the session's own objects and inputs).
    pub reads_outright: bool,
}

impl Verifier {
    /// The verifier of `key` (`ed25519/<hex>`).
    pub fn from_public_key(key: &str) -> Result<Verifier, Error> {
        let root: PublicKey = key.trim().parse().map_err(|e| Error::Key(format!("not a public key: {e}")))?;
        Ok(Verifier { root })
    }

    /// The public key, as `ed25519/<hex>`.
    pub fn public_key(&self) -> String {
        self.root.to_string()
    }

    /// Decide `request` by `token` at `now`: the signatures, then every check of every block.
    /// This is the one authority path of sessions: the stdio protocol and the API both call it.
    pub fn authorize(&self, token: &str, request: &Request<'_>, now: DateTime<Utc>) -> Result<Claims, Error> {
        let token = Biscuit::from_base64(token.trim(), self.root).map_err(|e| Error::Invalid(e.to_string()))?;
        let now: SystemTime = now.into();
        let (action, kind, ns, name) = (request.action, request.kind, request.namespace, request.name);
        let mut b: AuthorizerBuilder = authorizer!(
            r#"
            operation({action});
            resource({kind}, {ns}, {name});
            time({now});
            allow if session($ns, $name, $uid);
            "#
        );
        if let Some(capability) = request.capability {
            b = b.fact(biscuit_auth::macros::fact!(r#"capability({capability})"#)).map_err(refused)?;
        }
        // A request on a control-plane object touches it (a tool call is bound by its capability
        // and by what it touches outside instead).
        if !kind.is_empty() && action != "call_tool" {
            let object = domain::authority::object_scope(kind, name);
            b = b.fact(biscuit_auth::macros::fact!(r#"touches({object})"#)).map_err(refused)?;
        }
        if let Some(outside) = request.touches {
            b = b.fact(biscuit_auth::macros::fact!(r#"touches({outside})"#)).map_err(refused)?;
        }
        let mut authz = b
            .set_limits(AuthorizerLimits { max_time: CHECK_TIME, ..Default::default() })
            .build(&token)
            .map_err(refused)?;
        authz.authorize().map_err(refused)?;
        let (namespace, session, uid): (String, String, String) =
            authz.query_exactly_one("s($ns, $n, $u) <- session($ns, $n, $u)").map_err(refused)?;
        let (authority,): (String,) = authz.query_exactly_one("a($a) <- authority($a)").map_err(refused)?;
        let authority = serde_json::from_str(&authority).map_err(|e| Error::Invalid(e.to_string()))?;
        let reads: Vec<(String,)> =
            authz.query("r($k) <- read($k, $ns, $n), resource($k, $ns, $n), operation(\"get\")").map_err(refused)?;
        let revocation_id = token.revocation_identifiers().first().map(hex::encode).unwrap_or_default();
        Ok(Claims { namespace, session, uid, authority, revocation_id, reads_outright: !reads.is_empty() })
    }

    /// Check the signatures of `token` and its own time checks, without a request: what `r5e
    /// token verify` reports.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
        let parsed = Biscuit::from_base64(token.trim(), self.root).map_err(|e| Error::Invalid(e.to_string()))?;
        let now: SystemTime = now.into();
        // Every check that does not depend on a request: those depend on `operation`, which is
        // given here as `get` of nothing in particular.
        let mut authz = authorizer!(
            r#"
            time({now});
            operation("get");
            allow if true;
            "#
        )
        .set_limits(AuthorizerLimits { max_time: CHECK_TIME, ..Default::default() })
        .build(&parsed)
        .map_err(refused)?;
        authz.authorize().map_err(refused)?;
        Ok(parsed.revocation_identifiers().iter().map(hex::encode).collect())
    }
}

impl Verifier {
    /// Who `token` stands for, if its signatures and its own checks hold now (a `get` of
    /// nothing in particular): how the API turns a bearer token into a session's identity.
    pub fn identify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, Error> {
        let nothing = Request { action: "get", kind: "", namespace: "", name: "", capability: None, touches: None };
        self.authorize(token, &nothing, now)
    }
}

impl admission::Credentials for Verifier {
    fn check(
        &self,
        credential: &str,
        action: &str,
        target: &domain::ObjectKey,
        capability: Option<&str>,
        touches: Option<&str>,
    ) -> Result<admission::Checked, String> {
        let request = Request {
            action,
            kind: &target.kind,
            namespace: &target.namespace,
            name: &target.name,
            capability,
            touches,
        };
        let claims = self.authorize(credential, &request, Utc::now()).map_err(|e| e.to_string())?;
        Ok(admission::Checked {
            session: domain::ObjectKey::new("AgentSession", &claims.namespace, &claims.session),
            reads_outright: claims.reads_outright,
        })
    }

    fn live(&self, credential: &str, session: Option<&domain::Resource>) -> Result<(), String> {
        let claims = self.identify(credential, Utc::now()).map_err(|e| e.to_string())?;
        claims.check_live(session).map_err(|e| e.to_string())
    }
}

fn refused(e: biscuit_auth::error::Token) -> Error {
    Error::Refused(e.to_string())
}

/// The blocks of `token` as Datalog source, without checking any signature (`r5e token inspect`).
pub fn inspect(token: &str) -> Result<String, Error> {
    let t = UnverifiedBiscuit::from_base64(token.trim()).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut out = String::new();
    let ids = t.revocation_identifiers();
    for i in 0..t.block_count() {
        let source = t.print_block_source(i).map_err(|e| Error::Invalid(e.to_string()))?;
        let id = ids.get(i).map(hex::encode).unwrap_or_default();
        out.push_str(&format!("block {i} (revocation id {id}):\n"));
        for line in source.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    Ok(out)
}

impl Claims {
    /// Whether the token is still live, given its session as stored (`None`: it no longer
    /// exists): the same uid, still at work, and this token's revocation id on its status.
    pub fn check_live(&self, session: Option<&domain::Resource>) -> Result<(), Error> {
        let Some(s) = session else {
            return Err(Error::Dead(format!("session {}/{} no longer exists", self.namespace, self.session)));
        };
        if s.metadata.uid.as_deref() != Some(self.uid.as_str()) {
            return Err(Error::Dead(format!("session {}/{} is another incarnation", self.namespace, self.session)));
        }
        let status = &s.status;
        let phase = status.get("phase").and_then(|p| p.as_str()).unwrap_or("Pending");
        if !matches!(phase, "Running" | "Reflecting") {
            return Err(Error::Dead(format!("session {}/{} is {phase}", self.namespace, self.session)));
        }
        let current = status.pointer("/credential/revocationId").and_then(|v| v.as_str());
        if current != Some(self.revocation_id.as_str()) {
            return Err(Error::Dead(format!(
                "session {}/{} now holds another token (this one was revoked or replaced)",
                self.namespace, self.session
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
