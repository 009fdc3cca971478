//! The user's "old phone": a second, real Matrix device of a test user, driven by the test
//! itself. It is matrix-sdk-crypto's own `OlmMachine` (in-memory store) behind a small blocking
//! client: every request is the SDK's (or ruma's) own request type, serialised by ruma
//! (`OutgoingRequest::try_into_http_request`) and sent with ureq; every response is parsed by
//! ruma and handed back to the machine. So the phone's wire format is the SDK's, as in Element
//! X, not JSON written by the test.
//!
//! The phone can: log in as a new device and publish its keys; sync (to-device events and
//! device lists only); bootstrap cross-signing (user-interactive auth by password); make a
//! server-side key backup and fill it; set up secret storage (cross-signing keys, backup key,
//! dehydration key) and hand back the Security Key; make encrypted rooms and send Megolm
//! messages into them (shared with every device, or with none); cross-sign or locally trust
//! its user's other devices; create a dehydrated device; and play either side of an SAS
//! verification, step by step, so that a test can interleave it with mxkeys on a terminal.
//! With the crate's `automatic-room-key-forwarding` feature it answers room-key requests of
//! its user's verified devices, and it answers their secret requests (cross-signing keys,
//! backup key), as Element does.
//!
//! Each SDK call runs to completion on the phone's own current-thread Tokio runtime. A phone
//! is `Send`: a test that needs two phones to talk at the same time (an SAS between them) runs
//! each on its own thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use matrix_sdk_crypto::backups::MegolmV1BackupKey;
use matrix_sdk_crypto::secret_storage::SecretStorageKey;
use matrix_sdk_crypto::store::types::{BackupDecryptionKey, DehydratedDeviceKey};
use matrix_sdk_crypto::types::requests::{
    AnyIncomingResponse, AnyOutgoingRequest, OutgoingVerificationRequest, ToDeviceRequest,
};
use matrix_sdk_crypto::{
    CollectStrategy, DecryptionSettings, Device, EncryptionSettings, EncryptionSyncChanges,
    LocalTrust, OlmMachine, Sas, TrustRequirement, Verification, VerificationRequest,
};
use ruma::api::auth_scheme::{
    AccessToken, AppserviceTokenOptional, AuthScheme, NoAuthentication, SendAccessToken,
};
use ruma::api::client::backup::{add_backup_keys, create_backup_version};
use ruma::api::client::config::set_global_account_data;
use ruma::api::client::dehydrated_device::{
    get_dehydrated_device, get_events, put_dehydrated_device,
};
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::keys::upload_signing_keys;
use ruma::api::client::keys::{claim_keys, get_keys, upload_keys, upload_signatures};
use ruma::api::client::membership::get_member_events;
use ruma::api::client::message::send_message_event;
use ruma::api::client::room::{Visibility, create_room};
use ruma::api::client::session::{login, logout};
use ruma::api::client::sync::sync_events;
use ruma::api::client::to_device::send_event_to_device;
use ruma::api::client::uiaa::{self, AuthData, MatrixUserIdentifier, UserIdentifier};
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{IncomingResponse, OutgoingRequest, SupportedVersions};
use ruma::events::key::verification::VerificationMethod;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::events::secret::request::SecretName;
use ruma::events::{AnyMessageLikeEventContent, GlobalAccountDataEventType, MessageLikeEventType};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, TransactionId, UserId};
use serde_json::{Value, json};
use ureq::http;

use super::synapse::{Hs, User};

/// The secret-storage name of the dehydrated device's pickle key (MSC3814).
pub const DEHYDRATION_SECRET: &str = "org.matrix.msc3814";

/// How many rounds of outgoing requests [`Phone::send_outgoing`] sends before it gives up (the
/// machine keeps asking for the same request: a bug, not a slow server).
const MAX_ROUNDS: usize = 50;

/// What each endpoint's path builder needs: the server's versions, or nothing.
pub trait PathInput: PathBuilder {
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Cow<'_, SupportedVersions> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) {}
}

/// What each endpoint's authentication scheme needs: the access token, or nothing.
pub trait AuthInput: AuthScheme {
    fn input(token: &str) -> Self::Input<'_>;
}

impl AuthInput for AccessToken {
    fn input(token: &str) -> SendAccessToken<'_> {
        SendAccessToken::Always(token)
    }
}

impl AuthInput for AppserviceTokenOptional {
    fn input(_: &str) -> SendAccessToken<'_> {
        SendAccessToken::None
    }
}

impl AuthInput for NoAuthentication {
    fn input(_: &str) {}
}

/// A failed request: the HTTP status and the body (JSON, or a string).
#[derive(Debug)]
pub struct HttpFailure {
    pub status: u16,
    pub body: Value,
}

/// The HTTP side: ureq, the server's base URL and versions.
struct Transport {
    agent: ureq::Agent,
    base: String,
    versions: SupportedVersions,
}

impl Transport {
    fn new(base: &str) -> Transport {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = base.trim_end_matches('/').to_string();
        let versions = supported_versions(&agent, &base);
        Transport {
            agent,
            base,
            versions,
        }
    }

    /// Send one ruma request with `token`; its parsed response, or the status and body of a
    /// failure.
    fn send<R>(&self, token: &str, req: R) -> Result<R::IncomingResponse, HttpFailure>
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
        R::Authentication: AuthInput,
    {
        let name = std::any::type_name::<R>();
        let http_req: http::Request<Vec<u8>> = req
            .try_into_http_request(
                &self.base,
                <R::Authentication as AuthInput>::input(token),
                <R::PathBuilder as PathInput>::input(&self.versions),
            )
            .unwrap_or_else(|e| panic!("{name}: building the request: {e}"));
        let (method, uri) = (http_req.method().clone(), http_req.uri().clone());
        let resp = self
            .agent
            .run(http_req)
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
        let (parts, mut body) = resp.into_parts();
        let bytes = body
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{method} {uri}: reading the body: {e}"));
        if !parts.status.is_success() {
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            return Err(HttpFailure {
                status: parts.status.as_u16(),
                body,
            });
        }
        let parsed =
            R::IncomingResponse::try_from_http_response(http::Response::from_parts(parts, bytes))
                .unwrap_or_else(|e| panic!("{method} {uri}: parsing the response: {e}"));
        Ok(parsed)
    }
}

/// The user's other device, played by the test: see the module documentation.
pub struct Phone {
    /// `@name:localhost`.
    pub user_id: String,
    /// The device this phone's login made.
    pub device_id: String,
    /// Its access token.
    pub token: String,
    /// The SDK's state machine (in-memory store).
    pub machine: OlmMachine,
    rt: tokio::runtime::Runtime,
    http: Transport,
    since: Option<String>,
    localpart: String,
    password: String,
    /// The key of the backup [`Phone::create_backup`] made.
    backup_key: Option<BackupDecryptionKey>,
    /// The pickle key of dehydrated devices (kept in secret storage too).
    dehydration_key: Option<DehydratedDeviceKey>,
    /// The SAS under way, between the step functions.
    sas: Option<Sas>,
}

impl Phone {
    /// Log in with the user's password as a NEW device (`POST /login`), create the
    /// `OlmMachine`, upload its device keys and one-time keys, query the user's own devices,
    /// and take an initial sync (so that later syncs see only what is new).
    pub fn login(hs: &Hs, user: &User) -> Phone {
        let http = Transport::new(&hs.base);
        let mut req =
            login::v3::Request::new(login::v3::LoginInfo::Password(login::v3::Password::new(
                UserIdentifier::Matrix(MatrixUserIdentifier::new(user.localpart.clone())),
                user.password.clone(),
            )));
        req.initial_device_display_name = Some("test phone".to_string());
        let resp = http
            .send("", req)
            .unwrap_or_else(|f| panic!("login: {} {}", f.status, f.body));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let machine = rt.block_on(OlmMachine::new(&resp.user_id, &resp.device_id));
        machine.set_room_key_forwarding_enabled(true);
        rt.block_on(machine.update_tracked_users([resp.user_id.as_ref()]))
            .unwrap();
        let mut phone = Phone {
            user_id: resp.user_id.to_string(),
            device_id: resp.device_id.to_string(),
            token: resp.access_token,
            machine,
            rt,
            http,
            since: None,
            localpart: user.localpart.clone(),
            password: user.password.clone(),
            backup_key: None,
            dehydration_key: None,
            sas: None,
        };
        phone.send_outgoing();
        phone.sync_once(0);
        phone
    }

    /// Run one SDK future to completion on the phone's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The phone's user, parsed.
    pub fn own_user(&self) -> OwnedUserId {
        UserId::parse(self.user_id.as_str()).unwrap()
    }

    // ---- HTTP -----------------------------------------------------------------------

    /// Send one ruma request; its parsed response, or the status and body of a failure.
    pub fn send<R>(&self, req: R) -> Result<R::IncomingResponse, HttpFailure>
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
        R::Authentication: AuthInput,
    {
        self.http.send(&self.token, req)
    }

    /// Like [`Phone::send`], expecting success.
    pub fn ok<R>(&self, req: R) -> R::IncomingResponse
    where
        R: OutgoingRequest,
        R::PathBuilder: PathInput,
        R::Authentication: AuthInput,
    {
        let name = std::any::type_name::<R>();
        self.send(req)
            .unwrap_or_else(|f| panic!("{name}: {} {}", f.status, f.body))
    }

    /// `GET` or `POST`/`PUT` a raw client-server path (`/_matrix/...`) with the phone's token;
    /// status and JSON body. For the unstable endpoints ruma has no response type for.
    pub fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.http.base);
        let auth = format!("Bearer {}", self.token);
        let res = match method {
            "GET" => self
                .http
                .agent
                .get(&url)
                .header("Authorization", &auth)
                .call(),
            "DELETE" => self
                .http
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            "PUT" => self
                .http
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(body.unwrap_or(&json!({}))).unwrap()),
            "POST" => self
                .http
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(body.unwrap_or(&json!({}))).unwrap()),
            m => panic!("unsupported method {m}"),
        };
        let mut resp = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.body_mut().read_to_vec().unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    // ---- the machine's requests -----------------------------------------------------

    /// Send one of the machine's outgoing requests and hand the response back to it.
    fn dispatch(&self, id: &TransactionId, req: &AnyOutgoingRequest) {
        match req {
            AnyOutgoingRequest::KeysUpload(r) => {
                let resp: upload_keys::v3::Response = self.ok(r.clone());
                self.block_on(self.machine.mark_request_as_sent(id, &resp))
                    .unwrap();
            }
            AnyOutgoingRequest::KeysQuery(r) => {
                let mut q = get_keys::v3::Request::new();
                q.device_keys = r.device_keys.clone();
                q.timeout = r.timeout;
                let resp = self.ok(q);
                self.block_on(self.machine.mark_request_as_sent(id, &resp))
                    .unwrap();
            }
            AnyOutgoingRequest::KeysClaim(r) => {
                let resp: claim_keys::v3::Response = self.ok(r.clone());
                self.block_on(self.machine.mark_request_as_sent(id, &resp))
                    .unwrap();
            }
            AnyOutgoingRequest::ToDeviceRequest(r) => self.send_to_device(id, r),
            AnyOutgoingRequest::SignatureUpload(r) => {
                let resp: upload_signatures::v3::Response = self.ok(r.clone());
                assert!(
                    resp.failures.is_empty(),
                    "signature upload failures: {:?}",
                    resp.failures
                );
                self.block_on(self.machine.mark_request_as_sent(id, &resp))
                    .unwrap();
            }
            AnyOutgoingRequest::RoomMessage(r) => {
                let content: &AnyMessageLikeEventContent = &r.content;
                let req = send_message_event::v3::Request::new(
                    r.room_id.clone(),
                    r.txn_id.clone(),
                    content,
                )
                .unwrap();
                let resp = self.ok(req);
                self.block_on(self.machine.mark_request_as_sent(id, &resp))
                    .unwrap();
            }
        }
    }

    /// `PUT /sendToDevice` of one request; marks it sent.
    fn send_to_device(&self, id: &TransactionId, r: &ToDeviceRequest) {
        let req = send_event_to_device::v3::Request::new_raw(
            r.event_type.clone(),
            r.txn_id.clone(),
            r.messages.clone(),
        );
        let resp = self.ok(req);
        self.block_on(self.machine.mark_request_as_sent(id, &resp))
            .unwrap();
    }

    /// Send a verification message (to-device or in-room).
    fn send_verification(&self, r: OutgoingVerificationRequest) {
        let out: matrix_sdk_crypto::types::requests::OutgoingRequest = r.into();
        self.dispatch(out.request_id(), out.request());
    }

    /// Send every pending outgoing request of the machine (`outgoing_requests` → HTTP →
    /// `mark_request_as_sent`), and the keys claim for missing Olm sessions (with the
    /// devices that asked for keys), until none is left.
    pub fn send_outgoing(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let reqs = self.block_on(self.machine.outgoing_requests()).unwrap();
            let claim = self
                .block_on(self.machine.get_missing_sessions(std::iter::empty()))
                .unwrap();
            if reqs.is_empty() && claim.is_none() {
                return;
            }
            if let Some((id, r)) = claim {
                self.dispatch(&id, &AnyOutgoingRequest::KeysClaim(r));
            }
            for r in reqs {
                self.dispatch(r.request_id(), r.request());
            }
        }
        panic!("the phone's machine still has requests after {MAX_ROUNDS} rounds");
    }

    /// Claim one-time keys for the devices of `users` the phone has no Olm session with.
    fn claim_missing_sessions(&mut self, users: &[OwnedUserId]) {
        if let Some((id, r)) = self
            .block_on(
                self.machine
                    .get_missing_sessions(users.iter().map(|u| u.as_ref())),
            )
            .unwrap()
        {
            self.dispatch(&id, &AnyOutgoingRequest::KeysClaim(r));
        }
    }

    /// An out-of-band `/keys/query` of `users` (up-to-date devices and identities).
    fn query_keys(&mut self, users: &[OwnedUserId]) {
        let (id, r) = self
            .machine
            .query_keys_for_users(users.iter().map(|u| u.as_ref()));
        self.dispatch(&id, &AnyOutgoingRequest::KeysQuery(r));
    }

    // ---- sync -----------------------------------------------------------------------

    /// One `/sync` (long-polling up to `timeout_ms`, rooms, presence and account data
    /// filtered out) → `receive_sync_changes` (to-device events, device lists, one-time key
    /// counts, unused fallback keys) → [`Phone::send_outgoing`]. Returns the types of the
    /// to-device events processed (decrypted ones by their decrypted type).
    pub fn sync_once(&mut self, timeout_ms: u64) -> Vec<String> {
        let mut req = sync_events::v3::Request::new();
        req.filter = Some(sync_events::v3::Filter::FilterDefinition(
            FilterDefinition::ignore_all(),
        ));
        req.since = self.since.clone();
        req.timeout = Some(Duration::from_millis(timeout_ms));
        let resp = self.ok(req);
        let changes = EncryptionSyncChanges {
            to_device_events: resp.to_device.events,
            changed_devices: &resp.device_lists,
            one_time_keys_counts: &resp.device_one_time_keys_count,
            unused_fallback_keys: resp.device_unused_fallback_key_types.as_deref(),
            next_batch_token: Some(resp.next_batch.clone()),
        };
        let settings = DecryptionSettings {
            sender_device_trust_requirement: TrustRequirement::Untrusted,
        };
        let (events, _room_keys) = self
            .block_on(self.machine.receive_sync_changes(changes, &settings))
            .unwrap();
        self.since = Some(resp.next_batch);
        self.send_outgoing();
        events
            .iter()
            .filter_map(|e| e.as_raw().get_field::<String>("type").ok().flatten())
            .collect()
    }

    /// Sync repeatedly (short long-polls) until `pred(self)` holds or `secs` have passed;
    /// whether it held. A bounded wait for the tests, not a timing.
    pub fn sync_until(&mut self, secs: u64, mut pred: impl FnMut(&mut Phone) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.sync_once(500);
        }
    }

    // ---- cross-signing --------------------------------------------------------------

    /// Bootstrap cross-signing: upload the device keys if needed, the three cross-signing keys
    /// (with user-interactive auth by password when the server asks for it), and the
    /// self-signature of this device.
    pub fn bootstrap_cross_signing(&mut self) {
        let reqs = self
            .block_on(self.machine.bootstrap_cross_signing(false))
            .unwrap();
        if let Some(r) = &reqs.upload_keys_req {
            self.dispatch(r.request_id(), r.request());
        }
        let keys = &reqs.upload_signing_keys_req;
        let build = |auth: Option<AuthData>| {
            let mut r = upload_signing_keys::v3::Request::new();
            r.master_key = keys.master_key.as_ref().map(|k| k.to_raw());
            r.self_signing_key = keys.self_signing_key.as_ref().map(|k| k.to_raw());
            r.user_signing_key = keys.user_signing_key.as_ref().map(|k| k.to_raw());
            r.auth = auth;
            r
        };
        let resp = match self.send(build(None)) {
            Ok(resp) => resp,
            Err(f) => {
                assert_eq!(f.status, 401, "device_signing/upload: {}", f.body);
                let session = f.body["session"]
                    .as_str()
                    .expect("a UIA session")
                    .to_string();
                let mut pw = uiaa::Password::new(
                    UserIdentifier::Matrix(MatrixUserIdentifier::new(self.localpart.clone())),
                    self.password.clone(),
                );
                pw.session = Some(session);
                self.ok(build(Some(AuthData::Password(pw))))
            }
        };
        self.block_on(self.machine.mark_request_as_sent(
            &TransactionId::new(),
            AnyIncomingResponse::SigningKeysUpload(&resp),
        ))
        .unwrap();
        let resp = self.ok(reqs.upload_signatures_req.clone());
        assert!(resp.failures.is_empty(), "{:?}", resp.failures);
        self.block_on(
            self.machine
                .mark_request_as_sent(&TransactionId::new(), &resp),
        )
        .unwrap();
        self.send_outgoing();
    }

    /// The phone's view of another device of its user (after a `/keys/query` of the user if
    /// the phone does not know it yet).
    fn own_device(&mut self, device_id: &str) -> Device {
        let own = self.own_user();
        let dev: OwnedDeviceId = device_id.into();
        let get = |p: &Phone| p.block_on(p.machine.get_device(&own, &dev, None)).unwrap();
        if let Some(d) = get(self) {
            return d;
        }
        self.query_keys(std::slice::from_ref(&own));
        get(self).unwrap_or_else(|| panic!("the phone does not know device {device_id}"))
    }

    /// Cross-sign (verify) another device of this user with the phone's self-signing key
    /// (`Device::verify` → signature upload). Needs [`Phone::bootstrap_cross_signing`] first.
    pub fn verify_own_device(&mut self, device_id: &str) {
        let own = self.own_user();
        self.query_keys(std::slice::from_ref(&own));
        let d = self.own_device(device_id);
        let req = self.block_on(d.verify()).unwrap();
        let resp = self.ok(req);
        assert!(resp.failures.is_empty(), "{:?}", resp.failures);
        self.block_on(
            self.machine
                .mark_request_as_sent(&TransactionId::new(), &resp),
        )
        .unwrap();
        self.query_keys(std::slice::from_ref(&own));
    }

    /// Trust another device of this user locally (no cross-signing signature).
    pub fn trust_locally(&mut self, device_id: &str) {
        let d = self.own_device(device_id);
        self.block_on(d.set_local_trust(LocalTrust::Verified))
            .unwrap();
    }

    /// Is `device_id` (own user) verified in the phone's eyes (cross-signed by a trusted
    /// identity, or trusted locally)? This is what decides whether the phone answers its
    /// key and secret requests. Refreshes the user's keys first.
    pub fn sees_verified(&mut self, device_id: &str) -> bool {
        let own = self.own_user();
        self.query_keys(std::slice::from_ref(&own));
        self.own_device(device_id).is_verified()
    }

    /// Is `device_id` (own user) signed by the user's self-signing key, as the phone sees the
    /// published keys (whether or not the phone trusts that identity)?
    pub fn sees_cross_signed(&mut self, device_id: &str) -> bool {
        let own = self.own_user();
        self.query_keys(std::slice::from_ref(&own));
        self.own_device(device_id).is_cross_signed_by_owner()
    }

    // ---- backup and secret storage --------------------------------------------------

    /// Create a server-side key backup (`m.megolm_backup.v1.curve25519-aes-sha2`) with a fresh
    /// key: `auth_data` signed as the SDK signs it (device key, and master key when there is
    /// one), `POST /room_keys/version`, then the machine backs up into it and keeps the key
    /// (so that it can answer a secret request for it). The new version.
    pub fn create_backup(&mut self) -> String {
        let key = BackupDecryptionKey::new();
        let mut info = key.to_backup_info();
        self.block_on(self.machine.backup_machine().sign_backup(&mut info))
            .unwrap();
        let algorithm = Raw::new(&info).unwrap().cast();
        let resp = self.ok(create_backup_version::v3::Request::new(algorithm));
        let public: MegolmV1BackupKey = key.megolm_v1_public_key();
        public.set_version(resp.version.clone());
        self.block_on(self.machine.backup_machine().enable_backup_v1(public))
            .unwrap();
        self.block_on(
            self.machine
                .backup_machine()
                .save_decryption_key(Some(key.clone()), Some(resp.version.clone())),
        )
        .unwrap();
        self.backup_key = Some(key);
        resp.version
    }

    /// The backup key, as the recovery-key text a person would type.
    pub fn backup_recovery_key(&self) -> Option<String> {
        self.backup_key.as_ref().map(|k| k.to_base58())
    }

    /// The backup key, unpadded base64 (as secret storage and `m.secret.send` carry it).
    pub fn backup_key_base64(&self) -> Option<String> {
        self.backup_key.as_ref().map(|k| k.to_base64())
    }

    /// Upload every room key the machine has not backed up yet (`backup()` → `PUT
    /// /room_keys/keys?version=` → `mark_request_as_sent`) until none is left; how many.
    pub fn backup_all(&mut self) -> usize {
        let mut n = 0;
        for _ in 0..MAX_ROUNDS {
            let Some((id, req)) = self
                .block_on(self.machine.backup_machine().backup())
                .unwrap()
            else {
                return n;
            };
            n += req.rooms.values().map(|r| r.sessions.len()).sum::<usize>();
            let resp = self.ok(add_backup_keys::v3::Request::new(req.version, req.rooms));
            self.block_on(self.machine.mark_request_as_sent(&id, &resp))
                .unwrap();
        }
        panic!("the backup still has keys to send after {MAX_ROUNDS} rounds");
    }

    /// `PUT /user/{me}/account_data/{type}` of a JSON content.
    fn put_account_data(&self, ty: &str, content: &Value) {
        let req = set_global_account_data::v3::Request::new_raw(
            self.own_user(),
            GlobalAccountDataEventType::from(ty),
            Raw::from_json(serde_json::value::to_raw_value(content).unwrap()),
        );
        self.ok(req);
    }

    /// Set up secret storage (`m.secret_storage.v1.aes-hmac-sha2`) with a new key as the
    /// default key, and store in it the cross-signing private keys (when the phone has them),
    /// the backup key (when [`Phone::create_backup`] made one) and a dehydration key (32
    /// random bytes, unpadded base64; kept for [`Phone::create_dehydrated_device`]). The
    /// Security Key, in the base58 form a person types.
    pub fn setup_secret_storage(&mut self) -> String {
        let ssk = SecretStorageKey::new();
        let key_id = ssk.key_id().to_string();
        self.put_account_data(
            &format!("m.secret_storage.key.{key_id}"),
            &serde_json::to_value(ssk.event_content()).unwrap(),
        );
        self.put_account_data("m.secret_storage.default_key", &json!({ "key": key_id }));
        let mut secrets: Vec<(SecretName, String)> = Vec::new();
        if let Some(x) = self
            .block_on(self.machine.export_cross_signing_keys())
            .unwrap()
        {
            for (name, seed) in [
                (SecretName::CrossSigningMasterKey, x.master_key.clone()),
                (
                    SecretName::CrossSigningSelfSigningKey,
                    x.self_signing_key.clone(),
                ),
                (
                    SecretName::CrossSigningUserSigningKey,
                    x.user_signing_key.clone(),
                ),
            ] {
                if let Some(seed) = seed {
                    secrets.push((name, seed));
                }
            }
        }
        if let Some(k) = &self.backup_key {
            secrets.push((SecretName::RecoveryKey, k.to_base64()));
        }
        let dk = self
            .dehydration_key
            .get_or_insert_with(DehydratedDeviceKey::new)
            .to_base64();
        secrets.push((SecretName::from(DEHYDRATION_SECRET), dk));
        for (name, secret) in secrets {
            let data = ssk.encrypt(secret.into_bytes(), &name);
            self.put_account_data(
                name.as_str(),
                &json!({ "encrypted": { &key_id: serde_json::to_value(&data).unwrap() } }),
            );
        }
        let dk = self.dehydration_key.as_ref().unwrap();
        self.block_on(
            self.machine
                .dehydrated_devices()
                .save_dehydrated_device_pickle_key(dk),
        )
        .unwrap();
        ssk.to_base58()
    }

    /// Create a dehydrated device (MSC3814) pickled with the dehydration key of
    /// [`Phone::setup_secret_storage`] (a fresh one when there is none), `PUT
    /// /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`. Its device id.
    pub fn create_dehydrated_device(&mut self) -> String {
        let key = self
            .dehydration_key
            .get_or_insert_with(DehydratedDeviceKey::new)
            .clone();
        let device = self
            .block_on(self.machine.dehydrated_devices().create())
            .unwrap();
        let req = self
            .block_on(device.keys_for_upload("test phone (dehydrated)".to_string(), &key))
            .unwrap();
        let resp: put_dehydrated_device::unstable::Response = self.ok(req);
        resp.device_id.to_string()
    }

    /// What a device that rehydrates finds: the server's dehydrated device, unpickled with
    /// the phone's dehydration key in a machine of its own (not the phone's: the phone's store
    /// stays as it was), fed the to-device events the server kept for it (every page). The
    /// room keys it got, as (room id, session id).
    pub fn dehydrated_room_keys(&self) -> Vec<(String, String)> {
        let key = self
            .dehydration_key
            .clone()
            .expect("no dehydration key: setup_secret_storage or create_dehydrated_device first");
        let dev = self.ok(get_dehydrated_device::unstable::Request::new());
        let own = self.own_user();
        let rehydrator: OwnedDeviceId = "REHYDRATOR".into();
        let machine = self.block_on(OlmMachine::new(&own, &rehydrator));
        let rehydrated = self
            .block_on(
                machine
                    .dehydrated_devices()
                    .rehydrate(&key, &dev.device_id, dev.device_data),
            )
            .unwrap();
        let settings = DecryptionSettings {
            sender_device_trust_requirement: TrustRequirement::Untrusted,
        };
        let mut keys = Vec::new();
        let mut next_batch = None;
        for _ in 0..MAX_ROUNDS {
            let mut req = get_events::unstable::Request::new(dev.device_id.clone());
            req.next_batch = next_batch.take();
            let page = self.ok(req);
            if page.events.is_empty() {
                return keys;
            }
            for k in self
                .block_on(rehydrated.receive_events(page.events, &settings))
                .unwrap()
            {
                keys.push((k.room_id.to_string(), k.session_id.clone()));
            }
            match page.next_batch {
                Some(b) => next_batch = Some(b),
                None => return keys,
            }
        }
        panic!("the dehydrated device's events did not end after {MAX_ROUNDS} pages");
    }

    // ---- rooms and messages ---------------------------------------------------------

    /// Create an encrypted room (`m.megolm.v1.aes-sha2`, private chat: history visible to
    /// members from before they joined), inviting `invite`. Its id.
    pub fn create_encrypted_room(&mut self, invite: &[&str]) -> String {
        let mut req = create_room::v3::Request::new();
        req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
        req.visibility = Visibility::Private;
        req.invite = invite.iter().map(|u| UserId::parse(*u).unwrap()).collect();
        req.initial_state = vec![Raw::from_json(
            serde_json::value::to_raw_value(&json!({
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }))
            .unwrap(),
        )];
        self.ok(req).room_id.to_string()
    }

    /// The joined and invited members of `room`.
    fn room_members(&self, room: &RoomId) -> Vec<OwnedUserId> {
        let resp = self.ok(get_member_events::v3::Request::new(room.to_owned()));
        let mut users = Vec::new();
        for ev in resp.chunk {
            let v: Value = ev.deserialize_as_unchecked().unwrap();
            if matches!(v["content"]["membership"].as_str(), Some("join" | "invite"))
                && let Some(u) = v["state_key"].as_str()
            {
                users.push(UserId::parse(u).unwrap());
            }
        }
        users
    }

    /// The Megolm encryption settings the phone uses: every device of every member, verified
    /// or not (as Element does by default).
    fn settings() -> EncryptionSettings {
        EncryptionSettings {
            sharing_strategy: CollectStrategy::AllDevices,
            ..Default::default()
        }
    }

    /// Encrypt `content` with the room's current outbound session and send it; the event id
    /// and the session id.
    fn encrypt_and_send(&mut self, room: &RoomId, body: &str) -> (String, String) {
        let enc = self
            .block_on(
                self.machine
                    .encrypt_room_event(room, RoomMessageEventContent::text_plain(body)),
            )
            .unwrap();
        let session_id: String = enc
            .content
            .get_field("session_id")
            .unwrap()
            .expect("a Megolm event has a session_id");
        let req = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            TransactionId::new(),
            MessageLikeEventType::RoomEncrypted,
            enc.content.cast_unchecked(),
        );
        let resp = self.ok(req);
        (resp.event_id.to_string(), session_id)
    }

    /// Encrypt and send an `m.room.message` text `body` into `room`: track the room's members,
    /// query their keys, claim Olm sessions where missing, share the room key with every
    /// device of every member (the user's other devices included, verified or not), encrypt,
    /// send. The event id and the Megolm session id.
    pub fn send_message(&mut self, room: &str, body: &str) -> (String, String) {
        let room: OwnedRoomId = RoomId::parse(room).unwrap();
        let members = self.room_members(&room);
        self.block_on(
            self.machine
                .update_tracked_users(members.iter().map(|u| u.as_ref())),
        )
        .unwrap();
        self.send_outgoing();
        self.query_keys(&members);
        self.claim_missing_sessions(&members);
        let reqs = self
            .block_on(self.machine.share_room_key(
                &room,
                members.iter().map(|u| u.as_ref()),
                Self::settings(),
            ))
            .unwrap();
        for r in reqs {
            self.send_to_device(&r.txn_id, &r);
        }
        self.encrypt_and_send(&room, body)
    }

    /// Like [`Phone::send_message`], but with a new session that no other device gets: the
    /// room's outbound session is discarded, a new one is "shared" with nobody, used for this
    /// one event, and discarded again (the next [`Phone::send_message`] starts a fresh one).
    /// Only the phone (and its backup, after [`Phone::backup_all`]) holds the key.
    pub fn send_unshared_message(&mut self, room: &str, body: &str) -> (String, String) {
        let room: OwnedRoomId = RoomId::parse(room).unwrap();
        self.block_on(self.machine.discard_room_key(&room)).unwrap();
        let reqs = self
            .block_on(
                self.machine
                    .share_room_key(&room, std::iter::empty(), Self::settings()),
            )
            .unwrap();
        assert!(reqs.is_empty(), "an unshared session went to {reqs:?}");
        let out = self.encrypt_and_send(&room, body);
        self.block_on(self.machine.discard_room_key(&room)).unwrap();
        out
    }

    /// Does the phone hold the inbound session `session_id` of `room`?
    pub fn has_session(&self, room: &str, session_id: &str) -> bool {
        let room = RoomId::parse(room).unwrap();
        self.block_on(
            self.machine
                .store()
                .get_inbound_group_session(&room, session_id),
        )
        .unwrap()
        .is_some()
    }

    /// Decrypt a room event (as `/messages` gives it); the plaintext event's JSON, or `None`
    /// when the phone cannot.
    pub fn decrypt(&self, room: &str, event: &Value) -> Option<Value> {
        let room = RoomId::parse(room).unwrap();
        let raw = Raw::from_json(serde_json::value::to_raw_value(event).unwrap());
        let settings = DecryptionSettings {
            sender_device_trust_requirement: TrustRequirement::Untrusted,
        };
        let d = self
            .block_on(self.machine.decrypt_room_event(&raw, &room, &settings))
            .ok()?;
        d.event.deserialize_as_unchecked::<Value>().ok()
    }

    /// Ask the user's other devices for the room key of `event` (an encrypted event as
    /// `/messages` gives it): the SDK's `m.room_key_request` (and the cancellation of an
    /// older one), sent now. The key arrives with a later sync, from a device that accepts.
    pub fn request_room_key(&mut self, room: &str, event: &Value) {
        let room = RoomId::parse(room).unwrap();
        let raw = Raw::from_json(serde_json::value::to_raw_value(event).unwrap());
        let (cancel, request) = self
            .block_on(self.machine.request_room_key(&raw, &room))
            .unwrap();
        if let Some(c) = cancel {
            self.dispatch(c.request_id(), c.request());
        }
        self.dispatch(request.request_id(), request.request());
    }

    /// Ask the user's other devices for the secrets the phone lacks (`m.secret.request` for
    /// the cross-signing keys and the backup key); whether anything was asked.
    pub fn request_missing_secrets(&mut self) -> bool {
        let asked = self
            .block_on(self.machine.query_missing_secrets_from_other_sessions())
            .unwrap();
        self.send_outgoing();
        asked
    }

    /// Does the phone hold all three cross-signing private keys?
    pub fn has_cross_signing_keys(&self) -> bool {
        self.block_on(self.machine.cross_signing_status())
            .is_complete()
    }

    /// The backup keys (base64) received in answer to a secret request and waiting in the
    /// machine's inbox.
    pub fn backup_keys_in_inbox(&self) -> Vec<String> {
        self.block_on(
            self.machine
                .store()
                .get_secrets_from_inbox(&SecretName::RecoveryKey),
        )
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    // ---- SAS verification -----------------------------------------------------------

    /// A verification request from own device `device_id` (not one the phone sent) that is
    /// neither done nor cancelled.
    fn open_request(&self, device_id: &str) -> Option<VerificationRequest> {
        self.machine
            .get_verification_requests(&self.own_user())
            .into_iter()
            .find(|r| {
                r.other_device_id().as_deref().map(|d| d.as_str()) == Some(device_id)
                    && !r.we_started()
                    && !r.is_done()
                    && !r.is_cancelled()
            })
    }

    /// The SAS of a request, once it has started.
    fn sas_of(&self, request: &VerificationRequest) -> Option<Sas> {
        match self
            .machine
            .get_verification(&self.own_user(), request.flow_id().as_str())
        {
            Some(Verification::SasV1(s)) => Some(*s),
            _ => None,
        }
    }

    /// Wait (syncing) until `sas` can show its emoji; the 7 (symbol, description).
    fn wait_emoji(&mut self, sas: &Sas, secs: u64) -> Vec<(String, String)> {
        let s = sas.clone();
        assert!(
            self.sync_until(secs, |_| s.can_be_presented() || s.is_cancelled()),
            "no SAS keys within {secs} s"
        );
        assert!(
            !sas.is_cancelled(),
            "SAS cancelled: {:?}",
            sas.cancel_info()
        );
        sas.emoji()
            .expect("emoji SAS")
            .iter()
            .map(|e| (e.symbol.to_string(), e.description.to_string()))
            .collect()
    }

    /// Wait (syncing) for a verification request from own device `device_id` and accept it
    /// (SAS only).
    fn accept_request(&mut self, device_id: &str, secs: u64) -> VerificationRequest {
        // Its keys, so that the SAS can start at once.
        self.own_device(device_id);
        let mut found = None;
        assert!(
            self.sync_until(secs, |p| {
                found = p.open_request(device_id);
                found.is_some()
            }),
            "no verification request from {device_id} within {secs} s"
        );
        let request = found.unwrap();
        if let Some(r) = request.accept_with_methods(vec![VerificationMethod::SasV1]) {
            self.send_verification(r);
        }
        request
    }

    /// Send a verification request (SAS only) to own device `device_id`.
    fn send_request(&mut self, device_id: &str) -> VerificationRequest {
        let device = self.own_device(device_id);
        let (request, out) =
            device.request_verification_with_methods(vec![VerificationMethod::SasV1]);
        self.send_verification(out);
        request
    }

    /// Wait (syncing) for the other side's SAS start on `request`, accept it, wait for the
    /// keys; the emoji. The SAS is kept for [`Phone::sas_finish`].
    fn await_start(&mut self, request: &VerificationRequest, secs: u64) -> Vec<(String, String)> {
        let mut sas = None;
        assert!(
            self.sync_until(secs, |p| {
                sas = p.sas_of(request);
                sas.is_some() || request.is_cancelled()
            }),
            "no SAS start within {secs} s"
        );
        let sas = sas.unwrap_or_else(|| panic!("cancelled: {:?}", request.cancel_info()));
        if let Some(r) = sas.accept() {
            self.send_verification(r);
        }
        let emoji = self.wait_emoji(&sas, secs);
        self.sas = Some(sas);
        emoji
    }

    /// Wait (syncing) until `request` is ready, start the SAS, wait for the other side's
    /// accept and the keys; the emoji. The SAS is kept for [`Phone::sas_finish`].
    fn start(&mut self, request: &VerificationRequest, secs: u64) -> Vec<(String, String)> {
        assert!(
            self.sync_until(secs, |_| request.is_ready() || request.is_cancelled()),
            "the verification request was not accepted within {secs} s"
        );
        assert!(
            !request.is_cancelled(),
            "cancelled: {:?}",
            request.cancel_info()
        );
        let (sas, out) = self
            .block_on(request.start_sas())
            .unwrap()
            .expect("an SAS from a ready request");
        self.send_verification(out);
        let emoji = self.wait_emoji(&sas, secs);
        self.sas = Some(sas);
        emoji
    }

    /// The phone's side of an SAS that own device `device_id` asks for and starts: wait
    /// (syncing, up to `secs` for each step) for its verification request and accept it (SAS
    /// only); wait for its SAS start and accept that; once the keys are exchanged, the 7 emoji
    /// (symbol, description). Then [`Phone::sas_finish`].
    pub fn sas_accept_incoming(&mut self, device_id: &str, secs: u64) -> Vec<(String, String)> {
        let request = self.accept_request(device_id, secs);
        self.await_start(&request, secs)
    }

    /// Like [`Phone::sas_accept_incoming`], but the phone starts the SAS itself once it has
    /// accepted the request (for a device that asks and then waits for the other side to
    /// start, as either side may).
    pub fn sas_accept_incoming_and_start(
        &mut self,
        device_id: &str,
        secs: u64,
    ) -> Vec<(String, String)> {
        let request = self.accept_request(device_id, secs);
        self.start(&request, secs)
    }

    /// The asking and starting side of an SAS with own device `device_id`: send a
    /// verification request (SAS only), wait (syncing, up to `secs` for each step) until it is
    /// accepted, start the SAS; once the other side accepted and the keys are exchanged, the 7
    /// emoji (symbol, description). Then [`Phone::sas_finish`].
    pub fn sas_start_with(&mut self, device_id: &str, secs: u64) -> Vec<(String, String)> {
        let request = self.send_request(device_id);
        self.start(&request, secs)
    }

    /// The asking side of an SAS that own device `device_id` starts: send a verification
    /// request (SAS only), wait for the other side to accept it and start the SAS, accept
    /// that; the 7 emoji. Then [`Phone::sas_finish`].
    pub fn sas_request(&mut self, device_id: &str, secs: u64) -> Vec<(String, String)> {
        let request = self.send_request(device_id);
        self.await_start(&request, secs)
    }

    /// Whether the SAS under way was cancelled (by either side).
    pub fn sas_cancelled(&self) -> bool {
        self.sas.as_ref().is_some_and(|s| s.is_cancelled())
    }

    /// Confirm the current SAS (`matches`) or cancel it as a mismatch, send what that
    /// produces (MAC, done, the signature of the verified device); then sync until the
    /// verification is done or cancelled (up to `secs`). Whether it is done.
    ///
    /// The other side's MAC is needed to finish: when it is mxkeys on a terminal, confirm
    /// there first (or drive the phone from another thread), then call this.
    pub fn sas_finish(&mut self, matches: bool, secs: u64) -> bool {
        let sas = self.sas.take().expect("no SAS under way");
        if matches {
            let (reqs, signature) = self.block_on(sas.confirm()).unwrap();
            for r in reqs {
                self.send_verification(r);
            }
            if let Some(s) = signature {
                let resp = self.ok(s);
                assert!(resp.failures.is_empty(), "{:?}", resp.failures);
            }
        } else if let Some(r) =
            sas.cancel_with_code(ruma::events::key::verification::cancel::CancelCode::MismatchedSas)
        {
            self.send_verification(r);
        }
        let s = sas.clone();
        self.sync_until(secs, |_| s.is_done() || s.is_cancelled());
        self.send_outgoing();
        sas.is_done()
    }

    /// Log the phone out (`POST /logout`): its device and token are gone.
    pub fn logout(self) {
        self.ok(logout::v3::Request::new());
    }
}

/// `GET /_matrix/client/versions`, as ruma's path builders want it.
fn supported_versions(agent: &ureq::Agent, base: &str) -> SupportedVersions {
    let url = format!("{base}/_matrix/client/versions");
    let mut resp = agent.get(&url).call().unwrap();
    let v: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    let versions: Vec<String> = serde_json::from_value(v["versions"].clone()).unwrap();
    let features: BTreeMap<String, bool> =
        serde_json::from_value(v["unstable_features"].clone()).unwrap_or_default();
    SupportedVersions::from_parts(&versions, &features)
}
