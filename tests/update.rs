//! Fleet updates over HTTP: `overboot publish` makes a directory that a real nginx
//! on 127.0.0.1 serves (generated configuration, `daemon off`, its own prefix and
//! port, stopped at the end); `overboot update` runs against BootExt trees in a
//! private mount namespace. Signatures are checked with the minisign tool as well
//! as by overboot, so the format is minisign's own.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A minisign key pair made by the minisign tool (unencrypted: `-W`).
struct Keys {
    secret: PathBuf,
    public: PathBuf,
}

fn keys(dir: &Path) -> Keys {
    let k = Keys {
        secret: dir.join("test.key"),
        public: dir.join("test.pub"),
    };
    sh(
        "minisign",
        &[
            "-G".as_ref(),
            "-W".as_ref(),
            "-p".as_ref(),
            k.public.as_os_str(),
            "-s".as_ref(),
            k.secret.as_os_str(),
        ],
    );
    k
}

/// `minisign -V` of `file` with `key`: the trusted comment it prints.
fn minisign_verify(file: &Path, key: &Path) -> String {
    let out = Command::new("minisign")
        .args(["-V", "-m"])
        .arg(file)
        .arg("-p")
        .arg(key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "minisign -V {}: {text}",
        file.display()
    );
    text
}

fn publish(images: &[&Path], keys: &Keys, out: &Path) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec!["publish".as_ref()];
    args.extend(images.iter().map(|p| p.as_os_str()));
    args.extend([
        "--sign".as_ref(),
        keys.secret.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    overboot(args)
}

#[test]
fn publish_writes_signed_images_chunk_indexes_and_sums() {
    let t = TempDir::new("publish");
    let k = keys(t.path());
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let one = src.join("app-1.0.squashfs");
    fs::write(&one, vec![7u8; 700_000]).unwrap();
    fs::write(src.join("app-1.0.squashfs.roothash"), "abc\n").unwrap();
    let out = t.path().join("pub");
    publish(&[&one], &k, &out).expect_code(0);
    // A second version later: SHA256SUMS keeps the first one's lines.
    let two = src.join("app-1.1.squashfs");
    fs::write(&two, vec![8u8; 300_000]).unwrap();
    let r = publish(&[&two], &k, &out);
    r.expect_code(0);
    assert!(
        r.stdout.contains("app-1.1.squashfs: 300000 bytes"),
        "{}",
        r.stdout
    );

    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    assert_eq!(
        names,
        [
            "app-1.0.squashfs",
            "app-1.0.squashfs.chunks",
            "app-1.0.squashfs.roothash",
            "app-1.1.squashfs",
            "app-1.1.squashfs.chunks",
        ]
    );
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    // minisign itself accepts every signature, and each names its file.
    for name in ["app-1.0.squashfs", "app-1.1.squashfs", "SHA256SUMS"] {
        let said = minisign_verify(&out.join(name), &k.public);
        assert!(said.contains(&format!("\tfile:{name}\t")), "{said}");
    }
    // 700000 equal bytes: MAX_CHUNK pieces (256 KiB), the index adds up.
    let index = fs::read_to_string(out.join("app-1.0.squashfs.chunks")).unwrap();
    assert!(
        index.starts_with("overboot-chunks 1 size=700000\n"),
        "{index}"
    );
    assert_eq!(index.lines().count(), 1 + 3);
    // A key that is not a secret key: refused, nothing written.
    let bad = publish(
        &[&one],
        &Keys {
            secret: k.public.clone(),
            public: k.public.clone(),
        },
        &t.path().join("none"),
    );
    bad.expect_code(1);
    assert!(
        bad.stderr.contains("is not a minisign secret key"),
        "{}",
        bad.stderr
    );
}
