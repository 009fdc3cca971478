//! Progress reporting and cancellation for long work.
//!
//! The library never draws anything; it calls these hooks and the caller decides what to show.

/// What a phase counts, so that a display can show sensible units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of a file or a response.
    Bytes,
    /// Room keys (Megolm sessions).
    Keys,
    /// Room events.
    Events,
    /// Rooms.
    Rooms,
}

impl Unit {
    /// The plural noun for counts of this unit ("keys"); empty for bytes.
    pub fn noun(self) -> &'static str {
        match self {
            Unit::Bytes => "",
            Unit::Keys => "keys",
            Unit::Events => "events",
            Unit::Rooms => "rooms",
        }
    }
}

/// A sink for progress and a source of cancellation.
pub trait Progress: Sync {
    /// A new phase of work begins (`name` is a present participle: "decrypting"); `total` is
    /// in `unit`, 0 if unknown.
    fn phase(&self, _name: &str, _total: u64, _unit: Unit) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// True when the user asked to stop (Ctrl-C); long loops check this and return
    /// [`crate::Error::Interrupted`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that reports nothing and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Return `Err(Interrupted)` when the user asked to stop.
pub fn check(p: &dyn Progress) -> crate::Result<()> {
    if p.cancelled() {
        Err(crate::Error::Interrupted)
    } else {
        Ok(())
    }
}
