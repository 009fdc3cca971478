//! `mxkeys history check`: which encrypted events of saved room history the store's keys
//! decrypt, and for the others why not and what to do.

use std::io::{BufReader, Write};
use std::path::Path;

use mxkeys::history::check::Checker;
use mxkeys::history::classify::{BackupIndex, Class, Report, SessionReport};
use mxkeys::progress::{Progress, Unit};
use mxkeys::room::event::{ReadError, ReadOptions, read_events};
use mxkeys::session::sanitize;
use mxkeys::store::Access;
use serde_json::{Value, json};

use super::{Context, check_stdin_once, open_input};
use crate::cli::HistoryCheckArgs;
use crate::cli::exit::{CliError, Code};

pub const EVENTS_HINT: &str = "give saved /messages responses (objects with \"chunk\"), JSON arrays of events, or JSON lines of events";

/// Open an input (`-` is stdin).
fn open(path: &Path) -> anyhow::Result<(String, Box<dyn std::io::Read>)> {
    let input = open_input(path)?;
    Ok((input.label, Box::new(input.file)))
}

pub fn read_backup(
    path: &Path,
    bar: &dyn mxkeys::progress::Progress,
) -> anyhow::Result<BackupIndex> {
    let (label, r) = open(path)?;
    BackupIndex::from_saved_response(BufReader::with_capacity(1 << 16, r), bar).map_err(|e| match e {
        mxkeys::Error::NotAKeyExport(m) => CliError::new(
            Code::Invalid,
            format!("{label}: {m}"),
            "give --backup-response the body of GET /_matrix/client/v3/room_keys/keys?version=V, saved unchanged",
        ),
        e => e.into(),
    })
}

/// Run `history check`.
pub fn check(ctx: &Context<'_>, a: HistoryCheckArgs) -> anyhow::Result<Code> {
    if a.from_messages.is_empty() {
        return Err(CliError::usage(
            "checking rooms on the homeserver is not built yet",
            "save /messages responses and give them with --from-messages FILE",
        ));
    }
    let mut stdin_used = a.from_messages.clone();
    stdin_used.extend(a.backup_response.clone());
    let stdin_is_data = check_stdin_once(&stdin_used)?;
    let mut store = ctx.open_store(Access::Read, stdin_is_data)?;
    let bar = ctx.ui.bar();
    let backup = match &a.backup_response {
        Some(p) => {
            bar.phase("reading the backup response", 0, Unit::Keys);
            Some(read_backup(p, &bar)?)
        }
        None => None,
    };
    let opts = ReadOptions {
        // Events without a room_id (a /sync timeline) belong to the one room asked for.
        default_room: (a.rooms.len() == 1).then(|| a.rooms[0].clone()),
        ..ReadOptions::default()
    };
    let mut checker = Checker::new(a.rooms.clone(), backup);
    for path in &a.from_messages {
        let (label, r) = open(path)?;
        bar.set_subject(Some(&label));
        bar.phase("checking events in", 0, Unit::Events);
        read_events(BufReader::with_capacity(1 << 16, r), &opts, &mut |ev| {
            checker.feed(&mut store, ev, &bar)
        })
        .map_err(|e| match e {
            ReadError::Input(e) => {
                CliError::new(Code::Invalid, format!("{label}: {e}"), EVENTS_HINT)
            }
            ReadError::Sink(e) => anyhow::Error::from(e),
        })?;
    }
    let report = checker.finish(&mut store, &bar)?;
    bar.finish();
    let code = if report.all_fine() {
        Code::Success
    } else {
        Code::Partial
    };
    if ctx.ui.json {
        ctx.ui.print_json(&to_json(&report))?;
    } else {
        print_human(ctx, &report)?;
    }
    Ok(code)
}

/// Sessions in report order: by class, then by time, then by id.
fn sorted(
    sessions: &std::collections::BTreeMap<(Option<String>, Class), SessionReport>,
) -> Vec<&SessionReport> {
    let mut v: Vec<&SessionReport> = sessions.values().collect();
    v.sort_by(|a, b| {
        (a.class, a.first_ts, &a.session_id).cmp(&(b.class, b.first_ts, &b.session_id))
    });
    v
}

fn to_json(r: &Report) -> Value {
    let rooms: Vec<Value> = r
        .rooms
        .iter()
        .map(|(room_id, room)| {
            json!({
                "room_id": room_id,
                "events": room.events,
                "counts": room.counts,
                "sessions": sorted(&room.sessions),
            })
        })
        .collect();
    json!({
        "counts": r.counts,
        "events": r.counts.total(),
        "unencrypted": r.unencrypted,
        "other_rooms": r.other_rooms,
        "backup_checked": r.backup_checked,
        "rooms": rooms,
    })
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Matrix timestamp in milliseconds.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

fn time_range(s: &SessionReport) -> String {
    match (s.first_ts, s.last_ts) {
        (Some(f), Some(l)) if utc(f) == utc(l) => format!(", {} UTC", utc(f)),
        (Some(f), Some(l)) => format!(", {} to {} UTC", utc(f), utc(l)),
        _ => String::new(),
    }
}

/// A word for a POSIX shell, in single quotes when it needs them.
fn sh(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:+=@".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn sender_device(s: &SessionReport) -> String {
    let who = s
        .sender
        .as_deref()
        .map(sanitize)
        .unwrap_or_else(|| "the sender".into());
    match (&s.sender_key, &s.claimed_device_id, &s.claimed_sender_key) {
        (Some(k), _, _) => format!("{who}'s device with identity key {}", sanitize(k)),
        (None, Some(d), _) => format!("{who}'s device {} (as the event claims)", sanitize(d)),
        (None, None, Some(k)) => {
            format!(
                "{who}'s device with identity key {} (as the event claims)",
                sanitize(k)
            )
        }
        (None, None, None) => format!("{who}'s device"),
    }
}

fn advice(room_id: &str, s: &SessionReport, backup_checked: bool) -> String {
    let sid = s.session_id.as_deref().unwrap_or("");
    match s.class {
        Class::InBackup => format!(
            "the server backup has it from index {}: mxkeys backup download --room {} --session {}",
            s.backup_first_index.unwrap_or(0),
            sh(&sanitize(room_id)),
            sh(&sanitize(sid)),
        ),
        Class::LaterIndex => {
            let mut held = Vec::new();
            if let Some(i) = s.store_first_index {
                held.push(format!("the store's copy starts at index {i}"));
            }
            if let Some(i) = s.backup_first_index {
                held.push(format!("the backup's at index {i}"));
            }
            format!(
                "{}, these events are at {}: {} never shared the start of this session; \
                 export keys from a device that was in the room then",
                held.join(", "),
                index_range(s),
                sender_device(s)
            )
        }
        Class::Missing => format!(
            "{} never shared this key with any device whose keys you hold{}",
            sender_device(s),
            if backup_checked {
                ""
            } else {
                " (the server backup was not consulted: give --backup-response)"
            }
        ),
        Class::Damaged => format!(
            "{}: the events were altered, or forged",
            s.reason.as_deref().map(sanitize).unwrap_or_default()
        ),
        Class::Unsupported => format!(
            "algorithm {} is not Megolm",
            s.reason.as_deref().map(sanitize).unwrap_or_default()
        ),
        Class::Decrypted | Class::BeforeJoin => String::new(),
    }
}

fn index_range(s: &SessionReport) -> String {
    match (s.min_index, s.max_index) {
        (Some(a), Some(b)) if a == b => format!("index {a}"),
        (Some(a), Some(b)) => format!("indexes {a}-{b}"),
        _ => "unknown indexes".into(),
    }
}

fn counts_line(c: &mxkeys::history::classify::Counts) -> String {
    Class::ALL
        .iter()
        .filter(|&&k| c.get(k) > 0)
        .map(|&k| format!("{} {k}", c.get(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn events(n: u64) -> String {
    format!("{n} encrypted event{}", if n == 1 { "" } else { "s" })
}

fn print_human(ctx: &Context<'_>, r: &Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (room_id, room) in &r.rooms {
        writeln!(
            out,
            "{}: {}: {}",
            sanitize(room_id),
            events(room.events),
            counts_line(&room.counts)
        )?;
        for s in sorted(&room.sessions) {
            let sid = s
                .session_id
                .as_deref()
                .map(sanitize)
                .unwrap_or_else(|| "(no session id)".into());
            let from = s
                .sender
                .as_deref()
                .map(|u| format!(", from {}", sanitize(u)))
                .unwrap_or_default();
            writeln!(
                out,
                "  session {sid}: {} {}{}{from}",
                s.events,
                s.class,
                time_range(s)
            )?;
            writeln!(out, "    {}", advice(room_id, s, r.backup_checked))?;
        }
    }
    out.flush()?;
    if r.counts.total() == 0 {
        ctx.ui.warn("no encrypted events in the input");
    }
    ctx.ui.note(&format!(
        "{} in {} room{}: {}",
        events(r.counts.total()),
        r.rooms.len(),
        if r.rooms.len() == 1 { "" } else { "s" },
        if r.counts.total() == 0 {
            "nothing to check".into()
        } else {
            counts_line(&r.counts)
        }
    ));
    if !r.backup_checked && r.counts.not_fine() > 0 {
        ctx.ui.note(
            "No --backup-response given: the server backup was not consulted, so in_backup cannot \
             show; sessions it may hold count as missing or later_index.",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn shell_words() {
        assert_eq!(sh("abc/+="), "abc/+=");
        assert_eq!(sh("!r:x"), "'!r:x'");
        assert_eq!(sh("a'b"), r"'a'\''b'");
    }
}
