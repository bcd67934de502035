//! dm-verity under QEMU (TCG) with Debian's kernel, two boots:
//! 1. toram + verity: the system image sealed by `veritysetup format` boots from a
//!    dm-verity device reading the RAM copy; a sealed `DIR_` image with a flipped
//!    byte in one file's data mounts, that file reads as EIO (never wrong bytes) and
//!    another file of the same image reads fine.
//! 2. a sealed system image whose flipped byte is read by the mount: the boot falls
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

/// `--file` arguments putting `img` and its seal at `dest` on BootExt.
fn sealed_files(img: &Path, dest: &str) -> Vec<String> {
    ["", ".verity", ".roothash"]
        .iter()
        .flat_map(|s| {
            [
                "--file".to_string(),
                format!("{}={dest}{s}", beside(img, s).display()),
            ]
        })
        .collect()
}

/// Boot a BootExt holding the fixture's images, with `sealed` images (and their
/// seals) put at the given BootExt paths.
fn boot_sealed(f: &Fixture, name: &str, sealed: &[(&Path, &str)], append: &str) -> Boot {
    let args: Vec<String> = sealed
        .iter()
        .flat_map(|(img, dest)| sealed_files(img, dest))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (disk, _) = bootext(f, name, &args);
    boot(f, append, &[&disk], None)
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

#[test]
fn toram_sealed_system_and_a_corrupted_file_in_a_sealed_dir_image() {
    let f = fixture();
    let dir = work_dir(f, "toram");
    // The system image (with overboot in it, for `overboot status`), sealed by
    // veritysetup itself.
    let built = run(Command::new(f.top.join("tests/e2e/build-appliance.sh"))
        .arg(dir.join("appliance"))
        .arg("--with-overboot")
        .arg(e2e_common::musl_binary(&f.top)));
    let sys = dir.join("active.squashfs");
    fs::copy(built.trim(), &sys).unwrap();
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
    // A DIR_ image: 128 KiB of noise first (data blocks 0..32 of the image), a small
    // marker after it (in the fragment block); one byte of the noise flipped.
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    let noise: Vec<u8> = (0..128 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(tree.join("big.bin"), noise).unwrap();
    fs::write(tree.join("marker"), "sealed-marker\n").unwrap();
    let dimg = dir.join("DIR_opt_sealed.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&dimg).args([
        "-noappend",
        "-noD",
        "-quiet",
        "-no-progress",
    ]));
    overboot_seal(f, &dimg);
    flip_byte(&dimg, 65_536 + 100);

    let log = boot_sealed(
        f,
        "verity-toram",
        &[
            (&sys, "System/active.squashfs"),
            (&dimg, "DIRS/DIR_opt_sealed.squashfs"),
        ],
        "overboot.toram overboot.onfail=poweroff e2e.read=/opt/sealed/marker e2e.read=/opt/sealed/big.bin",
    );
    let state = booted(&log, "appliance");
    let system = system_verity(&state);
    assert_eq!(system["root_hash"], root.as_str(), "{state}");
    assert!(state.contains("whole-image hash skipped"), "{state}");
    assert!(state.contains("\"done\": true"), "toram: {state}");
    let sealed = mount_entry(&state, "/opt/sealed");
    assert_eq!(
        sealed["verity"]["hash_file"], "DIRS/DIR_opt_sealed.squashfs.verity",
        "{state}"
    );
    assert_eq!(sealed["verity"]["on_error"], "eio", "{state}");
    // The mounts come from dm devices.
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
