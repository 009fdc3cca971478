//! Reading a key store's SQLite file directly (read-only), to compare its state before and
//! after a run without going through mxkeys.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// The store's database, opened read-only.
pub fn open(store: &Path) -> Connection {
    Connection::open_with_flags(store.join("keys.sqlite3"), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
}

/// Every row of the store, byte for byte (sessions with their sealed data, secrets, meta).
pub fn rows(store: &Path) -> Vec<String> {
    let conn = open(store);
    let mut rows = Vec::new();
    for sql in [
        "SELECT s.key_hash || '|' || s.room_id || '|' || s.session_id || '|' || s.first_index || '|' || s.sender_key || '|' || hex(d.data) || '|' || s.updated_at FROM sessions s JOIN session_data d ON d.id = s.id ORDER BY s.id",
        "SELECT name || '|' || hex(data) || '|' || updated_at FROM secrets ORDER BY name",
        "SELECT key || '|' || hex(value) FROM meta ORDER BY key",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        let r = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.extend(r.map(|x| x.unwrap()));
    }
    rows
}
