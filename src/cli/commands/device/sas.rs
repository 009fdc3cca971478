//! `device verify --sas`: compare seven emoji with another of the user's devices.

use std::time::{Duration, Instant};

use mxkeys::device::sas::{Flow, Step};
use serde_json::json;

use super::super::Context;
use super::{lib, open};
use crate::cli::device_args::DeviceVerifyArgs;
use crate::cli::exit::{CliError, Code};

/// How long each sync waits on the server while the other side is slow (short: the prompt
/// and Ctrl-C stay responsive).
const POLL_MS: u64 = 1000;

/// The emoji as two rows: symbols, and their names beneath.
fn emoji_table(emoji: &[(String, String)]) -> String {
    let width = emoji
        .iter()
        .map(|(_, n)| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(6)
        + 2;
    let mut top = String::from("  ");
    let mut bottom = String::from("  ");
    for (sym, name) in emoji {
        top.push_str(sym);
        // An emoji takes two columns on a terminal.
        top.push_str(&" ".repeat(width.saturating_sub(2)));
        bottom.push_str(name);
        bottom.push_str(&" ".repeat(width.saturating_sub(name.chars().count())));
    }
    format!("{}\n{}", top.trim_end(), bottom.trim_end())
}

/// Run `device verify --sas`.
pub fn run(ctx: &Context<'_>, a: DeviceVerifyArgs) -> anyhow::Result<Code> {
    if !ctx.ui.interactive {
        return Err(CliError::usage(
            "an emoji verification needs a person at a terminal",
            "run it in a terminal, or verify with the Security Key: `mxkeys device verify --recovery-key-file FILE`",
        ));
    }
    let (conn, dev) = open(ctx, &a.net)?;
    let client = &conn.client;
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let mut flow = if a.accept {
        crate::cli::prompt::say(&format!(
            "Waiting for a verification request from {} (up to {} s): start it there, choosing this device ({}).",
            a.device.as_deref().unwrap_or("another of your devices"),
            a.wait,
            dev.record().device_id
        ));
        loop {
            if crate::cli::output::interrupted() {
                return Err(CliError::new(
                    Code::Interrupted,
                    "stopped waiting (Ctrl-C); nothing was trusted",
                    "run `mxkeys device verify --sas` again when both devices are ready",
                ));
            }
            if Instant::now() >= deadline {
                return Err(CliError::new(
                    Code::Unreachable,
                    format!(
                        "no verification request arrived within {} s; nothing was trusted",
                        a.wait
                    ),
                    "start the verification on the other device (choose this device in its session list), or leave out --accept to send the request from here",
                ));
            }
            if let Some(f) = lib(Flow::accept_incoming(
                &dev,
                client,
                a.device.as_deref(),
                POLL_MS,
            ))? {
                crate::cli::prompt::say(
                    "Accepted the verification request; waiting for the emoji...",
                );
                break f;
            }
        }
    } else {
        match lib(Flow::accept_incoming(&dev, client, a.device.as_deref(), 0))? {
            Some(f) => {
                crate::cli::prompt::say(
                    "Accepted the verification request; waiting for the emoji...",
                );
                f
            }
            None => {
                let f = lib(Flow::ask(&dev, client, a.device.as_deref()))?;
                crate::cli::prompt::say(&match &a.device {
                    Some(d) => format!(
                        "Asked device {d} to verify this one: accept the request there (waiting up to {} s)...",
                        a.wait
                    ),
                    None => format!(
                        "Asked your other devices to verify this one: accept the request on one of them (waiting up to {} s)...",
                        a.wait
                    ),
                });
                f
            }
        }
    };
    loop {
        if crate::cli::output::interrupted() {
            let _ = flow.cancel(client);
            return Err(CliError::new(
                Code::Interrupted,
                "verification cancelled (Ctrl-C); nothing was trusted",
                "run `mxkeys device verify --sas` again when both devices are ready",
            ));
        }
        if Instant::now() >= deadline {
            let _ = flow.cancel(client);
            return Err(CliError::new(
                Code::Unreachable,
                format!(
                    "no verification within {} s; it was cancelled and nothing was trusted",
                    a.wait
                ),
                "keep the other device open on the verification screen, then try again (longer with --for SECS)",
            ));
        }
        match lib(flow.poll(client, POLL_MS))? {
            Step::Waiting => {}
            Step::Compare { emoji, device_id } => {
                crate::cli::prompt::say(&format!(
                    "Compare these emoji with the ones device {device_id} shows:\n\n{}\n",
                    emoji_table(&emoji)
                ));
                let answer = match crate::cli::prompt::line("Do they match? Type yes or no: ") {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = flow.cancel(client);
                        return Err(e);
                    }
                };
                if matches!(answer.to_lowercase().as_str(), "yes" | "y") {
                    lib(flow.confirm(client))?;
                    crate::cli::prompt::say("Confirmed; waiting for the other device...");
                } else {
                    lib(flow.mismatch(client))?;
                    return Err(CliError::new(
                        Code::Untrusted,
                        "the emoji did not match: the verification was cancelled and nothing was trusted",
                        "someone may be interfering; check that you compared with your own device, then try again",
                    ));
                }
            }
            Step::Done { device_id } => {
                if ctx.ui.json {
                    ctx.ui.print_json(&json!({
                        "device_id": dev.record().device_id,
                        "verified_with": device_id,
                        "done": true,
                    }))?;
                } else {
                    ctx.ui.note(&format!(
                        "Verified: device {device_id} and this device ({}) now trust each other.",
                        dev.record().device_id
                    ));
                }
                return Ok(Code::Success);
            }
            Step::Cancelled(reason) => {
                return Err(CliError::new(
                    Code::Untrusted,
                    format!("the verification was cancelled: {reason}; nothing was trusted"),
                    "start again with `mxkeys device verify --sas` when both devices are ready",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_laid_out_over_their_names() {
        let e: Vec<(String, String)> = [("🐶", "Dog"), ("🔑", "Key"), ("🎅", "Santa")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let t = emoji_table(&e);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  🐶"));
        assert!(lines[1].starts_with("  Dog"));
        assert!(lines[1].contains("Santa"));
    }
}
