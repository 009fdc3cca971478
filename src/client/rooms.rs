//! Rooms on the homeserver: which ones the account joined, their history page by page
//! (`/rooms/{id}/messages`, both directions), the state that names them, and the jump to a
//! point in time (`timestamp_to_event` + `context`) that lets forward paging start at a date.
//!
//! Every call goes through the client's retry policy; page bodies are capped by what the
//! page size allows (a Matrix event is at most 64 KiB), never by trust in the server.

use serde::Deserialize;
use serde_json::Value;

use super::error::ClientError;
use super::{Client, MAX_SMALL_BODY, Method, encode};

/// Largest page a caller may ask for (Synapse serves at most 1000 events per page anyway).
pub const MAX_PAGE: u32 = 1000;
/// Most bytes of JSON per event accepted in a page (a PDU is at most 65,536 bytes; the
/// client-side form adds `unsigned`).
const MAX_EVENT_BYTES: u64 = 96 * 1024;

/// Which way to page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the newest event back in time (`dir=b`).
    Backward,
    /// From the oldest (or a given point) forward in time (`dir=f`).
    Forward,
}

impl Direction {
    fn as_param(self) -> &'static str {
        match self {
            Direction::Backward => "b",
            Direction::Forward => "f",
        }
    }
}

/// One page of `/rooms/{id}/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesPage {
    /// The events, in the paging direction.
    #[serde(default)]
    pub chunk: Vec<Value>,
    /// The token the page starts at.
    #[serde(default)]
    pub start: Option<String>,
    /// The token to continue from; `None` when the history ends here.
    #[serde(default)]
    pub end: Option<String>,
    /// State events the server adds (with lazy-loading filters).
    #[serde(default)]
    pub state: Vec<Value>,
}

/// Where a point in time falls in a room.
#[derive(Debug, Deserialize)]
pub struct TimestampEvent {
    /// The event closest to the time, in the asked direction.
    pub event_id: String,
    /// Its timestamp.
    pub origin_server_ts: u64,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

impl Client {
    fn url_v1(&self, path: &str) -> String {
        format!("{}/_matrix/client/v1/{path}", self.base)
    }

    /// `GET /joined_rooms`.
    pub fn joined_rooms(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct R {
            joined_rooms: Vec<String>,
        }
        let r: R = self.json(
            Method::Get,
            &self.url("joined_rooms"),
            None,
            "the joined rooms",
            true,
        )?;
        Ok(r.joined_rooms)
    }

    /// One page of a room's history: `limit` events (at most [`MAX_PAGE`]) from `from` (the
    /// start or end of the history when `None`, as `dir` says).
    pub fn messages(
        &self,
        room_id: &str,
        from: Option<&str>,
        dir: Direction,
        limit: u32,
    ) -> Result<MessagesPage, ClientError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut url = format!(
            "{}?dir={}&limit={limit}",
            self.url(&format!("rooms/{}/messages", encode(room_id))),
            dir.as_param()
        );
        if let Some(f) = from {
            url.push_str("&from=");
            url.push_str(&encode(f));
        }
        self.json_limited(
            Method::Get,
            &url,
            None,
            "the room's messages",
            true,
            u64::from(limit) * MAX_EVENT_BYTES + MAX_SMALL_BODY,
        )
    }

    /// The content of one state event (`None` when the room has no such state).
    pub fn state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Value>, ClientError> {
        let url = self.url(&format!(
            "rooms/{}/state/{}/{}",
            encode(room_id),
            encode(event_type),
            encode(state_key)
        ));
        match self.json(Method::Get, &url, None, "the room's state", true) {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The room's whole current state (names, members, encryption).
    pub fn room_state(&self, room_id: &str) -> Result<Vec<Value>, ClientError> {
        let url = self.url(&format!("rooms/{}/state", encode(room_id)));
        // Large rooms have tens of thousands of member events.
        self.json_limited(
            Method::Get,
            &url,
            None,
            "the room's state",
            true,
            256 * MAX_SMALL_BODY,
        )
    }

    /// `GET /_matrix/client/v1/rooms/{id}/timestamp_to_event`: the first event at or after
    /// (`Forward`) or at or before (`Backward`) `ts`; `None` when there is none, or when the
    /// server does not offer the endpoint.
    pub fn timestamp_to_event(
        &self,
        room_id: &str,
        ts: u64,
        dir: Direction,
    ) -> Result<Option<TimestampEvent>, ClientError> {
        let url = format!(
            "{}?ts={ts}&dir={}",
            self.url_v1(&format!("rooms/{}/timestamp_to_event", encode(room_id))),
            dir.as_param()
        );
        match self.json(Method::Get, &url, None, "the event at a time", true) {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(ClientError::Rejected {
                status: 400 | 405, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The pagination tokens around an event (`/rooms/{id}/context/{event}?limit=0`):
    /// `(start, end)`, where paging backward from `start` or forward from `end` goes on
    /// from the event.
    pub fn context_tokens(
        &self,
        room_id: &str,
        event_id: &str,
    ) -> Result<(Option<String>, Option<String>), ClientError> {
        let url = format!(
            "{}?limit=0",
            self.url(&format!(
                "rooms/{}/context/{}",
                encode(room_id),
                encode(event_id)
            ))
        );
        let c: Context = self.json(Method::Get, &url, None, "the event's context", true)?;
        Ok((c.start, c.end))
    }
}
