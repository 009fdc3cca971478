//! JSON lines: every event of every room, in order, one JSON object per line. Encrypted
//! events that decrypted are their merged view; every encrypted event has the `mxkeys`
//! annotation (class; for undecryptable ones the session id and the reason), unencrypted ones
//! `{"mxkeys": {"encrypted": false}}`. Edits, redactions and relations are left as events:
//! nothing is applied, nothing dropped.

use std::io::Write;

use super::Room;

/// Write `rooms` as JSON lines; returns the number of lines.
pub fn write(out: &mut dyn Write, rooms: &[Room]) -> std::io::Result<u64> {
    let mut n = 0;
    for room in rooms {
        for e in &room.events {
            serde_json::to_writer(&mut *out, &e.annotated())?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    Ok(n)
}
