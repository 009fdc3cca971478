//! `mxkeys recovery-key generate` and `mxkeys recovery-key check`.

use std::io::Write;

use mxkeys::backup::BackupDecryptionKey;
use mxkeys::recovery::{self, SecretStorageState, UserSecret};
use mxkeys::store::Access;

use super::Context;
use super::net::{self, StoreUse};
use crate::cli::exit::{CliError, Code};
use crate::cli::{RecoveryKeyCheckArgs, RecoveryKeyGenerateArgs};

/// Print or write a new recovery key; `--json` never carries it (it needs -o FILE).
pub fn emit_recovery_key(
    ctx: &Context<'_>,
    key: &mxkeys::secret::Key32,
    output: Option<&std::path::Path>,
    force: bool,
) -> anyhow::Result<Option<String>> {
    let text = mxkeys::recovery_key::encode(key);
    match output {
        Some(p) if p.as_os_str() != "-" => {
            let mut line = zeroize::Zeroizing::new(text.as_bytes().to_vec());
            line.push(b'\n');
            mxkeys::fs::atomic_write(
                p,
                &line,
                if force {
                    mxkeys::fs::Overwrite::Replace
                } else {
                    mxkeys::fs::Overwrite::Refuse
                },
            )?;
            Ok(Some(p.display().to_string()))
        }
        _ => {
            if ctx.ui.json {
                return Err(CliError::usage(
                    "--json output never contains secrets, and the recovery key would go to stdout",
                    "write the key to a file with -o FILE",
                ));
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", &*text)?;
            out.flush()?;
            Ok(None)
        }
    }
}

/// Run `recovery-key generate`.
pub fn generate(ctx: &Context<'_>, a: RecoveryKeyGenerateArgs) -> anyhow::Result<Code> {
    if ctx.ui.json && a.output.as_deref().is_none_or(|p| p.as_os_str() == "-") {
        return Err(CliError::usage(
            "--json output never contains secrets, and the recovery key would go to stdout",
            "write the key to a file with -o FILE",
        ));
    }
    super::Sink::precheck(a.output.as_deref(), a.out.force)?;
    let key = BackupDecryptionKey::random()?;
    let public = key.public_key_base64();
    let file = emit_recovery_key(ctx, key.expose_secret(), a.output.as_deref(), a.out.force)?;
    if ctx.ui.json {
        ctx.ui
            .print_json(&serde_json::json!({"output": file, "public_key": public}))?;
    } else {
        ctx.ui.note(&format!("Backup public key: {public}"));
        if let Some(f) = file {
            ctx.ui.note(&format!(
                "The recovery key is in {f} (mode 0600). Keep it somewhere safe."
            ));
        }
    }
    Ok(Code::Success)
}

/// Run `recovery-key check`.
pub fn check(ctx: &Context<'_>, a: RecoveryKeyCheckArgs) -> anyhow::Result<Code> {
    let secret = match net::given_secret(ctx, &a.secret, false)? {
        Some(s) => s,
        None if ctx.ui.interactive => net::prompt_secret()?,
        None => {
            return Err(CliError::usage(
                format!("the key to check is needed, and {}", ctx.ui.cannot_ask()),
                "give it with --recovery-key-file PATH, --recovery-key-fd N or MXKEYS_RECOVERY_KEY (a phrase: --security-phrase-file)",
            ));
        }
    };
    let form = match &secret {
        UserSecret::Key(_) => "a well-formed recovery key (prefix and check digit are right)",
        UserSecret::Phrase(_) => "a passphrase",
    };
    let online = !a.offline
        && (a.net.homeserver.is_some()
            || a.net.access_token_file.is_some()
            || a.net.access_token_fd.is_some()
            || std::env::var_os("MXKEYS_ACCESS_TOKEN").is_some()
            || std::env::var_os("MXKEYS_ACCESS_TOKEN_FILE").is_some()
            || ctx
                .store_dir()
                .map(mxkeys::store::Store::exists)
                .unwrap_or(false));
    if !online {
        if ctx.ui.json {
            ctx.ui.print_json(
                &serde_json::json!({"well_formed": true, "checked_against_server": false}),
            )?;
        } else {
            ctx.ui.note(&format!("This is {form}. Log in (or give --homeserver and an access token) to learn which secret it is."));
        }
        return Ok(Code::Success);
    }
    let conn = net::connect(ctx, &a.net, StoreUse::IfPresent(Access::Read))?;
    let v = net::backup_version(&conn.client, None)?;
    let auth = net::auth_data(&v)?;
    let ssss = SecretStorageState::fetch(&conn.client, &conn.user_id)?;
    let r = recovery::resolve(&secret, &ssss, &auth, &v.version, a.secret.max_kdf_rounds)?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "well_formed": true,
            "checked_against_server": true,
            "kind": r.kind,
            "backup_version": v.version,
            "matches_backup": true,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "This is {}; it unlocks backup version {} ({} keys).",
            r.kind.describe(),
            v.version,
            v.count
        ));
    }
    Ok(Code::Success)
}
