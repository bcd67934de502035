//! `/sbin/modprobe` in overboot's initramfs: a link to `/init`. The kernel runs
//! `/sbin/modprobe -q -- NAME` itself (`request_module`) when a mount or a driver
//! needs a module nothing asked for beforehand: a FAT mount needs its codepage
//! (`nls_cp437`), a filesystem type named to mount(2) is `fs-TYPE`, a crypto
//! algorithm is `crypto-NAME`. Without a modprobe there such a mount fails
//! ("codepage cp437 not found"). After the switch, `/sbin/modprobe` is the booted
//! system's own.

use super::{Outcome, load_modules};
use std::io::Write;
use std::path::Path;

/// True when the program was started under the name `modprobe`.
pub fn invoked_as_modprobe(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "modprobe")
}

/// When the program was started as `modprobe` (`args` = argv), do that and exit;
/// otherwise return. Called by both binaries before anything else.
pub fn exit_if_invoked_as_modprobe(args: &[String]) {
    if args.first().is_some_and(|a| invoked_as_modprobe(a)) {
        std::process::exit(main(args.get(1..).unwrap_or(&[])));
    }
}

/// The module names in a modprobe command line: options (`-q`, `-b`, …) are
/// skipped, and everything after `--` is a name. The kernel passes
/// `-q -- NAME`; by hand `modprobe NAME` works too. Module parameters
/// (`NAME param=value`) are not supported: the words after the first name are
/// returned for the caller to refuse.
pub fn parse_args(args: &[String]) -> Vec<&str> {
    let mut names = Vec::new();
    let mut options_done = false;
    for a in args {
        if !options_done && a == "--" {
            options_done = true;
        } else if !options_done && a.starts_with('-') {
            continue;
        } else {
            names.push(a.as_str());
        }
    }
    names
}

/// Run as modprobe: load the module named in `args` (what follows argv[0]) and what
/// it needs from `/lib/modules/<running kernel>`. One line goes to the kernel log,
/// so the boot log says what the kernel asked for. Exit status 0 when the module is
/// there afterwards (loaded, already loaded or built in), 1 when not, 2 for usage.
pub fn main(args: &[String]) -> i32 {
    let names = parse_args(args);
    let [name] = names.as_slice() else {
        kmsg(
            INFO,
            &format!(
                "modprobe {}: give exactly one module name (no parameters)",
                args.join(" ")
            ),
        );
        return 2;
    };
    let report = load_modules(&super::running_modules_dir(), &[name]);
    let wanted_is_there = report.error.is_none()
        && report.failures().next().is_none()
        && report.modules.iter().any(|m| {
            matches!(
                m.outcome,
                Outcome::Loaded | Outcome::AlreadyLoaded | Outcome::Builtin
            )
        });
    let loaded: Vec<&str> = report
        .modules
        .iter()
        .filter(|m| m.outcome == Outcome::Loaded)
        .map(|m| m.name.as_str())
        .collect();
    let what = if wanted_is_there && loaded.is_empty() {
        "already there (built in or loaded)".to_string()
    } else if wanted_is_there {
        format!("loaded {}", loaded.join(" "))
    } else {
        let failed: Vec<String> = report
            .failures()
            .map(|(m, why)| format!("{m}: {why}"))
            .collect();
        match (&report.error, failed.is_empty()) {
            (Some(e), _) => format!("not loaded: {e}"),
            (None, false) => format!("not loaded: {}", failed.join("; ")),
            (None, true) => "not in this initramfs".to_string(),
        }
    };
    // The kernel also asks for optional things (a faster CRC, a crypto template)
    // that may well be absent: that is worth a line in dmesg, not on the console.
    let level = if wanted_is_there { INFO } else { DEBUG };
    kmsg(
        level,
        &format!("modprobe {name} (asked by the kernel): {what}"),
    );
    if wanted_is_there { 0 } else { 1 }
}

/// Kernel log levels (`<6>`, `<7>` prefixes of a /dev/kmsg record).
const INFO: u8 = 6;
const DEBUG: u8 = 7;

/// One line in the kernel log, best effort: the helper has no console of its own.
fn kmsg(level: u8, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(format!("<{level}>overboot: {line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_kernels_command_line_names_one_module() {
        assert_eq!(parse_args(&args(&["-q", "--", "nls_cp437"])), ["nls_cp437"]);
        assert_eq!(parse_args(&args(&["fs-vfat"])), ["fs-vfat"]);
        assert_eq!(
            parse_args(&args(&["-q", "-b", "crypto-crc32c"])),
            ["crypto-crc32c"]
        );
        // After --, a name may start with a dash.
        assert_eq!(parse_args(&args(&["--", "-odd"])), ["-odd"]);
        assert!(parse_args(&args(&["-q", "--"])).is_empty());
        assert_eq!(
            parse_args(&args(&["-q", "--", "loop", "max_loop=4"])),
            ["loop", "max_loop=4"]
        );
    }

    #[test]
    fn only_the_name_modprobe_selects_it() {
        assert!(invoked_as_modprobe("/sbin/modprobe"));
        assert!(invoked_as_modprobe("modprobe"));
        assert!(!invoked_as_modprobe("/init"));
        assert!(!invoked_as_modprobe("/sbin/modprobe.real"));
        assert!(!invoked_as_modprobe(""));
    }
}
