//! `mxkeys history export --from-messages`: a room history made here with real Megolm
//! sessions (vodozemac's `GroupSession`) and the matrix-sdk-crypto-wasm fixture, exported
//! offline as JSON lines, text and HTML; checked on content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::megolm::{encrypted_event, entry, new_group};
use common::{Env, assert_error, fixture, mode, one_json, read_sessions, text};
use mxkeys::history::check::{Checker, Seen};
use mxkeys::progress::NoProgress;
use mxkeys::room::event::{ReadOptions, read_events_from_slice};
use serde_json::{Value, json};

const ROOM: &str = "!room:example.org";
const TS: u64 = 1_700_000_000_000;
const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";

/// A history with every kind of event the export reads, and the store to read it with.
struct Story {
    env: Env,
    /// Every event, in order.
    events: Vec<Value>,
    /// The session nobody holds.
    missing_session: String,
}

fn at(n: u64) -> u64 {
    TS + n * 60_000
}

fn plain(ty: &str, id: &str, sender: &str, n: u64, content: Value) -> Value {
    json!({"type": ty, "event_id": id, "sender": sender, "origin_server_ts": at(n), "room_id": ROOM, "content": content})
}

fn member(id: &str, user: &str, n: u64, content: Value) -> Value {
    let mut e = plain("m.room.member", id, user, n, content);
    e["state_key"] = user.into();
    e
}

fn text_msg(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

fn story() -> Story {
    let env = Env::new();
    let mut held = new_group();
    let mut lost = new_group();
    env.init_store_with(&[entry(&held, ROOM, 0)]);
    let enc = |g: &mut vodozemac::megolm::GroupSession,
               id: &str,
               sender: &str,
               n: u64,
               content: Value| {
        encrypted_event(
            g,
            ROOM,
            ROOM,
            ("m.room.message", content),
            (id, sender, at(n)),
        )
    };
    let mut events = vec![
        member(
            "$join-a",
            ALICE,
            1,
            json!({"membership": "join", "displayname": "Alice"}),
        ),
        member(
            "$join-b",
            BOB,
            2,
            json!({"membership": "join", "displayname": "Bob"}),
        ),
        plain(
            "m.room.name",
            "$name",
            ALICE,
            3,
            json!({"name": "Tea room"}),
        ),
    ];
    events.push(enc(&mut held, "$helo", ALICE, 4, text_msg("helo wrold")));
    // The edit: encrypted, with the relation in the clear as the spec asks.
    let mut edit = enc(
        &mut held,
        "$edit",
        ALICE,
        5,
        json!({"msgtype": "m.text", "body": "* hello world", "m.new_content": text_msg("hello world")}),
    );
    edit["content"]["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": "$helo"});
    events.push(edit);
    events.push(enc(
        &mut held,
        "$reply",
        BOB,
        6,
        json!({"msgtype": "m.text", "body": "> <@alice:example.org> helo wrold\n\nhi Alice",
               "m.relates_to": {"m.in_reply_to": {"event_id": "$helo"}}}),
    ));
    events.push(enc(&mut held, "$oops", BOB, 7, text_msg("a secret typo")));
    events.push(json!({"type": "m.room.redaction", "event_id": "$redact", "sender": BOB, "origin_server_ts": at(8),
                       "room_id": ROOM, "redacts": "$oops", "content": {"reason": "typo"}}));
    events.push(enc(
        &mut lost,
        "$lost",
        BOB,
        9,
        text_msg("nobody can read this"),
    ));
    events.push(member(
        "$rename",
        BOB,
        10,
        json!({"membership": "join", "displayname": "Robert"}),
    ));
    events.last_mut().unwrap()["unsigned"] =
        json!({"prev_content": {"membership": "join", "displayname": "Bob"}});
    events.push(enc(
        &mut held,
        "$after",
        BOB,
        11,
        text_msg("now I am Robert"),
    ));
    events.push(plain(
        "m.reaction",
        "$react",
        ALICE,
        12,
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$after", "key": "👍"}}),
    ));
    events.push(member("$leave", ALICE, 13, json!({"membership": "leave"})));
    Story {
        env,
        events,
        missing_session: lost.session_id(),
    }
}

/// Two saved /messages pages that overlap by two events.
fn two_pages(env: &Env, events: &[Value]) -> (PathBuf, PathBuf) {
    let mid = events.len() / 2;
    let a = env.write(
        "page1.json",
        serde_json::to_vec(&json!({"start": "s0", "end": "s1", "chunk": events[..mid + 2]}))
            .unwrap(),
    );
    let b = env.write(
        "page2.json",
        serde_json::to_vec(&json!({"start": "s1", "end": "s2", "chunk": events[mid..]})).unwrap(),
    );
    (a, b)
}

fn export(env: &Env, files: &[&Path], args: &[&str]) -> std::process::Output {
    let mut c = env.scmd();
    c.args(["history", "export"]);
    for f in files {
        c.arg("--from-messages").arg(f);
    }
    c.args(args).output().unwrap()
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn jsonl_has_every_event_once_with_its_class() {
    let s = story();
    let (a, b) = two_pages(&s.env, &s.events);
    let out = s.env.path("room.jsonl");
    let o = export(&s.env, &[&a, &b], &["--json", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    let v = one_json(&o);
    assert_eq!(v["duplicates"], 2, "{v}");
    assert_eq!(v["counts"]["decrypted"], 5);
    assert_eq!(v["counts"]["missing"], 1);
    assert_eq!(v["unencrypted"], 7);
    assert_eq!(v["events"], s.events.len());
    assert_eq!(v["rooms"][0]["room_id"], ROOM);
    assert_eq!(v["format"], "jsonl");
    let got = lines(&out);
    let ids: Vec<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = s
        .events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want, "every event once, in order");
    let by_id: HashMap<&str, &Value> = ids.iter().copied().zip(&got).collect();
    // Decrypted: the payload's type and content, the original's envelope, the class.
    let helo = by_id["$helo"];
    assert_eq!(helo["type"], "m.room.message");
    assert_eq!(helo["content"]["body"], "helo wrold");
    assert_eq!(helo["sender"], ALICE);
    assert_eq!(helo["origin_server_ts"], at(4));
    assert_eq!(helo["unsigned"]["membership"], "join");
    assert_eq!(
        helo["mxkeys"],
        json!({"encrypted": true, "class": "decrypted"})
    );
    // The clear-text relation is kept on the decrypted edit; the edit is not applied here.
    assert_eq!(
        by_id["$edit"]["content"]["m.relates_to"]["event_id"],
        "$helo"
    );
    // Undecryptable: the original, with the class, the session and the reason.
    let lost = by_id["$lost"];
    assert_eq!(lost["type"], "m.room.encrypted");
    assert_eq!(lost["content"]["session_id"], s.missing_session.as_str());
    assert_eq!(lost["mxkeys"]["class"], "missing");
    assert_eq!(lost["mxkeys"]["session_id"], s.missing_session.as_str());
    assert!(
        lost["mxkeys"]["reason"]
            .as_str()
            .unwrap()
            .contains("no key")
    );
    // Unencrypted events as they came, marked.
    assert_eq!(by_id["$name"]["content"]["name"], "Tea room");
    assert_eq!(by_id["$name"]["mxkeys"], json!({"encrypted": false}));
    assert_eq!(mode(&out), 0o600);
    let stderr = text(&o.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not encrypted"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
}

#[test]
fn txt_reads_like_the_conversation() {
    let s = story();
    let (a, b) = two_pages(&s.env, &s.events);
    let out = s.env.path("room.txt");
    let o = export(
        &s.env,
        &[&a, &b],
        &["--format", "txt", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    let t = std::fs::read_to_string(&out).unwrap();
    let want = [
        "# Tea room (!room:example.org)",
        "[2023-11-14 22:14] * Alice joined",
        "[2023-11-14 22:15] * Bob joined",
        "[2023-11-14 22:16] * Alice changed the room name to Tea room",
        "[2023-11-14 22:17] Alice: hello world (edited)",
        "[2023-11-14 22:19] Bob (in reply to Alice: \"hello world\"): hi Alice",
        "[2023-11-14 22:20] Bob: (message deleted by Bob: typo)",
        &format!(
            "[2023-11-14 22:22] Bob: (undecryptable: missing, session {}: no key held for this session (message index 0))",
            s.missing_session
        ),
        "[2023-11-14 22:23] * Bob changed their display name to Robert",
        "[2023-11-14 22:24] Robert: now I am Robert",
        "[2023-11-14 22:25] * Alice reacted 👍 to Robert's message \"now I am Robert\"",
        "[2023-11-14 22:26] * Alice left",
    ];
    assert_eq!(t.lines().collect::<Vec<_>>(), want, "{t}");
    // The edit and the redaction are applied, not shown; what was deleted is gone.
    for gone in ["helo wrold", "* hello world", "a secret typo"] {
        assert!(!t.contains(gone), "{gone} in {t}");
    }
}

#[test]
fn html_keeps_the_allowed_markup_and_nothing_hostile() {
    let env = Env::new();
    let mut g = new_group();
    env.init_store_with(&[entry(&g, ROOM, 0)]);
    let hostile = r#"<b>bold</b> <script>alert(1)</script><img src="x" onerror="alert(2)"><a href="javascript:alert(3)">js</a> <a href="https://matrix.org" style="color:red">link</a><iframe src="https://evil.example"></iframe><p style="background:url(https://evil.example)">para</p><img src="mxc://example.org/never_saved"><ul><li>item</li></ul>"#;
    let events = vec![
        encrypted_event(
            &mut g,
            ROOM,
            ROOM,
            (
                "m.room.message",
                json!({"msgtype": "m.text", "body": "plain fallback", "format": "org.matrix.custom.html", "formatted_body": hostile}),
            ),
            ("$rich", ALICE, at(1)),
        ),
        encrypted_event(
            &mut g,
            ROOM,
            ROOM,
            (
                "m.room.message",
                text_msg("<script>alert('body')</script> & <b>not bold</b>"),
            ),
            ("$plain", BOB, at(2)),
        ),
    ];
    let page = env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": events})).unwrap(),
    );
    let out = env.path("room.html");
    let o = export(
        &env,
        &[&page],
        &["--format", "html", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let h = std::fs::read_to_string(&out).unwrap();
    assert!(h.starts_with("<!DOCTYPE html>"));
    for gone in [
        "<script",
        "alert(1)",
        "alert(2)",
        "onerror",
        "javascript:",
        "<iframe",
        "evil.example",
        "style=\"color",
        "style=\"background",
        "mxc://",
        "never_saved",
    ] {
        assert!(!h.contains(gone), "{gone} survived in {h}");
    }
    for kept in [
        "<b>bold</b>",
        "href=\"https://matrix.org\"",
        "<p>para</p>",
        "<li>item</li>",
    ] {
        assert!(h.contains(kept), "{kept} lost in {h}");
    }
    // A plain body is text, escaped.
    assert!(
        h.contains(
            "&lt;script&gt;alert(&#39;body&#39;)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;"
        ),
        "{h}"
    );
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn the_wasm_fixture_exports_its_recorded_cleartext() {
    let env = Env::new();
    env.init_store_with(&read_sessions(&fixture("sessions/sessions-3.json")));
    let recorded: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixture("sessions/sessions-3.json.events.json")).unwrap(),
    )
    .unwrap();
    let events: Vec<Value> = recorded.iter().map(|r| r["event"].clone()).collect();
    let lines_in: String = events.iter().map(|e| format!("{e}\n")).collect();
    let input = env.write("events.jsonl", lines_in);
    let out = env.path("out.jsonl");
    let o = export(&env, &[&input], &["-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let got = lines(&out);
    assert_eq!(got.len(), recorded.len());
    for r in &recorded {
        let e = got
            .iter()
            .find(|e| e["event_id"] == r["event"]["event_id"])
            .unwrap();
        assert_eq!(e["type"], r["plaintext"]["type"]);
        assert_eq!(e["content"], r["plaintext"]["content"]);
        assert_eq!(e["content"], r["decrypted_by_wasm"]["content"]);
        assert_eq!(e["sender"], r["decrypted_by_wasm"]["sender"]);
        assert_eq!(e["mxkeys"]["class"], "decrypted");
    }
}

#[test]
fn an_existing_output_is_kept_without_force() {
    let s = story();
    let page = s.env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": s.events})).unwrap(),
    );
    let out = s.env.write("room.txt", "keep me");
    let o = export(
        &s.env,
        &[&page],
        &["--format", "txt", "-o", out.to_str().unwrap()],
    );
    assert_error(&o, 2, "already exists", "--force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let o = export(
        &s.env,
        &[&page],
        &["--format", "txt", "--force", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("Alice joined")
    );
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn bad_input_half_way_writes_nothing() {
    let s = story();
    let good = s.env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": s.events})).unwrap(),
    );
    let mut half = serde_json::to_vec(&json!({"chunk": s.events})).unwrap();
    half.truncate(half.len() / 2);
    let bad = s.env.write("cut.json", half);
    let out = s.env.path("room.jsonl");
    let o = export(&s.env, &[&good, &bad], &["-o", out.to_str().unwrap()]);
    assert_error(&o, 13, "cut.json", "saved /messages");
    assert!(!out.exists());
    assert!(
        !s.env.work_names().iter().any(|n| n.contains("mxkeys")),
        "{:?}",
        s.env.work_names()
    );
}

#[test]
fn rooms_not_asked_for_are_left_out_and_counted() {
    let s = story();
    let mut events = s.events.clone();
    events.push(json!({"type": "m.room.message", "event_id": "$elsewhere", "room_id": "!other:example.org",
                       "sender": ALICE, "origin_server_ts": at(20), "content": text_msg("elsewhere")}));
    let mut g = new_group();
    events.push(encrypted_event(
        &mut g,
        "!other:example.org",
        "!other:example.org",
        ("m.room.message", text_msg("elsewhere too")),
        ("$elsewhere-enc", ALICE, at(21)),
    ));
    let page = s.env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": events})).unwrap(),
    );
    let out = s.env.path("room.jsonl");
    let o = export(
        &s.env,
        &[&page],
        &["--json", "--room", ROOM, "-o", out.to_str().unwrap()],
    );
    let v = one_json(&o);
    assert_eq!(v["other_rooms"], 2);
    assert_eq!(lines(&out).len(), s.events.len());
}

#[test]
fn the_check_hands_every_event_over_in_input_order() {
    // Encrypted events are decrypted in batches; unencrypted ones wait for them.
    let mut g = new_group();
    let s = entry(&g, ROOM, 0);
    let s = mxkeys::session::ExportedSession::from_json(&serde_json::to_vec(&s).unwrap()).unwrap();
    let mut source = HashMap::from([((s.room_id.clone(), s.session_id.clone()), s)]);
    let mut events = Vec::new();
    for i in 0..5000u64 {
        if i % 3 == 0 {
            events.push(plain(
                "m.room.message",
                &format!("$p{i}"),
                ALICE,
                i,
                text_msg("p"),
            ));
        } else {
            events.push(encrypted_event(
                &mut g,
                ROOM,
                ROOM,
                ("m.room.message", text_msg("e")),
                (&format!("$p{i}"), ALICE, at(i)),
            ));
        }
    }
    let input = serde_json::to_vec(&json!({"chunk": events})).unwrap();
    let mut seen = Vec::new();
    let mut checker = Checker::new(vec![], None).with_event_observer(Box::new(|s| {
        seen.push(match s {
            Seen::Encrypted(e, _, _) => e.event_id.clone().unwrap(),
            Seen::Other(_, e) => e["event_id"].as_str().unwrap().to_owned(),
        });
        Ok(())
    }));
    read_events_from_slice(&input, &ReadOptions::default(), &mut |e| {
        checker.feed(&mut source, e, &NoProgress)
    })
    .unwrap();
    let report = checker.finish(&mut source, &NoProgress).unwrap();
    assert!(report.all_fine());
    let want: Vec<String> = (0..5000).map(|i| format!("$p{i}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn online_export_needs_the_rooms_named() {
    let env = Env::new();
    env.init_store();
    let out = env.path("x.jsonl");
    let o = export(&env, &[], &["-o", out.to_str().unwrap()]);
    assert_error(&o, 2, "no room to export", "--room");
    assert!(!out.exists());
    let o = export(
        &env,
        &[],
        &[
            "--room",
            ROOM,
            "--since",
            "2024-02-01",
            "--until",
            "2024-01-01",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_error(&o, 2, "--since is after --until", "earlier");
    let o = export(
        &env,
        &[],
        &[
            "--room",
            ROOM,
            "--since",
            "yesterday-ish",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_error(&o, 2, "is not a date", "YYYY-MM-DD");
}

#[test]
fn dates_bound_an_offline_export() {
    let s = story();
    let page = s.env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": s.events})).unwrap(),
    );
    let out = s.env.path("room.jsonl");
    // Events 4 to 7 (22:17:20 to 22:20:20 UTC).
    let o = export(
        &s.env,
        &[&page],
        &[
            "--json",
            "--since",
            "2023-11-14T22:17Z",
            "--until",
            "2023-11-14T22:21Z",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let v = one_json(&o);
    let ids: Vec<String> = lines(&out)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["$helo", "$edit", "$reply", "$oops"], "{v}");
    assert_eq!(v["outside_dates"], s.events.len() - 4);
}

/// Online: a real room on Synapse, paged oldest first; the edit's relation only in the clear
/// (as Element sends it), a redaction, a display name, an event nobody can decrypt.
#[test]
fn online_export_of_a_real_room() {
    let hs = common::synapse::require_hs!();
    let env = Env::for_homeserver(&hs.base);
    let user = hs.register("export-online");
    let api = hs.api(&user);
    let room = api.ok(
        "POST",
        "createRoom",
        Some(&json!({"name": "Export room", "initial_state": [{"type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]})),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = common::synapse::enc(&room);
    api.ok(
        "PUT",
        &format!(
            "profile/{}/displayname",
            common::synapse::enc(&user.user_id)
        ),
        Some(&json!({"displayname": "Exporter"})),
    );
    let mut held = new_group();
    let mut lost = new_group();
    env.init_store_with(&[entry(&held, &room, 0)]);
    let mut txn = 0;
    let mut send = |ty: &str, content: Value| -> String {
        txn += 1;
        api.ok(
            "PUT",
            &format!("rooms/{r}/send/{ty}/t{txn}"),
            Some(&content),
        )["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let wire = |g: &mut vodozemac::megolm::GroupSession, content: Value| {
        encrypted_event(
            g,
            &room,
            &room,
            ("m.room.message", content),
            ("$x", ALICE, 0),
        )["content"]
            .clone()
    };
    let plain_id = send("m.room.message", text_msg("plain hello"));
    let secret_id = send("m.room.encrypted", wire(&mut held, text_msg("secret one")));
    let mut edit = wire(
        &mut held,
        json!({"msgtype": "m.text", "body": "* secret one, edited", "m.new_content": text_msg("secret one, edited")}),
    );
    edit["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": secret_id});
    send("m.room.encrypted", edit);
    let lost_id = send("m.room.encrypted", wire(&mut lost, text_msg("gone")));
    let oops_id = send("m.room.message", text_msg("oops plain"));
    api.ok(
        "PUT",
        &format!(
            "rooms/{r}/redact/{}/t-redact",
            common::synapse::enc(&oops_id)
        ),
        Some(&json!({"reason": "typo"})),
    );
    let token = env.token_file("token.txt", &user.token);
    let net = [
        "--homeserver",
        hs.base.as_str(),
        "--access-token-file",
        token.to_str().unwrap(),
    ];
    let txt = env.path("room.txt");
    let mut args = vec![
        "--format",
        "txt",
        "--room",
        room.as_str(),
        "-o",
        txt.to_str().unwrap(),
    ];
    args.extend(net);
    let o = export(&env, &[], &args);
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    let t = std::fs::read_to_string(&txt).unwrap();
    assert!(t.starts_with(&format!("# Export room ({room})")), "{t}");
    // Names as they were: the localpart until the display name was set.
    let before = &user.localpart;
    for want in [
        format!("* {before} joined"),
        format!("* {before} set who can join to invite"),
        format!("* {before} turned on end-to-end encryption"),
        format!("* {before} changed the room name to Export room"),
        format!("* {before} changed their display name to Exporter"),
        "Exporter: plain hello".into(),
        "Exporter: secret one, edited (edited)".into(),
        "Exporter: (undecryptable: missing".into(),
        "Exporter: (message deleted by Exporter: typo)".into(),
    ] {
        assert_eq!(
            t.lines().filter(|l| l.contains(&want)).count(),
            1,
            "{want} once in:\n{t}"
        );
    }
    for gone in ["* secret one, edited", "oops plain", "\"secret one\""] {
        assert!(!t.contains(gone), "{gone} in {t}");
    }
    // JSON lines: every event once, oldest first; the edit's clear relation kept.
    let jl = env.path("room.jsonl");
    let mut args = vec![
        "--json",
        "--room",
        room.as_str(),
        "-o",
        jl.to_str().unwrap(),
    ];
    args.extend(net);
    let o = export(&env, &[], &args);
    let v = one_json(&o);
    assert_eq!(v["counts"]["decrypted"], 2, "{v}");
    assert_eq!(v["counts"]["missing"], 1, "{v}");
    assert_eq!(v["rooms"][0]["name"], "Export room");
    let got = lines(&jl);
    let ids: Vec<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(pos(&plain_id) < pos(&secret_id) && pos(&secret_id) < pos(&lost_id));
    assert_eq!(got[0]["type"], "m.room.create");
    let edit = got
        .iter()
        .find(|e| e["content"]["m.new_content"].is_object())
        .unwrap();
    assert_eq!(
        edit["content"]["m.relates_to"]["event_id"],
        secret_id.as_str()
    );
    assert_eq!(edit["mxkeys"]["class"], "decrypted");
    // Dates: the last day holds the whole room; nothing of it is from before 2001.
    let all = v["events"].as_u64().unwrap();
    let day = env.path("day.jsonl");
    let old = env.path("old.jsonl");
    for (since_until, file, events) in [
        (["--since", "1d"], &day, all),
        (["--until", "2001-01-01"], &old, 0),
    ] {
        let mut args = vec![
            "--json",
            "--room",
            room.as_str(),
            "-o",
            file.to_str().unwrap(),
        ];
        args.extend(since_until);
        args.extend(net);
        let o = export(&env, &[], &args);
        assert_eq!(
            one_json(&o)["events"],
            events,
            "{since_until:?}: {}",
            text(&o.stderr)
        );
        assert_eq!(lines(file).len() as u64, events);
    }
}

/// `--media` against the real homeserver: the `matrix-encrypt-attachment` fixture uploaded as
/// it is (saved, decrypted to the exact plaintext) and tampered (reported, not saved), plain
/// media, and media the server does not have; the export goes on.
#[test]
fn media_are_downloaded_checked_and_saved_privately() {
    let hs = common::synapse::require_hs!();
    let env = Env::for_homeserver(&hs.base);
    let user = hs.register("export-media");
    let api = hs.api(&user);
    let att = |name: &str| std::fs::read(fixture(&format!("attachment/{name}"))).unwrap();
    let file_json = |name: &str, url: &str| {
        let mut f: Value = serde_json::from_slice(&att(&format!("{name}.file.json"))).unwrap();
        f["url"] = url.into();
        f
    };
    let pixel_mxc = api.upload(&att("pixel.png.enc"));
    let mut tampered = att("hello.txt.enc");
    tampered[0] ^= 0x80;
    let tampered_mxc = api.upload(&tampered);
    let plain_mxc = api.upload(b"plain media bytes");
    let gone_mxc = format!(
        "mxc://{}/NoSuchMedia",
        pixel_mxc
            .trim_start_matches("mxc://")
            .split('/')
            .next()
            .unwrap()
    );
    let mut g = new_group();
    env.init_store_with(&[entry(&g, ROOM, 0)]);
    let mut n = 0;
    let mut msg = |content: Value, id: &str| {
        n += 1;
        encrypted_event(
            &mut g,
            ROOM,
            ROOM,
            ("m.room.message", content),
            (id, ALICE, at(n)),
        )
    };
    let events = vec![
        msg(
            json!({"msgtype": "m.image", "body": "pixel.png", "file": file_json("pixel.png", &pixel_mxc)}),
            "$img",
        ),
        msg(
            json!({"msgtype": "m.file", "body": "hello.txt", "file": file_json("hello.txt", &tampered_mxc)}),
            "$bad",
        ),
        msg(
            json!({"msgtype": "m.file", "body": "notes.txt", "url": plain_mxc}),
            "$plain",
        ),
        msg(
            json!({"msgtype": "m.file", "body": "gone.txt", "url": gone_mxc}),
            "$gone",
        ),
        msg(
            json!({"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
                   "formatted_body": format!("<p>inline <img src=\"{pixel_mxc}\" alt=\"px\"></p>")}),
            "$inline",
        ),
    ];
    let page = env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": events})).unwrap(),
    );
    let token = env.token_file("token.txt", &user.token);
    let out = env.path("room.html");
    let media = env.path("media");
    let o = export(
        &env,
        &[&page],
        &[
            "--json",
            "--format",
            "html",
            "-o",
            out.to_str().unwrap(),
            "--media",
            media.to_str().unwrap(),
            "--homeserver",
            &hs.base,
            "--access-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    let v = one_json(&o);
    assert_eq!(v["media"]["saved"], 2, "{v}");
    assert_eq!(v["media"]["failed"], 2, "{v}");
    let stderr = text(&o.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("$bad") && l.contains("SHA-256")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("$gone") && l.contains("not saved")),
        "{stderr}"
    );
    assert_eq!(mode(&media), 0o700);
    let saved = common::dir_names(&media);
    assert_eq!(saved.len(), 2, "{saved:?}");
    let pixel_id = pixel_mxc.rsplit('/').next().unwrap();
    let pixel = media.join(format!("{pixel_id}-pixel.png"));
    assert_eq!(std::fs::read(&pixel).unwrap(), att("pixel.png"));
    assert_eq!(mode(&pixel), 0o600);
    let plain = media.join(format!(
        "{}-notes.txt",
        plain_mxc.rsplit('/').next().unwrap()
    ));
    assert_eq!(std::fs::read(&plain).unwrap(), b"plain media bytes");
    let h = std::fs::read_to_string(&out).unwrap();
    assert!(
        h.contains(&format!("<img src=\"media/{pixel_id}-pixel.png\"")),
        "{h}"
    );
    assert!(
        h.contains(&format!(
            "<img src=\"media/{pixel_id}-pixel.png\" alt=\"px\">"
        )),
        "inline image: {h}"
    );
    assert!(h.contains("media not saved"), "{h}");
    assert!(!h.contains("mxc://"), "{h}");
    // A cap below every media item's size: refused whole, never truncated, and said so.
    let capped = env.path("capped");
    let o = export(
        &env,
        &[&page],
        &[
            "--json",
            "-o",
            env.path("capped.jsonl").to_str().unwrap(),
            "--media",
            capped.to_str().unwrap(),
            "--max-media-bytes",
            "10",
            "--homeserver",
            &hs.base,
            "--access-token-file",
            token.to_str().unwrap(),
        ],
    );
    let v = one_json(&o);
    assert_eq!(v["media"]["failed"], 4, "{v}");
    assert!(
        text(&o.stderr).contains("larger than 10 bytes"),
        "{}",
        text(&o.stderr)
    );
    assert!(common::dir_names(&capped).is_empty());
}

/// A server without the authenticated media endpoint (404 `M_UNRECOGNIZED`, or a 404 that is
/// not a Matrix error): the legacy `/_matrix/media/v3/download` is asked instead.
#[test]
fn media_fall_back_to_the_legacy_endpoint() {
    use common::fault_proxy::{Action, FaultProxy};
    let hs = common::synapse::require_hs!();
    let user = hs.register("export-legacy");
    let pixel_enc = std::fs::read(fixture("attachment/pixel.png.enc")).unwrap();
    let mut file: Value =
        serde_json::from_slice(&std::fs::read(fixture("attachment/pixel.png.file.json")).unwrap())
            .unwrap();
    file["url"] = "mxc://localhost/OldServerMedia".into();
    for v1_answer in [
        Action::matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request"),
        Action::RespondBytes {
            status: 404,
            body: std::sync::Arc::new(b"<html>Not Found</html>".to_vec()),
        },
    ] {
        let proxy = FaultProxy::start(&hs.base);
        proxy.rule("GET", "/_matrix/client/v1/media/download/", 0, v1_answer);
        proxy.rule(
            "GET",
            "/_matrix/media/v3/download/localhost/OldServerMedia",
            0,
            Action::RespondBytes {
                status: 200,
                body: std::sync::Arc::new(pixel_enc.clone()),
            },
        );
        let env = Env::for_homeserver(&proxy.url());
        let mut g = new_group();
        env.init_store_with(&[entry(&g, ROOM, 0)]);
        let ev = encrypted_event(
            &mut g,
            ROOM,
            ROOM,
            (
                "m.room.message",
                json!({"msgtype": "m.image", "body": "pixel.png", "file": file}),
            ),
            ("$img", ALICE, at(1)),
        );
        let page = env.write("page.json", serde_json::to_vec(&json!([ev])).unwrap());
        let token = env.token_file("token.txt", &user.token);
        let out = env.path("room.jsonl");
        let media = env.path("media");
        let url = proxy.url();
        let o = export(
            &env,
            &[&page],
            &[
                "-o",
                out.to_str().unwrap(),
                "--media",
                media.to_str().unwrap(),
                "--homeserver",
                &url,
                "--access-token-file",
                token.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
        assert_eq!(proxy.count("GET", "/_matrix/client/v1/media/download/"), 1);
        assert_eq!(proxy.count("GET", "/_matrix/media/v3/download/"), 1);
        assert_eq!(
            std::fs::read(media.join("OldServerMedia-pixel.png")).unwrap(),
            std::fs::read(fixture("attachment/pixel.png")).unwrap()
        );
        let line = &lines(&out)[0];
        assert_eq!(
            line["mxkeys"]["media"][0]["mxc"],
            "mxc://localhost/OldServerMedia"
        );
        assert_eq!(
            line["mxkeys"]["media"][0]["saved"],
            "media/OldServerMedia-pixel.png"
        );
    }
}
