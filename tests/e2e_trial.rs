//! Trial updates in real boots (QEMU, Debian's kernel, the musl initramfs): the
//! appliance carries the overboot binary as /usr/bin/overboot and prints
//! `overboot status` on the console. A trial of one boot is set on the BootExt disk
//! with `overboot set-active --tries 1` (the disk image loop-mounted on the host):
//! the first boot boots the trial image, the second (same disk) the previous image
//! with the reason; in a third boot the appliance runs `overboot bless`, and the
//! disk shows the trial ended. Three boots in all. Needs root (loop mount).

mod e2e_common;

use e2e_common::{Boot, Fixture, boot, fixture, musl_binary, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Two appliance images with overboot inside: `appliance` (the one to return to)
/// and `trial` (the update).
struct Images {
    appliance: PathBuf,
    trial: PathBuf,
}

fn images(f: &Fixture) -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = f.dir.join("trial");
        let bin = musl_binary(&f.top);
        let build = |name: &str| {
            PathBuf::from(
                run(Command::new(f.top.join("tests/e2e/build-appliance.sh"))
                    .arg(&dir)
                    .args(["--name", name, "--with-overboot"])
                    .arg(&bin))
                .trim(),
            )
        };
        Images {
            appliance: build("appliance"),
            trial: build("trial"),
        }
    })
}

/// A BootExt disk (appliance active, recovery, the trial image in System/), with
/// `overboot set-active trial.squashfs --tries 1` run on it; the disk is returned.
fn trial_disk(f: &Fixture, name: &str) -> PathBuf {
    let imgs = images(f);
    let disk = f.dir.join(format!("bootext-trial-{name}.img"));
    run(Command::new(f.top.join("tests/e2e/build-bootext.sh"))
        .arg(&disk)
        .arg(&imgs.appliance)
        .arg(&f.recovery)
        .arg("--file")
        .arg(format!("{}=System/trial.squashfs", imgs.trial.display())));
    with_mounted(&disk, |mnt| {
        let out = run(Command::new(env!("CARGO_BIN_EXE_overboot")).args([
            "set-active",
            "trial.squashfs",
            "--tries",
            "1",
            "--bootext",
            mnt.to_str().unwrap(),
        ]));
        assert!(out.contains("on trial for 1 boot"), "{out}");
    });
    disk
}

/// Loop-mount the disk image on the host while `body` runs.
fn with_mounted<T>(disk: &Path, body: impl FnOnce(&Path) -> T) -> T {
    let mnt = disk.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(disk)
        .arg(&mnt));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mnt)));
    run(Command::new("umount").arg(&mnt));
    match result {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn booted(log: &Boot, system: &str) {
    log.assert_has("OVERBOOT-E2E: init started");
    log.assert_has(&format!("OVERBOOT-E2E: system={system}"));
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
}

/// `overboot status` in the booted system shows the booted image and the overmounts.
fn status_shows_boot(log: &Boot, image: &str) -> String {
    let status = log.section("status");
    for needle in [
        format!("Booted:    System/{image}"),
        "/mnt/livecd".into(),
        "/mnt/cdrom".into(),
        "/etc/ssh".into(),
        "/etc/hostname".into(),
        "/opt/tools".into(),
        "DIRS/DIR_etc_ssh".into(),
        "Timings:".into(),
    ] {
        assert!(
            status.contains(&needle),
            "no '{needle}' in overboot status:\n{status}"
        );
    }
    status
}

#[test]
fn trial_boots_once_then_previous_with_reason() {
    let f = fixture();
    let disk = trial_disk(f, "runout");
    let first = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    booted(&first, "trial");
    let status = status_shows_boot(&first, "trial.squashfs");
    assert!(
        status.contains("Trial:     trial.squashfs trial (0 of 1 boots left)"),
        "{status}"
    );

    let second = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    booted(&second, "appliance");
    let status = status_shows_boot(&second, "active.squashfs");
    assert!(
        status.contains("Fallback:  from active: the trial of trial.squashfs ran out"),
        "{status}"
    );
    assert!(status.contains("rolled-back"), "{status}");
    // Durable: the disk is back on the appliance image.
    with_mounted(&disk, |mnt| {
        let active = std::fs::read_link(mnt.join("System/active-system")).unwrap();
        assert_eq!(active.to_str(), Some("active.squashfs"));
        let trial = std::fs::read_to_string(mnt.join("System/trial")).unwrap();
        assert!(trial.contains("outcome=rolled-back"), "{trial}");
    });
}

#[test]
fn bless_in_a_real_boot_ends_the_trial() {
    let f = fixture();
    let disk = trial_disk(f, "bless");
    let log = boot(f, "overboot.onfail=poweroff e2e.bless", &[&disk], None);
    booted(&log, "trial");
    let bless = log.section("bless");
    assert!(
        bless.contains("trial.squashfs blessed") && bless.contains("bless-exit=0"),
        "{bless}"
    );
    with_mounted(&disk, |mnt| {
        assert!(!mnt.join("System/trial").exists(), "trial file still there");
        let active = std::fs::read_link(mnt.join("System/active-system")).unwrap();
        assert_eq!(active.to_str(), Some("trial.squashfs"));
        let prev = std::fs::read_link(mnt.join("System/previous-system")).unwrap();
        assert_eq!(prev.to_str(), Some("active.squashfs"));
    });
}
