//! The preview is exact (issue 11 §1): `plan` and `check` read the image the boot
//! would mount, whatever its compression, and never print a guessed decoding. Each
//! test in its own mount namespace, with real squashfs images and loop devices.

mod common;

use common::*;
use overboot::imagetree::ImageTree;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

fn plan_json(bootext: &Path, cmdline: &str) -> Value {
    let run = overboot([
        OsStr::new("plan"),
        OsStr::new("--bootext"),
        bootext.as_os_str(),
        OsStr::new("--cmdline"),
        OsStr::new(cmdline),
        OsStr::new("--json"),
    ]);
    run.expect_code(0);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("plan --json output is not JSON: {e}\n{}", run.stdout))
}

fn check(bootext: &Path) -> Run {
    overboot([OsStr::new("check"), bootext.as_os_str()])
}

fn target_of(plan: &Value, origin: &str) -> String {
    plan["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["origin"] == origin)
        .and_then(|m| m["target"].as_str())
        .unwrap_or_else(|| panic!("{origin} not planned: {:#}", plan["mounts"]))
        .to_string()
}

/// An image tree where names are ambiguous: `/opt/my_app` exists, `/opt/my` does not.
fn ambiguous_tree(t: &Path) {
    mkdirs(t, "opt/my_app");
    mkdirs(t, "srv/data_store/x");
    symlink(t, "srv/link", "data_store");
}

/// backhand and the kernel read every compression Linux mounts alike, and `plan`
/// decodes an ambiguous name against the image whatever its compression.
#[test]
fn every_compression_is_read_and_decoded_against() {
    Ns::run(|ns| {
        let b = BootExt::empty(ns);
        b.dir_entry("DIR_opt_my_app", &[("f", "f")]);
        b.dir_entry("DIR_srv_data_store_x", &[("f", "f")]);
        for comp in Comp::ALL {
            let name = format!("a-{}.squashfs", comp.name());
            let img = b.system_with(&name, "a", ambiguous_tree);
            let open = || fs::File::open(&img).unwrap();
            let by_backhand = ImageTree::with_backhand(open())
                .unwrap_or_else(|e| panic!("backhand cannot read {comp:?}: {e}"));
            let by_kernel = ImageTree::through_kernel(&open().into(), &name)
                .unwrap_or_else(|e| panic!("the kernel cannot read {comp:?}: {e}"));
            assert!(
                by_kernel.len() > 10,
                "{comp:?}: {} entries",
                by_kernel.len()
            );
            assert!(by_backhand == by_kernel, "{comp:?}: the readers disagree");
            assert!(
                loops_under(ns.scratch()).is_empty(),
                "{comp:?}: the kernel reader left a loop device attached"
            );

            b.link("active-system", &name);
            let before = mountinfo();
            let p = plan_json(&b.path, "");
            assert_eq!(before, mountinfo(), "plan changed the mount table");
            assert_eq!(p["system"]["compression"], comp.name());
            assert_eq!(p["system"]["read_by"], "kernel");
            assert_eq!(target_of(&p, "DIRS/DIR_opt_my_app"), "/opt/my_app");
            assert_eq!(
                target_of(&p, "DIRS/DIR_srv_data_store_x"),
                "/srv/data_store/x"
            );
        }
    });
}

/// An image that neither reader can read is never decoded against a guess: `plan`
/// falls back as the boot does (its mount fails too), and `check` fails saying why.
#[test]
fn an_unreadable_image_is_an_error_not_a_guess() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_opt_my_app", &[("f", "f")]);
        let img = b.path.join("System/a.squashfs");
        // Past the superblock (which stays sound), so only reading the tree fails.
        let mut bytes = fs::read(&img).unwrap();
        let used = squashfs_bytes_used(&img) as usize;
        for b in &mut bytes[used - 96..used] {
            *b = 0xa5;
        }
        fs::write(&img, bytes).unwrap();

        let p = plan_json(&b.path, "");
        assert_eq!(p["system"]["choice"], "recovery", "{:#}", p["system"]);
        let reason = p["system"]["fallback"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("System/a.squashfs: cannot be read: the kernel could not mount it ("),
            "{reason}"
        );
        assert!(!reason.contains("()"), "an empty reason: {reason}");

        let run = check(&b.path);
        run.expect_code(1);
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with("error: System/a.squashfs: cannot be read")),
            "{}",
            run.all()
        );
    });
}
