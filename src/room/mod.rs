//! Room events: reading saved `/messages` responses and event lists ([`event`]), Megolm
//! decryption of `m.room.encrypted` events with the store's sessions ([`megolm`]), and
//! encrypted attachments ([`attachment`]).

pub mod attachment;
pub mod event;
pub mod megolm;
