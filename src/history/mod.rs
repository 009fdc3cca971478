//! Room history: which encrypted events the keys in hand decrypt, and why the others do not.
//!
//! [`classify`] gives each encrypted event one class and aggregates them per room and session;
//! [`check`] drives reading, decrypting in batches and classifying, in bounded memory.

pub mod check;
pub mod classify;
