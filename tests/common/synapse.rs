//! The test homeserver: where it is, fresh users on it, and raw client-server API calls made
//! by the tests themselves (to set up secret storage, upload raw bodies, read keys back).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The Synapse started by `scripts/test-homeserver.sh`.
#[derive(Debug, Clone)]
pub struct Hs {
    /// Base URL, without a trailing slash.
    pub base: String,
    /// `registration_shared_secret`.
    pub secret: String,
}

/// The homeserver from the environment, or `None` (after saying so) when there is none.
/// With `MXKEYS_TEST_DISALLOW_SKIP=1` a missing homeserver is a failure, not a skip.
pub fn homeserver() -> Option<Hs> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    match (
        get("MXKEYS_TEST_HOMESERVER"),
        get("MXKEYS_TEST_REGISTRATION_SECRET"),
    ) {
        (Some(base), Some(secret)) => Some(Hs {
            base: base.trim().trim_end_matches('/').to_string(),
            secret: secret.trim().to_string(),
        }),
        _ => {
            if std::env::var("MXKEYS_TEST_DISALLOW_SKIP").as_deref() == Ok("1") {
                panic!(
                    "MXKEYS_TEST_DISALLOW_SKIP=1 but MXKEYS_TEST_HOMESERVER / MXKEYS_TEST_REGISTRATION_SECRET are not set: \
                     the homeserver suite must not be skipped; run it as scripts/test-homeserver.sh run -- cargo test"
                );
            }
            println!(
                "skipping: no test homeserver (run scripts/test-homeserver.sh run -- cargo test)"
            );
            None
        }
    }
}

/// The homeserver, or return from the test (a skip) when there is none (see [`homeserver`]).
#[allow(unused_macros)]
macro_rules! require_hs {
    () => {
        match $crate::common::synapse::homeserver() {
            Some(hs) => hs,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require_hs;

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    /// `@name:localhost`.
    pub user_id: String,
    /// `name`.
    pub localpart: String,
    /// The password.
    pub password: String,
    /// The access token registration returned (device of registration).
    pub token: String,
    /// That device.
    pub device_id: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A user name no other test (or run on this server) uses.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id()).to_lowercase()
}

impl Hs {
    /// Register a fresh user through `scripts/register_user.py` (shared-secret admin API).
    pub fn register(&self, prefix: &str) -> User {
        let localpart = unique_name(prefix);
        let password = format!("pw-{localpart}-Z9!");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/register_user.py");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&localpart)
            .arg(&password)
            .env("MXKEYS_TEST_HOMESERVER", &self.base)
            .env("MXKEYS_TEST_REGISTRATION_SECRET", &self.secret)
            .output()
            .expect("running scripts/register_user.py");
        assert!(
            out.status.success(),
            "registering {localpart} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("register_user.py output");
        User {
            user_id: v["user_id"].as_str().unwrap().to_string(),
            localpart,
            password,
            token: v["access_token"].as_str().unwrap().to_string(),
            device_id: v["device_id"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Raw API access as `user` (registration token).
    pub fn api(&self, user: &User) -> Api {
        Api::new(&self.base, Some(&user.token))
    }
}

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    mxkeys::client::encode(s)
}

/// Raw client-server API calls.
pub struct Api {
    agent: ureq::Agent,
    /// Base URL.
    pub base: String,
    /// Access token.
    pub token: Option<String>,
}

impl Api {
    /// A client for `base`, with `token` when given.
    pub fn new(base: &str, token: Option<&str>) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Api {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    /// The full URL of a client-server API path (`room_keys/version` ...).
    pub fn url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3/{path}", self.base)
    }

    /// One request to a full URL; the status and the raw body.
    pub fn raw(&self, method: &str, url: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        macro_rules! auth {
            ($r:expr) => {{
                let r = $r;
                match &auth {
                    Some(a) => r.header("Authorization", a.as_str()),
                    None => r,
                }
            }};
        }
        let res = match method {
            "GET" => auth!(self.agent.get(url)).call(),
            "DELETE" => auth!(self.agent.delete(url)).call(),
            "PUT" => auth!(self.agent.put(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(b"{}")),
            "POST" => auth!(self.agent.post(url))
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(b"{}")),
            m => panic!("unsupported method {m}"),
        };
        let mut resp = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
        (status, bytes)
    }

    /// Upload media (`POST /_matrix/media/v3/upload`); its `mxc://` URI.
    pub fn upload(&self, bytes: &[u8]) -> String {
        let url = format!("{}/_matrix/media/v3/upload", self.base);
        let (status, body) = self.raw("POST", &url, Some(bytes));
        assert_eq!(status, 200, "upload: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["content_uri"].as_str().unwrap().to_string()
    }

    /// One JSON request to a client-server API path; the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let (status, resp) = self.raw(method, &self.url(path), bytes.as_deref());
        let v = if resp.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp).into_owned()))
        };
        (status, v)
    }

    /// Like [`Api::call`], expecting 200.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (s, v) = self.call(method, path, body);
        assert_eq!(s, 200, "{method} {path} -> {s} {v}");
        v
    }

    // ---- backup ---------------------------------------------------------------------

    /// `POST /room_keys/version` with a v1 `auth_data` holding `public_key`; the new version.
    pub fn create_version(&self, public_key: &str) -> String {
        self.create_version_with(json!({ "public_key": public_key }))
    }

    /// `POST /room_keys/version` with this `auth_data`.
    pub fn create_version_with(&self, auth_data: Value) -> String {
        let v = self.ok(
            "POST",
            "room_keys/version",
            Some(&json!({
                "algorithm": mxkeys::backup::ALGORITHM,
                "auth_data": auth_data,
            })),
        );
        v["version"].as_str().unwrap().to_string()
    }

    /// `GET /room_keys/version[/v]`: status and body.
    pub fn version(&self, version: Option<&str>) -> (u16, Value) {
        match version {
            None => self.call("GET", "room_keys/version", None),
            Some(v) => self.call("GET", &format!("room_keys/version/{}", enc(v)), None),
        }
    }

    /// The key count of a version.
    pub fn count(&self, version: &str) -> u64 {
        let (s, v) = self.version(Some(version));
        assert_eq!(s, 200, "{v}");
        v["count"].as_u64().unwrap()
    }

    /// `GET /room_keys/keys?version=` (the whole backup, raw).
    pub fn keys_raw(&self, version: &str) -> Vec<u8> {
        let (s, b) = self.raw(
            "GET",
            &format!("{}?version={}", self.url("room_keys/keys"), enc(version)),
            None,
        );
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        b
    }

    /// `GET /room_keys/keys?version=` parsed.
    pub fn keys(&self, version: &str) -> Value {
        serde_json::from_slice(&self.keys_raw(version)).unwrap()
    }

    /// Every `(room_id, session_id) -> KeyBackupData` of a version.
    pub fn key_map(&self, version: &str) -> std::collections::BTreeMap<(String, String), Value> {
        let v = self.keys(version);
        let mut m = std::collections::BTreeMap::new();
        for (room, r) in v["rooms"].as_object().unwrap() {
            for (sid, d) in r["sessions"].as_object().unwrap() {
                m.insert((room.clone(), sid.clone()), d.clone());
            }
        }
        m
    }

    /// One stored key: `GET /room_keys/keys/{room}/{session}?version=`.
    pub fn key(&self, version: &str, room: &str, session: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!(
                "room_keys/keys/{}/{}?version={}",
                enc(room),
                enc(session),
                enc(version)
            ),
            None,
        )
    }

    /// `PUT /room_keys/keys?version=` with a raw body.
    pub fn put_keys(&self, version: &str, body: &Value) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("room_keys/keys?version={}", enc(version)),
            Some(body),
        )
    }

    /// `PUT` one `KeyBackupData` for `(room, session)`; expects 200.
    pub fn put_key(&self, version: &str, room: &str, session: &str, data: &Value) {
        let (s, v) = self.put_keys(
            version,
            &json!({"rooms": {room: {"sessions": {session: data}}}}),
        );
        assert_eq!(s, 200, "{v}");
    }

    // ---- account data ---------------------------------------------------------------

    /// `PUT /user/{user}/account_data/{type}`.
    pub fn put_account_data(&self, user_id: &str, ty: &str, content: &Value) {
        self.ok(
            "PUT",
            &format!("user/{}/account_data/{}", enc(user_id), enc(ty)),
            Some(content),
        );
    }

    /// `GET /user/{user}/account_data/{type}` (`None` on 404).
    pub fn account_data(&self, user_id: &str, ty: &str) -> Option<Value> {
        let (s, v) = self.call(
            "GET",
            &format!("user/{}/account_data/{}", enc(user_id), enc(ty)),
            None,
        );
        match s {
            200 => Some(v),
            404 => None,
            _ => panic!("account data {ty}: {s} {v}"),
        }
    }

    /// `GET /account/whoami` status.
    pub fn whoami_status(&self) -> u16 {
        self.call("GET", "account/whoami", None).0
    }

    /// Publish a cross-signing master key (`keys/device_signing/upload`), answering Synapse's
    /// user-interactive auth with the password when it asks.
    pub fn upload_master_key(&self, user: &User, master_public_b64: &str) {
        let mut body = json!({
            "master_key": {
                "user_id": user.user_id,
                "usage": ["master"],
                "keys": { format!("ed25519:{master_public_b64}"): master_public_b64 },
            }
        });
        let (s, v) = self.call("POST", "keys/device_signing/upload", Some(&body));
        if s == 200 {
            return;
        }
        assert_eq!(s, 401, "device_signing/upload: {s} {v}");
        let session = v["session"].as_str().expect("UIA session").to_string();
        body["auth"] = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
            "session": session,
        });
        let (s, v) = self.call("POST", "keys/device_signing/upload", Some(&body));
        assert_eq!(s, 200, "device_signing/upload with auth: {v}");
    }
}
