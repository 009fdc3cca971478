//! `mxkeys login` and `mxkeys logout`.

use mxkeys::client::{Client, ClientError};
use mxkeys::store::Access;

use super::Context;
use super::net::{self, Credentials, client_config, load_credentials, save_credentials};
use crate::cli::exit::{CliError, Code};
use crate::cli::{LoginArgs, LogoutArgs};

/// Run `login`.
pub fn run(ctx: &Context<'_>, a: LoginArgs) -> anyhow::Result<Code> {
    if mxkeys::client::server_name(&a.user).is_none() {
        return Err(CliError::usage(
            format!(
                "{:?} is not a Matrix user id",
                mxkeys::session::sanitize(&a.user)
            ),
            "give the full id, e.g. --user @alice:example.org",
        ));
    }
    // The store holds the login, so it must exist and be unlocked first.
    let store = ctx.open_store(Access::Write, false)?;
    let cfg = client_config(&a.net, ctx.ui)?;
    let base = match &a.net.homeserver {
        Some(h) => h.clone(),
        None => Client::discover(&a.user, &cfg)?,
    };
    let (password, _) = net::password_source(a.password_file.clone(), a.password_fd)
        .with_prompt(format!("Password for {}", a.user))
        .resolve(ctx.ui, false)?;
    let client = Client::new(&base, None, cfg)?.with_cancel(crate::cli::output::interrupted);
    let login = client.login_password(&a.user, &password, &a.device_name)?;
    drop(password);
    if let Some(old) = load_credentials(&store)? {
        ctx.ui.warn(&format!(
            "replacing the login of {} (device {}); that device stays logged in on the server",
            old.user_id, old.device_id
        ));
    }
    let creds = Credentials {
        homeserver: client.base_url().to_string(),
        user_id: login.user_id.clone(),
        device_id: login.device_id.clone(),
        access_token: login.access_token.expose_secret().to_string(),
    };
    save_credentials(&store, &creds)?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "user_id": creds.user_id, "device_id": creds.device_id, "homeserver": creds.homeserver,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "Logged in as {} on {} (device {}); the access token is kept sealed in the store.",
            creds.user_id, creds.homeserver, creds.device_id
        ));
    }
    Ok(Code::Success)
}

/// Run `logout`.
pub fn logout(ctx: &Context<'_>, a: LogoutArgs) -> anyhow::Result<Code> {
    let store = ctx.open_store(Access::Write, false)?;
    let Some(creds) = load_credentials(&store)? else {
        return Err(CliError::new(
            Code::NotFound,
            "not logged in",
            "nothing to do",
        ));
    };
    let client = mxkeys::client::Client::new(
        a.net.homeserver.as_deref().unwrap_or(&creds.homeserver),
        Some(mxkeys::secret::AccessToken::new(creds.access_token.clone())),
        net::client_config(&a.net, ctx.ui)?,
    )?
    .with_cancel(crate::cli::output::interrupted);
    let server_said = match client.logout() {
        Ok(()) => "the access token was revoked",
        // Already invalid: nothing to revoke, still forget it.
        Err(ClientError::Unauthorized { .. }) => "the access token was already invalid",
        Err(e) => return Err(e.into()),
    };
    store.delete_secret(net::CREDENTIALS)?;
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({"user_id": creds.user_id, "device_id": creds.device_id, "logged_out": true}))?;
    } else {
        ctx.ui
            .note(&format!("Logged out {} ({server_said}).", creds.user_id));
    }
    Ok(Code::Success)
}
