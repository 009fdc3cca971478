//! `mxkeys import`: decrypt export files and merge their sessions into the store.

use mxkeys::export::Limits;
use mxkeys::store::{Access, MergeCounts, Outcome};

use super::{
    Conflict, Context, ExportUnlocker, MAX_LISTED, Rejection, check_stdin_once, open_export,
    open_input, warn_entries,
};
use crate::cli::ImportArgs;
use crate::cli::exit::Code;
use crate::cli::secrets_in;

#[derive(Debug, Default, serde::Serialize)]
struct FileReport {
    file: String,
    entries: usize,
    #[serde(flatten)]
    counts: MergeCounts,
    rejected: u64,
}

/// Run `import`.
pub fn run(ctx: &Context<'_>, a: ImportArgs) -> anyhow::Result<Code> {
    let stdin_is_data = check_stdin_once(&a.files)?;
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::store_passphrase(ctx.global),
        &secrets_in::export_passphrase(&a.passphrase),
    ])?;
    let bar = ctx.ui.bar();
    let mut store = ctx.open_store(Access::Write, stdin_is_data)?;
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };

    // Every file is checked, then unlocked, before anything is written.
    let mut readers = Vec::with_capacity(a.files.len());
    for p in &a.files {
        readers.push(open_export(open_input(p)?, &limits, &bar)?);
    }
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(&a.passphrase), stdin_is_data);
    let mut unlocked = Vec::with_capacity(readers.len());
    for (label, r) in readers {
        let u = unlocker.unlock(ctx.ui, &label, r, &bar)?;
        unlocked.push((label, u));
    }

    // One transaction for all files: their valid sessions merge completely or not at all.
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut files = Vec::new();
    let mut tx = store.merge_tx()?;
    for (label, u) in &mut unlocked {
        let mut fr = FileReport {
            file: label.clone(),
            ..Default::default()
        };
        let n = u
            .for_each_session_batch(&bar, &mut |batch| {
                let mut valid = Vec::with_capacity(batch.len());
                for (index, r) in batch {
                    match r {
                        Ok(s) => valid.push(s),
                        Err(e) => {
                            fr.rejected += 1;
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
                    fr.counts.add(o);
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
        fr.entries = n;
        files.push(fr);
    }
    let counts = tx.commit()?;
    bar.finish();

    let rejected: u64 = files.iter().map(|f| f.rejected).sum();
    let code = if rejected > 0 || counts.conflicts > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "imported": counts.imported,
            "improved": counts.improved,
            "unchanged": counts.unchanged,
            "conflicts": counts.conflicts,
            "rejected": rejected,
            "files": files,
            "rejections": rejections,
            "conflict_list": conflicts,
        }))?;
    } else {
        warn_entries(ctx.ui, &rejections, &conflicts, rejected, counts.conflicts);
        ctx.ui.note(&format!(
            "Imported {} new sessions, improved {}, already held {}; rejected {}, conflicts {}.",
            counts.imported, counts.improved, counts.unchanged, rejected, counts.conflicts
        ));
    }
    Ok(code)
}
