//! Image verification through `overboot assemble` (real squashfs images, loop
//! devices and mounts in a private namespace; checksums by `sha256sum`, keys and
//! signatures by the real `minisign` tool). Needs root.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `sha256sum NAME` run inside the image's directory (so the line names `NAME`).
fn sha256sum_line(img: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(img.file_name().unwrap())
        .current_dir(img.parent().unwrap())
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn digest_of(img: &Path) -> String {
    sha256sum_line(img)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `NAME.sha256` beside the image.
fn sidecar(img: &Path) {
    let mut p = img.as_os_str().to_owned();
    p.push(".sha256");
    fs::write(PathBuf::from(p), sha256sum_line(img)).unwrap();
}

/// `minisign -S -t COMMENT`: a trusted comment of one's own.
fn sign_with_comment(secret: &Path, img: &Path, comment: &str) {
    sh(
        "minisign",
        &[
            OsStr::new("-S"),
            OsStr::new("-s"),
            secret.as_os_str(),
            OsStr::new("-m"),
            img.as_os_str(),
            OsStr::new("-t"),
            OsStr::new(comment),
        ],
    );
}

fn sig_path(img: &Path) -> PathBuf {
    let mut p = img.as_os_str().to_owned();
    p.push(".minisig");
    PathBuf::from(p)
}

fn key_id(public: &Path) -> String {
    let text = fs::read_to_string(public).unwrap();
    text.lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

fn marker(a: &Assembly) -> String {
    fs::read_to_string(a.at("etc/overboot-image"))
        .unwrap_or_else(|e| panic!("ROOT/etc/overboot-image: {e}\nstderr:\n{}", a.run.stderr))
}

/// Recovery booted after active was refused; returns the reason.
#[track_caller]
fn fell_back(a: &Assembly) -> String {
    a.run.expect_code(0);
    let st = a.state();
    assert_eq!(marker(a), "r", "recovery booted: {st:#}");
    assert_eq!(st["booted"]["choice"], "recovery");
    assert_eq!(st["fallback"]["from"], "active", "{st:#}");
    let reason = st["fallback"]["reason"].as_str().unwrap().to_string();
    assert_eq!(st["attempts"][0]["ok"], false);
    assert_eq!(st["attempts"][0]["reason"].as_str().unwrap(), reason);
    reason
}

#[track_caller]
fn booted_active(a: &Assembly) -> Value {
    a.run.expect_code(0);
    let st = a.state();
    assert_eq!(marker(a), "a", "{st:#}\n{}", a.run.stderr);
    assert_eq!(st["booted"]["choice"], "active");
    assert!(st["fallback"].is_null(), "{st:#}");
    st
}

#[test]
fn checksum_sidecar_match_boots_active() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        sidecar(&img);
        let a = assemble(ns, &b.path, "quiet");
        let st = booted_active(&a);
        let v = &st["booted"]["verified"];
        assert_eq!(v["sha256"], digest_of(&img).as_str(), "{st:#}");
        assert_eq!(v["checksum_file"], "System/a.squashfs.sha256");
        a.teardown(ns);
    });
}

#[test]
fn sums_file_with_several_entries_and_mismatch_falls_back() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let a_img = b.path.join("System/a.squashfs");
        let r_img = b.path.join("System/r.squashfs");
        // A list with several entries; a's digest is stale (another image's).
        let wrong = digest_of(&r_img);
        let sums = format!(
            "{}  other.squashfs\n{wrong}  a.squashfs\n{}",
            "0".repeat(64),
            sha256sum_line(&r_img)
        );
        fs::write(b.path.join("System/SHA256SUMS"), sums).unwrap();
        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back(&a);
        assert!(reason.contains("SHA-256 mismatch"), "{reason}");
        assert!(reason.contains("System/SHA256SUMS"), "{reason}");
        assert!(reason.contains(&wrong), "expected digest named: {reason}");
        assert!(
            reason.contains(&digest_of(&a_img)),
            "found digest named: {reason}"
        );
        // Recovery itself was verified against the same list.
        let st = a.state();
        assert_eq!(st["booted"]["verified"]["sha256"], wrong.as_str());
        assert!(
            a.run.stderr.contains("SHA-256 mismatch"),
            "{}",
            a.run.stderr
        );
        a.teardown(ns);
    });
}

#[test]
fn verify_required_without_checksum_is_refused() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        sidecar(&b.path.join("System/r.squashfs"));
        let a = assemble(ns, &b.path, "quiet overboot.verify=1");
        let reason = fell_back(&a);
        assert!(
            reason.contains("overboot.verify=1") && reason.contains("no checksum"),
            "{reason}"
        );
        a.teardown(ns);

        // Default (unset): an image without a checksum boots, noted as unverified.
        let a = assemble(ns, &b.path, "quiet");
        let st = booted_active(&a);
        let note = st["booted"]["verified"]["note"].as_str().unwrap_or("");
        assert!(note.contains("not verified"), "{st:#}");
        a.teardown(ns);

        // Nothing verifiable at all with verify=1: no boot, a clear message.
        fs::remove_file(b.path.join("System/r.squashfs.sha256")).unwrap();
        let a = assemble(ns, &b.path, "quiet overboot.verify=1");
        a.run.expect_code(1);
        assert!(
            a.run.stderr.contains("overboot.verify=1"),
            "{}",
            a.run.stderr
        );
        assert!(a.mounts_outside_root().is_empty());
    });
}

#[test]
fn verify_zero_skips_a_bad_checksum() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        fs::write(
            b.path.join("System/a.squashfs.sha256"),
            format!("{}  a.squashfs\n", "ab".repeat(32)),
        )
        .unwrap();
        let a = assemble(ns, &b.path, "quiet overboot.verify=0");
        let st = booted_active(&a);
        assert!(st["booted"]["verified"]["sha256"].is_null());
        a.teardown(ns);
        // The same bad checksum is caught by default.
        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back(&a);
        assert!(reason.contains("mismatch"), "{reason}");
        a.teardown(ns);
    });
}

#[test]
fn signatures_with_a_baked_key() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let keys = ns.dir("keys");
        let trusted = ns.dir("trusted");
        let (public, secret) = keypair(&keys, "good");
        let (_, other_secret) = keypair(&keys, "other");
        fs::copy(&public, trusted.join("0.pub")).unwrap();
        let id = key_id(&public);
        let a_img = b.path.join("System/a.squashfs");
        let r_img = b.path.join("System/r.squashfs");
        sign(&secret, &r_img);
        let run = |cmdline: &str| {
            assemble_args(
                ns,
                &b.path,
                cmdline,
                &["--trust-keys", trusted.to_str().unwrap()],
            )
        };

        // Good signature: active boots, the key is recorded.
        sign(&secret, &a_img);
        let a = run("quiet");
        let st = booted_active(&a);
        assert_eq!(st["booted"]["verified"]["key_id"], id.as_str(), "{st:#}");
        assert_eq!(
            st["booted"]["verified"]["signature_file"],
            "System/a.squashfs.minisig"
        );
        a.teardown(ns);

        // Bad signature (other bytes signed under the same name): recovery, whatever
        // verify says.
        let other = ns.dir("other").join("a.squashfs");
        fs::copy(&r_img, &other).unwrap();
        sign(&secret, &other);
        fs::copy(sig_path(&other), sig_path(&a_img)).unwrap();
        for cmdline in ["quiet", "quiet overboot.verify=0"] {
            let a = run(cmdline);
            let reason = fell_back(&a);
            assert!(reason.contains("bad signature"), "{reason}");
            assert!(reason.contains(&id), "key id named: {reason}");
            a.teardown(ns);
        }

        // Signed by a key that is not trusted.
        sign(&other_secret, &a_img);
        let a = run("quiet");
        let reason = fell_back(&a);
        assert!(
            reason.contains("not trusted") && reason.contains(&id),
            "{reason}"
        );
        a.teardown(ns);

        // Unsigned, even with a good checksum and verify=0.
        fs::remove_file(sig_path(&a_img)).unwrap();
        sidecar(&a_img);
        let a = run("quiet overboot.verify=0");
        let reason = fell_back(&a);
        assert!(reason.contains("not signed"), "{reason}");
        a.teardown(ns);

        // Without the key baked in, the same unsigned image boots.
        let a = assemble(ns, &b.path, "quiet");
        booted_active(&a);
        a.teardown(ns);
    });
}

/// Issue 10 item 8: a validly signed image renamed (an old release under the name
/// the active link points at) is refused; a minimum version in the key file or the
/// manifest refuses a validly signed old release.
#[test]
fn signature_binds_the_name_and_a_minimum_version() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let keys = ns.dir("keys");
        let trusted = ns.dir("trusted");
        let (public, secret) = keypair(&keys, "good");
        fs::copy(&public, trusted.join("0.pub")).unwrap();
        let a_img = b.path.join("System/a.squashfs");
        sign(&secret, &b.path.join("System/r.squashfs"));
        let run = |cmdline: &str| {
            assemble_args(
                ns,
                &b.path,
                cmdline,
                &["--trust-keys", trusted.to_str().unwrap()],
            )
        };

        // The same bytes signed as old.squashfs, then renamed to a.squashfs.
        let old = keys.join("old.squashfs");
        fs::copy(&a_img, &old).unwrap();
        sign(&secret, &old);
        fs::copy(sig_path(&old), sig_path(&a_img)).unwrap();
        let a = run("quiet");
        let reason = fell_back(&a);
        assert!(
            reason.contains("signs a file named 'old.squashfs', not a.squashfs"),
            "{reason}"
        );
        a.teardown(ns);

        // A minimum version in the key file: 2025.1 is refused, 2025.10 boots
        // (recovery is a newer release: every image under the key needs a version).
        sign_with_comment(
            &secret,
            &b.path.join("System/r.squashfs"),
            "file:r.squashfs version:2030",
        );
        let mut key_text = fs::read_to_string(&public).unwrap();
        key_text.push_str("min-version: 2025.2\n");
        fs::write(trusted.join("0.pub"), &key_text).unwrap();
        sign_with_comment(&secret, &a_img, "file:a.squashfs version:2025.1");
        let a = run("quiet");
        let reason = fell_back(&a);
        assert!(
            reason.contains("version 2025.1, older than the minimum 2025.2"),
            "{reason}"
        );
        a.teardown(ns);
        sign_with_comment(&secret, &a_img, "file:a.squashfs version:2025.10");
        let a = run("quiet");
        booted_active(&a);
        a.teardown(ns);

        // The manifest raises the floor above the key's.
        b.manifest("[verify]\nmin-version = \"2026\"\n");
        let a = run("quiet");
        let reason = fell_back(&a);
        assert!(reason.contains("older than the minimum 2026"), "{reason}");
        a.teardown(ns);
    });
}

#[test]
fn checksum_files_are_read_beneath_bootext() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let outside = ns.dir("outside");
        let a_img = b.path.join("System/a.squashfs");
        fs::write(outside.join("a.sha256"), sha256sum_line(&a_img)).unwrap();
        std::os::unix::fs::symlink(
            outside.join("a.sha256"),
            b.path.join("System/a.squashfs.sha256"),
        )
        .unwrap();
        let a = assemble(ns, &b.path, "quiet");
        let reason = fell_back(&a);
        assert!(reason.contains("System/a.squashfs.sha256"), "{reason}");
        a.teardown(ns);
    });
}
