//! Room events: reading saved `/messages` responses and event lists ([`event`]), and Megolm
//! decryption of `m.room.encrypted` events with the store's sessions ([`megolm`]).

pub mod event;
pub mod megolm;
mod scan;
