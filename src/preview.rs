//! What a boot would do with a BootExt tree, computed without booting: the image it
//! would choose (with the boot's own checks), the tree it decodes names against (the
//! image itself, read by [`crate::imagetree`]), every mount and every skip. `plan`
//! prints it, `check` judges it. The decisions are the boot's own functions
//! (`assemble::configure`, `assemble::plan_overmounts`, `select`, `layers`, `units`),
//! so the preview and the boot cannot disagree.

use crate::assemble;
use crate::imagetree::ImageTree;
use crate::names::escape;
use crate::names::{Node, Tree};
use crate::plan::{self, PlannedMount, Skipped};
use crate::select;
use crate::state;
use crate::sys::confined::Confined;
use serde::Serialize;
use std::collections::BTreeMap;

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

#[derive(Serialize)]
pub struct SystemOutput {
    pub choice: String,
    pub link: Option<String>,
    pub image: String,
    pub compression: String,
    /// How the image's tree was read: `kernel` (a read-only loop mount, as root) or
    /// `backhand` (user space).
    pub read_by: &'static str,
    /// What verification found (as the boot records it in `state.json`).
    pub verified: crate::verify::Verification,
    /// Sealed: mounted through dm-verity (crate::verity::boot).
    pub sealed: bool,
    pub fallback: Option<state::Fallback>,
}

/// What the preview is asked about, beside BootExt.
#[derive(Default)]
pub struct Options {
    /// The kernel command line of the boot to preview.
    pub cmdline: String,
    /// The keys the boot's initramfs trusts (`--trust-keys DIR`, `--initramfs FILE`).
    pub trust: crate::verify::TrustStore,
}

/// The keys the boot will trust: those of an initramfs (`--initramfs FILE`, read
/// from its cpio) and of a directory (`--trust-keys DIR`); with neither, the
/// directory the boot reads ([`crate::verify::TRUST_DIR`]).
pub fn trust_from(
    keys_dir: Option<&std::path::Path>,
    initramfs: Option<&std::path::Path>,
) -> Result<crate::verify::TrustStore, String> {
    let mut store = match (keys_dir, initramfs) {
        (Some(dir), _) => crate::verify::TrustStore::load(dir),
        (None, Some(_)) => Default::default(),
        (None, None) => {
            crate::verify::TrustStore::load(std::path::Path::new(crate::verify::TRUST_DIR))
        }
    };
    if let Some(file) = initramfs {
        let more = crate::initramfs::keys::trusted_keys(file)?;
        store.keys.extend(more.keys);
        store.problems.extend(more.problems);
    }
    Ok(store)
}

/// Read the image a candidate names, as the boot would mount it. An image that
/// cannot be read is a failed attempt, as a mount failure is at boot: names are
/// never decoded against a guess.
fn read_image(img: &select::CheckedImage) -> Result<ImageTree, String> {
    ImageTree::read(&img.file, &img.image)
        .map_err(|e| format!("{}: cannot be read: {e}", img.image))
}

/// The boot's verification (step 4) of one image, without the RAM copy: a sealed
/// image's seal is checked as the boot checks it (crate::verity::boot::open), and
/// then, as at boot, the whole-image pass is skipped.
fn verify(
    be: &Confined,
    img: &select::CheckedImage,
    config: &crate::cmdline::BootConfig,
    trust: &crate::verify::TrustStore,
) -> Result<(crate::verify::Verification, bool), String> {
    let opts = crate::sys::toram::Options {
        mode: crate::verify::Mode::from_setting(config.verify),
        trust,
        toram: false,
        meminfo: std::path::Path::new("/proc/meminfo"),
        boot: false,
    };
    // A record that cannot be read is ignored, as at boot (with a warning there).
    let corrupted = crate::verity::corrupted::at_boot(be, &mut Vec::new());
    let seals = crate::verity::boot::Policy {
        mode: config.verity,
        on_error: config.verity_error,
        trust,
        corrupted: corrupted.as_deref(),
    };
    let size = rustix::fs::fstat(&img.file)
        .map_err(|e| format!("{}: {}", img.image, crate::sys::errno_text(e)))?
        .st_size as u64;
    let sealed = crate::verity::boot::open(be, &img.image, size, &seals)?;
    // `OVERBOOT_DEBUG=1 overboot check` shows that each image is read whole once.
    log::debug!("{}: verification pass", img.image);
    let mut verified =
        crate::sys::toram::prepare(be, &img.image, &img.file, &opts, sealed.is_some())?.verified;
    let is_sealed = sealed.is_some();
    if let Some(s) = sealed {
        verified.key_id = s.signed_by;
        verified.signature_file = verified
            .key_id
            .as_ref()
            .map(|_| format!("{}{}", img.image, crate::verity::seal::SIGNATURE_SUFFIX));
    }
    Ok((verified, is_sealed))
}

/// Everything `plan` and `check` compute: image choice and the plan, no mounts.
pub fn compute(be: &Confined, opts: &Options) -> Preview {
    compute_reusing(be, opts, &mut Known::default())
}

/// What `check` already found of the images (with the same settings as the plan),
/// so that the plan reads none of them whole again.
#[derive(Default)]
struct Known {
    /// Verified and read.
    fine: Vec<Examined>,
    /// Refused by verification or reading: the image and why.
    refused: Vec<(String, String)>,
}

/// [`compute`], taking what `known` says of an image instead of reading it whole
/// again (the plan takes the image it boots out of `known.fine`).
fn compute_reusing(be: &Confined, opts: &Options, known: &mut Known) -> Preview {
    let mut warnings = Vec::new();
    let (config, manifest) = assemble::configure(be, &opts.cmdline, &mut warnings);
    let candidates = crate::trial_boot::next_boot_order(be, &config.system);
    let selection = select::first_usable(be, candidates, |img| {
        if let Some(i) = known.fine.iter().position(|e| e.img.image == img.image) {
            let e = known.fine.remove(i);
            return Ok((e.verified, e.sealed, e.tree));
        }
        if let Some((_, why)) = known.refused.iter().find(|(i, _)| *i == img.image) {
            return Err(why.clone());
        }
        let (verified, sealed) = verify(be, img, &config, &opts.trust)?;
        Ok((verified, sealed, read_image(img)?))
    });
    let attempts = selection.attempts;
    let chosen = selection
        .chosen
        .map(|(candidate, img, (verified, sealed, tree))| {
            let system = SystemOutput {
                choice: candidate.choice.into(),
                link: img.link,
                image: img.image,
                compression: img.superblock.compression.into(),
                read_by: tree.read_by,
                verified,
                sealed,
                fallback: select::fallback(&attempts),
            };
            (system, tree)
        });
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
    let (layers, more) = crate::layers::order_and_fit(found);
    layer_skips.extend(more);
    // The boot decodes names in the new root: the layers over the image.
    let root = Stacked::new(be, &layers, Box::new(tree), &mut warnings);
    let (mounts, mut skipped) =
        assemble::plan_overmounts(be, &manifest, &config, &root, &mut warnings);
    let (mounts, nested_skips) = below_other_mounts(be, mounts);
    skipped.extend(nested_skips);
    skipped.splice(0..0, layer_skips);
    let (apps, app_skips) = crate::apps::scan(be);
    skipped.extend(app_skips);
    let mut units = if config.dirs {
        crate::units::scan(be, &root)
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

/// One layer of the new root: its tree and which of its directories are opaque.
trait Layer: Tree {
    fn opaque(&self, path: &[String]) -> bool;
}

impl Layer for ImageTree {
    fn opaque(&self, path: &[String]) -> bool {
        self.is_opaque(path)
    }
}

/// An image tree kept elsewhere, as the lowest layer of a stack.
struct Borrowed<'t>(&'t ImageTree);

impl Tree for Borrowed<'_> {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        self.0.lstat(path)
    }
}

impl Layer for Borrowed<'_> {
    fn opaque(&self, path: &[String]) -> bool {
        self.0.is_opaque(path)
    }
}

/// A directory on BootExt (an `Overlay/` directory layer) as a [`Tree`].
struct BootExtDir<'a> {
    be: &'a Confined,
    base: String,
}

impl BootExtDir<'_> {
    fn rel(&self, path: &[String]) -> String {
        if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.join("/"))
        }
    }
}

impl Layer for BootExtDir<'_> {
    fn opaque(&self, path: &[String]) -> bool {
        let dir = self.be.open_dir(&self.rel(path));
        dir.is_ok_and(|d| crate::layers::is_opaque(&d))
    }
}

impl Tree for BootExtDir<'_> {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        let rel = self.rel(path);
        Some(match self.be.lstat_type(&rel).ok()? {
            rustix::fs::FileType::Directory => Node::Dir,
            rustix::fs::FileType::RegularFile => Node::File,
            rustix::fs::FileType::Symlink => Node::Symlink(self.be.readlink(&rel).ok()?),
            _ => Node::Other,
        })
    }
}

/// The new root before the overmounts, as overlayfs merges it: the `Overlay/`
/// layers (the last on top) over the image. An upper layer's entry hides the lower
/// ones; below a non-directory, or an opaque directory
/// ([`crate::layers::OPAQUE_XATTR`]), nothing lower shows; a special file in an
/// upper layer is taken for a whiteout. A layer that cannot be read here is left
/// out: the boot would skip it only if it cannot mount it either.
struct Stacked<'a> {
    /// Top first; the image last.
    trees: Vec<Box<dyn Layer + 'a>>,
}

impl<'a> Stacked<'a> {
    /// The stack, and a warning for each image layer whose opaque directories
    /// cannot be known here.
    fn new(
        be: &'a Confined,
        layers: &[crate::layers::Layer],
        image: Box<dyn Layer + 'a>,
        warnings: &mut Vec<String>,
    ) -> Stacked<'a> {
        let mut trees: Vec<Box<dyn Layer + 'a>> = Vec::new();
        let root = rustix::process::geteuid().is_root();
        let unseen = |source: &str| {
            format!(
                "{source}: its opaque directories ({}) cannot be read without root, so this preview does not see them; run as root to see the new root as the boot does",
                crate::layers::OPAQUE_XATTR
            )
        };
        for l in layers.iter().rev() {
            match l.kind {
                crate::layers::LayerKind::Dir => {
                    // trusted.* attributes are hidden from other users.
                    if !root {
                        warnings.push(unseen(&l.source));
                    }
                    trees.push(Box::new(BootExtDir {
                        be,
                        base: l.source.clone(),
                    }));
                }
                crate::layers::LayerKind::Image => {
                    if let Some(t) = be
                        .open_file(&l.source)
                        .ok()
                        .and_then(|f| ImageTree::read(&f, &l.source).ok())
                    {
                        if t.xattrs_unread {
                            warnings.push(unseen(&l.source));
                        }
                        trees.push(Box::new(t));
                    }
                }
            }
        }
        trees.push(image);
        Stacked { trees }
    }
}

impl Tree for Stacked<'_> {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        let last = self.trees.len() - 1;
        for (i, t) in self.trees.iter().enumerate() {
            match t.lstat(path) {
                Some(Node::Other) if i != last => return None,
                Some(n) => return Some(n),
                // Absent here: the layers below show through unless a parent
                // here is not a directory, or is an opaque one.
                None => {
                    let blocked = (1..path.len()).any(|d| match t.lstat(&path[..d]) {
                        Some(Node::Dir) => i != last && t.opaque(&path[..d]),
                        Some(_) => true,
                        None => false,
                    });
                    if blocked {
                        return None;
                    }
                }
            }
        }
        None
    }
}

/// What is inside an overmount's source, for entries mounted below it.
enum Inside {
    /// A `DIRS/` directory (or manifest bind) on BootExt, at this path.
    BootExt(String),
    Image(ImageTree),
    /// A fresh tmpfs: nothing.
    Empty,
    /// An image that cannot be read here: the boot's walk decides.
    Unknown,
}

impl Inside {
    /// Whether `rest` (below the mount) exists; `None` when a symlink is met (the
    /// boot follows it inside the new root; the preview does not guess).
    fn has(&self, be: &Confined, rest: &[String]) -> Option<Result<(), usize>> {
        for depth in 1..=rest.len() {
            let node = match self {
                Inside::BootExt(src) => {
                    let rel = format!("{src}/{}", rest[..depth].join("/"));
                    match be.lstat_type(&rel) {
                        Ok(rustix::fs::FileType::Symlink) => return None,
                        Ok(_) => true,
                        Err(_) => false,
                    }
                }
                Inside::Image(tree) => match crate::names::Tree::lstat(tree, &rest[..depth]) {
                    Some(crate::names::Node::Symlink(_)) => return None,
                    found => found.is_some(),
                },
                Inside::Empty => false,
                Inside::Unknown => return None,
            };
            if !node {
                return Some(Err(depth));
            }
        }
        Some(Ok(()))
    }
}

/// The boot makes the overmounts one after another, and creates a missing target
/// only on the overlay, never inside an earlier overmount (that would write to
/// BootExt, or fail on an image): an entry below another entry's mount whose place
/// does not exist there is skipped, with the boot's own reason.
fn below_other_mounts(
    be: &Confined,
    planned: Vec<PlannedMount>,
) -> (Vec<PlannedMount>, Vec<Skipped>) {
    let mut kept: Vec<(PlannedMount, Option<Inside>)> = Vec::new();
    // The last kept mount on each place: a parent is found by looking up each
    // proper prefix (a few lookups per entry, not a scan of every earlier entry).
    let mut last_on: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut skipped = Vec::new();
    for m in planned {
        let comps = m.resolved.components();
        let parent = (0..comps.len())
            .filter_map(|n| last_on.get(&comps[..n]).copied())
            .max();
        if let Some((p, inside)) = parent.map(|i| &mut kept[i]) {
            let inside = inside.get_or_insert_with(|| match (p.kind, &p.source) {
                (plan::MountKind::Image, Some(src)) => be
                    .open_file(src)
                    .ok()
                    .and_then(|f| ImageTree::read(&f, src).ok())
                    .map_or(Inside::Unknown, Inside::Image),
                (plan::MountKind::Bind, Some(src)) => Inside::BootExt(src.clone()),
                _ => Inside::Empty,
            });
            let rest = &m.resolved.components()[p.resolved.components().len()..];
            if let Some(Err(depth)) = inside.has(be, rest) {
                let upto = &m.resolved.components()[..p.resolved.components().len() + depth];
                skipped.push(Skipped {
                    entry: m.origin.clone(),
                    reason: crate::sys::resolve::missing_on_another_mount(&format!(
                        "/{}",
                        upto.join("/")
                    )),
                });
                continue;
            }
        }
        last_on.insert(m.resolved.components().to_vec(), kept.len());
        kept.push((m, None));
    }
    (kept.into_iter().map(|(m, _)| m).collect(), skipped)
}

pub fn describe(m: &PlannedMount) -> String {
    let how = match m.kind {
        plan::MountKind::Bind if m.read_only => "bind, read-only",
        plan::MountKind::Bind => "bind, read-write",
        plan::MountKind::File => "file bind",
        plan::MountKind::Image => "image, read-only",
        plan::MountKind::Tmpfs => "tmpfs",
    };
    let source = m.source.as_deref().unwrap_or(&m.origin);
    let target = m.target.to_string();
    format!("{} -> {} ({how})", escape(source), escape(&target))
}

/// Layer number `index` (bottom first) and where the booted system shows it.
pub fn describe_layer(index: usize, l: &crate::layers::Layer) -> String {
    let kind = match l.kind {
        crate::layers::LayerKind::Dir => "directory",
        crate::layers::LayerKind::Image => "image",
    };
    let sealed = l
        .verity
        .as_ref()
        .map(|v| format!("; {}", crate::verity::boot::describe(v)))
        .unwrap_or_default();
    format!(
        "layer {} ({kind}, read-only{sealed}) at {}",
        l.source,
        crate::layers::layer_at(index)
    )
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
        "1. system image {}{via} ({}), {} read-only -> {}",
        s.image,
        s.compression,
        if s.sealed { "dm-verity" } else { "loop" },
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
    for (n, l) in out.layers.iter().enumerate() {
        let _ = writeln!(o, "   {}", describe_layer(n, l));
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
        let (entry, reason) = (escape(&s.entry), escape(&s.reason));
        let _ = writeln!(o, "skip: {entry}: {reason}");
    }
    o
}

/// `check`'s verdict: what it found, and the problems.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// The plan of a boot with an empty command line (`check --json` shows it).
    pub plan: Option<Preview>,
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

/// One image the boot may use, as the boot would take it: link and superblock
/// checked, verified, its tree read.
struct Examined {
    link: String,
    img: select::CheckedImage,
    verified: crate::verify::Verification,
    sealed: bool,
    tree: ImageTree,
}

fn examine(
    be: &Confined,
    path: &str,
    config: &crate::cmdline::BootConfig,
    trust: &crate::verify::TrustStore,
) -> Result<Examined, String> {
    let cand = select::Candidate {
        choice: "check",
        path: path.into(),
    };
    let img = select::check(be, &cand)?;
    let (verified, sealed) = verify(be, &img, config, trust)?;
    let tree = read_image(&img)?;
    Ok(Examined {
        link: path.into(),
        img,
        verified,
        sealed,
        tree,
    })
}

/// Whether the boot would take `System/NAME` (`set-active` asks before it switches):
/// the boot's own checks (link, superblock, verification with `opts.trust` and the
/// settings of `opts.cmdline` and the manifest) and its tree read as the boot would
/// mount it. `Ok` says what verification found.
pub fn would_boot(be: &Confined, name: &str, opts: &Options) -> Result<String, String> {
    let (config, _) = assemble::configure(be, &opts.cmdline, &mut Vec::new());
    let e = examine(be, &format!("System/{name}"), &config, &opts.trust)?;
    Ok(e.verified.summary())
}

/// Judge a BootExt tree: every image the boot may use, and the plan of a boot with
/// no command-line options. Whatever the boot would refuse, drop or skip is an error.
pub fn check(be: &Confined, trust: crate::verify::TrustStore) -> Report {
    let mut r = Report::default();
    let opts = Options {
        cmdline: String::new(),
        trust,
    };
    let (config, manifest) = assemble::configure(be, "", &mut Vec::new());
    // The boot ignores what it cannot use in the manifest: each such thing is an error.
    r.errors.extend(manifest.warnings.iter().cloned());
    let disk = crate::trial_boot::read_disk(be);
    let status = crate::trial::status(&disk);
    let pending = matches!(status, crate::trial::Status::Pending(_));
    let mut known = Known::default();
    for link in [
        select::ACTIVE_LINK,
        select::PREVIOUS_LINK,
        select::RECOVERY_LINK,
    ] {
        let present = be.lstat_type(link).is_ok();
        if link == select::PREVIOUS_LINK && disk.previous.is_none() {
            continue;
        }
        let examined = examine(be, link, &config, &opts.trust);
        if let Err(why) = &examined {
            let cand = select::Candidate {
                choice: "check",
                path: link.into(),
            };
            if let Ok(img) = select::check(be, &cand) {
                known.refused.push((img.image, why.clone()));
            }
        }
        match examined {
            Ok(e) => {
                let verified = e.verified.summary();
                r.lines.push(format!(
                    "{link} -> {} ({}, {} bytes, read by {}{}{})",
                    e.img.image,
                    e.img.superblock.compression,
                    e.img.superblock.bytes_used,
                    e.tree.read_by,
                    if verified.is_empty() { "" } else { ", " },
                    verified
                ));
                known.fine.push(e);
            }
            Err(e) if link == select::RECOVERY_LINK && !present => r.warnings.push(format!(
                "{e}: there is no way back if the active image fails"
            )),
            Err(e) if link == select::PREVIOUS_LINK && pending => r.errors.push(format!(
                "{e}: the trial running has nothing to roll back to"
            )),
            Err(e) if link == select::PREVIOUS_LINK => r.warnings.push(e),
            Err(e) => r.errors.push(e),
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
            && let Ok(file) = be.open_file(&rel)
            && let Ok(st) = rustix::fs::fstat(&file)
            && let Err(e) = select::read_superblock(&file, st.st_size as u64)
        {
            r.errors.push(format!("{rel}: {e}"));
        }
    }
    // Each image is read whole once: the plan takes the one it boots out of `known`
    // (no other image's names are compared with it).
    let out = compute_reusing(be, &opts, &mut known);
    for (n, l) in out.layers.iter().enumerate() {
        r.lines.push(describe_layer(n, l));
    }
    r.warnings.extend(
        out.warnings
            .iter()
            .filter(|w| !manifest.warnings.contains(w))
            .cloned(),
    );
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
    if let Some(system) = &out.system {
        r.warnings.extend(decoded_differently(
            be,
            &manifest,
            &config,
            &out,
            system,
            &known.fine,
        ));
    }
    r.errors.extend(crate::private_keys::find(be));
    r.plan = Some(out);
    r
}

/// Entries that land elsewhere (or are skipped) when the boot uses another of the
/// images than the one the plan chose: after a fallback or a rollback, the same
/// `DIRS/` name would be mounted somewhere else.
fn decoded_differently(
    be: &Confined,
    manifest: &crate::manifest::Manifest,
    config: &crate::cmdline::BootConfig,
    out: &Preview,
    system: &SystemOutput,
    images: &[Examined],
) -> Vec<String> {
    let mut found = Vec::new();
    for other in images.iter().filter(|e| e.img.image != system.image) {
        // That boot's new root: the same layers over the other image.
        let root = Stacked::new(
            be,
            &out.layers,
            Box::new(Borrowed(&other.tree)),
            &mut Vec::new(),
        );
        let (mounts, _) = assemble::plan_overmounts(be, manifest, config, &root, &mut Vec::new());
        for m in &out.mounts {
            let there = mounts.iter().find(|o| o.origin == m.origin);
            let elsewhere = match there {
                Some(o) if o.target == m.target => continue,
                Some(o) => format!("on {}", o.target),
                None => "not at all".to_string(),
            };
            found.push(format!(
                "{}: mounted on {} with {} but {elsewhere} with {} ({}); escape '_' as '__' to make the name mean one place",
                m.origin, m.target, system.image, other.img.image, other.link
            ));
        }
    }
    found
}
