//! A system image's tree, read without booting it, to decode names against (`plan`,
//! `check`, `set-active`). Two readers, one result:
//! - as root, the kernel itself: the image on a read-only autoclear loop device,
//!   mounted with `fsmount` and never attached anywhere (a detached mount lives in an
//!   anonymous mount namespace of its own, so nothing on the host sees it), walked,
//!   then dropped with its loop device. This is exactly what the boot will see.
//! - otherwise (or when the kernel cannot), backhand, which reads every compression
//!   Linux mounts (gzip, xz, zstd, lz4, lzo) in user space.
//!
//! When neither can read the image, the caller gets both reasons: a plan decoded
//! without the image would be a guess, and a guess is never printed as the plan.

use crate::names::{Node as Nodeish, Tree};
use crate::sys::errno_text;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::collections::{HashMap, HashSet};
use std::io::BufReader;

/// More entries than any real system image holds: a bound on the walk, not a limit
/// anyone should meet.
const MAX_ENTRIES: usize = 4_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Link(String),
    Other,
}

/// An image's tree: every path (as components) and what it is.
#[derive(Debug)]
pub struct ImageTree {
    nodes: HashMap<Vec<String>, Node>,
    /// The opaque directories (an `Overlay/` layer's: [`crate::layers::OPAQUE_XATTR`]),
    /// as the kernel reads them.
    opaque: HashSet<Vec<String>>,
    /// backhand read an image holding extended attributes, which it does not
    /// decode: opaque directories in it are not known.
    pub xattrs_unread: bool,
    /// `kernel` or `backhand`: which reader produced it (shown by `plan --json`).
    pub read_by: &'static str,
}

impl ImageTree {
    /// Read `file` (the image `name`, for messages): through the kernel when root,
    /// else (or when that fails) with backhand.
    pub fn read(file: &OwnedFd, name: &str) -> Result<ImageTree, String> {
        let kernel = if rustix::process::geteuid().is_root() {
            match Self::through_kernel(file, name) {
                Ok(tree) => return Ok(tree),
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let dup = rustix::io::fcntl_dupfd_cloexec(file, 0)
            .map_err(|e| format!("{name}: {}", errno_text(e)))?;
        Self::with_backhand(std::fs::File::from(dup)).map_err(|b| match kernel {
            Some(k) => {
                format!("the kernel could not mount it ({k}) and backhand could not read it ({b})")
            }
            None => format!("backhand could not read it ({b}); run as root to let the kernel try"),
        })
    }

    /// Read with backhand, in user space.
    pub fn with_backhand(mut file: std::fs::File) -> Result<ImageTree, String> {
        use std::io::Seek;
        let xattrs_unread = holds_xattrs(&file);
        file.rewind().map_err(|e| e.to_string())?;
        let reader = backhand::FilesystemReader::from_reader(BufReader::new(file))
            .map_err(|e| e.to_string())?;
        let mut nodes = HashMap::new();
        for node in reader.files() {
            if nodes.len() >= MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            let comps: Vec<String> = node
                .fullpath
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            if comps.is_empty() {
                continue; // the root, a directory by definition
            }
            let kind = match &node.inner {
                backhand::InnerNode::Dir(_) => Node::Dir,
                backhand::InnerNode::File(_) => Node::File,
                backhand::InnerNode::Symlink(l) => {
                    Node::Link(l.link.to_string_lossy().into_owned())
                }
                _ => Node::Other,
            };
            nodes.insert(comps, kind);
        }
        Ok(ImageTree {
            nodes,
            opaque: HashSet::new(),
            xattrs_unread,
            read_by: "backhand",
        })
    }

    /// Read through a real read-only loop mount that is never attached anywhere.
    pub fn through_kernel(file: &OwnedFd, name: &str) -> Result<ImageTree, String> {
        let (mnt, _dev) = crate::assemble::mount_loop(file, name)?;
        let mut nodes = HashMap::new();
        let mut opaque = HashSet::new();
        walk(&mnt, &mut nodes, &mut opaque)?;
        // Dropping `mnt` unmounts it; the autoclear loop device goes with it.
        Ok(ImageTree {
            nodes,
            opaque,
            xattrs_unread: false,
            read_by: "kernel",
        })
    }
}

/// Whether a squashfs image holds extended attributes: the superblock's
/// `xattr_id_table_start` (byte 48; all ones when there is no table) points at a
/// table header whose `xattr_ids` (byte 8 of it) counts them; mksquashfs writes an
/// empty table for a tree without any.
fn holds_xattrs(file: &std::fs::File) -> bool {
    let mut start = [0u8; 8];
    let mut ids = [0u8; 4];
    rustix::io::pread(file, &mut start, 48).is_ok_and(|n| n == 8)
        && start != [0xff; 8]
        && rustix::io::pread(file, &mut ids, u64::from_le_bytes(start).saturating_add(8))
            .is_ok_and(|n| n == 4 && ids != [0; 4])
}

/// Every entry under the mount `root`, without following symlinks, and its opaque
/// directories; bounded by [`MAX_ENTRIES`] (an explicit stack, no recursion).
fn walk(
    root: &OwnedFd,
    nodes: &mut HashMap<Vec<String>, Node>,
    opaque: &mut HashSet<Vec<String>>,
) -> Result<(), String> {
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(dir_path) = stack.pop() {
        let rel = if dir_path.is_empty() {
            ".".to_string()
        } else {
            dir_path.join("/")
        };
        let show = || format!("/{}", dir_path.join("/"));
        let dir = rustix::fs::openat(
            root,
            rel.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {} in the image: {}", show(), errno_text(e)))?;
        if !dir_path.is_empty() && crate::layers::is_opaque(&dir) {
            opaque.insert(dir_path.clone());
        }
        let entries = rustix::fs::Dir::read_from(&dir)
            .map_err(|e| format!("cannot list {}: {}", show(), errno_text(e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {}", show(), errno_text(e)))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            if nodes.len() >= MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} entries"));
            }
            let node = node_at(&dir, &name)
                .map_err(|e| format!("cannot look at {}/{name}: {e}", show()))?;
            let mut path = dir_path.clone();
            path.push(name);
            if node == Node::Dir {
                stack.push(path.clone());
            }
            nodes.insert(path, node);
        }
    }
    Ok(())
}

fn node_at(dir: &impl AsFd, name: &str) -> Result<Node, String> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_text)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Node::Dir,
        FileType::RegularFile => Node::File,
        FileType::Symlink => {
            let text = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(errno_text)?;
            Node::Link(text.to_string_lossy().into_owned())
        }
        _ => Node::Other,
    })
}

/// Two readings of one image agree when they hold the same paths with the same kinds
/// (whoever read them).
impl PartialEq for ImageTree {
    fn eq(&self, other: &ImageTree) -> bool {
        self.nodes == other.nodes
    }
}

impl ImageTree {
    /// How many entries (the root not counted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether the directory at `path` is opaque (read by the kernel only).
    pub fn is_opaque(&self, path: &[String]) -> bool {
        self.opaque.contains(path)
    }
}

impl Tree for ImageTree {
    fn lstat(&self, path: &[String]) -> Option<Nodeish> {
        if path.is_empty() {
            return Some(Nodeish::Dir);
        }
        Some(match self.nodes.get(path)? {
            Node::Dir => Nodeish::Dir,
            Node::File => Nodeish::File,
            Node::Link(t) => Nodeish::Symlink(t.clone()),
            Node::Other => Nodeish::Other,
        })
    }
}
