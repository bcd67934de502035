//! Lookups confined to BootExt: every path is resolved with `openat2` and
//! `RESOLVE_BENEATH`, so a symlink or `..` that leads outside the volume fails with
//! `EXDEV` instead of reaching the initramfs or the host.
//!
//! Nothing opened here can block: a file is first opened `O_PATH` (which opens
//! nothing), its type checked, and only a regular file is reopened for reading
//! through `/proc/self/fd` (the same inode, no second lookup). A FIFO, socket or
//! device node put where a file is expected is refused by name, so PID 1 never
//! waits in `open()` for a writer that will not come.

use super::fd_path;
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a path on BootExt cannot be used, in operator words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The kernel refused the lookup (`EXDEV`: it leads outside BootExt).
    Errno(Errno),
    /// It exists but is not of the type expected (a FIFO where a file should be).
    Kind { found: FileType, want: FileType },
}

impl From<Errno> for Lookup {
    fn from(e: Errno) -> Self {
        Lookup::Errno(e)
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Errno(Errno::XDEV) => f.write_str("leads outside BootExt"),
            Lookup::Errno(Errno::NOENT) => f.write_str("does not exist (a dangling link?)"),
            Lookup::Errno(Errno::LOOP) => f.write_str("too many levels of symlinks (a link loop?)"),
            Lookup::Errno(e) => f.write_str(&super::errno_text(*e)),
            Lookup::Kind { found, want } => {
                write!(f, "is {}, not {}", kind_name(*found), kind_name(*want))
            }
        }
    }
}

/// A file type as the operator knows it.
pub fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a named pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

/// The most a text file on BootExt (the manifest, a checksum list) may hold.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

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

    /// Open a regular file for reading, symlinks followed inside BootExt only;
    /// anything else is refused without being opened (see the module doc).
    pub fn open_file(&self, rel: &str) -> Result<OwnedFd, Lookup> {
        let path = self.open_with(rel, OFlags::PATH)?;
        let st = fs::fstat(&path)?;
        let found = FileType::from_raw_mode(st.st_mode);
        if found != FileType::RegularFile {
            let want = FileType::RegularFile;
            return Err(Lookup::Kind { found, want });
        }
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let reopen = format!("/proc/self/fd/{}", path.as_raw_fd());
        Ok(fs::open(reopen, flags, Mode::empty())?)
    }

    /// Open a directory for listing or `fsync` (`O_DIRECTORY` refuses anything else
    /// before opening it).
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd, Lookup> {
        Ok(self.open_with(rel, OFlags::RDONLY | OFlags::DIRECTORY)?)
    }

    /// An `O_PATH` handle (for bind mounts and stat): opens nothing, cannot block.
    pub fn open_path(&self, rel: &str) -> Result<OwnedFd, Lookup> {
        Ok(self.open_with(rel, OFlags::PATH)?)
    }

    /// `rel` and why it cannot be used, in one line: `DIRS/x leads outside BootExt`.
    /// A name [`Confined::list`] could not give as UTF-8 is named as such.
    pub fn describe(rel: &str, e: Lookup) -> String {
        if e == Lookup::Errno(Errno::NOENT) && rel.contains(char::REPLACEMENT_CHARACTER) {
            return format!(
                "{}: its name is not UTF-8, which overboot cannot use; rename it",
                crate::names::escape(rel)
            );
        }
        format!("{} {e}", crate::names::escape(rel))
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

    /// Names in a directory of BootExt, sorted. Missing directory: empty. A name
    /// that is not UTF-8 comes lossily converted (U+FFFD), so a lookup of it fails
    /// and [`Confined::describe`] says why.
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

    /// A small text file (the manifest, a checksum list, the trial record), whole:
    /// `Ok(None)` if absent; larger than `max` bytes or not UTF-8 is an error, never
    /// a prefix read as if it were the file.
    pub fn read_small(&self, rel: &str, max: u64) -> Result<Option<String>, String> {
        let fd = match self.open_file(rel) {
            Err(Lookup::Errno(Errno::NOENT)) => return Ok(None),
            Err(e) => return Err(format!("{rel} {e}")),
            Ok(fd) => fd,
        };
        let too_big = |size: u64| {
            format!("{rel} is {size} bytes, more than the {max} allowed; it is not read")
        };
        let size = fs::fstat(&fd).map_err(|e| format!("{rel}: {}", super::errno_text(e)))?;
        if size.st_size as u64 > max {
            return Err(too_big(size.st_size as u64));
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{rel}: {e}"))?;
        // It grew between fstat and read.
        if bytes.len() as u64 > max {
            return Err(too_big(bytes.len() as u64));
        }
        String::from_utf8(bytes).map(Some).map_err(|e| {
            format!(
                "{rel} is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            )
        })
    }
}

fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => (".", rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_is_whole_or_an_error() {
        let p = std::env::temp_dir().join(format!("overboot-confined-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("ok"), "12345").unwrap();
        // A two-byte character cut by the limit is not "invalid UTF-8": too big.
        std::fs::write(p.join("cut"), "1234\u{e9}").unwrap();
        std::fs::write(p.join("latin1"), b"caf\xe9").unwrap();
        fs::mknodat(
            fs::CWD,
            p.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let be = Confined::open(&p).unwrap();
        assert_eq!(be.read_small("ok", 5).unwrap().as_deref(), Some("12345"));
        assert_eq!(be.read_small("absent", 5).unwrap(), None);
        let cut = be.read_small("cut", 5).unwrap_err();
        assert_eq!(
            cut,
            "cut is 6 bytes, more than the 5 allowed; it is not read"
        );
        let latin1 = be.read_small("latin1", 9).unwrap_err();
        assert!(latin1.contains("not UTF-8"), "{latin1}");
        let fifo = be.read_small("fifo", 9).unwrap_err();
        assert_eq!(fifo, "fifo is a named pipe, not a regular file");
        assert!(matches!(
            be.open_dir("ok"),
            Err(Lookup::Errno(Errno::NOTDIR))
        ));
        std::fs::remove_dir_all(&p).unwrap();
    }
}
