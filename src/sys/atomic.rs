//! Durable, atomic replacement of small files and symlinks in one directory, with
//! `*at` system calls on an open directory descriptor (so a path can never lead
//! elsewhere). Each change is: the new content under a temporary name, `fsync` of
//! the file, `renameat` over the old name, `fsync` of the directory. After a power
//! cut the name holds the old or the new content, never a mix or nothing; a left-over
//! temporary is replaced by the next write.
//!
//! Symlinks cannot be fsynced by themselves; the `fsync` of the directory after the
//! rename commits them (on ext4 it commits the journal transaction that holds both
//! the new inode and the rename; on filesystems without a journal it writes the
//! directory and the inode).

use super::errno_text;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// Open a directory for `*at` changes and `fsync` (not `O_PATH`: fsync needs a real
/// descriptor). `dir` is a descriptor from a confined lookup.
pub fn check_dir(dir: &OwnedFd) -> Result<(), String> {
    let st = fs::fstat(dir).map_err(errno_text)?;
    if fs::FileType::from_raw_mode(st.st_mode) != fs::FileType::Directory {
        return Err("not a directory".into());
    }
    Ok(())
}

fn ctx(what: &str, name: &str, e: Errno) -> String {
    format!("{what} {name}: {}", errno_text(e))
}

fn remove_if_there(dir: BorrowedFd<'_>, name: &str) -> Result<(), String> {
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(ctx("cannot remove", name, e)),
    }
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8], name: &str) -> Result<(), String> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(format!("cannot write {name}: wrote nothing")),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(ctx("cannot write", name, e)),
        }
    }
    Ok(())
}

/// Replace `dir/name` with `bytes`, atomically and durably (temporary `tmp`).
pub fn write_file(dir: impl AsFd, name: &str, tmp: &str, bytes: &[u8]) -> Result<(), String> {
    let dir = dir.as_fd();
    remove_if_there(dir, tmp)?;
    let fd = fs::openat(
        dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| ctx("cannot create", tmp, e))?;
    let written = write_all(&fd, bytes, tmp)
        .and_then(|()| fs::fsync(&fd).map_err(|e| ctx("cannot fsync", tmp, e)));
    drop(fd);
    if let Err(e) = written {
        let _ = fs::unlinkat(dir, tmp, AtFlags::empty());
        return Err(e);
    }
    if let Err(e) = fs::renameat(dir, tmp, dir, name) {
        let _ = fs::unlinkat(dir, tmp, AtFlags::empty());
        return Err(format!("cannot rename {tmp} to {name}: {}", errno_text(e)));
    }
    fs::fsync(dir).map_err(|e| ctx("cannot fsync the directory of", name, e))
}

/// Make `dir/name` a symlink to `target`, replacing what is there atomically
/// (temporary `tmp`), then fsync the directory.
pub fn replace_symlink(dir: impl AsFd, name: &str, tmp: &str, target: &str) -> Result<(), String> {
    let dir = dir.as_fd();
    remove_if_there(dir, tmp)?;
    fs::symlinkat(target, dir, tmp).map_err(|e| ctx("cannot create the link", tmp, e))?;
    if let Err(e) = fs::renameat(dir, tmp, dir, name) {
        let _ = fs::unlinkat(dir, tmp, AtFlags::empty());
        return Err(format!("cannot rename {tmp} to {name}: {}", errno_text(e)));
    }
    fs::fsync(dir).map_err(|e| ctx("cannot fsync the directory of", name, e))
}

/// Remove `dir/name` (absent is fine), then fsync the directory.
pub fn remove(dir: impl AsFd, name: &str) -> Result<(), String> {
    let dir = dir.as_fd();
    remove_if_there(dir, name)?;
    fs::fsync(dir).map_err(|e| ctx("cannot fsync the directory of", name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> (std::path::PathBuf, OwnedFd) {
        let p = std::env::temp_dir().join(format!(
            "overboot-atomic-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let fd = fs::open(&p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        (p, fd)
    }

    #[test]
    fn replace_file_link_and_remove() {
        let (p, fd) = tmpdir();
        check_dir(&fd).unwrap();
        write_file(&fd, "f", ".f.tmp", b"one").unwrap();
        // A stale temporary (a power cut) is replaced, not an obstacle.
        std::fs::write(p.join(".f.tmp"), "junk").unwrap();
        write_file(&fd, "f", ".f.tmp", b"two").unwrap();
        assert_eq!(std::fs::read_to_string(p.join("f")).unwrap(), "two");
        assert!(!p.join(".f.tmp").exists());
        replace_symlink(&fd, "l", ".l.tmp", "a.squashfs").unwrap();
        replace_symlink(&fd, "l", ".l.tmp", "b.squashfs").unwrap();
        assert_eq!(
            std::fs::read_link(p.join("l")).unwrap().to_str(),
            Some("b.squashfs")
        );
        remove(&fd, "f").unwrap();
        remove(&fd, "f").unwrap();
        assert!(!p.join("f").exists());
        // A directory where the file goes: refused, temporary cleaned up.
        std::fs::create_dir(p.join("d")).unwrap();
        std::fs::write(p.join("d/x"), "x").unwrap();
        let e = write_file(&fd, "d", ".d.tmp", b"x").unwrap_err();
        assert!(e.contains("cannot rename"), "{e}");
        assert!(!p.join(".d.tmp").exists());
        std::fs::remove_dir_all(&p).unwrap();
    }
}
