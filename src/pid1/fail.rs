//! The failure policy: one clear boxed message, then shell, reboot, power-off or halt.
//! PID 1 never returns from here and never exits (that would panic the kernel).

use super::logger::logger;
use crate::cmdline::OnFail;
use rustix::system::{RebootCommand, reboot};
use std::fmt;
use std::fs::OpenOptions;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// Seconds of the visible countdown before a reboot.
pub const REBOOT_COUNTDOWN_SECS: u32 = 30;
/// Seconds of the countdown after the emergency shell exits.
pub const SHELL_EXIT_COUNTDOWN_SECS: u32 = 5;
/// Inner width of the boxed message.
const BOX_WIDTH: usize = 74;
const SHELL: &str = "/bin/sh";

/// A fatal error, told the way an operator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// What overboot looked for.
    pub what: String,
    /// What it found instead.
    pub found: String,
    /// What to change so the next boot works.
    pub fix: String,
}

impl Fatal {
    pub fn new(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Fatal {
            what: what.into(),
            found: found.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "looked for {}; found {}; to fix: {}",
            self.what, self.found, self.fix
        )
    }
}

impl std::error::Error for Fatal {}

/// Cuts `text` into lines of at most `width` characters at spaces (a word longer than
/// the width is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + word.len() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word wider than the whole line.
            let rest = word.split_off(width.min(word.len()));
            lines.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The boxed message for a fatal error, one string per console line (no newlines).
pub fn format_fatal(fatal: &Fatal) -> Vec<String> {
    let border = format!("+{}+", "-".repeat(BOX_WIDTH + 2));
    let mut body: Vec<String> = vec!["overboot: the boot cannot continue".into(), String::new()];
    for (label, text) in [
        ("Looked for: ", &fatal.what),
        ("Found:      ", &fatal.found),
        ("To fix:     ", &fatal.fix),
    ] {
        // Each line of the text is wrapped on its own, so that a list (the block
        // devices seen) stays a list; an indented line (a list item) keeps its
        // indent, and the lines it wraps onto are indented two more.
        let mut head = label;
        let lines: Vec<&str> = text.lines().collect();
        for raw in if lines.is_empty() { vec![""] } else { lines } {
            let indent = raw.len() - raw.trim_start().len();
            let width = BOX_WIDTH - label.len();
            for (i, line) in wrap(raw.trim_start(), width.saturating_sub(indent + 2).max(8))
                .into_iter()
                .enumerate()
            {
                let pad = if i == 0 || indent == 0 {
                    indent
                } else {
                    indent + 2
                };
                body.push(format!("{head}{}{line}", " ".repeat(pad)));
                head = "            ";
            }
        }
    }
    let mut out = vec![border.clone()];
    for line in body {
        let pad = BOX_WIDTH.saturating_sub(line.chars().count());
        out.push(format!("| {line}{} |", " ".repeat(pad)));
    }
    out.push(border);
    out
}

/// The policy to follow: the one asked for, else a shell when the initramfs has one,
/// else reboot.
pub fn resolve_policy(policy: Option<OnFail>, shell_present: bool) -> OnFail {
    match policy {
        Some(p) => p,
        None if shell_present => OnFail::Shell,
        None => OnFail::Reboot,
    }
}

/// What the operator is told right after the box.
fn policy_note(policy: OnFail) -> String {
    match policy {
        OnFail::Shell => format!(
            "starting an emergency shell ({SHELL}) on the console. Look around \
             (dmesg, /proc/mounts, ls /dev), fix what the message says if you can, then \
             type 'exit': the machine reboots."
        ),
        OnFail::Reboot => {
            "the machine reboots (overboot.onfail=reboot|shell|poweroff|halt chooses).".into()
        }
        OnFail::Poweroff => "powering off (overboot.onfail=poweroff).".into(),
        OnFail::Halt => "halting (overboot.onfail=halt).".into(),
    }
}

const POLICY_UNSET: u8 = 0;
static POLICY: AtomicU8 = AtomicU8::new(POLICY_UNSET);
static FAILING: AtomicBool = AtomicBool::new(false);

fn encode(policy: Option<OnFail>) -> u8 {
    match policy {
        None => POLICY_UNSET,
        Some(OnFail::Shell) => 1,
        Some(OnFail::Reboot) => 2,
        Some(OnFail::Poweroff) => 3,
        Some(OnFail::Halt) => 4,
    }
}

fn decode(v: u8) -> Option<OnFail> {
    match v {
        1 => Some(OnFail::Shell),
        2 => Some(OnFail::Reboot),
        3 => Some(OnFail::Poweroff),
        4 => Some(OnFail::Halt),
        _ => None,
    }
}

/// Sets the policy [`guard`] and the panic hook follow (from `overboot.onfail=`).
pub fn set_failure_policy(policy: Option<OnFail>) {
    POLICY.store(encode(policy), Ordering::SeqCst);
}

fn failure_policy() -> Option<OnFail> {
    decode(POLICY.load(Ordering::SeqCst))
}

/// Prints the boxed message on the console and in the kernel log, then follows the
/// policy (`None`: shell if `/bin/sh` exists, else reboot). Never returns.
///
/// Outside PID 1 (a test, a command run by hand) it prints the message on standard
/// error and exits with status 1 instead of touching the machine.
pub fn fail(fatal: &Fatal, policy: Option<OnFail>) -> ! {
    let lines = format_fatal(fatal);
    if !super::is_pid1() {
        for line in &lines {
            eprintln!("{line}");
        }
        std::process::exit(1);
    }
    if FAILING.swap(true, Ordering::SeqCst) {
        // Failing while failing (a panic in here): no more messages, just stop.
        final_stop(RebootCommand::Restart);
    }
    let log = logger();
    log.to_console("\n");
    log.emit_block(2, &lines);
    let policy = resolve_policy(policy, Path::new(SHELL).exists());
    say(5, &policy_note(policy));
    match policy {
        OnFail::Shell => {
            run_shell();
            countdown(SHELL_EXIT_COUNTDOWN_SECS);
            final_stop(RebootCommand::Restart)
        }
        OnFail::Reboot => {
            countdown(REBOOT_COUNTDOWN_SECS);
            final_stop(RebootCommand::Restart)
        }
        OnFail::Poweroff => final_stop(RebootCommand::PowerOff),
        OnFail::Halt => final_stop(RebootCommand::Halt),
    }
}

/// One line to kmsg (`overboot: ` added there) and, unless the kernel echoes it, to
/// the console as `overboot: text`.
fn say(syslog: u8, text: &str) {
    logger().emit(syslog, text, &format!("overboot: {text}\n"), true);
}

/// Runs the emergency shell on the console and waits for it.
fn run_shell() {
    let mut cmd = Command::new(SHELL);
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PS1", "(overboot emergency) # ");
    if let Ok(console) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        && let (Ok(a), Ok(b)) = (console.try_clone(), console.try_clone())
    {
        cmd.stdin(Stdio::from(console))
            .stdout(Stdio::from(a))
            .stderr(Stdio::from(b));
    }
    match cmd.status() {
        Ok(status) => {
            say(5, &format!("the emergency shell ended ({status})"));
        }
        Err(e) => {
            say(3, &format!("could not start {SHELL}: {e}"));
        }
    }
}

/// One console line updated in place once a second: `rebooting in N s`.
fn countdown(secs: u32) {
    let log = logger();
    log.emit(5, &format!("rebooting in {secs} s"), "", false);
    for left in (1..=secs).rev() {
        log.to_console(&format!("\roverboot: rebooting in {left:2} s "));
        std::thread::sleep(Duration::from_secs(1));
    }
    log.to_console("\roverboot: rebooting now     \n");
}

/// `sync`, then the reboot syscall; if even that fails, sleep forever (PID 1 must not
/// exit).
fn final_stop(cmd: RebootCommand) -> ! {
    rustix::fs::sync();
    if let Err(e) = reboot(cmd) {
        say(
            2,
            &format!("the reboot system call failed ({e}); stopping here"),
        );
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn panic_fatal(location: &str, message: &str) -> Fatal {
    Fatal::new(
        "overboot to run without an internal error",
        format!("an internal error (panic) at {location}: {message}"),
        "this is a bug in overboot: report this message; meanwhile boot another \
         initramfs or overboot.system=recovery",
    )
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Makes a panic anywhere print the boxed message and follow the failure policy
/// (set with [`set_failure_policy`]) instead of unwinding out of PID 1.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        let fatal = panic_fatal(&location, &payload_text(info.payload()));
        fail(&fatal, failure_policy())
    }));
}

/// The top level of PID 1: installs the panic hook, runs `f`, and whatever happens
/// (an error, a panic, or `f` returning without handing off) follows the failure
/// policy. Never returns.
pub fn guard(f: impl FnOnce() -> Result<(), Fatal>) -> ! {
    install_panic_hook();
    let fatal = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Err(fatal)) => fatal,
        Ok(Ok(())) => Fatal::new(
            "the boot to hand off to the system's init",
            "the boot finished without handing off",
            "this is a bug in overboot: report it",
        ),
        Err(payload) => panic_fatal("an unknown place", &payload_text(payload.as_ref())),
    };
    fail(&fatal, failure_policy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_has_even_edges_and_all_three_parts() {
        let f = Fatal::new(
            "a volume labelled BootExt (overboot.bootext=LABEL=BootExt)",
            "no block device with that label after 30 s; devices seen: vda (ext4, label 'data'), vdb (no filesystem)",
            "label the BootExt filesystem 'BootExt' (e2label /dev/sdX1 BootExt) or set overboot.bootext=",
        );
        let lines = format_fatal(&f);
        let width = lines[0].chars().count();
        assert_eq!(width, BOX_WIDTH + 4);
        for l in &lines {
            assert_eq!(l.chars().count(), width, "{l:?}");
        }
        assert!(lines[0].starts_with("+--") && lines.last() == Some(&lines[0]));
        let text = lines.join("\n");
        assert!(text.contains("| overboot: the boot cannot continue"));
        assert!(text.contains("| Looked for: a volume labelled BootExt"));
        assert!(text.contains("| Found:      no block device"));
        assert!(text.contains("| To fix:     label the BootExt"));
        // Wrapped continuation lines are indented under the text, and no word is lost.
        let words: Vec<&str> = lines
            .iter()
            .flat_map(|l| {
                l.trim_matches(|c| c == '|' || c == '+' || c == '-')
                    .split_whitespace()
            })
            .collect();
        for w in f.found.split_whitespace() {
            assert!(words.contains(&w), "lost {w}");
        }
        assert!(lines.iter().any(|l| l.starts_with("|             ")));
    }

    #[test]
    fn a_list_in_the_text_stays_a_list() {
        let f = Fatal::new(
            "the BootExt volume (LABEL=BootExt)",
            "no block device matches LABEL=BootExt (waited 30.0 s)\n\
             block devices seen (2):\n  \
             /dev/vda (64.0 MiB): TYPE=ext4 LABEL=\"data\" UUID=571d7394-3e40-48be-a5be-c5dd5df355e3 PARTUUID=- PARTLABEL=-\n  \
             /dev/sr0 (1.0 KiB): TYPE=- LABEL=- UUID=- PARTUUID=- PARTLABEL=-\n",
            "label the volume BootExt",
        );
        let lines = format_fatal(&f);
        for l in &lines {
            assert_eq!(l.chars().count(), BOX_WIDTH + 4, "{l:?}");
        }
        let at = |needle: &str| {
            lines
                .iter()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle}: {lines:#?}"))
        };
        assert!(at("(waited 30.0 s)").starts_with("| Found:      no block device"));
        assert!(at("block devices seen (2):").starts_with("|             block devices"));
        // Each device starts its own line, indented; a device wrapped onto a second
        // line is indented further.
        assert!(at("/dev/vda").starts_with("|               /dev/vda (64.0 MiB)"));
        assert!(at("/dev/sr0").starts_with("|               /dev/sr0 (1.0 KiB)"));
        assert!(at("UUID=571d7394").starts_with("|                 UUID=571d7394"));
        assert!(at("To fix:").contains("label the volume BootExt"));
    }

    #[test]
    fn long_words_are_cut_not_overflowing() {
        let f = Fatal::new("Q".repeat(200), "", "y");
        let lines = format_fatal(&f);
        for l in &lines {
            assert_eq!(l.chars().count(), BOX_WIDTH + 4);
        }
        let qs: usize = lines.iter().map(|l| l.matches('Q').count()).sum();
        assert_eq!(qs, 200);
    }

    #[test]
    fn wrap_keeps_words_whole() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("", 5), vec![""]);
        assert_eq!(wrap("abcdefg", 3), vec!["abc", "def", "g"]);
    }

    #[test]
    fn policy_defaults_to_shell_when_present_else_reboot() {
        assert_eq!(resolve_policy(None, true), OnFail::Shell);
        assert_eq!(resolve_policy(None, false), OnFail::Reboot);
        assert_eq!(
            resolve_policy(Some(OnFail::Poweroff), true),
            OnFail::Poweroff
        );
        assert_eq!(resolve_policy(Some(OnFail::Shell), false), OnFail::Shell);
        assert!(policy_note(OnFail::Shell).contains("exit"));
    }

    #[test]
    fn stored_policy_round_trips() {
        for p in [
            None,
            Some(OnFail::Shell),
            Some(OnFail::Reboot),
            Some(OnFail::Poweroff),
            Some(OnFail::Halt),
        ] {
            assert_eq!(decode(encode(p)), p);
        }
    }

    #[test]
    fn display_is_one_line() {
        let f = Fatal::new("a", "b", "c");
        assert_eq!(f.to_string(), "looked for a; found b; to fix: c");
    }
}
