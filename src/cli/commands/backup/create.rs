//! `mxkeys backup create`: a new backup version with a new random key.

use base64::Engine;
use mxkeys::backup::{self, AuthData, BackupDecryptionKey};
use mxkeys::recovery::{MASTER_KEY_SECRET, RecoveryError, SecretStorageState, UserSecret};
use mxkeys::secret_storage::{self, MEGOLM_BACKUP_SECRET};
use mxkeys::store::Access;
use serde_json::json;
use zeroize::Zeroizing;

use super::super::Context;
use super::super::net::{self, StoreUse};
use super::super::recovery_key::emit_recovery_key;
use crate::cli::BackupCreateArgs;
use crate::cli::exit::Code;

/// Run `backup create`.
pub fn run(ctx: &Context<'_>, a: BackupCreateArgs) -> anyhow::Result<Code> {
    super::super::Sink::precheck(a.output.as_deref(), a.out.force)?;
    let conn = net::connect(ctx, &a.net, StoreUse::IfPresent(Access::Write))?;
    let client = &conn.client;
    if let Some(cur) = client.backup_version(None)? {
        net::confirm(
            ctx,
            a.yes,
            &format!(
                "create a new backup that replaces the current one (version {}, {} keys); clients will then back up to the new one",
                cur.version, cur.count
            ),
        )?;
    }
    let ssss = SecretStorageState::fetch(client, &conn.user_id)?;
    let given = net::given_secret(ctx, &a.secret, false)?;
    let opened = if ssss.exists() {
        let given = match given {
            Some(g) => Some(g),
            None if ctx.ui.interactive => {
                let t = crate::cli::prompt::secret(
                    "Security Key or Security Phrase, to keep the new key in secret storage (empty: skip): ",
                )?;
                if t.is_empty() {
                    None
                } else {
                    Some(UserSecret::guess(t)?)
                }
            }
            None => None,
        };
        match given {
            Some(g) => match ssss.open_key(&g, a.secret.max_kdf_rounds)? {
                Some(found) => Some(found),
                None => {
                    return Err(RecoveryError::NoMatch {
                        given: match g {
                            UserSecret::Key(_) => "key",
                            UserSecret::Phrase(_) => "passphrase",
                        },
                    }
                    .into());
                }
            },
            None => None,
        }
    } else {
        if given.is_some() {
            ctx.ui
                .warn("this account has no secret storage; the secret given is not used");
        }
        None
    };

    let key = BackupDecryptionKey::random()?;
    let mut auth = AuthData::new(&key.public_key());
    let mut signed = false;
    if let Some((id, sk, _)) = &opened {
        match ssss.master_secret.get(id) {
            Some(enc) => {
                let seed_b64 = sk.decrypt(MASTER_KEY_SECRET, enc)?;
                let seed = decode_seed(&seed_b64)?;
                let derived = vodozemac::Ed25519SecretKey::from_slice(&seed)
                    .public_key()
                    .to_base64();
                let query = client.query_keys(&conn.user_id)?;
                if super::published_master_key(&query, &conn.user_id).as_deref()
                    == Some(derived.as_str())
                {
                    auth.sign(&conn.user_id, &seed)?;
                    signed = true;
                } else {
                    ctx.ui.warn("the cross-signing key in secret storage is not the one published for this account; the backup is not signed");
                }
            }
            None => ctx
                .ui
                .warn("secret storage holds no cross-signing master key; the backup is not signed"),
        }
    }
    let version = client.create_backup_version(backup::ALGORITHM, &serde_json::to_value(&auth)?)?;
    let mut stored = false;
    if let Some((id, sk, _)) = &opened {
        let enc = sk.encrypt(
            MEGOLM_BACKUP_SECRET,
            &secret_storage::backup_key_to_secret(&key),
        )?;
        match client.put_account_data(&conn.user_id, MEGOLM_BACKUP_SECRET, &json!({"encrypted": {id.clone(): enc}})) {
            Ok(()) => stored = true,
            Err(e) => ctx.ui.warn(&format!(
                "backup version {version} exists, but its key could not be kept in secret storage ({e}); here is its recovery key instead"
            )),
        }
    }
    net::cache_key(ctx, conn.store.as_ref(), &key);
    let mut file = None;
    if !stored {
        file = emit_recovery_key(ctx, key.expose_secret(), a.output.as_deref(), a.out.force)?;
    }
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "version": version,
            "algorithm": backup::ALGORITHM,
            "public_key": key.public_key_base64(),
            "stored_in_secret_storage": stored,
            "signed_by_master_key": signed,
            "recovery_key_file": file,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "Created backup version {version} (public key {}).",
            key.public_key_base64()
        ));
        if stored {
            ctx.ui
                .note("Its key is kept in secret storage: your Security Key or Phrase unlocks it.");
        } else if let Some(path) = &file {
            ctx.ui.note(&format!("The recovery key is in {path}, its only copy: keep it safe; it is the only way to read the backup."));
        } else {
            ctx.ui.note("This recovery key is shown once: keep it safe; it is the only way to read the backup.");
        }
        if !signed {
            ctx.ui.warn("the backup is not signed by your cross-signing identity, so Element will not trust it until it is (give the Security Key or Phrase to `backup create` to sign it)");
        }
    }
    Ok(Code::Success)
}

fn decode_seed(b64: &str) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = Zeroizing::new(engine.decode(b64.trim()).map_err(|_| {
        mxkeys::recovery::RecoveryError::BadAccountData(
            MASTER_KEY_SECRET.into(),
            "not base64".into(),
        )
    })?);
    let mut seed = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(mxkeys::recovery::RecoveryError::BadAccountData(
            MASTER_KEY_SECRET.into(),
            "not a 32-byte key".into(),
        )
        .into());
    }
    seed.copy_from_slice(&bytes);
    Ok(seed)
}
