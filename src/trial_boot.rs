//! Trial updates, the side that touches BootExt: the countdown a boot runs before
//! the image is selected ([`at_boot`]), and the reading and writing of `System/` that
//! the boot and the commands (`set-active`, `bless`, `rollback`, `update`) share
//! ([`read_disk`], [`apply_steps`], [`decide_set_active`]). The decisions are made by the pure [`crate::trial`]; this module
//! reads `System/` through [`Confined`] (openat2 beneath BootExt) and carries out the
//! steps with [`crate::sys::atomic`] on the `System/` directory descriptor.

use crate::cmdline::{BootConfig, SystemChoice};
use crate::select::{self, Candidate};
use crate::state::{Fallback, State, TrialState};
use crate::sys::atomic;
use crate::sys::confined::Confined;
use crate::sys::errno_text;
use crate::trial::{self, Disk, First, Slot, Step};
use rustix::fd::OwnedFd;
use rustix::fs::FileType;
use rustix::io::Errno;

/// `System/NAME`, relative to BootExt.
pub fn rel(name: &str) -> String {
    format!("{}/{name}", trial::SYSTEM_DIR)
}

/// Read what the trial logic needs from BootExt. Never fails: what cannot be read
/// is absent or `Unreadable`.
pub fn read_disk(be: &Confined) -> Disk {
    let link = |name: &str| be.readlink(&rel(name)).ok();
    let previous = link(trial::PREVIOUS);
    let previous_ok = previous.is_some()
        && select::check(
            be,
            &Candidate {
                choice: "previous",
                path: select::PREVIOUS_LINK.into(),
            },
        )
        .is_ok();
    let trial = match be.read_small(&rel(trial::TRIAL), trial::MAX_TRIAL_BYTES) {
        Ok(None) => Slot::Absent,
        Ok(Some(text)) => match trial::parse(&text) {
            Ok(t) => Slot::Present(t),
            Err(e) => Slot::Unreadable(e),
        },
        // No System/ directory: no trial can be under way (the images are missing
        // too, and the boot says so); not "a trial may be in progress".
        Err(_) if be.lstat_type(trial::SYSTEM_DIR) != Ok(FileType::Directory) => Slot::Absent,
        Err(e) => Slot::Unreadable(e),
    };
    Disk {
        active: link(trial::ACTIVE),
        previous,
        previous_ok,
        trial,
    }
}

/// `System/` opened for `*at` changes and fsync, confined to BootExt.
pub fn system_dir(be: &Confined) -> Result<OwnedFd, String> {
    let dir = be.open_dir(trial::SYSTEM_DIR).map_err(|e| {
        format!(
            "cannot open {}/{}: it {e}",
            be.path.display(),
            trial::SYSTEM_DIR,
        )
    })?;
    atomic::check_dir(&dir).map_err(|e| format!("{}: {e}", trial::SYSTEM_DIR))?;
    Ok(dir)
}

/// Carry out `steps` in order; stops at the first failure (every step is atomic, and
/// every prefix is a state that boots, see `crate::trial`).
pub fn apply_steps(be: &Confined, steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() {
        return Ok(());
    }
    let dir = system_dir(be)?;
    for step in steps {
        let done = match step {
            Step::WriteTrial(t) => atomic::write_file(
                &dir,
                trial::TRIAL,
                &trial::temp_name(trial::TRIAL),
                trial::render(t).as_bytes(),
            ),
            Step::RemoveTrial => atomic::remove(&dir, trial::TRIAL),
            Step::LinkActive(img) => {
                atomic::replace_symlink(&dir, trial::ACTIVE, &trial::temp_name(trial::ACTIVE), img)
            }
            Step::LinkPrevious(img) => atomic::replace_symlink(
                &dir,
                trial::PREVIOUS,
                &trial::temp_name(trial::PREVIOUS),
                img,
            ),
        };
        done.map_err(|e| format!("{step}: {e}"))?;
        log::debug!("BootExt: {step}");
    }
    Ok(())
}

/// The boot's part, before the image is selected (called by `assemble`): count a
/// trial boot down, or roll a trial that ran out back, and return the candidates in
/// the order to try them, and the reason when the previous image is chosen on
/// purpose (for [`note_fallback`]). Only `overboot.system=active` boots take part.
pub fn at_boot(
    be: &Confined,
    config: &BootConfig,
    state: &mut State,
) -> (Vec<Candidate>, Option<String>) {
    if config.system != SystemChoice::Active {
        return (select::candidates(&config.system), None);
    }
    let disk = read_disk(be);
    let mut plan = trial::boot(&disk);
    if let Err(e) = apply_steps(be, &plan.steps) {
        plan = trial::boot_write_failed(plan, &e);
    }
    for w in &plan.warnings {
        log::warn!("{w}");
        state.warnings.push(w.clone());
    }
    if let Some(r) = &plan.record {
        if r.outcome == "rolled-back" {
            // A rollback is news for whoever reads the log, not a detail.
            log::warn!("trial: {} rolled back: {}", r.image, r.detail);
        } else {
            log::info!("trial: {} ({}): {}", r.image, r.outcome, r.detail);
        }
        state.trial = Some(TrialState {
            image: r.image.clone(),
            tries: r.tries,
            boots_left: r.boots_left,
            outcome: r.outcome.into(),
            detail: r.detail.clone(),
        });
    }
    (order(&config.system, &disk, plan.first), plan.reason)
}

/// The images to try, in order, once the trial logic has said which comes first.
fn order(system: &SystemChoice, disk: &Disk, first: First) -> Vec<Candidate> {
    if disk.previous.is_some() {
        select::candidates_with_previous(system, first == First::Previous)
    } else if first == First::Previous {
        // No image to return to: recovery first, the active image last.
        select::candidates(&SystemChoice::Recovery)
    } else {
        select::candidates(system)
    }
}

/// The candidates the next boot will try, without counting anything down (`plan`,
/// `check`): the boot's own decision ([`trial::boot`], [`order`]).
pub fn next_boot_order(be: &Confined, system: &SystemChoice) -> Vec<Candidate> {
    if *system != SystemChoice::Active {
        return select::candidates(system);
    }
    let disk = read_disk(be);
    order(system, &disk, trial::boot(&disk).first)
}

/// After the image is selected: when the trial logic chose the previous image on
/// purpose, the state's fallback says so (with any further failure appended).
pub fn note_fallback(state: &mut State, reason: Option<String>) {
    let Some(reason) = reason else { return };
    if state.booted.as_ref().is_some_and(|b| b.choice == "active") {
        return;
    }
    let failed: Vec<String> = state
        .attempts
        .iter()
        .filter(|a| !a.ok)
        .map(|a| format!("{}: {}", a.choice, a.reason.as_deref().unwrap_or("?")))
        .collect();
    let reason = if failed.is_empty() {
        reason
    } else {
        format!("{reason}; then {}", failed.join("; "))
    };
    state.fallback = Some(Fallback {
        from: "active".into(),
        reason,
    });
}

/// Whether `System/NAME` is an image the boot can select: a regular file (not a
/// link) whose superblock passes [`select::check`].
pub fn check_image(be: &Confined, name: &str) -> Result<(), String> {
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

/// The steps that make `System/NAME` active (a trial of `tries` boots when given),
/// after checking the image. Shared by `set-active` and `update`.
pub fn decide_set_active(
    be: &Confined,
    name: &str,
    tries: Option<u32>,
) -> Result<(Vec<Step>, String), String> {
    check_image(be, name)?;
    decide_trial(be, name, tries)
}

/// [`decide_set_active`] without looking at the image: whether `name` could be
/// made active (`overboot update` asks before it downloads the image).
pub fn decide_trial(
    be: &Confined,
    name: &str,
    tries: Option<u32>,
) -> Result<(Vec<Step>, String), String> {
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
