//! The key-export file ("MEGOLM SESSION DATA"), read and written as streams.
//!
//! Reading takes three passes over a seekable source, so that memory stays bounded and no
//! plaintext byte leaves this module before the whole file's MAC has verified:
//!
//! 1. [`ExportReader::open`]: armor, base64, length, version and rounds are checked without a
//!    passphrase, so damaged or hostile files are refused before PBKDF2 runs.
//! 2. [`ExportReader::unlock`]: PBKDF2, then the HMAC over the whole file is verified.
//! 3. [`UnlockedExport::decrypt_to`]: AES-CTR decryption streams the plaintext out, and the
//!    HMAC is computed again so a file that changed since pass 2 is still caught.
//!
//! A source that cannot seek (a pipe) is first copied to an unlinked temporary file; it is
//! ciphertext, so nothing secret reaches the disk.

pub mod armor;
pub mod cipher;
pub mod json_array;

use std::io::{Read, Seek, SeekFrom, Write};

use zeroize::Zeroizing;

pub use armor::{ArmorInfo, LineEnding};
use cipher::{CtrState, ExportKeys, HEADER_LEN, HmacState, MAC_LEN, MIN_LEN};
pub use cipher::{DEFAULT_MAX_ROUNDS, DEFAULT_ROUNDS, Header, RECOMMENDED_MIN_ROUNDS};
pub use json_array::{ArraySplitter, Element, FeedError};

use crate::progress::{self, Progress};
use crate::secret::Passphrase;
use crate::session::ExportedSession;
use crate::{Error, Result};

/// A structural problem with an export file, found before any key is derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportFormatError {
    /// No header line.
    #[error("no \"-----BEGIN MEGOLM SESSION DATA-----\" header line{}", if *utf16 { " (the file looks like UTF-16 or binary; export files are ASCII text)" } else { "" })]
    MissingHeader {
        /// The first bytes suggest UTF-16 or binary data.
        utf16: bool,
    },
    /// The body ends without a footer line.
    #[error("no \"-----END MEGOLM SESSION DATA-----\" footer line; the file is truncated")]
    MissingFooter,
    /// A second header inside the body.
    #[error("a second header line at line {line} (two exports joined into one file?)")]
    DuplicateHeader {
        /// Line number, from 1.
        line: u64,
    },
    /// A character that is not base64 inside the body.
    #[error("bad base64 at line {line}: {what}")]
    InvalidBase64 {
        /// Line number, from 1.
        line: u64,
        /// Column, from 1 (0 when unknown).
        column: u64,
        /// What was found.
        what: String,
    },
    /// The base64 ends in the middle of a group.
    #[error("the base64 body is truncated (it ends in the middle of a group)")]
    TruncatedBase64,
    /// Fewer than 69 decoded bytes.
    #[error("too short: {0} bytes, while the smallest key export has 69")]
    TooShort(u64),
    /// Version byte other than 1.
    #[error("unsupported format version {0} (only version 1 exists)")]
    UnsupportedVersion(u8),
    /// Rounds field is zero.
    #[error("it asks for 0 PBKDF2 rounds, which no client writes")]
    ZeroRounds,
    /// Rounds above the caller's cap.
    #[error("it asks for {rounds} PBKDF2 rounds, more than the limit of {max}")]
    TooManyRounds {
        /// Rounds in the file.
        rounds: u32,
        /// The cap in force.
        max: u32,
    },
    /// More data than one CTR keystream covers (2^64 blocks): cannot happen with real files.
    #[error("more data than AES-CTR can process under one IV")]
    CounterExhausted,
    /// The file's content differed between reading passes.
    #[error("the file changed while it was being read")]
    ChangedWhileReading,
}

/// Caps on the work a file may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Highest PBKDF2 round count accepted.
    pub max_rounds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rounds: DEFAULT_MAX_ROUNDS,
        }
    }
}

/// What can be known about an export file without its passphrase.
#[derive(Debug, Clone)]
pub struct ExportInfo {
    /// Text layout.
    pub armor: ArmorInfo,
    /// Binary header (salt and IV are not secret).
    pub header: Header,
    /// Bytes the base64 body decodes to.
    pub decoded_len: u64,
    /// Size of the armored file in bytes.
    pub file_len: u64,
}

/// Average plaintext bytes per session in files written by Element and matrix-rust-sdk.
const BYTES_PER_SESSION: u64 = 579;

impl ExportInfo {
    /// Length of the encrypted JSON.
    pub fn ciphertext_len(&self) -> u64 {
        self.decoded_len.saturating_sub(MIN_LEN)
    }

    /// Rough number of sessions, from the ciphertext length.
    pub fn estimated_sessions(&self) -> u64 {
        let ct = self.ciphertext_len();
        if ct <= 2 {
            0
        } else {
            ((ct - 2) + BYTES_PER_SESSION / 2) / BYTES_PER_SESSION
        }
    }
}

/// A structurally valid export file, not yet unlocked.
#[derive(Debug)]
pub struct ExportReader<R> {
    src: R,
    info: ExportInfo,
}

fn rewind<R: Seek>(src: &mut R) -> Result<()> {
    src.seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|e| Error::io("reading the export file", e))
}

/// Walk the decoded bytes of the file from the start, calling `f(offset, chunk)`.
fn for_each_decoded<R: Read + Seek>(
    src: &mut R,
    progress: &dyn Progress,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    rewind(src)?;
    let mut dec = armor::ArmorDecoder::new(&mut *src);
    let mut off = 0u64;
    let mut reported = 0u64;
    while let Some(chunk) = dec.next_chunk()? {
        let n = chunk.len() as u64;
        f(off, chunk)?;
        off += n;
        let c = dec.consumed();
        progress.advance(c - reported);
        reported = c;
        progress::check(progress)?;
    }
    Ok(off)
}

impl<R: Read + Seek> ExportReader<R> {
    /// Pass 1: check armor, base64, length, version and rounds. No key is derived.
    pub fn open(mut src: R, limits: &Limits, progress: &dyn Progress) -> Result<Self> {
        let file_len = src
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("reading the export file", e))?;
        progress.phase("checking", file_len, crate::progress::Unit::Bytes);
        let mut head = Vec::with_capacity(HEADER_LEN);
        rewind(&mut src)?;
        let mut dec = armor::ArmorDecoder::new(&mut src);
        let mut len = 0u64;
        let mut reported = 0u64;
        while let Some(chunk) = dec.next_chunk()? {
            if head.len() < HEADER_LEN {
                let take = (HEADER_LEN - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                // Refuse a wrong version at once, without reading the rest of a big file.
                if head[0] != cipher::VERSION {
                    return Err(ExportFormatError::UnsupportedVersion(head[0]).into());
                }
                if head.len() == HEADER_LEN {
                    let mut hb = [0u8; HEADER_LEN];
                    hb.copy_from_slice(&head);
                    Header::parse(&hb).validate(limits.max_rounds)?;
                }
            }
            len += chunk.len() as u64;
            let c = dec.consumed();
            progress.advance(c - reported);
            reported = c;
            progress::check(progress)?;
        }
        let armor = dec.info().clone();
        drop(dec);
        if len < MIN_LEN {
            return Err(ExportFormatError::TooShort(len).into());
        }
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&head);
        let header = Header::parse(&hb);
        header.validate(limits.max_rounds)?;
        Ok(ExportReader {
            src,
            info: ExportInfo {
                armor,
                header,
                decoded_len: len,
                file_len,
            },
        })
    }

    /// What the file is.
    pub fn info(&self) -> &ExportInfo {
        &self.info
    }

    /// Derive the keys and verify the MAC over the whole file (pass 2).
    ///
    /// On a wrong passphrase the reader is handed back so the caller can try another one.
    #[allow(
        clippy::result_large_err,
        reason = "the reader is handed back for another try"
    )]
    pub fn unlock(
        mut self,
        passphrase: &Passphrase,
        progress: &dyn Progress,
    ) -> std::result::Result<UnlockedExport<R>, (Self, Error)> {
        let keys = ExportKeys::derive(passphrase, &self.info.header);
        match verify_mac(&mut self.src, &self.info, &keys, progress) {
            Ok(()) => Ok(UnlockedExport {
                src: self.src,
                info: self.info,
                keys,
            }),
            Err(e) => Err((self, e)),
        }
    }
}

/// Check the MAC over the decoded stream; `Ok` only if it verifies and the length matches.
fn verify_mac<R: Read + Seek>(
    src: &mut R,
    info: &ExportInfo,
    keys: &ExportKeys,
    progress: &dyn Progress,
) -> Result<()> {
    progress.phase("verifying", info.file_len, crate::progress::Unit::Bytes);
    let mut mac = keys.mac();
    let mut tag = Vec::with_capacity(MAC_LEN);
    let end = info.decoded_len - MAC_LEN as u64;
    let n = for_each_decoded(src, progress, |off, chunk| {
        mac_and_tag(&mut mac, &mut tag, end, off, chunk);
        Ok(())
    })?;
    if n != info.decoded_len {
        return Err(ExportFormatError::ChangedWhileReading.into());
    }
    if tag_ok(mac, &tag) {
        Ok(())
    } else {
        Err(Error::WrongPassphraseOrModified)
    }
}

/// Whether `tag` is the file's MAC (constant-time comparison).
///
/// Fuzzing only: a build with `--cfg fuzzing` (set by cargo-fuzz for the fuzz targets in
/// `fuzz/`) also accepts a tag of 32 zero bytes, so that the fuzzer can reach the JSON layer
/// behind the MAC, as vodozemac does. It is a compiler `cfg`, never a Cargo feature or an
/// environment variable, so no release or normal build can turn it on; the unit test
/// `all_zero_mac_is_rejected` pins that down.
fn tag_ok(mac: HmacState, tag: &[u8]) -> bool {
    #[cfg(fuzzing)]
    if tag.len() == MAC_LEN && tag.iter().all(|&b| b == 0) {
        return true;
    }
    mac.verify(tag)
}

/// Feed the part of `chunk` before `end` to the MAC and keep the part after it as the tag.
fn mac_and_tag(mac: &mut HmacState, tag: &mut Vec<u8>, end: u64, off: u64, chunk: &[u8]) {
    let split = end.saturating_sub(off).min(chunk.len() as u64) as usize;
    mac.update(&chunk[..split]);
    if tag.len() + (chunk.len() - split) <= MAC_LEN {
        tag.extend_from_slice(&chunk[split..]);
    }
}

/// An export file whose MAC has verified.
#[derive(Debug)]
pub struct UnlockedExport<R> {
    src: R,
    info: ExportInfo,
    keys: ExportKeys,
}

impl<R: Read + Seek> UnlockedExport<R> {
    /// What the file is.
    pub fn info(&self) -> &ExportInfo {
        &self.info
    }

    /// Pass 3: stream the plaintext to `sink` in chunks. The MAC is verified again at the end;
    /// callers commit nothing (file, store transaction) unless this returns `Ok`.
    pub fn decrypt_to(
        &mut self,
        progress: &dyn Progress,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        progress.phase(
            "decrypting",
            self.info.file_len,
            crate::progress::Unit::Bytes,
        );
        let mut mac = self.keys.mac();
        let mut ctr: CtrState = self.keys.cipher(&self.info.header.iv);
        let mut tag = Vec::with_capacity(MAC_LEN);
        let end = self.info.decoded_len - MAC_LEN as u64;
        let mut scratch = Zeroizing::new(Vec::with_capacity(64 * 1024));
        let n = for_each_decoded(&mut self.src, progress, |off, chunk| {
            mac_and_tag(&mut mac, &mut tag, end, off, chunk);
            // The ciphertext is [HEADER_LEN, end).
            let lo = (HEADER_LEN as u64)
                .saturating_sub(off)
                .min(chunk.len() as u64) as usize;
            let hi = end.saturating_sub(off).min(chunk.len() as u64) as usize;
            if lo < hi {
                scratch.clear();
                scratch.extend_from_slice(&chunk[lo..hi]);
                ctr.apply(&mut scratch)?;
                sink(&scratch)?;
                scratch.iter_mut().for_each(|b| *b = 0);
            }
            Ok(())
        })?;
        if n != self.info.decoded_len || !tag_ok(mac, &tag) {
            return Err(ExportFormatError::ChangedWhileReading.into());
        }
        Ok(())
    }

    /// Pass 3, parsed into validated sessions in batches (see [`crate::session::SessionStream`]).
    /// Returns the number of entries.
    pub fn for_each_session_batch(
        &mut self,
        progress: &dyn Progress,
        sink: &mut dyn FnMut(Vec<crate::session::ParsedEntry>) -> Result<()>,
    ) -> Result<usize> {
        let mut stream = crate::session::SessionStream::new(Error::NotAKeyExport, sink);
        self.decrypt_to(progress, &mut |pt| stream.feed(pt))?;
        stream.finish()
    }

    /// Pass 3, split into the elements of the JSON array. Returns the number of elements.
    ///
    /// A plaintext that is not a JSON array is [`Error::NotAKeyExport`].
    pub fn for_each_element(
        &mut self,
        progress: &dyn Progress,
        f: &mut dyn FnMut(Element<'_>) -> Result<()>,
    ) -> Result<usize> {
        let mut splitter = ArraySplitter::new();
        self.decrypt_to(progress, &mut |pt| {
            splitter.feed(pt, f).map_err(|e| match e {
                FeedError::Split(e) => Error::NotAKeyExport(format!("not a JSON array: {e}")),
                FeedError::Sink(e) => e,
            })
        })?;
        splitter
            .finish()
            .map_err(|e| Error::NotAKeyExport(format!("not a JSON array: {e}")))
    }
}

/// Make a seekable source out of any reader: a seekable file is used as is; anything else is
/// copied to an unlinked temporary file first (export files are ciphertext, so this puts no
/// secret on disk).
pub fn spool<R: Read>(mut input: R) -> Result<std::fs::File> {
    let mut f = tempfile::tempfile().map_err(|e| Error::io("creating a temporary file", e))?;
    std::io::copy(&mut input, &mut f).map_err(|e| Error::io("reading the input", e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("reading the input", e))?;
    Ok(f)
}

/// Writes an export file as a stream: armor, header, encrypted plaintext, MAC.
pub struct ExportWriter<W: Write> {
    armor: armor::ArmorEncoder<W>,
    ctr: CtrState,
    mac: HmacState,
    scratch: Zeroizing<Vec<u8>>,
}

impl<W: Write> std::fmt::Debug for ExportWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportWriter")
    }
}

impl<W: Write> ExportWriter<W> {
    /// A new file with a random salt and IV, encrypted under `passphrase` with `rounds`.
    pub fn new(out: W, passphrase: &Passphrase, rounds: u32) -> Result<Self> {
        let header = Header::random(rounds.max(1)).map_err(|e| Error::io("random salt", e))?;
        let keys = ExportKeys::derive(passphrase, &header);
        Self::with_keys(out, &keys, &header)
    }

    /// A new file with given keys and header (deterministic output, for tests and vectors).
    pub fn with_keys(out: W, keys: &ExportKeys, header: &Header) -> Result<Self> {
        let mut armor = armor::ArmorEncoder::new(out)?;
        let hb = header.to_bytes();
        let mut mac = keys.mac();
        mac.update(&hb);
        armor.write(&hb)?;
        Ok(ExportWriter {
            armor,
            ctr: keys.cipher(&header.iv),
            mac,
            scratch: Zeroizing::new(Vec::with_capacity(64 * 1024)),
        })
    }

    /// Encrypt and write plaintext bytes.
    pub fn write_plaintext(&mut self, pt: &[u8]) -> Result<()> {
        for chunk in pt.chunks(64 * 1024) {
            self.scratch.clear();
            self.scratch.extend_from_slice(chunk);
            self.ctr.apply(&mut self.scratch)?;
            self.mac.update(&self.scratch);
            self.armor.write(&self.scratch)?;
        }
        Ok(())
    }

    /// Write the MAC and the footer; returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        let tag = self.mac.finalize();
        self.armor.write(&tag)?;
        self.armor.finish()
    }
}

/// Writes sessions as the JSON array inside an export file.
pub struct SessionWriter<W: Write> {
    inner: ExportWriter<W>,
    buf: Zeroizing<Vec<u8>>,
    count: u64,
}

impl<W: Write> std::fmt::Debug for SessionWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWriter")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<W: Write> SessionWriter<W> {
    /// Start the array.
    pub fn new(inner: ExportWriter<W>) -> Self {
        let mut buf = Zeroizing::new(Vec::with_capacity(128 * 1024));
        buf.push(b'[');
        SessionWriter {
            inner,
            buf,
            count: 0,
        }
    }

    /// Append one session.
    pub fn push(&mut self, s: &ExportedSession) -> Result<()> {
        self.append(|buf| s.write_json(buf))
    }

    /// Append many sessions, in order.
    pub fn push_all(&mut self, sessions: &[ExportedSession]) -> Result<()> {
        for s in sessions {
            self.append(|buf| s.write_json(buf))?;
        }
        Ok(())
    }

    /// Add one array element (written by `write`), flushing every 64 KiB.
    fn append(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        if self.count > 0 {
            self.buf.push(b',');
        }
        write(&mut self.buf);
        self.count += 1;
        if self.buf.len() >= 64 * 1024 {
            self.inner.write_plaintext(&self.buf)?;
            self.buf.iter_mut().for_each(|b| *b = 0);
            self.buf.clear();
        }
        Ok(())
    }

    /// Sessions written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Close the array and the file.
    pub fn finish(mut self) -> Result<W> {
        self.buf.push(b']');
        self.inner.write_plaintext(&self.buf)?;
        let inner = std::mem::replace(&mut self.buf, Zeroizing::new(Vec::new()));
        drop(inner);
        self.inner.finish()
    }
}

/// A [`SessionWriter`] on a thread of its own: serialising, encrypting and writing a batch
/// overlap with whatever produces the next one (reading and validating an input file,
/// unsealing rows from the store). At most two batches wait between the two threads.
///
/// Dropping it without [`finish`](Self::finish) stops the thread and drops the inner writer
/// unfinished (an atomic output file is then never committed).
pub struct ThreadedSessionWriter<W: Write + Send + 'static> {
    to: Option<std::sync::mpsc::SyncSender<Vec<ExportedSession>>>,
    thread: Option<std::thread::JoinHandle<Result<SessionWriter<W>>>>,
    count: u64,
}

impl<W: Write + Send + 'static> std::fmt::Debug for ThreadedSessionWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedSessionWriter")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> ThreadedSessionWriter<W> {
    /// Start the array and the writing thread.
    pub fn new(inner: ExportWriter<W>) -> Self {
        let (to, from) = std::sync::mpsc::sync_channel::<Vec<ExportedSession>>(2);
        let thread = std::thread::spawn(move || {
            let mut w = SessionWriter::new(inner);
            for batch in from {
                w.push_all(&batch)?;
            }
            Ok(w)
        });
        ThreadedSessionWriter {
            to: Some(to),
            thread: Some(thread),
            count: 0,
        }
    }

    /// Queue a batch (blocks while two batches are already waiting).
    pub fn push_all(&mut self, sessions: Vec<ExportedSession>) -> Result<()> {
        let n = sessions.len() as u64;
        let sent = self.to.as_ref().map(|t| t.send(sessions).is_ok());
        if sent != Some(true) {
            // The thread stopped: it failed, and its error is the one to report.
            return Err(match self.join() {
                Err(e) => e,
                Ok(_) => Error::Interrupted,
            });
        }
        self.count += n;
        Ok(())
    }

    /// Sessions queued so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn join(&mut self) -> Result<SessionWriter<W>> {
        self.to = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            // The writing thread panicked (a bug): report it rather than unwind twice.
            Some(Err(_)) => Err(Error::io(
                "writing the export file",
                std::io::Error::other("the writing thread stopped unexpectedly"),
            )),
            None => Err(Error::Interrupted),
        }
    }

    /// Wait for every queued batch, then close the array and the file.
    pub fn finish(mut self) -> Result<W> {
        self.join()?.finish()
    }
}

impl<W: Write + Send + 'static> Drop for ThreadedSessionWriter<W> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use std::io::Cursor;

    fn write(pt: &[u8], pass: &str, rounds: u32) -> Vec<u8> {
        let mut w =
            ExportWriter::new(Vec::new(), &Passphrase::from_string(pass.into()), rounds).unwrap();
        w.write_plaintext(pt).unwrap();
        w.finish().unwrap()
    }

    fn read(file: &[u8], pass: &str) -> Result<Vec<u8>> {
        let r = ExportReader::open(Cursor::new(file), &Limits::default(), &NoProgress)?;
        let mut u = r
            .unlock(&Passphrase::from_string(pass.into()), &NoProgress)
            .map_err(|(_, e)| e)?;
        let mut out = Vec::new();
        u.decrypt_to(&NoProgress, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn round_trip_streaming() {
        for len in [0usize, 1, 95, 96, 97, 1000, 200_000] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let f = write(&pt, "pw", 1);
            assert_eq!(read(&f, "pw").unwrap(), pt, "len {len}");
            assert!(matches!(
                read(&f, "px"),
                Err(Error::WrongPassphraseOrModified)
            ));
        }
    }

    #[test]
    fn any_body_bit_flip_is_caught() {
        let f = write(b"[1,2,3]", "pw", 1);
        let text = String::from_utf8(f).unwrap();
        let body_line = text.lines().nth(1).unwrap().to_string();
        let decoded = cipher::tests_support::b64decode(&body_line);
        for byte in 0..decoded.len() {
            let mut d = decoded.clone();
            d[byte] ^= 0x10;
            let t = format!(
                "{}\n{}\n{}\n",
                armor::HEADER,
                cipher::tests_support::b64encode(&d),
                armor::FOOTER
            );
            let r = read(t.as_bytes(), "pw");
            assert!(r.is_err(), "flip in byte {byte} accepted");
        }
    }

    /// A well-formed file whose MAC is 32 zero bytes: what the `cfg(fuzzing)` bypass accepts.
    fn zero_mac_file(pt: &[u8], pass: &str) -> Vec<u8> {
        let header = Header::random(1).unwrap();
        let keys = ExportKeys::derive(&Passphrase::from_string(pass.into()), &header);
        let mut bin = cipher::seal(&keys, &header, pt).unwrap();
        let n = bin.len();
        bin[n - MAC_LEN..].fill(0);
        format!(
            "{}\n{}\n{}\n",
            armor::HEADER,
            cipher::tests_support::b64encode(&bin),
            armor::FOOTER
        )
        .into_bytes()
    }

    /// A source that serves `first` until it has been rewound `switch_after` times, then
    /// `then` (a file replaced between the reading passes).
    struct Swapping {
        first: Cursor<Vec<u8>>,
        then: Cursor<Vec<u8>>,
        rewinds: u32,
        switch_after: u32,
    }

    impl Read for Swapping {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.rewinds > self.switch_after {
                self.then.read(buf)
            } else {
                self.first.read(buf)
            }
        }
    }

    impl Seek for Swapping {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            if pos == SeekFrom::Start(0) {
                self.rewinds += 1;
            }
            self.first.seek(pos)?;
            self.then.seek(pos)
        }
    }

    /// The fuzzing-only MAC bypass is not in normal builds: an all-zero MAC is refused by the
    /// unlock pass and by the re-check at the end of decryption.
    #[cfg(not(fuzzing))]
    #[test]
    fn all_zero_mac_is_rejected() {
        let forged = zero_mac_file(b"[]", "pw");
        assert!(matches!(
            read(&forged, "pw"),
            Err(Error::WrongPassphraseOrModified)
        ));
        // Swapped for the forgery after unlock: the re-check in decrypt_to catches it. The
        // two files must have the same length (same header size, same plaintext length).
        let genuine = write(b"[]", "pw", 1);
        let forged = zero_mac_file(b"[]", "pw");
        assert_eq!(genuine.len(), forged.len());
        // open() seeks to the end and rewinds (1), then for_each_decoded rewinds for unlock
        // (2) and for decrypt_to (3).
        let src = Swapping {
            first: Cursor::new(genuine),
            then: Cursor::new(forged),
            rewinds: 0,
            switch_after: 2,
        };
        let r = ExportReader::open(src, &Limits::default(), &NoProgress).unwrap();
        let mut u = r
            .unlock(&Passphrase::from_string("pw".into()), &NoProgress)
            .map_err(|(_, e)| e)
            .unwrap();
        let e = u.decrypt_to(&NoProgress, &mut |_| Ok(())).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidExport(ExportFormatError::ChangedWhileReading)
            ),
            "{e:?}"
        );
    }

    #[test]
    fn estimate() {
        let info = |len| ExportInfo {
            armor: armor::ArmorDecoder::new(&b""[..]).info().clone(),
            header: Header::random(1).unwrap(),
            decoded_len: len,
            file_len: 0,
        };
        assert_eq!(info(69 + 2).estimated_sessions(), 0);
        assert_eq!(info(69 + 579_001).estimated_sessions(), 1000);
    }

    fn sample_sessions(n: usize) -> Vec<ExportedSession> {
        use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};
        (0..n)
            .map(|i| {
                let g = GroupSession::new(SessionConfig::version_1());
                let inbound =
                    InboundGroupSession::new(&g.session_key(), SessionConfig::version_1());
                let json = serde_json::json!({
                    "algorithm": "m.megolm.v1.aes-sha2",
                    "room_id": format!("!r{}:x", i % 3),
                    "sender_key": "DeHIg4gwhClxzFYcmNntPNF9YtsdZbmMy8+3kzCMXHA",
                    "session_id": g.session_id(),
                    "session_key": inbound.export_at_first_known_index().to_base64(),
                    "sender_claimed_keys": {"ed25519": "wJ7DzYIlwFghczuxFG7F4ugAK3IFjpSaC74MzLFC6ig"},
                    "forwarding_curve25519_key_chain": [],
                });
                ExportedSession::from_json(json.to_string().as_bytes()).unwrap()
            })
            .collect()
    }

    #[test]
    fn threaded_writer_writes_what_the_plain_one_writes() {
        let s = sample_sessions(7);
        let pass = Passphrase::from_string("p".into());
        let mut t = ThreadedSessionWriter::new(ExportWriter::new(Vec::new(), &pass, 1).unwrap());
        t.push_all(s[..3].to_vec()).unwrap();
        t.push_all(Vec::new()).unwrap();
        t.push_all(s[3..].to_vec()).unwrap();
        assert_eq!(t.count(), 7);
        let file = t.finish().unwrap();
        let json: Vec<serde_json::Value> =
            serde_json::from_slice(&read(&file, "p").unwrap()).unwrap();
        let ids: Vec<&str> = json
            .iter()
            .map(|v| v["session_id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = s.iter().map(|x| x.session_id.as_str()).collect();
        assert_eq!(ids, want);
    }

    /// A writer that fails once it has taken `room` bytes.
    #[derive(Debug)]
    struct Full {
        room: usize,
    }
    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if b.len() > self.room {
                return Err(std::io::Error::other("disk full"));
            }
            self.room -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn threaded_writer_reports_the_inner_error() {
        let s = sample_sessions(40);
        let pass = Passphrase::from_string("p".into());
        let mut t =
            ThreadedSessionWriter::new(ExportWriter::new(Full { room: 2000 }, &pass, 1).unwrap());
        // The failure surfaces on a later push or at the latest on finish, as the I/O error.
        let failed = (0..1000).find_map(|_| t.push_all(s[..2].to_vec()).err());
        let e = failed.unwrap_or_else(|| t.finish().unwrap_err());
        assert!(e.to_string().contains("disk full"), "{e}");
    }
}
