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
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };
    let (label, reader) = open_export(open_input(&a.file)?, &limits, &bar)?;
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(&a.passphrase), stdin_is_data);
    let mut u = unlocker.unlock(ctx.ui, &label, reader, &bar)?;
    // Check the plaintext is a JSON array before the first byte goes out, so that neither a
    // file nor a pipe ever receives something that is not a key export.
    let entries = if a.raw {
        None
    } else {
        Some(
            u.for_each_element(&bar, &mut check_element)
                .map_err(|e| anyhow::Error::new(e).context(label.clone()))?,
        )
    };
    let mut sink = Sink::open(out, a.out.force)?;
    u.decrypt_to(&bar, &mut |pt| {
        sink.write_all(pt)
            .map_err(|e| mxkeys::Error::io(format!("writing {}", output_label(out)), e))
    })
    .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
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
