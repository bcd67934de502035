//! `overboot publish IMAGE... --sign SECRET.key -o DIR`: make a directory that any
//! HTTP server (nginx, a mirror, an object store) serves to `overboot update`.
//!
//! For each image `NAME`: `DIR/NAME`, its minisign signature `NAME.minisig` (trusted
//! comment `timestamp:T<TAB>file:NAME<TAB>hashed`, as minisign writes it: the signature
//! names the image it is for, so a signed image cannot be served under another
//! name), its chunk index `NAME.chunks` ([`crate::chunks`]), and `NAME.verity` /
//! `NAME.roothash` (+ `.minisig`) when they lie beside the image (`overboot seal`). Then `SHA256SUMS` (every file
//! above, merged with the lines already there, so a directory accumulates versions)
//! and `SHA256SUMS.minisig`. Every file is written under a temporary name and
//! renamed, so a server never serves half a file.

use crate::chunks;
use crate::verify::{self, ChecksumEntry, SUMS_FILE, Sha256Digest};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Files published beside an image when they lie beside it (dm-verity sealing).
const COMPANIONS: &[&str] = &[".verity", ".roothash", ".roothash.minisig"];
/// A minisign secret key decoded: algorithm, KDF, checksum kind, salt, limits, key
/// id, Ed25519 key, checksum.
const SECRET_KEY_BYTES: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;
/// The environment variable holding the password of an encrypted secret key.
const PASSWORD_ENV: &str = "OVERBOOT_SIGN_PASSWORD";

/// The `publish` command: publish, then one line per file set written. Exit code 0
/// or 1.
pub fn execute(images: &[PathBuf], key: &Path, out: &Path) -> i32 {
    match run(images, key, out) {
        Ok(lines) => {
            for l in lines {
                println!("overboot: {l}");
            }
            0
        }
        Err(e) => {
            eprintln!("overboot: publish: {e}");
            1
        }
    }
}

/// Publish `images` into `out`, signed with the secret key in `key`. Returns one
/// line per image published.
pub fn run(images: &[PathBuf], key: &Path, out: &Path) -> Result<Vec<String>, String> {
    let sk = load_secret_key(key)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut listed = Vec::new();
    let mut report = Vec::new();
    for image in images {
        let (name, entries, line) = publish_image(image, &sk, out)?;
        listed.extend(entries);
        report.push(format!("{name}: {line}"));
    }
    let sums = merge_sums(out, listed)?;
    write_atomic(out, SUMS_FILE, sums.as_bytes())?;
    let sig = sign(&sk, sums.as_bytes(), SUMS_FILE, "publish")?;
    write_atomic(out, &format!("{SUMS_FILE}.minisig"), sig.as_bytes())?;
    report.push(format!(
        "{SUMS_FILE} and {SUMS_FILE}.minisig in {}",
        out.display()
    ));
    Ok(report)
}

/// Read a minisign secret key (`minisign -G` writes it; encrypted ones take their
/// password from `$OVERBOOT_SIGN_PASSWORD`). Shared with `overboot seal --sign`.
pub(crate) fn load_secret_key(path: &Path) -> Result<minisign::SecretKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret key {}: {e}", path.display()))?;
    let not_a_key = |why: String| format!("{} is not a minisign secret key: {why}", path.display());
    let raw = text
        .lines()
        .nth(1)
        .and_then(|l| verify::base64_decode(l.trim()))
        .filter(|raw| raw.len() == SECRET_KEY_BYTES && raw.starts_with(b"Ed"))
        .ok_or_else(|| not_a_key("give the .key file minisign -G wrote, not the .pub".into()))?;
    // minisign -G -W writes an unencrypted key (KDF "\0\0") with a zero checksum,
    // which the crate's password path rejects: such a key is read as it is.
    if raw.get(2..4) == Some(&[0, 0]) {
        return minisign::SecretKey::from_bytes(&raw).map_err(|e| not_a_key(e.to_string()));
    }
    let boxed = minisign::SecretKeyBox::from_string(&text).map_err(|e| not_a_key(e.to_string()))?;
    let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
    boxed.into_secret_key(Some(password)).map_err(|e| {
        format!(
            "cannot open the secret key {}: {e} (an encrypted key needs its password in ${PASSWORD_ENV})",
            path.display()
        )
    })
}

/// A minisign signature of what `data` yields, whose trusted comment names `name`
/// (`file:NAME`, as `minisign -S` writes it); `by` is the command, in the untrusted
/// comment. Shared with `overboot seal --sign`.
pub(crate) fn sign(
    sk: &minisign::SecretKey,
    data: impl Read,
    name: &str,
    by: &str,
) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let trusted = format!("timestamp:{now}\tfile:{name}\thashed");
    let untrusted = format!("signature of {name} by overboot {by}");
    minisign::sign(None, sk, data, Some(&trusted), Some(&untrusted))
        .map(|b| b.into_string())
        .map_err(|e| format!("cannot sign {name}: {e}"))
}

/// Copy one image and its companions into `out`, write its chunk index and
/// signature. Returns its name, its `SHA256SUMS` entries and a summary.
fn publish_image(
    image: &Path,
    sk: &minisign::SecretKey,
    out: &Path,
) -> Result<(String, Vec<ChecksumEntry>, String), String> {
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.starts_with('.') && !n.contains(char::is_whitespace))
        .ok_or_else(|| {
            format!(
                "{}: an image needs a plain file name (no leading dot, no spaces)",
                image.display()
            )
        })?
        .to_string();
    let dest = out.join(&name);
    copy_into(image, out, &name)?;
    let (digest, chunk_list) = digest_and_chunks(&dest)?;
    let index = chunks::render_index(&chunk_list);
    let index_name = format!("{name}{}", chunks::INDEX_SUFFIX);
    write_atomic(out, &index_name, index.as_bytes())?;
    let file =
        std::fs::File::open(&dest).map_err(|e| format!("cannot read {}: {e}", dest.display()))?;
    let sig = sign(sk, std::io::BufReader::new(file), &name, "publish")?;
    write_atomic(out, &format!("{name}.minisig"), sig.as_bytes())?;
    let mut entries = vec![
        ChecksumEntry {
            name: name.clone(),
            digest,
        },
        ChecksumEntry {
            name: index_name,
            digest: sha256(index.as_bytes()),
        },
    ];
    for suffix in COMPANIONS {
        let beside = PathBuf::from(format!("{}{suffix}", image.display()));
        if beside.is_file() {
            let companion = format!("{name}{suffix}");
            copy_into(&beside, out, &companion)?;
            let (digest, _) = digest_and_chunks(&out.join(&companion))?;
            entries.push(ChecksumEntry {
                name: companion,
                digest,
            });
        }
    }
    let size: u64 = chunk_list.iter().map(|c| c.len).sum();
    Ok((
        name,
        entries,
        format!("{size} bytes, {} chunks, signed", chunk_list.len()),
    ))
}

fn sha256(data: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(data).into())
}

/// The SHA-256 of a file and its chunks, in one read.
fn digest_and_chunks(path: &Path) -> Result<(Sha256Digest, Vec<chunks::Chunk>), String> {
    struct Hashing<R> {
        inner: R,
        sha: Sha256,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.sha.update(buf.get(..n).unwrap_or_default());
            Ok(n)
        }
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut r = Hashing {
        inner: file,
        sha: Sha256::new(),
    };
    let list =
        chunks::chunk_reader(&mut r).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok((Sha256Digest(r.sha.finalize().into()), list))
}

/// Copy `src` to `out/name` through a temporary (nothing when it is that file).
fn copy_into(src: &Path, out: &Path, name: &str) -> Result<(), String> {
    let dest = out.join(name);
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(src), std::fs::canonicalize(&dest))
        && a == b
    {
        return Ok(());
    }
    let tmp = out.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot copy {} to {}: {e}", src.display(), dest.display())
        })
}

/// Write `out/name` through a temporary and a rename.
fn write_atomic(out: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = out.join(format!(".{name}.tmp"));
    let dest = out.join(name);
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", dest.display())
        })
}

/// `SHA256SUMS` with `new` replacing the lines of the same names already in `out`,
/// sorted by name.
fn merge_sums(out: &Path, new: Vec<ChecksumEntry>) -> Result<String, String> {
    let path = out.join(SUMS_FILE);
    let old = match std::fs::read_to_string(&path) {
        Ok(text) => verify::parse_checksums(&text)
            .map_err(|e| format!("{}: {e} (remove it to start afresh)", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(render_sums(old, new))
}

/// `sha256sum` lines for `old` updated with `new`, sorted by name. Pure.
pub fn render_sums(old: Vec<ChecksumEntry>, new: Vec<ChecksumEntry>) -> String {
    let mut all: std::collections::BTreeMap<String, Sha256Digest> =
        old.into_iter().map(|e| (e.name, e.digest)).collect();
    all.extend(new.into_iter().map(|e| (e.name, e.digest)));
    all.iter().map(|(n, d)| format!("{d}  {n}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, byte: u8) -> ChecksumEntry {
        ChecksumEntry {
            name: name.into(),
            digest: Sha256Digest([byte; 32]),
        }
    }

    #[test]
    fn sums_merge_replaces_and_sorts() {
        let text = render_sums(
            vec![entry("b-1.squashfs", 1), entry("a-1.squashfs", 2)],
            vec![entry("b-1.squashfs", 3), entry("c-2.squashfs", 4)],
        );
        let back = verify::parse_checksums(&text).unwrap();
        let names: Vec<_> = back.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a-1.squashfs", "b-1.squashfs", "c-2.squashfs"]);
        assert_eq!(back[1].digest, Sha256Digest([3; 32]));
    }
}
