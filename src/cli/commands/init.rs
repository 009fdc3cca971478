//! `mxkeys init`: create the key store.

use mxkeys::store::Store;

use super::Context;
use crate::cli::InitArgs;
use crate::cli::exit::Code;
use crate::cli::secrets_in::{self, Purpose};

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
        let (p, _) = secrets_in::store_passphrase(ctx.global).resolve(
            ctx.ui,
            Purpose::New { allow_empty: false },
            false,
        )?;
        Some(p)
    };
    Store::create(&dir, pass.as_ref(), a.store_kdf_rounds)?;
    let sealed = pass.is_some();
    if ctx.ui.json {
        ctx.ui.print_json(&serde_json::json!({
            "store": dir,
            "protection": if sealed { "sealed" } else { "unsealed" },
            "kdf_rounds": sealed.then_some(a.store_kdf_rounds),
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
