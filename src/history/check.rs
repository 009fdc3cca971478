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

/// One event of the input as [`EventObserver`] sees it.
#[derive(Debug)]
pub enum Seen<'a> {
    /// An encrypted event of a room asked for, classified.
    Encrypted(&'a EncryptedEvent, Class, &'a Decryption),
    /// Any other event (of any room), with its position in its input.
    Other(u64, serde_json::Map<String, serde_json::Value>),
}

/// Sees every event, encrypted or not, in input order (history export). Its error stops the
/// check.
pub type EventObserver<'o> = dyn FnMut(Seen<'_>) -> crate::Result<()> + 'o;

/// An unencrypted event held back, with the number of encrypted events pending before it.
type Held = (usize, RoomEvent);

/// A running history check.
pub struct Checker<'o> {
    decryptor: Decryptor,
    backup: Option<BackupIndex>,
    rooms: Vec<String>,
    pending: Vec<EncryptedEvent>,
    report: Report,
    observer: Option<Box<Observer<'o>>>,
    /// With an event observer: the unencrypted events waiting for the encrypted ones before
    /// them, each with the number of encrypted events pending before it.
    events: Option<(Box<EventObserver<'o>>, Vec<Held>)>,
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
            events: None,
        }
    }

    /// Call `f` for every event of the input, encrypted or not, in input order.
    pub fn with_event_observer(mut self, f: Box<EventObserver<'o>>) -> Self {
        self.events = Some((f, Vec::new()));
        self
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
            RoomEvent::Other { .. } => {
                self.report.unencrypted += 1;
                if let Some((_, others)) = self.events.as_mut() {
                    others.push((self.pending.len(), event));
                    if others.len() >= BATCH {
                        self.flush(source, progress)?;
                    }
                }
            }
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
        let mut events = self
            .events
            .as_mut()
            .map(|e| (&mut e.0, e.1.drain(..).peekable()));
        if self.pending.is_empty() {
            return emit_others(events.as_mut(), usize::MAX);
        }
        let results = self.decryptor.decrypt_batch(source, &self.pending)?;
        for (i, (ev, d)) in self.pending.drain(..).zip(results).enumerate() {
            emit_others(events.as_mut(), i)?;
            let class = classify(&ev, &d, self.backup.as_ref());
            let origin = ev
                .session_id()
                .and_then(|sid| self.decryptor.origin(&ev.room_id, sid));
            self.report
                .add(&ev, class, &d, origin, self.backup.as_ref());
            if let Some(o) = self.observer.as_mut() {
                o(&ev, class, &d);
            }
            if let Some((f, _)) = events.as_mut() {
                f(Seen::Encrypted(&ev, class, &d))?;
            }
        }
        emit_others(events.as_mut(), usize::MAX)
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

/// The event observer and the unencrypted events waiting for it, during a flush.
type Waiting<'a, 'o> = (
    &'a mut Box<EventObserver<'o>>,
    std::iter::Peekable<std::vec::Drain<'a, (usize, RoomEvent)>>,
);

/// Hand the event observer the unencrypted events that came before encrypted event `upto`.
fn emit_others(events: Option<&mut Waiting<'_, '_>>, upto: usize) -> crate::Result<()> {
    let Some((f, others)) = events else {
        return Ok(());
    };
    while let Some((_, RoomEvent::Other { index, event })) = others.next_if(|(at, _)| *at <= upto) {
        f(Seen::Other(index, event))?;
    }
    Ok(())
}
