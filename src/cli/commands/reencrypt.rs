//! `mxkeys reencrypt`: the same plaintext under a new passphrase and/or round count.

use mxkeys::export::{ExportWriter, Limits};
use mxkeys::passphrase_strength::Strength;
use mxkeys::secret::Passphrase;

use super::{Context, ExportUnlocker, Sink, open_export, open_input, output_label};
use crate::cli::exit::Code;
use crate::cli::secrets_in;
use crate::cli::{NewPassphraseArgs, ReencryptArgs};

/// The output passphrase for merge/reencrypt: a new-passphrase source, a prompt when
/// `--change-passphrase` is given (both scored), or (None) the input's.
pub fn new_output_passphrase(
    ctx: &Context<'_>,
    a: &NewPassphraseArgs,
    output: &str,
    allow_empty: bool,
    stdin_is_data: bool,
) -> anyhow::Result<Option<(Passphrase, Strength)>> {
    let src = secrets_in::new_passphrase(a).with_prompt(format!("New passphrase for {output}"));
    if src.is_given() || a.change_passphrase {
        let (p, strength, _) = src.resolve_new(ctx.ui, allow_empty, stdin_is_data)?;
        Ok(Some((p, strength)))
    } else {
        Ok(None)
    }
}

/// Run `reencrypt`.
pub fn run(ctx: &Context<'_>, a: ReencryptArgs) -> anyhow::Result<Code> {
    let out = Some(a.output.as_path());
    Sink::precheck(out, a.out.force)?;
    let stdin_is_data = a.file.as_os_str() == "-";
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::export_passphrase(&a.passphrase),
        &secrets_in::new_passphrase(&a.new_passphrase),
    ])?;
    let bar = ctx.ui.bar();
    bar.set_subject(Some(&a.file.display().to_string()));
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };
    let (label, reader) = open_export(open_input(&a.file)?, &limits, &bar)?;
    let old_rounds = reader.info().header.rounds;
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(&a.passphrase), stdin_is_data);
    let mut u = unlocker.unlock(ctx.ui, &label, reader, &bar)?;
    let new_pass = new_output_passphrase(
        ctx,
        &a.new_passphrase,
        &output_label(out),
        a.insecure_empty_passphrase,
        stdin_is_data,
    )?;
    let changed_pass = new_pass.is_some();
    let strength = new_pass.as_ref().map(|(_, s)| super::strength_json(s));
    let rounds = match a.rounds {
        Some(r) => super::rounds_for_new_file(ctx.ui, Some(r)),
        None => old_rounds,
    };
    let pass = match &new_pass {
        Some((p, _)) => p,
        None => unlocker
            .passphrase()
            .ok_or_else(|| anyhow::anyhow!("no passphrase"))?,
    };
    let sink = Sink::open(out, a.out.force)?;
    let mut w = ExportWriter::new(sink, pass, rounds)?;
    u.decrypt_to(&bar, &mut |pt| w.write_plaintext(pt))
        .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
    w.finish()?.commit()?;
    bar.finish();
    let o = output_label(out);
    if ctx.ui.json {
        let v = serde_json::json!({"input": label, "output": o, "rounds": rounds, "previous_rounds": old_rounds, "passphrase_changed": changed_pass, "passphrase_strength": strength});
        if o == "stdout" {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        ctx.ui.note(&format!(
            "Wrote {o} with {rounds} PBKDF2 rounds (was {old_rounds}), {} passphrase.",
            if changed_pass { "new" } else { "same" }
        ));
    }
    Ok(Code::Success)
}
