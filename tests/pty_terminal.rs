//! mxkeys on a REAL pseudo-terminal, typed at as a person does (issue 8, part 2).
//!
//! Each test starts the real binary on a 120x30 pty (tests/common/pty.rs), answers its
//! prompts, presses Ctrl-C, and asserts on the rendered screen: the prompt is visible while
//! mxkeys waits, no progress bar is drawn while a prompt waits, a wrong passphrase is said to
//! be wrong and asked again, Ctrl-C at a prompt exits 130 with the echo back on and nothing
//! left behind, a long import's bar is labelled and ends in the summary line.
//!
//! Files are copied into the work directory and named relatively, as a person types them, so
//! a prompt's `{label}` is the name as given. The store is the default one
//! (`$XDG_DATA_HOME/mxkeys` under a temporary HOME), shown as `~/.local/share/mxkeys`.
//!
//! The login and backup tests need the real Synapse of `scripts/test-homeserver.sh run --`
//! (as `scripts/test.sh` runs `cargo test`); without MXKEYS_TEST_HOMESERVER they print a skip
//! line and pass, unless MXKEYS_TEST_DISALLOW_SKIP=1 makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::pty::{Frame, Term};
use common::{Env, PASS, STORE_PASS, element, fixture};
use serde_json::Value;

/// The default store as prompts show it.
const STORE_SHOWN: &str = "~/.local/share/mxkeys";
/// A strong new passphrase for files written in the tests.
const NEW_PASS: &str = "violet Tractor 93 quietly over the Lagoon";
/// A weak one (zxcvbn score 0).
const WEAK: &str = "password";

fn store_prompt() -> String {
    format!("Store passphrase (mxkeys store at {STORE_SHOWN}): ")
}
fn new_store_prompt() -> String {
    format!("New store passphrase (mxkeys store at {STORE_SHOWN}): ")
}
const REPEAT_STORE: &str = "Repeat the new store passphrase: ";
fn pass_prompt(label: &str) -> String {
    format!("Passphrase for {label}: ")
}
fn new_prompt(label: &str) -> String {
    format!("New passphrase for {label}: ")
}
fn repeat_prompt(label: &str) -> String {
    format!("Repeat the new passphrase for {label}: ")
}
fn keep_prompt(label: &str) -> String {
    format!("New passphrase for {label} (the same one again to keep it): ")
}
fn wrong_file(label: &str, left: &str) -> String {
    format!("Wrong passphrase for {label} (or the file was modified); {left} left.")
}
const SECRET_PROMPT: &str = "Security Key, Security Phrase or recovery key: ";

// ---------------------------------------------------------------------------------------------
// Setup (without a terminal: plain runs with secrets in files)

/// The default store directory.
fn store_dir(env: &Env) -> PathBuf {
    env.xdg_data_home().join("mxkeys")
}

/// Create the default store (cheap KDF) with STORE_PASS, without a terminal.
fn init_store(env: &Env) {
    let sp = env.store_pass_file();
    env.cmd()
        .args([
            "init",
            "--store-kdf-rounds",
            "1000",
            "--store-passphrase-file",
        ])
        .arg(sp)
        .assert()
        .success();
}

/// Import fixtures into the default store without a terminal; the JSON report.
fn import_plain(env: &Env, files: &[&Path]) -> Value {
    let sp = env.store_pass_file();
    let pf = env.pass_file();
    let out = env
        .cmd()
        .args(["--json", "import"])
        .args(files)
        .arg("--passphrase-file")
        .arg(pf)
        .arg("--store-passphrase-file")
        .arg(sp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    common::one_json(&out)
}

/// The sessions in the default store, as (room, session) pairs: exported without a terminal
/// (outside the work directory) and decrypted independently.
fn store_sessions(env: &Env) -> BTreeSet<(String, String)> {
    let sp = env.store_pass_file();
    let pf = env.pass_file();
    let out = env.tmp.path().join("store-check.txt");
    let _ = std::fs::remove_file(&out);
    env.cmd()
        .arg("export")
        .arg("-o")
        .arg(&out)
        .args(["--rounds", "1000", "--passphrase-file"])
        .arg(pf)
        .arg("--store-passphrase-file")
        .arg(sp)
        .assert()
        .success();
    let got = file_ids(&out, PASS);
    std::fs::remove_file(&out).unwrap();
    got
}

/// How many sessions the default store holds (`list --json`, no passphrase needed).
fn store_count(env: &Env) -> u64 {
    let out = env.cmd().args(["--json", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    common::one_json(&out)["sessions"].as_u64().unwrap()
}

/// Copy an export fixture into the work directory; its name there.
fn copy_fixture(env: &Env, name: &str) -> String {
    std::fs::copy(fixture(&format!("export/{name}")), env.path(name)).unwrap();
    name.to_string()
}

/// (room, session) of a plaintext fixture.
fn plaintext_ids(name: &str) -> BTreeSet<(String, String)> {
    ids(&common::read_sessions(&fixture(&format!(
        "export/plaintext/{name}.json"
    ))))
}

fn ids(sessions: &[Value]) -> BTreeSet<(String, String)> {
    sessions
        .iter()
        .map(|s| {
            (
                s["room_id"].as_str().unwrap().to_string(),
                s["session_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (room, session) of an export file mxkeys wrote, decrypted independently.
fn file_ids(path: &Path, pass: &str) -> BTreeSet<(String, String)> {
    let pt = element::decrypt_file(path, pass.as_bytes()).plaintext;
    ids(&serde_json::from_slice::<Vec<Value>>(&pt).unwrap())
}

/// Every file under `dir` with its bytes (a store's state).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Assertions on screens

/// No typed secret may ever be on screen (echo is off at a prompt).
#[track_caller]
fn assert_never_shown(t: &Term, secrets: &[&str]) {
    for f in t.frames() {
        for s in secrets {
            assert!(
                !f.text.contains(s),
                "`{}`: a typed secret is on screen:\n{f}",
                t.what
            );
        }
    }
}

/// The final screen: no bar left, and the line `needle` on it.
#[track_caller]
fn assert_final(t: &Term, f: &Frame, needle: &str) {
    assert!(
        f.bars().is_empty(),
        "`{}`: a bar is left on the final screen:\n{f}",
        t.what
    );
    assert!(
        f.text.contains(needle),
        "`{}`: the final screen lacks {needle:?}:\n{f}",
        t.what
    );
}

/// The error of a failed run: `mxkeys: error: ...` and a `hint:` line on the final screen.
#[track_caller]
fn assert_error_screen(t: &Term, f: &Frame) {
    assert!(
        f.rows.iter().any(|r| r.starts_with("mxkeys: error: ")),
        "`{}`: no error line on the final screen:\n{f}",
        t.what
    );
    assert!(
        f.rows.iter().any(|r| r.starts_with("hint: ")),
        "`{}`: no hint line on the final screen:\n{f}",
        t.what
    );
    assert!(f.bars().is_empty(), "bar left on screen:\n{f}");
}

/// Ctrl-C was pressed at a prompt: exit 130, echo on again, the work directory as before,
/// the store as before.
#[track_caller]
fn assert_interrupted_cleanly(
    t: &mut Term,
    env: &Env,
    work_before: &[String],
    store_before: &[(PathBuf, Vec<u8>)],
) {
    let f = t.expect_exit(130);
    assert!(
        t.echo_on(),
        "`{}`: the terminal's echo is still off after Ctrl-C; screen:\n{f}",
        t.what
    );
    assert_eq!(
        env.work_names(),
        work_before,
        "`{}`: files left in the work directory after Ctrl-C",
        t.what
    );
    let after = tree(&store_dir(env));
    if after != store_before {
        let describe = |v: &[(PathBuf, Vec<u8>)]| -> Vec<String> {
            v.iter()
                .map(|(p, b)| format!("{} ({} bytes)", p.display(), b.len()))
                .collect()
        };
        let changed: Vec<String> = after
            .iter()
            .filter(|(p, b)| !store_before.iter().any(|(q, c)| q == p && c == b))
            .map(|(p, _)| p.display().to_string())
            .collect();
        panic!(
            "`{}`: the store changed after Ctrl-C: before {:?}, after {:?}; new or changed: {changed:?}",
            t.what,
            describe(store_before),
            describe(&after)
        );
    }
    assert!(f.bars().is_empty(), "bar left on screen:\n{f}");
}

/// Print a screen into the test's output (shown with --nocapture, and on failure).
fn show(title: &str, f: &Frame) {
    println!("--- {title}\n{f}");
}

// ---------------------------------------------------------------------------------------------
// The harness itself: its checks see a prompt, a bar, echo left off, and Ctrl-C.

#[test]
fn harness_sees_prompts_bars_echo_and_ctrl_c() {
    let env = Env::new();
    // A prompt with echo off, answered; then a bar drawn and erased; then a summary.
    let script = r#"stty -echo; printf 'Secret for x: ' >/dev/tty; read s </dev/tty; stty echo; echo
printf '  working [=====>          ]  40%% eta 1s'; sleep 0.3; printf '\r\033[2K'; echo "Done: $s""#;
    let mut t = Term::spawn_program(&env, Path::new("sh"), &["-c", script], &[]);
    let w = t.wait_for_prompt("Secret for x: ");
    assert!(w.bars().is_empty());
    t.type_line("hello");
    let f = t.expect_exit(0);
    assert!(f.text.contains("Done: hello"), "{f}");
    assert!(
        f.bars().is_empty(),
        "the erased bar is not on the final screen:\n{f}"
    );
    assert!(
        t.frames().iter().any(|f| !f.bars().is_empty()),
        "the bar was seen while it was drawn"
    );
    assert_never_shown(&t, &["Secret for x: hello"]);
    assert!(t.echo_on());
    // Ctrl-C at a prompt of a program that leaves echo off: seen as 130 with echo off.
    let script = r#"stty -echo; printf 'Secret: ' >/dev/tty; read s </dev/tty"#;
    let mut t = Term::spawn_program(&env, Path::new("sh"), &["-c", script], &[]);
    t.wait_for_prompt("Secret: ");
    t.ctrl_c();
    assert_eq!(t.exit_code(), 130);
    assert!(!t.echo_on(), "echo left off is detected");
    // A bar drawn while a prompt waits is caught.
    let script = r#"printf '[==========>   ]  50%% eta 2s\n' ; printf 'Pass: '; read s"#;
    let t = Term::spawn_program(&env, Path::new("sh"), &["-c", script], &[]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.wait_for_prompt("Pass: ");
    }));
    assert!(
        caught.is_err(),
        "a bar above a waiting prompt must fail the check"
    );
    // A program that polls the terminal (with a timeout) before reading is seen waiting too.
    let script = "import os, select, sys\nos.write(1, b'Poll me: ')\np = select.poll()\np.register(0, select.POLLIN)\nwhile not p.poll(100):\n    pass\nprint('got', sys.stdin.readline().strip())\n";
    let mut t = Term::spawn_program(&env, Path::new("python3"), &["-c", script], &[]);
    t.answer("Poll me: ", "polled");
    t.expect_exit(0);
    assert!(t.screen_text().contains("got polled"), "{}", t.screen());
}

// ---------------------------------------------------------------------------------------------
// init

#[test]
fn init_asks_for_the_new_store_passphrase_twice() {
    let env = Env::new();
    let mut t = Term::spawn(&env, &["init", "--store-kdf-rounds", "1000"]);
    let first = t.answer(&new_store_prompt(), STORE_PASS);
    show("init: first prompt", &first);
    let second = t.answer(REPEAT_STORE, STORE_PASS);
    show("init: repeat prompt", &second);
    let f = t.expect_exit(0);
    show("init: final", &f);
    assert_final(&t, &f, "Created a sealed key store at");
    assert_never_shown(&t, &[STORE_PASS]);
    // The passphrase typed is the store's: a plain import with it in a file works.
    copy_fixture(&env, "element-three.txt");
    let r = import_plain(&env, &[Path::new("element-three.txt")]);
    assert_eq!(store_sessions(&env), plaintext_ids("element-three"), "{r}");
}

#[test]
fn init_ctrl_c_at_the_repeat_prompt_creates_no_store() {
    let env = Env::new();
    let work = env.work_names();
    let mut t = Term::spawn(&env, &["init", "--store-kdf-rounds", "1000"]);
    t.answer(&new_store_prompt(), STORE_PASS);
    t.wait_for_prompt(REPEAT_STORE);
    t.ctrl_c();
    assert_interrupted_cleanly(&mut t, &env, &work, &[]);
    assert!(
        !store_dir(&env).exists() || common::dir_names(&store_dir(&env)).is_empty(),
        "a store was left: {:?}",
        common::dir_names(&store_dir(&env))
    );
}

// ---------------------------------------------------------------------------------------------
// import

#[test]
fn import_one_file_shows_both_prompts_and_the_summary() {
    let env = Env::new();
    init_store(&env);
    let label = copy_fixture(&env, "element-three.txt");
    let mut t = Term::spawn(&env, &["import", &label]);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&pass_prompt(&label), PASS)]);
    for (p, f) in &asked {
        show(&format!("import: waiting at {p:?}"), f);
    }
    let prompts: BTreeSet<&str> = asked.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        prompts,
        BTreeSet::from([store_prompt().as_str(), pass_prompt(&label).as_str()]),
        "each prompt once"
    );
    assert_eq!(asked.len(), 2);
    let f = t.expect_exit(0);
    show("import: final", &f);
    assert_final(&t, &f, "Imported 3 new sessions");
    assert_never_shown(&t, &[STORE_PASS, PASS]);
    assert_eq!(store_sessions(&env), plaintext_ids("element-three"));
}

#[test]
fn import_wrong_then_right_file_passphrase() {
    let env = Env::new();
    init_store(&env);
    let label = copy_fixture(&env, "element-three.txt");
    let mut t = Term::spawn(&env, &["import", &label]);
    let mut file_asks = 0;
    let asked = t.converse_fn(|f| {
        if f.prompt_is(&store_prompt()) {
            return Some((store_prompt(), STORE_PASS.into()));
        }
        if f.prompt_is(&pass_prompt(&label)) {
            file_asks += 1;
            let a = if file_asks < 3 { "wrong one" } else { PASS };
            return Some((pass_prompt(&label), a.into()));
        }
        None
    });
    let file: Vec<&Frame> = asked
        .iter()
        .filter(|(p, _)| *p == pass_prompt(&label))
        .map(|(_, f)| f)
        .collect();
    assert_eq!(file.len(), 3, "asked three times");
    show("import: after one wrong passphrase", file[1]);
    show("import: after two wrong passphrases", file[2]);
    assert!(
        file[1].text.contains(&wrong_file(&label, "2 tries")),
        "no 'wrong' line after the first wrong passphrase:\n{}",
        file[1]
    );
    assert!(
        file[2].text.contains(&wrong_file(&label, "1 try")),
        "no 'wrong' line after the second wrong passphrase:\n{}",
        file[2]
    );
    let f = t.expect_exit(0);
    show("import: final", &f);
    assert_final(&t, &f, "Imported 3 new sessions");
    assert_eq!(store_sessions(&env), plaintext_ids("element-three"));
}

#[test]
fn import_three_wrong_file_passphrases_fail_with_12() {
    let env = Env::new();
    init_store(&env);
    let label = copy_fixture(&env, "element-three.txt");
    let mut t = Term::spawn(&env, &["import", &label]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&pass_prompt(&label), "wrong again"),
    ]);
    assert_eq!(
        asked
            .iter()
            .filter(|(p, _)| *p == pass_prompt(&label))
            .count(),
        3
    );
    let f = t.expect_exit(12);
    show("import: three wrong passphrases", &f);
    assert_error_screen(&t, &f);
    assert_eq!(store_count(&env), 0);
}

#[test]
fn import_wrong_then_right_store_passphrase() {
    let env = Env::new();
    init_store(&env);
    let label = copy_fixture(&env, "element-three.txt");
    let mut t = Term::spawn(&env, &["import", &label]);
    let mut store_asks = 0;
    let asked = t.converse_fn(|f| {
        if f.prompt_is(&store_prompt()) {
            store_asks += 1;
            let a = if store_asks == 1 { PASS } else { STORE_PASS };
            return Some((store_prompt(), a.into()));
        }
        if f.prompt_is(&pass_prompt(&label)) {
            return Some((pass_prompt(&label), PASS.into()));
        }
        None
    });
    let store: Vec<&Frame> = asked
        .iter()
        .filter(|(p, _)| *p == store_prompt())
        .map(|(_, f)| f)
        .collect();
    assert_eq!(store.len(), 2, "the store passphrase asked twice");
    show("import: after a wrong store passphrase", store[1]);
    assert!(
        store[1]
            .text
            .contains("Wrong store passphrase; 2 tries left."),
        "{}",
        store[1]
    );
    let f = t.expect_exit(0);
    assert_final(&t, &f, "Imported 3 new sessions");
}

#[test]
fn import_several_files() {
    let env = Env::new();
    init_store(&env);
    let a = copy_fixture(&env, "element-three.txt");
    let b = copy_fixture(&env, "wasm-three.txt");
    let c = copy_fixture(&env, "wasm-one.txt");
    let mut t = Term::spawn(&env, &["import", &a, &b, &c]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&pass_prompt(&a), PASS),
        (&pass_prompt(&b), PASS),
        (&pass_prompt(&c), PASS),
    ]);
    for (p, f) in &asked {
        show(&format!("import of three files: waiting at {p:?}"), f);
    }
    let prompts: Vec<&str> = asked.iter().map(|(p, _)| p.as_str()).collect();
    assert!(prompts.contains(&pass_prompt(&a).as_str()), "{prompts:?}");
    let f = t.expect_exit(0);
    show("import of three files: final", &f);
    let mut want = plaintext_ids("element-three");
    want.extend(plaintext_ids("wasm-three"));
    want.extend(plaintext_ids("wasm-one"));
    assert_final(&t, &f, &format!("Imported {} new sessions", want.len()));
    assert_eq!(store_sessions(&env), want);
}

#[test]
fn long_import_draws_a_labelled_bar_then_the_summary() {
    let env = Env::new();
    init_store(&env);
    let label = copy_fixture(&env, "element-thousand.txt");
    let mut t = Term::spawn(&env, &["import", &label]);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&pass_prompt(&label), PASS)]);
    assert_eq!(asked.len(), 2);
    let f = t.expect_exit(0);
    show("long import: final", &f);
    let bars: Vec<(String, Frame)> = t
        .frames()
        .into_iter()
        .flat_map(|f| f.bars().into_iter().map(move |b| (b, f.clone())))
        .collect();
    let distinct: BTreeSet<&str> = bars.iter().map(|(b, _)| b.as_str()).collect();
    println!("long import: {} distinct bar rows drawn", distinct.len());
    for b in &distinct {
        println!("  {b}");
    }
    assert!(
        !bars.is_empty(),
        "no progress bar was ever on screen during the import; final screen:\n{f}"
    );
    show("long import: a bar", &bars[bars.len() / 2].1);
    assert!(
        bars.iter().all(|(b, _)| bar_label(b).is_some()),
        "a bar without a label naming its work: {distinct:?}"
    );
    let labels: BTreeSet<String> = bars.iter().filter_map(|(b, _)| bar_label(b)).collect();
    assert!(
        labels.iter().any(|l| l.contains(&label)),
        "no bar names the file being read: {labels:?}"
    );
    // The bar moved: at least two different bars were on screen (another position or
    // another phase of the work).
    assert!(
        distinct.len() >= 2,
        "only one bar was ever drawn: {distinct:?}"
    );
    assert_final(&t, &f, "Imported 1000 new sessions");
}

/// The label in front of a bar: its words before the `[`, the first one naming the work
/// ("importing", "decrypting", ...).
fn bar_label(row: &str) -> Option<String> {
    let label = row[..row.find('[')?].trim();
    let first = label.split_whitespace().next()?;
    (first.ends_with("ing") && first.chars().all(|c| c.is_ascii_lowercase()))
        .then(|| label.to_string())
}

// ---------------------------------------------------------------------------------------------
// export, merge, reencrypt

/// A store holding element-three.
fn store_with_three() -> Env {
    let env = Env::new();
    init_store(&env);
    copy_fixture(&env, "element-three.txt");
    import_plain(&env, &[Path::new("element-three.txt")]);
    std::fs::remove_file(env.path("element-three.txt")).unwrap();
    env
}

#[test]
fn export_asks_for_the_new_passphrase_twice() {
    let env = store_with_three();
    let out = "keys-out.txt";
    let mut t = Term::spawn(&env, &["export", "-o", out, "--rounds", "1000"]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    for (p, f) in &asked {
        show(&format!("export: waiting at {p:?}"), f);
    }
    let prompts: Vec<String> = asked.iter().map(|(p, _)| p.clone()).collect();
    let i = prompts.iter().position(|p| *p == new_prompt(out)).unwrap();
    assert_eq!(prompts.get(i + 1), Some(&repeat_prompt(out)), "{prompts:?}");
    assert_eq!(prompts.len(), 3, "{prompts:?}");
    let f = t.expect_exit(0);
    show("export: final", &f);
    assert_final(&t, &f, "Exported 3 sessions from");
    assert_never_shown(&t, &[STORE_PASS, NEW_PASS]);
    assert_eq!(
        file_ids(&env.path(out), NEW_PASS),
        plaintext_ids("element-three")
    );
}

#[test]
fn export_weak_passphrase_typed_again_is_kept() {
    let env = store_with_three();
    let out = "weak.txt";
    let mut t = Term::spawn(&env, &["export", "-o", out, "--rounds", "1000"]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&keep_prompt(out), WEAK),
        (&new_prompt(out), WEAK),
        (&repeat_prompt(out), WEAK),
    ]);
    let prompts: Vec<String> = asked.iter().map(|(p, _)| p.clone()).collect();
    let i = prompts.iter().position(|p| *p == new_prompt(out)).unwrap();
    assert_eq!(
        prompts[i..],
        [new_prompt(out), keep_prompt(out), repeat_prompt(out)],
        "{prompts:?}"
    );
    let keep = &asked[i + 1].1;
    show("export: weak passphrase warning", keep);
    assert!(
        keep.rows
            .iter()
            .any(|r| r.starts_with("This passphrase is weak")),
        "no weakness warning above the prompt:\n{keep}"
    );
    let f = t.expect_exit(0);
    show("export (weak kept): final", &f);
    assert_final(&t, &f, "Exported 3 sessions from");
    assert_eq!(
        file_ids(&env.path(out), WEAK),
        plaintext_ids("element-three")
    );
}

#[test]
fn export_weak_then_strong_passphrase_uses_the_strong_one() {
    let env = store_with_three();
    let out = "strong.txt";
    let mut t = Term::spawn(&env, &["export", "-o", out, "--rounds", "1000"]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&keep_prompt(out), NEW_PASS),
        (&new_prompt(out), WEAK),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    let prompts: Vec<String> = asked.iter().map(|(p, _)| p.clone()).collect();
    let i = prompts.iter().position(|p| *p == new_prompt(out)).unwrap();
    assert_eq!(
        prompts[i..],
        [new_prompt(out), keep_prompt(out), repeat_prompt(out)],
        "{prompts:?}"
    );
    let f = t.expect_exit(0);
    assert_final(&t, &f, "Exported 3 sessions from");
    assert_eq!(
        file_ids(&env.path(out), NEW_PASS),
        plaintext_ids("element-three")
    );
}

#[test]
fn export_ctrl_c_at_the_new_passphrase_prompt_leaves_nothing() {
    let env = store_with_three();
    let work = env.work_names();
    let store = tree(&store_dir(&env));
    let out = "never.txt";
    let mut t = Term::spawn(&env, &["export", "-o", out, "--rounds", "1000"]);
    interrupt_at(
        &mut t,
        &env,
        &work,
        &store,
        &[(&store_prompt(), STORE_PASS)],
        &new_prompt(out),
    );
}

/// Used by the Ctrl-C tests: answer the store prompt if it comes first, wait for `prompt`,
/// press Ctrl-C, and check that nothing is left.
fn interrupt_at(
    t: &mut Term,
    env: &Env,
    work: &[String],
    store: &[(PathBuf, Vec<u8>)],
    answers: &[(&str, &str)],
    prompt: &str,
) {
    loop {
        let f = t.wait_for_screen(&format!("{prompt:?} or an earlier prompt"), |f| {
            t.reading_terminal()
                && (f.prompt_is(prompt) || answers.iter().any(|(p, _)| f.prompt_is(p)))
        });
        if f.prompt_is(prompt) {
            break;
        }
        let (p, a) = answers.iter().find(|(p, _)| f.prompt_is(p)).unwrap();
        t.answer(p, a);
    }
    let waiting = t.wait_for_prompt(prompt);
    show(&format!("{}: before Ctrl-C", t.what), &waiting);
    t.ctrl_c();
    assert_interrupted_cleanly(t, env, work, store);
    show(&format!("{}: after Ctrl-C", t.what), &t.screen());
}

#[test]
fn merge_two_files_into_a_new_one() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let b = copy_fixture(&env, "wasm-three.txt");
    let out = "merged.txt";
    let mut t = Term::spawn(
        &env,
        &[
            "merge",
            &a,
            &b,
            "-o",
            out,
            "--rounds",
            "1000",
            "--change-passphrase",
        ],
    );
    let asked = t.converse(&[
        (&pass_prompt(&a), PASS),
        (&pass_prompt(&b), PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    for (p, f) in &asked {
        show(&format!("merge: waiting at {p:?}"), f);
    }
    let prompts: Vec<String> = asked.iter().map(|(p, _)| p.clone()).collect();
    assert!(prompts.contains(&pass_prompt(&a)), "{prompts:?}");
    assert!(prompts.contains(&new_prompt(out)), "{prompts:?}");
    assert!(prompts.contains(&repeat_prompt(out)), "{prompts:?}");
    let f = t.expect_exit(0);
    show("merge: final", &f);
    assert!(f.bars().is_empty(), "{f}");
    let mut want = plaintext_ids("element-three");
    want.extend(plaintext_ids("wasm-three"));
    assert_eq!(file_ids(&env.path(out), NEW_PASS), want);
}

#[test]
fn reencrypt_asks_for_the_old_and_the_new_passphrase() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let out = "re.txt";
    let mut t = Term::spawn(
        &env,
        &[
            "reencrypt",
            &a,
            "-o",
            out,
            "--rounds",
            "1000",
            "--change-passphrase",
        ],
    );
    let asked = t.converse(&[
        (&pass_prompt(&a), PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    let prompts: Vec<String> = asked.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        prompts,
        [pass_prompt(&a), new_prompt(out), repeat_prompt(out)]
    );
    let f = t.expect_exit(0);
    show("reencrypt: final", &f);
    assert!(f.bars().is_empty(), "{f}");
    assert_eq!(
        file_ids(&env.path(out), NEW_PASS),
        plaintext_ids("element-three")
    );
}

#[test]
fn reencrypt_without_change_passphrase_keeps_the_input_passphrase() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let out = "same.txt";
    let mut t = Term::spawn(&env, &["reencrypt", &a, "-o", out, "--rounds", "1000"]);
    let asked = t.converse(&[(&pass_prompt(&a), PASS)]);
    assert_eq!(asked.len(), 1);
    let f = t.expect_exit(0);
    show("reencrypt (same passphrase): final", &f);
    assert_final(&t, &f, "same passphrase");
    assert_eq!(
        file_ids(&env.path(out), PASS),
        plaintext_ids("element-three")
    );
}

#[test]
fn reencrypt_ctrl_c_at_the_repeat_prompt_leaves_nothing() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let work = env.work_names();
    let out = "re.txt";
    let mut t = Term::spawn(
        &env,
        &[
            "reencrypt",
            &a,
            "-o",
            out,
            "--rounds",
            "1000",
            "--change-passphrase",
        ],
    );
    interrupt_at(
        &mut t,
        &env,
        &work,
        &[],
        &[(&pass_prompt(&a), PASS), (&new_prompt(out), NEW_PASS)],
        &repeat_prompt(out),
    );
}

// ---------------------------------------------------------------------------------------------
// recovery-key check (offline)

#[test]
fn recovery_key_check_offline_asks_for_the_key() {
    let env = Env::new();
    env.cmd()
        .args(["recovery-key", "generate", "-o", "rk.txt"])
        .assert()
        .success();
    let key = std::fs::read_to_string(env.path("rk.txt")).unwrap();
    let key = key.trim();
    let mut t = Term::spawn(&env, &["recovery-key", "check", "--offline"]);
    let w = t.answer(SECRET_PROMPT, key);
    show("recovery-key check: waiting", &w);
    let f = t.expect_exit(0);
    show("recovery-key check: final", &f);
    assert_final(&t, &f, "This is a well-formed recovery key");
    assert_never_shown(&t, &[key]);
}

// ---------------------------------------------------------------------------------------------
// login and backup, against the real Synapse

/// The test homeserver from `scripts/test-homeserver.sh run --`.
struct Hs {
    base: String,
    secret: String,
}

/// The homeserver, or `None` after a skip line; a failure instead with
/// MXKEYS_TEST_DISALLOW_SKIP=1.
fn homeserver() -> Option<Hs> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    match (
        get("MXKEYS_TEST_HOMESERVER"),
        get("MXKEYS_TEST_REGISTRATION_SECRET"),
    ) {
        (Some(base), Some(secret)) => Some(Hs {
            base: base.trim().trim_end_matches('/').to_string(),
            secret: secret.trim().to_string(),
        }),
        _ => {
            assert!(
                std::env::var("MXKEYS_TEST_DISALLOW_SKIP").as_deref() != Ok("1"),
                "MXKEYS_TEST_DISALLOW_SKIP=1 but there is no test homeserver: run scripts/test-homeserver.sh run -- cargo test --test pty_terminal"
            );
            println!(
                "skipping: no test homeserver (run scripts/test-homeserver.sh run -- cargo test --test pty_terminal)"
            );
            None
        }
    }
}

macro_rules! require_hs {
    () => {
        match homeserver() {
            Some(hs) => hs,
            None => return,
        }
    };
}

/// A user on the homeserver (registered with scripts/register_user.py).
struct User {
    id: String,
    password: String,
}

fn register(hs: &Hs, prefix: &str) -> User {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let local = format!(
        "pty-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let password = format!("pw-{local}-Q7!");
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/register_user.py"))
        .arg(&local)
        .arg(&password)
        .env("MXKEYS_TEST_HOMESERVER", &hs.base)
        .env("MXKEYS_TEST_REGISTRATION_SECRET", &hs.secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    User {
        id: v["user_id"].as_str().unwrap().to_string(),
        password,
    }
}

/// `mxkeys` without a terminal, with the store passphrase in a file.
fn plain(env: &Env, args: &[&str]) -> std::process::Output {
    let sp = env.store_pass_file();
    env.cmd()
        .args(args)
        .arg("--store-passphrase-file")
        .arg(sp)
        .output()
        .unwrap()
}

#[track_caller]
fn plain_ok(env: &Env, args: &[&str]) -> std::process::Output {
    let out = plain(env, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "mxkeys {args:?}: {}",
        common::text(&out.stderr)
    );
    out
}

/// A default store logged in as `user`, set up without a terminal.
fn logged_in(hs: &Hs, user: &User) -> Env {
    let env = Env::new();
    init_store(&env);
    let pw = env.write_secret("password.txt", format!("{}\n", user.password));
    plain_ok(
        &env,
        &[
            "login",
            "--user",
            &user.id,
            "--homeserver",
            &hs.base,
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    env
}

#[test]
fn login_asks_for_the_store_passphrase_and_the_password() {
    let hs = require_hs!();
    let user = register(&hs, "login");
    let env = Env::new();
    init_store(&env);
    let pw_prompt = format!("Password for {}: ", user.id);
    let mut t = Term::spawn(
        &env,
        &["login", "--user", &user.id, "--homeserver", &hs.base],
    );
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&pw_prompt, &user.password)]);
    for (p, f) in &asked {
        show(&format!("login: waiting at {p:?}"), f);
    }
    let prompts: BTreeSet<&str> = asked.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        prompts,
        BTreeSet::from([store_prompt().as_str(), pw_prompt.as_str()])
    );
    let f = t.expect_exit(0);
    show("login: final", &f);
    assert_final(&t, &f, &format!("Logged in as {}", user.id));
    assert_never_shown(&t, &[STORE_PASS, &user.password]);
    // The login is in the store: a plain `backup info` gets as far as "no backup" (10).
    let out = plain(&env, &["backup", "info"]);
    assert_eq!(out.status.code(), Some(10), "{}", common::text(&out.stderr));
}

#[test]
fn login_ctrl_c_at_the_password_prompt_changes_nothing() {
    let hs = require_hs!();
    let user = register(&hs, "login-int");
    let env = Env::new();
    init_store(&env);
    // One write to the store first: the first write-open of a new store switches SQLite to
    // WAL mode (header bytes 18-19), which is not a change of what the store holds.
    copy_fixture(&env, "element-three.txt");
    import_plain(&env, &[Path::new("element-three.txt")]);
    let work = env.work_names();
    let store = tree(&store_dir(&env));
    let mut t = Term::spawn(
        &env,
        &["login", "--user", &user.id, "--homeserver", &hs.base],
    );
    interrupt_at(
        &mut t,
        &env,
        &work,
        &store,
        &[(&store_prompt(), STORE_PASS)],
        &format!("Password for {}: ", user.id),
    );
    // Not logged in.
    let out = plain(&env, &["backup", "info"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stderr).contains("not logged in"));
}

#[test]
fn backup_upload_download_check_and_delete_at_the_terminal() {
    let hs = require_hs!();
    let user = register(&hs, "backup");
    // Device A makes the backup and uploads an export file to it.
    let a = logged_in(&hs, &user);
    let rk_path = a.path("rk.txt");
    let out = plain_ok(
        &a,
        &[
            "--json",
            "backup",
            "create",
            "-o",
            rk_path.to_str().unwrap(),
        ],
    );
    let version = common::one_json(&out)["version"]
        .as_str()
        .unwrap()
        .to_string();
    let rk = std::fs::read_to_string(&rk_path)
        .unwrap()
        .trim()
        .to_string();
    let file = copy_fixture(&a, "element-three.txt");
    let mut t = Term::spawn(&a, &["backup", "upload", &file]);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&pass_prompt(&file), PASS),
        (SECRET_PROMPT, &rk),
    ]);
    for (p, f) in &asked {
        show(&format!("backup upload: waiting at {p:?}"), f);
    }
    assert!(
        asked.iter().any(|(p, _)| *p == pass_prompt(&file)),
        "{:?}",
        asked.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let f = t.expect_exit(0);
    show("backup upload: final", &f);
    assert_final(
        &t,
        &f,
        &format!("Uploaded 3 keys to backup version {version}"),
    );
    assert_never_shown(&t, &[STORE_PASS, PASS, &rk]);

    // Device B, with no key cached, downloads: it must ask for the secret.
    let b = logged_in(&hs, &user);
    let mut t = Term::spawn(&b, &["backup", "download"]);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (SECRET_PROMPT, &rk)]);
    for (p, f) in &asked {
        show(&format!("backup download: waiting at {p:?}"), f);
    }
    assert!(
        asked.iter().any(|(p, _)| p == SECRET_PROMPT),
        "the secret was not asked for"
    );
    let f = t.expect_exit(0);
    show("backup download: final", &f);
    assert_final(&t, &f, "Downloaded 3 keys: 3 new");
    assert_never_shown(&t, &[STORE_PASS, &rk]);
    assert_eq!(store_sessions(&b), plaintext_ids("element-three"));

    // recovery-key check against the server, on device B.
    let mut t = Term::spawn(&b, &["recovery-key", "check"]);
    t.converse(&[(&store_prompt(), STORE_PASS), (SECRET_PROMPT, &rk)]);
    let f = t.expect_exit(0);
    show("recovery-key check: final", &f);
    assert_final(
        &t,
        &f,
        &format!("it unlocks backup version {version} (3 keys)"),
    );

    // backup delete without --yes asks; "n" keeps the backup.
    let confirm =
        format!("About to delete backup version {version} and the 3 keys in it. Continue? [y/N] ");
    let mut t = Term::spawn(&a, &["backup", "delete", "--version", &version]);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&confirm, "n")]);
    let (_, waiting) = asked.iter().find(|(p, _)| *p == confirm).unwrap();
    show("backup delete: the confirmation", waiting);
    let f = t.expect_exit(1);
    show("backup delete: answered n", &f);
    assert!(f.text.contains("cancelled"), "{f}");
    plain_ok(&a, &["backup", "info", "--version", &version]);
    // Ctrl-C at the confirmation: 130, the backup still there.
    let work = a.work_names();
    let store = tree(&store_dir(&a));
    let mut t = Term::spawn(&a, &["backup", "delete", "--version", &version]);
    interrupt_at(
        &mut t,
        &a,
        &work,
        &store,
        &[(&store_prompt(), STORE_PASS)],
        &confirm,
    );
    plain_ok(&a, &["backup", "info", "--version", &version]);
    // "y" deletes it.
    let mut t = Term::spawn(&a, &["backup", "delete", "--version", &version]);
    t.converse(&[(&store_prompt(), STORE_PASS), (&confirm, "y")]);
    let f = t.expect_exit(0);
    show("backup delete: answered y", &f);
    assert_final(
        &t,
        &f,
        &format!("Deleted backup version {version} (3 keys)."),
    );
    let out = plain(&a, &["backup", "info", "--version", &version]);
    assert_eq!(out.status.code(), Some(10), "{}", common::text(&out.stderr));
}
