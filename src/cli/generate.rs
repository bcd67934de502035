//! `overboot generate man|completions SHELL|readme-table` (hidden): the man page, the
//! shell completions and the README's command table, made from the one declaration
//! in `cli/mod.rs`, so none of them can drift from the command line. `tests/cli.rs`
//! fails when the committed `doc/man/overboot.8` or README table differ from these.

use clap::{Command, CommandFactory};
use std::io::Write;

/// The man page's prose that is not the command line (what the boot does, the
/// kernel parameters, BootExt's layout, files, examples): roff, in `doc/man/`.
const DESCRIPTION: &str = include_str!("../../doc/man/description.roff");
const SECTIONS: &str = include_str!("../../doc/man/sections.roff");

/// The README's command table lies between these lines.
pub const README_BEGIN: &str = "<!-- BEGIN overboot generate readme-table -->";
pub const README_END: &str = "<!-- END overboot generate readme-table -->";

/// The command line as users see it: the hidden commands left out (completion
/// generators list every subcommand, hidden or not), and no `help` command.
fn visible() -> Command {
    let full = super::Cli::command();
    let mut cmd = Command::new("overboot")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .long_about(full.get_long_about().cloned().unwrap_or_default())
        .after_help(full.get_after_help().cloned().unwrap_or_default())
        .disable_help_subcommand(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    cmd.build();
    cmd
}

fn commands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
}

/// `overboot NAME ARGS`, every argument as it is written: `IMAGE`, `[DIR]`,
/// `--bootext DIR`, `[--json]`, `[--trust-key FILE]...`.
pub fn synopsis(sub: &Command) -> String {
    let mut words = vec![format!("overboot {}", sub.get_name())];
    let args = sub
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"));
    let (positional, options): (Vec<_>, Vec<_>) = args.partition(|a| a.is_positional());
    for a in positional.into_iter().chain(options) {
        let value = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
        let takes_value = a.get_action().takes_values();
        let many = matches!(a.get_action(), clap::ArgAction::Append);
        let mut word = if a.is_positional() {
            value
        } else {
            let flag = match (a.get_short(), a.get_long()) {
                (Some(s), _) if a.get_long() == Some("output") || a.get_long().is_none() => {
                    format!("-{s}")
                }
                (_, Some(l)) => format!("--{l}"),
                (Some(s), None) => format!("-{s}"),
                (None, None) => continue,
            };
            if takes_value {
                format!("{flag} {value}")
            } else {
                flag
            }
        };
        let optional = !a.is_required_set();
        if many && a.is_positional() {
            word += "...";
        }
        if optional {
            word = format!("[{word}]");
        }
        if many && !a.is_positional() {
            word += "...";
        }
        words.push(word);
    }
    words.join(" ")
}

/// Roff text: backslashes and hyphens escaped, no line taken for a request.
fn roff(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// overboot(8).
pub fn man() -> std::io::Result<Vec<u8>> {
    let cmd = visible();
    let page = clap_mangen::Man::new(cmd.clone())
        .title("OVERBOOT")
        .section("8")
        .manual("System Administration")
        .source(format!("overboot {}", env!("CARGO_PKG_VERSION")));
    let mut o = Vec::new();
    page.render_title(&mut o)?;
    page.render_name_section(&mut o)?;
    writeln!(o, ".SH SYNOPSIS\n.B /init\n(as PID 1 in an initramfs)")?;
    for sub in commands(&cmd) {
        writeln!(o, ".br\n.B \"{}\"", roff(&synopsis(sub)))?;
    }
    writeln!(o, ".br\n.B \"overboot \\-\\-help | \\-\\-version\"")?;
    o.extend_from_slice(DESCRIPTION.as_bytes());
    writeln!(o, ".SH COMMANDS")?;
    for sub in commands(&cmd) {
        writeln!(o, ".SS \"{}\"", roff(&synopsis(sub)))?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        writeln!(o, "{}", roff(&about).replace("\n\n", "\n.PP\n"))?;
        // clap_mangen's option list, under this command's heading instead of its own.
        let mut options = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut options)?;
        let options = String::from_utf8_lossy(&options).replacen(".SH OPTIONS\n", "", 1);
        o.extend_from_slice(options.as_bytes());
    }
    o.extend_from_slice(SECTIONS.as_bytes());
    Ok(o)
}

/// The completions for `shell`, of the commands users see.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = visible();
    let mut o = Vec::new();
    clap_complete::generate(shell, &mut cmd, "overboot", &mut o);
    o
}

/// The README's command table, with its two marker lines.
pub fn readme_table() -> String {
    let cmd = visible();
    let mut t = format!(
        "{README_BEGIN}\n| command | what it does |\n|---|---|\n\
         | (as PID 1 / `/init`) | the boot: early mounts, modules, find BootExt, assemble into `/sysroot`, switch root |\n"
    );
    for sub in commands(&cmd) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        t += &format!(
            "| `{}` | {} |\n",
            synopsis(sub).replace('|', "\\|"),
            about.replace('|', "\\|")
        );
    }
    t + README_END + "\n"
}

/// Run `generate`: print what was asked for on stdout.
pub fn run(what: &super::Generated) -> i32 {
    let out = match what {
        super::Generated::Man => man(),
        super::Generated::Completions { shell } => Ok(completions(*shell)),
        super::Generated::ReadmeTable => Ok(readme_table().into_bytes()),
    };
    match out.and_then(|o| std::io::stdout().write_all(&o)) {
        Ok(()) => 0,
        Err(e) => super::fail(format!("generate: {e}")),
    }
}
