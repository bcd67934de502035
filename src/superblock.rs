//! The squashfs superblock check that runs before an image is attached: a truncated,
//! corrupt or foreign file is refused with a reason instead of failing deep in the
//! kernel. Pure: bytes in, verdict out.

/// Bytes of the squashfs superblock.
pub const SUPERBLOCK_LEN: usize = 96;
/// How much of a file [`identify_foreign`] wants to see (ext4's magic sits at 1080).
pub const PROBE_LEN: usize = 4096;

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";

/// What the superblock says about an image that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squashfs {
    pub compression: &'static str,
    pub block_size: u32,
    pub bytes_used: u64,
    pub inodes: u32,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    (le_u32(b, at) as u64) | ((le_u32(b, at + 4) as u64) << 32)
}

/// Check that `head` (the first bytes of a file of `file_size` bytes) is a squashfs 4
/// image the kernel can mount. The error says what the file is instead, if known.
pub fn check_squashfs(head: &[u8], file_size: u64) -> Result<Squashfs, String> {
    if head.len() < SUPERBLOCK_LEN || file_size < SUPERBLOCK_LEN as u64 {
        if file_size == 0 {
            return Err("the file is empty".into());
        }
        return Err(format!(
            "the file is {file_size} bytes, too short to hold a squashfs superblock"
        ));
    }
    if &head[..4] != SQUASHFS_MAGIC {
        let what = identify_foreign(head)
            .map(|w| format!("it looks like {w}"))
            .unwrap_or_else(|| "no squashfs magic 'hsqs' at offset 0".into());
        return Err(format!("not a squashfs image: {what}"));
    }
    let major = le_u16(head, 28);
    let minor = le_u16(head, 30);
    if major != 4 {
        return Err(format!(
            "squashfs version {major}.{minor}: Linux mounts only version 4"
        ));
    }
    let compression = match le_u16(head, 20) {
        1 => "gzip",
        2 => return Err("squashfs compressed with legacy lzma, which Linux cannot mount: rebuild it with mksquashfs -comp xz".into()),
        3 => "lzo",
        4 => "xz",
        5 => "lz4",
        6 => "zstd",
        other => return Err(format!("unknown squashfs compression id {other}: the superblock is corrupt")),
    };
    let block_size = le_u32(head, 12);
    let block_log = le_u16(head, 22);
    if !(12..=20).contains(&block_log) || block_size != 1 << block_log {
        return Err(format!(
            "block size {block_size} (log {block_log}) is not a power of two from 4 KiB to 1 MiB: the superblock is corrupt"
        ));
    }
    let bytes_used = le_u64(head, 40);
    if bytes_used > file_size {
        return Err(format!(
            "the image says it is {bytes_used} bytes but the file has only {file_size}: it is truncated (an interrupted copy?)"
        ));
    }
    if bytes_used < SUPERBLOCK_LEN as u64 {
        return Err(format!(
            "bytes_used {bytes_used} is impossibly small: the superblock is corrupt"
        ));
    }
    Ok(Squashfs {
        compression,
        block_size,
        bytes_used,
        inodes: le_u32(head, 4),
    })
}

/// Name a few formats people put where a squashfs belongs, for a better message.
pub fn identify_foreign(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"\xfd7zXZ\0") {
        Some(
            "an xz-compressed file (squashfs images carry their compression inside: build with mksquashfs -comp xz, do not xz the image)",
        )
    } else if starts(b"\x1f\x8b") {
        Some("a gzip-compressed file")
    } else if starts(b"\x28\xb5\x2f\xfd") {
        Some("a zstd-compressed file")
    } else if starts(b"sqsh") {
        Some("a big-endian squashfs (Linux mounts little-endian squashfs 4 only)")
    } else if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xef {
        Some("an ext2/3/4 filesystem")
    } else if starts(b"\x7fELF") {
        Some("an ELF executable")
    } else if head.len() >= 512 && head.iter().take(512).all(|b| *b == 0) {
        Some("zeros (a sparse or wiped file)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(compression: u16, block_log: u16, bytes_used: u64, major: u16) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[..4].copy_from_slice(b"hsqs");
        b[4..8].copy_from_slice(&7u32.to_le_bytes());
        b[12..16].copy_from_slice(&(1u32 << block_log).to_le_bytes());
        b[20..22].copy_from_slice(&compression.to_le_bytes());
        b[22..24].copy_from_slice(&block_log.to_le_bytes());
        b[28..30].copy_from_slice(&major.to_le_bytes());
        b[40..48].copy_from_slice(&bytes_used.to_le_bytes());
        b
    }

    #[test]
    fn good_superblocks() {
        for (id, name) in [(1, "gzip"), (3, "lzo"), (4, "xz"), (5, "lz4"), (6, "zstd")] {
            let sb = check_squashfs(&superblock(id, 17, 4096, 4), 4096).unwrap();
            assert_eq!(sb.compression, name);
            assert_eq!(sb.block_size, 131072);
            assert_eq!(sb.inodes, 7);
        }
    }

    #[test]
    fn bad_superblocks() {
        let mut ext4 = vec![0u8; 2048];
        ext4[1080] = 0x53;
        ext4[1081] = 0xef;
        let table: Vec<(Vec<u8>, u64, &str)> = vec![
            (vec![], 0, "empty"),
            (b"hsqs".to_vec(), 4, "too short"),
            (superblock(4, 17, 8192, 4), 4096, "truncated"),
            (superblock(4, 17, 4096, 3), 4096, "version 3"),
            (superblock(2, 17, 4096, 4), 4096, "legacy lzma"),
            (
                superblock(9, 17, 4096, 4),
                4096,
                "unknown squashfs compression",
            ),
            (superblock(4, 9, 4096, 4), 4096, "block size"),
            (superblock(4, 17, 10, 4), 4096, "impossibly small"),
            (
                b"\xfd7zXZ\0".iter().copied().chain([0u8; 200]).collect(),
                4096,
                "xz-compressed",
            ),
            (ext4, 1 << 20, "ext2/3/4"),
            (vec![0u8; 4096], 4096, "zeros"),
            (vec![b'x'; 4096], 4096, "no squashfs magic"),
        ];
        for (bytes, size, want) in table {
            let err = check_squashfs(&bytes, size).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
