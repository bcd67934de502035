//! Real systemd on the assembled root: a Debian minbase system image (debootstrap with
//! systemd-sysv) booted from BootExt by overboot's initramfs under QEMU; systemd must
//! reach multi-user.target, where a unit prints a marker and powers off. A unit from
//! BootExt `Units/` (wanted by multi-user.target) must have run before that. The
//! image is sealed (`overboot seal`: the root runs from dm-verity) and carries overboot
//! with `overboot-verity.service` enabled as the package does: systemd starts the
//! watcher early and it watches the system image.

mod e2e_common;

use e2e_common::{boot, fixture, musl_binary, run};
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn systemd_reaches_multi_user_on_the_assembled_root() {
    let f = fixture();
    let image = f.dir.join("systemd.squashfs");
    let built = Command::new(f.top.join("tests/systemd/build-image.sh"))
        .arg(&image)
        .arg("--with-overboot")
        .arg(musl_binary(&f.top))
        .status()
        .expect("build-image.sh");
    assert!(built.success(), "building the systemd image failed");
    run(Command::new(musl_binary(&f.top)).arg("seal").arg(&image));
    let seal = |suffix: &str| format!("{}{suffix}=System/active.squashfs{suffix}", image.display());
    let units = units_dir(&f.dir);
    let disk = f.dir.join("bootext-systemd.img");
    let out = Command::new(f.top.join("tests/e2e/build-bootext.sh"))
        .arg(&disk)
        .arg(&image)
        .arg(&f.recovery)
        .arg("--file")
        .arg(format!("{}=Units", units.display()))
        .args(["--file", &seal(".verity"), "--file", &seal(".roothash")])
        .output()
        .expect("build-bootext.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = boot(f, "overboot.onfail=poweroff", &[&disk], None);
    log.assert_has("OVERBOOT-E2E: systemd reached multi-user.target");
    log.assert_has("OVERBOOT-E2E: unit from BootExt Units/ ran");
    log.assert_has("OVERBOOT-E2E: hostname=bootext-host");
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
    log.assert_lacks("[FAILED]");
    let mounts = log.section("mounts");
    for needle in [
        "overlay / overlay ",
        " /mnt/livecd squashfs ro,",
        " /etc/ssh ext4 ",
        " /opt/tools squashfs ro,",
    ] {
        assert!(
            mounts.contains(needle),
            "no '{needle}' in /proc/mounts:\n{mounts}"
        );
    }
    let state = log.section("state");
    assert!(state.contains("\"mode\": \"boot\""), "{state}");
    assert!(
        state.contains("\"hash_file\": \"System/active.squashfs.verity\""),
        "the root runs from dm-verity: {state}"
    );
    log.assert_has("OVERBOOT-E2E: overboot-verity.service active");
    log.assert_has("overboot: verity-watch: watching System/active.squashfs (dm-");
    assert!(
        state.contains("/run/systemd/system/multi-user.target.wants/overboot-units-e2e.service"),
        "{state}"
    );
    assert!(
        log.powered_off(),
        "QEMU did not end by power-off:\n{}",
        log.tail()
    );
}

/// `Units/` for the BootExt: a oneshot unit that prints a marker on the console,
/// ordered before multi-user.target (so it has run when the final marker prints),
/// and its `multi-user.target.wants/` link.
fn units_dir(dir: &Path) -> PathBuf {
    let units = dir.join("units-systemd/Units");
    let _ = std::fs::remove_dir_all(&units);
    std::fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
    std::fs::write(
        units.join("overboot-units-e2e.service"),
        "[Unit]\nDescription=overboot Units/ marker\nDefaultDependencies=no\nBefore=multi-user.target\n\n\
         [Service]\nType=oneshot\nStandardOutput=tty\nTTYPath=/dev/console\n\
         ExecStart=/bin/echo \"OVERBOOT-E2E: unit from BootExt Units/ ran\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../overboot-units-e2e.service",
        units.join("multi-user.target.wants/overboot-units-e2e.service"),
    )
    .unwrap();
    units
}
