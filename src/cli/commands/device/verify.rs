//! `device verify`: cross-sign the device with the keys from secret storage.

use mxkeys::device::verify;
use mxkeys::recovery::SecretStorageState;
use serde_json::json;

use super::super::Context;
use super::super::net;
use super::{lib, open};
use crate::cli::device_args::DeviceVerifyArgs;
use crate::cli::exit::{CliError, Code};

/// The account's secret-storage key, opened with the user's secret (given or asked for).
pub fn secret_storage_key(
    ctx: &Context<'_>,
    conn: &net::Conn,
    secret: &crate::cli::BackupSecretArgs,
) -> anyhow::Result<(String, mxkeys::secret_storage::SecretStorageKey)> {
    let ssss = SecretStorageState::fetch(&conn.client, &conn.user_id)?;
    if !ssss.exists() {
        return Err(CliError::new(
            Code::NotFound,
            "the account has no secret storage",
            "set up secure backup (a Security Key) in another client first, e.g. Element: Settings, Security & Privacy",
        ));
    }
    let given = match net::given_secret(ctx, secret, false)? {
        Some(s) => s,
        None if ctx.ui.interactive => net::prompt_secret()?,
        None => {
            return Err(CliError::usage(
                format!(
                    "the Security Key or Phrase is needed, and {}",
                    ctx.ui.cannot_ask()
                ),
                "give it with --recovery-key-file, --recovery-key-fd, --security-phrase-file, --security-phrase-fd, MXKEYS_RECOVERY_KEY or MXKEYS_SECURITY_PHRASE",
            ));
        }
    };
    match ssss.open_key(&given, secret.max_kdf_rounds)? {
        Some((id, key, _)) => Ok((id, key)),
        None => Err(CliError::new(
            Code::WrongSecret,
            "the key or phrase given does not open this account's secret storage",
            "give the Security Key (48 characters in groups of 4) or the Security Phrase set in your client",
        )),
    }
}

/// Run `device verify`.
pub fn run(ctx: &Context<'_>, a: DeviceVerifyArgs) -> anyhow::Result<Code> {
    if a.sas {
        return super::sas::run(ctx, a);
    }
    let (conn, dev) = open(ctx, &a.net)?;
    let (id, key) = secret_storage_key(ctx, &conn, &a.secret)?;
    let v = lib(verify::with_secret_storage(&dev, &conn.client, &id, &key))?;
    drop(key);
    let device_id = dev.record().device_id.clone();
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "device_id": device_id,
            "already_verified": v.already,
            "cross_signed": v.cross_signed,
        }))?;
    } else if v.already {
        ctx.ui.note(&format!(
            "Device {device_id} was already signed by the account's identity."
        ));
    } else {
        ctx.ui.note(&format!(
            "Device {device_id} is now signed by the account's identity; your other devices trust it."
        ));
    }
    Ok(if v.cross_signed {
        Code::Success
    } else {
        Code::Failure
    })
}
