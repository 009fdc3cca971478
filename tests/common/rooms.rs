//! Rooms on the test homeserver: encrypted rooms, their members, `m.room.encrypted` events sent
//! into them by a real sender (Megolm messages made by vodozemac's `GroupSession`, through
//! [`GenSession`]), and their history read back with `/messages`.
//!
//! The sender is always a user of his own (with his registration's device); the account whose
//! history is checked is another user, who joins after being invited.

use serde_json::{Value, json};

use super::backup_cipher::{b64d, b64e};
use super::megolm::GenSession;
use super::synapse::{Api, Hs, User, enc, unique_name};

impl Api {
    /// `POST /createRoom`: a private room (invite only, history visible to every member, from
    /// before he joined too) with `m.room.encryption` (Megolm) in its initial state; its id.
    pub fn create_encrypted_room(&self) -> String {
        let v = self.ok(
            "POST",
            "createRoom",
            Some(&json!({
                "preset": "private_chat",
                "initial_state": [{
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }],
            })),
        );
        v["room_id"]
            .as_str()
            .expect("createRoom: room_id")
            .to_string()
    }

    /// `POST /rooms/{room}/invite` of `user_id`.
    pub fn invite(&self, room: &str, user_id: &str) {
        self.ok(
            "POST",
            &format!("rooms/{}/invite", enc(room)),
            Some(&json!({ "user_id": user_id })),
        );
    }

    /// `POST /join/{room}`.
    pub fn join(&self, room: &str) {
        self.ok("POST", &format!("join/{}", enc(room)), Some(&json!({})));
    }

    /// `PUT /rooms/{room}/send/{type}/{txn}` with `content` (a fresh transaction id); the
    /// event id.
    pub fn send_event(&self, room: &str, ty: &str, content: &Value) -> String {
        let v = self.ok(
            "PUT",
            &format!(
                "rooms/{}/send/{}/{}",
                enc(room),
                enc(ty),
                enc(&unique_name("txn"))
            ),
            Some(content),
        );
        v["event_id"].as_str().expect("send: event_id").to_string()
    }

    /// `PUT /rooms/{room}/state/{type}/{state_key}` with `content`.
    pub fn put_state(&self, room: &str, ty: &str, state_key: &str, content: &Value) {
        self.ok(
            "PUT",
            &format!("rooms/{}/state/{}/{}", enc(room), enc(ty), enc(state_key)),
            Some(content),
        );
    }

    /// Name `room` (`m.room.name`).
    pub fn name_room(&self, room: &str, name: &str) {
        self.put_state(room, "m.room.name", "", &json!({ "name": name }));
    }

    /// `GET /rooms/{room}/messages?dir=b&limit=LIMIT[&from=FROM]`: one page.
    pub fn messages_page(&self, room: &str, from: Option<&str>, limit: u32) -> Value {
        let mut path = format!("rooms/{}/messages?dir=b&limit={limit}", enc(room));
        if let Some(f) = from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        self.ok("GET", &path, None)
    }

    /// The whole history of `room` as this user sees it, newest first: `/messages` paged
    /// backwards `limit` events at a time until a page has no `end`.
    pub fn history(&self, room: &str, limit: u32) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let page = self.messages_page(room, from.as_deref(), limit);
            events.extend(page["chunk"].as_array().cloned().unwrap_or_default());
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_string()),
                None => return events,
            }
        }
    }

    /// The `m.room.encrypted` events of [`Api::history`], newest first.
    pub fn encrypted_history(&self, room: &str) -> Vec<Value> {
        self.history(room, 100)
            .into_iter()
            .filter(|e| e["type"] == "m.room.encrypted")
            .collect()
    }

    /// `GET /joined_rooms`, sorted.
    pub fn joined_rooms(&self) -> Vec<String> {
        let v = self.ok("GET", "joined_rooms", None);
        let mut rooms: Vec<String> = v["joined_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        rooms.sort();
        rooms
    }
}

/// A user who sends encrypted events from his own device (the one registration made).
pub struct Sender {
    /// The user.
    pub user: User,
    /// His API access.
    pub api: Api,
}

impl Sender {
    /// A freshly registered sender.
    pub fn register(hs: &Hs, prefix: &str) -> Sender {
        let user = hs.register(prefix);
        Sender {
            api: hs.api(&user),
            user,
        }
    }

    /// A new encrypted room of his; its id.
    pub fn create_room(&self) -> String {
        self.api.create_encrypted_room()
    }

    /// Invite `member` into `room`, and let him join.
    pub fn add_member(&self, room: &str, member: &Api, member_id: &str) {
        self.api.invite(room, member_id);
        member.join(room);
    }

    /// Send the next message of `session` (`body`, encrypted for the session's room) from his
    /// device; the event id.
    pub fn send_megolm(&self, session: &mut GenSession, body: &str) -> String {
        let content = session.room_message(body, &self.user.device_id);
        self.send_encrypted(&session.room_id, &content)
    }

    /// `count` messages of `session`, bodies `{tag}{index}`; their event ids, oldest first.
    pub fn send_many(&self, session: &mut GenSession, tag: &str, count: u32) -> Vec<String> {
        (0..count)
            .map(|_| {
                let body = format!("{tag}{}", session.next_index());
                self.send_megolm(session, &body)
            })
            .collect()
    }

    /// Send an `m.room.encrypted` event with exactly this content; the event id.
    pub fn send_encrypted(&self, room: &str, content: &Value) -> String {
        self.api.send_event(room, "m.room.encrypted", content)
    }
}

/// `content` (of an `m.room.encrypted` Megolm event) with one byte of its Megolm message
/// flipped, inside the encrypted part: the message's signature no longer matches.
pub fn tampered(content: &Value) -> Value {
    let mut bytes = b64d(content["ciphertext"].as_str().expect("a Megolm ciphertext"));
    bytes[12] ^= 0x01;
    let mut c = content.clone();
    c["ciphertext"] = b64e(&bytes).into();
    c
}

/// The content of an `m.room.encrypted` event of an algorithm mxkeys does not decrypt, with
/// the fields an Olm-encrypted content has.
pub fn foreign_algorithm_content(algorithm: &str, sender_key: &str) -> Value {
    json!({
        "algorithm": algorithm,
        "sender_key": sender_key,
        "ciphertext": {sender_key: {"type": 0, "body": "AwogFm9yZWlnbg"}},
    })
}
