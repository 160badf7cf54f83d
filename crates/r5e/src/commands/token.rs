//! `r5e token create|list|revoke`: the bearer tokens of a data directory. A token is shown once;
//! only its SHA-256 is kept. A running server sees changes at once.
//!
//! `r5e token inspect|verify|public-key`: sessions' tokens (Biscuit), read and checked offline.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use api::{TokenRecord, read_token_file, write_token_file};
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

/// The verifier of the sessions' tokens of a data directory (which must hold the key).
fn verifier_of(data: &crate::DataDir) -> Result<tokens::Verifier> {
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

/// The administrator token of `dir`, made on first use: written to `dir/admin.token` (0600) and
/// recorded, hashed, in the token file.
pub fn bootstrap_admin(dir: &Path) -> Result<String> {
    let path = dir.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let token = new_token();
    let mut records = read_token_file(&file(dir)).context("cannot read the token file")?;
    records.push(TokenRecord {
        hash: Digest::of(token.as_bytes()),
        kind: "user".into(),
        name: "admin".into(),
        groups: vec!["admins".into()],
        revoked: false,
        expires_at: None,
    });
    write_token_file(&file(dir), &records).context("cannot write the token file")?;
    write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

pub fn run(command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Inspect { token } => print!("{}", tokens::inspect(&token_arg(&token)?)?),
        TokenCommand::Verify { data, token, public_key } => {
            let verifier = match public_key {
                Some(key) => tokens::Verifier::from_public_key(&key)?,
                None => verifier_of(&data)?,
            };
            match verifier.verify(&token_arg(&token)?, chrono::Utc::now()) {
                Ok(ids) => println!("valid: signed by {}; revocation ids {}", verifier.public_key(), ids.join(", ")),
                Err(e) => {
                    println!("invalid: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        TokenCommand::PublicKey { data } => println!("{}", verifier_of(&data)?.public_key()),
        TokenCommand::Create { data, name, groups, service_account, expires_in } => {
            let kind = if service_account { "serviceaccount" } else { "user" };
            if service_account && !name.contains('/') {
                bail!("a service account is named `namespace/name`, not `{name}`");
            }
            crate::private::prepare_data_dir(&data.data_dir)?;
            let token = new_token();
            let mut records = read_token_file(&file(&data.data_dir))?;
            records.push(TokenRecord {
                hash: Digest::of(token.as_bytes()),
                kind: kind.into(),
                name,
                groups,
                revoked: false,
                expires_at: expires_in.map(|s| chrono::Utc::now() + chrono::Duration::seconds(i64::from(s))),
            });
            write_token_file(&file(&data.data_dir), &records)?;
            println!("{token}");
            eprintln!("keep this token: it is not stored and cannot be shown again");
        }
        TokenCommand::List { data } => {
            let mut t = table(&["kind", "name", "groups", "revoked", "hash"]);
            for r in read_token_file(&file(&data.data_dir))? {
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
            crate::private::prepare_data_dir(&data.data_dir)?;
            let mut records = read_token_file(&file(&data.data_dir))?;
            let mut n = 0;
            for r in records.iter_mut().filter(|r| r.name == name && !r.revoked) {
                r.revoked = true;
                n += 1;
            }
            if n == 0 {
                bail!("no live token for `{name}`");
            }
            write_token_file(&file(&data.data_dir), &records)?;
            eprintln!("revoked {n} token(s) of {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
