//! Trial updates with automatic rollback (DESIGN section 6, "Updates"): the pure model.
//! Data in, data out; the kernel side is [`crate::trial_boot`] and [`crate::sys::atomic`].
//!
//! # Files on BootExt (all in `System/`)
//!
//! | name | what |
//! |---|---|
//! | `active-system` | relative link → the image to boot (existing) |
//! | `previous-system` | relative link → the image to return to: the last image known good before the last `set-active` |
//! | `trial` | small text file: the image on trial, tries, boots left, outcome (format below) |
//! | `.active-system.tmp`, `.previous-system.tmp`, `.trial.tmp` | temporaries of the atomic replace; a power cut may leave one behind; they are never read and are replaced by the next write |
//!
//! Nothing else on BootExt is ever written by overboot. Every change is one atomic
//! step: a new file or link under the temporary name, `fsync`, `renameat` over the
//! old name, `fsync` of `System/`.
//!
//! # The trial file
//!
//! ```text
//! # overboot trial: ...
//! image=v2.squashfs
//! tries=3
//! boots-left=2
//! outcome=pending
//! ```
//!
//! `outcome=rolled-back` (with a `reason=` line) is the record a rollback leaves: the
//! appliance stays on the good image and `overboot status` can say, on every later
//! boot, which trial was rolled back and why. The next `set-active` replaces it.
//!
//! # Meaning
//!
//! A trial is *armed* when `trial` names the image `active-system` points to. Only an
//! armed trial changes the boot; a trial file that names another image is *stale*
//! (an operator moved the link by hand, or a power cut came in the middle of
//! `set-active`) and is ignored. Every command orders its steps so that, whatever
//! prefix of them reaches the disk, a boot chooses an image that was good before or
//! the new one with its countdown (the unit tests below check every prefix).
//!
//! At boot (only when the active image is requested, `overboot.system=active`):
//! - armed, boots left > 0: write `boots-left - 1` first, then boot the trial image;
//!   if that write fails (BootExt read-only, I/O error), the boot cannot be counted,
//!   so it is not a trial boot: the previous image boots, with a warning; the trial
//!   stays pending for a boot that can count;
//! - armed, no boots left: the trial ran out without `overboot bless`: durable
//!   rollback (the record `outcome=rolled-back` first, then `active-system` ←
//!   `previous-system`), and the previous image boots; the state file's
//!   `fallback.reason` says why;
//! - a rolled-back record still armed (power cut between those two steps): the
//!   rollback is finished, the previous image boots;
//! - unreadable trial file: the previous image boots (the safe choice), with a warning.
//!
//! When the previous image boots, the candidates are previous, recovery, then active
//! (never none); otherwise active, previous (when the link exists), recovery.

use std::fmt;

/// Names in `System/`.
pub const SYSTEM_DIR: &str = "System";
pub const ACTIVE: &str = "active-system";
pub const PREVIOUS: &str = "previous-system";
pub const RECOVERY: &str = "recovery-system";
pub const TRIAL: &str = "trial";

/// Names that `set-active` refuses as an image: the links, the trial file, temporaries.
pub fn reserved_name(name: &str) -> bool {
    [ACTIVE, PREVIOUS, RECOVERY, TRIAL].contains(&name) || name.starts_with('.')
}

/// The temporary name for an atomic replace of `name`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// Where a trial stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Counting down; not blessed yet.
    Pending,
    /// Ended by a rollback (ran out, or `overboot rollback`); `reason` says which.
    RolledBack,
}

/// The content of `System/trial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The image on trial: a file name in `System/`.
    pub image: String,
    pub tries: u32,
    pub boots_left: u32,
    pub outcome: Outcome,
    pub reason: Option<String>,
}

impl Trial {
    pub fn pending(image: &str, tries: u32) -> Trial {
        Trial {
            image: image.into(),
            tries,
            boots_left: tries,
            outcome: Outcome::Pending,
            reason: None,
        }
    }

    fn rolled_back(&self, reason: String) -> Trial {
        Trial {
            outcome: Outcome::RolledBack,
            reason: Some(reason),
            ..self.clone()
        }
    }

    /// Which boot of the trial the next one is (1-based).
    fn boot_number(&self) -> u32 {
        self.tries.saturating_sub(self.boots_left).saturating_add(1)
    }
}

/// Limits the trial file and its fields (it is read at every boot).
pub const MAX_TRIAL_BYTES: u64 = 4096;
pub const MAX_TRIES: u32 = 1000;

/// Parse `System/trial`. Unknown keys are refused: a file this version does not
/// understand must not be half-obeyed.
pub fn parse(text: &str) -> Result<Trial, String> {
    let (mut image, mut tries, mut left, mut outcome, mut reason) = (None, None, None, None, None);
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: '{line}' is not key=value", n + 1));
        };
        let (key, value) = (key.trim(), value.trim());
        let number = |v: &str| -> Result<u32, String> {
            v.parse::<u32>()
                .ok()
                .filter(|x| *x <= MAX_TRIES)
                .ok_or_else(|| format!("line {}: {key}={v} is not a number 0..={MAX_TRIES}", n + 1))
        };
        match key {
            "image" => image = Some(value.to_string()),
            "tries" => tries = Some(number(value)?),
            "boots-left" => left = Some(number(value)?),
            "outcome" => {
                outcome = Some(match value {
                    "pending" => Outcome::Pending,
                    "rolled-back" => Outcome::RolledBack,
                    other => return Err(format!("line {}: unknown outcome '{other}'", n + 1)),
                })
            }
            "reason" => reason = Some(value.to_string()),
            other => return Err(format!("line {}: unknown key '{other}'", n + 1)),
        }
    }
    let image = image.ok_or("no image= line")?;
    if image.is_empty() || image.contains('/') || reserved_name(&image) {
        return Err(format!(
            "image={image} is not an image file name in System/"
        ));
    }
    let tries = tries.ok_or("no tries= line")?;
    let boots_left = left.ok_or("no boots-left= line")?;
    if boots_left > tries {
        return Err(format!(
            "boots-left={boots_left} is more than tries={tries}"
        ));
    }
    Ok(Trial {
        image,
        tries,
        boots_left,
        outcome: outcome.ok_or("no outcome= line")?,
        reason,
    })
}

/// The text of `System/trial`; [`parse`] reads it back.
pub fn render(t: &Trial) -> String {
    let mut s = String::from(
        "# overboot trial: written by overboot set-active, counted down at each boot,\n\
         # ended by overboot bless or rollback. Do not edit.\n",
    );
    s += &format!("image={}\n", t.image);
    s += &format!("tries={}\n", t.tries);
    s += &format!("boots-left={}\n", t.boots_left);
    s += match t.outcome {
        Outcome::Pending => "outcome=pending\n",
        Outcome::RolledBack => "outcome=rolled-back\n",
    };
    if let Some(r) = &t.reason {
        // One line: a reason never carries a newline into the file.
        s += &format!("reason={}\n", r.replace(['\n', '\r'], " "));
    }
    s
}

/// The trial file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Absent,
    Present(Trial),
    Unreadable(String),
}

/// What is on BootExt that the trial logic looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Link text of `System/active-system` (`v2.squashfs`), if it is a link.
    pub active: Option<String>,
    /// Link text of `System/previous-system`.
    pub previous: Option<String>,
    /// The previous image passes the checks (exists, squashfs superblock sound).
    pub previous_ok: bool,
    pub trial: Slot,
}

/// One atomic change to `System/`, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Replace `System/trial` (write-temp, fsync, rename, fsync dir).
    WriteTrial(Trial),
    /// Remove `System/trial` (unlink, fsync dir).
    RemoveTrial,
    /// Point `System/active-system` at the image (new link, rename, fsync dir).
    LinkActive(String),
    /// Point `System/previous-system` at the image.
    LinkPrevious(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::WriteTrial(t) => match t.outcome {
                Outcome::Pending => write!(
                    f,
                    "{SYSTEM_DIR}/{TRIAL}: {} with {} of {} boots left",
                    t.image, t.boots_left, t.tries
                ),
                Outcome::RolledBack => write!(f, "{SYSTEM_DIR}/{TRIAL}: {} rolled back", t.image),
            },
            Step::RemoveTrial => write!(f, "{SYSTEM_DIR}/{TRIAL} removed"),
            Step::LinkActive(i) => write!(f, "{SYSTEM_DIR}/{ACTIVE} -> {i}"),
            Step::LinkPrevious(i) => write!(f, "{SYSTEM_DIR}/{PREVIOUS} -> {i}"),
        }
    }
}

/// The state of the trial, derived from the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No trial file.
    None,
    /// Armed and counting (`boots_left` may be 0: the last boot is running).
    Pending(Trial),
    /// Armed rolled-back record: the rollback did not finish (a power cut).
    RollbackUnfinished(Trial),
    /// A record of an earlier rollback (names an image that is no longer active).
    RolledBack(Trial),
    /// A pending trial for an image that is not active: ignored.
    Stale(Trial),
    Unreadable(String),
}

pub fn status(d: &Disk) -> Status {
    match &d.trial {
        Slot::Absent => Status::None,
        Slot::Unreadable(e) => Status::Unreadable(e.clone()),
        Slot::Present(t) => {
            let armed = d.active.as_deref() == Some(t.image.as_str());
            match (&t.outcome, armed) {
                (Outcome::Pending, true) => Status::Pending(t.clone()),
                (Outcome::Pending, false) => Status::Stale(t.clone()),
                (Outcome::RolledBack, true) => Status::RollbackUnfinished(t.clone()),
                (Outcome::RolledBack, false) => Status::RolledBack(t.clone()),
            }
        }
    }
}

/// One line for `plan` and `check`: where the trial stands and what the next boot
/// does about it, and whether that is a problem (`true`: a warning). `None`: no trial.
pub fn describe(status: &Status) -> Option<(String, bool)> {
    Some(match status {
        Status::None => return None,
        Status::Pending(t) if t.boots_left == 0 => (
            format!(
                "trial of {} used all {} boots without `overboot bless`: the next boot rolls back to {SYSTEM_DIR}/{PREVIOUS}",
                t.image, t.tries
            ),
            true,
        ),
        Status::Pending(t) => (
            format!(
                "trial of {}: {} of {} boots left; the next boot counts one down (`overboot bless` ends it)",
                t.image, t.boots_left, t.tries
            ),
            false,
        ),
        Status::RollbackUnfinished(t) => (
            format!(
                "the rollback from {} did not finish: the next boot finishes it and boots {SYSTEM_DIR}/{PREVIOUS}",
                t.image
            ),
            true,
        ),
        Status::RolledBack(t) => (
            format!(
                "the trial of {} was rolled back{}",
                t.image,
                t.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            false,
        ),
        Status::Stale(t) => (
            format!(
                "{SYSTEM_DIR}/{TRIAL} names {}, which is not the active image: ignored",
                t.image
            ),
            true,
        ),
        Status::Unreadable(e) => (
            format!(
                "{SYSTEM_DIR}/{TRIAL} cannot be read ({e}): the next boot boots {SYSTEM_DIR}/{PREVIOUS}"
            ),
            true,
        ),
    })
}

/// Which image a boot tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    Active,
    Previous,
}

/// What the state file records about the trial (mirrors `state::TrialState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub image: String,
    pub tries: u32,
    pub boots_left: u32,
    /// `trial`, `rolled-back`, `not-counted`, `stale`, `unreadable`.
    pub outcome: &'static str,
    pub detail: String,
}

/// The boot's part: the writes to make before the image is selected, and the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    pub steps: Vec<Step>,
    pub first: First,
    pub record: Option<Record>,
    /// When the previous image is chosen on purpose: why (state `fallback.reason`).
    pub reason: Option<String>,
    pub warnings: Vec<String>,
}

impl BootPlan {
    fn normal() -> BootPlan {
        BootPlan {
            steps: vec![],
            first: First::Active,
            record: None,
            reason: None,
            warnings: vec![],
        }
    }
}

fn record(t: &Trial, outcome: &'static str, detail: String) -> Option<Record> {
    Some(Record {
        image: t.image.clone(),
        tries: t.tries,
        boots_left: t.boots_left,
        outcome,
        detail,
    })
}

fn prev_name(d: &Disk) -> &str {
    d.previous.as_deref().unwrap_or("(no previous-system)")
}

/// The rollback's link: `active-system` back to a good `previous-system`, unless it
/// points there already (`previous-system` naming the trial image itself: found by
/// fuzzing; without this check every boot rewrote the same link).
fn back_to_previous(d: &Disk) -> Option<Step> {
    match &d.previous {
        Some(p) if d.previous_ok && d.active.as_ref() != Some(p) => {
            Some(Step::LinkActive(p.clone()))
        }
        _ => None,
    }
}

/// Event: a boot of the active image.
pub fn boot(d: &Disk) -> BootPlan {
    let mut plan = BootPlan::normal();
    match status(d) {
        Status::None => {}
        Status::Stale(t) => {
            let w = format!(
                "{SYSTEM_DIR}/{TRIAL} names {} but {ACTIVE} -> {}: that trial is not in effect (run overboot set-active again to start it)",
                t.image,
                d.active.as_deref().unwrap_or("nothing")
            );
            plan.warnings.push(w.clone());
            plan.record = record(&t, "stale", w);
        }
        Status::RolledBack(t) => {
            plan.record = record(
                &t,
                "rolled-back",
                format!(
                    "rolled back at an earlier boot: {}",
                    t.reason.as_deref().unwrap_or("no reason recorded")
                ),
            );
        }
        Status::Pending(t) if t.boots_left > 0 => {
            let next = Trial {
                boots_left: t.boots_left - 1,
                ..t.clone()
            };
            plan.record = record(
                &next,
                "trial",
                format!(
                    "trial boot {} of {} of {}; run overboot bless once the system is healthy, or it rolls back to {}",
                    t.boot_number(),
                    t.tries,
                    t.image,
                    prev_name(d)
                ),
            );
            plan.steps.push(Step::WriteTrial(next));
        }
        Status::Pending(t) => {
            let reason = format!(
                "the trial of {} ran out: booted {} time(s) without overboot bless; rolled back to {}",
                t.image,
                t.tries,
                prev_name(d)
            );
            plan.steps
                .push(Step::WriteTrial(t.rolled_back(reason.clone())));
            plan.steps.extend(back_to_previous(d));
            plan.first = First::Previous;
            plan.record = record(&t, "rolled-back", reason.clone());
            plan.reason = Some(reason);
        }
        Status::RollbackUnfinished(t) => {
            plan.steps.extend(back_to_previous(d));
            let reason = t
                .reason
                .clone()
                .unwrap_or_else(|| format!("the trial of {} was rolled back", t.image));
            plan.first = First::Previous;
            plan.record = record(&t, "rolled-back", reason.clone());
            plan.reason = Some(reason);
        }
        Status::Unreadable(e) => {
            let w = format!(
                "{SYSTEM_DIR}/{TRIAL} is unreadable ({e}): a trial may be in progress, so the previous image boots (overboot set-active or rollback replaces the file)"
            );
            plan.warnings.push(w.clone());
            if d.previous.is_some() {
                plan.first = First::Previous;
                plan.reason = Some(w.clone());
            }
            plan.record = Some(Record {
                image: d.active.clone().unwrap_or_default(),
                tries: 0,
                boots_left: 0,
                outcome: "unreadable",
                detail: w,
            });
        }
    }
    plan
}

/// The boot's writes failed (BootExt read-only, I/O error). A trial boot that cannot
/// be counted must not happen: the previous image boots instead. A rollback that
/// cannot be recorded still boots the previous image; the next boot tries again.
pub fn boot_write_failed(mut plan: BootPlan, error: &str) -> BootPlan {
    let counting = plan.record.as_ref().is_some_and(|r| r.outcome == "trial");
    if counting {
        let w = format!(
            "cannot count the trial boot on BootExt ({error}): the trial image does not boot uncounted; the previous image boots and the trial stays pending"
        );
        plan.first = First::Previous;
        plan.reason = Some(w.clone());
        if let Some(r) = plan.record.as_mut() {
            r.outcome = "not-counted";
            r.boots_left = r.boots_left.saturating_add(1);
            r.detail = w.clone();
        }
        plan.warnings.push(w);
    } else {
        plan.warnings.push(format!(
            "cannot record the rollback on BootExt ({error}); the previous image boots and the next boot tries again"
        ));
    }
    plan.steps.clear();
    plan
}

/// Event: `overboot set-active IMAGE [--tries N]`. `active_ok`: the image the active
/// link points to now passes the checks (it can become the image to return to).
pub fn set_active(
    d: &Disk,
    image: &str,
    tries: Option<u32>,
    active_ok: bool,
) -> Result<(Vec<Step>, String), String> {
    let st = status(d);
    let armed = matches!(
        st,
        Status::Pending(_) | Status::RollbackUnfinished(_) | Status::Unreadable(_)
    );
    let active = d.active.as_deref();
    // The image to return to: the one before an armed trial, else the active one.
    let ret: Option<(&str, bool)> = if armed {
        d.previous.as_deref().map(|p| (p, d.previous_ok))
    } else {
        active.map(|a| (a, active_ok))
    };
    let mut steps = vec![];
    match tries {
        Some(0) => Err("--tries must be at least 1".into()),
        Some(n) if n > MAX_TRIES => Err(format!("--tries {n}: at most {MAX_TRIES}")),
        Some(n) => {
            let Some((ret, true)) = ret else {
                return Err(format!(
                    "a trial needs a good image to return to, and there is none ({}): make an image active first (overboot set-active IMAGE without --tries)",
                    match ret {
                        None => format!("{SYSTEM_DIR}/{ACTIVE} does not exist"),
                        Some((r, _)) => format!("{r} does not pass the checks"),
                    }
                ));
            };
            if ret == image {
                return Err(format!(
                    "{image} is the image a trial would return to; a trial needs a different image"
                ));
            }
            // Disarm first: an armed trial must not become an uncounted boot.
            if armed && active != Some(ret) {
                steps.push(Step::LinkActive(ret.into()));
            }
            if d.previous.as_deref() != Some(ret) {
                steps.push(Step::LinkPrevious(ret.into()));
            }
            steps.push(Step::WriteTrial(Trial::pending(image, n)));
            steps.push(Step::LinkActive(image.into()));
            let msg = format!(
                "{image} is active on trial for {n} boot(s); overboot bless makes it permanent, otherwise the boot after the last one returns to {ret}"
            );
            Ok((steps, msg))
        }
        None => {
            if active == Some(image) && matches!(st, Status::Pending(_)) {
                return Ok((
                    vec![Step::RemoveTrial],
                    format!("{image} was on trial and is now simply active"),
                ));
            }
            if active == Some(image) && !armed {
                return Ok((vec![], format!("{image} is already active")));
            }
            match ret {
                Some((r, true)) if r != image && d.previous.as_deref() != Some(r) => {
                    steps.push(Step::LinkPrevious(r.into()))
                }
                _ => {}
            }
            let has_trial = !matches!(st, Status::None);
            if has_trial && !armed {
                // Not armed: removing it first changes no boot, and it cannot arm
                // itself when the link moves to an image of the same name.
                steps.push(Step::RemoveTrial);
            }
            steps.push(Step::LinkActive(image.into()));
            if armed {
                steps.push(Step::RemoveTrial);
            }
            let back = match steps.iter().find_map(|s| match s {
                Step::LinkPrevious(p) => Some(p.as_str()),
                _ => None,
            }) {
                Some(p) => format!("; {PREVIOUS} -> {p} (overboot rollback returns to it)"),
                None => String::new(),
            };
            Ok((steps, format!("{image} is active{back}")))
        }
    }
}

/// Event: `overboot bless` in the booted system. `booted`: the image file name this
/// system booted (from the state file), when known.
pub fn bless(d: &Disk, booted: Option<&str>) -> Result<(Vec<Step>, String), String> {
    match status(d) {
        Status::Pending(t) => {
            if let Some(b) = booted
                && b != t.image
            {
                return Err(format!(
                    "this system booted {b}, not the trial image {}: nothing blessed (the trial stays pending with {} boot(s) left)",
                    t.image, t.boots_left
                ));
            }
            Ok((
                vec![Step::RemoveTrial],
                format!(
                    "{} blessed: it is now simply the active image ({PREVIOUS} -> {} kept for overboot rollback)",
                    t.image,
                    prev_name(d)
                ),
            ))
        }
        Status::RollbackUnfinished(t) => Err(format!(
            "the trial of {} ran out and is being rolled back ({}); nothing to bless",
            t.image,
            t.reason.as_deref().unwrap_or("no reason recorded")
        )),
        Status::Unreadable(e) => Err(format!(
            "{SYSTEM_DIR}/{TRIAL} is unreadable ({e}); run overboot set-active IMAGE or overboot rollback"
        )),
        Status::None | Status::Stale(_) | Status::RolledBack(_) => {
            Ok((vec![], "no trial in progress; nothing to bless".into()))
        }
    }
}

/// Event: `overboot rollback`: active <-> previous, ending any trial. The image that
/// was active becomes the previous one, so a second rollback goes forward again.
pub fn rollback(d: &Disk) -> Result<(Vec<Step>, String), String> {
    let Some(prev) = d.previous.clone() else {
        return Err(format!(
            "{SYSTEM_DIR}/{PREVIOUS} does not exist: there is no image to go back to"
        ));
    };
    if !d.previous_ok {
        return Err(format!(
            "{SYSTEM_DIR}/{PREVIOUS} -> {prev} does not pass the checks; refusing to make it active"
        ));
    }
    let same = d.active.as_deref() == Some(prev.as_str());
    let mut steps = vec![];
    match status(d) {
        Status::None | Status::RolledBack(_) if same => {
            return Ok((
                vec![],
                format!("{prev} is already active; nothing to roll back"),
            ));
        }
        Status::Stale(_) if same => steps.push(Step::RemoveTrial),
        Status::Pending(t) | Status::RollbackUnfinished(t) => {
            steps.push(Step::WriteTrial(
                t.rolled_back(format!("overboot rollback to {prev}")),
            ));
            steps.push(Step::LinkActive(prev.clone()));
        }
        Status::Unreadable(_) => {
            steps.push(Step::LinkActive(prev.clone()));
            steps.push(Step::RemoveTrial);
        }
        // A pending record that would arm itself once its image is active, or the
        // record of a rollback from the image that becomes active again: gone first.
        Status::Stale(_) => {
            steps.push(Step::RemoveTrial);
            steps.push(Step::LinkActive(prev.clone()));
        }
        Status::RolledBack(t) if t.image == prev => {
            steps.push(Step::RemoveTrial);
            steps.push(Step::LinkActive(prev.clone()));
        }
        Status::None | Status::RolledBack(_) => steps.push(Step::LinkActive(prev.clone())),
    }
    // Last: until here both links name an image that boots.
    let back = match d.active.as_ref().filter(|_| !same) {
        Some(old) => {
            steps.push(Step::LinkPrevious(old.clone()));
            format!("; {PREVIOUS} -> {old} (overboot rollback again returns to it)")
        }
        None => String::new(),
    };
    Ok((steps, format!("rolled back: {ACTIVE} -> {prev}{back}")))
}

/// The model of a step on the disk (for the tests of every power-cut prefix).
pub fn apply(d: &Disk, step: &Step) -> Disk {
    let mut d = d.clone();
    match step {
        Step::WriteTrial(t) => d.trial = Slot::Present(t.clone()),
        Step::RemoveTrial => d.trial = Slot::Absent,
        Step::LinkActive(i) => d.active = Some(i.clone()),
        Step::LinkPrevious(i) => d.previous = Some(i.clone()),
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[&str] = &["a", "b", "c"];

    fn disk(active: &str, previous: Option<&str>, trial: Slot) -> Disk {
        Disk {
            active: Some(active.into()),
            previous: previous.map(str::to_string),
            previous_ok: previous.is_some_and(|p| GOOD.contains(&p)),
            trial,
        }
    }

    fn pending(image: &str, tries: u32, left: u32) -> Slot {
        Slot::Present(Trial {
            boots_left: left,
            ..Trial::pending(image, tries)
        })
    }

    fn rolled(image: &str) -> Slot {
        Slot::Present(Trial::pending(image, 2).rolled_back("ran out".into()))
    }

    /// Every kind of state the trial can be in.
    fn states() -> Vec<(&'static str, Disk)> {
        vec![
            ("none", disk("a", None, Slot::Absent)),
            ("none+prev", disk("b", Some("a"), Slot::Absent)),
            ("pending", disk("b", Some("a"), pending("b", 2, 2))),
            ("pending-last", disk("b", Some("a"), pending("b", 2, 1))),
            ("expired", disk("b", Some("a"), pending("b", 2, 0))),
            ("expired-bad-prev", disk("b", Some("x"), pending("b", 2, 0))),
            ("unfinished", disk("b", Some("a"), rolled("b"))),
            ("rolled-back", disk("a", Some("a"), rolled("b"))),
            ("stale", disk("a", Some("a"), pending("b", 2, 2))),
            (
                "unreadable",
                disk("b", Some("a"), Slot::Unreadable("line 1: junk".into())),
            ),
        ]
    }

    /// The image a boot of `d` ends up on, modelled: the plan's first choice, then
    /// the fallbacks, images in GOOD boot.
    fn booted(d: &Disk) -> Option<String> {
        let plan = boot(d);
        let order: Vec<Option<String>> = match plan.first {
            First::Active => vec![d.active.clone(), d.previous.clone(), Some("r".into())],
            First::Previous => vec![d.previous.clone(), Some("r".into()), d.active.clone()],
        };
        order
            .into_iter()
            .flatten()
            .find(|i| GOOD.contains(&i.as_str()) || i == "r")
    }

    #[test]
    fn trial_file_round_trip_and_refusals() {
        let t = Trial {
            reason: Some("two\nlines".into()),
            ..Trial::pending("v2.squashfs", 3)
        }
        .rolled_back("x\ny".into());
        let back = parse(&render(&t)).unwrap();
        assert_eq!(back.reason.as_deref(), Some("x y"));
        assert_eq!(back.image, "v2.squashfs");
        assert_eq!(back.outcome, Outcome::RolledBack);
        for (text, want) in [
            ("", "no image"),
            (
                "image=a\ntries=2\nboots-left=3\noutcome=pending",
                "more than",
            ),
            (
                "image=a\ntries=x\nboots-left=1\noutcome=pending",
                "not a number",
            ),
            (
                "image=../a\ntries=2\nboots-left=1\noutcome=pending",
                "not an image",
            ),
            (
                "image=active-system\ntries=2\nboots-left=1\noutcome=pending",
                "not an image",
            ),
            (
                "image=a\ntries=2\nboots-left=1\noutcome=maybe",
                "unknown outcome",
            ),
            (
                "image=a\ntries=2\nboots-left=1\noutcome=pending\nfoo=1",
                "unknown key",
            ),
            ("image=a\ntries=2\nboots-left=1", "no outcome"),
            ("garbage", "not key=value"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn boot_in_every_state() {
        for (name, d) in states() {
            let p = boot(&d);
            let img = booted(&d);
            match name {
                "none" | "none+prev" => {
                    assert_eq!(p, BootPlan::normal(), "{name}");
                }
                "pending" | "pending-last" => {
                    let Some(Step::WriteTrial(t)) = p.steps.first() else {
                        panic!("{name}: {p:?}")
                    };
                    let Slot::Present(before) = &d.trial else {
                        panic!()
                    };
                    assert_eq!(t.boots_left, before.boots_left - 1, "{name}");
                    assert_eq!(p.first, First::Active);
                    assert_eq!(img.as_deref(), Some("b"));
                    assert_eq!(p.record.as_ref().unwrap().outcome, "trial");
                }
                "expired" => {
                    assert_eq!(p.first, First::Previous);
                    assert!(
                        matches!(&p.steps[0], Step::WriteTrial(t) if t.outcome == Outcome::RolledBack)
                    );
                    assert_eq!(p.steps[1], Step::LinkActive("a".into()));
                    assert!(p.reason.as_ref().unwrap().contains("ran out"), "{p:?}");
                    assert_eq!(img.as_deref(), Some("a"));
                }
                "expired-bad-prev" => {
                    // No durable link to a bad image; recovery boots.
                    assert_eq!(p.steps.len(), 1);
                    assert_eq!(img.as_deref(), Some("r"));
                }
                "unfinished" => {
                    assert_eq!(p.steps, vec![Step::LinkActive("a".into())]);
                    assert_eq!(img.as_deref(), Some("a"));
                }
                "rolled-back" => {
                    assert!(p.steps.is_empty());
                    assert_eq!(p.first, First::Active);
                    assert_eq!(p.record.as_ref().unwrap().outcome, "rolled-back");
                    assert_eq!(img.as_deref(), Some("a"));
                }
                "stale" => {
                    assert!(p.steps.is_empty());
                    assert_eq!(p.warnings.len(), 1);
                    assert_eq!(img.as_deref(), Some("a"));
                }
                "unreadable" => {
                    assert!(p.steps.is_empty());
                    assert_eq!(p.first, First::Previous);
                    assert_eq!(img.as_deref(), Some("a"));
                }
                other => panic!("untested state {other}"),
            }
        }
    }

    /// `previous-system` naming the trial image itself (by hand, or a hostile stick):
    /// the rollback is recorded once, then boots write nothing (found by the fuzz
    /// target `trial`; each boot rewrote the same link before).
    #[test]
    fn a_rollback_onto_the_active_image_stops_writing() {
        let spent = disk("b", Some("b"), pending("b", 2, 0));
        let plan = boot(&spent);
        assert_eq!(plan.first, First::Previous);
        assert!(
            matches!(&plan.steps[..], [Step::WriteTrial(_)]),
            "{:?}",
            plan.steps
        );
        let after = plan.steps.iter().fold(spent, |d, s| apply(&d, s));
        assert!(matches!(status(&after), Status::RollbackUnfinished(_)));
        let again = boot(&after);
        assert_eq!(again.first, First::Previous);
        assert!(again.steps.is_empty(), "{:?}", again.steps);
    }

    #[test]
    fn write_failure_at_boot_never_boots_an_uncounted_trial() {
        for (name, d) in states() {
            let p = boot_write_failed(boot(&d), "EROFS");
            assert!(p.steps.is_empty());
            if matches!(name, "pending" | "pending-last") {
                assert_eq!(p.first, First::Previous, "{name}");
                let r = p.record.unwrap();
                assert_eq!(r.outcome, "not-counted");
                let Slot::Present(t) = &d.trial else { panic!() };
                assert_eq!(r.boots_left, t.boots_left);
            }
            if matches!(name, "expired" | "unfinished") {
                assert_eq!(p.first, First::Previous, "{name}");
                assert!(p.warnings.iter().any(|w| w.contains("EROFS")));
            }
        }
    }

    #[test]
    fn a_trial_of_two_boots_twice_then_rolls_back() {
        let mut d = disk("a", Some("z"), Slot::Absent);
        let (steps, _) = set_active(&d, "b", Some(2), true).unwrap();
        d = steps.iter().fold(d, |d, s| apply(&d, s));
        assert_eq!(d.previous.as_deref(), Some("a"));
        d.previous_ok = true;
        let mut seen = vec![];
        for _ in 0..4 {
            seen.push(booted(&d).unwrap());
            let p = boot(&d);
            d = p.steps.iter().fold(d, |d, s| apply(&d, s));
        }
        assert_eq!(seen, ["b", "b", "a", "a"]);
        assert_eq!(
            status(&d),
            Status::RolledBack(match &d.trial {
                Slot::Present(t) => t.clone(),
                _ => panic!(),
            })
        );
        assert_eq!(d.active.as_deref(), Some("a"));
    }

    #[test]
    fn bless_in_every_state() {
        for (name, d) in states() {
            let r = bless(&d, None);
            match name {
                "pending" | "pending-last" | "expired" | "expired-bad-prev" => {
                    let (steps, _) = r.unwrap();
                    assert_eq!(steps, vec![Step::RemoveTrial]);
                    let after = apply(&d, &steps[0]);
                    assert_eq!(boot(&after), BootPlan::normal());
                    // Not from the wrong image.
                    assert!(bless(&d, Some("a")).unwrap_err().contains("booted a"));
                    assert!(bless(&d, Some("b")).is_ok());
                }
                "unfinished" | "unreadable" => assert!(r.is_err(), "{name}"),
                _ => assert!(r.unwrap().0.is_empty(), "{name}"),
            }
        }
    }

    #[test]
    fn rollback_in_every_state() {
        for (name, d) in states() {
            let r = rollback(&d);
            match name {
                "none" => assert!(r.unwrap_err().contains("does not exist")),
                "expired-bad-prev" => assert!(r.unwrap_err().contains("does not pass")),
                "rolled-back" => assert!(r.unwrap().0.is_empty()),
                _ => {
                    let (steps, _) = r.unwrap();
                    let after = steps.iter().fold(d.clone(), |d, s| apply(&d, s));
                    assert_eq!(after.active, d.previous, "{name}");
                    assert_eq!(booted(&after).as_deref(), Some("a"), "{name}");
                    assert!(boot(&after).steps.is_empty(), "{name}: ends any trial");
                    if d.active == d.previous {
                        continue;
                    }
                    // Swapped: a second rollback goes forward again, with no trial.
                    assert_eq!(after.previous, d.active, "{name}");
                    let again = Disk {
                        previous_ok: true,
                        ..after
                    };
                    let (steps, _) = rollback(&again).unwrap();
                    let forward = steps.iter().fold(again, |d, s| apply(&d, s));
                    assert_eq!(forward.active, d.active, "{name}");
                    assert_eq!(forward.previous.as_deref(), Some("a"), "{name}");
                    let plan = boot(&forward);
                    assert_eq!(plan.first, First::Active, "{name}");
                    assert!(plan.steps.is_empty(), "{name}: no trial comes back");
                }
            }
        }
    }

    #[test]
    fn set_active_in_every_state() {
        for (name, d) in states() {
            for tries in [None, Some(1), Some(3)] {
                let r = set_active(&d, "c", tries, GOOD.contains(&d.active.as_deref().unwrap()));
                if name == "expired-bad-prev" && tries.is_some() {
                    assert!(r.unwrap_err().contains("good image to return to"));
                    continue;
                }
                let (steps, _) = r.unwrap_or_else(|e| panic!("{name} {tries:?}: {e}"));
                let after = steps.iter().fold(d.clone(), |d, s| apply(&d, s));
                assert_eq!(after.active.as_deref(), Some("c"), "{name}");
                let fresh = Disk {
                    previous_ok: after.previous.as_deref().is_some_and(|p| GOOD.contains(&p)),
                    ..after
                };
                match tries {
                    Some(n) => {
                        assert_eq!(status(&fresh), Status::Pending(Trial::pending("c", n)));
                        assert!(fresh.previous_ok, "{name}: returns to a good image");
                    }
                    None => assert_eq!(status(&fresh), Status::None, "{name}"),
                }
            }
        }
        // Refusals.
        let d = disk("a", None, Slot::Absent);
        assert!(
            set_active(&d, "a", Some(2), true)
                .unwrap_err()
                .contains("different")
        );
        assert!(set_active(&d, "b", Some(0), true).is_err());
        assert!(set_active(&d, "b", Some(2), false).is_err());
        assert!(set_active(&d, "a", None, true).unwrap().0.is_empty());
    }

    /// The power-cut property on the model: for every state and every command,
    /// after any prefix of the steps, a boot comes up on an image that was booting
    /// before or on the new image, and never on an untested image without a count.
    #[test]
    fn every_prefix_of_every_command_boots_a_good_image() {
        for (name, d) in states() {
            let before = booted(&d);
            // (command, steps, the image it boots when complete, counted trial?)
            let mut commands: Vec<(String, Vec<Step>, Option<String>, bool)> = vec![];
            let active_ok = GOOD.contains(&d.active.as_deref().unwrap());
            for tries in [None, Some(2)] {
                if let Ok((s, _)) = set_active(&d, "c", tries, active_ok) {
                    commands.push((
                        format!("set-active {tries:?}"),
                        s,
                        Some("c".into()),
                        tries.is_some(),
                    ));
                }
            }
            if let Ok((s, _)) = bless(&d, None) {
                commands.push(("bless".into(), s, d.active.clone(), false));
            }
            if let Ok((s, _)) = rollback(&d) {
                commands.push(("rollback".into(), s, d.previous.clone(), false));
            }
            let p = boot(&d);
            commands.push(("boot".into(), p.steps.clone(), booted(&d), false));
            for (cmd, steps, new, counted) in commands {
                for k in 0..=steps.len() {
                    let cut = steps[..k].iter().fold(d.clone(), |d, s| apply(&d, s));
                    let got = booted(&cut);
                    assert!(
                        got.is_some()
                            && (got == before || got == new || got.as_deref() == Some("a")),
                        "{name}, {cmd}, cut after {k} of {steps:?}: boots {got:?} (before {before:?}, new {new:?})"
                    );
                    // An untested image never boots without its countdown.
                    if counted && got.as_deref() == Some("c") {
                        let plan = boot(&cut);
                        assert!(
                            matches!(
                                plan.record,
                                Some(Record {
                                    outcome: "trial",
                                    ..
                                })
                            ),
                            "{name}, {cmd}, cut after {k}: c boots uncounted"
                        );
                    }
                }
            }
        }
    }
}
