//! `mkinitramfs --modules host`: the drivers this machine boots with, chosen as
//! dracut's host-only mode does, for a builder who makes the image on the target.
//! Read from sysfs and the mount table of the build host; never run at boot.

use crate::kmod::MODULE_GROUPS;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Device classes whose drivers a boot needs: the disks (BootExt) and the keyboard
/// (the emergency shell).
const CLASSES: &[&str] = &["block", "input"];

/// How far up the device tree a device's parents are followed: sysfs device paths
/// are a few levels deep (a USB keyboard is about ten), never hundreds.
const MAX_DEPTH: usize = 64;

/// The names `--modules host` stands for, read from `sys` (a sysfs) and `mounts` (the
/// text of `/proc/self/mounts`):
/// - the driver of every device from each block and input device up to the root of
///   the device tree (the disk, its controller and the buses between), named by the
///   module providing it (`driver/module`), else by the driver's own name (a driver
///   built into this kernel may be a module in the target's);
/// - each filesystem mounted from a `/dev` node (BootExt's among them): the modules
///   of its group when it has one (`vfat` brings its codepages), else `fs-TYPE`.
///
/// Module names, never group names (a driver called `usb` is not the `usb` group).
/// Virtual block devices (loop, zram) have no driver on their path and add nothing.
pub fn host_modules(sys: &Path, mounts: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    for class in CLASSES {
        let Ok(entries) = std::fs::read_dir(sys.join("class").join(class)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(device) = std::fs::canonicalize(entry.path()) {
                names.extend(drivers_above(&device, &sys.join("devices")));
            }
        }
    }
    names.extend(mounted_filesystems(mounts));
    names.into_iter().collect()
}

/// The drivers bound to `device` and to each of its parents below `top`.
fn drivers_above(device: &Path, top: &Path) -> Vec<String> {
    let top = std::fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
    let mut out = Vec::new();
    let mut dir: PathBuf = device.to_path_buf();
    for _ in 0..MAX_DEPTH {
        if !dir.starts_with(&top) || dir == top {
            break;
        }
        if let Some(name) = driver_of(&dir) {
            out.push(name);
        }
        if !dir.pop() {
            break;
        }
    }
    out
}

/// The module behind `dir/driver`, else the driver's name.
fn driver_of(dir: &Path) -> Option<String> {
    let base = |p: PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let driver = std::fs::canonicalize(dir.join("driver")).ok()?;
    std::fs::canonicalize(driver.join("module"))
        .ok()
        .and_then(base)
        .or_else(|| base(driver))
}

/// What each filesystem mounted from a `/dev` node needs (see [`host_modules`]).
fn mounted_filesystems(mounts: &str) -> BTreeSet<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (source, _, fstype) = (f.next()?, f.next()?, f.next()?);
            source.starts_with("/dev/").then_some(fstype)
        })
        .flat_map(|fstype| {
            let group = match fstype {
                "ext2" | "ext3" => "ext4",
                "msdos" => "vfat",
                other => other,
            };
            match MODULE_GROUPS.iter().find(|g| g.name == group) {
                Some(g) => g.modules.iter().map(|m| m.to_string()).collect(),
                None => vec![format!("fs-{fstype}")],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs as the kernel lays it out: a virtio disk on PCI (its PCI driver built
    /// in, virtio_blk a module), a USB keyboard behind xhci, a loop device.
    fn fake_sysfs(root: &Path) {
        let mk = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
        let ln = |target: &str, link: &str| symlink(target, root.join(link)).unwrap();
        for d in [
            "bus/pci/drivers/virtio-pci",
            "bus/virtio/drivers/virtio_blk",
            "bus/pci/drivers/xhci_hcd",
            "bus/usb/drivers/usb",
            "bus/usb/drivers/usbhid",
            "bus/hid/drivers/hid-generic",
            "module/virtio_blk",
            "module/xhci_pci",
            "module/usbhid",
            "module/hid_generic",
            "devices/pci0000:00/0000:00:03.0/virtio0/block/vda/vda1",
            "devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/0003:0627:0001.0001/input/input3",
            "devices/virtual/block/loop0",
            "class/block",
            "class/input",
        ] {
            mk(d);
        }
        ln(
            "../../../../module/virtio_blk",
            "bus/virtio/drivers/virtio_blk/module",
        );
        ln(
            "../../../../module/xhci_pci",
            "bus/pci/drivers/xhci_hcd/module",
        );
        ln("../../../../module/usbhid", "bus/usb/drivers/usbhid/module");
        ln(
            "../../../../module/hid_generic",
            "bus/hid/drivers/hid-generic/module",
        );
        let pci = "devices/pci0000:00";
        ln(
            "../../../bus/pci/drivers/virtio-pci",
            &format!("{pci}/0000:00:03.0/driver"),
        );
        ln(
            "../../../../bus/virtio/drivers/virtio_blk",
            &format!("{pci}/0000:00:03.0/virtio0/driver"),
        );
        let usb = format!("{pci}/0000:00:04.0");
        ln(
            "../../../bus/pci/drivers/xhci_hcd",
            &format!("{usb}/driver"),
        );
        ln(
            "../../../../../bus/usb/drivers/usb",
            &format!("{usb}/usb1/1-1/driver"),
        );
        ln(
            "../../../../../../bus/usb/drivers/usbhid",
            &format!("{usb}/usb1/1-1/1-1:1.0/driver"),
        );
        ln(
            "../../../../../../../bus/hid/drivers/hid-generic",
            &format!("{usb}/usb1/1-1/1-1:1.0/0003:0627:0001.0001/driver"),
        );
        ln(
            "../../devices/pci0000:00/0000:00:03.0/virtio0/block/vda/vda1",
            "class/block/vda1",
        );
        ln("../../devices/virtual/block/loop0", "class/block/loop0");
        ln(
            "../../devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/0003:0627:0001.0001/input/input3",
            "class/input/input3",
        );
    }

    #[test]
    fn drivers_of_disks_and_keyboards_and_mounted_filesystems() {
        let root = std::env::temp_dir().join(format!("overboot-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fake_sysfs(&root);
        let mounts = "/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n\
                      /dev/sdb1 /mnt/cdrom vfat ro 0 0\n/dev/sdc /mnt/x f2fs rw 0 0\n\
                      tmpfs /run tmpfs rw 0 0\n/dev/sr0 /media/cd iso9660 ro 0 0\n";
        assert_eq!(
            host_modules(&root, mounts),
            [
                "ext4",
                "fs-f2fs",
                "hid_generic",
                "isofs",
                "nls_ascii",
                "nls_cp437",
                "nls_iso8859-1",
                "nls_utf8",
                "sr_mod",
                "usb",
                "usbhid",
                "vfat",
                "virtio-pci",
                "virtio_blk",
                "xhci_pci",
            ]
        );
        // No sysfs, no mounts from /dev: nothing (the core modules come from modules_for).
        assert!(host_modules(&root.join("none"), "proc /proc proc rw 0 0\n").is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
