//! Steps 4 and 6–9 of a boot (DESIGN section 2): select the image, stack the overlay,
//! make the overmounts, record the state. Used by PID 1 (into `/sysroot`), by
//! `overboot assemble` (dracut, mkinitcpio, tests).
//!
//! On a fatal error everything already done is undone: the new root and the staging
//! area are detached and the loop devices, attached with autoclear, go with them.

use crate::bootext;
use crate::cmdline::{self, BootConfig};
use crate::landing::Landing;
use crate::layers;
use crate::names::{TargetPath, escape};
pub use crate::pid1::Fatal;
use crate::plan::{self, MountKind, PlannedMount, Skipped};
use crate::select;
use crate::state::{self, Attempt, Booted, Clock, MountRecord, State};
use crate::sys::confined::Confined;
use crate::sys::resolve::{self, RootTree, Want};
use crate::sys::{errno_text, loopdev, mounts};
use crate::units;
use crate::verity::boot::{self as verity, VerityRecord};
use rustix::fd::OwnedFd;
use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountAttrFlags, MountFlags};
use std::path::{Path, PathBuf};

/// Where overboot makes BootExt, the image and the overlay visible in the new root.
pub const BOOTEXT_AT: &str = "/mnt/cdrom";
pub const IMAGE_AT: &str = "/mnt/livecd";
pub const OVERLAY_AT: &str = "/mnt/overlay";

/// What to assemble.
pub struct Request {
    pub bootext: PathBuf,
    pub root: PathBuf,
    pub cmdline: String,
    pub state_path: PathBuf,
    /// Where `Units/` go (`<run_dir>/systemd/system/`): `/run` at boot; tests give a
    /// scratch directory.
    pub run_dir: PathBuf,
    /// `assemble` or `boot`.
    pub mode: String,
    pub bootext_info: state::BootExtInfo,
    /// Trusted keys and meminfo locations (verification, toram).
    pub verify: crate::verify::Paths,
    /// A netboot's image (`overboot.fetch=`), tried before BootExt's.
    pub network: Option<crate::net::NetBoot>,
}

/// The result of a successful assembly.
pub struct Assembled {
    pub config: BootConfig,
    pub state: State,
}

/// Detaches what was mounted unless disarmed; removes the staging directory.
struct Undo {
    root: Option<PathBuf>,
    staging: Option<PathBuf>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(root) = self.root.take() {
            let _ = mounts::detach(&root);
        }
        if let Some(staging) = self.staging.take() {
            let _ = mounts::detach(&staging);
            let _ = std::fs::remove_dir(&staging);
        }
    }
}

/// The overmounts of a boot: manifest `[[mount]]`s and, unless `overboot.dirs=0`,
/// the `DIRS/` entries, planned against `tree`. Shared by `assemble` (against the new
/// root) and `plan`/`check` (against the image read offline), so both agree.
pub fn plan_overmounts(
    be: &Confined,
    manifest: &crate::manifest::Manifest,
    config: &BootConfig,
    tree: &dyn crate::names::Tree,
    warnings: &mut Vec<String>,
) -> (Vec<PlannedMount>, Vec<Skipped>) {
    let mut entries = bootext::manifest_entries(be, manifest);
    if config.dirs {
        let dirs = bootext::dirs_entries(be);
        entries.candidates.extend(dirs.candidates);
        entries.skipped.extend(dirs.skipped);
    } else {
        warnings
            .push("overboot.dirs=0 (safe mode): DIRS/, Overlay/ and Units/ are not applied".into());
    }
    let (mounts, skipped) = plan::build(entries.candidates, tree, &reserved());
    entries.skipped.extend(skipped);
    (mounts, entries.skipped)
}

fn reserved() -> Vec<TargetPath> {
    [
        BOOTEXT_AT,
        IMAGE_AT,
        OVERLAY_AT,
        layers::LAYERS_AT,
        crate::apps::APPS_AT,
    ]
    .iter()
    .filter_map(|p| TargetPath::parse_absolute(p).ok())
    .collect()
}

/// Settings for this boot: command line over manifest over defaults. Shared with
/// `plan` so both read the same configuration.
pub fn configure(
    be: &Confined,
    cmdline_text: &str,
    warnings: &mut Vec<String>,
) -> (BootConfig, crate::manifest::Manifest) {
    let parsed = cmdline::parse(cmdline_text);
    warnings.extend(parsed.warnings);
    let manifest = bootext::read_manifest(be);
    warnings.extend(manifest.warnings.iter().cloned());
    (
        parsed.settings.over(manifest.settings.clone()).resolve(),
        manifest,
    )
}

pub fn assemble(req: &Request) -> Result<Assembled, Fatal> {
    let mut clock = Clock::default();
    let mut state = State {
        version: 1,
        mode: req.mode.clone(),
        bootext: req.bootext_info.clone(),
        root: req.root.display().to_string(),
        network: req.network.as_ref().map(|n| n.record.clone()),
        ..Default::default()
    };
    let be = Confined::open(&req.bootext).map_err(|e| Fatal {
        what: format!("BootExt at {}", req.bootext.display()),
        found: e,
        fix: "check that BootExt is mounted there (or give the right --bootext)".into(),
    })?;
    let (config, manifest) = configure(&be, &req.cmdline, &mut state.warnings);
    state.requested = config.system.to_string();
    for w in &state.warnings {
        log::warn!("{w}");
    }
    let root_fd = mounts::open_dir(&req.root).map_err(|e| Fatal {
        what: format!("the new root directory {}", req.root.display()),
        found: errno_text(e),
        fix: "create it (an empty directory) before assembling".into(),
    })?;
    clock.lap(&mut state, "configure");

    let staging = staging_dir(&req.state_path);
    refuse_staging_in_root(&staging, &req.root)?;
    let mut undo = Undo {
        root: None,
        staging: None,
    };
    setup_staging(&staging).map_err(|e| Fatal {
        what: format!("a staging area at {}", staging.display()),
        found: e,
        fix: "overboot needs a writable /run (tmpfs) and a kernel with tmpfs".into(),
    })?;
    undo.staging = Some(staging.clone());

    // Step 4 and 6: the system image, with fallback; a trial update counts down
    // (or rolls back) on BootExt first (crate::trial).
    let (candidates, trial_reason) = crate::trial_boot::at_boot(&be, &config, &mut state);
    clock.lap(&mut state, "trial");
    let mut trust = crate::verify::TrustStore::load(&req.verify.trust_dir);
    for p in &trust.problems {
        log::error!("trusted keys: {p}");
    }
    if let Some(min) = &manifest.min_version
        && !trust.enforcing()
    {
        let w = format!(
            "overboot.toml: [verify] min-version = '{min}' has no effect: no trusted key in the initramfs, so no version is signed"
        );
        log::warn!("{w}");
        state.warnings.push(w);
    }
    trust.min_version = manifest.min_version.clone();
    let corrupted = crate::verity::corrupted::at_boot(&be, &mut state.warnings);
    let seals = verity::Policy {
        mode: config.verity,
        on_error: config.verity_error,
        trust: &trust,
        corrupted: corrupted.as_deref(),
    };
    let image_dir = seen_at(&staging, IMAGE_AT);
    let image = mount_system_image(
        &be,
        &config,
        Images {
            network: req.network.as_ref(),
            candidates,
        },
        &image_dir,
        &mut state,
        (&req.verify, &seals),
    )?;
    crate::trial_boot::note_fallback(&mut state, trial_reason);
    clock.lap(&mut state, "system-image");

    // Step 7 (first half): Overlay/ layers, staged read-only.
    // Safe mode (overboot.dirs=0) boots the image as built: no Overlay/, no Units/.
    let layer_count = if config.dirs {
        mount_layers(&be, &staging, &mut state, &seals)
    } else {
        0
    };
    clock.lap(&mut state, "layers");

    // Step 6: the writable layer and the overlay root.
    let overlay_dir = seen_at(&staging, OVERLAY_AT);
    let upper = mount_overlay(
        &be,
        &staging,
        layer_count,
        &overlay_dir,
        &config,
        &root_fd,
        &mut state,
    )
    .map_err(|e| Fatal {
        what: "the overlay root (writable layer over the system image)".into(),
        found: e,
        fix: "check that the kernel has overlayfs and tmpfs, and that overboot.overlay= is valid"
            .into(),
    })?;
    undo.root = Some(req.root.clone());
    let root = mounts::open_dir(&req.root).map_err(|e| Fatal {
        what: format!("the assembled root {}", req.root.display()),
        found: errno_text(e),
        fix: "this should not happen; report it".into(),
    })?;
    let mut system = record("system", Some(image), IMAGE_AT, IMAGE_AT, "squashfs", true);
    system.verity = state.booted.as_ref().and_then(|b| b.verity.clone());
    state.mounts.push(system);
    state.mounts.push(record(
        "overlay",
        Some(upper.describe(&config)),
        "/",
        "/",
        "overlay",
        false,
    ));
    clock.lap(&mut state, "overlay");

    // Step 8, before DIRS so that no entry can hide or land in these.
    publish(&root, &staging, &be, &mut state);
    if upper == Upper::Persist
        && let Some(m) = state
            .mounts
            .iter_mut()
            .find(|m| m.origin == "overlay-upper")
    {
        m.source = Some(format!("{}/{}", be.path.display(), layers::PERSIST_DIR));
        m.kind = "bind".into();
    }
    clock.lap(&mut state, "mountpoints");

    // Step 7: overmounts.
    let (planned, skipped) = plan_overmounts(
        &be,
        &manifest,
        &config,
        &RootTree(&root),
        &mut state.warnings,
    );
    state.skipped.extend(skipped);
    let mut landing = Landing::new(reserved());
    for m in planned {
        match overmount(&be, &root, &staging, &m, (&seals, &landing)) {
            Ok((resolved, sealed)) => {
                landing.take(resolved.clone(), &m.origin);
                let to = if resolved != m.target {
                    format!("{} (resolved to {resolved})", m.target)
                } else {
                    m.target.to_string()
                };
                log::info!("{} -> {}", escape(&m.origin), escape(&to));
                state.mounts.push(MountRecord {
                    origin: m.origin.clone(),
                    source: m.source.clone(),
                    target: m.target.to_string(),
                    resolved: resolved.to_string(),
                    kind: kind_name(m.kind).into(),
                    read_only: m.read_only,
                    verity: sealed,
                });
            }
            Err(reason) => state.skipped.push(Skipped {
                entry: m.origin.clone(),
                reason,
            }),
        }
    }
    clock.lap(&mut state, "overmounts");

    // Apps/ and Units/, after the overmounts so that no entry hides them.
    mount_apps(&be, &root, &mut state, &seals);
    clock.lap(&mut state, "apps");
    let units = if config.dirs {
        units::scan(&be, &RootTree(&root))
    } else {
        units::UnitsPlan::default()
    };
    state.skipped.extend(units.skipped.iter().cloned());
    let (installed, failed) = units::install(&units, &req.run_dir);
    for u in &installed {
        log::info!("unit {} ({})", u.path, u.source);
    }
    state.units = installed;
    state.skipped.extend(failed);
    clock.lap(&mut state, "units");
    for s in &state.skipped {
        log::warn!("skipped {}: {}", escape(&s.entry), escape(&s.reason));
    }

    // Step 9.
    undo.root = None;
    drop(undo);
    clock.lap(&mut state, "state");
    if let Err(e) = state::write(&state, &req.state_path) {
        log::warn!("state file not written: {e}");
    }
    Ok(Assembled { config, state })
}

fn record(
    origin: &str,
    source: Option<String>,
    target: &str,
    resolved: &str,
    kind: &str,
    read_only: bool,
) -> MountRecord {
    MountRecord {
        origin: origin.into(),
        source,
        target: target.into(),
        resolved: resolved.into(),
        kind: kind.into(),
        read_only,
        verity: None,
    }
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::File => "file",
        MountKind::Image => "image",
        MountKind::Tmpfs => "tmpfs",
    }
}

/// The staging area lives next to the state file (on `/run`'s tmpfs at boot). The
/// image, the writable layer and the `Overlay/` layers are staged in it at the
/// places they take in the new root (`<staging>/mnt/livecd`, ...): the overlay is
/// made seeing the staging area as `/`, so its options name those places.
fn staging_dir(state_path: &Path) -> PathBuf {
    let dir = state_path.parent().unwrap_or(Path::new("/run/overboot"));
    dir.join(format!(".staging-{}", std::process::id()))
}

/// The staging area (beside the state file) may not lie in the new root: the
/// overlay would cover it, and `/mnt/livecd`, `/mnt/overlay` could not be moved
/// out of it (issue 10 item 9: on main, exit 0 with both missing).
fn refuse_staging_in_root(staging: &Path, root: &Path) -> Result<(), Fatal> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let state_dir = real(staging.parent().unwrap_or(staging));
    let root = real(root);
    if state_dir.starts_with(&root) {
        return Err(Fatal {
            what: "a state file outside the new root".into(),
            found: format!(
                "{} lies in the new root {}",
                state_dir.display(),
                root.display()
            ),
            fix: "give --state a path outside --root (default /run/overboot/state.json)".into(),
        });
    }
    Ok(())
}

/// Where a bind of BootExt gets its own flags before it becomes visible (a directory
/// and a file in staging, for `DIR_` and `FILE_` binds and `/mnt/cdrom`).
const BIND_DIR: &str = "bind";
const BIND_FILE: &str = "bind-file";

/// A private tmpfs of our own: mounts under it can be moved (no shared parent) and
/// nothing in it propagates to the host.
fn setup_staging(staging: &Path) -> Result<(), String> {
    std::fs::create_dir_all(staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let mnt = mounts::new_mount(
        "tmpfs",
        "overboot-staging",
        &[("mode", Some("0700")), ("size", Some("1M"))],
        MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    let target = mounts::open_dir(staging).map_err(errno_text)?;
    mounts::attach(&mnt, &target)
        .map_err(|e| format!("cannot mount on {}: {}", staging.display(), errno_text(e)))?;
    mounts::make_private(staging).map_err(|e| {
        format!(
            "cannot make {} private: {}",
            staging.display(),
            errno_text(e)
        )
    })?;
    for at in [IMAGE_AT, OVERLAY_AT, layers::LAYERS_AT] {
        let dir = seen_at(staging, at);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::create_dir(staging.join(BIND_DIR))
        .map_err(|e| format!("cannot create {BIND_DIR}: {e}"))?;
    std::fs::write(staging.join(BIND_FILE), "")
        .map_err(|e| format!("cannot create {BIND_FILE}: {e}"))?;
    Ok(())
}

/// A mounted image, detached: the mount, the device it reads, and the seal when it
/// is sealed (its dm device goes when the mount goes).
pub(crate) struct ImageMount {
    pub mnt: OwnedFd,
    pub dev: String,
    pub verity: Option<VerityRecord>,
}

/// Mount the image `name` on BootExt (open as `file`) read-only: through dm-verity
/// when sealed (crate::verity::boot), else straight from a loop device.
pub(crate) fn mount_image(
    be: &Confined,
    file: &OwnedFd,
    name: &str,
    seals: &verity::Policy<'_>,
) -> Result<ImageMount, String> {
    let size = rustix::fs::fstat(file)
        .map_err(|e| format!("{name}: {}", errno_text(e)))?
        .st_size as u64;
    let sealed = verity::open(be, name, size, seals)?;
    mount_checked(file, name, sealed.as_ref(), seals.on_error)
}

/// Mount `file` (`name` on BootExt) through its checked seal, if any.
fn mount_checked(
    file: &OwnedFd,
    name: &str,
    sealed: Option<&verity::Sealed>,
    on_error: crate::verity::format::OnError,
) -> Result<ImageMount, String> {
    if let Some(sealed) = sealed {
        let m = verity::mount(file, name, sealed, on_error)?;
        log::info!(
            "{name}: dm-verity {} ({}), root hash {}{}",
            m.record.device,
            m.record.name,
            m.record.root_hash,
            m.record
                .signed_by
                .as_ref()
                .map(|k| format!(" signed by key {k}"))
                .unwrap_or_default()
        );
        return Ok(ImageMount {
            mnt: m.mnt,
            dev: m.record.device.clone(),
            verity: Some(m.record),
        });
    }
    let (mnt, dev) = mount_loop(file, name)?;
    Ok(ImageMount {
        mnt,
        dev,
        verity: None,
    })
}

/// Attach and mount an image read-only; returns the detached mount.
pub(crate) fn mount_loop(file: &OwnedFd, name: &str) -> Result<(OwnedFd, String), String> {
    let dev = loopdev::attach(file, name)?;
    let mnt = mounts::squashfs_ro(&dev.path)?;
    // The mount holds the device now; dropping `dev` closes our handle only.
    Ok((mnt, dev.path.clone()))
}

/// The images a boot may use, in order: the network's, then BootExt's candidates.
struct Images<'a> {
    network: Option<&'a crate::net::NetBoot>,
    candidates: Vec<select::Candidate>,
}

/// The `choice` of a network image in `state.json` (`booted`, `attempts`).
const NETWORK_CHOICE: &str = "network";

/// Mount the fetched image, already verified in RAM, through dm-verity when the
/// server had its seal; `Err` is why not. Returns the compression and the mount.
fn mount_network_image(
    net: &crate::net::NetBoot,
    target: &OwnedFd,
    on_error: crate::verity::format::OnError,
) -> Result<(String, ImageMount), String> {
    let img = net.image.as_ref().map_err(Clone::clone)?;
    let superblock = select::read_superblock(&img.file, img.size)
        .map_err(|e| format!("{}: {e}", net.record.url))?;
    let m = mount_checked(&img.file, &img.name, img.sealed.as_ref(), on_error)
        .map_err(|e| format!("{}: {e}", img.name))?;
    mounts::attach(&m.mnt, target)
        .map_err(|e| format!("{}: cannot attach: {}", img.name, errno_text(e)))?;
    Ok((superblock.compression.to_string(), m))
}

fn mount_system_image(
    be: &Confined,
    config: &BootConfig,
    images: Images<'_>,
    at: &Path,
    state: &mut State,
    (paths, seals): (&crate::verify::Paths, &verity::Policy<'_>),
) -> Result<String, Fatal> {
    let target = mounts::open_dir(at).map_err(|e| Fatal {
        what: "the staging directory for the image".into(),
        found: errno_text(e),
        fix: "report this".into(),
    })?;
    if let Some(net) = images.network {
        match mount_network_image(net, &target, seals.on_error) {
            Ok((compression, m)) => {
                return Ok(booted_from_network(net, compression, m, state));
            }
            Err(reason) => {
                log::warn!("network image unusable, trying BootExt: {reason}");
                state.attempts.push(Attempt {
                    choice: NETWORK_CHOICE.into(),
                    link: None,
                    image: Some(net.record.url.clone()),
                    ok: false,
                    reason: Some(reason),
                });
            }
        }
    }
    // Steps 4 (verification) and 5 (toram): see sys::toram::prepare.
    let opts = crate::sys::toram::Options {
        mode: crate::verify::Mode::from_setting(config.verify),
        trust: seals.trust,
        toram: config.toram,
        meminfo: &paths.meminfo,
        boot: state.mode == "boot",
    };
    let selection = select::first_usable(be, images.candidates, |img| {
        let size = rustix::fs::fstat(&img.file)
            .map_err(|e| format!("{}: {}", img.image, errno_text(e)))?
            .st_size as u64;
        let mut sealed = verity::open(be, &img.image, size, seals)?;
        let prepared =
            crate::sys::toram::prepare(be, &img.image, &img.file, &opts, sealed.is_some())?;
        if let (Some(s), Some(_)) = (sealed.as_mut(), prepared.ram.as_ref()) {
            crate::sys::toram::tree_to_ram(s, opts.boot);
        }
        let backing = prepared.ram.as_ref().unwrap_or(&img.file);
        let m = mount_checked(backing, &img.image, sealed.as_ref(), seals.on_error)
            .map_err(|e| format!("{}: {e}", img.image))?;
        mounts::attach(&m.mnt, &target)
            .map_err(|e| format!("{}: cannot attach: {}", img.image, errno_text(e)))?;
        Ok((m.dev, m.verity, prepared))
    });
    for a in selection.attempts.iter().filter(|a| !a.ok) {
        log::warn!(
            "{} image unusable: {}",
            a.choice,
            a.reason.as_deref().unwrap_or("?")
        );
    }
    state.attempts.extend(selection.attempts);
    if let Some((candidate, img, (dev, sealed, prepared))) = selection.chosen {
        let summary = prepared.verified.summary();
        if !summary.is_empty() {
            log::info!("{}: {summary}", img.image);
        }
        if let Some(reason) = prepared.toram.as_ref().and_then(|t| t.reason.as_ref()) {
            state
                .warnings
                .push(format!("toram refused, booted from BootExt: {reason}"));
        }
        log::info!(
            "system image {} ({}, {}) from {}",
            img.image,
            img.superblock.compression,
            dev,
            candidate.path
        );
        state.fallback = select::fallback(&state.attempts);
        if let Some(f) = &state.fallback {
            log::warn!(
                "fell back from {} to {}: {}",
                f.from,
                candidate.choice,
                f.reason
            );
        }
        state.booted = Some(Booted {
            choice: candidate.choice.into(),
            link: img.link.clone(),
            image: img.image.clone(),
            loop_device: Some(dev),
            verified: Some(prepared.verified),
            toram: prepared.toram,
            verity: sealed,
        });
        return Ok(img.image);
    }
    let found = state
        .attempts
        .iter()
        .map(|a| format!("{}: {}", a.choice, a.reason.as_deref().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join("\n");
    let network = images
        .network
        .map(|n| format!("from {} or ", n.record.url))
        .unwrap_or_default();
    let fix = "put a good squashfs image in System/ and point System/active-system or System/recovery-system at it with a relative link (ln -sfn NAME.squashfs System/active-system)";
    Err(Fatal {
        what: format!(
            "a bootable system image {network}on BootExt ({})",
            be.path.display()
        ),
        found,
        fix: match images.network {
            Some(_) => format!("fix what the network image's line says, or on a BootExt {fix}"),
            None => fix.into(),
        },
    })
}

/// The record of a boot from the network's image; returns its source (the URL).
fn booted_from_network(
    net: &crate::net::NetBoot,
    compression: String,
    m: ImageMount,
    state: &mut State,
) -> String {
    let dev = m.dev;
    let url = net.record.url.clone();
    log::info!("system image {url} ({compression}, {dev}) from the network, in RAM");
    if let Ok(img) = &net.image {
        let summary = img.verified.summary();
        if !summary.is_empty() {
            log::info!("{}: {summary}", img.name);
        }
        state.booted = Some(Booted {
            choice: NETWORK_CHOICE.into(),
            link: None,
            image: url.clone(),
            loop_device: Some(dev),
            verified: Some(img.verified.clone()),
            verity: m.verity,
            toram: Some(crate::state::Toram {
                done: true,
                size: img.size,
                allocated: img.allocated,
                ms: img.ms,
                reason: None,
            }),
        });
    }
    state.attempts.push(Attempt {
        choice: NETWORK_CHOICE.into(),
        link: None,
        image: Some(url.clone()),
        ok: true,
        reason: None,
    });
    url
}

/// What holds the writable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upper {
    Tmpfs,
    /// `BootExt/Persist/` (`overboot.overlay=persist`).
    Persist,
}

impl Upper {
    fn describe(self, config: &BootConfig) -> String {
        match self {
            Upper::Tmpfs => format!("tmpfs size={}", config.overlay.tmpfs_option()),
            Upper::Persist => format!("BootExt {}/upper", layers::PERSIST_DIR),
        }
    }
}

/// `Overlay/` layers, in name order, each mounted read-only at `/mnt/layers/<n>`
/// of the staging area; returns how many (`state.layers`, bottom first). Bad
/// layers are skipped.
fn mount_layers(
    be: &Confined,
    staging: &Path,
    state: &mut State,
    seals: &verity::Policy<'_>,
) -> usize {
    let (found, mut skipped) = layers::scan(be);
    let (fit, more) = layers::order_and_fit(found);
    skipped.extend(more);
    for layer in fit {
        let at = layers::layer_at(state.layers.len());
        let dir = seen_at(staging, &at);
        match mount_layer(be, &layer, &dir, seals) {
            Ok(verity) => {
                log::info!("layer {} ({:?}) at {at}", layer.source, layer.kind);
                state.layers.push(layers::Layer { verity, ..layer });
            }
            Err(reason) => {
                let _ = std::fs::remove_dir(&dir);
                skipped.push(Skipped {
                    entry: layer.source,
                    reason,
                });
            }
        }
    }
    state.skipped.extend(skipped);
    state.layers.len()
}

fn mount_layer(
    be: &Confined,
    layer: &layers::Layer,
    at: &Path,
    seals: &verity::Policy<'_>,
) -> Result<Option<VerityRecord>, String> {
    let src = &layer.source;
    let (mnt, sealed) = match layer.kind {
        layers::LayerKind::Dir => {
            let fd = be.open_path(src).map_err(|e| Confined::describe(src, e))?;
            let mnt = mounts::clone_tree(&fd)
                .map_err(|e| format!("cannot bind {src}: {}", errno_text(e)))?;
            (mnt, None)
        }
        layers::LayerKind::Image => {
            let file = be.open_file(src).map_err(|e| format!("{src} {e}"))?;
            let m = mount_image(be, &file, src, seals)?;
            (m.mnt, m.verity)
        }
    };
    std::fs::create_dir(at).map_err(|e| format!("cannot create {}: {e}", at.display()))?;
    let target = mounts::open_dir(at).map_err(errno_text)?;
    mounts::attach(&mnt, &target)
        .map_err(|e| format!("cannot mount on {}: {}", at.display(), errno_text(e)))?;
    Ok(sealed)
}

/// The writable layer at `overlay_dir` (with `upper/` and `work/` in it): BootExt
/// `Persist/` when asked for and possible, else tmpfs.
fn writable_layer(
    be: &Confined,
    overlay_dir: &Path,
    config: &BootConfig,
    try_persist: bool,
    warnings: &mut Vec<String>,
) -> Result<Upper, String> {
    let at = mounts::open_dir(overlay_dir).map_err(errno_text)?;
    if try_persist {
        match layers::prepare_persist(be).and_then(|mnt| {
            mounts::attach(&mnt, &at).map_err(|e| format!("cannot bind Persist: {}", errno_text(e)))
        }) {
            Ok(()) => return Ok(Upper::Persist),
            Err(e) => persist_fallback(warnings, &e),
        }
    }
    let size = config.overlay.tmpfs_option();
    let tmpfs = mounts::new_mount(
        "tmpfs",
        "overboot-overlay",
        &[("size", Some(&size)), ("mode", Some("0755"))],
        MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    mounts::attach(&tmpfs, &at)
        .map_err(|e| format!("cannot mount the tmpfs: {}", errno_text(e)))?;
    for d in [overlay_dir.join("upper"), overlay_dir.join("work")] {
        std::fs::create_dir(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    Ok(Upper::Tmpfs)
}

fn persist_fallback(warnings: &mut Vec<String>, why: &str) {
    let w = format!(
        "overboot.overlay=persist not possible: {why}; the writable layer is tmpfs instead and changes are LOST at shutdown"
    );
    log::error!("{w}");
    warnings.push(w);
}

/// The overlay root: the writable layer (persist when asked, else tmpfs) over the
/// layers and the image. When overlayfs refuses, it is tried again without the
/// `Overlay/` layers (then skipped), and then with tmpfs instead of `Persist/`, so
/// that neither can stop a boot that the image alone would make.
fn mount_overlay(
    be: &Confined,
    staging: &Path,
    layer_count: usize,
    overlay_dir: &Path,
    config: &BootConfig,
    root_fd: &OwnedFd,
    state: &mut State,
) -> Result<Upper, String> {
    let full = layers::lowerdir(layer_count, IMAGE_AT);
    let image = layers::lowerdir(0, IMAGE_AT);
    let mut lowers = vec![full.as_str()];
    if layer_count > 0 {
        lowers.push(image.as_str());
    }
    let mut upper = writable_layer(be, overlay_dir, config, config.persist, &mut state.warnings)?;
    let mut first_error = None;
    loop {
        for lower in &lowers {
            match overlay_root(lower, staging, root_fd) {
                Ok(()) => {
                    if *lower != full {
                        let why = format!(
                            "overlayfs refused the Overlay/ layers: {}",
                            first_error.clone().unwrap_or_default()
                        );
                        for l in std::mem::take(&mut state.layers) {
                            state.skipped.push(Skipped {
                                entry: l.source,
                                reason: why.clone(),
                            });
                        }
                    }
                    return Ok(upper);
                }
                Err(e) => {
                    log::warn!("overlay with lowerdir={lower}: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        if upper != Upper::Persist {
            return Err(first_error.unwrap_or_default());
        }
        let _ = mounts::detach(overlay_dir);
        persist_fallback(
            &mut state.warnings,
            &format!(
                "overlayfs refused Persist/upper: {}",
                first_error.take().unwrap_or_default()
            ),
        );
        upper = writable_layer(be, overlay_dir, config, false, &mut state.warnings)?;
    }
}

/// The overlay on the new root, its layers named as the booted system sees them
/// (`lowerdir=/mnt/layers/0:/mnt/livecd,upperdir=/mnt/overlay/upper,...`): the
/// kernel resolves them with the staging area as `/`, where each is staged at that
/// place, and `/proc/mounts` shows them as given. No byte of the staging path
/// (a ',' or ':' in `--state`) reaches overlayfs.
fn overlay_root(lower: &str, staging: &Path, root_fd: &OwnedFd) -> Result<(), String> {
    let options = format!("lowerdir={lower},upperdir={OVERLAY_AT}/upper,workdir={OVERLAY_AT}/work");
    mounts::mount_seen_from(staging, root_fd, "overlay", &options)
        .map_err(|e| format!("cannot mount the overlay on the new root: {e}"))
}

/// Where the mount that goes to `at` in the new root is staged.
fn seen_at(staging: &Path, at: &str) -> PathBuf {
    staging.join(at.trim_start_matches('/'))
}

/// `Apps/` images, read-only at `/mnt/apps/<name>`; bad ones skipped.
fn mount_apps(be: &Confined, root: &OwnedFd, state: &mut State, seals: &verity::Policy<'_>) {
    let (found, skipped) = crate::apps::scan(be);
    state.skipped.extend(skipped);
    for app in found {
        let result = (|| {
            let file = be
                .open_file(&app.source)
                .map_err(|e| format!("{} {e}", app.source))?;
            let m = mount_image(be, &file, &app.source, seals)?;
            let target = resolve::resolve_itself(root, &app.target)?;
            mounts::attach(&m.mnt, &target.fd)
                .map_err(|e| format!("cannot mount on {}: {}", target.real, errno_text(e)))?;
            Ok::<_, String>((target.real, m.verity))
        })();
        match result {
            Ok((real, sealed)) => {
                log::info!("app {} -> {real}", app.source);
                let mut r = record(
                    &app.source,
                    Some(app.source.clone()),
                    &app.target.to_string(),
                    &real.to_string(),
                    "image",
                    true,
                );
                r.verity = sealed;
                state.mounts.push(r);
            }
            Err(reason) => state.skipped.push(Skipped {
                entry: app.source,
                reason,
            }),
        }
    }
}

/// Step 8: BootExt, the image, the writable layer and the `Overlay/` layers at the
/// paths operators use, the ones the overlay's options name. Problems here are
/// warnings: the root itself is sound. `/mnt/cdrom` is `nodev,nosuid,noexec` however
/// BootExt was mounted (by PID 1 the same; by a dracut hook or by hand, perhaps
/// not): nothing on the stick runs or opens a device through it.
fn publish(root: &OwnedFd, staging: &Path, be: &Confined, state: &mut State) {
    let place =
        |at: &str, how: &dyn Fn(&OwnedFd) -> Result<(), String>| -> Result<String, String> {
            let target = TargetPath::parse_absolute(at)?;
            let r = resolve::resolve_itself(root, &target)?;
            how(&r.fd)?;
            Ok(r.real.to_string())
        };
    let results = [
        (
            "system",
            IMAGE_AT,
            "squashfs",
            place(IMAGE_AT, &|fd| {
                mounts::move_onto(&seen_at(staging, IMAGE_AT), fd).map_err(errno_text)
            }),
        ),
        (
            "overlay-upper",
            OVERLAY_AT,
            "tmpfs",
            place(OVERLAY_AT, &|fd| {
                mounts::move_onto(&seen_at(staging, OVERLAY_AT), fd).map_err(errno_text)
            }),
        ),
        (
            "bootext",
            BOOTEXT_AT,
            "bind",
            place(BOOTEXT_AT, &|fd| {
                let tree = mounts::clone_tree(&be.fd()).map_err(errno_text)?;
                let flags = MountFlags::NOEXEC | read_only_flag(&tree);
                attach_staged(&tree, &staging.join(BIND_DIR), fd, flags)
            }),
        ),
    ];
    for (origin, at, kind, result) in results {
        match result {
            Ok(real) if origin == "system" => {
                if let Some(m) = state.mounts.iter_mut().find(|m| m.origin == "system") {
                    m.resolved = real;
                }
            }
            Ok(real) => {
                let source = if origin == "bootext" {
                    be.path.display().to_string()
                } else {
                    "tmpfs".into()
                };
                state
                    .mounts
                    .push(record(origin, Some(source), at, &real, kind, false));
            }
            Err(e) => state.warnings.push(format!("{at} not made: {e}")),
        }
    }
    // The layers the overlay holds (none when overlayfs refused them), shown
    // read-only: a write into a lower layer under a live overlay is undefined. The
    // overlay keeps its own copies of these mounts, which this does not change.
    for n in 0..state.layers.len() {
        let at = layers::layer_at(n);
        let staged = seen_at(staging, &at);
        if let Err(e) = place(&at, &|fd| {
            mounts::remount_bind(&staged, MountFlags::RDONLY)
                .and_then(|()| mounts::move_onto(&staged, fd))
                .map_err(errno_text)
        }) {
            state.warnings.push(format!("{at} not made: {e}"));
        }
    }
}

/// `RDONLY` when the mount `mnt` is read-only: a bind of it stays so.
fn read_only_flag(mnt: &OwnedFd) -> MountFlags {
    match rustix::fs::fstatvfs(mnt) {
        Ok(v) if v.f_flag.contains(StatVfsMountFlags::RDONLY) => MountFlags::RDONLY,
        _ => MountFlags::empty(),
    }
}

/// A bind given its flags before anyone can see it: attached on `place` (in the
/// private staging tmpfs: a short path, whatever the target's length), remounted
/// there `nodev,nosuid` plus `extra` (BootExt's `noexec` is not inherited unless
/// asked), then moved onto `target`. On failure nothing stays mounted.
fn attach_staged(
    mnt: &OwnedFd,
    place: &Path,
    target: &OwnedFd,
    extra: MountFlags,
) -> Result<(), String> {
    let at = rustix::fs::open(
        place,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno_text)?;
    mounts::attach(mnt, &at).map_err(errno_text)?;
    let moved = mounts::remount_bind(place, extra).and_then(|()| mounts::move_onto(place, target));
    if let Err(e) = moved {
        // The staging place is a short path: this detach cannot fail for its length.
        if let Err(d) = mounts::detach(place) {
            return Err(format!(
                "{}; and cannot undo it: {}",
                errno_text(e),
                errno_text(d)
            ));
        }
        return Err(errno_text(e));
    }
    Ok(())
}

/// Make one overmount; returns where it landed.
fn overmount(
    be: &Confined,
    root: &OwnedFd,
    staging: &Path,
    m: &PlannedMount,
    (seals, landing): (&verity::Policy<'_>, &Landing),
) -> Result<(TargetPath, Option<VerityRecord>), String> {
    let want = if m.kind == MountKind::File {
        Want::File
    } else {
        Want::Dir
    };
    let source = m.source.as_deref().unwrap_or("");
    // Prepare the mount before touching the root, so a bad source creates nothing.
    let mut sealed = None;
    let mnt = match m.kind {
        MountKind::Bind | MountKind::File => {
            let src = be
                .open_path(source)
                .map_err(|e| Confined::describe(source, e))?;
            mounts::clone_tree(&src)
                .map_err(|e| format!("cannot bind {source}: {}", errno_text(e)))?
        }
        MountKind::Image => {
            let file = be.open_file(source).map_err(|e| format!("{source} {e}"))?;
            let st =
                rustix::fs::fstat(&file).map_err(|e| format!("{source}: {}", errno_text(e)))?;
            select::read_superblock(&file, st.st_size as u64)
                .map_err(|e| format!("bad image: {e}"))?;
            let image = mount_image(be, &file, source, seals)?;
            sealed = image.verity;
            image.mnt
        }
        MountKind::Tmpfs => {
            let size = m.size.as_deref().unwrap_or("10%");
            mounts::new_mount(
                "tmpfs",
                "overboot-tmpfs",
                &[("size", Some(size)), ("mode", Some("0755"))],
                MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID,
            )?
        }
    };
    let target = resolve::resolve_target(root, &m.target, want)?;
    landing.check(&m.target, &target.real)?;
    // Binds of BootExt: nodev,nosuid, but not BootExt's noexec (operators put
    // programs in DIR_ entries); read-only when asked or when BootExt is.
    if matches!(m.kind, MountKind::Bind | MountKind::File) {
        let place = staging.join(if want == Want::File {
            BIND_FILE
        } else {
            BIND_DIR
        });
        let ro = if m.read_only {
            MountFlags::RDONLY
        } else {
            read_only_flag(&mnt)
        };
        attach_staged(&mnt, &place, &target.fd, ro)
            .map_err(|e| format!("cannot mount on {}: {e}", target.real))?;
        return Ok((target.real, sealed));
    }
    mounts::attach(&mnt, &target.fd)
        .map_err(|e| format!("cannot mount on {}: {}", target.real, errno_text(e)))?;
    Ok((target.real, sealed))
}
