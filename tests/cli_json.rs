//! `--json`: one JSON document on stdout for every successful command, with the documented
//! fields; errors as an `exit_error` object on stderr and nothing on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use common::{Env, assert_json_error, fixture, one_json, text};
use serde_json::Value;

/// Success, one JSON document on stdout, and every stderr line (if any) a JSON object.
fn json_ok(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for line in text(&out.stderr).lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        assert!(v["message_type"].is_string(), "{v}");
    }
    one_json(out)
}

fn has_fields(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(*f).is_some(), "field {f:?} missing from {v}");
    }
}

/// A store with element-three imported.
fn store() -> Env {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    env
}

#[test]
fn init_json() {
    let env = Env::new();
    let out = env
        .scmd()
        .args(["--json", "init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["protection"], "sealed");
    assert_eq!(v["kdf_rounds"], 1000);
    assert_eq!(v["store"], env.store().display().to_string());
}

#[test]
fn import_json() {
    let env = Env::new();
    env.init_store();
    let out = env.import(&[
        &fixture("export/element-three.txt"),
        &fixture("export/element-one.txt"),
    ]);
    let v = json_ok(&out);
    has_fields(
        &v,
        &[
            "imported",
            "improved",
            "unchanged",
            "rejected",
            "conflicts",
            "files",
            "rejections",
            "conflict_list",
        ],
    );
    assert_eq!(v["imported"], 4);
    assert_eq!(v["improved"], 0);
    assert_eq!(v["unchanged"], 0);
    assert_eq!(v["rejected"], 0);
    assert_eq!(v["conflicts"], 0);
    assert_eq!(v["rejections"], Value::Array(vec![]));
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    has_fields(
        &files[0],
        &[
            "file",
            "entries",
            "imported",
            "improved",
            "unchanged",
            "conflicts",
            "rejected",
        ],
    );
    assert_eq!(files[0]["entries"], 3);
    assert_eq!(files[1]["imported"], 1);
}

#[test]
fn list_json() {
    let env = store();
    let v = env.list_json();
    has_fields(&v, &["rooms", "sessions", "store"]);
    assert_eq!(v["sessions"], 3);
    let rooms = v["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 3);
    has_fields(
        &rooms[0],
        &["room_id", "sessions", "min_first_index", "max_first_index"],
    );
    has_fields(
        &v["store"],
        &["path", "protection", "kdf_rounds", "sessions", "rooms"],
    );
    // rooms are sorted
    let ids: Vec<&str> = rooms
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[test]
fn inspect_json() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["--json", "inspect"])
        .arg(fixture("export/element-three.txt"))
        .output()
        .unwrap();
    let v = json_ok(&out);
    has_fields(
        &v,
        &[
            "file",
            "format",
            "version",
            "rounds",
            "file_bytes",
            "decoded_bytes",
            "ciphertext_bytes",
            "estimated_sessions",
            "armor",
            "dialect",
        ],
    );
    assert_eq!(v["rounds"], 1000);
    assert_eq!(v["estimated_sessions"], 3);
    assert_eq!(v["ciphertext_bytes"], 1739);
    assert_eq!(v["armor"]["wrap_width"], 128);
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "inspect"])
        .arg(fixture("export/element-three.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    let d = &v["decrypted"];
    has_fields(
        d,
        &[
            "entries",
            "valid",
            "invalid",
            "duplicates",
            "forwarded",
            "algorithms",
            "rooms",
            "invalid_entries",
        ],
    );
    let rooms = d["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 3);
    has_fields(
        &rooms[0],
        &[
            "room_id",
            "sessions",
            "min_first_index",
            "max_first_index",
            "shared_history",
        ],
    );
    assert_eq!(rooms[0]["sessions"], 1);
}

#[test]
fn export_json() {
    let env = store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args([
            "--json",
            "export",
            "-o",
            "e.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["rooms"], 3);
    assert_eq!(v["rounds"], 1000);
    assert_eq!(v["output"], "e.txt");
}

#[test]
fn export_json_to_stdout_puts_the_summary_on_stderr() {
    let env = store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args([
            "--json",
            "export",
            "-o",
            "-",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success());
    common::element::check_written_armor(&out.stdout);
    let summary = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    assert_eq!(summary["sessions"], 3);
}

#[test]
fn decrypt_json() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "decrypt"])
        .arg(fixture("export/element-three.txt"))
        .args(["-o", "d.json", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["entries"], 3);
    assert_eq!(v["output"], "d.json");
    has_fields(&v, &["input"]);
}

#[test]
fn encrypt_json() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "encrypt"])
        .arg(fixture("export/plaintext/element-three.json"))
        .args(["-o", "e.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    has_fields(
        &v,
        &[
            "input",
            "output",
            "entries",
            "sessions",
            "rejected",
            "rejections",
            "rounds",
        ],
    );
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["rejected"], 0);
}

#[test]
fn merge_json() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "merge"])
        .arg(fixture("export/element-three.txt"))
        .arg(fixture("export/wasm-three.txt"))
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "m.txt", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    has_fields(
        &v,
        &[
            "output",
            "sessions",
            "duplicates_dropped",
            "improved",
            "conflicts",
            "rejected",
            "rejections",
            "conflict_list",
            "rounds",
        ],
    );
    assert_eq!(v["sessions"], 4);
    assert_eq!(v["duplicates_dropped"], 3);
}

#[test]
fn reencrypt_json() {
    let env = Env::new();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "reencrypt"])
        .arg(fixture("export/element-one.txt"))
        .args(["-o", "r.txt", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    let v = json_ok(&out);
    assert_eq!(v["rounds"], 1000);
    assert_eq!(v["previous_rounds"], 1000);
    assert_eq!(v["passphrase_changed"], false);
}

#[test]
fn errors_are_json_on_stderr_for_every_command() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let bad = env.write_secret("bad.txt", "nope");
    let one = fixture("export/element-one.txt");
    let s = |p: &std::path::Path| p.display().to_string();
    let store = s(&env.store());
    let sp = s(&env.store_pass_file());
    #[rustfmt::skip]
    let cases: Vec<(i32, Vec<String>)> = vec![
        (1, vec!["--store".into(), store.clone(), "--store-passphrase-file".into(), sp.clone(), "init".into()]),
        (12, vec!["--store".into(), store.clone(), "--store-passphrase-file".into(), sp.clone(), "import".into(), s(&one), "--passphrase-file".into(), s(&bad)]),
        (10, vec!["--store".into(), store.clone(), "--store-passphrase-file".into(), sp.clone(), "export".into(), "-o".into(), "x.txt".into(), "--passphrase-file".into(), s(&pf)]),
        (10, vec!["--store".into(), s(&env.path("nostore")), "list".into()]),
        (13, vec!["inspect".into(), s(&pf)]),
        (12, vec!["decrypt".into(), s(&one), "-o".into(), "d.json".into(), "--passphrase-file".into(), s(&bad)]),
        (10, vec!["encrypt".into(), "missing.json".into(), "-o".into(), "e.txt".into(), "--passphrase-file".into(), s(&pf)]),
        (12, vec!["merge".into(), s(&one), "-o".into(), "m.txt".into(), "--passphrase-file".into(), s(&bad)]),
        (2, vec!["reencrypt".into(), s(&one), "-o".into(), s(&pf), "--passphrase-file".into(), s(&pf)]),
    ];
    for (code, args) in cases {
        let out = env.cmd().arg("--json").args(&args).output().unwrap();
        let v = assert_json_error(&out, code);
        assert!(
            !v["message"].as_str().unwrap().contains("mxkeys: error"),
            "{v}"
        );
    }
}
