//! `mxkeys device ...`: mxkeys as a Matrix device of the login's account (`mxkeys::device`).

mod lifecycle;
mod receive;
mod rehydrate;
mod request;
mod sas;
mod verify;

use mxkeys::device::{Device, DeviceError};
use mxkeys::store::Access;

use super::Context;
use super::net::{self, Conn, Credentials, StoreUse};
use crate::cli::NetArgs;
use crate::cli::device_args::DeviceCommand;
use crate::cli::exit::{CliError, Code};

/// Run `device ...`.
pub fn run(ctx: &Context<'_>, cmd: DeviceCommand) -> anyhow::Result<Code> {
    match cmd {
        DeviceCommand::Create(a) => lifecycle::create(ctx, a),
        DeviceCommand::Info(a) => lifecycle::info(ctx, a),
        DeviceCommand::Delete(a) => lifecycle::delete(ctx, a),
        DeviceCommand::Verify(a) => verify::run(ctx, a),
        DeviceCommand::RequestSecrets(a) => request::secrets(ctx, a),
        DeviceCommand::RequestKeys(a) => request::keys(ctx, a),
        DeviceCommand::Sync(a) => receive::run(ctx, a),
        DeviceCommand::Rehydrate(a) => rehydrate::run(ctx, a),
    }
}

/// Library errors of the device, as `mxkeys::Error` (so exit codes and hints find them).
fn lib<T>(r: Result<T, DeviceError>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::Error::from(mxkeys::Error::from(e)))
}

/// The store's login (a device needs one: it is that login's device).
fn login(ctx: &Context<'_>, net: &NetArgs) -> anyhow::Result<(Conn, Credentials)> {
    if net.access_token_file.is_some() || net.access_token_fd.is_some() {
        return Err(CliError::usage(
            "a device belongs to the store's login, not to a one-shot access token",
            "run `mxkeys login --user @you:server` first, and leave out --access-token-file/--access-token-fd",
        ));
    }
    let conn = net::connect(ctx, net, StoreUse::Required(Access::Write))?;
    let store = conn.store()?;
    let creds = net::load_credentials(store)?.ok_or_else(|| {
        CliError::usage(
            "not logged in",
            "run `mxkeys login --user @you:server` first",
        )
    })?;
    Ok((conn, creds))
}

/// The store's login and its device.
fn open(ctx: &Context<'_>, net: &NetArgs) -> anyhow::Result<(Conn, Device)> {
    let (conn, creds) = login(ctx, net)?;
    let store = conn.store()?;
    let dev = lib(Device::open(store, &creds.user_id, &creds.device_id))?;
    Ok((conn, dev))
}

/// Copy what the device holds into the key store (healing a run killed in between).
fn reconcile(ctx: &Context<'_>, conn: &mut Conn, dev: &Device) -> anyhow::Result<()> {
    let store = conn.store_mut()?;
    let c = lib(dev.reconcile(store))?;
    if c.imported + c.improved > 0 {
        ctx.ui.note(&format!(
            "Copied {} keys the device held into the store.",
            c.imported + c.improved
        ));
    }
    Ok(())
}
