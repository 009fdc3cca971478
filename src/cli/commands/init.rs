//! `mxkeys init`: create the key store.

use mxkeys::store::Store;

use super::Context;
use crate::cli::InitArgs;
use crate::cli::exit::{CliError, Code};
use crate::cli::secrets_in;

/// Run `init`.
pub fn run(ctx: &Context<'_>, a: InitArgs) -> anyhow::Result<Code> {
    let dir = ctx.store_dir()?.to_path_buf();
    if Store::exists(&dir) {
        return Err(mxkeys::store::StoreError::AlreadyExists(dir.display().to_string()).into());
    }
    let pass = if a.insecure_no_store_passphrase {
        ctx.ui.warn(
            "creating an unsealed store: the keys in it are readable by anyone who can read its files",
        );
        None
    } else {
        let (p, strength, _) = secrets_in::store_passphrase(ctx.global)
            .with_prompt(format!(
                "New store passphrase (mxkeys store at {})",
                super::tilde(&dir)
            ))
            .resolve_new(ctx.ui, false, false)
            .map_err(|e| {
                // The generic hint names --insecure-empty-passphrase, which init does not have.
                if matches!(
                    e.downcast_ref::<mxkeys::Error>(),
                    Some(mxkeys::Error::EmptyPassphrase)
                ) {
                    CliError::usage(
                        "refusing to seal the store with an empty passphrase",
                        "choose a store passphrase, or pass --insecure-no-store-passphrase to create an unsealed store",
                    )
                } else {
                    e
                }
            })?;
        Some((p, strength))
    };
    let (pass, strength) = match pass {
        Some((p, s)) => (Some(p), Some(s)),
        None => (None, None),
    };
    Store::create(&dir, pass.as_ref(), a.store_kdf_rounds)?;
    let sealed = pass.is_some();
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "store": dir,
            "protection": if sealed { "sealed" } else { "unsealed" },
            "kdf_rounds": sealed.then_some(a.store_kdf_rounds),
            "passphrase_strength": strength.as_ref().map(super::strength_json),
        }))?;
    } else {
        ctx.ui.note(&format!(
            "Created a {} key store at {}",
            if sealed { "sealed" } else { "UNSEALED" },
            dir.display()
        ));
    }
    Ok(Code::Success)
}
