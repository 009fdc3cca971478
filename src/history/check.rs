//! The history check: events in, one class per encrypted event out, and the report.
//!
//! Encrypted events are gathered in batches of [`BATCH`], decrypted together (sorted by
//! session and index, sessions in parallel; see [`crate::room::megolm`]), classified, handed
//! to an optional observer in input order, and counted. A decrypted payload lives only until
//! the observer returns: memory is the batch plus the session cache plus the report, whatever
//! the length of the history.

use crate::progress::{self, Progress};
use crate::room::event::{EncryptedEvent, RoomEvent};
use crate::room::megolm::{Decryption, Decryptor, SessionSource};

use super::classify::{BackupIndex, Class, Report, classify};

/// Encrypted events decrypted together.
pub const BATCH: usize = 4096;

/// Sees every classified encrypted event, in input order (e.g. to export history).
pub type Observer<'o> = dyn FnMut(&EncryptedEvent, Class, &Decryption) + 'o;

/// A running history check.
pub struct Checker<'o> {
    decryptor: Decryptor,
    backup: Option<BackupIndex>,
    rooms: Vec<String>,
    pending: Vec<EncryptedEvent>,
    report: Report,
    observer: Option<Box<Observer<'o>>>,
}

impl std::fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'o> Checker<'o> {
    /// A check of the given rooms (all when empty), with the backup's index when known.
    pub fn new(rooms: Vec<String>, backup: Option<BackupIndex>) -> Self {
        Checker {
            decryptor: Decryptor::new(),
            report: Report {
                backup_checked: backup.is_some(),
                ..Report::default()
            },
            backup,
            rooms,
            pending: Vec::with_capacity(BATCH),
            observer: None,
        }
    }

    /// Call `f` for every classified event.
    pub fn with_observer(mut self, f: Box<Observer<'o>>) -> Self {
        self.observer = Some(f);
        self
    }

    /// Take one event of the input.
    pub fn feed(
        &mut self,
        source: &mut dyn SessionSource,
        event: RoomEvent,
        progress: &dyn Progress,
    ) -> crate::Result<()> {
        progress.advance(1);
        match event {
            RoomEvent::Other { .. } => self.report.unencrypted += 1,
            RoomEvent::Encrypted(e) => {
                if !self.rooms.is_empty() && !self.rooms.contains(&e.room_id) {
                    self.report.other_rooms += 1;
                    return Ok(());
                }
                self.pending.push(e);
                if self.pending.len() >= BATCH {
                    self.flush(source, progress)?;
                }
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        source: &mut dyn SessionSource,
        progress: &dyn Progress,
    ) -> crate::Result<()> {
        progress::check(progress)?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let results = self.decryptor.decrypt_batch(source, &self.pending)?;
        for (ev, d) in self.pending.drain(..).zip(results) {
            let class = classify(&ev, &d, self.backup.as_ref());
            let origin = ev
                .session_id()
                .and_then(|sid| self.decryptor.origin(&ev.room_id, sid));
            self.report
                .add(&ev, class, &d, origin, self.backup.as_ref());
            if let Some(o) = self.observer.as_mut() {
                o(&ev, class, &d);
            }
        }
        Ok(())
    }

    /// Decrypt what is pending and return the report.
    pub fn finish(
        mut self,
        source: &mut dyn SessionSource,
        progress: &dyn Progress,
    ) -> crate::Result<Report> {
        self.flush(source, progress)?;
        Ok(self.report)
    }
}
