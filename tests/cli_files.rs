//! The file commands (merge, reencrypt, encrypt, decrypt, inspect) and their output files:
//! private modes, atomic writes that leave nothing behind on failure, terminals refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{
    Env, PASS, assert_error, dir_names, element, fixture, megolm, mode, read_sessions, session_set,
    text,
};
use serde_json::{Value, json};

/// A fresh empty output directory inside the work directory.
fn outdir(env: &Env) -> PathBuf {
    let d = env.path("outdir");
    std::fs::create_dir(&d).unwrap();
    d
}

/// The failure left nothing in `dir`: no output, no temporary file.
fn assert_empty(dir: &Path) {
    assert_eq!(
        dir_names(dir),
        Vec::<String>::new(),
        "left behind in {}",
        dir.display()
    );
}

/// Single-quote for a shell command line.
fn q(s: impl AsRef<std::ffi::OsStr>) -> String {
    format!("'{}'", s.as_ref().to_string_lossy().replace('\'', r"'\''"))
}

fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_output_file_is_0600_even_under_umask_000() {
    let env = Env::new();
    let pf = env.pass_file();
    let sp = env.store_pass_file();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let d = outdir(&env);
    let f = fixture("export/element-three.txt");
    let runs: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        (
            "decrypt.json",
            vec![
                "decrypt".into(),
                f.clone().into(),
                "-o".into(),
                d.join("decrypt.json").into(),
            ],
        ),
        (
            "export.txt",
            vec![
                "--store".into(),
                env.store().into(),
                "--store-passphrase-file".into(),
                sp.clone().into(),
                "export".into(),
                "-o".into(),
                d.join("export.txt").into(),
                "--rounds".into(),
                "1000".into(),
            ],
        ),
        (
            "encrypt.txt",
            vec![
                "encrypt".into(),
                fixture("export/plaintext/element-one.json").into(),
                "-o".into(),
                d.join("encrypt.txt").into(),
                "--rounds".into(),
                "1000".into(),
            ],
        ),
        (
            "merge.txt",
            vec![
                "merge".into(),
                f.clone().into(),
                fixture("export/element-one.txt").into(),
                "-o".into(),
                d.join("merge.txt").into(),
                "--rounds".into(),
                "1000".into(),
            ],
        ),
        (
            "reencrypt.txt",
            vec![
                "reencrypt".into(),
                f.clone().into(),
                "-o".into(),
                d.join("reencrypt.txt").into(),
            ],
        ),
    ];
    for (name, args) in runs {
        let out = env
            .cmd_umask0()
            .args(&args)
            .arg("--passphrase-file")
            .arg(&pf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(mode(&d.join(name)), 0o600, "{name}");
    }
    assert_eq!(
        dir_names(&d).len(),
        5,
        "no temporary files left: {:?}",
        dir_names(&d)
    );
}

/// Run `args` (with the output in a fresh directory) and expect failure with `code`, leaving
/// the directory empty.
fn fails_cleanly(env: &Env, code: i32, message: &str, build: impl Fn(&Path) -> Output) {
    let d = outdir(env);
    let out = build(&d);
    assert_error(&out, code, message, "");
    assert_empty(&d);
}

#[test]
fn failed_decrypt_wrong_passphrase_leaves_nothing() {
    let env = Env::new();
    let bad = env.write_secret("bad.txt", "nope");
    fails_cleanly(&env, 12, "wrong passphrase", |d| {
        env.cmd()
            .arg("decrypt")
            .arg(fixture("export/element-thousand.txt"))
            .arg("-o")
            .arg(d.join("out.json"))
            .arg("--passphrase-file")
            .arg(&bad)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_decrypt_damaged_input_leaves_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    let t = std::fs::read_to_string(fixture("export/element-thousand.txt")).unwrap();
    // damage near the end, so the structural pass reads a lot before failing
    let at = t.len() - 200;
    let damaged = env.write("damaged.txt", format!("{}#{}", &t[..at], &t[at + 1..]));
    fails_cleanly(&env, 13, "invalid export file", |d| {
        env.cmd()
            .arg("decrypt")
            .arg(&damaged)
            .arg("-o")
            .arg(d.join("out.json"))
            .arg("--passphrase-file")
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_decrypt_non_json_payload_leaves_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    // a large valid prefix followed by garbage: the error comes late in the plaintext
    let mut pt = std::fs::read(fixture("export/plaintext/element-thousand.json")).unwrap();
    pt.pop();
    pt.extend_from_slice(b", not json]");
    let f = env.write("late.txt", element::encrypt(&pt, PASS.as_bytes(), 1000));
    fails_cleanly(&env, 13, "not a key export", |d| {
        env.cmd()
            .arg("decrypt")
            .arg(&f)
            .arg("-o")
            .arg(d.join("out.json"))
            .arg("--passphrase-file")
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_decrypt_to_a_pipe_writes_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    let f = env.write(
        "bad.txt",
        element::encrypt(b"[{\"a\":1}, oops]", PASS.as_bytes(), 1000),
    );
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 13, "not a key export", "");
}

#[test]
fn failed_encrypt_of_a_broken_array_leaves_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    let mut pt = std::fs::read(fixture("export/plaintext/element-thousand.json")).unwrap();
    pt.truncate(pt.len() / 2);
    let input = env.write("half.json", pt);
    fails_cleanly(&env, 13, "not a JSON array of sessions", |d| {
        env.cmd()
            .arg("encrypt")
            .arg(&input)
            .arg("-o")
            .arg(d.join("out.txt"))
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_encrypt_of_an_object_leaves_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    let input = env.write("obj.json", r#"{"room_id": "!a:b"}"#);
    fails_cleanly(&env, 13, "not a JSON array of sessions", |d| {
        env.cmd()
            .arg("encrypt")
            .arg(&input)
            .arg("-o")
            .arg(d.join("out.txt"))
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_merge_leaves_nothing() {
    let env = Env::new();
    let pf = env.pass_file();
    let bad = env.write(
        "bad.txt",
        element::encrypt(b"[1, 2, {oops}]", PASS.as_bytes(), 1000),
    );
    fails_cleanly(&env, 13, "not a key export", |d| {
        env.cmd()
            .arg("merge")
            .arg(fixture("export/element-thousand.txt"))
            .arg(&bad)
            .arg("-o")
            .arg(d.join("out.txt"))
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap()
    });
    let other = env.write(
        "other.txt",
        element::encrypt(b"[]", b"another passphrase", 1000),
    );
    std::fs::remove_dir(env.path("outdir")).unwrap();
    fails_cleanly(&env, 12, "wrong passphrase", |d| {
        env.cmd()
            .arg("merge")
            .arg(fixture("export/element-three.txt"))
            .arg(&other)
            .arg("-o")
            .arg(d.join("out.txt"))
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_reencrypt_leaves_nothing() {
    let env = Env::new();
    let bad = env.write_secret("bad.txt", "nope");
    fails_cleanly(&env, 12, "wrong passphrase", |d| {
        env.cmd()
            .arg("reencrypt")
            .arg(fixture("export/element-three.txt"))
            .arg("-o")
            .arg(d.join("out.txt"))
            .arg("--passphrase-file")
            .arg(&bad)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_export_leaves_nothing() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let pf = env.pass_file();
    let bad = env.write_secret("bad-store.txt", "nope");
    fails_cleanly(&env, 12, "wrong store passphrase", |d| {
        env.cmd()
            .arg("--store")
            .arg(env.store())
            .arg("--store-passphrase-file")
            .arg(&bad)
            .arg("export")
            .arg("-o")
            .arg(d.join("out.txt"))
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap()
    });
}

#[test]
fn failed_force_keeps_the_old_file() {
    // --force replaces only on success: a failed run leaves the old content.
    let env = Env::new();
    let bad = env.write_secret("bad.txt", "nope");
    let old = env.write("keep.json", "old content");
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .arg("-o")
        .arg(&old)
        .arg("--force")
        .arg("--passphrase-file")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(std::fs::read(&old).unwrap(), b"old content");
    assert!(!env.work_names().iter().any(|n| n.starts_with(".mxkeys-")));
}

#[test]
fn decrypt_refuses_a_terminal() {
    if !have_script() {
        println!("note: `script` (util-linux) is not installed; skipping the terminal test");
        return;
    }
    let env = Env::new();
    let pf = env.pass_file();
    let cmdline = format!(
        "{} decrypt {} --passphrase-file {}",
        q(common::BIN),
        q(fixture("export/element-one.txt")),
        q(&pf)
    );
    let out = assert_cmd::Command::new("script")
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.work())
        .args(["-qec", &cmdline, "/dev/null"])
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("refusing to write plaintext keys to a terminal"),
        "{all}"
    );
    assert!(
        all.contains("hint:") && all.contains("-o keys.json"),
        "{all}"
    );
    // no key reached the terminal
    common::assert_no_secrets(&all, &common::fixture_session_keys(), "decrypt on a tty");
    // the same with `-o -`
    let out = assert_cmd::Command::new("script")
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.work())
        .args(["-qec", &format!("{cmdline} -o -"), "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn decrypt_to_a_pipe_writes_the_exact_plaintext() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(fixture("export/wasm-three.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        out.stdout,
        std::fs::read(fixture("export/plaintext/wasm-three.json")).unwrap()
    );
    assert!(text(&out.stderr).contains("Decrypted 3 entries"));
}

#[test]
fn decrypt_reads_stdin() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["decrypt", "-", "-o", "-", "--passphrase-file"])
        .arg(&pf)
        .pipe_stdin(fixture("export/armor/element-three-crlf.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        out.stdout,
        std::fs::read(fixture("export/plaintext/element-three.json")).unwrap()
    );
}

fn inspect_json(env: &Env, file: &Path, extra: &[&str]) -> Value {
    let out = env
        .cmd()
        .args(["--json", "inspect"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    common::one_json(&out)
}

#[test]
fn inspect_reports_the_dialect_without_a_passphrase() {
    let env = Env::new();
    let cases = [
        ("export/armor/element-three-crlf.txt", "CRLF"),
        (
            "export/armor/element-three-no-padding.txt",
            "unpadded base64",
        ),
        (
            "export/armor/element-three-leading-text.txt",
            "text before the header",
        ),
        (
            "export/armor/element-three-single-line-body.txt",
            "body on one line",
        ),
        ("export/element-three.txt", "128-column lines"),
        ("export/element-three.txt", "padded base64"),
    ];
    for (f, want) in cases {
        // no passphrase source, no terminal: inspect must not need one
        let out = env
            .cmd_no_tty()
            .args(["--json", "inspect"])
            .arg(fixture(f))
            .output()
            .unwrap();
        assert!(out.status.success(), "{f}: {}", text(&out.stderr));
        let r = common::one_json(&out);
        let d = r["dialect"].as_str().unwrap();
        assert!(d.contains(want), "{f}: {d:?} lacks {want:?}");
        assert_eq!(r["rounds"], 1000, "{f}");
        assert_eq!(r["version"], 1, "{f}");
        assert_eq!(r["estimated_sessions"], 3, "{f}");
        assert!(r.get("decrypted").is_none(), "{f}");
        assert!(r["armor"].is_object(), "{f}");
        assert_eq!(r["decoded_bytes"], 69 + 1739, "{f}");
    }
    let r = inspect_json(&env, &fixture("export/armor/element-three-crlf.txt"), &[]);
    assert_eq!(r["armor"]["line_ending"], "crlf");
    let r = inspect_json(&env, &fixture("export/element-thousand.txt"), &[]);
    assert_eq!(r["estimated_sessions"], 1000);
    let r = inspect_json(&env, &fixture("export/element-rounds-1.txt"), &[]);
    assert_eq!(r["rounds"], 1);
    let r = inspect_json(&env, &fixture("export/element-empty-array.txt"), &[]);
    assert_eq!(r["estimated_sessions"], 0);
}

#[test]
fn inspect_human_output() {
    let env = Env::new();
    let out = env
        .cmd()
        .arg("inspect")
        .arg(fixture("export/armor/element-three-crlf.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("MEGOLM SESSION DATA, version 1"), "{o}");
    assert!(o.contains("PBKDF2 rounds:      1000"), "{o}");
    assert!(o.contains("CRLF"), "{o}");
    assert!(o.contains("sessions (approx.): 3"), "{o}");
}

#[test]
fn inspect_with_a_passphrase_describes_the_sessions() {
    let env = Env::new();
    let pf = env.pass_file();
    let g = megolm::new_group();
    let room = "!inspect:example.org";
    let mut entries = read_sessions(&fixture("export/plaintext/element-three.json"));
    let dup = entries[0].clone();
    entries.push(megolm::entry(&g, room, 4));
    entries.push(megolm::entry(&g, room, 9));
    entries.push(megolm::entry(&megolm::new_group(), room, 1));
    entries.push(dup); // duplicate of entry 0
    let mut bad = entries[1].clone();
    bad["sender_key"] = "short".into();
    entries.push(bad);
    entries.push(json!("not an object"));
    // encrypt writes only valid entries; the independent encryptor keeps them all
    let f = env.write(
        "mixed.txt",
        element::encrypt(
            &serde_json::to_vec(&entries).unwrap(),
            PASS.as_bytes(),
            1000,
        ),
    );
    let r = inspect_json(&env, &f, &["--passphrase-file", pf.to_str().unwrap()]);
    let d = &r["decrypted"];
    assert_eq!(d["entries"], 9);
    assert_eq!(d["valid"], 7);
    assert_eq!(d["invalid"], 2);
    assert_eq!(
        d["duplicates"], 2,
        "the second copy of a session and the repeated entry"
    );
    assert_eq!(d["algorithms"]["m.megolm.v1.aes-sha2"], 7);
    let rooms = d["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 4);
    let ri = rooms.iter().find(|x| x["room_id"] == room).unwrap();
    assert_eq!(ri["sessions"], 3);
    assert_eq!(ri["min_first_index"], 1);
    assert_eq!(ri["max_first_index"], 9);
    let rd = rooms
        .iter()
        .find(|x| x["room_id"] == "!DBATafzTJLmSeBTsoz:example.org")
        .unwrap();
    assert_eq!(rd["sessions"], 2);
    assert_eq!(rd["shared_history"], 2);
    let inv = d["invalid_entries"].as_array().unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(inv[0]["index"], 7);
    assert!(
        inv[0]["reason"].as_str().unwrap().contains("sender_key"),
        "{inv:?}"
    );
    assert_eq!(inv[1]["index"], 8);
    assert_eq!(inv[1]["reason"], "not a JSON object");
    let all = r.to_string();
    common::assert_no_secrets(&all, &common::fixture_session_keys(), "inspect --json");
    for e in &entries[3..6] {
        assert!(!all.contains(e["session_key"].as_str().unwrap()));
    }
    // human form
    let out = env
        .cmd()
        .arg("inspect")
        .arg(&f)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success());
    let o = text(&out.stdout);
    assert!(
        o.contains("9 entries: 7 valid, 2 invalid, 2 duplicates"),
        "{o}"
    );
    assert!(
        o.contains("!inspect:example.org  3 sessions, first index 1-9"),
        "{o}"
    );
    assert!(o.contains("invalid entry 8: not a JSON object"), "{o}");
    common::assert_no_secrets(&o, &common::fixture_session_keys(), "inspect");
}

#[test]
fn inspect_of_a_file_with_itself_duplicated() {
    // "merge a file with itself": the same sessions twice in one array
    let env = Env::new();
    let pf = env.pass_file();
    let mut entries = read_sessions(&fixture("export/plaintext/element-three.json"));
    entries.extend(entries.clone());
    let f = env.encrypt_json("twice.txt", &Value::Array(entries));
    let r = inspect_json(&env, &f, &["--passphrase-file", pf.to_str().unwrap()]);
    assert_eq!(r["decrypted"]["entries"], 6);
    assert_eq!(r["decrypted"]["duplicates"], 3);
    assert_eq!(r["decrypted"]["rooms"].as_array().unwrap().len(), 3);
    // and merging it drops the duplicates
    let out = env.path("merged.txt");
    env.cmd()
        .arg("merge")
        .arg(&f)
        .arg(&f)
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    let o = element::decrypt_file(&out, PASS.as_bytes());
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got.len(), 3);
}

#[test]
fn inspect_decrypt_flag_without_a_terminal_exits_2() {
    let env = Env::new();
    let out = env
        .cmd_no_tty()
        .arg("inspect")
        .arg(fixture("export/element-one.txt"))
        .arg("--decrypt")
        .output()
        .unwrap();
    assert_error(&out, 2, "export passphrase is needed", "--passphrase-file");
}

#[test]
fn merge_keeps_the_lower_index_of_each_session() {
    let env = Env::new();
    let pf = env.pass_file();
    let room = "!merge:example.org";
    let s = megolm::new_group();
    let t = megolm::new_group();
    let u = megolm::new_group();
    let a = env.encrypt_json(
        "a.txt",
        &json!([megolm::entry(&s, room, 0), megolm::entry(&t, room, 5)]),
    );
    let b = env.encrypt_json(
        "b.txt",
        &json!([
            megolm::entry(&s, room, 5),
            megolm::entry(&t, room, 2),
            megolm::entry(&u, room, 7)
        ]),
    );
    for (name, order) in [("ab.txt", [&a, &b]), ("ba.txt", [&b, &a])] {
        let out_path = env.path(name);
        let out = env
            .cmd()
            .args(["--json", "merge"])
            .args(order)
            .arg("-o")
            .arg(&out_path)
            .args(["--rounds", "1000", "--passphrase-file"])
            .arg(&pf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r = common::one_json(&out);
        assert_eq!(r["sessions"], 3);
        assert_eq!(r["duplicates_dropped"], 2);
        let o = element::decrypt_file(&out_path, PASS.as_bytes());
        let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
        assert_eq!(got.len(), 3);
        let idx = |g: &vodozemac::megolm::GroupSession| {
            let e = got
                .iter()
                .find(|x| x["session_id"] == g.session_id())
                .unwrap();
            megolm::index_of(e["session_key"].as_str().unwrap())
        };
        assert_eq!(idx(&s), 0, "{name}");
        assert_eq!(idx(&t), 2, "{name}");
        assert_eq!(idx(&u), 7, "{name}");
    }
}

#[test]
fn merge_reports_conflicts_and_rejections() {
    let env = Env::new();
    let pf = env.pass_file();
    let g = megolm::new_group();
    let room = "!c:example.org";
    let good = megolm::entry(&g, room, 1);
    let mut forged = megolm::entry(&g, room, 0);
    forged["session_key"] = megolm::forged(forged["session_key"].as_str().unwrap()).into();
    let a = env.encrypt_json("a.txt", &json!([good]));
    let b = env.write(
        "b.txt",
        element::encrypt(
            &serde_json::to_vec(&json!([forged, {"algorithm": "x"}])).unwrap(),
            PASS.as_bytes(),
            1000,
        ),
    );
    let out = env
        .cmd()
        .args(["--json", "merge"])
        .arg(&a)
        .arg(&b)
        .args(["-o", "m.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["conflicts"], 1);
    assert_eq!(r["rejected"], 1);
    assert_eq!(r["sessions"], 1);
    let o = element::decrypt_file(&env.path("m.txt"), PASS.as_bytes());
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got[0]["session_key"], good["session_key"]);
}

#[test]
fn merge_of_files_with_different_passphrases_needs_a_new_one() {
    if !have_script() {
        println!("note: `script` (util-linux) is not installed; skipping the prompt test");
        return;
    }
    // Different passphrases can only be typed at a prompt (one source serves all files).
    let env = Env::new();
    let other = env.write(
        "other.txt",
        element::encrypt(
            &std::fs::read(fixture("export/plaintext/element-three.json")).unwrap(),
            b"other pass",
            1000,
        ),
    );
    let cmdline = format!(
        "{} --no-progress merge {} {} -o merged.txt --rounds 1000",
        q(common::BIN),
        q(fixture("export/element-one.txt")),
        q(&other)
    );
    let out = assert_cmd::Command::new("script")
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.work())
        .args(["-qec", &cmdline, "/dev/null"])
        .write_stdin(format!("{PASS}\nother pass\n"))
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("the input files have different passphrases"),
        "{all}"
    );
    assert!(all.contains("--new-passphrase-file"), "{all}");
    assert!(!env.path("merged.txt").exists());

    // with --new-passphrase-file the merge goes through
    let np = env.write_secret("new.txt", "brand new\n");
    let out = assert_cmd::Command::new("script")
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.work())
        .args([
            "-qec",
            &format!("{cmdline} --new-passphrase-file {}", q(&np)),
            "/dev/null",
        ])
        .write_stdin(format!("{PASS}\nother pass\n"))
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    let o = element::decrypt_file(&env.path("merged.txt"), b"brand new");
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got.len(), 4);
}

#[test]
fn merge_with_a_new_passphrase() {
    let env = Env::new();
    let pf = env.pass_file();
    let np = env.write_secret("new.txt", "merged passphrase\n");
    env.cmd()
        .arg("merge")
        .arg(fixture("export/element-one.txt"))
        .arg(fixture("export/wasm-three.txt"))
        .args(["-o", "m.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .arg("--new-passphrase-file")
        .arg(&np)
        .assert()
        .success();
    let o = element::decrypt_file(&env.path("m.txt"), b"merged passphrase");
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got.len(), 4);
    assert!(
        element::open(
            &element::unarmor(&std::fs::read(env.path("m.txt")).unwrap()),
            PASS.as_bytes()
        )
        .is_err()
    );
}

#[test]
fn reencrypt_with_new_rounds_and_passphrase_keeps_the_exact_plaintext() {
    let env = Env::new();
    let pf = env.pass_file();
    let np = env.write_secret("new.txt", "new passphrase\n");
    let out = env
        .cmd()
        .args(["--json", "reencrypt"])
        .arg(fixture("export/element-thousand.txt"))
        .args(["-o", "re.txt", "--rounds", "2000", "--passphrase-file"])
        .arg(&pf)
        .arg("--new-passphrase-file")
        .arg(&np)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["rounds"], 2000);
    assert_eq!(r["previous_rounds"], 1000);
    assert_eq!(r["passphrase_changed"], true);
    let o = element::decrypt_file(&env.path("re.txt"), b"new passphrase");
    assert_eq!(o.rounds, 2000);
    let want = std::fs::read(fixture("export/plaintext/element-thousand.json")).unwrap();
    assert!(o.plaintext == want, "plaintext changed");
    // and through mxkeys too
    assert!(env.decrypt(&env.path("re.txt"), &np) == want);
    // the old passphrase no longer opens it
    let out = env
        .cmd()
        .arg("decrypt")
        .arg(env.path("re.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
}

#[test]
fn reencrypt_defaults_keep_rounds_and_passphrase() {
    let env = Env::new();
    let pf = env.pass_file();
    env.cmd()
        .arg("reencrypt")
        .arg(fixture("export/wasm-rounds-1.txt"))
        .args(["-o", "re.txt", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    let o = element::decrypt_file(&env.path("re.txt"), PASS.as_bytes());
    assert_eq!(o.rounds, 1);
    assert_eq!(
        o.plaintext,
        std::fs::read(fixture("export/plaintext/wasm-rounds-1.json")).unwrap()
    );
    // fresh salt and IV
    let orig = element::unarmor(&std::fs::read(fixture("export/wasm-rounds-1.txt")).unwrap());
    assert_ne!(&orig[1..33], &[o.salt, o.iv].concat()[..]);
}

#[test]
fn reencrypt_preserves_non_session_plaintext_bytes() {
    // reencrypt does not re-serialise: whitespace and key order survive
    let env = Env::new();
    let pf = env.pass_file();
    let pt = b"[\n  {\"z\": 1,   \"a\": [true]}\n]\n";
    let f = env.write("odd.txt", element::encrypt(pt, PASS.as_bytes(), 1000));
    env.cmd()
        .arg("reencrypt")
        .arg(&f)
        .args(["-o", "re.txt", "--rounds", "1500", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    let o = element::decrypt_file(&env.path("re.txt"), PASS.as_bytes());
    assert_eq!(o.plaintext, pt);
}

#[test]
fn encrypt_with_invalid_entries_exits_3_and_writes_the_valid_ones() {
    let env = Env::new();
    let pf = env.pass_file();
    let mut entries = read_sessions(&fixture("export/plaintext/element-three.json"));
    entries.insert(1, json!({"algorithm": "m.megolm.v1.aes-sha2"}));
    let input = env.write("in.json", serde_json::to_vec(&entries).unwrap());
    let out = env
        .cmd()
        .args(["--json", "encrypt"])
        .arg(&input)
        .args(["-o", "e.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["entries"], 4);
    assert_eq!(r["sessions"], 3);
    assert_eq!(r["rejected"], 1);
    assert_eq!(r["rejections"][0]["index"], 1);
    assert!(
        r["rejections"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field")
    );
    let o = element::decrypt_file(&env.path("e.txt"), PASS.as_bytes());
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(
        session_set(&got),
        session_set(&read_sessions(&fixture(
            "export/plaintext/element-three.json"
        )))
    );
}

#[test]
fn encrypt_from_stdin_to_stdout() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .bash(&format!(r#"exec "$0" "$@" 3<{}"#, q(&pf)))
        .args(["encrypt", "-", "--rounds", "1000", "--passphrase-fd", "3"])
        .pipe_stdin(fixture("export/plaintext/wasm-one.json"))
        .unwrap()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = element::check_written_armor(&out.stdout);
    let o = element::open(&body, PASS.as_bytes()).unwrap();
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(
        session_set(&got),
        session_set(&read_sessions(&fixture("export/plaintext/wasm-one.json")))
    );
}

#[test]
fn encrypt_accepts_a_v2_sharing_key_and_writes_v1() {
    let env = Env::new();
    let g = megolm::new_group();
    let mut e = megolm::entry(&g, "!v2:example.org", 0);
    e["session_key"] = g.session_key().to_base64().into();
    let f = env.encrypt_json("v2.txt", &json!([e]));
    let o = element::decrypt_file(&f, PASS.as_bytes());
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got[0]["session_key"], megolm::key_at(&g, 0));
    assert_eq!(got[0]["session_id"], g.session_id());
}

#[test]
fn relative_output_in_the_current_directory() {
    let env = Env::new();
    let pf = env.pass_file();
    env.cmd()
        .arg("decrypt")
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "plain.json", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(env.path("plain.json")).unwrap(),
        std::fs::read(fixture("export/plaintext/element-one.json")).unwrap()
    );
    assert_eq!(mode(&env.path("plain.json")), 0o600);
}
