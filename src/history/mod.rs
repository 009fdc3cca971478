//! Room history: which encrypted events the keys in hand decrypt, and why the others do not;
//! and the decrypted history itself.
//!
//! [`classify`] gives each encrypted event one class and aggregates them per room and session;
//! [`check`] drives reading, decrypting in batches and classifying, in bounded memory;
//! [`source`] pages a room's history from the homeserver; [`fix`] fetches from the server
//! backup the sessions a check found there; [`date`] reads and writes dates; [`export`] writes
//! the decrypted history as JSON lines, text or HTML.

pub mod check;
pub mod classify;
pub mod date;
pub mod export;
pub mod fix;
pub mod source;
