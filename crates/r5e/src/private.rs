//! Files private to r5e's user. The process umask is 0077, so everything r5e (and any harness it
//! starts) creates is readable by its owner only; the data directory is made 0700, and what an
//! older r5e left there with group or other permissions is tightened when a command that writes
//! opens it.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result};
use nix::sys::stat::{Mode, umask};

/// Permission bits for anyone but the owner.
const NOT_OWNER: u32 = 0o077;

/// From now on, files and directories this process creates have no group or other permissions.
pub fn restrict_umask() {
    umask(Mode::S_IRWXG | Mode::S_IRWXO);
}

/// Create the data directory `dir` (0700) if needed, make it 0700 if it is wider, and take group
/// and other permissions off everything inside it. Symbolic links are neither followed nor
/// changed. Returns how many entries were tightened.
pub fn prepare_data_dir(dir: &Path) -> Result<usize> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tightened = 0;
    tighten(dir, &mut tightened).with_context(|| format!("cannot make {} private", dir.display()))?;
    if tightened > 0 {
        tracing::info!(dir = %dir.display(), entries = tightened, "removed group and other permissions");
    }
    Ok(tightened)
}

fn tighten(path: &Path, count: &mut usize) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & NOT_OWNER != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !NOT_OWNER & 0o7777))?;
        *count += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), count)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_older_data_dir_is_tightened_and_links_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("r5e.db"), "db").unwrap();
        std::fs::write(dir.join("blobs/sha256/ab"), "blob").unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "not r5e's").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        set(&dir, 0o755);
        set(&dir.join("blobs"), 0o775);
        set(&dir.join("blobs/sha256"), 0o700);
        set(&dir.join("r5e.db"), 0o644);
        set(&dir.join("blobs/sha256/ab"), 0o700);
        set(&outside, 0o644);

        assert_eq!(prepare_data_dir(&dir).unwrap(), 3, "the directory, blobs/ and r5e.db were wider");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(mode(&dir.join("blobs/sha256/ab")), 0o700, "owner bits are kept");
        assert_eq!(mode(&dir.join("r5e.db")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link's target outside is not changed");
        assert_eq!(prepare_data_dir(&dir).unwrap(), 0, "nothing left to tighten");
    }

    #[test]
    fn a_missing_data_dir_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        prepare_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
