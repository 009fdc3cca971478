//! A blocking Matrix client-server API client for the few endpoints mxkeys needs: login,
//! whoami, logout, `.well-known` discovery, the key-backup version and keys endpoints,
//! account data and `/keys/query`.
//!
//! Every request goes through one retry loop ([`retry`]); every response is parsed into
//! typed values or rejected as [`ClientError::BadResponse`]; the backup's keys are parsed as a
//! stream, one session at a time, so a response of any size needs bounded memory. The access
//! token travels only in the `Authorization` header and is never logged or echoed.

pub mod devices;
pub mod error;
pub mod media;
pub mod retry;
pub mod rooms;
mod stream;

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

pub use error::ClientError;
use error::parse_error_body;
pub use retry::{RetryNotice, RetryObserver, RetryPolicy, RetryReason};

use crate::backup::KeyBackupData;
use crate::progress::Progress;
use crate::secret::{AccessToken, Passphrase};

/// Largest body accepted for ordinary JSON responses.
pub const MAX_SMALL_BODY: u64 = 1024 * 1024;
/// Largest single session entry accepted inside a keys response.
pub const MAX_KEY_ENTRY: u64 = 256 * 1024;

/// Connection settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// Retry policy, with the deadline of each request ([`RetryPolicy::max_total`]).
    pub retry: RetryPolicy,
    /// Per attempt: give up on a connection that stays silent this long (connecting, at
    /// most 30 s; waiting for the response; each read or write). Cut to the time left
    /// before the request's deadline.
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM), replacing the built-in roots when given.
    pub ca_pem: Option<Vec<u8>>,
    /// Told about every retry before its wait begins.
    pub on_retry: Option<RetryObserver>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            ca_pem: None,
            on_retry: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

/// Longest wait for a connection to be set up (a request's timeout may be longer).
const MAX_CONNECT: Duration = Duration::from_secs(30);

/// The timeouts of one attempt.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// Connecting (TCP and TLS).
    connect: Duration,
    /// Waiting for the response head; each read or write.
    each: Duration,
    /// The whole response body, for small bodies: the time left before the deadline.
    body: Option<Duration>,
}

/// `POST /login` result.
#[derive(Debug)]
pub struct Login {
    /// Full user id.
    pub user_id: String,
    /// The new device.
    pub device_id: String,
    /// The access token (secret).
    pub access_token: AccessToken,
}

/// `GET /account/whoami` result.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct WhoAmI {
    /// Full user id.
    pub user_id: String,
    /// Device of the token, if any.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// A backup version as `GET /room_keys/version` returns it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct BackupVersion {
    /// Algorithm name.
    pub algorithm: String,
    /// Algorithm-specific data (kept raw: its signatures cover every field).
    pub auth_data: Value,
    /// Keys stored.
    pub count: u64,
    /// Changes whenever the stored keys change.
    pub etag: String,
    /// Opaque version string.
    pub version: String,
}

/// `PUT /room_keys/keys` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutResult {
    /// Keys stored in the version afterwards.
    pub count: u64,
}

/// One backed-up session as listed by the keys endpoints.
#[derive(Debug, Clone)]
pub struct RoomKey {
    /// Room.
    pub room_id: String,
    /// Session.
    pub session_id: String,
    /// The encrypted session and its metadata.
    pub data: KeyBackupData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// Percent-encode one path segment or query value (everything but RFC 3986 unreserved).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What to do after one attempt.
enum Step<T> {
    Done(T),
    Retry(RetryReason),
    Fail(ClientError),
}

/// One request, as the retry loop sees it.
struct Call<'a> {
    method: Method,
    url: &'a str,
    body: Option<&'a [u8]>,
    /// What is asked for, for messages.
    what: &'a str,
    /// Repeating it is harmless.
    idempotent: bool,
    /// The response body is small and read whole (its reading then ends by the deadline);
    /// a streamed body may take as long as it needs while data keeps coming.
    small_body: bool,
}

/// A client for one homeserver.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<AccessToken>,
    cfg: ClientConfig,
    cancelled: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Check and normalise a homeserver URL: http or https, a host, no query or fragment.
pub fn normalize_base_url(s: &str) -> Result<String, ClientError> {
    let u =
        url::Url::parse(s.trim()).map_err(|_| ClientError::BadUrl(crate::session::sanitize(s)))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || u.query().is_some() {
        return Err(ClientError::BadUrl(crate::session::sanitize(s)));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// The server name part of a user id (`@alice:example.org` -> `example.org`).
pub fn server_name(user_id: &str) -> Option<&str> {
    let rest = user_id.strip_prefix('@')?;
    let (_, server) = rest.split_once(':')?;
    (!server.is_empty()).then_some(server)
}

impl Client {
    /// A client for `base_url` (e.g. `https://matrix.example.org`).
    pub fn new(
        base_url: &str,
        token: Option<AccessToken>,
        cfg: ClientConfig,
    ) -> Result<Client, ClientError> {
        let base = normalize_base_url(base_url)?;
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &cfg.ca_pem {
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(ClientError::BadUrl(
                    "the CA file holds no PEM certificate".into(),
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        // The timeouts are set again on every attempt, cut to the time left.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("mxkeys/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(cfg.timeout.min(MAX_CONNECT)))
            .timeout_recv_response(Some(cfg.timeout))
            .timeout_per_read(Some(cfg.timeout))
            .timeout_per_write(Some(cfg.timeout))
            .max_redirects(3)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            token,
            cfg,
            cancelled: Box::new(|| false),
        })
    }

    /// Let long waits and transfers stop when `progress` says the user cancelled.
    pub fn with_cancel(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancelled = Box::new(f);
        self
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Replace the access token.
    pub fn set_token(&mut self, token: AccessToken) {
        self.token = Some(token);
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3/{path}", self.base)
    }

    /// The retry loop around one request.
    fn request<T>(
        &self,
        call: &Call<'_>,
        mut handle: impl FnMut(ureq::http::Response<ureq::Body>, &Timeouts) -> Step<T>,
    ) -> Result<T, ClientError> {
        let mut attempts = retry::Attempts::new(self.cfg.retry, self.cfg.timeout);
        loop {
            if (self.cancelled)() {
                return Err(ClientError::Interrupted);
            }
            // Only the first attempt can find no time left (a zero deadline).
            let Some(each) = attempts.timeout_at(Instant::now()) else {
                return Err(self.unreachable(format!(
                    "no time left to try {} (a deadline of {})",
                    call.what,
                    retry::human_duration(attempts.policy().max_total)
                )));
            };
            let timeouts = Timeouts {
                connect: each.min(MAX_CONNECT),
                each,
                body: call
                    .small_body
                    .then(|| attempts.left_at(Instant::now()).max(each)),
            };
            attempts.made += 1;
            let res = self.send(call, &timeouts);
            let step = match res {
                Err(e) => match classify_transport(&e, &timeouts) {
                    // A request that may have reached the server is only repeated when
                    // repeating it is harmless.
                    Ok(reason) if call.idempotent || !maybe_sent(&e) => Step::Retry(reason),
                    Ok(reason) => Step::Fail(self.unreachable(reason.to_string())),
                    Err(fatal) => Step::Fail(ClientError::BadUrl(fatal)),
                },
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        handle(resp, &timeouts)
                    } else {
                        self.error_step(status, resp, call.what, call.idempotent)
                    }
                }
            };
            let reason = match step {
                Step::Done(t) => return Ok(t),
                Step::Fail(e) => return Err(e),
                Step::Retry(reason) => reason,
            };
            let asked = match &reason {
                RetryReason::RateLimited { asked, .. } => *asked,
                _ => None,
            };
            let now = Instant::now();
            match attempts.plan(now, asked, attempts.backoff()) {
                retry::Plan::Retry { wait, attempt } => {
                    log::debug!(
                        "{} {}: {reason}; retrying in {} ms (attempt {attempt} of {})",
                        call.method.as_str(),
                        call.what,
                        wait.as_millis(),
                        attempts.policy().max_attempts
                    );
                    if let Some(observer) = &self.cfg.on_retry {
                        observer(&RetryNotice {
                            method: call.method.as_str(),
                            path: endpoint_path(call.url),
                            reason,
                            attempt,
                            max_attempts: attempts.policy().max_attempts,
                            wait,
                        });
                    }
                    if !retry::sleep(wait, &*self.cancelled) {
                        return Err(ClientError::Interrupted);
                    }
                }
                retry::Plan::WaitTooLong { asked, allowed } => {
                    return Err(ClientError::RateLimited {
                        seconds: round_up_secs(asked),
                        allowed: allowed.as_secs(),
                    });
                }
                retry::Plan::OutOfAttempts | retry::Plan::OutOfTime => {
                    let made = attempts.made;
                    let took = retry::human_duration(attempts.elapsed_at(now));
                    let tries = if made == 1 {
                        "1 attempt".to_string()
                    } else {
                        format!("{made} attempts")
                    };
                    return Err(match reason {
                        RetryReason::Status {
                            status,
                            errcode,
                            message,
                        } => ClientError::Server {
                            status,
                            errcode,
                            message,
                        },
                        RetryReason::RateLimited { errcode, .. } => ClientError::Server {
                            status: 429,
                            errcode,
                            message: format!("still rate-limited after {tries} in {took}"),
                        },
                        other => self.unreachable(format!("{other} ({tries} in {took})")),
                    });
                }
            }
        }
    }

    fn unreachable(&self, reason: String) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    fn send(
        &self,
        call: &Call<'_>,
        t: &Timeouts,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let (url, body) = (call.url, call.body);
        let auth = self
            .token
            .as_ref()
            .map(|t| Zeroizing::new(format!("Bearer {}", t.expose_secret())));
        macro_rules! with_auth {
            ($r:expr) => {{
                let r = $r
                    .config()
                    .timeout_connect(Some(t.connect))
                    .timeout_recv_response(Some(t.each))
                    .timeout_per_read(Some(t.each))
                    .timeout_per_write(Some(t.each))
                    .timeout_recv_body(t.body)
                    .build();
                match &auth {
                    Some(a) => r.header("Authorization", a.as_str()),
                    None => r,
                }
            }};
        }
        match call.method {
            Method::Get => with_auth!(self.agent.get(url)).call(),
            Method::Delete => with_auth!(self.agent.delete(url)).call(),
            Method::Put => with_auth!(self.agent.put(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(b"{}")),
            Method::Post => with_auth!(self.agent.post(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(b"{}")),
        }
    }

    fn error_step<T>(
        &self,
        status: u16,
        mut resp: ureq::http::Response<ureq::Body>,
        what: &str,
        idempotent: bool,
    ) -> Step<T> {
        let retry_after_header = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let (errcode, message, retry_after_ms) = parse_error_body(&body);
        match status {
            429 => Step::Retry(RetryReason::RateLimited {
                errcode,
                asked: retry_after_ms
                    .map(Duration::from_millis)
                    .or(retry_after_header),
            }),
            // A request that is not safe to repeat is retried only on 503, which says the server
            // did not act (a 502/504 from a proxy may hide a request the server carried out).
            500..=599 if idempotent || status == 503 => Step::Retry(RetryReason::Status {
                status,
                errcode,
                message,
            }),
            500..=599 => Step::Fail(ClientError::Server {
                status,
                errcode,
                message,
            }),
            401 => Step::Fail(ClientError::Unauthorized { errcode, message }),
            403 if errcode == "M_WRONG_ROOM_KEYS_VERSION" => {
                Step::Fail(ClientError::WrongVersion {
                    version: String::new(),
                })
            }
            403 if what == "login" => Step::Fail(ClientError::Unauthorized { errcode, message }),
            404 => Step::Fail(ClientError::NotFound {
                what: what.to_string(),
                errcode,
                message,
            }),
            _ => Step::Fail(ClientError::Rejected {
                status,
                errcode,
                message,
            }),
        }
    }

    /// A request whose 2xx body is small JSON.
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        what: &str,
        idempotent: bool,
    ) -> Result<T, ClientError> {
        self.json_limited(method, url, body, what, idempotent, MAX_SMALL_BODY)
    }

    /// A request whose 2xx body is JSON of at most `limit` bytes, read whole.
    fn json_limited<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        what: &str,
        idempotent: bool,
        limit: u64,
    ) -> Result<T, ClientError> {
        let call = Call {
            method,
            url,
            body,
            what,
            idempotent,
            small_body: true,
        };
        self.request(&call, |mut resp, t| {
            match resp.body_mut().with_config().limit(limit).read_to_vec() {
                Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
                    Ok(v) => Step::Done(v),
                    Err(e) => Step::Fail(ClientError::BadResponse {
                        what: what.to_string(),
                        reason: e.to_string(),
                    }),
                },
                Err(ureq::Error::BodyExceedsLimit(n)) => Step::Fail(ClientError::BadResponse {
                    what: what.to_string(),
                    reason: format!("the body is larger than {n} bytes"),
                }),
                Err(e) => match classify_transport(&e, t) {
                    Ok(reason @ RetryReason::TimedOut { .. }) => Step::Retry(reason),
                    Ok(reason) => Step::Retry(RetryReason::Connection {
                        detail: format!("reading the response: {reason}"),
                    }),
                    Err(fatal) => Step::Retry(RetryReason::Connection {
                        detail: format!("reading the response: {fatal}"),
                    }),
                },
            }
        })
    }

    // ---- endpoints ------------------------------------------------------------------

    /// Find the homeserver of `user_id` through `https://<server>/.well-known/matrix/client`,
    /// falling back to `https://<server>`.
    pub fn discover(user_id: &str, cfg: &ClientConfig) -> Result<String, ClientError> {
        let server = server_name(user_id).ok_or_else(|| {
            ClientError::BadUrl(format!("cannot take a server name from {user_id:?}"))
        })?;
        let fallback = format!("https://{server}");
        let probe = Client::new(
            &fallback,
            None,
            ClientConfig {
                retry: RetryPolicy {
                    max_attempts: 2,
                    ..cfg.retry
                },
                ..cfg.clone()
            },
        )?;
        let url = format!("https://{server}/.well-known/matrix/client");
        let found: Result<Value, ClientError> =
            probe.json(Method::Get, &url, None, "the .well-known lookup", true);
        let base = found
            .ok()
            .and_then(|v| {
                v.get("m.homeserver")
                    .and_then(|h| h.get("base_url"))
                    .and_then(|b| b.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(fallback);
        normalize_base_url(&base)
    }

    /// `POST /login` with a password.
    pub fn login_password(
        &self,
        user: &str,
        password: &Passphrase,
        device_name: &str,
    ) -> Result<Login, ClientError> {
        #[derive(Deserialize)]
        struct R {
            user_id: String,
            access_token: String,
            device_id: String,
        }
        let pw = std::str::from_utf8(password.expose_secret())
            .map_err(|_| ClientError::BadUrl("the password is not UTF-8".into()))?;
        let body = Zeroizing::new(
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": pw,
                "initial_device_display_name": device_name,
            })
            .to_string()
            .into_bytes(),
        );
        // Not idempotent: every success makes a device.
        let r: R = self.json(
            Method::Post,
            &self.url("login"),
            Some(&body),
            "login",
            false,
        )?;
        Ok(Login {
            user_id: r.user_id,
            device_id: r.device_id,
            access_token: AccessToken::new(r.access_token),
        })
    }

    /// `GET /account/whoami`.
    pub fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.json(
            Method::Get,
            &self.url("account/whoami"),
            None,
            "whoami",
            true,
        )
    }

    /// `POST /logout`.
    pub fn logout(&self) -> Result<(), ClientError> {
        let _: Value = self.json(
            Method::Post,
            &self.url("logout"),
            Some(b"{}"),
            "logout",
            true,
        )?;
        Ok(())
    }

    /// `GET /room_keys/version[/{version}]`; `None` when there is no such backup.
    pub fn backup_version(
        &self,
        version: Option<&str>,
    ) -> Result<Option<BackupVersion>, ClientError> {
        let url = match version {
            None => self.url("room_keys/version"),
            Some(v) => self.url(&format!("room_keys/version/{}", encode(v))),
        };
        match self.json::<BackupVersion>(Method::Get, &url, None, "the backup version", true) {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /room_keys/version`: a new backup version; returns its version string.
    pub fn create_backup_version(
        &self,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct R {
            version: String,
        }
        let body = json!({"algorithm": algorithm, "auth_data": auth_data}).to_string();
        let r: R = self.json(
            Method::Post,
            &self.url("room_keys/version"),
            Some(body.as_bytes()),
            "creating a backup version",
            false,
        )?;
        Ok(r.version)
    }

    /// `PUT /room_keys/version/{version}`: replace `auth_data` (e.g. to add a signature).
    pub fn update_backup_version(
        &self,
        version: &str,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<(), ClientError> {
        let body =
            json!({"algorithm": algorithm, "auth_data": auth_data, "version": version}).to_string();
        let _: Value = self.json(
            Method::Put,
            &self.url(&format!("room_keys/version/{}", encode(version))),
            Some(body.as_bytes()),
            "updating the backup version",
            true,
        )?;
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`.
    pub fn delete_backup_version(&self, version: &str) -> Result<(), ClientError> {
        let _: Value = self.json(
            Method::Delete,
            &self.url(&format!("room_keys/version/{}", encode(version))),
            None,
            "the backup version",
            true,
        )?;
        Ok(())
    }

    /// Stream the keys of backup `version`, optionally of one room or one session, calling
    /// `f` for each. Memory stays bounded whatever the size of the backup.
    pub fn room_keys(
        &self,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
        progress: &dyn Progress,
        f: &mut dyn FnMut(RoomKey) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let (path, shape) = match (room, session) {
            (Some(r), Some(s)) => (
                format!("room_keys/keys/{}/{}", encode(r), encode(s)),
                stream::Shape::One {
                    room_id: r.to_string(),
                    session_id: s.to_string(),
                },
            ),
            (Some(r), None) => (
                format!("room_keys/keys/{}", encode(r)),
                stream::Shape::Room {
                    room_id: r.to_string(),
                },
            ),
            _ => ("room_keys/keys".to_string(), stream::Shape::All),
        };
        let url = format!("{}?version={}", self.url(&path), encode(version));
        // The callback may have written part of a response when a connection breaks; the
        // callers' sinks (a store transaction, a session set) tolerate seeing keys again.
        let mut user_err: Option<crate::Error> = None;
        let call = Call {
            method: Method::Get,
            url: &url,
            body: None,
            what: "the backup's keys",
            idempotent: true,
            small_body: false,
        };
        let res = self.request(&call, |mut resp, _| {
            let reader = resp.body_mut().as_reader();
            match stream::parse(reader, &shape, MAX_KEY_ENTRY, progress, &mut |k| {
                f(k).map_err(|e| {
                    user_err = Some(e);
                })
            }) {
                Ok(()) => Step::Done(()),
                Err(stream::StreamError::Sink) => Step::Done(()),
                Err(stream::StreamError::Io(detail)) => {
                    Step::Retry(RetryReason::Connection { detail })
                }
                Err(stream::StreamError::Json(reason)) => Step::Fail(ClientError::BadResponse {
                    what: "the backup's keys".into(),
                    reason,
                }),
            }
        });
        if let Some(e) = user_err {
            return Err(e);
        }
        match res {
            Ok(()) => Ok(()),
            // An unknown session is a 404, an unknown room an empty 200.
            Err(ClientError::NotFound { .. }) if session.is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Parse a saved `GET /room_keys/keys` response body (offline download).
    pub fn parse_saved_keys(
        reader: impl Read,
        progress: &dyn Progress,
        f: &mut dyn FnMut(RoomKey) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let mut user_err: Option<crate::Error> = None;
        let r = stream::parse(
            reader,
            &stream::Shape::All,
            MAX_KEY_ENTRY,
            progress,
            &mut |k| {
                f(k).map_err(|e| {
                    user_err = Some(e);
                })
            },
        );
        if let Some(e) = user_err {
            return Err(e);
        }
        r.map_err(|e| {
            crate::Error::NotAKeyExport(match e {
                stream::StreamError::Io(m) | stream::StreamError::Json(m) => {
                    format!("not a saved GET /room_keys/keys response: {m}")
                }
                stream::StreamError::Sink => "stopped".into(),
            })
        })
    }

    /// `PUT /room_keys/keys?version=` with a prepared body `{"rooms": ...}`.
    pub fn put_room_keys(&self, version: &str, body: &[u8]) -> Result<PutResult, ClientError> {
        #[derive(Deserialize)]
        struct R {
            count: u64,
            #[allow(dead_code)]
            etag: Value,
        }
        let url = format!("{}?version={}", self.url("room_keys/keys"), encode(version));
        let r: Result<R, ClientError> =
            self.json(Method::Put, &url, Some(body), "uploading keys", true);
        match r {
            Ok(r) => Ok(PutResult { count: r.count }),
            Err(ClientError::WrongVersion { .. }) => Err(ClientError::WrongVersion {
                version: version.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// `GET /user/{user_id}/account_data/{type}`; `None` when unset (or set to `{}`).
    pub fn account_data(&self, user_id: &str, ty: &str) -> Result<Option<Value>, ClientError> {
        let url = self.url(&format!(
            "user/{}/account_data/{}",
            encode(user_id),
            encode(ty)
        ));
        match self.json::<Value>(Method::Get, &url, None, &format!("account data {ty}"), true) {
            Ok(v) if v.as_object().is_some_and(|o| o.is_empty()) => Ok(None),
            Ok(v) if v.is_object() => Ok(Some(v)),
            Ok(_) => Err(ClientError::BadResponse {
                what: format!("account data {ty}"),
                reason: "not a JSON object".into(),
            }),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /user/{user_id}/account_data/{type}`.
    pub fn put_account_data(
        &self,
        user_id: &str,
        ty: &str,
        content: &Value,
    ) -> Result<(), ClientError> {
        let url = self.url(&format!(
            "user/{}/account_data/{}",
            encode(user_id),
            encode(ty)
        ));
        let body = content.to_string();
        let _: Value = self.json(
            Method::Put,
            &url,
            Some(body.as_bytes()),
            &format!("account data {ty}"),
            true,
        )?;
        Ok(())
    }

    /// `POST /keys/query` for one user: their devices and cross-signing keys.
    pub fn query_keys(&self, user_id: &str) -> Result<Value, ClientError> {
        let body = json!({"device_keys": {user_id: []}}).to_string();
        self.json(
            Method::Post,
            &self.url("keys/query"),
            Some(body.as_bytes()),
            "the user's keys",
            true,
        )
    }

    /// `GET /_matrix/client/versions` (no token needed): is this a homeserver?
    pub fn versions(&self) -> Result<Value, ClientError> {
        let url = format!("{}/_matrix/client/versions", self.base);
        self.json(Method::Get, &url, None, "the server's versions", true)
    }
}

/// Is a transport error worth retrying (`Ok`, and why), or not (`Err`, what failed)?
/// Never describes it with a secret.
fn classify_transport(e: &ureq::Error, t: &Timeouts) -> Result<RetryReason, String> {
    let connection = |detail: String| Ok(RetryReason::Connection { detail });
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Ok(RetryReason::TimedOut { after: t.each })
        }
        ureq::Error::Io(io) => connection(io.kind().to_string()),
        ureq::Error::ConnectionFailed => connection("connection failed".into()),
        ureq::Error::HostNotFound => connection("host not found".into()),
        ureq::Error::Timeout(phase) => Ok(RetryReason::TimedOut {
            after: match phase {
                ureq::Timeout::Connect | ureq::Timeout::Resolve => t.connect,
                ureq::Timeout::RecvBody => t.body.unwrap_or(t.each),
                _ => t.each,
            },
        }),
        ureq::Error::Tls(m) => Err(format!("TLS: {m}")),
        ureq::Error::Protocol(p) => connection(format!("HTTP protocol error: {p}")),
        ureq::Error::BadUri(_) => Err("bad URL".into()),
        other => Err(other.to_string()),
    }
}

/// Could the server have received (part of) the request before this error?
fn maybe_sent(e: &ureq::Error) -> bool {
    !matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
}

/// The path of a URL, without its query (for messages: the query may name a version, never
/// a token, but the path is what says which endpoint failed).
fn endpoint_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.path().to_string(),
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// Whole seconds, rounded up (a server asking for 1.5 s is told 2 s).
fn round_up_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Read at most `limit` bytes (for tests and small helpers).
pub fn read_limited(mut r: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    (&mut r).take(limit).read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_urls() {
        assert_eq!(encode("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(encode("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(
            normalize_base_url("https://m.org/").unwrap(),
            "https://m.org"
        );
        assert!(normalize_base_url("ftp://m.org").is_err());
        assert!(normalize_base_url("not a url").is_err());
        assert_eq!(
            server_name("@alice:example.org:8448"),
            Some("example.org:8448")
        );
        assert_eq!(server_name("alice"), None);
    }
}
