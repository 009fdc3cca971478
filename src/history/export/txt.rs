//! Plain text: one line per event, `[YYYY-MM-DD HH:MM] name: body` (UTC), edits applied and
//! marked `(edited)`, deleted messages, replies with what they reply to, membership, name and
//! topic changes in words, undecryptable events with their class. Control characters other
//! than newlines and tabs are replaced, so that a message cannot drive the terminal that shows
//! the file; continuation lines of a multi-line body are indented.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;

use super::{Event, Item, MediaNote, Room, Timeline, message_text, strip_reply_fallback, utc};

/// Display names and room names known beforehand, per room.
pub type Names = HashMap<String, (Option<String>, HashMap<String, String>)>;

/// Replace control characters (but newline and tab) with U+FFFD.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Where the media of `e` went, in words (empty when it has none).
pub fn media_words(e: &Event) -> String {
    e.media
        .iter()
        .map(|m: &MediaNote| match &m.outcome {
            Ok(p) => format!(" [saved as {}]", p.display()),
            Err(why) => format!(" [media not saved: {why}]"),
        })
        .collect()
}

/// The text of one item, without the time.
pub fn item_text(item: &Item<'_>) -> String {
    match item {
        Item::Message {
            event,
            who,
            content,
            edited,
            reply_to,
        } => {
            let mut body = message_text(content);
            if reply_to.is_some() {
                body = strip_reply_fallback(&body).to_owned();
            }
            let edited = if *edited { " (edited)" } else { "" };
            let reply = reply_to
                .as_ref()
                .map(|(w, s)| format!(" (in reply to {w}: \"{s}\")"))
                .unwrap_or_default();
            let media = if event.media.is_empty() {
                match content.get("file").or_else(|| content.get("url")) {
                    Some(Value::Object(f)) => f
                        .get("url")
                        .and_then(Value::as_str)
                        .map(|u| format!(" [{u}, not saved]"))
                        .unwrap_or_default(),
                    Some(Value::String(u)) => format!(" [{u}, not saved]"),
                    _ => String::new(),
                }
            } else {
                media_words(event)
            };
            match content.get("msgtype").and_then(Value::as_str) {
                Some("m.emote") => format!("* {who}{reply} {body}{edited}"),
                Some("m.image" | "m.file" | "m.video" | "m.audio" | "m.location") => {
                    format!("{who}{reply} {body}{media}{edited}")
                }
                Some("m.notice") => format!("{who} (notice){reply}: {body}{edited}"),
                _ => format!("{who}{reply}: {body}{media}{edited}"),
            }
        }
        Item::Redacted {
            who, by, reason, ..
        } => {
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            let reason = reason
                .as_ref()
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("{who}: (message deleted{by}{reason})")
        }
        Item::Undecryptable { event, who } => format!(
            "{who}: (undecryptable: {}{}{})",
            event.class.map(|c| c.as_str()).unwrap_or(""),
            event
                .session_id
                .as_ref()
                .map(|s| format!(", session {s}"))
                .unwrap_or_default(),
            event
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        Item::Notice { text, .. } => format!("* {text}"),
        Item::Other { event, who } => format!("{who}: (an event of type {})", event.ty()),
    }
}

fn event_of<'a>(item: &Item<'a>) -> &'a Event {
    match item {
        Item::Message { event, .. }
        | Item::Redacted { event, .. }
        | Item::Undecryptable { event, .. }
        | Item::Notice { event, .. }
        | Item::Other { event, .. } => event,
    }
}

/// The event an item shows.
pub fn event<'a>(item: &Item<'a>) -> &'a Event {
    event_of(item)
}

/// Write `rooms` as text; returns the number of lines of events.
pub fn write(out: &mut dyn Write, rooms: &[Room], names: &Names) -> std::io::Result<u64> {
    let mut n = 0;
    let empty = (None, HashMap::new());
    for (i, room) in rooms.iter().enumerate() {
        let (name, members) = names.get(&room.room_id).unwrap_or(&empty);
        let t = Timeline::new(room, members, name.clone());
        if i > 0 {
            writeln!(out)?;
        }
        match &t.name {
            Some(name) => writeln!(out, "# {} ({})", clean(name), clean(&room.room_id))?,
            None => writeln!(out, "# {}", clean(&room.room_id))?,
        }
        for item in &t.items {
            let e = event_of(item);
            let text = clean(&item_text(item)).replace('\n', "\n    ");
            writeln!(out, "[{}] {text}", utc(e.ts()))?;
            n += 1;
        }
    }
    Ok(n)
}
