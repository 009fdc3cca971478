//! Where secrets come from (files, descriptors, commands, environment), how they are read
//! (one trailing newline stripped, nothing else), and that they never show up in any output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Env, PASS, STORE_PASS, assert_error, element, fixture, one_json, text};
use serde_json::{Value, json};

/// element-one.json's exact bytes.
fn element_one_plaintext() -> Vec<u8> {
    std::fs::read(fixture("export/plaintext/element-one.json")).unwrap()
}

/// Check that `out` succeeded and wrote element-one's plaintext to `work/out.json`.
fn assert_decrypted(env: &Env, out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(env.path("out.json")).unwrap(),
        element_one_plaintext()
    );
}

fn decrypt_args(env: &Env) -> Vec<String> {
    vec![
        "decrypt".into(),
        fixture("export/element-one.txt").display().to_string(),
        "-o".into(),
        env.path("out.json").display().to_string(),
    ]
}

/// Single-quote a path for bash.
fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn passphrase_file() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    assert!(
        !text(&out.stderr).contains("warning"),
        "a 0600 file gives no warning: {}",
        text(&out.stderr)
    );
}

#[test]
fn passphrase_fd() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .bash(&format!(r#"exec "$0" "$@" 3<{}"#, q(&pf)))
        .args(decrypt_args(&env))
        .args(["--passphrase-fd", "3"])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn passphrase_command() {
    let env = Env::new();
    env.pass_file();
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .args(["--passphrase-command", "cat pass.txt"])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn passphrase_command_is_split_into_words_without_a_shell() {
    let env = Env::new();
    // quoted words keep their spaces; `$HOME` would expand in a shell but not here
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .args([
            "--passphrase-command",
            "printf '%s' 'correct horse battery staple'",
        ])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .args(["--force", "--passphrase-command", "echo $HOME"])
        .output()
        .unwrap();
    // "$HOME" is passed literally: the wrong passphrase
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));
}

#[test]
fn passphrase_file_from_environment() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE_FILE", &pf)
        .args(decrypt_args(&env))
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn passphrase_from_environment() {
    let env = Env::new();
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", PASS)
        .args(decrypt_args(&env))
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn flags_win_over_the_environment_and_file_over_value() {
    let env = Env::new();
    let pf = env.pass_file();
    let wrong = env.write_secret("wrong.txt", "wrong");
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", "wrong")
        .env("MXKEYS_PASSPHRASE_FILE", &wrong)
        .args(decrypt_args(&env))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    std::fs::remove_file(env.path("out.json")).unwrap();
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", "wrong")
        .env("MXKEYS_PASSPHRASE_FILE", &pf)
        .args(decrypt_args(&env))
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn passphrase_file_dash_reads_stdin_when_stdin_is_not_the_data() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .args(["--passphrase-file", "-"])
        .write_stdin(format!("{PASS}\n"))
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn passphrase_file_dash_is_refused_when_stdin_is_the_data() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["decrypt", "-", "-o", "out.json", "--passphrase-file", "-"])
        .pipe_stdin(fixture("export/element-one.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "stdin cannot carry both the data and the export passphrase",
        "--passphrase-fd",
    );
    assert!(!env.path("out.json").exists());
}

#[test]
fn passphrase_file_dash_is_refused_for_import_from_stdin() {
    let env = Env::new();
    env.init_store();
    let out = env
        .scmd()
        .args(["import", "-", "--passphrase-file", "-"])
        .pipe_stdin(fixture("export/element-one.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert_error(&out, 2, "stdin cannot carry both", "--passphrase-fd");
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn passphrase_file_dash_is_refused_for_encrypt_from_stdin() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "encrypt",
            "-",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
            "-",
        ])
        .pipe_stdin(fixture("export/plaintext/element-one.json"))
        .unwrap()
        .output()
        .unwrap();
    assert_error(&out, 2, "stdin cannot carry both", "--passphrase-fd");
    assert!(!env.path("out.txt").exists());
}

#[test]
fn passphrase_fd_0_is_refused_when_stdin_is_the_data() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["decrypt", "-", "-o", "out.json", "--passphrase-fd", "0"])
        .pipe_stdin(fixture("export/element-one.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "stdin cannot carry both the data and the export passphrase",
        "--passphrase-fd",
    );
    assert!(!env.path("out.json").exists());
}

#[test]
fn passphrase_fd_0_reads_stdin_when_stdin_is_not_the_data() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .args(["--passphrase-fd", "0"])
        .write_stdin(format!("{PASS}\n"))
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn stdin_serves_one_secret_only() {
    // Two secrets from stdin: the first would swallow both. Refused as a usage error.
    let env = Env::new();
    env.init_store();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .args(["--store-passphrase-file", "-", "import"])
        .arg(fixture("export/element-one.txt"))
        .args(["--passphrase-file", "-"])
        .write_stdin(format!("{STORE_PASS}\n{PASS}\n"))
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "stdin is already used for the store passphrase; it cannot also carry the export passphrase",
        "--passphrase-fd",
    );
    assert_eq!(env.list_json()["sessions"], 0);
    // the same for the old and new passphrases of reencrypt
    let out = env
        .cmd()
        .arg("reencrypt")
        .arg(fixture("export/element-one.txt"))
        .args([
            "-o",
            "r.txt",
            "--passphrase-file",
            "-",
            "--new-passphrase-fd",
            "0",
        ])
        .write_stdin(format!("{PASS}\nnew\n"))
        .output()
        .unwrap();
    assert_error(&out, 2, "stdin is already used", "--new-passphrase-fd");
    assert!(!env.path("r.txt").exists());
}

#[test]
fn data_on_stdin_with_passphrase_on_a_descriptor() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .bash(&format!(r#"exec "$0" "$@" 3<{}"#, q(&pf)))
        .args(["decrypt", "-", "-o", "out.json", "--passphrase-fd", "3"])
        .pipe_stdin(fixture("export/element-one.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

/// A file encrypted (independently) under the exact passphrase bytes `pass`.
fn file_for(env: &Env, pass: &[u8]) -> PathBuf {
    env.write(
        "custom.txt",
        element::encrypt(&element_one_plaintext(), pass, 1000),
    )
}

fn decrypt_with_file(env: &Env, file: &Path, content: &[u8]) -> Output {
    let pf = env.write_secret("secret.txt", content);
    let _ = std::fs::remove_file(env.path("out.json"));
    env.cmd()
        .arg("decrypt")
        .arg(file)
        .args(["-o", "out.json", "--passphrase-file"])
        .arg(pf)
        .output()
        .unwrap()
}

#[test]
fn exactly_one_trailing_newline_is_stripped() {
    let env = Env::new();
    let f = file_for(&env, b"pw\n");
    assert_decrypted(&env, &decrypt_with_file(&env, &f, b"pw\n\n"));
    let out = decrypt_with_file(&env, &f, b"pw\n");
    assert_eq!(out.status.code(), Some(12), "pw\\n means \"pw\"");
    let out = decrypt_with_file(&env, &f, b"pw");
    assert_eq!(out.status.code(), Some(12));
}

#[test]
fn crlf_counts_as_the_one_newline() {
    let env = Env::new();
    let f = file_for(&env, b"pw");
    assert_decrypted(&env, &decrypt_with_file(&env, &f, b"pw\r\n"));
    assert_decrypted(&env, &decrypt_with_file(&env, &f, b"pw\n"));
    assert_decrypted(&env, &decrypt_with_file(&env, &f, b"pw"));
    let out = decrypt_with_file(&env, &f, b"pw\r\n\r\n");
    assert_eq!(out.status.code(), Some(12));
}

#[test]
fn spaces_are_part_of_the_passphrase() {
    let env = Env::new();
    let f = file_for(&env, b" pw \t");
    assert_decrypted(&env, &decrypt_with_file(&env, &f, b" pw \t\n"));
    let out = decrypt_with_file(&env, &f, b"pw\n");
    assert_eq!(out.status.code(), Some(12));
}

#[test]
fn descriptor_and_command_strip_one_newline_too() {
    let env = Env::new();
    let f = file_for(&env, b"pw\n");
    let pf = env.write_secret("two-newlines.txt", b"pw\n\n");
    let out = env
        .bash(&format!(r#"exec "$0" "$@" 3<{}"#, q(&pf)))
        .arg("decrypt")
        .arg(&f)
        .args(["-o", "out.json", "--passphrase-fd", "3"])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    std::fs::remove_file(env.path("out.json")).unwrap();
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(&f)
        .args(["-o", "out.json", "--passphrase-command", r"printf 'pw\n\n'"])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn empty_passphrase_for_a_new_file_needs_the_insecure_flag() {
    let env = Env::new();
    let empty = env.write_secret("empty.txt", "\n");
    let input = fixture("export/plaintext/element-one.json");
    let out = env
        .cmd()
        .arg("encrypt")
        .arg(&input)
        .args(["-o", "e.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "refusing to encrypt with an empty passphrase",
        "--insecure-empty-passphrase",
    );
    assert!(!env.path("e.txt").exists());
    env.cmd()
        .arg("encrypt")
        .arg(&input)
        .args([
            "-o",
            "e.txt",
            "--rounds",
            "1000",
            "--insecure-empty-passphrase",
            "--passphrase-file",
        ])
        .arg(&empty)
        .assert()
        .success();
    // reading a file with an empty passphrase needs no flag
    let out = env
        .cmd()
        .args(["decrypt", "e.txt", "-o", "out.json", "--passphrase-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = element::decrypt_file(&env.path("e.txt"), b"");
    assert!(!o.plaintext.is_empty());
}

#[test]
fn empty_new_passphrase_for_reencrypt_needs_the_insecure_flag() {
    let env = Env::new();
    let pf = env.pass_file();
    let empty = env.write_secret("empty.txt", "");
    let out = env
        .cmd()
        .arg("reencrypt")
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "r.txt", "--passphrase-file"])
        .arg(&pf)
        .arg("--new-passphrase-file")
        .arg(&empty)
        .output()
        .unwrap();
    assert_error(&out, 2, "empty passphrase", "--insecure-empty-passphrase");
    assert!(!env.path("r.txt").exists());
}

#[test]
fn empty_export_passphrase_from_the_environment_reads_an_empty_passphrase_file() {
    let env = Env::new();
    let f = file_for(&env, b"");
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", "")
        .arg("decrypt")
        .arg(&f)
        .args(["-o", "out.json"])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
}

#[test]
fn empty_store_passphrase_at_init_is_refused_and_the_hint_names_init_flags() {
    let env = Env::new();
    let empty = env.write_secret("empty.txt", "\n");
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&empty)
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    let e = assert_error(
        &out,
        2,
        "empty passphrase",
        "--insecure-no-store-passphrase",
    );
    assert!(
        !e.contains("--insecure-empty-passphrase"),
        "init has no --insecure-empty-passphrase flag: {e}"
    );
    assert!(!env.store().join("keys.sqlite3").exists());
}

/// Init with the store passphrase from one source, then import unlocking it from another.
fn store_sources(init: impl Fn(&Env) -> Output, unlock: impl Fn(&Env) -> assert_cmd::Command) {
    let env = Env::new();
    let out = init(&env);
    assert!(out.status.success(), "init: {}", text(&out.stderr));
    let pf = env.pass_file();
    let out = unlock(&env)
        .arg("--store")
        .arg(env.store())
        .args(["--json", "import"])
        .arg(fixture("export/element-one.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    // a wrong one is refused, so the passphrase really was set
    let bad = env.write_secret("bad.txt", "bad");
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&bad)
        .arg("import")
        .arg(fixture("export/element-one.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
}

fn init_cmd(env: &Env, c: &mut assert_cmd::Command) -> Output {
    c.arg("--store")
        .arg(env.store())
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap()
}

#[test]
fn store_passphrase_fd_and_command() {
    store_sources(
        |env| {
            let sp = env.store_pass_file();
            init_cmd(
                env,
                env.bash(&format!(r#"exec "$0" "$@" 4<{}"#, q(&sp)))
                    .args(["--store-passphrase-fd", "4"]),
            )
        },
        |env| {
            env.store_pass_file();
            let mut c = env.cmd();
            c.args(["--store-passphrase-command", "cat store-pass.txt"]);
            c
        },
    );
}

#[test]
fn store_passphrase_environment_file_and_value() {
    store_sources(
        |env| {
            let sp = env.store_pass_file();
            init_cmd(env, env.cmd().env("MXKEYS_STORE_PASSPHRASE_FILE", &sp))
        },
        |env| {
            let mut c = env.cmd();
            c.env("MXKEYS_STORE_PASSPHRASE", STORE_PASS);
            c
        },
    );
}

#[test]
fn store_passphrase_value_and_stdin() {
    store_sources(
        |env| init_cmd(env, env.cmd().env("MXKEYS_STORE_PASSPHRASE", STORE_PASS)),
        |env| {
            let mut c = env.cmd();
            c.args(["--store-passphrase-file", "-"])
                .write_stdin(format!("{STORE_PASS}\n"));
            c
        },
    );
}

#[test]
fn store_and_export_passphrases_from_the_environment_together() {
    let env = Env::new();
    env.cmd()
        .env("MXKEYS_STORE_PASSPHRASE", STORE_PASS)
        .arg("--store")
        .arg(env.store())
        .args(["init", "--store-kdf-rounds", "1000"])
        .assert()
        .success();
    env.cmd()
        .env("MXKEYS_STORE_PASSPHRASE", STORE_PASS)
        .env("MXKEYS_PASSPHRASE", PASS)
        .env("MXKEYS_STORE", env.store())
        .arg("import")
        .arg(fixture("export/element-three.txt"))
        .assert()
        .success();
    assert_eq!(env.list_json()["sessions"], 3);
}

#[test]
fn passphrase_command_does_not_see_secret_environment_variables() {
    let env = Env::new();
    env.pass_file();
    let env_secret = "env-Secret-Value-0b7d";
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", env_secret)
        .env("MXKEYS_STORE_PASSPHRASE", env_secret)
        .env("MXKEYS_NEW_PASSPHRASE", env_secret)
        .env("MXKEYS_VISIBLE_MARKER", "yes")
        .args(decrypt_args(&env))
        .args([
            "--passphrase-command",
            "sh -c 'env > envdump; cat pass.txt'",
        ])
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    let dump = std::fs::read_to_string(env.path("envdump")).unwrap();
    assert!(
        dump.contains("MXKEYS_VISIBLE_MARKER=yes"),
        "the command ran with mxkeys's environment: {dump}"
    );
    assert!(!dump.contains("MXKEYS_PASSPHRASE"), "{dump}");
    assert!(!dump.contains("MXKEYS_STORE_PASSPHRASE"), "{dump}");
    assert!(!dump.contains(env_secret), "{dump}");
}

#[test]
fn store_passphrase_command_does_not_see_secret_environment_variables() {
    let env = Env::new();
    env.store_pass_file();
    let env_secret = "env-Secret-Value-77aa";
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", env_secret)
        .env("MXKEYS_STORE_PASSPHRASE", env_secret)
        .arg("--store")
        .arg(env.store())
        .args([
            "--store-passphrase-command",
            "sh -c 'env > envdump; cat store-pass.txt'",
            "init",
            "--store-kdf-rounds",
            "1000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump = std::fs::read_to_string(env.path("envdump")).unwrap();
    assert!(!dump.contains(env_secret), "{dump}");
    assert!(!dump.contains("MXKEYS_PASSPHRASE"), "{dump}");
}

#[test]
fn group_readable_secret_file_gives_a_warning() {
    let env = Env::new();
    let pf = env.pass_file();
    std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = env
        .cmd()
        .args(decrypt_args(&env))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    let e = text(&out.stderr);
    assert!(e.contains("mxkeys: warning:"), "{e}");
    assert!(e.contains("can be read by other users"), "{e}");
    assert!(e.contains("chmod 600"), "{e}");
    assert!(!e.contains(PASS), "{e}");
}

#[test]
fn world_readable_store_passphrase_file_gives_a_warning() {
    let env = Env::new();
    let sp = env.store_pass_file();
    std::fs::set_permissions(&sp, std::fs::Permissions::from_mode(0o604)).unwrap();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&sp)
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("store passphrase"), "{e}");
    assert!(e.contains("can be read by other users"), "{e}");
}

#[test]
fn quiet_suppresses_the_warning_but_not_errors() {
    let env = Env::new();
    let pf = env.pass_file();
    std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .cmd()
        .arg("-q")
        .args(decrypt_args(&env))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_decrypted(&env, &out);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

/// Every secret the hygiene test uses.
fn hygiene_secrets(extra_keys: &[String]) -> Vec<String> {
    let mut s = common::fixture_session_keys();
    s.extend_from_slice(extra_keys);
    s.push(PASS.into());
    s.push(STORE_PASS.into());
    s.push("correct horse battery staplex".into());
    s.push("wrong-store-Passphrase-31".into());
    s
}

#[test]
fn no_secret_in_any_output_at_any_verbosity() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let sp = env.store_pass_file();
    let badp = env.write_secret("badp.txt", "correct horse battery staplex\n");
    let bads = env.write_secret("bads.txt", "wrong-store-Passphrase-31\n");
    let three = fixture("export/element-three.txt");

    // entries that fail validation in ways that touch the key
    let mut entries = common::read_sessions(&fixture("export/plaintext/element-three.json"));
    let real_key = entries[0]["session_key"].as_str().unwrap().to_string();
    let mut mismatch = entries[0].clone();
    mismatch["session_id"] = entries[1]["session_id"].clone();
    // a key whose Ed25519 part is not a curve point (found with the library's own check)
    let bad_point = {
        use base64::Engine;
        use mxkeys::session::{EntryError, ExportedSession, SessionError};
        let e = base64::engine::general_purpose::STANDARD_NO_PAD;
        let raw = e
            .decode(entries[1]["session_key"].as_str().unwrap())
            .unwrap();
        (1u8..=255)
            .find_map(|v| {
                let mut b = raw.clone();
                b[133..165].fill(v);
                let mut entry = entries[1].clone();
                entry["session_key"] = e.encode(&b).into();
                match ExportedSession::from_json(&serde_json::to_vec(&entry).unwrap()) {
                    Err(EntryError::Invalid(SessionError::KeyInvalid(_))) => Some(entry),
                    _ => None,
                }
            })
            .unwrap()
    };

    let mut short = entries[2].clone();
    short["session_key"] = real_key[..120].into();
    let extra_keys = vec![
        bad_point["session_key"].as_str().unwrap().to_string(),
        real_key[..120].to_string(),
    ];
    entries.extend([mismatch, bad_point, short]);
    let partial = env.write(
        "partial.txt",
        element::encrypt(
            &serde_json::to_vec(&entries).unwrap(),
            PASS.as_bytes(),
            1000,
        ),
    );
    let broken_json = format!(r#"[{{"session_key": "{real_key}", oops}}]"#);
    let broken = env.write(
        "broken.txt",
        element::encrypt(broken_json.as_bytes(), PASS.as_bytes(), 1000),
    );
    let plain_json = env.write("plain.json", serde_json::to_vec(&entries).unwrap());
    let t = std::fs::read_to_string(&three).unwrap();
    let damaged = env.write("damaged.txt", t.replace('A', "*"));

    let secrets = hygiene_secrets(&extra_keys);
    let s = |p: &Path| p.display().to_string();
    let store = s(&env.store());
    #[rustfmt::skip]
    let cases: Vec<Vec<String>> = vec![
        vec!["--store-passphrase-file".into(), s(&sp), "import".into(), s(&three), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "import".into(), s(&partial), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "import".into(), s(&three), "--passphrase-file".into(), s(&badp)],
        vec!["--store-passphrase-file".into(), s(&bads), "import".into(), s(&three), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "import".into(), s(&broken), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "import".into(), s(&damaged), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "export".into(), "-o".into(), "exp-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&sp), "export".into(), "-o".into(), "-".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), s(&pf)],
        vec!["--store-passphrase-file".into(), s(&bads), "export".into(), "-o".into(), "x-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), s(&pf)],
        vec!["list".into()],
        vec!["inspect".into(), s(&three)],
        vec!["inspect".into(), s(&partial), "--passphrase-file".into(), s(&pf)],
        vec!["inspect".into(), s(&three), "--passphrase-file".into(), s(&badp)],
        vec!["inspect".into(), s(&broken), "--passphrase-file".into(), s(&pf)],
        vec!["decrypt".into(), s(&three), "-o".into(), "dec-{n}.json".into(), "--passphrase-file".into(), s(&pf)],
        vec!["decrypt".into(), s(&three), "-o".into(), "dec-x.json".into(), "--passphrase-file".into(), s(&badp)],
        vec!["decrypt".into(), s(&broken), "-o".into(), "dec-y.json".into(), "--passphrase-file".into(), s(&pf)],
        vec!["encrypt".into(), s(&plain_json), "-o".into(), "enc-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), s(&pf)],
        vec!["merge".into(), s(&three), s(&partial), "-o".into(), "m-{n}.txt".into(), "--rounds".into(), "1000".into(), "--passphrase-file".into(), s(&pf)],
        vec!["merge".into(), s(&three), s(&broken), "-o".into(), "m-x.txt".into(), "--passphrase-file".into(), s(&pf)],
        vec!["reencrypt".into(), s(&three), "-o".into(), "r-{n}.txt".into(), "--passphrase-file".into(), s(&pf)],
        vec!["reencrypt".into(), s(&three), "-o".into(), "r-x.txt".into(), "--passphrase-file".into(), s(&badp)],
    ];
    let mut codes = std::collections::BTreeSet::new();
    let mut n = 0;
    for args in &cases {
        for global in [&["-vvv"][..], &["--json"][..], &["-vvv", "--json"][..]] {
            n += 1;
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{n}", &n.to_string()))
                .collect();
            let out = env
                .cmd()
                .arg("--store")
                .arg(&store)
                .args(global)
                .args(&args)
                .output()
                .unwrap();
            let what = format!("{global:?} {args:?}");
            assert!(!text(&out.stderr).contains("panicked"), "{what}");
            codes.insert(out.status.code().unwrap());
            // stdout of export -o - is the armored file; everything else must be clean
            common::assert_no_secrets(&text(&out.stdout), &secrets, &format!("stdout of {what}"));
            common::assert_no_secrets(&text(&out.stderr), &secrets, &format!("stderr of {what}"));
        }
    }
    // the battery covered success, partial, wrong secrets and damaged input
    for c in [0, 3, 12, 13] {
        assert!(codes.contains(&c), "no case exited {c}: {codes:?}");
    }
}

#[test]
fn environment_passphrase_is_never_echoed() {
    let env = Env::new();
    let secret = "echo-Me-Not-58e1";
    let out = env
        .cmd()
        .env("MXKEYS_PASSPHRASE", secret)
        .args(["-vvv", "decrypt"])
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "out.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(!text(&out.stderr).contains(secret));
    assert!(!text(&out.stdout).contains(secret));
}

#[test]
fn json_warnings_are_json_lines() {
    let env = Env::new();
    let pf = env.pass_file();
    std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .cmd()
        .args(["--json", "encrypt"])
        .arg(fixture("export/plaintext/element-one.json"))
        .args(["-o", "e.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut kinds = Vec::new();
    for line in text(&out.stderr).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message_type"], "warning", "{v}");
        kinds.push(v["message"].as_str().unwrap().to_string());
    }
    assert!(
        kinds.iter().any(|m| m.contains("below the 100000")),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|m| m.contains("other users")), "{kinds:?}");
    let r = common::one_json(&out);
    assert_eq!(r["sessions"], 1);
    assert_eq!(r["rounds"], json!(1000));
}

/// `export -o NAME --passphrase-file PASS` from a store holding element-three.
fn export_with(env: &Env, json: bool, name: &str, pass: &Path) -> Output {
    let mut c = env.scmd();
    if json {
        c.arg("--json");
    }
    c.args([
        "export",
        "-o",
        name,
        "--rounds",
        "1000",
        "--passphrase-file",
    ])
    .arg(pass)
    .output()
    .unwrap()
}

/// A weak new passphrase from a file is used, with one warning that never shows it; `--json`
/// reports its score. A strong one passes without a word.
#[test]
fn weak_new_passphrases_from_files_are_used_with_a_warning() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let weak = env.write_secret("weak.txt", "hunter22\n");
    let out = export_with(&env, true, "weak-out.txt", &weak);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = one_json(&out);
    assert_eq!(report["passphrase_strength"]["weak"], true);
    assert!(report["passphrase_strength"]["score"].as_u64().unwrap() < 3);
    let stderr = text(&out.stderr);
    let warnings: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["message"].as_str().unwrap().contains("is weak"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("strength "),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter"), "{stderr}");
    // The file was written under the weak passphrase all the same.
    let opened = element::decrypt_file(&env.path("weak-out.txt"), b"hunter22");
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&opened.plaintext)
            .unwrap()
            .len(),
        3
    );

    // Human output: one plain warning line.
    let out = export_with(&env, false, "weak-out2.txt", &weak);
    let stderr = text(&out.stderr);
    let weak_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("is weak")).collect();
    assert_eq!(weak_lines.len(), 1, "{stderr}");
    assert!(
        weak_lines[0].starts_with("mxkeys: warning: the export passphrase is weak (strength "),
        "{stderr}"
    );

    let strong = env.write_secret("strong.txt", "violet-anchor-88-marmalade-tundra\n");
    let out = export_with(&env, true, "strong-out.txt", &strong);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        one_json(&out)["passphrase_strength"],
        json!({"score": 4, "weak": false})
    );
    assert!(
        !text(&out.stderr).contains("is weak"),
        "{}",
        text(&out.stderr)
    );
}

/// `init` scores the new store passphrase the same way.
#[test]
fn init_reports_the_store_passphrase_strength() {
    let env = Env::new();
    let weak = env.write_secret("weak-store.txt", "password1\n");
    let out = env
        .scmd_with_pass(&weak)
        .args(["--json", "init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(one_json(&out)["passphrase_strength"]["weak"], true);
    assert!(text(&out.stderr).contains("the store passphrase is weak"));
    assert!(!text(&out.stderr).contains("password1"));
}
