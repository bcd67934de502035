//! The thin layer that touches the kernel: confined lookups on BootExt, targets
//! resolved inside the new root, loop devices, and mounts. Everything else is pure.

pub mod atomic;
pub mod confined;
pub mod dm;
pub mod loopdev;
pub mod mounts;
pub mod netlink;
pub mod resolve;
pub mod toram;

use rustix::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

/// The path the kernel gives for an open file descriptor (needs `/proc`).
pub fn fd_path(fd: impl AsFd) -> std::io::Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    std::fs::read_link(link)
}

/// An errno as the short text operators know (`ENOENT: No such file or directory`).
pub fn errno_text(e: rustix::io::Errno) -> String {
    std::io::Error::from(e).to_string()
}
