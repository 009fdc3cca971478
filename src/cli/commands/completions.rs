//! `mxkeys completions SHELL`: a shell completion script, generated from the clap definitions.

use std::io::Write;

use clap::CommandFactory;

use super::Context;
use crate::cli::exit::Code;
use crate::cli::{Cli, CompletionsArgs};

/// Run `completions`: print the script on stdout. Needs no store and no secret.
pub fn run(_ctx: &Context<'_>, a: CompletionsArgs) -> anyhow::Result<Code> {
    let mut cmd = Cli::command();
    // Rendered in memory first: clap_complete panics if its writer fails, and a closed pipe
    // must end the command quietly instead.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "mxkeys", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(Code::Success)
}
