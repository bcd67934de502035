//! Mounts through the new mount API: a filesystem is configured on an `fsopen`
//! context, made a detached mount with `fsmount`, and attached with `move_mount` onto
//! a target *descriptor* that was resolved inside the new root, so no path is looked
//! up twice and no mount lands anywhere else.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{CWD, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    self, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags,
    MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use std::path::Path;

use super::errno_text;

/// Read what the filesystem logged on its context (`e overlay: ...`), to explain
/// an `EINVAL` better than the errno alone.
fn context_log(fs: &OwnedFd) -> String {
    let mut lines = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => lines.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            _ => break,
        }
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!(" ({})", lines.join("; "))
    }
}

/// Configure and create a filesystem; return it as a detached mount.
/// `options`: `(key, Some(value))` for string options, `(key, None)` for flags.
pub fn new_mount(
    fstype: &str,
    source: &str,
    options: &[(&str, Option<&str>)],
    attrs: MountAttrFlags,
) -> Result<OwnedFd, String> {
    let fs = mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        format!(
            "fsopen({fstype}): {} (is the {fstype} module loaded?)",
            errno_text(e)
        )
    })?;
    let fail =
        |what: String, e: Errno| format!("{fstype} {what}: {}{}", errno_text(e), context_log(&fs));
    mount::fsconfig_set_string(&fs, "source", source)
        .map_err(|e| fail(format!("source={source}"), e))?;
    for (key, value) in options {
        match value {
            Some(v) => mount::fsconfig_set_string(&fs, *key, *v),
            None => mount::fsconfig_set_flag(&fs, *key),
        }
        .map_err(|e| fail(format!("option {key}"), e))?;
    }
    mount::fsconfig_create(&fs).map_err(|e| fail(format!("from {source}"), e))?;
    mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| fail("fsmount".into(), e))
}

/// A detached copy of the mount at `source` (a bind mount not yet attached).
pub fn clone_tree(source: &impl AsFd) -> Result<OwnedFd, Errno> {
    mount::open_tree(
        source,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
}

/// Attach a detached mount onto an opened target.
pub fn attach(mnt: &impl AsFd, target: &impl AsFd) -> Result<(), Errno> {
    mount::move_mount(
        mnt,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Move the mount at `from` onto an opened target.
pub fn move_onto(from: &Path, target: &impl AsFd) -> Result<(), Errno> {
    mount::move_mount(
        CWD,
        from,
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Lazily detach the mount at `path` and everything below it.
pub fn detach(path: &Path) -> Result<(), Errno> {
    mount::unmount(path, UnmountFlags::DETACH)
}

/// Make the mount at `path` private, so that moves under it are allowed and nothing
/// propagates out of it.
pub fn make_private(path: &Path) -> Result<(), Errno> {
    mount::mount_change(path, MountPropagationFlags::PRIVATE)
}

/// Set the flags of the bind mount at `path` to `nodev,nosuid` plus `extra`
/// (`RDONLY`, `NOEXEC`); what is not asked is cleared, `noexec` included. The
/// filesystem under it is untouched.
pub fn remount_bind(path: &Path, extra: MountFlags) -> Result<(), Errno> {
    mount::mount_remount(
        path,
        MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV | extra,
        "",
    )
}

/// Open a directory by path as an `O_PATH` handle.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// A squashfs image on `device`, mounted read-only, `nodev`, `nosuid`, detached.
/// "ro" makes the superblock read-only, so the kernel opens the device read-only.
pub fn squashfs_ro(device: &str) -> Result<OwnedFd, String> {
    new_mount(
        "squashfs",
        device,
        &[("ro", None)],
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
}

/// Mount a filesystem on `target` with the legacy `mount(2)`, whose options may
/// fill a page (`fsconfig` takes 255 bytes a value), resolving the absolute paths in
/// `options` as if `view` were `/`. The new root's mounts are staged in `view` at
/// the places they take in the booted system, so an overlay made with
/// `lowerdir=/mnt/livecd` names in `/proc/mounts` a path that is that mount after
/// the switch. `/` and the working directory are put back before returning.
pub fn mount_seen_from(
    view: &Path,
    target: &impl AsFd,
    fstype: &str,
    options: &str,
) -> Result<(), String> {
    let data = std::ffi::CString::new(options).map_err(|_| "a NUL in the options".to_string())?;
    let root = open_dir(Path::new("/")).map_err(|e| format!("cannot open /: {}", errno_text(e)))?;
    let cwd = open_dir(Path::new(".")).or_else(|_| open_dir(Path::new("/")));
    let cwd = cwd.map_err(|e| format!("cannot open /: {}", errno_text(e)))?;
    rustix::process::chroot(view)
        .map_err(|e| format!("cannot enter {}: {}", view.display(), errno_text(e)))?;
    let mounted = rustix::process::fchdir(target)
        .and_then(|()| mount::mount(fstype, ".", fstype, MountFlags::empty(), data.as_c_str()));
    let back = rustix::process::fchdir(&root)
        .and_then(|()| rustix::process::chroot("."))
        .and_then(|()| rustix::process::fchdir(&cwd));
    match (mounted, back) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(format!(
            "mount({fstype}): {} (the kernel log says why)",
            errno_text(e)
        )),
        (_, Err(e)) => Err(format!(
            "cannot leave {}: {}",
            view.display(),
            errno_text(e)
        )),
    }
}
