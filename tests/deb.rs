//! The Debian package built by `packaging/build-deb.sh` from the static musl build:
//! its file list (`dpkg-deb -c`), its control data (`dpkg-deb -I`), and what it holds
//! once extracted (`dpkg-deb -x`): the binary runs, the man page reads, mkbootext finds
//! its skeleton, the bless unit passes `systemd-analyze verify`.
//!
//! Needs: dpkg, binutils (readelf), systemd (systemd-analyze), man-db is not needed;
//! and the musl build (test.sh builds it and sets OVERBOOT_MUSL_BIN).

mod e2e_common;

use e2e_common::{musl_binary, run};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = top().join("work/deb").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Build the package from `src` (a source tree) into `out`; returns the .deb.
fn build_deb(src: &Path, out: &Path) -> PathBuf {
    let printed = run(Command::new(top().join("packaging/build-deb.sh"))
        .arg("--top")
        .arg(src)
        .arg("--binary")
        .arg(musl_binary(&top()))
        .arg("--out")
        .arg(out));
    let deb = PathBuf::from(printed.trim());
    assert_eq!(
        deb,
        out.join(format!("overboot_{}_amd64.deb", env!("CARGO_PKG_VERSION")))
    );
    assert!(deb.is_file());
    deb
}

/// `dpkg-deb -c`: path → (mode string, owner, link target).
fn listing(deb: &Path) -> Vec<(String, String, String, Option<String>)> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').to_string();
            let link = (f.len() >= 8 && f[6] == "->").then(|| f[7].to_string());
            (path, f[0].to_string(), f[1].to_string(), link)
        })
        .collect()
}

/// Files (not directories) under `dir`, relative, sorted.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What the package must hold for the source tree `src`.
fn expected_files(src: &Path) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = [
        "/usr/bin/overboot",
        "/usr/lib/overboot/overboot-init",
        "/usr/lib/overboot/overboot-init-net",
        "/usr/bin/mkbootext",
        "/lib/systemd/system/overboot-bless.service",
        "/lib/systemd/system/overboot-verity.service",
        "/lib/systemd/system/overboot-update.service",
        "/lib/systemd/system/overboot-update.timer",
        "/usr/share/man/man8/overboot.8.gz",
        "/usr/share/bash-completion/completions/overboot",
        "/usr/share/zsh/vendor-completions/_overboot",
        "/usr/share/fish/vendor_completions.d/overboot.fish",
        "/usr/share/overboot/grub.cfg",
        "/usr/share/overboot/mkbootext",
        "/usr/share/overboot/skeleton/boot",
        "/usr/share/overboot/skeleton/livecd",
        "/usr/share/overboot/skeleton/overboot.toml",
        "/usr/share/doc/overboot/copyright",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in files_under(&src.join("boot-layout/skeleton")) {
        want.insert(format!("/usr/share/overboot/skeleton/{f}"));
    }
    for f in files_under(&src.join("dracut-module/90overboot")) {
        want.insert(format!("/usr/lib/dracut/modules.d/90overboot/{f}"));
    }
    for sub in ["install", "hooks", "sd-overboot"] {
        for f in files_under(&src.join("mkinitcpio-hook").join(sub)) {
            want.insert(format!("/usr/lib/initcpio/{sub}/{f}"));
        }
    }
    want
}

fn assert_holds(deb: &Path, src: &Path) {
    let list = listing(deb);
    let have: BTreeSet<String> = list
        .iter()
        .filter(|(_, mode, _, _)| !mode.starts_with('d'))
        .map(|(p, _, _, _)| p.clone())
        .collect();
    let want = expected_files(src);
    let missing: Vec<&String> = want.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "missing from the package: {missing:?}\nit holds: {have:#?}"
    );
    for (path, mode, owner, link) in &list {
        assert_eq!(owner, "root/root", "{path} is owned by {owner}");
        match path.as_str() {
            "/usr/bin/overboot"
            | "/usr/lib/overboot/overboot-init"
            | "/usr/lib/overboot/overboot-init-net"
            | "/usr/share/overboot/mkbootext" => {
                assert_eq!(mode, "-rwxr-xr-x", "{path}")
            }
            "/usr/bin/mkbootext" => {
                assert_eq!(link.as_deref(), Some("../share/overboot/mkbootext"))
            }
            "/usr/share/overboot/skeleton/boot" => assert_eq!(link.as_deref(), Some(".")),
            "/lib/systemd/system/overboot-bless.service"
            | "/lib/systemd/system/overboot-verity.service"
            | "/lib/systemd/system/overboot-update.service"
            | "/lib/systemd/system/overboot-update.timer"
            | "/usr/share/man/man8/overboot.8.gz"
            | "/usr/share/bash-completion/completions/overboot"
            | "/usr/share/zsh/vendor-completions/_overboot"
            | "/usr/share/fish/vendor_completions.d/overboot.fish"
            | "/usr/share/doc/overboot/copyright" => assert_eq!(mode, "-rw-r--r--", "{path}"),
            _ => {}
        }
    }
}

#[test]
fn package_holds_every_file_in_its_place_and_runs() {
    let dir = scratch("repo");
    let deb = build_deb(&top(), &dir);
    assert_holds(&deb, &top());

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for needle in [
        "Package: overboot\n",
        &format!("Version: {}\n", env!("CARGO_PKG_VERSION")),
        "Architecture: amd64\n",
        "Maintainer: ",
        "Description: ",
        " postinst",
        " postrm",
        " md5sums",
    ] {
        assert!(
            info.contains(needle),
            "dpkg-deb -I lacks '{needle}':\n{info}"
        );
    }
    let field = |name: &str| {
        run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "overboot");
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 500);

    // Extracted: the binary runs and is the static build.
    let root = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let help = run(Command::new(root.join("usr/bin/overboot")).arg("--help"));
    assert!(
        help.contains("Usage: overboot <COMMAND>") && help.contains("assemble"),
        "{help}"
    );
    // Unified kernel images for Secure Boot are made by the packaged binary.
    let mkuki = run(Command::new(root.join("usr/bin/overboot")).args(["mkuki", "--help"]));
    assert!(mkuki.contains("--sign-key <KEY>"), "{mkuki}");
    let version = run(Command::new(root.join("usr/bin/overboot")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("overboot {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        fs::read(root.join("usr/bin/overboot")).unwrap(),
        fs::read(musl_binary(&top())).unwrap()
    );
    // mkinitramfs of the installed package puts the boot-only build in as /init.
    let kdir = PathBuf::from(
        run(&mut Command::new(top().join("tests/kernel/fetch")))
            .trim()
            .to_string(),
    );
    let kver = kdir.file_name().unwrap().to_string_lossy().into_owned();
    let made = run(Command::new(root.join("usr/bin/overboot"))
        .args(["mkinitramfs", "--modules", "ext4,virtio", "-o"])
        .arg(dir.join("initrd.img"))
        .arg("--modules-dir")
        .arg(kdir.join("root/lib/modules").join(&kver)));
    assert!(
        made.contains("/init from ") && made.contains("/lib/overboot/overboot-init"),
        "{made}"
    );
    let elf = run(Command::new("readelf")
        .arg("-l")
        .arg(root.join("usr/bin/overboot")));
    assert!(!elf.contains("program interpreter"), "not static:\n{elf}");

    // The man page: the gzip holds the roff source, every command and parameter.
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man8/overboot.8.gz")));
    assert_eq!(
        man,
        fs::read_to_string(top().join("doc/man/overboot.8")).unwrap()
    );
    for needle in [
        ".TH OVERBOOT 8",
        "assemble",
        "plan",
        "check",
        "status",
        "mkinitramfs",
        "mkuki",
        "set\\-active",
        "bless",
        "rollback",
        "overboot.bootext=",
        "overboot.system=",
        "overboot.toram",
        "overboot.overlay=",
        "overboot.dirs=0",
        "overboot.timeout=",
        "overboot.verify=",
        "overboot.onfail=",
        "overboot.debug",
        "init=",
    ] {
        assert!(man.contains(needle), "the man page lacks '{needle}'");
    }

    // mkbootext, installed, finds its skeleton and template beside it.
    let mk = root.join("usr/bin/mkbootext");
    let usage = run(Command::new(&mk).arg("--help"));
    assert!(usage.contains("--system IMAGE"), "{usage}");
    for option in [
        "--firmware hybrid|uefi|bios",
        "--secure-boot KEYDIR",
        "--shim",
    ] {
        assert!(
            usage.contains(option),
            "mkbootext --help lacks {option}:\n{usage}"
        );
    }
    let bad = dir.join("not-squashfs");
    fs::write(&bad, "x").unwrap();
    let out = output(
        Command::new(&mk)
            .arg("-o")
            .arg(dir.join("d.img"))
            .arg("--system")
            .arg(&bad)
            .arg("--kernel")
            .arg(&bad)
            .arg("--initrd")
            .arg(&bad),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a squashfs image"),
        "{out:?}"
    );

    // The bless unit as systemd reads it, with the packaged binary and man page.
    let unit = root.join("lib/systemd/system/overboot-bless.service");
    let text = fs::read_to_string(&unit).unwrap();
    for needle in [
        "Type=oneshot",
        "ExecStart=/usr/bin/overboot bless",
        "Requires=boot-complete.target",
        "ConditionPathExists=/run/overboot/state.json",
        "WantedBy=basic.target",
    ] {
        assert!(
            text.contains(needle),
            "overboot-bless.service lacks '{needle}'"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("After=") && l.contains("boot-complete.target"))
    );
    // The update timer: a fleet's machines spread out; the service runs update.
    let timer = fs::read_to_string(root.join("lib/systemd/system/overboot-update.timer")).unwrap();
    assert!(timer.contains("RandomizedDelaySec=") && timer.contains("WantedBy=timers.target"));
    let service =
        fs::read_to_string(root.join("lib/systemd/system/overboot-update.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/overboot update"));
    // The dm-verity watcher: early, only in an overboot boot.
    let verity =
        fs::read_to_string(root.join("lib/systemd/system/overboot-verity.service")).unwrap();
    for needle in [
        "ExecStart=/usr/bin/overboot verity-watch",
        "ConditionPathExists=/run/overboot/state.json",
        "WantedBy=sysinit.target",
    ] {
        assert!(
            verity.contains(needle),
            "overboot-verity.service lacks '{needle}'"
        );
    }
    // A root with the package and the host's systemd units (boot-complete.target...).
    let vroot = dir.join("verify-root");
    run(Command::new("cp").arg("-a").arg(&root).arg(&vroot));
    run(Command::new("cp")
        .arg("-an")
        .arg("/lib/systemd/system/.")
        .arg(vroot.join("lib/systemd/system")));
    let verify = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", vroot.display()))
            .arg("--man=no")
            .arg(vroot.join("lib/systemd/system/overboot-bless.service"))
            .arg(vroot.join("lib/systemd/system/overboot-verity.service"))
            .arg(vroot.join("lib/systemd/system/overboot-update.service"))
            .arg(vroot.join("lib/systemd/system/overboot-update.timer")),
    );
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !err.contains("overboot-"),
        "systemd-analyze verify: {}\n{err}",
        verify.status
    );
}

/// Files appearing in dracut-module/ and mkinitcpio-hook/ are packaged without a
/// change to the script; their absence is no error (the tree above may lack them).
#[test]
fn package_takes_every_hook_file_found() {
    let dir = scratch("fake-tree");
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for d in ["boot-layout", "systemd", "doc", "packaging", "Cargo.toml"] {
        symlink(top().join(d), src.join(d)).unwrap();
    }
    let files = [
        ("dracut-module/90overboot/module-setup.sh", true),
        ("dracut-module/90overboot/overboot-assemble.sh", true),
        ("dracut-module/90overboot/README", false),
        ("mkinitcpio-hook/install/overboot", false),
        ("mkinitcpio-hook/hooks/overboot", false),
    ];
    for (f, exec) in files {
        let p = src.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("# {f}\n")).unwrap();
        let mode = if exec { 0o775 } else { 0o664 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let deb = build_deb(&src, &dir.join("out"));
    assert_holds(&deb, &src);
    let list = listing(&deb);
    let mode_of = |path: &str| {
        list.iter()
            .find(|(p, _, _, _)| p == path)
            .map(|(_, m, _, _)| m.clone())
            .unwrap_or_else(|| panic!("{path} is not in the package"))
    };
    assert_eq!(
        mode_of("/usr/lib/dracut/modules.d/90overboot/module-setup.sh"),
        "-rwxr-xr-x"
    );
    assert_eq!(
        mode_of("/usr/lib/dracut/modules.d/90overboot/README"),
        "-rw-r--r--"
    );
    assert_eq!(mode_of("/usr/lib/initcpio/hooks/overboot"), "-rw-r--r--");
    assert_eq!(mode_of("/usr/lib/initcpio/install/overboot"), "-rw-r--r--");

    // And the missing directories are no error.
    let bare = dir.join("bare");
    fs::create_dir_all(&bare).unwrap();
    for d in ["boot-layout", "systemd", "doc", "packaging", "Cargo.toml"] {
        symlink(top().join(d), bare.join(d)).unwrap();
    }
    let deb = build_deb(&bare, &dir.join("out-bare"));
    let list = listing(&deb);
    assert!(
        !list
            .iter()
            .any(|(p, m, _, _)| p.starts_with("/usr/lib/dracut/") && !m.starts_with('d'))
    );
}
