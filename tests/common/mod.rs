//! Shared helpers for the CLI integration tests: an isolated environment per test, secret
//! files, fixture paths, and an independent implementation of Element's key-export format
//! (written here from the RustCrypto crates directly, not through mxkeys) to prove interop.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
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
/// No command in these tests may run longer than this (a regression must fail, not hang).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A fixture file's path.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// The manifest of the export fixtures.
pub fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("export/manifest.json")).unwrap()).unwrap()
}

/// One isolated environment: a temporary HOME (with XDG_DATA_HOME inside it), a work
/// directory for inputs and outputs, and a store directory path.
pub struct Env {
    pub tmp: TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("mxkeys-test-")
            .tempdir()
            .unwrap();
        for d in ["home", "home/.local/share", "work"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Env { tmp }
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

    /// The environment every command gets: nothing but PATH, HOME and XDG_DATA_HOME.
    pub fn base_env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            (
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
            ("HOME", self.home().into_os_string()),
            ("XDG_DATA_HOME", self.xdg_data_home().into_os_string()),
        ]
    }

    /// `mxkeys` with a clean environment, run in the work directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("mxkeys").unwrap();
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

    /// Write a file in the work directory with mode 0644.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// Write a secret file with mode 0600.
    pub fn write_secret(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
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

    /// `mxkeys --store STORE --store-passphrase-file FILE`.
    pub fn scmd(&self) -> Command {
        let sp = self.store_pass_file();
        let mut c = self.cmd();
        c.arg("--store")
            .arg(self.store())
            .arg("--store-passphrase-file")
            .arg(sp);
        c
    }

    /// Create a sealed store with cheap KDF settings.
    pub fn init_store(&self) {
        self.scmd()
            .args(["init", "--store-kdf-rounds", "1000"])
            .assert()
            .success();
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

/// Megolm sessions made in the test with vodozemac.
pub mod megolm {
    use serde_json::{Value, json};
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

    /// A sender key and claimed key (not checked against anything by mxkeys).
    pub const SENDER_KEY: &str = "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA";

    /// A fresh outbound session.
    pub fn new_group() -> GroupSession {
        GroupSession::new(SessionConfig::version_1())
    }

    /// The export-format key of `group` at `index`.
    pub fn key_at(group: &GroupSession, index: u32) -> String {
        let mut inbound =
            InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
        inbound.export_at(index).unwrap().to_base64()
    }

    /// An export entry for `group` at `index` in `room`.
    pub fn entry(group: &GroupSession, room: &str, index: u32) -> Value {
        json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "sender_key": SENDER_KEY,
            "session_id": group.session_id(),
            "session_key": key_at(group, index),
            "sender_claimed_keys": {"ed25519": "FoFzeER5D16p2zgy6vMD9jttW+1BWvgAKt840xmMP3Q"},
            "forwarding_curve25519_key_chain": [],
        })
    }

    /// The first known index encoded in an export-format key.
    pub fn index_of(key: &str) -> u32 {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(key.trim_end_matches('='))
            .unwrap();
        u32::from_be_bytes([b[1], b[2], b[3], b[4]])
    }

    /// The same session id with a ratchet that does not connect to `key`'s.
    pub fn forged(key: &str) -> String {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut b = e.decode(key.trim_end_matches('=')).unwrap();
        for x in &mut b[5..37] {
            *x ^= 0x5a;
        }
        e.encode(b)
    }
}

/// An independent implementation of Element's key-export format, written from the published
/// algorithm with the RustCrypto crates (not through mxkeys):
///
/// body = version(1) || salt(16) || iv(16) || rounds(u32 BE) || AES-256-CTR(json) || HMAC
/// keys = PBKDF2-HMAC-SHA512(passphrase, salt, rounds, 64 bytes): AES key || HMAC key
/// AES-CTR uses the IV as the initial counter block with a 64-bit counter (WebCrypto
/// `length: 64`); the HMAC-SHA256 covers everything before it.
pub mod element {
    use aes::Aes256;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ctr::cipher::{KeyIvInit, StreamCipher};
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Sha256, Sha512};
    use std::path::Path;

    pub const HEADER: &str = "-----BEGIN MEGOLM SESSION DATA-----";
    pub const FOOTER: &str = "-----END MEGOLM SESSION DATA-----";

    type Ctr64 = ctr::Ctr64BE<Aes256>;
    type Ctr128 = ctr::Ctr128BE<Aes256>;

    /// PBKDF2-HMAC-SHA512 -> (AES key, HMAC key).
    pub fn derive(pass: &[u8], salt: &[u8], rounds: u32) -> ([u8; 32], [u8; 32]) {
        let mut k = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(pass, salt, rounds, &mut k);
        let mut a = [0u8; 32];
        let mut m = [0u8; 32];
        a.copy_from_slice(&k[..32]);
        m.copy_from_slice(&k[32..]);
        (a, m)
    }

    fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// AES-256-CTR with WebCrypto's 64-bit counter.
    pub fn ctr64(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
        let mut c = Ctr64::new(key.into(), iv.into());
        c.apply_keystream(data);
    }

    /// AES-256-CTR with a 128-bit counter (what Element does NOT do).
    pub fn ctr128(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
        let mut c = Ctr128::new(key.into(), iv.into());
        c.apply_keystream(data);
    }

    /// Random bytes.
    pub fn random<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        getrandom::fill(&mut b).unwrap();
        b
    }

    /// The binary body with every field chosen by the caller.
    pub fn seal_with(
        pt: &[u8],
        pass: &[u8],
        version: u8,
        salt: [u8; 16],
        iv: [u8; 16],
        rounds: u32,
    ) -> Vec<u8> {
        let (ak, mk) = derive(pass, &salt, rounds.max(1));
        let mut out = vec![version];
        out.extend_from_slice(&salt);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&rounds.to_be_bytes());
        let mut ct = pt.to_vec();
        ctr64(&ak, &iv, &mut ct);
        out.extend_from_slice(&ct);
        let tag = hmac(&mk, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// The binary body as Element writes it: random salt, random IV with bit 63 cleared.
    pub fn seal(pt: &[u8], pass: &[u8], rounds: u32) -> Vec<u8> {
        let mut iv = random::<16>();
        iv[8] &= 0x7f;
        seal_with(pt, pass, 1, random::<16>(), iv, rounds)
    }

    /// Armor a body: header, base64 lines of `width` characters (0: one line), footer.
    pub fn armor(body: &[u8], width: usize) -> String {
        let b64 = STANDARD.encode(body);
        let mut s = format!("{HEADER}\n");
        if width == 0 {
            s.push_str(&b64);
            s.push('\n');
        } else {
            for chunk in b64.as_bytes().chunks(width) {
                s.push_str(std::str::from_utf8(chunk).unwrap());
                s.push('\n');
            }
        }
        s.push_str(FOOTER);
        s.push('\n');
        s
    }

    /// An export file as Element writes it (96 bytes = 128 characters per line).
    pub fn encrypt(pt: &[u8], pass: &[u8], rounds: u32) -> String {
        armor(&seal(pt, pass, rounds), 128)
    }

    /// Element's reader: take the lines between header and footer, join, base64-decode.
    pub fn unarmor(text: &[u8]) -> Vec<u8> {
        let s = std::str::from_utf8(text).unwrap();
        let start = s.find(HEADER).unwrap() + HEADER.len();
        let end = s.find(FOOTER).unwrap();
        let b64: String = s[start..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        lenient.decode(b64).unwrap()
    }

    /// What the independent decryptor found.
    #[derive(Debug)]
    pub struct Opened {
        pub version: u8,
        pub salt: [u8; 16],
        pub iv: [u8; 16],
        pub rounds: u32,
        pub plaintext: Vec<u8>,
    }

    /// Verify the HMAC over everything before the tag, then decrypt with the 64-bit counter.
    pub fn open(body: &[u8], pass: &[u8]) -> Result<Opened, String> {
        if body.len() < 69 {
            return Err(format!("too short: {}", body.len()));
        }
        let version = body[0];
        if version != 1 {
            return Err(format!("version {version}"));
        }
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        salt.copy_from_slice(&body[1..17]);
        iv.copy_from_slice(&body[17..33]);
        let rounds = u32::from_be_bytes([body[33], body[34], body[35], body[36]]);
        let (ak, mk) = derive(pass, &salt, rounds);
        let (signed, tag) = body.split_at(body.len() - 32);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&mk).unwrap();
        mac.update(signed);
        mac.verify_slice(tag)
            .map_err(|_| "HMAC mismatch".to_string())?;
        let mut pt = signed[37..].to_vec();
        ctr64(&ak, &iv, &mut pt);
        Ok(Opened {
            version,
            salt,
            iv,
            rounds,
            plaintext: pt,
        })
    }

    /// Check that `text` is exactly the dialect mxkeys promises to write (header line, padded
    /// base64 wrapped at 128 columns, footer, LF, final newline); return the decoded body.
    pub fn check_written_armor(text: &[u8]) -> Vec<u8> {
        let s = std::str::from_utf8(text).expect("export file is not UTF-8");
        assert!(s.is_ascii(), "export file is not ASCII");
        assert!(!s.contains('\r'), "export file has CR characters");
        assert!(
            s.starts_with(&format!("{HEADER}\n")),
            "does not start with the header line"
        );
        assert!(
            s.ends_with(&format!("\n{FOOTER}\n")),
            "does not end with the footer line and a final newline"
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[lines.len() - 1], FOOTER);
        let body = &lines[1..lines.len() - 1];
        assert!(!body.is_empty(), "empty body");
        let mut decoded = Vec::new();
        for (i, l) in body.iter().enumerate() {
            let last = i == body.len() - 1;
            if last {
                assert!(
                    !l.is_empty() && l.len() <= 128 && l.len() % 4 == 0,
                    "last body line has length {} (padded base64 expected)",
                    l.len()
                );
            } else {
                assert_eq!(l.len(), 128, "body line {} is not 128 columns", i + 1);
            }
            // STANDARD requires canonical padding.
            let d = STANDARD
                .decode(l)
                .unwrap_or_else(|e| panic!("body line {} is not padded base64: {e}", i + 1));
            if !last {
                assert_eq!(d.len(), 96);
            }
            decoded.extend_from_slice(&d);
        }
        decoded
    }

    /// Read a file mxkeys wrote: check the dialect, then decrypt it independently.
    pub fn decrypt_file(path: &Path, pass: &[u8]) -> Opened {
        let text = std::fs::read(path).unwrap();
        let body = check_written_armor(&text);
        let o = open(&body, pass).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(o.version, 1);
        assert_eq!(o.iv[8] & 0x80, 0, "IV bit 63 is set");
        o
    }
}
