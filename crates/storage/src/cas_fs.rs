//! The filesystem CAS backend: blobs at `ROOT/blobs/sha256/<hex>` (the OCI image-layout shape),
//! each written to a temporary file, fsynced, and renamed into place. Directories are made 0700
//! and blobs 0600: only the owner reads them.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use domain::Digest;

use crate::cas::CasBackend;
use crate::{Error, Result};

/// Blobs in a directory tree.
#[derive(Clone, Debug)]
pub struct FsCas {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl FsCas {
    /// Open (creating if needed) a CAS rooted at `root`: blobs go to `root/blobs/sha256/`.
    pub fn open(root: &Path) -> Result<FsCas> {
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("blobs").join("tmp");
        for dir in [&blobs, &tmp] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok(FsCas { blobs, tmp })
    }

    /// Where the blob named `digest` lives (whether or not it is stored).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::unavailable)?
}

#[async_trait]
impl CasBackend for FsCas {
    async fn put(&self, digest: &Digest, bytes: Vec<u8>) -> Result<()> {
        let target = self.blob_path(digest);
        let tmp = self.tmp.join(format!("{}.{}", digest.hex(), uuid::Uuid::now_v7()));
        let dir = self.blobs.clone();
        blocking(move || {
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                // The rename replaces a corrupt copy atomically; two writers of the same blob
                // both rename the same bytes, so either may win.
                std::fs::rename(&tmp, &target)?;
                std::fs::File::open(&dir)?.sync_all()
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(&tmp, e)
            })
        })
        .await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        })
        .await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        tokio::fs::try_exists(&path).await.map_err(|e| io(&path, e))
    }

    async fn remove(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn digests(&self) -> Result<Vec<Digest>> {
        let dir = self.blobs.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
                let entry = entry.map_err(|e| io(&dir, e))?;
                // Anything that is not named like a blob is not one (an operator's stray file).
                if let Some(d) = entry.file_name().to_str().and_then(|n| format!("sha256:{n}").parse::<Digest>().ok()) {
                    out.push(d);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}
