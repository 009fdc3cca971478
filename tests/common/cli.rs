//! Commands built on an [`Env`]: `mxkeys` with a clean environment in the work directory (as
//! an `assert_cmd` command, or run to a [`Run`]), the store and import/export shortcuts, and
//! the checks of what a failed command printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

use super::synapse::User;
use super::{BIN, Env, PASS, TIMEOUT, element, text};

impl Env {
    /// `mxkeys` with a clean environment, run in the work directory. Against the homeserver
    /// ([`Env::for_homeserver`]) it is [`Env::cmd_no_tty`].
    pub fn cmd(&self) -> Command {
        if !self.hs.is_empty() {
            return self.cmd_no_tty();
        }
        let mut c = Command::new(BIN);
        c.env_clear()
            .envs(self.base_env())
            .current_dir(self.work())
            .timeout(TIMEOUT);
        c
    }

    /// `mxkeys` started in a new session, so it has no controlling terminal even when the
    /// test runner has one (`/dev/tty` cannot be opened).
    pub fn cmd_no_tty(&self) -> Command {
        let mut c = Command::new("setsid");
        c.env_clear()
            .envs(self.base_env())
            .current_dir(self.work())
            .timeout(TIMEOUT)
            .arg("-w")
            .arg(BIN);
        c
    }

    /// `mxkeys ARGS` as a plain `std::process::Command` (clean environment, work directory,
    /// stdin from /dev/null), spawned directly so that its PID is the binary's own.
    pub fn process(&self, args: &[OsString]) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        c.env_clear()
            .envs(self.base_env())
            .current_dir(self.work())
            .stdin(Stdio::null())
            .args(args);
        c
    }

    /// `mxkeys` run by bash: `script` must end with `exec "$0" "$@"` (plus redirections);
    /// arguments added to the returned command become `"$@"`.
    pub fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.env_clear()
            .envs(self.base_env())
            .current_dir(self.work())
            .timeout(TIMEOUT)
            .arg("-c")
            .arg(script)
            .arg(BIN);
        c
    }

    /// `mxkeys` run under `umask 000`.
    pub fn cmd_umask0(&self) -> Command {
        self.bash(r#"umask 000; exec "$0" "$@""#)
    }

    /// `mxkeys --store STORE --store-passphrase-file FILE`.
    pub fn scmd(&self) -> Command {
        let mut c = self.cmd();
        c.args(self.store_args());
        c
    }

    /// `mxkeys --store STORE --store-passphrase-file PASS`: the store with another passphrase
    /// file (for `init` with a chosen passphrase).
    pub fn scmd_with_pass(&self, pass: &std::path::Path) -> Command {
        let mut c = self.cmd();
        c.arg("--store")
            .arg(self.store())
            .arg("--store-passphrase-file")
            .arg(pass);
        c
    }

    /// Create a sealed store with cheap KDF settings.
    pub fn init_store(&self) {
        self.scmd()
            .args(["init", "--store-kdf-rounds", "1000"])
            .assert()
            .success();
    }

    /// A fresh store holding `sessions` (export-file entries), imported through `mxkeys import`.
    pub fn init_store_with(&self, sessions: &[Value]) {
        self.init_store();
        if sessions.is_empty() {
            return;
        }
        let f = self.encrypt_json("keys.txt", &Value::Array(sessions.to_vec()));
        let r = self.import_ok(&[&f]);
        assert_eq!(r["imported"], sessions.len());
    }

    /// Import files with the fixtures' passphrase, `--json`; returns the output.
    pub fn import(&self, files: &[&Path]) -> Output {
        let pf = self.pass_file();
        self.scmd()
            .arg("--json")
            .arg("import")
            .args(files)
            .arg("--passphrase-file")
            .arg(pf)
            .output()
            .unwrap()
    }

    /// Import and expect success; returns the JSON report.
    pub fn import_ok(&self, files: &[&Path]) -> Value {
        let out = self.import(files);
        assert_eq!(
            out.status.code(),
            Some(0),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `list --json` (no store passphrase given).
    pub fn list_json(&self) -> Value {
        let out = self
            .cmd()
            .arg("--store")
            .arg(self.store())
            .args(["--json", "list"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Export from the store (extra args such as `--room`), then decrypt the file with the
    /// independent decryptor; returns the sessions.
    pub fn export_sessions(&self, name: &str, extra: &[&str]) -> Vec<Value> {
        let pf = self.pass_file();
        let out = self.path(name);
        self.scmd()
            .arg("export")
            .arg("-o")
            .arg(&out)
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(pf)
            .args(extra)
            .assert()
            .success();
        let pt = element::decrypt_file(&out, PASS.as_bytes()).plaintext;
        serde_json::from_slice::<Vec<Value>>(&pt).unwrap()
    }

    /// `mxkeys encrypt` of a JSON value with the fixtures' passphrase and 1000 rounds.
    pub fn encrypt_json(&self, name: &str, json: &Value) -> PathBuf {
        let input = self.write(&format!("{name}.json"), serde_json::to_vec(json).unwrap());
        let pf = self.pass_file();
        let out = self.path(name);
        self.cmd()
            .arg("encrypt")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(pf)
            .assert()
            .success();
        std::fs::remove_file(input).unwrap();
        out
    }

    /// `mxkeys decrypt FILE` with a passphrase file; returns the plaintext.
    pub fn decrypt(&self, file: &Path, pass_file: &Path) -> Vec<u8> {
        let out = self
            .cmd()
            .arg("decrypt")
            .arg(file)
            .arg("--passphrase-file")
            .arg(pass_file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "decrypt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Run a prepared command to a [`Run`].
    pub fn run(&self, c: &mut Command) -> Run {
        let what = format!("{c:?}");
        let start = Instant::now();
        let out = c.output().unwrap();
        Run {
            elapsed: start.elapsed(),
            what: what
                .split("mxkeys\" ")
                .nth(1)
                .unwrap_or(&what)
                .chars()
                .take(400)
                .collect(),
            ..Run::from_output(&out)
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

    /// `mxkeys --store ... ARGS` with extra path arguments appended (`("", p)` for a bare
    /// path).
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

    /// `mxkeys login` as `user` at `self.hs` (password from a 0600 file).
    pub fn login(&self, user: &User) -> Run {
        self.login_with(user, &[], &[])
    }

    /// `mxkeys GLOBAL... login` as `user` at `self.hs` with `extra` login arguments.
    pub fn login_with(&self, user: &User, global: &[&str], extra: &[&str]) -> Run {
        let pw = self.write_secret("password.txt", format!("{}\n", user.password));
        let mut args = global.to_vec();
        args.extend(["login", "--user", &user.user_id, "--homeserver", &self.hs]);
        args.extend(extra);
        self.smx_p(&args, &[("--password-file", &pw)])
    }

    /// A fresh store logged in as `user`.
    pub fn init_and_login(&self, user: &User) {
        self.init_store();
        self.login(user).ok();
    }

    /// `--json backup download` with no mxkeys store, from the homeserver at `self.hs`,
    /// straight to the export file `out` (1,000 PBKDF2 rounds): access token, recovery key and
    /// the file's passphrase from files. It must succeed; returns its report.
    pub fn download_to_file(
        &self,
        token: &Path,
        recovery_key: &Path,
        pass: &Path,
        out: &Path,
    ) -> Value {
        self.run(
            self.cmd()
                .args(["--json", "backup", "download", "--homeserver", &self.hs])
                .args(["--rounds", "1000"])
                .arg("--access-token-file")
                .arg(token)
                .arg("--recovery-key-file")
                .arg(recovery_key)
                .arg("--passphrase-file")
                .arg(pass)
                .arg("-o")
                .arg(out),
        )
        .ok()
        .json()
    }
}

/// Resources a bounded run used (see [`super::run`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Peak resident set size, KiB (0: not measured).
    pub max_rss_kb: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
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
    /// What a bounded run used.
    pub usage: Usage,
}

impl Run {
    /// The exit code and the output of a finished process (no time, no arguments).
    pub fn from_output(out: &Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            elapsed: Duration::ZERO,
            what: String::new(),
            usage: Usage::default(),
        }
    }

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

    /// The `mxkeys: error:` lines and the `hint:` lines of stderr.
    pub fn error_and_hint_lines(&self) -> (Vec<&str>, Vec<&str>) {
        let pick =
            |p: &str| -> Vec<&str> { self.stderr.lines().filter(|l| l.starts_with(p)).collect() };
        (pick("mxkeys: error:"), pick("hint:"))
    }

    /// Did it panic (exit 101, or a panic message on stderr)?
    pub fn panicked(&self) -> bool {
        self.code == 101
            || self.stderr.contains("panicked")
            || self.stderr.contains("RUST_BACKTRACE")
    }
}

/// Assert a failed run: exit code, empty stdout, and `mxkeys: error:` with `message` plus a
/// `hint:` line containing `hint` on stderr. Returns stderr.
pub fn assert_error(out: &Output, code: i32, message: &str, hint: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr: {stderr}; stdout: {}",
        text(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "stdout not empty: {}",
        text(&out.stdout)
    );
    let err_line = stderr
        .lines()
        .find(|l| l.starts_with("mxkeys: error: "))
        .unwrap_or_else(|| panic!("no error line in stderr: {stderr}"));
    assert!(
        err_line.contains(message),
        "error line {err_line:?} does not contain {message:?}"
    );
    let hint_line = stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("no hint line in stderr: {stderr}"));
    assert!(
        hint_line.contains(hint),
        "hint line {hint_line:?} does not contain {hint:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic: {stderr}"
    );
    stderr
}

/// Assert a `--json` failure: nothing on stdout, and an `exit_error` JSON object on stderr
/// (every stderr line is JSON). Returns the error object.
pub fn assert_json_error(out: &Output, code: i32) -> Value {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let mut found = None;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        if v["message_type"] == "exit_error" {
            assert!(found.is_none(), "two exit_error objects: {stderr}");
            found = Some(v);
        }
    }
    let v = found.unwrap_or_else(|| panic!("no exit_error object on stderr: {stderr}"));
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["hint"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

/// Parse stdout as exactly one JSON document.
pub fn one_json(out: &Output) -> Value {
    let s = text(&out.stdout);
    let mut de = serde_json::Deserializer::from_str(&s).into_iter::<Value>();
    let v = de
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout; stderr: {}", text(&out.stderr)))
        .unwrap();
    assert!(de.next().is_none(), "more than one JSON document: {s}");
    v
}
