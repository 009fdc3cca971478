//! Which secret did the user give, and what backup key does it unlock?
//!
//! Users hold four kinds of secret that look alike: a Security Key and a Security Phrase
//! (both for secret storage, which holds the backup key), and, from 2018-2019, a backup
//! recovery key or passphrase (the backup key itself, or a passphrase for it). A base58 key is
//! tried as a secret-storage key (key check), then as the backup key (its public key equals
//! `auth_data.public_key`); a phrase is tried against secret storage's passphrase parameters,
//! then against the backup's legacy ones. The answer says which it turned out to be.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ErrorKind;
use crate::backup::{AuthData, BackupDecryptionKey};
use crate::client::Client;
use crate::recovery_key::{self, RecoveryKeyError};
use crate::secret::{Key32, Passphrase};
use crate::secret_storage::{
    self, EncryptedSecret, KeyDescription, MEGOLM_BACKUP_SECRET, SecretStorageError,
    SecretStorageKey,
};

/// Account-data type of the default secret-storage key id.
pub const DEFAULT_KEY_TYPE: &str = "m.secret_storage.default_key";
/// Prefix of key-description account-data types.
pub const KEY_TYPE_PREFIX: &str = "m.secret_storage.key.";
/// Cross-signing master key secret.
pub const MASTER_KEY_SECRET: &str = "m.cross_signing.master";

/// What the user gave.
pub enum UserSecret {
    /// A base58 key (Security Key, or an old backup recovery key).
    Key(Key32),
    /// A passphrase (Security Phrase, or an old backup passphrase).
    Phrase(Passphrase),
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserSecret::Key(_) => "UserSecret::Key(<redacted>)",
            UserSecret::Phrase(_) => "UserSecret::Phrase(<redacted>)",
        })
    }
}

impl UserSecret {
    /// Text that must be a recovery key.
    pub fn key(text: &Passphrase) -> Result<Self, RecoveryKeyError> {
        // Bytes that are not UTF-8 (a UTF-16 or Latin-1 file) are reported as the invalid
        // characters they are, not as an empty key.
        let s = zeroize::Zeroizing::new(String::from_utf8_lossy(text.expose_secret()).into_owned());
        Ok(UserSecret::Key(recovery_key::decode(&s)?))
    }

    /// Text typed at a prompt: a recovery key if it has a key's shape (48 base58 characters
    /// starting "Es", spaces ignored; a typo is then reported, not taken for a phrase),
    /// otherwise a phrase.
    pub fn guess(text: Passphrase) -> Result<Self, RecoveryKeyError> {
        if looks_like_key(text.expose_secret()) {
            Self::key(&text)
        } else {
            Ok(UserSecret::Phrase(text))
        }
    }
}

/// Does this look like a recovery key (rather than a passphrase)?
pub fn looks_like_key(text: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let chars: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    chars.len() == recovery_key::ENCODED_CHARS
        && chars.starts_with(b"Es")
        && chars.iter().all(|c| ALPHABET.contains(c))
}

/// What the secret turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// The base58 form of the secret-storage key (Element's "Security Key" / "Recovery key").
    SecurityKey,
    /// The passphrase of the secret-storage key (Element's "Security Phrase").
    SecurityPhrase,
    /// The base58 form of the backup key itself (2018-2019 "Recovery Key").
    BackupRecoveryKey,
    /// A passphrase for the backup key itself (2018-2019 "recovery passphrase").
    LegacyBackupPassphrase,
}

impl SecretKind {
    /// A phrase for users.
    pub fn describe(self) -> &'static str {
        match self {
            SecretKind::SecurityKey => "the Security Key of this account's secret storage",
            SecretKind::SecurityPhrase => "the Security Phrase of this account's secret storage",
            SecretKind::BackupRecoveryKey => "the recovery key of the backup itself (old style)",
            SecretKind::LegacyBackupPassphrase => "the backup's own passphrase (old style)",
        }
    }
}

/// Why the secret did not unlock the backup.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Matches nothing.
    #[error("the {given} matches neither this account's secret storage nor the backup's key")]
    NoMatch {
        /// "key" or "passphrase".
        given: &'static str,
    },
    /// Right secret-storage key, but the backup key stored there is for another backup.
    #[error(
        "the Security {given} is right, but the backup key kept in secret storage does not belong to the current backup (version {version}): it is from an older backup"
    )]
    StaleBackupKey {
        /// "Key" or "Phrase".
        given: &'static str,
        /// Current backup version.
        version: String,
    },
    /// Right secret-storage key, but no backup key is stored there.
    #[error("the Security {given} is right, but secret storage holds no backup key")]
    NoBackupSecret {
        /// "Key" or "Phrase".
        given: &'static str,
    },
    /// The account has no secret storage (for operations that need it).
    #[error("this account has no secret storage (no default key)")]
    NoSecretStorage,
    /// Server-supplied KDF parameters above the cap.
    #[error("{what} asks for {iterations} PBKDF2 iterations, more than the limit of {max}")]
    TooManyIterations {
        /// Whose parameters.
        what: &'static str,
        /// Asked.
        iterations: u32,
        /// Cap.
        max: u32,
    },
    /// Secret storage failed.
    #[error(transparent)]
    SecretStorage(#[from] SecretStorageError),
    /// Backup crypto failed.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// The server's account data is malformed.
    #[error("account data {0} is malformed: {1}")]
    BadAccountData(String, String),
}

impl RecoveryError {
    /// Broad class for exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecoveryError::NoMatch { .. }
            | RecoveryError::StaleBackupKey { .. }
            | RecoveryError::NoBackupSecret { .. } => ErrorKind::WrongSecret,
            RecoveryError::NoSecretStorage => ErrorKind::NotFound,
            RecoveryError::TooManyIterations { .. } | RecoveryError::BadAccountData(..) => {
                ErrorKind::InvalidInput
            }
            RecoveryError::SecretStorage(e) => e.kind(),
            RecoveryError::Backup(e) => e.kind(),
        }
    }
}

/// What the account keeps in secret storage.
#[derive(Debug, Clone, Default)]
pub struct SecretStorageState {
    /// `m.secret_storage.default_key`'s key id.
    pub default_key_id: Option<String>,
    /// Key descriptions, by key id.
    pub keys: BTreeMap<String, KeyDescription>,
    /// `m.megolm_backup.v1`'s `encrypted` map.
    pub backup_secret: BTreeMap<String, EncryptedSecret>,
    /// `m.cross_signing.master`'s `encrypted` map.
    pub master_secret: BTreeMap<String, EncryptedSecret>,
}

fn encrypted_map(
    ty: &str,
    v: Option<Value>,
) -> Result<BTreeMap<String, EncryptedSecret>, RecoveryError> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    match v.get("encrypted") {
        None => Ok(BTreeMap::new()),
        Some(e) => serde_json::from_value(e.clone())
            .map_err(|err| RecoveryError::BadAccountData(ty.to_string(), err.to_string())),
    }
}

impl SecretStorageState {
    /// Read the account's secret storage through `client`.
    pub fn fetch(client: &Client, user_id: &str) -> Result<Self, crate::Error> {
        let default_key_id = match client.account_data(user_id, DEFAULT_KEY_TYPE)? {
            Some(v) => v.get("key").and_then(|k| k.as_str()).map(str::to_string),
            None => None,
        };
        let backup_secret = encrypted_map(
            MEGOLM_BACKUP_SECRET,
            client.account_data(user_id, MEGOLM_BACKUP_SECRET)?,
        )?;
        let master_secret = encrypted_map(
            MASTER_KEY_SECRET,
            client.account_data(user_id, MASTER_KEY_SECRET)?,
        )?;
        let mut ids: Vec<String> = default_key_id.iter().cloned().collect();
        ids.extend(backup_secret.keys().cloned());
        ids.sort();
        ids.dedup();
        let mut keys = BTreeMap::new();
        for id in ids {
            let ty = format!("{KEY_TYPE_PREFIX}{id}");
            if let Some(v) = client.account_data(user_id, &ty)? {
                match serde_json::from_value::<KeyDescription>(v) {
                    Ok(d) => {
                        keys.insert(id, d);
                    }
                    Err(e) => log::warn!("ignoring malformed {ty}: {e}"),
                }
            }
        }
        Ok(SecretStorageState {
            default_key_id,
            keys,
            backup_secret,
            master_secret,
        })
    }

    /// Key ids to try, the default first.
    fn candidate_ids(&self) -> Vec<&String> {
        let mut ids: Vec<&String> = Vec::new();
        if let Some(d) = &self.default_key_id {
            ids.push(d);
        }
        for id in self.keys.keys() {
            if Some(id) != self.default_key_id.as_ref() {
                ids.push(id);
            }
        }
        ids
    }

    /// Does the account have secret storage at all?
    pub fn exists(&self) -> bool {
        self.default_key_id
            .as_ref()
            .is_some_and(|id| self.keys.contains_key(id))
    }

    /// The secret-storage key (and its id) the user's secret opens, checked against the key
    /// description. `max_iterations` caps server-supplied PBKDF2 parameters.
    pub fn open_key(
        &self,
        secret: &UserSecret,
        max_iterations: u32,
    ) -> Result<Option<(String, SecretStorageKey, SecretKind)>, RecoveryError> {
        for id in self.candidate_ids() {
            let Some(desc) = self.keys.get(id) else {
                continue;
            };
            let (key, kind) = match secret {
                UserSecret::Key(k) => (
                    SecretStorageKey::new(Key32::new(*k.expose_secret())),
                    SecretKind::SecurityKey,
                ),
                UserSecret::Phrase(p) => {
                    let Some(info) = &desc.passphrase else {
                        continue;
                    };
                    if info.iterations > max_iterations {
                        return Err(RecoveryError::TooManyIterations {
                            what: "secret storage",
                            iterations: info.iterations,
                            max: max_iterations,
                        });
                    }
                    (
                        SecretStorageKey::from_passphrase(p, info)?,
                        SecretKind::SecurityPhrase,
                    )
                }
            };
            // A description without iv/mac accepts any key; the secret's MAC decides then.
            let checkable = desc.iv.is_some() && desc.mac.is_some();
            if !key.check(desc)? {
                continue;
            }
            if !checkable {
                match self.backup_secret.get(id) {
                    Some(enc) if key.decrypt(MEGOLM_BACKUP_SECRET, enc).is_ok() => {}
                    _ => continue,
                }
            }
            return Ok(Some((id.clone(), key, kind)));
        }
        Ok(None)
    }
}

/// The backup key a secret unlocks, and how.
pub struct Resolved {
    /// The backup's private key.
    pub backup_key: BackupDecryptionKey,
    /// What the user's secret was.
    pub kind: SecretKind,
    /// The secret-storage key, when the secret was one.
    pub ssss: Option<(String, SecretStorageKey)>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Find the backup key of the backup whose `auth_data` is given.
pub fn resolve(
    secret: &UserSecret,
    ssss: &SecretStorageState,
    auth_data: &AuthData,
    version: &str,
    max_iterations: u32,
) -> Result<Resolved, RecoveryError> {
    let (given_word, given_cap) = match secret {
        UserSecret::Key(_) => ("key", "Key"),
        UserSecret::Phrase(_) => ("passphrase", "Phrase"),
    };
    // 1. Secret storage.
    let mut stale = false;
    let mut no_secret = false;
    if let Some((id, key, kind)) = ssss.open_key(secret, max_iterations)? {
        match ssss.backup_secret.get(&id) {
            Some(enc) => {
                let text = key.decrypt(MEGOLM_BACKUP_SECRET, enc)?;
                let b = secret_storage::backup_key_from_secret(&text)?;
                if auth_data.matches_private_key(&b) {
                    return Ok(Resolved {
                        backup_key: b,
                        kind,
                        ssss: Some((id, key)),
                    });
                }
                stale = true;
            }
            None => no_secret = true,
        }
    }
    // 2. The backup key itself.
    match secret {
        UserSecret::Key(k) => {
            let b = BackupDecryptionKey::new(Key32::new(*k.expose_secret()));
            if auth_data.matches_private_key(&b) {
                return Ok(Resolved {
                    backup_key: b,
                    kind: SecretKind::BackupRecoveryKey,
                    ssss: None,
                });
            }
        }
        UserSecret::Phrase(p) => {
            if let (Some(_), Some(iterations)) = (
                &auth_data.private_key_salt,
                auth_data.private_key_iterations,
            ) {
                if iterations > max_iterations {
                    return Err(RecoveryError::TooManyIterations {
                        what: "the backup's passphrase",
                        iterations,
                        max: max_iterations,
                    });
                }
                let b = BackupDecryptionKey::from_auth_data_passphrase(p, auth_data)?;
                if auth_data.matches_private_key(&b) {
                    return Ok(Resolved {
                        backup_key: b,
                        kind: SecretKind::LegacyBackupPassphrase,
                        ssss: None,
                    });
                }
            }
        }
    }
    if stale {
        Err(RecoveryError::StaleBackupKey {
            given: given_cap,
            version: version.to_string(),
        })
    } else if no_secret {
        Err(RecoveryError::NoBackupSecret { given: given_cap })
    } else {
        Err(RecoveryError::NoMatch { given: given_word })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_storage::PassphraseInfo;

    fn ssss_with(
        key: &SecretStorageKey,
        id: &str,
        passphrase: Option<PassphraseInfo>,
        backup: &BackupDecryptionKey,
    ) -> SecretStorageState {
        let desc = key.describe(None, passphrase).unwrap();
        let enc = key
            .encrypt(
                MEGOLM_BACKUP_SECRET,
                &secret_storage::backup_key_to_secret(backup),
            )
            .unwrap();
        SecretStorageState {
            default_key_id: Some(id.into()),
            keys: [(id.to_string(), desc)].into_iter().collect(),
            backup_secret: [(id.to_string(), enc)].into_iter().collect(),
            master_secret: BTreeMap::new(),
        }
    }

    #[test]
    fn every_kind_is_recognised() {
        let backup = BackupDecryptionKey::random().unwrap();
        let auth = AuthData::new(&backup.public_key());
        // Security Key
        let sk = SecretStorageKey::random().unwrap();
        let state = ssss_with(&sk, "K1", None, &backup);
        let r = resolve(
            &UserSecret::Key(Key32::new(*sk.expose_secret().expose_secret())),
            &state,
            &auth,
            "1",
            1000,
        )
        .unwrap();
        assert_eq!(r.kind, SecretKind::SecurityKey);
        // Security Phrase
        let info = PassphraseInfo::new(10).unwrap();
        let pp = Passphrase::from_string("correct horse".into());
        let pk = SecretStorageKey::from_passphrase(&pp, &info).unwrap();
        let state2 = ssss_with(&pk, "K2", Some(info), &backup);
        let r = resolve(
            &UserSecret::Phrase(Passphrase::from_string("correct horse".into())),
            &state2,
            &auth,
            "1",
            1000,
        )
        .unwrap();
        assert_eq!(r.kind, SecretKind::SecurityPhrase);
        // The backup key itself
        let r = resolve(
            &UserSecret::Key(Key32::new(*backup.expose_secret().expose_secret())),
            &state,
            &auth,
            "1",
            1000,
        )
        .unwrap();
        assert_eq!(r.kind, SecretKind::BackupRecoveryKey);
        // Legacy passphrase
        let legacy =
            BackupDecryptionKey::from_legacy_passphrase(&pp, "saltsalt", 10, None).unwrap();
        let mut auth2 = AuthData::new(&legacy.public_key());
        auth2.private_key_salt = Some("saltsalt".into());
        auth2.private_key_iterations = Some(10);
        let r = resolve(
            &UserSecret::Phrase(Passphrase::from_string("correct horse".into())),
            &SecretStorageState::default(),
            &auth2,
            "1",
            1000,
        )
        .unwrap();
        assert_eq!(r.kind, SecretKind::LegacyBackupPassphrase);
        // Wrong
        let e = resolve(
            &UserSecret::Key(Key32::new([9u8; 32])),
            &state,
            &auth,
            "1",
            1000,
        )
        .unwrap_err();
        assert!(matches!(e, RecoveryError::NoMatch { given: "key" }));
        // Too many iterations from a hostile server
        let e = resolve(
            &UserSecret::Phrase(Passphrase::from_string("x".into())),
            &state2,
            &auth,
            "1",
            5,
        )
        .unwrap_err();
        assert!(matches!(e, RecoveryError::TooManyIterations { .. }));
    }

    #[test]
    fn stale_backup_key_in_secret_storage_is_explained() {
        let old = BackupDecryptionKey::random().unwrap();
        let current = BackupDecryptionKey::random().unwrap();
        let sk = SecretStorageKey::random().unwrap();
        let state = ssss_with(&sk, "K", None, &old);
        let auth = AuthData::new(&current.public_key());
        let e = resolve(
            &UserSecret::Key(Key32::new(*sk.expose_secret().expose_secret())),
            &state,
            &auth,
            "7",
            10,
        )
        .unwrap_err();
        assert!(
            matches!(e, RecoveryError::StaleBackupKey { ref version, .. } if version == "7"),
            "{e}"
        );
        assert!(e.to_string().contains("older backup"));
    }

    #[test]
    fn guesses_keys_and_phrases() {
        let k = recovery_key::encode(&Key32::new([3u8; 32]));
        assert!(matches!(
            UserSecret::guess(Passphrase::from_string(k.to_string())),
            Ok(UserSecret::Key(_))
        ));
        assert!(matches!(
            UserSecret::guess(Passphrase::from_string("my phrase".into())),
            Ok(UserSecret::Phrase(_))
        ));
        // A key with one character changed is a typo, not a phrase.
        let mut typo = k.to_string();
        let last = typo.pop().unwrap();
        typo.push(if last == 'a' { 'b' } else { 'a' });
        assert!(UserSecret::guess(Passphrase::from_string(typo)).is_err());
    }
}
