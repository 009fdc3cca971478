//! Network waits you can see (issue 8, part 4): against a scripted server on 127.0.0.1 that
//! accepts connections and never answers, answers 503, or rate-limits, `mxkeys` prints one
//! line per retry on stderr (what failed, attempt n of m, the wait), a JSON line with
//! `--json`, nothing with `--quiet`; it ends with exit 15, one error line and a hint; the
//! per-request deadline (`--retry-for`) bounds the attempts whatever `--attempts` says; a
//! long 429 gives up at once saying when to retry; Ctrl-C during a wait exits 130.
//!
//! No Synapse needed: the server here speaks just enough HTTP/1.1. Backoff is shortened with
//! `MXKEYS_RETRY_BASE_MS=5`; timeouts are `--timeout 1`. No test asserts on time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mxkeys");
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const VERSION: &str = "/_matrix/client/v3/room_keys/version";

/// What the server does with a request.
#[derive(Clone)]
enum Act {
    /// Read the request and never answer (the connection stays open).
    Silent,
    /// Answer with this status, extra headers and JSON body.
    Answer(u16, Vec<(&'static str, String)>, String),
}

fn answer(status: u16, body: Value) -> Act {
    Act::Answer(status, vec![], body.to_string())
}

fn rate_limited(ms: u64) -> Act {
    Act::Answer(
        429,
        vec![("Retry-After", ms.div_ceil(1000).to_string())],
        json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": ms})
            .to_string(),
    )
}

/// A rule: the `nth` (from 1; 0 = every) request whose path starts with `prefix`.
struct Rule {
    prefix: &'static str,
    nth: usize,
    act: Act,
}

fn rule(prefix: &'static str, nth: usize, act: Act) -> Rule {
    Rule { prefix, nth, act }
}

/// `whoami` answers for @alice, every time.
fn whoami_ok() -> Rule {
    rule(
        WHOAMI,
        0,
        answer(200, json!({"user_id": "@alice:example.org"})),
    )
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// "METHOD /path?query" of every request, in order.
    seen: Vec<String>,
}

/// A scripted homeserver on 127.0.0.1; requests no rule matches get `Silent`.
struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start(rules: Vec<Rule>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            rules,
            seen: vec![],
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Server { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self, prefix: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix)))
            .count()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
    let mut parts = first.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let act = {
        let mut s = state.lock().unwrap();
        s.seen.push(format!("{method} {path}"));
        let n = s
            .seen
            .iter()
            .filter(|x| x.split(' ').nth(1).is_some_and(|p| p == path))
            .count();
        s.rules
            .iter()
            .find(|rule| path.starts_with(rule.prefix) && (rule.nth == 0 || rule.nth == n))
            .map(|rule| rule.act.clone())
            .unwrap_or(Act::Silent)
    };
    match act {
        Act::Silent => {
            // Hold the connection open, saying nothing, until the client gives up.
            let mut sink = [0u8; 64];
            let mut c = conn;
            let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
            while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
        }
        Act::Answer(status, headers, body) => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let mut c = conn;
            let _ = c.write_all(out.as_bytes());
        }
    }
}

/// A home directory and a token file for one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token.txt");
        std::fs::write(&tok, "syt_not_a_real_token\n").unwrap();
        std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Env { dir }
    }

    fn token(&self) -> PathBuf {
        self.dir.path().join("token.txt")
    }

    /// `mxkeys [global...] backup info --homeserver URL --access-token-file T [extra...]`,
    /// with a clean environment and fast backoff.
    fn command(&self, direct: bool, global: &[&str], server: &Server, extra: &[&str]) -> Command {
        let mut c = if direct {
            Command::new(BIN)
        } else {
            // No controlling terminal: nothing can prompt.
            let mut c = Command::new("setsid");
            c.args(["-w", BIN]);
            c
        };
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("MXKEYS_RETRY_BASE_MS", "5")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .args(global)
            .args(["backup", "info", "--homeserver", &server.url()])
            .arg("--access-token-file")
            .arg(self.token())
            .args(extra);
        c
    }

    fn run(&self, global: &[&str], server: &Server, extra: &[&str]) -> Run {
        let out = self.command(false, global, server, extra).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The human retry lines.
    fn retry_lines(&self) -> Vec<&str> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("mxkeys: ") && l.contains("; retrying in "))
            .collect()
    }
}

/// `attempt n of m` lines for n = 2..=k, in order, each naming the request.
fn assert_retry_lines(r: &Run, what: &str, count: usize, of: u32) {
    let lines = r.retry_lines();
    assert_eq!(lines.len(), count, "{}", r.stderr);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("mxkeys: {what}")), "{l}");
        assert!(
            l.ends_with(&format!("(attempt {} of {of})", i + 2)),
            "line {i}: {l}"
        );
    }
}

/// Exactly one error line (containing `message`) and one hint (containing `hint`), last.
fn assert_error(r: &Run, code: i32, message: &str, hint: &str) {
    assert_eq!(r.code, code, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    let lines = r.lines();
    let errors: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("mxkeys: error:"))
        .collect();
    let hints: Vec<_> = lines.iter().filter(|l| l.starts_with("hint:")).collect();
    assert_eq!((errors.len(), hints.len()), (1, 1), "{}", r.stderr);
    assert!(errors[0].contains(message), "{}", r.stderr);
    assert!(hints[0].contains(hint), "{}", r.stderr);
    let n = lines.len();
    assert!(
        n >= 2 && lines[n - 2] == *errors[0] && lines[n - 1] == *hints[0],
        "{}",
        r.stderr
    );
}

fn silent() -> Server {
    Server::start(vec![])
}

#[test]
fn a_silent_server_gets_one_line_per_retry_then_exit_15() {
    let server = silent();
    let env = Env::new();
    let r = env.run(&[], &server, &["--timeout", "1", "--attempts", "3"]);
    assert_error(
        &r,
        15,
        &format!(
            "cannot reach the homeserver at {}: timed out after 1 s (3 attempts in ",
            server.url()
        ),
        "--retry-for",
    );
    assert_retry_lines(
        &r,
        &format!("GET {WHOAMI} timed out after 1 s; retrying in "),
        2,
        3,
    );
    // Nothing else: two retry lines, the error, the hint.
    assert_eq!(r.lines().len(), 4, "{}", r.stderr);
    // The token never shows.
    assert!(!r.stderr.contains("syt_"), "{}", r.stderr);
    assert_eq!(server.seen(WHOAMI), 3);
}

#[test]
fn the_deadline_bounds_the_attempts_whatever_their_count() {
    let server = silent();
    let env = Env::new();
    // Each attempt runs out its one-second timeout; the request's deadline is 3 s: at most
    // three attempts fit, though 50 are allowed, and no retry starts that would end later.
    let r = env.run(
        &[],
        &server,
        &["--timeout", "1", "--attempts", "50", "--retry-for", "3"],
    );
    let made = server.seen(WHOAMI);
    assert!((2..=3).contains(&made), "{made} attempts: {}", r.stderr);
    assert_error(
        &r,
        15,
        &format!("timed out after 1 s ({made} attempts in "),
        "--timeout and --retry-for",
    );
    assert_retry_lines(&r, &format!("GET {WHOAMI} timed out after "), made - 1, 50);
}

#[test]
fn a_deadline_shorter_than_the_timeout_cuts_the_attempt() {
    let server = silent();
    let env = Env::new();
    let r = env.run(
        &[],
        &server,
        &["--timeout", "30", "--attempts", "5", "--retry-for", "1"],
    );
    // The one attempt got what was left of the second, not 30 s.
    assert_error(&r, 15, "(1 attempt in ", "--retry-for");
    assert!(!r.stderr.contains("after 30 s"), "{}", r.stderr);
    assert!(r.retry_lines().is_empty(), "{}", r.stderr);
    assert_eq!(server.seen(WHOAMI), 1);
}

#[test]
fn json_retry_lines_are_json_objects() {
    let server = silent();
    let env = Env::new();
    let r = env.run(&["--json"], &server, &["--timeout", "1", "--attempts", "3"]);
    assert_eq!(r.code, 15, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let objs: Vec<Value> = r
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let retries: Vec<&Value> = objs
        .iter()
        .filter(|v| v["message_type"] == "retry")
        .collect();
    assert_eq!(retries.len(), 2, "{}", r.stderr);
    for (i, v) in retries.iter().enumerate() {
        assert_eq!(v["method"], "GET", "{v}");
        assert_eq!(v["path"], WHOAMI, "{v}");
        assert_eq!(v["reason"], "timeout", "{v}");
        assert_eq!(v["timeout_ms"], 1000, "{v}");
        assert_eq!(v["status"], Value::Null, "{v}");
        assert_eq!(v["message"], "timed out after 1 s", "{v}");
        assert_eq!(v["attempt"], i as u64 + 2, "{v}");
        assert_eq!(v["max_attempts"], 3, "{v}");
        assert!(v["wait_ms"].is_u64(), "{v}");
    }
    let errors: Vec<&Value> = objs
        .iter()
        .filter(|v| v["message_type"] == "exit_error")
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert_eq!(errors[0]["code"], 15);
    assert_eq!(objs.len(), 3, "{}", r.stderr);
}

#[test]
fn quiet_prints_no_retry_line() {
    let server = silent();
    let env = Env::new();
    let r = env.run(
        &["--quiet"],
        &server,
        &["--timeout", "1", "--attempts", "3"],
    );
    assert_error(&r, 15, "(3 attempts in ", "--retry-for");
    assert_eq!(r.lines().len(), 2, "{}", r.stderr);
    assert_eq!(server.seen(WHOAMI), 3);
}

#[test]
fn server_errors_are_named_in_each_retry_line() {
    let server = Server::start(vec![
        whoami_ok(),
        rule(
            VERSION,
            0,
            answer(503, json!({"errcode": "M_UNKNOWN", "error": "try later"})),
        ),
    ]);
    let env = Env::new();
    let r = env.run(&[], &server, &["--timeout", "1", "--attempts", "4"]);
    assert_error(
        &r,
        15,
        "the homeserver keeps failing: HTTP 503 M_UNKNOWN: try later",
        "try again later",
    );
    assert_retry_lines(
        &r,
        &format!("GET {VERSION} failed: HTTP 503 M_UNKNOWN: try later; retrying in "),
        3,
        4,
    );
    assert_eq!(server.seen(VERSION), 4);
}

#[test]
fn a_short_rate_limit_is_honoured_and_shown() {
    let server = Server::start(vec![
        rule(WHOAMI, 1, rate_limited(20)),
        whoami_ok(),
        rule(
            VERSION,
            0,
            answer(404, json!({"errcode": "M_NOT_FOUND", "error": "No backup"})),
        ),
    ]);
    let env = Env::new();
    let r = env.run(&[], &server, &["--timeout", "1"]);
    assert_error(&r, 10, "there is no key backup on the homeserver", "");
    // The server's own wait, not our backoff.
    assert_eq!(
        r.retry_lines(),
        [format!(
            "mxkeys: GET {WHOAMI} failed: rate-limited (HTTP 429 M_LIMIT_EXCEEDED); retrying in 20 ms (attempt 2 of 8)"
        )],
        "{}",
        r.stderr
    );
    assert_eq!(server.seen(WHOAMI), 2);
}

#[test]
fn a_long_rate_limit_gives_up_at_once_saying_when_to_retry() {
    let server = Server::start(vec![rule(WHOAMI, 0, rate_limited(600_000))]);
    let env = Env::new();
    let r = env.run(&[], &server, &["--timeout", "1"]);
    assert_error(
        &r,
        15,
        "asks to wait 600 s, longer than mxkeys waits (60 s)",
        "run the command again in 10 min (after ",
    );
    assert!(r.retry_lines().is_empty(), "{}", r.stderr);
    assert_eq!(server.seen(WHOAMI), 1);

    // Within the cap (60 s) but past the request's deadline: the same, at once.
    let server = Server::start(vec![rule(WHOAMI, 0, rate_limited(30_000))]);
    let r = env.run(&[], &server, &["--timeout", "1", "--retry-for", "5"]);
    assert_error(
        &r,
        15,
        "asks to wait 30 s, longer than mxkeys waits (",
        "run the command again in 30 s (after ",
    );
    assert!(r.retry_lines().is_empty(), "{}", r.stderr);
    assert_eq!(server.seen(WHOAMI), 1);
}

#[test]
fn ctrl_c_during_a_wait_exits_130() {
    // A 429 asking for 50 s (within the cap and the deadline): mxkeys waits; Ctrl-C ends it.
    let server = Server::start(vec![rule(WHOAMI, 0, rate_limited(50_000))]);
    let env = Env::new();
    let mut child = env
        .command(true, &[], &server, &["--timeout", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.contains("retrying in 50 s (attempt 2 of 8)"),
        "{first}"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{first}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert_eq!(server.seen(WHOAMI), 1);
}
