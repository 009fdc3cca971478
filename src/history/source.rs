//! A room's history from the homeserver, as a stream of [`RoomEvent`]s: `/messages` paged in
//! either direction, bounded by dates and a count, with the next page fetched while the
//! caller works on the current one (the server sets the pace, not the decryption).
//!
//! Backward paging (newest first) suits the check: `--limit N` means the N newest events, and
//! paging stops at the first page older than `--since`. Forward paging (oldest first) suits an
//! archive: it starts at the beginning of the room, or just before `since` found through
//! `timestamp_to_event` when the server has it.

use std::collections::HashMap;
use std::sync::mpsc;

use serde_json::Value;

use crate::client::Client;
use crate::client::error::ClientError;
use crate::client::rooms::{Direction, MAX_PAGE, MessagesPage};
use crate::progress::{self, Progress};
use crate::room::event::{RoomEvent, parse_event};

/// Events per `/messages` page unless told otherwise.
pub const DEFAULT_PAGE: u32 = 500;

/// What to page through.
#[derive(Debug, Clone)]
pub struct PageOptions {
    /// The direction.
    pub dir: Direction,
    /// Only events at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only events at or before this time (ms).
    pub until_ms: Option<u64>,
    /// At most this many events (the newest when paging backward, the oldest forward).
    pub limit: Option<u64>,
    /// Events per page (1 to [`MAX_PAGE`]).
    pub page_size: u32,
}

impl Default for PageOptions {
    fn default() -> Self {
        PageOptions {
            dir: Direction::Backward,
            since_ms: None,
            until_ms: None,
            limit: None,
            page_size: DEFAULT_PAGE,
        }
    }
}

/// What paging a room did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paged {
    /// Events handed to the caller.
    pub events: u64,
    /// Pages fetched.
    pub pages: u64,
    /// Events the server sent that were outside the dates.
    pub outside_dates: u64,
    /// Paging reached the start of the room (backward) or its newest event (forward), or
    /// the date bound; `false` when it stopped at `limit`.
    pub complete: bool,
}

/// Is `ts` within the dates? Events without a timestamp are kept.
fn within(opts: &PageOptions, ts: Option<u64>) -> bool {
    match ts {
        None => true,
        Some(t) => opts.since_ms.is_none_or(|s| t >= s) && opts.until_ms.is_none_or(|u| t <= u),
    }
}

/// Is every event of the page past the far date bound (older than `since` going back, newer
/// than `until` going forward)? Then paging can stop.
fn past_bound(opts: &PageOptions, chunk: &[Value]) -> bool {
    let ts = |e: &Value| e.get("origin_server_ts").and_then(Value::as_u64);
    match opts.dir {
        Direction::Backward => opts.since_ms.is_some_and(|s| {
            !chunk.is_empty() && chunk.iter().all(|e| ts(e).is_some_and(|t| t < s))
        }),
        Direction::Forward => opts.until_ms.is_some_and(|u| {
            !chunk.is_empty() && chunk.iter().all(|e| ts(e).is_some_and(|t| t > u))
        }),
    }
}

/// The token to start forward paging at for `since`: just after the last event before it.
fn forward_start(
    client: &Client,
    room_id: &str,
    since: u64,
) -> Result<Option<String>, ClientError> {
    let Some(before) =
        client.timestamp_to_event(room_id, since.saturating_sub(1), Direction::Backward)?
    else {
        return Ok(None);
    };
    if before.origin_server_ts >= since {
        return Ok(None);
    }
    Ok(client.context_tokens(room_id, &before.event_id)?.1)
}

/// Page through one room, calling `f` with every event in paging order. Events without a
/// `room_id` get the room's. Stops early (without error) when `f` fails, returning its error.
pub fn room_events(
    client: &Client,
    room_id: &str,
    opts: &PageOptions,
    progress: &dyn Progress,
    f: &mut dyn FnMut(RoomEvent) -> crate::Result<()>,
) -> crate::Result<Paged> {
    room_values(client, room_id, opts, progress, &mut |index, value| {
        f(parse_page_event(value, index, room_id)?)
    })
}

/// One event of a `/messages` page as a [`RoomEvent`] (`index`: its position in the paging).
pub fn parse_page_event(value: Value, index: u64, room_id: &str) -> crate::Result<RoomEvent> {
    parse_event(value, index, Some(room_id)).map_err(|e| {
        crate::Error::Client(ClientError::BadResponse {
            what: "the room's messages".into(),
            reason: e.to_string(),
        })
    })
}

/// [`room_events`] before parsing: every event as the JSON the server sent, with its position,
/// for callers that keep more of an event than [`RoomEvent`] does (history export).
pub fn room_values(
    client: &Client,
    room_id: &str,
    opts: &PageOptions,
    progress: &dyn Progress,
    f: &mut dyn FnMut(u64, Value) -> crate::Result<()>,
) -> crate::Result<Paged> {
    let page_size = opts.page_size.clamp(1, MAX_PAGE);
    let first_from = match (opts.dir, opts.since_ms) {
        (Direction::Forward, Some(s)) => forward_start(client, room_id, s)?,
        _ => None,
    };
    let mut paged = Paged::default();
    let mut index = 0u64;
    std::thread::scope(|scope| -> crate::Result<Paged> {
        // The pager runs one page ahead: a bounded channel of one page.
        let (tx, rx) = mpsc::sync_channel::<Result<MessagesPage, ClientError>>(1);
        let dir = opts.dir;
        scope.spawn(move || {
            let mut from = first_from;
            // A server that hands back a token it gave before would loop forever.
            let mut seen = std::collections::HashSet::new();
            loop {
                let page = client.messages(room_id, from.as_deref(), dir, page_size);
                let next = match &page {
                    Ok(p) if !p.chunk.is_empty() => p.end.clone(),
                    _ => None,
                };
                if tx.send(page).is_err() {
                    return;
                }
                match next {
                    Some(n) if Some(&n) != from.as_ref() && seen.insert(n.clone()) => {
                        from = Some(n)
                    }
                    _ => return,
                }
            }
        });
        for page in rx {
            let page = page?;
            paged.pages += 1;
            progress::check(progress)?;
            let stop_after = past_bound(opts, &page.chunk);
            let last = page.end.is_none() || page.chunk.is_empty();
            for value in page.chunk {
                let ts = value.get("origin_server_ts").and_then(Value::as_u64);
                if !within(opts, ts) {
                    paged.outside_dates += 1;
                    continue;
                }
                if opts.limit.is_some_and(|l| paged.events >= l) {
                    return Ok(paged);
                }
                let at = index;
                index += 1;
                paged.events += 1;
                f(at, value)?;
            }
            if stop_after || last {
                paged.complete = true;
                return Ok(paged);
            }
        }
        paged.complete = true;
        Ok(paged)
    })
}

/// What names a room and its members.
#[derive(Debug, Clone, Default)]
pub struct RoomInfo {
    /// `m.room.name`, else the canonical alias.
    pub name: Option<String>,
    /// Current display names by user id.
    pub display_names: HashMap<String, String>,
}

/// The room's name (`m.room.name`, else its canonical alias), from two small state requests.
pub fn room_name(client: &Client, room_id: &str) -> crate::Result<Option<String>> {
    let s = |v: Option<Value>, k: &str| {
        v.and_then(|v| v.get(k).and_then(Value::as_str).map(str::to_owned))
            .filter(|n| !n.is_empty())
    };
    if let Some(n) = s(client.state_event(room_id, "m.room.name", "")?, "name") {
        return Ok(Some(n));
    }
    Ok(s(
        client.state_event(room_id, "m.room.canonical_alias", "")?,
        "alias",
    ))
}

/// The room's name and its members' display names, from its current state.
pub fn room_info(client: &Client, room_id: &str) -> crate::Result<RoomInfo> {
    let state = client.room_state(room_id)?;
    let mut info = RoomInfo::default();
    let mut alias = None;
    for ev in &state {
        let ty = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let content = ev.get("content");
        let field = |k: &str| {
            content
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match ty {
            "m.room.name" => info.name = field("name"),
            "m.room.canonical_alias" => alias = field("alias"),
            "m.room.member" => {
                if let (Some(user), Some(name)) = (
                    ev.get("state_key").and_then(Value::as_str),
                    field("displayname"),
                ) {
                    info.display_names.insert(user.to_owned(), name);
                }
            }
            _ => {}
        }
    }
    if info.name.is_none() {
        info.name = alias;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_filter_and_bound() {
        let o = PageOptions {
            since_ms: Some(100),
            until_ms: Some(200),
            ..PageOptions::default()
        };
        assert!(within(&o, Some(100)) && within(&o, Some(200)) && within(&o, None));
        assert!(!within(&o, Some(99)) && !within(&o, Some(201)));
        let old = [
            json!({"origin_server_ts": 50}),
            json!({"origin_server_ts": 99}),
        ];
        let mixed = [
            json!({"origin_server_ts": 150}),
            json!({"origin_server_ts": 99}),
        ];
        assert!(past_bound(&o, &old));
        assert!(!past_bound(&o, &mixed));
        assert!(!past_bound(&o, &[]));
        let f = PageOptions {
            dir: Direction::Forward,
            ..o
        };
        assert!(past_bound(&f, &[json!({"origin_server_ts": 201})]));
        assert!(!past_bound(&f, &old));
    }
}
