//! `mxkeys man -o DIR`: man pages generated from the clap definitions, one per command.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::CommandFactory;
use mxkeys::fs::Overwrite;

use super::Context;
use crate::cli::exit::Code;
use crate::cli::{Cli, ManArgs};

/// Run `man`: write `mxkeys.1` and one page per subcommand into the directory. Needs no store
/// and no secret.
pub fn run(ctx: &Context<'_>, a: ManArgs) -> anyhow::Result<Code> {
    let pages = render_all()?;
    let overwrite = if a.out.force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    };
    let dir = a.output.as_path();
    std::fs::create_dir_all(dir)
        .map_err(|e| mxkeys::Error::io(format!("creating {}", dir.display()), e))?;
    // Every page is checked before the first is written, so a refusal leaves no half set.
    for (name, _) in &pages {
        mxkeys::fs::check_output(&dir.join(name), overwrite)?;
    }
    for (name, page) in &pages {
        // Each page appears whole or not at all (temporary file, fsync, rename), then is made
        // readable by everyone, as man pages are: they hold no secret.
        let path = dir.join(name);
        mxkeys::fs::atomic_write(&path, page, overwrite)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| mxkeys::Error::io(format!("making {} readable", path.display()), e))?;
    }
    report(ctx, dir, &pages)?;
    Ok(Code::Success)
}

/// Every page as (file name, roff text): the top command first, then its subcommands,
/// depth first. After `build`, clap names a subcommand `mxkeys-backup-download` for display
/// and `mxkeys backup download` for its synopsis, which is what the pages need.
fn render_all() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        // Every page's footer names the package and its version (clap_mangen would put the
        // subcommand's own name there, without a version).
        let man = clap_mangen::Man::new(cmd.clone())
            .source(concat!("mxkeys ", env!("CARGO_PKG_VERSION")))
            .manual("mxkeys manual");
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.push((man.get_filename(), page));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, pages)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    walk(&cmd, &mut pages)?;
    Ok(pages)
}

fn report(ctx: &Context<'_>, dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    if ctx.ui.json {
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        ctx.ui.print_json(&serde_json::json!({
            "output": dir.display().to_string(),
            "pages": names,
        }))?;
    } else {
        ctx.ui.note(&format!(
            "Wrote {} man pages to {} (mxkeys.1, mxkeys-backup-download.1, ...).",
            pages.len(),
            dir.display()
        ));
    }
    Ok(())
}
