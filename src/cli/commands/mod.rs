//! One module per command, each with a `run` function; shared plumbing lives here.

pub mod backup;
pub mod client_store;
pub mod completions;
pub mod decrypt;
pub mod device;
pub mod encrypt;
pub mod export;
pub mod history;
pub mod history_export;
pub mod import;
pub mod init;
pub mod inspect;
pub mod list;
pub mod login;
pub mod man;
pub mod merge;
pub mod net;
pub mod recovery_key;
pub mod reencrypt;

use std::fs::File;
use std::io::{BufWriter, Stdout, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mxkeys::export::{ExportReader, ExportWriter, Limits, ThreadedSessionWriter, UnlockedExport};
use mxkeys::fs::{AtomicFile, Overwrite};
use mxkeys::passphrase_strength::Strength;
use mxkeys::progress::Progress;
use mxkeys::secret::Passphrase;
use mxkeys::store::{Access, Locked, MergeCounts, Outcome, Protection, Store, StoreError};

use super::GlobalArgs;
use super::exit::{CliError, Code};
use super::output::{Bar, Ui};
use super::prompt;
use super::secrets_in::{self, Origin, Source};

/// Tries at a terminal prompt before giving up on a passphrase.
const PROMPT_TRIES: u32 = 3;

/// What every command needs.
pub struct Context<'a> {
    /// Output settings.
    pub ui: &'a Ui,
    /// Global flags.
    pub global: &'a GlobalArgs,
    store_dir: Option<PathBuf>,
}

/// The default store directory: `$XDG_DATA_HOME/mxkeys`, else `~/.local/share/mxkeys`.
fn default_store_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("mxkeys"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/mxkeys"))
}

impl<'a> Context<'a> {
    /// Build the context from the global flags.
    pub fn new(global: &'a GlobalArgs, ui: &'a Ui) -> anyhow::Result<Self> {
        let store_dir = global.store.clone().or_else(default_store_dir);
        Ok(Context {
            ui,
            global,
            store_dir,
        })
    }

    /// The store directory.
    pub fn store_dir(&self) -> anyhow::Result<&Path> {
        self.store_dir.as_deref().ok_or_else(|| {
            CliError::usage(
                "no key store directory: HOME and XDG_DATA_HOME are unset",
                "give --store DIR or set MXKEYS_STORE",
            )
        })
    }

    /// Open the store (not unlocked): enough for listing.
    pub fn open_store_locked(&self, access: Access) -> anyhow::Result<Locked> {
        Ok(Store::open(self.store_dir()?, access)?)
    }

    /// The store directory as shown to a person: `~` for the home directory.
    pub fn store_dir_shown(&self) -> String {
        match self.store_dir() {
            Ok(d) => tilde(d),
            Err(_) => "(no store directory)".into(),
        }
    }

    /// The store passphrase's sources, with the question that names the store.
    pub fn store_passphrase(&self) -> Source {
        secrets_in::store_passphrase(self.global).with_prompt(format!(
            "Store passphrase (mxkeys store at {})",
            self.store_dir_shown()
        ))
    }

    /// Open and unlock the store, asking for its passphrase when it is sealed.
    pub fn open_store(&self, access: Access, stdin_is_data: bool) -> anyhow::Result<Store> {
        let locked = self.open_store_locked(access)?;
        if locked.protection() == Protection::Unsealed {
            return locked.unlock(None).map_err(|(_, e)| e.into());
        }
        let source = self.store_passphrase();
        let (mut pass, origin) = source.resolve(self.ui, stdin_is_data)?;
        let mut locked = locked;
        let mut tries = 1;
        loop {
            match locked.unlock(Some(&pass)) {
                Ok(s) => return Ok(s),
                Err((l, StoreError::WrongPassphrase))
                    if origin == Origin::Prompt && tries < PROMPT_TRIES =>
                {
                    prompt::say(&format!(
                        "Wrong store passphrase; {}.",
                        tries_left(PROMPT_TRIES - tries)
                    ));
                    locked = l;
                    tries += 1;
                    pass = source.prompt_again()?;
                }
                Err((_, e)) => return Err(e.into()),
            }
        }
    }
}

/// "2 tries left", "1 try left".
pub fn tries_left(n: u32) -> String {
    if n == 1 {
        "1 try left".into()
    } else {
        format!("{n} tries left")
    }
}

/// A path as shown to a person: the home directory as `~`.
pub fn tilde(p: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
        && let Ok(rest) = p.strip_prefix(&home)
    {
        if rest.as_os_str().is_empty() {
            return "~".into();
        }
        return format!("~/{}", rest.display());
    }
    p.display().to_string()
}

/// An input export file made seekable.
pub struct Input {
    /// How to name it in messages.
    pub label: String,
    /// The open file (stdin is spooled to an unlinked temporary file).
    pub file: File,
}

/// Open an input path; `-` is stdin.
pub fn open_input(path: &Path) -> anyhow::Result<Input> {
    if path == Path::new("-") {
        let file = mxkeys::export::spool(std::io::stdin().lock())?;
        return Ok(Input {
            label: "stdin".into(),
            file,
        });
    }
    let label = path.display().to_string();
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            mxkeys::Error::FileNotFound {
                path: label.clone(),
            }
        } else {
            mxkeys::Error::io(format!("opening {label}"), e)
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| mxkeys::Error::io(format!("opening {label}"), e))?;
    if meta.is_dir() {
        return Err(CliError::new(
            Code::Invalid,
            format!("{label} is a directory"),
            "give the path of an export file",
        ));
    }
    if !meta.is_file() {
        // A FIFO or character device: make it seekable.
        let file = mxkeys::export::spool(file)?;
        return Ok(Input { label, file });
    }
    Ok(Input { label, file })
}

/// At most one input may be stdin.
pub fn check_stdin_once(paths: &[PathBuf]) -> anyhow::Result<bool> {
    let n = paths.iter().filter(|p| p.as_os_str() == "-").count();
    if n > 1 {
        return Err(CliError::usage(
            "stdin ('-') is given more than once",
            "give each input file by name",
        ));
    }
    Ok(n == 1)
}

/// Check an export file's structure (pass 1): no passphrase needed.
pub fn open_export(
    input: Input,
    limits: &Limits,
    progress: &dyn Progress,
) -> anyhow::Result<(String, ExportReader<File>)> {
    let label = input.label;
    let r = ExportReader::open(input.file, limits, progress).with_context(|| label.clone())?;
    Ok((label, r))
}

/// Unlocks export files with one passphrase, asking again per file at a terminal.
pub struct ExportUnlocker {
    source: Source,
    stdin_is_data: bool,
    current: Option<(Passphrase, Origin)>,
    first: Option<Passphrase>,
    differ: bool,
}

impl ExportUnlocker {
    /// Unlocker for `source`.
    pub fn new(source: Source, stdin_is_data: bool) -> Self {
        ExportUnlocker {
            source,
            stdin_is_data,
            current: None,
            first: None,
            differ: false,
        }
    }

    /// The passphrase that unlocked the first file (to reuse for an output).
    pub fn passphrase(&self) -> Option<&Passphrase> {
        self.first.as_ref()
    }

    /// Did the files need different passphrases?
    pub fn passphrases_differ(&self) -> bool {
        self.differ
    }

    fn note_success(&mut self) {
        if let Some((p, _)) = &self.current {
            match &self.first {
                None => self.first = Some(Passphrase::new(p.expose_secret().to_vec())),
                Some(f) => self.differ |= !f.ct_eq(p),
            }
        }
    }

    /// Unlock `reader`, verifying its MAC. At a terminal the question names the file; a
    /// passphrase typed for an earlier file is tried first, and if it does not fit, this
    /// file's own is asked for.
    pub fn unlock(
        &mut self,
        ui: &Ui,
        label: &str,
        reader: ExportReader<File>,
        progress: &dyn Progress,
    ) -> anyhow::Result<UnlockedExport<File>> {
        let source = self.source.clone().with_prompt(format!(
            "Passphrase for {}",
            mxkeys::session::sanitize(label)
        ));
        // Whether the passphrase in hand was typed for this very file.
        let mut typed_for_this = false;
        if self.current.is_none() {
            let got = source.resolve(ui, self.stdin_is_data)?;
            typed_for_this = got.1 == Origin::Prompt;
            self.current = Some(got);
        }
        let mut reader = reader;
        let mut tries = u32::from(typed_for_this);
        loop {
            let Some((pass, origin)) = &self.current else {
                return Err(CliError::new(Code::Failure, "no passphrase", ""));
            };
            let origin = *origin;
            match reader.unlock(pass, progress) {
                Ok(u) => {
                    self.note_success();
                    return Ok(u);
                }
                Err((r, mxkeys::Error::WrongPassphraseOrModified))
                    if origin == Origin::Prompt && tries < PROMPT_TRIES =>
                {
                    if tries > 0 {
                        prompt::say(&format!(
                            "Wrong passphrase for {} (or the file was modified); {}.",
                            mxkeys::session::sanitize(label),
                            tries_left(PROMPT_TRIES - tries)
                        ));
                    }
                    reader = r;
                    tries += 1;
                    self.current = Some((source.prompt_again()?, Origin::Prompt));
                }
                Err((_, e)) => return Err(anyhow::Error::new(e).context(label.to_string())),
            }
        }
    }
}

/// An input file's label and its unlocked export.
pub type Unlocked = (String, UnlockedExport<File>);

/// Check every file's structure (no passphrase needed), then unlock each in turn, so that a
/// damaged or hostile file is refused before any key is derived or anything is written.
pub fn open_and_unlock(
    ctx: &Context<'_>,
    files: &[PathBuf],
    passphrase: &super::PassphraseArgs,
    read: &super::ReadArgs,
    stdin_is_data: bool,
    progress: &Bar,
) -> anyhow::Result<(Vec<Unlocked>, ExportUnlocker)> {
    let limits = Limits {
        max_rounds: read.max_rounds,
    };
    let mut readers = Vec::with_capacity(files.len());
    for p in files {
        let input = open_input(p)?;
        progress.set_subject(Some(&input.label));
        readers.push(open_export(input, &limits, progress)?);
    }
    let mut unlocker =
        ExportUnlocker::new(secrets_in::export_passphrase(passphrase), stdin_is_data);
    let mut unlocked = Vec::with_capacity(readers.len());
    for (label, r) in readers {
        progress.set_subject(Some(&label));
        let u = unlocker.unlock(ctx.ui, &label, r, progress)?;
        unlocked.push((label, u));
    }
    Ok((unlocked, unlocker))
}

/// What merging export files into a store did, for reports.
#[derive(Debug, Default)]
pub struct MergeLog {
    /// Rejected entries (at most [`MAX_LISTED`]).
    pub rejections: Vec<Rejection>,
    /// Conflicting sessions (at most [`MAX_LISTED`]).
    pub conflicts: Vec<Conflict>,
    /// All rejected entries.
    pub rejected: u64,
}

/// A scratch store in a new temporary directory (removed when the returned guard drops),
/// sealed under a random key that is never written down.
pub fn scratch_store(prefix: &str) -> anyhow::Result<(tempfile::TempDir, Store)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| mxkeys::Error::io("creating a temporary directory", e))?;
    let key = mxkeys::secret::Key32::random().map_err(|e| mxkeys::Error::io("random key", e))?;
    let pass = mxkeys::secret::Passphrase::new(key.expose_secret().to_vec());
    Store::create(dir.path(), Some(&pass), 1)?;
    let store = Store::open(dir.path(), Access::Write)?
        .unlock(Some(&pass))
        .map_err(|(_, e)| e)?;
    Ok((dir, store))
}

/// One file's share of a merge.
#[derive(Debug, Default, serde::Serialize)]
pub struct FileReport {
    /// Which input.
    pub file: String,
    /// Entries in its array.
    pub entries: usize,
    /// Outcomes of its valid sessions.
    #[serde(flatten)]
    pub counts: MergeCounts,
    /// Entries rejected.
    pub rejected: u64,
}

impl MergeLog {
    /// Print the first rejections and conflicts as warnings (for humans).
    pub fn warn(&self, ui: &Ui, conflicts: u64) {
        warn_entries(
            ui,
            &self.rejections,
            &self.conflicts,
            self.rejected,
            conflicts,
        );
    }

    /// Decrypt the unlocked files and merge their valid sessions into `store`, in one
    /// transaction: everything or nothing is committed.
    ///
    /// Two stages run side by side: this thread decrypts, parses and validates (in parallel
    /// batches), while a writer thread seals and writes the previous batch to SQLite, which
    /// is single-threaded.
    pub fn merge_files(
        &mut self,
        store: &mut Store,
        files: &mut [Unlocked],
        progress: &Bar,
    ) -> anyhow::Result<(MergeCounts, Vec<FileReport>)> {
        enum Msg {
            Batch(usize, Vec<mxkeys::session::ExportedSession>),
            Commit,
        }
        let mut reports: Vec<FileReport> = files
            .iter()
            .map(|(label, _)| FileReport {
                file: label.clone(),
                ..Default::default()
            })
            .collect();
        let labels: Vec<String> = files.iter().map(|(l, _)| l.clone()).collect();
        std::thread::scope(|scope| -> anyhow::Result<(MergeCounts, Vec<FileReport>)> {
            let (send, recv) = std::sync::mpsc::sync_channel::<Msg>(2);
            let labels = &labels;
            let writer = scope.spawn(
                move || -> anyhow::Result<(MergeCounts, Vec<MergeCounts>, Vec<Conflict>)> {
                    let mut tx = store.merge_tx()?;
                    let mut per_file = vec![MergeCounts::default(); labels.len()];
                    let mut conflicts = Vec::new();
                    for msg in recv {
                        match msg {
                            Msg::Batch(f, batch) => {
                                tx.set_source(format!("file:{}", labels[f]));
                                tx.merge_batch(batch, &mut |s, o| {
                                    per_file[f].add(o);
                                    if o == Outcome::Conflict && conflicts.len() < MAX_LISTED {
                                        conflicts.push(Conflict {
                                            file: labels[f].clone(),
                                            room_id: s.room_id.clone(),
                                            session_id: s.session_id.clone(),
                                        });
                                    }
                                })?
                            }
                            Msg::Commit => return Ok((tx.commit()?, per_file, conflicts)),
                        }
                    }
                    // The reader stopped without asking to commit: roll back (tx is dropped).
                    Ok((MergeCounts::default(), per_file, conflicts))
                },
            );
            let mut read_all = || -> anyhow::Result<()> {
                for (f, (label, u)) in files.iter_mut().enumerate() {
                    progress.set_subject(Some(label));
                    let fr = &mut reports[f];
                    let n = u
                        .for_each_session_batch(progress, &mut |batch| {
                            let mut valid = Vec::with_capacity(batch.len());
                            for (index, r) in batch {
                                match r {
                                    Ok(s) => valid.push(s),
                                    Err(e) => {
                                        fr.rejected += 1;
                                        if self.rejections.len() < MAX_LISTED {
                                            self.rejections.push(Rejection {
                                                file: label.clone(),
                                                index,
                                                reason: e.to_string(),
                                            });
                                        }
                                    }
                                }
                            }
                            // A closed channel means the writer failed; its error is reported.
                            send.send(Msg::Batch(f, valid))
                                .map_err(|_| mxkeys::Error::Interrupted)
                        })
                        .map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
                    fr.entries = n;
                    self.rejected += fr.rejected;
                }
                send.send(Msg::Commit)
                    .map_err(|_| mxkeys::Error::Interrupted)?;
                Ok(())
            };
            let read = read_all();
            drop(send);
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the store writer thread failed"))?;
            // The writer's own error explains a closed channel better than the reader's.
            let (counts, per_file, conflicts) = match (read, written) {
                (Ok(()), Ok(w)) => w,
                (_, Err(e)) => return Err(e),
                (Err(e), Ok(_)) => return Err(e),
            };
            for (r, c) in reports.iter_mut().zip(per_file) {
                r.counts = c;
            }
            self.conflicts = conflicts;
            Ok((counts, std::mem::take(&mut reports)))
        })
    }
}

/// A new export file at `out`: rounds (with the spec's warning), a new passphrase from its
/// sources (scored; the score goes into `--json` reports), and the session writer.
pub fn new_export(
    ctx: &Context<'_>,
    out: Option<&Path>,
    force: bool,
    write: &super::WriteArgs,
    passphrase: &super::PassphraseArgs,
    stdin_is_data: bool,
) -> anyhow::Result<(ThreadedSessionWriter<Sink>, u32, Strength)> {
    let rounds = rounds_for_new_file(ctx.ui, write.rounds);
    let (pass, strength, _) = secrets_in::export_passphrase(passphrase)
        .with_prompt(format!("New passphrase for {}", output_label(out)))
        .resolve_new(ctx.ui, write.insecure_empty_passphrase, stdin_is_data)?;
    let w = ThreadedSessionWriter::new(ExportWriter::new(Sink::open(out, force)?, &pass, rounds)?);
    Ok((w, rounds, strength))
}

/// The `--json` form of a new passphrase's strength.
pub fn strength_json(s: &Strength) -> serde_json::Value {
    serde_json::json!({"score": s.score, "weak": s.is_weak()})
}

/// Where output goes: an atomic file, or stdout.
pub enum Sink {
    /// A file that appears only on commit.
    File(AtomicFile),
    /// Standard output.
    Stdout(BufWriter<Stdout>),
}

impl Sink {
    /// Open `path` (`-` or `None` for stdout). Checks for an existing file first.
    pub fn open(path: Option<&Path>, force: bool) -> anyhow::Result<Sink> {
        match path {
            None => Ok(Sink::Stdout(BufWriter::with_capacity(
                256 * 1024,
                std::io::stdout(),
            ))),
            Some(p) if p == Path::new("-") => Ok(Sink::Stdout(BufWriter::with_capacity(
                256 * 1024,
                std::io::stdout(),
            ))),
            Some(p) => Ok(Sink::File(AtomicFile::create(p, overwrite(force))?)),
        }
    }

    /// Fail early if the output file exists and `--force` was not given.
    pub fn precheck(path: Option<&Path>, force: bool) -> anyhow::Result<()> {
        if let Some(p) = path
            && p != Path::new("-")
        {
            mxkeys::fs::check_output(p, overwrite(force))?;
        }
        Ok(())
    }

    /// Make the output final.
    pub fn commit(self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => Ok(f.commit()?),
            Sink::Stdout(mut s) => Ok(s.flush()?),
        }
    }
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

/// Name an output for messages.
pub fn output_label(path: Option<&Path>) -> String {
    match path {
        None => "stdout".into(),
        Some(p) if p == Path::new("-") => "stdout".into(),
        Some(p) => p.display().to_string(),
    }
}

/// Rounds for a new file, with the spec's warning below 100,000.
pub fn rounds_for_new_file(ui: &Ui, rounds: Option<u32>) -> u32 {
    let r = rounds.unwrap_or(mxkeys::export::DEFAULT_ROUNDS);
    if r < mxkeys::export::RECOMMENDED_MIN_ROUNDS {
        ui.warn(&format!(
            "{r} PBKDF2 rounds is below the 100000 the Matrix spec asks for; the file is easier to brute-force"
        ));
    }
    r
}

/// A rejected entry, for reports.
#[derive(Debug, serde::Serialize)]
pub struct Rejection {
    /// Which input.
    pub file: String,
    /// Position in its array, from 0.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// A conflicting session, for reports.
#[derive(Debug, serde::Serialize)]
pub struct Conflict {
    /// Which input.
    pub file: String,
    /// Room.
    pub room_id: String,
    /// Session.
    pub session_id: String,
}

/// Entries listed individually in reports (the counts are always complete).
pub const MAX_LISTED: usize = 1000;

/// Print rejections and conflicts as warnings (a few) for humans.
pub fn warn_entries(
    ui: &Ui,
    rejections: &[Rejection],
    conflicts: &[Conflict],
    total_rejected: u64,
    total_conflicts: u64,
) {
    const SHOWN: usize = 10;
    for r in rejections.iter().take(SHOWN) {
        ui.warn(&format!(
            "{}: entry {} rejected: {}",
            r.file, r.index, r.reason
        ));
    }
    if total_rejected as usize > SHOWN {
        ui.warn(&format!(
            "... and {} more rejected entries (--json lists them)",
            total_rejected as usize - SHOWN
        ));
    }
    for c in conflicts.iter().take(SHOWN) {
        ui.warn(&format!(
            "{}: session {} in {} conflicts with the copy already held (their ratchets do not connect); kept the held copy",
            c.file,
            c.session_id,
            mxkeys::session::sanitize(&c.room_id)
        ));
    }
    if total_conflicts as usize > SHOWN {
        ui.warn(&format!(
            "... and {} more conflicts (--json lists them)",
            total_conflicts as usize - SHOWN
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_counted_in_words() {
        assert_eq!(tries_left(2), "2 tries left");
        assert_eq!(tries_left(1), "1 try left");
    }

    #[test]
    fn home_is_shown_as_a_tilde() {
        let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
            return;
        };
        let home = PathBuf::from(home);
        assert_eq!(
            tilde(&home.join(".local/share/mxkeys")),
            "~/.local/share/mxkeys"
        );
        assert_eq!(tilde(&home), "~");
        assert_eq!(tilde(Path::new("/elsewhere/x")), "/elsewhere/x");
    }
}
