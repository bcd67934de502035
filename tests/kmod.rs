//! `overboot::kmod` against Debian's real stock kernel metadata (from
//! `tests/kernel/fetch`), checked against kmod's own `modprobe --show-depends`.

use overboot::kmod::{ModuleIndex, Outcome, Resolution, all_boot_modules, load_modules};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `/…/root/lib/modules/<kver>` and `<kver>` of the fetched Debian kernel.
fn kernel() -> (PathBuf, PathBuf, String) {
    static KERNEL: OnceLock<(PathBuf, PathBuf, String)> = OnceLock::new();
    KERNEL.get_or_init(fetch).clone()
}

fn fetch() -> (PathBuf, PathBuf, String) {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(top.join("tests/kernel/fetch"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/kernel/fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let kver = dir.file_name().unwrap().to_str().unwrap().to_string();
    let root = dir.join("root");
    (root.join("lib/modules").join(&kver), root, kver)
}

fn names(r: &Resolution) -> Vec<&str> {
    r.load.iter().map(|m| m.name.as_str()).collect()
}

fn pos(r: &Resolution, n: &str) -> usize {
    names(r)
        .iter()
        .position(|x| *x == n)
        .unwrap_or_else(|| panic!("{n} not in {:?}", names(r)))
}

/// Module names in modprobe's load order (`insmod /path/x.ko` lines).
fn modprobe_order(root: &Path, kver: &str, name: &str) -> Vec<String> {
    let out = Command::new("/usr/sbin/modprobe")
        .arg("-d")
        .arg(root)
        .args(["-S", kver, "--show-depends", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "modprobe {name}: {out:?}");
    // It prints a module again each time something needs it; it loads it once.
    let mut order: Vec<String> = Vec::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(p) = l.strip_prefix("insmod ") {
            let n = overboot::kmod::parse::module_name_from_path(p.trim());
            if !order.contains(&n) {
                order.push(n);
            }
        }
    }
    order
}

#[test]
fn ext4_needs_crc16_mbcache_jbd2_and_crc32c() {
    let (dir, _, _) = kernel();
    let index = ModuleIndex::load(&dir).unwrap();
    let r = index.resolve(&["ext4"]);
    for dep in ["crc16", "mbcache", "jbd2", "crc32c_generic", "crc32c_intel"] {
        assert!(pos(&r, dep) < pos(&r, "ext4"), "{:?}", names(&r));
    }
    assert_eq!(r.load.last().unwrap().path, "kernel/fs/ext4/ext4.ko");
    assert!(r.not_found.is_empty() && r.builtin.is_empty());
    // The alias spelling gives the same list.
    assert_eq!(index.resolve(&["fs-ext4"]), r);
}

#[test]
fn overlay_squashfs_loop_stand_alone() {
    let (dir, _, _) = kernel();
    let index = ModuleIndex::load(&dir).unwrap();
    let r = index.resolve(&[
        "overlay",
        "squashfs",
        "loop",
        "fs-overlay",
        "block-major-7-0",
    ]);
    assert_eq!(names(&r), ["overlay", "squashfs", "loop"]);
    assert_eq!(r.load[0].path, "kernel/fs/overlayfs/overlay.ko");
    assert_eq!(r.load[1].path, "kernel/fs/squashfs/squashfs.ko");
    assert_eq!(r.load[2].path, "kernel/drivers/block/loop.ko");
}

#[test]
fn aliases_and_builtins() {
    let (dir, _, _) = kernel();
    let index = ModuleIndex::load(&dir).unwrap();
    let r = index.resolve(&["virtio:d00000002v00001AF4"]);
    assert_eq!(names(&r), ["virtio_ring", "virtio", "virtio_blk"]);
    // The pattern itself, as written in modules.alias, works too.
    assert_eq!(index.resolve(&["virtio:d00000002v*"]), r);
    let r = index.resolve(&["crypto-crc32c"]);
    assert_eq!(names(&r), ["crc32c_intel", "crc32c_generic"]);
    // Built into Debian's kernel: reported as built in, loads nothing.
    let r = index.resolve(&[
        "crc32",
        "binfmt_elf",
        "crypto-sha256-generic",
        "no-such-thing",
    ]);
    assert!(r.load.is_empty(), "{:?}", names(&r));
    assert_eq!(r.builtin, ["crc32", "binfmt_elf", "sha256_generic"]);
    assert_eq!(r.not_found, ["no-such-thing"]);
    // Dashes and underscores are one.
    assert_eq!(
        index.resolve(&["usb-storage"]),
        index.resolve(&["usb_storage"])
    );
}

/// Every boot module resolves on Debian 6.1, none is built in there, every file
/// exists, and our order agrees with kmod's for each of them.
#[test]
fn boot_modules_match_modprobe() {
    let (dir, root, kver) = kernel();
    let index = ModuleIndex::load(&dir).unwrap();
    let r = index.resolve(&boot_modules());
    assert!(r.not_found.is_empty(), "not found: {:?}", r.not_found);
    assert!(r.builtin.is_empty(), "built in: {:?}", r.builtin);
    assert!(
        r.softdeps_not_found.is_empty(),
        "{:?}",
        r.softdeps_not_found
    );
    for m in &r.load {
        assert!(dir.join(&m.path).is_file(), "{}", m.path);
        for d in &m.deps {
            assert!(pos(&r, d) < pos(&r, &m.name), "{d} after {}", m.name);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    assert!(r.load.iter().all(|m| seen.insert(&m.name)), "duplicates");
    for wanted in boot_modules() {
        let ours = index.resolve(&[wanted]);
        let theirs = modprobe_order(&root, &kver, wanted);
        assert!(!theirs.is_empty(), "{wanted}");
        // kmod's list is a subsequence of ours (ours may add soft dependencies
        // from further `softdep` lines, which kmod ignores after the first).
        let mut it = names(&ours).into_iter();
        for t in &theirs {
            assert!(
                it.any(|o| o == t),
                "{wanted}: modprobe {theirs:?}, ours {:?}",
                names(&ours)
            );
        }
        // And everything in the full list.
        for t in &theirs {
            pos(&r, t);
        }
    }
    // btrfs's three soft dependencies (three `softdep` lines) all come before it.
    let b = index.resolve(&["btrfs"]);
    for d in [
        "blake2b_generic",
        "sha256_ssse3",
        "xxhash_generic",
        "libcrc32c",
    ] {
        assert!(pos(&b, d) < pos(&b, "btrfs"), "{:?}", names(&b));
    }
    // vfat's default codepage and iocharset.
    for d in ["nls_cp437", "nls_ascii", "nls_iso8859_1", "fat", "vfat"] {
        pos(&r, d);
    }
}

#[test]
fn load_report_for_a_missing_directory_and_missing_names() {
    let r = load_modules(Path::new("/nonexistent/modules"), &["loop"]);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/modules/modules.dep")
    );
    assert!(r.to_string().contains("nothing loaded"));
    // A real index, names that are not there: reported, nothing tried.
    let (dir, _, _) = kernel();
    let r = load_modules(&dir, &["no-such-module", "crc32"]);
    assert_eq!(r.modules.len(), 2);
    assert_eq!(r.modules[0].outcome, Outcome::Builtin);
    assert_eq!(r.modules[1].outcome, Outcome::NotFound);
    assert!(!r.all_ok());
}

/// The real `finit_module`: this machine's kernel has no modules on disk, so boot
/// Debian's kernel in QEMU with an initramfs holding its boot modules, busybox, and
/// this very test program (with its dynamic loader and libraries); inside, this
/// same test (told by `OVERBOOT_KMOD_GUEST=1` on the kernel command line, which the
/// kernel hands to init's environment) loads [`BOOT_MODULES`] and checks the report.
#[test]
fn finit_module_in_qemu() {
    if std::env::var_os("OVERBOOT_KMOD_GUEST").is_some() {
        return guest();
    }
    let (dir, root, kver) = kernel();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let built =
        overboot::initramfs::build(&kver, &dir, &boot_modules(), busybox.clone(), Some(busybox))
            .unwrap();
    let mut archive = built.archive;
    let me = std::env::current_exe().unwrap();
    archive.file("kmodtest", 0o755, std::fs::read(&me).unwrap());
    // The dynamic loader and libraries, at the paths ldd names.
    let ldd = Command::new("ldd").arg(&me).output().unwrap();
    assert!(ldd.status.success());
    for l in String::from_utf8(ldd.stdout).unwrap().lines() {
        let path = l.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(p) = path {
            archive.file(p, 0o755, std::fs::read(p).unwrap());
        }
    }
    // A module compressed with xz, which Debian's 6.1 cannot decompress itself
    // (no CONFIG_MODULE_DECOMPRESS): the report must say so.
    let nls = "kernel/fs/nls/nls_koi8-r.ko";
    let xz = Command::new("xz")
        .args(["-c", "--check=crc32"])
        .arg(dir.join(nls))
        .output()
        .unwrap();
    assert!(xz.status.success());
    archive.file(&format!("xzmods/{nls}.xz"), 0o644, xz.stdout);
    archive.file(
        "xzmods/modules.dep",
        0o644,
        format!("{nls}.xz:\n").into_bytes(),
    );
    let img = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kmod-guest.cpio");
    std::fs::write(&img, archive.to_bytes().unwrap()).unwrap();
    let script = "/bin/busybox mount -t proc p /proc; /bin/busybox mount -t sysfs s /sys; \
                  /kmodtest --exact finit_module_in_qemu --nocapture --test-threads=1; \
                  /bin/busybox poweroff -f";
    let out = Command::new("timeout")
        .args([
            "120",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-m", "512", "-kernel"])
        .arg(root.parent().unwrap().join("vmlinux"))
        .arg("-initrd")
        .arg(&img)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 no_timer_check OVERBOOT_KMOD_GUEST=1 rdinit=/bin/sh -- -c \"{script}\""
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("\nKMOD-GUEST-OK"),
        "console:\n{console}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Inside QEMU, as a child of PID 1, with /proc and /sys mounted.
fn guest() {
    let kver = rustix::system::uname()
        .release()
        .to_str()
        .unwrap()
        .to_string();
    let dir = PathBuf::from("/lib/modules").join(&kver);
    let first = load_modules(&dir, &boot_modules());
    println!("{first}");
    assert!(first.error.is_none());
    assert_eq!(first.failures().count(), 0, "failures: {first}");
    for m in [
        "loop",
        "squashfs",
        "overlay",
        "ext4",
        "jbd2",
        "vfat",
        "btrfs",
        "xfs",
        "virtio_blk",
    ] {
        let r = first.modules.iter().find(|r| r.name == m).unwrap();
        assert_eq!(r.outcome, Outcome::Loaded, "{m}");
        assert!(Path::new("/sys/module").join(m).exists(), "{m}");
    }
    // crc32c_generic comes with ext4 (a soft dependency); crc32c_intel is either
    // loaded or, on QEMU's CPU without SSE4.2, "no device".
    assert!(Path::new("/sys/module/crc32c_generic").exists());
    // Built into Debian's kernel: reported so, not loaded.
    let again = load_modules(&dir, &["ext4", "crc32", "no-such-module"]);
    println!("{again}");
    assert!(again.modules.iter().all(|r| match r.name.as_str() {
        "crc32" => r.outcome == Outcome::Builtin,
        "no-such-module" => r.outcome == Outcome::NotFound,
        "crc32c_intel" => matches!(r.outcome, Outcome::AlreadyLoaded | Outcome::NoDevice),
        _ => r.outcome == Outcome::AlreadyLoaded,
    }));
    let xz = load_modules(Path::new("/xzmods"), &["nls_koi8-r"]);
    println!("{xz}");
    let why = xz
        .failures()
        .next()
        .map(|(_, w)| w.to_string())
        .unwrap_or_default();
    assert!(why.contains("cannot decompress modules"), "{xz}");
    println!("KMOD-GUEST-OK");
}

/// The default initramfs's module names (every group).
fn boot_modules() -> Vec<&'static str> {
    all_boot_modules()
        .into_iter()
        .map(|m| &*Box::leak(m.into_boxed_str()))
        .collect()
}
