//! The dm-verity hash device as `veritysetup format` writes it (cryptsetup's
//! `lib/verity/verity.c` and `verity_hash.c`, format version 1): a 512-byte
//! superblock in the first 4096-byte block, then the hash tree, its top level first and
//! the level that hashes the data blocks last. Each hash is SHA-256 over the salt, then
//! the block; a hash block holds 128 of them, zero-padded. The root hash is the hash of
//! the top level's single block (of the data block itself for a one-block image).
//!
//! Only what overboot writes and boots is accepted: version 1, SHA-256, 4096-byte data
//! and hash blocks. Pure: bytes in, bytes out; the tree is built streaming with
//! [`TreeWriter`] (memory: one block per level, whatever the image size).

use sha2::{Digest, Sha256};
use std::io::{self, Seek, SeekFrom, Write};

/// Data and hash block size.
pub const BLOCK: usize = 4096;
const BLOCK64: u64 = BLOCK as u64;
/// SHA-256 digest size; a hash block holds `BLOCK / DIGEST` of them.
pub const DIGEST: usize = 32;
const PER_BLOCK: u64 = (BLOCK / DIGEST) as u64;
/// The superblock's size on disk (the rest of its block is zeros).
pub const SUPERBLOCK_LEN: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";
/// The hash tree starts after the superblock's block (the table's `hash_start`).
pub const HASH_START: u64 = 1;
/// cryptsetup refuses more levels than this.
const MAX_LEVELS: usize = 63;

/// The fields of `struct verity_sb` overboot uses (all little-endian on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub uuid: [u8; 16],
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

// Offsets in `struct verity_sb` (packed): signature[8], version u32, hash_type u32,
// uuid[16], algorithm[32], data_block_size u32, hash_block_size u32, data_blocks u64,
// salt_size u16, pad[6], salt[256], pad[168].
const OFF_VERSION: usize = 8;
const OFF_HASH_TYPE: usize = 12;
const OFF_UUID: usize = 16;
const OFF_ALGORITHM: usize = 32;
const OFF_DATA_BLOCK_SIZE: usize = 64;
const OFF_HASH_BLOCK_SIZE: usize = 68;
const OFF_DATA_BLOCKS: usize = 72;
const OFF_SALT_SIZE: usize = 80;
const OFF_SALT: usize = 88;
const MAX_SALT: usize = 256;
const _: () = assert!(OFF_SALT + MAX_SALT + 168 == SUPERBLOCK_LEN);

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b.get(off..off + 4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(a)
}

impl Superblock {
    /// The superblock's 512 bytes.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, SIGNATURE);
        put(OFF_VERSION, &1u32.to_le_bytes());
        put(OFF_HASH_TYPE, &1u32.to_le_bytes());
        put(OFF_UUID, &self.uuid);
        put(OFF_ALGORITHM, b"sha256");
        put(OFF_DATA_BLOCK_SIZE, &(BLOCK as u32).to_le_bytes());
        put(OFF_HASH_BLOCK_SIZE, &(BLOCK as u32).to_le_bytes());
        put(OFF_DATA_BLOCKS, &self.data_blocks.to_le_bytes());
        let salt = &self.salt[..self.salt.len().min(MAX_SALT)];
        put(OFF_SALT_SIZE, &(salt.len() as u16).to_le_bytes());
        put(OFF_SALT, salt);
        b
    }

    /// Read a superblock, refusing what overboot does not boot. `source` names the
    /// file in messages.
    pub fn parse(b: &[u8], source: &str) -> Result<Superblock, String> {
        let bad = |why: String| format!("{source}: {why}");
        if b.len() < SUPERBLOCK_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than a verity superblock ({SUPERBLOCK_LEN}); seal the image again",
                b.len()
            )));
        }
        if b.get(..8) != Some(SIGNATURE.as_slice()) {
            return Err(bad(
                "no verity superblock (no 'verity' signature); it must be written by overboot seal or veritysetup format (without --no-superblock)".into(),
            ));
        }
        let (version, hash_type) = (le_u32(b, OFF_VERSION), le_u32(b, OFF_HASH_TYPE));
        if version != 1 || hash_type != 1 {
            return Err(bad(format!(
                "superblock version {version}, hash type {hash_type}; only version 1, type 1 (veritysetup's default) is booted"
            )));
        }
        let alg = &b[OFF_ALGORITHM..OFF_ALGORITHM + 32];
        let alg_len = alg.iter().position(|&c| c == 0).unwrap_or(32);
        let alg = String::from_utf8_lossy(&alg[..alg_len]);
        let (dbs, hbs) = (
            le_u32(b, OFF_DATA_BLOCK_SIZE),
            le_u32(b, OFF_HASH_BLOCK_SIZE),
        );
        if alg != "sha256" || dbs as usize != BLOCK || hbs as usize != BLOCK {
            return Err(bad(format!(
                "hash {alg}, data blocks of {dbs} bytes, hash blocks of {hbs}; only sha256 with 4096-byte blocks is booted (veritysetup's default)"
            )));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[OFF_DATA_BLOCKS..OFF_DATA_BLOCKS + 8]);
        let salt_len = u16::from_le_bytes([b[OFF_SALT_SIZE], b[OFF_SALT_SIZE + 1]]) as usize;
        if salt_len > MAX_SALT {
            return Err(bad(format!(
                "salt of {salt_len} bytes (at most {MAX_SALT})"
            )));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[OFF_UUID..OFF_UUID + 16]);
        Ok(Superblock {
            uuid,
            data_blocks: u64::from_le_bytes(n),
            salt: b[OFF_SALT..OFF_SALT + salt_len].to_vec(),
        })
    }
}

/// Where each level of the tree lies in the hash file, in blocks; level 0 hashes the
/// data blocks. cryptsetup's `hash_levels()`: the top level comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// (first block, blocks) of each level, level 0 first.
    pub levels: Vec<(u64, u64)>,
}

impl Layout {
    pub fn new(data_blocks: u64) -> Result<Layout, String> {
        if data_blocks == 0 {
            return Err("an empty image cannot be sealed".into());
        }
        // Level i holds one hash per block of level i-1 (of data for i = 0).
        let mut sizes = Vec::new();
        let mut below = data_blocks;
        while below > 1 {
            below = below.div_ceil(PER_BLOCK);
            sizes.push(below);
            if sizes.len() > MAX_LEVELS {
                return Err(format!("{data_blocks} blocks need too many tree levels"));
            }
        }
        let mut levels = vec![(0, 0); sizes.len()];
        let mut at = HASH_START;
        for (i, size) in sizes.iter().enumerate().rev() {
            levels[i] = (at, *size);
            at += size;
        }
        Ok(Layout { levels })
    }

    /// Bytes of the whole hash file: superblock block and tree.
    pub fn file_len(&self) -> u64 {
        let tree: u64 = self.levels.iter().map(|l| l.1).sum();
        (HASH_START + tree) * BLOCK64
    }
}

/// Blocks of an image of `size` bytes; an image that does not end on a block is
/// refused (its tail would not be protected).
pub fn data_blocks(size: u64, image: &str) -> Result<u64, String> {
    if size == 0 || size % BLOCK64 != 0 {
        return Err(format!(
            "{image} is {size} bytes, not a whole number of {BLOCK}-byte blocks; build it with mksquashfs's default padding (no -nopad) or pad it: truncate -s %4096 {image}"
        ));
    }
    Ok(size / BLOCK64)
}

/// Builds the tree while the data blocks stream by: [`TreeWriter::data_block`] for each
/// block in order, then [`TreeWriter::finish`] for the root hash. Each level keeps the
/// hash block it is filling; a full block is written at its place and its hash goes
/// one level up.
pub struct TreeWriter<W: Write + Seek> {
    out: W,
    salted: Sha256,
    levels: Vec<Pending>,
    root: Option<[u8; DIGEST]>,
}

struct Pending {
    next: u64,
    end: u64,
    block: Vec<u8>,
}

impl<W: Write + Seek> TreeWriter<W> {
    pub fn new(out: W, layout: &Layout, salt: &[u8]) -> TreeWriter<W> {
        let mut salted = Sha256::new();
        salted.update(salt);
        TreeWriter {
            out,
            salted,
            levels: layout
                .levels
                .iter()
                .map(|&(start, size)| Pending {
                    next: start,
                    end: start + size,
                    block: Vec::with_capacity(BLOCK),
                })
                .collect(),
            root: None,
        }
    }

    fn hash(&self, block: &[u8]) -> [u8; DIGEST] {
        let mut h = self.salted.clone();
        h.update(block);
        h.finalize().into()
    }

    /// Hash one data block (exactly [`BLOCK`] bytes).
    pub fn data_block(&mut self, block: &[u8]) -> io::Result<()> {
        let d = self.hash(block);
        self.push(0, d)
    }

    fn push(&mut self, mut level: usize, mut digest: [u8; DIGEST]) -> io::Result<()> {
        loop {
            let Some(p) = self.levels.get_mut(level) else {
                if self.root.replace(digest).is_some() {
                    return Err(io::Error::other("the tree has two roots (a layout bug)"));
                }
                return Ok(());
            };
            p.block.extend_from_slice(&digest);
            if p.block.len() < BLOCK {
                return Ok(());
            }
            digest = self.emit(level)?;
            level += 1;
        }
    }

    /// Write the block `level` is filling (zero-padded) and return its hash.
    fn emit(&mut self, level: usize) -> io::Result<[u8; DIGEST]> {
        let Some(p) = self.levels.get_mut(level) else {
            return Err(io::Error::other("no such level (a layout bug)"));
        };
        if p.next >= p.end {
            return Err(io::Error::other(format!(
                "level {level} overflows its {} blocks (a layout bug)",
                p.end
            )));
        }
        p.block.resize(BLOCK, 0);
        let block = std::mem::replace(&mut p.block, Vec::with_capacity(BLOCK));
        let at = p.next * BLOCK64;
        p.next += 1;
        self.out.seek(SeekFrom::Start(at))?;
        self.out.write_all(&block)?;
        Ok(self.hash(&block))
    }

    /// Write the partly filled blocks and return the root hash and the output.
    pub fn finish(mut self) -> io::Result<([u8; DIGEST], W)> {
        for level in 0..self.levels.len() {
            if !self.levels[level].block.is_empty() {
                let d = self.emit(level)?;
                self.push(level + 1, d)?;
            }
        }
        if self.levels.iter().any(|p| p.next != p.end) {
            return Err(io::Error::other(
                "the data ended before the tree was full: fewer blocks than announced",
            ));
        }
        let root = self
            .root
            .ok_or_else(|| io::Error::other("no data blocks were hashed"))?;
        Ok((root, self.out))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do when a block does not match the tree, while the system runs
/// (`overboot.verity-error=`). The kernel's table always fails the read with EIO
/// (its own restart leaves no record, and the same block would restart every boot);
/// `overboot verity-watch` records the block on BootExt (super::corrupted), then
/// acts on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Record only: the reading program got EIO, the system runs on.
    Eio,
    /// Record, then restart: the next boot refuses the image (the default, as
    /// dm-verity's `restart_on_corruption` would, but without a loop).
    #[default]
    Restart,
    /// Record, then panic the kernel (`/proc/sysrq-trigger`).
    Panic,
}

impl OnError {
    pub fn parse(text: &str) -> Option<OnError> {
        match text {
            "eio" => Some(OnError::Eio),
            "restart" => Some(OnError::Restart),
            "panic" => Some(OnError::Panic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OnError::Eio => "eio",
            OnError::Restart => "restart",
            OnError::Panic => "panic",
        }
    }
}

/// The device-mapper table line of the verity target (the kernel's
/// Documentation/admin-guide/device-mapper/verity.rst), for `data` and `hash` given
/// as `MAJOR:MINOR` or a device path, and `fec`: the parity device and the blocks it
/// covers (super::fec, 2 roots). Returns (sectors, parameters). A corrupted block
/// that cannot be repaired fails its read with EIO (see [`OnError`]).
pub fn table(
    sb: &Superblock,
    data: &str,
    hash: &str,
    root: &[u8; DIGEST],
    fec: Option<(&str, u64)>,
) -> (u64, String) {
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        hex(&sb.salt)
    };
    let mut params = format!(
        "1 {data} {hash} {BLOCK} {BLOCK} {} {HASH_START} sha256 {} {salt}",
        sb.data_blocks,
        hex(root)
    );
    if let Some((dev, blocks)) = fec {
        params.push_str(&format!(
            " 8 use_fec_from_device {dev} fec_roots {} fec_blocks {blocks} fec_start 0",
            super::fec::DEFAULT_ROOTS
        ));
    }
    (sb.data_blocks * (BLOCK64 / 512), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_cryptsetup_levels() {
        // One block: no tree, the root is the block's hash.
        assert_eq!(Layout::new(1).unwrap().levels, vec![]);
        assert_eq!(Layout::new(1).unwrap().file_len(), 4096);
        // Up to 128 blocks: one level of one block.
        assert_eq!(Layout::new(2).unwrap().levels, vec![(1, 1)]);
        assert_eq!(Layout::new(128).unwrap().levels, vec![(1, 1)]);
        // 129: two leaf blocks, a top block before them.
        assert_eq!(Layout::new(129).unwrap().levels, vec![(2, 2), (1, 1)]);
        // 512 MiB: 131072 blocks -> 1024 + 8 + 1.
        let l = Layout::new(131072).unwrap();
        assert_eq!(l.levels, vec![(10, 1024), (2, 8), (1, 1)]);
        assert_eq!(l.file_len(), (1 + 1033) * 4096);
        assert!(Layout::new(0).is_err());
    }

    #[test]
    fn superblock_round_trips_and_refuses_others() {
        let sb = Superblock {
            uuid: [7; 16],
            data_blocks: 12345,
            salt: vec![1, 2, 3],
        };
        let b = sb.to_bytes();
        assert_eq!(Superblock::parse(&b, "x").unwrap(), sb);
        let mut other = b;
        other[OFF_ALGORITHM..OFF_ALGORITHM + 6].copy_from_slice(b"sha1\0\0");
        assert!(Superblock::parse(&other, "x").unwrap_err().contains("sha1"));
        let mut other = b;
        other[0] = b'V';
        assert!(
            Superblock::parse(&other, "x")
                .unwrap_err()
                .contains("signature")
        );
        assert!(
            Superblock::parse(&b[..100], "x")
                .unwrap_err()
                .contains("100 bytes")
        );
    }

    #[test]
    fn one_block_root_is_the_salted_block_hash() {
        let layout = Layout::new(1).unwrap();
        let mut w = TreeWriter::new(io::Cursor::new(Vec::new()), &layout, b"salt");
        w.data_block(&[9u8; BLOCK]).unwrap();
        let (root, _) = w.finish().unwrap();
        let mut h = Sha256::new();
        h.update(b"salt");
        h.update([9u8; BLOCK]);
        assert_eq!(root, <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn too_few_blocks_is_an_error() {
        let layout = Layout::new(200).unwrap();
        let mut w = TreeWriter::new(io::Cursor::new(Vec::new()), &layout, b"");
        w.data_block(&[0u8; BLOCK]).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn table_line() {
        let sb = Superblock {
            uuid: [0; 16],
            data_blocks: 256,
            salt: vec![0xab],
        };
        let (_, with_fec) = table(&sb, "7:0", "7:1", &[0x11; 32], Some(("7:2", 258)));
        assert!(
            with_fec
                .ends_with(" ab 8 use_fec_from_device 7:2 fec_roots 2 fec_blocks 258 fec_start 0"),
            "{with_fec}"
        );
        let (sectors, p) = table(&sb, "7:0", "7:1", &[0x11; 32], None);
        assert_eq!(OnError::default(), OnError::Restart);
        assert_eq!(sectors, 2048);
        assert_eq!(
            p,
            format!("1 7:0 7:1 4096 4096 256 1 sha256 {} ab", "11".repeat(32))
        );
        assert_eq!(OnError::parse("eio"), Some(OnError::Eio));
        assert_eq!(OnError::parse("x"), None);
    }
}
