//! `mxkeys decrypt`: an export file to its plaintext JSON array, exactly as it was encrypted.

use std::io::{IsTerminal, Write};

use mxkeys::export::Limits;

use super::{Context, ExportUnlocker, Sink, open_export, open_input, output_label};
use crate::cli::DecryptArgs;
use crate::cli::exit::{CliError, Code};
use crate::cli::secrets_in;

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
    // Nothing that is not a key export may reach the output. A file is written as the
    // plaintext is checked, in one pass, and only appears if the check passes; a pipe cannot
    // take bytes back, so for stdout the check is a pass of its own before any byte goes out.
    let write_err =
        |e: std::io::Error| mxkeys::Error::io(format!("writing {}", output_label(out)), e);
    let mut sink;
    let entries = if a.raw {
        sink = Sink::open(out, a.out.force)?;
        u.decrypt_to(&bar, &mut |pt| sink.write_all(pt).map_err(write_err))
            .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
        None
    } else if to_stdout {
        let n = u
            .for_each_element(&bar, &mut check_element)
            .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
        sink = Sink::open(out, a.out.force)?;
        u.decrypt_to(&bar, &mut |pt| sink.write_all(pt).map_err(write_err))
            .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
        Some(n)
    } else {
        sink = Sink::open(out, a.out.force)?;
        let mut splitter = mxkeys::export::ArraySplitter::new();
        let not_array = |e: mxkeys::export::json_array::SplitError| {
            mxkeys::Error::NotAKeyExport(format!("not a JSON array: {e}"))
        };
        u.decrypt_to(&bar, &mut |pt| {
            splitter.feed(pt, &mut check_element).map_err(|e| match e {
                mxkeys::export::FeedError::Split(e) => not_array(e),
                mxkeys::export::FeedError::Sink(e) => e,
            })?;
            sink.write_all(pt).map_err(write_err)
        })
        .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
        Some(
            splitter
                .finish()
                .map_err(|e| anyhow::Error::new(not_array(e)).context(label.clone()))?,
        )
    };
    sink.commit()?;
    bar.finish();
    let summary =
        serde_json::json!({"input": label, "output": output_label(out), "entries": entries});
    if ctx.ui.json {
        if to_stdout {
            eprintln!(
                "{}",
                serde_json::json!({"message_type": "summary", "input": label, "entries": entries})
            );
        } else {
            ctx.ui.print_json(&summary)?;
        }
    } else {
        ctx.ui.note(&match entries {
            Some(n) => format!(
                "Decrypted {n} entries from {label} to {}.",
                output_label(out)
            ),
            None => format!("Decrypted {label} to {}.", output_label(out)),
        });
    }
    Ok(Code::Success)
}

/// Each element of the array must be valid JSON: the splitter checks only the array's
/// brackets and commas, so without this `[garbage]` would pass for a key export.
fn check_element(e: mxkeys::export::Element<'_>) -> mxkeys::Result<()> {
    match e {
        mxkeys::export::Element::Value { index, bytes } => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .map(|_| ())
                .map_err(|err| {
                    mxkeys::Error::NotAKeyExport(format!("invalid JSON in entry {index}: {err}"))
                })
        }
        mxkeys::export::Element::Oversized { .. } => Ok(()),
    }
}
