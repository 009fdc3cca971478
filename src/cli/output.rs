//! Human vs `--json` output, terminal checks, progress bars, logging and Ctrl-C.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// Is there a terminal to prompt on? (`/dev/tty` opens only with a controlling terminal.)
pub fn have_tty() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

impl Ui {
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
            eprintln!("{v}");
        } else {
            eprintln!("mxkeys: warning: {msg}");
        }
    }

    /// A status line on stderr for humans; nothing in `--json` or `--quiet` mode.
    pub fn note(&self, msg: &str) {
        if !self.quiet && !self.json {
            eprintln!("{msg}");
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

    /// A progress bar (hidden when not drawing).
    pub fn bar(&self) -> Bar {
        let pb = if self.progress {
            let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            pb.set_style(
                ProgressStyle::with_template(
                    "{msg:>11} [{bar:30}] {percent:>3}% {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.enable_steady_tick(Duration::from_millis(250));
            pb
        } else {
            ProgressBar::hidden()
        };
        Bar {
            pb,
            pending: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A progress bar that is also the library's progress and cancellation hook.
///
/// Work reports progress in small steps (a session, a 64 KiB chunk); the steps are summed in
/// an atomic counter and handed to the bar in lumps, so a million sessions cost a million
/// relaxed atomic adds and a few hundred bar updates.
pub struct Bar {
    pb: ProgressBar,
    pending: std::sync::atomic::AtomicU64,
}

/// Units summed before the bar itself is touched.
const BAR_LUMP: u64 = 4096;

impl Bar {
    /// Remove the bar from the terminal.
    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
}

impl mxkeys::progress::Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        self.pending.store(0, Ordering::Relaxed);
        self.pb.set_message(name.to_string());
        self.pb.set_length(total);
        self.pb.set_position(0);
    }
    fn advance(&self, n: u64) {
        let sum = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        if sum >= BAR_LUMP {
            let lump = self.pending.swap(0, Ordering::Relaxed);
            self.pb.inc(lump);
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
            eprintln!(
                "mxkeys: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
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

/// Print something on stderr without tearing a progress bar (the bar is set aside while `f`
/// runs).
pub fn above_bars(f: impl FnOnce()) {
    f()
}
