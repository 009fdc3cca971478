//! Where secrets come from: a file, a file descriptor, a command, the environment, or a
//! prompt on the terminal, in that order. Never a plain argument.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use mxkeys::passphrase_strength::{self, MIN_SCORE, Strength};
use mxkeys::secret::Passphrase;
use zeroize::Zeroizing;

use super::exit::CliError;
use super::output::Ui;
use super::prompt;

/// Every environment variable that may hold a secret; removed from the environment of any
/// child process mxkeys starts.
pub const SECRET_ENV_VARS: &[&str] = &[
    "MXKEYS_PASSPHRASE",
    "MXKEYS_NEW_PASSPHRASE",
    "MXKEYS_STORE_PASSPHRASE",
    "MXKEYS_PASSWORD",
    "MXKEYS_ACCESS_TOKEN",
    "MXKEYS_RECOVERY_KEY",
    "MXKEYS_SECURITY_PHRASE",
];

/// Set once a secret has been read from stdin: stdin serves one use (age's `StdinGuard`), so a
/// second secret from stdin is a usage error rather than an empty or merged passphrase.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// A secret's possible sources.
#[derive(Debug, Clone)]
pub struct Source {
    /// What it is, for prompts and messages ("export passphrase").
    pub what: &'static str,
    /// Flag name stem, e.g. "passphrase" for --passphrase-file.
    pub flag: &'static str,
    /// Environment variable stem, e.g. "MXKEYS_PASSPHRASE".
    pub env: &'static str,
    /// --X-file.
    pub file: Option<PathBuf>,
    /// --X-fd.
    pub fd: Option<i32>,
    /// --X-command.
    pub command: Option<String>,
    /// The question at a terminal, naming the secret and what it opens ("Passphrase for
    /// keys.txt"); `None`: the capitalised `what`.
    pub prompt: Option<String>,
}

/// Where a secret actually came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file, fd, command or environment variable.
    Given,
    /// Typed at the terminal.
    Prompt,
}

impl Source {
    /// Were any explicit sources (flags or environment) given?
    pub fn is_given(&self) -> bool {
        self.file.is_some()
            || self.fd.is_some()
            || self.command.is_some()
            || std::env::var_os(format!("{}_FILE", self.env)).is_some()
            || std::env::var_os(self.env).is_some()
    }

    fn flags(&self) -> String {
        format!(
            "--{f}-file PATH, --{f}-fd N, --{f}-command CMD, {e}_FILE or {e}",
            f = self.flag,
            e = self.env
        )
    }

    /// Ask with this question at a terminal.
    pub fn with_prompt(mut self, question: impl Into<String>) -> Self {
        self.prompt = Some(question.into());
        self
    }

    /// The question, without the colon.
    fn question(&self) -> String {
        self.prompt.clone().unwrap_or_else(|| capitalize(self.what))
    }

    /// The secret from the first explicit source that is given, if any.
    fn given(&self, ui: &Ui, stdin_is_data: bool) -> anyhow::Result<Option<Passphrase>> {
        let explicit = [
            self.file.is_some(),
            self.fd.is_some(),
            self.command.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if explicit > 1 {
            return Err(CliError::usage(
                format!("more than one source given for the {}", self.what),
                format!(
                    "give only one of --{f}-file, --{f}-fd, --{f}-command",
                    f = self.flag
                ),
            ));
        }
        Ok(if let Some(p) = &self.file {
            Some(self.read_file(ui, p, stdin_is_data)?)
        } else if let Some(fd) = self.fd {
            Some(self.read_fd(fd, stdin_is_data)?)
        } else if let Some(cmd) = &self.command {
            Some(self.run_command(cmd)?)
        } else if let Some(p) = std::env::var_os(format!("{}_FILE", self.env)) {
            Some(self.read_file(ui, Path::new(&p), stdin_is_data)?)
        } else if let Some(v) = std::env::var_os(self.env) {
            use std::os::unix::ffi::OsStringExt;
            Some(Passphrase::new(v.into_vec()))
        } else {
            None
        })
    }

    fn no_terminal(&self, ui: &Ui) -> anyhow::Error {
        CliError::usage(
            format!("the {} is needed, and {}", self.what, ui.cannot_ask()),
            format!("give it with {}", self.flags()),
        )
    }

    /// Resolve a secret that opens something that exists. `stdin_is_data`: stdin carries input data, so `-` is refused.
    pub fn resolve(&self, ui: &Ui, stdin_is_data: bool) -> anyhow::Result<(Passphrase, Origin)> {
        if let Some(p) = self.given(ui, stdin_is_data)? {
            return Ok((p, Origin::Given));
        }
        if !ui.interactive {
            return Err(self.no_terminal(ui));
        }
        Ok((
            prompt::secret(&format!("{}: ", self.question()))?,
            Origin::Prompt,
        ))
    }

    /// Resolve a secret that will protect something new, and score it. A weak one from a
    /// file, descriptor, command or the environment is used with a warning (scripts keep
    /// working); at a terminal it is refused once with zxcvbn's advice, and kept only if it is
    /// typed twice more.
    pub fn resolve_new(
        &self,
        ui: &Ui,
        allow_empty: bool,
        stdin_is_data: bool,
    ) -> anyhow::Result<(Passphrase, Strength, Origin)> {
        if let Some(p) = self.given(ui, stdin_is_data)? {
            if p.is_empty() && !allow_empty {
                return Err(mxkeys::Error::EmptyPassphrase.into());
            }
            let strength = passphrase_strength::assess(&p, &[]);
            if strength.is_weak() && !p.is_empty() {
                let why = strength
                    .warning
                    .as_ref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                ui.warn(&format!(
                    "the {} is weak ({}){why}; it is used as given, but a longer one of uncommon words protects the keys better",
                    self.what,
                    describe(&strength)
                ));
            }
            return Ok((p, strength, Origin::Given));
        }
        if !ui.interactive {
            return Err(self.no_terminal(ui));
        }
        let question = self.question();
        let first = prompt::secret(&format!("{question}: "))?;
        if first.is_empty() {
            if !allow_empty {
                return Err(mxkeys::Error::EmptyPassphrase.into());
            }
            let strength = passphrase_strength::assess(&first, &[]);
            return Ok((first, strength, Origin::Prompt));
        }
        let mut chosen = first;
        let mut strength = passphrase_strength::assess(&chosen, &[]);
        if strength.is_weak() {
            prompt::say(&format!(
                "This passphrase is weak ({}).",
                describe(&strength)
            ));
            if let Some(w) = &strength.warning {
                prompt::say(&format!("  {w}"));
            }
            for s in &strength.suggestions {
                prompt::say(&format!("  {s}"));
            }
            let short = question.split(" (").next().unwrap_or(&question);
            let again = prompt::secret(&format!("{short} (the same one again to keep it): "))?;
            if !again.ct_eq(&chosen) {
                if again.is_empty() && !allow_empty {
                    return Err(mxkeys::Error::EmptyPassphrase.into());
                }
                strength = passphrase_strength::assess(&again, &[]);
                if strength.is_weak() {
                    return Err(CliError::usage(
                        format!("the {} is weak ({})", self.what, describe(&strength)),
                        "choose a longer passphrase of several uncommon words; to keep a weak one, type the same one twice more when asked",
                    ));
                }
                chosen = again;
            }
        }
        let repeat = prompt::secret(&format!("{}: ", repeat_question(&question)))?;
        if !chosen.ct_eq(&repeat) {
            return Err(CliError::usage(
                "the two passphrases differ",
                "run the command again and type the same passphrase twice",
            ));
        }
        Ok((chosen, strength, Origin::Prompt))
    }

    /// Ask again on the terminal, with the same question (after a wrong passphrase).
    pub fn prompt_again(&self) -> anyhow::Result<Passphrase> {
        prompt::secret(&format!("{}: ", self.question()))
    }

    fn read_file(&self, ui: &Ui, p: &Path, stdin_is_data: bool) -> anyhow::Result<Passphrase> {
        if p == Path::new("-") {
            self.take_stdin(stdin_is_data)?;
            let mut buf = Zeroizing::new(Vec::new());
            std::io::stdin().lock().read_to_end(&mut buf)?;
            return Ok(strip_newline(buf));
        }
        let meta = std::fs::metadata(p).map_err(|e| {
            anyhow::Error::new(mxkeys::Error::io(
                format!("reading the {} from {}", self.what, p.display()),
                e,
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 && meta.is_file() {
            ui.warn(&format!(
                "{} holds the {} and can be read by other users; run: chmod 600 {}",
                p.display(),
                self.what,
                p.display()
            ));
        }
        let mut buf = Zeroizing::new(Vec::new());
        std::fs::File::open(p)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| {
                mxkeys::Error::io(format!("reading the {} from {}", self.what, p.display()), e)
            })?;
        Ok(strip_newline(buf))
    }

    /// Does this source read stdin (`-` as the file, or descriptor 0)?
    pub fn reads_stdin(&self) -> bool {
        match (&self.file, self.fd, &self.command) {
            (Some(p), _, _) => p == Path::new("-"),
            (None, Some(fd), _) => fd == 0,
            (None, None, Some(_)) => false,
            (None, None, None) => {
                std::env::var_os(format!("{}_FILE", self.env)).is_some_and(|p| p == "-")
            }
        }
    }

    /// Claim stdin for this secret: refused when stdin carries the data or another secret.
    fn take_stdin(&self, stdin_is_data: bool) -> anyhow::Result<()> {
        if stdin_is_data {
            return Err(CliError::usage(
                format!("stdin cannot carry both the data and the {}", self.what),
                format!("use --{}-fd N or a file for the secret", self.flag),
            ));
        }
        if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(CliError::usage(
                format!(
                    "stdin is already used for another secret; it cannot also carry the {}",
                    self.what
                ),
                format!(
                    "give the {} with --{}-fd N (another descriptor) or a file",
                    self.what, self.flag
                ),
            ));
        }
        Ok(())
    }

    fn read_fd(&self, fd: i32, stdin_is_data: bool) -> anyhow::Result<Passphrase> {
        if fd == 0 {
            self.take_stdin(stdin_is_data)?;
        }
        if fd < 0 {
            return Err(CliError::usage(
                format!("--{}-fd {fd} is not a file descriptor", self.flag),
                "give a descriptor number such as 3, opened by the shell: 3<secret.txt",
            ));
        }
        let path = format!("/dev/fd/{fd}");
        let mut buf = Zeroizing::new(Vec::new());
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| {
                CliError::usage(
                    format!(
                        "cannot read the {} from file descriptor {fd}: {e}",
                        self.what
                    ),
                    format!(
                        "open it in the shell first, e.g. --{}-fd 3 3<secret.txt",
                        self.flag
                    ),
                )
            })?;
        Ok(strip_newline(buf))
    }

    fn run_command(&self, cmd: &str) -> anyhow::Result<Passphrase> {
        let words = shlex::split(cmd).filter(|w| !w.is_empty()).ok_or_else(|| {
            CliError::usage(
                format!("--{}-command is empty or badly quoted", self.flag),
                "give a program and its arguments, e.g. --passphrase-command 'pass show matrix/keys'",
            )
        })?;
        let mut c = Command::new(&words[0]);
        c.args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for v in SECRET_ENV_VARS {
            c.env_remove(v);
        }
        let out = c.output().map_err(|e| {
            CliError::usage(
                format!("cannot run the {} command {:?}: {e}", self.what, words[0]),
                "check that the program exists and is on PATH",
            )
        })?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(CliError::usage(
                format!("the {} command failed ({})", self.what, out.status),
                "run the command by hand to see why",
            ));
        }
        Ok(strip_newline(Zeroizing::new(stdout.to_vec())))
    }
}

/// At most one secret may come from stdin: check before any is read, since the first read
/// would swallow both (a wrong-passphrase error would then hide the real mistake).
pub fn check_one_stdin_secret(sources: &[&Source]) -> anyhow::Result<()> {
    let mut on_stdin = sources.iter().filter(|s| s.reads_stdin());
    if let (Some(first), Some(second)) = (on_stdin.next(), on_stdin.next()) {
        return Err(CliError::usage(
            format!(
                "stdin is already used for the {}; it cannot also carry the {}",
                first.what, second.what
            ),
            format!(
                "give the {} with --{}-fd N (another descriptor) or a file",
                second.what, second.flag
            ),
        ));
    }
    Ok(())
}

/// Strip one trailing "\n" or "\r\n", nothing else.
pub fn strip_newline(mut buf: Zeroizing<Vec<u8>>) -> Passphrase {
    if buf.ends_with(b"\r\n") {
        let n = buf.len() - 2;
        buf.truncate(n);
    } else if buf.ends_with(b"\n") {
        let n = buf.len() - 1;
        buf.truncate(n);
    }
    Passphrase::new(std::mem::take(&mut *buf))
}

/// "score 1 of 4; 3 or more is needed" — the verdict without anything of the passphrase.
pub fn describe(s: &Strength) -> String {
    format!("strength {} of 4; {MIN_SCORE} or more is needed", s.score)
}

/// The confirmation question for a new secret's question: "New passphrase for x.txt" ->
/// "Repeat the new passphrase for x.txt".
fn repeat_question(question: &str) -> String {
    match question.strip_prefix("New ") {
        Some(rest) => {
            // The store's location was just shown; the repeat is shorter.
            let rest = rest.split(" (").next().unwrap_or(rest);
            format!("Repeat the new {rest}")
        }
        None => format!("{question} (again)"),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The export-file passphrase sources from the flags.
pub fn export_passphrase(a: &super::PassphraseArgs) -> Source {
    Source {
        what: "export passphrase",
        flag: "passphrase",
        env: "MXKEYS_PASSPHRASE",
        file: a.passphrase_file.clone(),
        fd: a.passphrase_fd,
        command: a.passphrase_command.clone(),
        prompt: None,
    }
}

/// The sources of another client's pickle key or store passphrase.
pub fn client_store_passphrase(a: &super::ClientStoreArgs) -> Source {
    Source {
        what: "client store's pickle key",
        flag: "client-store-passphrase",
        env: "MXKEYS_CLIENT_STORE_PASSPHRASE",
        file: a.client_store_passphrase_file.clone(),
        fd: a.client_store_passphrase_fd,
        command: a.client_store_passphrase_command.clone(),
        prompt: None,
    }
}

/// The new-passphrase sources from the flags.
pub fn new_passphrase(a: &super::NewPassphraseArgs) -> Source {
    Source {
        what: "new export passphrase",
        flag: "new-passphrase",
        env: "MXKEYS_NEW_PASSPHRASE",
        file: a.new_passphrase_file.clone(),
        fd: a.new_passphrase_fd,
        command: a.new_passphrase_command.clone(),
        prompt: None,
    }
}

/// The store passphrase sources from the global flags.
pub fn store_passphrase(g: &super::GlobalArgs) -> Source {
    Source {
        what: "store passphrase",
        flag: "store-passphrase",
        env: "MXKEYS_STORE_PASSPHRASE",
        file: g.store_passphrase_file.clone(),
        fd: g.store_passphrase_fd,
        command: g.store_passphrase_command.clone(),
        prompt: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_one_newline_only() {
        let s = |b: &[u8]| {
            strip_newline(Zeroizing::new(b.to_vec()))
                .expose_secret()
                .to_vec()
        };
        assert_eq!(s(b"pw\n"), b"pw");
        assert_eq!(s(b"pw\r\n"), b"pw");
        assert_eq!(s(b"pw\n\n"), b"pw\n");
        assert_eq!(s(b" pw "), b" pw ");
        assert_eq!(s(b""), b"");
    }

    #[test]
    fn repeat_questions_are_short() {
        assert_eq!(
            repeat_question("New passphrase for keys.txt"),
            "Repeat the new passphrase for keys.txt"
        );
        assert_eq!(
            repeat_question("New store passphrase (mxkeys store at ~/.local/share/mxkeys)"),
            "Repeat the new store passphrase"
        );
        assert_eq!(repeat_question("Password"), "Password (again)");
    }

    #[test]
    fn the_verdict_names_the_score_only() {
        let s = Strength {
            score: 1,
            warning: None,
            suggestions: vec![],
        };
        assert_eq!(describe(&s), "strength 1 of 4; 3 or more is needed");
    }
}
