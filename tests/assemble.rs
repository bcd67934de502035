//! `overboot assemble` against real squashfs images, loop devices and mounts, each
//! test in its own mount namespace (see `common::Ns`). Needs root.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::sync::Barrier;

// ---------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------

/// Two namespaces running at the same time do not see each other's mounts, and
/// the host (this test's own thread) sees neither.
#[test]
fn ns_isolation_between_parallel_tests() {
    let barrier = Barrier::new(2);
    let host_before = mountinfo();
    let seen: Vec<(String, Vec<MountEntry>)> = std::thread::scope(|s| {
        let hs: Vec<_> = ["one", "two"]
            .into_iter()
            .map(|tag| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut out = None;
                    Ns::run(|ns| {
                        let d = ns.dir(tag);
                        rustix::mount::mount(
                            "tmpfs",
                            &d,
                            "tmpfs",
                            rustix::mount::MountFlags::empty(),
                            c"size=1m",
                        )
                        .unwrap();
                        barrier.wait(); // both mounted
                        out = Some((d.display().to_string(), mountinfo()));
                        barrier.wait(); // both looked
                    });
                    out.unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (d1, m1) = &seen[0];
    let (d2, m2) = &seen[1];
    let has = |m: &[MountEntry], d: &str| m.iter().any(|e| e.mount_point == Path::new(d));
    assert!(has(m1, d1) && has(m2, d2), "each sees its own mount");
    assert!(!has(m1, d2), "namespace one sees two's mount");
    assert!(!has(m2, d1), "namespace two sees one's mount");
    let host_after = mountinfo();
    assert!(!has(&host_after, d1) && !has(&host_after, d2));
    assert_eq!(
        host_before.len(),
        host_after.len(),
        "host mount table changed:\n{}",
        describe(&new_mounts(&host_before, &host_after))
    );
}

// ---------------------------------------------------------------------------
// Common assertions
// ---------------------------------------------------------------------------

/// The image marker visible in the new root.
fn marker(a: &Assembly) -> String {
    fs::read_to_string(a.at("etc/overboot-image")).unwrap_or_else(|e| {
        panic!(
            "ROOT/etc/overboot-image: {e}\nmounts:\n{}\nstderr:\n{}",
            describe(&mounts_under(&a.root)),
            a.run.stderr
        )
    })
}

/// The standard layout of section 2 in the new root, and the loop devices.
#[track_caller]
fn assert_layout(ns: &Ns, a: &Assembly, bootext: &Path) {
    let root = a.mount("");
    assert_eq!(root.fstype, "overlay", "ROOT is an overlay");
    let live = a.mount("mnt/livecd");
    assert_eq!(live.fstype, "squashfs", "system image at /mnt/livecd");
    assert!(live.has("ro"), "/mnt/livecd read-only: {live:?}");
    assert!(live.source.starts_with("/dev/loop"), "{live:?}");
    let ov = a.mount("mnt/overlay");
    assert_eq!(ov.fstype, "tmpfs", "overlay tmpfs at /mnt/overlay");
    assert!(a.at("mnt/overlay/upper").is_dir());
    assert!(a.at("mnt/overlay/work").is_dir());
    a.mount("mnt/cdrom");
    // /mnt/cdrom is BootExt itself.
    assert!(
        fs::symlink_metadata(a.at("mnt/cdrom/System/active-system")).is_ok()
            || fs::symlink_metadata(a.at("mnt/cdrom/System/recovery-system")).is_ok()
            || a.at("mnt/cdrom/System").is_dir()
    );
    let probe = format!("probe-{}", std::process::id());
    fs::write(a.at(&format!("mnt/cdrom/{probe}")), "x").unwrap();
    assert!(
        bootext.join(&probe).exists(),
        "/mnt/cdrom is a bind of BootExt"
    );
    fs::remove_file(bootext.join(&probe)).unwrap();
    // The root is writable and writes land in the tmpfs upper dir.
    fs::write(a.at("written-by-test"), "hello").unwrap();
    assert_eq!(
        fs::read_to_string(a.at("mnt/overlay/upper/written-by-test")).unwrap(),
        "hello"
    );
    // Every loop device is read-only with autoclear.
    let loops = loops_under(ns.scratch());
    assert!(!loops.is_empty(), "no loop device backs the system image");
    for l in &loops {
        assert!(l.read_only, "{l:?} not read-only");
        assert!(l.autoclear, "{l:?} without autoclear");
    }
    assert!(
        loops.iter().any(|l| l.dev == live.source),
        "/mnt/livecd source {} is not one of {loops:?}",
        live.source
    );
    let outside = a.mounts_outside_root();
    assert!(
        outside.is_empty(),
        "mounted outside ROOT:\n{}",
        describe(&outside)
    );
}

/// state.booted / fallback for a boot that fell back from active to recovery.
#[track_caller]
fn assert_fell_back(a: &Assembly, reason_words: &[&str]) -> String {
    let st = a.state();
    assert_eq!(marker(a), "r", "recovery image booted");
    assert_eq!(st["requested"], "active");
    assert_eq!(st["booted"]["choice"], "recovery");
    assert_eq!(st["booted"]["link"], "System/recovery-system");
    assert_eq!(st["booted"]["image"], "System/r.squashfs");
    assert_eq!(
        st["fallback"]["from"], "active",
        "fallback: {:#}",
        st["fallback"]
    );
    let reason = st["fallback"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!reason.is_empty(), "fallback without a reason: {st:#}");
    if !reason_words.is_empty() {
        assert!(
            mentions_any(&reason, reason_words),
            "fallback reason {reason:?} mentions none of {reason_words:?}"
        );
    }
    let attempts = st["attempts"].as_array().expect("attempts");
    assert!(attempts.len() >= 2, "{attempts:#?}");
    assert_eq!(attempts[0]["choice"], "active");
    assert_eq!(attempts[0]["ok"], false);
    assert!(
        attempts[0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let last = attempts.last().unwrap();
    assert_eq!(last["choice"], "recovery");
    assert_eq!(last["ok"], true);
    reason
}

// ---------------------------------------------------------------------------
// System image selection
// ---------------------------------------------------------------------------

#[test]
fn active_image_boots_with_standard_layout_and_state() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(marker(&a), "a");
        assert_layout(ns, &a, &b.path);
        let lower = assert_overlay_names_its_layers(&a);
        assert_eq!(lower, ["/mnt/livecd"]);
        let st = a.state();
        assert_eq!(st["version"], 1);
        assert_eq!(st["mode"], "assemble");
        assert_eq!(st["bootext"]["path"], b.path.to_str().unwrap());
        assert_eq!(st["bootext"]["found_by"], "--bootext");
        assert_eq!(st["root"], a.root.to_str().unwrap());
        assert_eq!(st["requested"], "active");
        assert_eq!(st["booted"]["choice"], "active");
        assert_eq!(st["booted"]["link"], "System/active-system");
        assert_eq!(st["booted"]["image"], "System/a.squashfs");
        assert_eq!(
            st["booted"]["loop"],
            a.mount("mnt/livecd").source.as_str(),
            "state names the loop device that backs /mnt/livecd"
        );
        assert!(
            st["fallback"].is_null(),
            "no fallback: {:#}",
            st["fallback"]
        );
        let attempts = st["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        assert_eq!(attempts[0]["ok"], true);
        assert_eq!(attempts[0]["image"], "System/a.squashfs");
        let origins: Vec<&str> = st["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["origin"].as_str())
            .collect();
        for o in ["system", "overlay", "bootext"] {
            assert!(origins.contains(&o), "no {o} mount in state: {origins:?}");
        }
        assert!(st["skipped"].as_array().unwrap().is_empty());
        let timings = st["timings"].as_array().unwrap();
        assert!(!timings.is_empty());
        for t in timings {
            assert!(t["step"].is_string() && t["ms"].is_number(), "{t}");
        }
        assert!(st["total_ms"].is_number());
        a.teardown(ns);
    });
}

#[test]
fn recovery_on_request() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a = assemble_ok(ns, &b.path, "quiet overboot.system=recovery");
        assert_eq!(marker(&a), "r");
        assert_layout(ns, &a, &b.path);
        let st = a.state();
        assert_eq!(st["requested"], "recovery");
        assert_eq!(st["booted"]["choice"], "recovery");
        assert_eq!(st["booted"]["link"], "System/recovery-system");
        assert_eq!(st["booted"]["image"], "System/r.squashfs");
        assert!(st["fallback"].is_null());
        a.teardown(ns);
    });
}

#[test]
fn named_image_xz_compressed() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.system("next.squashfs.xz", "next");
        let a = assemble_ok(ns, &b.path, "overboot.system=next.squashfs.xz");
        assert_eq!(marker(&a), "next");
        assert_layout(ns, &a, &b.path);
        let st = a.state();
        assert_eq!(st["requested"], "next.squashfs.xz");
        assert_eq!(st["booted"]["choice"], "named");
        assert!(st["booted"]["link"].is_null());
        assert_eq!(st["booted"]["image"], "System/next.squashfs.xz");
        a.teardown(ns);
    });
}

/// Active is bad in the way `spoil` makes it; recovery boots and the reason is
/// recorded.
fn fallback_case(spoil: impl FnOnce(&Ns, &BootExt) + Send, words: &[&str]) {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        spoil(ns, &b);
        let a = assemble_ok(ns, &b.path, "");
        assert_fell_back(&a, words);
        assert_layout(ns, &a, &b.path);
        a.teardown(ns);
    });
}

#[test]
fn fallback_active_link_missing() {
    fallback_case(
        |_, b| b.unlink("active-system"),
        &[
            "missing",
            "not found",
            "no such",
            "does not exist",
            "absent",
        ],
    );
}

#[test]
fn fallback_active_link_dangling() {
    fallback_case(
        |_, b| b.link("active-system", "gone.squashfs"),
        &[
            "missing",
            "not found",
            "no such",
            "does not exist",
            "dangling",
            "gone.squashfs",
        ],
    );
}

#[test]
fn fallback_active_link_absolute() {
    // Points at a perfectly good image, but by absolute path: refused.
    fallback_case(
        |_, b| {
            let abs = b.path.join("System/a.squashfs");
            b.link("active-system", abs.to_str().unwrap());
        },
        &["absolute"],
    );
}

#[test]
fn fallback_active_link_escapes_bootext() {
    // A good image outside BootExt, reached through `..`: refused.
    fallback_case(
        |ns, b| {
            let outside = ns.dir("outside");
            squashfs_from(b.work(), &outside.join("evil.squashfs"), Comp::Gzip, |t| {
                system_tree(t, "evil")
            });
            let rel = format!(
                "../../{}/evil.squashfs",
                outside.file_name().unwrap().to_str().unwrap()
            );
            assert!(b.path.join("System").join(&rel).exists(), "test setup");
            b.link("active-system", &rel);
        },
        &["outside", "escap", "leaves", "beyond", "confine"],
    );
}

#[test]
fn fallback_active_link_escapes_to_etc_passwd() {
    fallback_case(
        |_, b| b.link("active-system", "../../../../../../../../etc/passwd"),
        &["outside", "escap", "leaves", "beyond", "confine"],
    );
}

#[test]
fn fallback_active_image_truncated() {
    // Superblock intact, bytes_used larger than the file: caught before mounting.
    fallback_case(
        |_, b| {
            truncate_image(&b.path.join("System/a.squashfs"));
        },
        &[
            "truncat",
            "bytes_used",
            "short",
            "size",
            "smaller",
            "larger",
        ],
    );
}

#[test]
fn fallback_active_image_bad_magic() {
    fallback_case(
        |_, b| {
            let img = b.path.join("System/a.squashfs");
            let mut bytes = fs::read(&img).unwrap();
            bytes[..4].copy_from_slice(b"junk");
            fs::write(&img, bytes).unwrap();
        },
        &["squashfs", "magic"],
    );
}

#[test]
fn fallback_active_image_is_ext4() {
    fallback_case(
        |_, b| {
            let img = b.path.join("System/a.squashfs");
            fs::remove_file(&img).unwrap();
            ext4_image(b.work(), &img);
        },
        &["squashfs", "magic"],
    );
}

#[test]
fn fallback_active_image_is_xz_wrapped() {
    // A whole-file xz of a squashfs (what `xz a.squashfs` gives) is not squashfs.
    fallback_case(
        |_, b| {
            let img = b.path.join("System/a.squashfs");
            let wrapped = b.path.join("System/a.squashfs.xz");
            xz_wrap(&img, &wrapped);
            b.link("active-system", "a.squashfs.xz");
        },
        &["squashfs", "magic", "xz"],
    );
}

#[test]
fn fallback_active_image_fails_to_mount() {
    // Superblock passes every offline check; the metadata behind it is garbage,
    // so only the kernel's mount finds out.
    fallback_case(|_, b| zero_from(&b.path.join("System/a.squashfs"), 96), &[]);
}

#[test]
fn fallback_active_link_to_directory() {
    fallback_case(|_, b| b.link("active-system", "."), &[]);
}

#[test]
fn both_images_bad_is_fatal_and_leaves_nothing() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "gone.squashfs");
        let r = b.path.join("System/r.squashfs");
        fs::remove_file(&r).unwrap();
        ext4_image(b.work(), &r);
        let a = assemble(ns, &b.path, "");
        a.run.expect_code(1);
        assert!(a.run.stderr.contains("active-system"), "{}", a.run.stderr);
        assert!(a.run.stderr.contains("recovery-system"), "{}", a.run.stderr);
        assert!(
            mentions_any(
                &a.run.stderr,
                &["gone.squashfs", "missing", "not found", "no such"]
            ),
            "why active failed: {}",
            a.run.stderr
        );
        assert!(
            mentions_any(&a.run.stderr, &["squashfs", "magic"]),
            "why recovery failed: {}",
            a.run.stderr
        );
        let left = mounts_under(&a.root);
        assert!(left.is_empty(), "left mounted:\n{}", describe(&left));
        assert!(a.mounts_outside_root().is_empty());
        assert_no_loop_leak(ns.scratch());
    });
}

#[test]
fn both_images_fail_to_mount_is_fatal_and_frees_loop_devices() {
    // Both pass the superblock check, so both get a loop device; both mounts
    // fail; no loop device may stay attached.
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        zero_from(&b.path.join("System/a.squashfs"), 96);
        zero_from(&b.path.join("System/r.squashfs"), 96);
        let a = assemble(ns, &b.path, "");
        a.run.expect_code(1);
        assert!(a.run.stderr.contains("active-system"), "{}", a.run.stderr);
        assert!(a.run.stderr.contains("recovery-system"), "{}", a.run.stderr);
        let left = mounts_under(&a.root);
        assert!(left.is_empty(), "left mounted:\n{}", describe(&left));
        assert!(a.mounts_outside_root().is_empty());
        // No grace period needed: nothing is mounted, so nothing holds them.
        let loops = loops_under(ns.scratch());
        assert!(loops.is_empty(), "loop devices left attached: {loops:#?}");
    });
}

#[test]
fn missing_bootext_is_fatal() {
    Ns::run(|ns| {
        let nowhere = ns.scratch().join("t/no-such-bootext");
        let a = assemble(ns, &nowhere, "");
        a.run.expect_code(1);
        assert!(a.run.stderr.contains("no-such-bootext"), "{}", a.run.stderr);
        assert!(mounts_under(&a.root).is_empty());
        assert!(a.mounts_outside_root().is_empty());
    });
}

#[test]
fn overlay_size_from_cmdline() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a = assemble_ok(ns, &b.path, "overboot.overlay=tmpfs:size=64M");
        let ov = a.mount("mnt/overlay");
        assert!(ov.has_super("size=65536k"), "{ov:?}");
        assert_layout(ns, &a, &b.path);
        a.teardown(ns);
    });
}

#[test]
fn unknown_overboot_parameter_is_reported_not_fatal() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a = assemble_ok(ns, &b.path, "ro overboot.foo=1 quiet");
        assert!(
            a.run.stderr.contains("overboot.foo"),
            "stderr: {}",
            a.run.stderr
        );
        let st = a.state();
        assert!(
            warnings(&st).contains("overboot.foo"),
            "warnings: {:#}",
            st["warnings"]
        );
        assert_eq!(marker(&a), "a");
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// DIRS entries
// ---------------------------------------------------------------------------

#[test]
fn dir_entry_is_bound_read_write() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let src = b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("etc/ssh/ssh_host_key")).unwrap(),
            "KEY"
        );
        assert!(
            !a.at("etc/ssh/sshd_config").exists(),
            "image dir is covered"
        );
        let m = a.mount("etc/ssh");
        assert!(!m.has("ro"), "{m:?}");
        fs::write(a.at("etc/ssh/new_key"), "NEW").unwrap();
        assert_eq!(fs::read_to_string(src.join("new_key")).unwrap(), "NEW");
        let st = a.state();
        let sm = state_mount(&st, "/etc/ssh");
        assert_eq!(sm["origin"], "DIRS/DIR_etc_ssh");
        assert_eq!(sm["kind"], "bind");
        assert_eq!(sm["read_only"], false);
        assert_eq!(sm["resolved"], "/etc/ssh");
        assert_layout(ns, &a, &b.path);
        a.teardown(ns);
    });
}

#[test]
fn file_entry_is_bound_on_the_file() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("FILE_etc_hostname", "unit-42\n");
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("etc/hostname")).unwrap(),
            "unit-42\n"
        );
        a.mount("etc/hostname");
        assert!(a.at("etc/os-release").exists(), "rest of /etc untouched");
        let st = a.state();
        let sm = state_mount(&st, "/etc/hostname");
        assert_eq!(sm["origin"], "DIRS/FILE_etc_hostname");
        assert_eq!(sm["kind"], "file");
        a.teardown(ns);
    });
}

#[test]
fn file_entry_onto_missing_target_is_created() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("FILE_etc_machine-id", "0123456789abcdef\n");
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("etc/machine-id")).unwrap(),
            "0123456789abcdef\n"
        );
        a.mount("etc/machine-id");
        a.teardown(ns);
    });
}

#[test]
fn dir_image_entries_are_read_only_nodev_nosuid() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.image_entry("DIR_opt_tools.squashfs", &[("bin/tool", "TOOL")]);
        b.image_entry("DIR_srv_data.sqfs", &[("data.txt", "DATA")]);
        b.image_entry("DIR_lib64_firmware.squashfs.xz", &[("fw.bin", "FW")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("opt/tools/bin/tool")).unwrap(),
            "TOOL"
        );
        assert_eq!(
            fs::read_to_string(a.at("srv/data/data.txt")).unwrap(),
            "DATA"
        );
        assert_eq!(
            fs::read_to_string(a.at("lib64/firmware/fw.bin")).unwrap(),
            "FW"
        );
        let loops = loops_under(ns.scratch());
        for (rel, entry) in [
            ("opt/tools", "DIR_opt_tools.squashfs"),
            ("srv/data", "DIR_srv_data.sqfs"),
            ("lib64/firmware", "DIR_lib64_firmware.squashfs.xz"),
        ] {
            let m = a.mount(rel);
            assert_eq!(m.fstype, "squashfs", "{m:?}");
            for o in ["ro", "nodev", "nosuid"] {
                assert!(m.has(o), "{rel} lacks {o}: {m:?}");
            }
            let l = loops
                .iter()
                .find(|l| l.dev == m.source)
                .unwrap_or_else(|| panic!("{rel}: source {} not a loop under scratch", m.source));
            assert!(l.read_only && l.autoclear, "{l:?}");
            assert!(l.backing.ends_with(entry), "{l:?}");
            let err = fs::write(a.at(&format!("{rel}/new")), "x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
            let st = a.state();
            let sm = state_mount(&st, &format!("/{rel}"));
            assert_eq!(sm["origin"], format!("DIRS/{entry}"));
            assert_eq!(sm["read_only"], true);
            assert!(sm["kind"] == "image" || sm["kind"] == "squashfs", "{sm}");
        }
        assert_layout(ns, &a, &b.path);
        a.teardown(ns);
    });
}

#[test]
fn nested_entries_mount_parents_first() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        // `tools/` exists (empty) in the parent: if the image were mounted first
        // and the parent bound over it, the image's file would be hidden.
        b.dir_entry("DIR_opt", &[("readme", "PARENT"), ("tools/.keep", "")]);
        b.image_entry("DIR_opt_tools.squashfs", &[("bin/tool", "CHILD")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(fs::read_to_string(a.at("opt/readme")).unwrap(), "PARENT");
        assert_eq!(
            fs::read_to_string(a.at("opt/tools/bin/tool")).unwrap(),
            "CHILD"
        );
        let parent = a.mount("opt");
        let child = a.mount("opt/tools");
        assert_eq!(child.fstype, "squashfs");
        assert_eq!(child.parent, parent.id, "image sits on the /opt bind");
        let st = a.state();
        let pi = state_mount_index(&st, "/opt").unwrap();
        let ci = state_mount_index(&st, "/opt/tools").unwrap();
        assert!(pi < ci, "parent recorded first");
        a.teardown(ns);
    });
}

#[test]
fn ambiguous_underscore_name_resolved_against_image() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_usr_lib_x86_64-linux-gnu", &[("libextra.so", "EXTRA")]);
        // Nothing in the image matches `my_data` or `my`: plain `_` splitting.
        b.dir_entry("DIR_srv_my_data", &[("f", "F")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("usr/lib/x86_64-linux-gnu/libextra.so")).unwrap(),
            "EXTRA"
        );
        a.mount("usr/lib/x86_64-linux-gnu");
        assert!(
            !a.at("usr/lib/x86").exists(),
            "wrong split created /usr/lib/x86"
        );
        assert!(
            !a.at("usr/lib/x86_64").exists(),
            "wrong split created /usr/lib/x86_64"
        );
        assert_eq!(fs::read_to_string(a.at("srv/my/data/f")).unwrap(), "F");
        a.mount("srv/my/data");
        let st = a.state();
        assert_eq!(
            state_mount(&st, "/usr/lib/x86_64-linux-gnu")["origin"],
            "DIRS/DIR_usr_lib_x86_64-linux-gnu"
        );
        state_mount(&st, "/srv/my/data");
        a.teardown(ns);
    });
}

#[test]
fn double_underscore_is_a_literal_underscore() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_opt_my__app", &[("f", "APP")]);
        b.dir_entry("DIR_etc__", &[("f", "ETCU")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(fs::read_to_string(a.at("opt/my_app/f")).unwrap(), "APP");
        a.mount("opt/my_app");
        assert!(!a.at("opt/my").exists());
        assert_eq!(fs::read_to_string(a.at("etc_/f")).unwrap(), "ETCU");
        a.mount("etc_");
        let st = a.state();
        state_mount(&st, "/opt/my_app");
        state_mount(&st, "/etc_");
        assert!(skipped(&st, "DIRS/DIR_etc__").is_none());
        a.teardown(ns);
    });
}

#[test]
fn dirs_zero_skips_all_entries() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        b.file_entry("FILE_etc_hostname", "unit-42\n");
        b.image_entry("DIR_opt_tools.squashfs", &[("bin/tool", "TOOL")]);
        // Safe mode leaves out Overlay/ layers and Units/ too.
        write(&b.path, "Overlay/10-site/etc/site", "SITE");
        write(
            &b.path,
            "Units/site.service",
            "[Service]\nExecStart=/bin/true\n",
        );
        let a = assemble_ok(ns, &b.path, "overboot.dirs=0");
        assert!(!a.at("etc/site").exists(), "Overlay/ applied in safe mode");
        assert!(
            !ns.dir("run").join("systemd/system/site.service").exists(),
            "Units/ installed in safe mode"
        );
        assert!(a.at("etc/ssh/sshd_config").exists());
        assert!(!a.at("etc/ssh/ssh_host_key").exists());
        assert_eq!(
            fs::read_to_string(a.at("etc/hostname")).unwrap(),
            "appliance\n"
        );
        assert!(!a.at("opt/tools/bin/tool").exists());
        for rel in ["etc/ssh", "etc/hostname", "opt/tools"] {
            assert!(!is_mountpoint(&a.at(rel)), "{rel} mounted despite dirs=0");
        }
        let st = a.state();
        assert!(
            st["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| !m["origin"].as_str().unwrap_or("").starts_with("DIRS/")),
            "{:#}",
            st["mounts"]
        );
        // Only the system image's loop device.
        assert_eq!(loops_under(ns.scratch()).len(), 1);
        a.teardown(ns);
    });
}

#[test]
fn hostile_and_empty_component_names_are_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let bad = [
            "DIR_.._.._etc",
            "DIR_etc_.._.._x",
            "DIR_._etc",
            "DIR__etc",
            "DIR_etc_",
            "DIR_",
            "DIR_etc__ssh_",
        ];
        for name in bad {
            b.dir_entry(name, &[("marker", name)]);
        }
        b.file_entry("FILE_..", "x");
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        let a = assemble_ok(ns, &b.path, "");
        // The good entry is still mounted.
        assert_eq!(
            fs::read_to_string(a.at("etc/ssh/ssh_host_key")).unwrap(),
            "KEY"
        );
        let st = a.state();
        for name in bad.iter().chain(&["FILE_.."]) {
            let s = skipped(&st, &format!("DIRS/{name}"))
                .unwrap_or_else(|| panic!("{name} not skipped: {:#}", st["skipped"]));
            assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
            assert!(
                st["mounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m["origin"] != format!("DIRS/{name}")),
                "{name} was mounted"
            );
        }
        // Only the good entry came from DIRS.
        let from_dirs: Vec<&Value> = st["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["origin"].as_str().unwrap_or("").starts_with("DIRS/"))
            .collect();
        assert_eq!(from_dirs.len(), 1, "{from_dirs:#?}");
        // Nothing escaped: no mount outside ROOT, nothing created above it.
        assert!(a.mounts_outside_root().is_empty());
        assert!(!a.root.parent().unwrap().join("etc").exists());
        assert!(!a.root.parent().unwrap().join("x").exists());
        for m in mounts_under(&a.root) {
            let p = m.mount_point.to_string_lossy().into_owned();
            assert!(!p.contains(".."), "{p}");
        }
        a.teardown(ns);
    });
}

#[test]
fn two_entries_on_one_target_are_both_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        b.image_entry("DIR_etc_ssh.squashfs", &[("ssh_host_key", "IMG")]);
        b.dir_entry("DIR_srv", &[("ok", "OK")]);
        let a = assemble_ok(ns, &b.path, "");
        assert!(
            !is_mountpoint(&a.at("etc/ssh")),
            "a conflicting entry was mounted"
        );
        assert!(
            a.at("etc/ssh/sshd_config").exists(),
            "image's /etc/ssh shows"
        );
        assert_eq!(fs::read_to_string(a.at("srv/ok")).unwrap(), "OK");
        let st = a.state();
        for (me, other) in [
            ("DIR_etc_ssh", "DIR_etc_ssh.squashfs"),
            ("DIR_etc_ssh.squashfs", "DIR_etc_ssh"),
        ] {
            let s = skipped(&st, &format!("DIRS/{me}"))
                .unwrap_or_else(|| panic!("{me} not skipped: {:#}", st["skipped"]));
            let reason = s["reason"].as_str().unwrap();
            assert!(reason.contains(me), "{me}: reason names both: {reason}");
            assert!(reason.contains(other), "{me}: reason names both: {reason}");
        }
        // The image entry was never attached.
        assert_eq!(loops_under(ns.scratch()).len(), 1);
        a.teardown(ns);
    });
}

#[test]
fn file_entry_onto_directory_is_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("FILE_etc_ssh", "not a dir\n");
        let a = assemble_ok(ns, &b.path, "");
        assert!(!is_mountpoint(&a.at("etc/ssh")));
        assert!(a.at("etc/ssh/sshd_config").is_file());
        let st = a.state();
        let s = skipped(&st, "DIRS/FILE_etc_ssh").expect("FILE_etc_ssh skipped");
        assert!(
            mentions_any(s["reason"].as_str().unwrap(), &["directory"]),
            "{s}"
        );
        assert!(
            !warnings(&st).is_empty() || !a.run.stderr.is_empty(),
            "a warning is shown"
        );
        a.teardown(ns);
    });
}

#[test]
fn fake_squashfs_entry_is_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("DIR_opt_tools.squashfs", "I am not a squashfs image\n");
        let ext = b.path.join("DIRS/DIR_srv_data.sqfs");
        ext4_image(b.work(), &ext);
        let a = assemble_ok(ns, &b.path, "");
        assert!(!is_mountpoint(&a.at("opt/tools")));
        assert!(!is_mountpoint(&a.at("srv/data")));
        let st = a.state();
        for e in ["DIRS/DIR_opt_tools.squashfs", "DIRS/DIR_srv_data.sqfs"] {
            let s = skipped(&st, e).unwrap_or_else(|| panic!("{e} not skipped"));
            assert!(
                mentions_any(s["reason"].as_str().unwrap(), &["squashfs", "magic"]),
                "{s}"
            );
        }
        assert_eq!(loops_under(ns.scratch()).len(), 1, "only the system image");
        a.teardown(ns);
    });
}

#[test]
fn regular_file_dir_entry_is_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("DIR_srv_notes", "just a file\n");
        let a = assemble_ok(ns, &b.path, "");
        assert!(!a.at("srv/notes").exists() || !is_mountpoint(&a.at("srv/notes")));
        let st = a.state();
        skipped(&st, "DIRS/DIR_srv_notes").expect("DIR_srv_notes skipped");
        a.teardown(ns);
    });
}

#[test]
fn symlinks_in_image_are_resolved_inside_new_root() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            fs::remove_dir_all(t.join("etc/ssh")).unwrap();
            symlink(t, "etc/ssh", "../../../../x");
            symlink(t, "srv/data", "/y");
        });
        b.dir_entry("DIR_etc_ssh", &[("key", "K")]);
        b.dir_entry("DIR_srv_data", &[("d", "D")]);
        let a = assemble_ok(ns, &b.path, "");
        assert!(is_mountpoint(&a.at("x")), "ROOT/x is the mount point");
        assert!(is_mountpoint(&a.at("y")), "ROOT/y is the mount point");
        assert_eq!(fs::read_to_string(a.at("x/key")).unwrap(), "K");
        // The image's symlinks are left as they are (read from the host they
        // would point elsewhere; inside the new root they lead to /x and /y).
        assert_eq!(
            fs::read_link(a.at("etc/ssh")).unwrap(),
            Path::new("../../../../x")
        );
        assert_eq!(fs::read_to_string(a.at("y/d")).unwrap(), "D");
        let outside = a.mounts_outside_root();
        assert!(
            outside.is_empty(),
            "mounted outside ROOT:\n{}",
            describe(&outside)
        );
        assert!(!Path::new("/x").exists() || !is_mountpoint(Path::new("/x")));
        assert!(!Path::new("/y").exists() || !is_mountpoint(Path::new("/y")));
        let st = a.state();
        assert_eq!(state_mount(&st, "/etc/ssh")["resolved"], "/x");
        assert_eq!(state_mount(&st, "/srv/data")["resolved"], "/y");
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------

#[test]
fn manifest_defaults_apply() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        b.manifest(
            "# appliance defaults\n[defaults]\nsystem = \"recovery\"\ndirs = false\noverlay = \"tmpfs:size=64M\"\n",
        );
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(marker(&a), "r");
        assert!(!is_mountpoint(&a.at("etc/ssh")), "dirs = false");
        assert!(a.mount("mnt/overlay").has_super("size=65536k"));
        let st = a.state();
        assert_eq!(st["requested"], "recovery");
        assert!(st["fallback"].is_null());
        a.teardown(ns);
    });
}

#[test]
fn command_line_wins_over_manifest() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        b.manifest(
            "[defaults]\nsystem = \"recovery\"\ndirs = false\noverlay = \"tmpfs:size=64M\"\n",
        );
        let a = assemble_ok(
            ns,
            &b.path,
            "overboot.system=active overboot.dirs=1 overboot.overlay=tmpfs:size=32M",
        );
        assert_eq!(marker(&a), "a");
        assert!(is_mountpoint(&a.at("etc/ssh")));
        assert!(a.mount("mnt/overlay").has_super("size=32768k"));
        a.teardown(ns);
    });
}

#[test]
fn manifest_mounts_bind_image_tmpfs() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        write(&b.path, "data/www/index.html", "<h1>hi</h1>");
        b.image_at("data/tool.squashfs", &[("bin/tool", "TOOL")]);
        b.manifest(
            r#"
[[mount]]
source = "data/www"
target = "/srv/www"
kind = "bind"
read_only = true

[[mount]]
source = "data/tool.squashfs"
target = "/opt/tool"
kind = "image"

[[mount]]
target = "/var/cache/scratch"
kind = "tmpfs"
size = "16M"
"#,
        );
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("srv/www/index.html")).unwrap(),
            "<h1>hi</h1>"
        );
        let www = a.mount("srv/www");
        assert!(www.has("ro"), "{www:?}");
        let e = fs::write(a.at("srv/www/x"), "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30));
        assert_eq!(
            fs::read_to_string(a.at("opt/tool/bin/tool")).unwrap(),
            "TOOL"
        );
        let tool = a.mount("opt/tool");
        assert_eq!(tool.fstype, "squashfs");
        assert!(tool.has("ro"));
        let cache = a.mount("var/cache/scratch");
        assert_eq!(cache.fstype, "tmpfs");
        assert!(cache.has_super("size=16384k"), "{cache:?}");
        fs::write(a.at("var/cache/scratch/f"), "w").unwrap();
        let st = a.state();
        for t in ["/srv/www", "/opt/tool", "/var/cache/scratch"] {
            let origin = state_mount(&st, t)["origin"].as_str().unwrap().to_string();
            assert!(
                origin.starts_with("overboot.toml [[mount]] #"),
                "{t}: {origin}"
            );
        }
        assert_eq!(state_mount(&st, "/srv/www")["read_only"], true);
        assert_eq!(state_mount(&st, "/opt/tool")["read_only"], true);
        assert_eq!(state_mount(&st, "/var/cache/scratch")["kind"], "tmpfs");
        for l in loops_under(ns.scratch()) {
            assert!(l.read_only && l.autoclear, "{l:?}");
        }
        assert_layout(ns, &a, &b.path);
        a.teardown(ns);
    });
}

#[test]
fn manifest_syntax_error_reports_line_and_boots_with_defaults() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("ssh_host_key", "KEY")]);
        // Line 2 would select recovery; line 4 is broken; nothing may apply.
        b.manifest("[defaults]\nsystem = \"recovery\"\ndirs = false\n[[mount\n");
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(marker(&a), "a", "defaults used, not half the manifest");
        assert!(is_mountpoint(&a.at("etc/ssh")), "dirs default on");
        let has_line = |t: &str| t.contains("line 4") || t.contains(":4:") || t.contains(":4 ");
        assert!(a.run.stderr.contains("overboot.toml"), "{}", a.run.stderr);
        assert!(
            has_line(&a.run.stderr),
            "line number in stderr: {}",
            a.run.stderr
        );
        let st = a.state();
        let w = warnings(&st);
        assert!(w.contains("overboot.toml") && has_line(&w), "warnings: {w}");
        a.teardown(ns);
    });
}

// ---------------------------------------------------------------------------
// The fixtures and checkers themselves, against the kernel (no overboot)
// ---------------------------------------------------------------------------

fn mount_cli(args: &[&str]) -> bool {
    std::process::Command::new("mount")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The loop/mountinfo checkers see what util-linux's `mount -o loop` does, the
/// leak checker notices a loop device without autoclear, and the "corrupt"
/// fixtures really are what the tests claim.
#[test]
fn harness_helpers_against_kernel() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.system("x.squashfs.xz", "x");
        let mnt = ns.dir("mnt");
        for (img, marker) in [("a.squashfs", "a"), ("x.squashfs.xz", "x")] {
            let img = b.path.join("System").join(img);
            assert!(mount_cli(&[
                "-t",
                "squashfs",
                "-o",
                "loop,ro",
                img.to_str().unwrap(),
                mnt.to_str().unwrap()
            ]));
            assert_eq!(
                fs::read_to_string(mnt.join("etc/overboot-image")).unwrap(),
                marker
            );
            let m = mount_at(&mnt).unwrap();
            assert_eq!(m.fstype, "squashfs");
            assert!(m.has("ro"));
            let loops = loops_under(ns.scratch());
            assert_eq!(loops.len(), 1, "{loops:?}");
            assert_eq!(loops[0].dev, m.source);
            assert_eq!(loops[0].backing, img);
            assert!(loops[0].autoclear && loops[0].read_only, "{loops:?}");
            unmount_recursive(&mnt);
            assert!(!is_mountpoint(&mnt));
            assert_no_loop_leak(ns.scratch());
        }
        // A loop device without autoclear is a leak the checker reports.
        let img = b.path.join("System/a.squashfs");
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success());
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let leak = std::panic::catch_unwind(|| assert_no_loop_leak(ns.scratch()));
        sh("losetup", &["-d".as_ref(), dev.as_ref()]);
        assert!(leak.is_err(), "leak checker missed {dev}");
        assert_no_loop_leak(ns.scratch());

        // Superblock intact, metadata zeroed: the kernel refuses to mount it.
        let bad = b.path.join("System/bad.squashfs");
        fs::copy(&img, &bad).unwrap();
        zero_from(&bad, 96);
        assert_eq!(&fs::read(&bad).unwrap()[..4], b"hsqs");
        assert!(!mount_cli(&[
            "-t",
            "squashfs",
            "-o",
            "loop,ro",
            bad.to_str().unwrap(),
            mnt.to_str().unwrap()
        ]));
        assert!(!is_mountpoint(&mnt));
        assert_no_loop_leak(ns.scratch());
        // Truncated: bytes_used (superblock offset 40) exceeds the file size.
        let t = b.path.join("System/t.squashfs");
        fs::copy(&img, &t).unwrap();
        truncate_image(&t);
        let used = squashfs_bytes_used(&t);
        let len = fs::metadata(&t).unwrap().len();
        assert!(used > len, "bytes_used {used} vs size {len}");
        assert!(!mount_cli(&[
            "-t",
            "squashfs",
            "-o",
            "loop,ro",
            t.to_str().unwrap(),
            mnt.to_str().unwrap()
        ]));
        assert_no_loop_leak(ns.scratch());
        // ext4 and xz-wrapped fixtures do not start with the squashfs magic.
        let e = ns.dir("e").join("e.img");
        ext4_image(b.work(), &e);
        assert_ne!(&fs::read(&e).unwrap()[..4], b"hsqs");
        let x = ns.dir("x").join("a.squashfs.xz");
        xz_wrap(&img, &x);
        assert_eq!(&fs::read(&x).unwrap()[..6], b"\xfd7zXZ\0");
    });
}

// ---------------------------------------------------------------------------
// More bad entries and confinement
// ---------------------------------------------------------------------------

#[test]
fn dirs_symlinks_leading_outside_bootext_are_refused() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let secret = ns.dir("secret");
        write(&secret, "shadow", "SECRET\n");
        // An absolute symlink and a relative one that climbs out of BootExt.
        std::os::unix::fs::symlink(&secret, b.path.join("DIRS/DIR_srv_secret")).unwrap();
        let rel = format!(
            "../../{}/shadow",
            secret.file_name().unwrap().to_str().unwrap()
        );
        std::os::unix::fs::symlink(&rel, b.path.join("DIRS/FILE_etc_shadow")).unwrap();
        assert!(b.path.join("DIRS/FILE_etc_shadow").exists(), "test setup");
        let a = assemble_ok(ns, &b.path, "");
        assert!(!is_mountpoint(&a.at("srv/secret")));
        assert!(!is_mountpoint(&a.at("etc/shadow")));
        assert!(!a.at("srv/secret/shadow").exists());
        assert!(fs::read_to_string(a.at("etc/shadow")).is_err());
        let st = a.state();
        for e in ["DIRS/DIR_srv_secret", "DIRS/FILE_etc_shadow"] {
            skipped(&st, e).unwrap_or_else(|| panic!("{e} not skipped: {:#}", st["skipped"]));
        }
        for m in mounts_under(&a.root) {
            assert!(!m.root.contains("secret"), "secret mounted: {m:?}");
        }
        a.teardown(ns);
    });
}

#[test]
fn entries_onto_files_under_files_and_symlink_loops_are_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            symlink(t, "etc/loop", "loop");
            symlink(t, "etc/hn", "hostname");
        });
        let bad = [
            "DIR_etc_hostname",   // a directory onto a file
            "DIR_etc_hn",         // ... through a symlink to a file
            "DIR_etc_hostname_x", // below a file
            "DIR_etc_loop_x",     // through a symlink loop
        ];
        for name in bad {
            b.dir_entry(name, &[("f", "f")]);
        }
        b.dir_entry("DIR_etc_ssh", &[("k", "K")]);
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(fs::read_to_string(a.at("etc/ssh/k")).unwrap(), "K");
        assert_eq!(
            fs::read_to_string(a.at("etc/hostname")).unwrap(),
            "appliance\n"
        );
        assert!(!is_mountpoint(&a.at("etc/hostname")));
        let st = a.state();
        for name in bad {
            let s = skipped(&st, &format!("DIRS/{name}"))
                .unwrap_or_else(|| panic!("{name} not skipped: {:#}", st["skipped"]));
            assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()));
        }
        let under: Vec<_> = mounts_under(&a.at("etc"));
        assert_eq!(under.len(), 1, "only /etc/ssh:\n{}", describe(&under));
        assert!(a.mounts_outside_root().is_empty());
        a.teardown(ns);
    });
}

#[test]
fn relative_link_with_dotdot_staying_inside_bootext_is_fine() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "../System/./a.squashfs");
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(marker(&a), "a");
        let st = a.state();
        assert!(st["fallback"].is_null(), "{:#}", st["fallback"]);
        assert_eq!(st["booted"]["image"], "System/a.squashfs");
        a.teardown(ns);
    });
}

/// Every path under `dir` with its type and size (symlinks by target).
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if md.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if md.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(format!("{rel} {}", md.len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn assembling_leaves_bootext_unchanged() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("k", "K")]);
        b.dir_entry("DIR_opt_my__app", &[("f", "F")]);
        b.file_entry("FILE_etc_hostname", "unit\n");
        b.image_entry("DIR_srv_data.squashfs", &[("d", "D")]);
        b.dir_entry("DIR__bad", &[]);
        b.manifest("[defaults]\noverlay = \"tmpfs:size=64M\"\n");
        let before = listing(&b.path);
        let a = assemble_ok(ns, &b.path, "");
        a.teardown(ns);
        assert_eq!(before, listing(&b.path), "BootExt changed by assembling");
    });
}

// ---------------------------------------------------------------------------
// Defaults of --state and --cmdline; manifest confinement
// ---------------------------------------------------------------------------

/// Without `--state` the record goes to /run/overboot/state.json (here the
/// namespace's private /run); without `--cmdline` the kernel command line is read
/// from /proc/cmdline (here a file bound over it in this namespace only).
#[test]
fn state_and_cmdline_defaults() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let fake = write(
            &ns.dir("cmdline"),
            "cmdline",
            "ro quiet overboot.system=recovery\n",
        );
        rustix::mount::mount_bind(&fake, "/proc/cmdline").unwrap();
        assert!(
            fs::read_to_string("/proc/cmdline")
                .unwrap()
                .contains("overboot.system")
        );
        let root = ns.dir("root");
        let run = overboot([
            "assemble".as_ref(),
            "--bootext".as_ref(),
            b.path.as_os_str(),
            "--root".as_ref(),
            root.as_os_str(),
        ]);
        rustix::mount::unmount("/proc/cmdline", rustix::mount::UnmountFlags::empty()).unwrap();
        run.expect_code(0);
        assert_eq!(
            fs::read_to_string(root.join("etc/overboot-image")).unwrap(),
            "r",
            "overboot.system=recovery read from /proc/cmdline"
        );
        let text = fs::read_to_string("/run/overboot/state.json").expect("default state path");
        let st: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(st["requested"], "recovery");
        assert_eq!(st["root"], root.to_str().unwrap());
        unmount_recursive(&root);
        assert_no_loop_leak(ns.scratch());
    });
}

#[test]
fn manifest_mounts_are_confined() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let secret = ns.dir("secret");
        write(&secret, "shadow", "SECRET\n");
        let up = format!("../{}", secret.file_name().unwrap().to_str().unwrap());
        write(&b.path, "data/www/index.html", "ok");
        b.manifest(&format!(
            r#"
[[mount]]
source = "{up}"
target = "/srv/secret"
kind = "bind"

[[mount]]
source = "{abs}"
target = "/srv/secret2"
kind = "bind"

[[mount]]
source = "data/www"
target = "/srv/../../../escaped"
kind = "bind"

[[mount]]
source = "data/www"
target = "/srv/www"
kind = "bind"
"#,
            abs = secret.display()
        ));
        let a = assemble_ok(ns, &b.path, "");
        assert_eq!(
            fs::read_to_string(a.at("srv/www/index.html")).unwrap(),
            "ok"
        );
        assert!(!is_mountpoint(&a.at("srv/secret")));
        assert!(!is_mountpoint(&a.at("srv/secret2")));
        assert!(!a.at("srv/secret/shadow").exists());
        assert!(!a.at("srv/secret2/shadow").exists());
        let outside = a.mounts_outside_root();
        assert!(outside.is_empty(), "{}", describe(&outside));
        assert!(!a.root.parent().unwrap().join("escaped").exists());
        let st = a.state();
        let manifest_mounts = st["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                let o = m["origin"].as_str().unwrap_or("");
                o.starts_with("manifest") || o.starts_with("overboot.toml")
            })
            .count();
        assert_eq!(manifest_mounts, 1, "{:#}", st["mounts"]);
        // Each refused [[mount]] is reported (as a skip or a warning).
        let reported =
            st["skipped"].as_array().unwrap().len() + st["warnings"].as_array().unwrap().len();
        assert!(
            reported >= 3,
            "skipped: {:#}\nwarnings: {:#}",
            st["skipped"],
            st["warnings"]
        );
        a.teardown(ns);
    });
}

/// Two names, one place: `/etc/ssh` is a symlink to `/srv/ssh` in the image, so
/// `DIR_etc_ssh` and `DIR_srv_ssh` both land on `/srv/ssh`. That is two entries
/// for one target: both skipped, never stacked so that one silently hides the
/// other.
#[test]
fn entries_resolving_to_one_target_conflict() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            fs::remove_dir_all(t.join("etc/ssh")).unwrap();
            mkdirs(t, "srv/ssh");
            symlink(t, "etc/ssh", "/srv/ssh");
        });
        b.dir_entry("DIR_etc_ssh", &[("from", "etc_ssh")]);
        b.dir_entry("DIR_srv_ssh", &[("from", "srv_ssh")]);
        let a = assemble_ok(ns, &b.path, "");
        let at = mountinfo()
            .into_iter()
            .filter(|m| m.mount_point == a.at("srv/ssh"))
            .count();
        assert!(at <= 1, "{at} mounts stacked on ROOT/srv/ssh");
        let st = a.state();
        for (me, other) in [
            ("DIR_etc_ssh", "DIR_srv_ssh"),
            ("DIR_srv_ssh", "DIR_etc_ssh"),
        ] {
            let s = skipped(&st, &format!("DIRS/{me}")).unwrap_or_else(|| {
                panic!(
                    "{me} not skipped although it lands where {other} does;\nmounts: {:#}",
                    st["mounts"]
                )
            });
            let r = s["reason"].as_str().unwrap();
            assert!(r.contains(me) && r.contains(other), "{r}");
        }
        assert!(!is_mountpoint(&a.at("srv/ssh")));
        a.teardown(ns);
    });
}

/// `overboot status` reads the state file of an assembly and tells it in words and
/// as JSON (what state.json knows: verification, toram, the overlay's kind, persist,
/// manifest problems); without a state file it fails clearly.
#[test]
fn status_reports_the_assembly() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.manifest("[[mount]]\nsource = \"Data\"\ntarget = \"/srv/data\"\nkind = \"bindd\"\n");
        let a = assemble_ok(
            ns,
            &b.path,
            "overboot.frobnicate=1 overboot.toram=1 overboot.overlay=persist",
        );
        let state = a.state_path.to_str().unwrap();
        let text = overboot(["status", "--state", state]);
        assert_eq!(text.code, 0, "{}", text.stderr);
        for needle in [
            "System/a.squashfs",
            "active via System/active-system",
            "/mnt/livecd",
            "overlay",
            "/mnt/cdrom",
            "Timings:",
            "total",
            "overboot.frobnicate",
            "Verified:  not verified: no System/a.squashfs.sha256",
            "Toram:     in RAM (",
            "Overlay:   BootExt Persist/upper",
            "[[mount]] #1: kind 'bindd' is not bind, image or tmpfs",
        ] {
            assert!(
                text.stdout.contains(needle),
                "no '{needle}' in:\n{}",
                text.stdout
            );
        }
        let json = overboot(["status", "--json", "--state", state]);
        assert_eq!(json.code, 0);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(v["booted"]["image"], "System/a.squashfs");
        let missing = overboot(["status", "--state", "/nonexistent/state.json"]);
        assert_eq!(missing.code, 1);
        assert!(
            missing
                .stderr
                .contains("cannot read /nonexistent/state.json"),
            "{}",
            missing.stderr
        );
        assert_eq!(overboot(["status", "--bogus"]).code, 2);
        a.teardown(ns);
    });
}
