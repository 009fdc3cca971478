//! File-system helpers: atomic mode-0600 output, private directories, OS randomness.
//!
//! Output files are written the way restic writes its files: a temporary file created with
//! mode 0600 in the target directory, written, `fsync`ed, renamed over (or linked without
//! clobbering) the target, then the directory is `fsync`ed. A failure at any step removes the
//! temporary file, so the target either holds the whole new content or is untouched.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What to do when the output path already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`Error::OutputExists`].
    Refuse,
    /// Atomically replace it.
    Replace,
}

/// Fill `buf` from the operating system's random number generator.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(format!("OS random generator: {e}")))
}

/// An output file that only appears at its path once [`AtomicFile::commit`] succeeds.
pub struct AtomicFile {
    tmp: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
    overwrite: Overwrite,
}

impl std::fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFile")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Fail early (before any expensive work) when `target` exists and may not be replaced.
pub fn check_output(target: &Path, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && fs::symlink_metadata(target).is_ok() {
        return Err(Error::OutputExists {
            path: target.display().to_string(),
        });
    }
    Ok(())
}

impl AtomicFile {
    /// Start writing `target`. The temporary file lives next to it with mode 0600.
    pub fn create(target: &Path, overwrite: Overwrite) -> Result<Self> {
        check_output(target, overwrite)?;
        let dir = parent_dir(target);
        let tmp = tempfile::Builder::new()
            .prefix(".mxkeys-")
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
        Ok(AtomicFile {
            tmp: BufWriter::with_capacity(256 * 1024, tmp),
            target: target.to_path_buf(),
            overwrite,
        })
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Make the content visible at the target path, durably.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let ctx = || format!("writing {}", target.display());
        let tmp = self
            .tmp
            .into_inner()
            .map_err(|e| Error::io(ctx(), e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| Error::io(ctx(), e))?;
        match self.overwrite {
            Overwrite::Replace => {
                tmp.persist(&target)
                    .map_err(|e| Error::io(ctx(), e.error))?;
            }
            Overwrite::Refuse => {
                tmp.persist_noclobber(&target).map_err(|e| {
                    if e.error.kind() == io::ErrorKind::AlreadyExists {
                        Error::OutputExists {
                            path: target.display().to_string(),
                        }
                    } else {
                        Error::io(ctx(), e.error)
                    }
                })?;
            }
        }
        sync_dir(&parent_dir(&target));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Write `bytes` to `target` atomically with mode 0600.
pub fn atomic_write(target: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<()> {
    let mut f = AtomicFile::create(target, overwrite)?;
    f.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
    f.commit()
}

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `fsync` a directory so a rename in it is durable. Best effort: some file systems refuse.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Create `dir` (and parents) with mode 0700 for the last component; tighten it if it exists.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Create `path` as an empty file with mode 0600 if it does not exist; tighten it if it does.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_creates_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        atomic_write(&p, b"one", Overwrite::Refuse).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = atomic_write(&p, b"two", Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, Error::OutputExists { .. }));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        atomic_write(&p, b"two", Overwrite::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // no temporary files left behind
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        {
            let mut f = AtomicFile::create(&p, Overwrite::Refuse).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!p.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
