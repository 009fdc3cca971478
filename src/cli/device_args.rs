//! The flags of `mxkeys device ...`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueHint};

use super::{BackupSecretArgs, NetArgs};

/// Longest wait of `request-secrets`, `request-keys` and `sync --for` by default, in seconds.
pub const DEFAULT_WAIT_SECS: u64 = 60;

/// `device ...`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Make mxkeys a device of the login's account: an Olm identity, its keys uploaded
    #[command(
        after_help = "Examples:\n  mxkeys login --user @alice:example.org && mxkeys device create\n  mxkeys device create --json\n\nThe device's state lives in <store>/device, sealed with a key the store keeps (the store\npassphrase unlocks it). Other commands never need a device; they keep working with a login."
    )]
    Create(DeviceCreateArgs),
    /// Show the device: its keys, and whether the account's identity has verified it
    #[command(
        after_help = "Examples:\n  mxkeys device info\n  mxkeys device info --json | jq .cross_signed"
    )]
    Info(DeviceInfoArgs),
    /// Verify the device: with the Security Key or Phrase, or by comparing emoji with another device (--sas)
    #[command(
        after_help = "Examples:\n  mxkeys device verify                                # asks for the Security Key\n  mxkeys device verify --recovery-key-file security-key.txt\n  mxkeys device verify --sas                          # compare emoji with your phone\n  mxkeys device verify --sas --device PHONEDEVICEID --for 180\n  mxkeys device verify --sas --accept               # then start it on the phone\n\nWith the Security Key, the account's self-signing key (kept in secret storage) signs this\ndevice. With --sas, mxkeys accepts a verification request that another of your devices sent,\nor sends one (to --device, or to all your devices), shows seven emoji and asks whether the\nother screen shows the same; typing anything but yes cancels and trusts nothing. Either way\nyour other devices then trust this one (and answer its secret and key requests)."
    )]
    Verify(DeviceVerifyArgs),
    /// Ask the user's verified devices for the backup key and the cross-signing keys
    #[command(
        after_help = "Examples:\n  mxkeys device request-secrets\n  mxkeys device request-secrets --for 120 --json\n\nOnly answers from the user's own verified devices are accepted. Afterwards `mxkeys backup\ndownload` needs no secret: the backup key is kept sealed in the store."
    )]
    RequestSecrets(DeviceRequestSecretsArgs),
    /// Ask the user's other devices for room keys that nothing else holds
    #[command(
        after_help = "Examples:\n  mxkeys device request-keys --room '!abc:example.org' --session SESSION_ID\n  mxkeys device request-keys --missing --room '!abc:example.org'\n\nWith --missing, the sessions that `history check` finds missing or starting too late are\nasked for. Forwarded keys are stored marked as forwarded and never replace a better copy.\nElement Web/Desktop answers requests from verified own devices; Element X does not."
    )]
    RequestKeys(DeviceRequestKeysArgs),
    /// Receive room keys, forwarded keys and secrets sent to the device (a /sync loop)
    #[command(
        after_help = "Examples:\n  mxkeys device sync --for 30\n  mxkeys device sync --follow --backup        # a keeper: every new key into the backup\n\nKeys are stored as they arrive; Ctrl-C ends --follow cleanly."
    )]
    Sync(DeviceSyncArgs),
    /// Take the room keys sent to the account's dehydrated device (MSC3814), leaving it in place
    #[command(
        after_help = "Examples:\n  mxkeys device rehydrate                     # asks for the Security Key\n  mxkeys device rehydrate --recovery-key-file security-key.txt --json\n\nThe dehydration key is read from secret storage (org.matrix.msc3814). No device of mxkeys is\nneeded, and the dehydrated device is not replaced."
    )]
    Rehydrate(DeviceRehydrateArgs),
    /// Delete the device on the server (needs the account's password) and locally
    #[command(
        after_help = "Examples:\n  mxkeys device delete --password-file pw.txt --yes\n  mxkeys device delete --local-only --yes     # forget it here only"
    )]
    Delete(DeviceDeleteArgs),
}

/// `device create`
#[derive(Debug, Args)]
pub struct DeviceCreateArgs {
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device info`
#[derive(Debug, Args)]
pub struct DeviceInfoArgs {
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device verify`
#[derive(Debug, Args)]
pub struct DeviceVerifyArgs {
    /// Verify interactively by comparing emoji with another of your devices (needs a terminal)
    #[arg(long)]
    pub sas: bool,
    /// With --sas: the other device's id [default: accept a request from any, or ask all]
    #[arg(long, value_name = "DEVICE_ID", requires = "sas")]
    pub device: Option<String>,
    /// With --sas: send no request; wait for the other device to start the verification
    #[arg(long, requires = "sas")]
    pub accept: bool,
    /// With --sas: give up after this many seconds
    #[arg(long = "for", value_name = "SECS", default_value_t = 120, requires = "sas", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub wait: u64,
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// How long to wait.
#[derive(Debug, Args, Clone, Copy)]
pub struct WaitArgs {
    /// Wait at most this many seconds for answers
    #[arg(long = "for", value_name = "SECS", default_value_t = DEFAULT_WAIT_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait: u64,
}

/// `device request-secrets`
#[derive(Debug, Args)]
pub struct DeviceRequestSecretsArgs {
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device request-keys`
#[derive(Debug, Args)]
pub struct DeviceRequestKeysArgs {
    /// The room of the sessions (repeatable); with --missing, the rooms to check [default: all joined]
    #[arg(long = "room", value_name = "ROOM_ID")]
    pub rooms: Vec<String>,
    /// A session to ask for (repeatable; needs exactly one --room)
    #[arg(long = "session", value_name = "SESSION_ID")]
    pub sessions: Vec<String>,
    /// Ask for the sessions `history check` finds missing or starting after some events
    #[arg(long)]
    pub missing: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device sync`
#[derive(Debug, Args)]
pub struct DeviceSyncArgs {
    /// Sync for this many seconds, then stop
    #[arg(long = "for", value_name = "SECS", default_value_t = DEFAULT_WAIT_SECS, conflicts_with = "follow", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub wait: u64,
    /// Keep running until Ctrl-C
    #[arg(long)]
    pub follow: bool,
    /// Upload every new key to the current backup (trusted through the backup key kept in the store)
    #[arg(long)]
    pub backup: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device rehydrate`
#[derive(Debug, Args)]
pub struct DeviceRehydrateArgs {
    #[command(flatten)]
    pub secret: BackupSecretArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `device delete`
#[derive(Debug, Args)]
pub struct DeviceDeleteArgs {
    /// Only forget the device here; leave it on the server
    #[arg(long)]
    pub local_only: bool,
    /// Read the account's password from this file ('-' for stdin)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath, help_heading = "Password")]
    pub password_file: Option<PathBuf>,
    /// Read the account's password from this open file descriptor
    #[arg(long, value_name = "N", help_heading = "Password")]
    pub password_fd: Option<i32>,
    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub net: NetArgs,
}
