//! The rows of a table of pickled inbound sessions (nio, pantalaimon, mautrix-go), read one at
//! a time into a [`ReadSummary`]: a bad row is listed and skipped, and a key that opens none of
//! the rows is the wrong pickle key, not a store of damaged rows.

use std::path::Path;

use super::pickle::{self, Format, PickleError};
use super::{ClientStoreError, MAX_REJECTED_LISTED, ReadSummary, RejectedRow};
use crate::session::ExportedSession;

/// One row's session, as the table holds it.
pub(crate) struct PickledRow<'a> {
    /// The session id the row names (checked against the pickle's).
    pub session_id: &'a str,
    /// The room.
    pub room_id: &'a str,
    /// The Curve25519 key of the sending device.
    pub sender_key: &'a str,
    /// The Ed25519 key the sender claimed.
    pub claimed_ed25519: &'a str,
    /// The pickle.
    pub pickle: &'a [u8],
}

/// What has been read so far.
#[derive(Default)]
pub(crate) struct RowReader {
    /// The summary being built; readers add their own counts to it.
    pub summary: ReadSummary,
    seen: u64,
    undecryptable: u64,
}

impl RowReader {
    /// A reader whose summary starts as `summary`.
    pub(crate) fn new(summary: ReadSummary) -> RowReader {
        RowReader {
            summary,
            ..RowReader::default()
        }
    }

    /// List a skipped row (the first [`MAX_REJECTED_LISTED`] are kept).
    pub(crate) fn reject(&mut self, room_id: &str, session_id: &str, reason: String) {
        if self.summary.rejected.len() < MAX_REJECTED_LISTED {
            self.summary.rejected.push(RejectedRow {
                room_id: room_id.to_string(),
                session_id: session_id.to_string(),
                reason,
            });
        }
    }

    /// Unpickle one row with `key` (none: the row counts as unopened) and export it with the
    /// forwarding chain `chain` gives (asked only for a pickle that opened). `Ok(None)`: the
    /// row was skipped, and listed unless the key did not open it.
    pub(crate) fn read(
        &mut self,
        key: Option<&[u8]>,
        row: &PickledRow<'_>,
        chain: impl FnOnce() -> Result<Vec<String>, ClientStoreError>,
    ) -> Result<Option<ExportedSession>, ClientStoreError> {
        self.seen += 1;
        let Some(key) = key else {
            self.undecryptable += 1;
            return Ok(None);
        };
        let (session, format) = match pickle::inbound_session(row.pickle, key) {
            Ok(x) => x,
            Err(e) => {
                if e == PickleError::Undecryptable {
                    self.undecryptable += 1;
                }
                self.reject(row.room_id, row.session_id, e.to_string());
                return Ok(None);
            }
        };
        let chain = chain()?;
        match pickle::exported(
            &session,
            row.session_id,
            row.room_id,
            row.sender_key,
            Some(row.claimed_ed25519),
            &chain,
        ) {
            Ok(s) => {
                if format == Format::Libolm {
                    self.summary.libolm_pickles += 1;
                }
                self.summary.sessions += 1;
                Ok(Some(s))
            }
            Err(e) => {
                self.reject(row.room_id, row.session_id, e.to_string());
                Ok(None)
            }
        }
    }

    /// The summary; [`ClientStoreError::WrongPickleKey`] when rows were seen and the key
    /// opened none of them.
    pub(crate) fn finish(self, file: &Path) -> Result<ReadSummary, ClientStoreError> {
        if self.seen > 0 && self.undecryptable == self.seen {
            return Err(ClientStoreError::WrongPickleKey {
                path: file.display().to_string(),
            });
        }
        Ok(self.summary)
    }
}
