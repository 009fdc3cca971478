//! Human vs `--json` output, terminal checks, progress bars, logging and Ctrl-C.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mxkeys::progress::Unit;

/// Set by the Ctrl-C handler; long work polls it through [`Bar::cancelled`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Install the Ctrl-C handler: the first press asks the running work to stop cleanly (no
/// partial files, transactions rolled back); a second press exits at once.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: the user insists. Temporary files may remain (never the output).
            std::process::exit(130);
        }
    });
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How to talk to the user.
#[derive(Debug, Clone)]
pub struct Ui {
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// Draw progress bars.
    pub progress: bool,
    /// A terminal is available for prompts.
    pub interactive: bool,
}

/// `n` and the noun, in the singular for one ("1 sync", "2 syncs"; `plural` for the others).
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Is there a terminal to prompt on? (`/dev/tty` opens only with a controlling terminal.)
pub fn have_tty() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

impl Ui {
    /// Why a secret that was not given cannot be asked for, as the error that says so ends:
    /// `--json` never prompts (a script must not hang), which a terminal does not change.
    pub fn cannot_ask(&self) -> &'static str {
        if self.json {
            "--json never asks for one"
        } else {
            "there is no terminal to ask on"
        }
    }

    /// Decide from the global flags and the environment.
    pub fn new(json: bool, quiet: bool, no_progress: bool) -> Ui {
        let stderr_tty = std::io::stderr().is_terminal();
        Ui {
            json,
            quiet,
            progress: stderr_tty && !json && !quiet && !no_progress,
            interactive: !json && have_tty(),
        }
    }

    /// A warning on stderr (JSON line in `--json` mode); suppressed by `--quiet`.
    pub fn warn(&self, msg: &str) {
        if self.quiet {
            return;
        }
        if self.json {
            let v = serde_json::json!({"message_type": "warning", "message": msg});
            above_bars(|| eprintln!("{v}"));
        } else {
            above_bars(|| eprintln!("mxkeys: warning: {msg}"));
        }
    }

    /// A status line on stderr for humans; nothing in `--json` or `--quiet` mode.
    pub fn note(&self, msg: &str) {
        if !self.quiet && !self.json {
            above_bars(|| eprintln!("{msg}"));
        }
    }

    /// The JSON result document on stdout.
    pub fn print_json(&self, v: &serde_json::Value) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, v)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }

    /// A progress bar: nothing is drawn until a phase of work begins, and only on a terminal.
    pub fn bar(&self) -> Bar {
        let bar = Bar {
            enabled: self.progress,
            state: std::sync::Arc::new(std::sync::Mutex::new(BarState::default())),
            pending: AtomicU64::new(0),
        };
        if bar.enabled {
            live_bars().push(std::sync::Arc::downgrade(&bar.state));
        }
        bar
    }
}

/// The bars of this process that may be on the screen, so that prompts and notices can clear
/// or suspend them.
fn live_bars() -> std::sync::MutexGuard<'static, Vec<std::sync::Weak<std::sync::Mutex<BarState>>>> {
    static LIVE: std::sync::Mutex<Vec<std::sync::Weak<std::sync::Mutex<BarState>>>> =
        std::sync::Mutex::new(Vec::new());
    let mut v = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    v.retain(|w| w.strong_count() > 0);
    v
}

/// The progress bars currently drawn.
fn drawn_bars() -> Vec<ProgressBar> {
    live_bars()
        .iter()
        .filter_map(|w| w.upgrade())
        .filter_map(|s| lock(&s).pb.clone())
        .collect()
}

/// Remove every drawn bar from the screen before a prompt: a step that has finished is not
/// drawn again, and the next phase of work starts a new bar below the prompt's answer.
pub fn clear_bars() {
    for w in live_bars().iter() {
        if let Some(s) = w.upgrade() {
            let mut st = lock(&s);
            if let Some(pb) = st.pb.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// Print something on stderr without a bar drawn over it: the bar is hidden while `f` runs
/// and drawn again after it.
pub fn above_bars<R>(f: impl FnOnce() -> R) -> R {
    match drawn_bars().first() {
        Some(pb) => pb.suspend(f),
        None => f(),
    }
}

fn lock(s: &std::sync::Mutex<BarState>) -> std::sync::MutexGuard<'_, BarState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a bar shows besides its count.
#[derive(Default)]
struct BarState {
    /// The bar on screen, while a phase is under way.
    pb: Option<ProgressBar>,
    /// What the work is on ("element-keys.txt"), shown after the phase's name.
    subject: Option<String>,
    /// Phase names shown differently by this command ("decrypting" -> "importing").
    renames: Vec<(&'static str, &'static str)>,
}

/// A progress bar that is also the library's progress and cancellation hook.
///
/// Nothing is drawn before the first phase of work begins; each phase gets a bar labelled with
/// its name and subject, in its own unit. Work reports progress in small steps (a session, a
/// 64 KiB chunk); the steps are summed in an atomic counter and handed to the bar in lumps, so
/// a million sessions cost a million relaxed atomic adds and a few hundred bar updates.
pub struct Bar {
    enabled: bool,
    state: std::sync::Arc<std::sync::Mutex<BarState>>,
    pending: AtomicU64,
}

/// Units summed before the bar itself is touched.
const BAR_LUMP: u64 = 4096;

impl Bar {
    /// Remove the bar from the terminal.
    pub fn finish(&self) {
        if let Some(pb) = lock(&self.state).pb.take() {
            pb.finish_and_clear();
        }
    }

    /// Name what the next phases work on (a file's name); `None` for nothing.
    pub fn set_subject(&self, subject: Option<&str>) {
        lock(&self.state).subject = subject.map(mxkeys::session::sanitize);
    }

    /// Show the library's phase `from` as `to` ("decrypting" is "importing" for `import`).
    pub fn rename(&self, from: &'static str, to: &'static str) {
        lock(&self.state).renames.push((from, to));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The bar's template for a unit; without a known total, a count that moves.
fn template(unit: Unit, total: u64) -> String {
    if total == 0 {
        return match unit {
            Unit::Bytes => "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}".into(),
            other => format!(
                "{{spinner}} {{msg}} {{human_pos}} {} {{per_sec}}",
                other.noun()
            ),
        };
    }
    match unit {
        Unit::Bytes => {
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}"
                .into()
        }
        other => format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {} eta {{eta}}",
            other.noun()
        ),
    }
}

impl mxkeys::progress::Progress for Bar {
    fn phase(&self, name: &str, total: u64, unit: Unit) {
        self.pending.store(0, Ordering::Relaxed);
        if !self.enabled {
            return;
        }
        let mut st = lock(&self.state);
        if let Some(old) = st.pb.take() {
            old.finish_and_clear();
        }
        let name = st
            .renames
            .iter()
            .find(|(from, _)| *from == name)
            .map_or(name, |(_, to)| to);
        let msg = match &st.subject {
            Some(s) => format!("{name} {s}"),
            None => name.to_string(),
        };
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
        pb.set_style(
            ProgressStyle::with_template(&template(unit, total))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(msg);
        pb.enable_steady_tick(Duration::from_millis(250));
        st.pb = Some(pb);
    }
    fn advance(&self, n: u64) {
        let sum = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        if sum >= BAR_LUMP {
            let lump = self.pending.swap(0, Ordering::Relaxed);
            if let Some(pb) = &lock(&self.state).pb {
                pb.inc(lump);
            }
        }
    }
    fn cancelled(&self) -> bool {
        interrupted()
    }
}

/// A minimal logger for `-v`: messages go to stderr, never secrets (the library logs none).
struct Logger {
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level && m.target().starts_with("mxkeys")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            above_bars(|| {
                eprintln!(
                    "mxkeys: {}: {}",
                    r.level().as_str().to_lowercase(),
                    r.args()
                )
            });
        }
    }
    fn flush(&self) {}
}

/// Install the logger for the given `-v` count.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (_, 0) => log::LevelFilter::Warn,
        (_, 1) => log::LevelFilter::Info,
        (_, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}
