//! Crash safety (issue 5, part 3): `mxkeys` is killed with SIGKILL at many points of a long
//! `import`, `backup download` (into the store) and `backup upload`, and of `export -o F` and
//! `decrypt -o F`. After every kill:
//!
//! - the store opens (`list` exits 0) and holds every session it held before (room, session
//!   id, first index never worse);
//! - for import and download, the store is exactly the state before or exactly the state after
//!   the run (one transaction), and running the command again completes with the full result;
//! - for upload, running it again completes and the server ends with every key, none degraded;
//! - an output file either does not exist or is complete and valid.
//!
//! The kill points are spread over the progress of one uncrashed run, measured first. Progress
//! is the run's own CPU time, so the points fall at the same places of the work on an idle or
//! on a busy machine (see `common::run::kill_points`); every test also has control runs that
//! are never killed, whose results are checked. The backup parts run against the real Synapse
//! of `scripts/test-homeserver.sh` (skipped without it, unless MXKEYS_TEST_DISALLOW_SKIP=1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mxkeys::export::{ExportWriter, SessionWriter};
use mxkeys::secret::Passphrase;
use mxkeys::session::ExportedSession;
use serde_json::{Value, json};

use common::megolm::{self, GenSession};
use common::run::{Fate, kill_at, kill_points};
use common::synapse::require_hs;
use common::{Env, PASS, Run, element, fixture};

/// Sessions in the generated export. Every trial reruns the whole import, so in a debug build
/// on a 2-core machine 20,000 sessions (about 6 s per import) would take the 50 trials past
/// ten minutes; the default keeps the suite near two minutes. `MXKEYS_CRASH_IMPORT_SESSIONS=20000`
/// runs the full-size version.
fn import_sessions() -> usize {
    std::env::var("MXKEYS_CRASH_IMPORT_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_500)
}

/// Import trials (50 unless `MXKEYS_CRASH_IMPORT_TRIALS` says otherwise).
fn import_trials() -> usize {
    std::env::var("MXKEYS_CRASH_IMPORT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `mxkeys ARGS` in `env`, run to completion.
fn run(env: &Env, args: &[OsString]) -> Run {
    Run::from_output(&env.process(args).output().unwrap())
}

/// `mxkeys ARGS`, which must succeed; its stdout.
fn run_ok(env: &Env, args: &[OsString]) -> String {
    let r = run(env, args);
    assert_eq!(r.code, 0, "{args:?} failed: {}", r.stderr);
    r.stdout
}

/// `--store DIR --store-passphrase-file F` and `args`.
fn store_args(env: &Env, store: &Path, args: &[&str]) -> Vec<OsString> {
    let mut v = env.store_args_for(store);
    v.extend(args.iter().map(OsString::from));
    v
}

fn init_store(env: &Env, store: &Path) {
    run_ok(
        env,
        &store_args(env, store, &["init", "--store-kdf-rounds", "1000"]),
    );
}

/// `--json import FILE` into `store` with the fixtures' passphrase.
fn import_args(env: &Env, store: &Path, file: &Path) -> Vec<OsString> {
    let mut a = store_args(env, store, &["--json", "import"]);
    a.extend([file.into(), "--passphrase-file".into()]);
    a.push(env.pass_file().into());
    a
}

fn import(env: &Env, store: &Path, file: &Path) -> Run {
    run(env, &import_args(env, store, file))
}

/// Tally of the trials' fates; a run that ended before its kill must have succeeded.
#[derive(Debug, Default)]
struct Tally {
    killed: usize,
    finished: usize,
    /// The furthest progress a killed run had made (CPU ticks).
    latest_kill: u64,
}

impl Tally {
    fn add(&mut self, fate: Fate, problems: &mut Vec<String>, trial: usize) {
        match fate {
            Fate::Killed(at, _) => {
                self.killed += 1;
                self.latest_kill = self.latest_kill.max(at);
            }
            Fate::Finished(code, _, _) => {
                self.finished += 1;
                if code != 0 {
                    problems.push(format!(
                        "trial {trial}: the run ended by itself with {code}"
                    ));
                }
            }
        }
    }

    /// Enough runs were killed while they worked: the kill points are taken from the runs' own
    /// progress, so at any machine speed about two thirds are.
    fn assert_killed(&self, at_least: usize) {
        assert!(
            self.killed >= at_least,
            "only {} runs were killed mid-run ({} finished first)",
            self.killed,
            self.finished
        );
    }
}

/// The progress (CPU ticks) of an uncrashed run of `cmd`, which must succeed: the smaller of
/// two runs, as the kill trials run with warm caches. Each call makes a fresh command.
fn control_progress(mut cmd: impl FnMut() -> Command) -> u64 {
    (0..2)
        .map(|_| match kill_at(cmd(), u64::MAX) {
            Fate::Finished(0, p, _) => p,
            f => panic!("the uncrashed run failed: {f:?}"),
        })
        .min()
        .unwrap()
        .max(1)
}

/// (room, session) -> first index of every session in the store, read with SQLite directly.
fn logical(store: &Path) -> BTreeMap<(String, String), u32> {
    let conn = common::store::open(store);
    let mut st = conn
        .prepare("SELECT room_id, session_id, first_index FROM sessions")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            r.get::<_, i64>(2)? as u32,
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// The store opens after a crash: `list --json` exits 0 and counts what SQLite holds.
fn store_opens(w: &Env, store: &Path) -> u64 {
    let out = run_ok(
        w,
        &[
            "--store".into(),
            store.into(),
            "--json".into(),
            "list".into(),
        ],
    );
    serde_json::from_str::<Value>(&out).unwrap()["sessions"]
        .as_u64()
        .unwrap()
}

/// Every session held before is still held, never with a worse first index.
fn holds_everything(
    before: &BTreeMap<(String, String), u32>,
    now: &BTreeMap<(String, String), u32>,
) -> Result<(), String> {
    for (k, idx) in before {
        match now.get(k) {
            None => return Err(format!("lost session {k:?}")),
            Some(n) if n > idx => return Err(format!("session {k:?} degraded {idx} -> {n}")),
            _ => {}
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// An export file of `sessions` written with the library's streaming writer at 1 round.
fn write_export(path: &Path, sessions: &[ExportedSession]) {
    let f = std::fs::File::create(path).unwrap();
    let pass = Passphrase::from_string(PASS.into());
    let mut w =
        SessionWriter::new(ExportWriter::new(std::io::BufWriter::new(f), &pass, 1).unwrap());
    for s in sessions {
        w.push(s).unwrap();
    }
    let mut out = w.finish().unwrap();
    std::io::Write::flush(&mut out).unwrap();
}

fn session(e: &Value) -> ExportedSession {
    ExportedSession::from_json(&serde_json::to_vec(e).unwrap()).unwrap()
}

/// Sessions made with vodozemac: (export at index 0, export at `worse`).
fn generate(n: usize, rooms: usize, worse: u32) -> Vec<(ExportedSession, ExportedSession)> {
    (0..n)
        .map(|i| {
            let g = megolm::new_group();
            let room = format!("!crash{}:example.org", i % rooms);
            (
                session(&megolm::entry(&g, &room, 0)),
                session(&megolm::entry(&g, &room, worse)),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Commands that take the store from one state to another in one transaction (import, download)

/// (room, session) -> first index.
type Logical = BTreeMap<(String, String), u32>;

/// A one-transaction command on copies of a baseline store.
struct Transition<'a> {
    env: &'a Env,
    /// The store before every run (copied for each).
    baseline: &'a Path,
    /// `mxkeys ... --json COMMAND` on a store directory.
    args: &'a dyn Fn(&Path) -> Vec<OsString>,
}

/// What the kill trials of a [`Transition`] saw.
struct Trials {
    tally: Tally,
    /// The progress of an uncrashed run (CPU ticks).
    control: u64,
    saw_before: usize,
    saw_after: usize,
}

impl Transition<'_> {
    /// The control: the command on a copy of the baseline, never killed; its JSON report and
    /// the state after it.
    fn control(&self) -> (Value, Logical) {
        let reference = self.env.path("reference");
        copy_dir(self.baseline, &reference);
        let j = serde_json::from_str(&run_ok(self.env, &(self.args)(&reference))).unwrap();
        (j, logical(&reference))
    }

    /// `trials` runs of the command, each SIGKILLed at a point of its own progress, the points
    /// spread over an uncrashed run's (see `kill_points`: some land before the commit, some
    /// after, some past the end, at any machine speed). After every kill the store opens, holds
    /// every session it held, never worse, and is exactly `before` or exactly `after`; running
    /// the command again reaches `after`. Both states must have been seen.
    fn before_or_after_trials(&self, before: &Logical, after: &Logical, trials: usize) -> Trials {
        let store = self.env.path("trial");
        let control = control_progress(|| {
            copy_dir(self.baseline, &store);
            self.env.process(&(self.args)(&store))
        });
        let mut tally = Tally::default();
        let (mut saw_before, mut saw_after) = (0, 0);
        let mut problems = Vec::new();
        for (i, at) in kill_points(control, trials).into_iter().enumerate() {
            copy_dir(self.baseline, &store);
            let fate = kill_at(self.env.process(&(self.args)(&store)), at);
            tally.add(fate, &mut problems, i);
            let n = store_opens(self.env, &store);
            let now = logical(&store);
            assert_eq!(n as usize, now.len());
            if let Err(e) = holds_everything(before, &now) {
                problems.push(format!("trial {i} ({fate:?}): {e}"));
            }
            if now == *before {
                saw_before += 1;
            } else if now == *after {
                saw_after += 1;
            } else {
                problems.push(format!(
                    "trial {i} ({fate:?}): {} sessions, neither the state before ({}) nor after ({})",
                    now.len(),
                    before.len(),
                    after.len()
                ));
            }
            // Run again: it completes, with the full result.
            let r = run(self.env, &(self.args)(&store));
            if r.code != 0 {
                problems.push(format!(
                    "trial {i}: the rerun exited {}: {}",
                    r.code, r.stderr
                ));
            } else if logical(&store) != *after {
                problems.push(format!(
                    "trial {i}: the rerun did not reach the full result"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        tally.assert_killed(trials / 2);
        assert!(
            saw_before > 0 && saw_after > 0,
            "kills did not cover the commit: state before {saw_before}, after {saw_after}"
        );
        Trials {
            tally,
            control,
            saw_before,
            saw_after,
        }
    }
}

impl std::fmt::Display for Trials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} trials ({} killed mid-run, the latest at {} of the {} CPU ticks of an uncrashed run; {} finished first); state before {}, after {}",
            self.tally.killed + self.tally.finished,
            self.tally.killed,
            self.tally.latest_kill,
            self.control,
            self.tally.finished,
            self.saw_before,
            self.saw_after
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Import

#[test]
fn kill_during_import_then_rerun() {
    let trials = import_trials();
    let n_sessions = import_sessions();
    let pre_held = n_sessions / 10;
    let w = Env::new();
    let t = Instant::now();
    let generated = generate(n_sessions, n_sessions / 10, 5);
    let big = w.path("big.txt");
    write_export(
        &big,
        &generated.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
    );
    let pre = w.path("pre.txt");
    write_export(
        &pre,
        &generated[..pre_held]
            .iter()
            .map(|g| g.1.clone())
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "generated {n_sessions} sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The store before: element-three, and pre_held of the file's sessions at index 5.
    let baseline = w.path("baseline");
    init_store(&w, &baseline);
    assert_eq!(
        import(&w, &baseline, &fixture("export/element-three.txt")).code,
        0
    );
    assert_eq!(import(&w, &baseline, &pre).code, 0);
    let before = logical(&baseline);
    assert_eq!(before.len(), pre_held + 3);

    let args = |store: &Path| import_args(&w, store, &big);
    let t = Transition {
        env: &w,
        baseline: &baseline,
        args: &args,
    };
    let (j, after) = t.control();
    assert_eq!(j["imported"], n_sessions - pre_held, "{j}");
    assert_eq!(j["improved"], pre_held, "{j}");
    assert_eq!(after.len(), n_sessions + 3);

    let seen = t.before_or_after_trials(&before, &after, trials);
    // The sealed rows of a crashed-then-rerun store all open: export it and decrypt the file
    // independently.
    let store = w.path("trial");
    let out = w.path("all.txt");
    let mut a = store_args(&w, &store, &["export", "--rounds", "1000", "-o"]);
    a.extend([out.clone().into(), "--passphrase-file".into()]);
    a.push(w.pass_file().into());
    run_ok(&w, &a);
    let pt = element::decrypt_file(&out, PASS.as_bytes()).plaintext;
    let all: Vec<Value> = serde_json::from_slice(&pt).unwrap();
    assert_eq!(all.len(), n_sessions + 3);
    println!("crash safety, import of {n_sessions} sessions: {seen}");
}

// ---------------------------------------------------------------------------------------------
// Output files: never half-written

#[test]
fn killed_export_and_decrypt_never_leave_a_partial_output() {
    const TRIALS: usize = 12;
    let w = Env::new();
    const N: usize = 2_000;
    let generated = generate(N, 200, 0);
    let sessions: Vec<ExportedSession> = generated.into_iter().map(|g| g.0).collect();
    let src = w.path("src.txt");
    write_export(&src, &sessions);
    let store = w.path("store");
    init_store(&w, &store);
    assert_eq!(import(&w, &store, &src).code, 0);

    let export_args = |out: &Path| {
        let mut a = store_args(&w, &store, &["export", "--rounds", "1000", "-o"]);
        a.extend([out.into(), "--passphrase-file".into()]);
        a.push(w.pass_file().into());
        a
    };
    let decrypt_args = |out: &Path| {
        let mut a: Vec<OsString> = vec!["decrypt".into(), src.clone().into(), "-o".into()];
        a.extend([out.into(), "--passphrase-file".into()]);
        a.push(w.pass_file().into());
        a
    };
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let (mut complete, mut leftover_tmp) = (0, 0);
    let dir = w.path("out");
    let fresh_dir = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir.join("F")
    };
    for kind in ["export", "decrypt"] {
        let args = |f: &Path| {
            if kind == "export" {
                export_args(f)
            } else {
                decrypt_args(f)
            }
        };
        // The control, never killed: its output is complete, and its progress sets the kill
        // points. Its plaintext is what a complete decrypt output holds.
        let control = control_progress(|| w.process(&args(&fresh_dir())));
        let f = dir.join("F");
        let reference = check_output(kind, &format!("{kind} control"), &f, N, None);
        for (i, at) in kill_points(control, TRIALS).into_iter().enumerate() {
            let f = fresh_dir();
            let fate = kill_at(w.process(&args(&f)), at);
            tally.add(fate, &mut problems, i);
            leftover_tmp += common::dir_names(&dir)
                .iter()
                .filter(|n| n.starts_with(".mxkeys-"))
                .count();
            if !f.exists() {
                continue;
            }
            complete += 1;
            check_output(
                kind,
                &format!("{kind} trial {i} ({fate:?})"),
                &f,
                N,
                Some(&reference),
            );
        }
    }
    println!(
        "crash safety, output files: {} trials ({} killed mid-run, {} finished first); every output absent or complete ({complete} complete, and the two controls); {leftover_tmp} temporary files left by the kills (never the output)",
        2 * TRIALS,
        tally.killed,
        tally.finished
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    tally.assert_killed(TRIALS);
    // On Linux the output is written to an unnamed file (O_TMPFILE) until the commit, so a kill
    // leaves nothing: no partial file of decrypted keys under any name.
    if cfg!(target_os = "linux") {
        assert_eq!(
            leftover_tmp, 0,
            "killed runs left temporary files next to the output"
        );
    }
}

/// An output file is complete: an export decrypts (independently) to `n` sessions, a decrypt
/// output is `n` sessions of JSON, the same bytes as `reference` when given. Returns its
/// plaintext.
fn check_output(kind: &str, what: &str, f: &Path, n: usize, reference: Option<&[u8]>) -> Vec<u8> {
    let pt = if kind == "export" {
        element::decrypt_file(f, PASS.as_bytes()).plaintext
    } else {
        std::fs::read(f).unwrap()
    };
    let v: Vec<Value> = serde_json::from_slice(&pt)
        .unwrap_or_else(|e| panic!("{what}: the output is not complete JSON: {e}"));
    assert_eq!(v.len(), n, "{what}: incomplete output");
    if let Some(r) = reference
        && kind == "decrypt"
    {
        assert_eq!(pt, r, "{what}: the output differs from the control's");
    }
    pt
}

// ---------------------------------------------------------------------------------------------
// Backup download and upload, against the real Synapse

/// `PUT` many `KeyBackupData` at once, at most 400 rooms per request.
fn put_many(api: &common::synapse::Api, version: &str, items: &[(String, String, Value)]) {
    let mut rooms = serde_json::Map::new();
    let flush = |rooms: &mut serde_json::Map<String, Value>| {
        if rooms.is_empty() {
            return;
        }
        let body = json!({ "rooms": std::mem::take(rooms) });
        let (s, v) = api.put_keys(version, &body);
        assert_eq!(s, 200, "{v}");
    };
    for (room, sid, d) in items {
        if !rooms.contains_key(room) && rooms.len() >= 400 {
            flush(&mut rooms);
        }
        rooms
            .entry(room.clone())
            .or_insert_with(|| json!({"sessions": {}}))["sessions"][sid] = d.clone();
    }
    flush(&mut rooms);
}

#[test]
fn kill_during_backup_download_into_the_store() {
    const TRIALS: usize = 25;
    const N: usize = 1_000;
    const PRE: usize = 100;
    let hs = require_hs!();
    let user = hs.register("crashdown");
    let api = hs.api(&user);
    let key = mxkeys::backup::BackupDecryptionKey::random().unwrap();
    let public = key.public_key();
    let version = api.create_version(&key.public_key_base64());
    let mut gens: Vec<GenSession> = (0..N)
        .map(|i| GenSession::new(&format!("!down{}:localhost", i % 500)))
        .collect();
    let items: Vec<_> = gens
        .iter_mut()
        .map(|g| {
            (
                g.room_id.clone(),
                g.session_id.clone(),
                g.backup_data(&public, 0, 0),
            )
        })
        .collect();
    put_many(&api, &version, &items);
    assert_eq!(api.count(&version), N as u64);

    let w = Env::new();
    let tok = w.token_file("token.txt", &user.token);
    let rk = w.token_file("rk.txt", &mxkeys::recovery_key::encode(key.expose_secret()));
    // The store before: element-three, and PRE of the backup's sessions at a worse index.
    let baseline = w.path("baseline");
    init_store(&w, &baseline);
    assert_eq!(
        import(&w, &baseline, &fixture("export/element-three.txt")).code,
        0
    );
    let pre = w.path("pre.txt");
    write_export(
        &pre,
        &gens[..PRE]
            .iter_mut()
            .map(|g| g.exported(4, &[]))
            .collect::<Vec<_>>(),
    );
    assert_eq!(import(&w, &baseline, &pre).code, 0);
    let before = logical(&baseline);
    assert_eq!(before.len(), PRE + 3);

    let args = |store: &Path| {
        let mut a = store_args(
            &w,
            store,
            &["--json", "backup", "download", "--homeserver", &hs.base],
        );
        a.extend(["--access-token-file".into(), tok.clone().into()]);
        a.extend(["--recovery-key-file".into(), rk.clone().into()]);
        a
    };
    let t = Transition {
        env: &w,
        baseline: &baseline,
        args: &args,
    };
    let (j, after) = t.control();
    assert_eq!(j["imported"], N - PRE, "{j}");
    assert_eq!(j["improved"], PRE, "{j}");
    assert_eq!(after.len(), N + 3);

    let seen = t.before_or_after_trials(&before, &after, TRIALS);
    // The backup itself was only read.
    assert_eq!(api.count(&version), N as u64);
    println!("crash safety, backup download of {N} keys: {seen}");
}

#[test]
fn kill_during_backup_upload_then_rerun() {
    const TRIALS: usize = 25;
    const N: usize = 600;
    const PRESEED: usize = 30;
    const LOCAL_INDEX: u32 = 3;
    let hs = require_hs!();
    let user = hs.register("crashup");
    let api = hs.api(&user);
    let key = mxkeys::backup::BackupDecryptionKey::random().unwrap();
    let public = key.public_key();

    let w = Env::new();
    let tok = w.token_file("token.txt", &user.token);
    let rk = w.token_file("rk.txt", &mxkeys::recovery_key::encode(key.expose_secret()));
    // The store: N sessions (one room each, so that the upload takes two requests) at index 3.
    let mut gens: Vec<GenSession> = (0..N)
        .map(|i| GenSession::new(&format!("!up{i}:localhost")))
        .collect();
    let file = w.path("local.txt");
    write_export(
        &file,
        &gens
            .iter_mut()
            .map(|g| g.exported(LOCAL_INDEX, &[]))
            .collect::<Vec<_>>(),
    );
    let store = w.path("store");
    init_store(&w, &store);
    assert_eq!(import(&w, &store, &file).code, 0);
    let before = logical(&store);
    let ids: Vec<(String, String)> = gens
        .iter()
        .map(|g| (g.room_id.clone(), g.session_id.clone()))
        .collect();

    // A fresh backup version per run, already holding PRESEED keys better than ours
    // (index 0, forwarded once): they must survive every run untouched.
    let fresh_version =
        |gens: &mut Vec<GenSession>| -> (String, BTreeMap<(String, String), Value>) {
            let v = api.create_version(&key.public_key_base64());
            let items: Vec<_> = gens[..PRESEED]
                .iter_mut()
                .map(|g| {
                    (
                        g.room_id.clone(),
                        g.session_id.clone(),
                        g.backup_data(&public, 0, 1),
                    )
                })
                .collect();
            put_many(&api, &v, &items);
            (v.clone(), api.key_map(&v))
        };
    let args = || {
        let mut a = store_args(
            &w,
            &store,
            &["--json", "backup", "upload", "--homeserver", &hs.base],
        );
        a.extend(["--access-token-file".into(), tok.clone().into()]);
        a.extend(["--recovery-key-file".into(), rk.clone().into()]);
        a
    };
    let check_server =
        |v: &str, seeded: &BTreeMap<(String, String), Value>| -> Result<(), String> {
            let held = api.key_map(v);
            if held.len() != N {
                return Err(format!("the server holds {} keys, not {N}", held.len()));
            }
            for (k, d) in &held {
                if let Some(s) = seeded.get(k) {
                    if d != s {
                        return Err(format!("a better key was replaced: {k:?}"));
                    }
                } else if d["first_message_index"] != LOCAL_INDEX {
                    return Err(format!("{k:?} holds {d}"));
                }
            }
            // Every key decrypts with the user's key, to the session we hold.
            for (room, sid) in &ids {
                let d: mxkeys::backup::KeyBackupData =
                    serde_json::from_value(held[&(room.clone(), sid.clone())].clone()).unwrap();
                key.decrypt_session(room, sid, &d)
                    .map_err(|e| format!("{sid}: {e}"))?;
            }
            Ok(())
        };

    let (v0, seeded0) = fresh_version(&mut gens);
    let j: Value = serde_json::from_str(&run_ok(&w, &args())).unwrap();
    assert_eq!(j["sent"], N - PRESEED, "{j}");
    assert!(j["requests"].as_u64().unwrap() >= 2, "{j}");
    check_server(&v0, &seeded0).unwrap();
    // Two more uncrashed runs, each into a fresh version: the progress they make sets the
    // kill points.
    let mut control = u64::MAX;
    for _ in 0..2 {
        let (v0, seeded0) = fresh_version(&mut gens);
        match kill_at(w.process(&args()), u64::MAX) {
            Fate::Finished(0, p, _) => control = control.min(p.max(1)),
            f => panic!("the uncrashed upload failed: {f:?}"),
        }
        check_server(&v0, &seeded0).unwrap();
    }

    let mut tally = Tally::default();
    let mut partial_seen = 0;
    let mut problems = Vec::new();
    for (i, at) in kill_points(control, TRIALS).into_iter().enumerate() {
        let (v, seeded) = fresh_version(&mut gens);
        let fate = kill_at(w.process(&args()), at);
        tally.add(fate, &mut problems, i);
        let held = api.count(&v) as usize;
        // Diagnostic only (printed): how many kills landed mid-upload.
        if held > PRESEED && held < N {
            partial_seen += 1;
        }
        let n = store_opens(&w, &store);
        let now = logical(&store);
        assert_eq!(n as usize, now.len());
        if now != before {
            problems.push(format!(
                "trial {i} ({fate:?}): the store's sessions changed"
            ));
        }
        let r = run(&w, &args());
        if r.code != 0 {
            problems.push(format!(
                "trial {i}: the rerun exited {}: {}",
                r.code, r.stderr
            ));
            continue;
        }
        let j: Value = serde_json::from_str(&r.stdout).unwrap();
        if j["skipped"].as_u64().unwrap() < PRESEED as u64 {
            problems.push(format!(
                "trial {i}: the rerun did not skip the better keys: {j}"
            ));
        }
        if let Err(e) = check_server(&v, &seeded) {
            problems.push(format!("trial {i} ({fate:?}): {e}"));
        }
    }
    println!(
        "crash safety, backup upload of {N} keys: {TRIALS} trials ({} killed mid-run, {} finished first, {partial_seen} left a partial upload, the latest kill at {} of the {control} CPU ticks of an uncrashed run)",
        tally.killed, tally.finished, tally.latest_kill
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    tally.assert_killed(TRIALS / 2);
}
