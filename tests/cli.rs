//! The one command-line style of `overboot` (issue 11 §2): `--version`, `--bootext`
//! on every command that reads BootExt (`check DIR` still accepted), `--json`
//! reports versioned with structured fields. Real BootExt trees, real images, each
//! test in its own mount namespace.

mod common;

use common::*;
use serde_json::Value;

fn json(run: &Run) -> Value {
    run.expect_code(0);
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.all()));
    assert_eq!(v["version"], 1, "{v:#}");
    v
}

#[test]
fn version_names_the_program_and_its_version() {
    for flag in ["--version", "-V"] {
        let r = overboot([flag]);
        r.expect_code(0);
        assert_eq!(
            r.stdout.trim(),
            format!("overboot {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn check_takes_the_tree_either_way() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let bx = b.path.to_str().unwrap();
        let positional = overboot(["check", bx]);
        positional.expect_code(0);
        assert!(
            positional
                .stdout
                .contains("active-system -> System/a.squashfs"),
            "{}",
            positional.all()
        );
        let flag = overboot(["check", "--bootext", bx]);
        assert_eq!(flag.stdout, positional.stdout);
        assert_eq!(flag.code, positional.code);
        // Without either, the booted system's /mnt/cdrom is read.
        let none = overboot(["check"]);
        none.expect_code(1);
        assert!(none.stderr.contains("/mnt/cdrom"), "{}", none.all());
    });
}

#[test]
fn json_reports_are_versioned_and_structured() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.system("b.squashfs", "b");
        b.dir_entry("DIR_etc_app", &[("app.conf", "x")]);
        let bx = b.path.to_str().unwrap();

        let c = json(&overboot(["check", "--json", bx]));
        assert_eq!(c["ok"], true, "{c:#}");
        assert_eq!(c["errors"].as_array().unwrap().len(), 0, "{c:#}");
        assert_eq!(c["plan"]["system"]["image"], "System/a.squashfs", "{c:#}");
        assert!(
            c["plan"]["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["target"] == "/etc/app"),
            "{c:#}"
        );
        let p = json(&overboot([
            "plan",
            "--json",
            "--cmdline",
            "",
            "--bootext",
            bx,
        ]));
        assert_eq!(p["system"], c["plan"]["system"]);

        let s = json(&overboot([
            "set-active",
            "b.squashfs",
            "--tries",
            "2",
            "--json",
            "--bootext",
            bx,
        ]));
        assert_eq!(s["command"], "set-active");
        assert_eq!(s["changed"], true);
        assert_eq!(s["active"], "b.squashfs");
        assert_eq!(s["previous"], "a.squashfs");
        assert_eq!(s["trial"]["image"], "b.squashfs");
        assert_eq!(s["trial"]["boots_left"], 2);
        assert_eq!(s["trial"]["outcome"], "pending");

        // A boot of the trial image, then its record.
        let a = assemble_ok(ns, &b.path, "");
        let state = a.state_path.clone();
        let st = json(&overboot([
            "status",
            "--json",
            "--state",
            state.to_str().unwrap(),
        ]));
        assert_eq!(st["booted"]["image"], "System/b.squashfs", "{st:#}");
        assert_eq!(st["trial"]["boots_left"], 1, "{st:#}");
        let bl = json(&overboot([
            "bless",
            "--json",
            "--state",
            state.to_str().unwrap(),
            "--bootext",
            bx,
        ]));
        a.teardown(ns);
        assert_eq!(bl["command"], "bless");
        assert_eq!(bl["changed"], true);
        assert!(bl["trial"].is_null(), "{bl:#}");

        let r = json(&overboot(["rollback", "--json", "--bootext", bx]));
        assert_eq!(r["command"], "rollback");
        assert_eq!(r["active"], "a.squashfs");
        assert_eq!(r["previous"], "b.squashfs");
        assert_eq!(r["steps"].as_array().unwrap().len(), 2, "{r:#}");
    });
}

/// Every command that reads BootExt takes `--bootext DIR`, defaulting to where the
/// booted system has it.
#[test]
fn every_command_reading_bootext_takes_bootext() {
    for cmd in [
        "plan",
        "check",
        "status",
        "images",
        "set-active",
        "bless",
        "rollback",
        "update",
    ] {
        let help = overboot([cmd, "--help"]);
        help.expect_code(0);
        assert!(
            help.stdout.contains("--bootext <DIR>") && help.stdout.contains("/mnt/cdrom"),
            "{cmd} --help:\n{}",
            help.stdout
        );
    }
}

/// A failure (exit 1) says why in one line style whatever the command: stderr
/// starts with `overboot: `, stdout stays empty, nothing panics.
#[test]
fn failures_say_why_in_one_style() {
    Ns::run(|ns| {
        let b = BootExt::empty(ns);
        let bx = b.path.to_str().unwrap();
        let missing = ns.dir("gone").join("missing");
        let m = missing.to_str().unwrap();
        let root = ns.dir("root");
        let r = root.to_str().unwrap();
        for args in [
            vec!["check", m],
            vec!["plan", "--bootext", m],
            vec!["images", "--bootext", m],
            vec!["status", "--state", m],
            vec!["set-active", "x.squashfs", "--bootext", bx],
            vec!["rollback", "--bootext", bx],
            vec!["inspect", m],
            vec!["seal", m],
            vec!["publish", m, "--sign", m, "-o", r],
            vec!["mkuki", "-o", r, "--kernel", m, "--initrd", m],
            vec!["assemble", "--bootext", m, "--root", r, "--cmdline", ""],
            vec!["update", "http://127.0.0.1:9/", "--bootext", bx],
        ] {
            let run = overboot(&args);
            assert_eq!(run.code, 1, "{args:?}:\n{}", run.all());
            assert!(
                run.stderr.starts_with("overboot: ") && !run.stderr.contains("panicked"),
                "{args:?}:\n{}",
                run.stderr
            );
            assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        }
    });
}

fn top() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's command table is the one `overboot generate readme-table` makes.
#[test]
fn readme_table_is_generated_from_the_declaration() {
    let generated = overboot(["generate", "readme-table"]);
    generated.expect_code(0);
    let readme = std::fs::read_to_string(top().join("README.md")).unwrap();
    let begin = "<!-- BEGIN overboot generate readme-table -->";
    let end = "<!-- END overboot generate readme-table -->\n";
    let (a, b) = (readme.find(begin), readme.find(end));
    let (Some(a), Some(b)) = (a, b) else {
        panic!("README.md lacks the generated table's markers");
    };
    assert_eq!(
        &readme[a..b + end.len()],
        generated.stdout,
        "README.md's command table differs from the command line: run\n  \
         overboot generate readme-table\nand put its output in place"
    );
    for command in ["plan", "check", "set-active", "rollback", "mkinitramfs"] {
        assert!(
            generated.stdout.contains(&format!("`overboot {command} ")),
            "{command}"
        );
    }
}

/// doc/man/overboot.8 (what the Debian package ships) is `overboot generate man`.
#[test]
fn man_page_is_generated_from_the_declaration() {
    let generated = overboot(["generate", "man"]);
    generated.expect_code(0);
    let committed = std::fs::read_to_string(top().join("doc/man/overboot.8")).unwrap();
    assert!(
        committed == generated.stdout,
        "doc/man/overboot.8 differs from the command line: run\n  \
         overboot generate man > doc/man/overboot.8"
    );
    for needle in [
        ".TH OVERBOOT 8",
        ".SS \"overboot set\\-active IMAGE",
        "\\fB\\-\\-bootext\\fR",
        "[default: /mnt/cdrom]",
        ".SH KERNEL COMMAND LINE",
    ] {
        assert!(generated.stdout.contains(needle), "no {needle}");
    }
}

/// Completions for the three shells know the commands, not the hidden `generate`.
#[test]
fn completions_cover_the_commands_and_hide_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let c = overboot(["generate", "completions", shell]);
        c.expect_code(0);
        for needle in ["set-active", "rollback", "bootext", "json"] {
            assert!(c.stdout.contains(needle), "{shell}: no {needle}");
        }
        assert!(!c.stdout.contains("generate"), "{shell} offers generate");
    }
    assert!(!overboot(["--help"]).stdout.contains("generate"));
    overboot(["generate", "completions", "tcsh"]).expect_code(2);
}

/// `overboot images`: every image in System/ with what names it (active, previous,
/// recovery, trial with its boots left), its size and compression, and whether the
/// boot would take it.
#[test]
fn images_lists_every_image_with_its_role_and_the_boots_verdict() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.system("b.squashfs", "b");
        b.system("c.squashfs", "c");
        zero_from(&b.path.join("System/c.squashfs"), 96);
        let bx = b.path.to_str().unwrap();
        overboot(["set-active", "b.squashfs", "--tries", "2", "--bootext", bx]).expect_code(0);

        let v = json(&overboot(["images", "--json", "--bootext", bx]));
        let images = v["images"].as_array().unwrap();
        let names: Vec<&str> = images.iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["a.squashfs", "b.squashfs", "c.squashfs", "r.squashfs"]
        );
        let roles = |i: usize| images[i]["roles"].clone();
        assert_eq!(roles(0), serde_json::json!(["previous"]));
        assert_eq!(roles(1), serde_json::json!(["active", "trial"]));
        assert_eq!(images[1]["boots_left"], 2);
        assert_eq!(roles(2), serde_json::json!([]));
        assert_eq!(roles(3), serde_json::json!(["recovery"]));
        for i in [0, 1, 3] {
            assert_eq!(images[i]["boots"], true, "{v:#}");
            assert_eq!(images[i]["compression"], "gzip", "{v:#}");
            assert!(images[i]["bytes"].as_u64().unwrap() > 0);
        }
        assert_eq!(images[2]["boots"], false, "{v:#}");
        assert!(!images[2]["verdict"].as_str().unwrap().is_empty());

        let text = overboot(["images", "--bootext", bx]);
        text.expect_code(0);
        assert!(
            text.stdout
                .contains("System/b.squashfs [active, trial (2 boots left)]"),
            "{}",
            text.stdout
        );
        assert!(
            text.stdout.contains("refused by the boot: "),
            "{}",
            text.stdout
        );
    });
}

/// The library modules each module names (`crate::NAME` in code, comments left
/// out), read from `src/`; the command line (`src/cli/`, in the `overboot` binary
/// only) is no library module.
fn module_graph() -> std::collections::HashMap<String, std::collections::HashSet<String>> {
    let mut graph: std::collections::HashMap<_, std::collections::HashSet<String>> =
        Default::default();
    let src = top().join("src");
    let mut todo = vec![src.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if rel != "bin" && rel != "cli" {
                    todo.push(path);
                }
                continue;
            }
            if !rel.ends_with(".rs") || rel == "main.rs" || rel == "lib.rs" {
                continue;
            }
            let module = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let names = graph.entry(module.clone()).or_default();
            for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
                for part in line.split("crate::").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name != module {
                        names.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// Every module `from` reaches through the graph.
fn reaches(
    graph: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    from: &str,
) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

/// Issue 11 §4: the trial's boot side (`trial_boot`, over the pure `trial`) depends
/// neither on the assembly that calls it (no cycle) nor on a command's module, and
/// the boot reaches no command-only module (`preview`, `imagetree`); `cli` lives in
/// the `overboot` binary, which the library cannot name.
#[test]
fn the_boot_depends_on_no_command() {
    let graph = module_graph();
    assert!(graph.contains_key("trial_boot") && graph.contains_key("assemble"));
    let trial_boot = reaches(&graph, "trial_boot");
    assert!(trial_boot.contains("trial"), "{trial_boot:?}");
    assert!(!trial_boot.contains("assemble"), "{trial_boot:?}");
    assert!(reaches(&graph, "trial").is_empty());
    assert!(reaches(&graph, "assemble").contains("trial_boot"));
    for boot in ["boot", "assemble", "pid1"] {
        let reached = reaches(&graph, boot);
        for command in ["preview", "imagetree", "cli"] {
            assert!(!reached.contains(command), "{boot} reaches {command}");
        }
    }
    let lib = std::fs::read_to_string(top().join("src/lib.rs")).unwrap();
    assert!(
        !lib.contains("mod cli"),
        "the command line is in the library"
    );
}
