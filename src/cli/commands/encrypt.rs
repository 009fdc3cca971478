//! `mxkeys encrypt`: a plaintext JSON array of sessions to an export file.

use std::io::Read;

use mxkeys::session::SessionStream;

use super::{Context, MAX_LISTED, Rejection, Sink, output_label, warn_entries};
use crate::cli::EncryptArgs;
use crate::cli::exit::Code;

/// Run `encrypt`.
pub fn run(ctx: &Context<'_>, a: EncryptArgs) -> anyhow::Result<Code> {
    let out = a.output.as_deref();
    Sink::precheck(out, a.out.force)?;
    let stdin_is_data = a.file.as_os_str() == "-";
    let label = if stdin_is_data {
        "stdin".to_string()
    } else {
        a.file.display().to_string()
    };
    let mut input: Box<dyn Read> = if stdin_is_data {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&a.file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                mxkeys::Error::FileNotFound {
                    path: label.clone(),
                }
            } else {
                mxkeys::Error::io(format!("opening {label}"), e)
            }
        })?)
    };
    let (mut w, rounds, strength) = super::new_export(
        ctx,
        out,
        a.out.force,
        &a.write,
        &a.passphrase,
        stdin_is_data,
    )?;
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut rejected = 0u64;
    let mut sink_fn = |batch: Vec<mxkeys::session::ParsedEntry>| -> mxkeys::Result<()> {
        let mut valid = Vec::with_capacity(batch.len());
        for (index, r) in batch {
            match r {
                Ok(s) => valid.push(s),
                Err(e) => {
                    rejected += 1;
                    if rejections.len() < MAX_LISTED {
                        rejections.push(Rejection {
                            file: label.clone(),
                            index,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        w.push_all(valid)
    };
    let mut stream = SessionStream::new(mxkeys::Error::NotASessionArray, &mut sink_fn);
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 256 * 1024]);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(mxkeys::Error::io(format!("reading {label}"), e).into()),
        };
        stream
            .feed(&buf[..n])
            .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
        if crate::cli::output::interrupted() {
            return Err(mxkeys::Error::Interrupted.into());
        }
    }
    let entries = stream
        .finish()
        .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
    let written = w.count();
    w.finish()?.commit()?;
    let code = if rejected > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    let o = output_label(out);
    if ctx.ui.json {
        let v = serde_json::json!({
            "input": label, "output": o, "entries": entries, "sessions": written,
            "rejected": rejected, "rejections": rejections, "rounds": rounds,
            "passphrase_strength": super::strength_json(&strength),
        });
        if o == "stdout" {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        warn_entries(ctx.ui, &rejections, &[], rejected, 0);
        ctx.ui.note(&format!(
            "Encrypted {written} sessions to {o} ({rounds} PBKDF2 rounds); rejected {rejected}."
        ));
    }
    Ok(code)
}
