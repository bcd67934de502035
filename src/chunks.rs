//! Content-defined chunking of system images, for updates that download only what
//! changed. Pure: bytes in, chunk lists out.
//!
//! A gear rolling hash (one table lookup, one shift and one add per byte) cuts the
//! image where the hash's top bits are all zero. The cut points depend on the
//! content around them, not on offsets, so an insertion early in a new image moves
//! the following chunks without changing them: their SHA-256s still match the chunks
//! of the old image on the appliance, and only the changed chunks are fetched.
//!
//! The chunk index published beside an image (`NAME.chunks`) is text:
//!
//! ```text
//! overboot-chunks 1 size=104857600
//! 65536 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ...
//! ```
//!
//! one `LENGTH SHA256` line per chunk, in image order. It is listed in the signed
//! `SHA256SUMS`, so its content (and the image size it gives) is authenticated.

use crate::verify::Sha256Digest;
use sha2::{Digest, Sha256};
use std::io::Read;

/// No cut before this many bytes (skips the hash test for most bytes).
pub const MIN_CHUNK: u64 = 32 * 1024;
/// A cut is forced here (bounds a chunk in long runs of equal bytes).
pub const MAX_CHUNK: u64 = 256 * 1024;
/// Top bits of the hash that must be zero for a cut: 1 in 2^15 bytes past
/// `MIN_CHUNK`, so chunks are about 32 + 32 = 64 KiB on average.
const CUT_BITS: u32 = 15;
/// The index header's first word.
const MAGIC: &str = "overboot-chunks";
/// The index format this code reads and writes.
const VERSION: &str = "1";
/// File name suffix of a chunk index beside its image.
pub const INDEX_SUFFIX: &str = ".chunks";

/// 256 pseudo-random 64-bit values (splitmix64 from a fixed seed). Fixed forever:
/// publisher and appliance must cut at the same places.
const GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x6f76_6572_626f_6f74; // "overboot"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// One chunk of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub len: u64,
    pub sha256: Sha256Digest,
}

/// Splits a byte stream into chunks as it is fed.
#[derive(Default)]
struct Cutter {
    hash: u64,
    start: u64,
    len: u64,
    sha: Sha256,
    chunks: Vec<Chunk>,
}

impl Cutter {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let cut = self.find_cut(data);
            let (now, rest) = data.split_at(cut.unwrap_or(data.len()));
            self.sha.update(now);
            self.len += now.len() as u64;
            if cut.is_some() {
                self.close();
            }
            data = rest;
        }
    }

    /// Where in `data` the current chunk ends, if it does.
    fn find_cut(&mut self, data: &[u8]) -> Option<usize> {
        // The hash depends on the last 64 bytes only (each byte's value is shifted
        // out after 64 steps): bytes further than that before MIN_CHUNK need no
        // hashing, which halves the work.
        let skip = (MIN_CHUNK - 64)
            .saturating_sub(self.len)
            .min(data.len() as u64);
        let mut len = self.len + skip;
        for (i, &b) in data.iter().enumerate().skip(skip as usize) {
            len += 1;
            self.hash = (self.hash << 1).wrapping_add(GEAR[usize::from(b)]);
            if len >= MAX_CHUNK || (len >= MIN_CHUNK && self.hash >> (64 - CUT_BITS) == 0) {
                return Some(i + 1);
            }
        }
        None
    }

    fn close(&mut self) {
        if self.len == 0 {
            return;
        }
        let sha = std::mem::take(&mut self.sha);
        self.chunks.push(Chunk {
            offset: self.start,
            len: self.len,
            sha256: Sha256Digest(sha.finalize().into()),
        });
        self.start += self.len;
        self.len = 0;
        self.hash = 0;
    }
}

/// The chunks of `data`.
pub fn chunk_bytes(data: &[u8]) -> Vec<Chunk> {
    let mut c = Cutter::default();
    c.feed(data);
    c.close();
    c.chunks
}

/// The chunks of everything `r` yields, read in 1 MiB blocks.
pub fn chunk_reader(mut r: impl Read) -> std::io::Result<Vec<Chunk>> {
    let mut c = Cutter::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => c.feed(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.close();
    Ok(c.chunks)
}

/// The published form of a chunk list (see the module documentation).
pub fn render_index(chunks: &[Chunk]) -> String {
    let size: u64 = chunks.iter().map(|c| c.len).sum();
    let mut out = format!("{MAGIC} {VERSION} size={size}\n");
    for c in chunks {
        out.push_str(&format!("{} {}\n", c.len, c.sha256));
    }
    out
}

/// Read a chunk index; `source` names it in messages. Checks that the chunks add up
/// to the size in the header and that each is within the chunker's bounds, so a bad
/// index is refused before anything is downloaded.
pub fn parse_index(text: &str, source: &str) -> Result<Vec<Chunk>, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let size = match header.split(' ').collect::<Vec<_>>().as_slice() {
        [MAGIC, VERSION, size] => size.strip_prefix("size=").and_then(|s| s.parse().ok()),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "{source}: first line '{}' is not '{MAGIC} {VERSION} size=N'; publish the image again with this version of overboot",
            header.chars().take(80).collect::<String>()
        )
    })?;
    let mut chunks = Vec::new();
    let mut offset: u64 = 0;
    for (i, line) in lines.enumerate() {
        let bad = |why: &str| format!("{source}: line {}: {why}", i + 2);
        let (len, hex) = line
            .split_once(' ')
            .ok_or_else(|| bad("not 'LENGTH SHA256'"))?;
        let len: u64 = len.parse().map_err(|_| bad("length is not a number"))?;
        if len == 0 || len > MAX_CHUNK {
            return Err(bad(&format!("chunk length {len} outside 1..={MAX_CHUNK}")));
        }
        let sha256 = Sha256Digest::parse_hex(hex).ok_or_else(|| bad("not a SHA-256"))?;
        if offset + len > size {
            return Err(bad(&format!("chunks go past the size {size}")));
        }
        chunks.push(Chunk {
            offset,
            len,
            sha256,
        });
        offset += len;
    }
    if offset != size {
        return Err(format!(
            "{source}: chunks add up to {offset} bytes, the header says {size}"
        ));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so tests need no files.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_data_within_bounds() {
        let data = noise(1, 4 << 20);
        let chunks = chunk_bytes(&data);
        let mut offset = 0;
        for c in &chunks {
            assert_eq!(c.offset, offset);
            assert!(c.len <= MAX_CHUNK);
            offset += c.len;
        }
        assert_eq!(offset, data.len() as u64);
        // All but the last are at least MIN_CHUNK; the average is near 64 KiB.
        assert!(chunks.iter().rev().skip(1).all(|c| c.len >= MIN_CHUNK));
        let avg = data.len() / chunks.len();
        assert!((40_000..100_000).contains(&avg), "average {avg}");
        // Streaming in odd block sizes cuts at the same places.
        let streamed = chunk_reader(std::io::Cursor::new(&data)).unwrap();
        assert_eq!(streamed, chunks);
        assert_eq!(chunk_bytes(&[]), vec![]);
        // Equal bytes never cut by content: MAX_CHUNK pieces.
        let zeros = chunk_bytes(&vec![0u8; 600_000]);
        assert_eq!(
            zeros.iter().map(|c| c.len).collect::<Vec<_>>(),
            [MAX_CHUNK, MAX_CHUNK, 600_000 - 2 * MAX_CHUNK]
        );
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let old = noise(2, 3 << 20);
        let mut new = old.clone();
        let at = 1 << 20;
        new.splice(at..at, noise(3, 5000));
        let have: std::collections::HashSet<_> =
            chunk_bytes(&old).iter().map(|c| c.sha256.0).collect();
        let chunks = chunk_bytes(&new);
        let missing: u64 = chunks
            .iter()
            .filter(|c| !have.contains(&c.sha256.0))
            .map(|c| c.len)
            .sum();
        assert!(missing > 0 && missing <= 2 * MAX_CHUNK, "missing {missing}");
    }

    #[test]
    fn index_round_trip_and_refusals() {
        let chunks = chunk_bytes(&noise(4, 500_000));
        let text = render_index(&chunks);
        assert!(text.starts_with("overboot-chunks 1 size=500000\n"));
        assert_eq!(parse_index(&text, "x.chunks").unwrap(), chunks);
        assert_eq!(
            parse_index("overboot-chunks 1 size=0\n", "e").unwrap(),
            vec![]
        );
        let bad = [
            ("", "first line"),
            ("overboot-chunks 2 size=1\n", "first line"),
            ("overboot-chunks 1 size=10\n5 zz\n", "line 2: not a SHA-256"),
            ("overboot-chunks 1 size=10\n0 a\n", "outside"),
            ("overboot-chunks 1 size=10\n999999999 a\n", "outside"),
            ("overboot-chunks 1 size=10\nnope\n", "not 'LENGTH SHA256'"),
        ];
        for (text, want) in bad {
            let e = parse_index(text, "x.chunks").unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let d = Sha256Digest([0; 32]);
        let short = format!("overboot-chunks 1 size=10\n4 {d}\n");
        assert!(
            parse_index(&short, "x")
                .unwrap_err()
                .contains("add up to 4")
        );
        let long = format!("overboot-chunks 1 size=3\n4 {d}\n");
        assert!(
            parse_index(&long, "x")
                .unwrap_err()
                .contains("past the size")
        );
    }
}
