//! Power cut at every write step of `set-active`, of the boot countdown
//! (`assemble`), of `bless`, of `rollback` and of `update`: each command runs under
//! `strace -e inject=SYSCALL:signal=KILL:when=N`, which kills it on entry to the
//! N-th call of SYSCALL (before the call runs), for every syscall that changes
//! BootExt (openat, write, pwrite64, fsync, rename*, unlinkat, symlinkat) and N = 1, 2, …
//! until the command completes without being killed. Killing before the N-th call
//! of each of them is killing at every point between two changes.
//!
//! After each kill, a "reboot" (`overboot assemble` into a fresh root) must come up
//! on a good image (the old or the new one, never none, never a fatal), a trial
//! image only with its countdown, and nothing on BootExt may differ from before
//! except the documented trial files (`System/{active-system, previous-system,
//! trial}` and their `.NAME.tmp` temporaries).
//!
//! A kill keeps the page cache: what was written but not yet synced survives it,
//! where a real power cut would lose it. `block_level_cut_of_set_active` covers that
//! for set-active on a real ext4 on a loop device: after the kill, the filesystem is
//! shut down without flushing its journal (`FS_IOC_SHUTDOWN`, NOLOGFLUSH; dm-flakey
//! would do too, but needs device-mapper in the kernel), so everything not yet
//! durable is lost, and the reboot sees only what reached the disk.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SYSCALLS: &[&str] = &[
    "openat",
    "write",
    "pwrite64",
    "fsync",
    "rename",
    "renameat",
    "renameat2",
    "unlinkat",
    "symlinkat",
];

/// The names in `System/` that the trial commands may change, and those `update`
/// writes (the image it installs, `app-*` here, its signature, the partial download,
/// `last-update.json`).
fn trial_file(rel: &str) -> bool {
    let Some(name) = rel.strip_prefix("System/") else {
        return false;
    };
    let base = name
        .strip_prefix('.')
        .and_then(|n| {
            n.strip_suffix(".tmp")
                .or_else(|| n.strip_suffix(".partial"))
        })
        .unwrap_or(name);
    [
        "active-system",
        "previous-system",
        "trial",
        "last-update.json",
    ]
    .contains(&base)
        || base.starts_with("app-")
}

fn others(snap: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    snap.iter()
        .filter(|(k, _)| !trial_file(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The trial files as they are, to put back before each run.
#[derive(Clone)]
struct Setup {
    active: Option<&'static str>,
    previous: Option<&'static str>,
    trial: Option<String>,
}

fn reset(b: &Path, s: &Setup) {
    let sys = b.join("System");
    for e in fs::read_dir(&sys).unwrap() {
        let e = e.unwrap();
        let rel = format!("System/{}", e.file_name().to_string_lossy());
        if trial_file(&rel) {
            fs::remove_file(e.path()).unwrap();
        }
    }
    if let Some(a) = s.active {
        std::os::unix::fs::symlink(a, sys.join("active-system")).unwrap();
    }
    if let Some(p) = s.previous {
        std::os::unix::fs::symlink(p, sys.join("previous-system")).unwrap();
    }
    if let Some(t) = &s.trial {
        fs::write(sys.join("trial"), t).unwrap();
    }
}

fn trial_text(image: &str, tries: u32, left: u32) -> String {
    format!("image={image}\ntries={tries}\nboots-left={left}\noutcome=pending\n")
}

/// Run `overboot ARGS` under strace, killed on entry to the `n`-th `syscall`.
/// Returns true when it was killed, false when it completed (exit code checked).
fn run_cut(args: &[&str], syscall: &str, n: u32, ok_code: i32) -> bool {
    let out = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=KILL:when={n}"))
        .arg(BIN)
        .args(args)
        // cargo's library path makes the loader try hundreds of files: not BootExt.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("spawn strace (apt-get install strace)");
    if out.status.signal() == Some(9) || out.status.code() == Some(137) {
        return true;
    }
    assert_eq!(
        out.status.code(),
        Some(ok_code),
        "{args:?} not killed at {syscall} #{n} but failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The reboot after a cut: which image, and was it a counted trial boot.
fn reboot(ns: &Ns, b: &Path, why: &str) -> (String, String) {
    let a = assemble(ns, b, "");
    assert_eq!(
        a.run.code,
        0,
        "{why}: the reboot failed:\n{}\nBootExt: {:#?}",
        a.run.stderr,
        tree_snapshot(b)
    );
    let marker = fs::read_to_string(a.at("etc/overboot-image")).unwrap();
    let st = a.state();
    a.teardown(ns);
    let outcome = st["trial"]["outcome"].as_str().unwrap_or("").to_string();
    (marker, outcome)
}

/// Cut `args` at every step; after each cut, reboot and check. `good`: images the
/// reboot may land on; `counted`: images that may boot only as a counted trial.
/// Returns the number of cuts made.
#[allow(clippy::too_many_arguments)]
fn cut_everywhere(
    ns: &Ns,
    b: &Path,
    setup: &Setup,
    args: &[&str],
    ok_code: i32,
    good: &[&str],
    counted: &[&str],
    cleanup: &dyn Fn(),
) -> u32 {
    reset(b, setup);
    let before = others(&tree_snapshot(b));
    let mut cuts = 0;
    for syscall in SYSCALLS {
        for n in 1..500 {
            reset(b, setup);
            let killed = run_cut(args, syscall, n, ok_code);
            cleanup();
            let why = format!("{args:?} cut before {syscall} #{n}");
            let after = tree_snapshot(b);
            assert_eq!(
                others(&after),
                before,
                "{why}: BootExt changed beyond the trial files"
            );
            let (img, outcome) = reboot(ns, b, &why);
            assert!(
                good.contains(&img.as_str()),
                "{why}: rebooted into {img}, wanted one of {good:?}; BootExt:\n{after:#?}"
            );
            if counted.contains(&img.as_str()) {
                assert_eq!(
                    outcome, "trial",
                    "{why}: {img} booted without its countdown"
                );
            }
            if !killed {
                break;
            }
            cuts += 1;
        }
    }
    cuts
}

fn standard_with_b(ns: &Ns) -> BootExt {
    let b = BootExt::standard(ns);
    b.system("b.squashfs", "b");
    b
}

fn args_with<'a>(b: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--bootext", b.to_str().unwrap()]);
    v
}

#[test]
fn cut_set_active_trial_and_permanent() {
    Ns::run(|ns| {
        let b = standard_with_b(ns);
        let setup = Setup {
            active: Some("a.squashfs"),
            previous: None,
            trial: None,
        };
        let args = args_with(&b.path, &["set-active", "b.squashfs", "--tries", "2"]);
        let n = cut_everywhere(ns, &b.path, &setup, &args, 0, &["a", "b"], &["b"], &|| {});
        assert!(n >= 10, "only {n} cut points: is strace injecting?");
        let args = args_with(&b.path, &["set-active", "b.squashfs"]);
        cut_everywhere(ns, &b.path, &setup, &args, 0, &["a", "b"], &[], &|| {});
        // A new trial in the middle of another one: the untested image in trial
        // never boots uncounted.
        b.system("c.squashfs", "c");
        let during = Setup {
            active: Some("b.squashfs"),
            previous: Some("a.squashfs"),
            trial: Some(trial_text("b.squashfs", 3, 2)),
        };
        let args = args_with(&b.path, &["set-active", "c.squashfs", "--tries", "1"]);
        cut_everywhere(
            ns,
            &b.path,
            &during,
            &args,
            0,
            &["a", "b", "c"],
            &["b", "c"],
            &|| {},
        );
    });
}

#[test]
fn cut_boot_countdown_and_rollback() {
    Ns::run(|ns| {
        let b = standard_with_b(ns);
        let root = ns.dir("cut-root");
        let state = ns.dir("cut-state");
        let state_file = state.join("state.json");
        let args: Vec<&str> = vec![
            "assemble",
            "--bootext",
            b.path.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--cmdline",
            "",
            "--state",
            state_file.to_str().unwrap(),
        ];
        let cleanup = || {
            unmount_recursive(&root);
            unmount_recursive(&state);
        };
        // A countdown (2 of 3 boots left): the trial image, counted, whether the
        // cut came before the count reached the disk or after.
        let counting = Setup {
            active: Some("b.squashfs"),
            previous: Some("a.squashfs"),
            trial: Some(trial_text("b.squashfs", 3, 2)),
        };
        let n = cut_everywhere(ns, &b.path, &counting, &args, 0, &["b"], &["b"], &cleanup);
        assert!(n >= 5, "only {n} cut points");
        // Ran out: rollback to a, whatever instant the power goes.
        let expired = Setup {
            trial: Some(trial_text("b.squashfs", 2, 0)),
            ..counting
        };
        cut_everywhere(ns, &b.path, &expired, &args, 0, &["a"], &[], &cleanup);
    });
}

#[test]
fn cut_bless_and_rollback() {
    Ns::run(|ns| {
        let b = standard_with_b(ns);
        let setup = Setup {
            active: Some("b.squashfs"),
            previous: Some("a.squashfs"),
            trial: Some(trial_text("b.squashfs", 2, 1)),
        };
        reset(&b.path, &setup);
        // The record of a boot of b, for bless to check.
        let a = assemble_ok(ns, &b.path, "");
        a.teardown(ns);
        let st = a.state_path.to_str().unwrap().to_string();
        let args = args_with(&b.path, &["bless", "--state", &st]);
        cut_everywhere(ns, &b.path, &setup, &args, 0, &["b"], &[], &|| {});
        let args = args_with(&b.path, &["rollback"]);
        cut_everywhere(ns, &b.path, &setup, &args, 0, &["a", "b"], &["b"], &|| {});
    });
}

// ---------------------------------------------------------------------------
// Block level: the filesystem shut down without flushing its journal
// ---------------------------------------------------------------------------

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ext4 BootExt on a loop device that can lose power: `FS_IOC_SHUTDOWN` without
/// log flush (`xfs_io -x -c shutdown`, as xfstests simulates crashes) stops every
/// further write; what was not committed (unsynced data, the running journal
/// transaction) is lost, and the next mount replays the journal as a reboot would.
struct Cuttable {
    file: PathBuf,
    mnt: PathBuf,
    // Outside the test's scratch dir: its loop device is attached while the
    // reboots' leak checks look at the scratch dir.
    _dir: TempDir,
}

impl Cuttable {
    fn new(ns: &Ns) -> Cuttable {
        let dir = TempDir::new("powercut-disk");
        let file = dir.path().join("disk.img");
        fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", file.to_str().unwrap()]);
        Cuttable {
            file,
            mnt: ns.dir("mnt"),
            _dir: dir,
        }
    }
    /// A loop mount: its loop device goes away with the unmount.
    fn mount(&self) {
        let (file, mnt) = (self.file.to_str().unwrap(), self.mnt.to_str().unwrap());
        run("mount", &["-t", "ext4", "-o", "loop", file, mnt]);
    }
    fn umount(&self) {
        run("umount", &[self.mnt.to_str().unwrap()]);
    }
    /// The power goes.
    fn cut(&self) {
        run(
            "xfs_io",
            &["-x", "-c", "shutdown", self.mnt.to_str().unwrap()],
        );
        self.umount();
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).output();
    }
}

/// set-active --tries, cut at every step on a real block device: the writes not yet
/// synced at the cut are lost. The boot after it lands on a or on b counted.
#[test]
fn block_level_cut_of_set_active() {
    Ns::run(|ns| {
        let disk = Cuttable::new(ns);
        let images = BootExt::standard(ns);
        images.system("b.squashfs", "b");
        disk.mount();
        run(
            "cp",
            &[
                "-a",
                &format!("{}/.", images.path.display()),
                disk.mnt.to_str().unwrap(),
            ],
        );
        run("sync", &[]);
        disk.umount();
        let be = disk.mnt.clone();
        let setup = Setup {
            active: Some("a.squashfs"),
            previous: None,
            trial: None,
        };
        let args = args_with(&be, &["set-active", "b.squashfs", "--tries", "1"]);
        let mut cuts = 0;
        let mut seen = std::collections::BTreeSet::new();
        // fsync is where data becomes durable: cut before each one, and at the end.
        for n in 1..50 {
            disk.mount();
            reset(&be, &setup);
            run("sync", &[]);
            let before = others(&tree_snapshot(&be));
            let killed = run_cut(&args, "fsync", n, 0);
            // The power goes: nothing more reaches the disk.
            disk.cut();
            disk.mount();
            let why = format!("block-level cut before fsync #{n}");
            assert_eq!(others(&tree_snapshot(&be)), before, "{why}");
            let (img, outcome) = reboot(ns, &be, &why);
            seen.insert(format!("{img}:{outcome}"));
            assert!(
                img == "a" || (img == "b" && outcome == "trial"),
                "{why}: {img} {outcome}"
            );
            disk.umount();
            if !killed {
                assert_eq!(img, "b", "after a complete set-active, b boots");
                break;
            }
            cuts += 1;
        }
        assert!(cuts >= 3, "{cuts} cuts");
        assert!(seen.contains("a:") && seen.contains("b:trial"), "{seen:?}");
    });
}

/// `overboot update` cut at every step, from the first byte fetched to the record
/// written: the appliance reboots on the old image, or on the new one only as a
/// counted trial (its signature written before it is renamed into place, its link
/// only after).
#[test]
fn cut_update() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let keys = fleet::keys(&ns.dir("keys"));
        let trust = fleet::trust_dir(ns, &keys);
        let public = ns.dir("public");
        // Two 200 KB packages: a few chunks, so a few writes to cut between.
        let img = fleet::app_image(&ns.dir("work"), &ns.dir("builds"), "1.0", 2, false);
        fleet::publish(&[&img], &keys, &public).expect_code(0);
        let nginx = fleet::Nginx::start(&ns.dir("nginx"), &public);
        let url = nginx.url("");
        let args = args_with(
            &b.path,
            &["update", &url, "--trust-keys", trust.to_str().unwrap()],
        );
        let setup = Setup {
            active: Some("a.squashfs"),
            previous: None,
            trial: None,
        };
        let good = ["a", "app-1.0"];
        let n = cut_everywhere(ns, &b.path, &setup, &args, 0, &good, &["app-1.0"], &|| {});
        eprintln!("update cut at {n} points");
        assert!(n >= 20, "only {n} cut points: is strace injecting?");
    });
}
