//! mxkeys on a real pseudo-terminal, read back as the screen a person sees.
//!
//! The child is started by `pty-process` as the leader of a new session whose controlling
//! terminal is the pty, so `/dev/tty` opens, echo is really switched off and on, and Ctrl-C is
//! the line discipline's SIGINT, as in a terminal window. Everything it writes is fed to
//! `vt100`, a terminal emulator, and the tests look at the rendered 120x30 screen: text a
//! later redraw erased (a bar cleared, a prompt drawn over) is gone there, as it is for a
//! person, while a raw byte stream would still contain it. Both crates are cargo
//! dependencies with no unsafe code in the tests; tmux would do the same job but is a system
//! package the test machine may lack.
//!
//! Every rendered screen is also kept (one frame per change), so a test can ask what was on
//! screen while a prompt waited, or whether a bar was drawn while work ran. Timeouts are
//! failure guards only, never assertions on how long anything took.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Env;

/// Screen rows.
pub const ROWS: u16 = 30;
/// Screen columns.
pub const COLS: u16 = 120;
/// How long any wait may take before the test fails (a guard against hangs, not a measure).
pub const WAIT: Duration = Duration::from_secs(60);
/// How long a prompt is watched, once mxkeys sits reading the terminal, before it is
/// answered: longer than a few ticks of any progress bar (indicatif ticks every 250 ms), so a
/// bar left running over the prompt would be seen redrawing.
pub const OBSERVE: Duration = Duration::from_millis(700);
/// When mxkeys has been reading the terminal this long and the screen still does not show
/// what the test waits for, nothing will change any more: fail at once with the screen.
const STUCK: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(20);

/// One rendered screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The rows, trailing blanks removed, joined with newlines (trailing empty rows removed).
    pub text: String,
    /// The rows as drawn, trailing blanks removed.
    pub rows: Vec<String>,
    /// (row, column) of the cursor.
    pub cursor: (u16, u16),
    /// The cursor row up to the cursor, blanks included (what a prompt line shows).
    pub before_cursor: String,
}

impl Frame {
    fn of(screen: &vt100::Screen) -> Frame {
        let rows: Vec<String> = screen
            .rows(0, COLS)
            .map(|r| r.trim_end().to_string())
            .collect();
        let cursor = screen.cursor_position();
        let before_cursor = (0..cursor.1)
            .map(|c| match screen.cell(cursor.0, c) {
                Some(cell) if cell.has_contents() => cell.contents().to_string(),
                _ => " ".to_string(),
            })
            .collect();
        Frame {
            text: screen.contents().trim_end().to_string(),
            rows,
            cursor,
            before_cursor,
        }
    }

    /// Does the cursor sit right after `prompt` (a prompt waiting at the end of its line)?
    pub fn prompt_is(&self, prompt: &str) -> bool {
        self.before_cursor.ends_with(prompt)
    }

    /// The rows that look like a progress bar.
    pub fn bars(&self) -> Vec<String> {
        self.rows.iter().filter(|r| is_bar(r)).cloned().collect()
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = usize::from(COLS);
        writeln!(f, "+{}+", "-".repeat(width))?;
        let last = self
            .rows
            .iter()
            .rposition(|r| !r.is_empty())
            .unwrap_or(0)
            .max(usize::from(self.cursor.0));
        for (i, r) in self.rows.iter().enumerate().take(last + 1) {
            let n = r.chars().count();
            writeln!(f, "|{r}{}|", " ".repeat(width.saturating_sub(n)))?;
            if i == usize::from(self.cursor.0) {
                // Mark the cursor column under its row.
                writeln!(f, " {}^ cursor", " ".repeat(usize::from(self.cursor.1)))?;
            }
        }
        write!(f, "+{}+", "-".repeat(width))
    }
}

/// Does this screen row look like a progress bar: a bracketed run of bar characters, a
/// percentage with a rate or an ETA?
pub fn is_bar(row: &str) -> bool {
    let b = row.as_bytes();
    let mut i = 0;
    while let Some(open) = b[i..].iter().position(|&c| c == b'[').map(|p| p + i) {
        let run = b[open + 1..]
            .iter()
            .take_while(|c| matches!(c, b'=' | b'>' | b'#' | b'-' | b' ' | b'.'))
            .count();
        if run >= 8 && b.get(open + 1 + run) == Some(&b']') {
            return true;
        }
        i = open + 1;
    }
    let has_percent = row
        .split_whitespace()
        .any(|w| w.len() > 1 && w.ends_with('%') && w[..w.len() - 1].parse::<u32>().is_ok());
    has_percent && (row.contains("eta") || row.contains("/s"))
}

struct Shared {
    parser: vt100::Parser,
    frames: Vec<Frame>,
    eof: bool,
}

/// A running mxkeys on a pseudo-terminal.
pub struct Term {
    pty: Arc<pty_process::blocking::Pty>,
    child: Child,
    shared: Arc<Mutex<Shared>>,
    reader: Option<JoinHandle<()>>,
    status: Option<std::process::ExitStatus>,
    /// The command line, for messages.
    pub what: String,
}

impl Term {
    /// `mxkeys ARGS` in `env`'s clean environment (HOME, XDG_DATA_HOME, PATH, plus
    /// TERM=xterm-256color), run in its work directory, on a 120x30 terminal.
    pub fn spawn(env: &Env, args: &[&str]) -> Term {
        Self::spawn_with(env, args, &[])
    }

    /// Like [`Term::spawn`], with extra environment variables.
    pub fn spawn_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Term {
        let mut t = Self::spawn_program(env, Path::new(super::BIN), args, vars);
        t.what = format!("mxkeys {}", args.join(" "));
        t
    }

    /// Any program on the terminal, in the same environment (for the harness's own tests).
    pub fn spawn_program(env: &Env, program: &Path, args: &[&str], vars: &[(&str, &str)]) -> Term {
        let (pty, pts) = pty_process::blocking::open().expect("opening a pty");
        pty.resize(pty_process::Size::new(ROWS, COLS))
            .expect("sizing the pty");
        let cmd = pty_process::blocking::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.base_env())
            .env("TERM", "xterm-256color")
            .envs(vars.iter().copied())
            .current_dir(env.work());
        let child = cmd.spawn(pts).expect("starting mxkeys on the pty");
        let pty = Arc::new(pty);
        let rows = NonZeroU16::new(ROWS).expect("rows");
        let cols = NonZeroU16::new(COLS).expect("cols");
        let parser = vt100::Parser::new(rows, cols, 0);
        let first = Frame::of(parser.screen());
        let shared = Arc::new(Mutex::new(Shared {
            parser,
            frames: vec![first],
            eof: false,
        }));
        let reader = {
            let pty = Arc::clone(&pty);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    // EIO once the child and everything it started have closed the terminal.
                    let n = match (&*pty).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut s = shared.lock().unwrap();
                    s.parser.process(&buf[..n]);
                    let f = Frame::of(s.parser.screen());
                    if s.frames.last() != Some(&f) && s.frames.len() < 200_000 {
                        s.frames.push(f);
                    }
                }
                shared.lock().unwrap().eof = true;
            })
        };
        Term {
            pty,
            child,
            shared,
            reader: Some(reader),
            status: None,
            what: format!("{} {}", program.display(), args.join(" ")),
        }
    }

    /// The screen now.
    pub fn screen(&self) -> Frame {
        Frame::of(self.shared.lock().unwrap().parser.screen())
    }

    /// The text on the screen now.
    pub fn screen_text(&self) -> String {
        self.screen().text
    }

    /// How many frames have been drawn so far (a mark for [`Term::frames_since`]).
    pub fn frame_count(&self) -> usize {
        self.shared.lock().unwrap().frames.len()
    }

    /// Every frame drawn since `mark`.
    pub fn frames_since(&self, mark: usize) -> Vec<Frame> {
        let s = self.shared.lock().unwrap();
        s.frames[mark.min(s.frames.len())..].to_vec()
    }

    /// Every frame drawn so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames_since(0)
    }

    fn eof(&self) -> bool {
        self.shared.lock().unwrap().eof
    }

    /// Is mxkeys (some thread of it) blocked waiting for the person at its terminal? Read
    /// from /proc/PID/task/*/syscall: a `read` on a descriptor that is the pty, or a
    /// `poll`/`ppoll` whose descriptors (read from /proc/PID/mem) include it. A program that
    /// polls with a timeout is between two polls for an instant, so a few samples are taken.
    pub fn reading_terminal(&self) -> bool {
        (0..4).any(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
            self.reading_terminal_now()
        })
    }

    fn reading_terminal_now(&self) -> bool {
        let pid = self.child.id();
        let is_tty = |fd: i64| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .is_ok_and(|t| t == Path::new("/dev/tty") || t.starts_with("/dev/pts"))
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        for t in tasks.flatten() {
            let Ok(sc) = std::fs::read_to_string(t.path().join("syscall")) else {
                continue;
            };
            let fields: Vec<&str> = sc.split_whitespace().collect();
            let hex = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            };
            let Some(nr) = fields.first().and_then(|f| f.parse::<u64>().ok()) else {
                continue;
            };
            if nr == SYS_READ && hex(1).is_some_and(|fd| is_tty(fd as i64)) {
                return true;
            }
            if SYS_POLL.contains(&nr)
                && let (Some(ptr), Some(n)) = (hex(1), hex(2))
                && n > 0
                && n < 64
                && poll_fds(pid, ptr, n)
                    .iter()
                    .any(|&fd| is_tty(i64::from(fd)))
            {
                return true;
            }
        }
        false
    }

    /// Wait until the rendered screen satisfies `pred`; returns that screen. Fails (with the
    /// screen) when mxkeys exits first, when it sits at a prompt the predicate does not
    /// accept, or after [`WAIT`].
    #[track_caller]
    pub fn wait_for_screen(&self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        let start = Instant::now();
        let mut reading_since: Option<Instant> = None;
        loop {
            let eof = self.eof();
            let f = self.screen();
            if pred(&f) {
                return f;
            }
            if eof {
                panic!(
                    "`{}` ended without the screen showing {what}; final screen:\n{f}",
                    self.what
                );
            }
            if self.reading_terminal() {
                let since = *reading_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STUCK && !pred(&self.screen()) {
                    panic!(
                        "`{}` waits for input, but the screen does not show {what}; screen:\n{}",
                        self.what,
                        self.screen()
                    );
                }
            } else {
                reading_since = None;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "`{}`: no {what} on screen after {WAIT:?}; screen:\n{f}",
                    self.what
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait until the screen contains `needle`.
    #[track_caller]
    pub fn wait_for_text(&self, needle: &str) -> Frame {
        self.wait_for_screen(&format!("{needle:?}"), |f| f.text.contains(needle))
    }

    /// Wait until mxkeys sits reading the terminal with the cursor right after `prompt`, then
    /// watch it for [`OBSERVE`]: the prompt must stay on screen and no progress bar may be
    /// drawn meanwhile (nor have been on any screen since the prompt appeared). Returns the
    /// screen the person sees while mxkeys waits.
    #[track_caller]
    pub fn wait_for_prompt(&self, prompt: &str) -> Frame {
        let mark = self.frame_count();
        self.wait_for_screen(&format!("the prompt {prompt:?} waiting"), |f| {
            f.prompt_is(prompt) && self.reading_terminal()
        });
        self.observe_prompt(prompt, mark)
    }

    #[track_caller]
    fn observe_prompt(&self, prompt: &str, mark: usize) -> Frame {
        std::thread::sleep(OBSERVE);
        let now = self.screen();
        assert!(
            now.prompt_is(prompt) && self.reading_terminal(),
            "`{}`: the prompt {prompt:?} did not stay on screen while mxkeys waited; screen:\n{now}",
            self.what
        );
        let frames = self.frames_since(mark);
        let shown = frames
            .iter()
            .position(|f| f.text.contains(prompt.trim_end()))
            .unwrap_or(0);
        if let Some(f) = frames[shown..].iter().find(|f| !f.bars().is_empty()) {
            panic!(
                "`{}`: a progress bar was on screen while the prompt {prompt:?} waited:\n{f}",
                self.what
            );
        }
        now
    }

    /// Wait for `prompt` (see [`Term::wait_for_prompt`]) and type `text` and Enter.
    #[track_caller]
    pub fn answer(&self, prompt: &str, text: &str) -> Frame {
        let f = self.wait_for_prompt(prompt);
        self.type_and_wait(prompt, text, &f);
        f
    }

    /// Answer every prompt mxkeys asks until it exits: each prompt must be one of `answers`'
    /// (prompt, text) pairs (matched at the cursor; the first pair that matches wins) and is
    /// checked as in [`Term::wait_for_prompt`]. Returns the prompts asked, in order, each with
    /// the screen shown while it waited.
    #[track_caller]
    pub fn converse(&self, answers: &[(&str, &str)]) -> Vec<(String, Frame)> {
        self.converse_fn(|f| {
            answers
                .iter()
                .find(|(p, _)| f.prompt_is(p))
                .map(|(p, a)| (p.to_string(), a.to_string()))
        })
    }

    /// Answer every prompt until mxkeys exits: `answer` gets the screen of a prompt waiting
    /// (mxkeys reading the terminal, the cursor after `: ` or `] `) and returns the prompt it
    /// recognised and what to type, or `None` for a prompt it does not expect (the test then
    /// fails with the screen). Each prompt is checked as in [`Term::wait_for_prompt`].
    #[track_caller]
    pub fn converse_fn(
        &self,
        mut answer: impl FnMut(&Frame) -> Option<(String, String)>,
    ) -> Vec<(String, Frame)> {
        let mut asked = Vec::new();
        loop {
            let mark = self.frame_count();
            let f = self.wait_for_screen("a prompt waiting, or the end", |f| {
                self.eof()
                    || (self.reading_terminal()
                        && (f.before_cursor.ends_with(": ") || f.before_cursor.ends_with("] ")))
            });
            if self.eof() && !self.reading_terminal() {
                return asked;
            }
            let Some((p, text)) = answer(&f) else {
                panic!(
                    "`{}` asks something the test does not expect (after {:?}):\n{f}",
                    self.what,
                    asked.iter().map(|(p, _)| p).collect::<Vec<_>>()
                );
            };
            let seen = self.observe_prompt(&p, mark);
            self.type_and_wait(&p, &text, &seen);
            asked.push((p, seen));
            assert!(asked.len() < 50, "`{}`: more than 50 prompts", self.what);
        }
    }

    /// Type the answer to a waiting prompt, then wait until mxkeys has taken it (the screen
    /// changed, or it no longer reads the terminal).
    #[track_caller]
    fn type_and_wait(&self, prompt: &str, text: &str, waiting: &Frame) {
        let mark = self.frame_count();
        self.type_line(text);
        self.wait_for_screen(&format!("the answer to {prompt:?} taken"), |_| {
            !self.reading_terminal() || self.frames_since(mark).iter().any(|g| g != waiting)
        });
    }

    /// Type `text` and Enter (a carriage return, as a keyboard sends it).
    pub fn type_line(&self, text: &str) {
        self.send(format!("{text}\r").as_bytes());
    }

    /// Type raw bytes.
    pub fn send(&self, bytes: &[u8]) {
        let mut w = &*self.pty;
        w.write_all(bytes).expect("writing to the pty");
        w.flush().expect("flushing the pty");
    }

    /// Press Ctrl-C.
    pub fn ctrl_c(&self) {
        self.send(&[0x03]);
    }

    /// Wait for mxkeys to exit and for its last output to be on screen; the exit code
    /// (128 + N when killed by signal N, as a shell reports it).
    #[track_caller]
    pub fn exit_code(&mut self) -> i32 {
        let status = match self.status {
            Some(s) => s,
            None => {
                let start = Instant::now();
                let s = loop {
                    if let Some(s) = self.child.try_wait().expect("waiting for mxkeys") {
                        break s;
                    }
                    if start.elapsed() > WAIT {
                        let screen = self.screen();
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        panic!(
                            "`{}` did not exit within {WAIT:?}; screen:\n{screen}",
                            self.what
                        );
                    }
                    std::thread::sleep(POLL);
                };
                self.status = Some(s);
                // The reader ends when the terminal is closed on the child's side.
                let start = Instant::now();
                while !self.eof() && start.elapsed() < WAIT {
                    std::thread::sleep(POLL);
                }
                if self.eof()
                    && let Some(r) = self.reader.take()
                {
                    let _ = r.join();
                }
                s
            }
        };
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// Wait for the exit and expect `code`; returns the final screen.
    #[track_caller]
    pub fn expect_exit(&mut self, code: i32) -> Frame {
        let got = self.exit_code();
        let screen = self.screen();
        assert_eq!(
            got, code,
            "`{}` exited {got}, expected {code}; final screen:\n{screen}",
            self.what
        );
        screen
    }

    /// Is the terminal's echo on (as a shell needs it after mxkeys has gone)?
    pub fn echo_on(&self) -> bool {
        let t = rustix::termios::tcgetattr(self.pty.as_fd()).expect("tcgetattr on the pty");
        t.local_modes.contains(rustix::termios::LocalModes::ECHO)
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The descriptors of a `struct pollfd[n]` at `ptr` in process `pid` (8 bytes each: int fd,
/// short events, short revents).
fn poll_fds(pid: u32, ptr: u64, n: u64) -> Vec<i32> {
    use std::io::{Seek, SeekFrom};
    let mut buf = vec![0u8; usize::try_from(n * 8).unwrap_or(0)];
    let ok = std::fs::File::open(format!("/proc/{pid}/mem"))
        .and_then(|mut m| {
            m.seek(SeekFrom::Start(ptr))?;
            m.read_exact(&mut buf)
        })
        .is_ok();
    if !ok {
        return Vec::new();
    }
    buf.chunks_exact(8)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

// System call numbers as /proc/PID/syscall shows them.
#[cfg(target_arch = "x86_64")]
const SYS_READ: u64 = 0;
#[cfg(target_arch = "x86_64")]
const SYS_POLL: [u64; 2] = [7, 271];
#[cfg(target_arch = "aarch64")]
const SYS_READ: u64 = 63;
#[cfg(target_arch = "aarch64")]
const SYS_POLL: [u64; 2] = [73, 73];
