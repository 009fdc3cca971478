//! A private copy of a client's SQLite database, so that nothing mxkeys does can change the
//! original: SQLite writes to a database it opens (it replays a write-ahead log, and the
//! matrix-sdk stores migrate their schema on open), and it takes locks the client would see.
//!
//! The database and its `-wal` and `-shm` files are copied (each opened read-only) into a new
//! directory of mode 0700 that is removed when the snapshot is dropped; only the copy is
//! opened. A client writing at the same moment can leave the copy a little behind, never
//! damaged beyond what SQLite recovers.

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
            .prefix("mxkeys-client-store-")
            .tempdir()
            .map_err(err)?;
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
