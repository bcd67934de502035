//! A sealed image at boot: `NAME.verity` beside `NAME` on BootExt. Before mounting,
//! [`open`] reads and checks the superblock against the image, the size of the tree,
//! `NAME.roothash`, and its signature `NAME.roothash.minisig` when trusted keys are
//! baked in (the same policy as whole-image signatures, `crate::verify`). Then
//! [`mount`] attaches image and tree read-only to loop devices, creates the dm-verity
//! device over them and mounts squashfs from it: every block read is checked against
//! the tree, so the whole-image SHA-256 pass is not needed.
//!
//! `overboot.verity=`: unset uses verity where `NAME.verity` exists; `1` refuses an
//! image without one; `0` ignores `.verity` files. `overboot.verity-error=` is what a
//! corrupted block does once the system runs (format::OnError): the table always
//! fails the read with EIO, and `overboot verity-watch` records it and acts
//! (super::corrupted). An image recorded there with its root hash is refused.

use super::format::{self, BLOCK, Layout, OnError, Superblock};
use crate::sys::confined::{Confined, Lookup};
use crate::sys::{dm, errno_text, loopdev, mounts};
use crate::verify::{Mode, Sha256Digest, TrustStore};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// What the boot does with `.verity` files.
pub struct Policy<'a> {
    /// `overboot.verity`: `None` where sealed, `Some(true)` required, `Some(false)` off.
    pub mode: Option<bool>,
    pub on_error: OnError,
    pub trust: &'a TrustStore,
    /// The text of `System/verity-corrupted` (super::corrupted), if any.
    pub corrupted: Option<&'a str>,
}

/// The verity state of a mounted image, for `state.json` and `overboot status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerityRecord {
    /// `/dev/dm-N`.
    pub device: String,
    /// The device-mapper name (`dmsetup ls`).
    pub name: String,
    pub root_hash: String,
    /// The hash tree file, relative to BootExt.
    pub hash_file: String,
    /// The trusted key that signed the root hash, if keys are baked in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// `overboot.verity-error`: what a corrupted block does at run time.
    pub on_error: String,
    /// The parity file (`NAME.fec`), relative to BootExt, when blocks are repaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec_file: Option<String>,
}

/// One line for `overboot status`.
pub fn describe(r: &VerityRecord) -> String {
    format!(
        "verity {} ({}), root hash {}, {}, on a corrupted block: {}{}",
        r.device,
        r.name,
        r.root_hash,
        r.signed_by
            .as_ref()
            .map(|k| format!("signed by key {k}"))
            .unwrap_or_else(|| "root hash not signed".into()),
        r.fec_file
            .as_ref()
            .map(|f| format!("repair from {f}, else "))
            .unwrap_or_default(),
        r.on_error
    )
}

/// A sealed image whose tree and root hash passed the checks.
pub struct Sealed {
    pub superblock: Superblock,
    pub root: [u8; 32],
    /// The open `NAME.verity` (replaced by its RAM copy with toram).
    pub hash: OwnedFd,
    pub hash_file: String,
    pub signed_by: Option<String>,
    /// The open `NAME.fec` (super::fec), if there is one (read from BootExt, also
    /// with toram).
    pub fec: Option<OwnedFd>,
}

/// Check `image`'s seal (`size`: the image's bytes). `Ok(None)`: not sealed and not
/// required, mount it as before. `Err`: the image is refused, in operator words.
pub fn open(
    be: &Confined,
    image: &str,
    size: u64,
    policy: &Policy<'_>,
) -> Result<Option<Sealed>, String> {
    if policy.mode == Some(false) {
        return Ok(None);
    }
    let hash_file = format!("{image}{}", super::seal::VERITY_SUFFIX);
    let hash = match be.open_file(&hash_file) {
        Ok(fd) => fd,
        Err(Lookup::Errno(Errno::NOENT)) if policy.mode.is_none() => return Ok(None),
        Err(Lookup::Errno(Errno::NOENT)) => {
            return Err(format!(
                "overboot.verity=1 and {image} is not sealed ({hash_file} missing); seal it with: overboot seal {image}"
            ));
        }
        Err(e) => return Err(format!("{hash_file} {e}")),
    };
    let roothash_file = format!("{image}{}", super::seal::ROOTHASH_SUFFIX);
    let text = be.read_small(&roothash_file, 4096)?;
    let read = |p: &str| be.read_small(p, 1 << 16);
    let mut sealed = check(image, size, hash, text, &read, policy.trust)?;
    let recorded = policy
        .corrupted
        .and_then(|r| super::corrupted::refusal(r, image, &format::hex(&sealed.root)));
    if let Some(why) = recorded {
        return Err(why);
    }
    let fec_file = format!("{image}{}", super::seal::FEC_SUFFIX);
    sealed.fec = match be.open_file(&fec_file) {
        Ok(fd) => Some(fd),
        Err(Lookup::Errno(Errno::NOENT)) => None,
        Err(e) => return Err(format!("{fec_file} {e}")),
    };
    Ok(Some(sealed))
}

/// The checks of [`open`] on a seal's files however they came (BootExt, or the
/// network for a netboot, whose copy in RAM is new at each boot, so a corruption
/// recorded by an earlier boot does not concern it): `hash` is the open
/// `NAME.verity`, `roothash` the text of `NAME.roothash` (`None`: missing), `read`
/// gives `NAME.roothash.minisig`.
pub fn check(
    image: &str,
    size: u64,
    hash: OwnedFd,
    roothash: Option<String>,
    read: &dyn Fn(&str) -> Result<Option<String>, String>,
    trust: &TrustStore,
) -> Result<Sealed, String> {
    let hash_file = format!("{image}{}", super::seal::VERITY_SUFFIX);
    let mut head = [0u8; format::SUPERBLOCK_LEN];
    let got = rustix::io::pread(&hash, &mut head, 0)
        .map_err(|e| format!("cannot read {hash_file}: {}", errno_text(e)))?;
    let superblock = Superblock::parse(&head[..got], &hash_file)?;
    let blocks = format::data_blocks(size, image)?;
    if superblock.data_blocks != blocks {
        return Err(format!(
            "{hash_file} seals {} blocks but {image} has {blocks}: it belongs to another image; seal again with: overboot seal {image}",
            superblock.data_blocks
        ));
    }
    let need = Layout::new(blocks)?.file_len();
    let have = rustix::fs::fstat(&hash)
        .map_err(|e| format!("{hash_file}: {}", errno_text(e)))?
        .st_size as u64;
    if have < need {
        return Err(format!(
            "{hash_file} is truncated: {have} bytes, its tree needs {need}; copy it again or seal again with: overboot seal {image}"
        ));
    }
    let roothash_file = format!("{image}{}", super::seal::ROOTHASH_SUFFIX);
    let text = roothash.ok_or_else(|| {
        format!("{image} is sealed but {roothash_file} is missing; seal again with: overboot seal {image}")
    })?;
    let root = Sha256Digest::parse_hex(text.trim()).ok_or_else(|| {
        format!(
            "{roothash_file} is not a SHA-256 root hash (64 hex digits); seal again with: overboot seal {image}"
        )
    })?;
    let signed_by = check_signature(&roothash_file, &text, read, trust)?;
    Ok(Sealed {
        superblock,
        root: root.0,
        hash,
        hash_file,
        signed_by,
        fec: None,
    })
}

/// With trusted keys, `NAME.roothash.minisig` must sign the root hash file: the same
/// rules and messages as a signed image (`crate::verify`), applied to the small file.
fn check_signature(
    roothash_file: &str,
    text: &str,
    read: &dyn Fn(&str) -> Result<Option<String>, String>,
    trust: &TrustStore,
) -> Result<Option<String>, String> {
    if !trust.enforcing() {
        return Ok(None);
    }
    let expected = crate::verify::prepare(roothash_file, Mode::Skip, trust, read)?;
    let mut digest = expected.digester()?;
    digest.update(text.as_bytes());
    Ok(digest.finish(roothash_file)?.key_id)
}

/// A device-mapper name for `image`: `overboot-` and the path with `/` as `-`.
pub fn dm_name(image: &str) -> String {
    let tail: String = image
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '/' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("overboot-{tail}");
    name.truncate(120);
    name
}

/// A mounted sealed image: the detached squashfs mount and its dm device (dropping
/// it lets the device go when the mount goes).
pub struct Mounted {
    pub mnt: OwnedFd,
    pub device: dm::Device,
    pub record: VerityRecord,
}

/// Attach `data` (the image, `image` on BootExt) and the tree read-only, create the
/// dm-verity device, and mount squashfs from it.
pub fn mount(
    data: &OwnedFd,
    image: &str,
    sealed: &Sealed,
    on_error: OnError,
) -> Result<Mounted, String> {
    let data_loop = loopdev::attach(data, image)?;
    let hash_loop = loopdev::attach(&sealed.hash, &sealed.hash_file)?;
    let fec_file = format!("{image}{}", super::seal::FEC_SUFFIX);
    let fec_loop = match &sealed.fec {
        Some(fd) => Some(loopdev::attach(fd, &fec_file)?),
        None => None,
    };
    // The parity covers the data blocks and the tree after its superblock.
    let fec_blocks =
        sealed.superblock.data_blocks + tree_len(sealed) / BLOCK as u64 - format::HASH_START;
    let (sectors, params) = format::table(
        &sealed.superblock,
        &data_loop.path,
        &hash_loop.path,
        &sealed.root,
        fec_loop.as_ref().map(|l| (l.path.as_str(), fec_blocks)),
    );
    let name = dm_name(image);
    load_dm_verity();
    let device = dm::create(&name, "verity", sectors, &params)?;
    // The device holds both loop devices now; ours close on return.
    let mnt = mounts::squashfs_ro(&device.path)
        .map_err(|e| format!("{e} (from {}, verity over {image})", device.path))?;
    let record = VerityRecord {
        device: device.path.clone(),
        name,
        root_hash: format::hex(&sealed.root),
        hash_file: sealed.hash_file.clone(),
        signed_by: sealed.signed_by.clone(),
        on_error: on_error.name().into(),
        fec_file: fec_loop.map(|_| fec_file),
    };
    Ok(Mounted {
        mnt,
        device,
        record,
    })
}

/// dm-verity is a module in most kernels (Debian's), and nothing asks for it before
/// the first sealed image: load it and what it needs, once. A failure is logged;
/// the device-mapper call that follows says what is missing.
fn load_dm_verity() {
    if std::path::Path::new("/sys/module/dm_verity").exists() {
        return;
    }
    let report = crate::kmod::load_modules(&crate::kmod::running_modules_dir(), &["dm-verity"]);
    if !report.all_ok() {
        log::warn!("loading dm-verity: {report}");
    }
}

/// Bytes of the tree file to copy for toram (the superblock's block and the tree).
pub fn tree_len(sealed: &Sealed) -> u64 {
    Layout::new(sealed.superblock.data_blocks)
        .map(|l| l.file_len())
        .unwrap_or(BLOCK as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let r = VerityRecord {
            device: "/dev/dm-0".into(),
            name: "overboot-System-a.squashfs".into(),
            root_hash: "ab".into(),
            hash_file: "System/a.squashfs.verity".into(),
            signed_by: Some("1234".into()),
            on_error: "eio".into(),
            fec_file: None,
        };
        assert_eq!(
            describe(&r),
            "verity /dev/dm-0 (overboot-System-a.squashfs), root hash ab, signed by key 1234, on a corrupted block: eio"
        );
        let with_fec = VerityRecord {
            fec_file: Some("System/a.squashfs.fec".into()),
            signed_by: None,
            ..r
        };
        assert!(
            describe(&with_fec).ends_with(
                "root hash not signed, on a corrupted block: repair from System/a.squashfs.fec, else eio"
            ),
            "{}",
            describe(&with_fec)
        );
    }

    #[test]
    fn dm_names_are_flat_and_bounded() {
        assert_eq!(
            dm_name("System/sys 1.squashfs"),
            "overboot-System-sys-1.squashfs"
        );
        assert_eq!(dm_name(&"x".repeat(300)).len(), 120);
    }
}
