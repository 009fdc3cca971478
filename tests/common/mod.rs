//! The one tree of helpers every integration test shares (`mod common;` in each test file).
//!
//! - this file: the binary, the fixtures, one isolated environment per test ([`Env`]: a
//!   temporary HOME, a work directory, a store path, secret files) and small checks;
//! - [`cli`]: commands built on an [`Env`], the outcome of a run ([`Run`]) and the checks of
//!   an error's output;
//! - [`run`]: the bounded runner (no terminal, address-space and CPU limits, peak RSS and CPU
//!   time measured) and the runner that kills a command at a point of its own progress;
//! - [`element`]: an independent implementation of Element's key-export format;
//! - [`megolm`]: Megolm sessions made in the test with vodozemac;
//! - [`backup_cipher`]: an independent implementation of the backup cipher;
//! - [`store`]: a key store's rows, read with SQLite directly;
//! - [`synapse`]: the test homeserver, its users and raw client-server API calls;
//! - [`rooms`]: encrypted rooms on it, their members, Megolm events sent into them;
//! - [`phone`]: the user's other device (matrix-sdk-crypto's `OlmMachine`), driven by the test;
//! - [`device`]: an account set up by the phone, mxkeys's device in it, mxkeys in the background;
//! - [`fault_proxy`]: a fault-injecting HTTP proxy in front of it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

pub mod backup_cipher;
pub mod cli;
pub mod device;
pub mod element;
pub mod fault_proxy;
pub mod megolm;
pub mod phone;
pub mod rooms;
pub mod run;
pub mod store;
pub mod synapse;

#[allow(unused_imports)]
pub use cli::{Run, assert_error, assert_json_error, one_json};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub mod pty;

/// The mxkeys binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mxkeys");
/// The fixtures directory of this package (never the shared one).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
/// Passphrase of every Element/wasm fixture but the unicode one.
pub const PASS: &str = "correct horse battery staple";
/// Store passphrase used by the tests.
pub const STORE_PASS: &str = "store-Secret-9c1e-for-tests";
/// The warning printed for low round counts.
pub const LOW_ROUNDS_WARNING: &str = "below the 100000";
/// No command in these tests may run longer than this, wall clock (a regression must fail,
/// not hang). Generous, so that a slow or busy machine never reaches it.
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// A fixture file's path.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// A fixture parsed as JSON.
pub fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

/// The manifest of the export fixtures.
pub fn manifest() -> Value {
    fixture_json("export/manifest.json")
}

/// The passphrase the manifest gives for an export fixture.
pub fn manifest_passphrase(name: &str) -> String {
    manifest()["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest"))["passphrase"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One isolated environment: a temporary HOME (with XDG_DATA_HOME inside it), a work
/// directory for inputs and outputs, and a store directory path; for the tests against the
/// homeserver, also its URL.
pub struct Env {
    pub tmp: TempDir,
    /// The homeserver mxkeys is pointed at (empty offline).
    pub hs: String,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// An environment for offline commands.
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("mxkeys-test-")
            .tempdir()
            .unwrap();
        for d in ["home", "home/.local/share", "work"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Env {
            tmp,
            hs: String::new(),
        }
    }

    /// An environment for commands against the homeserver `hs`: every command is started
    /// without a controlling terminal (see [`Env::cmd`]), so that no prompt can hang a test.
    pub fn for_homeserver(hs: &str) -> Env {
        Env {
            hs: hs.to_string(),
            ..Env::new()
        }
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn xdg_data_home(&self) -> PathBuf {
        self.home().join(".local/share")
    }

    /// Work directory (the commands' current directory).
    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    /// The store directory used with `--store`.
    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// The environment every command gets: PATH, HOME, XDG_DATA_HOME, and
    /// `MXKEYS_RETRY_BASE_MS=5` (millisecond backoff for the network commands).
    pub fn base_env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            (
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
            ("HOME", self.home().into_os_string()),
            ("XDG_DATA_HOME", self.xdg_data_home().into_os_string()),
            ("MXKEYS_RETRY_BASE_MS", "5".into()),
        ]
    }

    /// `--store STORE --store-passphrase-file F` for another store directory.
    pub fn store_args_for(&self, store: &Path) -> Vec<OsString> {
        vec![
            "--store".into(),
            store.into(),
            "--store-passphrase-file".into(),
            self.store_pass_file().into(),
        ]
    }

    /// `--store STORE --store-passphrase-file F` for [`Env::store`].
    pub fn store_args(&self) -> Vec<OsString> {
        self.store_args_for(&self.store())
    }

    /// Write a file in the work directory with mode 0644.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        self.write_mode(name, bytes, 0o644)
    }

    /// Write a secret file with mode 0600.
    pub fn write_secret(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        self.write_mode(name, bytes, 0o600)
    }

    fn write_mode(&self, name: &str, bytes: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// The fixtures' passphrase in a 0600 file (with a trailing newline, as `echo` writes).
    pub fn pass_file(&self) -> PathBuf {
        self.write_secret("pass.txt", format!("{PASS}\n"))
    }

    /// The store passphrase in a 0600 file.
    pub fn store_pass_file(&self) -> PathBuf {
        self.write_secret("store-pass.txt", format!("{STORE_PASS}\n"))
    }

    /// An access token (or any one-line secret) in a 0600 file.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        self.write_secret(name, format!("{token}\n"))
    }

    /// Names in the work directory, sorted.
    pub fn work_names(&self) -> Vec<String> {
        dir_names(&self.work())
    }
}

/// Names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// File mode bits.
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Lossy text of a byte buffer.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The session keys found in the fixtures' plaintexts (secrets that must never be printed).
pub fn fixture_session_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for f in [
        "export/plaintext/element-three.json",
        "export/plaintext/element-one.json",
        "export/plaintext/wasm-three.json",
        "export/plaintext/wasm-one.json",
        "export/plaintext/element-rounds-1.json",
        "sessions/sessions-3.json",
    ] {
        let v: Vec<Value> = serde_json::from_slice(&std::fs::read(fixture(f)).unwrap()).unwrap();
        for s in v {
            keys.push(s["session_key"].as_str().unwrap().to_string());
        }
    }
    keys
}

/// Assert that none of `secrets` (nor a 24-character piece of a long one) appears in `hay`.
pub fn assert_no_secrets(hay: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(!hay.contains(s.as_str()), "{what} reveals a secret");
        if s.len() > 60 {
            for start in [8usize, 40, 80, 120] {
                if start + 24 <= s.len() {
                    let piece = &s[start..start + 24];
                    assert!(!hay.contains(piece), "{what} reveals part of a session key");
                }
            }
        }
    }
}

/// Normalise a session object for semantic comparison: the shared-history flag in any
/// spelling becomes one boolean, everything else is kept.
pub fn normalize_session(v: &Value) -> BTreeMap<String, Value> {
    let mut m: BTreeMap<String, Value> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut shared = false;
    for k in [
        "shared_history",
        "m.shared_history",
        "org.matrix.msc3061.shared_history",
    ] {
        if let Some(v) = m.remove(k) {
            shared |= v == Value::Bool(true);
        }
    }
    m.insert("<shared>".into(), Value::Bool(shared));
    m
}

/// Sessions keyed by (room_id, session_id), normalised.
pub fn session_set(v: &[Value]) -> BTreeMap<(String, String), BTreeMap<String, Value>> {
    v.iter()
        .map(|s| {
            (
                (
                    s["room_id"].as_str().unwrap().to_string(),
                    s["session_id"].as_str().unwrap().to_string(),
                ),
                normalize_session(s),
            )
        })
        .collect()
}

/// Read a JSON array of sessions from a file.
pub fn read_sessions(p: &Path) -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every file under `dir`, read as bytes.
pub fn all_bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// Does `hay` contain `needle`?
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A history report's `counts` object as a map (class -> events).
pub fn class_counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("counts is not an object: {v}"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

/// A count for every history class: zero but for `pairs`.
pub fn expect_class_counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = [
        "decrypted",
        "in_backup",
        "later_index",
        "missing",
        "before_join",
        "damaged",
        "unsupported",
    ]
    .iter()
    .map(|k| (k.to_string(), 0))
    .collect();
    for (k, n) in pairs {
        m.insert(k.to_string(), *n);
    }
    m
}
