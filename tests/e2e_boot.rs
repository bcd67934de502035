//! End-to-end boots: Debian's stock kernel under QEMU (TCG) with the initramfs that
//! `overboot mkinitramfs` builds from the static musl binary, a BootExt disk image
//! built by `tests/e2e/build-bootext.sh`, and an appliance whose init prints markers
//! on the serial console and powers off. Each test reads the console and asserts.
//!
//! Needs root-free tools only (mke2fs -d, sgdisk, mksquashfs, qemu-system-x86_64) and
//! the musl build (`test.sh` builds it and sets OVERBOOT_MUSL_BIN).

mod e2e_common;

use e2e_common::{Boot, boot, boot_with, bootext, fixture};

fn assert_booted(log: &Boot, system: &str) {
    log.assert_has("OVERBOOT-E2E: init started");
    log.assert_has(&format!("OVERBOOT-E2E: system={system}"));
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
}

/// Each of `needles` is in the appliance's /proc/mounts.
fn assert_mounts(log: &Boot, needles: &[&str]) {
    let mounts = log.section("mounts");
    for needle in needles {
        assert!(
            mounts.contains(needle),
            "no '{needle}' in /proc/mounts:\n{mounts}\n--- log tail ---\n{}",
            log.tail()
        );
    }
}

fn assert_overmounts(log: &Boot) {
    assert_mounts(
        log,
        &[
            " /mnt/livecd squashfs ro,",
            "overlay / overlay ",
            " /mnt/overlay tmpfs ",
            " /mnt/cdrom ext4 ",
            " /etc/ssh ext4 ",
            " /etc/hostname ext4 ",
            " /opt/tools squashfs ro,",
        ],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/hostname=bootext-host");
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    log.assert_has("OVERBOOT-E2E: file /opt/tools/marker=from-tools-image");
    log.assert_has("OVERBOOT-E2E: root writable");
}

/// Issue 11: every path in the root overlay's options exists in the booted system
/// and is the mount it names (no staging path of the initramfs): `lowerdir=` the
/// layers at `/mnt/layers/<n>` and the image at `/mnt/livecd`, `upperdir=` and
/// `workdir=` on the writable layer at `/mnt/overlay`.
fn assert_overlay_paths(log: &Boot, lower: &[(&str, &str)]) {
    let section = log.section("overlay-paths");
    let lines: Vec<Vec<&str>> = section
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    let field = |f: &[&str], key: &str| {
        f.iter()
            .find_map(|x| x.strip_prefix(key))
            .map(String::from)
            .unwrap_or_else(|| panic!("no {key} in {f:?}:\n{section}"))
    };
    let named =
        |kind: &str| -> Vec<Vec<&str>> { lines.iter().filter(|f| f[0] == kind).cloned().collect() };
    let found: Vec<(String, String)> = named("lowerdir")
        .iter()
        .map(|f| (f[1].to_string(), field(f, "mount=")))
        .collect();
    let want: Vec<(String, String)> = lower
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    assert_eq!(found, want, "{section}");
    let writable = field(&named("writable")[0], "dev=");
    for (kind, path) in [
        ("upperdir", "/mnt/overlay/upper"),
        ("workdir", "/mnt/overlay/work"),
    ] {
        let f = &named(kind)[0];
        assert_eq!(f[1], path, "{section}");
        assert_eq!(
            field(f, "dev="),
            writable,
            "{kind} not on /mnt/overlay:\n{section}"
        );
    }
    assert_mounts(log, &[" /mnt/overlay tmpfs "]);
}

#[test]
fn normal_boot_mounts_everything() {
    let f = fixture();
    // One Overlay/ layer (a directory), so that lowerdir= names a layer too.
    let layer = f.dir.join("layer-normal");
    let _ = std::fs::remove_dir_all(&layer);
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::write(layer.join("etc/layer-marker"), "from-layer\n").unwrap();
    let spec = format!("{}=Overlay/10-site", layer.display());
    let (disk, _) = bootext(f, "normal", &["--file", &spec]);
    let log = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    assert_booted(&log, "appliance");
    assert_overmounts(&log);
    assert_overlay_paths(
        &log,
        &[("/mnt/layers/0", "ext4"), ("/mnt/livecd", "squashfs")],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/layer-marker=from-layer");
    let state = log.section("state");
    assert!(state.contains("\"found_by\": \"LABEL=BootExt\""), "{state}");
    assert!(state.contains("\"fallback\": null"), "{state}");
    assert!(state.contains("\"step\": \"overmounts\""), "{state}");
}

#[test]
fn recovery_on_request() {
    let f = fixture();
    let (disk, _) = bootext(f, "recovery", &[]);
    let log = boot(
        f,
        "overboot.system=recovery overboot.onfail=poweroff",
        &[&disk],
        None,
    );
    assert_booted(&log, "recovery");
    let state = log.section("state");
    assert!(state.contains("\"requested\": \"recovery\""), "{state}");
}

#[test]
fn corrupt_active_falls_back_to_recovery_with_reason() {
    let f = fixture();
    let (disk, _) = bootext(f, "corrupt", &["--corrupt-active"]);
    let log = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    assert_booted(&log, "recovery");
    let state = log.section("state");
    assert!(state.contains("\"from\": \"active\""), "{state}");
    assert!(state.contains("not a squashfs image"), "{state}");
}

#[test]
fn bootext_by_uuid() {
    let f = fixture();
    let uuid = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    let (disk, _) = bootext(f, "uuid", &["--label", "NotBootExt", "--uuid", uuid]);
    let log = boot(
        f,
        &format!("overboot.bootext=UUID={uuid} overboot.onfail=poweroff"),
        &[&disk],
        None,
    );
    assert_booted(&log, "appliance");
    assert!(
        log.section("state")
            .contains(&format!("\"found_by\": \"UUID={uuid}\""))
    );
}

#[test]
fn bootext_by_partuuid_on_gpt_disk() {
    let f = fixture();
    let partuuid = "6a1c3e5f-7b9d-4f2a-8c4e-1d3f5a7b9c2e";
    let (disk, printed) = bootext(
        f,
        "gpt",
        &[
            "--gpt",
            "--label",
            "NotBootExt",
            "--partuuid",
            partuuid,
            "--partlabel",
            "appliance-data",
        ],
    );
    assert!(
        printed.iter().any(|l| l == &format!("PARTUUID={partuuid}")),
        "{printed:?}"
    );
    let log = boot(
        f,
        &format!("overboot.bootext=PARTUUID={partuuid} overboot.onfail=poweroff"),
        &[&disk],
        None,
    );
    assert_booted(&log, "appliance");
    assert_overmounts(&log);
    let state = log.section("state");
    assert!(state.contains("\"device\": \"/dev/vda1\""), "{state}");
}

#[test]
fn bootext_by_partlabel_on_gpt_disk() {
    let f = fixture();
    let (disk, _) = bootext(
        f,
        "gpt-label",
        &[
            "--gpt",
            "--label",
            "NotBootExt",
            "--partlabel",
            "appliance-data",
        ],
    );
    let log = boot(
        f,
        "overboot.bootext=PARTLABEL=appliance-data overboot.onfail=poweroff",
        &[&disk],
        None,
    );
    assert_booted(&log, "appliance");
}

#[test]
fn bootext_on_a_late_second_disk() {
    let f = fixture();
    let (other, _) = bootext(f, "late-other", &["--label", "Scratch"]);
    let (disk, _) = bootext(f, "late", &[]);
    let log = boot(
        f,
        "overboot.timeout=60 overboot.onfail=poweroff",
        &[&other],
        Some(&disk),
    );
    assert_booted(&log, "appliance");
    assert!(
        log.section("state").contains("\"device\": \"/dev/vdb\""),
        "{}",
        log.section("state")
    );
}

/// The default initramfs (every module group) with BootExt behind each kind of
/// disk controller an appliance has: the drivers come from the devices' aliases
/// (PCI controller, then the bus behind it, then the SCSI disk's sd_mod).
fn boots_from_a_disk_on(bus: &str, device: &str) {
    let f = fixture();
    let (disk, _) = bootext(f, &format!("bus-{bus}"), &[]);
    let log = boot_with(
        f,
        &f.initrd,
        "overboot.timeout=30 overboot.onfail=poweroff",
        &[&disk],
        &["--disk-bus".into(), bus.into()],
    );
    assert_booted(&log, "appliance");
    assert_overmounts(&log);
    let state = log.section("state");
    assert!(
        state.contains(&format!("\"device\": \"{device}\"")),
        "{state}"
    );
}

#[test]
fn bootext_on_sata_ahci() {
    boots_from_a_disk_on("sata", "/dev/sda");
}

#[test]
fn bootext_on_nvme() {
    boots_from_a_disk_on("nvme", "/dev/nvme0n1");
}

#[test]
fn bootext_on_virtio_scsi() {
    boots_from_a_disk_on("virtio-scsi", "/dev/sda");
}

/// An SD card's bus (mmc) has no `modalias` file: its `mmc:block` alias is read
/// from the card's `uevent`, which loads mmc_block.
#[test]
fn bootext_on_an_sd_card() {
    boots_from_a_disk_on("mmc", "/dev/mmcblk0");
}

/// The disk of a USB stick appears about a second after usb-storage has loaded
/// (its `delay_use`), after the coldplug has run out of devices: the wait for
/// BootExt loads sd_mod for it.
#[test]
fn bootext_on_a_usb_stick() {
    boots_from_a_disk_on("usb", "/dev/sda");
}

/// BootExt on FAT, as on most USB sticks: the mount makes the kernel ask for the
/// codepage and charset modules (`request_module`), which `/sbin/modprobe`, a link
/// to `/init`, loads from the initramfs. FAT has no symlinks: `active-system` is
/// the image itself.
#[test]
fn bootext_on_vfat() {
    let f = fixture();
    let (disk, _) = bootext(f, "vfat", &["--vfat"]);
    let log = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    assert_booted(&log, "appliance");
    log.assert_has("BootExt is /dev/vda (vfat)");
    log.assert_has("overboot: modprobe nls_cp437 (asked by the kernel): loaded nls_cp437");
    log.assert_lacks("codepage cp437 not found");
    assert_mounts(
        &log,
        &[
            "/dev/vda /mnt/cdrom vfat rw,",
            "/dev/vda /etc/ssh vfat rw,",
            " /opt/tools squashfs ro,",
        ],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/hostname=bootext-host");
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    log.assert_has("OVERBOOT-E2E: file /opt/tools/marker=from-tools-image");
}

/// The stick most operators have: FAT32 in partition 1 of an MBR disk, on USB.
#[test]
fn bootext_on_a_fat32_partition_of_a_usb_stick() {
    let f = fixture();
    let (disk, _) = bootext(f, "usb-mbr-fat", &["--vfat", "--mbr"]);
    let log = boot_with(
        f,
        &f.initrd,
        "overboot.timeout=30 overboot.onfail=poweroff",
        &[&disk],
        &["--disk-bus".into(), "usb".into()],
    );
    assert_booted(&log, "appliance");
    log.assert_has("BootExt is /dev/sda1 (vfat)");
    assert_mounts(
        &log,
        &["/dev/sda1 /mnt/cdrom vfat rw,", " /opt/tools squashfs ro,"],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
}

/// BootExt on btrfs: the btrfs module and what it needs (raid6, xor, libcrc32c)
/// load for the filesystem the probe found.
#[test]
fn bootext_on_btrfs() {
    let f = fixture();
    let (disk, _) = bootext(f, "btrfs", &["--btrfs"]);
    let log = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    assert_booted(&log, "appliance");
    log.assert_has("BootExt is /dev/vda (btrfs)");
    assert_mounts(
        &log,
        &[
            "/dev/vda /mnt/cdrom btrfs rw,",
            "/dev/vda /etc/ssh btrfs rw,",
            " /opt/tools squashfs ro,",
        ],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    log.assert_has("OVERBOOT-E2E: file /opt/tools/marker=from-tools-image");
}

/// BootExt on a CD (ISO 9660 with Rock Ridge, in QEMU's IDE CD drive): found by its
/// volume label once the drive says it holds a disc, mounted read-only (the boot
/// says so and goes on), entries bound from it read-only.
#[test]
fn bootext_on_a_cd() {
    let f = fixture();
    let (iso, _) = bootext(f, "cd", &["--iso"]);
    let log = boot_with(
        f,
        &f.initrd,
        "overboot.onfail=poweroff",
        &[],
        &["--cdrom".into(), iso.display().to_string()],
    );
    assert_booted(&log, "appliance");
    log.assert_has("BootExt is /dev/sr0 (iso9660)");
    log.assert_has("trying read-only");
    assert_mounts(
        &log,
        &[
            "/dev/sr0 /mnt/cdrom iso9660 ro,",
            "/dev/sr0 /etc/ssh iso9660 ro,",
            " /opt/tools squashfs ro,",
        ],
    );
    log.assert_has("OVERBOOT-E2E: file /etc/hostname=bootext-host");
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    log.assert_has("OVERBOOT-E2E: root writable");
}

#[test]
fn no_bootext_prints_the_message_and_follows_the_policy() {
    let f = fixture();
    let (other, _) = bootext(f, "none", &["--label", "Scratch"]);
    // The scratch disk carries the livecd marker; a spec that is not the default
    // label must not fall back to it.
    let log = boot(
        f,
        "overboot.bootext=LABEL=Missing overboot.timeout=3 overboot.onfail=poweroff",
        &[&other],
        None,
    );
    log.assert_has("LABEL=Missing");
    log.assert_has("/dev/vda");
    log.assert_has("Scratch");
    // The devices seen are a list in the box, one line each: QEMU's empty CD
    // drive (listed, not read: no I/O errors on the console) and the disk.
    log.assert_has("|             block devices seen (2):");
    log.assert_has("|               /dev/sr0 (");
    log.assert_has("|               /dev/vda (64.0 MiB): TYPE=ext4 LABEL=\"Scratch\"");
    log.assert_has("| To fix:     label the volume Missing (e2label DEV Missing (ext4),");
    log.assert_lacks("I/O error, dev sr0");
    log.assert_lacks("OVERBOOT-E2E: init started");
    log.assert_lacks("Kernel panic");
    assert!(
        log.powered_off(),
        "QEMU did not end by power-off:\n{}",
        log.tail()
    );
}

#[test]
fn livecd_marker_is_the_fallback_for_the_default_label() {
    let f = fixture();
    let (disk, _) = bootext(f, "marker", &["--label", "Other"]);
    let log = boot(
        f,
        "overboot.timeout=3 overboot.onfail=poweroff",
        &[&disk],
        None,
    );
    assert_booted(&log, "appliance");
    log.assert_has("livecd");
}

#[test]
fn missing_init_is_reported_without_a_panic() {
    let f = fixture();
    let (disk, _) = bootext(f, "noinit", &[]);
    let log = boot(
        f,
        "init=/sbin/does-not-exist overboot.onfail=poweroff",
        &[&disk],
        None,
    );
    log.assert_has("/sbin/does-not-exist");
    log.assert_lacks("OVERBOOT-E2E: init started");
    log.assert_lacks("Kernel panic");
    assert!(
        log.powered_off(),
        "QEMU did not end by power-off:\n{}",
        log.tail()
    );
}
