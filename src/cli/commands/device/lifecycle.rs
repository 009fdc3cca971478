//! `device create`, `device info`, `device delete`.

use mxkeys::device::{self, Device};
use serde_json::json;

use super::super::Context;
use super::super::net;
use super::{lib, login, open};
use crate::cli::device_args::{DeviceCreateArgs, DeviceDeleteArgs, DeviceInfoArgs};
use crate::cli::exit::{CliError, Code};

/// Run `device create`.
pub fn create(ctx: &Context<'_>, a: DeviceCreateArgs) -> anyhow::Result<Code> {
    let (conn, creds) = login(ctx, &a.net)?;
    let store = conn.store()?;
    let dev = lib(Device::create(
        store,
        &conn.client,
        &creds.user_id,
        &creds.device_id,
    ))?;
    let info = lib(dev.info(&conn.client))?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::to_value(&info)?)?;
    } else {
        ctx.ui.note(&format!(
            "Created device {} of {}; its keys are on the server.\nFingerprint (Ed25519): {}\nOther devices do not trust it yet: {}",
            info.device_id,
            info.user_id,
            fingerprint(&info.ed25519),
            how_to_verify(&info)
        ));
    }
    Ok(Code::Success)
}

/// What verifies the device, for an account with or without cross-signing.
fn how_to_verify(info: &mxkeys::device::Info) -> &'static str {
    if info.account_has_identity {
        "run `mxkeys device verify` with the Security Key or Phrase, or `mxkeys device verify --sas` to compare emoji with another of your devices."
    } else {
        "the account has no cross-signing yet; set up secure backup in another client (Element: Settings, Security & Privacy), then run `mxkeys device verify`, or compare emoji with `mxkeys device verify --sas`."
    }
}

/// An Ed25519 key in groups of four, as clients show it.
fn fingerprint(key: &str) -> String {
    key.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `device info`.
pub fn info(ctx: &Context<'_>, a: DeviceInfoArgs) -> anyhow::Result<Code> {
    let (conn, dev) = open(ctx, &a.net)?;
    let info = lib(dev.info(&conn.client))?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::to_value(&info)?)?;
        return Ok(Code::Success);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("Device:        {} of {}", info.device_id, info.user_id);
    println!("Fingerprint:   {}", fingerprint(&info.ed25519));
    println!("Curve25519:    {}", info.curve25519);
    println!(
        "Cross-signed:  {}{}",
        yes(info.cross_signed),
        if info.account_has_identity {
            ""
        } else {
            " (the account has no cross-signing identity)"
        }
    );
    println!(
        "Holds:         master key {}, self-signing key {}, user-signing key {}, backup key {}",
        yes(info.has_master_key),
        yes(info.has_self_signing_key),
        yes(info.has_user_signing_key),
        yes(info.has_backup_key)
    );
    if !info.cross_signed {
        ctx.ui
            .note(&format!("Not verified: {}", how_to_verify(&info)));
    }
    Ok(Code::Success)
}

/// Run `device delete`.
pub fn delete(ctx: &Context<'_>, a: DeviceDeleteArgs) -> anyhow::Result<Code> {
    let (conn, creds) = login(ctx, &a.net)?;
    let store = conn.store()?;
    let Some(rec) = lib(device::record(store))? else {
        return Err(CliError::new(
            Code::NotFound,
            "this key store has no device",
            "nothing to delete",
        ));
    };
    let plan = if a.local_only {
        format!(
            "forget device {} here (it stays on the server)",
            rec.device_id
        )
    } else {
        format!(
            "delete device {} of {} on the server and here (its login ends too)",
            rec.device_id, rec.user_id
        )
    };
    net::confirm(ctx, a.yes, &plan)?;
    if !a.local_only {
        let (password, _) = net::password_source(a.password_file.clone(), a.password_fd)
            .with_prompt(format!("Password for {}", rec.user_id))
            .resolve(ctx.ui, false)?;
        conn.client
            .delete_device(&rec.device_id, &rec.user_id, &password)?;
        drop(password);
        // Deleting the device ended its login: forget the token with it.
        if creds.device_id == rec.device_id {
            store.delete_secret(net::CREDENTIALS)?;
        }
    }
    lib(Device::remove_local(store))?;
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "device_id": rec.device_id,
            "user_id": rec.user_id,
            "deleted_on_server": !a.local_only,
            "deleted_locally": true,
        }))?;
    } else if a.local_only {
        ctx.ui.note(&format!(
            "Forgot device {} here; it stays on the server.",
            rec.device_id
        ));
    } else {
        ctx.ui.note(&format!(
            "Deleted device {} on the server and here; log in again to use the network.",
            rec.device_id
        ));
    }
    Ok(Code::Success)
}
