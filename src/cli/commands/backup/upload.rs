//! `mxkeys backup upload`: send keys to the backup, never making it worse.

use mxkeys::backup::{BackupEncryptor, BackupPublicKey};
use mxkeys::client::ClientError;
use mxkeys::progress::{self, Progress, Unit};
use mxkeys::recovery::RecoveryError;
use mxkeys::session::ExportedSession;
use mxkeys::store::{Access, Filter};
use mxkeys::sync::{BatchBuilder, Decision, Meta, ServerIndex};
use rayon::prelude::*;
use serde_json::json;

use super::super::net::{self, KeySource, Missing, StoreUse};
use super::super::{Context, check_stdin_once};
use crate::cli::BackupUploadArgs;
use crate::cli::exit::{CliError, Code};

#[derive(Debug, Default, serde::Serialize)]
struct Counts {
    considered: u64,
    new: u64,
    better: u64,
    skipped: u64,
    sent: u64,
    requests: u64,
    rejected: u64,
}

/// What the sending thread did: keys and requests sent, the server's count after the last.
#[derive(Debug, Default)]
struct Sent {
    keys: u64,
    requests: u64,
    server_count: Option<u64>,
}

/// PUTs the bodies it is handed, one at a time, on a thread of its own, so that encrypting
/// the next body never waits for the server to store the last one.
fn send_bodies(
    client: &mxkeys::client::Client,
    version: &str,
    bodies: std::sync::mpsc::Receiver<(u64, Vec<u8>)>,
) -> (Sent, anyhow::Result<()>) {
    let mut sent = Sent::default();
    for (n, body) in bodies {
        match client.put_room_keys(version, &body) {
            Ok(r) => {
                sent.keys += n;
                sent.requests += 1;
                sent.server_count = Some(r.count);
            }
            Err(e) => return (sent, Err(e.into())),
        }
    }
    (sent, Ok(()))
}

struct Uploader {
    encryptor: BackupEncryptor,
    index: ServerIndex,
    batch: BatchBuilder,
    /// The sending thread's queue (`None` on a dry run). It holds no body: a full body waits
    /// here only until the thread has taken the previous one.
    to_send: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    pending: Vec<ExportedSession>,
    counts: Counts,
}

/// The sending thread stopped: it failed, and its error is the one to report.
#[derive(Debug, thiserror::Error)]
#[error("the upload stopped")]
struct SenderStopped;

impl Uploader {
    fn push(&mut self, s: ExportedSession) -> anyhow::Result<()> {
        self.pending.push(s);
        if self.pending.len() >= 1024 {
            self.process()?;
        }
        Ok(())
    }

    /// Decide, encrypt in parallel, batch and hand full bodies to the sending thread.
    fn process(&mut self) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut chosen = Vec::new();
        for s in pending {
            self.counts.considered += 1;
            let ours = Meta {
                first_message_index: s.first_known_index(),
                forwarded_count: s.forwarding_curve25519_key_chain.len() as u32,
                is_verified: false,
            };
            // The source is a store (the user's or the scratch one the files were merged into): it
            // holds each session once, so nothing needs recording.
            match self.index.judge(&s.room_id, &s.session_id, ours) {
                Decision::New => {
                    self.counts.new += 1;
                    chosen.push((s, ours));
                }
                Decision::Better => {
                    self.counts.better += 1;
                    chosen.push((s, ours));
                }
                Decision::Skip => self.counts.skipped += 1,
            }
        }
        if self.to_send.is_none() || chosen.is_empty() {
            return Ok(());
        }
        let encryptor = &self.encryptor;
        let encrypted: Vec<_> = chosen
            .par_iter()
            .map(|(s, m)| encryptor.encrypt_session(s, m.forwarded_count, m.is_verified))
            .collect();
        for ((s, _), d) in chosen.into_iter().zip(encrypted) {
            let d = d?;
            if self.batch.would_overflow(&s.room_id, &s.session_id, &d) {
                self.queue()?;
            }
            self.batch.push(s.room_id, s.session_id, d);
        }
        Ok(())
    }

    /// Hand the batch's body to the sending thread (waiting while it sends the one before).
    fn queue(&mut self) -> anyhow::Result<()> {
        let Some(to) = &self.to_send else {
            return Ok(());
        };
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        to.send((n, self.batch.take_body()))
            .map_err(|_| anyhow::Error::new(SenderStopped))
    }

    /// The last keys and the last body (the caller closes the queue, on success or not).
    fn finish(&mut self) -> anyhow::Result<()> {
        self.process()?;
        self.queue()
    }
}

/// Did the secret given fail to unlock this backup (wrong key, or a stale copy in secret
/// storage)? The error may arrive bare or inside `mxkeys::Error`.
fn key_does_not_match(e: &anyhow::Error) -> bool {
    let mismatch = |r: &RecoveryError| {
        matches!(
            r,
            RecoveryError::NoMatch { .. }
                | RecoveryError::StaleBackupKey { .. }
                | RecoveryError::NoBackupSecret { .. }
        )
    };
    e.chain().any(|c| match c.downcast_ref::<mxkeys::Error>() {
        Some(mxkeys::Error::Recovery(r)) => mismatch(r),
        _ => c.downcast_ref::<RecoveryError>().is_some_and(mismatch),
    })
}

/// Run `backup upload`.
pub fn run(ctx: &Context<'_>, a: BackupUploadArgs) -> anyhow::Result<Code> {
    let stdin_is_data = check_stdin_once(&a.files)?;
    let from_files = !a.files.is_empty();
    let conn = net::connect(
        ctx,
        &a.net,
        if from_files {
            StoreUse::IfPresent(Access::Write)
        } else {
            StoreUse::Required(Access::Write)
        },
    )?;
    let current = net::backup_version(&conn.client, None)?;
    if let Some(v) = &a.version
        && v != &current.version
    {
        return Err(CliError::new(
            Code::Busy,
            format!(
                "backup version {v} is not the current one (the current one is {}); keys can only be added to the current version",
                current.version
            ),
            "run without --version, or check with `mxkeys backup info`",
        ));
    }
    let auth = net::auth_data(&current)?;
    let public = auth.backup_public_key()?;

    // Trust: the key in hand derives the server's public key, or the user pinned it.
    let (trust, key) = if let Some(pin) = &a.trust_public_key {
        let pinned = BackupPublicKey::from_base64(pin)?;
        if pinned != public {
            return Err(CliError::new(
                Code::Untrusted,
                format!(
                    "nothing was uploaded: the backup's public key is {public}, not the pinned {pinned}"
                ),
                "if the backup was replaced on purpose, check it with `mxkeys backup info` and pin the new key",
            ));
        }
        ("the pinned public key".to_string(), None)
    } else {
        match net::backup_key(
            ctx,
            &conn,
            &a.secret,
            &current,
            &auth,
            Missing::Untrusted,
            stdin_is_data,
        ) {
            Ok((k, src)) => (src.describe().to_string(), Some((k, src))),
            Err(e) if key_does_not_match(&e) => {
                return Err(CliError::new(
                    Code::Untrusted,
                    format!(
                        "nothing was uploaded: the key given does not match backup version {}'s public key ({e:#})",
                        current.version
                    ),
                    "check the key with `mxkeys recovery-key check`; if the server replaced the backup's key, do not upload",
                ));
            }
            Err(e) => return Err(e),
        }
    };

    // Every question (the files' passphrases) is asked before any bar is drawn.
    let bar = ctx.ui.bar();
    let unlocked = if from_files {
        Some(
            super::super::open_and_unlock(
                ctx,
                &a.files,
                &a.passphrase,
                &a.read,
                stdin_is_data,
                &bar,
            )?
            .0,
        )
    } else {
        None
    };
    let mut up = Uploader {
        encryptor: BackupEncryptor::new(&public),
        index: ServerIndex::with_capacity(usize::try_from(current.count).unwrap_or(0)),
        batch: BatchBuilder::new(),
        to_send: None,
        pending: Vec::new(),
        counts: Counts::default(),
    };
    // What the server holds (metadata only, no key needed).
    bar.phase("comparing", current.count, Unit::Keys);
    conn.client
        .room_keys(&current.version, None, None, &bar, &mut |k| {
            up.index
                .insert(&k.room_id, &k.session_id, Meta::of(&k.data));
            Ok(())
        })?;

    // Keys go to the server grouped by room whatever their source: Synapse on SQLite scans the
    // whole backup once per room in a PUT, so keys in file order (rooms interleaved, as many
    // clients write them) made an upload quadratic. Files are therefore merged first into a
    // scratch store sealed under a random key (which also keeps only the best copy of a
    // session found in several files), then read back in room order.
    let mut files_read = Vec::new();
    let scratch;
    let source: &mxkeys::store::Store = if let Some(mut unlocked) = unlocked {
        let (dir, mut store) = super::super::scratch_store("mxkeys-upload-")?;
        let mut log = super::super::MergeLog::default();
        log.merge_files(&mut store, &mut unlocked, &bar)?;
        up.counts.rejected += log.rejected;
        files_read = unlocked.iter().map(|(label, _)| label.clone()).collect();
        scratch = (dir, store);
        &scratch.1
    } else {
        conn.store()?
    };
    let n = source.count(&Filter::default())?;
    bar.phase("uploading", n, Unit::Keys);
    let (client, version) = (&conn.client, current.version.as_str());
    let (sent, result) = std::thread::scope(|scope| {
        // Bodies go out on their own thread while the next ones are read and encrypted.
        let sender = (!a.dry_run).then(|| {
            let (to, from) = std::sync::mpsc::sync_channel(0);
            up.to_send = Some(to);
            scope.spawn(move || send_bodies(client, version, from))
        });
        let mut err: Option<anyhow::Error> = None;
        let read = source
            .for_each_session(
                &Filter {
                    by_room: true,
                    ..Filter::default()
                },
                &mut |s| {
                    bar.advance(1);
                    progress::check(&bar)?;
                    up.push(s).map_err(|e| {
                        err = Some(e);
                        mxkeys::Error::Interrupted
                    })
                },
            )
            .map_err(|e| err.take().unwrap_or_else(|| e.into()))
            .and_then(|_| up.finish());
        // Closing the queue ends the thread after the body it is sending.
        up.to_send = None;
        let (sent, put) = match sender.map(|t| t.join()) {
            None => (Sent::default(), Ok(())),
            Some(Ok(r)) => r,
            Some(Err(_)) => (
                Sent::default(),
                Err(anyhow::anyhow!("the sending thread stopped unexpectedly")),
            ),
        };
        // A failed PUT is the cause when the reading side only saw the queue close.
        let result = match (read, put) {
            (_, Err(e)) => Err(e),
            (r, Ok(())) => r,
        };
        (sent, result)
    });
    bar.finish();
    up.counts.sent = sent.keys;
    up.counts.requests = sent.requests;
    let server_count = sent.server_count.unwrap_or(current.count);
    if let Err(e) = &result
        && matches!(
            e.downcast_ref::<mxkeys::Error>(),
            Some(mxkeys::Error::Client(ClientError::WrongVersion { .. }))
        ) | matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::WrongVersion { .. })
        )
    {
        ctx.ui.warn(&format!(
            "{} keys were sent before the backup version changed",
            up.counts.sent
        ));
    }
    result?;
    if let Some((k, KeySource::Given(_))) = &key {
        net::cache_key(ctx, conn.store.as_ref(), k);
    }
    let c = &up.counts;
    let code = if c.rejected > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "version": current.version,
            "dry_run": a.dry_run,
            "trusted_by": trust,
            "considered": c.considered,
            "new": c.new,
            "better": c.better,
            "skipped": c.skipped,
            "sent": c.sent,
            "requests": c.requests,
            "rejected": c.rejected,
            "server_count": server_count,
            "files": files_read,
        }))?;
    } else if a.dry_run {
        ctx.ui.note(&format!(
            "Dry run: would send {} keys to backup version {} ({} new, {} better than the server's copy); {} already there as good or better.",
            c.new + c.better, current.version, c.new, c.better, c.skipped
        ));
    } else {
        ctx.ui.note(&format!(
            "Uploaded {} keys to backup version {} in {} requests ({} new, {} better); {} already there as good or better. The backup now holds {} keys. Trusted through {trust}.",
            c.sent, current.version, c.requests, c.new, c.better, c.skipped, server_count
        ));
    }
    Ok(code)
}
