//! The command-line front end: `assemble`, `plan`, `check`. Exit codes: 0 success,
//! 1 failure (message on stderr), 2 bad usage.

use crate::assemble::{self, Request};
use crate::preview;
use crate::state::{self, BootExtInfo};
use crate::sys::confined::Confined;
use std::path::PathBuf;

pub mod trial;

pub const USAGE: &str = "\
overboot: early-boot overlay assembler for read-only appliance systems

usage:
  overboot assemble --bootext DIR --root DIR [--cmdline STR] [--state FILE] [--run-dir DIR]
  overboot plan --bootext DIR [--cmdline STR] [--trust-keys DIR] [--initramfs FILE] [--json]
  overboot check DIR [--trust-keys DIR] [--initramfs FILE]
  overboot status [--json] [--state FILE]
  overboot set-active IMAGE [--tries N] [--bootext DIR] [--trust-keys DIR] [--force]
  overboot bless [--bootext DIR] [--state FILE]
  overboot rollback [--bootext DIR]
  overboot seal IMAGE [--sign SECRET.key]
  overboot publish IMAGE... --sign SECRET.key -o DIR
  overboot update [URL] [--image NAME] [--tries N] [--keep K] [--bootext DIR] [--json]
  overboot mkinitramfs -o FILE [--kver VER] [--modules-dir DIR] [--compress zstd|xz|gzip|none] [--add-shell]
  overboot mkuki -o FILE --kernel VMLINUZ --initrd INITRD [--cmdline STR] [--sign-key KEY --sign-cert CERT]
  overboot help | --help | --version

Run as /init (PID 1) it boots: finds BootExt, assembles the root, switches to it.
Exit codes: 0 success, 1 failure (message on stderr), 2 bad usage.";

/// A plain stderr logger for commands (PID 1 installs the kmsg logger instead).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "overboot: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Commands log warnings to stderr; `OVERBOOT_DEBUG` set in the environment shows
/// everything.
pub fn init_stderr_logger() {
    let _ = log::set_logger(&LOGGER);
    let verbose = std::env::var_os("OVERBOOT_DEBUG").is_some();
    log::set_max_level(if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    });
}

const ASSEMBLE_USAGE: &str = "\
usage: overboot assemble --bootext DIR --root DIR [--cmdline STR] [--state FILE] [--trust-keys DIR] [--run-dir DIR]

Select the system image on BootExt (DIR), mount it read-only with a tmpfs overlay on
ROOT, make the DIRS/ and manifest overmounts, publish BootExt, image and overlay at
/mnt/cdrom, /mnt/livecd, /mnt/overlay, and write the state file.
  --cmdline STR   kernel command line to obey (default: /proc/cmdline)
  --state FILE    where to write the record (default: /run/overboot/state.json)
  --trust-keys DIR  trusted minisign keys (*.pub; default: /etc/overboot/trusted-keys)
  --meminfo FILE  read MemAvailable for overboot.toram from FILE (tests; default /proc/meminfo)
  --run-dir DIR   where Units/ are installed, as DIR/systemd/system/ (default: /run)";

const PLAN_USAGE: &str = "\
usage: overboot plan --bootext DIR [--cmdline STR] [--trust-keys DIR] [--initramfs FILE] [--json]

Print the ordered mount plan for the BootExt tree DIR; mounts nothing. The image is
chosen and verified as the boot does, and names are decoded against it, read through
a detached read-only loop mount (as root) or in user space.
  --trust-keys DIR  the keys the boot's initramfs trusts (*.pub; default: /etc/overboot/trusted-keys)
  --initramfs FILE  the initramfs that will boot: its keys are trusted (any compression)";

const CHECK_USAGE: &str = "\
usage: overboot check DIR [--trust-keys DIR] [--initramfs FILE]

Validate a BootExt tree: System links and images (verified as the boot does), DIRS/
names and their decoded targets, conflicts, the manifest. One line per problem; exit 1
if any is an error: whatever the boot would refuse, drop or skip.
  --trust-keys DIR  the keys the boot's initramfs trusts (*.pub; default: /etc/overboot/trusted-keys)
  --initramfs FILE  the initramfs that will boot: its keys are trusted (any compression)";

/// A parsed option list: flags that take a value, and switches.
pub(crate) struct Args {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    pub(crate) positional: Vec<String>,
}

pub(crate) fn parse_args(
    args: &[String],
    with_value: &[&str],
    switches: &[&str],
) -> Result<Args, String> {
    let mut out = Args {
        values: vec![],
        switches: vec![],
        positional: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some((k, v)) = a.split_once('=').filter(|(k, _)| with_value.contains(k)) {
            out.values.push((k.to_string(), v.to_string()));
        } else if with_value.contains(&a.as_str()) {
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            out.values.push((a.clone(), v.clone()));
        } else if switches.contains(&a.as_str()) {
            out.switches.push(a.clone());
        } else if a.starts_with('-') {
            return Err(format!("unknown option {a}"));
        } else {
            out.positional.push(a.clone());
        }
    }
    Ok(out)
}

impl Args {
    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn has(&self, key: &str) -> bool {
        self.switches.iter().any(|s| s == key)
    }
}

pub(crate) fn usage_error(msg: &str, usage: &str) -> i32 {
    eprintln!("overboot: {msg}\n\n{usage}");
    2
}

pub(crate) fn help_asked(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

fn cmdline_or_proc(args: &Args) -> String {
    match args.value("--cmdline") {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    }
}

pub fn assemble_main(args: &[String]) -> i32 {
    if help_asked(args) {
        println!("{ASSEMBLE_USAGE}");
        return 0;
    }
    let a = match parse_args(
        args,
        &[
            "--bootext",
            "--root",
            "--cmdline",
            "--state",
            "--trust-keys",
            "--meminfo",
            "--run-dir",
        ],
        &[],
    ) {
        Ok(a) => a,
        Err(e) => return usage_error(&e, ASSEMBLE_USAGE),
    };
    let (Some(bootext), Some(root)) = (a.value("--bootext"), a.value("--root")) else {
        return usage_error("--bootext and --root are required", ASSEMBLE_USAGE);
    };
    if !a.positional.is_empty() {
        return usage_error(
            &format!("unexpected argument {}", a.positional[0]),
            ASSEMBLE_USAGE,
        );
    }
    let req = Request {
        bootext: PathBuf::from(bootext),
        root: PathBuf::from(root),
        cmdline: cmdline_or_proc(&a),
        state_path: PathBuf::from(a.value("--state").unwrap_or(state::STATE_PATH)),
        run_dir: PathBuf::from(a.value("--run-dir").unwrap_or("/run")),
        mode: "assemble".into(),
        bootext_info: BootExtInfo {
            path: bootext.into(),
            found_by: "--bootext".into(),
            ..Default::default()
        },
        verify: {
            let mut p = crate::verify::Paths::default();
            if let Some(d) = a.value("--trust-keys") {
                p.trust_dir = d.into();
            }
            if let Some(m) = a.value("--meminfo") {
                p.meminfo = m.into();
            }
            p
        },
    };
    match assemble::assemble(&req) {
        Ok(done) => {
            let s = &done.state;
            if let Some(b) = &s.booted {
                eprintln!(
                    "overboot: assembled {} from {} ({} mounts, {} skipped, {:.1} ms)",
                    root,
                    b.image,
                    s.mounts.len(),
                    s.skipped.len(),
                    s.total_ms
                );
            }
            0
        }
        Err(fatal) => {
            eprintln!(
                "overboot: cannot assemble: looked for {}\n  found: {}\n  to fix: {}",
                fatal.what,
                fatal.found.replace('\n', "\n    "),
                fatal.fix
            );
            1
        }
    }
}

fn open_bootext(dir: &str) -> Result<Confined, i32> {
    Confined::open(std::path::Path::new(dir)).map_err(|e| {
        eprintln!("overboot: BootExt: {e}");
        1
    })
}

/// `--trust-keys DIR` and `--initramfs FILE`: the keys the boot will trust.
fn trust_of(a: &Args) -> Result<crate::verify::TrustStore, i32> {
    preview::trust_from(
        a.value("--trust-keys").map(std::path::Path::new),
        a.value("--initramfs").map(std::path::Path::new),
    )
    .map_err(|e| {
        eprintln!("overboot: --initramfs: {e}");
        1
    })
}

pub fn plan_main(args: &[String]) -> i32 {
    if help_asked(args) {
        println!("{PLAN_USAGE}");
        return 0;
    }
    let a = match parse_args(
        args,
        &["--bootext", "--cmdline", "--trust-keys"],
        &["--json"],
    ) {
        Ok(a) => a,
        Err(e) => return usage_error(&e, PLAN_USAGE),
    };
    let Some(dir) = a.value("--bootext") else {
        return usage_error("--bootext is required", PLAN_USAGE);
    };
    let be = match open_bootext(dir) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let trust = match trust_of(&a) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let opts = preview::Options {
        cmdline: cmdline_or_proc(&a),
        trust,
    };
    let out = preview::compute(&be, &opts);
    if a.has("--json") {
        match serde_json::to_string_pretty(&out) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("overboot: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", preview::render_plan(&out, &be));
    }
    if out.system.is_none() {
        for a in &out.attempts {
            eprintln!(
                "overboot: {}: {}",
                a.choice,
                a.reason.as_deref().unwrap_or("?")
            );
        }
        return 1;
    }
    0
}

pub fn check_main(args: &[String]) -> i32 {
    if help_asked(args) {
        println!("{CHECK_USAGE}");
        return 0;
    }
    let a = match parse_args(args, &["--trust-keys", "--initramfs"], &[]) {
        Ok(a) => a,
        Err(e) => return usage_error(&e, CHECK_USAGE),
    };
    let [dir] = a.positional.as_slice() else {
        return usage_error("check takes one BootExt directory", CHECK_USAGE);
    };
    let be = match open_bootext(dir) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let trust = match trust_of(&a) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let report = preview::check(&be, trust);
    print!("{}", report.render());
    if report.errors.is_empty() { 0 } else { 1 }
}

const STATUS_USAGE: &str = "\
usage: overboot status [--json] [--state FILE] [--bootext DIR]

In the booted system: which image booted, from where and why, fallbacks, every
overmount made and skipped, and the time each step took (from the state file), and
the last `overboot update` (System/last-update.json on BootExt, default /mnt/cdrom).";

pub fn status_main(args: &[String]) -> i32 {
    if help_asked(args) {
        println!("{STATUS_USAGE}");
        return 0;
    }
    let a = match parse_args(args, &["--state", "--bootext"], &["--json"]) {
        Ok(a) if a.positional.is_empty() => a,
        Ok(a) => {
            return usage_error(
                &format!("unexpected argument {}", a.positional[0]),
                STATUS_USAGE,
            );
        }
        Err(e) => return usage_error(&e, STATUS_USAGE),
    };
    let path = a.value("--state").unwrap_or(state::STATE_PATH);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("overboot: cannot read {path}: {e} (was this system booted by overboot?)");
            return 1;
        }
    };
    let s: state::State = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("overboot: {path} is not a state file this version understands: {e}");
            return 1;
        }
    };
    if a.has("--json") {
        print!("{text}");
        return 0;
    }
    print!("{}", render_status(&s));
    let bootext = a.value("--bootext").unwrap_or(crate::assemble::BOOTEXT_AT);
    if let Some(line) = crate::update::record::status_line(std::path::Path::new(bootext)) {
        println!("{line}");
    }
    0
}

/// The readable form of a state file.
pub fn render_status(s: &state::State) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "BootExt:   {} (found by {}{})",
        s.bootext.device.as_deref().unwrap_or(&s.bootext.path),
        s.bootext.found_by,
        s.bootext
            .fs_type
            .as_deref()
            .map(|f| format!(", {f}"))
            .unwrap_or_default()
    );
    match &s.booted {
        Some(b) => {
            let via = b
                .link
                .as_deref()
                .map(|l| format!(" via {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "Booted:    {} ({}{via}) on {}",
                b.image,
                b.choice,
                b.loop_device.as_deref().unwrap_or("?")
            );
        }
        None => {
            let _ = writeln!(o, "Booted:    nothing");
        }
    }
    let _ = writeln!(o, "Requested: {}", s.requested);
    if let Some(f) = &s.fallback {
        let _ = writeln!(o, "Fallback:  from {}: {}", f.from, f.reason);
    }
    if let Some(t) = &s.trial {
        let _ = writeln!(
            o,
            "Trial:     {} {} ({} of {} boots left): {}",
            t.image, t.outcome, t.boots_left, t.tries, t.detail
        );
    }
    if !s.layers.is_empty() {
        let _ = writeln!(o, "\nOverlay/ layers, bottom first ({}):", s.layers.len());
        for l in &s.layers {
            let _ = writeln!(o, "  {}", preview::describe_layer(l));
        }
    }
    if !s.units.is_empty() {
        let _ = writeln!(o, "\nUnits ({}):", s.units.len());
        for u in &s.units {
            let _ = writeln!(o, "  {} {} ({})", u.kind, u.path, u.source);
        }
    }
    let _ = writeln!(o, "\nMounts ({}):", s.mounts.len());
    for m in &s.mounts {
        let at = if m.resolved != m.target {
            format!("{} -> {}", m.target, m.resolved)
        } else {
            m.target.clone()
        };
        let _ = writeln!(
            o,
            "  {:<28} {:<9} {:<3} {}",
            at,
            m.kind,
            if m.read_only { "ro" } else { "rw" },
            m.origin
        );
    }
    if !s.skipped.is_empty() {
        let _ = writeln!(o, "\nSkipped ({}):", s.skipped.len());
        for k in &s.skipped {
            let _ = writeln!(o, "  {}: {}", k.entry, k.reason);
        }
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(o, "\nWarnings:");
        for w in &s.warnings {
            let _ = writeln!(o, "  {w}");
        }
    }
    let _ = writeln!(o, "\nTimings:");
    for t in &s.timings {
        let _ = writeln!(o, "  {:<14} {:>9.1} ms", t.step, t.ms);
    }
    let _ = writeln!(o, "  {:<14} {:>9.1} ms", "total", s.total_ms);
    o
}
