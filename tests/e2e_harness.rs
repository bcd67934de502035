//! Self-test of the QEMU end-to-end harness (`tests/e2e/run-qemu.sh`), and the PID 1
//! building blocks (`overboot::pid1`) run for real as PID 1 under QEMU.
//!
//! The PID 1 test boots an initramfs holding this very test binary (plus the shared
//! libraries it needs and busybox): `/init` execs it with the name of that test, so the
//! same test function runs in the guest as PID 1 (and there mounts, logs, fails or
//! switches root) and on the host (where it builds the initramfs, boots it and reads
//! the console).
//!
//! Needs: qemu-system-x86_64, busybox-static, cpio, socat, and the kernel from
//! `tests/kernel/fetch` (run here). One QEMU at a time.

use overboot::cmdline::OnFail;
use overboot::pid1;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_QEMU_AT_A_TIME: Mutex<()> = Mutex::new(());

const MARK: &str = "OVERBOOT-E2E-PID1:";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = top().join("work/e2e-harness").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn fetch_kernel() {
    let out = Command::new(top().join("tests/kernel/fetch"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/kernel/fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox not found: apt-get install busybox-static");
}

fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A newc cpio of `staging`, made by GNU cpio, owned by root.
fn make_cpio(staging: &Path, out: &Path) {
    let file = fs::File::create(out).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet")
        .current_dir(staging)
        .stdout(file)
        .status()
        .unwrap();
    assert!(status.success(), "cpio failed");
}

struct Boot {
    console: String,
    code: Option<i32>,
    elapsed: Duration,
}

fn boot(initrd: &Path, append: &str, extra: &[&str], timeout: u64) -> Boot {
    let _one = ONE_QEMU_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let log = initrd.with_extension("log");
    let start = Instant::now();
    let out = Command::new(top().join("tests/e2e/run-qemu.sh"))
        .arg("--initrd")
        .arg(initrd)
        .arg("--append")
        .arg(append)
        .arg("--timeout")
        .arg(timeout.to_string())
        .arg("--log")
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let console = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    eprintln!(
        "---- console ({:.1} s, exit {:?}) ----\n{console}\n---- stderr ----\n{}",
        elapsed.as_secs_f64(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The log holds the same serial output.
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains(console.lines().last().unwrap_or("")),
        "--log misses what was printed"
    );
    Boot {
        console,
        code: out.status.code(),
        elapsed,
    }
}

fn stand_in(dir: &Path, init: &str) -> PathBuf {
    let staging = dir.join("root");
    fs::create_dir_all(staging.join("bin")).unwrap();
    fs::copy(busybox(), staging.join("bin/busybox")).unwrap();
    write_exec(&staging.join("init"), init);
    let cpio = dir.join("initramfs.cpio");
    make_cpio(&staging, &cpio);
    cpio
}

#[test]
fn stand_in_initramfs_boots_sees_disks_and_powers_off() {
    fetch_kernel();
    let dir = scratch("stand-in");
    // virtio-blk is a module in the stock kernel: count the PCI functions instead.
    let init = r#"#!/bin/busybox sh
B=/bin/busybox
$B echo "OVERBOOT-E2E-HARNESS: stand-in init ran as pid $$"
$B mkdir -p /sys
$B mount -t sysfs sysfs /sys
blk() { $B cat /sys/bus/pci/devices/*/device | $B grep -c -E '0x1001|0x1042'; }
$B echo "OVERBOOT-E2E-HARNESS: virtio-blk at start: $(blk)"
n=0
while [ "$(blk)" -lt 2 ] && [ $n -lt 60 ]; do $B sleep 1; n=$((n+1)); done
$B echo "OVERBOOT-E2E-HARNESS: virtio-blk later: $(blk)"
$B poweroff -f
"#;
    let cpio = stand_in(&dir, init);
    let disk = dir.join("disk.img");
    let late = dir.join("late.img");
    fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    fs::write(&late, vec![0u8; 1 << 20]).unwrap();
    let timeout = 90;
    let b = boot(
        &cpio,
        "",
        &[
            "--disk",
            disk.to_str().unwrap(),
            "--late-disk",
            late.to_str().unwrap(),
            "--late-after",
            "virtio-blk at start",
            "--late-delay",
            "1",
        ],
        timeout,
    );
    assert!(
        b.console
            .contains("OVERBOOT-E2E-HARNESS: stand-in init ran as pid 1")
    );
    assert!(
        b.console
            .contains("OVERBOOT-E2E-HARNESS: virtio-blk at start: 1")
    );
    assert!(
        b.console
            .contains("OVERBOOT-E2E-HARNESS: virtio-blk later: 2")
    );
    assert_eq!(b.code, Some(0));
    assert!(b.elapsed < Duration::from_secs(timeout));
}

#[test]
fn timeout_kills_a_guest_that_never_ends() {
    fetch_kernel();
    let dir = scratch("hang");
    let init = "#!/bin/busybox sh\n/bin/busybox echo OVERBOOT-E2E-HARNESS: hanging\nexec /bin/busybox sleep 100000\n";
    let cpio = stand_in(&dir, init);
    let b = boot(&cpio, "", &[], 25);
    assert!(b.console.contains("OVERBOOT-E2E-HARNESS: hanging"));
    assert_eq!(b.code, Some(124));
    assert!(b.elapsed >= Duration::from_secs(25));
    assert!(b.elapsed < Duration::from_secs(45), "{:?}", b.elapsed);
}

/// Shared libraries of this binary, from ldd (absolute paths).
fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs
}

fn pid1_initramfs(dir: &Path) -> PathBuf {
    let staging = dir.join("root");
    fs::create_dir_all(staging.join("bin")).unwrap();
    fs::copy(busybox(), staging.join("bin/busybox")).unwrap();
    let exe = std::env::current_exe().unwrap();
    fs::copy(&exe, staging.join("e2e-harness")).unwrap();
    for lib in shared_libraries(&exe) {
        let dest = staging.join(lib.strip_prefix("/").unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&lib, &dest).unwrap();
    }
    write_exec(
        &staging.join("init"),
        "#!/bin/busybox sh\nexec /e2e-harness pid1_pieces_run_as_pid1_in_qemu --exact --nocapture --test-threads=1\n",
    );
    let cpio = dir.join("initramfs.cpio");
    make_cpio(&staging, &cpio);
    cpio
}

#[test]
fn pid1_pieces_run_as_pid1_in_qemu() {
    if pid1::is_pid1() {
        guest();
    }
    fetch_kernel();
    let dir = scratch("pid1");
    let cpio = pid1_initramfs(&dir);
    let timeout = 120;

    // 1. Mounts, logger, switch_root into a tmpfs whose /sbin/init is a symlink.
    let b = boot(&cpio, "overboot_e2e.mode=switch", &[], timeout);
    let c = &b.console;
    for want in [
        "OVERBOOT-E2E-PID1: early mounts ok",
        "OVERBOOT-E2E-PID1: mounted /proc proc",
        "OVERBOOT-E2E-PID1: mounted /sys sysfs",
        "OVERBOOT-E2E-PID1: mounted /dev devtmpfs",
        "OVERBOOT-E2E-PID1: mounted /run tmpfs",
        "OVERBOOT-E2E-PID1: early mounts again ok",
        "overboot: OVERBOOT-E2E-PID1: logged through kmsg",
        "OVERBOOT-E2E-PID1: devkmsg before hand-off=on",
        "OVERBOOT-E2E-PID1: new init pid=1 argv0=/sbin/init args=--from-overboot",
        "OVERBOOT-E2E-PID1: new root marker present",
        "OVERBOOT-E2E-PID1: run marker present",
        "OVERBOOT-E2E-PID1: console present",
        "OVERBOOT-E2E-PID1: devkmsg after hand-off=ratelimit",
        "OVERBOOT-E2E-PID1: TERM=linux",
        "OVERBOOT-E2E-PID1: old root holds: newroot \n",
    ] {
        assert!(c.contains(want), "console lacks '{want}'");
    }
    assert!(!c.contains("Kernel panic"), "kernel panic");
    assert_eq!(b.code, Some(0));
    assert!(b.elapsed < Duration::from_secs(timeout));

    // 2. No init in the new root: a Fatal, boxed, then power-off (quiet: the logger
    // mirrors info lines itself).
    let b = boot(&cpio, "quiet overboot_e2e.mode=fail", &[], timeout);
    let c = &b.console;
    for want in [
        "overboot: OVERBOOT-E2E-PID1: logged through kmsg",
        "| overboot: the boot cannot continue",
        "| Looked for: an init program in the system image (/sbin/init,",
        "/sbin/init: does not exist",
        "| To fix:",
        "overboot: powering off",
    ] {
        assert!(c.contains(want), "console lacks '{want}'");
    }
    assert!(!c.contains("new init pid="));
    assert!(!c.contains("Kernel panic"), "kernel panic");
    assert_eq!(b.code, Some(0));
    assert!(b.elapsed < Duration::from_secs(timeout));

    // 3. A panic inside guard(): the hook prints the box and powers off, no kernel panic.
    let b = boot(&cpio, "overboot_e2e.mode=panic", &[], timeout);
    let c = &b.console;
    for want in [
        "| Found:      an internal error (panic) at tests/e2e_harness.rs",
        "deliberate panic",
        "overboot: powering off",
    ] {
        assert!(c.contains(want), "console lacks '{want}'");
    }
    assert!(!c.contains("Kernel panic"), "kernel panic");
    assert!(!c.contains("Attempted to kill init"), "PID 1 exited");
    assert_eq!(b.code, Some(0));
}

fn say(text: &str) {
    println!("{MARK} {text}");
}

/// Runs as PID 1 inside QEMU. Never returns: every path ends in a power-off.
fn guest() -> ! {
    pid1::set_failure_policy(Some(OnFail::Poweroff));
    pid1::install_panic_hook();
    match pid1::early_mounts() {
        Ok(()) => say("early mounts ok"),
        Err(e) => say(&format!("early mounts failed: {e}")),
    }
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && ["/proc", "/sys", "/dev", "/run"].contains(&f[1]) {
            say(&format!("mounted {} {}", f[1], f[2]));
        }
    }
    match pid1::early_mounts() {
        Ok(()) => say("early mounts again ok"),
        Err(e) => say(&format!("early mounts again failed: {e}")),
    }
    pid1::init_logger(false);
    log::info!("{MARK} logged through kmsg");
    let devkmsg = fs::read_to_string("/proc/sys/kernel/printk_devkmsg").unwrap_or_default();
    say(&format!("devkmsg before hand-off={}", devkmsg.trim()));
    let cmdline = pid1::read_cmdline();
    let mode = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("overboot_e2e.mode="))
        .unwrap_or("none")
        .to_string();
    say(&format!("mode {mode}"));
    pid1::guard(move || match mode.as_str() {
        "switch" => {
            let root = new_root(true);
            // An fd on the old root, kept across the exec, lets the new init look at
            // what is left of the initramfs.
            let old = fs::File::open("/").unwrap();
            rustix::io::fcntl_setfd(&old, rustix::io::FdFlags::empty()).unwrap();
            let fd = std::os::fd::IntoRawFd::into_raw_fd(old);
            fs::write("/run/e2e-marker", fd.to_string()).unwrap();
            pid1::switch_root(&root, &["/sbin/init"], &["--from-overboot".to_string()])?;
            Ok(())
        }
        "fail" => {
            let root = new_root(false);
            pid1::switch_root(&root, &["/sbin/init", "/usr/lib/systemd/systemd"], &[])?;
            Ok(())
        }
        "panic" => panic!("deliberate panic for the e2e test"),
        other => Err(pid1::Fatal::new(
            "overboot_e2e.mode=switch|fail|panic",
            format!("'{other}'"),
            "fix the test",
        )),
    })
}

/// A tmpfs at /newroot with busybox; with `with_init`, /lib/systemd/systemd is a
/// script and /sbin/init an absolute symlink to it (resolved inside the new root).
fn new_root(with_init: bool) -> PathBuf {
    let root = PathBuf::from("/newroot");
    fs::create_dir_all(&root).unwrap();
    rustix::mount::mount(
        "tmpfs",
        &root,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("sbin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    fs::write(root.join("new-root-marker"), "x").unwrap();
    if with_init {
        let script = r#"#!/bin/busybox sh
B=/bin/busybox
m() { $B echo "OVERBOOT-E2E-PID1: $*"; }
m "new init pid=$$ argv0=$0 args=$*"
[ -f /new-root-marker ] && m "new root marker present"
[ -f /run/e2e-marker ] && m "run marker present"
[ -c /dev/console ] && m "console present"
fd=$($B cat /run/e2e-marker)
m "old root holds: $($B ls -A /proc/$$/fd/$fd/ | $B tr '\n' ' ')"
m "devkmsg after hand-off=$($B cat /proc/sys/kernel/printk_devkmsg)"
m "TERM=$TERM"
$B poweroff -f
"#;
        write_exec(&root.join("lib/systemd/systemd"), script);
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
    }
    root
}

/// The appliance and BootExt images from `build-appliance.sh` / `build-bootext.sh`
/// (GPT variant), assembled by a busybox stand-in for overboot (insmod, mount, overlay,
/// overmounts, switch_root): the appliance's init reports the overmounted files.
#[test]
fn appliance_and_bootext_images_boot_with_a_stand_in_assembler() {
    let kdir = {
        let out = Command::new(top().join("tests/kernel/fetch"))
            .output()
            .unwrap();
        assert!(out.status.success());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    let kver = kdir.file_name().unwrap().to_str().unwrap().to_string();
    let dir = scratch("appliance");
    let e2e = top().join("tests/e2e");
    for args in [vec![], vec!["--recovery"]] {
        let st = Command::new(e2e.join("build-appliance.sh"))
            .arg(&dir)
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "build-appliance.sh {args:?}");
    }
    let disk = dir.join("bootext-gpt.img");
    let out = Command::new(e2e.join("build-bootext.sh"))
        .arg(&disk)
        .arg(dir.join("appliance.squashfs"))
        .arg(dir.join("recovery.squashfs"))
        .args([
            "--gpt",
            "--partuuid",
            "0ddba11e-0000-4000-8000-00000000e2e1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("LABEL=BootExt"), "{printed}");
    assert!(
        printed.contains("PARTUUID=0ddba11e-0000-4000-8000-00000000e2e1"),
        "{printed}"
    );

    let staging = dir.join("root");
    fs::create_dir_all(staging.join("bin")).unwrap();
    fs::create_dir_all(staging.join("mods")).unwrap();
    fs::copy(busybox(), staging.join("bin/busybox")).unwrap();
    let modules = [
        "drivers/virtio/virtio_ring",
        "drivers/virtio/virtio",
        "drivers/virtio/virtio_pci_legacy_dev",
        "drivers/virtio/virtio_pci_modern_dev",
        "drivers/virtio/virtio_pci",
        "drivers/block/virtio_blk",
        "lib/crc16",
        "crypto/crc32c_generic",
        "fs/mbcache",
        "fs/jbd2/jbd2",
        "fs/ext4/ext4",
        "fs/squashfs/squashfs",
        "drivers/block/loop",
        "fs/overlayfs/overlay",
    ];
    let mut names = Vec::new();
    for m in modules {
        let src = kdir.join(format!("root/lib/modules/{kver}/kernel/{m}.ko"));
        let name = m.rsplit('/').next().unwrap();
        fs::copy(&src, staging.join(format!("mods/{name}.ko"))).unwrap();
        names.push(name);
    }
    let init = format!(
        r#"#!/bin/busybox sh
B=/bin/busybox
die() {{ $B echo "STAND-IN: failed: $*"; $B poweroff -f; }}
$B mkdir -p /proc /sys /dev /run /be /lower /rw /newroot
$B mount -t proc proc /proc; $B mount -t sysfs sysfs /sys; $B mount -t devtmpfs dev /dev
$B mount -t tmpfs run /run
for m in {mods}; do $B insmod /mods/$m.ko || $B echo "STAND-IN: insmod $m failed"; done
n=0; while [ ! -b /dev/vda1 ] && [ $n -lt 100 ]; do $B sleep 0.2; n=$((n+1)); done
dev=$($B findfs LABEL=BootExt) || dev=/dev/vda1
$B echo "STAND-IN: BootExt is $dev"
$B mount -t ext4 -o ro $dev /be || die "/be"
$B mount -t squashfs -o loop,ro /be/System/active-system /lower || die "/lower"
$B mount -t tmpfs rw /rw; $B mkdir /rw/upper /rw/work
$B mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || die "/newroot"
$B mount --bind /be/DIRS/DIR_etc_ssh /newroot/etc/ssh || die "/newroot/etc/ssh"
$B mount --bind /be/DIRS/FILE_etc_hostname /newroot/etc/hostname || die "/newroot/etc/hostname"
$B mount -t squashfs -o loop,ro /be/DIRS/DIR_opt_tools.squashfs.xz /newroot/opt/tools || die "/newroot/opt/tools"
for m in dev proc sys run; do $B mount --move /$m /newroot/$m; done
exec $B switch_root /newroot /sbin/init
"#,
        mods = names.join(" ")
    );
    write_exec(&staging.join("init"), &init);
    let cpio = dir.join("initramfs.cpio");
    make_cpio(&staging, &cpio);
    let b = boot(&cpio, "", &["--disk", disk.to_str().unwrap()], 120);
    let c = &b.console;
    for want in [
        "OVERBOOT-E2E: init started",
        "OVERBOOT-E2E: system=appliance",
        "OVERBOOT-E2E: pid=1",
        "OVERBOOT-E2E: mounts begin",
        "overlay / overlay",
        "OVERBOOT-E2E: mounts end",
        "OVERBOOT-E2E: file /etc/hostname=bootext-host",
        "OVERBOOT-E2E: file /etc/ssh/marker=from-bootext-ssh",
        "OVERBOOT-E2E: file /opt/tools/marker=from-tools-image",
        "OVERBOOT-E2E: root writable",
        "OVERBOOT-E2E: no state.json",
        "OVERBOOT-E2E: done",
    ] {
        assert!(c.contains(want), "console lacks '{want}'");
    }
    assert!(!c.contains("STAND-IN: insmod"), "a module failed to load");
    assert!(
        !c.contains("STAND-IN: failed"),
        "the stand-in assembler failed"
    );
    assert_eq!(b.code, Some(0));
}
