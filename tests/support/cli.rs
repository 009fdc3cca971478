//! Running the real `mxkeys` binary in an isolated environment.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

use super::synapse::User;

/// The fixtures directory of this package.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
/// Passphrase of the Element/wasm export fixtures (see fixtures/export/manifest.json).
pub const PASS: &str = "correct horse battery staple";
/// Store passphrase used by these tests.
pub const STORE_PASS: &str = "hs-store-Secret-4b7d";

/// A fixture's path.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// A fixture parsed as JSON.
pub fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

/// The passphrase the manifest gives for an export fixture.
pub fn manifest_passphrase(name: &str) -> String {
    let m = fixture_json("export/manifest.json");
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest"))["passphrase"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    /// The arguments (for messages).
    pub what: String,
}

impl Run {
    /// Expect exit code `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "`mxkeys {}` exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Expect success.
    #[track_caller]
    pub fn ok(self) -> Run {
        self.code(0)
    }

    /// Stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`mxkeys {}`: stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// Stdout and stderr together.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Expect stderr to contain `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "`mxkeys {}`: stderr lacks {needle:?}:\n{}",
            self.what,
            self.stderr
        );
        self
    }
}

/// One isolated environment: HOME (and XDG_DATA_HOME) in a temporary directory, a work
/// directory, a store directory, and the homeserver's URL.
pub struct Env {
    /// The temporary directory.
    pub tmp: TempDir,
    /// Homeserver URL mxkeys is pointed at.
    pub hs: String,
}

impl Env {
    /// A new environment for homeserver `hs`.
    pub fn new(hs: &str) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("mxkeys-hs-test-")
            .tempdir()
            .unwrap();
        for d in ["home", "home/.local/share", "work"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Env {
            tmp,
            hs: hs.to_string(),
        }
    }

    /// HOME.
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// XDG_DATA_HOME (where a default store would go).
    pub fn xdg_data_home(&self) -> PathBuf {
        self.home().join(".local/share")
    }

    /// Work directory.
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

    /// Write a secret file (mode 0600) in the work directory.
    pub fn secret(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// Write an ordinary file in the work directory.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// The export fixtures' passphrase in a 0600 file.
    pub fn pass_file(&self) -> PathBuf {
        self.secret("export-pass.txt", &format!("{PASS}\n"))
    }

    /// The store passphrase in a 0600 file.
    pub fn store_pass_file(&self) -> PathBuf {
        self.secret("store-pass.txt", &format!("{STORE_PASS}\n"))
    }

    /// `mxkeys` with a clean environment (PATH, HOME, XDG_DATA_HOME and
    /// `MXKEYS_RETRY_BASE_MS=5` only), in the work directory, started by `setsid -w` so that it
    /// never has a controlling terminal (no prompt can hang a test).
    pub fn cmd(&self) -> Command {
        let bin = assert_cmd::cargo::cargo_bin("mxkeys");
        let mut c = Command::new("setsid");
        c.env_clear()
            .envs(self.base_env())
            .current_dir(self.work())
            .arg("-w")
            .arg(bin)
            .timeout(Duration::from_secs(240));
        c
    }

    /// The environment every command gets.
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

    /// `mxkeys --store STORE --store-passphrase-file F`.
    pub fn scmd(&self) -> Command {
        let sp = self.store_pass_file();
        let mut c = self.cmd();
        c.arg("--store")
            .arg(self.store())
            .arg("--store-passphrase-file")
            .arg(sp);
        c
    }

    /// Run a prepared command.
    pub fn run(&self, c: &mut Command) -> Run {
        let what = format!("{c:?}");
        let start = Instant::now();
        let out = c.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
            what: what
                .split("mxkeys\" ")
                .nth(1)
                .unwrap_or(&what)
                .chars()
                .take(400)
                .collect(),
        }
    }

    /// `mxkeys ARGS` without a store.
    pub fn mx(&self, args: &[&str]) -> Run {
        self.run(self.cmd().args(args))
    }

    /// `mxkeys --store ... ARGS`.
    pub fn smx(&self, args: &[&str]) -> Run {
        self.run(self.scmd().args(args))
    }

    /// `mxkeys --store ... ARGS` with extra path arguments appended.
    pub fn smx_p(&self, args: &[&str], paths: &[(&str, &Path)]) -> Run {
        let mut c = self.scmd();
        c.args(args);
        for (flag, p) in paths {
            if !flag.is_empty() {
                c.arg(flag);
            }
            c.arg(p);
        }
        self.run(&mut c)
    }

    /// Create a sealed store with cheap KDF settings.
    pub fn init_store(&self) {
        self.smx(&["init", "--store-kdf-rounds", "1000"]).ok();
    }

    /// `mxkeys login` as `user` at `self.hs` (password from a 0600 file).
    pub fn login(&self, user: &User) -> Run {
        let pw = self.secret("password.txt", &format!("{}\n", user.password));
        let hs = self.hs.clone();
        self.smx_p(
            &["login", "--user", &user.user_id, "--homeserver", &hs],
            &[("--password-file", &pw)],
        )
    }

    /// A fresh store logged in as `user`.
    pub fn init_and_login(&self, user: &User) {
        self.init_store();
        self.login(user).ok();
    }

    /// An access token in a 0600 file.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        self.secret(name, &format!("{token}\n"))
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
}

/// Does `hay` contain `needle`?
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
