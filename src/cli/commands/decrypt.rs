//! `mxkeys decrypt`: an export file to its plaintext JSON array of sessions.
//!
//! Without `--raw`, the plaintext must be UTF-8 JSON: an array whose elements are checked as
//! sessions, the same way `import` checks them. When every element is a session, the output is
//! the plaintext exactly as it was encrypted; elements that are not sessions are reported and
//! left out (exit code 3), the others are written byte for byte. `--raw` writes the plaintext as
//! it is, whatever it holds.

use std::io::{IsTerminal, Write};

use mxkeys::export::{ArraySplitter, Element, FeedError, Limits, UnlockedExport};
use mxkeys::progress::Progress;
use mxkeys::session::{ParsedEntry, SessionStream};

use super::{
    Context, ExportUnlocker, MAX_LISTED, Rejection, Sink, open_export, open_input, output_label,
    warn_entries,
};
use crate::cli::DecryptArgs;
use crate::cli::exit::{CliError, Code};
use crate::cli::secrets_in;

/// What the checking pass found.
#[derive(Debug, Default)]
struct Checked {
    /// Elements in the array.
    entries: usize,
    /// Positions of the elements that are not sessions, ascending (all of them).
    rejected: Vec<usize>,
    /// The first [`MAX_LISTED`] of them, with reasons.
    rejections: Vec<Rejection>,
}

/// Run `decrypt`.
pub fn run(ctx: &Context<'_>, a: DecryptArgs) -> anyhow::Result<Code> {
    let out = a.output.as_deref();
    let to_stdout = out.is_none_or(|p| p.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "refusing to write plaintext keys to a terminal",
            "write them to a file with -o keys.json, or pipe the output into another program",
        ));
    }
    Sink::precheck(out, a.out.force)?;
    let stdin_is_data = a.file.as_os_str() == "-";
    let bar = ctx.ui.bar();
    bar.set_subject(Some(&a.file.display().to_string()));
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };
    let (label, reader) = open_export(open_input(&a.file)?, &limits, &bar)?;
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(&a.passphrase), stdin_is_data);
    let mut u = unlocker.unlock(ctx.ui, &label, reader, &bar)?;
    let in_label = |e: mxkeys::Error| anyhow::Error::new(e).context(label.clone());
    let write_err =
        |e: std::io::Error| mxkeys::Error::io(format!("writing {}", output_label(out)), e);

    if a.raw {
        let mut sink = Sink::open(out, a.out.force)?;
        u.decrypt_to(&bar, &mut |pt| sink.write_all(pt).map_err(write_err))
            .map_err(in_label)?;
        sink.commit()?;
        bar.finish();
        report_raw(ctx, &label, out, to_stdout)?;
        return Ok(Code::Success);
    }

    // Nothing that is not a key export may reach the output, and a pipe cannot take bytes
    // back: the plaintext is checked in a pass of its own before the output is even opened.
    let checked = check(&mut u, &label, &bar).map_err(in_label)?;
    let mut sink = Sink::open(out, a.out.force)?;
    let written = if checked.rejected.is_empty() {
        u.decrypt_to(&bar, &mut |pt| sink.write_all(pt).map_err(write_err))
            .map_err(in_label)?;
        checked.entries
    } else {
        write_sessions_only(&mut u, &checked.rejected, &bar, &mut |b| {
            sink.write_all(b).map_err(write_err)
        })
        .map_err(in_label)?
    };
    sink.commit()?;
    bar.finish();
    report(ctx, &label, out, to_stdout, &checked, written)?;
    Ok(if checked.rejected.is_empty() {
        Code::Success
    } else {
        Code::Partial
    })
}

/// Pass 3a: the plaintext must be UTF-8 and a JSON array; each element is parsed and validated
/// as a session (in parallel batches), and those that are not sessions are noted.
fn check(
    u: &mut UnlockedExport<std::fs::File>,
    label: &str,
    progress: &dyn Progress,
) -> mxkeys::Result<Checked> {
    let mut c = Checked::default();
    let mut note = |batch: Vec<ParsedEntry>| -> mxkeys::Result<()> {
        // A valid session is dropped (and its key zeroized) at once: only positions are kept.
        for (index, r) in batch {
            if let Err(e) = r {
                c.rejected.push(index);
                if c.rejections.len() < MAX_LISTED {
                    c.rejections.push(Rejection {
                        file: label.to_string(),
                        index,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    };
    let mut utf8 = Utf8Check::default();
    let mut stream = SessionStream::new(mxkeys::Error::NotAKeyExport, &mut note);
    u.decrypt_to(progress, &mut |pt| {
        utf8.feed(pt)?;
        stream.feed(pt)
    })?;
    let entries = stream.finish()?;
    utf8.finish()?;
    c.entries = entries;
    Ok(c)
}

/// Pass 3b when some elements are not sessions: write the array again with only the sessions,
/// each one's bytes exactly as they were. `rejected` is ascending. Returns the sessions written.
fn write_sessions_only(
    u: &mut UnlockedExport<std::fs::File>,
    rejected: &[usize],
    progress: &dyn Progress,
    out: &mut dyn FnMut(&[u8]) -> mxkeys::Result<()>,
) -> mxkeys::Result<usize> {
    let mut splitter = ArraySplitter::new();
    let mut skip = rejected.iter().copied().peekable();
    let mut written = 0usize;
    out(b"[")?;
    let mut element = |e: Element<'_>| -> mxkeys::Result<()> {
        let index = match e {
            Element::Value { index, .. } | Element::Oversized { index, .. } => index,
        };
        while skip.next_if(|&r| r < index).is_some() {}
        if skip.next_if_eq(&index).is_some() {
            return Ok(());
        }
        // An oversized element is always rejected (its bytes are not even kept).
        if let Element::Value { bytes, .. } = e {
            if written > 0 {
                out(b",")?;
            }
            out(bytes)?;
            written += 1;
        }
        Ok(())
    };
    let not_array = |e| mxkeys::Error::NotAKeyExport(format!("not a JSON array: {e}"));
    u.decrypt_to(progress, &mut |pt| {
        splitter.feed(pt, &mut element).map_err(|e| match e {
            FeedError::Split(e) => not_array(e),
            FeedError::Sink(e) => e,
        })
    })?;
    splitter.finish().map_err(not_array)?;
    out(b"]\n")?;
    Ok(written)
}

/// A streaming UTF-8 check: a character may be split between two chunks.
#[derive(Debug, Default)]
struct Utf8Check {
    /// The start of a character cut off at the end of the last chunk (at most 3 bytes).
    carry: Vec<u8>,
    /// Bytes checked so far, for the error message.
    offset: u64,
}

impl Utf8Check {
    fn feed(&mut self, mut chunk: &[u8]) -> mxkeys::Result<()> {
        if !self.carry.is_empty() {
            // Complete the cut character with at most 3 more bytes, then go on after it.
            let take = chunk.len().min(4 - self.carry.len());
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&chunk[..take]);
            let used = match std::str::from_utf8(&joined) {
                Ok(_) => joined.len(),
                Err(e) if e.valid_up_to() > 0 => e.valid_up_to(),
                Err(e) if e.error_len().is_none() && take == chunk.len() => {
                    // Still incomplete: the chunk was tiny.
                    self.carry = joined;
                    return Ok(());
                }
                Err(_) => return Err(self.error()),
            };
            let from_chunk = used - (joined.len() - take);
            self.offset += used as u64;
            chunk = &chunk[from_chunk..];
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => self.offset += chunk.len() as u64,
            Err(e) if e.error_len().is_none() => {
                self.offset += e.valid_up_to() as u64;
                self.carry.extend_from_slice(&chunk[e.valid_up_to()..]);
            }
            Err(e) => {
                self.offset += e.valid_up_to() as u64;
                return Err(self.error());
            }
        }
        Ok(())
    }

    fn finish(&self) -> mxkeys::Result<()> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn error(&self) -> mxkeys::Error {
        mxkeys::Error::NotAKeyExport(format!(
            "the plaintext is not UTF-8 text (invalid byte at offset {})",
            self.offset
        ))
    }
}

fn report_raw(
    ctx: &Context<'_>,
    label: &str,
    out: Option<&std::path::Path>,
    to_stdout: bool,
) -> anyhow::Result<()> {
    let o = output_label(out);
    if ctx.ui.json {
        let mut v = serde_json::json!({
            "input": label, "output": o, "entries": null, "sessions": null,
            "rejected": null, "rejections": [],
        });
        if to_stdout {
            v["message_type"] = "summary".into();
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        ctx.ui.note(&format!("Decrypted {label} to {o}."));
    }
    Ok(())
}

fn report(
    ctx: &Context<'_>,
    label: &str,
    out: Option<&std::path::Path>,
    to_stdout: bool,
    c: &Checked,
    written: usize,
) -> anyhow::Result<()> {
    let o = output_label(out);
    let rejected = c.rejected.len();
    if ctx.ui.json {
        let mut v = serde_json::json!({
            "input": label, "output": o, "entries": c.entries, "sessions": written,
            "rejected": rejected, "rejections": c.rejections,
        });
        if to_stdout {
            v["message_type"] = "summary".into();
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else if rejected == 0 {
        ctx.ui.note(&format!(
            "Decrypted {} entries from {label} to {o}.",
            c.entries
        ));
    } else {
        warn_entries(ctx.ui, &c.rejections, &[], rejected as u64, 0);
        ctx.ui.note(&format!(
            "Decrypted {written} of {} entries from {label} to {o}; rejected {rejected} that are not sessions.",
            c.entries
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Utf8Check;

    /// Every way of cutting `bytes` into chunks gives the same answer as checking it whole.
    fn agrees(bytes: &[u8]) {
        let whole = std::str::from_utf8(bytes).is_ok();
        for size in 1..=bytes.len().max(1) {
            let mut c = Utf8Check::default();
            let r = bytes
                .chunks(size)
                .try_for_each(|ch| c.feed(ch))
                .and_then(|()| c.finish());
            assert_eq!(r.is_ok(), whole, "{bytes:?} in chunks of {size}");
        }
    }

    #[test]
    fn utf8_check_agrees_with_std_at_every_chunk_size() {
        for s in [
            &b"[]"[..],
            "[\"h\u{e9}llo \u{1F511} \u{4E16}\"]".as_bytes(),
            b"[\"\xff\"]",
            b"[\"\xc3\"]",
            b"[\"\xe2\x82\"]",
            b"\xf0\x9f\x94\x91",
            b"\xf0\x9f\x94",
            b"ok\xed\xa0\x80",
            b"\xc3\xa9\xc3",
        ] {
            agrees(s);
        }
    }
}
