//! `overboot plan` (the mount plan, changing nothing) and `overboot check` (BootExt
//! validation), plus usage handling of every command. Each test in its own mount
//! namespace so "plan mounts nothing" can be asserted exactly.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

fn plan(bootext: &Path, cmdline: &str, json: bool) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "plan".as_ref(),
        "--bootext".as_ref(),
        bootext.as_os_str(),
        "--cmdline".as_ref(),
        cmdline.as_ref(),
    ];
    if json {
        args.push("--json".as_ref());
    }
    overboot(args)
}

/// `plan --json`, asserting it changed nothing (mounts, loop devices).
#[track_caller]
fn plan_json(ns: &Ns, bootext: &Path, cmdline: &str) -> Value {
    let before = mountinfo();
    let run = plan(bootext, cmdline, true);
    run.expect_code(0);
    let after = mountinfo();
    assert_eq!(before, after, "plan changed the mount table");
    assert!(
        loops_under(ns.scratch()).is_empty(),
        "plan attached a loop device"
    );
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("plan --json output is not JSON: {e}\n{}", run.stdout))
}

fn plan_mount<'a>(p: &'a Value, target: &str) -> &'a Value {
    p["mounts"]
        .as_array()
        .expect("mounts array")
        .iter()
        .find(|m| m["target"] == target)
        .unwrap_or_else(|| panic!("no planned mount on {target}: {:#}", p["mounts"]))
}

fn plan_index(p: &Value, target: &str) -> usize {
    p["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["target"] == target)
        .unwrap_or_else(|| panic!("no planned mount on {target}: {:#}", p["mounts"]))
}

fn plan_skipped<'a>(p: &'a Value, entry: &str) -> Option<&'a Value> {
    p["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["entry"] == entry)
}

fn check(dir: &Path) -> Run {
    overboot([OsStr::new("check"), dir.as_os_str()])
}

/// Lines starting with `error:` on stdout or stderr.
fn error_lines(run: &Run) -> Vec<String> {
    run.all()
        .lines()
        .filter(|l| l.trim_start().starts_with("error:"))
        .map(String::from)
        .collect()
}

/// `check` exits 1 and some `error:` line mentions every word in `words`.
#[track_caller]
fn assert_check_error(dir: &Path, words: &[&str]) -> Vec<String> {
    let run = check(dir);
    run.expect_code(1);
    let errs = error_lines(&run);
    assert!(!errs.is_empty(), "no error: lines\n{}", run.all());
    assert!(
        errs.iter().any(|l| words.iter().all(|w| l.contains(w))),
        "no error line mentions all of {words:?}:\n{}",
        run.all()
    );
    errs
}

/// A BootExt with one of everything (all good).
fn rich_bootext(ns: &Ns) -> BootExt {
    let b = BootExt::standard(ns);
    // DIR_opt is mounted first: the places of the entries below it must exist in it.
    b.dir_entry(
        "DIR_opt",
        &[("readme", "P"), ("tools/.keep", ""), ("my_app/.keep", "")],
    );
    b.image_entry("DIR_opt_tools.squashfs", &[("bin/tool", "T")]);
    b.file_entry("FILE_etc_hostname", "unit-42\n");
    b.dir_entry("DIR_usr_lib_x86_64-linux-gnu", &[("libextra.so", "E")]);
    b.dir_entry("DIR_opt_my__app", &[("f", "A")]);
    b.dir_entry("DIR_etc_ssh", &[("key", "K")]);
    b.manifest("[[mount]]\ntarget = \"/var/cache/scratch\"\nkind = \"tmpfs\"\nsize = \"16M\"\n");
    b
}

// ---------------------------------------------------------------------------
// plan
// ---------------------------------------------------------------------------

#[test]
fn plan_json_orders_and_decodes_and_mounts_nothing() {
    Ns::run(|ns| {
        let b = rich_bootext(ns);
        b.dir_entry("DIR__etc", &[("x", "x")]);
        let p = plan_json(ns, &b.path, "");
        assert_eq!(p["system"]["choice"], "active");
        assert_eq!(p["system"]["link"], "System/active-system");
        assert_eq!(p["system"]["image"], "System/a.squashfs");
        assert!(p["system"]["fallback"].is_null(), "{:#}", p["system"]);
        for (target, origin) in [
            ("/opt", "DIRS/DIR_opt"),
            ("/opt/tools", "DIRS/DIR_opt_tools.squashfs"),
            ("/etc/hostname", "DIRS/FILE_etc_hostname"),
            (
                "/usr/lib/x86_64-linux-gnu",
                "DIRS/DIR_usr_lib_x86_64-linux-gnu",
            ),
            ("/opt/my_app", "DIRS/DIR_opt_my__app"),
            ("/etc/ssh", "DIRS/DIR_etc_ssh"),
            ("/var/cache/scratch", "overboot.toml [[mount]] #1"),
        ] {
            let m = plan_mount(&p, target);
            assert_eq!(m["origin"], origin, "{m}");
            assert!(m["kind"].is_string() && m["read_only"].is_boolean(), "{m}");
        }
        assert_eq!(plan_mount(&p, "/etc/ssh")["kind"], "bind");
        assert_eq!(plan_mount(&p, "/etc/ssh")["read_only"], false);
        assert_eq!(plan_mount(&p, "/etc/hostname")["kind"], "file");
        assert_eq!(plan_mount(&p, "/opt/tools")["read_only"], true);
        assert_eq!(plan_mount(&p, "/var/cache/scratch")["kind"], "tmpfs");
        assert!(
            plan_mount(&p, "/opt/tools")["source"]
                .as_str()
                .unwrap()
                .contains("DIR_opt_tools.squashfs")
        );
        assert!(
            plan_index(&p, "/opt") < plan_index(&p, "/opt/tools"),
            "parents first"
        );
        assert!(
            plan_index(&p, "/opt") < plan_index(&p, "/opt/my_app"),
            "parents first"
        );
        let s = plan_skipped(&p, "DIRS/DIR__etc").expect("DIR__etc skipped");
        assert!(s["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(p["warnings"].is_array());
    });
}

#[test]
fn plan_text_lists_image_targets_and_skips() {
    Ns::run(|ns| {
        let b = rich_bootext(ns);
        b.dir_entry("DIR_etc_", &[("x", "x")]);
        let before = mountinfo();
        let run = plan(&b.path, "", false);
        run.expect_code(0);
        assert_eq!(before, mountinfo(), "plan changed the mount table");
        assert!(loops_under(ns.scratch()).is_empty());
        let out = &run.stdout;
        assert!(out.contains("System/a.squashfs"), "{out}");
        for t in [
            "/opt/tools",
            "/etc/hostname",
            "/usr/lib/x86_64-linux-gnu",
            "/opt/my_app",
            "/etc/ssh",
            "/var/cache/scratch",
        ] {
            assert!(out.contains(t), "plan text lacks {t}:\n{out}");
        }
        assert!(
            out.contains("DIR_opt_tools.squashfs"),
            "sources shown:\n{out}"
        );
        assert!(out.contains("DIR_etc_"), "skipped entry shown:\n{out}");
        // Mount order: the image line comes before the mounts, /opt before /opt/tools.
        let pos = |needle: &str| {
            out.lines()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in\n{out}"))
        };
        assert!(pos("System/a.squashfs") < pos("/opt/tools"));
        // A line whose words include exactly "/opt" (the target) precedes /opt/tools.
        let token = |t: &str| {
            out.lines()
                .position(|l| {
                    l.split_whitespace().any(|w| {
                        w.trim_matches(|c: char| !c.is_ascii_graphic() || c == ',' || c == '"') == t
                    })
                })
                .unwrap_or_else(|| panic!("no line with target {t}:\n{out}"))
        };
        assert!(token("/opt") < token("/opt/tools"), "parents first:\n{out}");
    });
}

#[test]
fn plan_shows_fallback_with_reason() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "gone.squashfs");
        let p = plan_json(ns, &b.path, "");
        assert_eq!(p["system"]["choice"], "recovery");
        assert_eq!(p["system"]["image"], "System/r.squashfs");
        let fb = &p["system"]["fallback"];
        let reason = match fb {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_string(),
            other => panic!("fallback should say why: {other}"),
        };
        assert!(!reason.is_empty(), "{fb}");
        let text = plan(&b.path, "", false);
        text.expect_code(0);
        assert!(text.stdout.contains("System/r.squashfs"), "{}", text.stdout);
        assert!(
            mentions_any(
                &text.stdout,
                &["fallback", "fall back", "falling back", "instead"]
            ),
            "{}",
            text.stdout
        );
    });
}

#[test]
fn plan_follows_cmdline_system_and_dirs() {
    Ns::run(|ns| {
        let b = rich_bootext(ns);
        let p = plan_json(ns, &b.path, "overboot.system=recovery overboot.dirs=0");
        assert_eq!(p["system"]["choice"], "recovery");
        assert_eq!(p["system"]["link"], "System/recovery-system");
        assert_eq!(p["system"]["image"], "System/r.squashfs");
        assert!(
            p["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| !m["origin"].as_str().unwrap_or("").starts_with("DIRS/")),
            "{:#}",
            p["mounts"]
        );
        b.system("c.squashfs", "c");
        let p = plan_json(ns, &b.path, "overboot.system=c.squashfs");
        assert_eq!(p["system"]["choice"], "named");
        assert!(p["system"]["link"].is_null());
        assert_eq!(p["system"]["image"], "System/c.squashfs");
    });
}

#[test]
fn plan_reports_conflicts_both_skipped() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_srv_data", &[("a", "a")]);
        b.image_entry("DIR_srv_data.sqfs", &[("b", "b")]);
        let p = plan_json(ns, &b.path, "");
        for e in ["DIRS/DIR_srv_data", "DIRS/DIR_srv_data.sqfs"] {
            let s = plan_skipped(&p, e).unwrap_or_else(|| panic!("{e} not skipped: {p:#}"));
            let r = s["reason"].as_str().unwrap();
            assert!(
                r.contains("DIR_srv_data.sqfs") && r.contains("DIR_srv_data"),
                "{r}"
            );
        }
        assert!(
            p["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["target"] != "/srv/data")
        );
    });
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

#[test]
fn check_good_tree_prints_decoded_targets() {
    Ns::run(|ns| {
        let b = rich_bootext(ns);
        let run = check(&b.path);
        run.expect_code(0);
        assert!(error_lines(&run).is_empty(), "{}", run.all());
        let out = run.all();
        for (entry, target) in [
            ("DIR_opt_tools.squashfs", "/opt/tools"),
            ("FILE_etc_hostname", "/etc/hostname"),
            ("DIR_usr_lib_x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
            ("DIR_opt_my__app", "/opt/my_app"),
            ("DIR_etc_ssh", "/etc/ssh"),
        ] {
            let line = out
                .lines()
                .find(|l| l.contains(entry))
                .unwrap_or_else(|| panic!("{entry} not listed:\n{out}"));
            assert!(
                line.contains(target) || out.contains(target),
                "{entry}: target {target} not shown:\n{out}"
            );
        }
        assert!(loops_under(ns.scratch()).is_empty());
    });
}

#[test]
fn check_dangling_active_link() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "gone.squashfs");
        assert_check_error(&b.path, &["active-system"]);
    });
}

#[test]
fn check_absolute_recovery_link() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let abs = b.path.join("System/r.squashfs");
        b.link("recovery-system", abs.to_str().unwrap());
        assert_check_error(&b.path, &["recovery-system"]);
    });
}

#[test]
fn check_escaping_link() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "../../../../../../../etc/passwd");
        assert_check_error(&b.path, &["active-system"]);
    });
}

#[test]
fn check_image_not_squashfs() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a = b.path.join("System/a.squashfs");
        fs::remove_file(&a).unwrap();
        ext4_image(b.work(), &a);
        assert_check_error(&b.path, &["a.squashfs"]);
    });
}

#[test]
fn check_truncated_image() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        truncate_image(&b.path.join("System/r.squashfs"));
        assert_check_error(&b.path, &["r.squashfs"]);
    });
}

#[test]
fn check_dir_entry_image_not_squashfs() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.file_entry("DIR_opt_tools.squashfs", "plain text\n");
        assert_check_error(&b.path, &["DIR_opt_tools.squashfs"]);
    });
}

#[test]
fn check_hostile_and_empty_names() {
    for name in ["DIR_.._etc", "DIR_etc_.._x", "DIR__etc", "DIR_etc_", "DIR_"] {
        Ns::run(|ns| {
            let b = BootExt::standard(ns);
            b.dir_entry(name, &[("x", "x")]);
            assert_check_error(&b.path, &[name]);
        });
    }
}

#[test]
fn check_conflicting_entries() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_etc_ssh", &[("k", "k")]);
        b.image_entry("DIR_etc_ssh.squashfs", &[("k", "k")]);
        assert_check_error(&b.path, &["DIR_etc_ssh", "DIR_etc_ssh.squashfs"]);
    });
}

#[test]
fn check_manifest_syntax_error_with_line() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.manifest("[defaults]\nsystem = \"recovery\"\n\nthis is not toml\n");
        let errs = assert_check_error(&b.path, &["overboot.toml"]);
        assert!(
            errs.iter()
                .any(|l| l.contains("line 4") || l.contains(":4:") || l.contains(":4 ")),
            "{errs:?}"
        );
    });
}

#[test]
fn check_reports_one_line_per_problem() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.link("active-system", "gone.squashfs");
        b.dir_entry("DIR__etc", &[("x", "x")]);
        b.file_entry("DIR_opt_tools.squashfs", "plain text\n");
        let run = check(&b.path);
        run.expect_code(1);
        let errs = error_lines(&run);
        assert!(errs.len() >= 3, "{errs:?}");
        for w in ["active-system", "DIR__etc", "DIR_opt_tools.squashfs"] {
            assert!(errs.iter().any(|l| l.contains(w)), "{w} not in {errs:?}");
        }
    });
}

#[test]
fn check_missing_dir_fails() {
    Ns::run(|ns| {
        let run = check(&ns.scratch().join("t/nothing-here"));
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("nothing-here"), "{}", run.stderr);
    });
}

// ---------------------------------------------------------------------------
// usage
// ---------------------------------------------------------------------------

#[test]
fn help_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["assemble", "--help"],
        vec!["plan", "--help"],
        vec!["check", "--help"],
        vec!["status", "--help"],
        vec!["set-active", "--help"],
        vec!["bless", "--help"],
        vec!["rollback", "--help"],
        vec!["mkinitramfs", "--help"],
        vec!["help", "plan"],
    ] {
        let run = overboot(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
        assert!(
            run.stdout.to_lowercase().contains("usage"),
            "{args:?} prints no usage:\n{}",
            run.all()
        );
    }
    let run = overboot(["assemble", "--help"]);
    for flag in ["--bootext", "--root", "--cmdline", "--state"] {
        assert!(
            run.stdout.contains(flag),
            "assemble --help lacks {flag}:\n{}",
            run.stdout
        );
    }
    let run = overboot(["plan", "--help"]);
    for flag in ["--bootext", "--cmdline", "--json"] {
        assert!(
            run.stdout.contains(flag),
            "plan --help lacks {flag}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let bx = b.path.to_str().unwrap();
        let root = ns.dir("root");
        let r = root.to_str().unwrap();
        for args in [
            vec![
                "assemble",
                "--bootext",
                bx,
                "--root",
                r,
                "--cmdline",
                "",
                "--bogus",
            ],
            vec!["assemble", "--root", r, "--cmdline", ""],
            vec!["assemble", "--bootext"],
            vec!["plan", "--bootext", bx, "--cmdline", "", "--frobnicate"],
            vec!["plan", "--bootext", bx, "extra"],
            vec!["check", "--nope", bx],
            vec!["check", bx, "--bootext", bx],
            vec!["status", "--state"],
            vec!["set-active"],
            vec!["set-active", "a.squashfs", "--tries", "many"],
            vec!["bless", "extra"],
            vec!["rollback", "--json=yes"],
            vec!["mkinitramfs", "--compress", "lzma", "-o", "x"],
            vec!["images", "--bogus"],
            vec!["inspect"],
            vec!["seal"],
            vec!["publish", "x.squashfs"],
            vec!["update", "--tries", "x"],
            vec!["mkuki", "-o", "x"],
            vec!["no-such-command"],
            vec![],
        ] {
            let run = overboot(&args);
            assert_eq!(run.code, 2, "{args:?}:\n{}", run.all());
            assert!(
                run.stderr.starts_with("overboot: ") || args.is_empty(),
                "{args:?}: a usage error says why, in the one style:\n{}",
                run.stderr
            );
            assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        }
        assert!(mounts_under(&root).is_empty());
        assert!(loops_under(ns.scratch()).is_empty());
    });
}

/// (origin, target) of every DIRS/ and manifest mount, in order.
fn entry_mounts(mounts: &Value) -> Vec<(String, String)> {
    mounts
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let o = m["origin"].as_str().unwrap_or("");
            o.starts_with("DIRS/") || o.starts_with("manifest") || o.starts_with("overboot.toml")
        })
        .map(|m| {
            (
                m["origin"].as_str().unwrap().to_string(),
                m["target"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn skipped_entries(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entry"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

/// The plan is what assemble then does: same mounts in the same order, same
/// skipped entries, even for entries only the image's contents make bad.
#[test]
fn plan_agrees_with_assemble() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            symlink(t, "etc/loop", "loop");
            fs::remove_dir_all(t.join("etc/ssh")).unwrap();
            symlink(t, "etc/ssh", "../../../x");
        });
        for name in [
            "DIR_etc_hostname",
            "DIR_etc_hostname_x",
            "DIR_etc_loop_x",
            "DIR_etc_ssh",
            "DIR_opt",
            "DIR__bad",
            "DIR_usr_lib_x86_64-linux-gnu",
        ] {
            b.dir_entry(name, &[("f", "f")]);
        }
        mkdirs(&b.path, "DIRS/DIR_opt/tools");
        b.image_entry("DIR_opt_tools.squashfs", &[("t", "t")]);
        b.file_entry("FILE_etc_os-release", "ID=x\n");
        b.file_entry("FILE_usr_lib", "not a dir\n");
        b.manifest("[[mount]]\ntarget = \"/var/cache/scratch\"\nkind = \"tmpfs\"\n");
        let p = plan_json(ns, &b.path, "");
        let a = assemble_ok(ns, &b.path, "");
        let st = a.state();
        assert_eq!(
            entry_mounts(&p["mounts"]),
            entry_mounts(&st["mounts"]),
            "plan and assemble disagree on mounts"
        );
        assert_eq!(
            skipped_entries(&p["skipped"]),
            skipped_entries(&st["skipped"]),
            "plan and assemble disagree on skipped entries"
        );
        a.teardown(ns);
    });
}

#[test]
fn check_refuses_dirs_symlinks_leading_outside_bootext() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let secret = ns.dir("secret");
        std::os::unix::fs::symlink(&secret, b.path.join("DIRS/DIR_srv_secret")).unwrap();
        assert_check_error(&b.path, &["DIR_srv_secret"]);
    });
}

/// `DIR_etc_ssh` and `DIR_srv_ssh` land on one place when the image has
/// `/etc/ssh -> /srv/ssh`: check (which reads the image) reports the conflict.
#[test]
fn check_conflict_through_image_symlink() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            fs::remove_dir_all(t.join("etc/ssh")).unwrap();
            mkdirs(t, "srv/ssh");
            symlink(t, "etc/ssh", "/srv/ssh");
        });
        b.dir_entry("DIR_etc_ssh", &[("k", "k")]);
        b.dir_entry("DIR_srv_ssh", &[("k", "k")]);
        assert_check_error(&b.path, &["DIR_etc_ssh", "DIR_srv_ssh"]);
    });
}
