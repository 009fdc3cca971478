//! `mxkeys device ...` with the phone: an account as Element leaves it, mxkeys's device made
//! and verified in it, and mxkeys started in the background while the test drives the phone.
//! Shared by tests/device_online.rs and the device cases of tests/hostile_server.rs.

use std::ffi::OsString;
use std::process::{Child, Stdio};

use serde_json::Value;

use super::Env;
use super::cli::Run;
use super::phone::Phone;
use super::pty::Term;
use super::synapse::{Hs, User};

/// Upper bound of each wait for the other device (seconds).
pub const WAIT: u64 = 30;

/// An account as a person who set up Element has it: cross-signing, a key backup, secret
/// storage holding both (and a dehydration key), all made by the phone.
pub struct Account {
    /// The user.
    pub user: User,
    /// The user's other device.
    pub phone: Phone,
    /// The Security Key (base58, as typed).
    pub security_key: String,
    /// The backup version the phone made.
    pub version: String,
}

/// A new user named after `prefix`, set up by the phone.
pub fn account(hs: &Hs, prefix: &str) -> Account {
    let user = hs.register(prefix);
    let mut phone = Phone::login(hs, &user);
    phone.bootstrap_cross_signing();
    let version = phone.create_backup();
    let security_key = phone.setup_secret_storage();
    Account {
        user,
        phone,
        security_key,
        version,
    }
}

/// A store logged in as `user` with a device; its id.
pub fn mx_device(env: &Env, user: &User) -> String {
    env.init_and_login(user);
    let r = env.smx(&["--json", "device", "create"]).ok();
    let v = r.json();
    assert_eq!(v["user_id"], user.user_id.as_str());
    assert_eq!(v["cross_signed"], false);
    v["device_id"].as_str().unwrap().to_string()
}

/// `mxkeys --store ... ARGS` started in the background (stdout and stderr captured).
pub fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut all: Vec<OsString> = env.store_args();
    all.extend(args.iter().map(OsString::from));
    env.process(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a [`spawn`]ed run to end; its outcome.
pub fn finish(child: Child) -> Run {
    Run::from_output(&child.wait_with_output().unwrap())
}

/// Has a [`spawn`]ed run ended (without reaping it)?
pub fn ended(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

/// `device info --json`.
pub fn info(env: &Env) -> Value {
    env.smx(&["--json", "device", "info"]).ok().json()
}

/// The session ids of `list --sessions --json`.
pub fn held_sessions(env: &Env) -> Vec<String> {
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect()
}

/// The row of `session` in `list --sessions --json`, if the store holds it.
pub fn session_row(env: &Env, session: &str) -> Option<Value> {
    let list = env.smx(&["--json", "list", "--sessions"]).ok().json();
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == session)
        .cloned()
}

/// `mxkeys --store ... ARGS` on a pseudo-terminal.
pub fn term(env: &Env, args: &[&str]) -> Term {
    let mut all: Vec<String> = env
        .store_args()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Term::spawn(env, &all)
}

/// The Security Key opens secret storage; its self-signing key signs mxkeys's device; the
/// phone then sees the device as verified, and `device info` says so.
pub fn verify_with_key(env: &Env, acc: &mut Account, device_id: &str) {
    let sk = env.write_secret("security-key.txt", &acc.security_key);
    let r = env
        .smx_p(
            &["--json", "device", "verify"],
            &[("--recovery-key-file", &sk)],
        )
        .ok();
    assert_eq!(r.json()["cross_signed"], true, "{}", r.stderr);
    assert_eq!(r.json()["already_verified"], false);
    let id = device_id.to_string();
    assert!(
        acc.phone.sync_until(WAIT, |p| p.sees_verified(&id)),
        "the phone never saw {device_id} as verified"
    );
}
