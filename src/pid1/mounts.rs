//! The first mounts PID 1 makes: `/proc`, `/sys`, `/dev`, `/run`.

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::mount::{MountFlags, mount};
use std::ffi::CStr;

struct EarlyMount {
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: Option<&'static CStr>,
}

fn early_mount_table() -> [EarlyMount; 4] {
    let hard = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    [
        EarlyMount {
            target: "/proc",
            fstype: "proc",
            flags: hard,
            data: None,
        },
        EarlyMount {
            target: "/sys",
            fstype: "sysfs",
            flags: hard,
            data: None,
        },
        EarlyMount {
            target: "/dev",
            fstype: "devtmpfs",
            flags: MountFlags::NOSUID,
            data: Some(c"mode=0755"),
        },
        EarlyMount {
            target: "/run",
            fstype: "tmpfs",
            flags: MountFlags::NOSUID | MountFlags::NODEV,
            data: Some(c"mode=755"),
        },
    ]
}

/// Mounts `/proc`, `/sys`, `/dev` (devtmpfs, mode 0755) and `/run` (tmpfs, mode 755,
/// nodev, nosuid), creating the directories. A directory that already holds a mount
/// (a kernel that mounted devtmpfs itself, a second call) is left as it is.
pub fn early_mounts() -> Result<(), String> {
    let root = rustix::fs::stat("/").map_err(|e| format!("cannot stat /: {e}"))?;
    for m in early_mount_table() {
        match rustix::fs::mkdir(m.target, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(format!("cannot create {}: {e}", m.target)),
        }
        // Something already mounted there: a different device than the root's.
        if let Ok(st) = rustix::fs::stat(m.target)
            && st.st_dev != root.st_dev
        {
            log::debug!("{} is already mounted", m.target);
            continue;
        }
        match mount(m.fstype, m.target, m.fstype, m.flags, m.data) {
            Ok(()) | Err(Errno::BUSY) => {}
            Err(e) => {
                return Err(format!(
                    "cannot mount {} ({}) on {}: {e}; the kernel needs {} support built in",
                    m.fstype, m.fstype, m.target, m.fstype
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_design() {
        let t = early_mount_table();
        let targets: Vec<_> = t.iter().map(|m| m.target).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/run"]);
        assert_eq!(t[2].fstype, "devtmpfs");
        assert_eq!(t[2].data, Some(c"mode=0755"));
        assert_eq!(t[3].fstype, "tmpfs");
        assert!(t[3].flags.contains(MountFlags::NODEV | MountFlags::NOSUID));
    }
}
