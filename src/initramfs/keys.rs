//! The keys an initramfs trusts, read from the image itself (`check --initramfs
//! FILE`): so a BootExt is judged with exactly the keys the boot will have; and
//! every entry of an initramfs ([`members`], for `overboot inspect`). Reads
//! every compression `mkinitramfs` writes (gzip in-process; xz, zstd and lz4 with
//! their tools, as `mkinitramfs` writes them) and the archives the kernel accepts
//! one after another (an uncompressed early cpio before a compressed one). Runs on
//! the build host, never at boot.

use crate::verify::{TRUST_DIR, TrustStore, parse_public_key};
use std::io::Read;
use std::path::Path;

/// More than any initramfs holds: a bound on what is decompressed and walked.
const MAX_BYTES: usize = 1 << 30;
const NEWC: &[u8] = b"070701";
const HEADER: usize = 110;

/// The trusted keys in the initramfs at `path` (`etc/overboot/trusted-keys/*.pub`).
/// An initramfs without keys gives an empty store (nothing enforced), as at boot.
pub fn trusted_keys(path: &Path) -> Result<TrustStore, String> {
    let shown = path.display();
    let data = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let files = archives(&data).map_err(|e| format!("{shown}: {e}"))?;
    let dir = format!("{}/", TRUST_DIR.trim_start_matches('/'));
    let mut store = TrustStore::default();
    for (name, body) in files {
        let name = name.trim_start_matches("./");
        if !(name.starts_with(&dir) && name.ends_with(".pub")) {
            continue;
        }
        let source = format!("{shown}:/{name}");
        match String::from_utf8(body) {
            Ok(text) => match parse_public_key(&text, &source) {
                Ok(k) => store.keys.push(k),
                Err(e) => store.problems.push(e),
            },
            Err(_) => store.problems.push(format!("{source} is not text")),
        }
    }
    Ok(store)
}

/// One entry of an initramfs: its path, `st_mode` (type and permissions) and
/// contents (a symlink's target for a link).
#[derive(Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Every entry of the initramfs at `path`, in archive order.
pub fn members(path: &Path) -> Result<Vec<Member>, String> {
    let shown = path.display();
    let data = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    every_member(&data).map_err(|e| format!("{shown}: {e}"))
}

/// Every regular file in the concatenated archives of `data`: (path, contents).
fn archives(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    Ok(every_member(data)?
        .into_iter()
        .filter(|m| m.mode & 0o170000 == 0o100000)
        .map(|m| (m.name, m.data))
        .collect())
}

/// Every entry in the concatenated archives of `data`.
fn every_member(mut data: &[u8]) -> Result<Vec<Member>, String> {
    let mut files = Vec::new();
    loop {
        // The kernel skips zero padding between archives.
        let start = data.iter().position(|b| *b != 0).unwrap_or(data.len());
        data = &data[start..];
        if data.is_empty() {
            return Ok(files);
        }
        if data.starts_with(NEWC) {
            data = &data[read_newc(data, &mut files)?..];
        } else {
            // A compressed archive runs to the end of the file.
            let plain = decompress(data)?;
            if plain.starts_with(NEWC) {
                files.extend(every_member(&plain)?);
                return Ok(files);
            }
            return Err("the decompressed data is not a newc cpio archive".into());
        }
    }
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let tool = match data {
        [0x1f, 0x8b, ..] => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(data)
                .take(MAX_BYTES as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            return Ok(out);
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x02, 0x21, 0x4c, 0x18, ..] | [0x04, 0x22, 0x4d, 0x18, ..] => "lz4",
        _ => {
            return Err(
                "neither a newc cpio archive nor gzip, xz, zstd or lz4 (is it an initramfs?)"
                    .into(),
            );
        }
    };
    super::pipe(tool, &["-d", "-c"], data)
}

/// One newc archive at the start of `data` (up to its `TRAILER!!!`): its entries are
/// added to `files`; returns the bytes it spans.
fn read_newc(data: &[u8], files: &mut Vec<Member>) -> Result<usize, String> {
    let mut at = 0;
    let mut total = 0usize;
    loop {
        let header = data
            .get(at..at + HEADER)
            .ok_or("a cpio header is cut short")?;
        if !header.starts_with(NEWC) {
            return Err(format!("no newc header at byte {at}"));
        }
        let field = |i: usize| -> Result<usize, String> {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| "a cpio header is not hex")?;
            usize::from_str_radix(hex, 16).map_err(|_| format!("bad cpio header field '{hex}'"))
        };
        let (mode, size, name_len) = (field(1)?, field(6)?, field(11)?);
        let name_at = at + HEADER;
        let name = data
            .get(name_at..name_at + name_len)
            .ok_or("a cpio name is cut short")?;
        let name = String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(name)).into_owned();
        let body_at = (name_at + name_len).next_multiple_of(4);
        let body = data
            .get(body_at..body_at + size)
            .ok_or_else(|| format!("{name}: its contents are cut short"))?;
        at = (body_at + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return Ok(at.min(data.len()));
        }
        total += size;
        if total > MAX_BYTES {
            return Err(format!("more than {MAX_BYTES} bytes of files"));
        }
        files.push(Member {
            name,
            mode: mode as u32,
            data: body.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initramfs::cpio::Archive;

    #[test]
    fn reads_what_mkinitramfs_writes_and_concatenations() {
        let mut a = Archive::new();
        a.dir("etc", 0o755);
        a.file("etc/overboot/trusted-keys/0.pub", 0o644, b"key".to_vec());
        a.file("init", 0o755, b"elf".to_vec());
        let one = a.to_bytes().unwrap();
        let files = archives(&one).unwrap();
        assert_eq!(
            files,
            [
                (
                    "etc/overboot/trusted-keys/0.pub".to_string(),
                    b"key".to_vec()
                ),
                ("init".to_string(), b"elf".to_vec())
            ]
        );
        // An early archive, padding, then a gzip one: both are read.
        let mut two = one.clone();
        two.extend_from_slice(&[0; 12]);
        two.extend(crate::initramfs::compress(&one, crate::initramfs::Compression::Gzip).unwrap());
        assert_eq!(archives(&two).unwrap().len(), 4);
        // Cut short: an error, never a partial list taken as whole.
        let trailer = one.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert!(archives(&one[..trailer]).is_err());
        assert!(archives(&one[..trailer - 20]).is_err());
        assert!(archives(b"not an initramfs").is_err());
    }
}
