//! Loop devices in one step: `LOOP_CTL_GET_FREE`, then a single `LOOP_CONFIGURE` that
//! sets the backing file, read-only, autoclear and direct I/O together. The device is
//! cleared by the kernel when its last user goes away, so a failed mount (this fd
//! closed, nothing else holding it) leaves nothing attached.

use linux_raw_sys::loop_device::{
    LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LO_FLAGS_READ_ONLY, LOOP_CONFIGURE, LOOP_CTL_GET_FREE,
    loop_config,
};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, ioctl};

/// An attached loop device. Keep it until the mount that uses it holds.
pub struct LoopDevice {
    _fd: OwnedFd,
    pub path: String,
}

struct GetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument and returns the device number.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE as Opcode
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        core::ptr::null_mut()
    }
    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::RANGE)
    }
}

struct Configure(loop_config);

// SAFETY: LOOP_CONFIGURE reads a `struct loop_config` and writes nothing back.
unsafe impl Ioctl for Configure {
    type Output = ();
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> Opcode {
        LOOP_CONFIGURE as Opcode
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        (&mut self.0 as *mut loop_config).cast()
    }
    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut core::ffi::c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

fn config(backing: &impl AsFd, name: &str, direct_io: bool) -> loop_config {
    // SAFETY: loop_config is plain data; all-zero is its documented "unset" state.
    let mut cfg: loop_config = unsafe { core::mem::zeroed() };
    cfg.fd = backing.as_fd().as_raw_fd() as u32;
    let mut flags = LO_FLAGS_READ_ONLY as u32 | LO_FLAGS_AUTOCLEAR as u32;
    if direct_io {
        flags |= LO_FLAGS_DIRECT_IO as u32;
    }
    cfg.info.lo_flags = flags;
    // The name shows in /sys/block/loopN/loop/backing_file only as the kernel's own
    // path; lo_file_name is what losetup prints, so give it the BootExt path.
    for (dst, src) in cfg.info.lo_file_name.iter_mut().zip(name.bytes().take(63)) {
        *dst = src;
    }
    cfg
}

/// Attach `backing` (opened read-only) to a free loop device, read-only.
pub fn attach(backing: &impl AsFd, name: &str) -> Result<LoopDevice, String> {
    let control = rustix::fs::open(
        "/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "cannot open /dev/loop-control: {} (is the loop module loaded?)",
            super::errno_text(e)
        )
    })?;
    // Another process may take the same free device between GET_FREE and CONFIGURE:
    // that shows as EBUSY, and we ask again.
    for _ in 0..16 {
        // SAFETY: GetFree matches LOOP_CTL_GET_FREE's calling convention.
        let number = unsafe { ioctl(&control, GetFree) }
            .map_err(|e| format!("no free loop device: {}", super::errno_text(e)))?;
        let path = format!("/dev/loop{number}");
        let dev = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("cannot open {path}: {}", super::errno_text(e)))?;
        let mut result = Ok(());
        for direct_io in [true, false] {
            // SAFETY: Configure carries a fully initialised loop_config.
            result = unsafe { ioctl(&dev, Configure(config(backing, name, direct_io))) };
            // Direct I/O needs a backing filesystem that supports it; without it
            // some kernels refuse with EINVAL instead of falling back.
            if result != Err(Errno::INVAL) {
                break;
            }
        }
        match result {
            Ok(()) => return Ok(LoopDevice { _fd: dev, path }),
            Err(Errno::BUSY) => continue,
            Err(e) => {
                return Err(format!(
                    "LOOP_CONFIGURE on {path} failed: {}",
                    super::errno_text(e)
                ));
            }
        }
    }
    Err("no free loop device after 16 tries (others kept taking them)".into())
}
