//! The `mxkeys` command: parse, run, map errors to exit codes. Everything else is in `cli/`
//! and in the library.

mod cli;

/// mimalloc, not glibc's malloc: the parse, validate and write threads of a large `encrypt`,
/// `import` or `export` hand millions of small allocations to one another, and glibc's
/// cross-thread frees were a tenth of their CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

use cli::exit::{Code, classify};
use cli::output::Ui;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() {
                Code::Usage
            } else {
                Code::Success
            };
            let _ = e.print();
            return code.into();
        }
    };
    let ui = Ui::new(args.global.json, args.global.quiet, args.global.no_progress);
    cli::output::init_logging(args.global.verbose, args.global.quiet);
    cli::output::install_interrupt_handler();
    match cli::run(args, &ui) {
        Ok(code) => code.into(),
        Err(err) => report(&ui, &err).into(),
    }
}

/// Print an error once (one line plus a hint) and return its exit code.
fn report(ui: &Ui, err: &anyhow::Error) -> Code {
    let (code, hint) = classify(err);
    if is_broken_pipe(err) {
        return Code::Success;
    }
    let message = chain_message(err);
    if ui.json {
        let v = serde_json::json!({
            "message_type": "exit_error",
            "code": code as u8,
            "message": message,
            "hint": hint,
        });
        eprintln!("{v}");
    } else {
        eprintln!("mxkeys: error: {message}");
        if let Some(h) = hint {
            eprintln!("hint: {h}");
        }
    }
    code
}

/// The cause chain on one line, like `{err:#}`, but without repeating a cause whose text the
/// error before it already ends with (errors whose message includes their source).
fn chain_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
