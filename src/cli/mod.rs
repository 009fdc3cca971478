//! Command-line definitions (clap derive only) and the dispatcher.

pub mod commands;
pub mod exit;
pub mod output;
pub mod secrets_in;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

/// Exit codes, shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    other failure
  2    usage error (bad flags; a secret is needed but there is no source and no terminal;
       a destructive action without --yes)
  3    partial: some sessions were rejected or conflicted, the rest was done
  10   not found (input file, key store, no matching sessions, no backup)
  11   key store busy (another mxkeys is using it) or a conflicting change
  12   wrong passphrase or key (MAC mismatch)
  13   invalid or damaged input
  14   the homeserver rejected the credentials
  15   the homeserver is unreachable or still failing after retries
  16   the backup on the server is not trusted
  130  interrupted";

const ABOUT: &str = "Keep Matrix end-to-end-encryption room keys safe";

const LONG_ABOUT: &str = "\
Keep Matrix end-to-end-encryption room keys safe.

mxkeys reads and writes key export files (-----BEGIN MEGOLM SESSION DATA-----) as Element,
matrix-rust-sdk, nheko, mautrix and matrix-nio do, and keeps keys in a local store that is
sealed with a store passphrase.

Secrets are never taken as plain arguments. Give them with --passphrase-file PATH,
--passphrase-fd N, --passphrase-command CMD, or MXKEYS_PASSPHRASE_FILE / MXKEYS_PASSPHRASE;
otherwise mxkeys asks on the terminal. The store passphrase has the same sources with
`store-` in the names (MXKEYS_STORE_PASSPHRASE_FILE, MXKEYS_STORE_PASSPHRASE).

Examples:
  mxkeys init
  mxkeys import element-keys.txt
  mxkeys export -o backup-keys.txt --room '!abc:example.org'
  mxkeys inspect element-keys.txt
  mxkeys decrypt element-keys.txt -o keys.json --passphrase-fd 3 3<pass.txt";

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "mxkeys",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Flags accepted by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Key store directory [default: $XDG_DATA_HOME/mxkeys]
    #[arg(long, global = true, env = "MXKEYS_STORE", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub store: Option<PathBuf>,
    /// Print one JSON document on stdout (errors as JSON on stderr); no prompts, no progress
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more (repeat for more detail); never prints a secret
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Never draw progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Read the store passphrase from this file ('-' for stdin)
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Store passphrase")]
    pub store_passphrase_file: Option<PathBuf>,
    /// Read the store passphrase from this open file descriptor
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Store passphrase"
    )]
    pub store_passphrase_fd: Option<i32>,
    /// Run this command (no shell) and read the store passphrase from its output
    #[arg(
        long,
        global = true,
        value_name = "CMD",
        help_heading = "Store passphrase"
    )]
    pub store_passphrase_command: Option<String>,
}

/// Where the export-file passphrase comes from.
#[derive(Debug, Args, Default, Clone)]
pub struct PassphraseArgs {
    /// Read the export-file passphrase from this file ('-' for stdin)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Export-file passphrase")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the export-file passphrase from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Export-file passphrase")]
    pub passphrase_fd: Option<i32>,
    /// Run this command (no shell) and read the passphrase from its output
    #[arg(long, value_name = "CMD", help_heading = "Export-file passphrase")]
    pub passphrase_command: Option<String>,
}

/// Where the passphrase for a re-encrypted or merged output comes from.
#[derive(Debug, Args, Default, Clone)]
pub struct NewPassphraseArgs {
    /// Read the output file's new passphrase from this file ('-' for stdin)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "New passphrase")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Read the output file's new passphrase from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "New passphrase")]
    pub new_passphrase_fd: Option<i32>,
    /// Run this command (no shell) and read the new passphrase from its output
    #[arg(long, value_name = "CMD", help_heading = "New passphrase")]
    pub new_passphrase_command: Option<String>,
    /// Ask for a new passphrase on the terminal instead of keeping the input's
    #[arg(long, help_heading = "New passphrase")]
    pub change_passphrase: bool,
}

/// Options for commands that read export files.
#[derive(Debug, Args, Clone)]
pub struct ReadArgs {
    /// Refuse files asking for more PBKDF2 rounds than this (a hostile file can ask for hours)
    #[arg(long, value_name = "N", default_value_t = mxkeys::export::DEFAULT_MAX_ROUNDS, alias = "max-kdf-rounds")]
    pub max_rounds: u32,
}

/// Options for commands that write export files.
#[derive(Debug, Args, Clone)]
pub struct WriteArgs {
    /// PBKDF2 rounds for the new file [default: 500000, as Element]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Allow an empty passphrase for the new file (anyone can then read the keys)
    #[arg(long)]
    pub insecure_empty_passphrase: bool,
}

/// Output file options.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Replace the output file if it exists
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the key store
    #[command(
        after_help = "Examples:\n  mxkeys init\n  mxkeys --store ./keys init --store-passphrase-file store-pass.txt\n  mxkeys init --insecure-no-store-passphrase   # keys stored unencrypted"
    )]
    Init(InitArgs),
    /// Decrypt export file(s) and merge their sessions into the store
    #[command(
        after_help = "Examples:\n  mxkeys import element-keys.txt\n  mxkeys import old.txt new.txt --passphrase-file pass.txt\n  cat keys.txt | mxkeys import - --passphrase-fd 3 3<pass.txt\n\nAll files are checked and unlocked before anything is written; then all their valid\nsessions are merged in one transaction, keeping for each session the copy that decrypts\nmore messages. Invalid entries are reported and skipped (exit code 3)."
    )]
    Import(ImportArgs),
    /// Write sessions from the store to an export file
    #[command(
        after_help = "Examples:\n  mxkeys export -o all-keys.txt\n  mxkeys export -o room.txt --room '!abc:example.org' --rounds 600000\n  mxkeys export -o - --passphrase-file pass.txt | ssh host 'cat > keys.txt'"
    )]
    Export(ExportArgs),
    /// List rooms and session counts in the store (never keys)
    #[command(
        after_help = "Examples:\n  mxkeys list\n  mxkeys list --room '!abc:example.org' --json"
    )]
    List(ListArgs),
    /// Describe an export file without revealing keys
    #[command(
        after_help = "Examples:\n  mxkeys inspect element-keys.txt\n  mxkeys inspect element-keys.txt --decrypt           # asks for the passphrase\n  mxkeys inspect element-keys.txt --passphrase-file pass.txt --json"
    )]
    Inspect(InspectArgs),
    /// Decrypt an export file to its plaintext JSON array
    #[command(
        after_help = "Examples:\n  mxkeys decrypt element-keys.txt -o keys.json\n  mxkeys decrypt element-keys.txt --passphrase-fd 3 3<pass.txt | jq length\n\nThe output holds every key in the clear: it is written with mode 0600 and never to a\nterminal."
    )]
    Decrypt(DecryptArgs),
    /// Encrypt a plaintext JSON array of sessions into an export file
    #[command(
        after_help = "Examples:\n  mxkeys encrypt keys.json -o element-keys.txt\n  jq '[.[] | select(.room_id == \"!abc:example.org\")]' keys.json | mxkeys encrypt - -o room.txt --passphrase-file pass.txt"
    )]
    Encrypt(EncryptArgs),
    /// Merge several export files into one, keeping the best copy of each session (no store)
    #[command(
        after_help = "Examples:\n  mxkeys merge phone.txt laptop.txt -o all.txt\n  mxkeys merge a.txt b.txt -o all.txt --passphrase-file in.txt --new-passphrase-file out.txt"
    )]
    Merge(MergeArgs),
    /// Write an export file again with a new passphrase and/or rounds
    #[command(
        after_help = "Examples:\n  mxkeys reencrypt old.txt -o new.txt --rounds 600000\n  mxkeys reencrypt old.txt -o new.txt --change-passphrase"
    )]
    Reencrypt(ReencryptArgs),
}

/// `init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Store keys without encryption at rest (anyone who can read the store can read them)
    #[arg(long)]
    pub insecure_no_store_passphrase: bool,
    /// PBKDF2 rounds for the store passphrase
    #[arg(long, value_name = "N", default_value_t = mxkeys::store::DEFAULT_KDF_ROUNDS, value_parser = clap::value_parser!(u32).range(1..))]
    pub store_kdf_rounds: u32,
}

/// `import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Export files ('-' for stdin)
    #[arg(required = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output file ('-' for stdout)
    #[arg(short, long, required = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    /// Only sessions of this room (repeatable)
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// Only this session (repeatable)
    #[arg(long = "session", value_name = "SESSION_ID")]
    pub sessions: Vec<String>,
    #[command(flatten)]
    pub write: WriteArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this room (repeatable)
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
}

/// `inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Export file ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Also decrypt (asks for the passphrase when no source is given)
    #[arg(long)]
    pub decrypt: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `decrypt`
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Export file ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Output file ('-' or absent: stdout, never a terminal)
    #[arg(short, long, value_name = "OUT", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Write the plaintext even when it is not a JSON array (test vectors, damaged exports)
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `encrypt`
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Plaintext JSON array of sessions ('-' for stdin)
    #[arg(value_name = "JSON_FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Output file ('-' or absent: stdout)
    #[arg(short, long, value_name = "OUT", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `merge`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Export files to merge ('-' for stdin, at most once)
    #[arg(required = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    /// Output file ('-' for stdout)
    #[arg(short, long, required = true, value_name = "OUT", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    #[command(flatten)]
    pub write: WriteArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub new_passphrase: NewPassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `reencrypt`
#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// Export file ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Output file ('-' for stdout)
    #[arg(short, long, required = true, value_name = "OUT", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    /// PBKDF2 rounds for the new file [default: the input's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Allow an empty passphrase for the new file
    #[arg(long)]
    pub insecure_empty_passphrase: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub new_passphrase: NewPassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// Run the parsed command.
pub fn run(cli: Cli, ui: &output::Ui) -> anyhow::Result<exit::Code> {
    let ctx = commands::Context::new(&cli.global, ui)?;
    match cli.command {
        Command::Init(a) => commands::init::run(&ctx, a),
        Command::Import(a) => commands::import::run(&ctx, a),
        Command::Export(a) => commands::export::run(&ctx, a),
        Command::List(a) => commands::list::run(&ctx, a),
        Command::Inspect(a) => commands::inspect::run(&ctx, a),
        Command::Decrypt(a) => commands::decrypt::run(&ctx, a),
        Command::Encrypt(a) => commands::encrypt::run(&ctx, a),
        Command::Merge(a) => commands::merge::run(&ctx, a),
        Command::Reencrypt(a) => commands::reencrypt::run(&ctx, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
