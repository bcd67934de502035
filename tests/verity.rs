//! dm-verity sealing, checked against the real `veritysetup` (cryptsetup-bin):
//! `veritysetup verify` accepts what `overboot seal` writes, the tree is byte for byte
//! what `veritysetup format` writes for the same salt and UUID, overboot reads
//! veritysetup's superblock, and `--sign` makes a signature `minisign -V` accepts.
//! `veritysetup verify` reads the files itself (no device-mapper needed), so these run
//! on the host; the boot side is in `tests/e2e_verity.rs`.

mod common;

use common::*;
use overboot::verity::format::{BLOCK, Layout, Superblock, TreeWriter, hex};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn beside(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `blocks` blocks of incompressible-looking data at `path`.
fn data(path: &Path, blocks: usize) {
    fs::write(path, noise(blocks as u64, blocks * BLOCK)).unwrap();
}

/// `veritysetup verify DATA HASH ROOT`: true when it accepts.
fn veritysetup_verify(img: &Path, hash: &Path, root: &str) -> bool {
    Command::new("veritysetup")
        .arg("verify")
        .arg(img)
        .arg(hash)
        .arg(root)
        .output()
        .expect("veritysetup (cryptsetup-bin)")
        .status
        .success()
}

fn roothash(img: &Path) -> String {
    fs::read_to_string(beside(img, ".roothash"))
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn veritysetup_verifies_what_seal_wrote_and_refuses_a_flipped_byte() {
    let dir = TempDir::new("verity-seal");
    // 1 block (no tree), one level, two levels, three levels (> 128 * 128 blocks).
    for blocks in [1, 128, 129, 16_385] {
        let img = dir.path().join(format!("i{blocks}.img"));
        data(&img, blocks);
        let run = overboot([OsStr::new("seal"), img.as_os_str()]);
        run.expect_code(0);
        let root = roothash(&img);
        assert_eq!(root.len(), 64, "{root}");
        assert!(run.stdout.contains(&root), "{}", run.stdout);
        let hash = beside(&img, ".verity");
        assert!(
            veritysetup_verify(&img, &hash, &root),
            "{blocks} blocks: veritysetup refused overboot's tree"
        );
        let len = fs::metadata(&hash).unwrap().len();
        assert_eq!(len, Layout::new(blocks as u64).unwrap().file_len());
        assert!(!beside(&img, ".roothash.minisig").exists());

        // One flipped byte in the last block: veritysetup must now refuse.
        let mut bytes = fs::read(&img).unwrap();
        let last = bytes.len() - 100;
        bytes[last] ^= 1;
        fs::write(&img, bytes).unwrap();
        assert!(
            !veritysetup_verify(&img, &hash, &root),
            "{blocks} blocks: a flipped byte was accepted"
        );
    }
}

#[test]
fn the_tree_is_byte_for_byte_veritysetups() {
    let dir = TempDir::new("verity-bytes");
    let img = dir.path().join("img");
    data(&img, 300);
    let salt = [0x5au8; 32];
    let uuid = "12345678-9abc-4def-8123-456789abcdef";
    let theirs = dir.path().join("theirs.verity");
    let out = Command::new("veritysetup")
        .args(["format", "--salt", &hex(&salt), "--uuid", uuid])
        .arg(&img)
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let their_root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim();

    let sb = Superblock {
        uuid: *b"\x12\x34\x56\x78\x9a\xbc\x4d\xef\x81\x23\x45\x67\x89\xab\xcd\xef",
        data_blocks: 300,
        salt: salt.to_vec(),
    };
    let layout = Layout::new(300).unwrap();
    let mut ours = vec![0u8; layout.file_len() as usize];
    ours[..512].copy_from_slice(&sb.to_bytes());
    let mut tree = TreeWriter::new(std::io::Cursor::new(ours), &layout, &salt);
    for block in fs::read(&img).unwrap().chunks_exact(BLOCK) {
        tree.data_block(block).unwrap();
    }
    let (root, ours) = tree.finish().unwrap();
    assert_eq!(hex(&root), their_root);
    assert!(
        ours.into_inner() == fs::read(&theirs).unwrap(),
        "the hash file differs from veritysetup's"
    );
    // And overboot reads veritysetup's superblock.
    let parsed = Superblock::parse(&fs::read(&theirs).unwrap(), "theirs").unwrap();
    assert_eq!(parsed, sb);
}

#[test]
fn seal_refuses_a_partial_block_and_sign_binds_the_name() {
    let dir = TempDir::new("verity-sign");
    let odd = dir.path().join("odd.img");
    fs::write(&odd, vec![1u8; 5000]).unwrap();
    let run = overboot([OsStr::new("seal"), odd.as_os_str()]);
    run.expect_code(1);
    assert!(run.stderr.contains("5000 bytes"), "{}", run.stderr);
    assert!(!beside(&odd, ".verity").exists());

    let (public, secret) = keypair(dir.path(), "seal");
    let img = dir.path().join("sys.squashfs");
    data(&img, 10);
    // Signed in-process: no minisign binary on the PATH.
    let sealed = Command::new(common::BIN)
        .arg("seal")
        .arg(&img)
        .arg("--sign")
        .arg(&secret)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(sealed.status.success(), "{sealed:?}");
    let rh = beside(&img, ".roothash");
    let sig = beside(&img, ".roothash.minisig");
    let out = Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&public)
        .arg("-m")
        .arg(&rh)
        .arg("-x")
        .arg(&sig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let comment = fs::read_to_string(&sig).unwrap();
    assert!(
        comment.contains("file:sys.squashfs.roothash"),
        "the trusted comment must name the image: {comment}"
    );
    // Sealing again without --sign removes the signature of the old root hash.
    let before = roothash(&img);
    let run = overboot([OsStr::new("seal"), img.as_os_str()]);
    run.expect_code(0);
    assert_ne!(roothash(&img), before, "a new salt makes a new root hash");
    assert!(!sig.exists(), "a stale signature was left behind");
    assert!(run.stderr.contains("removed"), "{}", run.stderr);
}

/// `overboot seal IMG [--sign KEY]`, required to succeed.
fn seal(img: &Path, key: Option<&Path>) {
    let mut args = vec![OsStr::new("seal"), img.as_os_str()];
    if let Some(k) = key {
        args.extend([OsStr::new("--sign"), k.as_os_str()]);
    }
    overboot(args).expect_code(0);
}

/// Recovery (not sealed: the host has no device-mapper) booted after active was
/// refused; returns the reason.
#[track_caller]
fn refused(ns: &Ns, b: &BootExt, cmdline: &str, extra: &[&str]) -> String {
    let a = assemble_args(ns, &b.path, cmdline, extra);
    a.run.expect_code(0);
    let st = a.state();
    assert_eq!(
        st["booted"]["choice"], "recovery",
        "{st:#}\n{}",
        a.run.stderr
    );
    assert_eq!(st["fallback"]["from"], "active", "{st:#}");
    let reason = st["fallback"]["reason"].as_str().unwrap().to_string();
    a.teardown(ns);
    reason
}

/// What the boot refuses before any device-mapper call: a broken seal, an unsigned
/// or wrongly signed root hash, a missing seal under `overboot.verity=1`. The host
/// kernel has no device-mapper, so a good seal reaches the dm step and fails there
/// with a clear message; `overboot.verity=0` ignores the seal and boots.
#[test]
fn broken_or_unsigned_seals_are_refused_before_mounting() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        seal(&img, None);
        let hash = beside(&img, ".verity");
        let good = fs::read(&hash).unwrap();

        // Truncated tree.
        fs::write(&hash, &good[..4096]).unwrap();
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("a.squashfs.verity is truncated"), "{r}");
        // check says what the boot does.
        let c = overboot([OsStr::new("check"), b.path.as_os_str()]);
        c.expect_code(1);
        assert!(
            c.all().contains("a.squashfs.verity is truncated"),
            "{}",
            c.all()
        );
        // Not a superblock.
        let mut bad = good.clone();
        bad[0] = b'X';
        fs::write(&hash, &bad).unwrap();
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("no verity superblock"), "{r}");
        // A superblock for another size.
        let mut bad = good.clone();
        bad[72] ^= 1;
        fs::write(&hash, &bad).unwrap();
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("belongs to another image"), "{r}");
        fs::write(&hash, &good).unwrap();
        // No root hash.
        let rh = beside(&img, ".roothash");
        let root = fs::read(&rh).unwrap();
        fs::remove_file(&rh).unwrap();
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("a.squashfs.roothash is missing"), "{r}");
        fs::write(&rh, &root).unwrap();

        // The seal is good: only the missing device-mapper stops it, said plainly;
        // plan shows the image mounted through dm-verity.
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("/dev/mapper/control"), "{r}");
        let p = overboot([
            OsStr::new("plan"),
            OsStr::new("--bootext"),
            b.path.as_os_str(),
        ]);
        p.expect_code(0);
        assert!(
            p.stdout
                .contains("System/a.squashfs via System/active-system (gzip), dm-verity read-only"),
            "{}",
            p.stdout
        );
        // overboot.verity=0: the seal is ignored, active boots from a loop device.
        let a = assemble(ns, &b.path, "quiet overboot.verity=0");
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(st["booted"]["choice"], "active", "{st:#}");
        assert!(st["booted"]["verity"].is_null(), "{st:#}");
        a.teardown(ns);

        // overboot.verity=1: an image without a seal is refused (both here).
        fs::remove_file(&hash).unwrap();
        let a = assemble(ns, &b.path, "quiet overboot.verity=1");
        a.run.expect_code(1);
        assert!(
            a.run
                .stderr
                .contains("overboot.verity=1 and System/a.squashfs is not sealed"),
            "{}",
            a.run.stderr
        );
        assert!(a.mounts_outside_root().is_empty());

        // Trusted keys: the root hash must be signed by one of them.
        let keys = ns.dir("keys");
        let (public, _) = keypair(&keys, "trusted");
        let (_, other) = keypair(&ns.dir("other"), "other");
        seal(&img, Some(&other));
        let r_img = b.path.join("System/r.squashfs");
        let signed = Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(keys.join("trusted.key"))
            .arg("-m")
            .arg(&r_img)
            .output()
            .unwrap();
        assert!(signed.status.success(), "{signed:?}");
        fs::remove_file(keys.join("trusted.key")).unwrap();
        let trust = ["--trust-keys", keys.to_str().unwrap()];
        let r = refused(ns, &b, "quiet", &trust);
        assert!(
            r.contains("a.squashfs.roothash.minisig is signed by key") && r.contains("not trusted"),
            "{r}"
        );
        assert!(public.exists());
        // Sealed without a signature: unsigned, refused.
        seal(&img, None);
        let r = refused(ns, &b, "quiet", &trust);
        assert!(r.contains("roothash is not signed"), "{r}");
    });
}

/// The run-time corruption record (`System/verity-corrupted`, written by
/// `overboot verity-watch`): the boot refuses the image it names with its root hash
/// (recovery boots, the reason in state.json; `check` and `status` say it), not the
/// same image sealed again; `set-active` refuses it too until `--force`, which
/// forgets the line.
#[test]
fn a_recorded_corruption_refuses_the_image_until_set_active_forces_it() {
    Ns::run(|ns| {
        let b = BootExt::standard(ns);
        let img = b.path.join("System/a.squashfs");
        seal(&img, None);
        let record = b.path.join("System/verity-corrupted");
        let line = |root: &str| format!("# by verity-watch\n{root} data 17 System/a.squashfs\n");
        fs::write(&record, line(&roothash(&img))).unwrap();

        let a = assemble_args(ns, &b.path, "quiet", &[]);
        a.run.expect_code(0);
        let st = a.state();
        assert_eq!(st["booted"]["choice"], "recovery", "{st:#}");
        let reason = st["fallback"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(
                "data block 17 of System/a.squashfs failed dm-verity while the system ran (recorded in System/verity-corrupted)"
            ),
            "{reason}"
        );
        let status = overboot([
            OsStr::new("status"),
            OsStr::new("--state"),
            a.state_path.as_os_str(),
            OsStr::new("--bootext"),
            b.path.as_os_str(),
        ]);
        status.expect_code(0);
        assert!(
            status.stdout.contains("data block 17 of System/a.squashfs")
                && status.stdout.contains(
                    "Corrupted: System/a.squashfs: data block 17 failed dm-verity while the system ran"
                ),
            "{}",
            status.stdout
        );
        a.teardown(ns);
        let c = overboot([OsStr::new("check"), b.path.as_os_str()]);
        c.expect_code(1);
        assert!(
            c.all().contains("data block 17 of System/a.squashfs"),
            "{}",
            c.all()
        );

        // Another root hash (the image sealed again): not concerned, the seal is
        // checked and only the host's missing device-mapper stops it.
        fs::write(&record, line(&"0".repeat(64))).unwrap();
        let r = refused(ns, &b, "quiet", &[]);
        assert!(r.contains("/dev/mapper/control"), "{r}");

        // set-active asks the boot's checks: refused until --force, which forgets it.
        fs::write(&record, line(&roothash(&img))).unwrap();
        let set = |force: bool| {
            let mut args = vec![
                OsStr::new("set-active"),
                OsStr::new("--bootext"),
                b.path.as_os_str(),
                OsStr::new("a.squashfs"),
            ];
            if force {
                args.push(OsStr::new("--force"));
            }
            overboot(args)
        };
        let refused_set = set(false);
        refused_set.expect_code(1);
        assert!(
            refused_set
                .stderr
                .contains("data block 17 of System/a.squashfs"),
            "{}",
            refused_set.stderr
        );
        assert!(record.exists());
        let forced = set(true);
        forced.expect_code(0);
        assert!(
            forced.stderr.contains("forgot the corruption"),
            "{}",
            forced.stderr
        );
        assert!(!record.exists(), "the record's only line was forgotten");
    });
}

/// `seal --fec`: `IMAGE.fec` is byte for byte what `veritysetup format --fec-device`
/// writes for the same image, salt and UUID (Reed-Solomon, 2 roots, interleaved over
/// the image and the tree), for one and several rounds; `veritysetup verify` accepts
/// it; sealing again without `--fec` removes the stale parity.
#[test]
fn fec_is_byte_for_byte_veritysetups() {
    let dir = TempDir::new("verity-fec");
    for blocks in [1usize, 300, 1_000] {
        let img = dir.path().join(format!("f{blocks}.img"));
        data(&img, blocks);
        let run = overboot([OsStr::new("seal"), OsStr::new("--fec"), img.as_os_str()]);
        run.expect_code(0);
        let ours = beside(&img, ".fec");
        assert!(
            ours.exists() && run.stdout.contains(&format!("f{blocks}.img.fec")),
            "{}",
            run.stdout
        );
        let sb = Superblock::parse(&fs::read(beside(&img, ".verity")).unwrap(), "ours").unwrap();
        let u = hex(&sb.uuid);
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..]
        );
        let (their_tree, their_fec) = (
            dir.path().join(format!("t{blocks}.verity")),
            dir.path().join(format!("t{blocks}.fec")),
        );
        let out = Command::new("veritysetup")
            .args(["format", "--salt", &hex(&sb.salt), "--uuid", &uuid])
            .arg("--fec-device")
            .arg(&their_fec)
            .arg(&img)
            .arg(&their_tree)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            fs::read(&their_tree).unwrap() == fs::read(beside(&img, ".verity")).unwrap(),
            "{blocks} blocks: the tree differs"
        );
        let (a, b) = (fs::read(&ours).unwrap(), fs::read(&their_fec).unwrap());
        assert_eq!(a.len(), b.len(), "{blocks} blocks: parity sizes");
        assert!(
            a == b,
            "{blocks} blocks: the parity differs from veritysetup's"
        );
        let verified = Command::new("veritysetup")
            .arg("verify")
            .arg("--fec-device")
            .arg(&ours)
            .arg(&img)
            .arg(beside(&img, ".verity"))
            .arg(roothash(&img))
            .output()
            .unwrap();
        assert!(verified.status.success(), "{verified:?}");
    }
    let img = dir.path().join("f300.img");
    let run = overboot([OsStr::new("seal"), img.as_os_str()]);
    run.expect_code(0);
    assert!(
        !beside(&img, ".fec").exists(),
        "a stale parity file was left"
    );
}
