//! `device rehydrate`: take the room keys sent to the account's dehydrated device.

use mxkeys::device::{keys, rehydrate, verify};
use mxkeys::store::Access;
use serde_json::json;

use super::super::Context;
use super::super::net::{self, StoreUse};
use super::lib;
use super::verify::secret_storage_key;
use crate::cli::device_args::DeviceRehydrateArgs;
use crate::cli::exit::{CliError, Code};

/// Run `device rehydrate`.
pub fn run(ctx: &Context<'_>, a: DeviceRehydrateArgs) -> anyhow::Result<Code> {
    let mut conn = net::connect(ctx, &a.net, StoreUse::Required(Access::Write))?;
    let (id, key) = secret_storage_key(ctx, &conn, &a.secret)?;
    let secret = verify::read_secret(
        &conn.client,
        &conn.user_id,
        rehydrate::SECRET_NAME,
        &id,
        &key,
    )?;
    drop(key);
    let Some(secret) = secret else {
        return Err(CliError::new(
            Code::NotFound,
            "the account's secret storage holds no dehydration key (org.matrix.msc3814)",
            "a client that supports dehydrated devices (Element Web with the server's support) makes one; without it there is nothing to rehydrate",
        ));
    };
    let dkey = lib(rehydrate::key_from_secret(&secret))?;
    drop(secret);
    // The field, not `conn.store_mut()`: the client and user id are borrowed beside it.
    let store = conn
        .store
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no store"))?;
    let mut imported = 0u64;
    let mut improved = 0u64;
    let mut unchanged = 0u64;
    let summary = lib(rehydrate::rehydrate(
        &conn.client,
        &conn.user_id,
        &dkey,
        &crate::cli::output::interrupted,
        &mut |device_id, sessions| {
            let c = keys::merge(
                store,
                sessions,
                &Default::default(),
                &format!("dehydrated:{device_id}"),
            )?;
            imported += c.imported;
            improved += c.improved;
            unchanged += c.unchanged;
            Ok(())
        },
    ))?;
    let Some(s) = summary else {
        return Err(CliError::new(
            Code::NotFound,
            "the account has no dehydrated device",
            "a client that supports dehydrated devices (Element Web, when the server advertises org.matrix.msc3814) makes one",
        ));
    };
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "device_id": s.device_id,
            "pages": s.pages,
            "events": s.events,
            "keys": s.keys,
            "imported": imported,
            "improved": improved,
            "unchanged": unchanged,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "Dehydrated device {}: {} messages read, {} room keys ({imported} new to the store, {improved} better copies, {unchanged} already held). The device stays on the server.",
            s.device_id, s.events, s.keys
        ));
    }
    Ok(Code::Success)
}
