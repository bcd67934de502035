//! Shared helpers for the integration tests: a private mount namespace per test,
//! builders for system images and BootExt trees made with the real tools
//! (mksquashfs, mkfs.ext4, xz), a mountinfo parser, a loop-device leak checker,
//! and a runner for the `overboot` binary.
//!
//! Every test body runs inside [`Ns::run`]: a fresh thread that unshares its mount
//! namespace (mount namespaces belong to a thread; the processes it spawns inherit
//! it), makes `/` recursively private, and mounts a tmpfs on `/run` and on its own
//! scratch directory. Mounts made there are invisible to other tests and to the host,
//! and vanish with the thread even when an assertion fails half-way.
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink as os_symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;
use serde_json::Value;

pub mod fleet;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_overboot");

static COUNTER: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "overboot-{prefix}-{}-{n}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Private mount namespace
// ---------------------------------------------------------------------------

/// A test's private mount namespace and its scratch tmpfs.
pub struct Ns {
    scratch: PathBuf,
}

impl Ns {
    /// Run `body` in a new thread with its own mount namespace. A panic in the body
    /// is propagated to the caller (the test fails with the body's message).
    /// After a successful body, every mount left under the scratch dir is unmounted
    /// and no loop device may remain attached to a file under it.
    pub fn run<F: FnOnce(&Ns) + Send>(body: F) {
        let host_dir = TempDir::new("ns");
        let scratch = host_dir.path().to_path_buf();
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: this thread shares nothing with others that relies on the
                // mount namespace or the fs_struct (cwd/root) staying shared.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS) }
                    .expect("unshare(CLONE_NEWNS|CLONE_FS) (are we root?)");
                rustix::mount::mount_change(
                    "/",
                    MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                )
                .expect("make / recursively private");
                rustix::mount::mount("tmpfs", "/run", "tmpfs", MountFlags::empty(), c"mode=755")
                    .expect("tmpfs on /run");
                rustix::mount::mount(
                    "tmpfs",
                    &scratch,
                    "tmpfs",
                    MountFlags::empty(),
                    c"mode=755,size=512m",
                )
                .expect("tmpfs on scratch dir");
                let ns = Ns {
                    scratch: scratch.clone(),
                };
                body(&ns);
                // Clean-up check: everything the test left is unmountable and frees
                // its loop devices.
                unmount_recursive(&scratch.join("t"));
                assert_no_loop_leak(&scratch);
            })
            .join()
        });
        if let Err(panic) = result {
            // The namespace died with the thread; give autoclear loop devices a
            // moment before the temp dir goes away.
            std::panic::resume_unwind(panic);
        }
    }

    /// The scratch directory (a private tmpfs). Test data lives under `t/`.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// A fresh, empty directory under the scratch tmpfs.
    pub fn dir(&self, name: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = self.scratch.join("t").join(format!("{name}-{n}"));
        fs::create_dir_all(&p).unwrap();
        p
    }
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// Exit code, stdout and stderr of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the full output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// How long one `overboot` run may take before the test calls it hung (exit 124,
/// from `timeout`): a hostile BootExt must fail a test, not stop the suite.
pub const RUN_DEADLINE_SECS: &str = "120";

/// Run `overboot ARGS` (spawned from the calling thread, so in its namespace).
pub fn overboot<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("timeout")
        .args(["--kill-after=5", RUN_DEADLINE_SECS, BIN])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn overboot");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Make `path` read-only in this namespace: a bind of it onto itself, remounted
/// read-only (a BootExt on a read-only medium).
pub fn bind_read_only(path: &Path) {
    sh(
        "mount",
        &["--bind".as_ref(), path.as_os_str(), path.as_os_str()],
    );
    sh(
        "mount",
        &["-o".as_ref(), "remount,bind,ro".as_ref(), path.as_os_str()],
    );
}

/// Run an external tool, panicking with its output when it fails.
#[track_caller]
pub fn sh(prog: &str, args: &[&OsStr]) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{prog} {:?} failed: {}\n{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Trees and images
// ---------------------------------------------------------------------------

/// Write `content` to `root/rel`, creating parent directories.
pub fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, content).unwrap();
    p
}

/// Create directory `root/rel` (and parents).
pub fn mkdirs(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(&p).unwrap();
    p
}

/// Create symlink `root/rel -> target`, creating parent directories.
pub fn symlink(root: &Path, rel: &str, target: &str) -> PathBuf {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    os_symlink(target, &p).unwrap();
    p
}

/// squashfs compression.
#[derive(Clone, Copy, Debug)]
pub enum Comp {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Lzo,
}

impl Comp {
    /// Every compression Linux mounts squashfs with.
    pub const ALL: [Comp; 5] = [Comp::Gzip, Comp::Xz, Comp::Zstd, Comp::Lz4, Comp::Lzo];

    /// The name mksquashfs and the superblock use.
    pub fn name(self) -> &'static str {
        match self {
            Comp::Gzip => "gzip",
            Comp::Xz => "xz",
            Comp::Zstd => "zstd",
            Comp::Lz4 => "lz4",
            Comp::Lzo => "lzo",
        }
    }
}

/// `mksquashfs src img` with the given compression.
pub fn mksquashfs(src: &Path, img: &Path, comp: Comp) {
    if let Some(parent) = img.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let comp = comp.name();
    sh(
        "mksquashfs",
        &[
            src.as_os_str(),
            img.as_os_str(),
            OsStr::new("-noappend"),
            OsStr::new("-comp"),
            OsStr::new(comp),
            OsStr::new("-no-progress"),
            OsStr::new("-quiet"),
            OsStr::new("-processors"),
            OsStr::new("1"),
        ],
    );
}

/// Compression implied by an image file name: the one named in it (`a-zstd.squashfs`,
/// `x-lzo.sqfs`), xz for `.squashfs.xz`, else gzip.
pub fn comp_for(name: &str) -> Comp {
    if let Some(c) = Comp::ALL
        .into_iter()
        .find(|c| name.contains(&format!("-{}.", c.name())))
    {
        c
    } else if name.ends_with(".xz") {
        Comp::Xz
    } else {
        Comp::Gzip
    }
}

/// Build a squashfs image at `img` from a tree filled by `fill` (in a temp dir
/// under `work`).
pub fn squashfs_from(work: &Path, img: &Path, comp: Comp, fill: impl FnOnce(&Path)) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let tree = work.join(format!("tree-{n}"));
    fs::create_dir_all(&tree).unwrap();
    fill(&tree);
    mksquashfs(&tree, img, comp);
    fs::remove_dir_all(&tree).unwrap();
}

/// A small but realistic system tree; `/etc/overboot-image` holds `marker`.
pub fn system_tree(root: &Path, marker: &str) {
    write(root, "etc/overboot-image", marker);
    write(root, "etc/hostname", "appliance\n");
    write(root, "etc/os-release", "ID=test\n");
    write(root, "etc/ssh/sshd_config", "PermitRootLogin no\n");
    write(
        root,
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "not really libc\n",
    );
    write(root, "usr/bin/true", "#!/bin/sh\n");
    write(root, "sbin/init", "#!/bin/sh\n");
    mkdirs(root, "opt");
    mkdirs(root, "srv");
    mkdirs(root, "var/cache");
    mkdirs(root, "var/lib");
    mkdirs(root, "mnt");
    mkdirs(root, "tmp");
    // Some incompressible data, so images span several blocks.
    let p = root.join("usr/lib/noise.bin");
    fs::write(p, noise(marker.len() as u64, 96 * 1024)).unwrap();
}

/// `len` deterministic, incompressible-looking bytes (xorshift from `seed`).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `bytes_used` from a squashfs superblock (offset 40, little-endian u64).
pub fn squashfs_bytes_used(path: &Path) -> u64 {
    let sb = fs::read(path).unwrap();
    u64::from_le_bytes(sb[40..48].try_into().unwrap())
}

/// Cut a squashfs image to half its `bytes_used` (the superblock stays whole).
pub fn truncate_image(path: &Path) {
    let used = squashfs_bytes_used(path);
    truncate(path, (used / 2).max(96));
}

/// Zero every byte of `path` from `from` on (keeps the size): the superblock
/// stays valid but the metadata is garbage.
pub fn zero_from(path: &Path, from: u64) {
    let len = fs::metadata(path).unwrap().len();
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(from)).unwrap();
    f.write_all(&vec![0u8; (len - from) as usize]).unwrap();
}

/// Truncate `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// A 4 MiB ext4 filesystem image with a file in it.
pub fn ext4_image(work: &Path, img: &Path) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let tree = work.join(format!("ext4tree-{n}"));
    system_tree(&tree, "ext4");
    fs::write(img, []).unwrap();
    truncate(img, 4 << 20);
    sh(
        "mkfs.ext4",
        &[
            OsStr::new("-q"),
            OsStr::new("-F"),
            OsStr::new("-d"),
            tree.as_os_str(),
            img.as_os_str(),
        ],
    );
    fs::remove_dir_all(&tree).unwrap();
}

/// `xz`-compress `src` into `dst` (a whole-file xz stream, not a squashfs).
pub fn xz_wrap(src: &Path, dst: &Path) {
    let out = Command::new("xz")
        .args(["-c", "-T1"])
        .arg(src)
        .output()
        .expect("spawn xz (is xz-utils installed?)");
    assert!(out.status.success(), "xz failed");
    fs::write(dst, out.stdout).unwrap();
}

// ---------------------------------------------------------------------------
// BootExt builder
// ---------------------------------------------------------------------------

/// A BootExt tree under a test's scratch dir.
pub struct BootExt {
    pub path: PathBuf,
    work: PathBuf,
}

impl BootExt {
    /// An empty BootExt (with `System/` and `DIRS/`).
    pub fn empty(ns: &Ns) -> BootExt {
        let path = ns.dir("BootExt");
        let work = ns.dir("work");
        mkdirs(&path, "System");
        mkdirs(&path, "DIRS");
        BootExt { path, work }
    }

    /// The usual layout: `System/a.squashfs` (marker "a", active) and
    /// `System/r.squashfs` (marker "r", recovery).
    pub fn standard(ns: &Ns) -> BootExt {
        BootExt::standard_with(ns, |_| {})
    }

    /// [`BootExt::standard`], with `active` changing the active image's tree.
    pub fn standard_with(ns: &Ns, active: impl FnOnce(&Path)) -> BootExt {
        let b = BootExt::empty(ns);
        b.system_with("a.squashfs", "a", active);
        b.system("r.squashfs", "r");
        b.link("active-system", "a.squashfs");
        b.link("recovery-system", "r.squashfs");
        b
    }

    /// Scratch space for building trees (not inside BootExt).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// `System/<name>`: a system image whose `/etc/overboot-image` is `marker`.
    pub fn system(&self, name: &str, marker: &str) -> PathBuf {
        self.system_with(name, marker, |_| {})
    }

    /// Like [`BootExt::system`], with `extra` adding to the tree.
    pub fn system_with(&self, name: &str, marker: &str, extra: impl FnOnce(&Path)) -> PathBuf {
        let img = self.path.join("System").join(name);
        squashfs_from(&self.work, &img, comp_for(name), |t| {
            system_tree(t, marker);
            extra(t);
        });
        img
    }

    /// `System/<link> -> target` (replacing an existing link).
    pub fn link(&self, link: &str, target: &str) {
        let p = self.path.join("System").join(link);
        let _ = fs::remove_file(&p);
        os_symlink(target, &p).unwrap();
    }

    /// Remove `System/<link>`.
    pub fn unlink(&self, link: &str) {
        fs::remove_file(self.path.join("System").join(link)).unwrap();
    }

    /// `DIRS/<name>` as a directory holding `files` (rel path, content).
    pub fn dir_entry(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let p = mkdirs(&self.path, &format!("DIRS/{name}"));
        for (rel, content) in files {
            write(&p, rel, content);
        }
        p
    }

    /// `DIRS/<name>` as a regular file.
    pub fn file_entry(&self, name: &str, content: &str) -> PathBuf {
        write(&self.path, &format!("DIRS/{name}"), content)
    }

    /// `DIRS/<name>` as a squashfs image holding `files`.
    pub fn image_entry(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let img = self.path.join("DIRS").join(name);
        squashfs_from(&self.work, &img, comp_for(name), |t| {
            for (rel, content) in files {
                write(t, rel, content);
            }
        });
        img
    }

    /// `overboot.toml`.
    pub fn manifest(&self, text: &str) {
        fs::write(self.path.join("overboot.toml"), text).unwrap();
    }

    /// A squashfs image at `rel` (inside BootExt) holding `files`.
    pub fn image_at(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let img = self.path.join(rel);
        squashfs_from(&self.work, &img, comp_for(rel), |t| {
            for (rel, content) in files {
                write(t, rel, content);
            }
        });
        img
    }
}

// ---------------------------------------------------------------------------
// assemble
// ---------------------------------------------------------------------------

/// One `overboot assemble` run.
pub struct Assembly {
    pub run: Run,
    pub root: PathBuf,
    pub state_path: PathBuf,
    /// mountinfo before the run
    pub before: Vec<MountEntry>,
}

impl Assembly {
    /// The parsed state file (panics when missing or not JSON).
    #[track_caller]
    pub fn state(&self) -> Value {
        let text = fs::read_to_string(&self.state_path).unwrap_or_else(|e| {
            panic!(
                "state file {}: {e}\nstderr:\n{}",
                self.state_path.display(),
                self.run.stderr
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json: {e}\n{text}"))
    }

    /// `ROOT/rel`.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Mounts made by the run that are not under ROOT (should be none).
    pub fn mounts_outside_root(&self) -> Vec<MountEntry> {
        new_mounts(&self.before, &mountinfo())
            .into_iter()
            .filter(|m| !m.mount_point.starts_with(&self.root))
            .collect()
    }

    /// The topmost mount at `ROOT/rel` (panics when it is not a mount point).
    #[track_caller]
    pub fn mount(&self, rel: &str) -> MountEntry {
        let p = self.at(rel);
        mount_at(&p).unwrap_or_else(|| {
            panic!(
                "{} is not a mount point; mounts under root:\n{}",
                p.display(),
                describe(&mounts_under(&self.root))
            )
        })
    }

    /// Unmount everything under ROOT, then assert nothing is left there and no
    /// loop device stays attached to a file under the scratch dir.
    #[track_caller]
    pub fn teardown(&self, ns: &Ns) {
        unmount_recursive(&self.root);
        let left = mounts_under(&self.root);
        assert!(left.is_empty(), "still mounted:\n{}", describe(&left));
        assert_no_loop_leak(ns.scratch());
    }
}

/// The overlay on ROOT names in its options only places of the assembled root
/// (issue 11): each `lowerdir=` path is the mount there, `upperdir=`/`workdir=` lie
/// on the writable layer at `/mnt/overlay`. Returns the `lowerdir=` paths, top first.
#[track_caller]
pub fn assert_overlay_names_its_layers(a: &Assembly) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let root = a.mount("/");
    assert_eq!(root.fstype, "overlay");
    let option = |key: &str| {
        root.super_options
            .iter()
            .find_map(|o| o.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {root:?}"))
            .to_string()
    };
    let lower: Vec<String> = option("lowerdir=").split(':').map(String::from).collect();
    assert_eq!(lower.last().map(String::as_str), Some("/mnt/livecd"));
    for path in &lower {
        // A mount of its own (the image, a layer), not a directory of another one.
        let m = a.mount(path);
        assert_ne!(m.fstype, "overlay", "{path}: {m:?}");
    }
    assert_eq!(a.mount("/mnt/livecd").fstype, "squashfs");
    let writable = fs::metadata(a.at("/mnt/overlay")).unwrap().dev();
    a.mount("/mnt/overlay");
    for key in ["upperdir=", "workdir="] {
        let path = option(key);
        assert!(path.starts_with("/mnt/overlay/"), "{key}{path}");
        let meta = fs::metadata(a.at(&path)).unwrap_or_else(|e| panic!("{key}{path}: {e}"));
        assert!(meta.is_dir() && meta.dev() == writable, "{key}{path}");
    }
    lower
}

/// `overboot assemble --bootext B --root ROOT --cmdline CMDLINE --state S` with a
/// fresh empty ROOT.
pub fn assemble(ns: &Ns, bootext: &Path, cmdline: &str) -> Assembly {
    assemble_args(ns, bootext, cmdline, &[])
}

/// Like [`assemble`] with extra arguments appended.
pub fn assemble_args(ns: &Ns, bootext: &Path, cmdline: &str, extra: &[&str]) -> Assembly {
    let root = ns.dir("root");
    let state_path = ns.dir("state").join("state.json");
    let before = mountinfo();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("assemble"),
        OsStr::new("--bootext"),
        bootext.as_os_str(),
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("--cmdline"),
        OsStr::new(cmdline),
        OsStr::new("--state"),
        state_path.as_os_str(),
    ];
    // Units/ go to a scratch run directory, never the host's /run/systemd/system.
    let run_dir = ns.dir("run");
    if !extra.contains(&"--run-dir") {
        args.extend([OsStr::new("--run-dir"), run_dir.as_os_str()]);
    }
    args.extend(extra.iter().map(OsStr::new));
    let run = overboot(args);
    Assembly {
        run,
        root,
        state_path,
        before,
    }
}

/// Assemble and require exit 0 (printing all output otherwise).
#[track_caller]
pub fn assemble_ok(ns: &Ns, bootext: &Path, cmdline: &str) -> Assembly {
    let a = assemble(ns, bootext, cmdline);
    a.run.expect_code(0);
    a
}

// ---------------------------------------------------------------------------
// state.json helpers
// ---------------------------------------------------------------------------

/// The entry of `state.mounts` whose `target` is `target` (panics if none).
#[track_caller]
pub fn state_mount<'a>(state: &'a Value, target: &str) -> &'a Value {
    state["mounts"]
        .as_array()
        .expect("state.mounts is an array")
        .iter()
        .find(|m| m["target"] == target)
        .unwrap_or_else(|| {
            panic!(
                "no mount with target {target} in state: {:#}",
                state["mounts"]
            )
        })
}

/// Index of the mount for `target` in `state.mounts`.
pub fn state_mount_index(state: &Value, target: &str) -> Option<usize> {
    state["mounts"]
        .as_array()?
        .iter()
        .position(|m| m["target"] == target)
}

/// The marker (`/etc/overboot-image`) of the image that booted into `a`'s root.
#[track_caller]
pub fn booted_marker(a: &Assembly) -> String {
    fs::read_to_string(a.at("etc/overboot-image")).unwrap_or_else(|e| {
        panic!(
            "ROOT/etc/overboot-image: {e}\nstate: {}\nstderr:\n{}",
            fs::read_to_string(&a.state_path).unwrap_or_default(),
            a.run.stderr
        )
    })
}

/// The skip record for `entry` (e.g. `DIRS/DIR__etc`), if any.
pub fn skipped<'a>(state: &'a Value, entry: &str) -> Option<&'a Value> {
    state["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["entry"] == entry)
}

/// Every string in `state.warnings`, joined.
pub fn warnings(state: &Value) -> String {
    state["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Case-insensitive: does `text` contain any of `needles`?
pub fn mentions_any(text: &str, needles: &[&str]) -> bool {
    let t = text.to_lowercase();
    needles.iter().any(|n| t.contains(&n.to_lowercase()))
}

// ---------------------------------------------------------------------------
// mountinfo
// ---------------------------------------------------------------------------

/// One line of `/proc/thread-self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    /// root of the mount within its filesystem
    pub root: String,
    pub mount_point: PathBuf,
    /// per-mount options (`ro`, `nosuid`, `nodev`, ...)
    pub mount_options: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// per-superblock options (`size=65536k`, `lowerdir=...`, ...)
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Per-mount option present?
    pub fn has(&self, opt: &str) -> bool {
        self.mount_options.iter().any(|o| o == opt)
    }

    /// Per-superblock option present?
    pub fn has_super(&self, opt: &str) -> bool {
        self.super_options.iter().any(|o| o == opt)
    }
}

/// Decode mountinfo's octal escapes (`\040` for space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 4 || sep < 6 {
            continue;
        }
        out.push(MountEntry {
            id: fields[0].parse().unwrap_or(0),
            parent: fields[1].parse().unwrap_or(0),
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            mount_options: fields[5].split(',').map(String::from).collect(),
            fstype: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]),
            super_options: fields[sep + 3].split(',').map(String::from).collect(),
        });
    }
    out
}

/// The calling thread's mounts (its namespace, not the process leader's).
pub fn mountinfo() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/thread-self/mountinfo").unwrap())
}

/// The topmost mount whose mount point is exactly `path`.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let all = mountinfo();
    let at: Vec<&MountEntry> = all.iter().filter(|m| m.mount_point == path).collect();
    // The topmost one is the one no other mount at the same point sits on.
    let ids: HashSet<u32> = at.iter().map(|m| m.parent).collect();
    at.iter()
        .find(|m| !ids.contains(&m.id))
        .or(at.last())
        .map(|m| (*m).clone())
}

pub fn is_mountpoint(path: &Path) -> bool {
    mount_at(path).is_some()
}

/// Every mount at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    mountinfo()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect()
}

/// Mounts in `after` that are not in `before` (by id).
pub fn new_mounts(before: &[MountEntry], after: &[MountEntry]) -> Vec<MountEntry> {
    let old: HashSet<u32> = before.iter().map(|m| m.id).collect();
    after
        .iter()
        .filter(|m| !old.contains(&m.id))
        .cloned()
        .collect()
}

/// One line per mount, for failure messages.
pub fn describe(mounts: &[MountEntry]) -> String {
    mounts
        .iter()
        .map(|m| {
            format!(
                "  {} {} {} [{}] [{}]",
                m.mount_point.display(),
                m.fstype,
                m.source,
                m.mount_options.join(","),
                m.super_options.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Unmount everything at or below `dir`, deepest (and most recent) first.
pub fn unmount_recursive(dir: &Path) {
    for _ in 0..1000 {
        let mut under = mounts_under(dir);
        if under.is_empty() {
            return;
        }
        // Deepest path first; among equals, the most recently mounted (highest id).
        under.sort_by_key(|m| (m.mount_point.components().count(), m.id));
        let m = under.last().unwrap();
        if rustix::mount::unmount(&m.mount_point, UnmountFlags::empty()).is_err() {
            rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH).unwrap_or_else(|e| {
                panic!("umount {}: {e}", m.mount_point.display());
            });
        }
    }
    panic!("could not unmount everything under {}", dir.display());
}

// ---------------------------------------------------------------------------
// loop devices
// ---------------------------------------------------------------------------

/// A bound loop device.
#[derive(Debug, Clone)]
pub struct LoopDev {
    /// `/dev/loopN`
    pub dev: String,
    pub backing: PathBuf,
    pub read_only: bool,
    pub autoclear: bool,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Every bound loop device whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<LoopDev> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let sys = e.path();
        let Some(backing) = read_trim(&sys.join("loop/backing_file")) else {
            continue;
        };
        // A deleted backing file shows up as "path (deleted)".
        let backing = PathBuf::from(backing.trim_end_matches(" (deleted)"));
        if !backing.starts_with(dir) {
            continue;
        }
        out.push(LoopDev {
            dev: format!("/dev/{name}"),
            backing,
            read_only: read_trim(&sys.join("ro")).as_deref() == Some("1"),
            autoclear: read_trim(&sys.join("loop/autoclear")).as_deref() == Some("1"),
        });
    }
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    out
}

/// Assert (waiting up to 3 s for asynchronous autoclear) that no loop device is
/// attached to a file under `dir`.
#[track_caller]
pub fn assert_no_loop_leak(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = loops_under(dir);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "loop devices leaked (still attached to files under {}): {left:#?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file, link and directory under `dir` with its content (links: their
/// target; files: size and an FNV-1a hash), to see that nothing else changed.
pub fn tree_snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if t.is_dir() {
                out.insert(rel.clone(), "dir".into());
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                // FNV-1a: enough to see a change.
                let h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
                });
                out.insert(rel, format!("{} bytes {h:016x}", bytes.len()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `minisign -S`: writes `FILE.minisig`, signed with `secret`.
pub fn sign(secret: &Path, file: &Path) {
    sh(
        "minisign",
        &[
            OsStr::new("-S"),
            OsStr::new("-s"),
            secret.as_os_str(),
            OsStr::new("-m"),
            file.as_os_str(),
        ],
    );
}

/// A minisign key pair (no password) in `dir`: (public, secret).
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let p = dir.join(format!("{name}.pub"));
    let s = dir.join(format!("{name}.key"));
    sh(
        "minisign",
        &[
            OsStr::new("-G"),
            OsStr::new("-W"),
            OsStr::new("-p"),
            p.as_os_str(),
            OsStr::new("-s"),
            s.as_os_str(),
        ],
    );
    (p, s)
}
