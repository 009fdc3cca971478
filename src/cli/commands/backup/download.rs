//! `mxkeys backup download`: fetch and decrypt the backup into the store or an export file.

use mxkeys::backup::{self, BackupDecryptionKey, KeyBackupData};
use mxkeys::client::{Client, RoomKey};
use mxkeys::export::ThreadedSessionWriter;
use mxkeys::progress::{Progress, Unit};
use mxkeys::recovery::UserSecret;
use mxkeys::session::ExportedSession;
use mxkeys::store::{Access, MergeCounts, MergeTx, Outcome};
use serde_json::json;

use super::super::net::{self, KeySource, Missing, StoreUse};
use super::super::{Conflict, Context, MAX_LISTED, Sink, output_label};
use crate::cli::BackupDownloadArgs;
use crate::cli::exit::{CliError, Code};

/// Keys decrypted together, in parallel.
const DECRYPT_BATCH: usize = 1024;

#[derive(Debug, serde::Serialize)]
struct Rejected {
    room_id: String,
    session_id: String,
    reason: String,
}

enum Target<'s> {
    Store(MergeTx<'s>),
    File(Box<ThreadedSessionWriter<Sink>>),
}

/// At most this many entries are reserved ahead in the table of sessions seen: address space
/// for them (under 72 MB) becomes resident only as the table fills.
const SEEN_CAPACITY_CAP: usize = 1 << 21;

struct Downloader<'s> {
    key: BackupDecryptionKey,
    target: Target<'s>,
    pending: Vec<(String, String, KeyBackupData)>,
    sessions_filter: Vec<String>,
    /// Sessions already taken: a response read again after a broken connection repeats them.
    seen: std::collections::HashSet<[u8; 16]>,
    fetched: u64,
    merge: MergeCounts,
    rejected: u64,
    wrong_key: u64,
    rejections: Vec<Rejected>,
    conflicts: Vec<Conflict>,
}

impl Downloader<'_> {
    fn push(&mut self, k: RoomKey) -> mxkeys::Result<()> {
        if !self.sessions_filter.is_empty() && !self.sessions_filter.contains(&k.session_id) {
            return Ok(());
        }
        if !self
            .seen
            .insert(mxkeys::sync::pair_key(&k.room_id, &k.session_id))
        {
            return Ok(());
        }
        self.fetched += 1;
        self.pending.push((k.room_id, k.session_id, k.data));
        if self.pending.len() >= DECRYPT_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> mxkeys::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.pending);
        let results = backup::decrypt_many(&self.key, &items);
        let mut valid: Vec<ExportedSession> = Vec::with_capacity(results.len());
        for ((room_id, session_id, _), r) in items.into_iter().zip(results) {
            match r {
                Ok(s) => valid.push(s),
                Err(e) => {
                    if matches!(e, backup::BackupError::WrongKey) {
                        self.wrong_key += 1;
                    }
                    self.rejected += 1;
                    if self.rejections.len() < MAX_LISTED {
                        self.rejections.push(Rejected {
                            room_id,
                            session_id,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        match &mut self.target {
            Target::Store(tx) => {
                let merge = &mut self.merge;
                let conflicts = &mut self.conflicts;
                tx.merge_batch(valid, &mut |s, o| {
                    merge.add(o);
                    if o == Outcome::Conflict && conflicts.len() < MAX_LISTED {
                        conflicts.push(Conflict {
                            file: "backup".into(),
                            room_id: s.room_id.clone(),
                            session_id: s.session_id.clone(),
                        });
                    }
                })?;
            }
            Target::File(w) => w.push_all(valid)?,
        }
        Ok(())
    }
}

fn fetch(
    client: &Client,
    version: &str,
    rooms: &[String],
    sessions: &[String],
    bar: &dyn Progress,
    d: &mut Downloader<'_>,
) -> mxkeys::Result<()> {
    if rooms.is_empty() {
        return client.room_keys(version, None, None, bar, &mut |k| d.push(k));
    }
    for room in rooms {
        if sessions.is_empty() {
            client.room_keys(version, Some(room), None, bar, &mut |k| d.push(k))?;
        } else {
            for sid in sessions {
                client.room_keys(version, Some(room), Some(sid), bar, &mut |k| d.push(k))?;
            }
        }
    }
    Ok(())
}

/// Run `backup download`.
pub fn run(ctx: &Context<'_>, a: BackupDownloadArgs) -> anyhow::Result<Code> {
    let out = a.output.as_deref();
    Sink::precheck(out, a.out.force)?;
    let bar = ctx.ui.bar();

    // Where the key comes from, and where the keys come from.
    let offline = a.from_response.is_some();
    let mut conn = None;
    let (key, source, version) = if offline {
        let given = net::given_secret(ctx, &a.secret, false)?;
        let given = match given {
            Some(g) => g,
            None if ctx.ui.interactive => net::prompt_secret()?,
            None => {
                return Err(CliError::usage(
                    format!(
                        "the backup's recovery key is needed, and {}",
                        ctx.ui.cannot_ask()
                    ),
                    "give it with --recovery-key-file PATH, --recovery-key-fd N or MXKEYS_RECOVERY_KEY",
                ));
            }
        };
        let UserSecret::Key(k) = given else {
            return Err(CliError::usage(
                "offline, only the backup's own recovery key can decrypt a saved response",
                "give the backup's recovery key (a Security Phrase or Key needs the account's secret storage: download online instead)",
            ));
        };
        (
            BackupDecryptionKey::new(mxkeys::secret::Key32::new(*k.expose_secret())),
            KeySource::Given(mxkeys::recovery::SecretKind::BackupRecoveryKey),
            None,
        )
    } else {
        let c = net::connect(
            ctx,
            &a.net,
            if out.is_some() {
                StoreUse::IfPresent(Access::Write)
            } else {
                StoreUse::Required(Access::Write)
            },
        )?;
        let v = net::backup_version(&c.client, a.version.as_deref())?;
        let auth = net::auth_data(&v)?;
        let (k, src) = net::backup_key(ctx, &c, &a.secret, &v, &auth, Missing::Usage, false)?;
        ctx.ui.note(&format!(
            "Backup version {} ({} keys) unlocked with {}.",
            v.version,
            v.count,
            src.describe()
        ));
        conn = Some(c);
        (k, src, Some(v))
    };

    // The target: the store (one transaction), or an export file.
    let mut store = match (&mut conn, out) {
        (Some(c), None) => c.store.take(),
        (None, None) => Some(ctx.open_store(Access::Write, false)?),
        _ => None,
    };
    let target = match out {
        Some(_) => {
            let (w, _, _) =
                super::super::new_export(ctx, out, a.out.force, &a.write, &a.passphrase, false)?;
            Target::File(Box::new(w))
        }
        None => {
            let mut tx = store
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("no store"))?
                .merge_tx()?;
            tx.set_source(match (&version, &a.from_response) {
                (Some(v), _) => format!("backup:{}", v.version),
                (None, Some(p)) => format!("backup-response:{}", p.display()),
                (None, None) => "backup".to_string(),
            });
            Target::Store(tx)
        }
    };
    // Every question has been asked: the bar starts with the work.
    if let Some(v) = &version {
        bar.phase("downloading", v.count, Unit::Keys);
    }
    // Sized once from the backup's count: growing to a million entries would hold the old and
    // the doubled table at once (18 MB more at the peak). The count is the server's word, so
    // it is capped, and a failed reservation only means growing as before.
    let mut seen = std::collections::HashSet::new();
    if let Some(v) = &version
        && a.rooms.is_empty()
        && a.sessions.is_empty()
    {
        let _ = seen.try_reserve(usize::try_from(v.count).unwrap_or(0).min(SEEN_CAPACITY_CAP));
    }
    let (key, written, fetched, merge, rejected, rejections, conflicts) = {
        let mut d = Downloader {
            key,
            target,
            pending: Vec::new(),
            sessions_filter: a.sessions.clone(),
            seen,
            fetched: 0,
            merge: MergeCounts::default(),
            rejected: 0,
            wrong_key: 0,
            rejections: Vec::new(),
            conflicts: Vec::new(),
        };
        match (&a.from_response, &conn, &version) {
            (Some(path), _, _) => {
                let f = std::fs::File::open(path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        mxkeys::Error::FileNotFound {
                            path: path.display().to_string(),
                        }
                    } else {
                        mxkeys::Error::io(format!("opening {}", path.display()), e)
                    }
                })?;
                let rooms = a.rooms.clone();
                Client::parse_saved_keys(std::io::BufReader::new(f), &bar, &mut |k| {
                    if rooms.is_empty() || rooms.contains(&k.room_id) {
                        d.push(k)
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| match e {
                    // Not a key export: the generic hint (`mxkeys decrypt --raw`) would mislead.
                    mxkeys::Error::NotAKeyExport(m) => CliError::new(
                        Code::Invalid,
                        format!("{}: {m}", path.display()),
                        "give --from-response the body of GET /_matrix/client/v3/room_keys/keys?version=V, saved unchanged",
                    ),
                    e => e.into(),
                })?;
            }
            (None, Some(c), Some(v)) => {
                fetch(&c.client, &v.version, &a.rooms, &a.sessions, &bar, &mut d)?
            }
            _ => return Err(anyhow::anyhow!("nothing to download from")),
        }
        d.flush()?;
        bar.finish();
        let Downloader {
            key,
            target,
            fetched,
            merge,
            rejected,
            wrong_key,
            rejections,
            conflicts,
            ..
        } = d;
        if fetched > 0 && wrong_key == fetched {
            // Every key failed its MAC: the key is wrong (offline), nothing is written.
            return Err(mxkeys::Error::Backup(backup::BackupError::WrongKey).into());
        }
        let written = match target {
            Target::Store(tx) => {
                let c = tx.commit()?;
                c.imported + c.improved + c.unchanged + c.conflicts
            }
            Target::File(w) => {
                let n = w.count();
                w.finish()?.commit()?;
                n
            }
        };
        (
            key, written, fetched, merge, rejected, rejections, conflicts,
        )
    };
    if let (KeySource::Given(_), Some(c)) = (source, &conn) {
        net::cache_key(ctx, store.as_ref().or(c.store.as_ref()), &key);
    }
    let code = if rejected > 0 || merge.conflicts > 0 {
        Code::Partial
    } else {
        Code::Success
    };
    let o = out.map(|p| output_label(Some(p)));
    if ctx.ui.json {
        let v = json!({
            "version": version.as_ref().map(|v| v.version.clone()),
            "unlocked_with": source,
            "fetched": fetched,
            "sessions": written,
            "imported": merge.imported,
            "improved": merge.improved,
            "unchanged": merge.unchanged,
            "conflicts": merge.conflicts,
            "rejected": rejected,
            "rejections": rejections,
            "conflict_list": conflicts,
            "output": o,
        });
        if o.as_deref() == Some("stdout") {
            eprintln!("{v}");
        } else {
            ctx.ui.print_json(&v)?;
        }
    } else {
        for r in rejections.iter().take(10) {
            ctx.ui.warn(&format!(
                "{} in {}: {}",
                r.session_id,
                mxkeys::session::sanitize(&r.room_id),
                r.reason
            ));
        }
        match &o {
            Some(o) => ctx.ui.note(&format!("Wrote {written} sessions to {o}; rejected {}.", rejected)),
            None => ctx.ui.note(&format!(
                "Downloaded {} keys: {} new, {} improved, {} already held; rejected {}, conflicts {}.",
                fetched, merge.imported, merge.improved, merge.unchanged, rejected, merge.conflicts
            )),
        }
    }
    Ok(code)
}
