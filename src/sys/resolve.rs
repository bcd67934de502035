//! Targets resolved inside the new root. The walk goes one component at a time with
//! `O_NOFOLLOW`; a symlink in the image is read and its text followed *within* the
//! new root (`/` and `..` stop at the new root, as `RESOLVE_IN_ROOT` does), so
//! `/etc/ssh -> ../../../../x` lands on `<root>/x`, never in the initramfs or host.
//! Missing directories (and a missing file for `FILE_`) are created in the overlay.

use crate::names::TargetPath;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;

use super::errno_text;

/// What the caller is going to mount onto the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Dir,
    File,
}

/// An opened target and its symlink-free path inside the new root.
pub struct Resolved {
    pub fd: OwnedFd,
    pub real: TargetPath,
}

const MAX_SYMLINKS: usize = 40;

fn reopen(root: &impl AsFd, path: &[String]) -> Result<OwnedFd, Errno> {
    let rel = if path.is_empty() {
        ".".to_string()
    } else {
        path.join("/")
    };
    fs::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn show(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

/// Why a target below another overmount cannot be made (shared with the preview,
/// which predicts it).
pub fn missing_on_another_mount(here: &str) -> String {
    format!(
        "{here} does not exist and its parent is another mount (a DIR_ entry on BootExt, or an image), where overboot creates nothing; create it there, or use a [[mount]] elsewhere"
    )
}

/// Resolve `target` under `root` for a mount of kind `want`, creating what is missing.
pub fn resolve_target(
    root: &impl AsFd,
    target: &TargetPath,
    want: Want,
) -> Result<Resolved, String> {
    let mut pending: VecDeque<String> = target.components().iter().cloned().collect();
    let mut real: Vec<String> = Vec::new();
    let mut dir =
        reopen(root, &real).map_err(|e| format!("cannot open the new root: {}", errno_text(e)))?;
    let root_dev = fs::fstat(&dir)
        .map_err(|e| format!("cannot stat the new root: {}", errno_text(e)))?
        .st_dev;
    let mut links = 0;
    let mut final_fd = None;
    while let Some(name) = pending.pop_front() {
        let last = pending.is_empty();
        if name == "." || name.is_empty() {
            continue;
        }
        if name == ".." {
            real.pop();
            dir = reopen(root, &real)
                .map_err(|e| format!("cannot open {}: {}", show(&real), errno_text(e)))?;
            continue;
        }
        let here = || {
            let mut p = real.clone();
            p.push(name.clone());
            show(&p)
        };
        match fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(format!("too many symlinks resolving {target} (a loop?)"));
                    }
                    let text = fs::readlinkat(&dir, name.as_str(), Vec::new()).map_err(|e| {
                        format!("cannot read symlink {}: {}", here(), errno_text(e))
                    })?;
                    let text = text.to_string_lossy().into_owned();
                    if text.starts_with('/') {
                        real.clear();
                        dir = reopen(root, &real)
                            .map_err(|e| format!("cannot open the new root: {}", errno_text(e)))?;
                    }
                    for c in text.split('/').rev() {
                        pending.push_front(c.to_string());
                    }
                }
                FileType::Directory => {
                    if last && want == Want::File {
                        return Err(format!(
                            "{} is a directory; a file can only be mounted on a file",
                            here()
                        ));
                    }
                    let next = fs::openat(
                        &dir,
                        name.as_str(),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| format!("cannot open {}: {}", here(), errno_text(e)))?;
                    real.push(name);
                    if last {
                        final_fd = Some(next);
                    } else {
                        dir = next;
                    }
                }
                other => {
                    if !last {
                        return Err(format!(
                            "{} is not a directory, so {target} cannot be below it",
                            here()
                        ));
                    }
                    if want == Want::Dir {
                        return Err(format!(
                            "{} is a file; a directory can only be mounted on a directory",
                            here()
                        ));
                    }
                    if other != FileType::RegularFile {
                        return Err(format!("{} is a special file, not a regular file", here()));
                    }
                    let fd = fs::openat(
                        &dir,
                        name.as_str(),
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| format!("cannot open {}: {}", here(), errno_text(e)))?;
                    real.push(name);
                    final_fd = Some(fd);
                }
            },
            Err(Errno::NOENT) => {
                // Create it in the new root (the overlay's upper layer), then look again;
                // never on another filesystem: that would write to BootExt (a DIR_ bind)
                // or fail on a read-only image.
                let parent_dev = fs::fstat(&dir).map(|st| st.st_dev).unwrap_or(0);
                if parent_dev != root_dev {
                    return Err(missing_on_another_mount(&here()));
                }
                let made = if last && want == Want::File {
                    fs::openat(
                        &dir,
                        name.as_str(),
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EXIST) => pending.push_front(name),
                    Err(e) => return Err(format!("cannot create {}: {}", here(), errno_text(e))),
                }
            }
            Err(e) => return Err(format!("cannot look at {}: {}", here(), errno_text(e))),
        }
    }
    let fd = match final_fd {
        Some(fd) => fd,
        // The walk ended on `..` or `.` from a symlink: `real` is a directory.
        None if real.is_empty() => return Err(format!("{target} resolves to the new root itself")),
        None if want == Want::File => {
            return Err(format!(
                "{target} resolves to the directory {}",
                show(&real)
            ));
        }
        None => reopen(root, &real)
            .map_err(|e| format!("cannot open {}: {}", show(&real), errno_text(e)))?,
    };
    let real = TargetPath::from_components(real).map_err(|e| format!("{target}: {e}"))?;
    Ok(Resolved { fd, real })
}

/// Resolve a place overboot mounts itself (`/mnt/cdrom`, `/mnt/apps/NAME`): it must
/// be reached as itself. A symlink the image or an `Overlay/` layer put on the way
/// (`/mnt/cdrom -> /etc`) would land BootExt elsewhere: refused.
pub fn resolve_itself(root: &impl AsFd, target: &TargetPath) -> Result<Resolved, String> {
    let r = resolve_target(root, target, Want::Dir)?;
    if r.real != *target {
        return Err(format!(
            "{target} leads to {} (a symlink in the image or an Overlay/ layer); overboot mounts only on {target} itself",
            r.real
        ));
    }
    Ok(r)
}

/// The assembled root as a [`Tree`](crate::names::Tree) for name decoding.
pub struct RootTree<'a>(pub &'a OwnedFd);

impl crate::names::Tree for RootTree<'_> {
    fn lstat(&self, path: &[String]) -> Option<crate::names::Node> {
        use crate::names::Node;
        let Some((name, parent)) = path.split_last() else {
            return Some(Node::Dir);
        };
        let dir = reopen(self.0, parent).ok()?;
        let st = fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Node::Dir,
            FileType::RegularFile => Node::File,
            FileType::Symlink => {
                let text = fs::readlinkat(&dir, name.as_str(), Vec::new()).ok()?;
                Node::Symlink(text.to_string_lossy().into_owned())
            }
            _ => Node::Other,
        })
    }
}
