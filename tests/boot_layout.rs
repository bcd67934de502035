//! The BootExt reference layout (`boot-layout/`): the skeleton, the GRUB template
//! (checked by `grub-script-check`), the scripts (shellcheck), and a disk made by
//! `boot-layout/mkbootext` (hybrid: GPT with a BIOS boot partition and an ESP) booted
//! under QEMU TCG: first by OVMF + GRUB x86_64-efi into the recovery entry chosen
//! through `grubenv` (`next_entry`, one shot), then, from the same disk, by SeaBIOS +
//! GRUB i386-pc into the active entry again because GRUB cleared it.
//!
//! Needs: grub-common, grub-pc-bin, grub-efi-amd64-bin, ovmf, dosfstools, mtools,
//! shellcheck, e2fsprogs, fdisk, squashfs-tools, qemu-system-x86, and the musl build for the initramfs (test.sh builds it).

mod e2e_common;

use e2e_common::{Firmware, debugfs, run};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_overboot");

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = top().join("work/boot-layout").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn grub_template_passes_grub_script_check() {
    let template = top().join("boot-layout/grub.cfg");
    run(Command::new("grub-script-check").arg(&template));
    // The checker can fail: the same file with an unclosed block is refused.
    let dir = scratch("grub-check");
    let broken = dir.join("grub.cfg");
    let mut text = fs::read_to_string(&template).unwrap();
    text.push_str("\nif [ -n \"${x}\" ]; then\n    echo unclosed\n");
    fs::write(&broken, text).unwrap();
    let out = output(Command::new("grub-script-check").arg(&broken));
    assert!(
        !out.status.success(),
        "grub-script-check accepted {broken:?}"
    );
}

#[test]
fn grub_template_boots_the_documented_files() {
    let text = fs::read_to_string(top().join("boot-layout/grub.cfg")).unwrap();
    for needle in [
        "--id active",
        "--id recovery",
        "linux /Kernel/active-kernel overboot.bootext=LABEL=${bootext_label}",
        "initrd /Kernel/active-initrd",
        "linux /Kernel/recovery-kernel overboot.bootext=LABEL=${bootext_label} overboot.system=recovery",
        "initrd /Kernel/recovery-initrd",
        "set bootext_label=BootExt",
        "load_env",
        "next_entry",
        "saved_entry",
        "console=ttyS0",
        "terminal_output serial console",
    ] {
        assert!(text.contains(needle), "grub.cfg lacks '{needle}'");
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let scripts = [
        top().join("boot-layout/mkbootext"),
        top().join("packaging/build-deb.sh"),
        top().join("packaging/postinst"),
        top().join("packaging/postrm"),
        // The scripts the tests, the demo and CI run.
        top().join("tests/e2e/run-qemu.sh"),
        top().join("tests/e2e/build-bootext.sh"),
        top().join("tests/e2e/build-appliance.sh"),
        top().join("tests/kernel/fetch"),
        top().join("demo.sh"),
        top().join("test.sh"),
        top().join(".ci/run"),
        top().join(".ci/install"),
    ];
    for s in &scripts {
        assert!(s.is_file(), "{s:?} is missing");
    }
    run(Command::new("shellcheck").args(&scripts));
    // shellcheck can fail: an unquoted variable in a sh script is reported.
    let dir = scratch("shellcheck");
    let bad = dir.join("bad.sh");
    fs::write(&bad, "#!/bin/sh\nx=$1\nrm -rf $x/*\n").unwrap();
    assert!(
        !output(Command::new("shellcheck").arg(&bad))
            .status
            .success()
    );
}

#[test]
fn skeleton_has_every_folder_with_a_readme() {
    let sk = top().join("boot-layout/skeleton");
    for dir in [
        "System",
        "DIRS",
        "Overlay",
        "Units",
        "Apps",
        "Kernel",
        "grub",
        "Scripts",
        "SecureBoot",
    ] {
        let readme = sk.join(dir).join("README");
        let text = fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{readme:?}: {e}"));
        assert!(text.lines().count() >= 5, "{readme:?} is too short");
    }
    assert!(sk.join("README").is_file());
    assert_eq!(fs::read_link(sk.join("boot")).unwrap(), Path::new("."));
    assert_eq!(fs::metadata(sk.join("livecd")).unwrap().len(), 0);
    let toml = fs::read_to_string(sk.join("overboot.toml")).unwrap();
    for line in toml.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "overboot.toml: not commented out: {line}"
        );
    }
}

/// The example manifest, uncommented, is one overboot accepts without a warning.
#[test]
fn skeleton_example_manifest_is_valid_once_uncommented() {
    let dir = scratch("manifest");
    let tree = dir.join("BootExt");
    run(Command::new("cp")
        .arg("-a")
        .arg(top().join("boot-layout/skeleton"))
        .arg(&tree));
    for f in [
        "DIRS/README",
        "Overlay/README",
        "Units/README",
        "Apps/README",
    ] {
        fs::remove_file(tree.join(f)).unwrap();
    }
    let toml = fs::read_to_string(tree.join("overboot.toml")).unwrap();
    let uncommented: String = toml
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.contains("[[mount]]"), "{uncommented}");
    fs::write(tree.join("overboot.toml"), &uncommented).unwrap();
    let img_tree = dir.join("img");
    fs::create_dir_all(img_tree.join("opt")).unwrap();
    fs::create_dir_all(tree.join("Data/app")).unwrap();
    run(Command::new("mksquashfs")
        .arg(&img_tree)
        .arg(tree.join("System/a.squashfs"))
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"]));
    symlink("a.squashfs", tree.join("System/active-system")).unwrap();
    symlink("a.squashfs", tree.join("System/recovery-system")).unwrap();
    let out = output(Command::new(BIN).arg("check").arg(&tree));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "overboot check failed:\n{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("warning") || l.starts_with("error")),
        "the example manifest draws remarks:\n{uncommented}\n{text}"
    );
    assert!(text.contains("-> /var/cache/app (tmpfs)"), "{text}");
    assert!(text.contains("0 error(s), 0 warning(s)"), "{text}");
}

/// A boot of `disk` from its own boot loader that must end with a guest power-off.
fn boot_disk(disk: &Path, firmware: Firmware, log: &Path) -> e2e_common::Boot {
    let boot = e2e_common::disk_boot(&[disk], firmware, 240, None, log);
    assert!(
        boot.powered_off(),
        "QEMU did not power off by itself ({:?}); console in {log:?}:\n{}",
        boot.code,
        boot.tail()
    );
    boot.assert_lacks("Kernel panic");
    boot
}

const OVMF: Firmware = Firmware::Uefi {
    code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
    vars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
};

/// A directory under /tmp owned by `nobody`, with copies of what mkbootext reads (the
/// checkout itself may not be readable by other users); removed on drop.
struct Stage(PathBuf);

impl Stage {
    fn new(name: &str) -> Stage {
        let d = std::env::temp_dir().join(format!("overboot-layout-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        Stage(d)
    }
    fn copy(&self, src: &Path, name: &str) -> PathBuf {
        let dst = self.0.join(name);
        run(Command::new("cp").arg("-a").arg(src).arg(&dst));
        dst
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const NOBODY: u32 = 65534;

/// mkbootext as `nobody` with `stage`'s copies of the fixture; returns the disk.
fn make_disk(stage: &Stage, name: &str, args: &[&str]) -> (PathBuf, String) {
    let f = e2e_common::fixture();
    let layout = stage.copy(&top().join("boot-layout"), "boot-layout");
    let overboot = stage.copy(Path::new(BIN), "overboot");
    let system = stage.copy(&f.system, "appliance.squashfs");
    let recovery = stage.copy(&f.recovery, "recovery.squashfs");
    let kernel = stage.copy(&top().join("work/kernel/current/vmlinuz"), "vmlinuz");
    let initrd = stage.copy(&f.initrd, "initrd.img");
    let out = stage.0.join("out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    let disk = out.join(name);
    // Built by an unprivileged user: no loop device, no mount, no root.
    let made = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(layout.join("mkbootext"))
        .env("OVERBOOT", &overboot)
        .env("TMPDIR", &out)
        .arg("-o")
        .arg(&disk)
        .arg("--system")
        .arg(&system)
        .arg("--recovery")
        .arg(&recovery)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .args(args));
    assert!(made.contains("labelled BootExt"), "{made}");
    assert_eq!(fs::metadata(&disk).unwrap().uid(), NOBODY);
    (disk, made)
}

/// The default disk (hybrid: GPT, BIOS boot partition, ESP, BootExt) boots both ways:
/// under OVMF (UEFI, GRUB x86_64-efi from EFI/BOOT/BOOTX64.EFI) the recovery entry
/// chosen once through `next_entry`, then under SeaBIOS (GRUB i386-pc from the BIOS
/// boot partition) the active entry, because GRUB for UEFI cleared `next_entry` on
/// BootExt. Two boots, about two minutes under TCG.
#[test]
fn mkbootext_hybrid_disk_boots_recovery_once_under_ovmf_then_active_under_seabios() {
    let dir = scratch("disk");
    let stage = Stage::new("hybrid");
    let dirs = stage.0.join("dirs");
    fs::create_dir_all(dirs.join("DIR_etc_ssh")).unwrap();
    fs::write(dirs.join("DIR_etc_ssh/marker"), "from-bootext-ssh\n").unwrap();
    fs::write(dirs.join("FILE_etc_hostname"), "bootext-host\n").unwrap();
    // The kernel the recovery entry keeps through a kernel update (Kernel/README).
    let previous = stage.copy(
        &top().join("work/kernel/current/vmlinuz"),
        "vmlinuz-previous",
    );
    let (disk, made) = make_disk(
        &stage,
        "bootext.img",
        &[
            "--recovery-kernel",
            previous.to_str().unwrap(),
            "--dirs",
            dirs.to_str().unwrap(),
            "--grubenv",
            "menu_timeout=1",
            "--grubenv",
            "overboot_args=overboot.onfail=poweroff no_timer_check",
            "--grubenv",
            "next_entry=recovery",
        ],
    );
    assert!(made.contains("GPT, EFI system partition"), "{made}");
    assert!(made.contains("BIOS boot partition"), "{made}");
    let parts = run(Command::new("sfdisk").arg("--dump").arg(&disk));
    assert!(parts.contains("label: gpt"), "{parts}");
    for ty in [
        "21686148-6449-6E6F-744E-656564454649", // BIOS boot
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", // EFI system
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4", // Linux filesystem: BootExt
    ] {
        assert!(parts.contains(ty), "no partition of type {ty}:\n{parts}");
    }
    // The files on BootExt (partition 3) belong to root all the same.
    let part = stage.0.join("out/part.img");
    let st = debugfs(&disk, 3, &part, "stat /DIRS/FILE_etc_hostname");
    assert!(st.contains("User:     0   Group:     0"), "{st}");
    let env = debugfs(&disk, 3, &part, "cat /grub/grubenv");
    assert!(env.contains("next_entry=recovery"), "{env}");
    for (link, file) in [
        ("active-kernel", "vmlinuz"),
        ("recovery-kernel", "vmlinuz-previous"),
    ] {
        let st = debugfs(&disk, 3, &part, &format!("stat /Kernel/{link}"));
        assert!(st.contains(&format!("Fast link dest: \"{file}\"")), "{st}");
    }
    // GRUB's boot.img in the protective MBR, pointing at the BIOS boot partition.
    let head = fs::read(&disk).unwrap();
    assert_eq!(&head[510..512], &[0x55, 0xaa]);
    let boot_img = fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
    assert_eq!(&head[..0x5c], &boot_img[..0x5c]);
    assert_eq!(&head[0x5c..0x64], &2048u64.to_le_bytes());

    // Boot 1, UEFI: next_entry=recovery picks the recovery entry, once.
    let boot = boot_disk(&disk, OVMF, &dir.join("boot-uefi-recovery.log"));
    boot.assert_has("Booting `overboot: recovery system'");
    boot.assert_has("overboot: loading Kernel/recovery-kernel");
    boot.assert_has("overboot.system=recovery");
    boot.assert_has("OVERBOOT-E2E: system=recovery");
    boot.assert_has("OVERBOOT-E2E: done");
    let env = debugfs(&disk, 3, &part, "cat /grub/grubenv");
    assert!(!env.contains("next_entry=recovery"), "GRUB left it:\n{env}");

    // Boot 2, BIOS: the default entry boots, with BootExt's DIRS entries.
    let boot = boot_disk(&disk, Firmware::Bios, &dir.join("boot-bios-active.log"));
    boot.assert_has("Booting `overboot: active system'");
    boot.assert_has("overboot.bootext=LABEL=BootExt");
    boot.assert_has("OVERBOOT-E2E: system=appliance");
    boot.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    boot.assert_has("OVERBOOT-E2E: file /etc/hostname=bootext-host");
    boot.assert_has("OVERBOOT-E2E: done");
    boot.assert_lacks("overboot.system=recovery");
}

/// `--firmware uefi` and `--firmware bios` lay the disk out for one firmware only. The
/// UEFI-only disk boots under OVMF into the appliance with its DIRS entries (the hybrid
/// disk above boots recovery under OVMF and the appliance under SeaBIOS, so each
/// firmware reaches each entry once); the BIOS-only disk's GRUB i386-pc is the one the
/// hybrid disk boots under SeaBIOS. One boot, about a minute under TCG.
#[test]
fn mkbootext_uefi_and_bios_disks_carry_one_boot_loader() {
    let dir = scratch("one-loader");
    let stage = Stage::new("one-loader");
    let dirs = stage.0.join("dirs");
    fs::create_dir_all(dirs.join("DIR_etc_ssh")).unwrap();
    fs::write(dirs.join("DIR_etc_ssh/marker"), "from-uefi-disk\n").unwrap();
    let (disk, made) = make_disk(
        &stage,
        "uefi.img",
        &[
            "--firmware",
            "uefi",
            "--dirs",
            dirs.to_str().unwrap(),
            "--grubenv",
            "menu_timeout=1",
            "--grubenv",
            "overboot_args=overboot.onfail=poweroff no_timer_check",
        ],
    );
    assert!(!made.contains("BIOS boot"), "{made}");
    let parts = run(Command::new("sfdisk").arg("--dump").arg(&disk));
    assert!(parts.contains("label: gpt"), "{parts}");
    assert!(
        !parts.contains("21686148-6449-6E6F-744E-656564454649"),
        "{parts}"
    );
    // The ESP (partition 1) has GRUB at the removable-media path; BootExt is 2.
    let esp = e2e_common::partition_offset(&disk, 1);
    let listing = run(Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@{esp}", disk.display()))
        .arg("::/EFI/BOOT"));
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    let part = stage.0.join("out/part.img");
    let ls = debugfs(&disk, 2, &part, "ls /grub");
    assert!(ls.contains("x86_64-efi") && !ls.contains("i386-pc"), "{ls}");
    // No boot code in the protective MBR.
    let head = fs::read(&disk).unwrap();
    assert!(
        head[..440].iter().all(|&b| b == 0),
        "boot code in a UEFI-only MBR"
    );
    let boot = boot_disk(&disk, OVMF, &dir.join("boot-uefi-active.log"));
    boot.assert_has("Booting `overboot: active system'");
    boot.assert_has("OVERBOOT-E2E: system=appliance");
    boot.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-uefi-disk");
    boot.assert_has("OVERBOOT-E2E: done");
    boot.assert_lacks("overboot.system=recovery");

    let (disk, made) = make_disk(&stage, "bios.img", &["--firmware", "bios"]);
    assert!(made.contains("MBR, GRUB i386-pc"), "{made}");
    let parts = run(Command::new("sfdisk").arg("--dump").arg(&disk));
    assert!(parts.contains("label: dos"), "{parts}");
    let head = fs::read(&disk).unwrap();
    assert_eq!(head[0x1be], 0x80, "partition 1 is not marked bootable");
    assert_eq!(&head[0x5c..0x64], &1u64.to_le_bytes());
    let ls = debugfs(&disk, 1, &part, "ls /grub");
    assert!(ls.contains("i386-pc") && !ls.contains("x86_64-efi"), "{ls}");
}

#[test]
fn mkbootext_refuses_bad_input_with_a_message() {
    let dir = scratch("refuse");
    let not_sqfs = dir.join("system.img");
    fs::write(&not_sqfs, b"not a squashfs").unwrap();
    let out = output(
        Command::new(top().join("boot-layout/mkbootext"))
            .arg("-o")
            .arg(dir.join("x.img"))
            .arg("--system")
            .arg(&not_sqfs)
            .arg("--kernel")
            .arg(&not_sqfs)
            .arg("--initrd")
            .arg(&not_sqfs),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a squashfs image"), "{err}");
    assert!(!dir.join("x.img").exists());

    let out = output(Command::new(top().join("boot-layout/mkbootext")).arg("--system"));
    assert_eq!(out.status.code(), Some(2));
}
