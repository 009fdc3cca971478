//! Damaged and hostile files, and every exit code the CLI contract names: one test per case,
//! each checking the code, an empty stdout, and the message and hint on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Env, PASS, assert_error, element, fixture, text};
use serde_json::Value;

const INVALID: &str = "invalid export file";
const NOT_EXPORT: &str = "the file decrypted but its content is not a key export";
const WRONG: &str = "wrong passphrase, or the file was modified";
const DAMAGED_HINT: &str = "the file is damaged";

/// `mxkeys decrypt FILE -o out.json --passphrase-file pass.txt [extra]`.
fn decrypt(env: &Env, file: &Path, extra: &[&str]) -> Output {
    let pf = env.pass_file();
    env.cmd()
        .arg("decrypt")
        .arg(file)
        .arg("-o")
        .arg(env.path("out.json"))
        .arg("--passphrase-file")
        .arg(pf)
        .args(extra)
        .output()
        .unwrap()
}

/// Decrypt must fail with `code`, `message` and `hint`, and leave no output file.
fn decrypt_fails(env: &Env, file: &Path, code: i32, message: &str, hint: &str) -> String {
    let out = decrypt(env, file, &[]);
    let e = assert_error(&out, code, message, hint);
    assert!(!env.path("out.json").exists(), "output left behind");
    e
}

/// element-three.txt as text.
fn element_three() -> String {
    std::fs::read_to_string(fixture("export/element-three.txt")).unwrap()
}

/// A file mxkeys never wrote, encrypted by the independent encryptor around `pt`.
fn sealed_file(env: &Env, name: &str, pt: &[u8]) -> PathBuf {
    env.write(name, element::encrypt(pt, PASS.as_bytes(), 1000))
}

/// A file with a chosen version byte and round count (MAC valid).
fn file_with_header(env: &Env, version: u8, rounds: u32) -> PathBuf {
    let mut iv = element::random::<16>();
    iv[8] &= 0x7f;
    // derive() needs at least one round; the MAC is then valid only for rounds >= 1
    let body = element::seal_with(
        b"[]",
        PASS.as_bytes(),
        version,
        element::random(),
        iv,
        rounds.clamp(1, 2000),
    );
    let mut body = body;
    body[33..37].copy_from_slice(&rounds.to_be_bytes());
    env.write(
        &format!("v{version}-r{rounds}.txt"),
        element::armor(&body, 128),
    )
}

#[test]
fn wrong_passphrase_exits_12() {
    let env = Env::new();
    let pf = env.write_secret("bad.txt", "correct horse battery staplex\n");
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .arg("-o")
        .arg(env.path("out.json"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    let e = assert_error(&out, 12, WRONG, "check the passphrase");
    assert!(e.contains("element-one.txt"), "names the file: {e}");
    assert!(!env.path("out.json").exists());
}

#[test]
fn wrong_passphrase_on_import_exits_12() {
    let env = Env::new();
    env.init_store();
    let pf = env.write_secret("bad.txt", "nope");
    let out = env
        .scmd()
        .arg("import")
        .arg(fixture("export/wasm-one.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 12, WRONG, "check the passphrase");
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn modified_file_exits_12() {
    // A changed ciphertext byte looks like a wrong passphrase: the format cannot tell.
    let env = Env::new();
    let mut body = element::unarmor(element_three().as_bytes());
    body[100] ^= 1;
    let f = env.write("modified.txt", element::armor(&body, 128));
    decrypt_fails(&env, &f, 12, WRONG, "the file was damaged or altered");
}

#[test]
fn missing_footer_exits_13() {
    let env = Env::new();
    let t = element_three();
    let cut = t.trim_end().rsplit_once('\n').unwrap().0.to_string() + "\n";
    assert!(!cut.contains("END MEGOLM"));
    let f = env.write("nofooter.txt", cut);
    let e = decrypt_fails(&env, &f, 13, INVALID, "the file is incomplete");
    assert!(e.contains("footer"), "{e}");
}

#[test]
fn truncated_in_the_middle_exits_13() {
    let env = Env::new();
    let t = element_three();
    let f = env.write("half.txt", &t[..t.len() / 2]);
    decrypt_fails(&env, &f, 13, INVALID, "the file is incomplete");
}

#[test]
fn truncated_base64_group_exits_13() {
    // 4n+1 base64 characters cannot come from any byte string.
    let env = Env::new();
    use base64::Engine;
    let body = element::unarmor(element_three().as_bytes());
    let mut b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&body);
    while b64.len() % 4 != 1 {
        b64.pop();
    }
    let f = env.write(
        "group.txt",
        format!("{}\n{b64}\n{}\n", element::HEADER, element::FOOTER),
    );
    let e = decrypt_fails(&env, &f, 13, INVALID, "the file is incomplete");
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn bad_base64_character_exits_13() {
    let env = Env::new();
    let t = element_three();
    let mut lines: Vec<String> = t.lines().map(String::from).collect();
    lines[2].replace_range(10..11, "*");
    let f = env.write("star.txt", lines.join("\n") + "\n");
    let e = decrypt_fails(&env, &f, 13, INVALID, DAMAGED_HINT);
    assert!(e.contains("bad base64 at line 3"), "{e}");
    assert!(e.contains("'*'"), "{e}");
}

#[test]
fn nul_byte_exits_13() {
    let env = Env::new();
    let t = element_three();
    let mut bytes = t.into_bytes();
    let pos = bytes.iter().position(|b| *b == b'\n').unwrap() + 20;
    bytes.insert(pos, 0);
    let f = env.write("nul.txt", bytes);
    let e = decrypt_fails(&env, &f, 13, INVALID, DAMAGED_HINT);
    assert!(e.contains("NUL"), "{e}");
}

#[test]
fn utf16_file_exits_13() {
    let env = Env::new();
    let mut bytes = vec![0xff, 0xfe];
    for u in element_three().encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let f = env.write("utf16.txt", bytes);
    let e = decrypt_fails(&env, &f, 13, INVALID, "a key export starts with the line");
    assert!(e.contains("UTF-16"), "{e}");
}

#[test]
fn missing_header_exits_13() {
    let env = Env::new();
    let f = env.write("plain.json", "[{\"not\": \"an export\"}]\n");
    let e = decrypt_fails(&env, &f, 13, INVALID, "-----BEGIN MEGOLM SESSION DATA-----");
    assert!(e.contains("header"), "{e}");
}

#[test]
fn two_exports_in_one_file_exit_13() {
    let env = Env::new();
    let t = element_three();
    let f = env.write(
        "two.txt",
        format!("{}{}", t, t).replace(
            &format!("{}\n{}", element::FOOTER, element::HEADER),
            element::HEADER,
        ),
    );
    let e = decrypt_fails(&env, &f, 13, INVALID, "split the file");
    assert!(e.contains("second header"), "{e}");
}

#[test]
fn empty_file_exits_13() {
    let env = Env::new();
    let f = env.write("empty.txt", "");
    decrypt_fails(&env, &f, 13, INVALID, "a key export starts with the line");
}

fn version_is_refused(version: u8) {
    let env = Env::new();
    let f = file_with_header(&env, version, 1000);
    let e = decrypt_fails(&env, &f, 13, INVALID, DAMAGED_HINT);
    assert!(
        e.contains(&format!("unsupported format version {version}")),
        "{e}"
    );
}

#[test]
fn version_0_exits_13() {
    version_is_refused(0);
}

#[test]
fn version_2_exits_13() {
    version_is_refused(2);
}

#[test]
fn version_255_exits_13() {
    version_is_refused(255);
}

#[test]
fn zero_rounds_exits_13() {
    let env = Env::new();
    let f = file_with_header(&env, 1, 0);
    let e = decrypt_fails(&env, &f, 13, INVALID, DAMAGED_HINT);
    assert!(e.contains("0 PBKDF2 rounds"), "{e}");
}

#[test]
fn rounds_above_max_rounds_exit_13_and_name_the_flag() {
    let env = Env::new();
    let f = file_with_header(&env, 1, 2000);
    let out = decrypt(&env, &f, &["--max-rounds", "1000"]);
    let e = assert_error(&out, 13, INVALID, "--max-rounds");
    assert!(e.contains("2000 PBKDF2 rounds"), "{e}");
    assert!(e.contains("limit of 1000"), "{e}");
    // raising the cap lets it through
    let out = decrypt(&env, &f, &["--max-rounds", "2000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(env.path("out.json")).unwrap(), b"[]");
}

#[test]
fn max_rounds_applies_to_import_and_inspect() {
    let env = Env::new();
    env.init_store();
    let f = file_with_header(&env, 1, 2000);
    let pf = env.pass_file();
    let out = env
        .scmd()
        .arg("import")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(&pf)
        .args(["--max-rounds", "1999"])
        .output()
        .unwrap();
    assert_error(&out, 13, "more than the limit of 1999", "--max-rounds");
    let out = env
        .cmd()
        .arg("inspect")
        .arg(&f)
        .args(["--max-rounds", "1999"])
        .output()
        .unwrap();
    assert_error(&out, 13, "more than the limit of 1999", "--max-rounds");
}

#[test]
fn hostile_round_count_is_refused_before_any_kdf() {
    // u32::MAX rounds would take days; the default cap refuses it at once. The run may use
    // 10 s of CPU time (`ulimit -t`, which a busy machine does not reach sooner): a KDF that
    // started would be killed there, and the error checked below would be missing.
    let env = Env::new();
    let f = file_with_header(&env, 1, u32::MAX);
    let out = env
        .bash(r#"ulimit -t 10; exec "$0" "$@""#)
        .arg("decrypt")
        .arg(&f)
        .arg("-o")
        .arg(env.path("out.json"))
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .output()
        .unwrap();
    let e = assert_error(&out, 13, INVALID, "--max-rounds");
    assert!(e.contains("4294967295"), "{e}");
    assert!(e.contains("10000000"), "{e}");
}

#[test]
fn bodies_of_0_to_68_bytes_exit_13() {
    let env = Env::new();
    // a real, valid body to cut: version 1, 1000 rounds
    let full = element::seal(b"[]", PASS.as_bytes(), 1000);
    assert_eq!(full.len(), 71);
    for n in 0..=68usize {
        let text_ = if n == 0 {
            format!("{}\n{}\n", element::HEADER, element::FOOTER)
        } else {
            element::armor(&full[..n], 128)
        };
        let f = env.write(&format!("short{n}.txt"), text_);
        let out = decrypt(&env, &f, &[]);
        let e = assert_error(&out, 13, INVALID, "");
        assert!(e.contains("too short") || n == 0, "{n} bytes: {e}");
    }
    // 69 bytes (an empty ciphertext) is structurally valid: the MAC decides
    let f = env.write("short69.txt", element::armor(&full[..69], 128));
    let out = decrypt(&env, &f, &[]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));
}

#[test]
fn payload_not_json_exits_13() {
    let env = Env::new();
    let f = sealed_file(&env, "notjson.txt", b"this is not JSON at all");
    decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
}

#[test]
fn payload_not_an_array_exits_13() {
    let env = Env::new();
    let f = sealed_file(&env, "object.txt", br#"{"room_id": "!a:b"}"#);
    decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
}

#[test]
fn payload_array_of_garbage_exits_13() {
    let env = Env::new();
    let f = sealed_file(&env, "garbage.txt", b"[garbage, !!, @@@]");
    decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
}

#[test]
fn payload_unterminated_array_exits_13() {
    let env = Env::new();
    let f = sealed_file(&env, "open.txt", br#"[{"a": 1},"#);
    decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
}

#[test]
fn payload_not_json_on_import_exits_13_and_changes_nothing() {
    let env = Env::new();
    env.init_store();
    let f = sealed_file(&env, "notjson.txt", b"\x00\x01binary");
    let out = env.import(&[&f]);
    common::assert_json_error(&out, 13);
    assert!(text(&out.stderr).contains(NOT_EXPORT));
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn payload_not_an_array_on_inspect_exits_13() {
    let env = Env::new();
    let f = sealed_file(&env, "num.txt", b"42");
    let pf = env.pass_file();
    let out = env
        .cmd()
        .arg("inspect")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 13, NOT_EXPORT, "--raw");
}

#[test]
fn array_of_non_sessions_is_rejected_entry_by_entry() {
    // Valid JSON entries that are not sessions are per-entry rejections (exit 3), not a
    // damaged payload.
    let env = Env::new();
    env.init_store();
    let f = sealed_file(&env, "numbers.txt", br#"[1, "two", {"three": 3}]"#);
    let out = env.import(&[&f]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rejected"], 3);
    assert_eq!(r["imported"], 0);
    let reasons: Vec<&str> = r["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons[0], "not a JSON object");
    assert!(reasons[2].contains("missing field"), "{reasons:?}");
}

fn missing_input(args: &[&str]) {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(args)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    let e = assert_error(&out, 10, "no-such-file.txt", "check the file name");
    assert!(e.contains("no such file"), "{e}");
    assert_eq!(env.work_names(), vec!["pass.txt"], "no output left");
}

#[test]
fn missing_input_file_on_decrypt_exits_10() {
    missing_input(&["decrypt", "no-such-file.txt", "-o", "out.json"]);
}

#[test]
fn missing_input_file_on_inspect_exits_10() {
    missing_input(&["inspect", "no-such-file.txt"]);
}

#[test]
fn missing_input_file_on_encrypt_exits_10() {
    missing_input(&[
        "encrypt",
        "no-such-file.txt",
        "-o",
        "out.txt",
        "--rounds",
        "1000",
    ]);
}

#[test]
fn missing_input_file_on_merge_exits_10() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .arg("merge")
        .arg(fixture("export/element-one.txt"))
        .arg("no-such-file.txt")
        .args(["-o", "out.txt", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 10, "no-such-file.txt", "check the file name");
    assert!(!env.path("out.txt").exists());
}

#[test]
fn missing_input_file_on_reencrypt_exits_10() {
    missing_input(&["reencrypt", "no-such-file.txt", "-o", "out.txt"]);
}

#[test]
fn missing_input_file_on_import_exits_10_and_imports_nothing() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .arg("import")
        .arg(fixture("export/element-one.txt"))
        .arg("no-such-file.txt")
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 10, "no-such-file.txt", "check the file name");
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn directory_as_input_exits_13() {
    let env = Env::new();
    let d = env.path("adir");
    std::fs::create_dir(&d).unwrap();
    let out = decrypt(&env, &d, &[]);
    assert_error(
        &out,
        13,
        "is a directory",
        "give the path of an export file",
    );
}

fn missing_store(args: &[&str]) {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args(args)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    let e = assert_error(&out, 10, "no key store at", "mxkeys init");
    assert!(e.contains(&env.store().display().to_string()), "{e}");
    assert!(!env.store().exists(), "the store was created");
}

#[test]
fn missing_store_on_import_exits_10() {
    let f = fixture("export/element-one.txt");
    missing_store(&["import", f.to_str().unwrap()]);
}

#[test]
fn missing_store_on_export_exits_10() {
    missing_store(&["export", "-o", "out.txt", "--rounds", "1000"]);
}

#[test]
fn missing_store_on_list_exits_10() {
    let env = Env::new();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("list")
        .output()
        .unwrap();
    assert_error(&out, 10, "no key store at", "mxkeys init");
}

#[test]
fn missing_default_store_names_xdg_data_home() {
    let env = Env::new();
    let out = env.cmd().arg("list").output().unwrap();
    let e = assert_error(&out, 10, "no key store at", "mxkeys init");
    assert!(
        e.contains(&env.xdg_data_home().join("mxkeys").display().to_string()),
        "{e}"
    );
}

#[test]
fn wrong_store_passphrase_exits_12() {
    let env = Env::new();
    env.init_store();
    let bad = env.write_secret("bad-store.txt", "not the store passphrase");
    let pf = env.pass_file();
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
    assert_error(
        &out,
        12,
        "wrong store passphrase",
        "--store-passphrase-file",
    );
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn wrong_store_passphrase_on_export_exits_12() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let bad = env.write_secret("bad-store.txt", "nope");
    let pf = env.pass_file();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&bad)
        .args([
            "export",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(
        &out,
        12,
        "wrong store passphrase",
        "--store-passphrase-file",
    );
    assert!(!env.path("out.txt").exists());
}

/// Hold the store's writer lock the way another mxkeys would.
fn hold_lock(env: &Env) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(env.store().join("lock"))
        .unwrap();
    f.try_lock().unwrap();
    f
}

#[test]
fn store_busy_exits_11() {
    let env = Env::new();
    env.init_store();
    let lock = hold_lock(&env);
    let pf = env.pass_file();
    let out = env
        .scmd()
        .arg("import")
        .arg(fixture("export/element-one.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 11, "busy", "wait for the other mxkeys process");
    drop(lock);
    assert_eq!(env.list_json()["sessions"], 0);
    // once released, the same import works
    env.import_ok(&[&fixture("export/element-one.txt")]);
    assert_eq!(env.list_json()["sessions"], 1);
}

#[test]
fn readers_work_while_a_writer_holds_the_lock() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let _lock = hold_lock(&env);
    assert_eq!(env.list_json()["sessions"], 3);
    assert_eq!(env.export_sessions("while-locked.txt", &[]).len(), 3);
}

fn output_exists(args: &[&str], needs_store: bool) {
    let env = Env::new();
    if needs_store {
        env.init_store();
        env.import_ok(&[&fixture("export/element-one.txt")]);
    }
    let existing = env.write("exists.out", "precious");
    let pf = env.pass_file();
    let run = |force: bool| {
        let mut c = if needs_store { env.scmd() } else { env.cmd() };
        c.args(args)
            .arg("-o")
            .arg(&existing)
            .arg("--passphrase-file")
            .arg(&pf);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let out = run(false);
    assert_error(&out, 2, "exists.out already exists", "--force");
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    let out = run(true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let now = std::fs::read(&existing).unwrap();
    assert_ne!(now, b"precious");
    assert_eq!(common::mode(&existing), 0o600, "replaced file is private");
    let mut names = env.work_names();
    names.retain(|n| n.starts_with(".mxkeys-"));
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn output_exists_on_decrypt_exits_2_unless_forced() {
    let f = fixture("export/element-one.txt");
    output_exists(&["decrypt", f.to_str().unwrap()], false);
}

#[test]
fn output_exists_on_encrypt_exits_2_unless_forced() {
    let f = fixture("export/plaintext/element-one.json");
    output_exists(&["encrypt", f.to_str().unwrap(), "--rounds", "1000"], false);
}

#[test]
fn output_exists_on_reencrypt_exits_2_unless_forced() {
    let f = fixture("export/element-one.txt");
    output_exists(&["reencrypt", f.to_str().unwrap()], false);
}

#[test]
fn output_exists_on_merge_exits_2_unless_forced() {
    let f = fixture("export/element-one.txt");
    let g = fixture("export/wasm-one.txt");
    output_exists(
        &[
            "merge",
            f.to_str().unwrap(),
            g.to_str().unwrap(),
            "--rounds",
            "1000",
        ],
        false,
    );
}

#[test]
fn output_exists_on_export_exits_2_unless_forced() {
    output_exists(&["export", "--rounds", "1000"], true);
}

const SOURCE_FLAGS: [&str; 5] = [
    "--passphrase-file",
    "--passphrase-fd",
    "--passphrase-command",
    "MXKEYS_PASSPHRASE_FILE",
    "MXKEYS_PASSPHRASE",
];

fn no_source_no_tty(args: &[&str], store: bool) {
    let env = Env::new();
    if store {
        env.init_store();
    }
    let mut c = env.cmd_no_tty();
    if store {
        c.arg("--store")
            .arg(env.store())
            .arg("--store-passphrase-file")
            .arg(env.store_pass_file());
    }
    let out = c.args(args).output().unwrap();
    let e = assert_error(
        &out,
        2,
        "the export passphrase is needed, and there is no terminal",
        "",
    );
    let hint = e.lines().find(|l| l.starts_with("hint:")).unwrap();
    for f in SOURCE_FLAGS {
        assert!(hint.contains(f), "hint {hint:?} lacks {f}");
    }
}

#[test]
fn no_passphrase_source_on_decrypt_exits_2() {
    let f = fixture("export/element-one.txt");
    no_source_no_tty(&["decrypt", f.to_str().unwrap(), "-o", "out.json"], false);
}

#[test]
fn no_passphrase_source_on_import_exits_2() {
    let f = fixture("export/element-one.txt");
    no_source_no_tty(&["import", f.to_str().unwrap()], true);
}

#[test]
fn no_passphrase_source_on_export_exits_2() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let out = env
        .cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(env.store_pass_file())
        .args(["export", "-o", "out.txt", "--rounds", "1000"])
        .output()
        .unwrap();
    let e = assert_error(&out, 2, "export passphrase is needed", "--passphrase-file");
    assert!(e.contains("MXKEYS_PASSPHRASE"), "{e}");
    assert!(!env.path("out.txt").exists());
}

#[test]
fn no_passphrase_source_on_encrypt_exits_2() {
    let f = fixture("export/plaintext/element-one.json");
    no_source_no_tty(
        &[
            "encrypt",
            f.to_str().unwrap(),
            "-o",
            "out.txt",
            "--rounds",
            "1000",
        ],
        false,
    );
}

#[test]
fn no_store_passphrase_source_exits_2() {
    let env = Env::new();
    let out = env
        .cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    let e = assert_error(
        &out,
        2,
        "the store passphrase is needed",
        "--store-passphrase-file",
    );
    for f in [
        "--store-passphrase-fd",
        "--store-passphrase-command",
        "MXKEYS_STORE_PASSPHRASE_FILE",
        "MXKEYS_STORE_PASSPHRASE",
    ] {
        assert!(e.contains(f), "{e} lacks {f}");
    }
    assert!(!env.store().join("keys.sqlite3").exists());
}

#[test]
fn no_passphrase_with_json_exits_2_even_with_a_terminal() {
    // --json never prompts, so a missing source is a usage error as JSON on stderr.
    let env = Env::new();
    let out = env
        .cmd()
        .args(["--json", "decrypt"])
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "out.json"])
        .output()
        .unwrap();
    let v = common::assert_json_error(&out, 2);
    assert!(v["hint"].as_str().unwrap().contains("--passphrase-file"));
}

#[test]
fn two_passphrase_sources_exit_2() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "out.json", "--passphrase-file"])
        .arg(&pf)
        .args(["--passphrase-command", "cat pass.txt"])
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "more than one source given for the export passphrase",
        "give only one of --passphrase-file, --passphrase-fd, --passphrase-command",
    );
    assert!(!env.path("out.json").exists());
}

#[test]
fn two_store_passphrase_sources_exit_2() {
    let env = Env::new();
    let sp = env.store_pass_file();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&sp)
        .args([
            "--store-passphrase-fd",
            "0",
            "init",
            "--store-kdf-rounds",
            "1000",
        ])
        .output()
        .unwrap();
    assert_error(&out, 2, "more than one source", "--store-passphrase-file");
}

/// Every command that takes a passphrase, with the arguments it needs otherwise.
fn passphrase_commands(env: &Env) -> Vec<Vec<String>> {
    let f = fixture("export/element-one.txt").display().to_string();
    let j = fixture("export/plaintext/element-one.json")
        .display()
        .to_string();
    let o = env.path("o").display().to_string();
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        v(&["import", &f]),
        v(&["export", "-o", &o]),
        v(&["inspect", &f]),
        v(&["decrypt", &f, "-o", &o]),
        v(&["encrypt", &j, "-o", &o]),
        v(&["merge", &f, "-o", &o]),
        v(&["reencrypt", &f, "-o", &o]),
    ]
}

#[test]
fn passphrase_value_flag_does_not_exist() {
    let env = Env::new();
    let secret = "SuperSecretValue-4242";
    for args in passphrase_commands(&env) {
        for flag in [
            "--passphrase",
            "--store-passphrase",
            "--new-passphrase",
            "--password",
        ] {
            let out = env.cmd().args(&args).args([flag, secret]).output().unwrap();
            let e = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {flag}: {e}");
            assert!(out.stdout.is_empty());
            assert!(
                e.contains(&format!("unexpected argument '{flag}'")),
                "{args:?} {flag}: {e}"
            );
            assert!(!e.contains(secret), "the value is echoed: {e}");
        }
        // nor as --flag=VALUE
        let out = env
            .cmd()
            .args(&args)
            .arg(format!("--passphrase={secret}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // nor on init
    let out = env
        .cmd()
        .args(["init", "--store-passphrase", secret])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!env.xdg_data_home().join("mxkeys").exists());
}

#[test]
fn partial_import_exits_3_and_keeps_the_valid_sessions() {
    let env = Env::new();
    env.init_store();
    let mut entries: Vec<Value> =
        common::read_sessions(&fixture("export/plaintext/element-three.json"));
    // entry 1: session id does not match its key; entry 3: unknown algorithm
    let mut bad_id = entries[1].clone();
    bad_id["session_id"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let mut bad_alg = entries[0].clone();
    bad_alg["algorithm"] = "m.olm.v1.curve25519-aes-sha2".into();
    entries.insert(1, bad_id);
    entries.push(bad_alg);
    let pt = serde_json::to_vec(&entries).unwrap();
    let f = sealed_file(&env, "partial.txt", &pt);
    let out = env.import(&[&f]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["imported"], 3);
    assert_eq!(r["rejected"], 2);
    let rej = r["rejections"].as_array().unwrap();
    assert_eq!(rej.len(), 2);
    assert_eq!(rej[0]["index"], 1);
    assert!(
        rej[0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{rej:?}"
    );
    assert!(rej[0]["file"].as_str().unwrap().ends_with("partial.txt"));
    assert_eq!(rej[1]["index"], 4);
    assert!(
        rej[1]["reason"]
            .as_str()
            .unwrap()
            .contains("unsupported algorithm"),
        "{rej:?}"
    );
    assert_eq!(r["files"][0]["rejected"], 2);
    assert_eq!(r["files"][0]["entries"], 5);
    assert_eq!(env.list_json()["sessions"], 3);
}

#[test]
fn partial_import_without_json_warns_per_entry() {
    let env = Env::new();
    env.init_store();
    let mut entries = common::read_sessions(&fixture("export/plaintext/element-one.json"));
    let mut bad = entries[0].clone();
    bad["room_id"] = "not-a-room".into();
    entries.push(bad);
    let f = sealed_file(&env, "p.txt", &serde_json::to_vec(&entries).unwrap());
    let pf = env.pass_file();
    let out = env
        .scmd()
        .arg("import")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let e = text(&out.stderr);
    assert!(e.contains("entry 1 rejected"), "{e}");
    assert!(e.contains("is not a Matrix room id"), "{e}");
    assert!(e.contains("rejected 1"), "{e}");
}

#[test]
fn stdin_twice_exits_2() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args(["import", "-", "-", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 2, "stdin ('-') is given more than once", "by name");
}

#[test]
fn init_on_an_existing_store_fails_and_keeps_it() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let out = env
        .scmd()
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    assert_error(
        &out,
        1,
        "a key store already exists",
        "choose another --store",
    );
    assert_eq!(env.list_json()["sessions"], 1);
}

#[test]
fn bad_fd_exits_2() {
    let env = Env::new();
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "out.json", "--passphrase-fd", "9"])
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "cannot read the export passphrase from file descriptor 9",
        "3<secret.txt",
    );
}

#[test]
fn failing_passphrase_command_exits_2() {
    let env = Env::new();
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "out.json", "--passphrase-command", "false"])
        .output()
        .unwrap();
    assert_error(&out, 2, "the export passphrase command failed", "by hand");
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .args([
            "-o",
            "out.json",
            "--passphrase-command",
            "no-such-program-mxkeys",
        ])
        .output()
        .unwrap();
    assert_error(&out, 2, "cannot run the export passphrase command", "PATH");
}

#[test]
fn unknown_command_exits_2() {
    let env = Env::new();
    let out = env.cmd().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn help_lists_the_exit_codes() {
    let env = Env::new();
    let out = env.cmd().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let h = text(&out.stdout);
    for code in ["10", "11", "12", "13", "130"] {
        assert!(
            h.contains(&format!("  {code} ")),
            "--help lacks exit code {code}"
        );
    }
}

/// `decrypt` (to out.json) of a MAC-valid file around `pt` that holds entries which are not
/// sessions: exit 3, one warning per such entry, and out.json holds the sessions only.
fn decrypt_partial(env: &Env, pt: &[u8], rejected: &[usize]) -> (String, Vec<Value>) {
    let f = sealed_file(env, "partial.txt", pt);
    let out = decrypt(env, &f, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    for i in rejected {
        assert!(
            stderr.contains(&format!("partial.txt: entry {i} rejected")),
            "no warning for entry {i}: {stderr}"
        );
    }
    assert_eq!(
        stderr.matches("mxkeys: warning: ").count(),
        rejected.len(),
        "{stderr}"
    );
    let written: Vec<Value> =
        serde_json::from_slice(&std::fs::read(env.path("out.json")).unwrap()).unwrap();
    std::fs::remove_file(env.path("out.json")).unwrap();
    (stderr, written)
}

#[test]
fn decrypt_of_an_array_of_numbers_rejects_every_entry() {
    let env = Env::new();
    let (stderr, written) = decrypt_partial(&env, b"[1,2,3]", &[0, 1, 2]);
    assert!(stderr.contains("not a JSON object"), "{stderr}");
    assert!(
        stderr.contains("Decrypted 0 of 3 entries") && stderr.contains("rejected 3"),
        "{stderr}"
    );
    assert_eq!(written, Vec::<Value>::new());
}

#[test]
fn decrypt_of_an_array_of_strings_rejects_every_entry() {
    let env = Env::new();
    let (stderr, written) = decrypt_partial(&env, br#"["a"]"#, &[0]);
    assert!(stderr.contains("Decrypted 0 of 1 entries"), "{stderr}");
    assert!(written.is_empty());
}

#[test]
fn decrypt_of_sessions_mixed_with_junk_writes_the_sessions_exactly() {
    let env = Env::new();
    let a = common::megolm::entry(&common::megolm::new_group(), "!a:example.org", 0);
    let b = common::megolm::entry(&common::megolm::new_group(), "!b:example.org", 5);
    // Each session's text as it was written (spaces, field order) must come out unchanged.
    let a_text = serde_json::to_string_pretty(&a).unwrap();
    let b_text = serde_json::to_string(&b).unwrap();
    let pt = format!(r#"[{a_text}, 42, {{"room_id": "!c:example.org"}}, {b_text}, ["x"], null]"#);
    let (stderr, written) = decrypt_partial(&env, pt.as_bytes(), &[1, 2, 4, 5]);
    assert!(stderr.contains("missing field"), "{stderr}");
    assert!(stderr.contains("Decrypted 2 of 6 entries"), "{stderr}");
    assert_eq!(written, vec![a.clone(), b.clone()]);

    // The same with --json: the report counts and lists the rejected entries as import does.
    let f = sealed_file(&env, "partial.txt", pt.as_bytes());
    let out = decrypt(&env, &f, &[]);
    assert_eq!(out.status.code(), Some(3));
    let bytes = std::fs::read(env.path("out.json")).unwrap();
    assert_eq!(text(&bytes), format!("[{a_text},{b_text}]\n"));
    std::fs::remove_file(env.path("out.json")).unwrap();

    let out = decrypt(&env, &f, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["entries"], 6, "{r}");
    assert_eq!(r["sessions"], 2, "{r}");
    assert_eq!(r["rejected"], 4, "{r}");
    let listed: Vec<(u64, String)> = r["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert!(x["file"].as_str().unwrap().ends_with("partial.txt"), "{x}");
            (
                x["index"].as_u64().unwrap(),
                x["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [1, 2, 4, 5]
    );
    assert_eq!(listed[0].1, "not a JSON object");
    // As with import, the report carries the rejections: no warning lines besides it.
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let written: Vec<Value> =
        serde_json::from_slice(&std::fs::read(env.path("out.json")).unwrap()).unwrap();
    assert_eq!(written, vec![a, b]);
}

#[test]
fn decrypt_of_sessions_only_is_exact_and_succeeds() {
    // A valid export is still written byte for byte, with exit 0 and no warning.
    let env = Env::new();
    let a = common::megolm::entry(&common::megolm::new_group(), "!a:example.org", 0);
    let pt = format!("[\n  {}\n]\n", serde_json::to_string_pretty(&a).unwrap());
    let f = sealed_file(&env, "ok.txt", pt.as_bytes());
    let out = decrypt(&env, &f, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("Decrypted 1 entries"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(env.path("out.json")).unwrap(), pt.as_bytes());
}

#[test]
fn decrypt_to_stdout_with_junk_sends_only_the_sessions() {
    let env = Env::new();
    let a = common::megolm::entry(&common::megolm::new_group(), "!a:example.org", 0);
    let pt = format!("[7, {}]", serde_json::to_string(&a).unwrap());
    let f = sealed_file(&env, "mixed.txt", pt.as_bytes());
    let out = env
        .cmd()
        .args(["--json", "decrypt"])
        .arg(&f)
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let written: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(written, vec![a]);
    let summary = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    assert_eq!(summary["rejected"], 1, "{summary}");
    assert_eq!(summary["sessions"], 1, "{summary}");
    assert_eq!(summary["rejections"][0]["index"], 0, "{summary}");
}

#[test]
fn decrypt_of_a_plaintext_that_is_not_utf8_exits_13_and_writes_nothing() {
    let env = Env::new();
    // Invalid UTF-8 inside a JSON string of an entry that is not a session, and in a session's
    // unknown field, and in a bare byte sequence.
    for (name, pt) in [
        ("str.txt", &b"[\"\xff\xfe\"]"[..]),
        ("obj.txt", &b"[{\"x\": \"caf\xe9\"}]"[..]),
        ("cut.txt", &b"[\"\xe2\x82\"]"[..]),
        ("bin.txt", &b"\xff\xd8\xff\xe0 JFIF"[..]),
    ] {
        let f = sealed_file(&env, name, pt);
        let e = decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
        assert!(e.contains(name), "{e}");
        // --raw keeps writing the exact bytes.
        let out = decrypt(&env, &f, &["--raw"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(env.path("out.json")).unwrap(), pt, "{name}");
        std::fs::remove_file(env.path("out.json")).unwrap();
    }
    // The message says what is wrong when the rest would pass for JSON.
    let f = sealed_file(&env, "str.txt", b"[\"\xff\xfe\"]");
    let e = decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
    assert!(e.contains("not UTF-8"), "{e}");
    // To stdout, nothing goes out either.
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .output()
        .unwrap();
    assert_error(&out, 13, "not UTF-8", "--raw");
}

#[test]
fn decrypt_of_an_object_exits_13_and_raw_writes_it_exactly() {
    let env = Env::new();
    let pt = br#"{"not":"an array"}"#;
    let f = sealed_file(&env, "obj.txt", pt);
    decrypt_fails(&env, &f, 13, NOT_EXPORT, "--raw");
    let out = decrypt(&env, &f, &["--raw"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(env.path("out.json")).unwrap(), pt);
    // And [1,2,3] with --raw: the bytes, exit 0, nothing rejected.
    std::fs::remove_file(env.path("out.json")).unwrap();
    let f = sealed_file(&env, "nums.txt", b"[1,2,3]");
    let out = decrypt(&env, &f, &["--raw"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(env.path("out.json")).unwrap(), b"[1,2,3]");
}
