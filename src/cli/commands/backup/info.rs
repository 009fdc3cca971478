//! `mxkeys backup info`: what a backup version is and whether it can be trusted.

use mxkeys::backup::SignatureState;
use mxkeys::store::Access;
use serde_json::json;

use super::super::Context;
use super::super::net::{self, StoreUse};
use crate::cli::BackupInfoArgs;
use crate::cli::exit::Code;

#[derive(Debug, serde::Serialize)]
struct Sig {
    user_id: String,
    key_id: String,
    by: String,
    state: &'static str,
}

/// Run `backup info`.
pub fn run(ctx: &Context<'_>, a: BackupInfoArgs) -> anyhow::Result<Code> {
    let conn = net::connect(ctx, &a.net, StoreUse::IfPresent(Access::Read))?;
    let v = net::backup_version(&conn.client, a.version.as_deref())?;
    let current = if a.version.is_some() {
        conn.client.backup_version(None)?.map(|c| c.version)
    } else {
        Some(v.version.clone())
    };
    let supported = v.algorithm == mxkeys::backup::ALGORITHM;
    let mut sigs = Vec::new();
    let mut master_valid = false;
    let mut key_in_hand = "unknown";
    let mut public_key = String::new();
    if supported {
        let auth = net::auth_data(&v)?;
        public_key = auth.public_key.clone();
        let query = conn.client.query_keys(&conn.user_id)?;
        let master = super::published_master_key(&query, &conn.user_id);
        if let Some(obj) = auth.signatures.as_ref().and_then(|s| s.as_object()) {
            for (user, keys) in obj {
                let Some(keys) = keys.as_object() else {
                    continue;
                };
                for key_id in keys.keys() {
                    let id = key_id.strip_prefix("ed25519:").unwrap_or(key_id);
                    let (by, pubkey) = if user == &conn.user_id && master.as_deref() == Some(id) {
                        ("your cross-signing master key".to_string(), master.clone())
                    } else if user == &conn.user_id {
                        match super::device_ed25519(&query, user, id) {
                            Some(k) => (format!("your device {id}"), Some(k)),
                            None => (format!("an unknown key {id}"), None),
                        }
                    } else {
                        (format!("another user's key {id}"), None)
                    };
                    let state = match pubkey
                        .and_then(|k| vodozemac::Ed25519PublicKey::from_base64(&k).ok())
                    {
                        None => "unknown key",
                        Some(pk) => match auth.verify_signature(user, key_id, &pk) {
                            SignatureState::Valid => "valid",
                            SignatureState::Invalid => "INVALID",
                            SignatureState::Missing => "missing",
                        },
                    };
                    if state == "valid" && by.starts_with("your cross-signing") {
                        master_valid = true;
                    }
                    sigs.push(Sig {
                        user_id: user.clone(),
                        key_id: key_id.clone(),
                        by,
                        state,
                    });
                }
            }
        }
        if let Some(store) = conn.store.as_ref() {
            key_in_hand = if net::cached_key(Some(store), &auth)?.is_some() {
                "the store holds this backup's key"
            } else {
                "the store holds no key for this backup"
            };
        }
    }
    let trusted = master_valid || key_in_hand.starts_with("the store holds this");
    if ctx.ui.json {
        ctx.ui.print_json(&json!({
            "version": v.version,
            "current": current.as_deref() == Some(v.version.as_str()),
            "algorithm": v.algorithm,
            "count": v.count,
            "etag": v.etag,
            "public_key": public_key,
            "signatures": sigs,
            "signed_by_master_key": master_valid,
            "key_in_store": key_in_hand.starts_with("the store holds this"),
            "trusted": trusted,
        }))?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "version:     {}{}",
            v.version,
            if current.as_deref() == Some(v.version.as_str()) {
                " (current)"
            } else {
                ""
            }
        )?;
        writeln!(
            out,
            "algorithm:   {}",
            mxkeys::session::sanitize(&v.algorithm)
        )?;
        writeln!(out, "keys:        {}", v.count)?;
        writeln!(out, "etag:        {}", mxkeys::session::sanitize(&v.etag))?;
        if supported {
            writeln!(out, "public key:  {public_key}")?;
            if sigs.is_empty() {
                writeln!(out, "signatures:  none")?;
            }
            for s in &sigs {
                writeln!(
                    out,
                    "signature:   {} by {} ({})",
                    s.state,
                    s.by,
                    mxkeys::session::sanitize(&s.key_id)
                )?;
            }
            writeln!(out, "key:         {key_in_hand}")?;
            writeln!(
                out,
                "trust:       {}",
                if master_valid {
                    "signed by your cross-signing master key"
                } else if trusted {
                    "the key in the store matches"
                } else {
                    "not established (give the backup's key to upload, or pin --trust-public-key)"
                }
            )?;
        } else {
            writeln!(
                out,
                "note:        mxkeys cannot read or write this algorithm"
            )?;
        }
        out.flush()?;
    }
    Ok(Code::Success)
}
