//! What is generated from the clap definitions: shell completions, man pages, and the layout
//! of `--help` (a command's own options first, the global flags under their own heading).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, dir_names, mode, text};

/// `mxkeys completions bash`, saved in the work directory.
fn bash_script(env: &Env) -> std::path::PathBuf {
    let out = env.cmd().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    env.write("mxkeys.bash", &out.stdout)
}

/// Source the completion script in a bare bash (no bash-completion package, no rc files),
/// complete the command line `words` at its last word as bash would on <TAB>, and return
/// COMPREPLY, one candidate a line.
fn complete(env: &Env, script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let cword = words.len() - 1;
    let cur = words[cword];
    let prev = words[cword - 1];
    let body = format!(
        r#"source '{}' || exit 9
type _mxkeys >/dev/null || exit 8
COMP_WORDS=({})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
_mxkeys mxkeys '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script.display(),
        quoted.join(" "),
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &body])
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.work())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let env = Env::new();
    let script = bash_script(&env);
    assert_eq!(complete(&env, &script, &["mxkeys", "back"]), ["backup"]);
    assert_eq!(
        complete(&env, &script, &["mxkeys", "backup", "down"]),
        ["download"]
    );
    let mut flags = complete(&env, &script, &["mxkeys", "backup", "download", "--rec"]);
    flags.sort();
    assert_eq!(flags, ["--recovery-key-fd", "--recovery-key-file"]);
    // A flag of another command is not offered here, and the global flags are.
    let all = complete(&env, &script, &["mxkeys", "decrypt", "--"]);
    assert!(all.iter().any(|f| f == "--raw"), "{all:?}");
    assert!(all.iter().any(|f| f == "--store"), "{all:?}");
    assert!(all.iter().any(|f| f == "--no-progress"), "{all:?}");
    assert!(!all.iter().any(|f| f == "--recovery-key-file"), "{all:?}");
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env.cmd().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let s = text(&out.stdout);
        for word in [
            "mxkeys",
            "backup",
            "download",
            "recovery-key-file",
            "completions",
        ] {
            assert!(s.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = env.cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("possible values"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_and_man_need_no_store_and_no_secret() {
    // No store exists, stdin is closed and there is no terminal: nothing may be asked for.
    let env = Env::new();
    let out = env
        .cmd_no_tty()
        .args(["completions", "zsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("#compdef mxkeys"));
    let out = env
        .cmd_no_tty()
        .args(["man", "-o", "pages"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!env.store().exists());
}

/// The pages `mxkeys man` must write: the top command and every subcommand, nested names
/// joined with '-'.
const PAGES: &[&str] = &[
    "mxkeys-backup-create.1",
    "mxkeys-backup-delete.1",
    "mxkeys-backup-download.1",
    "mxkeys-backup-info.1",
    "mxkeys-backup-status.1",
    "mxkeys-backup-upload.1",
    "mxkeys-backup.1",
    "mxkeys-completions.1",
    "mxkeys-decrypt.1",
    "mxkeys-device-create.1",
    "mxkeys-device-delete.1",
    "mxkeys-device-info.1",
    "mxkeys-device-rehydrate.1",
    "mxkeys-device-request-keys.1",
    "mxkeys-device-request-secrets.1",
    "mxkeys-device-sync.1",
    "mxkeys-device-verify.1",
    "mxkeys-device.1",
    "mxkeys-encrypt.1",
    "mxkeys-export.1",
    "mxkeys-history-check.1",
    "mxkeys-history-export.1",
    "mxkeys-history.1",
    "mxkeys-import.1",
    "mxkeys-init.1",
    "mxkeys-inspect.1",
    "mxkeys-list.1",
    "mxkeys-login.1",
    "mxkeys-logout.1",
    "mxkeys-man.1",
    "mxkeys-merge.1",
    "mxkeys-recovery-key-check.1",
    "mxkeys-recovery-key-generate.1",
    "mxkeys-recovery-key.1",
    "mxkeys-reencrypt.1",
    "mxkeys.1",
];

#[test]
fn man_writes_one_page_per_command() {
    let env = Env::new();
    let out = env.cmd().args(["man", "-o", "man/man1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(&format!("Wrote {} man pages", PAGES.len())),
        "{}",
        text(&out.stderr)
    );
    let dir = env.path("man/man1");
    assert_eq!(dir_names(&dir), PAGES);

    let page = text(&std::fs::read(dir.join("mxkeys-backup-download.1")).unwrap());
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH mxkeys-backup-download 1"), "{page}");
    // roff escapes '-' as '\-'.
    for flag in [
        r"\-\-recovery\-key\-file",
        r"\-\-from\-response",
        r"\-\-room",
        r"\-\-homeserver",
        r"\-\-store",
    ] {
        assert!(page.contains(flag), "no {flag} in the page");
    }
    assert!(
        page.contains(r"\fBmxkeys backup download\fR"),
        "synopsis: {page}"
    );
    assert!(
        !page.contains(r"\-\-raw"),
        "decrypt's flag on the download page"
    );
    let top = text(&std::fs::read(dir.join("mxkeys.1")).unwrap());
    assert!(top.contains("Exit codes:"), "{top}");
    // The top page lists the subcommands by their page names.
    assert!(top.contains(r"mxkeys\-backup(1)"), "{top}");
    assert!(top.contains(r"mxkeys\-decrypt(1)"), "{top}");
    // Man pages hold no secret: readable by everyone.
    assert_eq!(mode(&dir.join("mxkeys.1")), 0o644);
}

#[test]
fn man_refuses_to_overwrite_without_force() {
    let env = Env::new();
    let dir = env.path("pages");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mxkeys-list.1"), "mine\n").unwrap();
    let out = env.cmd().args(["man", "-o", "pages"]).output().unwrap();
    common::assert_error(&out, 2, "mxkeys-list.1 already exists", "--force");
    // Nothing else was written: the check comes before the first page.
    assert_eq!(dir_names(&dir), ["mxkeys-list.1"]);
    assert_eq!(std::fs::read(dir.join("mxkeys-list.1")).unwrap(), b"mine\n");

    let out = env
        .cmd()
        .args(["--json", "man", "-o", "pages", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = common::one_json(&out);
    assert_eq!(v["pages"].as_array().unwrap().len(), PAGES.len(), "{v}");
    assert_eq!(dir_names(&dir), PAGES);
    assert!(text(&std::fs::read(dir.join("mxkeys-list.1")).unwrap()).contains(".TH mxkeys-list 1"));
}

/// The options of a `--help` text (long name, or short without a long one), each with the
/// heading it stands under.
fn help_sections(help: &str) -> Vec<(String, String)> {
    let mut heading = String::new();
    let mut out = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
            continue;
        }
        // An option line: "  -q, --quiet   ..." or "      --room <ROOM_ID>  ..."; wrapped
        // description lines are indented further and never start with '-'.
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() - t.len() > 6 {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().take(2).collect();
        let name = words
            .iter()
            .find(|w| w.starts_with("--"))
            .unwrap_or(&words[0]);
        let name = name
            .trim_end_matches(',')
            .trim_end_matches("...")
            .trim_start_matches('-');
        out.push((heading.clone(), name.to_string()));
    }
    out
}

#[test]
fn help_puts_global_flags_under_their_own_heading_after_the_commands_options() {
    let env = Env::new();
    for (args, own) in [
        (
            &["backup", "download"][..],
            &["room", "session", "output", "from-response"][..],
        ),
        (&["decrypt"][..], &["output", "raw", "force"][..]),
        (&["import"][..], &["max-rounds"][..]),
        (&["list"][..], &["room"][..]),
    ] {
        let out = env.cmd().args(args).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        let sections = help_sections(&help);
        let heading_of = |flag: &str| {
            sections
                .iter()
                .find(|(_, f)| f == flag)
                .map(|(h, _)| h.clone())
                .unwrap_or_else(|| panic!("{args:?}: no --{flag} in\n{help}"))
        };
        for g in ["store", "json", "quiet", "verbose", "no-progress"] {
            assert_eq!(heading_of(g), "Global options", "{args:?} --{g}\n{help}");
        }
        for o in own {
            assert_eq!(heading_of(o), "Options", "{args:?} --{o}\n{help}");
        }
        let first_global = sections
            .iter()
            .position(|(h, _)| h == "Global options")
            .unwrap();
        let last_own = sections.iter().rposition(|(h, _)| h == "Options").unwrap();
        assert!(
            last_own < first_global,
            "{args:?}: own options after the global ones\n{help}"
        );
        assert!(
            help.contains("Store passphrase:"),
            "{args:?}: the store passphrase heading is gone\n{help}"
        );
    }
}
