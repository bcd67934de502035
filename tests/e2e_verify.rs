//! End-to-end verification and toram under QEMU (TCG) with Debian's kernel: an
//! initramfs with a trusted key refusing a badly signed image, a toram boot with its
//! progress line, and toram of an image that does not fit in the VM's RAM.
//! Needs the musl build (`OVERBOOT_MUSL_BIN`) and the `minisign` tool.

mod e2e_common;

use e2e_common::{Boot, Fixture, bootext, fixture, musl_binary};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Boot `initrd` with one disk and `mem` MiB of RAM.
fn boot_with(f: &Fixture, initrd: &Path, append: &str, disk: &Path, mem: u32) -> Boot {
    let out = Command::new(f.top.join("tests/e2e/run-qemu.sh"))
        .arg("--initrd")
        .arg(initrd)
        .args(["--append", append, "--timeout", "120"])
        .args(["--mem", &mem.to_string()])
        .arg("--disk")
        .arg(disk)
        .output()
        .expect("run-qemu.sh");
    Boot {
        log: String::from_utf8_lossy(&out.stdout).into_owned(),
        code: out.status.code(),
    }
}

/// Where the boot leaves the initramfs's first trusted key (`verify::keep_keys`).
const KEPT_KEY: &str = "/run/overboot/trusted-keys/0.pub";

fn assert_booted(log: &Boot, system: &str) {
    log.assert_booted(system);
}

fn work_dir(f: &Fixture) -> PathBuf {
    let d = f.dir.join("verify");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn trusted_key_refuses_a_badly_signed_image() {
    let f = fixture();
    let dir = work_dir(f);
    let (public, secret) = (dir.join("k.pub"), dir.join("k.key"));
    let _ = std::fs::remove_file(&public);
    let _ = std::fs::remove_file(&secret);
    run(Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    // Recovery signed correctly; active carries recovery's signature (names another file).
    let rec_sig = dir.join("recovery.squashfs.minisig");
    run(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&secret)
        .arg("-m")
        .arg(&f.recovery)
        .arg("-x")
        .arg(&rec_sig));
    // The initramfs with the key baked in.
    let kdir = PathBuf::from(run(&mut Command::new(f.top.join("tests/kernel/fetch"))).trim());
    let kver = kdir.file_name().unwrap().to_string_lossy().into_owned();
    let initrd = dir.join("initramfs-trusted.img");
    run(Command::new(musl_binary(&f.top))
        .arg("mkinitramfs")
        .arg("-o")
        .arg(&initrd)
        .args(["--kver", &kver, "--modules-dir"])
        .arg(kdir.join("root/lib/modules").join(&kver))
        .arg("--trust-key")
        .arg(&public));
    let rec_spec = format!("{}=System/recovery.squashfs.minisig", rec_sig.display());
    let act_spec = format!("{}=System/active.squashfs.minisig", rec_sig.display());
    let (disk, _) = bootext(
        f,
        "verify-badsig",
        &["--file", &rec_spec, "--file", &act_spec],
    );
    let log = boot_with(
        f,
        &initrd,
        &format!("overboot.onfail=poweroff e2e.read={KEPT_KEY}"),
        &disk,
        512,
    );
    assert_booted(&log, "recovery");
    // The initramfs's key is left for the booted system's `overboot update`.
    log.assert_has(&format!("read {KEPT_KEY} ok"));
    let state = log.section("state");
    assert!(state.contains("\"from\": \"active\""), "{state}");
    // Recovery's signature names recovery.squashfs (issue 10 item 8).
    assert!(
        state.contains("signs a file named 'recovery.squashfs', not active.squashfs"),
        "{state}"
    );
    assert!(
        state.contains("\"key_id\""),
        "recovery's key recorded: {state}"
    );
}

#[test]
fn toram_boot_shows_progress_and_boots() {
    let f = fixture();
    let (disk, _) = bootext(f, "verify-toram", &[]);
    let log = boot_with(
        f,
        &f.initrd,
        &format!("overboot.toram overboot.onfail=poweroff e2e.read={KEPT_KEY}"),
        &disk,
        512,
    );
    assert_booted(&log, "appliance");
    // An initramfs without keys leaves none.
    log.assert_has(&format!("read {KEPT_KEY} failed"));
    // The in-place progress line (carriage returns, no newline per update).
    log.assert_has("\roverboot: toram System/active.squashfs   0%");
    log.assert_has("100%");
    log.assert_has("toram: System/active.squashfs copied to RAM");
    let state = log.section("state");
    assert!(state.contains("\"done\": true"), "{state}");
}

#[test]
fn toram_larger_than_ram_boots_from_bootext() {
    let f = fixture();
    let dir = work_dir(f);
    // The appliance followed by 48 MiB of incompressible data (squashfs ignores what
    // follows its bytes_used): more than a 128 MiB VM can spare.
    let big = dir.join("big.squashfs");
    std::fs::copy(&f.system, &big).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c 50331648 /dev/urandom >> '{}'",
        big.display()
    )));
    let spec = format!("{}=System/big.squashfs", big.display());
    let (disk, _) = bootext(f, "verify-big", &["--file", &spec]);
    let log = boot_with(
        f,
        &f.initrd,
        "overboot.toram overboot.system=big.squashfs overboot.onfail=poweroff",
        &disk,
        128,
    );
    assert_booted(&log, "appliance");
    log.assert_has("toram refused");
    log.assert_has("NOT from RAM");
    let state = log.section("state");
    assert!(state.contains("\"done\": false"), "{state}");
    assert!(state.contains("can be spared"), "{state}");
    assert!(state.contains("\"choice\": \"named\""), "{state}");
}
