//! When and how long to wait before trying a request again.
//!
//! Exponential backoff with jitter on connection errors, timeouts, 5xx and 429 (honouring
//! the server's `retry_after_ms` or `Retry-After`, up to a cap); never on 401, 403, 404 or any
//! other 4xx. Each request, retries included, has a deadline ([`RetryPolicy::max_total`]):
//! every attempt's timeout is cut to the time left, and no retry starts that the deadline
//! would interrupt. Every wait can be cut short by Ctrl-C. The client reports each retry to
//! an optional observer ([`RetryObserver`]) as a [`RetryNotice`]; the library prints nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retry limits.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Largest single backoff we choose ourselves.
    pub max_delay: Duration,
    /// Largest wait a server may ask for with 429 before we give up instead.
    pub max_server_wait: Duration,
    /// The deadline of one request, retries included, counted from its first attempt: no
    /// attempt runs past it.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_server_wait: Duration::from_secs(60),
            max_total: Duration::from_secs(100),
        }
    }
}

/// The shortest attempt worth starting (or the whole per-request timeout, when that is
/// shorter): a retry is planned only if this much time is left once its wait is over.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);

impl RetryPolicy {
    /// A policy for tests: the same rules, millisecond waits.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_server_wait: Duration::from_secs(5),
            max_total: Duration::from_secs(60),
        }
    }

    /// Backoff before attempt `attempt + 1` (attempt counts from 1): exponential, full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(16))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_delay);
        // Jitter in [cap/2, cap].
        let r = getrandom::u32().unwrap_or(u32::MAX / 2) as u64;
        let half = cap.as_millis() as u64 / 2;
        Duration::from_millis(half + r % (half + 1))
    }
}

/// Why an attempt failed in a way worth retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// No answer within the attempt's timeout.
    TimedOut {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection failed, was refused or reset, or broke off in the middle of a response.
    Connection {
        /// What happened, e.g. "connection reset" (never holds a secret).
        detail: String,
    },
    /// A 5xx response.
    Status {
        /// HTTP status.
        status: u16,
        /// Matrix errcode, or "no errcode".
        errcode: String,
        /// The server's message (sanitized).
        message: String,
    },
    /// 429: the server asks us to slow down.
    RateLimited {
        /// Matrix errcode, or "no errcode".
        errcode: String,
        /// The wait the server asked for, if it named one.
        asked: Option<Duration>,
    },
}

impl RetryReason {
    /// A stable machine-readable name: `timeout`, `connection`, `server_error` or
    /// `rate_limited`.
    pub fn code(&self) -> &'static str {
        match self {
            RetryReason::TimedOut { .. } => "timeout",
            RetryReason::Connection { .. } => "connection",
            RetryReason::Status { .. } => "server_error",
            RetryReason::RateLimited { .. } => "rate_limited",
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            RetryReason::Status { status, .. } => Some(*status),
            RetryReason::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
}

impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryReason::TimedOut { after } => {
                write!(f, "timed out after {}", human_duration(*after))
            }
            RetryReason::Connection { detail } => f.write_str(detail),
            RetryReason::Status {
                status,
                errcode,
                message,
            } => {
                write!(f, "HTTP {status} {errcode}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            RetryReason::RateLimited { errcode, .. } => {
                write!(f, "rate-limited (HTTP 429 {errcode})")
            }
        }
    }
}

/// A duration for people: `500 ms`, `2.5 s`, `30 s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let tenths = (ms + 50) / 100;
    if ms < 1000 {
        format!("{ms} ms")
    } else if tenths < 100 && !tenths.is_multiple_of(10) {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else {
        format!("{} s", (ms + 500) / 1000)
    }
}

/// One retry, as reported to a [`RetryObserver`] just before its wait begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    /// HTTP method of the request that failed.
    pub method: &'static str,
    /// The endpoint path, without the query (never holds a token).
    pub path: String,
    /// Why the attempt failed.
    pub reason: RetryReason,
    /// The number of the attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// How long we wait before that attempt.
    pub wait: Duration,
}

/// Called once per retry, before the wait. Must return quickly.
pub type RetryObserver = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Wait this long, then make attempt number `attempt`.
    Retry {
        /// The wait.
        wait: Duration,
        /// The attempt that follows (2 for the first retry).
        attempt: u32,
    },
    /// Every attempt allowed was made.
    OutOfAttempts,
    /// The deadline would pass before another attempt could run.
    OutOfTime,
    /// The server asked for a longer wait than we may make: more than
    /// [`RetryPolicy::max_server_wait`], or more than the time left.
    WaitTooLong {
        /// What the server asked for.
        asked: Duration,
        /// The longest wait we could have made.
        allowed: Duration,
    },
}

/// Tracks one request's attempts and its deadline.
#[derive(Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    timeout: Duration,
    started: Instant,
    deadline: Instant,
    /// Attempts made so far.
    pub made: u32,
}

impl Attempts {
    /// Start counting now, for a request whose attempts each wait at most `timeout`.
    pub fn new(policy: RetryPolicy, timeout: Duration) -> Self {
        Attempts::starting_at(policy, timeout, Instant::now())
    }

    /// Start counting at `now`.
    pub fn starting_at(policy: RetryPolicy, timeout: Duration, now: Instant) -> Self {
        Attempts {
            policy,
            timeout,
            started: now,
            deadline: now + policy.max_total,
            made: 0,
        }
    }

    /// The timeout for an attempt starting at `now`: the per-request timeout, cut to the
    /// time left before the deadline; `None` when no time is left.
    pub fn timeout_at(&self, now: Instant) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(now);
        (!left.is_zero()).then(|| self.timeout.min(left))
    }

    /// Time left before the deadline at `now`.
    pub fn left_at(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// Time since the first attempt began.
    pub fn elapsed_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// What to do after an attempt that failed at `now`: `asked` is the wait the server
    /// asked for (429), `backoff` our own choice when it asked for none. A retry is planned
    /// only when, after its wait, at least [`MIN_ATTEMPT`] (or the whole timeout, when
    /// shorter) is left before the deadline.
    pub fn plan(&self, now: Instant, asked: Option<Duration>, backoff: Duration) -> Plan {
        let left = self.deadline.saturating_duration_since(now);
        let min_attempt = MIN_ATTEMPT.min(self.timeout);
        let room = left.saturating_sub(min_attempt);
        if let Some(asked) = asked {
            let allowed = self.policy.max_server_wait.min(room);
            if asked > allowed {
                return Plan::WaitTooLong { asked, allowed };
            }
        }
        if self.made >= self.policy.max_attempts {
            return Plan::OutOfAttempts;
        }
        let wait = asked.unwrap_or(backoff);
        if left < min_attempt || wait > room {
            return Plan::OutOfTime;
        }
        Plan::Retry {
            wait,
            attempt: self.made + 1,
        }
    }

    /// Our own backoff for the next attempt.
    pub fn backoff(&self) -> Duration {
        self.policy.backoff(self.made)
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// Sleep `d`, waking early (returning false) if `cancelled()` turns true.
pub fn sleep(d: Duration, cancelled: &dyn Fn() -> bool) -> bool {
    let end = Instant::now() + d;
    loop {
        if cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..20 {
            let d = p.backoff(attempt);
            assert!(d <= p.max_delay, "{d:?}");
            let exp = p
                .base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(p.max_delay);
            assert!(d >= exp / 2, "attempt {attempt}: {d:?} < {:?}", exp / 2);
        }
    }

    fn policy(max_attempts: u32, max_total: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            max_total: Duration::from_secs(max_total),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let t0 = Instant::now();
        let mut a = Attempts::starting_at(policy(3, 100), Duration::from_secs(5), t0);
        a.made = 3;
        assert_eq!(a.plan(t0, None, Duration::ZERO), Plan::OutOfAttempts);
        a.made = 1;
        assert_eq!(
            a.plan(t0, None, Duration::ZERO),
            Plan::Retry {
                wait: Duration::ZERO,
                attempt: 2
            }
        );
        assert_eq!(a.plan(t0, None, Duration::from_secs(3600)), Plan::OutOfTime);
    }

    #[test]
    fn each_attempt_timeout_is_cut_to_the_time_left() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let a = Attempts::starting_at(policy(8, 100), s(30), t0);
        assert_eq!(a.timeout_at(t0), Some(s(30)));
        assert_eq!(a.timeout_at(t0 + s(70)), Some(s(30)));
        assert_eq!(a.timeout_at(t0 + s(93)), Some(s(7)));
        assert_eq!(
            a.timeout_at(t0 + Duration::from_millis(99_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(a.timeout_at(t0 + s(100)), None);
        assert_eq!(a.timeout_at(t0 + s(500)), None);
        // A deadline shorter than the timeout cuts even the first attempt.
        let short = Attempts::starting_at(policy(8, 10), s(30), t0);
        assert_eq!(short.timeout_at(t0), Some(s(10)));
    }

    #[test]
    fn no_attempt_is_planned_past_the_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut a = Attempts::starting_at(policy(1000, 100), s(30), t0);
        a.made = 3;
        // 10 s left: a 4 s wait leaves 6 s for the attempt.
        assert_eq!(
            a.plan(t0 + s(90), None, s(4)),
            Plan::Retry {
                wait: s(4),
                attempt: 4
            }
        );
        // A wait that leaves less than MIN_ATTEMPT, or ends past the deadline: none.
        assert_eq!(
            a.plan(t0 + s(90), None, s(9) + Duration::from_millis(1)),
            Plan::OutOfTime
        );
        assert_eq!(a.plan(t0 + s(90), None, s(20)), Plan::OutOfTime);
        assert_eq!(
            a.plan(t0 + Duration::from_millis(99_500), None, Duration::ZERO),
            Plan::OutOfTime
        );
        assert_eq!(a.plan(t0 + s(100), None, Duration::ZERO), Plan::OutOfTime);
        // Walk a server that never answers: every attempt runs for its whole (cut) timeout,
        // every wait 2 s. The attempts never end past the deadline, whatever the attempt
        // count allows, and the last one is cut short.
        let mut a = Attempts::starting_at(policy(1000, 100), s(30), t0);
        let mut now = t0;
        let mut timeouts = Vec::new();
        loop {
            a.made += 1;
            let t = a
                .timeout_at(now)
                .expect("an attempt is only started with time left");
            timeouts.push(t.as_secs());
            now += t;
            assert!(
                now <= t0 + s(100),
                "attempt {} ends past the deadline",
                a.made
            );
            match a.plan(now, None, s(2)) {
                Plan::Retry { wait, attempt } => {
                    assert_eq!(attempt, a.made + 1);
                    now += wait;
                    assert!(now + MIN_ATTEMPT <= t0 + s(100));
                }
                Plan::OutOfTime => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(timeouts, [30, 30, 30, 4]);
    }

    #[test]
    fn server_waits_are_honoured_up_to_the_cap_and_the_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut a = Attempts::starting_at(policy(8, 100), s(30), t0);
        a.made = 1;
        // Within the cap (60 s) and the time left: the server's wait, not our backoff.
        assert_eq!(
            a.plan(t0, Some(s(45)), s(1)),
            Plan::Retry {
                wait: s(45),
                attempt: 2
            }
        );
        // Past the cap: give up at once, saying how long we could have waited.
        assert_eq!(
            a.plan(t0, Some(s(600)), s(1)),
            Plan::WaitTooLong {
                asked: s(600),
                allowed: s(60)
            }
        );
        // Within the cap, but past the deadline.
        assert_eq!(
            a.plan(t0 + s(80), Some(s(45)), s(1)),
            Plan::WaitTooLong {
                asked: s(45),
                allowed: s(19)
            }
        );
        // Even on the last attempt, a long wait is reported as such.
        a.made = 8;
        assert_eq!(
            a.plan(t0, Some(s(600)), s(1)),
            Plan::WaitTooLong {
                asked: s(600),
                allowed: s(60)
            }
        );
        assert_eq!(a.plan(t0, Some(s(5)), s(1)), Plan::OutOfAttempts);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            RetryReason::TimedOut {
                after: Duration::from_secs(30)
            }
            .to_string(),
            "timed out after 30 s"
        );
        assert_eq!(
            RetryReason::Status {
                status: 503,
                errcode: "M_UNKNOWN".into(),
                message: "busy".into()
            }
            .to_string(),
            "HTTP 503 M_UNKNOWN: busy"
        );
        assert_eq!(human_duration(Duration::from_millis(5)), "5 ms");
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(human_duration(Duration::from_millis(4000)), "4 s");
        assert_eq!(human_duration(Duration::from_millis(9_990)), "10 s");
        assert_eq!(human_duration(Duration::from_millis(12_400)), "12 s");
    }
}
