//! Where sessions run and how their harnesses are confined: the settings `r5e run` and `r5e
//! serve` give the execution plane.
//!
//! Each session's workspace is `<work dir>/<namespace>/<session>`. The work dir lies outside the
//! data directory (`$TMPDIR/r5e-work-<digest of the data directory's path>` unless `--work-dir`
//! says otherwise), so that what a harness may write is never next to the database, the blobs or
//! the keys. A harness is given its own workspace only; the data directory and the work dir are
//! hidden from it even where a path it may read holds them.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use runtime::context::SandboxConfig;
use sha2::{Digest as _, Sha256};

/// The default work dir of the data directory `data_dir` (which must exist).
pub fn default_work_dir(data_dir: &Path) -> Result<PathBuf> {
    let real = std::fs::canonicalize(data_dir).with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let digest = hex::encode(Sha256::digest(real.as_os_str().as_encoded_bytes()));
    Ok(std::env::temp_dir().join(format!("r5e-work-{}", &digest[..16])))
}

/// Create the work dir (0700), end what an earlier r5e process left running, and say how this
/// process confines harnesses. `api_port` is the API's, which every harness may connect to.
pub fn prepare(
    data_dir: &Path,
    work_dir: Option<&Path>,
    api_port: Option<u16>,
) -> Result<(PathBuf, SandboxConfig, Vec<runtime::sandbox::Stray>)> {
    let work = match work_dir {
        Some(w) => w.to_path_buf(),
        None => default_work_dir(data_dir)?,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&work)
        .with_context(|| format!("cannot create the work dir {}", work.display()))?;
    let work = std::fs::canonicalize(&work)?;
    let strays = runtime::sandbox::clean_strays();
    if !strays.is_empty() {
        let killed: usize = strays.iter().map(|s| s.processes.len()).sum();
        tracing::warn!(strays = ?strays, "ended harness processes an earlier r5e left running");
        eprintln!("ended {killed} harness process(es) an earlier r5e process left running");
    }
    let sandbox = SandboxConfig {
        launcher: std::env::current_exe().ok(),
        hidden: vec![std::fs::canonicalize(data_dir)?, work.clone()],
        connect_ports: api_port.into_iter().collect(),
        cgroups: true,
    };
    Ok((work, sandbox, strays))
}

/// The server's key for sessions' tokens: `<data dir>/session.key` (0600), made on first use.
/// It lies in the data directory, which no harness can read.
pub fn issuer(data_dir: &Path) -> Result<tokens::Issuer> {
    Ok(tokens::Issuer::load_or_create(&data_dir.join(KEY_FILE))?)
}

/// The file of the sessions' token key in the data directory.
pub const KEY_FILE: &str = "session.key";

/// `r5e sandbox-exec`: the two stages of the harness launcher (see `runtime::sandbox`).
pub fn sandbox_exec(args: &[String]) -> u8 {
    let status = match args {
        [flag, plan] if flag == runtime::sandbox::CONFINED => runtime::sandbox::confine_main(plan),
        [plan] => runtime::sandbox::keep_main(plan),
        _ => {
            eprintln!("{} usage: r5e sandbox-exec [--confined] PLAN", runtime::sandbox::CANNOT_CONFINE_PREFIX);
            runtime::sandbox::CANNOT_CONFINE
        }
    };
    u8::try_from(status).unwrap_or(u8::MAX)
}
