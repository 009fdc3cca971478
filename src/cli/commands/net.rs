//! Connecting to the homeserver (stored login or one-shot token) and getting the backup key
//! (a secret the user gives, or the key cached in the store).

use std::time::Duration;

use mxkeys::backup::{AuthData, BackupDecryptionKey};
use mxkeys::client::{BackupVersion, Client, ClientConfig, RetryPolicy};
use mxkeys::recovery::{self, SecretKind, SecretStorageState, UserSecret};
use mxkeys::secret::AccessToken;
use mxkeys::store::{Access, Store};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Context;
use crate::cli::exit::{CliError, Code};
use crate::cli::output::Ui;
use crate::cli::secrets_in::Source;
use crate::cli::{BackupSecretArgs, NetArgs};

/// Name of the sealed credentials in the store.
pub const CREDENTIALS: &str = "credentials";
/// Name of the cached backup key in the store.
pub const BACKUP_KEY: &str = "backup_key";

/// Credentials kept sealed in the store by `login`.
#[derive(Serialize, Deserialize)]
pub struct Credentials {
    /// Base URL.
    pub homeserver: String,
    /// User id.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// Access token.
    pub access_token: String,
}

impl Drop for Credentials {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
    }
}

/// A backup key cached in the store.
#[derive(Serialize, Deserialize)]
struct CachedKey {
    public_key: String,
    private_key: String,
}

impl Drop for CachedKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private_key.zeroize();
    }
}

/// A connection and, when one was opened, the store.
pub struct Conn {
    /// The client.
    pub client: Client,
    /// Whose account.
    pub user_id: String,
    /// The store, when used.
    pub store: Option<Store>,
}

impl Conn {
    /// The store, for commands that opened one ([`StoreUse::Required`]).
    pub fn store(&self) -> anyhow::Result<&Store> {
        self.store
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no store"))
    }

    /// The store, writable.
    pub fn store_mut(&mut self) -> anyhow::Result<&mut Store> {
        self.store
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no store"))
    }
}

/// How the store is wanted by a network command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUse {
    /// Needed (download into it, status): fail without one.
    Required(Access),
    /// Used when there is one (for cached keys and credentials).
    IfPresent(Access),
}

/// Default of `--retry-for`: with the default `--timeout` (30 s) and backoff, a server that
/// never answers gets three full attempts and a fourth cut short, and mxkeys gives up within
/// two minutes whatever `--attempts` says.
pub const DEFAULT_RETRY_FOR_SECS: u64 = 100;

/// Client settings from the flags; retries are reported on stderr (see `retry_lines`).
/// `MXKEYS_RETRY_BASE_MS` shortens backoff (for tests).
pub fn client_config(net: &NetArgs, ui: &Ui) -> anyhow::Result<ClientConfig> {
    let timeout = net.timeout.max(1);
    let mut retry = RetryPolicy {
        max_attempts: net.attempts,
        max_total: Duration::from_secs(
            net.retry_for
                .unwrap_or(DEFAULT_RETRY_FOR_SECS.max(timeout))
                .max(1),
        ),
        ..RetryPolicy::default()
    };
    if let Some(ms) = std::env::var("MXKEYS_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        retry.base = Duration::from_millis(ms);
        retry.max_delay = Duration::from_millis(ms.saturating_mul(8));
    }
    let ca_pem = match &net.ca_cert {
        None => None,
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| mxkeys::Error::io(format!("reading {}", p.display()), e))?,
        ),
    };
    Ok(ClientConfig {
        retry,
        timeout: Duration::from_secs(timeout),
        ca_pem,
        on_retry: crate::cli::retry_lines::observer(ui),
    })
}

/// The account's password: from `--password-file`, `--password-fd` or `MXKEYS_PASSWORD`.
pub fn password_source(file: Option<std::path::PathBuf>, fd: Option<i32>) -> Source {
    Source {
        what: "password",
        flag: "password",
        env: "MXKEYS_PASSWORD",
        file,
        fd,
        command: None,
        prompt: None,
    }
}

fn token_source(net: &NetArgs) -> Source {
    Source {
        what: "access token",
        flag: "access-token",
        env: "MXKEYS_ACCESS_TOKEN",
        file: net.access_token_file.clone(),
        fd: net.access_token_fd,
        command: None,
        prompt: None,
    }
}

fn warn_plain_http(ctx: &Context<'_>, url: &str) {
    if let Ok(u) = url::Url::parse(url)
        && u.scheme() == "http"
    {
        let local = match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if !local {
            ctx.ui.warn(&format!(
                "{url} is plain http: the access token and keys travel unencrypted"
            ));
        }
    }
}

/// Open a connection: a one-shot token when one is given, else the store's login.
pub fn connect(ctx: &Context<'_>, net: &NetArgs, store_use: StoreUse) -> anyhow::Result<Conn> {
    let cfg = client_config(net, ctx.ui)?;
    let tsrc = token_source(net);
    let access = match store_use {
        StoreUse::Required(a) | StoreUse::IfPresent(a) => a,
    };
    let store_exists = ctx.store_dir().map(Store::exists).unwrap_or(false);
    if tsrc.is_given() {
        let hs = net.homeserver.clone().ok_or_else(|| {
            CliError::usage(
                "an access token was given but no homeserver",
                "add --homeserver https://your.server (or set MXKEYS_HOMESERVER)",
            )
        })?;
        let (tok, _) = tsrc.resolve(ctx.ui, false)?;
        let token = AccessToken::new(String::from_utf8(tok.expose_secret().to_vec()).map_err(
            |_| CliError::usage("the access token is not text", "check the token file"),
        )?);
        warn_plain_http(ctx, &hs);
        let client =
            Client::new(&hs, Some(token), cfg)?.with_cancel(crate::cli::output::interrupted);
        let who = client.whoami()?;
        let store = match store_use {
            StoreUse::Required(a) => Some(ctx.open_store(a, false)?),
            StoreUse::IfPresent(a) if store_exists => Some(ctx.open_store(a, false)?),
            StoreUse::IfPresent(_) => None,
        };
        return Ok(Conn {
            client,
            user_id: who.user_id,
            store,
        });
    }
    if !store_exists {
        return Err(CliError::new(
            Code::NotFound,
            "not logged in: there is no key store holding a login",
            "run `mxkeys init` then `mxkeys login --user @you:server`, or give --homeserver URL with --access-token-file PATH",
        ));
    }
    let store = ctx.open_store(access, false)?;
    let creds = load_credentials(&store)?.ok_or_else(|| {
        CliError::usage(
            "not logged in",
            "run `mxkeys login --user @you:server`, or give --homeserver URL with --access-token-file PATH",
        )
    })?;
    let base = net
        .homeserver
        .clone()
        .unwrap_or_else(|| creds.homeserver.clone());
    warn_plain_http(ctx, &base);
    let client = Client::new(
        &base,
        Some(AccessToken::new(creds.access_token.clone())),
        cfg,
    )?
    .with_cancel(crate::cli::output::interrupted);
    Ok(Conn {
        client,
        user_id: creds.user_id.clone(),
        store: Some(store),
    })
}

/// The login kept in the store, if any.
pub fn load_credentials(store: &Store) -> anyhow::Result<Option<Credentials>> {
    match store.get_secret(CREDENTIALS)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|_| {
            mxkeys::store::StoreError::Corrupt("the stored login does not parse".into())
        })?)),
    }
}

/// Save a login.
pub fn save_credentials(store: &Store, c: &Credentials) -> anyhow::Result<()> {
    let json = Zeroizing::new(serde_json::to_vec(c)?);
    store.put_secret(CREDENTIALS, &json)?;
    Ok(())
}

/// The current (or given) backup version; exit 10 when there is none.
pub fn backup_version(client: &Client, version: Option<&str>) -> anyhow::Result<BackupVersion> {
    match client.backup_version(version)? {
        Some(v) => Ok(v),
        None => Err(CliError::new(
            Code::NotFound,
            match version {
                Some(v) => format!("there is no backup version {v} on the homeserver"),
                None => "there is no key backup on the homeserver".to_string(),
            },
            "create one with `mxkeys backup create`, or list versions with `mxkeys backup info`",
        )),
    }
}

/// Parse a version's `auth_data`, refusing algorithms we do not speak.
pub fn auth_data(v: &BackupVersion) -> anyhow::Result<AuthData> {
    if v.algorithm != mxkeys::backup::ALGORITHM {
        return Err(CliError::new(
            Code::Invalid,
            format!(
                "backup version {} uses algorithm {:?}, which mxkeys does not support",
                v.version,
                mxkeys::session::sanitize(&v.algorithm)
            ),
            "only m.megolm_backup.v1.curve25519-aes-sha2 backups can be read and written",
        ));
    }
    serde_json::from_value(v.auth_data.clone()).map_err(|e| {
        mxkeys::client::ClientError::BadResponse {
            what: "the backup version".into(),
            reason: format!("auth_data: {e}"),
        }
        .into()
    })
}

/// The backup key sources from the flags.
pub fn secret_sources(a: &BackupSecretArgs) -> (Source, Source) {
    (
        Source {
            what: "recovery key",
            flag: "recovery-key",
            env: "MXKEYS_RECOVERY_KEY",
            file: a.recovery_key_file.clone(),
            fd: a.recovery_key_fd,
            command: None,
            prompt: None,
        },
        Source {
            what: "Security Phrase",
            flag: "security-phrase",
            env: "MXKEYS_SECURITY_PHRASE",
            file: a.security_phrase_file.clone(),
            fd: a.security_phrase_fd,
            command: None,
            prompt: None,
        },
    )
}

/// Read the user's backup secret from a source, or `None` when none is given.
pub fn given_secret(
    ctx: &Context<'_>,
    a: &BackupSecretArgs,
    stdin_is_data: bool,
) -> anyhow::Result<Option<UserSecret>> {
    let (rk, sp) = secret_sources(a);
    if rk.is_given() && sp.is_given() {
        return Err(CliError::usage(
            "both a recovery key and a Security Phrase were given",
            "give only one of them",
        ));
    }
    if rk.is_given() {
        let (t, _) = rk.resolve(ctx.ui, stdin_is_data)?;
        return Ok(Some(UserSecret::key(&t)?));
    }
    if sp.is_given() {
        let (t, _) = sp.resolve(ctx.ui, stdin_is_data)?;
        return Ok(Some(UserSecret::Phrase(t)));
    }
    Ok(None)
}

/// Ask on the terminal for a Security Key, Security Phrase or recovery key.
pub fn prompt_secret() -> anyhow::Result<UserSecret> {
    let t = crate::cli::prompt::secret("Security Key, Security Phrase or recovery key: ")?;
    Ok(UserSecret::guess(t)?)
}

/// How the backup key was obtained. Serialised as one string: the kind of secret
/// (`security_key`, `security_phrase`, `backup_recovery_key`, `legacy_backup_passphrase`) or
/// `stored_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// From the user's secret, recognised as this kind.
    Given(SecretKind),
    /// Cached in the store from an earlier run.
    Cached,
}

impl Serialize for KeySource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeySource::Given(k) => k.serialize(s),
            KeySource::Cached => s.serialize_str("stored_key"),
        }
    }
}

impl KeySource {
    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            KeySource::Given(k) => k.describe(),
            KeySource::Cached => "the backup key kept in the store",
        }
    }
}

/// The cached backup key if it belongs to this backup.
pub fn cached_key(
    store: Option<&Store>,
    auth: &AuthData,
) -> anyhow::Result<Option<BackupDecryptionKey>> {
    Ok(match stored_key(store, auth)? {
        Stored::Matches(k) => Some(k),
        Stored::Other | Stored::None => None,
    })
}

/// The backup key kept in the store, compared with a backup's public key.
enum Stored {
    /// It belongs to this backup.
    Matches(BackupDecryptionKey),
    /// There is one, for another backup (this one was replaced, or its key swapped).
    Other,
    /// None kept.
    None,
}

fn stored_key(store: Option<&Store>, auth: &AuthData) -> anyhow::Result<Stored> {
    let Some(store) = store else {
        return Ok(Stored::None);
    };
    let Some(bytes) = store.get_secret(BACKUP_KEY)? else {
        return Ok(Stored::None);
    };
    let Ok(c) = serde_json::from_slice::<CachedKey>(&bytes) else {
        return Ok(Stored::None);
    };
    let key = BackupDecryptionKey::from_base64(&c.private_key)?;
    Ok(if auth.matches_private_key(&key) {
        Stored::Matches(key)
    } else {
        Stored::Other
    })
}

/// Remember a backup key in the store (sealed), so later runs need no secret.
pub fn cache_key(ctx: &Context<'_>, store: Option<&Store>, key: &BackupDecryptionKey) {
    let Some(store) = store else { return };
    let c = CachedKey {
        public_key: key.public_key_base64(),
        private_key: key.to_base64().to_string(),
    };
    let Ok(json) = serde_json::to_vec(&c).map(Zeroizing::new) else {
        return;
    };
    if let Err(e) = store.put_secret(BACKUP_KEY, &json) {
        ctx.ui
            .warn(&format!("could not keep the backup key in the store: {e}"));
    }
}

/// What to do when no secret is given and none is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A usage error (exit 2) naming the flags.
    Usage,
    /// Report that the backup cannot be trusted (exit 16) — for uploads.
    Untrusted,
}

/// Get the private key of backup `v`: the user's secret (recognised: Security Key/Phrase,
/// recovery key, old passphrase), else the key cached in the store, else a prompt.
pub fn backup_key(
    ctx: &Context<'_>,
    conn: &Conn,
    secret: &BackupSecretArgs,
    v: &BackupVersion,
    auth: &AuthData,
    missing: Missing,
    stdin_is_data: bool,
) -> anyhow::Result<(BackupDecryptionKey, KeySource)> {
    let mut stale = false;
    let given = match given_secret(ctx, secret, stdin_is_data)? {
        Some(s) => Some(s),
        None => {
            match stored_key(conn.store.as_ref(), auth)? {
                Stored::Matches(k) => return Ok((k, KeySource::Cached)),
                Stored::Other => stale = true,
                Stored::None => {}
            }
            if ctx.ui.interactive {
                Some(prompt_secret()?)
            } else {
                None
            }
        }
    };
    let Some(given) = given else {
        if stale {
            // The key kept from an earlier run no longer fits: the backup was replaced, or
            // the server now shows a public key that is not ours.
            let what = format!(
                "the backup key kept in the store does not belong to backup version {} (public key {}): the backup was replaced, or the server changed its key",
                v.version,
                mxkeys::session::sanitize(&auth.public_key)
            );
            return Err(match missing {
                Missing::Usage => CliError::new(
                    Code::WrongSecret,
                    what,
                    "check with `mxkeys backup info`; if the new backup is yours, give its Security Key, Security Phrase or recovery key",
                ),
                Missing::Untrusted => CliError::new(
                    Code::Untrusted,
                    format!("nothing was uploaded: {what}"),
                    "check with `mxkeys backup info`; if the new backup is yours, give its key or pin it with --trust-public-key",
                ),
            });
        }
        let flags = "--recovery-key-file, --recovery-key-fd, --security-phrase-file, --security-phrase-fd, MXKEYS_RECOVERY_KEY or MXKEYS_SECURITY_PHRASE";
        return Err(match missing {
            Missing::Usage => CliError::usage(
                format!("the backup's key is needed, and {}", ctx.ui.cannot_ask()),
                format!("give the Security Key, Security Phrase or recovery key with {flags}"),
            ),
            Missing::Untrusted => CliError::new(
                Code::Untrusted,
                "nothing was uploaded: the backup cannot be trusted without its key",
                format!(
                    "give the backup's key with {flags}, or pin its public key with --trust-public-key"
                ),
            ),
        });
    };
    let ssss = SecretStorageState::fetch(&conn.client, &conn.user_id)?;
    let r = recovery::resolve(&given, &ssss, auth, &v.version, secret.max_kdf_rounds)?;
    Ok((r.backup_key, KeySource::Given(r.kind)))
}

/// Ask before a destructive action: y/N on a terminal, `--yes` otherwise (exit 2).
pub fn confirm(ctx: &Context<'_>, yes: bool, plan: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !ctx.ui.interactive {
        return Err(CliError::usage(
            format!("refusing to {plan} without confirmation"),
            "add --yes to confirm",
        ));
    }
    let line = crate::cli::prompt::line(&format!("About to {plan}. Continue? [y/N] "))?;
    if matches!(line.as_str(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CliError::new(Code::Failure, "cancelled", ""))
    }
}
