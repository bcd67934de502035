//! The dracut module (`dracut-module/90overboot`) for real: Debian's dracut builds an
//! initramfs with it (the module is taken from the repository through a private
//! `dracutbasedir` whose `modules.d` links every installed module plus ours; nothing
//! is installed into /usr/lib/dracut), Debian's stock kernel boots it under QEMU (TCG)
//! with `root=overboot` against a BootExt disk from `tests/e2e/build-bootext.sh`, and
//! the appliance of `tests/e2e/build-appliance.sh` reports what it sees on the console.
//! Both dracut modes: the shell init (`base`) and the systemd init (`systemd`,
//! `systemd-initrd`, `dracut-systemd`); and the failure path without BootExt.
//!
//! Needs dracut, systemd, qemu-system-x86, shellcheck (see .ci/packages.d/dracut) and
//! the musl build (`test.sh` builds it and sets OVERBOOT_MUSL_BIN).

mod e2e_common;

use e2e_common::{Boot, Fixture, bootext, fixture, musl_binary, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MODULE: &str = "dracut-module/90overboot";
/// No shell, power off on failure; status lines by description (not ellipsized names).
const SYSTEMD_ARGS: &str =
    "rd.shell=0 rd.emergency=poweroff systemd.status_unit_format=description";

/// A dracut "installation" that is the system's plus the repository's module.
fn dracut_basedir(f: &Fixture) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = f.top.join("work/dracut/basedir");
        if base.exists() {
            std::fs::remove_dir_all(&base).unwrap();
        }
        std::fs::create_dir_all(base.join("modules.d")).unwrap();
        let system = Path::new("/usr/lib/dracut");
        assert!(
            system.join("dracut-init.sh").exists(),
            "dracut is not installed (apt-get install dracut)"
        );
        for entry in std::fs::read_dir(system).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "modules.d" {
                std::os::unix::fs::symlink(entry.path(), base.join(entry.file_name())).unwrap();
            }
        }
        for entry in std::fs::read_dir(system.join("modules.d")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name.to_string_lossy().ends_with("overboot") {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), base.join("modules.d").join(name)).unwrap();
        }
        std::os::unix::fs::symlink(f.top.join(MODULE), base.join("modules.d/90overboot")).unwrap();
        std::fs::create_dir_all(f.top.join("work/dracut/conf.d")).unwrap();
        base
    })
    .clone()
}

/// Build a dracut initramfs with the overboot module; `systemd` picks the init.
fn build_initrd(f: &Fixture, systemd: bool) -> PathBuf {
    let kdir = PathBuf::from(run(&mut Command::new(f.top.join("tests/kernel/fetch"))).trim());
    let kver = kdir.file_name().unwrap().to_string_lossy().into_owned();
    let base = dracut_basedir(f);
    let (name, modules) = if systemd {
        (
            "dracut-systemd.img",
            "systemd systemd-initrd dracut-systemd base overboot",
        )
    } else {
        ("dracut-shell.img", "base overboot")
    };
    let out = f.top.join("work/dracut").join(name);
    run(Command::new("dracut")
        .env("dracutbasedir", &base)
        .env("OVERBOOT_BIN", musl_binary(&f.top))
        .args([
            "--force",
            "--quiet",
            "--no-hostonly",
            "--no-early-microcode",
        ])
        .arg("--confdir")
        .arg(f.top.join("work/dracut/conf.d"))
        .args(["--conf", "/dev/null", "--modules", modules])
        // The disk of the test machine; the module adds loop, squashfs, overlay, fs.
        .args(["--add-drivers", "virtio_blk virtio_pci"])
        .args(["--kver", &kver, "--kmoddir"])
        .arg(kdir.join("root/lib/modules").join(&kver))
        // Uncompressed: fastest to build and to unpack under TCG.
        .args(["--compress", "cat"])
        .arg(&out));
    let listing = run(Command::new("lsinitrd").arg(&out));
    for needle in [
        "usr/bin/overboot",
        "lib/overboot-lib.sh",
        "kernel/drivers/block/loop.ko",
        "kernel/fs/squashfs/squashfs.ko",
        "kernel/fs/overlayfs/overlay.ko",
        "kernel/fs/ext4/ext4.ko",
        "kernel/fs/xfs/xfs.ko",
        "kernel/fs/btrfs/btrfs.ko",
        "kernel/fs/fat/vfat.ko",
        "kernel/fs/isofs/isofs.ko",
    ] {
        assert!(
            listing.contains(needle),
            "{needle} not in {}",
            out.display()
        );
    }
    let hooks = [
        "overboot-assemble.service",
        "system-generators/overboot-generator",
    ];
    for h in hooks {
        assert_eq!(listing.contains(h), systemd, "{h} in {}", out.display());
    }
    assert_eq!(
        listing.contains("hooks/mount/10-mount-overboot.sh"),
        !systemd
    );
    out
}

fn initrd(f: &Fixture, systemd: bool) -> PathBuf {
    static SHELL: OnceLock<PathBuf> = OnceLock::new();
    static SYSTEMD: OnceLock<PathBuf> = OnceLock::new();
    let cell = if systemd { &SYSTEMD } else { &SHELL };
    cell.get_or_init(|| build_initrd(f, systemd)).clone()
}

/// Remove terminal colour sequences (systemd's status lines).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn boot(initrd: &Path, append: &str, disk: &Path) -> Boot {
    let f = fixture();
    let out = Command::new(f.top.join("tests/e2e/run-qemu.sh"))
        .arg("--initrd")
        .arg(initrd)
        .args(["--append", append, "--timeout", "240", "--disk"])
        .arg(disk)
        .output()
        .expect("run-qemu.sh");
    Boot {
        log: plain(&String::from_utf8_lossy(&out.stdout).replace('\r', "")),
        code: out.status.code(),
    }
}

/// A BootExt disk; the appliance gets an os-release from it (systemd's switch-root
/// refuses a tree without one).
fn disk(f: &Fixture, name: &str, extra: &[&str]) -> PathBuf {
    let os_release = f.dir.join("dracut-os-release");
    std::fs::write(&os_release, "NAME=appliance\nID=appliance\n").unwrap();
    let file = format!("{}=DIRS/FILE_etc_os-release", os_release.display());
    let mut args = vec!["--file", file.as_str()];
    args.extend_from_slice(extra);
    bootext(f, &format!("dracut-{name}"), &args).0
}

fn assert_assembled(log: &Boot) {
    log.assert_has("overboot: assembled /sysroot from System/active.squashfs");
    log.assert_has("OVERBOOT-E2E: init started");
    log.assert_has("OVERBOOT-E2E: system=appliance");
    log.assert_has("OVERBOOT-E2E: pid=1");
    log.assert_has("OVERBOOT-E2E: file /etc/hostname=bootext-host");
    log.assert_has("OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh");
    log.assert_has("OVERBOOT-E2E: file /opt/tools/marker=from-tools-image");
    log.assert_has("OVERBOOT-E2E: root writable");
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
    let mounts = log.section("mounts");
    for needle in [
        "overlay / overlay ",
        " /run/overboot/bootext ext4 rw,",
        " /mnt/cdrom ext4 ",
        " /mnt/livecd squashfs ro,",
        " /mnt/overlay tmpfs ",
        " /etc/ssh ext4 ",
        " /etc/hostname ext4 ",
        " /opt/tools squashfs ro,",
    ] {
        assert!(
            mounts.contains(needle),
            "no '{needle}' in /proc/mounts:\n{mounts}\n--- log tail ---\n{}",
            log.tail()
        );
    }
    let state = log.section("state");
    assert!(state.contains("\"mode\": \"assemble\""), "{state}");
    assert!(state.contains("\"root\": \"/sysroot\""), "{state}");
    assert!(state.contains("\"fallback\": null"), "{state}");
    assert!(
        log.powered_off(),
        "QEMU did not end by power-off:\n{}",
        log.tail()
    );
}

#[test]
fn shell_init_assembles_the_root_and_dracut_switches() {
    let f = fixture();
    let img = initrd(f, false);
    let disk = disk(f, "shell", &[]);
    let log = boot(
        &img,
        "root=overboot rd.shell=0 rd.emergency=poweroff",
        &disk,
    );
    assert_assembled(&log);
    // dracut's own init did the hand-off, after the mount hook.
    log.assert_has("dracut: overboot: root assembled on /sysroot");
    log.assert_has("dracut: Switching root");
}

#[test]
fn systemd_init_assembles_the_root_and_systemd_switches() {
    let f = fixture();
    let img = initrd(f, true);
    let disk = disk(f, "systemd", &[]);
    let log = boot(&img, &format!("root=overboot {SYSTEMD_ARGS}"), &disk);
    assert_assembled(&log);
    log.assert_has("Finished overboot: assemble /sysroot from BootExt.");
    log.assert_has("Reached target Initrd Root File System.");
    log.assert_has("Starting Switch Root...");
    log.assert_lacks("FAILED");
}

fn assert_not_found_message(log: &Boot) {
    log.assert_has(
        "overboot: cannot assemble: looked for the BootExt volume (LABEL=BootExt, as /dev/disk/by-label/BootExt) for 3 s",
    );
    log.assert_has("found: labels: LABEL=NotBootExt; block devices: vda");
    log.assert_has("to fix: label the volume BootExt");
    log.assert_lacks("OVERBOOT-E2E: init started");
    assert_ne!(log.code, Some(124), "QEMU was killed:\n{}", log.tail());
}

#[test]
fn shell_init_without_bootext_dies_with_overboots_message() {
    let f = fixture();
    let img = initrd(f, false);
    let disk = disk(f, "shell-nolabel", &["--label", "NotBootExt"]);
    let log = boot(
        &img,
        "root=overboot overboot.timeout=3 rd.shell=0 rd.emergency=poweroff",
        &disk,
    );
    assert_not_found_message(&log);
    log.assert_has("dracut: FATAL: overboot could not assemble the root on /sysroot");
    // The emergency hook shows the message again right before giving up.
    log.assert_has("overboot: the root was not assembled:");
    log.assert_has("Boot has failed");
}

#[test]
fn systemd_init_without_bootext_goes_to_emergency_with_overboots_message() {
    let f = fixture();
    let img = initrd(f, true);
    let disk = disk(f, "systemd-nolabel", &["--label", "NotBootExt"]);
    let log = boot(
        &img,
        &format!("root=overboot overboot.timeout=3 {SYSTEMD_ARGS}"),
        &disk,
    );
    assert_not_found_message(&log);
    log.assert_has("overboot-dracut-assemble[");
    log.assert_has("FAILED] Failed to start overboot: assemble /sysroot from BootExt.");
    log.assert_has("Dependency failed for /sysroot assembled by overboot.");
    log.assert_has("Reached target Emergency Mode.");
    log.assert_has("Boot has failed");
    assert!(
        log.powered_off(),
        "QEMU did not end by power-off:\n{}",
        log.tail()
    );
}

/// `overboot_candidates SPEC` from the module's library, run by /bin/sh.
fn candidates(spec: &str) -> (bool, Vec<String>) {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(MODULE)
        .join("overboot-lib.sh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#". "$1" && overboot_candidates "$2""#)
        .arg("sh")
        .arg(lib)
        .arg(spec)
        .output()
        .expect("sh");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.success(), lines)
}

#[test]
fn bootext_specs_map_to_udev_links() {
    assert_eq!(
        candidates("LABEL=BootExt"),
        (true, vec!["/dev/disk/by-label/BootExt".to_string()])
    );
    assert_eq!(
        candidates("LABEL=My Disk/2"),
        (
            true,
            vec![r"/dev/disk/by-label/My\x20Disk\x2f2".to_string()]
        )
    );
    assert_eq!(
        candidates("PARTLABEL=appliance-data"),
        (
            true,
            vec!["/dev/disk/by-partlabel/appliance-data".to_string()]
        )
    );
    // ext4/btrfs UUIDs are lower case in udev's links, vfat's upper case.
    let (ok, uuid) = candidates("UUID=AbCd-12ef");
    assert!(ok);
    assert_eq!(
        uuid,
        [
            "/dev/disk/by-uuid/AbCd-12ef",
            "/dev/disk/by-uuid/abcd-12ef",
            "/dev/disk/by-uuid/ABCD-12EF"
        ]
    );
    let (ok, partuuid) = candidates("PARTUUID=6A1C-01");
    assert!(ok);
    assert_eq!(partuuid[1], "/dev/disk/by-partuuid/6a1c-01");
    assert_eq!(
        candidates("/dev/vdb1"),
        (true, vec!["/dev/vdb1".to_string()])
    );
    for bad in ["sda1", "LABEL=", "FOO=bar", ""] {
        assert_eq!(candidates(bad), (false, vec![]), "{bad}");
    }
}

#[test]
fn module_scripts_are_shellcheck_clean() {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = top.join(MODULE);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sh") {
            continue;
        }
        // module-setup.sh is sourced by dracut (bash); the rest run under the
        // initramfs's /bin/sh.
        let shell = if path.ends_with("module-setup.sh") {
            "bash"
        } else {
            "sh"
        };
        let out = Command::new("shellcheck")
            .current_dir(&top)
            .args(["-x", "-s", shell])
            .arg(&path)
            .output()
            .expect("shellcheck (apt-get install shellcheck)");
        assert!(
            out.status.success(),
            "shellcheck {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "expected 6 scripts in {}", dir.display());
}
