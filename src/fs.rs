//! File-system helpers: atomic mode-0600 output, private directories, OS randomness.
//!
//! Output files are written the way restic writes its files: a temporary file created with
//! mode 0600 in the target directory, written, `fsync`ed, renamed over (or linked without
//! clobbering) the target, then the directory is `fsync`ed. A failure at any step removes the
//! temporary file, so the target either holds the whole new content or is untouched.
//!
//! On Linux the temporary file has no name at all while it is written (`O_TMPFILE`): a process
//! killed with SIGKILL, which runs no clean-up, leaves nothing behind, not even a partial file of
//! decrypted keys. At commit it is linked in through `/proc/self/fd` (straight to the target when
//! the target may not be replaced; through a short-lived random name and a rename when it may).
//! Where `O_TMPFILE` or `/proc` is missing, a named temporary file is used as before.

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
    tmp: BufWriter<TmpFile>,
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
    // What a symlink points to is what the rename would lose: follow it.
    if let Ok(meta) = fs::metadata(target)
        && !meta.is_file()
    {
        return Err(Error::OutputNotAFile {
            path: target.display().to_string(),
        });
    }
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
        let tmp = match unnamed_in(&dir) {
            Some(f) => TmpFile::Unnamed(f),
            None => TmpFile::Named(
                tempfile::Builder::new()
                    .prefix(".mxkeys-")
                    .suffix(".tmp")
                    .permissions(fs::Permissions::from_mode(0o600))
                    .tempfile_in(&dir)
                    .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?,
            ),
        };
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
        let exists = || Error::OutputExists {
            path: target.display().to_string(),
        };
        match (tmp, self.overwrite) {
            (TmpFile::Unnamed(f), Overwrite::Refuse) => {
                link_unnamed(&f, &target).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        exists()
                    } else {
                        Error::io(ctx(), e)
                    }
                })?;
            }
            (TmpFile::Unnamed(f), Overwrite::Replace) => {
                // rename(2) is the only atomic replace, and it needs a name to move.
                let dir = parent_dir(&target);
                let named = link_unnamed_random(&f, &dir).map_err(|e| Error::io(ctx(), e))?;
                if let Err(e) = fs::rename(&named, &target) {
                    let _ = fs::remove_file(&named);
                    return Err(Error::io(ctx(), e));
                }
            }
            (TmpFile::Named(t), Overwrite::Replace) => {
                t.persist(&target).map_err(|e| Error::io(ctx(), e.error))?;
            }
            (TmpFile::Named(t), Overwrite::Refuse) => {
                t.persist_noclobber(&target).map_err(|e| {
                    if e.error.kind() == io::ErrorKind::AlreadyExists {
                        exists()
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

/// Where an [`AtomicFile`]'s content waits for its commit.
enum TmpFile {
    /// A file with no name (Linux `O_TMPFILE`): nothing to clean up if the process dies.
    Unnamed(File),
    /// A named temporary file, removed on drop.
    Named(tempfile::NamedTempFile),
}

impl TmpFile {
    fn as_file(&self) -> &File {
        match self {
            TmpFile::Unnamed(f) => f,
            TmpFile::Named(t) => t.as_file(),
        }
    }
}

impl Write for TmpFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            TmpFile::Unnamed(f) => f.write(buf),
            TmpFile::Named(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            TmpFile::Unnamed(f) => f.flush(),
            TmpFile::Named(t) => t.flush(),
        }
    }
}

/// An unnamed mode-0600 file in `dir`, if this system can make one and later link it in.
#[cfg(target_os = "linux")]
fn unnamed_in(dir: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        dir,
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ok()?;
    Some(File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn unnamed_in(_dir: &Path) -> Option<File> {
    None
}

/// Give the unnamed file `f` the name `to` (fails with `AlreadyExists` if `to` exists).
#[cfg(target_os = "linux")]
fn link_unnamed(f: &File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let from = format!("/proc/self/fd/{}", f.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        from.as_str(),
        rustix::fs::CWD,
        to,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_f: &File, _to: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Link the unnamed file `f` into `dir` under a fresh random name, returned.
fn link_unnamed_random(f: &File, dir: &Path) -> io::Result<PathBuf> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..16 {
        let mut r = [0u8; 6];
        fill_random(&mut r)?;
        let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(".mxkeys-{name}.tmp"));
        match link_unnamed(f, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
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
    fn devices_and_directories_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        for target in [Path::new("/dev/null"), dir.path()] {
            let err = check_output(target, Overwrite::Replace).unwrap_err();
            assert!(matches!(err, Error::OutputNotAFile { .. }), "{err}");
            assert!(AtomicFile::create(target, Overwrite::Replace).is_err());
        }
        let meta = fs::metadata("/dev/null").unwrap();
        assert!(!meta.is_file());
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
