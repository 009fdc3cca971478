//! `mxkeys merge`: several export files into one, best copy of each session, no store.
//!
//! The sessions are merged through a temporary sealed store (random key, never written
//! down) so that memory stays bounded however large the files are.

use mxkeys::export::{ExportWriter, ThreadedSessionWriter};
use mxkeys::progress::{self, Progress, Unit};
use mxkeys::store::Filter;

use super::{Context, MergeLog, Sink, check_stdin_once, open_and_unlock, output_label};
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
    bar.rename("decrypting", "reading");
    let (mut unlocked, unlocker) =
        open_and_unlock(ctx, &a.files, &a.passphrase, &a.read, stdin_is_data, &bar)?;
    let input_passphrases_differ = unlocker.passphrases_differ();
    let new_pass = super::reencrypt::new_output_passphrase(
        ctx,
        &a.new_passphrase,
        &output_label(out),
        a.write.insecure_empty_passphrase,
        stdin_is_data,
    )?;
    let strength = new_pass.as_ref().map(|(_, s)| super::strength_json(s));
    if new_pass.is_none() && input_passphrases_differ {
        return Err(crate::cli::exit::CliError::usage(
            "the input files have different passphrases; which one should the merged file use?",
            "give --new-passphrase-file PATH (or --change-passphrase to type one)",
        ));
    }
    let rounds = super::rounds_for_new_file(ctx.ui, a.write.rounds);

    let (_scratch, mut store) = super::scratch_store("mxkeys-merge-")?;

    let mut log = MergeLog::default();
    let (counts, _) = log.merge_files(&mut store, &mut unlocked, &bar)?;

    let pass = match &new_pass {
        Some((p, _)) => p,
        None => unlocker
            .passphrase()
            .ok_or_else(|| anyhow::anyhow!("no passphrase"))?,
    };
    let sink = Sink::open(out, a.out.force)?;
    let mut w = ThreadedSessionWriter::new(ExportWriter::new(sink, pass, rounds)?);
    let total = counts.imported;
    bar.set_subject(Some(&output_label(out)));
    bar.phase("writing", total, Unit::Keys);
    store.for_each_batch(&Filter::default(), &mut |batch| {
        let n = batch.len() as u64;
        w.push_all(batch)?;
        bar.advance(n);
        progress::check(&bar)
    })?;
    let written = w.count();
    w.finish()?.commit()?;
    bar.finish();
    drop(store);
    let o = output_label(out);
    let rejected = log.rejected;
    let code = if rejected > 0 || counts.conflicts > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    if ctx.ui.json {
        let v = serde_json::json!({
            "output": o, "sessions": written, "duplicates_dropped": counts.unchanged + counts.improved,
            "improved": counts.improved, "conflicts": counts.conflicts, "rejected": rejected,
            "rejections": log.rejections, "conflict_list": log.conflicts, "rounds": rounds,
            "passphrase_strength": strength,
        });
        if o == "stdout" {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        log.warn(ctx.ui, counts.conflicts);
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
