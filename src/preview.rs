//! What a boot would do with a BootExt tree, computed without booting: the image it
//! would choose (with the boot's own checks), the tree it decodes names against (the
//! image itself, read by [`crate::imagetree`]), every mount and every skip. `plan`
//! prints it, `check` judges it. The decisions are the boot's own functions
//! (`assemble::configure`, `assemble::plan_overmounts`, `select`, `layers`, `units`),
//! so the preview and the boot cannot disagree.

use crate::assemble;
use crate::imagetree::ImageTree;
use crate::plan::{self, PlannedMount, Skipped};
use crate::select;
use crate::state;
use crate::sys::confined::Confined;
use serde::Serialize;

/// The plan as `plan --json` prints it.
#[derive(Serialize)]
pub struct Preview {
    pub system: Option<SystemOutput>,
    /// Where a trial update stands (`crate::trial::describe`).
    pub trial: Option<String>,
    pub attempts: Vec<state::Attempt>,
    /// The writable layer: `tmpfs` or `persist`.
    pub upper: String,
    /// `Overlay/` layers, bottom first (the last is on top).
    pub layers: Vec<crate::layers::Layer>,
    pub mounts: Vec<PlannedMount>,
    pub apps: Vec<crate::apps::App>,
    pub units: crate::units::UnitsPlan,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

/// A staging path as long as the boot's (`/run/overboot/.staging-<pid>`), so the
/// layer limits are judged as at boot.
const PLAN_STAGING: &str = "/run/overboot/.staging-4194304";

#[derive(Serialize)]
pub struct SystemOutput {
    pub choice: String,
    pub link: Option<String>,
    pub image: String,
    pub compression: String,
    /// How the image's tree was read: `kernel` (a read-only loop mount, as root) or
    /// `backhand` (user space).
    pub read_by: &'static str,
    pub fallback: Option<state::Fallback>,
}

/// Read the image a candidate names, as the boot would mount it. An image that
/// cannot be read is a failed attempt, as a mount failure is at boot: names are
/// never decoded against a guess.
fn read_image(img: &select::CheckedImage) -> Result<ImageTree, String> {
    ImageTree::read(&img.file, &img.image)
        .map_err(|e| format!("{}: cannot be read: {e}", img.image))
}

/// Everything `plan` and `check` compute: image choice and the plan, no mounts.
pub fn compute(be: &Confined, cmdline_text: &str) -> Preview {
    let mut warnings = Vec::new();
    let (config, manifest) = assemble::configure(be, cmdline_text, &mut warnings);
    let mut attempts: Vec<state::Attempt> = Vec::new();
    let mut chosen = None;
    for candidate in select::candidates(&config.system) {
        match select::check(be, &candidate).and_then(|img| Ok((read_image(&img)?, img))) {
            Ok((tree, img)) => {
                let fallback = attempts.first().map(|a| state::Fallback {
                    from: a.choice.clone(),
                    reason: a.reason.clone().unwrap_or_default(),
                });
                attempts.push(state::Attempt {
                    choice: candidate.choice.into(),
                    link: img.link.clone(),
                    image: Some(img.image.clone()),
                    ok: true,
                    reason: None,
                });
                let system = SystemOutput {
                    choice: candidate.choice.into(),
                    link: img.link,
                    image: img.image,
                    compression: img.superblock.compression.into(),
                    read_by: tree.read_by,
                    fallback,
                };
                chosen = Some((system, tree));
                break;
            }
            Err(reason) => attempts.push(state::Attempt {
                choice: candidate.choice.into(),
                link: Some(candidate.path.clone()),
                image: None,
                ok: false,
                reason: Some(reason),
            }),
        }
    }
    let trial = crate::trial::describe(&crate::trial::status(&crate::trial_boot::read_disk(be)))
        .map(|(line, _)| line);
    let upper = if config.persist { "persist" } else { "tmpfs" }.into();
    let Some((system, tree)) = chosen else {
        // No image: the boot stops here, so there is nothing more to plan.
        return Preview {
            system: None,
            trial,
            attempts,
            upper,
            layers: vec![],
            mounts: vec![],
            apps: vec![],
            units: Default::default(),
            skipped: vec![],
            warnings,
        };
    };
    // Safe mode (overboot.dirs=0): no Overlay/, no Units/, as the boot does.
    let (found, mut layer_skips) = if config.dirs {
        crate::layers::scan(be)
    } else {
        Default::default()
    };
    let (layers, more) =
        crate::layers::order_and_fit(found, PLAN_STAGING, &format!("{PLAN_STAGING}/image"));
    layer_skips.extend(more);
    let (mounts, mut skipped) =
        assemble::plan_overmounts(be, &manifest, &config, &tree, &mut warnings);
    skipped.splice(0..0, layer_skips);
    let (apps, app_skips) = crate::apps::scan(be);
    skipped.extend(app_skips);
    let mut units = if config.dirs {
        crate::units::scan(be, &tree)
    } else {
        Default::default()
    };
    skipped.append(&mut units.skipped);
    Preview {
        system: Some(system),
        trial,
        attempts,
        upper,
        layers,
        mounts,
        apps,
        units,
        skipped,
        warnings,
    }
}

pub fn describe(m: &PlannedMount) -> String {
    let how = match m.kind {
        plan::MountKind::Bind if m.read_only => "bind, read-only",
        plan::MountKind::Bind => "bind, read-write",
        plan::MountKind::File => "file bind",
        plan::MountKind::Image => "image, read-only",
        plan::MountKind::Tmpfs => "tmpfs",
    };
    format!(
        "{} -> {} ({how})",
        m.source.as_deref().unwrap_or(&m.origin),
        m.target
    )
}

pub fn describe_layer(l: &crate::layers::Layer) -> String {
    let kind = match l.kind {
        crate::layers::LayerKind::Dir => "directory",
        crate::layers::LayerKind::Image => "image",
    };
    format!("layer {} ({kind}, read-only)", l.source)
}

pub fn describe_app(a: &crate::apps::App) -> String {
    format!("{} -> {} (app image, read-only)", a.source, a.target)
}

pub fn describe_units(u: &crate::units::UnitsPlan) -> Vec<String> {
    let mut lines: Vec<String> = u
        .files
        .iter()
        .map(|f| {
            format!(
                "unit {}/{} -> /run/systemd/system/{} ({} bytes)",
                crate::units::UNITS_DIR,
                f.path,
                f.path,
                f.bytes
            )
        })
        .collect();
    lines.extend(
        u.links
            .iter()
            .map(|l| format!("unit link /run/systemd/system/{} -> {}", l.path, l.target)),
    );
    lines
}

/// `plan`'s text: the boot's steps in order, then the skips.
pub fn render_plan(out: &Preview, be: &Confined) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for w in &out.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    if let Some(t) = &out.trial {
        let _ = writeln!(o, "trial: {t}");
    }
    let Some(s) = &out.system else {
        let _ = writeln!(o, "1. system image: NONE usable, the boot would fail");
        return o;
    };
    let via = s
        .link
        .as_deref()
        .map(|l| format!(" via {l}"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "1. system image {}{via} ({}), loop read-only -> {}",
        s.image,
        s.compression,
        assemble::IMAGE_AT
    );
    if let Some(f) = &s.fallback {
        let _ = writeln!(o, "   fallback from {}: {}", f.from, f.reason);
    }
    let upper = if out.upper == "persist" {
        "BootExt Persist/upper, tmpfs if BootExt cannot hold it"
    } else {
        "tmpfs"
    };
    let lower = if out.layers.is_empty() {
        "image".to_string()
    } else {
        format!("image + {} Overlay/ layer(s)", out.layers.len())
    };
    let _ = writeln!(
        o,
        "2. {} -> {} ; overlay (lower: {lower}, upper: {upper}) -> /",
        if out.upper == "persist" {
            "Persist"
        } else {
            "tmpfs"
        },
        assemble::OVERLAY_AT
    );
    for l in &out.layers {
        let _ = writeln!(o, "   {}", describe_layer(l));
    }
    let _ = writeln!(
        o,
        "3. BootExt {} -> {}",
        be.path.display(),
        assemble::BOOTEXT_AT
    );
    for (i, m) in out.mounts.iter().enumerate() {
        let _ = writeln!(o, "{}. {}", i + 4, describe(m));
    }
    for (i, app) in out.apps.iter().enumerate() {
        let _ = writeln!(o, "{}. {}", i + 4 + out.mounts.len(), describe_app(app));
    }
    for line in describe_units(&out.units) {
        let _ = writeln!(o, "{line}");
    }
    for s in &out.skipped {
        let _ = writeln!(o, "skip: {}: {}", s.entry, s.reason);
    }
    o
}

/// `check`'s verdict: what it found, and the problems.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut o = String::new();
        for l in &self.lines {
            o.push_str(l);
            o.push('\n');
        }
        for w in &self.warnings {
            o.push_str(&format!("warning: {w}\n"));
        }
        for e in &self.errors {
            o.push_str(&format!("error: {e}\n"));
        }
        o.push_str(&format!(
            "{} error(s), {} warning(s)\n",
            self.errors.len(),
            self.warnings.len()
        ));
        o
    }
}

/// Judge a BootExt tree: every image the boot may use, and the plan of a boot with
/// no command-line options. Whatever the boot would refuse is an error.
pub fn check(be: &Confined) -> Report {
    let mut r = Report::default();
    let manifest = crate::bootext::read_manifest(be);
    if manifest.syntax_error {
        r.errors.extend(manifest.warnings.iter().cloned());
    }
    // Both links, whatever the command line would choose.
    for (link, required) in [(select::ACTIVE_LINK, true), (select::RECOVERY_LINK, false)] {
        let cand = select::Candidate {
            choice: "check",
            path: link.into(),
        };
        match select::check(be, &cand).and_then(|img| Ok((read_image(&img)?, img))) {
            Ok((tree, img)) => r.lines.push(format!(
                "{link} -> {} ({}, {} bytes, read by {})",
                img.image, img.superblock.compression, img.superblock.bytes_used, tree.read_by
            )),
            Err(e) if !required && be.lstat_type(link).is_err() => r.warnings.push(format!(
                "{e}: there is no way back if the active image fails"
            )),
            Err(e) => r.errors.push(e),
        }
    }
    // The image a trial returns to: needed while a trial runs.
    let disk = crate::trial_boot::read_disk(be);
    let status = crate::trial::status(&disk);
    if disk.previous.is_some() {
        let cand = select::Candidate {
            choice: "check",
            path: select::PREVIOUS_LINK.into(),
        };
        match select::check(be, &cand) {
            Ok(img) => r
                .lines
                .push(format!("{} -> {}", select::PREVIOUS_LINK, img.image)),
            Err(e) if matches!(status, crate::trial::Status::Pending(_)) => r.errors.push(format!(
                "{e}: the trial running has nothing to roll back to"
            )),
            Err(e) => r.warnings.push(e),
        }
    }
    match crate::trial::describe(&status) {
        Some((line, true)) => r.warnings.push(line),
        Some((line, false)) => r.lines.push(line),
        None => {}
    }
    for name in be.list("System").unwrap_or_default() {
        let rel = format!("System/{name}");
        if crate::names::IMAGE_EXTENSIONS
            .iter()
            .any(|e| name.ends_with(e))
            && let Ok(file) = be.open_read(&rel)
            && let Ok(st) = rustix::fs::fstat(&file)
            && let Err(e) = select::read_superblock(&file, st.st_size as u64)
        {
            r.errors.push(format!("{rel}: {e}"));
        }
    }
    let out = compute(be, "");
    for l in &out.layers {
        r.lines.push(describe_layer(l));
    }
    for w in out
        .warnings
        .iter()
        .filter(|w| !manifest.warnings.contains(w) || !manifest.syntax_error)
    {
        r.warnings.push(w.clone());
    }
    for m in &out.mounts {
        r.lines.push(describe(m));
        for other in &m.also_exist {
            r.warnings.push(format!(
                "{}: also readable as {other}, which exists too; escape '_' as '__' to choose",
                m.origin
            ));
        }
    }
    for app in &out.apps {
        r.lines.push(describe_app(app));
    }
    r.lines.extend(describe_units(&out.units));
    for s in &out.skipped {
        r.errors.push(format!("{}: {}", s.entry, s.reason));
    }
    r
}
