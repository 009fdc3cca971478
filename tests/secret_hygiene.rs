//! Secret hygiene (issue 5, part 4), each property shown by a test:
//!
//! 1. no secret can be given in argv: no flag of any command or subcommand named like a
//!    secret takes a value, except the `-file` / `-fd` / `-command` sources;
//! 2. no secret in any output at any verbosity (`-v`, `-vv`, `-vvv`), in error messages or in
//!    `--json`, for every command, the backup ones included (against the real Synapse);
//! 3. files holding keys (export and decrypt outputs, recovery-key files, the store's files
//!    with `-wal` and `-shm`) are 0600, and the store directory 0700, under umask 000 and 022;
//! 4. secret environment variables are absent from the environment of a child started by
//!    `--passphrase-command`, `--store-passphrase-command` and `--new-passphrase-command`;
//! 5. a secret file readable by group or others gets a warning, for every secret-file flag;
//! 6. secret types zeroize on drop (compile-time check), and the binary never calls
//!    `process::exit` (which skips destructors) except on a second Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Env, PASS, STORE_PASS, element, fixture, megolm, mode, text};
use serde_json::{Value, json};

const NEW_PASS: &str = "new-Export-Secret-5e2a";
const PHRASE: &str = "a Security Phrase that is secret 9d1c";

// ---------------------------------------------------------------------------------------------
// 1. No secret in argv

/// `mxkeys ARGS --help`.
fn help(args: &[&str]) -> String {
    let out = Command::new(common::BIN)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    text(&out.stdout)
}

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut in_cmds = false;
    let mut v = Vec::new();
    for l in help.lines() {
        if l.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !l.starts_with("  ") {
                break;
            }
            if l.starts_with("   ") {
                continue; // a wrapped description
            }
            let name = l.split_whitespace().next().unwrap();
            if name != "help" {
                v.push(name.to_string());
            }
        }
    }
    v
}

/// `(flag, value name)` of every option in a help text.
fn options(help: &str) -> Vec<(String, Option<String>)> {
    let mut v = Vec::new();
    for l in help.lines() {
        let t = l.trim_start();
        if !t.starts_with('-') || l.len() - t.len() < 2 {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_end_matches(',');
            if let Some(name) = w.strip_prefix("--") {
                let value = words
                    .get(i + 1)
                    .filter(|x| x.starts_with('<'))
                    .map(|x| x.to_string());
                v.push((name.trim_end_matches("...").to_string(), value));
                break;
            }
        }
    }
    v
}

/// Positional arguments (the "Arguments:" section).
fn positionals(help: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut on = false;
    for l in help.lines() {
        if l.starts_with("Arguments:") {
            on = true;
            continue;
        }
        if on {
            if !l.starts_with("  ") {
                break;
            }
            if let Some(w) = l.split_whitespace().next()
                && (w.starts_with('<') || w.starts_with('['))
            {
                v.push(w.to_string());
            }
        }
    }
    v
}

fn secret_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "passphrase",
        "password",
        "recovery-key",
        "recovery_key",
        "security-phrase",
        "security_phrase",
        "access-token",
        "access_token",
        "token",
        "secret",
        "phrase",
    ]
    .iter()
    .any(|s| n.contains(s))
}

#[test]
fn no_secret_can_be_given_as_an_argument() {
    // Every command and subcommand, found from the help texts themselves.
    let mut commands: Vec<Vec<String>> = vec![vec![]];
    let mut i = 0;
    while i < commands.len() {
        let path = commands[i].clone();
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&help(&args)) {
            let mut p = path.clone();
            p.push(sub);
            commands.push(p);
        }
        i += 1;
    }
    assert!(commands.len() >= 20, "{commands:?}");
    let mut secret_flags = 0;
    for path in &commands {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let h = help(&args);
        for (flag, value) in options(&h) {
            if !secret_like(&flag) {
                continue;
            }
            secret_flags += 1;
            if let Some(v) = value {
                assert!(
                    flag.ends_with("-file") || flag.ends_with("-fd") || flag.ends_with("-command"),
                    "`mxkeys {}` has --{flag} {v}: a secret would be an argument",
                    path.join(" ")
                );
            }
        }
        for p in positionals(&h) {
            assert!(
                !secret_like(&p),
                "`mxkeys {}` takes a secret-like positional {p}",
                path.join(" ")
            );
        }
        // The obvious spellings do not exist.
        if path.is_empty()
            || ["recovery-key", "backup"].contains(&path[0].as_str()) && path.len() == 1
        {
            continue;
        }
        for flag in [
            "--passphrase",
            "--password",
            "--recovery-key",
            "--security-phrase",
            "--access-token",
            "--token",
            "--store-passphrase",
            "--new-passphrase",
        ] {
            let out = Command::new(common::BIN)
                .args(&args)
                .args([flag, "hunter2-secret"])
                .env_clear()
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{path:?} {flag}");
            let e = text(&out.stderr);
            assert!(e.contains("unexpected argument"), "{path:?} {flag}: {e}");
            assert!(!e.contains("hunter2-secret"), "{path:?} {flag}: {e}");
        }
    }
    println!(
        "argv: {} commands scanned, {secret_flags} secret-source flags, all -file/-fd/-command",
        commands.len()
    );
    // If the help text stopped parsing, the checks above would have checked nothing.
    assert!(
        secret_flags > 0,
        "no secret-source flag was found in any help text"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. No secret in any output (offline commands)

/// A saved `GET /room_keys/keys` body with one session of `key`; the session's key.
fn saved_backup(key: &mxkeys::backup::BackupDecryptionKey) -> (Vec<u8>, String) {
    let g = megolm::new_group();
    let e = megolm::entry(&g, "!saved:example.org", 0);
    let s = mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&e).unwrap()).unwrap();
    let d = mxkeys::backup::encrypt_session(&key.public_key(), &s, 0, false).unwrap();
    let body = json!({"rooms": {"!saved:example.org": {"sessions": {g.session_id(): d}}}});
    (
        serde_json::to_vec(&body).unwrap(),
        e["session_key"].as_str().unwrap().to_string(),
    )
}

/// The forms a recovery key can take in output: spaced, unspaced, and its raw key in base64.
fn recovery_key_forms(text: &str) -> Vec<String> {
    let t = text.trim().to_string();
    let mut v = vec![t.clone(), t.replace(' ', "")];
    if let Ok(k) = mxkeys::recovery_key::decode(&t) {
        let b = mxkeys::backup::BackupDecryptionKey::new(k);
        v.push(b.to_base64().to_string());
        v.push(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            b.expose_secret().expose_secret(),
        ));
    }
    // Each group of 4 is a substring an output could leak too.
    v.extend(
        t.split(' ')
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.join(" "))
            .filter(|c| c.len() >= 14),
    );
    v
}

#[test]
fn no_secret_in_any_output_at_any_verbosity_offline() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let sp = env.store_pass_file();
    let np = env.write_secret("new-pass.txt", format!("{NEW_PASS}\n"));
    let phrase = env.write_secret("phrase.txt", format!("{PHRASE}\n"));
    let badp = env.write_secret("badp.txt", "correct horse battery stapleX\n");
    let bads = env.write_secret("bads.txt", "wrong-store-Passphrase-31x\n");
    let three = fixture("export/element-three.txt");
    let one = fixture("export/element-one.txt");
    let plain_json = env.write(
        "plain.json",
        std::fs::read(fixture("export/plaintext/element-three.json")).unwrap(),
    );
    // A recovery key (made by mxkeys), a typo of it, a saved backup response for it.
    let rk = env.path("rk.txt");
    env.cmd()
        .args(["recovery-key", "generate", "-o"])
        .arg(&rk)
        .assert()
        .success();
    let rk_text = std::fs::read_to_string(&rk).unwrap();
    let typo = {
        let mut c: Vec<char> = rk_text.trim().chars().collect();
        let last = c.len() - 1;
        c[last] = if c[last] == 'a' { 'b' } else { 'a' };
        c.into_iter().collect::<String>()
    };
    let typo_file = env.write_secret("typo.txt", format!("{typo}\n"));
    let key =
        mxkeys::backup::BackupDecryptionKey::new(mxkeys::recovery_key::decode(&rk_text).unwrap());
    let (saved, saved_key) = saved_backup(&key);
    let saved_file = env.write("saved.json", saved);

    let mut secrets = common::fixture_session_keys();
    secrets.push(saved_key);
    for s in [PASS, STORE_PASS, NEW_PASS, PHRASE] {
        secrets.push(s.into());
    }
    secrets.push("correct horse battery stapleX".into());
    secrets.push("wrong-store-Passphrase-31x".into());
    secrets.extend(recovery_key_forms(&rk_text));
    secrets.extend(recovery_key_forms(&typo));

    let s = |p: &Path| p.display().to_string();
    let store = [
        "--store".to_string(),
        s(&env.store()),
        "--store-passphrase-file".into(),
        s(&sp),
    ];
    let with_store = |rest: &[&str]| -> Vec<String> {
        let mut v = store.to_vec();
        v.extend(rest.iter().map(|x| x.to_string()));
        v
    };
    let (pf, np, phrase, badp, bads, three, one) = (
        s(&pf),
        s(&np),
        s(&phrase),
        s(&badp),
        s(&bads),
        s(&three),
        s(&one),
    );
    let (plain_json, rk, typo_file, saved_file) =
        (s(&plain_json), s(&rk), s(&typo_file), s(&saved_file));
    // `product` marks runs whose stdout is the product (keys by design): only stderr counts.
    #[rustfmt::skip]
    let cases: Vec<(bool, Vec<String>)> = vec![
        (false, with_store(&["import", &three, "--passphrase-file", &pf])),
        (false, with_store(&["import", &one, "--passphrase-file", &badp])),
        (false, vec!["--store".into(), s(&env.store()), "--store-passphrase-file".into(), bads.clone(), "import".into(), three.clone(), "--passphrase-file".into(), pf.clone()]),
        (false, with_store(&["export", "-o", "exp-{n}.txt", "--rounds", "1000", "--passphrase-file", &pf])),
        (false, vec!["--store".into(), s(&env.path("store-{n}")), "--store-passphrase-file".into(), s(&sp), "init".into(), "--store-kdf-rounds".into(), "1000".into()]),
        (false, with_store(&["list"])),
        (false, vec!["inspect".into(), three.clone()]),
        (false, vec!["inspect".into(), three.clone(), "--passphrase-file".into(), pf.clone()]),
        (false, vec!["decrypt".into(), three.clone(), "-o".into(), "dec-{n}.json".into(), "--passphrase-file".into(), pf.clone()]),
        (true, vec!["decrypt".into(), three.clone(), "--passphrase-file".into(), pf.clone()]),
        (false, vec!["decrypt".into(), three.clone(), "-o".into(), "never.json".into(), "--passphrase-file".into(), badp.clone()]),
        (false, vec!["encrypt".into(), plain_json.clone(), "-o".into(), "enc-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), pf.clone()]),
        (false, vec!["merge".into(), three.clone(), one.clone(), "-o".into(), "m-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), pf.clone(), "--new-passphrase-file".into(), np.clone()]),
        (false, vec!["reencrypt".into(), three.clone(), "-o".into(), "r-{n}.txt".into(), "--passphrase-file".into(), pf.clone(), "--new-passphrase-file".into(), np.clone()]),
        (false, vec!["recovery-key".into(), "generate".into(), "-o".into(), "rk-{n}.txt".into()]),
        (false, vec!["recovery-key".into(), "check".into(), "--offline".into(), "--recovery-key-file".into(), rk.clone()]),
        (false, vec!["recovery-key".into(), "check".into(), "--offline".into(), "--recovery-key-file".into(), typo_file.clone()]),
        (false, vec!["recovery-key".into(), "check".into(), "--offline".into(), "--security-phrase-file".into(), phrase.clone()]),
        (false, vec!["backup".into(), "download".into(), "--from-response".into(), saved_file.clone(), "--recovery-key-file".into(), rk.clone(), "-o".into(), "bk-{n}.txt".into(), "--passphrase-file".into(), pf.clone(), "--rounds".into(), "1000".into()]),
        (false, vec!["backup".into(), "download".into(), "--from-response".into(), saved_file.clone(), "--recovery-key-file".into(), typo_file.clone(), "-o".into(), "never.txt".into(), "--passphrase-file".into(), pf.clone()]),
    ];
    let mut codes = std::collections::BTreeSet::new();
    let mut log = Vec::new();
    let mut n = 0;
    for (product, args) in &cases {
        for global in [
            &["-v"][..],
            &["-vv"][..],
            &["-vvv"][..],
            &["--json"][..],
            &["-vvv", "--json"][..],
        ] {
            n += 1;
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{n}", &n.to_string()))
                .collect();
            let out = env.cmd_no_tty().args(global).args(&args).output().unwrap();
            let what = format!("{global:?} {args:?}");
            assert!(!text(&out.stderr).contains("panicked"), "{what}");
            let code = out.status.code().unwrap();
            codes.insert(code);
            log.push(run_line(code, &what, &text(&out.stderr)));
            if !product {
                common::assert_no_secrets(
                    &text(&out.stdout),
                    &secrets,
                    &format!("stdout of {what}"),
                );
            }
            common::assert_no_secrets(&text(&out.stderr), &secrets, &format!("stderr of {what}"));
        }
    }
    // The battery covered success, wrong secrets and invalid input.
    assert_codes_seen(&codes, &[0, 12, 13], &log);
    // The store keeps keys sealed: no secret in the clear in any of its files.
    for (p, bytes) in common::all_bytes_under(&env.store()) {
        for sec in &secrets {
            assert!(
                !common::contains_bytes(&bytes, sec.as_bytes()),
                "{} holds a secret in the clear",
                p.display()
            );
        }
    }
    println!("offline outputs: {n} runs, exit codes {codes:?}, no secret anywhere");
}

/// One line of the battery's log: exit code, the run, its error line if any.
fn run_line(code: i32, what: &str, stderr: &str) -> String {
    let err = stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    format!("exit {code}: {what}: {err}")
}

/// The battery covered every exit code in `want`; when it did not, every run is listed (with
/// its code and error line), so that a rare failure says which case behaved otherwise.
fn assert_codes_seen(codes: &std::collections::BTreeSet<i32>, want: &[i32], log: &[String]) {
    for c in want {
        assert!(
            codes.contains(c),
            "no case exited {c}: {codes:?}; the runs:\n{}",
            log.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Files holding keys are 0600 whatever the umask

#[test]
fn key_files_and_the_store_are_private_whatever_the_umask() {
    for umask in ["000", "022"] {
        let env = Env::new();
        let sp = env.store_pass_file();
        let pf = env.pass_file();
        let np = env.write_secret("new-pass.txt", format!("{NEW_PASS}\n"));
        let under = |args: &[&OsString]| -> Output {
            let mut c = env.bash(&format!(r#"umask {umask}; exec "$0" "$@""#));
            c.args(args);
            c.output().unwrap()
        };
        let o = |s: &str| OsString::from(s);
        let p = |p: &Path| p.as_os_str().to_owned();
        let store_args = [
            o("--store"),
            p(&env.store()),
            o("--store-passphrase-file"),
            p(&sp),
        ];
        let run = |rest: Vec<OsString>| {
            let all: Vec<OsString> = rest;
            let refs: Vec<&OsString> = all.iter().collect();
            let out = under(&refs);
            assert!(
                out.status.success(),
                "umask {umask}: {all:?}: {}",
                text(&out.stderr)
            );
        };
        let cat = |a: &[OsString], b: &[OsString]| [a, b].concat();
        run(cat(
            &store_args,
            &[o("init"), o("--store-kdf-rounds"), o("1000")],
        ));
        let three = fixture("export/element-three.txt");
        run(cat(
            &store_args,
            &[o("import"), p(&three), o("--passphrase-file"), p(&pf)],
        ));
        let exp = env.path("exp.txt");
        run(cat(
            &store_args,
            &[
                o("export"),
                o("-o"),
                p(&exp),
                o("--rounds"),
                o("1000"),
                o("--passphrase-file"),
                p(&pf),
            ],
        ));
        let dec = env.path("dec.json");
        run(vec![
            o("decrypt"),
            p(&three),
            o("-o"),
            p(&dec),
            o("--passphrase-file"),
            p(&pf),
        ]);
        let raw = env.path("raw.json");
        run(vec![
            o("decrypt"),
            p(&three),
            o("--raw"),
            o("-o"),
            p(&raw),
            o("--passphrase-file"),
            p(&pf),
        ]);
        let enc = env.path("enc.txt");
        run(vec![
            o("encrypt"),
            p(&dec),
            o("-o"),
            p(&enc),
            o("--rounds"),
            o("1000"),
            o("--passphrase-file"),
            p(&pf),
        ]);
        let merged = env.path("merged.txt");
        run(vec![
            o("merge"),
            p(&three),
            p(&fixture("export/element-one.txt")),
            o("-o"),
            p(&merged),
            o("--rounds"),
            o("1000"),
            o("--passphrase-file"),
            p(&pf),
            o("--new-passphrase-file"),
            p(&np),
        ]);
        let re = env.path("re.txt");
        run(vec![
            o("reencrypt"),
            p(&three),
            o("-o"),
            p(&re),
            o("--passphrase-file"),
            p(&pf),
        ]);
        let rk = env.path("rk.txt");
        run(vec![o("recovery-key"), o("generate"), o("-o"), p(&rk)]);
        let key = mxkeys::backup::BackupDecryptionKey::new(
            mxkeys::recovery_key::decode(&std::fs::read_to_string(&rk).unwrap()).unwrap(),
        );
        let saved = env.write("saved.json", saved_backup(&key).0);
        let down = env.path("down.txt");
        run(vec![
            o("backup"),
            o("download"),
            o("--from-response"),
            p(&saved),
            o("--recovery-key-file"),
            p(&rk),
            o("-o"),
            p(&down),
            o("--passphrase-file"),
            p(&pf),
            o("--rounds"),
            o("1000"),
        ]);
        // --force replaces a file atomically, still 0600 (the old file was 0644).
        let forced = env.write("forced.txt", "old");
        run(vec![
            o("decrypt"),
            p(&three),
            o("-o"),
            p(&forced),
            o("--force"),
            o("--passphrase-file"),
            p(&pf),
        ]);
        for f in [&exp, &dec, &raw, &enc, &merged, &re, &rk, &down, &forced] {
            assert_eq!(mode(f), 0o600, "umask {umask}: {}", f.display());
        }
        assert_eq!(
            mode(&env.store()),
            0o700,
            "umask {umask}: the store directory"
        );
        for name in ["keys.sqlite3", "lock"] {
            assert_eq!(
                mode(&env.store().join(name)),
                0o600,
                "umask {umask}: {name}"
            );
        }
        // -wal and -shm exist while a writer runs (and survive a crash): catch them in the act.
        let big = env.path("big.txt");
        std::fs::copy(fixture("export/element-thousand.txt"), &big).unwrap();
        let (wal, shm) = wal_and_shm_modes(&env, umask, &store_args, &big, &pf);
        assert_eq!(wal, 0o600, "umask {umask}: keys.sqlite3-wal");
        assert_eq!(shm, 0o600, "umask {umask}: keys.sqlite3-shm");
        // The store still opens after that kill.
        env.cmd()
            .arg("--store")
            .arg(env.store())
            .arg("list")
            .assert()
            .success();
    }
}

/// Start an import under `umask`, wait until the store's -wal and -shm files exist, kill the
/// import (so that they stay), and return their modes.
fn wal_and_shm_modes(
    env: &Env,
    umask: &str,
    store_args: &[OsString],
    file: &Path,
    pf: &Path,
) -> (u32, u32) {
    let wal = env.store().join("keys.sqlite3-wal");
    let shm = env.store().join("keys.sqlite3-shm");
    for _ in 0..5 {
        let mut c = Command::new("bash");
        c.env_clear()
            .envs(env.base_env())
            .current_dir(env.work())
            .arg("-c")
            .arg(format!(r#"umask {umask}; exec "$0" "$@""#))
            .arg(common::BIN)
            .args(store_args)
            .arg("import")
            .arg(file)
            .arg("--passphrase-file")
            .arg(pf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        // Until the files are seen or the import ends (a hang guard only: the import takes a
        // fraction of a second when idle).
        let start = std::time::Instant::now();
        let mut seen = None;
        while start.elapsed() < common::TIMEOUT {
            if let (Ok(a), Ok(b)) = (std::fs::metadata(&wal), std::fs::metadata(&shm)) {
                seen = Some((
                    a.permissions().mode() & 0o777,
                    b.permissions().mode() & 0o777,
                ));
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(m) = seen {
            // Look again after the kill: the files stay, with the same modes.
            assert_eq!(mode(&wal), m.0);
            assert_eq!(mode(&shm), m.1);
            return m;
        }
    }
    panic!("never saw the store's -wal and -shm files");
}

// ---------------------------------------------------------------------------------------------
// 4. Secret environment variables never reach a child process

const SECRET_VARS: [&str; 7] = [
    "MXKEYS_PASSPHRASE",
    "MXKEYS_STORE_PASSPHRASE",
    "MXKEYS_NEW_PASSPHRASE",
    "MXKEYS_PASSWORD",
    "MXKEYS_ACCESS_TOKEN",
    "MXKEYS_RECOVERY_KEY",
    "MXKEYS_SECURITY_PHRASE",
];

#[test]
fn secret_environment_variables_never_reach_a_command() {
    let env = Env::new();
    let sp = env.store_pass_file();
    let pf = env.pass_file();
    let np = env.write_secret("new-pass.txt", format!("{NEW_PASS}\n"));
    let dump_cmd = |name: &str, secret_file: &Path| {
        format!(
            "sh -c 'env > {}; cat {}'",
            env.path(name).display(),
            secret_file.display()
        )
    };
    let value = |v: &str| format!("env-secret-{}-31f7", v.to_lowercase());
    let with_vars = |mut c: assert_cmd::Command| {
        for v in SECRET_VARS {
            c.env(v, value(v));
        }
        c.env("MXKEYS_VISIBLE_MARKER", "yes");
        c
    };
    // --store-passphrase-command (init, then import) and --passphrase-command (import).
    let mut c = with_vars(env.cmd_no_tty());
    c.arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-command")
        .arg(dump_cmd("env-store-init", &sp))
        .args(["init", "--store-kdf-rounds", "1000"]);
    c.assert().success();
    let mut c = with_vars(env.cmd_no_tty());
    c.arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-command")
        .arg(dump_cmd("env-store", &sp))
        .arg("import")
        .arg(fixture("export/element-three.txt"))
        .arg("--passphrase-command")
        .arg(dump_cmd("env-pass", &pf));
    c.assert().success();
    // --new-passphrase-command (merge and reencrypt).
    let mut c = with_vars(env.cmd_no_tty());
    c.arg("reencrypt")
        .arg(fixture("export/element-three.txt"))
        .arg("-o")
        .arg(env.path("re.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .arg("--new-passphrase-command")
        .arg(dump_cmd("env-new", &np));
    c.assert().success();
    let mut c = with_vars(env.cmd_no_tty());
    c.arg("merge")
        .arg(fixture("export/element-three.txt"))
        .arg(fixture("export/element-one.txt"))
        .arg("-o")
        .arg(env.path("merged.txt"))
        .args(["--rounds", "1000"])
        .arg("--passphrase-command")
        .arg(dump_cmd("env-merge-pass", &pf))
        .arg("--new-passphrase-command")
        .arg(dump_cmd("env-merge-new", &np));
    c.assert().success();
    // The new passphrase came from the command (not from MXKEYS_NEW_PASSPHRASE).
    element::decrypt_file(&env.path("re.txt"), NEW_PASS.as_bytes());
    element::decrypt_file(&env.path("merged.txt"), NEW_PASS.as_bytes());
    for dump in [
        "env-store-init",
        "env-store",
        "env-pass",
        "env-new",
        "env-merge-pass",
        "env-merge-new",
    ] {
        let d = std::fs::read_to_string(env.path(dump)).unwrap();
        assert!(
            d.contains("MXKEYS_VISIBLE_MARKER=yes"),
            "{dump}: the child did not get mxkeys's environment: {d}"
        );
        for v in SECRET_VARS {
            assert!(
                !d.contains(&format!("{v}=")),
                "{dump}: {v} reached the child"
            );
            assert!(
                !d.contains(&value(v)),
                "{dump}: the value of {v} reached the child"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A secret file readable by others gets a warning, for every secret-file flag

#[test]
fn every_secret_file_flag_warns_when_others_can_read_the_file() {
    let env = Env::new();
    env.init_store();
    let rk_text = {
        let rk = env.path("rk-src.txt");
        env.cmd()
            .args(["recovery-key", "generate", "-o"])
            .arg(&rk)
            .assert()
            .success();
        std::fs::read_to_string(rk).unwrap()
    };
    let nowhere = "http://127.0.0.1:9";
    type Build = Box<dyn Fn(&Env, &Path) -> assert_cmd::Command>;
    let sp = env.store_pass_file();
    let pf = env.pass_file();
    // (flag, file content, the command reading it).
    let cases: Vec<(&str, String, Build)> = vec![
        (
            "--passphrase-file",
            format!("{PASS}\n"),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.args(["inspect"]).arg(fixture("export/element-three.txt"));
                c.arg("--passphrase-file").arg(f);
                c
            }),
        ),
        (
            "--new-passphrase-file",
            format!("{NEW_PASS}\n"),
            Box::new({
                let pf = pf.clone();
                move |e: &Env, f: &Path| {
                    let mut c = e.cmd_no_tty();
                    c.arg("reencrypt").arg(fixture("export/element-three.txt"));
                    c.arg("-o")
                        .arg(e.path(&format!("re-{}.txt", rand_suffix())));
                    c.arg("--passphrase-file").arg(&pf);
                    c.arg("--new-passphrase-file").arg(f);
                    c
                }
            }),
        ),
        (
            "--store-passphrase-file",
            format!("{STORE_PASS}\n"),
            Box::new({
                let pf = pf.clone();
                move |e: &Env, f: &Path| {
                    let mut c = e.cmd_no_tty();
                    c.arg("--store").arg(e.store());
                    c.arg("--store-passphrase-file").arg(f);
                    c.arg("export")
                        .arg("-o")
                        .arg(e.path(&format!("x-{}.txt", rand_suffix())));
                    c.args(["--rounds", "1000", "--passphrase-file"]).arg(&pf);
                    c
                }
            }),
        ),
        (
            "--password-file",
            "a-password\n".to_string(),
            Box::new({
                let sp = sp.clone();
                move |e: &Env, f: &Path| {
                    let mut c = e.cmd_no_tty();
                    c.arg("--store")
                        .arg(e.store())
                        .arg("--store-passphrase-file")
                        .arg(&sp);
                    c.args(["login", "--user", "@a:localhost", "--homeserver", nowhere]);
                    c.args(["--attempts", "1", "--password-file"]).arg(f);
                    c
                }
            }),
        ),
        (
            "--access-token-file",
            "syt_a_token_for_the_test\n".to_string(),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.args(["backup", "info", "--homeserver", nowhere, "--attempts", "1"]);
                c.arg("--access-token-file").arg(f);
                c
            }),
        ),
        (
            "--recovery-key-file",
            rk_text.clone(),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.args(["recovery-key", "check", "--offline", "--recovery-key-file"]);
                c.arg(f);
                c
            }),
        ),
        (
            "--security-phrase-file",
            format!("{PHRASE}\n"),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.args([
                    "recovery-key",
                    "check",
                    "--offline",
                    "--security-phrase-file",
                ]);
                c.arg(f);
                c
            }),
        ),
        (
            "MXKEYS_PASSPHRASE_FILE",
            format!("{PASS}\n"),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.arg("inspect").arg(fixture("export/element-three.txt"));
                c.arg("--decrypt").env("MXKEYS_PASSPHRASE_FILE", f);
                c
            }),
        ),
        (
            "MXKEYS_RECOVERY_KEY_FILE",
            rk_text.clone(),
            Box::new(move |e: &Env, f: &Path| {
                let mut c = e.cmd_no_tty();
                c.args(["recovery-key", "check", "--offline"]);
                c.env("MXKEYS_RECOVERY_KEY_FILE", f);
                c
            }),
        ),
    ];
    let mut n = 0;
    for (flag, content, build) in &cases {
        for m in [0o600u32, 0o400, 0o640, 0o604, 0o644, 0o660] {
            let f = env.path(&format!("secret-{}-{m:o}", flag.trim_start_matches('-')));
            std::fs::write(&f, content).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
            let out = build(&env, &f).output().unwrap();
            let e = text(&out.stderr);
            let warned = e.lines().any(|l| {
                l.starts_with("mxkeys: warning:")
                    && l.contains("can be read by other users")
                    && l.contains(&f.display().to_string())
                    && l.contains("chmod 600")
            });
            let should = m & 0o077 != 0;
            assert_eq!(
                warned, should,
                "{flag} with mode {m:o}: warning {warned}, expected {should}: {e}"
            );
            assert!(
                !e.contains(content.trim()),
                "{flag}: the secret was printed: {e}"
            );
            assert!(!e.contains("panicked"), "{e}");
            n += 1;
        }
    }
    println!(
        "warnings: {} secret-file sources x 6 modes = {n} runs",
        cases.len()
    );
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// 6. Zeroization and process exit

/// Compile-time: these secret types zeroize themselves on drop.
#[test]
fn secret_types_zeroize_on_drop() {
    fn assert_zod<T: zeroize::ZeroizeOnDrop>() {}
    assert_zod::<mxkeys::secret::Passphrase>();
    assert_zod::<mxkeys::secret::Key32>();
    assert_zod::<mxkeys::secret::AccessToken>();
    assert_zod::<mxkeys::backup::BackupDecryptionKey>();
    assert_zod::<mxkeys::secret_storage::SecretStorageKey>();
    assert_zod::<zeroize::Zeroizing<Vec<u8>>>();
    // And their Debug forms never show the secret.
    let k = mxkeys::secret::Key32::new([0x41; 32]);
    let bk = mxkeys::backup::BackupDecryptionKey::new(mxkeys::secret::Key32::new([0x41; 32]));
    let sk = mxkeys::secret_storage::SecretStorageKey::new(mxkeys::secret::Key32::new([0x41; 32]));
    let p = mxkeys::secret::Passphrase::from_string("hunter2-debug".into());
    let t = mxkeys::secret::AccessToken::new("syt_debug_token".into());
    let shown = format!("{k:?} {bk:?} {sk:?} {p:?} {t:?}");
    for leak in ["hunter2", "syt_", "65, 65", "41414141", "QUFB"] {
        assert!(!shown.contains(leak), "{shown}");
    }
    let g = megolm::new_group();
    let e = megolm::entry(&g, "!dbg:example.org", 0);
    let s = mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&e).unwrap()).unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains(e["session_key"].as_str().unwrap()),
        "{shown}"
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            v.push(p);
        }
    }
    v.sort();
    v
}

/// The binary never calls `process::exit` (or `abort`, or clap's `Error::exit`), which would
/// skip the destructors that zeroize secrets, except in the second-Ctrl-C path.
#[test]
fn no_process_exit_while_secrets_are_alive() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(files.len() > 20);
    let mut found = Vec::new();
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let mut in_handler = false;
        for (i, line) in body.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("fn install_interrupt_handler") {
                in_handler = true;
            } else if code.starts_with("pub fn ") || code.starts_with("fn ") {
                in_handler = false;
            }
            for pat in [
                "process::exit",
                "process::abort",
                ".exit()",
                "exit(",
                "std::process::exit",
            ] {
                if code.contains(pat) {
                    found.push((rel.clone(), i + 1, in_handler, line.trim().to_string()));
                    break;
                }
            }
        }
    }
    let allowed: Vec<_> = found
        .iter()
        .filter(|(f, _, in_handler, _)| f == "cli/output.rs" && *in_handler)
        .collect();
    let others: Vec<_> = found
        .iter()
        .filter(|(f, _, in_handler, _)| !(f == "cli/output.rs" && *in_handler))
        .collect();
    assert!(
        others.is_empty(),
        "process exits outside the Ctrl-C path: {others:?}"
    );
    assert_eq!(allowed.len(), 1, "{found:?}");
    // main returns an ExitCode rather than exiting.
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    assert!(main.contains("fn main() -> ExitCode"));
}

// ---------------------------------------------------------------------------------------------
// 2b. No secret in any output, backup commands against the real Synapse

#[test]
fn no_secret_in_any_output_at_any_verbosity_online() {
    use common::fault_proxy::FaultProxy;
    let Some(hs) = common::synapse::homeserver() else {
        return;
    };
    let user = hs.register("hygiene");
    // Through a pass-through proxy, to learn every token the server hands mxkeys.
    let proxy = FaultProxy::start(&hs.base);
    let env = Env::for_homeserver(&proxy.url());
    env.init_store();
    let login = env.login(&user).ok();
    let three = fixture("export/element-three.txt");
    let pf = env.pass_file();
    let rk = env.path("rk.txt");
    let create = env
        .smx_p(&["-vvv", "--json", "backup", "create"], &[("-o", &rk)])
        .ok();
    assert_eq!(mode(&rk), 0o600);
    let rk_text = std::fs::read_to_string(&rk).unwrap();
    let wrong_rk = env.path("wrong-rk.txt");
    env.smx_p(&["recovery-key", "generate"], &[("-o", &wrong_rk)])
        .ok();
    let wrong_text = std::fs::read_to_string(&wrong_rk).unwrap();
    let tok = env.token_file("token.txt", &user.token);
    let bad_pw = env.write_secret("bad-password.txt", "not-the-password-7c1\n");

    let mut secrets = common::fixture_session_keys();
    for s in [
        PASS.to_string(),
        common::STORE_PASS.to_string(),
        user.password.clone(),
        user.token.clone(),
        "not-the-password-7c1".into(),
    ] {
        secrets.push(s);
    }
    secrets.extend(recovery_key_forms(&rk_text));
    secrets.extend(recovery_key_forms(&wrong_text));

    let s = |p: &Path| p.display().to_string();
    let (three, pf, rk, wrong_rk, tok, bad_pw) =
        (s(&three), s(&pf), s(&rk), s(&wrong_rk), s(&tok), s(&bad_pw));
    let purl = proxy.url();
    #[rustfmt::skip]
    let cases: Vec<(bool, Vec<String>)> = vec![
        (true, vec!["backup".into(), "info".into()]),
        (true, vec!["backup".into(), "upload".into(), three.clone(), "--passphrase-file".into(), pf.clone(), "--recovery-key-file".into(), rk.clone()]),
        (true, vec!["backup".into(), "upload".into()]),
        (true, vec!["backup".into(), "status".into()]),
        (true, vec!["backup".into(), "download".into(), "--recovery-key-file".into(), rk.clone()]),
        (true, vec!["backup".into(), "download".into(), "-o".into(), "down-{n}.txt".into(), "--passphrase-file".into(), pf.clone(), "--rounds".into(), "1000".into()]),
        (true, vec!["recovery-key".into(), "check".into(), "--recovery-key-file".into(), rk.clone()]),
        (true, vec!["recovery-key".into(), "check".into(), "--recovery-key-file".into(), wrong_rk.clone()]),
        (true, vec!["backup".into(), "upload".into(), three.clone(), "--passphrase-file".into(), pf.clone(), "--recovery-key-file".into(), wrong_rk.clone()]),
        (false, vec!["backup".into(), "info".into(), "--homeserver".into(), purl.clone(), "--access-token-file".into(), tok.clone()]),
        (false, vec!["backup".into(), "download".into(), "--homeserver".into(), purl.clone(), "--access-token-file".into(), tok.clone(), "--recovery-key-file".into(), rk.clone(), "-o".into(), "one-{n}.txt".into(), "--passphrase-file".into(), pf.clone(), "--rounds".into(), "1000".into()]),
        (true, vec!["login".into(), "--user".into(), user.user_id.clone(), "--homeserver".into(), purl.clone(), "--password-file".into(), bad_pw.clone()]),
    ];
    let mut codes = std::collections::BTreeSet::new();
    let mut log = Vec::new();
    let mut n = 0;
    let mut outputs = vec![create.all_output(), login.all_output()];
    for (with_store, args) in &cases {
        for global in [
            &["-v"][..],
            &["-vv"][..],
            &["-vvv"][..],
            &["-vvv", "--json"][..],
        ] {
            n += 1;
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{n}", &n.to_string()))
                .collect();
            let mut c = if *with_store { env.scmd() } else { env.cmd() };
            c.args(global).args(&args);
            let r = env.run(&mut c);
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
            codes.insert(r.code);
            log.push(run_line(r.code, &r.what, &r.stderr));
            outputs.push(r.all_output());
        }
    }
    // A last login (a new token) and the logout that revokes it.
    outputs.push(env.login_with(&user, &["-vvv"], &[]).ok().all_output());
    // Deleting a version (one made for the purpose).
    let doomed = hs.api(&user).create_version(
        &mxkeys::backup::BackupDecryptionKey::random()
            .unwrap()
            .public_key_base64(),
    );
    for global in [&["-vvv"][..], &["-vvv", "--json"][..]] {
        let mut c = env.scmd();
        c.args(global)
            .args(["backup", "delete", "--version", &doomed, "--yes"]);
        let r = env.run(&mut c);
        codes.insert(r.code);
        log.push(run_line(r.code, &r.what, &r.stderr));
        outputs.push(r.all_output());
    }
    outputs.push(env.smx(&["-vvv", "--json", "logout"]).ok().all_output());
    // Every access token the server issued through the proxy.
    let mut tokens = 0;
    for seen in proxy.seen() {
        if seen.method == "POST" && seen.path.ends_with("/login") && seen.status == 200 {
            let v: Value = serde_json::from_slice(&seen.response).unwrap();
            secrets.push(v["access_token"].as_str().unwrap().to_string());
            tokens += 1;
        }
    }
    assert!(
        tokens >= 2,
        "only {tokens} logins were seen through the proxy"
    );
    for (i, o) in outputs.iter().enumerate() {
        common::assert_no_secrets(o, &secrets, &format!("output {i}"));
    }
    for (p, bytes) in common::all_bytes_under(&env.home())
        .into_iter()
        .chain(common::all_bytes_under(&env.store()))
    {
        for sec in &secrets {
            assert!(
                !common::contains_bytes(&bytes, sec.as_bytes()),
                "{} holds a secret in the clear",
                p.display()
            );
        }
    }
    assert_codes_seen(&codes, &[0, 12, 14, 16], &log);
    println!("online outputs: {n} runs, exit codes {codes:?}, no secret anywhere");
}
