//! The BootExt volume as overboot sees it: the manifest, and the `DIRS/` entries and
//! `[[mount]]`s turned into plan candidates. Every lookup goes through [`Confined`].

use crate::manifest::{self, Manifest, ManifestKind};
use crate::names::IMAGE_EXTENSIONS;
use crate::plan::{self, Candidate, Skipped, SourceNode};
use crate::select;
use crate::sys::confined::{Confined, MAX_TEXT_BYTES};
use crate::sys::errno_text;
use rustix::fs::FileType;

pub const DIRS: &str = "DIRS";

/// Candidates found on BootExt, and the entries that cannot be candidates.
#[derive(Default)]
pub struct Entries {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// The manifest, or the defaults when there is none. Read errors are warnings.
pub fn read_manifest(be: &Confined) -> Manifest {
    match be.read_small(manifest::MANIFEST_PATH, MAX_TEXT_BYTES) {
        Ok(Some(text)) => manifest::parse(&text),
        Ok(None) => Manifest::default(),
        Err(e) => Manifest {
            warnings: vec![format!("cannot read the manifest: {e}; the defaults apply")],
            ..Default::default()
        },
    }
}

/// What `rel` is, links followed inside BootExt. Files named as images (or that the
/// caller says are images) get their superblock checked.
pub fn source_node(be: &Confined, rel: &str, is_image: bool) -> Result<SourceNode, String> {
    let fd = be.open_path(rel).map_err(|e| Confined::describe(rel, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{rel}: {}", errno_text(e)))?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => SourceNode::Dir,
        FileType::RegularFile => {
            let image_problem = if is_image || IMAGE_EXTENSIONS.iter().any(|e| rel.ends_with(e)) {
                match be.open_file(rel) {
                    Ok(file) => select::read_superblock(&file, st.st_size as u64).err(),
                    Err(e) => Some(format!("cannot open: {e}")),
                }
            } else {
                None
            };
            SourceNode::File { image_problem }
        }
        FileType::Symlink => SourceNode::Other("a symlink".into()),
        FileType::Socket => SourceNode::Other("a socket".into()),
        FileType::Fifo => SourceNode::Other("a named pipe".into()),
        _ => SourceNode::Other("a device node".into()),
    })
}

/// The entries of the BootExt directory `dir` (`DIRS`, `Overlay`, `Apps`), without
/// the seal files beside sealed images (crate::verity).
pub fn list_entries(be: &Confined, dir: &str) -> Result<Vec<String>, rustix::io::Errno> {
    let names = be.list(dir)?;
    Ok(names
        .iter()
        .filter(|n| !crate::verity::seal::is_seal_of_listed(n, &names))
        .cloned()
        .collect())
}

/// Every `DIRS/` entry, classified.
pub fn dirs_entries(be: &Confined) -> Entries {
    let mut out = Entries::default();
    let names = match list_entries(be, DIRS) {
        Ok(names) => names,
        Err(e) => {
            out.skipped.push(Skipped {
                entry: DIRS.into(),
                reason: format!("cannot list: {}", errno_text(e)),
            });
            return out;
        }
    };
    for name in names {
        let rel = format!("{DIRS}/{name}");
        let result = source_node(be, &rel, false).and_then(|node| plan::classify(&name, &node));
        match result {
            Ok(c) => out.candidates.push(c),
            Err(reason) => out.skipped.push(Skipped { entry: rel, reason }),
        }
    }
    out
}

/// The manifest's `[[mount]]`s, classified.
pub fn manifest_entries(be: &Confined, m: &Manifest) -> Entries {
    let mut out = Entries::default();
    for mount in &m.mounts {
        let node = match &mount.source {
            Some(src) => match source_node(be, src, mount.kind == ManifestKind::Image) {
                Ok(node) => Some(node),
                Err(e) if e.contains("does not exist") => None,
                Err(reason) => {
                    out.skipped.push(Skipped {
                        entry: format!("overboot.toml [[mount]] #{}", mount.index),
                        reason,
                    });
                    continue;
                }
            },
            None => None,
        };
        match plan::from_manifest(mount, node.as_ref()) {
            Ok(c) => out.candidates.push(c),
            Err(reason) => out.skipped.push(Skipped {
                entry: format!("overboot.toml [[mount]] #{}", mount.index),
                reason,
            }),
        }
    }
    out
}
