//! Find the BootExt volume without udev (DESIGN section 2, step 3).
//!
//! Pure parts: [`fs`] (superblocks → TYPE, LABEL, UUID as blkid prints them),
//! [`parts`] (GPT/MBR → PARTUUID, PARTLABEL), [`uevent`] (message parsing).
//! The thin kernel layer here walks `/sys/class/block`, opens each `/dev` node
//! read-only (creating it from `dev` when devtmpfs has not) and probes it;
//! [`wait_for`] waits for a late disk on kernel uevents with a 1 s rescan as
//! safety net.

pub mod fs;
pub mod parts;
pub mod uevent;

use crate::cmdline::DeviceSpec;
use rustix::fs::{Dir, FileType, Mode, OFlags};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A block device as found at boot, with what its superblock and its disk's
/// partition table say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`vda1`, `nvme0n1p2`, `loop3`).
    pub name: String,
    pub dev_path: PathBuf,
    pub fs_type: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub part_uuid: Option<String>,
    pub part_label: Option<String>,
    pub size_bytes: u64,
}

/// What sysfs tells about one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SysBlock {
    name: String,
    devname: String,
    major: u32,
    minor: u32,
    size_bytes: u64,
    partition: Option<u32>,
    parent: Option<String>,
}

/// `"253:1\n"` → `(253, 1)`.
fn parse_devnum(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `DEVNAME=` from a sysfs `uevent` file (the path under `/dev`).
fn uevent_devname(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_string)
        .filter(|s| !s.is_empty() && !s.split('/').any(|c| c.is_empty() || c == ".."))
}

/// Block devices that never hold BootExt and are best left alone: the brd RAM
/// disks (`ram0`…) and floppy drives (`fd0`…, whose size is there even without
/// a disk, and reading an empty drive stalls for seconds).
fn ignored_name(name: &str) -> bool {
    ["ram", "fd"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
    })
}

fn read_text(path: &Path) -> Option<String> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while let Some(rest) = buf.get_mut(len..) {
        if rest.is_empty() {
            break;
        }
        match rustix::io::read(&fd, rest) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// The device `name` in `/sys/class/block`; None when it is unreadable or empty
/// (size 0: an unattached loop device, a CD drive without a medium), which is told
/// from its size alone, before anything else is read.
fn sys_block(class: &Path, name: &str) -> Option<SysBlock> {
    let dir = class.join(name);
    let sectors: u64 = read_text(&dir.join("size"))?.trim().parse().ok()?;
    if sectors == 0 {
        return None;
    }
    let (major, minor) = parse_devnum(&read_text(&dir.join("dev"))?)?;
    let partition = read_text(&dir.join("partition")).and_then(|t| t.trim().parse().ok());
    // /sys/class/block/vda1 -> ../../devices/…/block/vda/vda1: the parent
    // directory of a partition is its disk.
    let parent = match partition {
        Some(_) => rustix::fs::readlink(&dir, Vec::new())
            .ok()
            .and_then(|target| {
                let target = target.to_string_lossy().into_owned();
                let mut comps = target.rsplit('/');
                comps.next();
                comps.next().map(str::to_string)
            }),
        None => None,
    };
    let devname = read_text(&dir.join("uevent"))
        .and_then(|t| uevent_devname(&t))
        .unwrap_or_else(|| name.replace('!', "/"));
    Some(SysBlock {
        name: name.to_string(),
        devname,
        major,
        minor,
        size_bytes: sectors.saturating_mul(512),
        partition,
        parent,
    })
}

fn list_sys(sys: &Path) -> Vec<SysBlock> {
    let class = sys.join("class/block");
    let Ok(fd) = rustix::fs::open(
        &class,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        log::warn!(
            "cannot read {}: no block devices can be listed",
            class.display()
        );
        return Vec::new();
    };
    let Ok(mut dir) = Dir::read_from(&fd) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let Ok(entry) = entry else { break };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || ignored_name(&name) {
            continue;
        }
        if let Some(b) = sys_block(&class, &name) {
            out.push(b);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Open `/dev/<devname>` read-only; create the node from its number first when
/// it is missing. Refuses a node whose number is not the device's.
fn open_node(dev_root: &Path, b: &SysBlock) -> Option<OwnedFd> {
    let path = dev_root.join(&b.devname);
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(&path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let devnum = rustix::fs::makedev(b.major, b.minor);
            if let Err(e) = rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                FileType::BlockDevice,
                Mode::from_raw_mode(0o600),
                devnum,
            ) {
                log::warn!("cannot create {}: {e}", path.display());
            }
            rustix::fs::open(&path, flags, Mode::empty()).ok()?
        }
        Err(e) => {
            log::debug!("cannot open {}: {e}", path.display());
            return None;
        }
    };
    let st = rustix::fs::fstat(&fd).ok()?;
    let is_block = FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice;
    if !is_block
        || rustix::fs::major(st.st_rdev) != b.major
        || rustix::fs::minor(st.st_rdev) != b.minor
    {
        log::warn!(
            "{} is not block device {}:{}; not probing it",
            path.display(),
            b.major,
            b.minor
        );
        return None;
    }
    Some(fd)
}

/// `SCSI_CDROM_MAJOR`: the `sr` CD/DVD drives (SATA, SCSI, USB and QEMU's IDE drive).
const SCSI_CDROM_MAJOR: u32 = 11;

/// `CDROM_DRIVE_STATUS` asks a CD drive about its tray (`<linux/cdrom.h>`; not in
/// linux-raw-sys): the argument is the slot, `CDSL_CURRENT` (`INT_MAX`), the answer
/// the ioctl's return value.
struct CdDriveStatus;

const CDROM_DRIVE_STATUS: u32 = 0x5326;
const CDSL_CURRENT: usize = i32::MAX as usize;
const CDS_NO_INFO: i32 = 0;
const CDS_DISC_OK: i32 = 4;

// SAFETY: CDROM_DRIVE_STATUS takes an integer by value and writes nothing back.
unsafe impl rustix::ioctl::Ioctl for CdDriveStatus {
    type Output = i32;
    const IS_MUTATING: bool = false;
    fn opcode(&self) -> rustix::ioctl::Opcode {
        CDROM_DRIVE_STATUS as rustix::ioctl::Opcode
    }
    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        CDSL_CURRENT as *mut core::ffi::c_void
    }
    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// True when the CD drive says it holds no disc (no disc, tray open, not ready).
/// A drive that cannot tell (an error, `CDS_NO_INFO`) is probed as before.
fn cd_drive_is_empty(fd: &OwnedFd) -> bool {
    // SAFETY: the ioctl's argument is an integer, and `fd` is an open block device.
    match unsafe { rustix::ioctl::ioctl(fd, CdDriveStatus) } {
        Ok(status) => status != CDS_DISC_OK && status != CDS_NO_INFO,
        Err(_) => false,
    }
}

/// [`scan`] with other roots for sysfs and the device nodes: nodes missing
/// under `dev_root` are created there (how an initramfs without devtmpfs, or a
/// test, gets them).
pub fn scan_at(sys: &Path, dev_root: &Path) -> Vec<BlockDevice> {
    let blocks = list_sys(sys);
    let mut fds: HashMap<String, OwnedFd> = HashMap::new();
    for b in &blocks {
        if let Some(fd) = open_node(dev_root, b) {
            if b.major == SCSI_CDROM_MAJOR && cd_drive_is_empty(&fd) {
                // Reading an empty drive only fills the console with I/O errors,
                // once per rescan; it is still listed, without a filesystem.
                continue;
            }
            fds.insert(b.name.clone(), fd);
        }
    }
    // Partition tables of the disks that have partitions.
    let mut tables: HashMap<&str, parts::PartTable> = HashMap::new();
    for b in &blocks {
        if let Some(parent) = b.parent.as_deref() {
            if !tables.contains_key(parent) {
                if let Some(table) = fds.get(parent).and_then(parts::parse_table) {
                    tables.insert(parent, table);
                }
            }
        }
    }
    blocks
        .iter()
        .map(|b| {
            let info = fds.get(&b.name).and_then(fs::probe_fs);
            let entry = match (b.parent.as_deref(), b.partition) {
                (Some(parent), Some(n)) => tables
                    .get(parent)
                    .and_then(|t| t.entries.iter().find(|e| e.number == n)),
                _ => None,
            };
            BlockDevice {
                name: b.name.clone(),
                dev_path: dev_root.join(&b.devname),
                fs_type: info.as_ref().map(|i| i.fs_type.to_string()),
                label: info.as_ref().and_then(|i| i.label.clone()),
                uuid: info.and_then(|i| i.uuid),
                part_uuid: entry.map(|e| e.part_uuid.clone()),
                part_label: entry.and_then(|e| e.part_label.clone()),
                size_bytes: b.size_bytes,
            }
        })
        .collect()
}

/// Every block device the kernel knows (except empty ones and RAM disks), with
/// filesystem type, label, UUID, PARTUUID and PARTLABEL where they can be read.
/// Never fails: a device that cannot be opened is listed with its name and size.
pub fn scan() -> Vec<BlockDevice> {
    scan_at(Path::new("/sys"), Path::new("/dev"))
}

fn same_node(a: &Path, b: &Path) -> bool {
    match (rustix::fs::stat(a), rustix::fs::stat(b)) {
        (Ok(x), Ok(y)) => {
            FileType::from_raw_mode(x.st_mode) == FileType::BlockDevice
                && FileType::from_raw_mode(y.st_mode) == FileType::BlockDevice
                && x.st_rdev == y.st_rdev
        }
        _ => false,
    }
}

/// Does `dev` answer to `spec`? LABEL= and PARTLABEL= are exact (a vfat label
/// also matches ignoring case: FAT tools upper-case labels); UUID= and
/// PARTUUID= ignore case; a path matches the device node itself or anything
/// (a symlink, another node) that resolves to the same device number.
pub fn matches(spec: &DeviceSpec, dev: &BlockDevice) -> bool {
    fn same_ci(want: &str, have: Option<&String>) -> bool {
        have.is_some_and(|h| h.eq_ignore_ascii_case(want))
    }
    match spec {
        DeviceSpec::Label(l) => match dev.label.as_deref() {
            Some(have) if have == l => true,
            Some(have) => dev.fs_type.as_deref() == Some("vfat") && have.eq_ignore_ascii_case(l),
            None => false,
        },
        DeviceSpec::Uuid(u) => same_ci(u, dev.uuid.as_ref()),
        DeviceSpec::PartUuid(u) => same_ci(u, dev.part_uuid.as_ref()),
        DeviceSpec::PartLabel(l) => dev.part_label.as_deref() == Some(l.as_str()),
        DeviceSpec::Path(p) => {
            Path::new(p) == dev.dev_path || same_node(Path::new(p), &dev.dev_path)
        }
    }
}

/// Pick the device for `spec` from a scan. When several answer (a hybrid ISO's
/// disk and its partition, two copies of a stick), the first by kernel name
/// wins and the others are logged.
pub fn find(spec: &DeviceSpec, devices: &[BlockDevice]) -> Option<BlockDevice> {
    let mut hits = devices.iter().filter(|d| matches(spec, d));
    let first = hits.next()?;
    for other in hits {
        log::warn!(
            "{spec} also matches {}; using {}",
            other.dev_path.display(),
            first.dev_path.display()
        );
    }
    Some(first.clone())
}

/// The device was not found in time. `Display` is the message for the
/// operator: what was looked for, for how long, what was there, what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitError {
    pub spec: String,
    pub waited: Duration,
    pub seen: Vec<BlockDevice>,
}

/// `1536` → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"B")),
    }
}

impl fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |v: &Option<String>| match v {
            Some(s) => format!("\"{s}\""),
            None => "-".to_string(),
        };
        write!(
            f,
            "{} ({}): TYPE={} LABEL={} UUID={} PARTUUID={} PARTLABEL={}",
            self.dev_path.display(),
            human_size(self.size_bytes),
            self.fs_type.as_deref().unwrap_or("-"),
            q(&self.label),
            self.uuid.as_deref().unwrap_or("-"),
            self.part_uuid.as_deref().unwrap_or("-"),
            q(&self.part_label),
        )
    }
}

fn relabel_hint(fs_type: Option<&str>, dev: &str, label: &str) -> String {
    match fs_type {
        Some("ext2" | "ext3" | "ext4") => format!("e2label {dev} {label}"),
        Some("vfat") => format!("fatlabel {dev} {label}"),
        Some("btrfs") => format!("btrfs filesystem label {dev} {label}"),
        Some("xfs") => format!("xfs_admin -L {label} {dev}"),
        _ => format!("e2label DEV {label} (ext4), fatlabel DEV {label} (vfat)"),
    }
}

impl WaitError {
    /// What was found: the summary line, then one line per block device seen.
    pub fn found(&self) -> String {
        let mut out = format!(
            "no block device matches {} (waited {:.1} s)\n",
            self.spec,
            self.waited.as_secs_f64()
        );
        if self.seen.is_empty() {
            out.push_str("block devices seen: none at all\n");
        } else {
            out.push_str(&format!("block devices seen ({}):\n", self.seen.len()));
            for d in &self.seen {
                out.push_str(&format!("  {d}\n"));
            }
        }
        out
    }

    /// What to change, for the kind of spec that was looked for.
    pub fn fix(&self) -> String {
        let mut out = String::new();
        match DeviceSpec::parse(&self.spec).ok() {
            Some(DeviceSpec::Label(l)) => {
                let near: Vec<&BlockDevice> = self
                    .seen
                    .iter()
                    .filter(|d| d.label.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(&l)))
                    .collect();
                for d in &near {
                    out.push_str(&format!(
                        "{} is labelled \"{}\", which differs from {l} only in case; ",
                        d.dev_path.display(),
                        d.label.as_deref().unwrap_or_default()
                    ));
                }
                let (fs_type, dev) = match near.first() {
                    Some(d) => (d.fs_type.as_deref(), d.dev_path.display().to_string()),
                    None => (None, "DEV".to_string()),
                };
                out.push_str(&format!(
                    "label the volume {l} ({}) or set overboot.bootext= to one of the \
                     UUID=, PARTUUID=, PARTLABEL= or /dev paths listed above",
                    relabel_hint(fs_type, &dev, &l)
                ));
            }
            Some(DeviceSpec::Uuid(_)) => out.push_str(
                "set overboot.bootext= to the UUID= of the volume as listed above (a \
                 filesystem gets a new UUID when it is re-created), or use \
                 overboot.bootext=LABEL=BootExt",
            ),
            Some(DeviceSpec::PartUuid(_)) | Some(DeviceSpec::PartLabel(_)) => out.push_str(
                "set overboot.bootext= to the PARTUUID= or PARTLABEL= of the partition \
                 as listed above (sgdisk -c N:NAME DISK names a GPT partition), or use \
                 overboot.bootext=LABEL=BootExt",
            ),
            _ => out.push_str(
                "set overboot.bootext= to one of the /dev paths listed above, or use \
                 overboot.bootext=LABEL=BootExt",
            ),
        }
        out.push_str(".\n");
        if self.seen.is_empty() {
            out.push_str(
                "no disk at all usually means the initramfs lacks the disk's driver \
                 (virtio_blk, nvme, ahci, sd_mod, usb-storage, …).\n",
            );
        }
        out.push_str("if the disk is slow to appear, raise overboot.timeout= (seconds).");
        out
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}to fix: {}", self.found(), self.fix())
    }
}

impl std::error::Error for WaitError {}

/// Safety-net rescan interval while waiting.
const RESCAN: Duration = Duration::from_secs(1);

/// Find the device for `spec`, waiting up to `timeout` for it to appear. Uses
/// kernel uevents to react at once to a new or changed block device and
/// rescans at least every second anyway; without a uevent socket it polls.
pub fn wait_for(spec: &DeviceSpec, timeout: Duration) -> Result<BlockDevice, WaitError> {
    wait_for_with(spec, timeout, &mut || {})
}

/// [`wait_for`], calling `before_scan` before every scan: the boot loads drivers
/// there for devices that appeared meanwhile. A new device with a `MODALIAS` wakes
/// the wait as a new block device does.
pub fn wait_for_with(
    spec: &DeviceSpec,
    timeout: Duration,
    before_scan: &mut dyn FnMut(),
) -> Result<BlockDevice, WaitError> {
    let start = Instant::now();
    // Subscribe before the first scan, so a device that appears between the
    // scan and the wait is not missed.
    let socket = match uevent::UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("no uevent socket ({e}); polling for {spec} every second");
            None
        }
    };
    loop {
        before_scan();
        let seen = scan();
        if let Some(dev) = find(spec, &seen) {
            log::info!(
                "{spec} is {} after {:.1} s",
                dev.dev_path.display(),
                start.elapsed().as_secs_f64()
            );
            return Ok(dev);
        }
        // A timeout too large for the clock means: wait for ever.
        let deadline = start.checked_add(timeout);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError {
                spec: spec.to_string(),
                waited: start.elapsed(),
                seen,
            });
        }
        // Sleep until the next safety-net rescan, or less when a block device or
        // a device wanting a driver arrives (other uevents, e.g. module loads, do
        // not cause a rescan).
        let now = Instant::now();
        let next_scan = now.checked_add(RESCAN).unwrap_or(now);
        loop {
            let now = Instant::now();
            let until = deadline.map_or(next_scan, |d| d.min(next_scan));
            if now >= until {
                break;
            }
            let slice = until - now;
            match &socket {
                Some(s) => match s.wait(slice) {
                    Ok(events) => {
                        let arrivals: Vec<&uevent::Uevent> = events
                            .iter()
                            .filter(|e| e.is_block_arrival() || e.wants_a_driver())
                            .collect();
                        for ev in &arrivals {
                            log::debug!(
                                "uevent {} {}",
                                ev.action,
                                ev.devname
                                    .as_deref()
                                    .or(ev.modalias.as_deref())
                                    .unwrap_or("?")
                            );
                        }
                        if !arrivals.is_empty() {
                            break;
                        }
                    }
                    Err(e) => {
                        log::debug!("uevent socket: {e}");
                        std::thread::sleep(slice);
                    }
                },
                None => std::thread::sleep(slice),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            dev_path: PathBuf::from(format!("/dev/{name}")),
            fs_type: Some("vfat".into()),
            label: Some("BOOTEXT".into()),
            uuid: Some("ABCD-1234".into()),
            part_uuid: Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into()),
            part_label: Some("Boot Ext".into()),
            size_bytes: 64 << 20,
        }
    }

    #[test]
    fn sysfs_text_parsing() {
        assert_eq!(parse_devnum("253:17\n"), Some((253, 17)));
        assert_eq!(parse_devnum("253\n"), None);
        assert_eq!(
            uevent_devname("MAJOR=8\nMINOR=0\nDEVNAME=cciss/c0d0\nDEVTYPE=disk\n").as_deref(),
            Some("cciss/c0d0")
        );
        assert_eq!(uevent_devname("DEVNAME=../etc\n"), None);
        assert!(ignored_name("ram0") && ignored_name("ram15") && ignored_name("fd0"));
        assert!(!ignored_name("ramdisk") && !ignored_name("loop0") && !ignored_name("ram"));
    }

    #[test]
    fn spec_matching() {
        let d = dev("vdb1");
        let m = |s: &str| matches(&DeviceSpec::parse(s).unwrap(), &d);
        assert!(m("LABEL=BOOTEXT"));
        assert!(m("LABEL=BootExt")); // vfat: case-insensitive
        assert!(m("UUID=abcd-1234"));
        assert!(m("UUID=ABCD-1234"));
        assert!(m("PARTUUID=0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"));
        assert!(m("PARTLABEL=Boot Ext"));
        assert!(!m("PARTLABEL=boot ext"));
        assert!(m("/dev/vdb1"));
        assert!(!m("/dev/vdb2"));
        let mut e = dev("vdb2");
        e.fs_type = Some("ext4".into());
        assert!(!matches(&DeviceSpec::Label("BootExt".into()), &e));
        e.label = None;
        assert!(!matches(&DeviceSpec::Label("BOOTEXT".into()), &e));
    }

    #[test]
    fn wait_error_message_lists_devices_and_advice() {
        let mut d = dev("vdb1");
        d.fs_type = Some("ext4".into());
        d.label = Some("bootext".into());
        let err = WaitError {
            spec: "LABEL=BootExt".into(),
            waited: Duration::from_millis(30_000),
            seen: vec![d, dev("vda")],
        };
        let text = err.to_string();
        assert!(
            text.contains("no block device matches LABEL=BootExt (waited 30.0 s)"),
            "{text}"
        );
        assert!(
            text.contains("/dev/vdb1 (64.0 MiB): TYPE=ext4 LABEL=\"bootext\" UUID=ABCD-1234"),
            "{text}"
        );
        assert!(text.contains("PARTLABEL=\"Boot Ext\""), "{text}");
        assert!(text.contains("e2label /dev/vdb1 BootExt"), "{text}");
        assert!(text.contains("differs from BootExt only in case"), "{text}");
        assert!(text.contains("overboot.bootext="), "{text}");
        let none = WaitError {
            spec: "UUID=x".into(),
            waited: Duration::ZERO,
            seen: vec![],
        };
        assert!(none.to_string().contains("lacks the disk's driver"));
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 << 30), "20.0 GiB");
    }
}
