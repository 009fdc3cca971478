//! `mxkeys backup status`: what the store and the backup each lack or hold better.

use std::collections::HashMap;

use mxkeys::progress::{Progress, Unit};
use mxkeys::store::Access;
use mxkeys::sync::StatusCounts;
use serde_json::json;

use super::super::net::{self, StoreUse};
use super::super::{Context, MAX_LISTED};
use crate::cli::BackupStatusArgs;
use crate::cli::exit::Code;

#[derive(Debug, serde::Serialize)]
struct Entry {
    room_id: String,
    session_id: String,
    local_first_index: Option<u32>,
    server_first_index: Option<u32>,
}

/// Run `backup status`.
pub fn run(ctx: &Context<'_>, a: BackupStatusArgs) -> anyhow::Result<Code> {
    let conn = net::connect(ctx, &a.net, StoreUse::Required(Access::Read))?;
    let v = net::backup_version(&conn.client, a.version.as_deref())?;
    let bar = ctx.ui.bar();
    bar.phase("reading the backup", v.count, Unit::Keys);
    let mut server: HashMap<(String, String), u32> = HashMap::new();
    conn.client
        .room_keys(&v.version, None, None, &bar, &mut |k| {
            server.insert((k.room_id, k.session_id), k.data.first_message_index);
            Ok(())
        })?;
    bar.finish();
    let store = conn.store()?;
    let mut c = StatusCounts::default();
    let mut to_upload = Vec::new();
    let mut to_download = Vec::new();
    store.for_each_index(&mut |room, sid, idx| match server
        .remove(&(room.to_string(), sid.to_string()))
    {
        None => {
            c.only_local += 1;
            if to_upload.len() < MAX_LISTED {
                to_upload.push(Entry {
                    room_id: room.into(),
                    session_id: sid.into(),
                    local_first_index: Some(idx),
                    server_first_index: None,
                });
            }
        }
        Some(s) if idx < s => {
            c.local_better += 1;
            if to_upload.len() < MAX_LISTED {
                to_upload.push(Entry {
                    room_id: room.into(),
                    session_id: sid.into(),
                    local_first_index: Some(idx),
                    server_first_index: Some(s),
                });
            }
        }
        Some(s) if idx > s => {
            c.server_better += 1;
            if to_download.len() < MAX_LISTED {
                to_download.push(Entry {
                    room_id: room.into(),
                    session_id: sid.into(),
                    local_first_index: Some(idx),
                    server_first_index: Some(s),
                });
            }
        }
        Some(_) => c.same += 1,
    })?;
    for ((room, sid), s) in server {
        c.only_server += 1;
        if to_download.len() < MAX_LISTED {
            to_download.push(Entry {
                room_id: room,
                session_id: sid,
                local_first_index: None,
                server_first_index: Some(s),
            });
        }
    }
    let in_sync =
        c.only_local == 0 && c.only_server == 0 && c.local_better == 0 && c.server_better == 0;
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "version": v.version,
            "server_count": v.count,
            "etag": v.etag,
            "in_sync": in_sync,
            "counts": c,
            "upload_would_send": to_upload,
            "download_would_bring": to_download,
        }))?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "backup version {} ({} keys, etag {})",
            v.version,
            v.count,
            mxkeys::session::sanitize(&v.etag)
        )?;
        writeln!(out, "same on both sides:         {}", c.same)?;
        writeln!(out, "only in the store:          {}", c.only_local)?;
        writeln!(out, "better in the store:        {}", c.local_better)?;
        writeln!(out, "only in the backup:         {}", c.only_server)?;
        writeln!(out, "better in the backup:       {}", c.server_better)?;
        if in_sync {
            writeln!(out, "The store and the backup hold the same keys.")?;
        } else {
            if c.only_local + c.local_better > 0 {
                writeln!(
                    out,
                    "`mxkeys backup upload` would send {} keys.",
                    c.only_local + c.local_better
                )?;
            }
            if c.only_server + c.server_better > 0 {
                writeln!(
                    out,
                    "`mxkeys backup download` would bring {} keys.",
                    c.only_server + c.server_better
                )?;
            }
        }
        out.flush()?;
    }
    Ok(Code::Success)
}
