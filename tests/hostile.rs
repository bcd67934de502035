//! A hostile BootExt (issue 10): whoever can rewrite the stick must not be able to
//! stop the boot, mislead it, or change it silently. Real trees, squashfs images,
//! loop devices and mounts through `overboot assemble` in a private namespace.
//! Needs root.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    sh("mkfifo", &[path.as_os_str()]);
}

/// Everything a boot said: stderr, warnings, skips and the fallback reason.
fn said(a: &Assembly) -> String {
    let st: Value = a.state();
    format!("{}\n{st}", a.run.stderr)
}

#[track_caller]
fn fell_back_to_recovery(a: &Assembly) -> String {
    a.run.expect_code(0);
    let st = a.state();
    assert_eq!(booted_marker(a), "r", "{st:#}");
    st["fallback"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
fn skip_reason(st: &Value, entry: &str) -> String {
    skipped(st, entry)
        .unwrap_or_else(|| panic!("{entry} not skipped: {:#}", st["skipped"]))["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Item 1: a FIFO or a device node wherever BootExt is read is refused by name and
/// never blocks `open()` (on main, `assemble` hung here until the test's deadline).
#[test]
fn fifos_and_device_nodes_never_block_the_boot() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let p = |rel: &str| b.path.join(rel);
        let pipe = "is a named pipe, not a regular file";
        mkdirs(&b.path, "Units");
        mkdirs(&b.path, "Overlay");
        mkdirs(&b.path, "Apps");
        for rel in [
            "overboot.toml",
            "System/a.squashfs.sha256",
            "System/trial",
            "Units/site.service",
            "DIRS/FILE_etc_motd",
            "Overlay/10-site.squashfs",
            "Apps/tool.squashfs",
        ] {
            mkfifo(&p(rel));
        }
        let previous = p("System/previous-system");
        mkfifo(&previous);

        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back_to_recovery(&a);
        assert!(
            reason.contains(&format!("System/a.squashfs.sha256 {pipe}")),
            "{reason}"
        );
        let st = a.state();
        let all = said(&a);
        assert!(all.contains(&format!("overboot.toml {pipe}")), "{all}");
        assert!(all.contains(&format!("System/trial {pipe}")), "{all}");
        for entry in [
            "Units/site.service",
            "DIRS/FILE_etc_motd",
            "Overlay/10-site.squashfs",
            "Apps/tool.squashfs",
        ] {
            let why = skip_reason(&st, entry);
            assert!(why.contains("named pipe"), "{entry}: {why}");
        }
        a.teardown(ns);
        for rel in ["overboot.toml", "System/a.squashfs.sha256", "System/trial"] {
            fs::remove_file(p(rel)).unwrap();
        }

        // SHA256SUMS as a FIFO: recovery has its own sidecar (read first), active not.
        let r_line = String::from_utf8(
            std::process::Command::new("sha256sum")
                .arg("r.squashfs")
                .current_dir(p("System"))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        fs::write(p("System/r.squashfs.sha256"), r_line).unwrap();
        mkfifo(&p("System/SHA256SUMS"));
        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back_to_recovery(&a);
        assert!(
            reason.contains(&format!("System/SHA256SUMS {pipe}")),
            "{reason}"
        );
        a.teardown(ns);
        fs::remove_file(p("System/SHA256SUMS")).unwrap();

        // A .minisig is read even with overboot.verify=0.
        mkfifo(&p("System/a.squashfs.minisig"));
        let a = assemble(ns, &b.path, "quiet overboot.verify=0");
        let reason = fell_back_to_recovery(&a);
        assert!(
            reason.contains(&format!("System/a.squashfs.minisig {pipe}")),
            "{reason}"
        );
        a.teardown(ns);
        fs::remove_file(p("System/a.squashfs.minisig")).unwrap();

        // A device node as the image itself (BootExt may carry them: mknod).
        fs::remove_file(p("System/a.squashfs")).unwrap();
        sh(
            "mknod",
            &[
                p("System/a.squashfs").as_os_str(),
                OsStr::new("c"),
                OsStr::new("1"),
                OsStr::new("3"),
            ],
        );
        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back_to_recovery(&a);
        assert!(
            reason.contains("is a character device, not a regular file"),
            "{reason}"
        );
        a.teardown(ns);
    });
}

/// `prog` run as nobody: its stdout, or the error that stopped it.
fn run_as_nobody(prog: &Path, args: &[&str]) -> Result<String, std::io::Error> {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(prog)
        .args(args)
        .uid(65534)
        .gid(65534)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A copy of `id`, setuid root, at `dir/name`.
fn setuid_id(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::copy("/usr/bin/id", &p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)).unwrap();
    p
}

/// Item 1: BootExt is `nodev,nosuid,noexec` where it is published (`/mnt/cdrom`):
/// a device node opens nothing and a program does not run through it. `DIR_` and
/// `FILE_` binds are `nodev,nosuid` but not `noexec`: a program in them runs, without
/// its setuid bit; a bind of a read-only BootExt stays read-only. On main,
/// `/mnt/cdrom` had the flags of whatever BootExt was and `DIR_` binds honoured
/// setuid.
#[test]
fn bootext_runs_nothing_and_dir_entries_run_without_setuid() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let dev_null = b.path.join("null");
        sh(
            "mknod",
            &[
                dev_null.as_os_str(),
                "c".as_ref(),
                "1".as_ref(),
                "3".as_ref(),
            ],
        );
        setuid_id(&b.path, "tool");
        let app = b.dir_entry("DIR_opt_app", &[]);
        setuid_id(&app, "id");
        setuid_id(&b.path.join("DIRS"), "FILE_opt_tool");
        // The control: setuid is honoured where nothing forbids it (the scratch
        // tmpfs), so "nobody" below is nosuid's doing.
        let control = setuid_id(&ns.dir("control"), "id");
        assert_eq!(run_as_nobody(&control, &["-u"]).unwrap(), "0");

        let a = assemble_ok(ns, &b.path, "quiet");
        let cdrom = a.mount("/mnt/cdrom");
        for opt in ["nodev", "nosuid", "noexec"] {
            assert!(cdrom.has(opt), "/mnt/cdrom lacks {opt}: {cdrom:?}");
        }
        let err = fs::File::open(a.at("/mnt/cdrom/null")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        let err = run_as_nobody(&a.at("/mnt/cdrom/tool"), &["-u"]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        for (target, prog) in [("/opt/app", "/opt/app/id"), ("/opt/tool", "/opt/tool")] {
            let m = a.mount(target);
            assert!(m.has("nodev") && m.has("nosuid") && m.has("rw"), "{m:?}");
            assert!(!m.has("noexec"), "{target} is noexec: {m:?}");
            assert_eq!(run_as_nobody(&a.at(prog), &["-u"]).unwrap(), "65534");
        }
        a.teardown(ns);

        bind_read_only(&b.path);
        let a = assemble_ok(ns, &b.path, "quiet");
        assert!(a.mount("/opt/app").has("ro"), "{:?}", a.mount("/opt/app"));
        assert!(
            a.mount("/mnt/cdrom").has("ro"),
            "{:?}",
            a.mount("/mnt/cdrom")
        );
        a.teardown(ns);
        sh("umount", &[b.path.as_os_str()]);
    });
}

/// Item 4: a file over the limit is an error naming its size and the limit, never a
/// prefix read as if it were whole (on main, a `read_only` mount past 1 MiB was
/// mounted read-write, and a `SHA256SUMS` line past 1 MiB left the image unverified).
#[test]
fn oversize_files_are_errors_not_prefixes() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        mkdirs(&b.path, "Data/app");
        let padding = format!("# {}\n", "x".repeat(1000)).repeat(1100);
        b.manifest(&format!(
            "{padding}[[mount]]\nsource = \"Data/app\"\ntarget = \"/opt/app\"\nread_only = true\n"
        ));
        let size = fs::metadata(b.path.join("overboot.toml")).unwrap().len();
        let a = assemble_ok(ns, &b.path, "quiet");
        let st = a.state();
        let w = warnings(&st);
        assert!(
            w.contains(&format!(
                "overboot.toml is {size} bytes, more than the 1048576 allowed"
            )),
            "{w}"
        );
        assert!(
            !a.at("opt/app").exists() || mount_at(&a.at("opt/app")).is_none(),
            "no part of an oversize manifest is used"
        );
        a.teardown(ns);
        fs::remove_file(b.path.join("overboot.toml")).unwrap();

        // SHA256SUMS: the line for a.squashfs (a wrong digest) past 1 MiB.
        let other = format!("{}  other.squashfs\n", "0".repeat(64)).repeat(13_000);
        let sums = format!("{other}{}  a.squashfs\n", "ab".repeat(32));
        let size = sums.len();
        fs::write(b.path.join("System/SHA256SUMS"), sums).unwrap();
        let a = assemble(ns, &b.path, "quiet overboot.system=a.squashfs");
        a.run.expect_code(1);
        assert!(
            a.run.stderr.contains(&format!(
                "System/SHA256SUMS is {size} bytes, more than the 1048576 allowed"
            )),
            "{}",
            a.run.stderr
        );
    });
}

/// Item 2: names under a reserved place are refused without walking it. On main,
/// five `DIR_mnt_cdrom_a_…_zN` over a 120-deep directory on BootExt were decoded
/// against BootExt itself (2.4 s and 388,823 lookups each) before being refused.
#[test]
fn names_under_reserved_places_are_not_walked() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        mkdirs(&b.path, &vec!["a"; 120].join("/"));
        let names: Vec<String> = (0..5)
            .map(|i| format!("DIR_mnt_cdrom_{}z{i}", "a_".repeat(118)))
            .collect();
        for n in &names {
            mkdirs(&b.path.join("DIRS"), n);
        }
        let a = assemble_ok(ns, &b.path, "quiet");
        let st = a.state();
        for n in &names {
            let why = skip_reason(&st, &format!("DIRS/{n}"));
            assert!(why.contains("overlaps /mnt/cdrom"), "{n}: {why}");
        }
        a.teardown(ns);
    });
}

/// Item 2: a name that walks a deep directory of the image (every reading of 118
/// tokens) is skipped once it has spent its lookups, with the reason, and nothing is
/// mounted for it. On main its decoding had no budget: seconds per name (hours for
/// thousands), then mounted on what it found.
#[test]
fn names_that_walk_a_deep_image_stop_at_their_budget() {
    Ns::run(|ns| {
        let deep = format!("opt/{}", vec!["a"; 118].join("/"));
        let b = BootExt::standard_with(ns, |t| {
            mkdirs(t, &deep);
        });
        let names: Vec<String> = (0..2)
            .map(|i| format!("DIR_opt_{}z{i}", "a_".repeat(118)))
            .collect();
        for n in &names {
            mkdirs(&b.path.join("DIRS"), n);
        }
        let a = assemble_ok(ns, &b.path, "quiet");
        let st = a.state();
        for n in &names {
            let why = skip_reason(&st, &format!("DIRS/{n}"));
            assert!(why.contains("lookups"), "{n}: {why}");
        }
        let below: Vec<_> = mounts_under(&a.at("/opt"));
        assert!(below.is_empty(), "mounted:\n{}", describe(&below));
        a.teardown(ns);
    });
}

/// Item 3: the place a mount reaches is checked right before it is made. On main,
/// `/mnt/cdrom` and `/etc/ssh` were each mounted twice and `/mnt/livecd/etc` and
/// `/mnt/overlay/upper` overmounted, through symlinks a `DIRS/` bind brought.
#[test]
fn mounts_land_only_where_they_may() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_opt", &[("README", "opt")]);
        for (link, to) in [
            ("x", "/mnt/cdrom"),
            ("y", "../mnt/livecd/etc"),
            ("z", "/mnt/overlay/upper"),
            ("w", "/etc/ssh"),
        ] {
            symlink(&b.path, &format!("DIRS/DIR_opt/{link}"), to);
        }
        for name in [
            "DIR_opt_x",
            "DIR_opt_y",
            "DIR_opt_z",
            "DIR_opt_w",
            "DIR_etc_ssh",
        ] {
            b.dir_entry(name, &[("marker", name)]);
        }
        let a = assemble_ok(ns, &b.path, "quiet");
        let st = a.state();
        for (entry, want) in [
            ("DIRS/DIR_opt_x", "overlaps /mnt/cdrom"),
            ("DIRS/DIR_opt_y", "overlaps /mnt/livecd"),
            ("DIRS/DIR_opt_z", "overlaps /mnt/overlay"),
            (
                "DIRS/DIR_opt_w",
                "is where DIRS/DIR_etc_ssh is already mounted",
            ),
        ] {
            let why = skip_reason(&st, entry);
            assert!(why.contains(want), "{entry}: {why}");
        }
        assert_eq!(
            fs::read_to_string(a.at("etc/ssh/marker")).unwrap(),
            "DIR_etc_ssh"
        );
        a.teardown(ns);

        // An Overlay/ layer turning /mnt/cdrom into a link to /etc (DIRS/ emptied).
        fs::remove_dir_all(b.path.join("DIRS")).unwrap();
        symlink(&b.path, "Overlay/10-evil/mnt/cdrom", "/etc");
        let a = assemble_ok(ns, &b.path, "quiet overboot.dirs=1");
        let st = a.state();
        let w = warnings(&st);
        assert!(
            w.contains("/mnt/cdrom leads to /etc (a symlink in the image or an Overlay/ layer)"),
            "{w}"
        );
        assert!(
            mount_at(&a.at("etc")).is_none(),
            "BootExt not mounted on /etc"
        );
        a.teardown(ns);
    });
}

/// Item 6: a read-only bind whose target is longer than PATH_MAX is read-only before
/// it is visible, and state.json says what is mounted. On main the remount and the
/// undo worked by path (ENAMETOOLONG): it stayed read-write, reported skipped.
#[test]
fn read_only_bind_past_path_max_is_read_only() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        mkdirs(&b.path, "Data/app");
        let comps: Vec<String> = (0..25)
            .map(|i| format!("{i:02}{}", "d".repeat(198)))
            .collect();
        let target = format!("/{}", comps.join("/"));
        assert!(target.len() > 4096);
        b.manifest(&format!(
            "[[mount]]\nsource = \"Data/app\"\ntarget = \"{target}\"\nread_only = true\n"
        ));
        let a = assemble_ok(ns, &b.path, "quiet");
        let st = a.state();
        let m = state_mount(&st, &target);
        assert_eq!(m["read_only"], true, "{m:#}");
        // Walk there one component at a time (this thread has its own cwd).
        std::env::set_current_dir(&a.root).unwrap();
        for c in &comps {
            std::env::set_current_dir(c).unwrap();
        }
        let err = fs::write("probe", "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
        // Unmount it from its parent (teardown works by absolute path).
        std::env::set_current_dir("..").unwrap();
        let last = comps.last().unwrap().as_str();
        rustix::mount::unmount(last, rustix::mount::UnmountFlags::DETACH).unwrap();
        std::env::set_current_dir("/").unwrap();
        a.teardown(ns);
    });
}

/// Item 5: 64 `Overlay/` layers are all stacked (on main, 7 made the lowerdir value
/// longer than fsconfig's 256 bytes and the retry dropped every layer), also with a
/// state path holding ':' and ',' (item 9: on main, overlayfs was blamed).
#[test]
fn sixty_four_layers_stack_whatever_the_state_path() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        for i in 0..64 {
            let d = format!("Overlay/{i:02}-layer");
            write(&b.path, &format!("{d}/etc/layer-{i:02}"), "x");
            write(&b.path, &format!("{d}/etc/top"), &format!("{i:02}"));
        }
        let check = |a: &Assembly| {
            let st = a.state();
            assert_eq!(st["layers"].as_array().map(Vec::len), Some(64), "{st:#}");
            assert_eq!(fs::read_to_string(a.at("etc/top")).unwrap(), "63");
            assert!(a.at("etc/layer-00").exists() && a.at("etc/layer-63").exists());
        };
        let a = assemble_ok(ns, &b.path, "quiet");
        check(&a);
        a.teardown(ns);

        let root = ns.dir("root");
        let state_path = ns.dir("st:a,te").join("state.json");
        let run_dir = ns.dir("run");
        let run = overboot([
            OsStr::new("assemble"),
            OsStr::new("--bootext"),
            b.path.as_os_str(),
            OsStr::new("--root"),
            root.as_os_str(),
            OsStr::new("--cmdline"),
            OsStr::new("quiet"),
            OsStr::new("--state"),
            state_path.as_os_str(),
            OsStr::new("--run-dir"),
            run_dir.as_os_str(),
        ]);
        let a = Assembly {
            run,
            root,
            state_path,
            before: Vec::new(),
        };
        a.run.expect_code(0);
        check(&a);
        a.teardown(ns);
    });
}

/// Item 9, the smaller ones, each checked on its message: names are escaped where
/// printed, a link out of BootExt says so, a non-UTF-8 name is named as such,
/// `..service` and `Overlay/self -> .` are skipped alone, `System` as a file is not
/// "a trial in progress", and `--state` inside `--root` is refused.
#[test]
fn small_hostile_cases_say_what_they_are() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        mkdirs(&b.path, "DIRS/DIR_mnt_cdrom_x\ny");
        symlink(&b.path, "DIRS/DIR_srv", "/etc");
        symlink(&b.path, "Overlay/20-out", "../../..");
        symlink(&b.path, "Apps/out.squashfs", "/etc/passwd");
        mkdirs(&b.path, "Overlay/10-base/etc");
        symlink(&b.path, "Overlay/self", ".");
        write(&b.path, "Units/..service", "[Unit]\n");
        let latin1: std::ffi::OsString =
            std::os::unix::ffi::OsStringExt::from_vec(b"DIR_opt_caf\xe9".to_vec());
        fs::create_dir(b.path.join("DIRS").join(&latin1)).unwrap();
        let a = assemble_ok(ns, &b.path, "");
        let st = a.state();
        assert!(
            a.run.stderr.contains("DIRS/DIR_mnt_cdrom_x\\ny"),
            "escaped in the log: {}",
            a.run.stderr
        );
        assert!(!a.run.stderr.contains("x\ny"), "raw newline in the log");
        for entry in ["DIRS/DIR_srv", "Overlay/20-out", "Apps/out.squashfs"] {
            let why = skip_reason(&st, entry);
            assert!(
                why.contains("outside BootExt") && !why.contains("Cross-device"),
                "{entry}: {why}"
            );
        }
        let why = skip_reason(&st, "DIRS/DIR_opt_caf\u{fffd}");
        assert!(why.contains("its name is not UTF-8"), "{why}");
        let why = skip_reason(&st, "Units/..service");
        assert!(why.contains("starts with '.'"), "{why}");
        let why = skip_reason(&st, "Overlay/self");
        assert!(
            why.contains("itself, which holds the other layers"),
            "{why}"
        );
        assert_eq!(
            st["layers"].as_array().map(Vec::len),
            Some(1),
            "10-base kept"
        );
        a.teardown(ns);

        // --state inside --root: refused before anything is mounted.
        let root = ns.dir("root");
        let inside = root.join("run/state.json");
        let run = overboot([
            OsStr::new("assemble"),
            OsStr::new("--bootext"),
            b.path.as_os_str(),
            OsStr::new("--root"),
            root.as_os_str(),
            OsStr::new("--state"),
            inside.as_os_str(),
        ]);
        run.expect_code(1);
        assert!(
            run.stderr.contains("lies in the new root"),
            "{}",
            run.stderr
        );
        assert!(mounts_under(&root).is_empty(), "nothing mounted");

        // System/ as a plain file: no images, and no "trial in progress".
        let bad = BootExt::empty(ns);
        fs::remove_dir(bad.path.join("System")).unwrap();
        fs::write(bad.path.join("System"), "").unwrap();
        let a = assemble(ns, &bad.path, "");
        a.run.expect_code(1);
        assert!(
            !a.run.stderr.contains("trial may be in progress"),
            "{}",
            a.run.stderr
        );
    });
}
