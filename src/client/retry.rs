//! When and how long to wait before trying a request again.
//!
//! Exponential backoff with full jitter on connection errors, 5xx and 429 (honouring the
//! server's `retry_after_ms` or `Retry-After`, up to a cap); never on 401, 403, 404 or any
//! other 4xx. The total time is bounded, and every wait can be cut short by Ctrl-C.

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
    /// Give up once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_server_wait: Duration::from_secs(60),
            max_total: Duration::from_secs(300),
        }
    }
}

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

/// Tracks one request's attempts.
#[derive(Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    started: Instant,
    /// Attempts made so far.
    pub made: u32,
}

impl Attempts {
    /// Start counting.
    pub fn new(policy: RetryPolicy) -> Self {
        Attempts {
            policy,
            started: Instant::now(),
            made: 0,
        }
    }

    /// May we try again after waiting `wait`?
    pub fn may_retry(&self, wait: Duration) -> bool {
        self.made < self.policy.max_attempts
            && self.started.elapsed() + wait <= self.policy.max_total
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

    #[test]
    fn attempts_are_bounded() {
        let mut a = Attempts::new(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::fast()
        });
        a.made = 3;
        assert!(!a.may_retry(Duration::ZERO));
        a.made = 1;
        assert!(a.may_retry(Duration::ZERO));
        assert!(!a.may_retry(Duration::from_secs(3600)));
    }
}
