//! `overboot mkinitramfs` against Debian's real stock kernel (from
//! `tests/kernel/fetch`): archives read back with GNU cpio after the real
//! lz4/zstd/xz/gzip decompress them, and booted in QEMU to see the kernel unpack them.

mod e2e_common;

use e2e_common::musl_binary;
use overboot::initramfs;
use overboot::kmod::{ModuleIndex, all_boot_modules};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const BUSYBOX: &str = "/bin/busybox";

/// (`work/kernel/<kver>` directory, kver)
fn kernel() -> (PathBuf, String) {
    static KERNEL: OnceLock<(PathBuf, String)> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            let top = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new(top.join("tests/kernel/fetch"))
                .output()
                .unwrap();
            assert!(out.status.success(), "fetch: {out:?}");
            let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            let kver = dir.file_name().unwrap().to_str().unwrap().to_string();
            (dir, kver)
        })
        .clone()
}

fn modules_dir() -> PathBuf {
    let (dir, kver) = kernel();
    dir.join("root/lib/modules").join(kver)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("initramfs-tests");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `overboot mkinitramfs ARGS` (a leading `mkinitramfs` in ARGS is the command):
/// its exit code.
fn mkinitramfs(args: &[String]) -> i32 {
    let args = args
        .strip_prefix(&["mkinitramfs".to_string()])
        .unwrap_or(args);
    let run = Command::new(env!("CARGO_BIN_EXE_overboot"))
        .arg("mkinitramfs")
        .args(args)
        .output()
        .unwrap();
    run.status.code().unwrap_or(-1)
}

/// Build with busybox standing in for the static overboot.
fn build(out: &Path, compress: &str, extra: &[&str]) {
    build_with(out, Path::new(BUSYBOX), compress, extra);
}

/// Build with `binary` as /init.
fn build_with(out: &Path, binary: &Path, compress: &str, extra: &[&str]) {
    let md = modules_dir();
    let mut args = s(&[
        "mkinitramfs",
        "-o",
        out.to_str().unwrap(),
        "--modules-dir",
        md.to_str().unwrap(),
        "--binary",
        binary.to_str().unwrap(),
        "--compress",
        compress,
    ]);
    args.extend(s(extra));
    assert_eq!(mkinitramfs(&args), 0, "mkinitramfs {args:?}");
}

/// Decompress with the real tool for `compress`.
fn decompress(file: &Path, compress: &str) -> Vec<u8> {
    let data = std::fs::read(file).unwrap();
    let tool = match compress {
        "none" => return data,
        "lz4" => "lz4",
        "zstd" => "zstd",
        "xz" => "xz",
        "gzip" => "gzip",
        _ => unreachable!(),
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} -d: {out:?}");
    out.stdout
}

/// `cpio -itv` of the uncompressed initramfs: one line per entry, over every archive
/// of it (the kernel unpacks concatenated archives one after the other; `cpio` stops
/// at the first trailer). Each archive is padded to 512 bytes after its trailer.
fn cpio_list(initramfs: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = initramfs;
    while rest.iter().any(|b| *b != 0) {
        let end = archive_end(rest);
        lines.extend(cpio_list_one(&rest[..end]));
        rest = &rest[end..];
    }
    lines
}

/// Where the newc archive at the start of `data` ends: after its trailer entry,
/// rounded up to 512 bytes (walking the headers: a program may hold the trailer's
/// name as a string).
fn archive_end(data: &[u8]) -> usize {
    let hex = |at: usize| {
        usize::from_str_radix(std::str::from_utf8(&data[at..at + 8]).unwrap(), 16).unwrap()
    };
    let mut at = 0;
    loop {
        assert_eq!(&data[at..at + 6], b"070701", "newc magic at {at}");
        let (filesize, namesize) = (hex(at + 54), hex(at + 94));
        let name = &data[at + 110..at + 110 + namesize - 1];
        let data_at = (at + 110 + namesize).div_ceil(4) * 4;
        at = (data_at + filesize).div_ceil(4) * 4;
        if name == b"TRAILER!!!" {
            return at.div_ceil(512) * 512;
        }
    }
}

fn cpio_list_one(archive: &[u8]) -> Vec<String> {
    let mut child = Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = archive.to_vec();
    let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success(), "cpio -it: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "cpio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The listing line of `path` (`cpio -itv` puts the name last).
fn line<'a>(list: &'a [String], path: &str) -> &'a str {
    list.iter()
        .find(|l| l.ends_with(&format!(" {path}")) || l.contains(&format!(" {path} -> ")))
        .unwrap_or_else(|| panic!("{path} not in the archive:\n{}", list.join("\n")))
}

fn fields(l: &str) -> Vec<&str> {
    l.split_whitespace().collect()
}

/// Boot Debian's kernel on `img` with `/bin/sh` (busybox) as init running `script`;
/// returns the serial console output.
fn boot(img: &Path, script: &str) -> String {
    let (dir, _) = kernel();
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
        .arg(dir.join("vmlinux"))
        .arg("-initrd")
        .arg(img)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 no_timer_check rdinit=/bin/sh -- -c \"{script}\""
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// For each compression: GNU cpio lists what the real decompressor gives back,
/// with the right metadata; and (compressed ones) Debian's kernel unpacks it in
/// QEMU, runs /bin/sh from it, and busybox's modprobe loads ext4 and its
/// dependencies, squashfs, overlay and loop from the reduced index.
#[test]
fn each_compression_lists_with_cpio_and_boots() {
    let (_, kver) = kernel();
    let busybox_len = std::fs::metadata(BUSYBOX).unwrap().len().to_string();
    for compress in ["lz4", "zstd", "xz", "gzip", "none"] {
        let out = tmp(&format!("list.{compress}"));
        build(&out, compress, &["--add-shell"]);
        let list = cpio_list(&decompress(&out, compress));
        let init = fields(line(&list, "init"));
        assert_eq!(init[..4], ["-rwxr-xr-x", "1", "root", "root"], "{init:?}");
        assert_eq!(init[4], busybox_len);
        let console = fields(line(&list, "dev/console"));
        assert_eq!(console[..6], ["crw-------", "1", "root", "root", "5,", "1"]);
        let null = fields(line(&list, "dev/null"));
        assert_eq!(null[..6], ["crw-rw-rw-", "1", "root", "root", "1,", "3"]);
        assert!(line(&list, "bin/sh").contains("bin/sh -> busybox"));
        // The kernel's request_module runs /sbin/modprobe: /init answers it.
        assert!(line(&list, "sbin/modprobe").contains("sbin/modprobe -> ../init"));
        assert!(line(&list, "tmp").starts_with("drwxrwxrwt"));
        for d in ["dev", "proc", "sys", "run", "sysroot"] {
            assert_eq!(
                fields(line(&list, d))[..4],
                ["drwxr-xr-x", "2", "root", "root"]
            );
        }
        for m in [
            "kernel/fs/ext4/ext4.ko",
            "kernel/fs/jbd2/jbd2.ko",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/fs/squashfs/squashfs.ko",
            "kernel/fs/overlayfs/overlay.ko",
            "kernel/drivers/block/loop.ko",
            "modules.dep",
            "modules.alias",
            "modules.softdep",
            "modules.builtin",
        ] {
            let l = fields(line(&list, &format!("lib/modules/{kver}/{m}")));
            assert_eq!(l[..4], ["-rw-r--r--", "1", "root", "root"], "{l:?}");
            assert_eq!(l[5..8], ["Jan", "1", "1970"], "mtime 0: {l:?}");
        }
        if compress == "none" {
            continue;
        }
        let console = boot(
            &out,
            &format!(
                "/bin/busybox --install -s /bin; mount -t proc p /proc; mount -t sysfs s /sys; \
                 modprobe squashfs; modprobe overlay; modprobe loop; modprobe ext4; \
                 echo; echo MODULES: $(cut -d' ' -f1 /proc/modules); \
                 echo OVERBOOT-MARKER-{compress}; poweroff -f"
            ),
        );
        assert!(
            console.contains(&format!("\nOVERBOOT-MARKER-{compress}")),
            "{compress}: no marker; console:\n{console}"
        );
        assert!(!console.contains("nitramfs unpacking failed"), "{console}");
        let mods = console
            .lines()
            .find_map(|l| l.strip_prefix("MODULES: "))
            .unwrap_or_else(|| panic!("no module list:\n{console}"));
        for m in [
            "ext4", "jbd2", "mbcache", "crc16", "squashfs", "overlay", "loop",
        ] {
            assert!(
                mods.split_whitespace().any(|x| x == m),
                "{m} not loaded: {mods}"
            );
        }
    }
}

#[test]
fn reproducible_and_reduced_index_is_enough() {
    let (_, kver) = kernel();
    // The cpio writer and the in-process gzip; zstd and xz run single-threaded,
    // which their tools keep deterministic.
    for compress in ["gzip", "none"] {
        let (a, b) = (tmp(&format!("a.{compress}")), tmp(&format!("b.{compress}")));
        build(&a, compress, &[]);
        build(&b, compress, &[]);
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{compress}"
        );
    }
    // Unpack the uncompressed one with cpio and read its index back.
    let root = tmp("unpacked");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(tmp("a.none"))
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let small = ModuleIndex::load(&root.join("lib/modules").join(&kver)).unwrap();
    let full = ModuleIndex::load(&modules_dir()).unwrap();
    // The PID-1 loader, reading the small index, gets the same answer as the full one.
    let (rs, rf) = (
        small.resolve(&boot_modules()),
        full.resolve(&boot_modules()),
    );
    assert_eq!(rs, rf);
    assert!(rs.not_found.is_empty() && rs.softdeps_not_found.is_empty());
    for alias in [
        "fs-ext4",
        "virtio:d00000002v00001AF4",
        "crypto-crc32c",
        "sha256",
        "crc32",
    ] {
        assert_eq!(small.resolve(&[alias]), full.resolve(&[alias]), "{alias}");
    }
    // The index is small, and every module file is byte-identical to its source.
    let dep =
        std::fs::read_to_string(root.join("lib/modules").join(&kver).join("modules.dep")).unwrap();
    assert_eq!(dep.lines().count(), rf.load.len());
    let alias_len = std::fs::metadata(root.join("lib/modules").join(&kver).join("modules.alias"))
        .unwrap()
        .len();
    assert!(alias_len < 200_000, "modules.alias is {alias_len} bytes");
    for m in &rf.load {
        let a = std::fs::read(root.join("lib/modules").join(&kver).join(&m.path)).unwrap();
        assert_eq!(
            a,
            std::fs::read(modules_dir().join(&m.path)).unwrap(),
            "{}",
            m.path
        );
    }
    assert_eq!(
        std::fs::read(root.join("init")).unwrap(),
        std::fs::read(BUSYBOX).unwrap()
    );
}

#[test]
fn refusals_and_usage() {
    let out = tmp("refused.img");
    let md = modules_dir();
    let md = md.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    // This test program is dynamically linked: refused as /init.
    let me = std::env::current_exe().unwrap();
    let args = s(&[
        "-o",
        out_s,
        "--modules-dir",
        md,
        "--binary",
        me.to_str().unwrap(),
    ]);
    assert_eq!(mkinitramfs(&args), 1);
    assert!(!out.exists());
    assert_eq!(
        mkinitramfs(&s(&[
            "-o",
            out_s,
            "--modules-dir",
            "/nonexistent/6.1",
            "--binary",
            BUSYBOX
        ])),
        1
    );
    assert_eq!(
        mkinitramfs(&s(&["-o", out_s, "--binary", "/nonexistent"])),
        1
    );
    // A module name the kernel does not have is an error (nothing written), not a
    // warning in an image that then cannot find its disk; --allow-missing builds.
    let misspelt = s(&[
        "-o",
        out_s,
        "--modules-dir",
        md,
        "--binary",
        BUSYBOX,
        "--compress",
        "none",
        "--modules",
        "ext4,virtio_blkk",
    ]);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_overboot"))
        .arg("mkinitramfs")
        .args(&misspelt)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("overboot: mkinitramfs: --modules virtio_blkk: neither a module")
            && stderr.contains("--allow-missing"),
        "{stderr}"
    );
    assert!(!out.exists());
    let mut allowed = misspelt.clone();
    allowed.push("--allow-missing".into());
    assert_eq!(mkinitramfs(&allowed), 0);
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    assert_eq!(mkinitramfs(&s(&["--modules-dir", md])), 2);
    assert_eq!(mkinitramfs(&s(&["-o", out_s, "--compress", "lzma"])), 2);
    assert_eq!(mkinitramfs(&s(&["--help"])), 0);
    assert!(!out.exists());
}

/// The default initramfs's module names (every group).
fn boot_modules() -> Vec<&'static str> {
    all_boot_modules()
        .into_iter()
        .map(|m| &*Box::leak(m.into_boxed_str()))
        .collect()
}

/// The musl `overboot-init` says it never unwinds, and the copy mkinitramfs puts in as
/// `/init` differs from it only by its unwind tables, zeroed; a program without the
/// marker (busybox) goes in unchanged.
#[test]
fn init_goes_in_without_unwind_tables_when_it_never_unwinds() {
    let init = musl_init();
    let original = std::fs::read(&init)
        .unwrap_or_else(|e| panic!("{}: {e} (test.sh builds it)", init.display()));
    assert!(initramfs::elf::declares_no_unwinding(&original));
    let out = tmp("unwind.img");
    build_with(&out, &init, "none", &["--modules", "ext4"]);
    let dir = tmp("unwind-x");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("cpio -idm --quiet < {}", out.display()))
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let inside = std::fs::read(dir.join("init")).unwrap();
    assert_eq!(inside.len(), original.len());
    let changed: Vec<usize> = (0..inside.len())
        .filter(|&i| inside[i] != original[i])
        .collect();
    assert!(
        changed.len() > 10_000,
        "only {} bytes zeroed",
        changed.len()
    );
    assert!(changed.iter().all(|&i| inside[i] == 0));
    let mut again = original.clone();
    assert!(initramfs::elf::zero_unwind_tables(&mut again) >= changed.len());
    assert_eq!(again, inside, "the same zeroing as the library's");
    // busybox has no marker: unchanged.
    let bb = std::fs::read(BUSYBOX).unwrap();
    assert!(!initramfs::elf::declares_no_unwinding(&bb));
}

/// The static `overboot-init` build, beside `overboot`.
fn musl_init() -> PathBuf {
    musl_binary(Path::new(env!("CARGO_MANIFEST_DIR"))).with_file_name("overboot-init")
}

/// The size budget: the image an appliance builder makes for this hardware
/// (`--modules ext4,virtio`, xz, the real `overboot-init` as /init) stays within
/// 1,000,000 bytes, whatever is added to the boot. A size limit, not a timing: it
/// fails the day a change makes the image too big to claim it.
#[test]
fn tuned_initramfs_stays_within_one_megabyte() {
    const BUDGET: u64 = 1_000_000;
    let init = musl_init();
    assert!(
        init.is_file(),
        "{} missing (test.sh builds it)",
        init.display()
    );
    let out = tmp("budget.img");
    build_with(&out, &init, "xz", &["--modules", "ext4,virtio"]);
    let len = std::fs::metadata(&out).unwrap().len();
    eprintln!("--modules ext4,virtio --compress xz: {len} bytes, budget {BUDGET}");
    assert!(
        len <= BUDGET,
        "the tuned initramfs is {len} bytes, {} over the budget of {BUDGET}: find the \
         growth in overboot-init (nm --size-sort on a build with strip = false)",
        len - BUDGET
    );
}

/// `--modules host` on this machine: the image holds the core modules and exactly what
/// the drivers and mounted filesystems found here resolve to in Debian's kernel, and
/// the driver of each real disk here is among what was found.
#[test]
fn host_modules_are_this_machines_drivers() {
    let out = tmp("host.img");
    build(&out, "none", &["--modules", "host"]);
    let (_, kver) = kernel();
    let list = cpio_list(&std::fs::read(&out).unwrap());
    let prefix = format!("lib/modules/{kver}/");
    let inside: BTreeSet<String> = list
        .iter()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| p.ends_with(".ko"))
        .map(str::to_string)
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let found = initramfs::host::host_modules(Path::new("/sys"), &mounts);
    let mut wanted = vec!["loop", "squashfs", "overlay"];
    wanted.extend(found.iter().map(String::as_str));
    let expected: BTreeSet<String> = ModuleIndex::load(&modules_dir())
        .unwrap()
        .resolve(&wanted)
        .load
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(inside, expected, "host found: {found:?}");
    for m in ["loop", "squashfs/squashfs", "overlayfs/overlay"] {
        assert!(
            inside.iter().any(|p| p.ends_with(&format!("/{m}.ko"))),
            "{m}"
        );
    }
    // Each disk of this machine (a block device with a driver) brings its driver.
    let mut disks = 0;
    for disk in std::fs::read_dir("/sys/class/block").unwrap().flatten() {
        let Ok(driver) = std::fs::read_link(disk.path().join("device/driver")) else {
            continue;
        };
        let driver = driver.file_name().unwrap().to_string_lossy().into_owned();
        let module = std::fs::read_link(disk.path().join("device/driver/module"))
            .map(|m| m.file_name().unwrap().to_string_lossy().into_owned());
        assert!(
            found.contains(&driver) || module.is_ok_and(|m| found.contains(&m)),
            "{:?}: driver {driver} not in {found:?}",
            disk.file_name()
        );
        disks += 1;
    }
    assert!(
        disks > 0,
        "no block device with a driver in /sys/class/block"
    );
}

/// `overboot inspect FILE` lists what `cpio -itv` lists (every entry, in order, with
/// its size and link target) from a compressed image, and says what it means for a
/// boot: /init, the modules and their kernel, the trusted keys.
#[test]
fn inspect_lists_what_cpio_lists() {
    let (_, kver) = kernel();
    let out = tmp("inspect.xz");
    let key = tmp("inspect.pub");
    let _ = std::fs::remove_file(&key);
    let made = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&key)
        .arg("-s")
        .arg(tmp("inspect.key"))
        .output()
        .unwrap();
    assert!(made.status.success(), "minisign -G: {made:?}");
    build(
        &out,
        "xz",
        &["--modules", "ext4", "--trust-key", key.to_str().unwrap()],
    );
    let run = Command::new(env!("CARGO_BIN_EXE_overboot"))
        .args(["inspect", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["version"], 1);
    let entries = v["entries"].as_array().unwrap();
    let listed = cpio_list(&decompress(&out, "xz"));
    assert_eq!(entries.len(), listed.len());
    for (e, l) in entries.iter().zip(&listed) {
        let f = fields(l);
        let path = e["path"].as_str().unwrap();
        match e["target"].as_str() {
            Some(t) => assert!(l.ends_with(&format!(" {path} -> {t}")), "{e} / {l}"),
            None => assert!(l.ends_with(&format!(" {path}")), "{e} / {l}"),
        }
        if e["kind"] == "file" {
            assert_eq!(f[4], e["bytes"].to_string(), "{e} / {l}");
        }
    }
    let busybox_len = std::fs::metadata(BUSYBOX).unwrap().len();
    assert_eq!(v["init_bytes"], busybox_len);
    let kos = listed.iter().filter(|l| l.contains(".ko")).count();
    assert_eq!(v["modules"][&kver], kos);
    assert_eq!(
        v["trusted_keys"],
        serde_json::json!(["etc/overboot/trusted-keys/0.pub"])
    );
    let text = Command::new(env!("CARGO_BIN_EXE_overboot"))
        .arg("inspect")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("kernel modules: {kos} for {kver}")),
        "{text}"
    );
    assert!(text.contains(" sbin/modprobe -> ../init\n"), "{text}");
    assert!(
        text.contains(&format!("/init: {busybox_len} bytes")),
        "{text}"
    );
}
