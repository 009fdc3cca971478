//! `mxkeys merge`: several export files into one, best copy of each session, no store.
//!
//! The sessions are merged through a temporary sealed store (random key, never written
//! down) so that memory stays bounded however large the files are.

use mxkeys::export::{ExportWriter, Limits, SessionWriter};
use mxkeys::progress::{self, Progress};
use mxkeys::secret::Passphrase;
use mxkeys::store::{Access, Filter, Outcome, Store};

use super::{
    Conflict, Context, ExportUnlocker, MAX_LISTED, Rejection, Sink, check_stdin_once, open_export,
    open_input, output_label, warn_entries,
};
use crate::cli::MergeArgs;
use crate::cli::exit::Code;
use crate::cli::secrets_in;

/// Run `merge`.
pub fn run(ctx: &Context<'_>, a: MergeArgs) -> anyhow::Result<Code> {
    let out = Some(a.output.as_path());
    Sink::precheck(out, a.out.force)?;
    let stdin_is_data = check_stdin_once(&a.files)?;
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::export_passphrase(&a.passphrase),
        &secrets_in::new_passphrase(&a.new_passphrase),
    ])?;
    let bar = ctx.ui.bar();
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };
    let mut readers = Vec::new();
    for p in &a.files {
        readers.push(open_export(open_input(p)?, &limits, &bar)?);
    }
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(&a.passphrase), stdin_is_data);
    let mut unlocked = Vec::new();
    let mut input_passphrases_differ = false;
    let mut first_pass: Option<Passphrase> = None;
    for (label, r) in readers {
        let u = unlocker.unlock(ctx.ui, &label, r, &bar)?;
        if let Some(p) = unlocker.passphrase() {
            match &first_pass {
                None => first_pass = Some(Passphrase::new(p.expose_secret().to_vec())),
                Some(f) => input_passphrases_differ |= !f.ct_eq(p),
            }
        }
        unlocked.push((label, u));
    }
    let new_pass = super::reencrypt::new_output_passphrase(
        ctx,
        &a.new_passphrase,
        a.write.insecure_empty_passphrase,
        stdin_is_data,
    )?;
    if new_pass.is_none() && input_passphrases_differ {
        return Err(crate::cli::exit::CliError::usage(
            "the input files have different passphrases; which one should the merged file use?",
            "give --new-passphrase-file PATH (or --change-passphrase to type one)",
        ));
    }
    let rounds = super::rounds_for_new_file(ctx.ui, a.write.rounds);

    // A scratch store, sealed under a random key that is never written down.
    let scratch = tempfile::Builder::new()
        .prefix("mxkeys-merge-")
        .tempdir()
        .map_err(|e| mxkeys::Error::io("creating a temporary directory", e))?;
    let scratch_key =
        mxkeys::secret::Key32::random().map_err(|e| mxkeys::Error::io("random key", e))?;
    let scratch_pass = Passphrase::new(scratch_key.expose_secret().to_vec());
    Store::create(scratch.path(), Some(&scratch_pass), 1)?;
    let mut store = Store::open(scratch.path(), Access::Write)?
        .unlock(Some(&scratch_pass))
        .map_err(|(_, e)| e)?;

    let mut rejections: Vec<Rejection> = Vec::new();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut rejected = 0u64;
    let mut tx = store.merge_tx()?;
    for (label, u) in &mut unlocked {
        u.for_each_session_batch(&bar, &mut |batch| {
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
            tx.merge_batch(valid, &mut |s, o| {
                if o == Outcome::Conflict && conflicts.len() < MAX_LISTED {
                    conflicts.push(Conflict {
                        file: label.clone(),
                        room_id: s.room_id.clone(),
                        session_id: s.session_id.clone(),
                    });
                }
            })?;
            Ok(())
        })
        .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
    }
    let counts = tx.commit()?;

    let pass = match &new_pass {
        Some(p) => p,
        None => first_pass
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no passphrase"))?,
    };
    let sink = Sink::open(out, a.out.force)?;
    let mut w = SessionWriter::new(ExportWriter::new(sink, pass, rounds)?);
    let total = counts.imported;
    bar.phase("writing", total);
    store.for_each_session(&Filter::default(), &mut |s| {
        w.push(&s)?;
        bar.advance(1);
        progress::check(&bar)
    })?;
    let written = w.count();
    w.finish()?.commit()?;
    bar.finish();
    drop(store);
    let o = output_label(out);
    let code = if rejected > 0 || counts.conflicts > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    if ctx.ui.json {
        let v = serde_json::json!({
            "output": o, "sessions": written, "duplicates_dropped": counts.unchanged + counts.improved,
            "improved": counts.improved, "conflicts": counts.conflicts, "rejected": rejected,
            "rejections": rejections, "conflict_list": conflicts, "rounds": rounds,
        });
        if o == "stdout" {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        warn_entries(ctx.ui, &rejections, &conflicts, rejected, counts.conflicts);
        ctx.ui.note(&format!(
            "Merged {} files into {o}: {written} sessions ({} duplicates dropped, {} replaced by a better copy); rejected {rejected}, conflicts {}.",
            a.files.len(),
            counts.unchanged + counts.improved,
            counts.improved,
            counts.conflicts
        ));
    }
    Ok(code)
}
