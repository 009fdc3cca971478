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

use common::megolm::GenSession;
use common::pty::{Frame, Term};
use common::synapse::{Hs, User, enc, require_hs};
use common::{Env, PASS, STORE_PASS, element, fixture};
use serde_json::{Value, json};

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

/// A fresh environment with the default store created (see [`init_store`]).
fn new_store() -> Env {
    let env = Env::new();
    init_store(&env);
    env
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

/// The default store's state: every file in it with its bytes, in path order
/// (`common::all_bytes_under`, which passes over a file it cannot read).
fn store_state(env: &Env) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = common::all_bytes_under(&store_dir(env));
    out.sort();
    out
}

/// What a Ctrl-C must leave as it was: the work directory's names and the store's state.
struct Before {
    work: Vec<String>,
    store: Vec<(PathBuf, Vec<u8>)>,
}

fn before_ctrl_c(env: &Env) -> Before {
    Before {
        work: env.work_names(),
        store: store_state(env),
    }
}

/// Assert that the export file `name` in the work directory, decrypted with `pass`, holds
/// exactly the sessions of the plaintext fixture `fixture_name`.
#[track_caller]
fn assert_file_holds(env: &Env, name: &str, pass: &str, fixture_name: &str) {
    assert_eq!(
        file_ids(&env.path(name), pass),
        plaintext_ids(fixture_name),
        "{name}"
    );
}

/// The prompts of a conversation, in the order they were answered.
fn prompts_of(asked: &[(String, Frame)]) -> Vec<String> {
    asked.iter().map(|(p, _)| p.clone()).collect()
}

/// The screens at which `prompt` was answered.
fn screens_at<'a>(asked: &'a [(String, Frame)], prompt: &str) -> Vec<&'a Frame> {
    asked
        .iter()
        .filter(|(p, _)| p == prompt)
        .map(|(_, f)| f)
        .collect()
}

/// Print each screen a conversation waited at.
fn show_asked(what: &str, asked: &[(String, Frame)]) {
    for (p, f) in asked {
        show(&format!("{what}: waiting at {p:?}"), f);
    }
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
fn assert_interrupted_cleanly(t: &mut Term, env: &Env, before: &Before) {
    let (work_before, store_before) = (&before.work, &before.store[..]);
    let f = t.expect_exit(130);
    assert!(
        t.echo_on(),
        "`{}`: the terminal's echo is still off after Ctrl-C; screen:\n{f}",
        t.what
    );
    assert_eq!(
        &env.work_names(),
        work_before,
        "`{}`: files left in the work directory after Ctrl-C",
        t.what
    );
    let after = store_state(env);
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

/// `--json` never prompts, even at a terminal (a script must not hang); the error says that,
/// not that there is no terminal.
#[test]
fn json_at_a_terminal_does_not_ask_and_says_why() {
    let env = Env::new();
    let f = copy_fixture(&env, "element-one.txt");
    let mut t = Term::spawn(&env, &["--json", "decrypt", &f, "-o", "out.json"]);
    let end = t.expect_exit(2);
    show("--json decrypt: final", &end);
    // Rows are wrapped at the terminal's width: compare without whitespace.
    let squeeze = |t: &str| t.split_whitespace().collect::<String>();
    let text = squeeze(&end.rows.concat());
    assert!(
        text.contains(&squeeze(
            "the export passphrase is needed, and --json never asks for one"
        )),
        "{end}"
    );
    assert!(!text.contains("noterminal"), "{end}");
    assert!(!env.path("out.json").exists());
}

#[test]
fn init_ctrl_c_at_the_repeat_prompt_creates_no_store() {
    let env = Env::new();
    let before = before_ctrl_c(&env);
    assert!(before.store.is_empty());
    let mut t = Term::spawn(&env, &["init", "--store-kdf-rounds", "1000"]);
    t.answer(&new_store_prompt(), STORE_PASS);
    t.wait_for_prompt(REPEAT_STORE);
    t.ctrl_c();
    assert_interrupted_cleanly(&mut t, &env, &before);
    assert!(
        !store_dir(&env).exists() || common::dir_names(&store_dir(&env)).is_empty(),
        "a store was left: {:?}",
        common::dir_names(&store_dir(&env))
    );
}

// ---------------------------------------------------------------------------------------------
// import

/// A default store (STORE_PASS), the export fixture `name` copied into the work directory,
/// and `mxkeys import NAME` started on a terminal; the file's label.
fn import_at_terminal(name: &str) -> (Env, String, Term) {
    let env = new_store();
    let label = copy_fixture(&env, name);
    let t = Term::spawn(&env, &["import", &label]);
    (env, label, t)
}

/// Answer an import's prompts: the store prompt wrongly (with PASS) its first `store_wrong`
/// times, the file prompt wrongly its first `file_wrong` times, then rightly.
fn converse_wrong_first(
    t: &Term,
    label: &str,
    store_wrong: usize,
    file_wrong: usize,
) -> Vec<(String, Frame)> {
    let (mut store_asks, mut file_asks) = (0, 0);
    t.converse_fn(|f| {
        if f.prompt_is(&store_prompt()) {
            store_asks += 1;
            let a = if store_asks <= store_wrong {
                PASS
            } else {
                STORE_PASS
            };
            return Some((store_prompt(), a.into()));
        }
        if f.prompt_is(&pass_prompt(label)) {
            file_asks += 1;
            let a = if file_asks <= file_wrong {
                "wrong one"
            } else {
                PASS
            };
            return Some((pass_prompt(label), a.into()));
        }
        None
    })
}

/// The end of an import of element-three: exit 0, the summary, the sessions in the store.
#[track_caller]
fn assert_imported_three(t: &mut Term, env: &Env) {
    let f = t.expect_exit(0);
    show("import: final", &f);
    assert_final(t, &f, "Imported 3 new sessions");
    assert_eq!(store_sessions(env), plaintext_ids("element-three"));
}

#[test]
fn import_one_file_shows_both_prompts_and_the_summary() {
    let (env, label, mut t) = import_at_terminal("element-three.txt");
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&pass_prompt(&label), PASS)]);
    show_asked("import", &asked);
    let prompts: BTreeSet<String> = prompts_of(&asked).into_iter().collect();
    assert_eq!(
        prompts,
        BTreeSet::from([store_prompt(), pass_prompt(&label)]),
        "each prompt once"
    );
    assert_eq!(asked.len(), 2);
    assert_imported_three(&mut t, &env);
    assert_never_shown(&t, &[STORE_PASS, PASS]);
}

#[test]
fn import_wrong_then_right_file_passphrase() {
    let (env, label, mut t) = import_at_terminal("element-three.txt");
    let asked = converse_wrong_first(&t, &label, 0, 2);
    let file = screens_at(&asked, &pass_prompt(&label));
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
    assert_imported_three(&mut t, &env);
}

#[test]
fn import_three_wrong_file_passphrases_fail_with_12() {
    let (env, label, mut t) = import_at_terminal("element-three.txt");
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&pass_prompt(&label), "wrong again"),
    ]);
    assert_eq!(screens_at(&asked, &pass_prompt(&label)).len(), 3);
    let f = t.expect_exit(12);
    show("import: three wrong passphrases", &f);
    assert_error_screen(&t, &f);
    assert_eq!(store_count(&env), 0);
}

#[test]
fn import_wrong_then_right_store_passphrase() {
    let (env, label, mut t) = import_at_terminal("element-three.txt");
    let asked = converse_wrong_first(&t, &label, 1, 0);
    let store = screens_at(&asked, &store_prompt());
    assert_eq!(store.len(), 2, "the store passphrase asked twice");
    show("import: after a wrong store passphrase", store[1]);
    assert!(
        store[1]
            .text
            .contains("Wrong store passphrase; 2 tries left."),
        "{}",
        store[1]
    );
    assert_imported_three(&mut t, &env);
}

#[test]
fn import_several_files() {
    let env = new_store();
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
    show_asked("import of three files", &asked);
    let prompts = prompts_of(&asked);
    assert!(prompts.contains(&pass_prompt(&a)), "{prompts:?}");
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
    let (_env, label, mut t) = import_at_terminal("element-thousand.txt");
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
    let env = new_store();
    copy_fixture(&env, "element-three.txt");
    import_plain(&env, &[Path::new("element-three.txt")]);
    std::fs::remove_file(env.path("element-three.txt")).unwrap();
    env
}

/// `mxkeys export -o OUT --rounds 1000` of the default store, started on a terminal.
fn export_at_terminal(env: &Env, out: &str) -> Term {
    Term::spawn(env, &["export", "-o", out, "--rounds", "1000"])
}

/// The end of an export of element-three to `out`: exit 0, the summary, the file holding the
/// sessions under `pass`.
#[track_caller]
fn assert_exported_three(t: &mut Term, env: &Env, what: &str, out: &str, pass: &str) {
    let f = t.expect_exit(0);
    show(&format!("{what}: final"), &f);
    assert_final(t, &f, "Exported 3 sessions from");
    assert_file_holds(env, out, pass, "element-three");
}

/// An export whose new passphrase is first the weak `first`, then `kept` at the prompt that
/// offers to keep it and again at the repeat prompt. Asserts the prompts came in the order
/// new, keep, repeat; the screen at the keep prompt.
fn export_weak_first(env: &Env, out: &str, first: &str, kept: &str) -> (Term, Frame) {
    let t = export_at_terminal(env, out);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&keep_prompt(out), kept),
        (&new_prompt(out), first),
        (&repeat_prompt(out), kept),
    ]);
    let prompts = prompts_of(&asked);
    let i = prompts.iter().position(|p| *p == new_prompt(out)).unwrap();
    assert_eq!(
        prompts[i..],
        [new_prompt(out), keep_prompt(out), repeat_prompt(out)],
        "{prompts:?}"
    );
    let keep = asked[i + 1].1.clone();
    (t, keep)
}

#[test]
fn export_asks_for_the_new_passphrase_twice() {
    let env = store_with_three();
    let out = "keys-out.txt";
    let mut t = export_at_terminal(&env, out);
    let asked = t.converse(&[
        (&store_prompt(), STORE_PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    show_asked("export", &asked);
    let prompts = prompts_of(&asked);
    let i = prompts.iter().position(|p| *p == new_prompt(out)).unwrap();
    assert_eq!(prompts.get(i + 1), Some(&repeat_prompt(out)), "{prompts:?}");
    assert_eq!(prompts.len(), 3, "{prompts:?}");
    assert_exported_three(&mut t, &env, "export", out, NEW_PASS);
    assert_never_shown(&t, &[STORE_PASS, NEW_PASS]);
}

#[test]
fn export_weak_passphrase_typed_again_is_kept() {
    let env = store_with_three();
    let out = "weak.txt";
    let (mut t, keep) = export_weak_first(&env, out, WEAK, WEAK);
    show("export: weak passphrase warning", &keep);
    assert!(
        keep.rows
            .iter()
            .any(|r| r.starts_with("This passphrase is weak")),
        "no weakness warning above the prompt:\n{keep}"
    );
    assert_exported_three(&mut t, &env, "export (weak kept)", out, WEAK);
}

#[test]
fn export_weak_then_strong_passphrase_uses_the_strong_one() {
    let env = store_with_three();
    let out = "strong.txt";
    let (mut t, _keep) = export_weak_first(&env, out, WEAK, NEW_PASS);
    assert_exported_three(&mut t, &env, "export (weak, then strong)", out, NEW_PASS);
}

#[test]
fn export_ctrl_c_at_the_new_passphrase_prompt_leaves_nothing() {
    let env = store_with_three();
    let before = before_ctrl_c(&env);
    let out = "never.txt";
    let mut t = export_at_terminal(&env, out);
    interrupt_at(
        &mut t,
        &env,
        &before,
        &[(&store_prompt(), STORE_PASS)],
        &new_prompt(out),
    );
}

/// Used by the Ctrl-C tests: answer the store prompt if it comes first, wait for `prompt`,
/// press Ctrl-C, and check that nothing is left.
fn interrupt_at(t: &mut Term, env: &Env, before: &Before, answers: &[(&str, &str)], prompt: &str) {
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
    assert_interrupted_cleanly(t, env, before);
    show(&format!("{}: after Ctrl-C", t.what), &t.screen());
}

/// `mxkeys COMMAND INPUT... -o OUT --rounds 1000 [--change-passphrase]` (merge, reencrypt),
/// started on a terminal.
fn rewrite_at_terminal(
    env: &Env,
    command: &str,
    inputs: &[&str],
    out: &str,
    change_passphrase: bool,
) -> Term {
    let mut args = vec![command];
    args.extend_from_slice(inputs);
    args.extend(["-o", out, "--rounds", "1000"]);
    if change_passphrase {
        args.push("--change-passphrase");
    }
    Term::spawn(env, &args)
}

#[test]
fn merge_two_files_into_a_new_one() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let b = copy_fixture(&env, "wasm-three.txt");
    let out = "merged.txt";
    let mut t = rewrite_at_terminal(&env, "merge", &[&a, &b], out, true);
    let asked = t.converse(&[
        (&pass_prompt(&a), PASS),
        (&pass_prompt(&b), PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    show_asked("merge", &asked);
    let prompts = prompts_of(&asked);
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
    let mut t = rewrite_at_terminal(&env, "reencrypt", &[&a], out, true);
    let asked = t.converse(&[
        (&pass_prompt(&a), PASS),
        (&new_prompt(out), NEW_PASS),
        (&repeat_prompt(out), NEW_PASS),
    ]);
    assert_eq!(
        prompts_of(&asked),
        [pass_prompt(&a), new_prompt(out), repeat_prompt(out)]
    );
    let f = t.expect_exit(0);
    show("reencrypt: final", &f);
    assert!(f.bars().is_empty(), "{f}");
    assert_file_holds(&env, out, NEW_PASS, "element-three");
}

#[test]
fn reencrypt_without_change_passphrase_keeps_the_input_passphrase() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let out = "same.txt";
    let mut t = rewrite_at_terminal(&env, "reencrypt", &[&a], out, false);
    let asked = t.converse(&[(&pass_prompt(&a), PASS)]);
    assert_eq!(asked.len(), 1);
    let f = t.expect_exit(0);
    show("reencrypt (same passphrase): final", &f);
    assert_final(&t, &f, "same passphrase");
    assert_file_holds(&env, out, PASS, "element-three");
}

#[test]
fn reencrypt_ctrl_c_at_the_repeat_prompt_leaves_nothing() {
    let env = Env::new();
    let a = copy_fixture(&env, "element-three.txt");
    let before = before_ctrl_c(&env);
    assert!(before.store.is_empty());
    let out = "re.txt";
    let mut t = rewrite_at_terminal(&env, "reencrypt", &[&a], out, true);
    interrupt_at(
        &mut t,
        &env,
        &before,
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

/// [`plain`], asserting its exit code.
#[track_caller]
fn plain_code(env: &Env, args: &[&str], code: i32) -> std::process::Output {
    let out = plain(env, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "mxkeys {args:?}: {}",
        common::text(&out.stderr)
    );
    out
}

#[track_caller]
fn plain_ok(env: &Env, args: &[&str]) -> std::process::Output {
    plain_code(env, args, 0)
}

/// `mxkeys login --user USER --homeserver HS`, started on a terminal.
fn login_at_terminal(env: &Env, hs: &Hs, user: &User) -> Term {
    Term::spawn(
        env,
        &["login", "--user", &user.user_id, "--homeserver", &hs.base],
    )
}

fn password_prompt(user: &User) -> String {
    format!("Password for {}: ", user.user_id)
}

/// A default store logged in as `user`, set up without a terminal.
fn logged_in(hs: &Hs, user: &User) -> Env {
    let env = new_store();
    let pw = env.write_secret("password.txt", format!("{}\n", user.password));
    plain_ok(
        &env,
        &[
            "login",
            "--user",
            &user.user_id,
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
    let user = hs.register("pty-login");
    let env = new_store();
    let pw_prompt = password_prompt(&user);
    let mut t = login_at_terminal(&env, &hs, &user);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&pw_prompt, &user.password)]);
    show_asked("login", &asked);
    let prompts: BTreeSet<String> = prompts_of(&asked).into_iter().collect();
    assert_eq!(prompts, BTreeSet::from([store_prompt(), pw_prompt]));
    let f = t.expect_exit(0);
    show("login: final", &f);
    assert_final(&t, &f, &format!("Logged in as {}", user.user_id));
    assert_never_shown(&t, &[STORE_PASS, &user.password]);
    // The login is in the store: a plain `backup info` gets as far as "no backup" (10).
    plain_code(&env, &["backup", "info"], 10);
}

#[test]
fn login_ctrl_c_at_the_password_prompt_changes_nothing() {
    let hs = require_hs!();
    let user = hs.register("pty-login-int");
    // One write to the store first: the first write-open of a new store switches SQLite to
    // WAL mode (header bytes 18-19), which is not a change of what the store holds.
    let env = store_with_three();
    let before = before_ctrl_c(&env);
    let mut t = login_at_terminal(&env, &hs, &user);
    interrupt_at(
        &mut t,
        &env,
        &before,
        &[(&store_prompt(), STORE_PASS)],
        &password_prompt(&user),
    );
    // Not logged in.
    let out = plain_code(&env, &["backup", "info"], 2);
    assert!(common::text(&out.stderr).contains("not logged in"));
}

/// `mxkeys backup delete --version VERSION` (without --yes), started on a terminal.
fn delete_at_terminal(env: &Env, version: &str) -> Term {
    Term::spawn(env, &["backup", "delete", "--version", version])
}

#[test]
fn backup_upload_download_check_and_delete_at_the_terminal() {
    let hs = require_hs!();
    let user = hs.register("pty-backup");
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
    show_asked("backup upload", &asked);
    assert!(
        !screens_at(&asked, &pass_prompt(&file)).is_empty(),
        "{:?}",
        prompts_of(&asked)
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
    show_asked("backup download", &asked);
    assert!(
        !screens_at(&asked, SECRET_PROMPT).is_empty(),
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
    let mut t = delete_at_terminal(&a, &version);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (&confirm, "n")]);
    let waiting = screens_at(&asked, &confirm);
    show("backup delete: the confirmation", waiting[0]);
    let f = t.expect_exit(1);
    show("backup delete: answered n", &f);
    assert!(f.text.contains("cancelled"), "{f}");
    plain_ok(&a, &["backup", "info", "--version", &version]);
    // Ctrl-C at the confirmation: 130, the backup still there.
    let before = before_ctrl_c(&a);
    let mut t = delete_at_terminal(&a, &version);
    interrupt_at(
        &mut t,
        &a,
        &before,
        &[(&store_prompt(), STORE_PASS)],
        &confirm,
    );
    plain_ok(&a, &["backup", "info", "--version", &version]);
    // "y" deletes it.
    let mut t = delete_at_terminal(&a, &version);
    t.converse(&[(&store_prompt(), STORE_PASS), (&confirm, "y")]);
    let f = t.expect_exit(0);
    show("backup delete: answered y", &f);
    assert_final(
        &t,
        &f,
        &format!("Deleted backup version {version} (3 keys)."),
    );
    plain_code(&a, &["backup", "info", "--version", &version], 10);
}

#[test]
fn history_check_fix_asks_for_the_backup_secret_before_any_bar() {
    let hs = require_hs!();
    let user = hs.register("pty-history");
    let api = hs.api(&user);
    // A room with one encrypted event of a session that only the server backup holds.
    let room = api.ok(
        "POST",
        "createRoom",
        Some(&json!({"name": "Lost and found"})),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut g = GenSession::new(&room);
    let payload = json!({"type": "m.room.message", "room_id": room,
        "content": {"msgtype": "m.text", "body": "hello again"}});
    let ciphertext = g.encrypt(&payload.to_string());
    api.ok(
        "PUT",
        &format!("rooms/{}/send/m.room.encrypted/t0", enc(&room)),
        Some(
            &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": ciphertext,
            "session_id": g.session_id, "sender_key": g.sender_key, "device_id": "PHONE"}),
        ),
    );
    // Device A made the backup and put the session in it.
    let a = logged_in(&hs, &user);
    let rk_path = a.path("rk.txt");
    plain_ok(&a, &["backup", "create", "-o", rk_path.to_str().unwrap()]);
    let rk = std::fs::read_to_string(&rk_path)
        .unwrap()
        .trim()
        .to_string();
    let file = a.encrypt_json("one.txt", &json!([g.export_entry(0, &[])]));
    import_plain(&a, &[&file]);
    plain_ok(&a, &["backup", "upload"]);

    // Device B has no key: the check says in_backup and what to do.
    let b = logged_in(&hs, &user);
    let mut t = Term::spawn(&b, &["history", "check"]);
    t.converse(&[(&store_prompt(), STORE_PASS)]);
    let f = t.expect_exit(3);
    show("history check: final", &f);
    assert!(
        f.text
            .contains("(Lost and found): 1 encrypted event: 1 in_backup"),
        "{f}"
    );
    assert!(f.text.contains("Run again with --fix"), "{f}");

    // --fix asks for the backup's secret before any bar, downloads that one session, and the
    // check then finds the event decrypted.
    let mut t = Term::spawn(&b, &["history", "check", "--fix"]);
    let asked = t.converse(&[(&store_prompt(), STORE_PASS), (SECRET_PROMPT, &rk)]);
    show_asked("history check --fix", &asked);
    assert!(
        !screens_at(&asked, SECRET_PROMPT).is_empty(),
        "the secret was not asked for: {:?}",
        prompts_of(&asked)
    );
    let f = t.expect_exit(0);
    show("history check --fix: final", &f);
    assert!(
        f.text
            .contains("(Lost and found): 1 encrypted event: 1 decrypted"),
        "{f}"
    );
    assert!(
        f.text
            .contains("--fix: 1 of 1 helping session downloaded from backup version"),
        "{f}"
    );
    assert!(
        f.text.contains("1 in_backup before, 1 decrypted now."),
        "{f}"
    );
    assert_never_shown(&t, &[STORE_PASS, &rk]);
    assert_eq!(
        store_sessions(&b),
        BTreeSet::from([(room.clone(), g.session_id.clone())])
    );
}

// ---------------------------------------------------------------------------------------------
// history export

#[test]
fn history_export_at_the_terminal_warns_once_and_leaves_no_bar() {
    let env = new_store();
    let room = "!tea:example.org";
    let mut g = GenSession::new(room);
    let keys = env.encrypt_json("keys.txt", &json!([g.export_entry(0, &[])]));
    import_plain(&env, &[&keys]);
    let events: Vec<Value> = (0..3000u64)
        .map(|i| {
            let payload = json!({"type": "m.room.message", "room_id": room,
                "content": {"msgtype": "m.text", "body": format!("message {i}")}});
            json!({"type": "m.room.encrypted", "event_id": format!("$e{i}"), "room_id": room,
                "sender": "@alice:example.org", "origin_server_ts": 1_700_000_000_000u64 + i * 1000,
                "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": g.encrypt(&payload.to_string()),
                    "session_id": g.session_id, "sender_key": g.sender_key, "device_id": "PHONE"}})
        })
        .collect();
    env.write(
        "page.json",
        serde_json::to_vec(&json!({"chunk": events})).unwrap(),
    );
    let mut t = Term::spawn(
        &env,
        &[
            "history",
            "export",
            "--from-messages",
            "page.json",
            "--format",
            "txt",
            "-o",
            "tea.txt",
        ],
    );
    t.converse(&[(&store_prompt(), STORE_PASS)]);
    let f = t.expect_exit(0);
    show("history export: final", &f);
    assert_final(&t, &f, "Exported 3000 events of 1 room to tea.txt");
    let warnings = f
        .rows
        .iter()
        .filter(|r| r.contains("is not encrypted"))
        .count();
    assert_eq!(warnings, 1, "{f}");
    assert_never_shown(&t, &[STORE_PASS, "message 1"]);
    let out = env.path("tea.txt");
    assert_eq!(common::mode(&out), 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("Alice") || l.contains("@alice"))
            .count(),
        3000
    );
}
