//! A hostile BootExt under QEMU (TCG) with Debian's kernel (issue 10), in one boot:
//! the real PID 1, BootExt mounted `nodev,nosuid,noexec` from a real disk. A named
//! pipe as the manifest and as a unit, a device node as a `FILE_` entry, names that
//! walk a 118-deep directory on BootExt through `/mnt/cdrom`, and a `DIRS/` bind
//! whose symlinks lead into `/mnt/cdrom` and onto an entry's place: the appliance
//! boots, each is skipped with its reason, nothing hangs; BootExt and `/mnt/cdrom`
//! are `nodev,nosuid,noexec`, the `DIR_opt` bind `nodev,nosuid` only. Needs the musl
//! build (`OVERBOOT_MUSL_BIN`). About one boot (~1 min under TCG).

mod e2e_common;

use e2e_common::{bootext, fixture};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

fn sh(cmd: &str, args: &[&Path]) {
    let ok = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(ok.success(), "{cmd} {args:?}");
}

#[test]
fn hostile_bootext_boots_the_appliance() {
    let f = fixture();
    let dir = f.dir.join("hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    sh("mkfifo", &[&fifo]);
    let node = dir.join("node");
    sh(
        "mknod",
        &[&node, Path::new("c"), Path::new("1"), Path::new("3")],
    );
    let deep = dir.join("deep");
    std::fs::create_dir_all(deep.join(vec!["a"; 118].join("/"))).unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let opt = dir.join("opt");
    std::fs::create_dir(&opt).unwrap();
    symlink("/mnt/cdrom", opt.join("x")).unwrap();
    symlink("/etc/ssh", opt.join("w")).unwrap();

    let spec = |src: &Path, dst: &str| format!("{}={dst}", src.display());
    let mut args = vec![
        spec(&fifo, "overboot.toml"),
        spec(&fifo, "Units/site.service"),
        spec(&node, "DIRS/FILE_etc_motd"),
        spec(&deep.join("a"), "a"),
        spec(&opt, "DIRS/DIR_opt"),
        spec(&empty, "DIRS/DIR_opt_x"),
        spec(&empty, "DIRS/DIR_opt_w"),
    ];
    let walkers: Vec<String> = (0..5)
        .map(|i| format!("DIR_mnt_cdrom_{}z{i}", "a_".repeat(118)))
        .collect();
    for w in &walkers {
        args.push(spec(&empty, &format!("DIRS/{w}")));
    }
    let mut flags = Vec::new();
    for a in &args {
        flags.push("--file");
        flags.push(a.as_str());
    }
    let (disk, _) = bootext(f, "hostile", &flags);
    let log = e2e_common::boot(f, "overboot.onfail=poweroff", &[&disk], None);
    log.assert_has("OVERBOOT-E2E: system=appliance");
    log.assert_has("OVERBOOT-E2E: done");
    log.assert_lacks("Kernel panic");
    log.assert_lacks("panicked");
    let state = log.section("state");
    for want in [
        "overboot.toml is a named pipe, not a regular file",
        "Units/site.service",
        "DIRS/FILE_etc_motd",
        "a device node",
        "target /opt/x (a symlink leads to /mnt/cdrom) overlaps /mnt/cdrom",
        "target /opt/w (a symlink leads to /etc/ssh) is where DIRS/DIR_etc_ssh is already mounted",
    ] {
        assert!(state.contains(want), "state lacks '{want}':\n{state}");
    }
    for w in &walkers {
        assert!(state.contains(w.as_str()), "{w} not skipped:\n{state}");
    }
    assert_eq!(
        state.matches("overlaps /mnt/cdrom").count(),
        6,
        "five walkers and /opt/x:\n{state}"
    );
    // BootExt as published opens no device and runs nothing; DIR_ and FILE_ binds
    // of it are nodev,nosuid but executable.
    for at in ["/mnt/cdrom", "/opt", "/etc/hostname"] {
        let opts = log.mount_options(at);
        let has = |o: &str| opts.iter().any(|x| x == o);
        assert!(has("nodev") && has("nosuid"), "{at}: {opts:?}");
        assert_eq!(has("noexec"), at == "/mnt/cdrom", "{at}: {opts:?}");
    }
}
