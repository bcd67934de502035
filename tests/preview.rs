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
    check_with(bootext, &[])
}

/// `overboot check BOOTEXT EXTRA...`.
fn check_with(bootext: &Path, extra: &[&OsStr]) -> Run {
    let mut args = vec![OsStr::new("check"), bootext.as_os_str()];
    args.extend_from_slice(extra);
    overboot(args)
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

/// What a boot did, or what a plan says it will do: the image, every overmount in
/// order (origin, target, where it lands, kind) and every skip with its reason.
#[derive(Debug, PartialEq)]
struct Outcome {
    image: String,
    mounts: Vec<String>,
    skipped: Vec<String>,
}

fn is_overmount(origin: &str) -> bool {
    origin.starts_with("DIRS/") || origin.starts_with("overboot.toml")
}

fn outcome(image: &Value, mounts: &Value, skipped: &Value) -> Outcome {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mounts = mounts
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| is_overmount(m["origin"].as_str().unwrap_or("")))
        .map(|m| {
            format!(
                "{} -> {} (at {}, {})",
                s(&m["origin"]),
                s(&m["target"]),
                s(&m["resolved"]),
                s(&m["kind"])
            )
        })
        .collect();
    let mut skipped: Vec<String> = skipped
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{}: {}", s(&k["entry"]), s(&k["reason"])))
        .collect();
    skipped.sort();
    Outcome {
        image: s(image),
        mounts,
        skipped,
    }
}

/// One code path: for every compression, with verification on and off, `plan
/// --json` and `assemble` on the same tree agree on the image, every target (where
/// names are ambiguous, where entries nest inside other entries' mounts, for
/// manifest mounts good and bad) and every skip, reason for reason.
#[test]
fn plan_and_assemble_agree_on_every_compression() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        b.dir_entry("DIR_opt_my_app", &[("f", "f")]);
        b.dir_entry("DIR_srv_data_store_x", &[("f", "f")]);
        // Nested: /etc/ssh/keys is not in the BootExt directory mounted on /etc/ssh
        // (skipped); /var/lib/app is (mounted).
        b.dir_entry("DIR_etc_ssh", &[("sshd_config", "x")]);
        b.dir_entry("DIR_etc_ssh_keys", &[("k", "k")]);
        b.dir_entry("DIR_var_lib", &[("app/.keep", "")]);
        b.dir_entry("DIR_var_lib_app", &[("f", "f")]);
        // Nested in an image: bin exists in it, share does not.
        b.image_entry("DIR_srv_tools.squashfs", &[("bin/tool", "t")]);
        b.dir_entry("DIR_srv_tools_bin", &[("f", "f")]);
        b.dir_entry("DIR_srv_tools_share", &[("f", "f")]);
        // Nested in a manifest tmpfs (empty: skipped), and manifest mounts the boot
        // drops (a misspelt kind, a source outside BootExt).
        b.dir_entry("DIR_var_cache_scratch_x", &[("f", "f")]);
        write(&b.path, "Data/app/f", "f");
        b.manifest(concat!(
            "[[mount]]\ntarget = \"/var/cache/scratch\"\nkind = \"tmpfs\"\n",
            "[[mount]]\nsource = \"Data/app\"\ntarget = \"/srv/data\"\nkind = \"bindd\"\n",
            "[[mount]]\nsource = \"../etc\"\ntarget = \"/srv/etc\"\n",
            "[[mount]]\nsource = \"Data/app\"\ntarget = \"/srv/site\"\nread_only = true\n",
        ));
        for comp in Comp::ALL {
            let name = format!("a-{}.squashfs", comp.name());
            let img = b.system_with(&name, "a", ambiguous_tree);
            // Checksums beside every image; lzo's is wrong, so with verification on
            // the boot falls back to recovery (which decodes names differently).
            let digest = if matches!(comp, Comp::Lzo) {
                "0".repeat(64)
            } else {
                sha256_hex(&img)
            };
            fs::write(
                b.path.join(format!("System/{name}.sha256")),
                format!("{digest}  {name}\n"),
            )
            .unwrap();
            b.link("active-system", &name);
            for cmdline in ["", "overboot.verify=0"] {
                let p = plan_json(&b.path, cmdline);
                let a = assemble_ok(ns, &b.path, cmdline);
                let st = a.state();
                let planned = outcome(&p["system"]["image"], &p["mounts"], &p["skipped"]);
                let booted = outcome(&st["booted"]["image"], &st["mounts"], &st["skipped"]);
                a.teardown(ns);
                assert_eq!(planned, booted, "{comp:?}, cmdline '{cmdline}'");
                let active = !(matches!(comp, Comp::Lzo) && cmdline.is_empty());
                let want = if active {
                    name.clone()
                } else {
                    "r.squashfs".into()
                };
                assert_eq!(
                    booted.image,
                    format!("System/{want}"),
                    "{comp:?} '{cmdline}'"
                );
                let my_app = if active { "/opt/my_app" } else { "/opt/my/app" };
                assert!(
                    booted
                        .mounts
                        .iter()
                        .any(|m| m.starts_with(&format!("DIRS/DIR_opt_my_app -> {my_app} "))),
                    "{booted:#?}"
                );
                for nested in [
                    "DIR_etc_ssh_keys",
                    "DIR_srv_tools_share",
                    "DIR_var_cache_scratch_x",
                ] {
                    assert!(
                        booted
                            .skipped
                            .iter()
                            .any(|s| s.starts_with(&format!("DIRS/{nested}: "))
                                && s.contains("its parent is another mount")),
                        "{nested} not skipped: {booted:#?}"
                    );
                }
                for mounted in ["DIRS/DIR_var_lib_app -> ", "DIRS/DIR_srv_tools_bin -> "] {
                    assert!(
                        booted.mounts.iter().any(|m| m.starts_with(mounted)),
                        "{mounted}: {booted:#?}"
                    );
                }
            }
        }
    });
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `check` fails on everything the boot would refuse, drop or skip, all at once:
/// an image whose checksum is wrong or that the keys given require signed, entries
/// nested where the boot creates nothing, manifest mounts it drops, every manifest
/// problem with "did you mean"; and it warns about names that decode differently
/// against the previous and the recovery image, each seen through the `Overlay/`
/// layers as its boot would see it. Each image is read whole once.
#[test]
fn check_predicts_every_refusal() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, ambiguous_tree);
        b.system("p.squashfs", "p");
        b.link("previous-system", "p.squashfs");
        b.dir_entry("DIR_opt_my_app", &[("f", "f")]);
        b.dir_entry("DIR_etc_ssh", &[("sshd_config", "x")]);
        b.dir_entry("DIR_etc_ssh_keys", &[("k", "k")]);
        // A layer's directory decides this name whichever image boots.
        mkdirs(&b.path, "Overlay/10-site/srv/web_root");
        b.dir_entry("DIR_srv_web_root", &[("f", "f")]);
        write(&b.path, "Data/app/f", "f");
        b.manifest(concat!(
            "[defaults]\nveriy = true\n",
            "[[mount]]\nsource = \"Data/app\"\ntarget = \"/srv/data\"\nkind = \"bindd\"\n",
            "[[mount]]\nsource = \"../etc\"\ntarget = \"/srv/etc\"\n",
            "[[mount]]\nsource = \"Data/app\"\ntarget = \"/srv/app\"\nread_onyl = true\n",
        ));
        let run = check(&b.path);
        run.expect_code(1);
        let out = run.all();
        for want in [
            "error: DIRS/DIR_etc_ssh_keys: /etc/ssh/keys does not exist and its parent is another mount",
            "error: overboot.toml: [[mount]] #1: kind 'bindd' is not bind, image or tmpfs",
            "error: overboot.toml: [[mount]] #2: source '../etc' must be a plain path inside BootExt",
            "error: overboot.toml: [[mount]] #3: unknown key 'read_onyl' (did you mean 'read_only'?)",
            "error: overboot.toml: [defaults] veriy: unknown parameter overboot.veriy (did you mean 'verify'?)",
            "warning: DIRS/DIR_opt_my_app: mounted on /opt/my_app with System/a.squashfs but on /opt/my/app with System/p.squashfs (System/previous-system)",
            "warning: DIRS/DIR_opt_my_app: mounted on /opt/my_app with System/a.squashfs but on /opt/my/app with System/r.squashfs (System/recovery-system)",
        ] {
            assert!(
                out.lines().any(|l| l.starts_with(want)),
                "no line {want:?}:\n{out}"
            );
        }
        assert!(!out.contains("DIR_srv_web_root: mounted on"), "{out}");

        // How many times `check` (and `check --json`) verifies the active image:
        // once, whether it passes or is refused.
        let passes = |b: &BootExt| {
            for json in [&[][..], &["--json"][..]] {
                let out = std::process::Command::new(BIN)
                    .arg("check")
                    .arg(&b.path)
                    .args(json)
                    .env("OVERBOOT_DEBUG", "1")
                    .output()
                    .unwrap();
                let log = String::from_utf8_lossy(&out.stderr);
                let passes = log
                    .lines()
                    .filter(|l| l.contains("System/a.squashfs: verification pass"))
                    .count();
                assert_eq!(passes, 1, "{json:?}:\n{log}");
            }
        };

        // A wrong checksum: the boot refuses the active image, so check does too.
        fs::write(
            b.path.join("System/a.squashfs.sha256"),
            format!("{}  a.squashfs\n", "0".repeat(64)),
        )
        .unwrap();
        let out = check(&b.path).all();
        assert!(
            out.lines().any(|l| l.starts_with("error: ")
                && l.contains("a.squashfs")
                && l.contains("sha256")),
            "{out}"
        );
        passes(&b);

        // A good checksum, and keys that require a signature the active image lacks.
        fs::write(
            b.path.join("System/a.squashfs.sha256"),
            format!(
                "{}  a.squashfs\n",
                sha256_hex(&b.path.join("System/a.squashfs"))
            ),
        )
        .unwrap();
        passes(&b);
        let keys = ns.dir("keys");
        let (_, secret) = keypair(&keys, "site");
        let with_keys = |b: &BootExt| {
            check_with(&b.path, &[OsStr::new("--trust-keys"), keys.as_os_str()]).all()
        };
        let out = with_keys(&b);
        assert!(
            out.lines()
                .any(|l| l.starts_with("error: ") && l.contains("a.squashfs.minisig missing")),
            "{out}"
        );
        sign(&secret, &b.path.join("System/a.squashfs"));
        let out = with_keys(&b);
        assert!(!out.contains("a.squashfs.minisig missing"), "{out}");
        assert!(
            out.contains("System/active-system -> System/a.squashfs ("),
            "{out}"
        );
        assert!(out.contains("signature ok"), "{out}");
    });
}

fn set_active(b: &BootExt, extra: &[&OsStr]) -> Run {
    let mut args = vec![
        OsStr::new("set-active"),
        OsStr::new("--bootext"),
        b.path.as_os_str(),
    ];
    args.extend_from_slice(extra);
    overboot(args)
}

fn active_link(b: &BootExt) -> String {
    fs::read_link(b.path.join("System/active-system"))
        .unwrap()
        .display()
        .to_string()
}

/// `set-active` refuses an image the boot would refuse (checksum, signature with the
/// keys given, unreadable), changing nothing; `--force` switches anyway.
#[test]
fn set_active_refuses_what_would_not_boot() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.system("n.squashfs", "n");
        fs::write(
            b.path.join("System/n.squashfs.sha256"),
            format!("{}  n.squashfs\n", "0".repeat(64)),
        )
        .unwrap();
        let run = set_active(&b, &[OsStr::new("n.squashfs")]);
        run.expect_code(1);
        assert!(
            run.stderr.contains("the boot would refuse it") && run.stderr.contains("sha256"),
            "{}",
            run.all()
        );
        assert_eq!(active_link(&b), "a.squashfs", "changed despite the refusal");
        set_active(&b, &[OsStr::new("n.squashfs"), OsStr::new("--force")]).expect_code(0);
        assert_eq!(active_link(&b), "n.squashfs");

        // A good checksum, but the keys given require a signature.
        fs::write(
            b.path.join("System/n.squashfs.sha256"),
            format!("{}  n.squashfs\n", sha256_hex(&img)),
        )
        .unwrap();
        let keys = ns.dir("keys");
        let (_, secret) = keypair(&keys, "site");
        let with_keys = [
            OsStr::new("r.squashfs"),
            OsStr::new("--trust-keys"),
            keys.as_os_str(),
        ];
        let run = set_active(&b, &with_keys);
        run.expect_code(1);
        assert!(
            run.stderr.contains("the boot would refuse it"),
            "{}",
            run.all()
        );
        assert_eq!(active_link(&b), "n.squashfs");
        sign(&secret, &b.path.join("System/r.squashfs"));
        let run = set_active(&b, &with_keys);
        run.expect_code(0);
        assert!(run.stdout.contains("signature ok"), "{}", run.all());
        assert_eq!(active_link(&b), "r.squashfs");
    });
}

/// The kernel modules tree `tests/kernel/fetch` provides (Debian's stock kernel).
fn modules_dir() -> std::path::PathBuf {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(top.join("tests/kernel/fetch"))
        .output()
        .expect("tests/kernel/fetch");
    assert!(out.status.success(), "fetch: {out:?}");
    let kdir = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let kver = kdir.file_name().unwrap().to_owned();
    kdir.join("root/lib/modules").join(kver)
}

/// `mkinitramfs -o OUT --modules ext4` with busybox standing in for /init, and
/// more arguments.
fn mkinitramfs(out: &Path, modules: &Path, extra: &[&OsStr]) {
    let mut args = vec![
        OsStr::new("mkinitramfs"),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--modules-dir"),
        modules.as_os_str(),
        OsStr::new("--modules"),
        OsStr::new("ext4"),
        OsStr::new("--binary"),
        OsStr::new("/bin/busybox"),
    ];
    args.extend_from_slice(extra);
    overboot(args).expect_code(0);
}

/// `check --initramfs FILE` judges BootExt with the keys of the initramfs that will
/// boot, read from its cpio in every compression the kernel unpacks (gzip written by
/// mkinitramfs; xz, zstd and lz4 by their tools from mkinitramfs' uncompressed
/// archive, at fast levels: the same streams, quicker to make): an unsigned image is
/// an error exactly when that initramfs carries a key.
#[test]
fn check_uses_the_keys_of_the_initramfs() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let keys = ns.dir("keys");
        let (public, secret) = keypair(&keys, "site");
        sign(&secret, &b.path.join("System/r.squashfs"));
        let modules = modules_dir();
        let check_with =
            |initrd: &Path| check_with(&b.path, &[OsStr::new("--initramfs"), initrd.as_os_str()]);
        let dir = ns.dir("initrd");
        let with_key = [OsStr::new("--trust-key"), public.as_os_str()];
        let none = dir.join("initrd-none.img");
        mkinitramfs(
            &none,
            &modules,
            &[
                &with_key[..],
                &[OsStr::new("--compress"), OsStr::new("none")],
            ]
            .concat(),
        );
        let gzip = dir.join("initrd-gzip.img");
        mkinitramfs(
            &gzip,
            &modules,
            &[
                &with_key[..],
                &[OsStr::new("--compress"), OsStr::new("gzip")],
            ]
            .concat(),
        );
        let mut initrds = vec![none.clone(), gzip];
        for (tool, args) in [
            ("xz", ["-0", "--check=crc32", "-c"]),
            ("zstd", ["-1", "-q", "-c"]),
            ("lz4", ["-l", "-q", "-c"]),
        ] {
            let out = std::process::Command::new(tool)
                .args(args)
                .arg(&none)
                .output()
                .unwrap_or_else(|e| panic!("{tool}: {e}"));
            assert!(out.status.success(), "{tool}: {out:?}");
            let file = dir.join(format!("initrd-{tool}.img"));
            fs::write(&file, out.stdout).unwrap();
            initrds.push(file);
        }
        for initrd in &initrds {
            let run = check_with(initrd);
            run.expect_code(1);
            assert!(
                run.stdout
                    .lines()
                    .any(|l| l.starts_with("error: ") && l.contains("a.squashfs.minisig")),
                "{}: {}",
                initrd.display(),
                run.all()
            );
            assert!(
                run.stdout
                    .contains("System/recovery-system -> System/r.squashfs")
                    && run.stdout.contains("signature ok"),
                "{}: {}",
                initrd.display(),
                run.all()
            );
        }
        // Signed as well: the initramfs's key accepts both images.
        sign(&secret, &b.path.join("System/a.squashfs"));
        check_with(&none).expect_code(0);
        // Without keys in the initramfs nothing is enforced, as at boot.
        let plain = dir.join("plain.img");
        mkinitramfs(
            &plain,
            &modules,
            &[OsStr::new("--compress"), OsStr::new("none")],
        );
        check_with(&plain).expect_code(0);
        let bad = dir.join("bad.img");
        fs::write(&bad, b"not an initramfs").unwrap();
        let run = check_with(&bad);
        run.expect_code(1);
        assert!(run.stderr.contains("--initramfs"), "{}", run.all());
    });
}

/// The boot decodes names in the new root, `Overlay/` layers included: a directory
/// a layer adds (`/opt/site_app`, `/srv/web_root` from an image layer) decides an
/// ambiguous name, a layer's file under a name hides the image's directory, and an
/// opaque directory of a layer (`trusted.overlay.opaque=y`, in a directory layer and
/// in an image layer) hides the image's `/data/app_cache` and `/home/user_files`;
/// `user.overlay.opaque` does not count (the boot mounts without `userxattr`).
/// `plan --json` and `assemble` agree.
#[test]
fn plan_decodes_names_through_overlay_layers() {
    Ns::run(|ns| {
        let b = BootExt::standard_with(ns, |t| {
            for d in [
                "var/lib/app_data",
                "data/app_cache",
                "home/user_files",
                "srv/media_files",
            ] {
                mkdirs(t, d);
            }
        });
        mkdirs(&b.path, "Overlay/10-site/opt/site_app");
        write(&b.path, "Overlay/10-site/var/lib/app_data", "now a file");
        mkdirs(&b.path, "Overlay/10-site/data/other");
        opaque(&b.path.join("Overlay/10-site/data"), "trusted");
        opaque(&mkdirs(&b.path, "Overlay/10-site/srv"), "user");
        squashfs_from(
            b.work(),
            &b.path.join("Overlay/20-web.squashfs"),
            Comp::Gzip,
            |t| {
                write(t, "srv/web_root/index.html", "hi");
                mkdirs(t, "home/other");
                opaque(&t.join("home"), "trusted");
            },
        );
        // backhand (plan without root) does not decode extended attributes: it
        // knows when an image holds some, and plan then warns.
        let backhand = |rel: &str| {
            let file = fs::File::open(b.path.join(rel)).unwrap();
            ImageTree::with_backhand(file).unwrap().xattrs_unread
        };
        assert!(backhand("Overlay/20-web.squashfs"));
        assert!(!backhand("System/a.squashfs"));
        b.dir_entry("DIR_opt_site_app", &[("f", "f")]);
        b.dir_entry("DIR_srv_web_root", &[("f", "f")]);
        b.dir_entry("DIR_var_lib_app_data", &[("f", "f")]);
        b.dir_entry("DIR_data_app_cache", &[("f", "f")]);
        b.dir_entry("DIR_home_user_files", &[("f", "f")]);
        b.dir_entry("DIR_srv_media_files", &[("f", "f")]);
        let p = plan_json(&b.path, "");
        assert_eq!(
            p["layers"].as_array().map(Vec::len),
            Some(2),
            "{:#}",
            p["layers"]
        );
        let a = assemble_ok(ns, &b.path, "");
        let st = a.state();
        let planned = outcome(&p["system"]["image"], &p["mounts"], &p["skipped"]);
        let booted = outcome(&st["booted"]["image"], &st["mounts"], &st["skipped"]);
        a.teardown(ns);
        assert_eq!(planned, booted);
        assert_eq!(target_of(&p, "DIRS/DIR_opt_site_app"), "/opt/site_app");
        assert_eq!(target_of(&p, "DIRS/DIR_srv_web_root"), "/srv/web_root");
        assert_eq!(target_of(&p, "DIRS/DIR_data_app_cache"), "/data/app/cache");
        assert_eq!(
            target_of(&p, "DIRS/DIR_home_user_files"),
            "/home/user/files"
        );
        assert_eq!(
            target_of(&p, "DIRS/DIR_srv_media_files"),
            "/srv/media_files"
        );
        assert!(p["warnings"].as_array().unwrap().is_empty(), "{p:#}");

        // Without root neither layer's opaque directories can be read (trusted.*
        // attributes are hidden; backhand does not decode them): plan says so.
        let nobody = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "plan",
            ])
            .args(["--json", "--cmdline", "", "--bootext"])
            .arg(&b.path)
            .output()
            .unwrap();
        let p: Value =
            serde_json::from_slice(&nobody.stdout).unwrap_or_else(|e| panic!("{e}: {nobody:?}"));
        let warnings = p["warnings"].to_string();
        for layer in ["Overlay/10-site", "Overlay/20-web.squashfs"] {
            assert!(
                warnings.contains(&format!("{layer}: its opaque directories")),
                "{layer}: {warnings}"
            );
        }
        assert!(
            booted
                .skipped
                .iter()
                .any(|s| s.starts_with("DIRS/DIR_var_lib_app_data: ")),
            "{booted:#?}"
        );
    });
}

/// Make the directory `dir` opaque to overlayfs with the `NAMESPACE.overlay.opaque`
/// attribute.
fn opaque(dir: &Path, namespace: &str) {
    let name = format!("{namespace}.overlay.opaque");
    rustix::fs::setxattr(dir, name.as_str(), b"y", rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", dir.display()));
}
