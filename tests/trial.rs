//! Trial updates against real images and real mounts: `overboot set-active`,
//! `bless`, `rollback`, and the countdown each "boot" (an `overboot assemble` into a
//! fresh root, then teardown) makes on BootExt. Each test in its own mount namespace.

mod common;

use common::*;
use serde_json::Value;
use std::fs;

fn link(b: &BootExt, name: &str) -> Option<String> {
    fs::read_link(b.path.join("System").join(name))
        .ok()
        .map(|p| p.display().to_string())
}

fn trial_file(b: &BootExt) -> Option<String> {
    fs::read_to_string(b.path.join("System/trial")).ok()
}

fn cmd(b: &BootExt, args: &[&str]) -> Run {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--bootext", b.path.to_str().unwrap()]);
    overboot(a)
}

/// One boot: assemble, read the marker and the state, tear down.
fn boot(ns: &Ns, b: &BootExt) -> (String, Value, Assembly) {
    boot_with(ns, b, "")
}

fn boot_with(ns: &Ns, b: &BootExt, cmdline: &str) -> (String, Value, Assembly) {
    let a = assemble_ok(ns, &b.path, cmdline);
    let marker = fs::read_to_string(a.at("etc/overboot-image")).unwrap();
    let state = a.state();
    a.teardown(ns);
    (marker, state, a)
}

/// BootExt with a (active), r (recovery) and a new image b.
fn with_b(ns: &Ns) -> BootExt {
    let b = BootExt::standard(ns);
    b.system("b.squashfs", "b");
    b
}

#[test]
fn set_active_switches_and_keeps_previous() {
    Ns::run(|ns| {
        let b = with_b(ns);
        let r = cmd(&b, &["set-active", "b.squashfs"]);
        r.expect_code(0);
        assert!(r.stdout.contains("b.squashfs is active"), "{}", r.all());
        assert_eq!(link(&b, "active-system").as_deref(), Some("b.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("a.squashfs"));
        assert_eq!(trial_file(&b), None, "a permanent switch has no trial");
        for _ in 0..2 {
            let (m, st, _) = boot(ns, &b);
            assert_eq!(m, "b");
            assert!(st["trial"].is_null(), "{st:#}");
            assert!(st["fallback"].is_null(), "{st:#}");
        }
        // The other spellings of IMAGE: System/NAME and a path into System/.
        cmd(&b, &["set-active", "System/a.squashfs"]).expect_code(0);
        assert_eq!(link(&b, "active-system").as_deref(), Some("a.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("b.squashfs"));
        let abs = b.path.join("System/b.squashfs");
        cmd(&b, &["set-active", abs.to_str().unwrap()]).expect_code(0);
        assert_eq!(link(&b, "active-system").as_deref(), Some("b.squashfs"));
        // Already active: nothing to do, nothing written.
        let before = tree_snapshot(&b.path);
        let r = cmd(&b, &["set-active", "b.squashfs"]);
        r.expect_code(0);
        assert!(r.stdout.contains("already active"), "{}", r.all());
        assert_eq!(tree_snapshot(&b.path), before);
    });
}

#[test]
fn trial_never_blessed_boots_twice_then_previous_with_reason() {
    Ns::run(|ns| {
        let b = with_b(ns);
        let r = cmd(&b, &["set-active", "b.squashfs", "--tries", "2"]);
        r.expect_code(0);
        assert!(r.stdout.contains("trial for 2 boot"), "{}", r.all());
        assert_eq!(link(&b, "active-system").as_deref(), Some("b.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("a.squashfs"));
        assert!(trial_file(&b).unwrap().contains("boots-left=2"));

        // plan and check tell the operator where the trial stands.
        let bootext = b.path.to_str().unwrap();
        let p = overboot(["plan", "--bootext", bootext, "--cmdline", ""]);
        p.expect_code(0);
        assert!(
            p.stdout
                .contains("trial: trial of b.squashfs: 2 of 2 boots left"),
            "{}",
            p.all()
        );
        let c = overboot(["check", bootext]);
        assert!(
            c.stdout
                .contains("System/previous-system -> System/a.squashfs")
                && c.stdout.contains("trial of b.squashfs: 2 of 2 boots left"),
            "{}",
            c.all()
        );

        for left in [1, 0] {
            let (m, st, _) = boot(ns, &b);
            assert_eq!(m, "b", "trial boot with {left} left after it");
            assert_eq!(st["trial"]["outcome"], "trial", "{st:#}");
            assert_eq!(st["trial"]["image"], "b.squashfs");
            assert_eq!(st["trial"]["boots_left"], left);
            assert!(st["fallback"].is_null());
            assert!(
                trial_file(&b)
                    .unwrap()
                    .contains(&format!("boots-left={left}")),
                "counted down on BootExt"
            );
        }
        let c = overboot(["check", bootext]);
        assert!(
            c.stdout
                .contains("warning: trial of b.squashfs used all 2 boots")
                && c.stdout.contains("rolls back to System/previous-system"),
            "{}",
            c.all()
        );
        // Ran out: the previous image, the reason, and a durable rollback.
        let (m, st, a) = boot(ns, &b);
        assert_eq!(m, "a", "{st:#}");
        assert_eq!(st["booted"]["choice"], "previous");
        assert_eq!(st["fallback"]["from"], "active");
        let reason = st["fallback"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("b.squashfs ran out") && reason.contains("without overboot bless"),
            "{reason}"
        );
        assert_eq!(st["trial"]["outcome"], "rolled-back");
        // A warning line in the boot's log, not only a field.
        assert!(
            a.run
                .stderr
                .lines()
                .any(|l| l.starts_with("overboot: warning: trial: b.squashfs rolled back")),
            "{}",
            a.run.stderr
        );
        assert_eq!(link(&b, "active-system").as_deref(), Some("a.squashfs"));
        assert!(trial_file(&b).unwrap().contains("outcome=rolled-back"));
        // status shows it.
        let s = overboot(["status", "--state", a.state_path.to_str().unwrap()]);
        s.expect_code(0);
        assert!(
            s.stdout
                .contains("Trial:     warning: b.squashfs rolled-back")
                && s.stdout.contains("ran out"),
            "{}",
            s.stdout
        );
        // Later boots stay on a; no fallback, the record says what happened.
        let (m, st, _) = boot(ns, &b);
        assert_eq!(m, "a");
        assert_eq!(st["booted"]["choice"], "active");
        assert!(st["fallback"].is_null(), "{st:#}");
        assert_eq!(st["trial"]["outcome"], "rolled-back");
        assert!(
            st["trial"]["detail"]
                .as_str()
                .unwrap()
                .contains("earlier boot")
        );
        // bless now has nothing to do.
        let r = cmd(&b, &["bless", "--state", a.state_path.to_str().unwrap()]);
        r.expect_code(0);
        assert!(r.stdout.contains("no trial"), "{}", r.all());
    });
}

#[test]
fn bless_ends_the_trial() {
    Ns::run(|ns| {
        let b = with_b(ns);
        cmd(&b, &["set-active", "b.squashfs", "--tries", "1"]).expect_code(0);
        // A boot of another image cannot bless the trial.
        let (m, _, rec) = boot_with(ns, &b, "overboot.system=recovery");
        assert_eq!(m, "r");
        assert!(
            trial_file(&b).unwrap().contains("boots-left=1"),
            "not counted"
        );
        let before = tree_snapshot(&b.path);
        let r = cmd(&b, &["bless", "--state", rec.state_path.to_str().unwrap()]);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("booted r.squashfs, not the trial image b.squashfs"),
            "{}",
            r.all()
        );
        assert_eq!(tree_snapshot(&b.path), before);

        let (m, st, a) = boot(ns, &b);
        assert_eq!(m, "b");
        assert_eq!(st["trial"]["boots_left"], 0);
        let r = cmd(&b, &["bless", "--state", a.state_path.to_str().unwrap()]);
        r.expect_code(0);
        assert!(r.stdout.contains("b.squashfs blessed"), "{}", r.all());
        assert_eq!(trial_file(&b), None);
        for _ in 0..2 {
            let (m, st, _) = boot(ns, &b);
            assert_eq!(m, "b");
            assert!(st["trial"].is_null() && st["fallback"].is_null(), "{st:#}");
        }
        assert_eq!(link(&b, "previous-system").as_deref(), Some("a.squashfs"));
    });
}

#[test]
fn rollback_returns_to_previous() {
    Ns::run(|ns| {
        let b = with_b(ns);
        // No previous yet.
        let r = cmd(&b, &["rollback"]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("previous-system does not exist"),
            "{}",
            r.all()
        );

        // After a permanent switch.
        cmd(&b, &["set-active", "b.squashfs"]).expect_code(0);
        assert_eq!(boot(ns, &b).0, "b");
        let r = cmd(&b, &["rollback"]);
        r.expect_code(0);
        // Swapped: the image rolled back from is the way forward again.
        assert_eq!(link(&b, "active-system").as_deref(), Some("a.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("b.squashfs"));
        assert_eq!(boot(ns, &b).0, "a");
        let r = cmd(&b, &["rollback"]);
        r.expect_code(0);
        assert_eq!(link(&b, "active-system").as_deref(), Some("b.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("a.squashfs"));
        assert_eq!(boot(ns, &b).0, "b");
        cmd(&b, &["rollback"]).expect_code(0);
        assert_eq!(boot(ns, &b).0, "a");
        // Both links on one image (as a trial that ran out leaves them): nothing to do.
        let prev = b.path.join("System/previous-system");
        fs::remove_file(&prev).unwrap();
        std::os::unix::fs::symlink("a.squashfs", &prev).unwrap();
        let r = cmd(&b, &["rollback"]);
        r.expect_code(0);
        assert!(r.stdout.contains("already active"), "{}", r.all());

        // In the middle of a trial: ends it.
        cmd(&b, &["set-active", "b.squashfs", "--tries", "3"]).expect_code(0);
        assert_eq!(boot(ns, &b).0, "b");
        cmd(&b, &["rollback"]).expect_code(0);
        assert_eq!(link(&b, "active-system").as_deref(), Some("a.squashfs"));
        assert_eq!(link(&b, "previous-system").as_deref(), Some("b.squashfs"));
        let (m, st, _) = boot(ns, &b);
        assert_eq!(m, "a");
        assert_eq!(st["trial"]["outcome"], "rolled-back");
        assert!(
            st["trial"]["detail"]
                .as_str()
                .unwrap()
                .contains("overboot rollback"),
            "{st:#}"
        );
        // The rolled-back record does not come back to life with a new set-active.
        cmd(&b, &["set-active", "b.squashfs"]).expect_code(0);
        assert_eq!(trial_file(&b), None);
        let (m, st, _) = boot(ns, &b);
        assert_eq!(m, "b");
        assert!(st["trial"].is_null());
    });
}

/// BootExt read-only (a real read-only bind mount): the trial cannot be counted, so
/// the boot goes on with the previous image and a warning; commands refuse cleanly.
#[test]
fn read_only_bootext_boots_previous_with_warning() {
    Ns::run(|ns| {
        let b = with_b(ns);
        cmd(&b, &["set-active", "b.squashfs", "--tries", "2"]).expect_code(0);
        let ro = ns.dir("ro");
        sh(
            "mount",
            &["--bind".as_ref(), b.path.as_os_str(), ro.as_os_str()],
        );
        sh(
            "mount",
            &["-o".as_ref(), "remount,bind,ro".as_ref(), ro.as_os_str()],
        );
        let before = tree_snapshot(&b.path);
        let a = assemble(ns, &ro, "");
        a.run.expect_code(0);
        let marker = fs::read_to_string(a.at("etc/overboot-image")).unwrap();
        let st = a.state();
        a.teardown(ns);
        assert_eq!(marker, "a", "the uncounted trial image must not boot");
        let w = warnings(&st);
        assert!(w.contains("cannot count the trial boot"), "{w}");
        assert!(w.contains("Read-only file system"), "{w}");
        assert_eq!(st["trial"]["outcome"], "not-counted");
        assert_eq!(st["trial"]["boots_left"], 2);
        assert_eq!(st["fallback"]["from"], "active");
        assert_eq!(tree_snapshot(&b.path), before, "nothing written");

        for args in [
            vec!["bless", "--state", "/nonexistent"],
            vec!["rollback"],
            vec!["set-active", "r.squashfs"],
        ] {
            let mut args = args.clone();
            args.extend(["--bootext", ro.to_str().unwrap()]);
            let r = overboot(&args);
            r.expect_code(1);
            assert!(
                r.stderr.contains("Read-only file system") && r.stderr.contains("remount"),
                "{args:?}: {}",
                r.all()
            );
        }
        assert_eq!(tree_snapshot(&b.path), before, "nothing written");
        sh("umount", &[ro.as_os_str()]);
        // Writable again: the trial resumes where it was.
        let (m, st, _) = boot(ns, &b);
        assert_eq!(m, "b");
        assert_eq!(st["trial"]["boots_left"], 1);
    });
}

#[test]
fn bad_input_changes_nothing() {
    Ns::run(|ns| {
        let b = with_b(ns);
        write(
            &b.path,
            "System/notes.squashfs",
            &"just text, not an image\n".repeat(100),
        );
        let outside = b.image_at("DIRS/DIR_opt.squashfs", &[("x", "y")]);
        let elsewhere = ns.dir("elsewhere").join("c.squashfs");
        fs::copy(b.path.join("System/b.squashfs"), &elsewhere).unwrap();
        let before = tree_snapshot(&b.path);
        let cases: Vec<(Vec<String>, i32, &str)> = vec![
            (vec!["missing.squashfs".into()], 1, "does not exist"),
            (vec!["notes.squashfs".into()], 1, "not a squashfs image"),
            (
                vec![outside.display().to_string()],
                1,
                "is not in System/ on BootExt",
            ),
            (vec!["DIRS/DIR_opt.squashfs".into()], 1, "is not in System/"),
            (
                vec![elsewhere.display().to_string()],
                1,
                "is not in System/",
            ),
            (vec!["../System/b.squashfs".into()], 1, "is not in System/"),
            (vec!["active-system".into()], 1, "overboot's own names"),
            (
                vec!["a.squashfs".into(), "--tries".into(), "2".into()],
                1,
                "different image",
            ),
            (
                vec!["b.squashfs".into(), "--tries".into(), "0".into()],
                1,
                "at least 1",
            ),
            (
                vec!["b.squashfs".into(), "--tries".into(), "x".into()],
                2,
                "invalid value 'x' for '--tries <N>'",
            ),
            (
                vec![],
                2,
                "required arguments were not provided:\n  <IMAGE>",
            ),
        ];
        for (args, code, want) in cases {
            let mut all = vec!["set-active".to_string()];
            all.extend(args.iter().cloned());
            all.extend(["--bootext".into(), b.path.display().to_string()]);
            let r = overboot(&all);
            r.expect_code(code);
            assert!(
                r.stderr.contains(want),
                "{args:?}: want '{want}' in\n{}",
                r.all()
            );
            if code == 1 {
                assert!(r.stderr.contains("nothing changed"), "{}", r.all());
            }
            assert_eq!(tree_snapshot(&b.path), before, "{args:?} changed BootExt");
        }
        // A link to outside BootExt posing as an image.
        symlink(&b.path, "System/evil.squashfs", "/etc/passwd");
        let before = tree_snapshot(&b.path);
        let r = cmd(&b, &["set-active", "evil.squashfs"]);
        r.expect_code(1);
        assert!(r.stderr.contains("is a symlink"), "{}", r.all());
        assert_eq!(tree_snapshot(&b.path), before);
        // Bad trial file: the safe choice is the previous image.
        cmd(&b, &["set-active", "b.squashfs", "--tries", "2"]).expect_code(0);
        write(
            &b.path,
            "System/trial",
            "image=b.squashfs\nboots-left=lots\n",
        );
        let (m, st, _) = boot(ns, &b);
        assert_eq!(m, "a");
        assert!(
            warnings(&st).contains("System/trial is unreadable"),
            "{st:#}"
        );
        let r = cmd(&b, &["bless", "--state", "/nonexistent"]);
        r.expect_code(1);
        assert!(r.stderr.contains("unreadable"), "{}", r.all());
        cmd(&b, &["rollback"]).expect_code(0);
        assert_eq!(trial_file(&b), None);
        assert_eq!(boot(ns, &b).0, "a");
    });
}

/// `overboot status` tells the trial as it booted: after a fallback from the trial
/// image it does not advise `bless` (which would refuse), and a rollback is a
/// warning. It also says what the state file knows of verification and the overlay.
#[test]
fn status_tells_the_trial_as_it_booted() {
    Ns::run(|ns| {
        let b = with_b(ns);
        cmd(&b, &["set-active", "b.squashfs", "--tries", "2"]).expect_code(0);
        // The superblock stays valid, the rest is garbage: the mount fails at boot.
        zero_from(&b.path.join("System/b.squashfs"), 96);
        let status = |a: &Assembly| {
            let r = overboot([
                "status",
                "--state",
                a.state_path.to_str().unwrap(),
                "--bootext",
                b.path.to_str().unwrap(),
            ]);
            r.expect_code(0);
            r.stdout
        };
        let (m, st, a) = boot(ns, &b);
        assert_eq!(m, "a");
        assert_eq!(st["trial"]["outcome"], "trial", "{st:#}");
        let text = status(&a);
        let trial = text.lines().find(|l| l.starts_with("Trial:")).unwrap();
        assert!(trial.contains("did not come up"), "{text}");
        assert!(!text.contains("bless"), "advises bless:\n{text}");
        assert!(text.contains("Fallback:  from active"), "{text}");
        assert!(text.contains("Verified:  "), "{text}");
        assert!(text.contains("Overlay:   tmpfs size="), "{text}");

        boot(ns, &b);
        let (m, st, a) = boot(ns, &b);
        assert_eq!(m, "a");
        assert_eq!(st["trial"]["outcome"], "rolled-back", "{st:#}");
        let text = status(&a);
        assert!(
            text.contains("Trial:     warning: b.squashfs rolled-back"),
            "{text}"
        );
    });
}
