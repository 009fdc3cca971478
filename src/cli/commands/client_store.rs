//! `--client-store PATH` for `inspect`, `import` and `export`: the keys of another client's
//! own database (matrix-nio, pantalaimon, matrix-sdk, mautrix-go), read from a copy, the original never
//! modified.

use std::io::Write;
use std::path::Path;

use mxkeys::client_store::{self, ClientStoreError, Kind, OpenOptions, Opened, ReadSummary};
use mxkeys::progress::{self, Progress, Unit};
use mxkeys::session::{ExportedSession, sanitize};
use mxkeys::store::{Access, MergeCounts};
use serde_json::json;

use super::{Context, Sink, output_label};
use crate::cli::exit::{CliError, Code};
use crate::cli::{ClientStoreArgs, ExportArgs, ImportArgs, secrets_in};

/// Sessions handed on together.
const BATCH: usize = 1024;

/// The open options from the flags: the kind, the account, and the key when one is given
/// (else the client's default is used, and a terminal is asked only if that fails).
fn options(ctx: &Context<'_>, a: &ClientStoreArgs) -> anyhow::Result<OpenOptions> {
    let src = secrets_in::client_store_passphrase(a);
    let key = if src.is_given() || has_env() {
        Some(src.resolve(ctx.ui, false)?.0)
    } else {
        None
    };
    Ok(OpenOptions {
        kind: a.client_store_kind.as_deref().and_then(Kind::parse),
        key,
        user: a.client_store_user.clone(),
    })
}

fn has_env() -> bool {
    std::env::var_os("MXKEYS_CLIENT_STORE_PASSPHRASE").is_some()
        || std::env::var_os("MXKEYS_CLIENT_STORE_PASSPHRASE_FILE").is_some()
}

fn open(path: &Path, opts: &OpenOptions) -> anyhow::Result<Opened> {
    Ok(client_store::open(path, opts)?)
}

/// Read every session, asking the terminal for the pickle key once when the default does not
/// fit and none was given.
fn read_all(
    ctx: &Context<'_>,
    a: &ClientStoreArgs,
    opened: &Opened,
    opts: &mut OpenOptions,
    bar: &dyn Progress,
    f: &mut dyn FnMut(ExportedSession) -> mxkeys::Result<()>,
) -> anyhow::Result<ReadSummary> {
    let mut first = true;
    loop {
        match opened.read_sessions(opts, &mut |s| {
            bar.advance(1);
            progress::check(bar)?;
            f(s)
        }) {
            Err(mxkeys::Error::ClientStore(
                ClientStoreError::WrongPickleKey { .. } | ClientStoreError::WrongPassphrase { .. },
            )) if first && opts.key.is_none() && ctx.ui.interactive => {
                first = false;
                let label = sanitize(&opened.file().display().to_string());
                let question = match opened.kind() {
                    Kind::MatrixSdk => format!("Passphrase of the client store {label}"),
                    _ => format!("Pickle key for {label}"),
                };
                let src = secrets_in::client_store_passphrase(a).with_prompt(question);
                opts.key = Some(src.prompt_again()?);
            }
            r => return Ok(r?),
        }
    }
}

fn wanted(rooms: &[String], sessions: &[String], s: &ExportedSession) -> bool {
    (rooms.is_empty() || rooms.contains(&s.room_id))
        && (sessions.is_empty() || sessions.contains(&s.session_id))
}

fn rejected_warnings(ctx: &Context<'_>, r: &ReadSummary) {
    for x in r.rejected.iter().take(10) {
        ctx.ui.warn(&format!(
            "skipped session {} in {}: {}",
            sanitize(&x.session_id),
            sanitize(&x.room_id),
            x.reason
        ));
    }
}

/// `mxkeys inspect --client-store PATH`.
pub fn inspect(ctx: &Context<'_>, a: &ClientStoreArgs, path: &Path) -> anyhow::Result<Code> {
    // A key when one is given (a sealed matrix-sdk store then shows its account); never asked.
    let opts = options(ctx, a)?;
    let opened = open(path, &opts)?;
    let info = opened.inspect(&opts)?;
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "client_store": info.path,
            "kind": info.kind,
            "schema_version": info.schema_version,
            "accounts": info.accounts,
            "account": info.account,
            "sessions": info.sessions,
            "rooms": info.rooms,
            "needs_key": info.needs_key,
        }))?;
        return Ok(Code::Success);
    }
    let mut lines = vec![
        format!(
            "client store:       {}",
            sanitize(&info.path.display().to_string())
        ),
        format!(
            "kind:               {}{}",
            info.kind,
            info.schema_version
                .map(|v| format!(" (schema version {v})"))
                .unwrap_or_default()
        ),
    ];
    match &info.account {
        Some(acc) => lines.push(format!(
            "account:            {} device {}",
            sanitize(&acc.user_id),
            sanitize(&acc.device_id)
        )),
        None if info.accounts.is_empty() => lines.push("account:            none".into()),
        None => {}
    }
    if info.accounts.len() > 1 {
        lines.push(format!("accounts:           {}", info.accounts.len()));
        for acc in &info.accounts {
            lines.push(format!(
                "  {} device {}",
                sanitize(&acc.user_id),
                sanitize(&acc.device_id)
            ));
        }
    }
    lines.push(format!(
        "inbound sessions:   {} in {} room{}",
        info.sessions,
        info.rooms,
        if info.rooms == 1 { "" } else { "s" }
    ));
    lines.push(match info.kind {
        Kind::MatrixSdk if info.needs_key => {
            "passphrase:         sealed: the sessions and the account need the store's passphrase".into()
        }
        Kind::MatrixSdk => "passphrase:         none (the store is not sealed)".into(),
        Kind::Mautrix => {
            "pickle key:         needed to read the sessions (the bridge's or client's pickle key; mautrix has no default)".into()
        }
        _ => "pickle key:         needed to read the sessions (nio's default DEFAULT_KEY is tried first)"
            .into(),
    });
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(Code::Success)
}

/// `mxkeys import --client-store PATH`: into the mxkeys store, one transaction.
pub fn import(ctx: &Context<'_>, a: &ImportArgs, path: &Path) -> anyhow::Result<Code> {
    if !a.files.is_empty() {
        return Err(CliError::usage(
            "give export files or --client-store, not both",
            "import the files and the client store in two runs",
        ));
    }
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::store_passphrase(ctx.global),
        &secrets_in::client_store_passphrase(&a.client),
    ])?;
    let mut opts = options(ctx, &a.client)?;
    let opened = open(path, &opts)?;
    let mut store = ctx.open_store(Access::Write, false)?;
    let bar = ctx.ui.bar();
    bar.set_subject(Some(&sanitize(&opened.file().display().to_string())));
    bar.phase(
        "importing from",
        opened.inspect(&opts)?.sessions,
        Unit::Keys,
    );
    let mut tx = store.merge_tx()?;
    tx.set_source(format!(
        "client-store:{}:{}",
        opened.kind(),
        opened.file().display()
    ));
    let mut counts = MergeCounts::default();
    let mut batch = Vec::with_capacity(BATCH);
    let summary = read_all(ctx, &a.client, &opened, &mut opts, &bar, &mut |s| {
        batch.push(s);
        if batch.len() >= BATCH {
            tx.merge_batch(std::mem::take(&mut batch), &mut |_, o| counts.add(o))?;
        }
        Ok(())
    })?;
    tx.merge_batch(batch, &mut |_, o| counts.add(o))?;
    tx.commit()?;
    bar.finish();
    let rejected = summary.rejected.len() as u64;
    let code = if rejected > 0 || counts.conflicts > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "client_store": opened.file(),
            "kind": opened.kind(),
            "read": summary.sessions,
            "libolm_pickles": summary.libolm_pickles,
            "imported_by_client": summary.imported_by_client,
            "backed_up_by_client": summary.backed_up_by_client,
            "withheld": summary.withheld,
            "imported": counts.imported,
            "improved": counts.improved,
            "unchanged": counts.unchanged,
            "conflicts": counts.conflicts,
            "rejected": rejected,
            "rejections": summary.rejected,
        }))?;
    } else {
        rejected_warnings(ctx, &summary);
        ctx.ui.note(&format!(
            "Imported {} new sessions from the {} store, improved {}, already held {}; rejected {}, conflicts {}. The client's files were not modified.",
            counts.imported,
            opened.kind(),
            counts.improved,
            counts.unchanged,
            rejected,
            counts.conflicts
        ));
    }
    Ok(code)
}

/// `mxkeys export --client-store PATH -o FILE`: straight to an export file, no mxkeys store.
pub fn export(ctx: &Context<'_>, a: &ExportArgs, path: &Path) -> anyhow::Result<Code> {
    let out = Some(a.output.as_path());
    Sink::precheck(out, a.out.force)?;
    secrets_in::check_one_stdin_secret(&[
        &secrets_in::export_passphrase(&a.passphrase),
        &secrets_in::client_store_passphrase(&a.client),
    ])?;
    let mut opts = options(ctx, &a.client)?;
    let opened = open(path, &opts)?;
    // Read first (the pickle key may need asking), then ask for the new file's passphrase.
    let mut sessions = Vec::new();
    let summary = {
        let bar = ctx.ui.bar();
        bar.phase("reading", opened.inspect(&opts)?.sessions, Unit::Keys);
        let s = read_all(ctx, &a.client, &opened, &mut opts, &bar, &mut |s| {
            if wanted(&a.rooms, &a.sessions, &s) {
                sessions.push(s);
            }
            Ok(())
        })?;
        bar.finish();
        s
    };
    if sessions.is_empty() {
        return Err(CliError::new(
            Code::NotFound,
            if a.rooms.is_empty() && a.sessions.is_empty() {
                "the client store holds no readable session"
            } else {
                "no session of the client store matches --room/--session"
            },
            "see what it holds with: mxkeys inspect --client-store PATH",
        ));
    }
    let rooms = sessions
        .iter()
        .map(|s| s.room_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (mut w, rounds, strength) =
        super::new_export(ctx, out, a.out.force, &a.write, &a.passphrase, false)?;
    let bar = ctx.ui.bar();
    bar.phase("exporting", sessions.len() as u64, Unit::Keys);
    let written = sessions.len();
    for chunk in sessions.chunks(BATCH) {
        w.push_all(chunk.to_vec())?;
        bar.advance(chunk.len() as u64);
        progress::check(&bar)?;
    }
    drop(sessions);
    let sink = w.finish()?;
    sink.commit()?;
    bar.finish();
    let label = output_label(out);
    let report = json!({
        "client_store": opened.file(),
        "kind": opened.kind(),
        "output": label,
        "sessions": written,
        "rooms": rooms,
        "imported_by_client": summary.imported_by_client,
        "withheld": summary.withheld,
        "rejected": summary.rejected.len(),
        "rejections": summary.rejected,
        "rounds": rounds,
        "passphrase_strength": super::strength_json(&strength),
    });
    if ctx.ui.json {
        if label == "stdout" {
            eprintln!("{report}");
        } else {
            ctx.ui.print_json(&report)?;
        }
    } else {
        rejected_warnings(ctx, &summary);
        ctx.ui.note(&format!(
            "Exported {written} sessions from {rooms} rooms of the {} store to {label} ({rounds} PBKDF2 rounds). The client's files were not modified.",
            opened.kind()
        ));
    }
    Ok(if summary.rejected.is_empty() {
        Code::Success
    } else {
        Code::Partial
    })
}
