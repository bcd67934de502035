//! dm-verity under QEMU (TCG) with Debian's kernel, four boots:
//! 1.-3. (one test) every kind of sealed image in one toram boot, corrupted blocks
//!    read at run time recorded by `overboot verity-watch` (from the kernel log and
//!    from a uevent), which restarts; the same disk booted again refuses the
//!    recorded images (see the test's comment).
//! 4. a sealed system image whose flipped byte is read by the mount: the boot falls
//!    back to recovery (sealed by `overboot seal`, mounted through dm-verity without
//!    toram); `overboot.verity=1` skips the unsealed `DIR_` image.
//!
//! The refusals made before any dm call (truncated tree, bad signature...) are tested
//! on the host in `tests/verity.rs`. Needs the musl build and `veritysetup`.

mod e2e_common;

use e2e_common::{Boot, Fixture, boot, bootext, fixture, run};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn beside(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn work_dir(f: &Fixture, name: &str) -> PathBuf {
    let d = f.dir.join("verity").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn flip_byte(img: &Path, at: u64) {
    let mut b = fs::read(img).unwrap();
    b[at as usize] ^= 0x55;
    fs::write(img, b).unwrap();
}

fn overboot_seal(f: &Fixture, img: &Path) {
    run(Command::new(e2e_common::musl_binary(&f.top))
        .arg("seal")
        .arg(img));
}

/// `overboot seal --fec`: with `IMAGE.fec`, the kernel repairs corrupted blocks.
fn overboot_seal_fec(f: &Fixture, img: &Path) {
    run(Command::new(e2e_common::musl_binary(&f.top))
        .args(["seal", "--fec"])
        .arg(img));
}

/// `--file` arguments putting `img` and its seal at `dest` on BootExt.
fn sealed_files(img: &Path, dest: &str) -> Vec<String> {
    ["", ".verity", ".roothash", ".fec"]
        .iter()
        .filter(|s| beside(img, s).exists())
        .flat_map(|s| {
            [
                "--file".to_string(),
                format!("{}={dest}{s}", beside(img, s).display()),
            ]
        })
        .collect()
}

/// Boot a BootExt holding the fixture's images and `sealed` (see [`sealed_disk`]).
fn boot_sealed(f: &Fixture, name: &str, sealed: &[(&Path, &str)], append: &str) -> Boot {
    boot(f, append, &[&sealed_disk(f, name, sealed)], None)
}

fn booted(log: &Boot, system: &str) -> String {
    log.assert_has("OVERBOOT-E2E: init started");
    log.assert_has(&format!("OVERBOOT-E2E: system={system}"));
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
    log.assert_lacks("panicked");
    log.section("state")
}

/// The JSON object of the mount at `target` in state.json's text.
fn mount_entry(state: &str, target: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(state.trim()).expect("state.json");
    v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["target"] == target)
        .unwrap_or_else(|| panic!("no mount at {target}: {state}"))
        .clone()
}

/// The verity record of the system image's mount; it must come from a dm device.
fn system_verity(state: &str) -> serde_json::Value {
    let v = mount_entry(state, "/mnt/livecd")["verity"].clone();
    assert!(
        v["device"]
            .as_str()
            .is_some_and(|d| d.starts_with("/dev/dm-")),
        "{state}"
    );
    v
}

/// `len` bytes no compressor shrinks (xorshift64), so squashfs stores them as they are.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A squashfs image of `files` (name, content), sealed by `overboot seal`.
fn sealed_image(f: &Fixture, dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = dir.join(format!("tree-{name}"));
    for (file, content) in files {
        let p = tree.join(file);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    let img = dir.join(name);
    run(Command::new("mksquashfs").arg(&tree).arg(&img).args([
        "-noappend",
        "-noD",
        "-all-root",
        "-quiet",
        "-no-progress",
    ]));
    overboot_seal(f, &img);
    img
}

/// The BootExt disk of the fixture's images, with `sealed` images (and their seals)
/// put at the given BootExt paths.
fn sealed_disk(f: &Fixture, name: &str, sealed: &[(&Path, &str)]) -> PathBuf {
    let args: Vec<String> = sealed
        .iter()
        .flat_map(|(img, dest)| sealed_files(img, dest))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bootext(f, name, &args).0
}

/// One boot carries every kind of sealed image, with toram, and corruptions found
/// while the system runs; two more boots of the same disk show what the record
/// does (the three: ~1.5 min):
/// - the system image (with overboot in it, for `overboot status` and
///   `verity-watch`), sealed by veritysetup itself, boots from a dm-verity device
///   reading the RAM copy;
/// - a sealed `DIR_` image with a flipped byte in one file's data mounts, that file
///   reads as EIO (never wrong bytes), another file of the same image reads fine;
///   another, sealed with `--fec`, has the same flip repaired: the read succeeds;
/// - a sealed `Overlay/` layer and a sealed `Apps/` image are mounted from dm devices
///   (sysfs names, state.json);
/// - `overboot verity-watch` is started (as overboot-verity.service does): the DIR_
///   file's corruption, in the kernel log, is recorded in `System/verity-corrupted`
///   and the watcher restarts the machine (the default
///   `overboot.verity-error=restart`; QEMU's -no-reboot ends the run);
/// - booted again, the DIR_ image is refused (skipped, with the reason); the watcher
///   listens, a file of the system image with a flipped byte is read: EIO, the
///   kernel's uevent is recorded, restart;
/// - the third boot refuses the recorded system image: recovery, with the reason.
#[test]
fn sealed_images_of_every_kind_and_a_run_time_corruption_recorded_for_the_next_boot() {
    let f = fixture();
    let dir = work_dir(f, "toram");
    let built = run(Command::new(f.top.join("tests/e2e/build-appliance.sh"))
        .arg(dir.join("appliance"))
        .arg("--with-overboot")
        .arg(e2e_common::musl_binary(&f.top)));
    let sys = dir.join("active.squashfs");
    fs::copy(built.trim(), &sys).unwrap();
    // /verity-probe.bin appended (mksquashfs without -noappend adds to the root),
    // then sealed by veritysetup, then one byte of the probe's data flipped.
    let probe = noise(128 * 1024, 0x9e37_79b9_7f4a_7c15);
    let probe_dir = dir.join("probe");
    fs::create_dir_all(&probe_dir).unwrap();
    fs::write(probe_dir.join("verity-probe.bin"), &probe).unwrap();
    run(Command::new("mksquashfs").arg(&probe_dir).arg(&sys).args([
        "-all-root",
        "-quiet",
        "-no-progress",
    ]));
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(&sys)
        .arg(beside(&sys, ".verity")));
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    fs::write(beside(&sys, ".roothash"), format!("{root}\n")).unwrap();
    let bytes = fs::read(&sys).unwrap();
    let window = &probe[65_536..65_536 + 64];
    let at = bytes
        .windows(64)
        .position(|w| w == window)
        .expect("the probe's data is stored uncompressed") as u64
        + 100;
    flip_byte(&sys, at);
    let corrupted_block = at / 4096;

    // A DIR_ image: 128 KiB of noise first (data blocks 0..32 of the image), a small
    // marker after it (in the fragment block); one byte of the noise flipped.
    let dimg = sealed_image(
        f,
        &dir,
        "DIR_opt_sealed.squashfs",
        &[
            ("big.bin", &noise(128 * 1024, 7)),
            ("marker", b"sealed-marker\n"),
        ],
    );
    flip_byte(&dimg, 65_536 + 100);
    // The same with parity (`seal --fec`): the kernel repairs the block, the read
    // gives the right bytes.
    let fimg = sealed_image(
        f,
        &dir,
        "DIR_opt_fec.squashfs",
        &[("big.bin", &noise(128 * 1024, 11))],
    );
    overboot_seal_fec(f, &fimg);
    flip_byte(&fimg, 65_536 + 100);
    let layer = sealed_image(
        f,
        &dir,
        "10-sealed.squashfs",
        &[("etc/layer-marker", b"from-sealed-layer\n")],
    );
    let app = sealed_image(
        f,
        &dir,
        "sealedapp.squashfs",
        &[("app-marker", b"from-sealed-app\n")],
    );

    let disk = sealed_disk(
        f,
        "verity-toram",
        &[
            (&sys, "System/active.squashfs"),
            (&dimg, "DIRS/DIR_opt_sealed.squashfs"),
            (&fimg, "DIRS/DIR_opt_fec.squashfs"),
            (&layer, "Overlay/10-sealed.squashfs"),
            (&app, "Apps/sealedapp.squashfs"),
        ],
    );
    let append = "overboot.toram overboot.onfail=poweroff e2e.read=/opt/sealed/marker e2e.read=/opt/sealed/big.bin e2e.read=/opt/fec/big.bin e2e.read=/etc/layer-marker e2e.read=/mnt/apps/sealedapp/app-marker";
    let watched = format!("{append} e2e.verity-watch=/verity-probe.bin");
    let log = boot(f, &watched, &[&disk], None);
    let state = booted(&log, "appliance");
    let system = system_verity(&state);
    assert_eq!(system["root_hash"], root.as_str(), "{state}");
    assert_eq!(system["on_error"], "restart", "the default: {state}");
    assert!(state.contains("whole-image hash skipped"), "{state}");
    assert!(state.contains("\"done\": true"), "toram: {state}");
    let sealed = mount_entry(&state, "/opt/sealed");
    assert_eq!(
        sealed["verity"]["hash_file"], "DIRS/DIR_opt_sealed.squashfs.verity",
        "{state}"
    );
    // Every kind of image from a dm device: state.json and the kernel's names.
    let v: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let layer = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source"] == "Overlay/10-sealed.squashfs")
        .unwrap_or_else(|| panic!("no sealed layer: {state}"));
    let app = mount_entry(&state, "/mnt/apps/sealedapp");
    for (what, record) in [
        ("DIR_", &sealed["verity"]),
        ("layer", &layer["verity"]),
        ("app", &app["verity"]),
    ] {
        assert!(
            record["device"]
                .as_str()
                .is_some_and(|d| d.starts_with("/dev/dm-")),
            "{what}: {state}"
        );
    }
    for name in [
        "overboot-System-active.squashfs",
        "overboot-DIRS-DIR_opt_sealed.squashfs",
        "overboot-Overlay-10-sealed.squashfs",
        "overboot-Apps-sealedapp.squashfs",
    ] {
        assert!(
            log.log
                .lines()
                .any(|l| l.starts_with("OVERBOOT-E2E: dm dm-") && l.ends_with(name)),
            "no dm device named {name} in /sys/block:\n{}",
            log.tail()
        );
    }
    let mounts = log.section("mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/dm-") && l.contains(" /mnt/livecd squashfs ")),
        "{mounts}"
    );
    let status = log.section("status");
    assert!(
        status.contains("verity /dev/dm-") && status.contains(&root),
        "{status}"
    );
    log.assert_has("OVERBOOT-E2E: read /opt/sealed/marker ok");
    log.assert_has("OVERBOOT-E2E: read /opt/sealed/big.bin failed:");
    log.assert_has("Input/output error");
    log.assert_has("OVERBOOT-E2E: read /opt/fec/big.bin ok");
    assert_eq!(
        mount_entry(&state, "/opt/fec")["verity"]["fec_file"],
        "DIRS/DIR_opt_fec.squashfs.fec",
        "{state}"
    );
    log.assert_has("OVERBOOT-E2E: read /etc/layer-marker ok");
    log.assert_has("OVERBOOT-E2E: read /mnt/apps/sealedapp/app-marker ok");

    // verity-watch starts after the DIR_ file was read: the kernel log has that
    // corruption; it is recorded and the machine restarts.
    log.assert_has("overboot: verity-watch: watching System/active.squashfs (dm-");
    log.assert_has(
        "DIRS/DIR_opt_sealed.squashfs: data block 16 failed dm-verity while the system ran",
    );
    log.assert_has("recorded in /mnt/cdrom/System/verity-corrupted: the next boot refuses it");
    // From the kernel log (written before the restart, so it reaches the console).
    log.assert_has("] overboot: verity-watch: overboot.verity-error=restart: restarting");
    log.assert_has("reboot: Restarting system");
    log.assert_lacks("verity-watch did not restart");
    assert!(log.powered_off(), "QEMU ends on the restart (-no-reboot)");
    let record = |disk: &Path| {
        run(Command::new("debugfs")
            .args(["-R", "cat /System/verity-corrupted"])
            .arg(disk))
    };
    let dir_line = format!(
        "{} data 16 DIRS/DIR_opt_sealed.squashfs\n",
        fs::read_to_string(beside(&dimg, ".roothash"))
            .unwrap()
            .trim()
    );
    assert!(record(&disk).contains(&dir_line), "{}", record(&disk));

    // Booted again: the recorded DIR_ image is refused, the rest as before. Now the
    // watcher listens before a file of the system image with a flipped byte is read:
    // EIO, the kernel's uevent is recorded, the machine restarts.
    let log = boot(f, &watched, &[&disk], None);
    let state = booted(&log, "appliance");
    let v: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let skipped = v["skipped"].to_string();
    assert!(
        skipped.contains("data block 16 of DIRS/DIR_opt_sealed.squashfs failed dm-verity while the system ran (recorded in System/verity-corrupted)"),
        "{state}"
    );
    log.assert_has("OVERBOOT-E2E: watched read /verity-probe.bin failed:");
    log.assert_has(&format!(
        "System/active.squashfs: data block {corrupted_block} failed dm-verity while the system ran"
    ));
    // From the kernel log (written before the restart, so it reaches the console).
    log.assert_has("] overboot: verity-watch: overboot.verity-error=restart: restarting");
    log.assert_has("reboot: Restarting system");
    log.assert_lacks("verity-watch did not restart");
    assert!(log.powered_off(), "QEMU ends on the restart (-no-reboot)");
    let text = record(&disk);
    assert!(
        text.contains(&dir_line)
            && text.contains(&format!(
                "{root} data {corrupted_block} System/active.squashfs\n"
            )),
        "{text}"
    );

    // The third boot of the same disk refuses the recorded system image: recovery.
    let log = boot(f, append, &[&disk], None);
    let state = booted(&log, "recovery");
    let v: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let reason = v["fallback"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "data block {corrupted_block} of System/active.squashfs failed dm-verity while the system ran (recorded in System/verity-corrupted)"
        )),
        "{state}"
    );
}

#[test]
fn a_block_corrupted_under_the_mount_falls_back_to_sealed_recovery() {
    let f = fixture();
    let dir = work_dir(f, "fallback");
    let sys = dir.join("active.squashfs");
    let rec = dir.join("recovery.squashfs");
    fs::copy(&f.system, &sys).unwrap();
    fs::copy(&f.recovery, &rec).unwrap();
    overboot_seal(f, &sys);
    overboot_seal(f, &rec);
    // The last byte squashfs uses (its id index table, read by the mount).
    let b = fs::read(&sys).unwrap();
    let bytes_used = u64::from_le_bytes(b[40..48].try_into().unwrap());
    flip_byte(&sys, bytes_used - 1);

    let log = boot_sealed(
        f,
        "verity-fallback",
        &[
            (&sys, "System/active.squashfs"),
            (&rec, "System/recovery.squashfs"),
        ],
        "overboot.verity=1 overboot.onfail=poweroff",
    );
    let state = booted(&log, "recovery");
    let v: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let reason = v["fallback"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("verity over System/active.squashfs"),
        "{state}"
    );
    let system = system_verity(&state);
    assert_eq!(system["hash_file"], "System/recovery.squashfs.verity");
    assert!(
        v["booted"]["toram"].is_null(),
        "recovery from BootExt: {state}"
    );
    // overboot.verity=1: the fixture's unsealed DIR_ image is skipped, with why.
    let skipped = v["skipped"].to_string();
    assert!(
        skipped.contains("DIR_opt_tools.squashfs.xz is not sealed"),
        "{state}"
    );
    log.assert_has("OVERBOOT-E2E: file /opt/tools/marker missing");
}
