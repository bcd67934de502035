//! Partition tables (GPT, and MBR as a bonus). Pure: bytes in, entries out.
//!
//! The kernel has already split the disk into partitions; what it does not
//! expose without udev is each partition's GPT unique GUID (`PARTUUID`) and name
//! (`PARTLABEL`). Entries are numbered the way the kernel numbers partitions
//! (GPT: slot index + 1; MBR: 1–4 primary, 5… logical), so sysfs' `partition`
//! attribute finds the entry of `vda1` or `nvme0n1p1` without guessing names.

use super::fs::{ReadAt, le32, le64, read_exact};

/// One partition as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// The kernel's partition number (sysfs `partition`).
    pub number: u32,
    /// `PARTUUID` as blkid prints it (lowercase).
    pub part_uuid: String,
    /// `PARTLABEL` (GPT name); `None` for MBR or an empty name.
    pub part_label: Option<String>,
    /// First sector, in the table's sector size.
    pub start: u64,
}

/// A partition table: `gpt` or `dos`, and its used entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTable {
    pub kind: &'static str,
    /// Sector size the table was found with (512 or 4096).
    pub sector_size: u64,
    pub entries: Vec<PartEntry>,
}

/// Read the partition table of a whole disk: GPT (512- or 4096-byte sectors),
/// else MBR. `None` when there is none.
pub fn parse_table(disk: &(impl ReadAt + ?Sized)) -> Option<PartTable> {
    parse_gpt(disk, 512)
        .or_else(|| parse_gpt(disk, 4096))
        .or_else(|| parse_mbr(disk))
}

/// GUID bytes as stored on disk (first three fields little-endian) → text.
pub fn guid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let mut order = [0u8; 16];
    for (dst, src) in order
        .iter_mut()
        .zip([3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15])
    {
        *dst = *b.get(src)?;
    }
    super::fs::uuid_text(&order)
}

/// CRC-32 (IEEE, reflected), as GPT uses it: four bits a step from a 16-entry
/// table (64 bytes), a quarter of the steps of the bit-by-bit loop for a 16 KiB
/// entry array, without the 1 KiB of a byte table in PID 1.
pub fn crc32(data: &[u8]) -> u32 {
    let step =
        |crc: u32, nibble: u8| (crc >> 4) ^ CRC32_NIBBLES[usize::from((crc as u8 ^ nibble) & 0xf)];
    !data
        .iter()
        .fold(!0u32, |crc, &byte| step(step(crc, byte), byte >> 4))
}

/// `CRC32_NIBBLES[n]`: the CRC-32 remainder of the four bits `n`.
const CRC32_NIBBLES: [u32; 16] = {
    let mut table = [0u32; 16];
    let mut n = 0;
    while n < 16 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 4 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
};

fn parse_gpt(disk: &(impl ReadAt + ?Sized), sector: u64) -> Option<PartTable> {
    let hdr = read_exact(disk, sector, 512)?;
    if hdr.get(..8)? != b"EFI PART" {
        return None;
    }
    let hdr_size = usize::try_from(le32(&hdr, 12)).ok()?;
    if !(92..=512).contains(&hdr_size) {
        return None;
    }
    let mut check = hdr.get(..hdr_size)?.to_vec();
    check.get_mut(16..20)?.fill(0);
    if crc32(&check) != le32(&hdr, 16) || le64(&hdr, 24) != 1 {
        return None;
    }
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80);
    let entry_size = le32(&hdr, 84);
    let total = u64::from(count) * u64::from(entry_size);
    // The spec's minimum is 16 KiB of entries; real tables stay near it.
    if entry_size < 128 || entry_size % 8 != 0 || total > 1 << 20 {
        return None;
    }
    let total = usize::try_from(total).ok()?;
    let table = read_exact(disk, entries_lba.checked_mul(sector)?, total)?;
    if crc32(&table) != le32(&hdr, 88) {
        return None;
    }
    let mut entries = Vec::new();
    for (i, e) in table.chunks_exact(entry_size as usize).enumerate() {
        if e.get(..16)?.iter().all(|&c| c == 0) {
            continue; // unused slot
        }
        let units: Vec<u16> = e
            .get(56..128)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        entries.push(PartEntry {
            number: u32::try_from(i + 1).ok()?,
            part_uuid: guid_text(e.get(16..32)?)?,
            part_label: if name.is_empty() { None } else { Some(name) },
            start: le64(e, 32),
        });
    }
    Some(PartTable {
        kind: "gpt",
        sector_size: sector,
        entries,
    })
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

fn parse_mbr(disk: &(impl ReadAt + ?Sized)) -> Option<PartTable> {
    let mbr = read_exact(disk, 0, 512)?;
    if mbr.get(510..512)? != [0x55, 0xaa] {
        return None;
    }
    let slots: Vec<&[u8]> = (0..4)
        .filter_map(|i| mbr.get(446 + 16 * i..462 + 16 * i))
        .collect();
    // A boot sector of a filesystem also ends in 55 AA; its "partition" bytes
    // are not plausible entries.
    if slots.iter().any(|s| !matches!(s.first(), Some(0 | 0x80))) {
        return None;
    }
    if slots.iter().any(|s| s.get(4) == Some(&0xee)) {
        return None; // protective MBR of a GPT that did not check out
    }
    if field_all_zero(&slots) {
        return None;
    }
    let signature = le32(&mbr, 440);
    let id = |n: u32| format!("{signature:08x}-{n:02x}");
    let mut entries = Vec::new();
    let mut extended = None;
    for (i, s) in slots.iter().enumerate() {
        let kind = s.get(4).copied().unwrap_or(0);
        let start = u64::from(le32(s, 8));
        if kind == 0 || le32(s, 12) == 0 {
            continue;
        }
        let number = u32::try_from(i + 1).ok()?;
        entries.push(PartEntry {
            number,
            part_uuid: id(number),
            part_label: None,
            start,
        });
        if is_extended(kind) && extended.is_none() {
            extended = Some(start);
        }
    }
    if let Some(ext_start) = extended {
        // Logical partitions: a chain of EBRs, each with one logical entry and
        // a link (relative to the extended partition's start) to the next.
        let mut ebr = ext_start;
        let mut number = 5u32;
        for _ in 0..256 {
            let Some(sec) = read_exact(disk, ebr * 512, 512) else {
                break;
            };
            if sec.get(510..512) != Some(&[0x55, 0xaa][..]) {
                break;
            }
            let (first, link) = (sec.get(446..462)?, sec.get(462..478)?);
            if first.get(4).is_some_and(|&k| k != 0) && le32(first, 12) != 0 {
                let start = ebr + u64::from(le32(first, 8));
                entries.push(PartEntry {
                    number,
                    part_uuid: id(number),
                    part_label: None,
                    start,
                });
                number += 1;
            }
            if !link.get(4).is_some_and(|&k| is_extended(k)) || le32(link, 8) == 0 {
                break;
            }
            ebr = ext_start + u64::from(le32(link, 8));
        }
    }
    Some(PartTable {
        kind: "dos",
        sector_size: 512,
        entries,
    })
}

fn field_all_zero(slots: &[&[u8]]) -> bool {
    slots.iter().all(|s| s.iter().all(|&c| c == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[0u8; 32]), 0x190a_55ad);
        assert_eq!(crc32(&[0xffu8; 32]), 0xff6c_ab0b);
    }

    #[test]
    fn guid_is_mixed_endian() {
        let raw = [
            0x3d, 0x2c, 0x1b, 0x0a, 0x5f, 0x4e, 0x71, 0x60, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7,
            0xe8, 0xf9,
        ];
        assert_eq!(
            guid_text(&raw).unwrap(),
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
        );
    }

    #[test]
    fn corrupt_gpt_header_is_refused() {
        let mut disk = vec![0u8; 64 * 1024];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[524..528].copy_from_slice(&92u32.to_le_bytes());
        assert_eq!(parse_gpt(&disk, 512), None);
        assert_eq!(parse_table(&disk), None);
    }
}
