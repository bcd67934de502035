//! `overboot.toram` through `overboot assemble`: real squashfs images copied into a
//! tmpfs and attached from there, in a private namespace. Needs root.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn marker(a: &Assembly) -> String {
    fs::read_to_string(a.at("etc/overboot-image"))
        .unwrap_or_else(|e| panic!("ROOT/etc/overboot-image: {e}\nstderr:\n{}", a.run.stderr))
}

/// `/sys/block/loopN/loop/backing_file` of the booted image.
fn backing_file(st: &Value) -> String {
    let dev = st["booted"]["loop"].as_str().expect("booted.loop");
    let name = dev.trim_start_matches("/dev/");
    fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .unwrap_or_else(|e| panic!("backing_file of {dev}: {e}"))
        .trim()
        .to_string()
}

fn sidecar(img: &Path) {
    let out = Command::new("sha256sum")
        .arg(img.file_name().unwrap())
        .current_dir(img.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut p = img.as_os_str().to_owned();
    p.push(".sha256");
    fs::write(PathBuf::from(p), out.stdout).unwrap();
}

fn meminfo_kb(field: &str) -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn toram_runs_the_image_from_ram_verified_in_the_same_pass() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        sidecar(&img);
        let a = assemble(ns, &b.path, "quiet overboot.toram");
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(marker(&a), "a", "{st:#}");
        let t = &st["booted"]["toram"];
        assert_eq!(t["done"], true, "{st:#}");
        assert_eq!(t["size"], fs::metadata(&img).unwrap().len());
        assert!(t["reason"].is_null());
        assert!(st["booted"]["verified"]["sha256"].is_string(), "{st:#}");
        let backing = backing_file(&st);
        assert!(
            !backing.starts_with(b.path.to_str().unwrap()) && !backing.contains("a.squashfs"),
            "loop backed by {backing}, not a RAM copy"
        );
        // The image on BootExt can go: the root still reads from RAM.
        fs::remove_file(&img).unwrap();
        assert!(a.at("bin/sh").exists() || a.at("etc").is_dir());
        assert_eq!(
            fs::read_to_string(a.at("mnt/livecd/etc/overboot-image")).unwrap(),
            "a"
        );
        a.teardown(ns);
    });
}

#[test]
fn toram_keeps_a_sparse_image_sparse() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        let data = fs::metadata(&img).unwrap().len();
        // A 512 MiB hole after the filesystem (the scratch tmpfs keeps it a hole).
        let size = data + (512 << 20);
        truncate(&img, size);
        use std::os::unix::fs::MetadataExt;
        assert!(fs::metadata(&img).unwrap().blocks() * 512 < 16 << 20);
        sidecar(&img); // sha256sum reads the hole as zeros: so must overboot
        let shmem_before = meminfo_kb("Shmem");
        let a = assemble(ns, &b.path, "quiet overboot.toram");
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(marker(&a), "a", "{st:#}");
        let t = &st["booted"]["toram"];
        assert_eq!(t["done"], true, "{st:#}");
        assert_eq!(t["size"], size);
        let allocated = t["allocated"].as_u64().unwrap();
        assert!(
            allocated > 0 && allocated < 16 << 20,
            "RAM copy takes {allocated} bytes for {data} bytes of data: not sparse"
        );
        // The kernel agrees: shared memory did not grow by anything like the hole.
        let grew = meminfo_kb("Shmem").saturating_sub(shmem_before);
        assert!(grew < 256 * 1024, "Shmem grew by {grew} kB");
        assert!(st["booted"]["verified"]["sha256"].is_string(), "{st:#}");
        assert!(!backing_file(&st).starts_with(b.path.to_str().unwrap()));
        a.teardown(ns);
    });
}

#[test]
fn toram_larger_than_ram_boots_from_bootext_with_the_reason() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        // 64 MiB available of 512 MiB: nothing to spare after the 64 MiB margin.
        let meminfo = ns.dir("proc").join("meminfo");
        fs::write(
            &meminfo,
            "MemTotal:  524288 kB\nMemFree:  1024 kB\nMemAvailable:  65536 kB\n",
        )
        .unwrap();
        assert!(fs::metadata(&img).unwrap().len() > 0);
        let a = assemble_args(
            ns,
            &b.path,
            "quiet overboot.toram",
            &["--meminfo", meminfo.to_str().unwrap()],
        );
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(marker(&a), "a", "same image, from disk: {st:#}");
        assert!(st["fallback"].is_null());
        let t = &st["booted"]["toram"];
        assert_eq!(t["done"], false, "{st:#}");
        let reason = t["reason"].as_str().unwrap();
        assert!(
            reason.contains("System/a.squashfs needs") && reason.contains("can be spared"),
            "{reason}"
        );
        assert!(warnings(&st).contains("toram refused"), "{st:#}");
        assert!(
            a.run.stderr.contains("NOT from RAM"),
            "loud warning: {}",
            a.run.stderr
        );
        assert!(backing_file(&st).starts_with(b.path.to_str().unwrap()));
        a.teardown(ns);
    });
}

#[test]
fn toram_with_a_bad_checksum_falls_back_to_recovery() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        fs::write(
            b.path.join("System/a.squashfs.sha256"),
            format!("{}  a.squashfs\n", "0".repeat(64)),
        )
        .unwrap();
        let a = assemble(ns, &b.path, "quiet overboot.toram");
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(marker(&a), "r", "{st:#}");
        let reason = st["fallback"]["reason"].as_str().unwrap();
        assert!(reason.contains("SHA-256 mismatch"), "{reason}");
        assert_eq!(
            st["booted"]["toram"]["done"], true,
            "recovery in RAM: {st:#}"
        );
        a.teardown(ns);
    });
}
