//! The local key store through the CLI: init, import, export, list; permissions,
//! transactions, the merge rule, filters and round trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{
    Env, PASS, assert_error, element, fixture, megolm, mode, read_sessions, session_set, text,
};
use serde_json::{Value, json};

fn store_files(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.store())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn init_creates_a_private_store_even_under_umask_000() {
    let env = Env::new();
    let sp = env.store_pass_file();
    let out = env
        .cmd_umask0()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&sp)
        .args(["init", "--store-kdf-rounds", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Created a sealed key store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(mode(&env.store()), 0o700);
    let files = store_files(&env);
    assert!(files.iter().any(|p| p.ends_with("keys.sqlite3")));
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // files SQLite creates later (WAL, shared memory) are private too
    let pf = env.pass_file();
    let out = env
        .cmd_umask0()
        .arg("--store")
        .arg(env.store())
        .arg("--store-passphrase-file")
        .arg(&sp)
        .arg("import")
        .arg(fixture("export/element-three.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in store_files(&env) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&env.store()), 0o700);
}

#[test]
fn init_uses_xdg_data_home_by_default() {
    let env = Env::new();
    let sp = env.store_pass_file();
    env.cmd()
        .arg("--store-passphrase-file")
        .arg(&sp)
        .args(["init", "--store-kdf-rounds", "1000"])
        .assert()
        .success();
    let d = env.xdg_data_home().join("mxkeys");
    assert!(d.join("keys.sqlite3").is_file());
    assert_eq!(mode(&d), 0o700);
    // MXKEYS_STORE overrides it
    let other = env.tmp.path().join("elsewhere");
    env.cmd()
        .env("MXKEYS_STORE", &other)
        .arg("--store-passphrase-file")
        .arg(&sp)
        .args(["init", "--store-kdf-rounds", "1000"])
        .assert()
        .success();
    assert!(other.join("keys.sqlite3").is_file());
}

#[test]
fn init_tightens_an_existing_open_directory() {
    let env = Env::new();
    std::fs::create_dir(env.store()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.init_store();
    assert_eq!(mode(&env.store()), 0o700);
}

#[test]
fn unsealed_store_warns_and_needs_no_store_passphrase() {
    let env = Env::new();
    let out = env
        .cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .args(["init", "--insecure-no-store-passphrase"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e = text(&out.stderr);
    assert!(e.contains("mxkeys: warning:"), "{e}");
    assert!(e.contains("unsealed"), "{e}");
    // import and export without any store passphrase, and no terminal
    let pf = env.pass_file();
    env.cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .arg("import")
        .arg(fixture("export/element-one.txt"))
        .arg("--passphrase-file")
        .arg(&pf)
        .assert()
        .success();
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .args(["--json", "list"])
        .output()
        .unwrap();
    let l = common::one_json(&out);
    assert_eq!(l["store"]["protection"], "unsealed");
    assert_eq!(l["sessions"], 1);
    env.cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .args([
            "export",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&pf)
        .assert()
        .success();
    let o = element::decrypt_file(&env.path("out.txt"), PASS.as_bytes());
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(
        session_set(&got),
        session_set(&read_sessions(&fixture(
            "export/plaintext/element-one.json"
        )))
    );
}

#[test]
fn sealed_store_does_not_hold_keys_in_the_clear() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    let mut all = Vec::new();
    for f in store_files(&env) {
        all.extend(std::fs::read(f).unwrap());
    }
    let hay = String::from_utf8_lossy(&all);
    for s in read_sessions(&fixture("export/plaintext/element-three.json")) {
        let k = s["session_key"].as_str().unwrap();
        assert!(
            !hay.contains(&k[10..50]),
            "a session key is stored in the clear"
        );
    }
}

#[test]
fn import_of_several_files_is_all_or_nothing_on_wrong_passphrase() {
    let env = Env::new();
    env.init_store();
    let other = env.write(
        "other-pass.txt",
        element::encrypt(
            &std::fs::read(fixture("sessions/sessions-3.json")).unwrap(),
            b"a different passphrase",
            1000,
        ),
    );
    let out = env.import(&[&fixture("export/element-three.txt"), &other]);
    common::assert_json_error(&out, 12);
    assert!(text(&out.stderr).contains("other-pass.txt"));
    assert_eq!(env.list_json()["sessions"], 0);
    assert_eq!(env.list_json()["rooms"], json!([]));
}

#[test]
fn import_of_several_files_is_all_or_nothing_on_damage() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let before = env.list_json();
    let t = std::fs::read_to_string(fixture("export/wasm-three.txt")).unwrap();
    let damaged = env.write("damaged.txt", &t[..t.len() - 60]);
    let out = env.import(&[&fixture("export/element-three.txt"), &damaged]);
    common::assert_json_error(&out, 13);
    assert_eq!(env.list_json(), before);
}

#[test]
fn import_of_several_files_is_all_or_nothing_on_bad_payload() {
    // The second file's MAC is fine but its JSON breaks half-way: the first file's sessions,
    // already merged inside the transaction, must not stay.
    let env = Env::new();
    env.init_store();
    let mut pt = std::fs::read(fixture("export/plaintext/wasm-three.json")).unwrap();
    pt.truncate(pt.len() - 5);
    pt.extend_from_slice(b"} oops");
    let bad = env.write("bad.txt", element::encrypt(&pt, PASS.as_bytes(), 1000));
    let out = env.import(&[&fixture("export/element-three.txt"), &bad]);
    common::assert_json_error(&out, 13);
    assert!(text(&out.stderr).contains("not a key export"));
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn import_of_several_files_merges_them_all() {
    let env = Env::new();
    env.init_store();
    let r = env.import_ok(&[
        &fixture("export/element-three.txt"),
        &fixture("export/wasm-three.txt"),
        &fixture("export/element-one.txt"),
    ]);
    // wasm-three holds the same three sessions as element-three
    assert_eq!(r["imported"], 4);
    assert_eq!(r["unchanged"], 3);
    assert_eq!(r["files"].as_array().unwrap().len(), 3);
    assert_eq!(r["files"][0]["imported"], 3);
    assert_eq!(r["files"][1]["unchanged"], 3);
    assert_eq!(r["files"][2]["imported"], 1);
    assert_eq!(env.list_json()["sessions"], 4);
}

#[test]
fn reimport_counts_as_unchanged() {
    let env = Env::new();
    env.init_store();
    let f = fixture("export/element-three.txt");
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 3);
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 0);
    assert_eq!(r["improved"], 0);
    assert_eq!(r["unchanged"], 3);
    // the same sessions in another producer's file (and a differently armored copy)
    let r = env.import_ok(&[&fixture("export/armor/element-three-crlf.txt")]);
    assert_eq!(r["unchanged"], 3);
    assert_eq!(env.list_json()["sessions"], 3);
}

#[test]
fn better_copy_replaces_worse_and_worse_never_replaces_better() {
    let env = Env::new();
    env.init_store();
    let g = megolm::new_group();
    let room = "!merge:example.org";
    let at5 = env.encrypt_json("at5.txt", &json!([megolm::entry(&g, room, 5)]));
    let at0 = env.encrypt_json("at0.txt", &json!([megolm::entry(&g, room, 0)]));
    let at9 = env.encrypt_json("at9.txt", &json!([megolm::entry(&g, room, 9)]));

    // Where the held copy came from follows the copy that is kept.
    let source = |env: &Env| -> String {
        let v = env.list_json();
        let m = v["rooms"][0]["sources"].as_object().unwrap().clone();
        assert_eq!(m.len(), 1, "{m:?}");
        m.keys().next().unwrap().clone()
    };
    let r = env.import_ok(&[&at5]);
    assert_eq!(r["imported"], 1);
    assert_eq!(env.list_json()["rooms"][0]["min_first_index"], 5);
    assert_eq!(source(&env), format!("file:{}", at5.display()));

    let r = env.import_ok(&[&at9]);
    assert_eq!(r["unchanged"], 1, "a worse copy is not an improvement");
    assert_eq!(env.list_json()["rooms"][0]["min_first_index"], 5);
    assert_eq!(source(&env), format!("file:{}", at5.display()));

    let r = env.import_ok(&[&at0]);
    assert_eq!(r["improved"], 1);
    assert_eq!(env.list_json()["rooms"][0]["min_first_index"], 0);
    assert_eq!(source(&env), format!("file:{}", at0.display()));

    let r = env.import_ok(&[&at5]);
    assert_eq!(r["unchanged"], 1);
    let s = env.export_sessions("out.txt", &[]);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["session_key"], megolm::key_at(&g, 0));
    assert_eq!(megolm::index_of(s[0]["session_key"].as_str().unwrap()), 0);
}

#[test]
fn better_and_worse_copies_in_one_import() {
    let env = Env::new();
    env.init_store();
    let g = megolm::new_group();
    let room = "!one:example.org";
    let f = env.encrypt_json(
        "mixed.txt",
        &json!([
            megolm::entry(&g, room, 7),
            megolm::entry(&g, room, 2),
            megolm::entry(&g, room, 4)
        ]),
    );
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 1);
    assert_eq!(r["improved"], 1);
    assert_eq!(r["unchanged"], 1);
    let s = env.export_sessions("out.txt", &[]);
    assert_eq!(s.len(), 1);
    assert_eq!(megolm::index_of(s[0]["session_key"].as_str().unwrap()), 2);
}

#[test]
fn unconnected_ratchet_is_a_conflict() {
    let env = Env::new();
    env.init_store();
    let g = megolm::new_group();
    let room = "!conflict:example.org";
    let good = megolm::entry(&g, room, 3);
    let held_key = good["session_key"].as_str().unwrap().to_string();
    let mut forged = megolm::entry(&g, room, 0);
    forged["session_key"] = megolm::forged(forged["session_key"].as_str().unwrap()).into();
    let gf = env.encrypt_json("good.txt", &json!([good]));
    let ff = env.encrypt_json("forged.txt", &json!([forged]));
    env.import_ok(&[&gf]);
    let out = env.import(&[&ff]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["conflicts"], 1);
    assert_eq!(r["imported"], 0);
    assert_eq!(r["improved"], 0);
    let c = &r["conflict_list"][0];
    assert_eq!(c["room_id"], room);
    assert_eq!(c["session_id"], g.session_id());
    assert!(c["file"].as_str().unwrap().ends_with("forged.txt"));
    // the held copy stays, although the forged one claims a lower index
    let s = env.export_sessions("out.txt", &[]);
    assert_eq!(s[0]["session_key"], held_key);
    // and humans are told too
    let pf = env.pass_file();
    let out = env
        .scmd()
        .arg("import")
        .arg(&ff)
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let e = text(&out.stderr);
    assert!(e.contains("conflicts with the copy already held"), "{e}");
    assert!(e.contains(&g.session_id()), "{e}");
}

const GEN_ROOM: &str = "!generated:example.org";

/// A store holding element-three (3 rooms), element-one (1 room) and three sessions made
/// here in one more room: 7 sessions in 5 rooms.
fn two_fixture_store() -> Env {
    let env = Env::new();
    env.init_store();
    let gens: Vec<Value> = (0..3)
        .map(|i| megolm::entry(&megolm::new_group(), GEN_ROOM, i))
        .collect();
    let g = env.encrypt_json("gen.txt", &Value::Array(gens));
    env.import_ok(&[
        &fixture("export/element-three.txt"),
        &fixture("export/element-one.txt"),
        &g,
    ]);
    env
}

#[test]
fn export_filters_by_room_and_session() {
    let env = two_fixture_store();
    let all = env.export_sessions("all.txt", &[]);
    assert_eq!(all.len(), 7);
    let one_room = "!JnERJhGrnOXRZZCxDO:example.org";

    let only_gen = env.export_sessions("gen-only.txt", &["--room", GEN_ROOM]);
    assert_eq!(only_gen.len(), 3);
    assert!(only_gen.iter().all(|s| s["room_id"] == GEN_ROOM));

    let two = env.export_sessions("two.txt", &["--room", GEN_ROOM, "--room", one_room]);
    assert_eq!(two.len(), 4);
    assert!(
        two.iter()
            .all(|s| s["room_id"] == GEN_ROOM || s["room_id"] == one_room)
    );

    let b = all.iter().find(|s| s["room_id"] == one_room).unwrap();
    let sid = b["session_id"].as_str().unwrap();
    let one = env.export_sessions("one.txt", &["--session", sid]);
    assert_eq!(one.len(), 1);
    assert_eq!(
        common::normalize_session(&one[0]),
        common::normalize_session(b)
    );

    let gen_ids: Vec<&str> = only_gen
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    let two_sessions =
        env.export_sessions("two-s.txt", &["--session", gen_ids[0], "--session", sid]);
    assert_eq!(two_sessions.len(), 2);

    // room and session together: both must match
    let none = env
        .scmd()
        .args([
            "export",
            "-o",
            "none.txt",
            "--rounds",
            "1000",
            "--room",
            GEN_ROOM,
            "--session",
            sid,
        ])
        .arg("--passphrase-file")
        .arg(env.pass_file())
        .output()
        .unwrap();
    assert_error(&none, 10, "no session in the store matches", "mxkeys list");
    let both = env.export_sessions("both.txt", &["--room", GEN_ROOM, "--session", gen_ids[1]]);
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["session_id"], gen_ids[1]);
}

#[test]
fn export_with_no_match_exits_10() {
    let env = two_fixture_store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args([
            "export",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--room",
            "!nope:example.org",
        ])
        .arg("--passphrase-file")
        .arg(&pf)
        .output()
        .unwrap();
    assert_error(&out, 10, "no session in the store matches", "mxkeys list");
    assert!(!env.path("out.txt").exists());
}

#[test]
fn export_of_an_empty_store_exits_10() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let out = env
        .scmd()
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
    assert_error(&out, 10, "the key store holds no sessions", "mxkeys import");
    assert!(!env.path("out.txt").exists());
}

#[test]
fn list_needs_no_store_passphrase_and_never_prints_keys() {
    let env = two_fixture_store();
    let keys = common::fixture_session_keys();
    // no store passphrase source, no terminal
    let out = env
        .cmd_no_tty()
        .arg("--store")
        .arg(env.store())
        .arg("list")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.starts_with("ROOM"), "{o}");
    assert!(o.contains("!DBATafzTJLmSeBTsoz:example.org"), "{o}");
    let gen_line = o.lines().find(|l| l.starts_with(GEN_ROOM)).unwrap();
    let cols: Vec<&str> = gen_line.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["3", "0-2"], "{gen_line:?}");
    assert!(cols[3].starts_with("file:"), "where the copies came from: {gen_line:?}");
    assert!(
        text(&out.stderr).contains("7 sessions in 5 rooms"),
        "{}",
        text(&out.stderr)
    );
    common::assert_no_secrets(&o, &keys, "list");
    common::assert_no_secrets(&text(&out.stderr), &keys, "list stderr");
    let l = env.list_json();
    assert_eq!(l["sessions"], 7);
    assert_eq!(l["rooms"].as_array().unwrap().len(), 5);
    let g = l["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == GEN_ROOM)
        .unwrap();
    assert_eq!(g["sessions"], 3);
    assert_eq!(g["min_first_index"], 0);
    assert_eq!(g["max_first_index"], 2);
    assert_eq!(l["store"]["protection"], "sealed");
    assert_eq!(l["store"]["kdf_rounds"], 1000);
    common::assert_no_secrets(&l.to_string(), &keys, "list --json");
    // filtered
    let out = env
        .cmd()
        .arg("--store")
        .arg(env.store())
        .args([
            "--json",
            "list",
            "--room",
            "!DBATafzTJLmSeBTsoz:example.org",
        ])
        .output()
        .unwrap();
    let l = common::one_json(&out);
    assert_eq!(l["sessions"], 1);
    assert_eq!(l["rooms"][0]["room_id"], "!DBATafzTJLmSeBTsoz:example.org");
    assert_eq!(l["rooms"][0]["min_first_index"], 0);
}

#[test]
fn import_export_import_keeps_every_session_and_unknown_fields() {
    let env = Env::new();
    env.init_store();
    let mut entries = read_sessions(&fixture("export/plaintext/element-thousand.json"));
    entries[0]["x.custom"] = json!({"nested": [1, "two", null], "ok": true});
    entries[999]["org.example.flag"] = json!("kept");
    let custom_id = entries[0]["session_id"].clone();
    let f = env.encrypt_json("custom.txt", &Value::Array(entries.clone()));
    let r = env.import_ok(&[&f]);
    assert_eq!(r["imported"], 1000);
    let exported = env.export_sessions("back.txt", &[]);
    assert_eq!(exported.len(), 1000);
    assert_eq!(session_set(&exported), session_set(&entries));
    let c = exported
        .iter()
        .find(|s| s["session_id"] == custom_id)
        .unwrap();
    assert_eq!(
        c["x.custom"],
        json!({"nested": [1, "two", null], "ok": true})
    );
    // and into a second store: everything again, nothing new
    let env2 = Env::new();
    env2.init_store();
    let back = env.path("back.txt");
    let r = env2.import_ok(&[&back]);
    assert_eq!(r["imported"], 1000);
    let again = env2.export_sessions("again.txt", &[]);
    assert_eq!(session_set(&again), session_set(&entries));
    let r = env.import_ok(&[&back]);
    assert_eq!(r["unchanged"], 1000);
}

#[test]
fn shared_history_is_written_in_both_spellings_never_msc3061() {
    let env = Env::new();
    env.init_store();
    let g1 = megolm::new_group();
    let g2 = megolm::new_group();
    let g3 = megolm::new_group();
    let mut a = megolm::entry(&g1, "!a:example.org", 0);
    a["org.matrix.msc3061.shared_history"] = json!(true);
    let mut b = megolm::entry(&g2, "!b:example.org", 0);
    b["m.shared_history"] = json!(true);
    let c = megolm::entry(&g3, "!c:example.org", 0);
    let f = env.encrypt_json("sh.txt", &json!([a, b, c]));
    env.import_ok(&[&f]);
    let s = env.export_sessions("out.txt", &[]);
    assert_eq!(s.len(), 3);
    for x in &s {
        let want = x["room_id"] != "!c:example.org";
        assert_eq!(x["shared_history"], json!(want), "{x}");
        assert_eq!(x["m.shared_history"], json!(want), "{x}");
        assert!(x.get("org.matrix.msc3061.shared_history").is_none(), "{x}");
    }
    // the raw plaintext never contains the msc3061 name either
    let pt = env.decrypt(&env.path("out.txt"), &env.pass_file());
    assert!(!text(&pt).contains("msc3061"));
}

#[test]
fn export_to_stdout_writes_the_armor_only() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args(["export", "-o", "-", "--rounds", "1000", "--passphrase-file"])
        .arg(&pf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = element::check_written_armor(&out.stdout);
    let o = element::open(&body, PASS.as_bytes()).unwrap();
    let got: Vec<Value> = serde_json::from_slice(&o.plaintext).unwrap();
    assert_eq!(got.len(), 1);
    assert!(text(&out.stderr).contains("Exported 1 sessions"));
}

#[test]
fn export_asks_for_no_new_passphrase_when_empty_is_refused() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-one.txt")]);
    let empty = env.write_secret("empty.txt", "");
    let out = env
        .scmd()
        .args([
            "export",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--passphrase-file",
        ])
        .arg(&empty)
        .output()
        .unwrap();
    assert_error(
        &out,
        2,
        "refusing to encrypt with an empty passphrase",
        "--insecure-empty-passphrase",
    );
    assert!(!env.path("out.txt").exists());
    env.scmd()
        .args([
            "export",
            "-o",
            "out.txt",
            "--rounds",
            "1000",
            "--insecure-empty-passphrase",
            "--passphrase-file",
        ])
        .arg(&empty)
        .assert()
        .success();
    let o = element::decrypt_file(&env.path("out.txt"), b"");
    assert!(!o.plaintext.is_empty());
}

#[test]
fn import_from_stdin() {
    let env = Env::new();
    env.init_store();
    let pf = env.pass_file();
    let out = env
        .scmd()
        .args(["--json", "import", "-", "--passphrase-file"])
        .arg(&pf)
        .pipe_stdin(fixture("export/wasm-three.txt"))
        .unwrap()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = common::one_json(&out);
    assert_eq!(r["imported"], 3);
    assert_eq!(r["files"][0]["file"], "stdin");
}

#[test]
fn empty_export_imports_nothing_and_succeeds() {
    let env = Env::new();
    env.init_store();
    let r = env.import_ok(&[
        &fixture("export/element-empty-array.txt"),
        &fixture("export/wasm-empty-array.txt"),
    ]);
    assert_eq!(r["imported"], 0);
    assert_eq!(r["files"][0]["entries"], 0);
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn terminal_escapes_in_room_ids_are_refused_and_not_printed_raw() {
    let env = Env::new();
    env.init_store();
    let room = "!evil\u{1b}[2J\u{7}:example.org";
    let g = megolm::new_group();
    let f = env.write(
        "evil.txt",
        element::encrypt(
            &serde_json::to_vec(&json!([megolm::entry(&g, room, 0)])).unwrap(),
            PASS.as_bytes(),
            1000,
        ),
    );
    let pf = env.pass_file();
    for args in [vec!["import"], vec!["inspect"]] {
        let out = env
            .scmd()
            .args(&args)
            .arg(&f)
            .arg("--passphrase-file")
            .arg(&pf)
            .output()
            .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(all.contains("is not a Matrix room id"), "{all:?}");
        assert!(all.contains("!evil"), "{all:?}");
        assert!(!all.contains('\u{1b}') && !all.contains('\u{7}'), "{all:?}");
    }
    assert_eq!(env.list_json()["sessions"], 0);
}

#[test]
fn a_store_from_before_sources_is_read_as_it_is_and_migrated_on_write() {
    let env = Env::new();
    env.init_store();
    env.import_ok(&[&fixture("export/element-three.txt")]);
    // Make it a schema-1 store, as mxkeys wrote them before sources were recorded.
    let db = env.store().join("keys.sqlite3");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "ALTER TABLE sessions DROP COLUMN source;
         UPDATE meta SET value = 1 WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let v = env.list_json();
    assert_eq!(v["sessions"], 3);
    for r in v["rooms"].as_array().unwrap() {
        assert_eq!(r["sources"], json!({"unknown": 1}), "{r}");
    }
    let version = |db: &std::path::Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(version(&db), 1, "a read does not migrate");
    env.import_ok(&[&fixture("export/element-one.txt")]);
    assert_eq!(version(&db), 2);
    let v = env.list_json();
    let sources: Vec<String> = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["sources"].as_object().unwrap().keys().cloned())
        .collect();
    assert_eq!(sources.iter().filter(|s| *s == "unknown").count(), 3);
    assert_eq!(
        sources.iter().filter(|s| s.starts_with("file:")).count(),
        1,
        "{sources:?}"
    );
}
