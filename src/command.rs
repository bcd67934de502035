//! What the two binaries share on their command lines: the stderr logger of
//! commands, and `assemble` (its options and run). `overboot` declares its command
//! line with clap (`src/cli/`); `overboot-init` stays small and parses the one
//! command it knows by hand ([`parse_assemble`]). Exit codes: 0 success, 1 failure
//! (one message on stderr, prefixed `overboot: `), 2 bad usage.

use crate::assemble::{self, Request};
use crate::state::{self, BootExtInfo};
use std::path::PathBuf;

/// A plain stderr logger for commands (PID 1 installs the kmsg logger instead).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Warn => "warning",
                l => &l.as_str().to_lowercase(),
            };
            eprintln!("overboot: {level}: {}", r.args());
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

/// `assemble`'s options (the `None`s take the defaults of a booted system).
#[derive(Debug, Default)]
pub struct AssembleOptions {
    pub bootext: PathBuf,
    pub root: PathBuf,
    /// The kernel command line to obey (default: /proc/cmdline).
    pub cmdline: Option<String>,
    pub state: Option<PathBuf>,
    pub trust_keys: Option<PathBuf>,
    pub meminfo: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
}

/// `overboot-init assemble ARGS`, parsed by hand (no clap in the initramfs build).
/// `Ok(None)`: help was asked for.
pub fn parse_assemble(args: &[String]) -> Result<Option<AssembleOptions>, String> {
    let mut o = AssembleOptions::default();
    let (mut bootext, mut root) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if !flag.starts_with('-') {
            return Err(format!("unexpected argument '{arg}'"));
        }
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--bootext" => bootext = Some(PathBuf::from(value)),
            "--root" => root = Some(PathBuf::from(value)),
            "--cmdline" => o.cmdline = Some(value),
            "--state" => o.state = Some(value.into()),
            "--trust-keys" => o.trust_keys = Some(value.into()),
            "--meminfo" => o.meminfo = Some(value.into()),
            "--run-dir" => o.run_dir = Some(value.into()),
            _ => return Err(format!("unknown option '{flag}'")),
        }
    }
    match (bootext, root) {
        (Some(b), Some(r)) => Ok(Some(AssembleOptions {
            bootext: b,
            root: r,
            ..o
        })),
        _ => Err("--bootext DIR and --root DIR are required".into()),
    }
}

/// The kernel command line given, else the running kernel's.
pub fn cmdline_or_proc(given: Option<&str>) -> String {
    match given {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    }
}

/// Select the image on BootExt, assemble the root at `o.root`, write the state file.
pub fn assemble(o: &AssembleOptions) -> i32 {
    let mut verify = crate::verify::Paths::default();
    if let Some(d) = &o.trust_keys {
        verify.trust_dir = d.clone();
    }
    if let Some(m) = &o.meminfo {
        verify.meminfo = m.clone();
    }
    let req = Request {
        bootext: o.bootext.clone(),
        root: o.root.clone(),
        cmdline: cmdline_or_proc(o.cmdline.as_deref()),
        state_path: o.state.clone().unwrap_or(state::STATE_PATH.into()),
        run_dir: o.run_dir.clone().unwrap_or("/run".into()),
        mode: "assemble".into(),
        bootext_info: BootExtInfo {
            path: o.bootext.to_string_lossy().into_owned(),
            found_by: "--bootext".into(),
            ..Default::default()
        },
        verify,
        // Netboot is for PID 1 only (boot::main_net).
        network: None,
    };
    match assemble::assemble(&req) {
        Ok(done) => {
            let s = &done.state;
            if let Some(b) = &s.booted {
                eprintln!(
                    "overboot: assembled {} from {} ({} mounts, {} skipped, {:.1} ms)",
                    o.root.display(),
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
