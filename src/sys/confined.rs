//! Lookups confined to BootExt: every path is resolved with `openat2` and
//! `RESOLVE_BENEATH`, so a symlink or `..` that leads outside the volume fails with
//! `EXDEV` instead of reaching the initramfs or the host.

use super::fd_path;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::io::Read;
use std::path::{Path, PathBuf};

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// A directory that lookups may not leave.
pub struct Confined {
    dir: OwnedFd,
    /// The real path of the directory (for messages and mount sources).
    pub path: PathBuf,
}

impl Confined {
    pub fn open(path: &Path) -> Result<Confined, String> {
        let dir = fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {}", path.display(), super::errno_text(e)))?;
        let real = fd_path(&dir).unwrap_or_else(|_| path.to_path_buf());
        Ok(Confined { dir, path: real })
    }

    pub fn fd(&self) -> impl AsFd + '_ {
        &self.dir
    }

    fn open_with(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        fs::openat2(
            &self.dir,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
    }

    /// Open for reading, symlinks followed inside BootExt only.
    pub fn open_read(&self, rel: &str) -> Result<OwnedFd, Errno> {
        self.open_with(rel, OFlags::RDONLY)
    }

    /// An `O_PATH` handle (for bind mounts and stat).
    pub fn open_path(&self, rel: &str) -> Result<OwnedFd, Errno> {
        self.open_with(rel, OFlags::PATH)
    }

    /// The type of `rel` itself, not following a final symlink (its parents are
    /// still resolved beneath BootExt).
    pub fn lstat_type(&self, rel: &str) -> Result<FileType, Errno> {
        let (parent, name) = split_parent(rel);
        let parent_fd = self.open_with(parent, OFlags::PATH | OFlags::DIRECTORY)?;
        let st = fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileType::from_raw_mode(st.st_mode))
    }

    pub fn readlink(&self, rel: &str) -> Result<String, Errno> {
        let (parent, name) = split_parent(rel);
        let parent_fd = self.open_with(parent, OFlags::PATH | OFlags::DIRECTORY)?;
        let target = fs::readlinkat(&parent_fd, name, Vec::new())?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Path of an opened file relative to BootExt (`System/v2.squashfs`), from the
    /// kernel's view of the descriptor, so links are shown resolved.
    pub fn relative_of(&self, fd: impl AsFd) -> Option<String> {
        let p = fd_path(fd).ok()?;
        p.strip_prefix(&self.path)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    }

    /// Names in a directory of BootExt, sorted. Missing directory: empty.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, Errno> {
        let fd = match self.open_with(rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Err(Errno::NOENT) => return Ok(Vec::new()),
            other => other?,
        };
        let mut names = Vec::new();
        for entry in fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A small text file (the manifest), at most `max` bytes. `Ok(None)` if absent.
    pub fn read_small(&self, rel: &str, max: u64) -> Result<Option<String>, String> {
        let fd = match self.open_read(rel) {
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(format!("{rel}: {}", super::errno_text(e))),
            Ok(fd) => fd,
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(max)
            .read_to_string(&mut text)
            .map_err(|e| format!("{rel}: {e}"))?;
        Ok(Some(text))
    }
}

fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => (".", rel),
    }
}
