//! The reference implementation for the benchmark comparison: matrix-sdk-crypto 0.18 doing the
//! same whole job as the corresponding mxkeys command, one process each, so both can be timed
//! end to end by hyperfine in one run.
//!
//! usage:
//!   sdk-compare decrypt EXPORT_FILE PASSPHRASE_FILE            (decrypt_room_key_export)
//!   sdk-compare encrypt JSON_FILE PASSPHRASE_FILE ROUNDS OUT    (encrypt_room_key_export)
//!   sdk-compare backup-decrypt SAVED_RESPONSE_JSON KEY_B64_FILE (BackupDecryptionKey::decrypt_v1 loop)
//!   sdk-compare history SESSIONS_JSON EVENTS_FILE [TASKS]        (OlmMachine::decrypt_room_event)
//!
//! `history` imports the sessions (an export-format JSON array) into an OlmMachine with the
//! memory store (`import_exported_room_keys`), reads every event of EVENTS_FILE (saved
//! /messages responses or JSON lines, as gen-history writes them) into memory, then decrypts
//! them all on a multi-threaded tokio runtime with one worker per core: TASKS tasks (default
//! 2 × cores) each decrypt a contiguous share of the events, one `decrypt_room_event` after
//! another, as a client decrypting a timeline would. It prints the time of each phase.
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use matrix_sdk_crypto::olm::ExportedRoomKey;
use matrix_sdk_crypto::store::types::BackupDecryptionKey;
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use matrix_sdk_crypto::{
    DecryptionSettings, OlmMachine, TrustRequirement, decrypt_room_key_export,
    encrypt_room_key_export,
};
use ruma::serde::Raw;

fn read_secret(p: &str) -> String {
    let s = std::fs::read_to_string(p).expect("secret file");
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

type Event = (ruma::OwnedRoomId, Raw<EncryptedEvent>);

/// Every event of a file of saved /messages responses or JSON lines.
fn read_events(path: &str) -> Vec<Event> {
    let f =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("events file"));
    let mut out = Vec::new();
    let mut take = |v: &serde_json::value::RawValue| {
        let raw: Raw<EncryptedEvent> = Raw::from_json(v.to_owned());
        let room = raw
            .get_field::<ruma::OwnedRoomId>("room_id")
            .expect("room_id")
            .expect("room_id");
        out.push((room, raw));
    };
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        chunk: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    for line in std::io::BufRead::lines(f) {
        let line = line.expect("read");
        if line.trim().is_empty() {
            continue;
        }
        let v: &serde_json::value::RawValue = serde_json::from_str(&line).expect("JSON");
        match serde_json::from_str::<Page<'_>>(v.get())
            .expect("object")
            .chunk
        {
            Some(chunk) => chunk.into_iter().for_each(&mut take),
            None => take(v),
        }
    }
    out
}

fn history(sessions: &str, events: &str, tasks: Option<usize>) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tasks = tasks.unwrap_or(2 * cores).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let keys: Vec<ExportedRoomKey> =
        serde_json::from_slice(&std::fs::read(sessions).expect("sessions file")).expect("sessions");
    let n_keys = keys.len();
    let machine = rt.block_on(async {
        let m = OlmMachine::new(
            ruma::user_id!("@bench:example.org"),
            ruma::device_id!("BENCH"),
        )
        .await;
        let r = m
            .store()
            .import_exported_room_keys(keys, |_, _| {})
            .await
            .expect("import");
        assert_eq!(r.imported_count, n_keys, "every session imported");
        m
    });
    let t1 = Instant::now();
    let events = Arc::new(read_events(events));
    let t2 = Instant::now();
    let n = events.len();
    let per = n.div_ceil(tasks);
    let settings = DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    };
    let decrypted: usize = rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (m, events, settings) = (machine.clone(), events.clone(), settings.clone());
                tokio::spawn(async move {
                    let mut ok = 0usize;
                    for (room, ev) in events.iter().skip(t * per).take(per) {
                        if m.decrypt_room_event(ev, room, &settings).await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 0;
        for h in handles {
            ok += h.await.expect("task");
        }
        ok
    });
    let t3 = Instant::now();
    let secs = (t3 - t2).as_secs_f64();
    eprintln!(
        "sdk-compare: {n_keys} sessions imported in {:.3} s; {n} events read in {:.3} s; \
         {decrypted} decrypted in {secs:.3} s ({:.0} events/s, {tasks} tasks on {cores} workers)",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        n as f64 / secs,
    );
    assert_eq!(decrypted, n, "every event decrypted");
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("decrypt") => {
            let f = std::fs::File::open(&a[2]).expect("export file");
            let keys = decrypt_room_key_export(std::io::BufReader::new(f), &read_secret(&a[3]))
                .expect("decrypt");
            eprintln!("sdk-compare: decrypted {} sessions", keys.len());
        }
        Some("encrypt") => {
            let json = std::fs::read(&a[2]).expect("json file");
            let keys: Vec<ExportedRoomKey> = serde_json::from_slice(&json).expect("sessions");
            let rounds: u32 = a[4].parse().expect("rounds");
            let text =
                encrypt_room_key_export(&keys, &read_secret(&a[3]), rounds).expect("encrypt");
            std::fs::File::create(&a[5])
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("write");
            eprintln!("sdk-compare: encrypted {} sessions", keys.len());
        }
        Some("backup-decrypt") => {
            let body: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&a[2]).expect("response")).expect("json");
            let key = BackupDecryptionKey::from_base64(&read_secret(&a[3])).expect("key");
            let mut n = 0usize;
            for (_room, r) in body["rooms"].as_object().expect("rooms") {
                for (_sid, s) in r["sessions"].as_object().expect("sessions") {
                    let d = &s["session_data"];
                    let pt = key
                        .decrypt_v1(
                            d["ephemeral"].as_str().expect("ephemeral"),
                            d["mac"].as_str().expect("mac"),
                            d["ciphertext"].as_str().expect("ciphertext"),
                        )
                        .expect("decrypt_v1");
                    let _: serde_json::Value = serde_json::from_str(&pt).expect("session json");
                    n += 1;
                }
            }
            eprintln!("sdk-compare: decrypted {n} backed-up sessions");
        }
        Some("history") => history(&a[2], &a[3], a.get(4).map(|t| t.parse().expect("TASKS"))),
        _ => {
            eprintln!("usage: sdk-compare decrypt|encrypt|backup-decrypt ...");
            std::process::exit(2);
        }
    }
}
