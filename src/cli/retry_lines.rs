//! One line on stderr per network retry, so that a wait is never silent: what failed, which
//! attempt comes next of how many, and in how long. `--json` makes it a JSON line
//! (`"message_type": "retry"`, docs/json.md); `--quiet` drops it.

use std::sync::Arc;

use mxkeys::client::retry::human_duration;
use mxkeys::client::{RetryNotice, RetryObserver, RetryReason};
use serde_json::json;

use crate::cli::output::Ui;

/// The observer to give the client, or none under `--quiet`.
pub fn observer(ui: &Ui) -> Option<RetryObserver> {
    if ui.quiet {
        return None;
    }
    let as_json = ui.json;
    Some(Arc::new(move |n: &RetryNotice| {
        let line = if as_json { json_line(n) } else { human_line(n) };
        crate::cli::output::above_bars(|| eprintln!("{line}"));
    }))
}

/// E.g. `mxkeys: GET /_matrix/client/v3/room_keys/version timed out after 30 s; retrying
/// in 4 s (attempt 2 of 8)`.
pub fn human_line(n: &RetryNotice) -> String {
    let what = match &n.reason {
        RetryReason::TimedOut { .. } => n.reason.to_string(),
        other => format!("failed: {other}"),
    };
    format!(
        "mxkeys: {} {} {}; retrying in {} (attempt {} of {})",
        n.method,
        n.path,
        what,
        human_duration(n.wait),
        n.attempt,
        n.max_attempts
    )
}

/// The `--json` form: one object on one line. (The server's errcode and message were
/// sanitized when its error body was parsed; the path is the client's own.)
pub fn json_line(n: &RetryNotice) -> String {
    let errcode = match &n.reason {
        RetryReason::Status { errcode, .. } | RetryReason::RateLimited { errcode, .. } => {
            Some(errcode.as_str())
        }
        _ => None,
    };
    let timeout_ms = match &n.reason {
        RetryReason::TimedOut { after } => Some(after.as_millis() as u64),
        _ => None,
    };
    json!({
        "message_type": "retry",
        "method": n.method,
        "path": n.path,
        "reason": n.reason.code(),
        "status": n.reason.status(),
        "errcode": errcode,
        "timeout_ms": timeout_ms,
        "message": n.reason.to_string(),
        "attempt": n.attempt,
        "max_attempts": n.max_attempts,
        "wait_ms": n.wait.as_millis() as u64,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn notice(reason: RetryReason) -> RetryNotice {
        RetryNotice {
            method: "GET",
            path: "/_matrix/client/v3/room_keys/version".into(),
            reason,
            attempt: 2,
            max_attempts: 8,
            wait: Duration::from_secs(4),
        }
    }

    #[test]
    fn lines_name_what_failed_the_attempt_and_the_wait() {
        let n = notice(RetryReason::TimedOut {
            after: Duration::from_secs(30),
        });
        assert_eq!(
            human_line(&n),
            "mxkeys: GET /_matrix/client/v3/room_keys/version timed out after 30 s; retrying in 4 s (attempt 2 of 8)"
        );
        let n = notice(RetryReason::Status {
            status: 503,
            errcode: "M_UNKNOWN".into(),
            message: "busy".into(),
        });
        assert_eq!(
            human_line(&n),
            "mxkeys: GET /_matrix/client/v3/room_keys/version failed: HTTP 503 M_UNKNOWN: busy; retrying in 4 s (attempt 2 of 8)"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&n)).unwrap();
        assert_eq!(v["message_type"], "retry");
        assert_eq!(v["reason"], "server_error");
        assert_eq!(v["status"], 503);
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["max_attempts"], 8);
        assert_eq!(v["wait_ms"], 4000);
        assert_eq!(v["timeout_ms"], serde_json::Value::Null);
    }
}
