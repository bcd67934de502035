//! Shared by the QEMU end-to-end tests: the fixture built once per test binary (the
//! initramfs from the musl build, the appliance and recovery images), BootExt disks
//! per test, and a boot that returns the serial console log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Fixture {
    pub top: PathBuf,
    pub dir: PathBuf,
    pub initrd: PathBuf,
    pub system: PathBuf,
    pub recovery: PathBuf,
}

/// Run `cmd`, require success, return its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The static build that goes into the initramfs.
pub fn musl_binary(top: &Path) -> PathBuf {
    let bin = std::env::var_os("OVERBOOT_MUSL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/x86_64-unknown-linux-musl/release/overboot"));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release --target x86_64-unknown-linux-musl` (test.sh does)",
        bin.display()
    );
    bin
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let top = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = top.join("work/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let kdir = PathBuf::from(run(&mut Command::new(top.join("tests/kernel/fetch"))).trim());
        let kver = kdir.file_name().unwrap().to_string_lossy().into_owned();
        let initrd = dir.join("initramfs.img");
        run(Command::new(musl_binary(&top))
            .arg("mkinitramfs")
            .arg("-o")
            .arg(&initrd)
            .args(["--kver", &kver, "--modules-dir"])
            .arg(kdir.join("root/lib/modules").join(&kver)));
        let sys = dir.join("appliance");
        let rec = dir.join("recovery");
        run(Command::new(top.join("tests/e2e/build-appliance.sh")).arg(&sys));
        run(Command::new(top.join("tests/e2e/build-appliance.sh"))
            .arg(&rec)
            .arg("--recovery"));
        Fixture {
            system: sys.join("appliance.squashfs"),
            recovery: rec.join("recovery.squashfs"),
            top,
            dir,
            initrd,
        }
    })
}

/// A BootExt disk image for one test; returns it and the lines the builder printed.
pub fn bootext(f: &Fixture, name: &str, args: &[&str]) -> (PathBuf, Vec<String>) {
    let img = f.dir.join(format!("bootext-{name}.img"));
    let out = run(Command::new(f.top.join("tests/e2e/build-bootext.sh"))
        .arg(&img)
        .arg(&f.system)
        .arg(&f.recovery)
        .args(args));
    (img, out.lines().map(str::to_string).collect())
}

/// What a boot printed, and how QEMU ended.
pub struct Boot {
    pub log: String,
    pub code: Option<i32>,
}

impl Boot {
    pub fn assert_has(&self, needle: &str) {
        assert!(
            self.log.contains(needle),
            "the console never showed '{needle}':\n{}",
            self.tail()
        );
    }
    pub fn assert_lacks(&self, needle: &str) {
        assert!(
            !self.log.contains(needle),
            "the console showed '{needle}':\n{}",
            self.tail()
        );
    }
    /// The appliance's init ran to its end in image `system` (`appliance`,
    /// `recovery`), with no panic on the way.
    pub fn assert_booted(&self, system: &str) {
        self.assert_has("OVERBOOT-E2E: init started");
        self.assert_has(&format!("OVERBOOT-E2E: system={system}"));
        self.assert_has("OVERBOOT-E2E: done");
        self.assert_lacks("Kernel panic");
        self.assert_lacks("panicked");
    }
    /// Text between `OVERBOOT-E2E: NAME begin` and `... end`.
    pub fn section(&self, name: &str) -> String {
        let begin = format!("OVERBOOT-E2E: {name} begin");
        let end = format!("OVERBOOT-E2E: {name} end");
        match (self.log.find(&begin), self.log.find(&end)) {
            (Some(b), Some(e)) if b < e => self.log[b + begin.len()..e].to_string(),
            _ => panic!("no {name} section in the console log:\n{}", self.tail()),
        }
    }
    /// The options of the topmost mount on `at` in the appliance's /proc/mounts.
    #[track_caller]
    pub fn mount_options(&self, at: &str) -> Vec<String> {
        let mounts = self.section("mounts");
        let line = mounts
            .lines()
            .rev()
            .find(|l| l.split(' ').nth(1) == Some(at))
            .unwrap_or_else(|| panic!("nothing mounted on {at}:\n{mounts}"));
        let opts = line.split(' ').nth(3).unwrap_or_default();
        opts.split(',').map(str::to_string).collect()
    }
    /// QEMU exited by itself (guest power-off), not by the harness timeout.
    pub fn powered_off(&self) -> bool {
        self.code == Some(0)
    }
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

/// Boot the fixture's initramfs with `append` and the given disks.
pub fn boot(f: &Fixture, append: &str, disks: &[&Path], late: Option<&Path>) -> Boot {
    let mut extra = vec![];
    if let Some(l) = late {
        extra.push("--late-disk".into());
        extra.push(l.display().to_string());
    }
    boot_with(f, &f.initrd, append, disks, &extra)
}

/// Boot `initrd` with `append`, the given disks and more `run-qemu.sh` arguments.
pub fn boot_with(
    f: &Fixture,
    initrd: &Path,
    append: &str,
    disks: &[&Path],
    extra: &[String],
) -> Boot {
    let mut cmd = Command::new(f.top.join("tests/e2e/run-qemu.sh"));
    cmd.arg("--initrd")
        .arg(initrd)
        .args(["--append", append, "--timeout", "120"]);
    for d in disks {
        cmd.arg("--disk").arg(d);
    }
    cmd.args(extra);
    let out = cmd.output().expect("run-qemu.sh");
    let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    Boot {
        log,
        code: out.status.code(),
    }
}

/// An initramfs like the fixture's, built with more `mkinitramfs` arguments.
pub fn initramfs_with(f: &Fixture, name: &str, args: &[&str]) -> PathBuf {
    let kdir = f.top.join("work/kernel/current");
    let kver = std::fs::read_dir(kdir.join("root/lib/modules"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a kernel under work/kernel/current/root/lib/modules");
    let out = f.dir.join(format!("initramfs-{name}.img"));
    run(Command::new(musl_binary(&f.top))
        .arg("mkinitramfs")
        .arg("-o")
        .arg(&out)
        .args(["--kver", &kver, "--modules-dir"])
        .arg(kdir.join("root/lib/modules").join(&kver))
        .args(args));
    out
}

/// The firmware a whole-disk boot starts from: SeaBIOS, or OVMF with a pflash CODE
/// file and a VARS template (copied per boot: the firmware writes to it).
pub enum Firmware<'a> {
    Bios,
    Uefi { code: &'a str, vars: &'a str },
}

/// Boot `disks` (virtio-blk, boot order as given) from their boot loaders under `firmware`,
/// TCG, no network (the firmware would try PXE); the serial console goes to `log`.
/// q35 with SMM and secure pflash, as OVMF's Secure Boot builds need. QEMU is killed
/// after `timeout_s`, or as soon as the console shows `stop_at` (a boot that is meant
/// to be refused need not wait for the timeout).
pub fn disk_boot(
    disks: &[&Path],
    firmware: Firmware,
    timeout_s: u64,
    stop_at: Option<&str>,
    log: &Path,
) -> Boot {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-display", "none", "-serial", "stdio"])
        .args(["-monitor", "none", "-no-reboot", "-m", "512", "-smp", "1"])
        .args(["-nic", "none"]);
    for (i, disk) in disks.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "if=none,id=d{i},file={},format=raw",
                disk.display()
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=d{i},bootindex={i}"));
    }
    if let Firmware::Uefi { code, vars } = firmware {
        let own_vars = log.with_extension("vars.fd");
        std::fs::copy(vars, &own_vars).unwrap_or_else(|e| panic!("copy {vars}: {e}"));
        cmd.args(["-machine", "q35,smm=on"])
            .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={code}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                own_vars.display()
            ));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut raw = Vec::new();
    let mut stopped = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => raw.extend_from_slice(&chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                stopped = true;
                break;
            }
        }
        if stop_at.is_some_and(|s| String::from_utf8_lossy(&raw).contains(s)) {
            stopped = true;
            break;
        }
    }
    if stopped {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for QEMU");
    // Boot loaders draw menus with escape sequences; the text stays.
    let mut text = String::from_utf8_lossy(&raw).replace('\r', "");
    if stopped {
        text.push_str("\ndisk_boot: QEMU killed (timeout or stop text)\n");
    }
    std::fs::write(log, &text).unwrap();
    Boot {
        log: text,
        code: status.code(),
    }
}

/// Where partition `n` (from 1) of a disk image starts, in bytes (`sfdisk --json`).
pub fn partition_offset(disk: &Path, n: usize) -> u64 {
    let json = run(Command::new("sfdisk").arg("--json").arg(disk));
    let table: serde_json::Value = serde_json::from_str(&json).unwrap();
    let part = &table["partitiontable"]["partitions"][n - 1];
    part["start"]
        .as_u64()
        .unwrap_or_else(|| panic!("{disk:?} has no partition {n}:\n{json}"))
        * 512
}

/// `debugfs -R CMD` on partition `n` (from 1) of `disk`, taken out into `part`
/// (sparse: a partition is mostly holes).
pub fn debugfs(disk: &Path, n: usize, part: &Path, cmd: &str) -> String {
    run(Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", part.display()))
        .arg(format!("skip={}", partition_offset(disk, n)))
        .args(["bs=1M", "iflag=skip_bytes", "conv=sparse", "status=none"]));
    run(Command::new("debugfs").arg("-R").arg(cmd).arg(part))
}
