//! `overboot set-active`, `bless`, `rollback`: trial updates from the booted system
//! (or a build host with BootExt mounted). The decisions are the pure
//! [`overboot::trial`]'s; reading and writing `System/` is [`overboot::trial_boot`]'s.

use super::fail;
use overboot::state::State;
use overboot::sys::confined::Confined;
use overboot::trial::{self, Slot, Step};
use overboot::trial_boot::{apply_steps, check_image, decide_set_active, read_disk};
use serde::Serialize;
use std::path::Path;

fn open(dir: &Path) -> Result<Confined, i32> {
    super::plan::open_bootext(dir)
}

/// The file name in `System/` that IMAGE designates: `NAME`, `System/NAME`
/// (relative to BootExt), or a path whose directory is BootExt's `System/`.
fn image_name(be: &Confined, image: &str) -> Result<String, String> {
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

/// Refuse an image the boot would refuse (verification included), unless forced:
/// switching to it would only make the next boot fall back.
fn would_boot(be: &Confined, name: &str, o: &SetActive) -> Result<(), String> {
    let opts = overboot::preview::Options {
        cmdline: std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        trust: overboot::verify::TrustStore::load(o.trust_keys),
    };
    match overboot::preview::would_boot(be, name, &opts) {
        Ok(summary) if !summary.is_empty() && !o.json => {
            println!("overboot: System/{name}: {summary}");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if o.force => {
            log::warn!("the boot would refuse System/{name} ({e}); switching anyway (--force)");
            Ok(())
        }
        Err(e) => Err(format!(
            "the boot would refuse it: {e} (--force switches anyway)"
        )),
    }
}

/// `set-active`'s arguments.
pub(super) struct SetActive<'a> {
    pub bootext: &'a Path,
    pub image: &'a str,
    pub tries: Option<u32>,
    pub trust_keys: &'a Path,
    pub force: bool,
    pub json: bool,
}

pub(super) fn set_active(o: &SetActive) -> i32 {
    let (bootext, image, tries, json) = (o.bootext, o.image, o.tries, o.json);
    let be = match open(bootext) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let name = match image_name(&be, image).and_then(|n| check_image(&be, &n).map(|()| n)) {
        Ok(n) => n,
        Err(e) => return fail(format!("set-active: {e}; nothing changed")),
    };
    if let Err(e) = would_boot(&be, &name, o) {
        return fail(format!("set-active: {e}; nothing changed"));
    }
    let code = run(
        &be,
        decide_set_active(&be, &name, tries),
        "set-active",
        json,
    );
    let image = format!("{}/{name}", trial::SYSTEM_DIR);
    if code == 0 && !overboot::verity::corrupted::forget_for_set_active(&be, &image) {
        return 1;
    }
    code
}

/// Carry out what the trial logic decided, and report it.
fn run(
    be: &Confined,
    decided: Result<(Vec<Step>, String), String>,
    command: &'static str,
    json: bool,
) -> i32 {
    let (steps, message) = match decided {
        Ok(x) => x,
        Err(e) => return fail(format!("{command}: {e}; nothing changed")),
    };
    match apply_steps(be, &steps) {
        Ok(()) if json => super::print_json(&TrialReport::after(be, command, &steps, message)),
        Ok(()) => {
            println!("overboot: {message}");
            0
        }
        Err(e) => fail(format!(
            "{command}: cannot update BootExt ({}): {e}{}",
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
fn booted_image(path: &Path) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let s: State = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a state file this version understands: {e}",
            path.display()
        )
    })?;
    Ok(s.booted.map(|b| {
        b.image
            .strip_prefix("System/")
            .unwrap_or(&b.image)
            .to_string()
    }))
}

pub(super) fn bless(bootext: &Path, state_path: &Path, json: bool) -> i32 {
    let be = match open(bootext) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let booted = match booted_image(state_path) {
        Ok(Some(b)) => Some(b),
        Ok(None) => {
            log::warn!(
                "no boot record at {}: cannot check that this boot is the trial image",
                state_path.display()
            );
            None
        }
        Err(e) => return fail(format!("bless: {e}")),
    };
    run(
        &be,
        trial::bless(&read_disk(&be), booted.as_deref()),
        "bless",
        json,
    )
}

pub(super) fn rollback(bootext: &Path, json: bool) -> i32 {
    let be = match open(bootext) {
        Ok(be) => be,
        Err(code) => return code,
    };
    run(&be, trial::rollback(&read_disk(&be)), "rollback", json)
}

/// `set-active`, `bless`, `rollback --json`: what changed, and `System/` after.
#[derive(Serialize)]
struct TrialReport {
    command: &'static str,
    /// Whether anything was written on BootExt.
    changed: bool,
    /// The steps carried out, in order.
    steps: Vec<String>,
    message: String,
    /// `System/active-system` and `System/previous-system` now (link targets).
    active: Option<String>,
    previous: Option<String>,
    /// `System/trial` now.
    trial: Option<TrialFile>,
}

#[derive(Serialize)]
struct TrialFile {
    image: String,
    tries: u32,
    boots_left: u32,
    /// `pending` or `rolled-back`.
    outcome: String,
    reason: Option<String>,
}

impl TrialReport {
    fn after(be: &Confined, command: &'static str, steps: &[Step], message: String) -> TrialReport {
        let disk = read_disk(be);
        TrialReport {
            command,
            changed: !steps.is_empty(),
            steps: steps.iter().map(ToString::to_string).collect(),
            message,
            active: disk.active,
            previous: disk.previous,
            trial: match disk.trial {
                Slot::Present(t) => Some(TrialFile {
                    image: t.image,
                    tries: t.tries,
                    boots_left: t.boots_left,
                    outcome: match t.outcome {
                        trial::Outcome::Pending => "pending",
                        trial::Outcome::RolledBack => "rolled-back",
                    }
                    .into(),
                    reason: t.reason,
                }),
                Slot::Absent | Slot::Unreadable(_) => None,
            },
        }
    }
}
