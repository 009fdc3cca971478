//! `mxkeys export`: write sessions from the store to an export file.

use mxkeys::progress::{self, Progress, Unit};
use mxkeys::store::{Access, Filter};

use super::{Context, Sink, output_label};
use crate::cli::ExportArgs;
use crate::cli::exit::{CliError, Code};
use crate::cli::secrets_in;

/// Run `export`.
pub fn run(ctx: &Context<'_>, a: ExportArgs) -> anyhow::Result<Code> {
    if let Some(path) = a.client.client_store.clone() {
        return super::client_store::export(ctx, &a, &path);
    }
    let out = Some(a.output.as_path());
    Sink::precheck(out, a.out.force)?;
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::store_passphrase(ctx.global),
        &secrets_in::export_passphrase(&a.passphrase),
    ])?;
    let store = ctx.open_store(Access::Read, false)?;
    let filter = Filter {
        rooms: a.rooms.clone(),
        sessions: a.sessions.clone(),
        ..Filter::default()
    };
    let n = store.count(&filter)?;
    if n == 0 {
        let (msg, hint) = if a.rooms.is_empty() && a.sessions.is_empty() {
            (
                "the key store holds no sessions",
                "import an export file first: mxkeys import FILE",
            )
        } else {
            (
                "no session in the store matches --room/--session",
                "see which rooms the store holds with: mxkeys list",
            )
        };
        return Err(CliError::new(Code::NotFound, msg, hint));
    }
    let (mut w, rounds, strength) =
        super::new_export(ctx, out, a.out.force, &a.write, &a.passphrase, false)?;
    let bar = ctx.ui.bar();
    bar.phase("exporting", n, Unit::Keys);
    let rooms = store.count_rooms(&filter)?;
    store.for_each_batch(&filter, &mut |batch| {
        let n = batch.len() as u64;
        w.push_all(batch)?;
        bar.advance(n);
        progress::check(&bar)
    })?;
    let written = w.count();
    let sink = w.finish()?;
    sink.commit()?;
    bar.finish();
    let label = output_label(out);
    if ctx.ui.json {
        if label == "stdout" {
            // stdout carries the export itself; the report goes to stderr.
            eprintln!(
                "{}",
                serde_json::json!({"message_type": "summary", "output": label, "sessions": written, "rooms": rooms, "rounds": rounds, "passphrase_strength": super::strength_json(&strength)})
            );
        } else {
            ctx.ui.print_json(&serde_json::json!({
                "output": label,
                "sessions": written,
                "rooms": rooms,
                "rounds": rounds,
                "passphrase_strength": super::strength_json(&strength),
            }))?;
        }
    } else {
        ctx.ui.note(&format!(
            "Exported {written} sessions from {} rooms to {label} ({rounds} PBKDF2 rounds).",
            rooms
        ));
    }
    Ok(Code::Success)
}
