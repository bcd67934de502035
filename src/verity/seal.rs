//! `overboot seal IMAGE [--sign SECRET.key]`: write `IMAGE.verity` (the hash tree in
//! `veritysetup format`'s layout, random salt and UUID), `IMAGE.roothash` (hex, one
//! line) and, with `--sign`, `IMAGE.roothash.minisig`. Runs on a build host or in the
//! booted system, never at boot.
//!
//! Signing is done in-process by the signer `overboot publish` uses
//! (`crate::publish::sign`: the `minisign` crate, no `minisign` binary needed; an
//! encrypted key takes its password from `$OVERBOOT_SIGN_PASSWORD`). Its trusted
//! comment names the signed file, `file:IMAGE.roothash`, as `minisign -S` writes it:
//! that binds the signature to the image's name, and a root hash signed by hand with
//! `minisign -Sm IMAGE.roothash` is the same thing.

use super::format::{self, BLOCK, Layout, Superblock, TreeWriter};
use crate::sys::toram::Progress;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The files beside an image `NAME`.
pub const VERITY_SUFFIX: &str = ".verity";
pub const ROOTHASH_SUFFIX: &str = ".roothash";
pub const SIGNATURE_SUFFIX: &str = ".roothash.minisig";
/// Forward error correction parity (`seal --fec`; super::fec).
pub const FEC_SUFFIX: &str = ".fec";

/// Whether `name` is the seal of another entry of the same listing (`X.verity`,
/// `X.roothash`, `X.roothash.minisig`, `X.fec` beside `X`): part of `X`, not an entry.
pub fn is_seal_of_listed(name: &str, listing: &[String]) -> bool {
    [SIGNATURE_SUFFIX, VERITY_SUFFIX, ROOTHASH_SUFFIX, FEC_SUFFIX]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .any(|base| listing.iter().any(|n| n == base))
}

/// What sealing made.
pub struct Sealed {
    pub root: String,
    pub data_blocks: u64,
    pub files: Vec<PathBuf>,
}

fn beside(image: &Path, suffix: &str) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read /dev/urandom for the salt: {e}"))?;
    Ok(b)
}

/// `rename` over `to`, then fsync the directory: the name holds the old or the new
/// file after a power cut.
fn commit(tmp: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        format!("cannot rename {} to {}: {e}", tmp.display(), to.display())
    })?;
    let dir = to.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot fsync the directory of {}: {e}", to.display()))
}

/// Write `bytes` to `to` atomically and durably.
fn write_atomic(to: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = beside(to, ".tmp");
    let mut f = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    commit(&tmp, to)
}

/// Hash `image` into a new `IMAGE.verity`; returns the superblock and root hash.
fn build_tree(image: &Path, shown: &str) -> Result<(Superblock, [u8; 32]), String> {
    let mut src = File::open(image).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let size = src
        .metadata()
        .map_err(|e| format!("cannot stat {shown}: {e}"))?
        .len();
    let sb = Superblock {
        uuid: uuid_v4(random()?),
        data_blocks: format::data_blocks(size, shown)?,
        salt: random::<32>()?.to_vec(),
    };
    let layout = Layout::new(sb.data_blocks)?;
    let out = beside(image, VERITY_SUFFIX);
    let tmp = beside(&out, ".tmp");
    let file = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", tmp.display());
    file.set_len(layout.file_len()).map_err(failed)?;
    let mut tree = TreeWriter::new(BufWriter::new(file), &layout, &sb.salt);
    let mut progress = Progress::new(false, "sealing", shown, size);
    let mut buf = vec![0u8; 256 * BLOCK];
    let mut done = 0u64;
    while done < size {
        let n = buf.len().min((size - done) as usize);
        let chunk = &mut buf[..n];
        src.read_exact(chunk)
            .map_err(|e| format!("cannot read {shown} at byte {done}: {e}"))?;
        for block in chunk.chunks_exact(BLOCK) {
            tree.data_block(block).map_err(failed)?;
        }
        done += n as u64;
        progress.update(done);
    }
    progress.finish();
    let (root, out_buf) = tree.finish().map_err(failed)?;
    let mut file = out_buf.into_inner().map_err(|e| failed(e.into_error()))?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&sb.to_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    commit(&tmp, &out)?;
    Ok((sb, root))
}

/// Write `IMAGE.fec`: the parity of the image's blocks and of the tree after its
/// superblock (what the kernel's `fec_blocks` covers), `roots` bytes per code word.
fn build_fec(image: &Path, shown: &str, data_blocks: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let tree_path = beside(image, VERITY_SUFFIX);
    let open = |p: &Path| File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()));
    let (data, tree) = (open(image)?, open(&tree_path)?);
    let tree_blocks = tree
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", tree_path.display()))?
        .len()
        / BLOCK as u64
        - format::HASH_START;
    let layout = super::fec::FecLayout::new(data_blocks + tree_blocks, super::fec::DEFAULT_ROOTS)?;
    let out = beside(image, FEC_SUFFIX);
    let tmp = beside(&out, ".tmp");
    let file = File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let read = |k: u64, buf: &mut [u8]| {
        if k < data_blocks {
            data.read_exact_at(buf, k * BLOCK as u64)
        } else {
            tree.read_exact_at(buf, (k - data_blocks + format::HASH_START) * BLOCK as u64)
        }
    };
    super::fec::write_parity(&layout, BLOCK, read, &mut w)
        .and_then(|()| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!(
                "cannot write the parity of {shown} to {}: {e}",
                tmp.display()
            )
        })?;
    commit(&tmp, &out)
}

/// Remove `path` if it is there, saying why (`what`): a stale companion of the
/// previous seal.
fn remove_stale(path: &Path, what: &str) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            log::warn!("removed {}: {what}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove the stale {}: {e}", path.display())),
    }
}

/// RFC 4122 version 4 from random bytes (veritysetup writes one; nothing reads it).
fn uuid_v4(mut b: [u8; 16]) -> [u8; 16] {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

/// Sign `IMAGE.roothash` with `key` into `IMAGE.roothash.minisig`, atomically.
fn sign(roothash: &Path, sig: &Path, sk: &minisign::SecretKey) -> Result<(), String> {
    let name = roothash
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text =
        std::fs::read(roothash).map_err(|e| format!("cannot read {}: {e}", roothash.display()))?;
    let signature = crate::publish::sign(sk, text.as_slice(), &name, "seal")?;
    write_atomic(sig, signature.as_bytes())
}

/// Seal `image`: tree, root hash, the signature with `key` and, with `fec`, the
/// parity. Without a key an old signature is removed (it signs the previous root hash
/// and would refuse the boot); without `fec` an old parity file (of the previous
/// tree).
pub fn seal(image: &Path, key: Option<&Path>, fec: bool) -> Result<Sealed, String> {
    let shown = image.display().to_string();
    // The key (and its password) first: a wrong one fails before the long hashing.
    let key = key.map(crate::publish::load_secret_key).transpose()?;
    let (sb, root) = build_tree(image, &shown)?;
    let root = format::hex(&root);
    let roothash = beside(image, ROOTHASH_SUFFIX);
    write_atomic(&roothash, format!("{root}\n").as_bytes())?;
    let sig = beside(image, SIGNATURE_SUFFIX);
    let mut files = vec![beside(image, VERITY_SUFFIX), roothash.clone()];
    match key {
        Some(key) => {
            sign(&roothash, &sig, &key)?;
            files.push(sig);
        }
        None => remove_stale(
            &sig,
            "it signed the previous root hash (seal with --sign to sign this one)",
        )?,
    }
    if fec {
        build_fec(image, &shown, sb.data_blocks)?;
        files.push(beside(image, FEC_SUFFIX));
    } else {
        remove_stale(
            &beside(image, FEC_SUFFIX),
            "it was the parity of the previous tree (seal with --fec for new parity)",
        )?;
    }
    Ok(Sealed {
        root,
        data_blocks: sb.data_blocks,
        files,
    })
}

/// Seal `image` (and sign its root hash with `key`), saying what was written.
/// Exit code: 0 or 1.
pub fn execute(image: &Path, key: Option<&Path>, fec: bool) -> i32 {
    match seal(image, key, fec) {
        Ok(s) => {
            println!(
                "sealed {} ({} blocks): root hash {}",
                image.display(),
                s.data_blocks,
                s.root
            );
            for f in &s.files {
                println!("  wrote {}", f.display());
            }
            0
        }
        Err(e) => {
            eprintln!("overboot: seal: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_files_belong_to_their_image() {
        let listing: Vec<String> = ["DIR_a.squashfs", "DIR_a.squashfs.verity", "x.verity"]
            .map(String::from)
            .to_vec();
        assert!(is_seal_of_listed("DIR_a.squashfs.verity", &listing));
        assert!(is_seal_of_listed("DIR_a.squashfs.roothash", &listing));
        assert!(is_seal_of_listed(
            "DIR_a.squashfs.roothash.minisig",
            &listing
        ));
        assert!(!is_seal_of_listed("x.verity", &listing), "no x beside it");
        assert!(!is_seal_of_listed("DIR_a.squashfs", &listing));
    }
}
