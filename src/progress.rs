//! Progress reporting and cancellation for long work.
//!
//! The library never draws anything; it calls these hooks and the caller decides what to show.

/// A sink for progress and a source of cancellation.
pub trait Progress: Sync {
    /// A new phase begins; `total` is in the phase's unit (bytes or sessions), 0 if unknown.
    fn phase(&self, _name: &str, _total: u64) {}
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
