//! `mxkeys import`: decrypt export files and merge their sessions into the store.

use mxkeys::store::Access;

use super::{Context, MergeLog, check_stdin_once, open_and_unlock};
use crate::cli::ImportArgs;
use crate::cli::exit::Code;
use crate::cli::secrets_in;

/// Run `import`.
pub fn run(ctx: &Context<'_>, a: ImportArgs) -> anyhow::Result<Code> {
    if let Some(path) = a.client.client_store.clone() {
        return super::client_store::import(ctx, &a, &path);
    }
    let stdin_is_data = check_stdin_once(&a.files)?;
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::store_passphrase(ctx.global),
        &secrets_in::export_passphrase(&a.passphrase),
    ])?;
    let mut store = ctx.open_store(Access::Write, stdin_is_data)?;
    let bar = ctx.ui.bar();
    bar.rename("decrypting", "importing");
    // Every file is checked, then unlocked, before anything is written; then one transaction
    // for all files: their valid sessions merge completely or not at all.
    let (mut unlocked, _) =
        open_and_unlock(ctx, &a.files, &a.passphrase, &a.read, stdin_is_data, &bar)?;
    let mut log = MergeLog::default();
    let (counts, files) = log.merge_files(&mut store, &mut unlocked, &bar)?;
    bar.finish();

    let rejected = log.rejected;
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
            "rejections": log.rejections,
            "conflict_list": log.conflicts,
        }))?;
    } else {
        log.warn(ctx.ui, counts.conflicts);
        ctx.ui.note(&format!(
            "Imported {} new sessions, improved {}, already held {}; rejected {}, conflicts {}.",
            counts.imported, counts.improved, counts.unchanged, rejected, counts.conflicts
        ));
    }
    Ok(code)
}
