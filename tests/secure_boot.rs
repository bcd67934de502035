//! UEFI Secure Boot, enforced, under OVMF (QEMU TCG). Debian's `ovmf` ships firmware
//! variables with a test key enrolled as PK, KEK and db (`snakeoil`, its key and
//! certificate in /usr/share/ovmf/): `mkbootext --secure-boot` signs systemd-boot and
//! one unified kernel image per entry (`overboot mkuki`) with it.
//!
//! - the signed active image boots the appliance with Secure Boot on and the kernel
//!   locked down, and the whole boot works there: modules (loop, squashfs, overlay,
//!   virtio), the image's checksum (`overboot.verify=1`), toram, the overlay; it is a
//!   new kernel image put in place the way README's kernel update says;
//! - the recovery entry then boots the recovery image with the old kernel image;
//! - an unsigned image (the firmware's own refusal) and a tampered one (systemd-boot's
//!   load through the firmware) are refused with `Access Denied`, nothing boots;
//! - the distribution chain (shim, GRUB, kernel signed by Debian) boots with only
//!   Microsoft's keys enrolled.
//!
//! Four boots: three of about a minute, one refusal of about 30 s.
//! Needs: ovmf, systemd-boot-efi, sbsigntool, binutils, openssl, mtools, dosfstools,
//! shim-signed, grub-efi-amd64-signed, grub-common, e2fsprogs, fdisk, qemu-system-x86
//! and the musl build (the initramfs).

mod e2e_common;

use e2e_common::{Boot, Firmware, debugfs, partition_offset, run};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_overboot");

const SNAKEOIL: Firmware = Firmware::Uefi {
    code: "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd",
    vars: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd",
};

/// What every image's command line carries besides what mkbootext puts in.
const ARGS: &str = "overboot.onfail=poweroff no_timer_check overboot.verify=1 overboot.toram";

fn scratch(name: &str) -> PathBuf {
    let d = e2e_common::fixture()
        .top
        .join("work/secure-boot")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn kernel() -> PathBuf {
    e2e_common::fixture()
        .top
        .join("work/kernel/current/vmlinuz")
}

/// The snakeoil db key, unencrypted (sbsign reads no passwords), and its certificate.
fn keys(dir: &Path) -> PathBuf {
    let k = dir.join("keys");
    fs::create_dir_all(&k).unwrap();
    run(Command::new("openssl")
        .args(["rsa", "-passin", "pass:snakeoil", "-in"])
        .arg("/usr/share/ovmf/PkKek-1-snakeoil.key")
        .arg("-out")
        .arg(k.join("db.key")));
    fs::copy("/usr/share/ovmf/PkKek-1-snakeoil.pem", k.join("db.crt")).unwrap();
    k
}

/// mkbootext with the fixture's images, kernel and initramfs, into `disk`.
fn mkbootext(disk: &Path) -> Command {
    let f = e2e_common::fixture();
    let mut cmd = Command::new(f.top.join("boot-layout/mkbootext"));
    cmd.env("OVERBOOT", BIN)
        .arg("-o")
        .arg(disk)
        .arg("--system")
        .arg(&f.system)
        .arg("--recovery")
        .arg(&f.recovery)
        .arg("--kernel")
        .arg(kernel())
        .arg("--initrd")
        .arg(&f.initrd);
    cmd
}

/// A Secure Boot disk: the fixture's images, each with its checksum beside it.
fn secure_disk(dir: &Path, keys: &Path, marker: &str) -> PathBuf {
    let f = e2e_common::fixture();
    let mut adds = vec![];
    for image in [&f.system, &f.recovery] {
        let name = image.file_name().unwrap().to_str().unwrap();
        let sum = run(Command::new("sha256sum").arg(image));
        let sum_file = dir.join(format!("{name}.sha256"));
        fs::write(&sum_file, sum.split_whitespace().next().unwrap()).unwrap();
        adds.push("--add".to_string());
        adds.push(format!("{}=System/{name}.sha256", sum_file.display()));
    }
    let disk = dir.join("disk.img");
    let made = run(mkbootext(&disk)
        .arg("--secure-boot")
        .arg(keys)
        .args([
            "--menu-timeout",
            "0",
            "--cmdline",
            &format!("{ARGS} {marker}"),
        ])
        .args(&adds));
    assert!(
        made.contains("systemd-boot and signed kernel images"),
        "{made}"
    );
    disk
}

/// mtools' name for the ESP (partition 1) of `disk`.
fn esp(disk: &Path) -> String {
    format!("{}@@{}", disk.display(), partition_offset(disk, 1))
}

fn esp_get(disk: &Path, path: &str, to: &Path) {
    run(Command::new("mcopy")
        .args(["-o", "-i", &esp(disk)])
        .arg(format!("::/{path}"))
        .arg(to));
}

fn esp_put(disk: &Path, from: &Path, path: &str) {
    run(Command::new("mcopy")
        .args(["-o", "-i", &esp(disk)])
        .arg(from)
        .arg(format!("::/{path}")));
}

/// `sbverify --cert` of `file`: whether its signature is good for `cert`.
fn signed_by(file: &Path, cert: &Path) -> bool {
    Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(file)
        .output()
        .unwrap()
        .status
        .success()
}

/// `overboot mkuki` with the fixture's kernel and initramfs.
fn mkuki(out: &Path, cmdline: &str, keys: Option<&Path>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("mkuki")
        .arg("-o")
        .arg(out)
        .arg("--kernel")
        .arg(kernel())
        .arg("--initrd")
        .arg(&e2e_common::fixture().initrd)
        .args(["--cmdline", cmdline]);
    if let Some(k) = keys {
        cmd.arg("--sign-key")
            .arg(k.join("db.key"))
            .arg("--sign-cert")
            .arg(k.join("db.crt"));
    }
    run(&mut cmd);
}

fn secure_boot(disks: &[&Path], stop_at: Option<&str>, log: &Path) -> Boot {
    let boot = e2e_common::disk_boot(disks, SNAKEOIL, 240, stop_at, log);
    boot.assert_lacks("Kernel panic");
    boot
}

/// A boot that ended in a power-off with Secure Boot on and the kernel locked down.
fn assert_secure(boot: &Boot) {
    assert!(boot.powered_off(), "no power-off:\n{}", boot.tail());
    boot.assert_has("EFI stub: UEFI Secure Boot is enabled.");
    boot.assert_has("secureboot: Secure boot enabled");
    boot.assert_has("Kernel is locked down from EFI Secure Boot");
}

#[test]
fn signed_images_boot_the_whole_appliance_locked_down_and_recovery_keeps_its_kernel() {
    let dir = scratch("signed");
    let keys = keys(&dir);
    let disk = secure_disk(&dir, &keys, "e2e.uki=first");
    let cert = keys.join("db.crt");
    for path in [
        "EFI/BOOT/BOOTX64.EFI",
        "Kernel/active.efi",
        "Kernel/recovery.efi",
    ] {
        let copy = dir.join("check.efi");
        esp_get(&disk, path, &copy);
        assert!(
            signed_by(&copy, &cert),
            "{path} is not signed with the db key"
        );
    }

    // A kernel update (README "Secure Boot"): a new active image, recovery untouched.
    let new = dir.join("active-new.efi");
    mkuki(
        &new,
        &format!("overboot.bootext=LABEL=BootExt console=ttyS0,115200n8 {ARGS} e2e.uki=second"),
        Some(&keys),
    );
    esp_put(&disk, &new, "Kernel/active.efi");

    let boot = secure_boot(&[&disk], None, &dir.join("boot-active.log"));
    assert_secure(&boot);
    boot.assert_has("e2e.uki=second");
    // Modules load under lockdown (Debian's are signed): these print when they do.
    boot.assert_has("loop: module loaded");
    boot.assert_has("squashfs: version 4.0");
    boot.assert_has("overboot: toram: System/appliance.squashfs copied to RAM");
    boot.assert_has("System/appliance.squashfs: sha256 ok (System/appliance.squashfs.sha256)");
    boot.assert_has("overlay / overlay rw");
    boot.assert_has("OVERBOOT-E2E: system=appliance");
    boot.assert_has("OVERBOOT-E2E: root writable");
    boot.assert_has("OVERBOOT-E2E: done");

    // The recovery entry, chosen in loader.conf as an operator would (bootctl
    // set-default recovery.conf does the same through an EFI variable).
    let conf = dir.join("loader.conf");
    fs::write(&conf, "default recovery.conf\ntimeout 0\neditor no\n").unwrap();
    esp_put(&disk, &conf, "loader/loader.conf");
    let boot = secure_boot(&[&disk], None, &dir.join("boot-recovery.log"));
    assert_secure(&boot);
    boot.assert_has("overboot.system=recovery");
    boot.assert_has("e2e.uki=first");
    boot.assert_lacks("e2e.uki=second");
    boot.assert_has("System/recovery.squashfs: sha256 ok");
    boot.assert_has("OVERBOOT-E2E: system=recovery");
    boot.assert_has("OVERBOOT-E2E: done");

    // The private key never went to BootExt; the certificate did, PEM and DER.
    let ls = debugfs(&disk, 2, &dir.join("bootext.img"), "ls -l /SecureBoot");
    assert!(ls.contains("db.crt") && ls.contains("db.cer"), "{ls}");
    assert!(!ls.contains(".key"), "{ls}");
}

#[test]
fn unsigned_and_tampered_images_are_refused() {
    let dir = scratch("refused");
    let keys = keys(&dir);
    // Disk 1: systemd-boot, signed, whose active image was changed after signing.
    let tampered = secure_disk(&dir, &keys, "e2e.uki=first");
    let image = dir.join("active.efi");
    esp_get(&tampered, "Kernel/active.efi", &image);
    let mut bytes = fs::read(&image).unwrap();
    let at = bytes
        .windows(13)
        .position(|w| w == b"e2e.uki=first")
        .expect("the command line in the image");
    bytes[at + 8..at + 13].copy_from_slice(b"owned");
    fs::write(&image, &bytes).unwrap();
    assert!(!signed_by(&image, &keys.join("db.crt")));
    esp_put(&tampered, &image, "Kernel/active.efi");
    // Disk 0, tried first: an unsigned image where the firmware looks for a loader.
    let unsigned_disk = dir.join("unsigned.img");
    // A sparse copy: std's copy fills the holes, 140 MB of zeros on the disk.
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&tampered)
        .arg(&unsigned_disk));
    let unsigned = dir.join("unsigned.efi");
    mkuki(&unsigned, &format!("console=ttyS0,115200n8 {ARGS}"), None);
    esp_put(&unsigned_disk, &unsigned, "EFI/BOOT/BOOTX64.EFI");

    let refused = "Error loading \\Kernel\\active.efi: Access Denied";
    let boot = secure_boot(
        &[&unsigned_disk, &tampered],
        Some(refused),
        &dir.join("boot-refused.log"),
    );
    // The firmware refuses disk 0's loader, moves on to disk 1, whose systemd-boot (a
    // good signature) asks the firmware to load the tampered image: refused too.
    let first = boot
        .log
        .find("Access Denied")
        .expect("no 'Access Denied' on the console");
    assert!(
        boot.log[..first].contains("BdsDxe: failed to load Boot0001"),
        "{}",
        boot.tail()
    );
    boot.assert_has(refused);
    boot.assert_lacks("EFI stub:");
    boot.assert_lacks("Linux version");
}

/// `overboot check` (run by mkbootext) refuses a private key with the boot material:
/// nothing is written.
#[test]
fn mkbootext_refuses_a_private_key_on_bootext() {
    let dir = scratch("private-key");
    let keys = keys(&dir);
    let disk = dir.join("disk.img");
    let out = mkbootext(&disk)
        .arg("--secure-boot")
        .arg(&keys)
        .arg("--add")
        .arg(format!(
            "{}=SecureBoot/db.key",
            keys.join("db.key").display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: SecureBoot/db.key: a private key on BootExt"),
        "{err}"
    );
    assert!(!disk.exists());
}

/// The distribution chain on a machine with only Microsoft's keys (OVMF's `ms`
/// variables): shim (signed by Microsoft) loads GRUB (signed by Debian), which has
/// shim verify Debian's signed kernel. The initramfs is this checkout's own build,
/// signed by nobody, and boots all the same: this chain protects the kernel, not
/// the initramfs (README "Secure Boot").
#[test]
fn shim_chain_boots_with_microsofts_keys() {
    let dir = scratch("shim");
    let disk = dir.join("disk.img");
    let made = run(mkbootext(&disk)
        .arg("--shim")
        .args(["--menu-timeout", "0", "--grubenv"])
        .arg("overboot_args=overboot.onfail=poweroff no_timer_check"));
    assert!(made.contains("shim and GRUB signed"), "{made}");
    let ms = Firmware::Uefi {
        code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        vars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
    };
    let boot = e2e_common::disk_boot(&[&disk], ms, 300, None, &dir.join("boot.log"));
    boot.assert_lacks("Kernel panic");
    boot.assert_has("Booting `overboot: active system'");
    assert_secure(&boot);
    boot.assert_has("OVERBOOT-E2E: system=appliance");
    boot.assert_has("OVERBOOT-E2E: done");
}
