//! `device sync`: receive what is sent to the device, store every room key as it arrives, and
//! with `--backup` put each new one into the backup (never making the backup worse).

use std::time::{Duration, Instant};

use mxkeys::backup::{self, BackupPublicKey};
use mxkeys::client::{Client, ClientError};
use mxkeys::device::keys;
use mxkeys::device::sync::{self, Batch};
use mxkeys::progress::NoProgress;
use mxkeys::store::{MergeCounts, Store};
use mxkeys::sync::{BatchBuilder, Decision, Meta, ServerIndex};
use serde_json::json;

use super::super::Context;
use super::super::net;
use super::{lib, open, reconcile};
use crate::cli::device_args::DeviceSyncArgs;
use crate::cli::exit::{CliError, Code};

/// Longest wait of one sync on the server, in seconds.
const POLL_SECS: u64 = 5;

/// Totals over a run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Totals {
    /// Syncs made.
    pub syncs: u64,
    /// To-device messages received.
    pub to_device: u64,
    /// Keys new to the store.
    pub imported: u64,
    /// Keys that replaced a worse copy.
    pub improved: u64,
    /// Keys the store already held as well or better.
    pub unchanged: u64,
    /// Keys put into the backup.
    pub backed_up: u64,
    /// The backup version whose key arrived and was kept, if one did.
    pub backup_key_for: Option<String>,
}

/// Store the keys of one batch (one transaction) and count them.
pub fn store_batch(
    store: &mut Store,
    batch: &Batch,
    t: &mut Totals,
) -> anyhow::Result<MergeCounts> {
    t.syncs += 1;
    t.to_device += batch.to_device as u64;
    let c = lib(keys::merge(
        store,
        batch.keys.clone(),
        &batch.sources,
        keys::SOURCE_DEVICE,
    ))?;
    t.imported += c.imported;
    t.improved += c.improved;
    t.unchanged += c.unchanged;
    Ok(c)
}

/// The backup that new keys go to, trusted through the backup key kept in the store.
struct Keeper {
    version: String,
    public: BackupPublicKey,
}

impl Keeper {
    fn open(client: &Client, store: &Store) -> anyhow::Result<Keeper> {
        let current = net::backup_version(client, None)?;
        let auth = net::auth_data(&current)?;
        if net::cached_key(Some(store), &auth)?.is_none() {
            return Err(CliError::new(
                Code::Untrusted,
                format!(
                    "--backup: backup version {} cannot be trusted: the store keeps no key of it",
                    current.version
                ),
                "run `mxkeys device request-secrets`, or `mxkeys backup download` once with the Security Key, then try again",
            ));
        }
        Ok(Keeper {
            version: current.version,
            public: auth.backup_public_key()?,
        })
    }

    /// Send the keys of `batch` that are better than what the backup holds.
    fn upload(&self, client: &Client, batch: &Batch) -> anyhow::Result<u64> {
        let mut index = ServerIndex::default();
        let mut body = BatchBuilder::new();
        for s in &batch.keys {
            let mut theirs = None;
            let r = client.room_keys(
                &self.version,
                Some(&s.room_id),
                Some(&s.session_id),
                &NoProgress,
                &mut |k| {
                    theirs = Some(Meta::of(&k.data));
                    Ok(())
                },
            );
            match r {
                Ok(()) => {}
                Err(mxkeys::Error::Client(ClientError::NotFound { .. })) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(m) = theirs {
                index.insert(&s.room_id, &s.session_id, m);
            }
            let ours = Meta {
                first_message_index: s.first_known_index(),
                forwarded_count: s.forwarding_curve25519_key_chain.len() as u32,
                is_verified: false,
            };
            if index.decide(&s.room_id, &s.session_id, ours) == Decision::Skip {
                continue;
            }
            let d = backup::encrypt_session(&self.public, s, ours.forwarded_count, false)?;
            body.push(s.room_id.clone(), s.session_id.clone(), d);
        }
        let n = body.len() as u64;
        if n > 0 {
            client.put_room_keys(&self.version, &body.take_body())?;
        }
        Ok(n)
    }
}

/// Run `device sync`.
pub fn run(ctx: &Context<'_>, a: DeviceSyncArgs) -> anyhow::Result<Code> {
    let (mut conn, dev) = open(ctx, &a.net)?;
    reconcile(ctx, &mut conn, &dev)?;
    let keeper = if a.backup {
        let store = conn.store()?;
        Some(Keeper::open(&conn.client, store)?)
    } else {
        None
    };
    let deadline = (!a.follow).then(|| Instant::now() + Duration::from_secs(a.wait));
    // The server holds each sync open this long when nothing comes: shorter than the
    // per-attempt timeout (a quiet server is not taken for a dead one), and short enough that
    // Ctrl-C, noticed between syncs, ends the run within a few seconds.
    let poll_ms = a.net.timeout.max(2).saturating_sub(1).min(POLL_SECS) * 1000;
    let mut t = Totals::default();
    if !ctx.ui.json {
        ctx.ui.note(&match deadline {
            Some(_) => format!(
                "Receiving for {} s as device {}...",
                a.wait,
                dev.record().device_id
            ),
            None => format!(
                "Receiving as device {} until Ctrl-C...",
                dev.record().device_id
            ),
        });
    }
    loop {
        if crate::cli::output::interrupted() {
            break;
        }
        let wait_ms = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                (left.as_millis() as u64).min(poll_ms)
            }
            None => poll_ms,
        };
        let batch = match sync::once(&dev, &conn.client, wait_ms) {
            Ok(b) => b,
            // Ctrl-C during a long poll: what was stored stays stored.
            Err(mxkeys::device::DeviceError::Client(ClientError::Interrupted)) => break,
            Err(e) => return lib(Err(e)),
        };
        let c = store_batch(conn.store_mut()?, &batch, &mut t)?;
        // A secret that arrived (the backup key a verified device pushed, or the answer to an
        // earlier `request-secrets`) is kept as `request-secrets` keeps it.
        if !batch.secret_senders.is_empty() {
            let received = lib(mxkeys::device::secrets::inbox_backup_keys(&dev))?;
            if let Some(v) = super::request::keep_backup_key(ctx, &conn, &dev, &received)? {
                t.backup_key_for = Some(v.clone());
                if !ctx.ui.json {
                    ctx.ui.note(&format!(
                        "the key of backup version {v} arrived from {}; it is kept sealed in the store",
                        batch.secret_senders.join(", ")
                    ));
                }
            }
        }
        if let Some(k) = &keeper {
            t.backed_up += k.upload(&conn.client, &batch)?;
        }
        if c.imported + c.improved > 0 && !ctx.ui.json {
            for s in &batch.keys {
                let src = batch
                    .sources
                    .get(&(s.room_id.clone(), s.session_id.clone()))
                    .map(String::as_str)
                    .unwrap_or(keys::SOURCE_DEVICE);
                ctx.ui.note(&format!(
                    "key for {} (session {}) from {src}",
                    mxkeys::session::sanitize(&s.room_id),
                    s.session_id
                ));
            }
        }
    }
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "device_id": dev.record().device_id,
            "totals": t,
        }))?;
    } else {
        use crate::cli::output::count;
        ctx.ui.note(&format!(
            "{}, {}: {}, {}, {} already held{}.",
            count(t.syncs, "sync", "syncs"),
            count(t.to_device, "to-device message", "to-device messages"),
            count(t.imported, "new key", "new keys"),
            count(t.improved, "better copy", "better copies"),
            t.unchanged,
            if keeper.is_some() {
                format!("; {} put into the backup", t.backed_up)
            } else {
                String::new()
            }
        ));
    }
    Ok(Code::Success)
}
