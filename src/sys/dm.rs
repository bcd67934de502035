//! device-mapper through `/dev/mapper/control` (include/uapi/linux/dm-ioctl.h):
//! create a device, load a one-target table, resume it; remove it. linux-raw-sys has
//! no dm header, so the two structs are written out here with size checks.
//!
//! A device made by [`create`] is removed with `DM_DEFERRED_REMOVE` when its
//! [`Device`] is dropped: at once if nothing holds it (a failed mount), else when the
//! last holder goes (the mount, at shutdown), as loop devices do with autoclear.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, ioctl};

/// `DM_NAME_LEN`, `DM_UUID_LEN`, `DM_MAX_TYPE_NAME`.
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
const TYPE_LEN: usize = 16;

/// `struct dm_ioctl`: the header of every dm ioctl, followed by its data.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    /// Bytes of this struct plus its data.
    data_size: u32,
    /// Where the data starts, from the start of this struct.
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; NAME_LEN],
    uuid: [u8; UUID_LEN],
    data: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<DmIoctl>() == 312);

/// `struct dm_target_spec`, followed by the NUL-terminated parameter string.
#[repr(C)]
#[derive(Clone, Copy)]
struct TargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    /// Offset of the next spec from the start of this one.
    next: u32,
    target_type: [u8; TYPE_LEN],
}
const _: () = assert!(core::mem::size_of::<TargetSpec>() == 40);

/// `DM_VERSION_MAJOR`: the kernel accepts any minor up to its own.
const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`, `DM_DEFERRED_REMOVE`.
const READONLY_FLAG: u32 = 1 << 0;
const DEFERRED_REMOVE: u32 = 1 << 17;

/// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)` with `DM_IOCTL` 0xfd.
const fn opcode(nr: u32) -> Opcode {
    (3 << 30 | (core::mem::size_of::<DmIoctl>() as u32) << 16 | 0xfd << 8 | nr) as Opcode
}
const DEV_CREATE: u32 = 3;
const DEV_REMOVE: u32 = 4;
const DEV_SUSPEND: u32 = 6;
const TABLE_LOAD: u32 = 9;
const _: () = assert!(opcode(0) as u32 == 0xc138_fd00);

/// One dm ioctl: the header and its data in one 8-byte-aligned buffer.
struct Call {
    nr: u32,
    buf: Vec<u64>,
}

// SAFETY: every dm ioctl reads `data_size` bytes from the pointer and writes back at
// most as many; `buf` is at least that long (set in `Call::new`).
unsafe impl Ioctl for &mut Call {
    type Output = ();
    const IS_MUTATING: bool = true;
    fn opcode(&self) -> Opcode {
        opcode(self.nr)
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        self.buf.as_mut_ptr().cast()
    }
    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut core::ffi::c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

impl Call {
    /// A header naming `name`, with `data` after it.
    fn new(nr: u32, name: &str, flags: u32, targets: u32, data: &[u8]) -> Call {
        let head = core::mem::size_of::<DmIoctl>();
        let total = head + data.len();
        // SAFETY: DmIoctl is plain integers and byte arrays: all-zero is valid.
        let mut h: DmIoctl = unsafe { core::mem::zeroed() };
        h.version = VERSION;
        h.data_size = total as u32;
        h.data_start = head as u32;
        h.target_count = targets;
        h.flags = flags;
        for (d, s) in h.name.iter_mut().zip(name.bytes().take(NAME_LEN - 1)) {
            *d = s;
        }
        let mut buf = vec![0u64; total.div_ceil(8)];
        let bytes = as_bytes_mut(&mut buf);
        // SAFETY: DmIoctl is repr(C) plain data of `head` bytes; bytes is longer.
        let src = unsafe { core::slice::from_raw_parts((&h as *const DmIoctl).cast::<u8>(), head) };
        bytes[..head].copy_from_slice(src);
        bytes[head..total].copy_from_slice(data);
        Call { nr, buf }
    }

    /// The `dev` field the kernel wrote back.
    fn dev(&self) -> u64 {
        let bytes = as_bytes(&self.buf);
        let mut d = [0u8; 8];
        d.copy_from_slice(&bytes[40..48]);
        u64::from_ne_bytes(d)
    }
}

fn as_bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no invalid bit patterns and u8 no alignment needs.
    unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len() * 8) }
}

fn as_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { core::slice::from_raw_parts(buf.as_ptr().cast(), buf.len() * 8) }
}

/// A created dm device; removed (deferred) when dropped.
pub struct Device {
    control: OwnedFd,
    pub name: String,
    /// `/dev/dm-N`.
    pub path: String,
    pub major: u32,
    pub minor: u32,
}

impl Drop for Device {
    fn drop(&mut self) {
        let mut call = Call::new(DEV_REMOVE, &self.name, DEFERRED_REMOVE, 0, &[]);
        // SAFETY: `call` holds a header of `data_size` bytes.
        if let Err(e) = unsafe { ioctl(&self.control, &mut call) } {
            log::warn!(
                "DM_DEV_REMOVE (deferred) of {}: {}",
                self.name,
                super::errno_text(e)
            );
        }
    }
}

fn failed(what: &str, name: &str, e: Errno) -> String {
    format!("{what} on {name}: {}", super::errno_text(e))
}

/// The target spec of one table line, with its parameters.
fn table_data(target: &str, sectors: u64, params: &str) -> Vec<u8> {
    let head = core::mem::size_of::<TargetSpec>();
    let len = (head + params.len() + 1).div_ceil(8) * 8;
    // SAFETY: plain integers and bytes: all-zero is valid.
    let mut spec: TargetSpec = unsafe { core::mem::zeroed() };
    spec.length = sectors;
    spec.next = len as u32;
    for (d, s) in spec
        .target_type
        .iter_mut()
        .zip(target.bytes().take(TYPE_LEN - 1))
    {
        *d = s;
    }
    let mut out = vec![0u8; len];
    // SAFETY: TargetSpec is repr(C) plain data of `head` bytes.
    let src =
        unsafe { core::slice::from_raw_parts((&spec as *const TargetSpec).cast::<u8>(), head) };
    out[..head].copy_from_slice(src);
    out[head..head + params.len()].copy_from_slice(params.as_bytes());
    out
}

/// Create the read-only device `name` with one `target` line of `sectors` sectors and
/// `params`, and make it live. Any failure removes what was made.
pub fn create(name: &str, target: &str, sectors: u64, params: &str) -> Result<Device, String> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') {
        return Err(format!("bad device-mapper name '{name}'"));
    }
    let control = rustix::fs::open(
        "/dev/mapper/control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "cannot open /dev/mapper/control: {} (is dm-mod loaded? mkinitramfs adds dm-verity)",
            super::errno_text(e)
        )
    })?;
    let mut call = Call::new(DEV_CREATE, name, 0, 0, &[]);
    // SAFETY: `call` holds a header of `data_size` bytes.
    unsafe { ioctl(&control, &mut call) }.map_err(|e| failed("DM_DEV_CREATE", name, e))?;
    // new_encode_dev(): minor's low byte, major, minor's high bits.
    let dev = call.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) as u32,
        ((dev & 0xff) | ((dev >> 12) & 0xfff_ff00)) as u32,
    );
    // From here on, dropping `device` removes it.
    let device = Device {
        control,
        name: name.to_string(),
        path: format!("/dev/dm-{minor}"),
        major,
        minor,
    };
    let data = table_data(target, sectors, params);
    let mut load = Call::new(TABLE_LOAD, name, READONLY_FLAG, 1, &data);
    // SAFETY: header and one target spec, `data_size` bytes.
    unsafe { ioctl(&device.control, &mut load) }
        .map_err(|e| failed("DM_TABLE_LOAD", name, e) + &format!(" (table: {target} {params})"))?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
    let mut resume = Call::new(DEV_SUSPEND, name, 0, 0, &[]);
    // SAFETY: `resume` holds a header of `data_size` bytes.
    unsafe { ioctl(&device.control, &mut resume) }
        .map_err(|e| failed("DM_DEV_SUSPEND (resume)", name, e))?;
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_spec_layout() {
        let call = Call::new(DEV_CREATE, "overboot-x", READONLY_FLAG, 1, &[1, 2, 3]);
        let b = as_bytes(&call.buf);
        assert_eq!(&b[0..4], &4u32.to_ne_bytes());
        assert_eq!(&b[12..16], &315u32.to_ne_bytes(), "data_size");
        assert_eq!(&b[16..20], &312u32.to_ne_bytes(), "data_start");
        assert_eq!(&b[20..24], &1u32.to_ne_bytes(), "target_count");
        assert_eq!(&b[28..32], &READONLY_FLAG.to_ne_bytes(), "flags");
        assert_eq!(&b[48..58], b"overboot-x", "name");
        assert_eq!(&b[312..315], &[1, 2, 3]);
        assert_eq!(opcode(TABLE_LOAD) as u32, 0xc138_fd09);

        let spec = table_data("verity", 2048, "1 7:0 7:1");
        assert_eq!(spec.len(), 56, "40 + 9 + NUL, rounded to 8");
        assert_eq!(&spec[8..16], &2048u64.to_ne_bytes(), "length");
        assert_eq!(&spec[20..24], &56u32.to_ne_bytes(), "next");
        assert_eq!(&spec[24..30], b"verity");
        assert_eq!(&spec[40..49], b"1 7:0 7:1");
        assert_eq!(spec[49], 0);
    }
}
