//! `r5e token create|list|revoke`: people's and service accounts' bearer tokens, on the store of
//! a data directory (or `--database-url`). A token is shown once; only its SHA-256 is kept, in
//! the `token.issued` event that issues it. Issuing and revoking go through admission, as the
//! store's operator, and are on the audit chain; a running server sees them on its next request.
//!
//! `r5e token inspect|verify|public-key`: sessions' tokens (Biscuit), read and checked offline.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use admission::{Admission, Identity};
use anyhow::{Context, Result, bail};
use api::{TokenRecord, read_token_file};
use clap::Subcommand;
use domain::Digest;

use crate::output::table;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a user (or, with --service-account, a service account) and print it once.
    Create {
        #[command(flatten)]
        data: crate::DataDir,
        /// The user's name, or `namespace/name` with --service-account.
        name: String,
        /// A group the token's holder belongs to (repeatable); `admins` may do anything no policy
        /// forbids.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The token is for a service account `namespace/name`.
        #[arg(long)]
        service_account: bool,
        /// The token stops working this many seconds from now (open watches end then too).
        #[arg(long)]
        expires_in: Option<u32>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        data: crate::DataDir,
    },
    /// Revoke every token of a user or service account.
    Revoke {
        #[command(flatten)]
        data: crate::DataDir,
        /// The user's name, or `namespace/name` of a service account.
        name: String,
    },
    /// Print the blocks of a session's token (its facts and checks), without checking anything.
    Inspect {
        /// The token (`-` reads it from stdin).
        token: String,
    },
    /// Check a session's token offline: its signatures against the server's public key, and its
    /// own checks (expiry) now. Whether its session still runs is the server's to say.
    Verify {
        #[command(flatten)]
        data: crate::DataDir,
        /// The token (`-` reads it from stdin).
        token: String,
        /// The server's public key (`ed25519/<hex>`, as `r5e token public-key` prints it);
        /// default: the key of the data directory.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the public key that verifies the sessions' tokens of this data directory.
    PublicKey {
        #[command(flatten)]
        data: crate::DataDir,
    },
}

/// `token`, or stdin's first line for `-`.
fn token_arg(token: &str) -> Result<String> {
    if token != "-" {
        return Ok(token.to_string());
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The verifier of the sessions' tokens of a data directory (which must hold the key), or of the
/// Postgres database that keeps it.
async fn verifier_of(data: &crate::DataDir) -> Result<tokens::Verifier> {
    if data.database_url.is_some() {
        return Ok(crate::backends::session_issuer(data).await?.verifier());
    }
    let path = data.data_dir.join(crate::sessions::KEY_FILE);
    if !path.exists() {
        bail!("{} holds no session token key (it is made when `r5e serve` or `r5e run` first starts)", path.display());
    }
    Ok(tokens::Issuer::load_or_create(&path)?.verifier())
}

/// The token file of a data directory.
pub fn file(dir: &Path) -> PathBuf {
    dir.join("tokens.json")
}

/// 64 random hex characters.
fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Write `bytes` to `path` readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Who the token commands act as on a store opened locally: its operator, an administrator.
fn operator() -> Identity {
    Identity::user("local", &[policy::ADMINS_GROUP])
}

/// Issue `record` (its token is shown to the caller, never stored) through admission.
pub async fn issue(admission: &Admission, who: &Identity, record: &TokenRecord) -> Result<()> {
    let event = record.issued(&who.actor());
    admission.change_credentials(who, policy::Action::Create, &record.target(), &record.groups, event).await?;
    Ok(())
}

/// The administrator token of `dir`, made on first use: written to `dir/admin.token` (0600) and
/// issued (hashed) on the audit chain of `admission`'s store. A token file of an older release
/// is imported into the store once (and renamed `tokens.json.imported`); an `admin.token` the
/// store does not know (a data directory moved to a new database) is issued again.
pub async fn bootstrap_admin(dir: &Path, admission: &Admission) -> Result<String> {
    let who = Identity::user("system:bootstrap", &[policy::ADMINS_GROUP]);
    let known = api::Tokens::from_store(admission.store().clone()).await?.records();
    let old = file(dir);
    let imported = read_token_file(&old).context("cannot read the token file")?;
    for r in imported.iter().filter(|r| !known.iter().any(|k| k.hash == r.hash)) {
        issue(admission, &who, &TokenRecord { revoked: false, ..r.clone() }).await?;
        if r.revoked {
            let event = r.revoked(&who.actor(), &[r.hash]);
            admission.change_credentials(&who, policy::Action::Delete, &r.target(), &[], event).await?;
        }
    }
    if old.exists() {
        std::fs::rename(&old, old.with_extension("json.imported"))?;
    }
    let path = dir.join("admin.token");
    let token = match std::fs::read_to_string(&path) {
        Ok(token) => token.trim().to_string(),
        Err(_) => {
            let token = new_token();
            write_private(&path, format!("{token}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            token
        }
    };
    let hash = Digest::of(token.as_bytes());
    if !known.iter().chain(&imported).any(|k| k.hash == hash) {
        let record = TokenRecord {
            hash,
            kind: "user".into(),
            name: "admin".into(),
            groups: vec![policy::ADMINS_GROUP.into()],
            revoked: false,
            expires_at: None,
        };
        issue(admission, &who, &record).await?;
    }
    Ok(token)
}

/// Admission over the store of `data`, for the token commands.
async fn local_admission(data: &crate::DataDir) -> Result<Admission> {
    crate::private::prepare_data_dir(&data.data_dir)?;
    Ok(Admission::new(crate::backends::open_checked_store(data).await?))
}

pub async fn run(command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Inspect { token } => print!("{}", tokens::inspect(&token_arg(&token)?)?),
        TokenCommand::Verify { data, token, public_key } => {
            let verifier = match public_key {
                Some(key) => tokens::Verifier::from_public_key(&key)?,
                None => verifier_of(&data).await?,
            };
            match verifier.verify(&token_arg(&token)?, chrono::Utc::now()) {
                Ok(ids) => println!("valid: signed by {}; revocation ids {}", verifier.public_key(), ids.join(", ")),
                Err(e) => {
                    println!("invalid: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        TokenCommand::PublicKey { data } => println!("{}", verifier_of(&data).await?.public_key()),
        TokenCommand::Create { data, name, groups, service_account, expires_in } => {
            let kind = if service_account { "serviceaccount" } else { "user" };
            if service_account && !name.contains('/') {
                bail!("a service account is named `namespace/name`, not `{name}`");
            }
            let admission = local_admission(&data).await?;
            let token = new_token();
            let record = TokenRecord {
                hash: Digest::of(token.as_bytes()),
                kind: kind.into(),
                name,
                groups,
                revoked: false,
                expires_at: expires_in.map(|s| chrono::Utc::now() + chrono::Duration::seconds(i64::from(s))),
            };
            issue(&admission, &operator(), &record).await?;
            println!("{token}");
            eprintln!("keep this token: it is not stored and cannot be shown again");
        }
        TokenCommand::List { data } => {
            let mut t = table(&["kind", "name", "groups", "revoked", "hash"]);
            let admission = local_admission(&data).await?;
            for r in api::Tokens::from_store(admission.store().clone()).await?.records() {
                t.add_row(vec![
                    r.kind,
                    r.name,
                    r.groups.join(","),
                    r.revoked.to_string(),
                    r.hash.hex()[..12].to_string(),
                ]);
            }
            println!("{t}");
        }
        TokenCommand::Revoke { data, name } => {
            let admission = local_admission(&data).await?;
            let live: Vec<TokenRecord> = api::Tokens::from_store(admission.store().clone())
                .await?
                .records()
                .into_iter()
                .filter(|r| r.name == name && !r.revoked)
                .collect();
            let Some(first) = live.first() else { bail!("no live token for `{name}`") };
            let hashes: Vec<Digest> = live.iter().map(|r| r.hash).collect();
            let who = operator();
            let event = first.revoked(&who.actor(), &hashes);
            admission.change_credentials(&who, policy::Action::Delete, &first.target(), &[], event).await?;
            let n = hashes.len();
            eprintln!("revoked {n} token(s) of {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
