//! The mkinitcpio hook (`mkinitcpio-hook/`). The runtime hook `hooks/overboot` runs in
//! busybox `sh` under a stand-in for mkinitcpio's init (`tests/mkinitcpio/
//! init-standin.sh`: getarg, msg, err, poll_device, resolve_device, run_hookfunctions,
//! launch_interactive_shell, and init's order: run_hook, resolve root=, call
//! "$mount_handler" /new_root, check what got mounted), in a private mount namespace,
//! against a real BootExt: an ext4 filesystem with a label on a real loop device,
//! holding real squashfs images. The build hook `install/overboot` runs in bash with
//! stand-ins for add_binary/add_module/add_runscript that record the calls.
//! The systemd-image hook `install/sd-overboot` runs with stand-ins that record the
//! calls and fill a scratch build root; its units' Exec paths and sourced scripts are
//! checked against it, and the units pass `systemd-analyze verify`. Its generator
//! runs for real (command line from $SYSTEMD_PROC_CMDLINE, or a file bound over
//! /proc/cmdline), and so does the service's script against a real BootExt.
//! Needs root, busybox-static, bash, e2fsprogs, util-linux, squashfs-tools, shellcheck,
//! systemd (systemd-analyze, the unit files).

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A label no other test or host volume has (ext4 labels: at most 16 bytes).
fn unique_label() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "BE{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A BootExt tree: an active image with an executable /sbin/init, a DIR_ and a
/// FILE_ entry, and an image entry.
fn bootext_tree(ns: &Ns) -> BootExt {
    let b = BootExt::standard_with(ns, |t| {
        fs::set_permissions(t.join("sbin/init"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    b.dir_entry("DIR_etc_ssh", &[("marker", "from-bootext-ssh\n")]);
    b.file_entry("FILE_etc_hostname", "bootext-host\n");
    b.image_entry(
        "DIR_opt_tools.squashfs.xz",
        &[("marker", "from-tools-image\n")],
    );
    b
}

/// The tree as a labelled ext4 filesystem on a loop device; returns the device.
fn bootext_device(ns: &Ns, tree: &Path, label: &str) -> String {
    let img = ns.dir("disk").join("bootext.img");
    fs::write(&img, []).unwrap();
    truncate(&img, 64 << 20);
    sh(
        "mkfs.ext4",
        &[
            OsStr::new("-q"),
            OsStr::new("-F"),
            OsStr::new("-L"),
            OsStr::new(label),
            OsStr::new("-d"),
            tree.as_os_str(),
            OsStr::new("-E"),
            OsStr::new("root_owner=0:0"),
            img.as_os_str(),
        ],
    );
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .expect("losetup");
    assert!(out.status.success(), "losetup: {:?}", out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run the runtime hook under the init stand-in; returns (exit code, output).
fn run_hook(cmdline: &str, newroot: &Path) -> (i32, String) {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("busybox")
        .arg("sh")
        .arg(top().join("tests/mkinitcpio/init-standin.sh"))
        .env("OB_CMDLINE", cmdline)
        .env("OB_HOOKS_DIR", top().join("mkinitcpio-hook/hooks"))
        .env("NEWROOT", newroot)
        .env("PATH", path)
        .output()
        .expect("busybox sh (apt-get install busybox-static)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// BootExt as the hooks mount it, and `/mnt/cdrom`: nothing on the stick opens a
/// device, runs, or gains privileges there (issue 10 item 1).
#[track_caller]
fn assert_runs_nothing(m: &MountEntry) {
    for opt in ["nodev", "nosuid", "noexec"] {
        assert!(m.has(opt), "{} lacks {opt}: {m:?}", m.mount_point.display());
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Undo what the hook did: the new root's mounts, BootExt, the loop device.
/// Run the assertions in `check`, then clean up whatever they found, then let a
/// failed assertion fail the test.
fn checked_then_cleaned(ns: &Ns, newroot: &Path, dev: &str, check: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    cleanup(ns, newroot, dev);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Run a stand-in build script, require success, return what it printed.
fn bash_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("bash");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cleanup(ns: &Ns, newroot: &Path, dev: &str) {
    unmount_recursive(newroot);
    let bootext = Path::new("/run/overboot/bootext");
    if mount_at(bootext).is_some() {
        rustix::mount::unmount(bootext, rustix::mount::UnmountFlags::empty()).unwrap();
    }
    let _ = Command::new("losetup").args(["-d", dev]).status();
    assert_no_loop_leak(ns.scratch());
}

#[test]
fn hook_finds_bootext_by_label_and_assembles_the_new_root() {
    Ns::run(|ns| {
        let b = bootext_tree(ns);
        let label = unique_label();
        let dev = bootext_device(ns, &b.path, &label);
        let newroot = ns.dir("new_root");
        let (code, out) = run_hook(
            &format!("root=overboot overboot.bootext=LABEL={label} overboot.timeout=5 rw"),
            &newroot,
        );
        checked_then_cleaned(ns, &newroot, &dev, || {
            assert_eq!(code, 0, "{out}");
            assert!(out.contains(":: running hook [overboot]"), "{out}");
            assert!(
                out.contains("STANDIN: mount_handler=overboot_mount_handler"),
                "{out}"
            );
            assert!(
                out.contains(&format!(":: overboot: looking for BootExt (LABEL={label})")),
                "{out}"
            );
            assert!(
                out.contains("overboot: assembled ") && out.contains("from System/a.squashfs"),
                "{out}"
            );
            assert!(out.contains("switch_root would follow"), "{out}");
            // The new root: image, overlay, overmounts, published BootExt.
            assert_eq!(read(&newroot.join("etc/overboot-image")), "a");
            assert_eq!(read(&newroot.join("etc/hostname")), "bootext-host\n");
            assert_eq!(read(&newroot.join("etc/ssh/marker")), "from-bootext-ssh\n");
            assert_eq!(
                read(&newroot.join("opt/tools/marker")),
                "from-tools-image\n"
            );
            fs::write(newroot.join("written"), "x").expect("new root is writable");
            let root_mount = mount_at(&newroot).expect("new root is a mount point");
            assert_eq!(root_mount.fstype, "overlay", "{root_mount:?}");
            let cdrom = mount_at(&newroot.join("mnt/cdrom")).expect("/mnt/cdrom mounted");
            assert_eq!(cdrom.fstype, "ext4");
            assert_eq!(cdrom.source, dev);
            let bootext = mount_at(Path::new("/run/overboot/bootext")).expect("BootExt mounted");
            assert_eq!(bootext.source, dev);
            assert!(
                bootext.mount_options.iter().any(|o| o == "rw"),
                "{bootext:?}"
            );
            assert_runs_nothing(&bootext);
            assert_runs_nothing(&cdrom);
            let state = read(Path::new("/run/overboot/state.json"));
            assert!(state.contains("\"mode\": \"assemble\""), "{state}");
            assert!(
                state.contains(&format!("\"root\": \"{}\"", newroot.display())),
                "{state}"
            );
        });
    });
}

#[test]
fn hook_without_bootext_says_what_it_looked_for_and_opens_a_shell() {
    Ns::run(|ns| {
        let b = bootext_tree(ns);
        let label = unique_label();
        let dev = bootext_device(ns, &b.path, &label);
        let newroot = ns.dir("new_root");
        let missing = format!("{label}zz");
        let (code, out) = run_hook(
            &format!("root=overboot overboot.bootext=LABEL={missing} overboot.timeout=1"),
            &newroot,
        );
        checked_then_cleaned(ns, &newroot, &dev, || {
            assert_eq!(code, 1, "{out}");
            assert!(
                out.contains(&format!(
                    "ERROR: overboot: cannot assemble: looked for the BootExt volume (LABEL={missing}) for 1 s"
                )),
                "{out}"
            );
            // What the machine has instead, and what to change.
            assert!(out.contains(&format!("LABEL={label} ({dev})")), "{out}");
            assert!(out.contains("to fix: label the volume BootExt"), "{out}");
            assert!(out.contains("STANDIN: launch_interactive_shell"), "{out}");
            assert!(out.contains("STANDIN: nothing mounted on"), "{out}");
            assert!(mount_at(Path::new("/run/overboot/bootext")).is_none());
        });
    });
}

#[test]
fn hook_with_a_bad_bootext_reports_overboots_message() {
    Ns::run(|ns| {
        // BootExt is there, but its active and recovery links lead nowhere.
        let b = BootExt::empty(ns);
        b.link("active-system", "gone.squashfs");
        let label = unique_label();
        let dev = bootext_device(ns, &b.path, &label);
        let newroot = ns.dir("new_root");
        let (code, out) = run_hook(
            &format!("root=overboot overboot.bootext=LABEL={label}"),
            &newroot,
        );
        checked_then_cleaned(ns, &newroot, &dev, || {
            assert_eq!(code, 1, "{out}");
            assert!(
                out.contains("overboot: cannot assemble: looked for"),
                "{out}"
            );
            assert!(
                out.contains("ERROR: overboot could not assemble the root on"),
                "{out}"
            );
            assert!(out.contains("STANDIN: launch_interactive_shell"), "{out}");
        });
    });
}

#[test]
fn hook_leaves_other_roots_to_mkinitcpio() {
    Ns::run(|ns| {
        let newroot = ns.dir("new_root");
        let (code, out) = run_hook("root=/dev/disk/by-label/nothing-here ro", &newroot);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("STANDIN: mount_handler=default_mount_handler"),
            "{out}"
        );
        assert!(out.contains("STANDIN: default_mount_handler"), "{out}");
        assert!(!out.contains("overboot:"), "{out}");
        assert!(out.contains("STANDIN: nothing mounted on"), "{out}");
    });
}

/// Source install/overboot in bash with recording stand-ins and run build().
fn run_build(env: &[(&str, &str)]) -> String {
    let script = r#"
set -eu
calls=()
add_binary() { calls+=("add_binary $*"); }
add_module() { calls+=("add_module $*"); }
add_file() { calls+=("add_file $*"); }
add_symlink() { calls+=("add_symlink $*"); }
add_runscript() {
    # As mkinitcpio does: the runtime script is named after the calling hook, and
    # found in the hooks directory.
    local hookname="${BASH_SOURCE[1]##*/}"
    [[ -f "$HOOKS_DIR/$hookname" ]] || { echo "no runtime hook $hookname" >&2; exit 1; }
    grep -q '^run_hook()' "$HOOKS_DIR/$hookname" || { echo "$hookname has no run_hook" >&2; exit 1; }
    calls+=("add_runscript $hookname")
}
. "$INSTALL"
build
printf '%s\n' "${calls[@]}"
echo "--- help"
help
"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("INSTALL", top().join("mkinitcpio-hook/install/overboot"))
        .env("HOOKS_DIR", top().join("mkinitcpio-hook/hooks"))
        .env_remove("OVERBOOT_BIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    bash_ok(&mut cmd)
}

#[test]
fn install_hook_adds_the_binary_the_modules_and_the_runtime_hook() {
    let out = run_build(&[]);
    let (calls, help) = out.split_once("--- help\n").unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "add_binary /usr/bin/overboot /usr/bin/overboot",
            "add_module loop?",
            "add_module squashfs?",
            "add_module overlay?",
            "add_module ext4?",
            "add_module vfat?",
            "add_module btrfs?",
            "add_module xfs?",
            "add_module isofs?",
            "add_runscript overboot",
        ]
    );
    assert!(help.contains("root=overboot"), "{help}");
    assert!(help.contains("overboot.bootext="), "{help}");

    let out = run_build(&[("OVERBOOT_BIN", "/opt/overboot/overboot")]);
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l == "add_binary /opt/overboot/overboot /usr/bin/overboot"),
        "{out}"
    );
}

#[test]
fn hook_scripts_are_shellcheck_clean() {
    for (file, shell) in [
        ("mkinitcpio-hook/hooks/overboot", "sh"),
        ("mkinitcpio-hook/install/overboot", "bash"),
        ("tests/mkinitcpio/init-standin.sh", "sh"),
        ("mkinitcpio-hook/install/sd-overboot", "bash"),
        ("mkinitcpio-hook/sd-overboot/overboot-generator", "sh"),
        ("mkinitcpio-hook/sd-overboot/overboot-assemble", "sh"),
        ("mkinitcpio-hook/sd-overboot/overboot-cmdline.sh", "sh"),
        ("mkinitcpio-hook/sd-overboot/overboot-lib.sh", "sh"),
    ] {
        let out = Command::new("shellcheck")
            .current_dir(top())
            .args(["-x", "-s", shell, file])
            .output()
            .expect("shellcheck (apt-get install shellcheck)");
        assert!(
            out.status.success(),
            "shellcheck {file}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

// ---------------------------------------------------------------------------
// sd-overboot: the build hook for systemd-based images, its generator and units
// ---------------------------------------------------------------------------

const SD_DIR: &str = "mkinitcpio-hook/sd-overboot";

/// Source install/sd-overboot in bash with stand-ins for mkinitcpio's add_*
/// functions that record each call and do what mkinitcpio does to `buildroot`
/// (files copied with their mode, symlinks made, directories created; a binary
/// named without a path becomes an empty executable under /usr/bin). Returns the
/// recorded calls; the build must succeed.
fn run_sd_build(buildroot: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let script = r#"
set -eu
calls=()
put() { install -D -m "${3:-755}" "$1" "$BUILDROOT$2"; }
add_binary() {
    calls+=("add_binary $*")
    if [[ $1 == /* ]]; then
        [[ -f $1 ]] || { echo "add_binary: no $1" >&2; exit 1; }
        put "$1" "${2:-$1}" "${3:-755}"
    else
        put /dev/null "/usr/bin/$1" 755
    fi
}
add_file() {
    calls+=("add_file $*")
    [[ -f $1 ]] || { echo "add_file: no $1" >&2; exit 1; }
    put "$1" "${2:-$1}" "${3:-644}"
}
add_symlink() {
    calls+=("add_symlink $*")
    mkdir -p "$BUILDROOT${1%/*}"
    ln -sfn "${2:-$1}" "$BUILDROOT$1"
}
add_dir() { calls+=("add_dir $*"); mkdir -p "$BUILDROOT$1"; }
add_module() { calls+=("add_module $*"); }
add_systemd_unit() { calls+=("add_systemd_unit $*"); }
add_runscript() { echo "a systemd image runs no runscript" >&2; exit 1; }
error() { echo "ERROR: $*" >&2; }
warning() { echo "WARNING: $*" >&2; }
. "$INSTALL"
build
printf '%s\n' "${calls[@]}"
"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .env("INSTALL", top().join("mkinitcpio-hook/install/sd-overboot"))
        .env("OVERBOOT_SD_DIR", top().join(SD_DIR))
        .env("BUILDROOT", buildroot)
        .env_remove("OVERBOOT_BIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    bash_ok(&mut cmd).lines().map(str::to_string).collect()
}

/// A stand-in for /usr/bin/overboot (the static binary; any file will do here).
fn fake_overboot(dir: &Path) -> PathBuf {
    let p = dir.join("overboot");
    fs::write(&p, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The values of `key=` lines of a unit file, each split into words.
fn unit_values(text: &str, key: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[test]
fn sd_install_hook_installs_everything_its_units_reference() {
    let tmp = TempDir::new("sd-build");
    let root = tmp.path().join("buildroot");
    fs::create_dir_all(&root).unwrap();
    let bin = fake_overboot(tmp.path());
    let calls = run_sd_build(&root, &[("OVERBOOT_BIN", bin.to_str().unwrap())]);
    let has = |c: &str| calls.iter().any(|x| x == c);

    assert!(
        has(&format!("add_binary {} /usr/bin/overboot", bin.display())),
        "{calls:#?}"
    );
    for m in [
        "loop", "squashfs", "overlay", "ext4", "vfat", "btrfs", "xfs", "isofs",
    ] {
        assert!(has(&format!("add_module {m}?")), "{m}: {calls:#?}");
    }
    // An empty image: every tool the scripts run is added.
    for tool in [
        "sh", "cat", "cp", "ln", "mkdir", "rm", "sed", "sleep", "tr", "mount", "modprobe",
        "udevadm",
    ] {
        assert!(has(&format!("add_binary {tool}")), "{tool}: {calls:#?}");
    }

    // The generator, where systemd looks for generators.
    let generator = root.join("usr/lib/systemd/system-generators/overboot-generator");
    assert!(is_executable(&generator), "{calls:#?}");
    // The service, and every program it starts, in the image and executable.
    let unit_dir = root.join("usr/lib/systemd/system");
    let service = unit_dir.join("overboot-assemble.service");
    let text = read(&service);
    let mut execs = 0;
    for key in ["ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop"] {
        for words in unit_values(&text, key) {
            let prog = words[0].trim_start_matches(['-', '@', '!', ':', '+']);
            assert!(prog.starts_with('/'), "{key}={words:?}");
            let in_image = root.join(prog.trim_start_matches('/'));
            assert!(is_executable(&in_image), "{key}: {prog} not in the image");
            execs += 1;
            // What that script sources (". "$libdir/NAME"", libdir /usr/lib/overboot).
            let script = read(&in_image);
            assert!(script.starts_with("#!/bin/sh\n"), "{prog}");
            assert!(
                root.join("usr/bin/sh").exists(),
                "no /usr/bin/sh for {prog}"
            );
            assert!(
                script.contains("libdir=${OVERBOOT_LIBDIR:-/usr/lib/overboot}"),
                "{script}"
            );
            let mut sourced = 0;
            for l in script.lines() {
                if let Some(rest) = l.strip_prefix(". \"$libdir/") {
                    let name = rest.split('"').next().unwrap();
                    assert!(
                        root.join("usr/lib/overboot").join(name).is_file(),
                        "{prog} sources {name}, not in the image"
                    );
                    sourced += 1;
                }
            }
            assert_eq!(sourced, 2, "{script}");
        }
    }
    assert_eq!(execs, 1, "{text}");
    // Hard dependencies (Requires=, OnFailure=) are systemd units the image gets.
    for key in ["Requires", "OnFailure"] {
        for words in unit_values(&text, key) {
            for u in words {
                assert!(has(&format!("add_systemd_unit {u}")), "{key}={u}");
            }
        }
    }
    // Enabled: initrd-root-fs.target wants it, and the link resolves in the image.
    let wants = unit_dir.join("initrd-root-fs.target.wants/overboot-assemble.service");
    assert_eq!(
        fs::read_link(&wants).unwrap(),
        Path::new("../overboot-assemble.service")
    );
    assert_eq!(read(&wants), text);

    // Tools already in the image (busybox from the base hook) are not added again.
    let root2 = tmp.path().join("buildroot-with-busybox");
    for tool in ["sh", "cat", "cp", "ln", "mkdir", "rm", "sed", "sleep", "tr"] {
        write(&root2, &format!("usr/bin/{tool}"), "");
    }
    let calls = run_sd_build(&root2, &[("OVERBOOT_BIN", bin.to_str().unwrap())]);
    assert!(!calls.iter().any(|c| c == "add_binary sh"), "{calls:#?}");
    assert!(!calls.iter().any(|c| c == "add_binary sed"), "{calls:#?}");
    assert!(
        calls.iter().any(|c| c == "add_binary udevadm"),
        "{calls:#?}"
    );
}

#[test]
fn sd_install_hook_without_its_files_fails_with_a_message() {
    let tmp = TempDir::new("sd-missing");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"error() { echo "ERROR: $*"; }
add_binary() { echo "add_binary $*"; }
. "$INSTALL"; build"#,
        )
        .env("INSTALL", top().join("mkinitcpio-hook/install/sd-overboot"))
        .env("OVERBOOT_SD_DIR", tmp.path())
        .env("BUILDROOT", tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    // Unless the host has the package installed, nothing is found anywhere.
    if !Path::new("/usr/lib/initcpio/sd-overboot").exists()
        && !Path::new("/etc/initcpio/sd-overboot").exists()
    {
        assert!(
            text.contains("ERROR: sd-overboot: no overboot-assemble.service in"),
            "{text}"
        );
        assert!(text.contains("OVERBOOT_SD_DIR"), "{text}");
        assert!(!text.contains("add_binary"), "{text}");
    }
}

#[test]
fn sd_install_hook_help_describes_it() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(". \"$INSTALL\"; help")
        .env("INSTALL", top().join("mkinitcpio-hook/install/sd-overboot"))
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "root=overboot",
        "overboot.bootext=",
        "systemd",
        "/sysroot",
        "$OVERBOOT_BIN",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// Run the generator with normal/early/late dirs under `dir`; the command line is
/// `cmdline` through $SYSTEMD_PROC_CMDLINE, or /proc/cmdline when None.
fn run_generator(dir: &Path, cmdline: Option<&str>) -> (PathBuf, String) {
    let [normal, early, late] = ["normal", "early", "late"].map(|d| {
        let p = dir.join(d);
        fs::create_dir_all(&p).unwrap();
        p
    });
    let mut cmd = Command::new(top().join(SD_DIR).join("overboot-generator"));
    cmd.args([&normal, &early, &late])
        .env_remove("SYSTEMD_PROC_CMDLINE");
    if let Some(c) = cmdline {
        cmd.env("SYSTEMD_PROC_CMDLINE", c);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "generator: {out:?}");
    for d in [&normal, &late] {
        assert_eq!(fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
    }
    let listing = files_in(&early);
    (early, listing)
}

/// Every path under `dir`, sorted, one per line ("name -> target" for links).
fn files_in(dir: &Path) -> String {
    let out = Command::new("find")
        .arg(".")
        .args(["-mindepth", "1", "-printf", "%P %y %l\n"])
        .current_dir(dir)
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    lines.sort();
    lines.join("\n")
}

fn assert_sysroot_mount(early: &Path, listing: &str) {
    assert_eq!(
        listing,
        "initrd-root-fs.target.requires d\n\
         initrd-root-fs.target.requires/sysroot.mount l ../sysroot.mount\n\
         sysroot.mount f"
    );
    let unit = read(&early.join("sysroot.mount"));
    for line in [
        "[Unit]",
        "Requires=overboot-assemble.service",
        "After=overboot-assemble.service",
        "Before=initrd-root-fs.target",
        "ConditionPathIsMountPoint=!/sysroot",
        "[Mount]",
        "What=overboot",
        "Where=/sysroot",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}:\n{unit}");
    }
    assert_eq!(
        read(&early.join("initrd-root-fs.target.requires/sysroot.mount")),
        unit
    );
}

#[test]
fn sd_generator_writes_sysroot_mount_for_root_overboot_only() {
    let tmp = TempDir::new("sd-gen");
    let (early, listing) = run_generator(
        &tmp.path().join("a"),
        Some("BOOT_IMAGE=/vmlinuz rw root=overboot overboot.bootext=LABEL=BootExt quiet"),
    );
    assert_sysroot_mount(&early, &listing);

    // Any other root, or none: nothing written; the last root= counts.
    for cmdline in [
        "root=/dev/sda2 rw",
        "ro quiet",
        "",
        "root=overboot root=UUID=1234",
        "root=overbootx",
        "xroot=overboot",
    ] {
        let (_, listing) = run_generator(&tmp.path().join("b"), Some(cmdline));
        assert_eq!(listing, "", "{cmdline:?}");
    }
    let (early, listing) =
        run_generator(&tmp.path().join("c"), Some("root=/dev/sda root=overboot"));
    assert_sysroot_mount(&early, &listing);
}

#[test]
fn sd_generator_reads_proc_cmdline() {
    Ns::run(|ns| {
        // A private mount namespace: a file bound over /proc/cmdline.
        let dir = ns.dir("gen");
        let fake = dir.join("cmdline");
        for (cmdline, wanted) in [
            (
                "initrd=\\initrd.img root=overboot overboot.timeout=5\n",
                true,
            ),
            ("root=/dev/vda1 ro\n", false),
        ] {
            fs::write(&fake, cmdline).unwrap();
            rustix::mount::mount_bind(&fake, "/proc/cmdline").unwrap();
            let out = dir.join(format!("out-{wanted}"));
            let (early, listing) = run_generator(&out, None);
            rustix::mount::unmount("/proc/cmdline", rustix::mount::UnmountFlags::empty()).unwrap();
            if wanted {
                assert_sysroot_mount(&early, &listing);
            } else {
                assert_eq!(listing, "", "{cmdline}");
            }
        }
    });
}

#[test]
fn sd_units_pass_systemd_analyze_verify() {
    let tmp = TempDir::new("sd-verify");
    // The image as the hook builds it, plus the host's systemd units (the initrd
    // targets, emergency.target, udev), and the generated sysroot.mount.
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let bin = fake_overboot(tmp.path());
    run_sd_build(&root, &[("OVERBOOT_BIN", bin.to_str().unwrap())]);
    let unit_dir = root.join("usr/lib/systemd/system");
    let status = Command::new("cp")
        .arg("-an")
        .arg("/usr/lib/systemd/system/.")
        .arg(&unit_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let (early, _) = run_generator(&tmp.path().join("gen"), Some("root=overboot"));
    fs::copy(early.join("sysroot.mount"), unit_dir.join("sysroot.mount")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg(unit_dir.join("overboot-assemble.service"))
        .arg(unit_dir.join("sysroot.mount"))
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("overboot") && !err.contains("sysroot"),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}

#[test]
fn sd_getarg_reads_the_command_line_as_dracut_does() {
    let script = r#"
. "$LIB"
for k in root= overboot.bootext= overboot.timeout= quiet rw nothing=; do
    if v=$(getarg "$k"); then echo "$k [$v] yes"; else echo "$k [$v] no"; fi
done
"#;
    let out = Command::new("busybox")
        .args(["sh", "-c", script])
        .env("LIB", top().join(SD_DIR).join("overboot-cmdline.sh"))
        .env(
            "SYSTEMD_PROC_CMDLINE",
            "root=/dev/sda root=overboot overboot.bootext=LABEL=a=b quiet * overboot.timeout=",
        )
        .current_dir(top())
        .output()
        .expect("busybox");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root= [overboot] yes\n\
         overboot.bootext= [LABEL=a=b] yes\n\
         overboot.timeout= [] yes\n\
         quiet [] yes\n\
         rw [] no\n\
         nothing= [] no\n"
    );
}

#[test]
fn sd_lib_is_the_dracut_modules_lib() {
    // One set of helpers: sd-overboot's overboot-lib.sh is a link to dracut's (the
    // package copies the file into each tree).
    let link = top().join(SD_DIR).join("overboot-lib.sh");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "{} should link to dracut-module/90overboot/overboot-lib.sh",
        link.display()
    );
    assert_eq!(
        read(&top().join(SD_DIR).join("overboot-lib.sh")),
        read(&top().join("dracut-module/90overboot/overboot-lib.sh")),
        "{SD_DIR}/overboot-lib.sh"
    );
}

/// Run the service's ExecStart script as systemd would (NEWROOT from the unit),
/// with the scripts from the source tree and the built overboot first in PATH.
fn run_sd_assemble(cmdline: &str, newroot: &Path) -> (i32, String) {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(top().join(SD_DIR).join("overboot-assemble"))
        .env("OVERBOOT_LIBDIR", top().join(SD_DIR))
        .env("SYSTEMD_PROC_CMDLINE", cmdline)
        .env("NEWROOT", newroot)
        .env("PATH", path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn sd_assemble_script_mounts_bootext_and_assembles_the_root() {
    Ns::run(|ns| {
        let b = bootext_tree(ns);
        let label = unique_label();
        let dev = bootext_device(ns, &b.path, &label);
        let newroot = ns.dir("sysroot");
        checked_then_cleaned(ns, &newroot, &dev, || {
            // Not for this root: nothing done.
            let (code, out) = run_sd_assemble("root=/dev/sda1", &newroot);
            assert_eq!((code, out.as_str()), (0, ""));
            assert!(mount_at(&newroot).is_none());
            // A missing volume: overboot's kind of message, the unit fails.
            let (code, out) = run_sd_assemble(
                "root=overboot overboot.bootext=/dev/no-such-disk overboot.timeout=1",
                &newroot,
            );
            assert_eq!(code, 1, "{out}");
            assert!(
                out.contains(
                    "overboot: cannot assemble: looked for the BootExt volume (/dev/no-such-disk"
                ),
                "{out}"
            );
            assert!(out.contains("to fix: label the volume BootExt"), "{out}");
            assert!(mount_at(&newroot).is_none());
            // BootExt by its device path (udev's by-label links need udev).
            let (code, out) = run_sd_assemble(
                &format!("root=overboot overboot.bootext={dev} overboot.timeout=5"),
                &newroot,
            );
            assert_eq!(code, 0, "{out}");
            assert_eq!(read(&newroot.join("etc/overboot-image")), "a");
            assert_eq!(read(&newroot.join("etc/ssh/marker")), "from-bootext-ssh\n");
            assert_eq!(read(&newroot.join("etc/hostname")), "bootext-host\n");
            assert_eq!(mount_at(&newroot).unwrap().fstype, "overlay");
            let bootext = mount_at(Path::new("/run/overboot/bootext")).expect("BootExt mounted");
            assert_eq!(bootext.source, dev);
            assert_runs_nothing(&bootext);
            let state = read(Path::new("/run/overboot/state.json"));
            assert!(
                state.contains(&format!("\"root\": \"{}\"", newroot.display())),
                "{state}"
            );
        });
    });
}
