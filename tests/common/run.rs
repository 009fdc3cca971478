//! Running the binary under limits that hold at any machine speed.
//!
//! - [`bounded`]: one run with no terminal (`setsid`), a CPU-time limit and optionally an
//!   address-space limit (`prlimit`), peak RSS and CPU time measured (`/usr/bin/time`), and a
//!   generous wall-clock guard (`timeout`) that only a hang reaches. What a test asserts on is
//!   CPU time, which a busy machine does not inflate, never the wall clock.
//! - [`kill_at`]: a run that is SIGKILLed once it has got this far, progress being its own
//!   CPU time (all threads, from `/proc/PID/stat`), so that kill points land at the same places
//!   of the work whether the machine is idle or busy.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::{Run, Usage};
use super::{BIN, Env};

/// The limits of a [`bounded`] run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU time (user + system) the run may use: enforced with `RLIMIT_CPU` (rounded up to
    /// whole seconds), and what a test asserts on.
    pub cpu: Duration,
    /// Address-space limit in bytes (`prlimit --as`), if any.
    pub address_space: Option<u64>,
    /// Wall-clock guard: the run is killed after this long. Only a hang reaches it.
    pub wall: Duration,
}

/// Run `mxkeys ARGS` in `cwd` with `env`'s clean environment, under `limits`. A run stopped by
/// a limit ends with a code of 128 or more (137 for SIGKILL).
pub fn bounded(env: &Env, cwd: &Path, args: &[OsString], limits: &Limits) -> Run {
    let usage_file = cwd.with_extension("usage");
    let cpu_secs = limits.cpu.as_secs() + u64::from(limits.cpu.subsec_nanos() > 0);
    let mut c = Command::new("setsid");
    c.arg("-w")
        .arg("timeout")
        .args(["-s", "KILL"])
        .arg(limits.wall.as_secs().max(1).to_string())
        .args(["/usr/bin/time", "-f", "%M %U %S", "-o"])
        .arg(&usage_file)
        .arg("prlimit")
        .arg(format!("--cpu={}", cpu_secs.max(1)));
    if let Some(bytes) = limits.address_space {
        c.arg(format!("--as={bytes}"));
    }
    c.arg("--")
        .arg(BIN)
        .args(args)
        .env_clear()
        .envs(env.base_env())
        .current_dir(cwd);
    let start = Instant::now();
    let out = c.output().unwrap();
    let elapsed = start.elapsed();
    let usage = std::fs::read_to_string(&usage_file).unwrap_or_default();
    let _ = std::fs::remove_file(&usage_file);
    Run {
        elapsed,
        what: format!("{args:?}"),
        usage: parse_usage(&usage),
        ..Run::from_output(&out)
    }
}

/// What every bounded run is checked for: no panic, not stopped by a limit, CPU time within
/// `limits.cpu`, peak RSS measured and within `max_rss_kb`, no raw escape character in its
/// output.
pub fn resource_problems(r: &Run, limits: &Limits, max_rss_kb: u64) -> Vec<String> {
    let mut p = Vec::new();
    if r.panicked() {
        p.push(format!("PANIC (exit {})", r.code));
    }
    if r.code == 124 || r.code > 130 || r.code < 0 {
        p.push(format!("killed or timed out (exit {})", r.code));
    }
    if r.usage.cpu > limits.cpu {
        p.push(format!(
            "used {:?} of CPU time (limit {:?})",
            r.usage.cpu, limits.cpu
        ));
    }
    if r.usage.max_rss_kb == 0 {
        p.push("peak RSS not measured (/usr/bin/time wrote nothing)".to_string());
    } else if r.usage.max_rss_kb > max_rss_kb {
        p.push(format!(
            "max RSS {} KiB (limit {max_rss_kb})",
            r.usage.max_rss_kb
        ));
    }
    if r.stderr.contains('\u{1b}') || r.stdout.contains('\u{1b}') {
        p.push("a raw escape character reached the output".into());
    }
    p
}

/// The last `%M %U %S` line `/usr/bin/time` wrote (after a "Command terminated by signal"
/// line when the run was killed); zeros when there is none.
fn parse_usage(s: &str) -> Usage {
    for line in s.lines().rev() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [rss, user, sys] = f[..]
            && let (Ok(rss), Ok(user), Ok(sys)) =
                (rss.parse::<u64>(), user.parse::<f64>(), sys.parse::<f64>())
        {
            return Usage {
                max_rss_kb: rss,
                cpu: Duration::from_secs_f64(user + sys),
            };
        }
    }
    Usage::default()
}

/// How far a live (or not yet reaped) process has got: its user + system CPU time, all
/// threads, in clock ticks (`/proc/PID/stat` fields 14 and 15). `None` once it is gone.
pub fn progress(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// What happened to a run that was to be killed.
#[derive(Debug, Clone, Copy)]
pub enum Fate {
    /// Killed while running, at this progress (CPU ticks), after this long.
    Killed(u64, Duration),
    /// It had already exited with this code, at this progress (the last seen), after this
    /// long.
    Finished(i32, u64, Duration),
}

impl Fate {
    /// The progress reached.
    pub fn progress(&self) -> u64 {
        match *self {
            Fate::Killed(p, _) | Fate::Finished(_, p, _) => p,
        }
    }
}

/// Start `cmd` (output discarded) and SIGKILL it as soon as its [`progress`] reaches `at`,
/// unless it ends first. `u64::MAX` never kills: a control run, which reports its progress.
pub fn kill_at(mut cmd: Command, at: u64) -> Fate {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = 0;
    loop {
        // Look before asking whether it ended: the last look is then the latest there was.
        if let Some(p) = progress(pid) {
            seen = seen.max(p);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Fate::Finished(status.code().unwrap_or(-1), seen, start.elapsed());
        }
        if seen >= at {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // The run may have ended on its own between the last look and the kill.
    match std::os::unix::process::ExitStatusExt::signal(&status) {
        Some(9) => Fate::Killed(seen, start.elapsed()),
        _ => Fate::Finished(status.code().unwrap_or(-1), seen, start.elapsed()),
    }
}

/// `n` kill points spread evenly over `[0, 1.5 × total]`, `total` being the progress of an
/// uncrashed run: two thirds land while the run works (before and after its commit), the rest
/// past its end, where the run finishes by itself. CPU time varies a little from run to run,
/// and the margin keeps both kinds of trial at any speed.
pub fn kill_points(total: u64, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| (total as f64 * 1.5 * (i as f64 + 0.5) / n as f64) as u64)
        .collect()
}
