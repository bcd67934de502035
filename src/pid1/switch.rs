//! The hand-off: move the API filesystems into the new root, free the initramfs,
//! switch root and exec the real init.

use super::Fatal;
use super::logger::restore_printk_devkmsg;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// What is tried, in order, when the command line has no `init=`.
pub const DEFAULT_INIT_CANDIDATES: [&str; 3] = [
    "/usr/lib/systemd/systemd",
    "/lib/systemd/systemd",
    "/sbin/init",
];

/// Mounts that follow the system into the new root.
const MOVED_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The init candidates: `init=` from the command line replaces the defaults.
pub fn init_candidates(init_param: Option<&str>) -> Vec<String> {
    match init_param {
        Some(p) if !p.is_empty() => vec![p.to_string()],
        _ => DEFAULT_INIT_CANDIDATES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// Why `candidate` is not a usable init inside the root opened as `root`; symlinks
/// are followed inside that root (an absolute link target means the new root's `/`).
fn check_candidate(root: &OwnedFd, candidate: &str) -> Result<(), String> {
    let Some(relative) = candidate.strip_prefix('/') else {
        return Err(format!("{candidate}: not an absolute path"));
    };
    let fd = rustix::fs::openat2(
        root,
        relative,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .map_err(|e| format!("{candidate}: {}", describe(e)))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("{candidate}: {e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(format!("{candidate}: not a regular file"));
    }
    if st.st_mode & 0o111 == 0 {
        return Err(format!(
            "{candidate}: not executable (mode {:o})",
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn describe(e: Errno) -> String {
    match e {
        Errno::NOENT => "does not exist (or is a dangling symlink)".into(),
        Errno::NOTDIR => "a path component is not a directory".into(),
        Errno::LOOP => "too many levels of symlinks".into(),
        other => other.to_string(),
    }
}

/// The first candidate that is an executable file inside `new_root` (following
/// symlinks within the new root, as the kernel will after the switch).
pub fn find_init(new_root: &Path, candidates: &[&str]) -> Result<String, Fatal> {
    let list = candidates.join(", ");
    let fix = "boot a system image that contains systemd (or /sbin/init), or name the \
               program with init=PATH on the kernel command line";
    let root = rustix::fs::open(
        new_root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Fatal::new(
            format!("the new root {}", new_root.display()),
            format!("it cannot be opened: {e}"),
            "this is a bug in the boot sequence: report it",
        )
    })?;
    let mut reasons = Vec::new();
    for candidate in candidates {
        match check_candidate(&root, candidate) {
            Ok(()) => return Ok(candidate.to_string()),
            Err(reason) => reasons.push(reason),
        }
    }
    let found = if reasons.is_empty() {
        "no candidate to try".to_string()
    } else {
        reasons.join("; ")
    };
    Err(Fatal::new(
        format!("an init program in the system image ({list})"),
        found,
        fix,
    ))
}

/// Removes everything under `dir` that lives on `dir`'s own filesystem: it never
/// crosses a mount point (an entry on another device is left, with everything below
/// it) and never follows symlinks. `dir` itself stays. Returns the entries that
/// could not be removed (as messages); an empty list means all went.
pub fn remove_tree_same_dev(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    match rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => match rustix::fs::fstat(&fd) {
            Ok(st) => clear_dir(&fd, st.st_dev, &dir.display().to_string(), &mut errors),
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        },
        Err(e) => errors.push(format!("{}: {e}", dir.display())),
    }
    errors
}

fn clear_dir(dirfd: &OwnedFd, dev: u64, shown: &str, errors: &mut Vec<String>) {
    // Read every name first, then delete: no reading a directory while it changes.
    let mut names: Vec<CString> = Vec::new();
    match Dir::read_from(dirfd) {
        Ok(dir) => {
            for entry in dir {
                match entry {
                    Ok(entry) => {
                        let name = entry.file_name();
                        if name != c"." && name != c".." {
                            names.push(name.to_owned());
                        }
                    }
                    Err(e) => {
                        errors.push(format!("{shown}: reading: {e}"));
                        break;
                    }
                }
            }
        }
        Err(e) => {
            errors.push(format!("{shown}: {e}"));
            return;
        }
    }
    for name in names {
        let path = format!("{}/{}", shown.trim_end_matches('/'), name.to_string_lossy());
        let st = match rustix::fs::statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                errors.push(format!("{path}: {e}"));
                continue;
            }
        };
        if st.st_dev != dev {
            continue; // a mount point: another filesystem, not ours to delete
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            match rustix::fs::openat(
                dirfd,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => clear_dir(&sub, dev, &path, errors),
                Err(e) => {
                    errors.push(format!("{path}: {e}"));
                    continue;
                }
            }
            if let Err(e) = rustix::fs::unlinkat(dirfd, &name, AtFlags::REMOVEDIR) {
                // A directory holding a mount point below it stays, as it must.
                if e != Errno::NOTEMPTY && e != Errno::BUSY {
                    errors.push(format!("{path}: {e}"));
                }
            }
        } else if let Err(e) = rustix::fs::unlinkat(dirfd, &name, AtFlags::empty()) {
            errors.push(format!("{path}: {e}"));
        }
    }
}

fn dev_of(path: &str) -> Option<u64> {
    rustix::fs::stat(path).ok().map(|st| st.st_dev)
}

/// True when `/` is the initramfs (ramfs or tmpfs), the only root we ever empty.
fn root_is_initramfs() -> bool {
    use linux_raw_sys::general::{RAMFS_MAGIC, TMPFS_MAGIC};
    match rustix::fs::statfs("/") {
        Ok(s) => {
            let magic = s.f_type as u64;
            magic == u64::from(RAMFS_MAGIC) || magic == u64::from(TMPFS_MAGIC)
        }
        Err(_) => false,
    }
}

fn changed(step: &str, e: impl std::fmt::Display) -> Fatal {
    Fatal::new(
        format!("to switch to the new root ({step})"),
        format!("it failed: {e}; the initramfs may be partly dismantled"),
        "this is a bug or a kernel without the needed support: report this message",
    )
}

/// Hands off to the real init in `new_root` (a mount point): checks that one of
/// `init_candidates` exists there before changing anything, moves `/dev`, `/proc`,
/// `/sys` and `/run` into it, empties the initramfs (never crossing a mount point),
/// makes `new_root` the root, restores `printk_devkmsg` and execs the init with
/// `argv_tail` as its arguments and the environment the kernel passed (plus `PATH`
/// and `TERM=linux` when missing). Returns only on failure.
pub fn switch_root(
    new_root: &Path,
    init_candidates: &[&str],
    argv_tail: &[String],
) -> Result<Infallible, Fatal> {
    let init = find_init(new_root, init_candidates)?;
    let root_dev = dev_of("/").ok_or_else(|| changed("stat /", "no answer"))?;
    let new_dev = rustix::fs::stat(new_root)
        .map_err(|e| changed(&format!("stat {}", new_root.display()), e))?
        .st_dev;
    if new_dev == root_dev {
        return Err(Fatal::new(
            format!("the new root {} to be a mount point", new_root.display()),
            "it is on the same filesystem as the initramfs",
            "this is a bug in the boot sequence: report it",
        ));
    }
    log::info!("handing off to {init} in {}", new_root.display());

    for m in MOVED_MOUNTS {
        if dev_of(m).is_none_or(|d| d == root_dev) {
            log::warn!("{m} is not mounted, so it is not moved into the new root");
            continue;
        }
        let target = new_root.join(m.trim_start_matches('/'));
        match rustix::fs::mkdir(&target, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(changed(&format!("create {}", target.display()), e)),
        }
        rustix::mount::mount_move(m, &target)
            .map_err(|e| changed(&format!("move {m} to {}", target.display()), e))?;
    }

    if root_is_initramfs() {
        let errors = remove_tree_same_dev(Path::new("/"));
        if !errors.is_empty() {
            log::warn!(
                "{} initramfs entries could not be freed, first: {}",
                errors.len(),
                errors.first().map(String::as_str).unwrap_or("")
            );
        }
    } else {
        log::warn!("/ is not a ramfs or tmpfs: leaving its contents alone");
    }

    rustix::process::chdir(new_root)
        .map_err(|e| changed(&format!("chdir {}", new_root.display()), e))?;
    rustix::mount::mount_move(".", "/")
        .map_err(|e| changed(&format!("move {} onto /", new_root.display()), e))?;
    rustix::process::chroot(".").map_err(|e| changed("chroot", e))?;
    rustix::process::chdir("/").map_err(|e| changed("chdir /", e))?;
    restore_printk_devkmsg();

    let mut cmd = Command::new(&init);
    cmd.arg0(&init).args(argv_tail);
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    if std::env::var_os("TERM").is_none() {
        cmd.env("TERM", "linux");
    }
    let e = cmd.exec();
    Err(Fatal::new(
        format!("to start {init} in the new root"),
        format!(
            "execve failed: {e} (errno {})",
            e.raw_os_error().unwrap_or(0)
        ),
        format!(
            "make {init} an executable for this machine (its interpreter and libraries \
             must be in the image), or choose another with init=PATH"
        ),
    ))
}

/// True when `path` is on a different filesystem than `/` (for callers that want to
/// check a new root early).
pub fn is_mount_point(path: &Path) -> bool {
    let Some(root) = dev_of("/") else {
        return false;
    };
    let c = CString::new(path.as_os_str().as_bytes()).ok();
    c.and_then(|c| rustix::fs::statat(CWD.as_fd(), c.as_c_str(), AtFlags::empty()).ok())
        .is_some_and(|st| st.st_dev != root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("overboot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn exe(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn init_param_replaces_the_defaults() {
        assert_eq!(init_candidates(None), DEFAULT_INIT_CANDIDATES.to_vec());
        assert_eq!(init_candidates(Some("")), DEFAULT_INIT_CANDIDATES.to_vec());
        assert_eq!(init_candidates(Some("/bin/sh")), vec!["/bin/sh"]);
    }

    #[test]
    fn init_symlinks_are_followed_inside_the_new_root() {
        let root = tmp("findinit");
        exe(&root.join("lib/overboot-only-here/systemd"));
        fs::create_dir_all(root.join("sbin")).unwrap();
        symlink("/lib/overboot-only-here/systemd", root.join("sbin/init")).unwrap();
        // Absolute link into the new root: found although the host has no such file.
        assert!(!Path::new("/lib/overboot-only-here/systemd").exists());
        assert_eq!(
            find_init(&root, &DEFAULT_INIT_CANDIDATES).unwrap(),
            "/sbin/init"
        );
        // A link to a host file that the new root lacks is not an init.
        symlink("/bin/sh", root.join("sbin/host-sh")).unwrap();
        assert!(Path::new("/bin/sh").exists());
        let e = find_init(&root, &["/sbin/host-sh"]).unwrap_err();
        assert!(e.found.contains("/sbin/host-sh: does not exist"), "{e}");
        // `..` cannot climb out of the new root either.
        symlink("../../../../../../bin/sh", root.join("sbin/climb")).unwrap();
        assert!(find_init(&root, &["/sbin/climb"]).is_err());
        // Not executable, a directory, relative: all refused with a reason each.
        fs::write(root.join("sbin/plain"), "x").unwrap();
        fs::set_permissions(root.join("sbin/plain"), fs::Permissions::from_mode(0o644)).unwrap();
        let e = find_init(&root, &["/sbin/plain", "/sbin", "sbin/init"]).unwrap_err();
        assert!(e.found.contains("/sbin/plain: not executable"), "{e}");
        assert!(e.found.contains("/sbin: not a regular file"), "{e}");
        assert!(e.found.contains("sbin/init: not an absolute path"), "{e}");
        assert!(e.what.contains("/sbin/plain, /sbin, sbin/init"), "{e}");
        // The first good candidate wins.
        exe(&root.join("usr/lib/systemd/systemd"));
        assert_eq!(
            find_init(&root, &DEFAULT_INIT_CANDIDATES).unwrap(),
            "/usr/lib/systemd/systemd"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn removal_stays_on_one_filesystem_and_never_follows_links() {
        let top = tmp("rmtree");
        let outside = tmp("rmtree-outside");
        fs::write(outside.join("precious"), "keep").unwrap();
        fs::create_dir_all(top.join("a/b/c")).unwrap();
        fs::write(top.join("a/b/c/file"), "x").unwrap();
        fs::write(top.join("init"), "x").unwrap();
        symlink(&outside, top.join("a/link-out")).unwrap();
        // A mounted filesystem inside, as the new root is inside the initramfs.
        fs::create_dir_all(top.join("newroot")).unwrap();
        rustix::mount::mount(
            "tmpfs",
            top.join("newroot"),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mounting a tmpfs (the test needs root)");
        fs::write(top.join("newroot/system-file"), "keep").unwrap();
        assert!(is_mount_point(&top.join("newroot")));
        assert!(!is_mount_point(&top.join("a")));

        let errors = remove_tree_same_dev(&top);

        let survived = fs::read_to_string(top.join("newroot/system-file"));
        rustix::mount::unmount(top.join("newroot"), rustix::mount::UnmountFlags::empty()).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(survived.unwrap(), "keep");
        assert_eq!(
            fs::read_to_string(outside.join("precious")).unwrap(),
            "keep"
        );
        let left: Vec<_> = fs::read_dir(&top)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec!["newroot"]);
        fs::remove_dir_all(&top).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}
