//! `mxkeys history export`: the decrypted history of rooms as JSON lines, text or HTML, with
//! media saved beside it.

use std::cell::RefCell;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use mxkeys::client::Client;
use mxkeys::client::rooms::Direction;
use mxkeys::history::check::Checker;
use mxkeys::history::classify::{BackupIndex, Class};
use mxkeys::history::export::media::{self, ClientFetch, MediaCounts};
use mxkeys::history::export::txt::Names;
use mxkeys::history::export::{History, Room, Summary, html, jsonl, txt};
use mxkeys::history::source::{self, PageOptions};
use mxkeys::progress::{Progress, Unit};
use mxkeys::room::event::{ENCRYPTED, ReadError, ReadOptions, RoomEvent, parse_event, read_values};
use mxkeys::session::sanitize;
use mxkeys::store::{Access, Store};
use serde_json::{Map, Value, json};

use super::history::{EVENTS_HINT, not_joined_hint, parse_date, read_backup};
use super::net::{StoreUse, connect};
use super::{Context, Sink, check_stdin_once, open_input, output_label};
use crate::cli::exit::{CliError, Code};
use crate::cli::output::Bar;
use crate::cli::{HistoryExportArgs, HistoryFormat};

/// Run `history export`.
pub fn run(ctx: &Context<'_>, a: HistoryExportArgs) -> anyhow::Result<Code> {
    let to_stdout = a.output == Path::new("-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "refusing to write decrypted history to a terminal",
            "give -o a file name, or redirect stdout",
        ));
    }
    Sink::precheck(Some(&a.output), a.out.force)?;
    let since = a.since.as_deref().map(parse_date).transpose()?;
    let until = a.until.as_deref().map(parse_date).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(CliError::usage(
            "--since is after --until",
            "give --since the earlier date",
        ));
    }
    let online = a.from_messages.is_empty();
    if online && a.rooms.is_empty() {
        return Err(CliError::usage(
            "no room to export",
            "name each room with --room '!id:server' (its id is in the room's settings, Advanced), or give saved pages with --from-messages FILE",
        ));
    }
    let mut stdin_used = a.from_messages.clone();
    stdin_used.extend(a.backup_response.clone());
    let stdin_is_data = check_stdin_once(&stdin_used)?;
    // Online, and for media, the login (or a one-shot token) is needed too.
    let (mut store, client) = if online || a.media.is_some() {
        let mut conn = connect(ctx, &a.net, StoreUse::Required(Access::Read))?;
        let store = conn.store.take().ok_or_else(|| {
            CliError::new(
                Code::NotFound,
                "no key store",
                "run `mxkeys init` and import keys first",
            )
        })?;
        (store, Some(conn.client))
    } else {
        (ctx.open_store(Access::Read, stdin_is_data)?, None)
    };
    let bar = ctx.ui.bar();
    let backup = match (&a.backup_response, &client) {
        (Some(p), _) => {
            bar.phase("reading the backup response", 0, Unit::Keys);
            Some(read_backup(p, &bar)?)
        }
        (None, Some(c)) if online => backup_index(c, &a.rooms, &bar)?,
        _ => None,
    };
    let default_room = (a.rooms.len() == 1).then(|| a.rooms[0].clone());
    let history = History::new(a.rooms.clone(), default_room.clone()).with_dates(since, until);
    let (mut rooms, summary, names) = match &client {
        Some(c) if online => read_online(&a, c, &mut store, backup, history, (since, until), &bar)?,
        _ => {
            let (r, s) = read_offline(&a, &mut store, backup, history, default_room, &bar)?;
            (r, s, Names::new())
        }
    };
    let media_counts = match (&a.media, &client) {
        (Some(dir), Some(client)) => save_media(ctx, &mut rooms, dir, &a, client, &bar)?,
        _ => MediaCounts::default(),
    };
    bar.phase("writing", 0, Unit::Events);
    let mut sink = Sink::open(Some(&a.output), a.out.force)?;
    let label = output_label(Some(&a.output));
    let io = |e| mxkeys::Error::io(format!("writing {label}"), e);
    let written = match a.format {
        HistoryFormat::Jsonl => jsonl::write(&mut sink, &rooms),
        HistoryFormat::Txt => txt::write(&mut sink, &rooms, &names),
        HistoryFormat::Html => html::write(&mut sink, &rooms, &names),
    }
    .map_err(io)?;
    sink.flush().map_err(io)?;
    mxkeys::progress::check(&bar)?;
    sink.commit()?;
    bar.finish();
    ctx.ui.warn(&format!(
        "{label} holds decrypted message history and is not encrypted: keep it private"
    ));
    let partial = summary.counts.not_fine() > 0 || media_counts.failed > 0;
    if summary.counts.total() + summary.unencrypted == 0 {
        ctx.ui.warn("no events of the rooms asked for in the input");
    }
    if ctx.ui.json {
        let v = to_json(&label, &a, &rooms, &summary, written, &media_counts, &names);
        if to_stdout {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        print_human(
            ctx,
            &label,
            &rooms,
            &summary,
            &media_counts,
            a.media.as_deref(),
        );
    }
    Ok(if partial {
        Code::Partial
    } else {
        Code::Success
    })
}

/// The JSON of an encrypted event, kept for the export (its `unsigned` data and the clear-text
/// `m.relates_to`, which the parsed event does not keep).
fn original_of(value: &Value) -> Option<Map<String, Value>> {
    (value.get("type").and_then(Value::as_str) == Some(ENCRYPTED))
        .then(|| value.as_object().cloned())
        .flatten()
}

/// Hand one parsed event to the check, keeping its JSON when it is an encrypted event of a
/// room asked for.
fn feed(
    history: &RefCell<History>,
    checker: &mut Checker<'_>,
    store: &mut Store,
    ev: RoomEvent,
    original: Option<Map<String, Value>>,
    bar: &Bar,
) -> mxkeys::Result<()> {
    if let (RoomEvent::Encrypted(e), Some(o)) = (&ev, original) {
        let mut h = history.borrow_mut();
        if h.wants(&e.room_id) {
            h.keep_original(o);
        }
    }
    checker.feed(store, ev, bar)
}

/// Read the saved pages through the history check, gathering every event.
fn read_offline(
    a: &HistoryExportArgs,
    store: &mut Store,
    backup: Option<BackupIndex>,
    history: History,
    default_room: Option<String>,
    bar: &Bar,
) -> anyhow::Result<(Vec<Room>, Summary)> {
    let history = RefCell::new(history);
    let mut checker = Checker::new(a.rooms.clone(), backup)
        .with_event_observer(Box::new(|seen| history.borrow_mut().add(seen)));
    let opts = ReadOptions {
        default_room: default_room.clone(),
        ..ReadOptions::default()
    };
    for path in &a.from_messages {
        let input = open_input(path)?;
        let label = input.label;
        bar.set_subject(Some(&label));
        bar.phase("reading events in", 0, Unit::Events);
        let reader = BufReader::with_capacity(1 << 16, input.file);
        read_values(reader, &opts, &mut |index, value: Value| {
            let original = original_of(&value);
            let ev =
                parse_event(value, index, default_room.as_deref()).map_err(ReadError::Input)?;
            feed(&history, &mut checker, store, ev, original, bar).map_err(ReadError::Sink)
        })
        .map_err(|e| match e {
            ReadError::Input(e) => {
                CliError::new(Code::Invalid, format!("{label}: {e}"), EVENTS_HINT)
            }
            ReadError::Sink(e) => anyhow::Error::from(e),
        })?;
    }
    let report = checker.finish(store, bar)?;
    let (rooms, mut summary) = history.into_inner().finish();
    // Encrypted events of other rooms never reach the export: the check counted them.
    summary.other_rooms += report.other_rooms;
    Ok((rooms, summary))
}

/// Which sessions the server backup holds for `rooms`, from which index (no key needed), so
/// that the classes can say `in_backup`; `None` when the account has no backup.
fn backup_index(
    client: &Client,
    rooms: &[String],
    bar: &Bar,
) -> anyhow::Result<Option<BackupIndex>> {
    let Some(v) = client.backup_version(None)? else {
        return Ok(None);
    };
    bar.phase("reading the backup's index", v.count, Unit::Keys);
    let mut index = BackupIndex::new();
    for room in rooms {
        client.room_keys(&v.version, Some(room), None, bar, &mut |k| {
            index.insert(&k.room_id, &k.session_id, k.data.first_message_index);
            Ok(())
        })?;
    }
    Ok(Some(index))
}

/// Page through each room on the homeserver, oldest first, through the history check.
fn read_online(
    a: &HistoryExportArgs,
    client: &Client,
    store: &mut Store,
    backup: Option<BackupIndex>,
    history: History,
    (since, until): (Option<u64>, Option<u64>),
    bar: &Bar,
) -> anyhow::Result<(Vec<Room>, Summary, Names)> {
    let mut names = Names::new();
    for room in &a.rooms {
        let info =
            source::room_info(client, room).map_err(|e| not_joined_hint(e.into(), &a.rooms))?;
        names.insert(
            room.clone(),
            (info.name, info.display_names.into_iter().collect()),
        );
    }
    let history = RefCell::new(history);
    let mut checker = Checker::new(a.rooms.clone(), backup)
        .with_event_observer(Box::new(|seen| history.borrow_mut().add(seen)));
    let opts = PageOptions {
        dir: Direction::Forward,
        since_ms: since,
        until_ms: until,
        limit: None,
        page_size: source::DEFAULT_PAGE,
    };
    for (i, room) in a.rooms.iter().enumerate() {
        let label = names
            .get(room)
            .and_then(|(n, _)| n.clone())
            .unwrap_or_else(|| room.clone());
        let label = sanitize(&label);
        if a.rooms.len() > 1 {
            bar.set_subject(Some(&format!(
                "{label} (room {} of {})",
                i + 1,
                a.rooms.len()
            )));
        } else {
            bar.set_subject(Some(&label));
        }
        bar.phase("exporting", 0, Unit::Events);
        let paged = source::room_values(client, room, &opts, bar, &mut |index, value| {
            let original = original_of(&value);
            let ev = source::parse_page_event(value, index, room)?;
            feed(&history, &mut checker, store, ev, original, bar)
        })
        .map_err(|e| not_joined_hint(e.into(), &a.rooms))?;
        log::debug!(
            "{}: {} events in {} pages ({} outside the dates)",
            sanitize(room),
            paged.events,
            paged.pages,
            paged.outside_dates
        );
    }
    let report = checker.finish(store, bar)?;
    let (rooms, mut summary) = history.into_inner().finish();
    summary.other_rooms += report.other_rooms;
    Ok((rooms, summary, names))
}

/// Save every media item; paths in the output are relative to the output file when they can be.
fn save_media(
    ctx: &Context<'_>,
    rooms: &mut [Room],
    dir: &Path,
    a: &HistoryExportArgs,
    client: &mxkeys::client::Client,
    bar: &crate::cli::output::Bar,
) -> anyhow::Result<MediaCounts> {
    let base = mxkeys::fs::parent_dir(&a.output);
    let base_abs = std::fs::canonicalize(&base).unwrap_or(base);
    mxkeys::fs::create_private_dir(dir)
        .map_err(|e| mxkeys::Error::io(format!("creating {}", dir.display()), e))?;
    let dir_abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let shown_as = |p: &Path| -> PathBuf {
        let name = p.file_name().map(PathBuf::from).unwrap_or_default();
        match relative(&base_abs, &dir_abs) {
            Some(rel) => rel.join(name),
            None => dir_abs.join(name),
        }
    };
    let fetch = ClientFetch {
        client,
        max_bytes: a.max_media_bytes,
    };
    Ok(media::save_all(
        rooms,
        &dir_abs,
        &shown_as,
        &fetch,
        bar,
        &mut |w| ctx.ui.warn(w),
    )?)
}

/// `to` relative to `from` (both absolute), with `..` where needed.
fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return None;
    }
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    Some(p)
}

fn format_name(f: HistoryFormat) -> &'static str {
    match f {
        HistoryFormat::Jsonl => "jsonl",
        HistoryFormat::Txt => "txt",
        HistoryFormat::Html => "html",
    }
}

fn to_json(
    label: &str,
    a: &HistoryExportArgs,
    rooms: &[Room],
    s: &Summary,
    written: u64,
    m: &MediaCounts,
    names: &Names,
) -> Value {
    json!({
        "output": label,
        "format": format_name(a.format),
        "events": s.counts.total() + s.unencrypted,
        "written": written,
        "counts": s.counts,
        "unencrypted": s.unencrypted,
        "duplicates": s.duplicates,
        "other_rooms": s.other_rooms,
        "outside_dates": s.outside_dates,
        "rooms": rooms.iter().map(|r| json!({
            "room_id": r.room_id,
            "name": names.get(&r.room_id).and_then(|(n, _)| n.clone()),
            "events": r.events.len(),
        })).collect::<Vec<_>>(),
        "media": {
            "dir": a.media.as_ref().map(|d| d.display().to_string()),
            "saved": m.saved,
            "failed": m.failed,
        },
    })
}

fn print_human(
    ctx: &Context<'_>,
    label: &str,
    rooms: &[Room],
    s: &Summary,
    m: &MediaCounts,
    media_dir: Option<&Path>,
) {
    let counts: Vec<String> = Class::ALL
        .iter()
        .filter(|&&c| s.counts.get(c) > 0)
        .map(|&c| format!("{} {c}", s.counts.get(c)))
        .collect();
    let events = s.counts.total() + s.unencrypted;
    ctx.ui.note(&format!(
        "Exported {events} event{} of {} room{} to {label}: {} unencrypted{}{}.",
        if events == 1 { "" } else { "s" },
        rooms.len(),
        if rooms.len() == 1 { "" } else { "s" },
        s.unencrypted,
        if counts.is_empty() {
            String::new()
        } else {
            format!(", encrypted: {}", counts.join(", "))
        },
        if s.duplicates > 0 {
            format!("; {} repeated event(s) written once", s.duplicates)
        } else {
            String::new()
        }
    ));
    if let Some(d) = media_dir {
        ctx.ui.note(&format!(
            "Media: {} saved in {}, {} not saved.",
            m.saved,
            mxkeys::session::sanitize(&d.display().to_string()),
            m.failed
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/m")),
            Some(PathBuf::from("m"))
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/c")),
            Some(PathBuf::from("../c"))
        );
    }
}
