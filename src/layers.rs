//! `BootExt/Overlay/` layers and the persistent upper layer (DESIGN section 1,
//! section 2 step 7).
//!
//! Each entry of `Overlay/` is a directory or a squashfs image (`.squashfs`,
//! `.squashfs.xz`, `.sqfs`), stacked read-only above the system image and below the
//! writable layer, in byte order of the names: **the last in order is on top**, so
//! with `10-base` and `20-site` a file in both comes from `20-site`. A bad entry is
//! skipped with its reason, never fatal.
//!
//! Layer `n` (from 0, in name order) is at `/mnt/layers/<n>` in the booted system, and
//! the overlay's `lowerdir=` names the layers by those paths (`/mnt/layers/1:
//! /mnt/layers/0:/mnt/livecd`), so `/proc/mounts` names places that exist after the
//! switch. 64 such paths are longer than the 255 bytes `fsconfig` takes for a value:
//! the overlay is made with `mount(2)`, whose options may fill a page
//! ([`crate::sys::mounts::mount_seen_from`]). At most [`MAX_LAYERS`] are stacked;
//! the rest are skipped with the reason.
//!
//! With `overboot.overlay=persist` the writable layer is `BootExt/Persist/upper`
//! (work directory `Persist/work`), created if missing: the one place where a boot
//! writes to BootExt by design. When the BootExt filesystem cannot carry an overlay
//! upper layer (mounted read-only, no extended attributes as on vfat) the boot falls
//! back to tmpfs with a warning. `DIRS/` overmounts still go over the overlay root.
//!
//! The pure part (classification, order, limits, the lowerdir option) is apart from
//! the part that reads BootExt ([`scan`], [`prepare_persist`]).

use crate::bootext;
use crate::names::IMAGE_EXTENSIONS;
use crate::plan::{Skipped, SourceNode};
use crate::sys::confined::Confined;
use crate::sys::errno_text;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatVfsMountFlags, XattrFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// The directory of layers on BootExt.
pub const OVERLAY_DIR: &str = "Overlay";
/// The persistent writable layer on BootExt (`upper/`, `work/` inside).
pub const PERSIST_DIR: &str = "Persist";
/// At most this many `Overlay/` layers are stacked.
pub const MAX_LAYERS: usize = 64;
/// Where the layers are in the booted system: `/mnt/layers/<n>`.
pub const LAYERS_AT: &str = "/mnt/layers";
/// The extended attribute that makes a directory of a layer opaque: overlayfs
/// shows nothing of the layers below it there. The boot mounts without `userxattr`,
/// so the `trusted.` one is what counts (`user.overlay.opaque` does not).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether the open directory `dir` is opaque, as overlayfs decides it: the
/// attribute's value is exactly `y`.
pub fn is_opaque(dir: &impl rustix::fd::AsFd) -> bool {
    let mut value = [0u8; 2];
    matches!(rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut value), Ok(1) if value[0] == b'y')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Dir,
    Image,
}

/// One usable `Overlay/` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The entry name in `Overlay/`.
    pub name: String,
    /// Path relative to BootExt (`Overlay/<name>`).
    pub source: String,
    pub kind: LayerKind,
    /// A sealed image layer's dm-verity device (set when mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<crate::verity::boot::VerityRecord>,
}

/// Turn one `Overlay/` entry into a layer, or say why it cannot be one.
pub fn classify(name: &str, node: &SourceNode) -> Result<Layer, String> {
    let source = format!("{OVERLAY_DIR}/{name}");
    let named_image = IMAGE_EXTENSIONS.iter().any(|e| name.ends_with(e));
    let kind = match node {
        SourceNode::Dir => LayerKind::Dir,
        SourceNode::File {
            image_problem: None,
        } if named_image => LayerKind::Image,
        SourceNode::File {
            image_problem: Some(p),
        } if named_image => return Err(format!("bad image: {p}")),
        SourceNode::File { .. } => {
            return Err(
                "a plain file: a layer is a directory or a squashfs image named .squashfs, .squashfs.xz or .sqfs"
                    .into(),
            );
        }
        SourceNode::Other(what) => {
            return Err(format!(
                "{what}: a layer is a directory or a squashfs image"
            ));
        }
    };
    Ok(Layer {
        name: name.to_string(),
        source,
        kind,
        verity: None,
    })
}

/// Why a directory layer found at `real` (its path relative to BootExt, links
/// resolved; empty for BootExt itself) cannot be used: a layer holding or inside
/// `Persist/` would overlap the persistent writable layer.
pub fn overlap_problem(real: &str) -> Option<String> {
    // `Overlay/self -> .`: a layer holding the other layers (overlayfs refuses
    // overlapping layers with ELOOP, and the retry would drop them all).
    if real == OVERLAY_DIR {
        return Some(format!(
            "resolves to {OVERLAY_DIR}/ itself, which holds the other layers; overlayfs refuses overlapping layers"
        ));
    }
    let overlaps = real.is_empty()
        || real == PERSIST_DIR
        || real
            .strip_prefix(PERSIST_DIR)
            .is_some_and(|r| r.starts_with('/'));
    overlaps.then(|| {
        format!(
            "resolves to '{}', which holds or lies in {PERSIST_DIR}/ (the persistent writable layer)",
            if real.is_empty() { "." } else { real }
        )
    })
}

/// Where layer number `index` is in the booted system.
pub fn layer_at(index: usize) -> String {
    format!("{LAYERS_AT}/{index}")
}

/// Sort layers by name (byte order, bottom first) and keep at most [`MAX_LAYERS`];
/// the rest is skipped with the reason.
pub fn order_and_fit(mut layers: Vec<Layer>) -> (Vec<Layer>, Vec<Skipped>) {
    layers.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let more = layers.split_off(layers.len().min(MAX_LAYERS));
    let skipped = more
        .into_iter()
        .map(|layer| Skipped {
            entry: layer.source,
            reason: format!("more than {MAX_LAYERS} Overlay/ layers; merge some"),
        })
        .collect();
    (layers, skipped)
}

/// The `lowerdir=` value for `count` layers over the image at `image_at`, as the
/// booted system sees them: overlayfs lists the top layer first, so the last layer
/// in name order comes first and the system image last.
pub fn lowerdir(count: usize, image_at: &str) -> String {
    let mut parts: Vec<String> = (0..count).rev().map(layer_at).collect();
    parts.push(image_at.into());
    parts.join(":")
}

/// Every `Overlay/` entry of BootExt, classified (symlinks followed inside BootExt
/// only; image superblocks checked). Not yet ordered or fitted.
pub fn scan(be: &Confined) -> (Vec<Layer>, Vec<Skipped>) {
    let mut layers = Vec::new();
    let mut skipped = Vec::new();
    let names = match crate::bootext::list_entries(be, OVERLAY_DIR) {
        Ok(n) => n,
        Err(e) => {
            skipped.push(Skipped {
                entry: OVERLAY_DIR.into(),
                reason: format!("cannot list: {}", errno_text(e)),
            });
            return (layers, skipped);
        }
    };
    for name in names {
        let rel = format!("{OVERLAY_DIR}/{name}");
        let layer = bootext::source_node(be, &rel, false)
            .and_then(|node| classify(&name, &node))
            .and_then(|l| {
                if l.kind != LayerKind::Dir {
                    return Ok(l);
                }
                let fd = be
                    .open_path(&rel)
                    .map_err(|e| Confined::describe(&rel, e))?;
                let real = be.relative_of(&fd).unwrap_or_else(|| rel.clone());
                match overlap_problem(&real) {
                    Some(p) => Err(p),
                    None => Ok(l),
                }
            });
        match layer {
            Ok(l) => layers.push(l),
            Err(reason) => skipped.push(Skipped { entry: rel, reason }),
        }
    }
    (layers, skipped)
}

/// What is wrong with a BootExt filesystem as an overlay upper layer, from
/// `statvfs` flags and whether a `trusted.*` extended attribute could be set.
pub fn persist_problem(read_only: bool, xattr: Result<(), Errno>) -> Option<String> {
    if read_only {
        return Some("BootExt is mounted read-only".into());
    }
    match xattr {
        Ok(()) => None,
        Err(Errno::NOTSUP) => Some(
            "the BootExt filesystem has no extended attributes (vfat, exfat?), which an overlay upper layer needs"
                .into(),
        ),
        Err(Errno::ROFS) => Some("BootExt is mounted read-only".into()),
        Err(e) => Some(format!(
            "cannot set an extended attribute on {PERSIST_DIR}/work: {}",
            errno_text(e)
        )),
    }
}

fn mkdir_in(dir: &impl rustix::fd::AsFd, name: &str, shown: &str) -> Result<(), String> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(Errno::ROFS) => Err("BootExt is mounted read-only".into()),
        Err(e) => Err(format!("cannot create {shown}: {}", errno_text(e))),
    }
}

/// Make `Persist/upper` and `Persist/work` on BootExt (if missing), check that the
/// filesystem can be an overlay upper layer, and return a detached bind mount of
/// `Persist` (upper and work must be on one mount for overlayfs). `upper` and
/// `work` must be real directories, not links.
pub fn prepare_persist(be: &Confined) -> Result<OwnedFd, String> {
    let root = be.open_path(".").map_err(|e| format!("BootExt: {e}"))?;
    let vfs = rustix::fs::fstatvfs(&root).map_err(|e| format!("statvfs: {}", errno_text(e)))?;
    if vfs.f_flag.contains(StatVfsMountFlags::RDONLY) {
        return Err(persist_problem(true, Ok(())).unwrap_or_default());
    }
    mkdir_in(&root, PERSIST_DIR, PERSIST_DIR)?;
    let persist = be
        .open_path(PERSIST_DIR)
        .map_err(|e| Confined::describe(PERSIST_DIR, e))?;
    for sub in ["upper", "work"] {
        let shown = format!("{PERSIST_DIR}/{sub}");
        mkdir_in(&persist, sub, &shown)?;
        let st = rustix::fs::statat(&persist, sub, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("{shown}: {}", errno_text(e)))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(format!("{shown} is not a directory (a link?)"));
        }
    }
    let work = rustix::fs::openat(
        &persist,
        "work",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{PERSIST_DIR}/work: {}", errno_text(e)))?;
    let name = "trusted.overboot.probe";
    let xattr = rustix::fs::fsetxattr(&work, name, b"1", XattrFlags::empty());
    if xattr.is_ok() {
        let _ = rustix::fs::fremovexattr(&work, name);
    }
    if let Some(problem) = persist_problem(false, xattr) {
        return Err(problem);
    }
    crate::sys::mounts::clone_tree(&persist)
        .map_err(|e| format!("cannot bind {PERSIST_DIR}: {}", errno_text(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(problem: Option<&str>) -> SourceNode {
        SourceNode::File {
            image_problem: problem.map(String::from),
        }
    }

    fn layer(name: &str) -> Layer {
        classify(name, &SourceNode::Dir).unwrap()
    }

    #[test]
    fn classify_table() {
        assert_eq!(
            classify("10-base", &SourceNode::Dir).unwrap().kind,
            LayerKind::Dir
        );
        for name in ["20-site.squashfs", "x.squashfs.xz", "y.sqfs"] {
            let l = classify(name, &file(None)).unwrap();
            assert_eq!(l.kind, LayerKind::Image, "{name}");
            assert_eq!(l.source, format!("Overlay/{name}"));
        }
        let bad = [
            (
                "a.squashfs",
                file(Some("truncated")),
                "bad image: truncated",
            ),
            ("notes.txt", file(None), "a plain file"),
            ("sock", SourceNode::Other("a socket".into()), "a socket"),
        ];
        for (name, node, want) in bad {
            let e = classify(name, &node).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn byte_order_and_last_on_top() {
        let layers = vec![layer("b"), layer("B"), layer("20-site"), layer("10-base")];
        let (kept, skipped) = order_and_fit(layers);
        assert!(skipped.is_empty());
        let names: Vec<&str> = kept.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["10-base", "20-site", "B", "b"]);
        assert_eq!(
            lowerdir(kept.len(), "/mnt/livecd"),
            "/mnt/layers/3:/mnt/layers/2:/mnt/layers/1:/mnt/layers/0:/mnt/livecd"
        );
        assert_eq!(lowerdir(0, "/mnt/livecd"), "/mnt/livecd");
    }

    #[test]
    fn limits_skip_the_excess() {
        let many: Vec<Layer> = (0..MAX_LAYERS + 3)
            .map(|i| layer(&format!("{i:03}")))
            .collect();
        let (kept, skipped) = order_and_fit(many);
        assert_eq!(kept.len(), MAX_LAYERS);
        // 64 layers and the writable layer fit mount(2)'s page of options (they
        // would not fit the 255 bytes fsconfig takes: issue 10 item 5).
        let options = format!(
            "lowerdir={},upperdir=/mnt/overlay/upper,workdir=/mnt/overlay/work",
            lowerdir(MAX_LAYERS, "/mnt/livecd")
        );
        assert!((255..4095).contains(&options.len()), "{options}");
        assert_eq!(skipped.len(), 3);
        assert!(
            skipped[0].reason.contains("more than"),
            "{}",
            skipped[0].reason
        );
        assert_eq!(kept.last().unwrap().name, format!("{:03}", MAX_LAYERS - 1));
    }

    #[test]
    fn overlaps_with_persist() {
        for bad in ["", "Persist", "Persist/upper", "Persist/x/y"] {
            assert!(overlap_problem(bad).is_some(), "{bad}");
        }
        for ok in ["Overlay/10-base", "Persisted", "Data/Persist"] {
            assert_eq!(overlap_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn persist_problems() {
        assert_eq!(persist_problem(false, Ok(())), None);
        assert!(persist_problem(true, Ok(())).unwrap().contains("read-only"));
        assert!(
            persist_problem(false, Err(Errno::NOTSUP))
                .unwrap()
                .contains("extended attributes")
        );
        assert!(
            persist_problem(false, Err(Errno::ROFS))
                .unwrap()
                .contains("read-only")
        );
        assert!(
            persist_problem(false, Err(Errno::PERM))
                .unwrap()
                .contains("cannot set")
        );
    }
}
