//! `mxkeys history check`: which encrypted events of saved room history the store's keys
//! decrypt, and for the others why not and what to do.

use std::io::{BufReader, Write};
use std::path::Path;

use std::collections::BTreeMap;

use mxkeys::client::error::ClientError;
use mxkeys::client::rooms::Direction;
use mxkeys::history::check::Checker;
use mxkeys::history::classify::{BackupIndex, Class, Counts, Report, SessionReport};
use mxkeys::history::date;
use mxkeys::history::fix::{self, Fetched};
use mxkeys::history::source::{self, PageOptions};
use mxkeys::progress::{Progress, Unit};
use mxkeys::room::event::{ReadError, ReadOptions, RoomEvent, read_events};
use mxkeys::session::sanitize;
use mxkeys::store::Access;
use serde_json::{Value, json};

use super::net::{self, KeySource, Missing, StoreUse};
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
    let since = a.since.as_deref().map(parse_date).transpose()?;
    let (report, extra) = if a.from_messages.is_empty() {
        check_online(ctx, &a, since)?
    } else {
        (check_offline(ctx, &a, since)?, Extra::default())
    };
    let code = if report.all_fine() {
        Code::Success
    } else {
        Code::Partial
    };
    if ctx.ui.json {
        let mut v = to_json(&report, &extra.names);
        if let Some(f) = &extra.fix {
            v["fix"] = fix_json(f);
        }
        ctx.ui.print_json(&v)?;
    } else {
        print_human(ctx, &report, &extra)?;
    }
    Ok(code)
}

/// A date flag's value, or a usage error saying what is accepted.
pub fn parse_date(s: &str) -> anyhow::Result<u64> {
    date::parse(s).map_err(|e| CliError::usage(e.to_string(), date::DATE_FORMS))
}

/// What an online check adds to the report: room names, what `--fix` did.
#[derive(Default)]
struct Extra {
    online: bool,
    names: BTreeMap<String, String>,
    fix: Option<FixSummary>,
    no_backup: bool,
}

struct FixSummary {
    version: String,
    fetched: Fetched,
    before: Counts,
    after: Counts,
}

fn check_offline(
    ctx: &Context<'_>,
    a: &HistoryCheckArgs,
    since: Option<u64>,
) -> anyhow::Result<Report> {
    if a.limit.is_some() {
        return Err(CliError::usage(
            "--limit counts the newest events of a room on the homeserver; saved responses have no order to count in",
            "drop --limit, or save fewer events",
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
            if let (Some(s), RoomEvent::Encrypted(e)) = (since, &ev)
                && e.origin_server_ts.is_some_and(|t| t < s)
            {
                return Ok(());
            }
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
    Ok(report)
}

/// Page `rooms` and check their events against the store (and the backup's index).
pub(crate) fn check_rooms(
    ctx: &Context<'_>,
    client: &mxkeys::client::Client,
    store: &mut mxkeys::store::Store,
    rooms: &[String],
    names: &BTreeMap<String, String>,
    backup: Option<BackupIndex>,
    opts: &PageOptions,
) -> anyhow::Result<Report> {
    let bar = ctx.ui.bar();
    let mut checker = Checker::new(Vec::new(), backup);
    for (i, room) in rooms.iter().enumerate() {
        let label = names
            .get(room)
            .map(|n| sanitize(n))
            .unwrap_or_else(|| sanitize(room));
        if rooms.len() > 1 {
            bar.set_subject(Some(&format!(
                "{label} (room {} of {})",
                i + 1,
                rooms.len()
            )));
        } else {
            bar.set_subject(Some(&label));
        }
        bar.phase("checking", opts.limit.unwrap_or(0), Unit::Events);
        let paged = source::room_events(client, room, opts, &bar, &mut |ev| {
            checker.feed(store, ev, &bar)
        })?;
        log::debug!(
            "{}: {} events in {} pages ({} outside the dates)",
            sanitize(room),
            paged.events,
            paged.pages,
            paged.outside_dates
        );
    }
    let report = checker.finish(store, &bar)?;
    bar.finish();
    Ok(report)
}

fn check_online(
    ctx: &Context<'_>,
    a: &HistoryCheckArgs,
    since: Option<u64>,
) -> anyhow::Result<(Report, Extra)> {
    let access = if a.fix { Access::Write } else { Access::Read };
    let mut conn = net::connect(ctx, &a.net, StoreUse::Required(access))?;
    let mut store = conn
        .store
        .take()
        .ok_or_else(|| anyhow::anyhow!("no store"))?;
    let client = &conn.client;
    let rooms = if a.rooms.is_empty() {
        client.joined_rooms()?
    } else {
        a.rooms.clone()
    };
    let mut extra = Extra {
        online: true,
        ..Extra::default()
    };
    for room in &rooms {
        match source::room_name(client, room) {
            Ok(Some(n)) => {
                extra.names.insert(room.clone(), n);
            }
            Ok(None) => {}
            // Not joined, or no such room: paging it says so with the hint that fits.
            Err(mxkeys::Error::Client(ClientError::Rejected { status: 403, .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The backup's metadata (which sessions, from which index) for these rooms; its key only
    // when --fix will need it, asked before any bar is drawn.
    let version = client.backup_version(None)?;
    extra.no_backup = version.is_none();
    let key = match (&version, a.fix) {
        (Some(v), true) => {
            conn.store = Some(store);
            let auth = net::auth_data(v)?;
            let got = net::backup_key(ctx, &conn, &a.secret, v, &auth, Missing::Usage, false)?;
            store = conn
                .store
                .take()
                .ok_or_else(|| anyhow::anyhow!("no store"))?;
            Some(got)
        }
        _ => None,
    };
    let client = &conn.client;
    let mut index = BackupIndex::new();
    if let Some(v) = &version {
        let bar = ctx.ui.bar();
        bar.phase("reading the backup's index", v.count, Unit::Keys);
        for room in &rooms {
            client.room_keys(&v.version, Some(room), None, &bar, &mut |k| {
                index.insert(&k.room_id, &k.session_id, k.data.first_message_index);
                Ok(())
            })?;
        }
        bar.finish();
    }
    let opts = PageOptions {
        dir: Direction::Backward,
        since_ms: since,
        until_ms: None,
        limit: a.limit,
        page_size: a.page_size,
    };
    let mut report = check_rooms(
        ctx,
        client,
        &mut store,
        &rooms,
        &extra.names,
        Some(index.clone()),
        &opts,
    )
    .map_err(|e| not_joined_hint(e, &rooms))?;
    if let (Some(v), Some((key, source))) = (&version, key) {
        let wanted = report.sessions_of(Class::InBackup);
        let before = report.counts;
        let mut fetched = Fetched::default();
        if !wanted.is_empty() {
            let bar = ctx.ui.bar();
            bar.phase(
                "downloading from the backup",
                wanted.len() as u64,
                Unit::Keys,
            );
            fetched = fix::fetch_into_store(client, &v.version, &key, &wanted, &mut store, &bar)?;
            bar.finish();
            if let KeySource::Given(_) = source {
                net::cache_key(ctx, Some(&store), &key);
            }
            let again: Vec<String> = {
                let mut r: Vec<String> = wanted.iter().map(|(r, _)| r.clone()).collect();
                r.dedup();
                r
            };
            let newer = check_rooms(
                ctx,
                client,
                &mut store,
                &again,
                &extra.names,
                Some(index),
                &opts,
            )?;
            report.replace_rooms(newer);
        }
        extra.fix = Some(FixSummary {
            version: v.version.clone(),
            fetched,
            before,
            after: report.counts,
        });
    }
    Ok((report, extra))
}

/// A 403 while paging a room named with --room: say that the account is not in it.
pub fn not_joined_hint(e: anyhow::Error, rooms: &[String]) -> anyhow::Error {
    match e.downcast_ref::<mxkeys::Error>() {
        Some(mxkeys::Error::Client(ClientError::Rejected {
            status: 403,
            message,
            ..
        })) => CliError::new(
            Code::NotFound,
            format!(
                "the homeserver refused the room's history: {}",
                sanitize(message)
            ),
            format!(
                "check the room id; the account must be joined (or have been) to read it: {}",
                rooms
                    .iter()
                    .map(|r| sanitize(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        _ => e,
    }
}

fn fix_json(f: &FixSummary) -> Value {
    json!({
        "version": f.version,
        "wanted": f.fetched.wanted,
        "downloaded": f.fetched.downloaded,
        "imported": f.fetched.merge.imported,
        "improved": f.fetched.merge.improved,
        "unchanged": f.fetched.merge.unchanged,
        "rejected": f.fetched.rejected,
        "before": f.before,
        "after": f.after,
    })
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

fn to_json(r: &Report, names: &BTreeMap<String, String>) -> Value {
    let rooms: Vec<Value> = r
        .rooms
        .iter()
        .map(|(room_id, room)| {
            json!({
                "room_id": room_id,
                "name": names.get(room_id),
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

fn utc(ms: u64) -> String {
    mxkeys::history::date::format_utc_minutes(ms)
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

fn advice(room_id: &str, s: &SessionReport, backup_checked: bool, online: bool) -> String {
    let sid = s.session_id.as_deref().unwrap_or("");
    match s.class {
        Class::InBackup if online => format!(
            "the server backup has it from index {}: mxkeys history check --fix (or mxkeys backup download --room {} --session {})",
            s.backup_first_index.unwrap_or(0),
            sh(&sanitize(room_id)),
            sh(&sanitize(sid)),
        ),
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

fn print_human(ctx: &Context<'_>, r: &Report, extra: &Extra) -> anyhow::Result<()> {
    let online = extra.online;
    let mut out = std::io::stdout().lock();
    for (room_id, room) in &r.rooms {
        let name = extra
            .names
            .get(room_id)
            .map(|n| format!(" ({})", sanitize(n)))
            .unwrap_or_default();
        writeln!(
            out,
            "{}{name}: {}: {}",
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
            writeln!(out, "    {}", advice(room_id, s, r.backup_checked, online))?;
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
    if let Some(f) = extra.fix.as_ref().filter(|f| f.fetched.wanted == 0) {
        ctx.ui.note(&format!(
            "--fix: backup version {} holds no session that would help.",
            sanitize(&f.version)
        ));
    } else if let Some(f) = &extra.fix {
        let rejected = f.fetched.rejected.len();
        ctx.ui.note(&format!(
            "--fix: {} of {} helping session{} downloaded from backup version {} ({} new in the store, {} improved{}); {} before, {} now.",
            f.fetched.downloaded,
            f.fetched.wanted,
            if f.fetched.wanted == 1 { "" } else { "s" },
            sanitize(&f.version),
            f.fetched.merge.imported,
            f.fetched.merge.improved,
            if rejected > 0 {
                format!(", {rejected} the backup key could not decrypt")
            } else {
                String::new()
            },
            counts_line(&f.before),
            counts_line(&f.after),
        ));
        for x in f.fetched.rejected.iter().take(10) {
            ctx.ui.warn(&format!(
                "session {} in {}: {}",
                sanitize(&x.session_id),
                sanitize(&x.room_id),
                x.reason
            ));
        }
    } else if r.counts.get(Class::InBackup) > 0 && online {
        ctx.ui
            .note("Run again with --fix to download the in_backup sessions into the store.");
    }
    if extra.no_backup && r.counts.not_fine() > 0 {
        ctx.ui
            .note("The account has no server backup: nothing more can come from there.");
    } else if !r.backup_checked && r.counts.not_fine() > 0 {
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
    fn shell_words() {
        assert_eq!(sh("abc/+="), "abc/+=");
        assert_eq!(sh("!r:x"), "'!r:x'");
        assert_eq!(sh("a'b"), r"'a'\''b'");
    }
}
