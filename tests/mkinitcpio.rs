//! The mkinitcpio hook (`mkinitcpio-hook/`). The runtime hook `hooks/overboot` runs in
//! busybox `sh` under a stand-in for mkinitcpio's init (`tests/mkinitcpio/
//! init-standin.sh`: getarg, msg, err, poll_device, resolve_device, run_hookfunctions,
//! launch_interactive_shell, and init's order: run_hook, resolve root=, call
//! "$mount_handler" /new_root, check what got mounted), in a private mount namespace,
//! against a real BootExt: an ext4 filesystem with a label on a real loop device,
//! holding real squashfs images. The build hook `install/overboot` runs in bash with
//! stand-ins for add_binary/add_module/add_runscript that record the calls.
//! Needs root, busybox-static, bash, e2fsprogs, util-linux, squashfs-tools, shellcheck.

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
    let b = BootExt::empty(ns);
    b.system_with("a.squashfs", "a", |t| {
        fs::set_permissions(t.join("sbin/init"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    b.system("r.squashfs", "r");
    b.link("active-system", "a.squashfs");
    b.link("recovery-system", "r.squashfs");
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

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Undo what the hook did: the new root's mounts, BootExt, the loop device.
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
        let result = std::panic::catch_unwind(|| {
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
            let state = read(Path::new("/run/overboot/state.json"));
            assert!(state.contains("\"mode\": \"assemble\""), "{state}");
            assert!(
                state.contains(&format!("\"root\": \"{}\"", newroot.display())),
                "{state}"
            );
        });
        cleanup(ns, &newroot, &dev);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
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
        let result = std::panic::catch_unwind(|| {
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
        cleanup(ns, &newroot, &dev);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
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
        let result = std::panic::catch_unwind(|| {
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
        cleanup(ns, &newroot, &dev);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
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
    let out = cmd.output().expect("bash");
    assert!(
        out.status.success(),
        "build failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    ] {
        let out = Command::new("shellcheck")
            .current_dir(top())
            .args(["-s", shell, file])
            .output()
            .expect("shellcheck (apt-get install shellcheck)");
        assert!(
            out.status.success(),
            "shellcheck {file}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
