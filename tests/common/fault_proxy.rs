//! A fault-injecting HTTP/1.1 proxy in front of the real Synapse, for faults a real server will
//! not produce on demand: 429 with `Retry-After` and `retry_after_ms`, 5xx with Matrix error
//! bodies, a connection reset in the middle of a response body, a server that stalls.
//!
//! Plain `std::net` and one thread per connection, on 127.0.0.1 only. Every exchange is one
//! request on one connection (`Connection: close` both ways), which keeps the relay simple.
//! A plan of rules picks the action for a request by method, path prefix and the nth
//! occurrence of that (method, prefix); everything else passes through. Every request is
//! recorded (method, path, time, what was done, status, the request and response bodies).
//!
//! For a hostile server, a rule can also rewrite Synapse's real response (e.g. swap the
//! backup's public key), answer with raw bytes of any size, or stall in the middle of a body.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A test hook run by the proxy (e.g. to change the server's state at the right moment).
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// Turns Synapse's real response (status, body) into the one sent to the client.
pub type Rewriter = Arc<dyn Fn(u16, &[u8]) -> (u16, Vec<u8>) + Send + Sync>;

/// What the proxy does with one request.
#[derive(Clone)]
pub enum Action {
    /// Relay to Synapse and back.
    Pass,
    /// Answer without asking Synapse.
    Respond {
        /// Status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body (JSON).
        body: String,
    },
    /// Relay to Synapse (which acts on it), then answer with this instead of its response.
    ForwardThenRespond {
        /// Status.
        status: u16,
        /// Body (JSON).
        body: String,
    },
    /// Relay to Synapse, send the response head and half the body, then reset the connection.
    ResetMidBody,
    /// Read the request and say nothing for this long (then close).
    Stall(Duration),
    /// Run the hook, then relay.
    HookThenPass(Hook),
    /// Relay to Synapse, then send what the rewriter makes of its response.
    Rewrite(Rewriter),
    /// Answer without asking Synapse, with these exact bytes (any size, any content).
    RespondBytes {
        /// Status.
        status: u16,
        /// Body.
        body: Arc<Vec<u8>>,
    },
    /// Relay to Synapse, send the response head and half the body, then say nothing for this
    /// long (then close).
    StallMidBody(Duration),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Action {
    /// A short name for the log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Respond { .. } => "respond",
            Action::ForwardThenRespond { .. } => "forward-then-respond",
            Action::ResetMidBody => "reset-mid-body",
            Action::Stall(_) => "stall",
            Action::HookThenPass(_) => "hook-then-pass",
            Action::Rewrite(_) => "rewrite",
            Action::RespondBytes { .. } => "respond-bytes",
            Action::StallMidBody(_) => "stall-mid-body",
        }
    }

    /// A Matrix error response.
    pub fn matrix_error(status: u16, errcode: &str, error: &str) -> Action {
        Action::Respond {
            status,
            headers: vec![],
            body: serde_json::json!({"errcode": errcode, "error": error}).to_string(),
        }
    }

    /// `429 M_LIMIT_EXCEEDED` with both `Retry-After: secs` and `retry_after_ms: ms`.
    pub fn too_many_requests(retry_after_secs: u64, retry_after_ms: u64) -> Action {
        Action::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: serde_json::json!({
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": retry_after_ms,
            })
            .to_string(),
        }
    }
}

/// One rule of the plan.
#[derive(Debug, Clone)]
struct Rule {
    method: String,
    prefix: String,
    nth: usize,
    action: Action,
    seen: usize,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// What the proxy did.
    pub action: &'static str,
    /// The status sent back (0 when none was).
    pub status: u16,
    /// The response body sent back (or relayed).
    pub response: Vec<u8>,
    /// Request body size.
    pub request_bytes: usize,
    /// The request body.
    pub request: Vec<u8>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    upstream: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Start a proxy on 127.0.0.1 in front of `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let up = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop, up) = (state.clone(), stop.clone(), up.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, stop, up) = (state.clone(), stop.clone(), up.clone());
                    std::thread::spawn(move || {
                        let _ = handle(conn, &up, &state, &stop);
                    });
                }
            })
        };
        FaultProxy {
            port,
            upstream: up,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Add a rule: the `nth` (from 1) request whose method is `method` and whose path starts
    /// with `prefix` gets `action`; `nth` 0 means every such request. Earlier rules win when
    /// several fire on one request.
    pub fn rule(&self, method: &str, prefix: &str, nth: usize, action: Action) {
        self.state.lock().unwrap().rules.push(Rule {
            method: method.to_string(),
            prefix: prefix.to_string(),
            nth,
            action,
            seen: 0,
        });
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests so far with this method and path prefix.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(prefix))
            .count()
    }

    /// Forget the recorded requests (the rules' counters keep counting).
    pub fn clear_seen(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let _ = &self.upstream;
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A parsed response.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Header lines, in order.
type Headers = Vec<(String, String)>;

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<(String, Headers)>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "head cut short",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Read a body framed by Content-Length, chunked encoding, or (`to_eof`) the end of stream.
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if n == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 || l.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = header(headers, "Content-Length").and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Head of a response to the client: the given headers (framing and connection headers
/// replaced), a Content-Length and `Connection: close`.
fn response_head(status: u16, headers: &[(String, String)], len: usize) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        if [
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
        ]
        .iter()
        .any(|x| k.eq_ignore_ascii_case(x))
        {
            continue;
        }
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    h.into_bytes()
}

fn forward(up: &str, req: &Request) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(up)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "expect",
        ]
        .iter()
        .any(|x| k.eq_ignore_ascii_case(x))
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Host: {up}\r\n"));
    if !req.body.is_empty() || matches!(req.method.as_str(), "PUT" | "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&req.body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let (status_line, headers) = read_head(&mut r)?
        .ok_or_else(|| std::io::Error::other("upstream closed without a response"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad upstream status line"))?;
    let body = read_body(&mut r, &headers, true)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reset the connection (RST, not FIN): linger 0, then close.
fn reset(conn: TcpStream) {
    let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
    drop(conn);
}

fn handle(
    conn: TcpStream,
    up: &str,
    state: &Mutex<State>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let Some((line, headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let body = read_body(&mut r, &headers, false)?;
    let req = Request {
        method,
        path,
        headers,
        body,
    };

    // Pick the action and record the request.
    let (action, index) = {
        let mut st = state.lock().unwrap();
        let mut chosen = None;
        for rule in st.rules.iter_mut() {
            if rule.method == req.method && req.path.starts_with(&rule.prefix) {
                rule.seen += 1;
                if (rule.nth == 0 || rule.seen == rule.nth) && chosen.is_none() {
                    chosen = Some(rule.action.clone());
                }
            }
        }
        let action = chosen.unwrap_or(Action::Pass);
        st.seen.push(Seen {
            method: req.method.clone(),
            path: req.path.clone(),
            at: Instant::now(),
            action: action.name(),
            status: 0,
            response: Vec::new(),
            request_bytes: req.body.len(),
            request: req.body.clone(),
        });
        (action, st.seen.len() - 1)
    };
    let record = |status: u16, body: &[u8]| {
        let mut st = state.lock().unwrap();
        if let Some(s) = st.seen.get_mut(index) {
            s.status = status;
            s.response = body.to_vec();
        }
    };

    let mut out = conn;
    match action {
        Action::Respond {
            status,
            headers,
            body,
        } => {
            let mut h = headers.clone();
            h.push(("Content-Type".into(), "application/json".into()));
            out.write_all(&response_head(status, &h, body.len()))?;
            out.write_all(body.as_bytes())?;
            record(status, body.as_bytes());
        }
        Action::Stall(d) => {
            let end = Instant::now() + d;
            while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        Action::ForwardThenRespond { status, body } => {
            let _ = forward(up, &req)?;
            let h = vec![("Content-Type".to_string(), "application/json".to_string())];
            out.write_all(&response_head(status, &h, body.len()))?;
            out.write_all(body.as_bytes())?;
            record(status, body.as_bytes());
        }
        Action::ResetMidBody => {
            let resp = forward(up, &req)?;
            out.write_all(&response_head(resp.status, &resp.headers, resp.body.len()))?;
            out.write_all(&resp.body[..resp.body.len() / 2])?;
            out.flush()?;
            // Let the client read what was sent before the reset arrives.
            std::thread::sleep(Duration::from_millis(30));
            record(resp.status, &resp.body[..resp.body.len() / 2]);
            reset(out);
            return Ok(());
        }
        Action::Rewrite(f) => {
            let resp = forward(up, &req)?;
            let (status, body) = f(resp.status, &resp.body);
            let h = vec![("Content-Type".to_string(), "application/json".to_string())];
            out.write_all(&response_head(status, &h, body.len()))?;
            out.write_all(&body)?;
            record(status, &body);
        }
        Action::RespondBytes { status, body } => {
            let h = vec![("Content-Type".to_string(), "application/json".to_string())];
            out.write_all(&response_head(status, &h, body.len()))?;
            // The client may stop reading (a size limit) and close: that is not an error here.
            let _ = out.write_all(&body);
            record(status, &body[..body.len().min(4096)]);
        }
        Action::StallMidBody(d) => {
            let resp = forward(up, &req)?;
            out.write_all(&response_head(resp.status, &resp.headers, resp.body.len()))?;
            out.write_all(&resp.body[..resp.body.len() / 2])?;
            out.flush()?;
            record(resp.status, &resp.body[..resp.body.len() / 2]);
            let end = Instant::now() + d;
            while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        Action::Pass | Action::HookThenPass(_) => {
            if let Action::HookThenPass(h) = &action {
                h();
            }
            let resp = forward(up, &req)?;
            out.write_all(&response_head(resp.status, &resp.headers, resp.body.len()))?;
            out.write_all(&resp.body)?;
            record(resp.status, &resp.body);
        }
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    Ok(())
}
