//! `device request-secrets` and `device request-keys`: ask the user's other devices, wait a
//! bounded time, keep what verified own devices send.

use std::collections::BTreeMap;
use std::time::Duration;

use mxkeys::backup::BackupDecryptionKey;
use mxkeys::device::requests::{self, Wanted};
use mxkeys::device::{Device, secrets};
use mxkeys::history::classify::Class;
use mxkeys::history::source::PageOptions;
use serde_json::json;
use zeroize::Zeroizing;

use super::super::Context;
use super::super::net;
use super::receive::{Totals, store_batch};
use super::{lib, open, reconcile};
use crate::cli::device_args::{DeviceRequestKeysArgs, DeviceRequestSecretsArgs};
use crate::cli::exit::{CliError, Code};

/// Keep the backup key among `received` that opens the current backup (sealed in the store,
/// and in the device, so it is not asked for again); the backup version it opens.
pub fn keep_backup_key(
    ctx: &Context<'_>,
    conn: &net::Conn,
    dev: &Device,
    received: &[Zeroizing<String>],
) -> anyhow::Result<Option<String>> {
    if received.is_empty() {
        return Ok(None);
    }
    let Some(v) = conn.client.backup_version(None)? else {
        return Ok(None);
    };
    let auth = net::auth_data(&v)?;
    for k in received.iter().rev() {
        let Ok(key) = BackupDecryptionKey::from_base64(k) else {
            continue;
        };
        if auth.matches_private_key(&key) {
            net::cache_key(ctx, conn.store.as_ref(), &key);
            lib(secrets::settle_backup_key(dev, k, &v.version))?;
            return Ok(Some(v.version));
        }
    }
    Ok(None)
}

/// Run `device request-secrets`.
pub fn secrets(ctx: &Context<'_>, a: DeviceRequestSecretsArgs) -> anyhow::Result<Code> {
    let (mut conn, dev) = open(ctx, &a.net)?;
    reconcile(ctx, &mut conn, &dev)?;
    if !ctx.ui.json {
        ctx.ui.note(&format!(
            "Asking your other devices for the backup key and cross-signing keys (waiting up to {} s)...",
            a.wait.wait
        ));
    }
    let got = lib(secrets::request(
        &dev,
        &conn.client,
        Duration::from_secs(a.wait.wait),
        &crate::cli::output::interrupted,
    ))?;
    let mut t = Totals::default();
    {
        let store = conn.store_mut()?;
        for b in &got.batches {
            store_batch(store, b, &mut t)?;
        }
    }
    let kept_for = keep_backup_key(ctx, &conn, &dev, &got.backup_keys)?;
    let mut answered = got.answered_by.clone();
    answered.sort();
    answered.dedup();
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "asked": got.asked,
            "answered_by": answered,
            "backup_key": kept_for.is_some(),
            "backup_version": kept_for,
            "backup_keys_received": got.backup_keys.len(),
            "has_self_signing_key": got.has_self_signing,
            "has_master_key": got.has_master,
            "room_keys": {"imported": t.imported, "improved": t.improved},
        }))?;
    }
    match (&kept_for, got.backup_keys.is_empty()) {
        (Some(v), _) => {
            if !ctx.ui.json {
                ctx.ui.note(&format!(
                    "Received the key of backup version {v} from {}; it is kept sealed in the store: `mxkeys backup download` needs no secret now.",
                    if answered.is_empty() { "a verified device".to_string() } else { answered.join(", ") }
                ));
            }
            Ok(Code::Success)
        }
        (None, false) => Err(CliError::new(
            Code::WrongSecret,
            "a backup key arrived, but it does not open the current backup",
            "the answering device holds the key of an older backup; check with `mxkeys backup info`",
        )),
        (None, true) if !got.asked => Err(CliError::new(
            Code::NotFound,
            "the device already holds every secret it can ask for, but no backup key",
            "check with `mxkeys device info`",
        )),
        (None, true) => Err(CliError::new(
            Code::NotFound,
            format!(
                "no verified device of yours sent the backup key within {} s",
                a.wait.wait
            ),
            "keep another of your devices online (Element answers while open), make sure it has verified this one (`mxkeys device verify`), then try again, e.g. with --for 120",
        )),
    }
}

/// The sessions to ask for, each with what the room's history says of its sender: given by
/// id, or all that `history check` finds missing or starting too late. A request must name the
/// creating device's key (the other device matches its answer against it), so even a session
/// given by id is looked up among the room's events.
fn wanted(
    ctx: &Context<'_>,
    a: &DeviceRequestKeysArgs,
    conn: &mut net::Conn,
) -> anyhow::Result<Vec<Wanted>> {
    let rooms = if a.rooms.is_empty() {
        conn.client.joined_rooms()?
    } else {
        a.rooms.clone()
    };
    let mut store = conn
        .store
        .take()
        .ok_or_else(|| anyhow::anyhow!("no store"))?;
    let report = super::super::history::check_rooms(
        ctx,
        &conn.client,
        &mut store,
        &rooms,
        &BTreeMap::new(),
        None,
        &PageOptions::default(),
    );
    conn.store = Some(store);
    let report = report?;
    let classes: &[Class] = if a.missing {
        &[Class::Missing, Class::LaterIndex]
    } else {
        &[
            Class::Missing,
            Class::LaterIndex,
            Class::Decrypted,
            Class::BeforeJoin,
            Class::Damaged,
        ]
    };
    let mut out: Vec<Wanted> = Vec::new();
    for (room_id, room) in &report.rooms {
        for ((sid, class), s) in &room.sessions {
            let Some(sid) = sid else { continue };
            if !classes.contains(class) || (!a.sessions.is_empty() && !a.sessions.contains(sid)) {
                continue;
            }
            out.push(Wanted {
                room_id: room_id.clone(),
                session_id: sid.clone(),
                sender_key: s.sender_key.clone().or(s.claimed_sender_key.clone()),
                sender: s.sender.clone(),
                device_id: s.claimed_device_id.clone(),
            });
        }
    }
    out.sort();
    out.dedup_by(|x, y| x.room_id == y.room_id && x.session_id == y.session_id);
    if !a.missing {
        for sid in &a.sessions {
            if !out.iter().any(|w| &w.session_id == sid) {
                return Err(CliError::new(
                    Code::NotFound,
                    format!(
                        "no event of session {} in the history of {}",
                        mxkeys::session::sanitize(sid),
                        mxkeys::session::sanitize(&rooms[0])
                    ),
                    "check the ids with `mxkeys history check --room ROOM --json`; a request needs an event of the session to name its sender",
                ));
            }
        }
    }
    Ok(out)
}

/// Run `device request-keys`.
pub fn keys(ctx: &Context<'_>, a: DeviceRequestKeysArgs) -> anyhow::Result<Code> {
    // Before anything is opened: a usage error is a usage error, logged in or not.
    if !a.missing && (a.sessions.is_empty() || a.rooms.len() != 1) {
        return Err(CliError::usage(
            "say which sessions to ask for",
            "give one --room and its --session ids, or --missing to ask for what `history check` finds missing",
        ));
    }
    let (mut conn, dev) = open(ctx, &a.net)?;
    reconcile(ctx, &mut conn, &dev)?;
    let wanted = wanted(ctx, &a, &mut conn)?;
    if wanted.is_empty() {
        if ctx.ui.json {
            ctx.ui
                .print_json(&json!({"wanted": 0, "sent": 0, "arrived": 0, "sessions": []}))?;
        } else {
            ctx.ui
                .note("Nothing to ask for: history check finds no missing session.");
        }
        return Ok(Code::Success);
    }
    if !ctx.ui.json {
        ctx.ui.note(&format!(
            "Asking your other devices for {} sessions (waiting up to {} s)...",
            wanted.len(),
            a.wait.wait
        ));
    }
    let out = lib(requests::request(
        &dev,
        &conn.client,
        &wanted,
        Duration::from_secs(a.wait.wait),
        &crate::cli::output::interrupted,
    ))?;
    let mut t = Totals::default();
    let mut from: BTreeMap<(String, String), String> = BTreeMap::new();
    {
        let store = conn.store_mut()?;
        for b in &out.batches {
            store_batch(store, b, &mut t)?;
            for (k, v) in &b.sources {
                from.insert(k.clone(), v.clone());
            }
        }
    }
    let rows: Vec<_> = wanted
        .iter()
        .map(|w| {
            let k = (w.room_id.clone(), w.session_id.clone());
            json!({
                "room_id": w.room_id,
                "session_id": w.session_id,
                "arrived": out.arrived.contains(&k),
                "source": from.get(&k),
            })
        })
        .collect();
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "wanted": wanted.len(),
            "sent": out.sent,
            "arrived": out.arrived.len(),
            "imported": t.imported,
            "improved": t.improved,
            "sessions": rows,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "{} of {} sessions arrived ({} new to the store, {} better copies).",
            out.arrived.len(),
            wanted.len(),
            t.imported,
            t.improved
        ));
    }
    Ok(if out.arrived.len() == wanted.len() {
        Code::Success
    } else if out.arrived.is_empty() {
        return Err(CliError::new(
            Code::NotFound,
            format!(
                "no device of yours sent any of the {} keys within {} s",
                wanted.len(),
                a.wait.wait
            ),
            "keep a device that has them online (Element Web/Desktop answers; Element X does not) and verified (`mxkeys device verify`), then try again",
        ));
    } else {
        Code::Partial
    })
}
