//! `mxkeys inspect`: describe an export file; with its passphrase, describe its sessions.
//! Never prints a session key.

use std::collections::{BTreeMap, HashSet};

use mxkeys::export::Limits;
use sha2::{Digest, Sha256};

use super::{Context, ExportUnlocker, open_export, open_input};
use crate::cli::InspectArgs;
use crate::cli::exit::Code;
use crate::cli::secrets_in;

#[derive(Debug, Default, serde::Serialize)]
struct RoomStats {
    room_id: String,
    sessions: u64,
    min_first_index: u32,
    max_first_index: u32,
    shared_history: u64,
}

#[derive(Debug, serde::Serialize)]
struct Invalid {
    index: usize,
    reason: String,
}

/// Run `inspect`.
pub fn run(ctx: &Context<'_>, a: InspectArgs) -> anyhow::Result<Code> {
    let file = match (&a.file, &a.client.client_store) {
        (_, Some(path)) => return super::client_store::inspect(ctx, &a.client, path),
        (Some(f), None) => f.clone(),
        (None, None) => {
            return Err(crate::cli::exit::CliError::usage(
                "nothing to inspect",
                "give an export file, or --client-store PATH",
            ));
        }
    };
    let stdin_is_data = file.as_os_str() == "-";
    let bar = ctx.ui.bar();
    bar.set_subject(Some(&file.display().to_string()));
    let limits = Limits {
        max_rounds: a.read.max_rounds,
    };
    let (label, reader) = open_export(open_input(&file)?, &limits, &bar)?;
    let info = reader.info().clone();
    let source = secrets_in::export_passphrase(&a.passphrase);
    let mut report = serde_json::json!({
        "file": label,
        "format": "MEGOLM SESSION DATA",
        "version": info.header.version,
        "rounds": info.header.rounds,
        "file_bytes": info.file_len,
        "decoded_bytes": info.decoded_len,
        "ciphertext_bytes": info.ciphertext_len(),
        "estimated_sessions": info.estimated_sessions(),
        "armor": info.armor,
        "dialect": info.armor.describe(),
    });

    let mut human = vec![
        format!("file:               {label}"),
        format!(
            "format:             MEGOLM SESSION DATA, version {}",
            info.header.version
        ),
        format!("layout:             {}", info.armor.describe()),
        format!("PBKDF2 rounds:      {}", info.header.rounds),
        format!(
            "size:               {} bytes ({} decoded, {} of encrypted JSON)",
            info.file_len,
            info.decoded_len,
            info.ciphertext_len()
        ),
        format!("sessions (approx.): {}", info.estimated_sessions()),
    ];

    if a.decrypt || source.is_given() {
        let mut unlocker = ExportUnlocker::new(source, stdin_is_data);
        let mut u = unlocker.unlock(ctx.ui, &label, reader, &bar)?;
        let mut rooms: BTreeMap<String, RoomStats> = BTreeMap::new();
        let mut algorithms: BTreeMap<String, u64> = BTreeMap::new();
        let mut seen: HashSet<[u8; 16]> = HashSet::new();
        let mut duplicates = 0u64;
        let mut invalid: Vec<Invalid> = Vec::new();
        let mut invalid_count = 0u64;
        let mut valid = 0u64;
        let mut forwarded = 0u64;
        let entries = u.for_each_session_batch(&bar, &mut |batch| {
            for (index, r) in batch {
                match r {
                    Ok(s) => {
                        valid += 1;
                        *algorithms.entry(s.algorithm.clone()).or_default() += 1;
                        let mut h = Sha256::new();
                        h.update(s.room_id.as_bytes());
                        h.update([0]);
                        h.update(s.session_id.as_bytes());
                        let d = h.finalize();
                        let mut k = [0u8; 16];
                        k.copy_from_slice(&d[..16]);
                        if !seen.insert(k) {
                            duplicates += 1;
                        }
                        if !s.forwarding_curve25519_key_chain.is_empty() {
                            forwarded += 1;
                        }
                        let idx = s.first_known_index();
                        let e = rooms.entry(s.room_id.clone()).or_insert_with(|| RoomStats {
                            room_id: s.room_id.clone(),
                            min_first_index: idx,
                            max_first_index: idx,
                            ..Default::default()
                        });
                        e.sessions += 1;
                        e.min_first_index = e.min_first_index.min(idx);
                        e.max_first_index = e.max_first_index.max(idx);
                        e.shared_history += u64::from(s.shared_history);
                    }
                    Err(e) => {
                        invalid_count += 1;
                        if invalid.len() < super::MAX_LISTED {
                            invalid.push(Invalid {
                                index,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            Ok(())
        })?;
        bar.finish();
        human.push(format!(
            "decrypted:          {entries} entries: {valid} valid, {invalid_count} invalid, {duplicates} duplicates, {forwarded} forwarded"
        ));
        for (alg, n) in &algorithms {
            human.push(format!("algorithm:          {alg}: {n}"));
        }
        human.push(format!("rooms:              {}", rooms.len()));
        for r in rooms.values() {
            human.push(format!(
                "  {}  {} sessions, first index {}{}",
                mxkeys::session::sanitize(&r.room_id),
                r.sessions,
                if r.min_first_index == r.max_first_index {
                    r.min_first_index.to_string()
                } else {
                    format!("{}-{}", r.min_first_index, r.max_first_index)
                },
                if r.shared_history > 0 {
                    format!(", {} with shared history", r.shared_history)
                } else {
                    String::new()
                }
            ));
        }
        for i in invalid.iter().take(20) {
            human.push(format!("invalid entry {}: {}", i.index, i.reason));
        }
        if let Some(o) = report.as_object_mut() {
            o.insert(
                "decrypted".into(),
                serde_json::json!({
                    "entries": entries,
                    "valid": valid,
                    "invalid": invalid_count,
                    "duplicates": duplicates,
                    "forwarded": forwarded,
                    "algorithms": algorithms,
                    "rooms": rooms.into_values().collect::<Vec<_>>(),
                    "invalid_entries": invalid,
                }),
            );
        }
    }
    if ctx.ui.json {
        ctx.ui.print_json(&report)?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for l in human {
            writeln!(out, "{l}")?;
        }
        out.flush()?;
    }
    Ok(Code::Success)
}
