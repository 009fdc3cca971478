//! `mxkeys list`: rooms and session counts in the store (never keys, no passphrase needed).

use mxkeys::store::Access;

use super::Context;
use crate::cli::ListArgs;
use crate::cli::exit::Code;

/// Run `list`.
pub fn run(ctx: &Context<'_>, a: ListArgs) -> anyhow::Result<Code> {
    let store = ctx.open_store_locked(Access::Read)?;
    if a.sessions {
        return sessions(ctx, &store, &a.rooms);
    }
    let rooms = store.list(&a.rooms)?;
    let info = store.info()?;
    let total: u64 = rooms.iter().map(|r| r.sessions).sum();
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "store": info,
            "rooms": rooms,
            "sessions": total,
        }))?;
        return Ok(Code::Success);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let width = rooms
        .iter()
        .map(|r| mxkeys::session::sanitize(&r.room_id).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<width$}  {:>8}  {:<11}  FROM",
        "ROOM", "SESSIONS", "FIRST INDEX"
    )?;
    for r in &rooms {
        let idx = if r.min_first_index == r.max_first_index {
            r.min_first_index.to_string()
        } else {
            format!("{}-{}", r.min_first_index, r.max_first_index)
        };
        let from = r
            .sources
            .iter()
            .map(|(s, n)| {
                let s = mxkeys::session::sanitize(s);
                if r.sources.len() == 1 {
                    s
                } else {
                    format!("{s} ({n})")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "{:<width$}  {:>8}  {idx:<11}  {from}",
            mxkeys::session::sanitize(&r.room_id),
            r.sessions
        )?;
    }
    out.flush()?;
    ctx.ui.note(&format!(
        "{total} sessions in {} rooms ({} store at {})",
        rooms.len(),
        match info.protection {
            mxkeys::store::Protection::Sealed => "sealed",
            mxkeys::store::Protection::Unsealed => "unsealed",
        },
        info.path.display()
    ));
    Ok(Code::Success)
}

/// `list --sessions`: one line per session.
fn sessions(
    ctx: &Context<'_>,
    store: &mxkeys::store::Locked,
    rooms: &[String],
) -> anyhow::Result<Code> {
    let list = store.list_sessions(rooms)?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "sessions": list,
            "count": list.len(),
            "forwarded": list.iter().filter(|s| s.forwarded).count(),
        }))?;
        return Ok(Code::Success);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ROOM\tSESSION\tFIRST INDEX\tFROM")?;
    for s in &list {
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            mxkeys::session::sanitize(&s.room_id),
            mxkeys::session::sanitize(&s.session_id),
            s.first_index,
            mxkeys::session::sanitize(&s.source)
        )?;
    }
    out.flush()?;
    ctx.ui.note(&format!(
        "{} sessions, {} of them forwarded by another device",
        list.len(),
        list.iter().filter(|s| s.forwarded).count()
    ));
    Ok(Code::Success)
}
