//! `mxkeys history check` against a REAL Synapse: rooms made on the server, Megolm events sent
//! into them by a second user (bob, from his own device, encrypted with vodozemac's
//! `GroupSession`), and the account checked (alice) holding some of the keys in her store and
//! some in her server-side backup. One situation per class, classified exactly; `--fix`;
//! which rooms are read; paging; `--limit` and `--since`.
//!
//! The server comes from `scripts/test-homeserver.sh` (see tests/homeserver.rs); without one
//! every test prints a skip line and passes, unless MXKEYS_TEST_DISALLOW_SKIP=1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use serde_json::{Value, json};

use common::fault_proxy::FaultProxy;
use common::megolm::GenSession;
use common::rooms::{Sender, foreign_algorithm_content, tampered};
use common::synapse::{Api, Hs, User, enc, require_hs, unique_name};
use common::{Env, Run, class_counts, expect_class_counts};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The account whose history is checked: a user, her logged-in store, her raw API access.
struct Account {
    user: User,
    env: Env,
    api: Api,
}

/// A fresh user with a store logged in (`mxkeys login`).
fn account(hs: &Hs, prefix: &str) -> Account {
    account_at(hs, &hs.base, prefix)
}

/// A fresh user of `hs` with a store logged in at `url` (the server, or a proxy in front of it).
fn account_at(hs: &Hs, url: &str, prefix: &str) -> Account {
    let user = hs.register(prefix);
    let env = Env::for_homeserver(url);
    env.init_and_login(&user);
    Account {
        api: hs.api(&user),
        user,
        env,
    }
}

impl Account {
    /// Import these export entries into the store (an export file made by `mxkeys encrypt`).
    fn import(&self, name: &str, entries: &[Value]) {
        let f = self.env.encrypt_json(name, &Value::Array(entries.to_vec()));
        let r = self.env.import_ok(&[&f]);
        assert_eq!(r["imported"], entries.len(), "{r}");
    }

    /// `mxkeys backup create`: a new backup, its key kept in the store.
    fn create_backup(&self) -> String {
        let rk = self.env.path("rk.txt");
        let r = self
            .env
            .smx_p(&["--json", "backup", "create"], &[("-o", &rk)])
            .ok();
        r.json()["version"].as_str().unwrap().to_string()
    }

    /// `mxkeys backup upload FILE`: these entries into the backup, not into the store.
    fn upload_to_backup(&self, name: &str, entries: &[Value]) {
        let f = self.env.encrypt_json(name, &Value::Array(entries.to_vec()));
        let r = self
            .env
            .smx_p(
                &["--json", "backup", "upload"],
                &[("", &f), ("--passphrase-file", &self.env.pass_file())],
            )
            .ok();
        assert_eq!(r.json()["sent"], entries.len(), "{}", r.stdout);
    }

    /// The session ids the store holds (read back with `mxkeys export`).
    fn held(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .env
            .export_sessions(&format!("{}.txt", unique_name("held")), &[])
            .iter()
            .map(|s| s["session_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// `mxkeys --json history check ARGS`.
    fn check(&self, args: &[&str]) -> Run {
        let mut c = self.env.scmd();
        c.args(["--json", "history", "check"]).args(args);
        self.env.run(&mut c)
    }

    /// `mxkeys --json history check ARGS`, expecting exit `code`; the report.
    fn check_json(&self, args: &[&str], code: i32) -> Value {
        self.check(args).code(code).json()
    }

    /// Every encrypted event of `room` as she sees it: event id -> event.
    fn events(&self, room: &str) -> HashMap<String, Value> {
        self.api
            .encrypted_history(room)
            .into_iter()
            .map(|e| (e["event_id"].as_str().unwrap().to_string(), e))
            .collect()
    }
}

/// The room entry of `room_id` in a report.
fn room_of<'v>(report: &'v Value, room_id: &str) -> &'v Value {
    report["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == room_id)
        .unwrap_or_else(|| panic!("{room_id} not in {report}"))
}

/// The room ids of a report, sorted.
fn room_ids(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The session entry of `session_id` with `class` in a room entry.
fn session<'v>(room: &'v Value, session_id: &str, class: &str) -> &'v Value {
    room["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session_id && s["class"] == class)
        .unwrap_or_else(|| panic!("no {class} entry for {session_id} in {room}"))
}

/// `(session_id or "-", class) -> events` of a room entry's sessions.
fn session_table(room: &Value) -> BTreeMap<(String, String), u64> {
    room["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s["session_id"].as_str().unwrap_or("-").to_string(),
                    s["class"].as_str().unwrap().to_string(),
                ),
                s["events"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// This machine's clock (the server's too), in milliseconds since 1970.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A UTC date `YYYY-MM-DDTHH:MM:SSZ` of a whole number of seconds since 1970, formatted by
/// date(1) (not by mxkeys' own date code).
fn utc_seconds(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// One situation per class, in one room

/// Every class in one room: bob sends, alice checks.
struct Situation {
    alice: Account,
    bob: Sender,
    room: String,
    /// session name -> session id
    ids: HashMap<&'static str, String>,
    /// session name -> its events' ids, oldest first
    sent: HashMap<&'static str, Vec<String>>,
    /// session name -> the session bob sent with
    sessions: HashMap<&'static str, GenSession>,
    /// Alice's backup version.
    version: String,
}

impl Situation {
    fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    /// `origin_server_ts` of the first and last event bob sent of session `name`, as alice
    /// reads them from the server.
    fn ts_range(&self, name: &str, events: &HashMap<String, Value>) -> (u64, u64) {
        let ts: Vec<u64> = self.sent[name]
            .iter()
            .map(|id| events[id]["origin_server_ts"].as_u64().unwrap())
            .collect();
        (*ts.iter().min().unwrap(), *ts.iter().max().unwrap())
    }
}

/// The room, as sent (oldest first):
/// - before alice is invited, `e0`; after her invite, before she joins, `e1`: her membership
///   is `leave`, then `invite` (before_join: 2; she holds no key of `e`);
/// - `a0..a2`, session `a`, in her store from index 0 (decrypted: 3);
/// - `b0..b1`, session `b`, only in her backup, from index 0 (in_backup: 2);
/// - `c0..c7`, session `c`, in her store from index 5 (later_index: 5, decrypted: 3);
/// - `d0`, session `d`, nowhere (missing: 1);
/// - `a3` with one byte of its ciphertext flipped (damaged: 1);
/// - an Olm-algorithm content and an unknown algorithm's (unsupported: 2).
fn situation(hs: &Hs) -> Situation {
    let alice = account(hs, "alice");
    let bob = Sender::register(hs, "bob");
    let room = bob.create_room();
    let mut sessions: HashMap<&'static str, GenSession> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(|n| (n, GenSession::new(&room)))
        .collect();
    let mut sent: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut send = |name: &'static str, n: u32| {
        let s = sessions.get_mut(name).unwrap();
        let ids = bob.send_many(s, name, n);
        sent.entry(name).or_default().extend(ids);
    };

    send("e", 1);
    bob.api.invite(&room, &alice.user.user_id);
    send("e", 1);
    alice.api.join(&room);
    send("a", 3);
    send("b", 2);
    send("c", 8);
    send("d", 1);
    let a = sessions.get_mut("a").unwrap();
    let damaged = tampered(&a.room_message("a3", &bob.user.device_id));
    sent.entry("damaged")
        .or_default()
        .push(bob.send_encrypted(&room, &damaged));
    for alg in ["m.olm.v1.curve25519-aes-sha2", "org.example.foo"] {
        let content = foreign_algorithm_content(alg, &a.sender_key);
        sent.entry("unsupported")
            .or_default()
            .push(bob.send_encrypted(&room, &content));
    }

    let held = [
        sessions.get_mut("a").unwrap().export_entry(0, &[]),
        sessions.get_mut("c").unwrap().export_entry(5, &[]),
    ];
    alice.import("held.txt", &held);
    let version = alice.create_backup();
    let backed_up = [sessions.get_mut("b").unwrap().export_entry(0, &[])];
    alice.upload_to_backup("backed-up.txt", &backed_up);

    let ids = sessions
        .iter()
        .map(|(n, s)| (*n, s.session_id.clone()))
        .collect();
    Situation {
        alice,
        bob,
        room,
        ids,
        sent,
        sessions,
        version,
    }
}

/// The counts of [`situation`].
fn situation_counts() -> BTreeMap<String, u64> {
    expect_class_counts(&[
        ("decrypted", 6),
        ("in_backup", 2),
        ("later_index", 5),
        ("missing", 1),
        ("before_join", 2),
        ("damaged", 1),
        ("unsupported", 2),
    ])
}

#[test]
fn the_server_marks_events_before_the_join_with_the_membership_then() {
    let hs = require_hs!();
    let s = situation(&hs);
    let events = s.alice.events(&s.room);
    let membership = |id: &str| events[id]["unsigned"]["membership"].clone();
    assert_eq!(membership(&s.sent["e"][0]), "leave");
    assert_eq!(membership(&s.sent["e"][1]), "invite");
    for name in ["a", "b", "c", "d", "damaged", "unsupported"] {
        for id in &s.sent[name] {
            assert_eq!(membership(id), "join", "{name}: {}", events[id]);
        }
    }
    // What bob sent is what the server hands alice.
    let d = &events[&s.sent["d"][0]];
    assert_eq!(d["sender"], s.bob.user.user_id.as_str());
    assert_eq!(d["content"]["session_id"], s.id("d"));
    assert_eq!(d["content"]["device_id"], s.bob.user.device_id.as_str());
    assert_eq!(events.len(), 19);

    // Each Megolm event decrypts with its session (vodozemac), to the payload bob encrypted
    // for this room, at the index he sent it at; the tampered one does not.
    let mut s = s;
    for (name, count) in [("a", 3), ("b", 2), ("c", 8), ("d", 1), ("e", 2)] {
        for (i, id) in s.sent[name].clone().iter().enumerate() {
            let content = &events[id]["content"];
            assert_eq!(content["session_id"], s.ids[name].as_str());
            let g = s.sessions.get_mut(name).unwrap();
            assert_eq!(content["sender_key"], g.sender_key.as_str());
            let (plain, index) = g.decrypt(content["ciphertext"].as_str().unwrap()).unwrap();
            let payload: Value = serde_json::from_str(&plain).unwrap();
            assert_eq!(index as usize, i);
            assert_eq!(payload["room_id"], s.room.as_str());
            assert_eq!(payload["type"], "m.room.message");
            assert_eq!(payload["content"]["body"], format!("{name}{i}"));
        }
        assert_eq!(s.sent[name].len(), count);
    }
    let damaged = &events[&s.sent["damaged"][0]]["content"];
    let a = s.sessions.get_mut("a").unwrap();
    assert!(a.decrypt(damaged["ciphertext"].as_str().unwrap()).is_err());
    let algorithms: Vec<&Value> = s.sent["unsupported"]
        .iter()
        .map(|id| &events[id]["content"]["algorithm"])
        .collect();
    assert_eq!(
        algorithms,
        ["m.olm.v1.curve25519-aes-sha2", "org.example.foo"]
    );

    // Her backup holds b, from index 0, and nothing else.
    let (status, info) = s.alice.api.version(None);
    assert_eq!(status, 200, "{info}");
    let version = info["version"].as_str().unwrap();
    let keys: Vec<(String, String)> = s.alice.api.key_map(version).into_keys().collect();
    assert_eq!(keys, [(s.room.clone(), s.ids["b"].clone())]);
    let (status, b) = s.alice.api.key(version, &s.room, &s.ids["b"]);
    assert_eq!((status, b["first_message_index"].as_u64()), (200, Some(0)));
}

#[test]
fn one_situation_per_class_against_the_server() {
    let hs = require_hs!();
    let s = situation(&hs);
    let v = s.alice.check_json(&["--room", &s.room], 3);
    assert_eq!(class_counts(&v["counts"]), situation_counts(), "{v}");
    assert_eq!(room_ids(&v), vec![s.room.clone()]);
    let r = room_of(&v, &s.room);
    assert_eq!(r["events"], 19, "{r}");
    assert_eq!(class_counts(&r["counts"]), situation_counts());
    assert_eq!(v["events"], 19);
    assert_eq!(v["backup_checked"], true);
    // Every other event of the room (its state: creation, members, rules) is counted apart.
    let all = s.alice.api.history(&s.room, 100);
    let plain = all
        .iter()
        .filter(|e| e["type"] != "m.room.encrypted")
        .count();
    assert_eq!(all.len() - plain, 19);
    assert_eq!(v["unencrypted"], plain, "{v}");

    // Decrypted and before_join sessions need nothing: they are not listed.
    let want: BTreeMap<(String, String), u64> = [
        ((s.id("b"), "in_backup"), 2),
        ((s.id("c"), "later_index"), 5),
        ((s.id("d"), "missing"), 1),
        ((s.id("a"), "damaged"), 1),
        (("-", "unsupported"), 2),
    ]
    .into_iter()
    .map(|((id, c), n)| ((id.to_string(), c.to_string()), n))
    .collect();
    assert_eq!(session_table(r), want, "{r}");

    // Every entry names bob and the times of its events, as the server recorded them.
    let events = s.alice.events(&s.room);
    for (name, class) in [("b", "in_backup"), ("d", "missing")] {
        let e = session(r, s.id(name), class);
        assert_eq!(e["sender"], s.bob.user.user_id.as_str(), "{e}");
        let (first, last) = s.ts_range(name, &events);
        assert_eq!(
            (e["first_ts"].as_u64(), e["last_ts"].as_u64()),
            (Some(first), Some(last)),
            "{e}"
        );
    }
    // Only c0..c4 are later_index: the ones before index 5.
    let c = session(r, s.id("c"), "later_index");
    let (first, _) = s.ts_range("c", &events);
    let c4 = events[&s.sent["c"][4]]["origin_server_ts"]
        .as_u64()
        .unwrap();
    assert_eq!(
        (c["first_ts"].as_u64(), c["last_ts"].as_u64()),
        (Some(first), Some(c4))
    );
    // Where each copy starts, the indexes of the events, the device the events claim.
    let b = session(r, s.id("b"), "in_backup");
    assert_eq!(
        (&b["backup_first_index"], &b["store_first_index"]),
        (&json!(0), &Value::Null),
        "{b}"
    );
    assert_eq!((&b["min_index"], &b["max_index"]), (&json!(0), &json!(1)));
    assert_eq!(
        (&c["store_first_index"], &c["backup_first_index"]),
        (&json!(5), &Value::Null),
        "{c}"
    );
    assert_eq!((&c["min_index"], &c["max_index"]), (&json!(0), &json!(4)));
    // The store's copy gives c's sender key; d has none, only what its event claims.
    assert_eq!(c["sender_key"], s.sessions["c"].sender_key.as_str());
    let d = session(r, s.id("d"), "missing");
    assert_eq!(d["claimed_device_id"], s.bob.user.device_id.as_str(), "{d}");
    assert_eq!(d["claimed_sender_key"], s.sessions["d"].sender_key.as_str());
    assert_eq!(d["sender_key"], Value::Null);
    let damaged = session(r, s.id("a"), "damaged");
    let t = events[&s.sent["damaged"][0]]["origin_server_ts"]
        .as_u64()
        .unwrap();
    assert_eq!(
        (damaged["first_ts"].as_u64(), damaged["last_ts"].as_u64()),
        (Some(t), Some(t))
    );
}

#[test]
fn fix_downloads_exactly_the_sessions_the_backup_helps_with() {
    let hs = require_hs!();
    let s = situation(&hs);
    let mut before = vec![s.id("a").to_string(), s.id("c").to_string()];
    before.sort();
    assert_eq!(s.alice.held(), before);

    // The key kept in the store by `backup create` opens the backup: no secret given.
    let v = s.alice.check_json(&["--room", &s.room, "--fix"], 3);
    let after_fix = expect_class_counts(&[
        ("decrypted", 8),
        ("later_index", 5),
        ("missing", 1),
        ("before_join", 2),
        ("damaged", 1),
        ("unsupported", 2),
    ]);
    assert_eq!(class_counts(&v["counts"]), after_fix, "{v}");
    let fix = &v["fix"];
    assert_eq!(fix["version"], s.version.as_str(), "{fix}");
    assert_eq!(
        [
            &fix["wanted"],
            &fix["downloaded"],
            &fix["imported"],
            &fix["improved"]
        ],
        [1, 1, 1, 0],
        "{fix}"
    );
    assert_eq!(fix["rejected"], json!([]));
    assert_eq!(class_counts(&fix["before"]), situation_counts(), "{fix}");
    assert_eq!(class_counts(&fix["after"]), after_fix, "{fix}");
    // The room's own entry is the view after the fix.
    let r = room_of(&v, &s.room);
    assert_eq!(class_counts(&r["counts"]), after_fix);
    assert_eq!(r["events"], 19);

    // Exactly b was downloaded.
    let mut after = vec![
        s.id("a").to_string(),
        s.id("b").to_string(),
        s.id("c").to_string(),
    ];
    after.sort();
    assert_eq!(s.alice.held(), after);

    // A second check: nothing left in the backup, the other classes unchanged.
    let v = s.alice.check_json(&["--room", &s.room], 3);
    assert_eq!(class_counts(&v["counts"]), after_fix, "{v}");
    let r = room_of(&v, &s.room);
    assert!(
        !r["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["session_id"] == s.id("b")),
        "{r}"
    );
    assert_eq!(session(r, s.id("c"), "later_index")["events"], 5);
    assert_eq!(session(r, s.id("d"), "missing")["events"], 1);
    assert_eq!(session(r, s.id("a"), "damaged")["events"], 1);

    // And a --fix with nothing to fetch changes nothing.
    let v = s.alice.check_json(&["--room", &s.room, "--fix"], 3);
    assert_eq!(class_counts(&v["counts"]), after_fix, "{v}");
    assert_eq!(v["fix"]["wanted"], 0, "{v}");
    assert_eq!(s.alice.held(), after);
}

#[test]
fn human_output_names_each_session_and_what_to_do() {
    let hs = require_hs!();
    let s = situation(&hs);
    let r = s
        .alice
        .env
        .smx(&["history", "check", "--room", &s.room])
        .code(3);
    let o = &r.stdout;
    let bob = &s.bob.user.user_id;
    for want in [
        format!(
            "{}: 19 encrypted events: 6 decrypted, 2 in_backup, 5 later_index, 1 missing, 2 before_join, 1 damaged, 2 unsupported",
            s.room
        ),
        format!("session {}: 2 in_backup, ", s.id("b")),
        format!("session {}: 5 later_index, ", s.id("c")),
        format!("session {}: 1 missing, ", s.id("d")),
        format!("session {}: 1 damaged, ", s.id("a")),
        format!("UTC, from {bob}"),
        "the server backup has it from index 0: mxkeys history check --fix".into(),
        "the store's copy starts at index 5, these events are at indexes 0-4".into(),
        format!("{bob}'s device {}", s.bob.user.device_id),
        "the events were altered, or forged".into(),
        "is not Megolm".into(),
    ] {
        assert!(o.contains(&want), "{want:?} not in\n{o}");
    }
    // before_join needs nothing: not listed.
    assert!(!o.contains(s.id("e")), "{o}");
    r.stderr_has("19 encrypted events in 1 room: 6 decrypted, 2 in_backup")
        .stderr_has("Run again with --fix");

    let r2 = s
        .alice
        .env
        .smx(&["history", "check", "--room", &s.room, "--fix"])
        .code(3);
    let fixed = format!(
        "--fix: 1 of 1 helping session downloaded from backup version {} (1 new in the store, 0 improved); \
         6 decrypted, 2 in_backup, 5 later_index, 1 missing, 2 before_join, 1 damaged, 2 unsupported before, \
         8 decrypted, 5 later_index, 1 missing, 2 before_join, 1 damaged, 2 unsupported now.",
        s.version
    );
    assert!(
        r2.stderr.contains(&fixed),
        "{fixed:?} not in\n{}",
        r2.stderr
    );
    assert!(!r2.stdout.contains(s.id("b")), "{}", r2.stdout);
}

#[test]
fn fix_takes_the_backup_key_from_a_recovery_key_file() {
    let hs = require_hs!();
    let s = situation(&hs);
    // Alice on a new machine: a new store, logged in, holding no key (not even the backup's).
    let env = Env::for_homeserver(&hs.base);
    env.init_and_login(&s.alice.user);
    let fresh = Account {
        user: s.alice.user.clone(),
        api: hs.api(&s.alice.user),
        env,
    };
    let before = expect_class_counts(&[
        ("in_backup", 2),
        ("missing", 13),
        ("before_join", 2),
        ("unsupported", 2),
    ]);
    let v = fresh.check_json(&["--room", &s.room], 3);
    assert_eq!(class_counts(&v["counts"]), before, "{v}");

    // No key to open the backup with, and no terminal to ask on.
    let r = fresh.check(&["--room", &s.room, "--fix"]).code(2);
    assert!(
        r.stderr.contains("the backup's key is needed"),
        "{}",
        r.stderr
    );
    assert_eq!(fresh.env.list_json()["sessions"], 0);

    // The recovery key `backup create` wrote.
    let rk = s.alice.env.path("rk.txt");
    let v = fresh
        .check(&[
            "--room",
            &s.room,
            "--fix",
            "--recovery-key-file",
            rk.to_str().unwrap(),
        ])
        .code(3)
        .json();
    let after = expect_class_counts(&[
        ("decrypted", 2),
        ("missing", 13),
        ("before_join", 2),
        ("unsupported", 2),
    ]);
    assert_eq!(class_counts(&v["counts"]), after, "{v}");
    assert_eq!(v["fix"]["imported"], 1);
    assert_eq!(fresh.held(), vec![s.id("b").to_string()]);
}

#[test]
fn events_from_before_the_join_count_as_readable_when_a_key_is_there() {
    let hs = require_hs!();
    let alice = account(&hs, "alice");
    let bob = Sender::register(&hs, "bob");
    let room = bob.create_room();
    // All three sessions sent before alice is even invited (her membership then: leave).
    let mut held = GenSession::new(&room);
    let mut backed_up = GenSession::new(&room);
    let mut lost = GenSession::new(&room);
    bob.send_many(&mut held, "held", 2);
    bob.send_many(&mut backed_up, "backed-up", 3);
    bob.send_many(&mut lost, "lost", 1);
    bob.add_member(&room, &alice.api, &alice.user.user_id);
    alice.import("held.txt", &[held.export_entry(0, &[])]);
    alice.create_backup();
    alice.upload_to_backup("backed-up.txt", &[backed_up.export_entry(0, &[])]);

    // A key held decrypts it; the backup's copy makes it in_backup (the backup would make it
    // readable); only with no key anywhere is it before_join (and that is fine: exit 0 then).
    let v = alice.check_json(&["--room", &room], 3);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 2), ("in_backup", 3), ("before_join", 1)]),
        "{v}"
    );
    let r = room_of(&v, &room);
    assert_eq!(
        session_table(r),
        BTreeMap::from([((backed_up.session_id.clone(), "in_backup".to_string()), 3)]),
        "{r}"
    );

    let v = alice.check_json(&["--room", &room, "--fix"], 0);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 5), ("before_join", 1)]),
        "{v}"
    );
    assert_eq!(v["fix"]["imported"], 1);
}

// ---------------------------------------------------------------------------------------------
// Which rooms, how many events

/// The name of the first of [`two_rooms`].
const ROOM_NAME: &str = "Team room";

/// Alice in two encrypted rooms of bob's (`joined[0]`, named [`ROOM_NAME`]: 2 events she can
/// read; `joined[1]`: 1 she cannot), and invited to a third she has not joined (1 event).
struct TwoRooms {
    alice: Account,
    joined: [String; 2],
    invited: String,
}

fn two_rooms(hs: &Hs) -> TwoRooms {
    let alice = account(hs, "alice");
    let bob = Sender::register(hs, "bob");
    let r1 = bob.create_room();
    let r2 = bob.create_room();
    let r3 = bob.create_room();
    bob.add_member(&r1, &alice.api, &alice.user.user_id);
    bob.add_member(&r2, &alice.api, &alice.user.user_id);
    bob.api.invite(&r3, &alice.user.user_id);
    bob.api.name_room(&r1, ROOM_NAME);
    let mut s1 = GenSession::new(&r1);
    let mut s2 = GenSession::new(&r2);
    let mut s3 = GenSession::new(&r3);
    bob.send_many(&mut s1, "one", 2);
    bob.send_many(&mut s2, "two", 1);
    bob.send_many(&mut s3, "three", 1);
    alice.import(
        "held.txt",
        &[s1.export_entry(0, &[]), s3.export_entry(0, &[])],
    );
    assert_eq!(alice.api.joined_rooms().len(), 2);
    TwoRooms {
        alice,
        joined: [r1, r2],
        invited: r3,
    }
}

#[test]
fn every_joined_room_by_default_and_only_the_rooms_given() {
    let hs = require_hs!();
    let t = two_rooms(&hs);
    let [r1, r2] = &t.joined;

    let v = t.alice.check_json(&[], 3);
    let mut want = vec![r1.clone(), r2.clone()];
    want.sort();
    assert_eq!(
        room_ids(&v),
        want,
        "the invite-only room {} is not read: {v}",
        t.invited
    );
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 2), ("missing", 1)])
    );
    assert_eq!(
        class_counts(&room_of(&v, r1)["counts"]),
        expect_class_counts(&[("decrypted", 2)])
    );
    assert_eq!(
        class_counts(&room_of(&v, r2)["counts"]),
        expect_class_counts(&[("missing", 1)])
    );
    assert_eq!(room_of(&v, r1)["events"], 2);
    assert_eq!(room_of(&v, r2)["events"], 1);
    assert_eq!(room_of(&v, r1)["name"], ROOM_NAME);
    assert_eq!(room_of(&v, r2)["name"], Value::Null);

    let v = t.alice.check_json(&["--room", r1], 0);
    assert_eq!(room_ids(&v), vec![r1.clone()]);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 2)])
    );

    let v = t.alice.check_json(&["--room", r2, "--room", r1], 3);
    assert_eq!(room_ids(&v), want);

    // --limit counts per room: the newest event of each.
    let v = t.alice.check_json(&["--limit", "1"], 3);
    assert_eq!(room_ids(&v), want);
    assert_eq!(
        class_counts(&room_of(&v, r1)["counts"]),
        expect_class_counts(&[("decrypted", 1)])
    );
    assert_eq!(
        class_counts(&room_of(&v, r2)["counts"]),
        expect_class_counts(&[("missing", 1)])
    );

    // She has no backup: the check says so, and it is not an error.
    let r = t
        .alice
        .env
        .smx(&["history", "check"])
        .code(3)
        .stderr_has("The account has no server backup");
    for want in [
        format!("{r1} ({ROOM_NAME}): 2 encrypted events: 2 decrypted"),
        format!("{r2}: 1 encrypted event: 1 missing"),
    ] {
        assert!(r.stdout.contains(&want), "{want:?} not in\n{}", r.stdout);
    }
    assert!(!r.stdout.contains(t.invited.as_str()), "{}", r.stdout);

    // A room she has not joined, asked for by name: refused, with what to do.
    let r = t
        .alice
        .env
        .smx(&["history", "check", "--room", &t.invited])
        .code(10);
    let (errors, hints) = r.error_and_hint_lines();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("the homeserver refused the room's history"),
        "{}",
        r.stderr
    );
    assert!(
        hints[0].contains("the account must be joined"),
        "{}",
        r.stderr
    );
    assert!(hints[0].contains(t.invited.as_str()), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn pages_through_a_room_longer_than_a_page() {
    let hs = require_hs!();
    // Through a pass-through proxy, to see every /messages request and what came back.
    let proxy = FaultProxy::start(&hs.base);
    let alice = account_at(&hs, &proxy.url(), "alice");
    let bob = Sender::register(&hs, "bob");
    let room = bob.create_room();
    bob.add_member(&room, &alice.api, &alice.user.user_id);
    let mut held = GenSession::new(&room);
    let mut lost = GenSession::new(&room);
    bob.send_many(&mut held, "h", 12);
    bob.send_many(&mut lost, "l", 3);
    bob.send_many(&mut held, "h", 10);
    alice.import("held.txt", &[held.export_entry(0, &[])]);
    let all: Vec<String> = alice
        .api
        .history(&room, 1000)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();

    // 25 encrypted events and the room's state events, 4 per page.
    let messages = format!("/_matrix/client/v3/rooms/{}/messages", enc(&room));
    let pages = |limit: u32| -> Vec<Vec<String>> {
        let seen: Vec<_> = proxy
            .seen()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(&messages))
            .filter(|r| {
                r.path
                    .split(['?', '&'])
                    .any(|q| q == format!("limit={limit}"))
            })
            .collect();
        seen.iter()
            .map(|r| {
                assert_eq!(r.status, 200);
                assert!(r.path.contains("dir=b"), "{}", r.path);
                serde_json::from_slice::<Value>(&r.response).unwrap()["chunk"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    let v = alice.check_json(&["--room", &room, "--page-size", "4"], 3);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 22), ("missing", 3)]),
        "{v}"
    );
    let r = room_of(&v, &room);
    assert_eq!(r["events"], 25);
    assert_eq!(session(r, &lost.session_id, "missing")["events"], 3);
    assert_eq!(v["unencrypted"], all.len() - 25);
    // Every event read once, page by page, newest first, as far as the room's creation.
    let got = pages(4);
    assert!(got.len() >= all.len().div_ceil(4), "{} pages", got.len());
    assert!(got.iter().all(|p| p.len() <= 4));
    assert_eq!(got.concat(), all);

    // The same with one page.
    let v1 = alice.check_json(&["--room", &room, "--page-size", "1000"], 3);
    assert_eq!(class_counts(&v1["counts"]), class_counts(&v["counts"]));
    let one = pages(1000);
    assert_eq!(one.concat(), all);

    // With --limit, paging stops at the newest events it needs, long before the room's start.
    let v = alice.check_json(&["--room", &room, "--page-size", "3", "--limit", "5"], 0);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 5)]),
        "{v}"
    );
    let limited = pages(3);
    assert!(
        limited.len() < all.len().div_ceil(3),
        "{} pages of 3 for 5 events of {}",
        limited.len(),
        all.len()
    );
    assert_eq!(limited.concat()[..5], all[..5]);
    assert!(one.len() <= 2, "{} pages", one.len());
}

#[test]
fn limit_counts_only_the_newest_events() {
    let hs = require_hs!();
    let s = situation(&hs);
    // Newest first: the two unsupported, the damaged one, d0 (missing), c7, c6 (decrypted).
    let cases: [(&str, &[(&str, u64)]); 4] = [
        ("1", &[("unsupported", 1)]),
        ("2", &[("unsupported", 2)]),
        ("4", &[("unsupported", 2), ("damaged", 1), ("missing", 1)]),
        (
            "6",
            &[
                ("unsupported", 2),
                ("damaged", 1),
                ("missing", 1),
                ("decrypted", 2),
            ],
        ),
    ];
    for (n, want) in cases {
        let v = s.alice.check_json(&["--room", &s.room, "--limit", n], 3);
        assert_eq!(
            class_counts(&v["counts"]),
            expect_class_counts(want),
            "--limit {n}: {v}"
        );
        assert_eq!(room_of(&v, &s.room)["events"], n.parse::<u64>().unwrap());
    }
    // More than the room holds: all of it.
    let v = s
        .alice
        .check_json(&["--room", &s.room, "--limit", "1000"], 3);
    assert_eq!(class_counts(&v["counts"]), situation_counts());
}

#[test]
fn since_counts_only_the_events_from_that_date() {
    let hs = require_hs!();
    let alice = account(&hs, "alice");
    let bob = Sender::register(&hs, "bob");
    let room = bob.create_room();
    bob.add_member(&room, &alice.api, &alice.user.user_id);
    let mut old = GenSession::new(&room);
    let mut new = GenSession::new(&room);
    let old_ids = bob.send_many(&mut old, "old", 2);
    alice.import("held.txt", &[new.export_entry(0, &[])]);
    // The server's clock (this machine's) passes a whole second before the newer events.
    let ts_of = |id: &str| {
        alice.events(&room)[id]["origin_server_ts"]
            .as_u64()
            .unwrap()
    };
    let last_old = ts_of(&old_ids[1]);
    let boundary = last_old / 1000 + 1;
    while now_ms() < boundary * 1000 + 50 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let new_ids = bob.send_many(&mut new, "new", 3);
    let first_new = ts_of(&new_ids[0]);
    let last_new = ts_of(&new_ids[2]);
    assert!(last_old < boundary * 1000 && boundary * 1000 <= first_new);

    let check =
        |since: &str, code: i32| alice.check_json(&["--room", &room, "--since", since], code);
    // From the boundary: only the 3 newer events (which alice can read).
    let v = check(&utc_seconds(boundary), 0);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 3)]),
        "{v}"
    );
    // From before all of them: all 5.
    let v = check("2000-01-01", 3);
    assert_eq!(
        class_counts(&v["counts"]),
        expect_class_counts(&[("decrypted", 3), ("missing", 2)]),
        "{v}"
    );
    // From after all of them: none.
    let v = check(&utc_seconds(last_new / 1000 + 1), 0);
    assert_eq!(class_counts(&v["counts"]), expect_class_counts(&[]), "{v}");
}
