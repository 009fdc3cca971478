//! `mxkeys backup delete`: remove a backup version and its keys.

use mxkeys::store::Access;
use serde_json::json;

use super::super::Context;
use super::super::net::{self, StoreUse};
use crate::cli::BackupDeleteArgs;
use crate::cli::exit::Code;

/// Run `backup delete`.
pub fn run(ctx: &Context<'_>, a: BackupDeleteArgs) -> anyhow::Result<Code> {
    let conn = net::connect(ctx, &a.net, StoreUse::IfPresent(Access::Write))?;
    let v = net::backup_version(&conn.client, Some(&a.version))?;
    net::confirm(
        ctx,
        a.yes,
        &format!(
            "delete backup version {} and the {} keys in it",
            v.version, v.count
        ),
    )?;
    conn.client.delete_backup_version(&v.version)?;
    if let (Some(store), Ok(auth)) = (conn.store.as_ref(), net::auth_data(&v))
        && net::cached_key(Some(store), &auth)?.is_some()
    {
        store.delete_secret(net::BACKUP_KEY)?;
    }
    if ctx.ui.json {
        ctx.ui
            .print_json(&json!({"deleted": v.version, "keys": v.count}))?;
    } else {
        ctx.ui.note(&format!(
            "Deleted backup version {} ({} keys).",
            v.version, v.count
        ));
    }
    Ok(Code::Success)
}
