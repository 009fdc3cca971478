//! Command-line definitions (clap derive only) and the dispatcher.

pub mod commands;
pub mod device_args;
pub mod exit;
pub mod output;
pub mod prompt;
pub mod retry_lines;
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
  mxkeys decrypt element-keys.txt -o keys.json --passphrase-fd 3 3<pass.txt
  mxkeys login --user @alice:example.org
  mxkeys backup download --recovery-key-file security-key.txt
  mxkeys backup upload element-keys.txt --recovery-key-file security-key.txt";

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "mxkeys",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Flags accepted by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `--help` heading of the flags every command takes, so that a command's own options
/// come first.
const GLOBAL: &str = "Global options";

/// Flags accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Key store directory [default: $XDG_DATA_HOME/mxkeys]
    #[arg(long, global = true, env = "MXKEYS_STORE", value_name = "DIR", value_hint = ValueHint::DirPath, help_heading = GLOBAL)]
    pub store: Option<PathBuf>,
    /// Print one JSON document on stdout (errors as JSON on stderr); no prompts, no progress
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,
    /// Say more (repeat for more detail); never prints a secret
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Never draw progress bars
    #[arg(long, global = true, help_heading = GLOBAL)]
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
    #[arg(long, value_name = "N", default_value_t = mxkeys::export::DEFAULT_MAX_ROUNDS)]
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
        after_help = "Examples:\n  mxkeys decrypt element-keys.txt -o keys.json\n  mxkeys decrypt element-keys.txt --passphrase-fd 3 3<pass.txt | jq length\n  mxkeys decrypt odd-file.txt -o odd.bin --raw\n\nThe output holds every key in the clear: it is written with mode 0600 and never to a\nterminal. Entries are checked as import checks them: an entry that is not a session is\nreported and left out (exit code 3), the sessions are written exactly as they were. A\nplaintext that is not UTF-8 JSON is refused (exit code 13); --raw writes it as it is."
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
    /// Log in to a homeserver; the access token is kept sealed in the store
    #[command(
        after_help = "Examples:\n  mxkeys login --user @alice:example.org\n  mxkeys login --user @alice:example.org --homeserver https://matrix.example.org --password-file pw.txt"
    )]
    Login(LoginArgs),
    /// Log out (the access token stops working) and forget the credentials
    Logout(LogoutArgs),
    /// Make or check recovery keys
    #[command(subcommand)]
    RecoveryKey(RecoveryKeyCommand),
    /// Server-side key backup: create, inspect, upload to, download from, delete
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Room history: which encrypted events the keys in hand decrypt, and why not the others
    #[command(subcommand)]
    History(HistoryCommand),
    /// mxkeys as a device of your account: verify it, receive keys and secrets from your other devices, rehydrate
    #[command(subcommand)]
    Device(device_args::DeviceCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Write man pages: mxkeys.1 and one page per command (mxkeys-backup-download.1, ...)
    #[command(after_help = MAN_HELP)]
    Man(ManArgs),
}

const COMPLETIONS_HELP: &str = "\
Examples:
  mxkeys completions bash > ~/.local/share/bash-completion/completions/mxkeys
  mxkeys completions zsh > ~/.zfunc/_mxkeys      # with fpath+=(~/.zfunc) before compinit
  mxkeys completions fish > ~/.config/fish/completions/mxkeys.fish
  source <(mxkeys completions bash)             # this shell only

The script is generated from this binary's own flags, so make it again after an upgrade.";

const MAN_HELP: &str = "\
Examples:
  mxkeys man -o ~/.local/share/man/man1
  mxkeys man -o ./man && sudo cp ./man/*.1 /usr/local/share/man/man1/

Pages are named after the command and its subcommands joined by '-' (man mxkeys-backup-download)
and are readable by everyone (mode 0644: they hold no secret). Existing pages are replaced only
with --force; without it nothing is written if one of them exists.";

/// `completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    #[arg(short, long, required = true, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub output: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
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
    #[arg(required_unless_present = "client_store", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub client: ClientStoreArgs,
}

/// Another client's own store as the source of keys (read-only; a copy is read).
#[derive(Debug, Args, Clone, Default)]
pub struct ClientStoreArgs {
    /// Read the keys of another client's store: matrix-nio's store directory or
    /// {user}_{device}.db, pantalaimon's data directory or pan.db, a matrix-sdk store directory
    /// (matrix-sdk-crypto.sqlite3), a mautrix-go SQLite database (bridges, gomuks); read from a
    /// copy, never modified
    #[arg(long, value_name = "PATH", value_hint = ValueHint::AnyPath, help_heading = "Client store")]
    pub client_store: Option<PathBuf>,
    /// The store's kind instead of detecting it
    #[arg(long, value_name = "KIND", value_parser = ["nio", "pantalaimon", "matrix-sdk", "mautrix", "mautrix-go"], requires = "client_store", help_heading = "Client store")]
    pub client_store_kind: Option<String>,
    /// The account to read, for stores of several (pantalaimon, mautrix): @user:server or @user:server/DEVICE
    #[arg(
        long,
        value_name = "USER_ID",
        requires = "client_store",
        help_heading = "Client store"
    )]
    pub client_store_user: Option<String>,
    /// Read the client's pickle key or store passphrase from this file [default: nio's DEFAULT_KEY; mautrix has no default]
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, requires = "client_store", help_heading = "Client store")]
    pub client_store_passphrase_file: Option<PathBuf>,
    /// Read the client's pickle key or store passphrase from this open file descriptor
    #[arg(
        long,
        value_name = "N",
        requires = "client_store",
        help_heading = "Client store"
    )]
    pub client_store_passphrase_fd: Option<i32>,
    /// Run this command (no shell) and read the client's pickle key from its output
    #[arg(
        long,
        value_name = "CMD",
        requires = "client_store",
        help_heading = "Client store"
    )]
    pub client_store_passphrase_command: Option<String>,
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
    #[command(flatten)]
    pub client: ClientStoreArgs,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this room (repeatable)
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// One line per session (its id, first index, source, whether it was forwarded), not per room
    #[arg(long)]
    pub sessions: bool,
}

/// `inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Export file ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath, required_unless_present = "client_store", conflicts_with = "client_store")]
    pub file: Option<PathBuf>,
    /// Also decrypt (asks for the passphrase when no source is given)
    #[arg(long)]
    pub decrypt: bool,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub client: ClientStoreArgs,
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
    /// Write the plaintext exactly as it is, unchecked, even when it is not a JSON array of sessions
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

/// Connection to a homeserver.
#[derive(Debug, Args, Clone, Default)]
pub struct NetArgs {
    /// Homeserver URL, e.g. https://matrix.example.org (with an access token, no store needed)
    #[arg(
        long,
        env = "MXKEYS_HOMESERVER",
        value_name = "URL",
        help_heading = "Homeserver"
    )]
    pub homeserver: Option<String>,
    /// Read an access token from this file (instead of the store's login)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Homeserver")]
    pub access_token_file: Option<PathBuf>,
    /// Read an access token from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Homeserver")]
    pub access_token_fd: Option<i32>,
    /// Trust these CA certificates (PEM) instead of the built-in roots
    #[arg(long, value_name = "PEM_FILE", value_hint = ValueHint::FilePath, help_heading = "Homeserver")]
    pub ca_cert: Option<PathBuf>,
    /// Per attempt of a request: give up on a connection that stays silent this long
    /// (connecting, at most 30 s; waiting for the answer; each read or write)
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..),
        help_heading = "Homeserver"
    )]
    pub timeout: u64,
    /// Per request, retries included: give up this many seconds after its first attempt
    /// (attempts are cut short to fit; none starts with less than 1 s left) [default: 100, or
    /// --timeout when longer]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Homeserver")]
    pub retry_for: Option<u64>,
    /// Attempts per request on timeouts, connection errors, 5xx and 429 (1 = no retry)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Homeserver")]
    pub attempts: u32,
}

/// Where the backup secret comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct BackupSecretArgs {
    /// Read a recovery key or Security Key (base58) from this file
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Backup secret")]
    pub recovery_key_file: Option<PathBuf>,
    /// Read a recovery key or Security Key from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Backup secret")]
    pub recovery_key_fd: Option<i32>,
    /// Read a Security Phrase (or an old backup passphrase) from this file
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Backup secret")]
    pub security_phrase_file: Option<PathBuf>,
    /// Read a Security Phrase from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Backup secret")]
    pub security_phrase_fd: Option<i32>,
    /// Refuse secret-storage or backup passphrases asking for more PBKDF2 rounds than this
    #[arg(long = "max-kdf-rounds", value_name = "N", default_value_t = mxkeys::export::DEFAULT_MAX_ROUNDS, help_heading = "Backup secret")]
    pub max_kdf_rounds: u32,
}

/// `login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Matrix user id, e.g. @alice:example.org
    #[arg(long, value_name = "USER_ID")]
    pub user: String,
    /// Name of the new device, as other clients will show it
    #[arg(long, value_name = "NAME", default_value = "mxkeys")]
    pub device_name: String,
    /// Read the password from this file ('-' for stdin)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Password")]
    pub password_file: Option<PathBuf>,
    /// Read the password from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Password")]
    pub password_fd: Option<i32>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub net: NetArgs,
}

/// `recovery-key ...`
#[derive(Debug, Subcommand)]
pub enum RecoveryKeyCommand {
    /// Make a new random recovery key (printed once, or written to -o FILE with mode 0600)
    #[command(after_help = "Examples:\n  mxkeys recovery-key generate -o recovery-key.txt")]
    Generate(RecoveryKeyGenerateArgs),
    /// Check a recovery key's format; with a homeserver, tell which secret it is
    #[command(
        after_help = "Examples:\n  mxkeys recovery-key check --recovery-key-file key.txt\n  mxkeys recovery-key check --offline --recovery-key-file key.txt\n  mxkeys recovery-key check --security-phrase-file phrase.txt"
    )]
    Check(RecoveryKeyCheckArgs),
}

/// `recovery-key generate`
#[derive(Debug, Args)]
pub struct RecoveryKeyGenerateArgs {
    /// Write the key to this file (mode 0600) instead of stdout
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `recovery-key check`
#[derive(Debug, Args)]
pub struct RecoveryKeyCheckArgs {
    /// Check the format only; do not ask the homeserver
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup ...`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Create a new backup version with a new random key
    #[command(
        after_help = "Examples:\n  mxkeys backup create --recovery-key-file security-key.txt   # keep the key in secret storage\n  mxkeys backup create -o backup-recovery-key.txt --yes\n\nWith the account's Security Key or Phrase, the new backup key is kept in secret storage and\nthe backup is signed with the cross-signing master key, so that Element trusts it. Otherwise\nthe new recovery key is printed once (or written to -o FILE)."
    )]
    Create(BackupCreateArgs),
    /// Show a backup version: algorithm, key count, etag, public key, signatures, trust
    #[command(
        after_help = "Examples:\n  mxkeys backup info\n  mxkeys backup info --version 3 --json"
    )]
    Info(BackupInfoArgs),
    /// Delete a backup version and every key in it
    #[command(after_help = "Examples:\n  mxkeys backup delete --version 2 --yes")]
    Delete(BackupDeleteArgs),
    /// Upload keys (from the store, or from export files) to the backup
    #[command(
        after_help = "Examples:\n  mxkeys backup upload --recovery-key-file key.txt\n  mxkeys backup upload element-keys.txt --passphrase-file pass.txt --recovery-key-file key.txt\n  mxkeys backup upload --dry-run --json\n\nOnly keys strictly better than the server's copy are sent (verified, then lower first\nindex, then lower forward count), so an upload never makes the backup worse, and an\ninterrupted upload run again sends only what is still missing."
    )]
    Upload(BackupUploadArgs),
    /// Download and decrypt keys from the backup into the store (or an export file)
    #[command(
        after_help = "Examples:\n  mxkeys backup download --recovery-key-file security-key.txt\n  mxkeys backup download --room '!abc:example.org' -o room-keys.txt\n  mxkeys backup download --from-response saved-room-keys.json --recovery-key-file key.txt -o keys.txt"
    )]
    Download(BackupDownloadArgs),
    /// Compare the store with the backup: what each side lacks or has better
    #[command(
        after_help = "Examples:\n  mxkeys backup status\n  mxkeys backup status --json | jq .counts"
    )]
    Status(BackupStatusArgs),
}

/// `backup create`
#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    /// Write the new recovery key to this file (mode 0600) instead of stdout
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Replace the current backup version without asking
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup info`
#[derive(Debug, Args)]
pub struct BackupInfoArgs {
    /// Backup version [default: the current one]
    #[arg(long = "version", id = "backup_version", value_name = "V")]
    pub version: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup delete`
#[derive(Debug, Args)]
pub struct BackupDeleteArgs {
    /// The version to delete
    #[arg(
        long = "version",
        id = "backup_version",
        value_name = "V",
        required = true
    )]
    pub version: String,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup upload`
#[derive(Debug, Args)]
pub struct BackupUploadArgs {
    /// Export files to upload instead of the store's keys ('-' for stdin)
    #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub files: Vec<PathBuf>,
    /// Upload to this version (must be the current one) [default: the current one]
    #[arg(long = "version", id = "backup_version", value_name = "V")]
    pub version: Option<String>,
    /// Only report what would be sent
    #[arg(long)]
    pub dry_run: bool,
    /// Trust the backup whose public key is this (unpadded base64), without its private key
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub trust_public_key: Option<String>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup download`
#[derive(Debug, Args)]
pub struct BackupDownloadArgs {
    /// Only this room (repeatable)
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// Only this session (repeatable)
    #[arg(long = "session", value_name = "SESSION_ID")]
    pub sessions: Vec<String>,
    /// Write an export file instead of importing into the store ('-' for stdout)
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Backup version [default: the current one]
    #[arg(long = "version", id = "backup_version", value_name = "V")]
    pub version: Option<String>,
    /// Decrypt a saved `GET /room_keys/keys` response body offline (needs the backup's recovery key)
    #[arg(long, value_name = "SAVED_JSON", value_hint = ValueHint::FilePath)]
    pub from_response: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `backup status`
#[derive(Debug, Args)]
pub struct BackupStatusArgs {
    /// Backup version [default: the current one]
    #[arg(long = "version", id = "backup_version", value_name = "V")]
    pub version: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `history ...`
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Classify every encrypted event of saved room history; say what to do for the others
    #[command(after_help = HISTORY_CHECK_HELP)]
    Check(HistoryCheckArgs),
    /// Write the decrypted history of rooms to one file: JSON lines, text or HTML
    #[command(after_help = HISTORY_EXPORT_HELP)]
    Export(HistoryExportArgs),
}

const HISTORY_EXPORT_HELP: &str = "\
Examples:
  mxkeys history export --room '!abc:example.org' -o room.jsonl
  mxkeys history export --room '!abc:example.org' --format html -o room.html --media room-media
  mxkeys history export --room '!abc:example.org' --format txt --since 2024-01-01 -o room.txt
  mxkeys history export --from-messages page1.json page2.json --format txt -o room.txt

Online, each room is paged from the homeserver oldest first (from --since when given: dates are
YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM], UTC by default, or a duration back from now such
as 36h, 7d); display names and the room name come from the room's state and from the member
events of the history itself. The server backup's index (not its keys) is read so that the
classes can say in_backup. Offline, --from-messages reads saved /messages responses, JSON
arrays or JSON lines instead (--backup-response for in_backup).

jsonl writes every event in order: decrypted events as their decrypted form (type and content
of the payload, event_id, sender, origin_server_ts, room_id and unsigned of the original), each
encrypted event with an \"mxkeys\" object giving its class (see `mxkeys history check --help`)
and, when it did not decrypt, its session_id and the reason. txt and html are for reading:
edits applied and marked (edited), deleted messages, replies with what they reply to,
membership and room name changes; an undecryptable event shows its class, never vanishes.
html is one self-contained page: bodies are escaped, formatted bodies keep only the tags the
Matrix spec allows, links only http, https, ftp, mailto and magnet.

An event_id seen twice (overlapping saved pages) is written once. With --media DIR, images and
files are downloaded from the homeserver (the login, or --homeserver with --access-token-file),
encrypted ones checked against their SHA-256 and decrypted, and saved in DIR (mode 0700, files
0600); a media item that fails is reported and noted in the output, the export goes on.

The output is decrypted history, not encrypted: it is written with mode 0600 and appears only
when complete. Exit code 0 when every encrypted event decrypted (or was before_join) and all
media were saved, 3 otherwise.";

/// `history export` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    /// One JSON object per event
    Jsonl,
    /// Plain text for reading
    Txt,
    /// One self-contained HTML page
    Html,
}

/// `history export`
#[derive(Debug, Args)]
pub struct HistoryExportArgs {
    /// Output file (mode 0600; refused if it exists, unless --force)
    #[arg(short, long, required = true, value_name = "OUT", value_hint = ValueHint::FilePath)]
    pub output: PathBuf,
    /// A room to export (repeatable; needed online); offline, only these rooms, and with one
    /// room, events without room_id belong to it
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = HistoryFormat::Jsonl)]
    pub format: HistoryFormat,
    /// Save images and files into this directory (mode 0700) and link them from the output
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub media: Option<PathBuf>,
    /// Refuse to download a media item larger than this
    #[arg(long, value_name = "BYTES", default_value_t = mxkeys::client::media::DEFAULT_MAX_MEDIA_BYTES)]
    pub max_media_bytes: u64,
    /// Only events at or after this time (YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM], or 7d)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only events at or before this time (same forms as --since)
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Saved /messages responses, JSON arrays of events or JSON lines of events ('-' for stdin)
    #[arg(long = "from-messages", value_name = "FILE", num_args = 1.., value_hint = ValueHint::FilePath)]
    pub from_messages: Vec<PathBuf>,
    /// A saved `GET /room_keys/keys` response, so that the classes can say in_backup
    #[arg(long, value_name = "SAVED_JSON", value_hint = ValueHint::FilePath)]
    pub backup_response: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

const HISTORY_CHECK_HELP: &str = "\
Examples:
  mxkeys history check
  mxkeys history check --room '!abc:example.org' --since 30d
  mxkeys history check --fix --recovery-key-file ~/recovery-key.txt
  mxkeys history check --limit 1000 --json | jq .counts
  mxkeys history check --from-messages page1.json page2.json
  mxkeys history check --from-messages page.json --backup-response saved-room-keys.json

Without --from-messages it logs in as `mxkeys login` saved (or with --homeserver and
--access-token-file), pages through the history of every joined room (or the --room ones),
newest first, and asks the server backup which sessions it holds (its metadata only; no
secret is needed to check).

Each encrypted event gets one class: decrypted; in_backup (the store cannot decrypt it, the
server backup's copy can); later_index (the best copy held starts after the event); missing
(no copy held); before_join (the account was not joined when it was sent:
unsigned.membership, not a loss); damaged (bad signature or MAC, malformed, or a payload for
another room); unsupported (not Megolm). Offline, the backup is consulted only with
--backup-response; without it, sessions it may hold count as missing or later_index.

--fix downloads from the backup only the in_backup sessions, into the store in one
transaction, and checks those rooms again. It unlocks the backup as `backup download` does:
the key kept in the store, --recovery-key-file, --security-phrase-file, their fd forms, the
MXKEYS_RECOVERY_KEY environment variable, or a question on the terminal.

Exit code 0 when every event is decrypted or before_join, 3 otherwise.";

/// `history check`
#[derive(Debug, Args)]
pub struct HistoryCheckArgs {
    /// Saved /messages responses, JSON arrays of events or JSON lines of events ('-' for stdin)
    #[arg(long = "from-messages", value_name = "FILE", num_args = 1.., value_hint = ValueHint::FilePath)]
    pub from_messages: Vec<PathBuf>,
    /// A saved `GET /room_keys/keys` response: which sessions the backup has, from which index (nothing is decrypted)
    #[arg(long, value_name = "SAVED_JSON", value_hint = ValueHint::FilePath, requires = "from_messages")]
    pub backup_response: Option<PathBuf>,
    /// Only this room (repeatable) [default: every joined room]; with --from-messages and one
    /// room, events without room_id belong to it
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// Only events sent at or after this time: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]
    /// (UTC by default), or back from now: 36h, 7d, 2w
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only the N newest events of each room (encrypted or not)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Download from the server backup exactly the sessions that would help, then check again
    #[arg(long, conflicts_with = "from_messages")]
    pub fix: bool,
    /// Events per /messages request
    #[arg(long, value_name = "N", default_value_t = mxkeys::history::source::DEFAULT_PAGE,
          value_parser = clap::value_parser!(u32).range(1..=1000), hide = true)]
    pub page_size: u32,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
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
        Command::Login(a) => commands::login::run(&ctx, a),
        Command::Logout(a) => commands::login::logout(&ctx, a),
        Command::RecoveryKey(RecoveryKeyCommand::Generate(a)) => {
            commands::recovery_key::generate(&ctx, a)
        }
        Command::RecoveryKey(RecoveryKeyCommand::Check(a)) => {
            commands::recovery_key::check(&ctx, a)
        }
        Command::Backup(BackupCommand::Create(a)) => commands::backup::create::run(&ctx, a),
        Command::Backup(BackupCommand::Info(a)) => commands::backup::info::run(&ctx, a),
        Command::Backup(BackupCommand::Delete(a)) => commands::backup::delete::run(&ctx, a),
        Command::Backup(BackupCommand::Upload(a)) => commands::backup::upload::run(&ctx, a),
        Command::Backup(BackupCommand::Download(a)) => commands::backup::download::run(&ctx, a),
        Command::Backup(BackupCommand::Status(a)) => commands::backup::status::run(&ctx, a),
        Command::Completions(a) => commands::completions::run(&ctx, a),
        Command::Man(a) => commands::man::run(&ctx, a),
        Command::History(HistoryCommand::Check(a)) => commands::history::check(&ctx, a),
        Command::History(HistoryCommand::Export(a)) => commands::history_export::run(&ctx, a),
        Command::Device(c) => commands::device::run(&ctx, c),
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
