//! `Overlay/` layers, `Units/`, `Apps/` and the persistent overlay, assembled for
//! real (squashfs images, loop devices, overlayfs) in a private mount namespace per
//! test (see `common::Ns`). Needs root.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn skip_reason(st: &Value, entry: &str) -> String {
    skipped(st, entry)
        .unwrap_or_else(|| panic!("{entry} not skipped: {:#}", st["skipped"]))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[track_caller]
fn assert_skipped(st: &Value, entry: &str, words: &[&str]) {
    let r = skip_reason(st, entry);
    assert!(
        mentions_any(&r, words),
        "{entry}: {r} (wanted one of {words:?})"
    );
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// Overlay/
// ---------------------------------------------------------------------------

#[test]
fn overlay_layers_stack_in_name_order_over_the_image() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        // 10-base: a directory; 20-site: an image; 20-site is above 10-base.
        let base = mkdirs(&b.path, "Overlay/10-base");
        write(&base, "etc/motd", "base motd\n");
        write(&base, "etc/both", "from base\n");
        write(&base, "etc/hostname", "base-host\n");
        b.image_at(
            "Overlay/20-site.squashfs",
            &[("etc/both", "from site\n"), ("opt/site/tool", "tool\n")],
        );
        // Bad entries: skipped, never fatal.
        write(&b.path, "Overlay/30-fake.squashfs", "not a squashfs at all");
        write(&b.path, "Overlay/notes.txt", "hello");
        symlink(&b.path, "Overlay/40-escape", "/etc");
        symlink(&b.path, "Overlay/50-dangling", "nowhere");
        // No DIRS entry may land where the layers are shown.
        b.dir_entry("DIR_mnt_layers_0", &[("x", "x")]);

        let a = assemble_ok(ns, &b.path, "");
        // Both layers are visible, the later one on top, the image below both.
        assert_eq!(read(&a.at("etc/motd")), "base motd\n");
        assert_eq!(read(&a.at("etc/both")), "from site\n");
        assert_eq!(read(&a.at("etc/hostname")), "base-host\n");
        assert_eq!(read(&a.at("opt/site/tool")), "tool\n");
        assert_eq!(read(&a.at("etc/overboot-image")), "a");
        assert!(a.at("etc/ssh/sshd_config").exists());
        // Nothing from outside BootExt came in through the escaping link.
        assert!(!a.at("passwd").exists() && !a.at("etc/passwd").exists());

        // The overlay root lists the layers in mountinfo, top first, by the places
        // where they are in the assembled root (issue 11: not a staging path).
        let lower = assert_overlay_names_its_layers(&a);
        assert_eq!(lower, ["/mnt/layers/1", "/mnt/layers/0", "/mnt/livecd"]);
        assert_eq!(a.mount("/mnt/layers/1").fstype, "squashfs");
        assert!(
            a.mount("/mnt/layers/0").root.ends_with("/Overlay/10-base"),
            "{:?}",
            a.mount("/mnt/layers/0")
        );
        assert_eq!(read(&a.at("mnt/layers/1/etc/both")), "from site\n");
        assert_eq!(read(&a.at("mnt/layers/0/etc/both")), "from base\n");
        // Shown read-only: nothing writes into a layer under the live overlay.
        assert!(
            a.mount("/mnt/layers/0").has("ro"),
            "{:?}",
            a.mount("/mnt/layers/0")
        );
        let err = fs::write(a.at("mnt/layers/0/etc/new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");

        // Writes go to the tmpfs upper layer that upperdir= names, never into a
        // layer on BootExt.
        fs::write(a.at("etc/motd"), "changed\n").unwrap();
        assert_eq!(read(&base.join("etc/motd")), "base motd\n");
        assert_eq!(read(&a.at("mnt/overlay/upper/etc/motd")), "changed\n");

        let st = a.state();
        let layers = st["layers"].as_array().unwrap();
        let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["10-base", "20-site.squashfs"]);
        assert_eq!(layers[0]["kind"], "dir");
        assert_eq!(layers[1]["kind"], "image");
        assert_skipped(&st, "Overlay/30-fake.squashfs", &["bad image", "magic"]);
        assert_skipped(&st, "Overlay/notes.txt", &["plain file"]);
        assert_skipped(&st, "Overlay/40-escape", &["outside BootExt"]);
        assert_skipped(&st, "Overlay/50-dangling", &["does not exist"]);
        assert_skipped(&st, "DIRS/DIR_mnt_layers_0", &["reserved", "/mnt/layers"]);
        let status = overboot(["status", "--state", a.state_path.to_str().unwrap()]);
        status.expect_code(0);
        assert!(
            status
                .stdout
                .contains("layer Overlay/20-site.squashfs (image, read-only) at /mnt/layers/1"),
            "{}",
            status.stdout
        );
        assert!(a.mounts_outside_root().is_empty());
        a.teardown(ns);
    });
}

/// A layer image whose superblock is fine but whose contents cannot be mounted is
/// skipped at mount time; the boot goes on, and its loop device is released.
#[test]
fn overlay_layer_failing_to_mount_is_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.image_at("Overlay/10-broken.squashfs", &[("etc/x", "x")]);
        zero_from(&img, 96);
        b.image_at("Overlay/20-good.sqfs", &[("etc/good", "good")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(read(&a.at("etc/good")), "good");
        let st = a.state();
        assert_skipped(
            &st,
            "Overlay/10-broken.squashfs",
            &["squashfs", "bad image"],
        );
        assert_eq!(st["layers"].as_array().unwrap().len(), 1);
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// Units/
// ---------------------------------------------------------------------------

const HELLO: &str = "[Unit]\nDescription=hello\n[Service]\nType=oneshot\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

#[test]
fn units_are_copied_into_the_run_dir_with_wants_links() {
    Ns::run(|ns| {
        let b = BootExt::empty(ns);
        b.system_with("a.squashfs", "a", |t| {
            write(t, "usr/lib/systemd/system/ssh.service", "[Service]\n");
            symlink(t, "lib", "usr/lib");
        });
        b.link("active-system", "a.squashfs");
        write(&b.path, "Units/hello.service", HELLO);
        write(&b.path, "Units/hello.timer", "[Timer]\nOnBootSec=1h\n");
        write(&b.path, "Units/getty@.service", "[Service]\n");
        write(
            &b.path,
            "Units/hello.service.d/10-env.conf",
            "[Service]\nEnvironment=A=1\n",
        );
        let w = "Units/multi-user.target.wants";
        symlink(&b.path, &format!("{w}/hello.service"), "../hello.service");
        symlink(
            &b.path,
            &format!("{w}/getty@tty5.service"),
            "../getty@.service",
        );
        symlink(
            &b.path,
            &format!("{w}/ssh.service"),
            "/lib/systemd/system/ssh.service",
        );
        symlink(
            &b.path,
            "Units/timers.target.wants/hello.timer",
            "/etc/systemd/system/hello.timer",
        );
        // The fault matrix: every one of these is skipped with its reason.
        write(&b.path, "Units/run.sh", "#!/bin/sh\nrm -rf /\n");
        write(&b.path, "Units/big.service", &"#".repeat(70 * 1024));
        write(&b.path, "Units/hello.service.d/notes.txt", "x");
        mkdirs(&b.path, "Units/junk");
        symlink(&b.path, "Units/passwd.service", "/etc/passwd");
        symlink(
            &b.path,
            &format!("{w}/evil.service"),
            "../../../../etc/evil.service",
        );
        symlink(&b.path, &format!("{w}/typo.service"), "../hello.service");
        symlink(
            &b.path,
            &format!("{w}/missing.service"),
            "../missing.service",
        );
        write(&b.path, &format!("{w}/plain.service"), HELLO);

        let run = ns.dir("run");
        let a = assemble_args(ns, &b.path, "", &["--run-dir", run.to_str().unwrap()]);
        a.run.expect_code(0);
        let sys = run.join("systemd/system");
        assert_eq!(read(&sys.join("hello.service")), HELLO);
        assert_eq!(read(&sys.join("hello.timer")), "[Timer]\nOnBootSec=1h\n");
        assert_eq!(
            read(&sys.join("hello.service.d/10-env.conf")),
            "[Service]\nEnvironment=A=1\n"
        );
        assert_eq!(
            fs::metadata(sys.join("hello.service"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o644
        );
        let link = |rel: &str| fs::read_link(sys.join(rel)).unwrap();
        assert_eq!(
            link("multi-user.target.wants/hello.service"),
            PathBuf::from("../hello.service")
        );
        assert_eq!(
            link("multi-user.target.wants/getty@tty5.service"),
            PathBuf::from("../getty@.service")
        );
        assert_eq!(
            link("multi-user.target.wants/ssh.service"),
            PathBuf::from("/usr/lib/systemd/system/ssh.service")
        );
        assert_eq!(
            link("timers.target.wants/hello.timer"),
            PathBuf::from("../hello.timer")
        );
        // The relative links resolve to the copied units.
        assert_eq!(
            read(&sys.join("multi-user.target.wants/hello.service")),
            HELLO
        );

        let st = a.state();
        assert_skipped(&st, "Units/run.sh", &["not a unit type"]);
        assert_skipped(&st, "Units/big.service", &["more than"]);
        assert_skipped(&st, "Units/hello.service.d/notes.txt", &[".conf"]);
        assert_skipped(&st, "Units/junk", &["not UNIT.wants"]);
        assert_skipped(&st, "Units/passwd.service", &["outside BootExt"]);
        assert_skipped(
            &st,
            &format!("{w}/evil.service"),
            &["outside the unit directories"],
        );
        assert_skipped(&st, &format!("{w}/typo.service"), &["not to typo.service"]);
        assert_skipped(&st, &format!("{w}/missing.service"), &["neither in Units/"]);
        assert_skipped(&st, &format!("{w}/plain.service"), &["not a symlink"]);
        for bad in ["run.sh", "big.service", "passwd.service", "junk"] {
            assert!(!sys.join(bad).exists(), "{bad} was installed");
        }
        for bad in ["evil", "typo", "missing", "plain"] {
            let p = sys.join(format!("multi-user.target.wants/{bad}.service"));
            assert!(fs::symlink_metadata(&p).is_err(), "{} exists", p.display());
        }
        let units = st["units"].as_array().unwrap();
        assert_eq!(units.len(), 4 + 4, "{units:#?}");
        let status = overboot(["status", "--state", a.state_path.to_str().unwrap()]);
        assert!(
            status.stdout.contains("Units (8)") && status.stdout.contains("link "),
            "{}",
            status.stdout
        );
        // Nothing went to the real runtime unit directory.
        assert!(!Path::new("/run/systemd/system/hello.service").exists());
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// Apps/
// ---------------------------------------------------------------------------

#[test]
fn apps_are_mounted_read_only_and_bad_apps_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.image_at("Apps/editor.squashfs", &[("bin/editor", "EDIT\n")]);
        b.image_at("Apps/db.sqfs.squashfs.xz", &[("lib/db", "DB\n")]);
        write(&b.path, "Apps/broken.squashfs", "garbage, no superblock");
        let zeroed = b.image_at("Apps/zeroed.squashfs", &[("x", "x")]);
        zero_from(&zeroed, 96);
        write(&b.path, "Apps/readme.txt", "apps go here");
        mkdirs(&b.path, "Apps/dir.squashfs");
        // No DIRS entry may land on the apps place.
        b.dir_entry("DIR_mnt_apps_editor", &[("x", "x")]);

        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(read(&a.at("mnt/apps/editor/bin/editor")), "EDIT\n");
        assert_eq!(read(&a.at("mnt/apps/db.sqfs/lib/db")), "DB\n");
        let m = a.mount("mnt/apps/editor");
        assert_eq!(m.fstype, "squashfs");
        assert!(m.has("ro") && m.has("nodev") && m.has("nosuid"), "{m:?}");
        let err = fs::write(a.at("mnt/apps/editor/new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");

        let st = a.state();
        let sm = state_mount(&st, "/mnt/apps/editor");
        assert_eq!(sm["origin"], "Apps/editor.squashfs");
        assert_eq!(sm["read_only"], true);
        assert_skipped(&st, "Apps/broken.squashfs", &["bad image"]);
        assert_skipped(&st, "Apps/zeroed.squashfs", &["squashfs", "bad image"]);
        assert_skipped(&st, "Apps/readme.txt", &["not an app image"]);
        assert_skipped(&st, "Apps/dir.squashfs", &["a directory"]);
        assert_skipped(&st, "DIRS/DIR_mnt_apps_editor", &["reserved", "/mnt/apps"]);
        assert!(!a.at("mnt/apps/zeroed").exists() || !is_mountpoint(&a.at("mnt/apps/zeroed")));
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// Persistent overlay
// ---------------------------------------------------------------------------

#[test]
fn persist_overlay_survives_a_second_assembly() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_srv_data", &[("d", "from DIRS")]);
        let a = assemble_ok(ns, &b.path, "overboot.overlay=persist");
        fs::write(a.at("etc/written-at-first-boot"), "kept\n").unwrap();
        fs::remove_file(a.at("etc/hostname")).unwrap();
        // DIRS/ binds go over the persistent overlay.
        assert_eq!(read(&a.at("srv/data/d")), "from DIRS");
        let st = a.state();
        let overlay = state_mount(&st, "/");
        assert!(
            overlay["source"].as_str().unwrap().contains("Persist"),
            "{overlay}"
        );
        assert!(!warnings(&st).contains("persist"), "{}", warnings(&st));
        let upper = state_mount(&st, "/mnt/overlay");
        assert_eq!(upper["kind"], "bind");
        assert_eq!(
            read(&a.at("mnt/overlay/upper/etc/written-at-first-boot")),
            "kept\n"
        );
        a.teardown(ns);
        assert_eq!(
            read(&b.path.join("Persist/upper/etc/written-at-first-boot")),
            "kept\n"
        );

        let again = assemble_ok(ns, &b.path, "overboot.overlay=persist");
        assert_eq!(read(&again.at("etc/written-at-first-boot")), "kept\n");
        assert!(
            !again.at("etc/hostname").exists(),
            "the deletion persisted too"
        );
        assert_eq!(read(&again.at("etc/overboot-image")), "a");
        again.teardown(ns);

        // Without persist, the same BootExt boots clean.
        let clean = assemble_ok(ns, &b.path, "");
        assert!(!clean.at("etc/written-at-first-boot").exists());
        assert!(clean.at("etc/hostname").exists());
        clean.teardown(ns);
    });
}

#[test]
fn persist_from_manifest_falls_back_to_tmpfs_on_read_only_bootext() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.manifest("[defaults]\noverlay = \"persist\"\n");
        bind_read_only(&b.path);
        let a = assemble_ok(ns, &b.path, "");
        let st = a.state();
        let w = warnings(&st);
        assert!(
            w.contains("persist") && w.contains("read-only") && w.contains("tmpfs"),
            "{w}"
        );
        assert!(a.run.stderr.contains("persist"), "{}", a.run.stderr);
        let overlay = state_mount(&st, "/");
        assert!(
            overlay["source"].as_str().unwrap().starts_with("tmpfs"),
            "{overlay}"
        );
        fs::write(a.at("etc/scratch"), "x").unwrap();
        assert!(!b.path.join("Persist").exists());
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// plan and check show all of it
// ---------------------------------------------------------------------------

#[test]
fn plan_and_check_show_layers_units_and_apps() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        mkdirs(&b.path, "Overlay/10-base/etc");
        b.image_at("Overlay/20-site.squashfs", &[("etc/x", "x")]);
        write(&b.path, "Overlay/notes.txt", "x");
        b.image_at("Apps/editor.squashfs", &[("bin/e", "e")]);
        write(&b.path, "Units/hello.service", HELLO);
        symlink(
            &b.path,
            "Units/multi-user.target.wants/hello.service",
            "../hello.service",
        );
        write(&b.path, "Units/run.sh", "#!/bin/sh\n");

        let plan = overboot([
            "plan",
            "--bootext",
            b.path.to_str().unwrap(),
            "--cmdline",
            "",
        ]);
        plan.expect_code(0);
        for needle in [
            "layer Overlay/10-base (directory, read-only) at /mnt/layers/0",
            "layer Overlay/20-site.squashfs (image, read-only) at /mnt/layers/1",
            "Apps/editor.squashfs -> /mnt/apps/editor",
            "unit Units/hello.service -> /run/systemd/system/hello.service",
            "multi-user.target.wants/hello.service -> ../hello.service",
            "skip: Overlay/notes.txt",
            "skip: Units/run.sh",
        ] {
            assert!(
                plan.stdout.contains(needle),
                "no '{needle}' in:\n{}",
                plan.stdout
            );
        }
        let json = overboot([
            "plan",
            "--bootext",
            b.path.to_str().unwrap(),
            "--cmdline",
            "overboot.overlay=persist",
            "--json",
        ]);
        json.expect_code(0);
        let v: Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(v["upper"], "persist");
        assert_eq!(v["layers"][1]["name"], "20-site.squashfs");
        assert_eq!(v["apps"][0]["target"], "/mnt/apps/editor");
        assert_eq!(v["units"]["links"][0]["target"], "../hello.service");

        let check = overboot(["check", b.path.to_str().unwrap()]);
        check.expect_code(1);
        for needle in [
            "layer Overlay/20-site.squashfs",
            "Apps/editor.squashfs -> /mnt/apps/editor",
            "unit Units/hello.service",
            "error: Overlay/notes.txt",
            "error: Units/run.sh",
        ] {
            assert!(
                check.stdout.contains(needle),
                "no '{needle}' in:\n{}",
                check.stdout
            );
        }
        // plan and check change nothing on BootExt.
        assert!(!b.path.join("Persist").exists());
    });
}

/// A filesystem image of `mb` MiB made by `mkfs`, loop-mounted (autoclear) on a
/// fresh directory, which is returned. The image lives outside the scratch dir so
/// that the teardown's loop-leak check sees only what overboot attached.
fn mounted_fs(ns: &Ns, keep: &TempDir, mkfs: &str, args: &[&str], mb: u64) -> PathBuf {
    let img = keep.path().join("fs.img");
    fs::write(&img, []).unwrap();
    truncate(&img, mb << 20);
    let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
    a.push(img.as_os_str());
    sh(mkfs, &a);
    let at = ns.dir("mnt");
    sh(
        "mount",
        &[
            "-o".as_ref(),
            "loop".as_ref(),
            img.as_os_str(),
            at.as_os_str(),
        ],
    );
    at
}

/// The real thing: BootExt on ext4 holds the persistent upper layer across
/// assemblies (overlayfs needs its xattrs and whiteouts).
#[test]
fn persist_on_ext4_bootext() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let keep = TempDir::new("ext4");
        let ext4 = mounted_fs(
            ns,
            &keep,
            "mkfs.ext4",
            &["-q", "-F", "-d", b.path.to_str().unwrap()],
            16,
        );
        let a = assemble_ok(ns, &ext4, "overboot.overlay=persist");
        assert!(
            !warnings(&a.state()).contains("persist"),
            "{}",
            warnings(&a.state())
        );
        fs::write(a.at("var/lib/counter"), "1\n").unwrap();
        fs::remove_file(a.at("etc/os-release")).unwrap();
        // upperdir= names Persist/upper as the assembled root sees it.
        assert_overlay_names_its_layers(&a);
        assert_eq!(read(&a.at("mnt/overlay/upper/var/lib/counter")), "1\n");
        assert_eq!(read(&ext4.join("Persist/upper/var/lib/counter")), "1\n");
        a.teardown(ns);
        let again = assemble_ok(ns, &ext4, "overboot.overlay=persist");
        assert_eq!(read(&again.at("var/lib/counter")), "1\n");
        assert!(!again.at("etc/os-release").exists());
        again.teardown(ns);
    });
}

/// A filesystem without extended attributes (ramfs here, vfat or exfat in the
/// field) cannot be an overlay upper layer: the boot falls back to tmpfs and says why.
#[test]
fn persist_without_xattrs_falls_back_to_tmpfs() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let ramfs = ns.dir("ramfs");
        sh(
            "mount",
            &[
                "-t".as_ref(),
                "ramfs".as_ref(),
                "none".as_ref(),
                ramfs.as_os_str(),
            ],
        );
        sh(
            "cp",
            &[
                "-a".as_ref(),
                b.path.join("System").as_os_str(),
                ramfs.as_os_str(),
            ],
        );
        let a = assemble_ok(ns, &ramfs, "overboot.overlay=persist");
        let st = a.state();
        let w = warnings(&st);
        assert!(
            w.contains("extended attributes") && w.contains("tmpfs"),
            "{w}"
        );
        assert!(
            state_mount(&st, "/")["source"]
                .as_str()
                .unwrap()
                .starts_with("tmpfs"),
            "{:#}",
            st["mounts"]
        );
        fs::write(a.at("etc/scratch"), "x").unwrap();
        assert_eq!(read(&a.at("etc/overboot-image")), "a");
        a.teardown(ns);
    });
}

/// A directory layer that holds (or lies in) `Persist/` would overlap the
/// persistent writable layer: skipped.
#[test]
fn layer_overlapping_persist_is_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        symlink(&b.path, "Overlay/00-everything", "..");
        mkdirs(&b.path, "Persist/upper/etc");
        symlink(&b.path, "Overlay/01-upper", "../Persist/upper");
        mkdirs(&b.path, "Overlay/02-fine/etc");
        let a = assemble_ok(ns, &b.path, "overboot.overlay=persist");
        let st = a.state();
        assert_skipped(&st, "Overlay/00-everything", &["holds or lies in Persist/"]);
        assert_skipped(&st, "Overlay/01-upper", &["holds or lies in Persist/"]);
        assert_eq!(st["layers"][0]["name"], "02-fine");
        assert!(
            state_mount(&st, "/")["source"]
                .as_str()
                .unwrap()
                .contains("Persist"),
            "{:#}",
            st["mounts"]
        );
        a.teardown(ns);
    });
}

/// When overlayfs refuses the layers (here: a directory layer on a BootExt that is
/// itself an overlay of an overlay, beyond the kernel's stacking depth), the root is
/// made without them and they are skipped: layers never stop a boot.
#[test]
fn layers_refused_by_overlayfs_are_dropped_not_fatal() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        write(&b.path, "Overlay/10-dir/etc/from-layer", "x");
        let mut lower = b.path.clone();
        for _ in 0..2 {
            let (u, w, m) = (ns.dir("u"), ns.dir("w"), ns.dir("m"));
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                u.display(),
                w.display()
            );
            sh(
                "mount",
                &[
                    "-t".as_ref(),
                    "overlay".as_ref(),
                    "overlay".as_ref(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    m.as_os_str(),
                ],
            );
            lower = m;
        }
        let a = assemble_ok(ns, &lower, "");
        let st = a.state();
        assert_skipped(&st, "Overlay/10-dir", &["refused the Overlay/ layers"]);
        assert!(st["layers"].as_array().unwrap().is_empty());
        assert!(!a.at("etc/from-layer").exists());
        assert_eq!(read(&a.at("etc/overboot-image")), "a");
        a.teardown(ns);
    });
}
