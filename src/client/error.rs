//! Homeserver errors, classified so that callers can tell "try again later" from "fix your
//! credentials" from "not there". Messages never contain the access token (it only ever
//! travels in the `Authorization` header, never in URLs or bodies we echo).

use crate::ErrorKind;

/// A failure talking to the homeserver.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No usable connection (DNS, refused, reset, TLS, timeout), even after retries.
    #[error("cannot reach the homeserver at {url}: {reason}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// 401, or 403 on login: the token or password was refused.
    #[error("the homeserver rejected the credentials ({errcode}: {message})")]
    Unauthorized {
        /// Matrix errcode.
        errcode: String,
        /// Server's message (sanitized).
        message: String,
    },
    /// 404.
    #[error("{what} not found on the homeserver ({errcode}: {message})")]
    NotFound {
        /// What was asked for.
        what: String,
        /// Matrix errcode.
        errcode: String,
        /// Server's message (sanitized).
        message: String,
    },
    /// 403 `M_WRONG_ROOM_KEYS_VERSION`: the version we wrote to is no longer current.
    #[error(
        "backup version {version} is no longer the current one (another client created a new backup)"
    )]
    WrongVersion {
        /// The version we sent (Synapse's `current_version` is not trusted: it echoes ours).
        version: String,
    },
    /// 429 with a wait longer than we are willing to sleep (more than the cap, or more than
    /// the time left before the request's deadline).
    #[error(
        "the homeserver is rate-limiting requests and asks to wait {seconds} s, longer than mxkeys waits ({allowed} s)"
    )]
    RateLimited {
        /// Seconds the server asked for.
        seconds: u64,
        /// The longest wait we could have made, in seconds.
        allowed: u64,
    },
    /// 5xx (or 429) still failing after every retry.
    #[error("the homeserver keeps failing: HTTP {status} {errcode}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Matrix errcode, if any.
        errcode: String,
        /// Server's message (sanitized).
        message: String,
    },
    /// Any other 4xx: the request was refused.
    #[error("the homeserver refused the request: HTTP {status} {errcode}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Matrix errcode.
        errcode: String,
        /// Server's message (sanitized).
        message: String,
    },
    /// A 2xx response that is not what the API promises.
    #[error("the homeserver sent an invalid response to {what}: {reason}")]
    BadResponse {
        /// Which request.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// The homeserver URL cannot be used.
    #[error("invalid homeserver URL {0:?}")]
    BadUrl(String),
    /// The user cancelled.
    #[error("interrupted")]
    Interrupted,
}

impl ClientError {
    /// Broad class for exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::RateLimited { .. }
            | ClientError::Server { .. }
            | ClientError::BadResponse { .. } => ErrorKind::Unreachable,
            ClientError::Unauthorized { .. } => ErrorKind::CredentialsRejected,
            ClientError::NotFound { .. } => ErrorKind::NotFound,
            ClientError::WrongVersion { .. } => ErrorKind::Busy,
            ClientError::Rejected { .. } => ErrorKind::Other,
            ClientError::BadUrl(_) => ErrorKind::Usage,
            ClientError::Interrupted => ErrorKind::Interrupted,
        }
    }
}

/// The `errcode` and `error` of a Matrix error body, tolerating garbage.
///
/// Public only for the fuzz targets in `fuzz/` (not part of the API).
#[doc(hidden)]
pub fn parse_error_body(body: &[u8]) -> (String, String, Option<u64>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let errcode = v
        .get("errcode")
        .and_then(|e| e.as_str())
        .map(crate::session::sanitize)
        .unwrap_or_else(|| "no errcode".into());
    let message = v
        .get("error")
        .and_then(|e| e.as_str())
        .map(crate::session::sanitize)
        .unwrap_or_default();
    let retry_after_ms = v.get("retry_after_ms").and_then(|r| r.as_u64());
    (errcode, message, retry_after_ms)
}
