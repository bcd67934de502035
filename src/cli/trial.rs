//! `overboot set-active`, `bless`, `rollback`: trial updates from the booted system
//! (or a build host with BootExt mounted). The decisions are the pure
//! [`crate::trial`]'s; reading and writing `System/` is [`crate::trial_boot`]'s.

use crate::select::{self, Candidate};
use crate::state::{self, State};
use crate::sys::confined::Confined;
use crate::sys::errno_text;
use crate::trial::{self, Step};
use crate::trial_boot::{apply_steps, read_disk, rel};
use rustix::fs::FileType;
use rustix::io::Errno;
use std::path::{Path, PathBuf};

/// Where the booted system sees BootExt (see `assemble::BOOTEXT_AT`).
pub const DEFAULT_BOOTEXT: &str = crate::assemble::BOOTEXT_AT;

pub const SET_ACTIVE_USAGE: &str = "\
usage: overboot set-active IMAGE [--tries N] [--bootext DIR] [--trust-keys DIR] [--force]

Make IMAGE (a squashfs file in System/ on BootExt: NAME, System/NAME or a path) the
active image, atomically. The image active before is kept as System/previous-system
(the image to return to). With --tries N the switch is a trial: each boot counts
down System/trial; `overboot bless` in the booted system makes it permanent; a trial
that runs out boots the previous image again and makes it active. An image the boot
would refuse (superblock, checksum, signature, unreadable) is refused first.
  --bootext DIR   the mounted BootExt (default: /mnt/cdrom)
  --trust-keys DIR  the keys the boot trusts (*.pub; default: /etc/overboot/trusted-keys)
  --force         switch even to an image the boot would refuse (it then falls back)";

pub const BLESS_USAGE: &str = "\
usage: overboot bless [--bootext DIR] [--state FILE]

In the booted system, once it is healthy: end the trial of the image that booted;
it stays active for good. Without a trial in progress, nothing to do (exit 0).
  --bootext DIR   the mounted BootExt (default: /mnt/cdrom)
  --state FILE    the boot record, to check this boot is the trial image
                  (default: /run/overboot/state.json)";

pub const ROLLBACK_USAGE: &str = "\
usage: overboot rollback [--bootext DIR]

Make System/previous-system active again, atomically, ending any trial. Takes
effect at the next boot.
  --bootext DIR   the mounted BootExt (default: /mnt/cdrom)";

struct Opts {
    bootext: PathBuf,
    tries: Option<u32>,
    trust_keys: Option<PathBuf>,
    force: bool,
    state: Option<String>,
    positional: Vec<String>,
}

fn parse(args: &[String], allowed: &[&str]) -> Result<Opts, String> {
    let mut o = Opts {
        bootext: PathBuf::from(DEFAULT_BOOTEXT),
        tries: None,
        trust_keys: None,
        force: false,
        state: None,
        positional: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if key == "--force" && allowed.contains(&key) {
            o.force = true;
            continue;
        }
        if key.starts_with('-') && key.len() > 1 {
            if !allowed.contains(&key) {
                return Err(format!("unknown option {key}"));
            }
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or(format!("{key} needs a value"))?,
            };
            match key {
                "--bootext" => o.bootext = PathBuf::from(value),
                "--state" => o.state = Some(value),
                "--trust-keys" => o.trust_keys = Some(PathBuf::from(value)),
                "--tries" => {
                    o.tries = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--tries {value}: not a number"))?,
                    )
                }
                _ => return Err(format!("unknown option {key}")),
            }
        } else {
            o.positional.push(a.clone());
        }
    }
    Ok(o)
}

fn usage(msg: &str, text: &str) -> i32 {
    eprintln!("overboot: {msg}\n\n{text}");
    2
}

fn fail(msg: &str) -> i32 {
    eprintln!("overboot: {msg}");
    1
}

fn help(args: &[String], text: &str) -> bool {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{text}");
        return true;
    }
    false
}

fn open(dir: &Path) -> Result<Confined, String> {
    Confined::open(dir)
        .map_err(|e| format!("BootExt: {e} (give the mounted BootExt with --bootext DIR)"))
}

/// The file name in `System/` that IMAGE designates: `NAME`, `System/NAME`
/// (relative to BootExt), or a path whose directory is BootExt's `System/`.
pub fn image_name(be: &Confined, image: &str) -> Result<String, String> {
    let outside = || {
        format!(
            "{image} is not in System/ on BootExt ({}/{}): copy the image there first, then give its name",
            be.path.display(),
            trial::SYSTEM_DIR
        )
    };
    let name = if !image.contains('/') {
        image.to_string()
    } else if let Some(n) = image
        .strip_prefix("System/")
        .filter(|n| !n.contains('/') && !image.starts_with('/'))
    {
        n.to_string()
    } else {
        let p = Path::new(image);
        let (Some(parent), Some(file)) = (p.parent(), p.file_name()) else {
            return Err(outside());
        };
        let system = be.path.join(trial::SYSTEM_DIR);
        let same = match (
            std::fs::canonicalize(parent),
            std::fs::canonicalize(&system),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(outside());
        }
        file.to_string_lossy().into_owned()
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(outside());
    }
    if trial::reserved_name(&name) {
        return Err(format!(
            "{name} is one of overboot's own names in System/ (links, trial file, temporaries); give the image file itself"
        ));
    }
    Ok(name)
}

fn check_image(be: &Confined, name: &str) -> Result<(), String> {
    let path = rel(name);
    match be.lstat_type(&path) {
        Ok(FileType::RegularFile) => {}
        Ok(FileType::Symlink) => {
            return Err(format!(
                "{path} is a symlink; give the image file itself (the link targets overboot writes are plain names in System/)"
            ));
        }
        Ok(_) => return Err(format!("{path} is not a regular file")),
        Err(Errno::NOENT) => {
            return Err(format!(
                "{path} does not exist on BootExt ({}): copy the image there first",
                be.path.display()
            ));
        }
        Err(e) => return Err(format!("{path}: {}", errno_text(e))),
    }
    select::check(
        be,
        &Candidate {
            choice: "named",
            path,
        },
    )
    .map(|_| ())
}

/// Refuse an image the boot would refuse (verification included), unless forced:
/// switching to it would only make the next boot fall back.
fn would_boot(
    be: &Confined,
    name: &str,
    trust_keys: Option<&Path>,
    force: bool,
) -> Result<(), String> {
    let opts = crate::preview::Options {
        cmdline: std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        trust: crate::verify::TrustStore::load(
            trust_keys.unwrap_or(Path::new(crate::verify::TRUST_DIR)),
        ),
    };
    match crate::preview::would_boot(be, name, &opts) {
        Ok(summary) if !summary.is_empty() => {
            println!("overboot: System/{name}: {summary}");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if force => {
            eprintln!(
                "overboot: warning: the boot would refuse System/{name} ({e}); switching anyway (--force)"
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "the boot would refuse it: {e} (--force switches anyway)"
        )),
    }
}

pub fn set_active_main(args: &[String]) -> i32 {
    if help(args, SET_ACTIVE_USAGE) {
        return 0;
    }
    let o = match parse(args, &["--bootext", "--tries", "--trust-keys", "--force"]) {
        Ok(o) => o,
        Err(e) => return usage(&e, SET_ACTIVE_USAGE),
    };
    let [image] = o.positional.as_slice() else {
        return usage("set-active takes one IMAGE", SET_ACTIVE_USAGE);
    };
    let be = match open(&o.bootext) {
        Ok(be) => be,
        Err(e) => return fail(&e),
    };
    let name = match image_name(&be, image).and_then(|n| check_image(&be, &n).map(|()| n)) {
        Ok(n) => n,
        Err(e) => return fail(&format!("set-active: {e}; nothing changed")),
    };
    if let Err(e) = would_boot(&be, &name, o.trust_keys.as_deref(), o.force) {
        return fail(&format!("set-active: {e}; nothing changed"));
    }
    run(&be, decide_set_active(&be, &name, o.tries), "set-active")
}

/// The steps that make `System/NAME` active (a trial of `tries` boots when given),
/// after checking the image. Shared by `set-active` and `update`.
pub fn decide_set_active(
    be: &Confined,
    name: &str,
    tries: Option<u32>,
) -> Result<(Vec<Step>, String), String> {
    check_image(be, name)?;
    let disk = read_disk(be);
    let active_ok = select::check(
        be,
        &Candidate {
            choice: "active",
            path: select::ACTIVE_LINK.into(),
        },
    )
    .is_ok();
    trial::set_active(&disk, name, tries, active_ok)
}

fn run(be: &Confined, decided: Result<(Vec<Step>, String), String>, cmd: &str) -> i32 {
    let (steps, msg) = match decided {
        Ok(x) => x,
        Err(e) => return fail(&format!("{cmd}: {e}; nothing changed")),
    };
    match apply_steps(be, &steps) {
        Ok(()) => {
            println!("overboot: {msg}");
            0
        }
        Err(e) => fail(&format!(
            "{cmd}: cannot update BootExt ({}): {e}{}",
            be.path.display(),
            if e.contains("Read-only") {
                " (remount it read-write: mount -o remount,rw)"
            } else {
                ""
            }
        )),
    }
}

/// The image this system booted, as a file name in `System/`, from the state file.
fn booted_image(path: &str) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {path}: {e}")),
    };
    let s: State = serde_json::from_str(&text)
        .map_err(|e| format!("{path} is not a state file this version understands: {e}"))?;
    Ok(s.booted.map(|b| {
        b.image
            .strip_prefix("System/")
            .unwrap_or(&b.image)
            .to_string()
    }))
}

pub fn bless_main(args: &[String]) -> i32 {
    if help(args, BLESS_USAGE) {
        return 0;
    }
    let o = match parse(args, &["--bootext", "--state"]) {
        Ok(o) if o.positional.is_empty() => o,
        Ok(o) => {
            return usage(
                &format!("unexpected argument {}", o.positional[0]),
                BLESS_USAGE,
            );
        }
        Err(e) => return usage(&e, BLESS_USAGE),
    };
    let be = match open(&o.bootext) {
        Ok(be) => be,
        Err(e) => return fail(&e),
    };
    let state_path = o.state.as_deref().unwrap_or(state::STATE_PATH);
    let booted = match booted_image(state_path) {
        Ok(Some(b)) => Some(b),
        Ok(None) => {
            eprintln!(
                "overboot: warning: no boot record at {state_path}: cannot check that this boot is the trial image"
            );
            None
        }
        Err(e) => return fail(&format!("bless: {e}")),
    };
    run(
        &be,
        trial::bless(&read_disk(&be), booted.as_deref()),
        "bless",
    )
}

pub fn rollback_main(args: &[String]) -> i32 {
    if help(args, ROLLBACK_USAGE) {
        return 0;
    }
    let o = match parse(args, &["--bootext"]) {
        Ok(o) if o.positional.is_empty() => o,
        Ok(o) => {
            return usage(
                &format!("unexpected argument {}", o.positional[0]),
                ROLLBACK_USAGE,
            );
        }
        Err(e) => return usage(&e, ROLLBACK_USAGE),
    };
    let be = match open(&o.bootext) {
        Ok(be) => be,
        Err(e) => return fail(&e),
    };
    run(&be, trial::rollback(&read_disk(&be)), "rollback")
}
