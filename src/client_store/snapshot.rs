//! A private copy of a client's SQLite database, so that nothing mxkeys does can change the
//! original: SQLite writes to a database it opens (it replays a write-ahead log, and the
//! matrix-sdk stores migrate their schema on open), and it takes locks the client would see.
//!
//! The database and its `-wal` and `-shm` files are copied (each opened read-only) into a new
//! directory of mode 0700 that is removed when the snapshot is dropped; only the copy is
//! opened. A client writing at the same moment can leave the copy a little behind, never
//! damaged beyond what SQLite recovers.
//!
//! The directory's name carries the process id (`mxkeys-client-store-<pid>-...`). A run that
//! was killed cannot remove its copy of another client's keys, so every new snapshot first
//! removes the copies of runs that are gone: same owner, and no process with that id.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::ClientStoreError;

/// The copy.
pub struct Snapshot {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("db", &self.db).finish()
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Snapshot {
    /// Copy `db` (and its `-wal`, `-shm`) into a private directory, as `name`.
    pub fn take(db: &Path, name: &str) -> Result<Snapshot, ClientStoreError> {
        let err = |e| ClientStoreError::Copy {
            path: db.display().to_string(),
            source: e,
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(err)?;
        remove_stale(dir.path());
        let copy = dir.path().join(name);
        copy_file(db, &copy).map_err(err)?;
        for suffix in ["-wal", "-shm"] {
            let from = with_suffix(db, suffix);
            if from.is_file() {
                copy_file(&from, &with_suffix(&copy, suffix)).map_err(err)?;
            }
        }
        Ok(Snapshot { dir, db: copy })
    }

    /// Open the copy. `SQLITE_OPEN_READ_WRITE` only so that SQLite can replay a copied
    /// write-ahead log; the original is never opened.
    pub fn connect(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(1))?;
        Ok(c)
    }

    /// The directory of the copy (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The start of a snapshot directory's name.
const PREFIX: &str = "mxkeys-client-store-";

/// The process id in a snapshot directory's name, if it has one.
fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Remove the snapshot directories beside `ours` left by runs that were killed: owned by the
/// same user, named with the id of a process that no longer exists. Failures are only logged
/// (they never stop the run that noticed them).
fn remove_stale(ours: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Some(parent), Ok(me)) = (ours.parent(), std::fs::metadata(ours)) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(pid) = e.file_name().to_str().and_then(pid_of) else {
            continue;
        };
        if path == ours || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.uid() == me.uid() => {
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    log::warn!("could not remove the stale copy {}: {err}", path.display());
                } else {
                    log::debug!("removed the copy a killed run left at {}", path.display());
                }
            }
            _ => {}
        }
    }
}

/// Copy one file, the source opened read-only, the copy 0600.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    Ok(())
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn names_carry_the_process_id() {
        assert_eq!(pid_of("mxkeys-client-store-1234-AbCd"), Some(1234));
        assert_eq!(pid_of("mxkeys-client-store-AbCd"), None);
        assert_eq!(pid_of("other-1234-x"), None);
    }
}
