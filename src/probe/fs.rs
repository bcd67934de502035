//! Filesystem superblock probes. Pure: bytes in, [`FsInfo`] out.
//!
//! Each probe reads only what it needs through [`ReadAt`], so the same code runs
//! over an in-memory buffer (tests) or an open block device (boot). Labels and
//! UUIDs come out in the text form `blkid` prints, so what an operator reads in
//! `blkid` is what `overboot.bootext=` accepts.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Positioned reads from a device or an image.
pub trait ReadAt {
    /// Read into `buf` from byte `offset`; returns how many bytes were read
    /// (fewer than `buf.len()` only at the end of the device).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let src = self.get(start..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(offset, buf)
    }
}

fn pread_fd(fd: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        match rustix::io::pread(fd, rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

impl ReadAt for BorrowedFd<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        pread_fd(self.as_fd(), offset, buf)
    }
}

impl ReadAt for OwnedFd {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        pread_fd(self.as_fd(), offset, buf)
    }
}

impl ReadAt for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        pread_fd(self.as_fd(), offset, buf)
    }
}

/// Read exactly `len` bytes at `offset`; `None` when the device is shorter or
/// cannot be read there.
pub(crate) fn read_exact(dev: &(impl ReadAt + ?Sized), offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    match dev.read_at(offset, &mut buf) {
        Ok(n) if n == len => Some(buf),
        _ => None,
    }
}

/// What a superblock says about a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// `TYPE` as blkid prints it: `ext2`, `ext3`, `ext4`, `vfat`, `btrfs`, `xfs`,
    /// `iso9660`, `squashfs` (also `jbd`, `ext4dev`).
    pub fs_type: &'static str,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let lo = u64::from(le32(b, at));
    let hi = u64::from(le32(b, at + 4));
    lo | (hi << 32)
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn field(b: &[u8], at: usize, len: usize) -> &[u8] {
    b.get(at..at + len).unwrap_or(&[])
}

/// A label stored as bytes: cut at the first NUL, trailing blanks dropped,
/// `None` when nothing is left.
fn text_label(raw: &[u8]) -> Option<String> {
    let raw = raw.split(|&c| c == 0).next().unwrap_or(&[]);
    let s = String::from_utf8_lossy(raw);
    let s = s.trim_end_matches([' ', '\t', '\n']);
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

/// 16 bytes in the usual 8-4-4-4-12 form, lowercase; `None` for all zeros.
pub(crate) fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&c| c == 0) {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{c:02x}"));
    }
    Some(s)
}

/// Identify the filesystem on `dev`, if any of the supported kinds is there.
pub fn probe_fs(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    // Order matters only for leftovers of an older filesystem; the ones whose
    // magic sits at offset 0 or deep in the device go first, FAT (the loosest
    // signature) last.
    probe_squashfs(dev)
        .or_else(|| probe_xfs(dev))
        .or_else(|| probe_btrfs(dev))
        .or_else(|| probe_ext(dev))
        .or_else(|| probe_iso9660(dev))
        .or_else(|| probe_vfat(dev))
}

fn probe_squashfs(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let sb = read_exact(dev, 0, 96)?;
    if field(&sb, 0, 4) != b"hsqs" {
        return None;
    }
    let major = le16(&sb, 28);
    if !(1..=4).contains(&major) {
        return None;
    }
    Some(FsInfo {
        fs_type: "squashfs",
        label: None,
        uuid: None,
    })
}

fn probe_xfs(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let sb = read_exact(dev, 0, 512)?;
    if field(&sb, 0, 4) != b"XFSB" {
        return None;
    }
    let block = be32(&sb, 4);
    let sect = be16(&sb, 102);
    if !(512..=65536).contains(&block)
        || !block.is_power_of_two()
        || !(512..=32768).contains(&sect)
        || !sect.is_power_of_two()
    {
        return None;
    }
    Some(FsInfo {
        fs_type: "xfs",
        label: text_label(field(&sb, 108, 12)),
        uuid: uuid_text(field(&sb, 32, 16)),
    })
}

fn probe_btrfs(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let sb = read_exact(dev, 0x10000, 0x1000)?;
    if field(&sb, 0x40, 8) != b"_BHRfS_M" {
        return None;
    }
    Some(FsInfo {
        fs_type: "btrfs",
        label: text_label(field(&sb, 0x12b, 256)),
        uuid: uuid_text(field(&sb, 0x20, 16)),
    })
}

// ext2/3/4 feature bits that decide which name the filesystem goes by.
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT_INCOMPAT_FILETYPE: u32 = 0x0002;
const EXT_INCOMPAT_RECOVER: u32 = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const EXT_INCOMPAT_META_BG: u32 = 0x0010;
const EXT_RO_COMPAT_OLD: u32 = 0x0001 | 0x0002 | 0x0004; // sparse_super, large_file, btree_dir
const EXT_FLAGS_TEST_FILESYS: u32 = 0x0004;

fn probe_ext(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let sb = read_exact(dev, 1024, 1024)?;
    if le16(&sb, 0x38) != 0xef53 {
        return None;
    }
    let compat = le32(&sb, 0x5c);
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    let ext3_incompat = EXT_INCOMPAT_FILETYPE | EXT_INCOMPAT_RECOVER | EXT_INCOMPAT_META_BG;
    let ext2_incompat = EXT_INCOMPAT_FILETYPE | EXT_INCOMPAT_META_BG;
    let newer = ro_compat & !EXT_RO_COMPAT_OLD != 0 || incompat & !ext3_incompat != 0;
    let fs_type = if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        "jbd"
    } else if newer {
        if le32(&sb, 0x160) & EXT_FLAGS_TEST_FILESYS != 0 {
            "ext4dev"
        } else {
            "ext4"
        }
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else if incompat & !ext2_incompat != 0 {
        "ext4"
    } else {
        "ext2"
    };
    Some(FsInfo {
        fs_type,
        label: text_label(field(&sb, 0x78, 16)),
        uuid: uuid_text(field(&sb, 0x68, 16)),
    })
}

const ISO_SECTOR: u64 = 2048;

fn probe_iso9660(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let mut primary: Option<Vec<u8>> = None;
    let mut joliet: Option<Vec<u8>> = None;
    for sector in 16..16 + 32 {
        let Some(vd) = read_exact(dev, sector * ISO_SECTOR, 2048) else {
            break;
        };
        if field(&vd, 1, 5) != b"CD001" {
            break;
        }
        match vd.first() {
            Some(1) if primary.is_none() => primary = Some(vd),
            Some(2) if joliet.is_none() && is_joliet(&vd) => joliet = Some(vd),
            Some(0xff) => break,
            _ => {}
        }
    }
    let pvd = primary?;
    let iso_label = field(&pvd, 40, 32);
    let label = match &joliet {
        Some(svd) => joliet_label(field(svd, 40, 32), iso_label),
        None => text_label(iso_label),
    };
    let uuid = iso_date(field(&pvd, 830, 17)).or_else(|| iso_date(field(&pvd, 813, 17)));
    Some(FsInfo {
        fs_type: "iso9660",
        label,
        uuid,
    })
}

fn is_joliet(svd: &[u8]) -> bool {
    field(svd, 88, 2) == b"%/" && matches!(svd.get(90), Some(b'@' | b'C' | b'E'))
}

/// Joliet keeps 16 UCS-2 characters; the primary descriptor may hold more of
/// the same name (32 bytes), so when it begins with the Joliet text its tail is
/// kept, as blkid does.
fn joliet_label(ucs2: &[u8], iso: &[u8]) -> Option<String> {
    let units: Vec<u16> = ucs2
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let mut name = String::from_utf16_lossy(&units);
    let iso_text = String::from_utf8_lossy(iso);
    let iso_trim = iso_text.trim_end_matches([' ', '\0']);
    if name.chars().count() == 16 && iso_trim.len() > 16 && iso_trim.is_char_boundary(16) {
        let (head, tail) = iso_trim.split_at(16);
        if head.eq_ignore_ascii_case(&name) {
            name.push_str(tail);
        }
    }
    let name = name.trim_end_matches([' ', '\0']);
    if name.is_empty() {
        text_label(iso)
    } else {
        Some(name.to_string())
    }
}

/// `YYYYMMDDHHMMSScc` + time zone byte → `YYYY-MM-DD-HH-MM-SS-cc`; `None` when
/// unset (all zeros).
fn iso_date(d: &[u8]) -> Option<String> {
    let digits = d.get(..16)?;
    if digits.iter().all(|&c| c == b'0' || c == 0) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    Some(format!(
        "{}-{}-{}-{}-{}-{}-{}",
        s.get(0..4)?,
        s.get(4..6)?,
        s.get(6..8)?,
        s.get(8..10)?,
        s.get(10..12)?,
        s.get(12..14)?,
        s.get(14..16)?
    ))
}

/// The parts of a FAT boot sector the probe needs.
struct Bpb {
    sector_size: u64,
    cluster_sectors: u64,
    reserved: u64,
    fats: u64,
    fat_sectors: u64,
    root_entries: u64,
    fat32: bool,
    root_cluster: u32,
}

fn probe_vfat(dev: &(impl ReadAt + ?Sized)) -> Option<FsInfo> {
    let bs = read_exact(dev, 0, 512)?;
    let fat1x = field(&bs, 0x36, 3) == b"FAT";
    let fat32 = field(&bs, 0x52, 5) == b"FAT32";
    if !fat1x && !fat32 {
        return None;
    }
    let bpb = Bpb {
        sector_size: u64::from(le16(&bs, 0x0b)),
        cluster_sectors: u64::from(*bs.get(0x0d)?),
        reserved: u64::from(le16(&bs, 0x0e)),
        fats: u64::from(*bs.get(0x10)?),
        fat_sectors: match le16(&bs, 0x16) {
            0 => u64::from(le32(&bs, 0x24)),
            n => u64::from(n),
        },
        root_entries: u64::from(le16(&bs, 0x11)),
        fat32: le16(&bs, 0x16) == 0,
        root_cluster: le32(&bs, 0x2c),
    };
    let media = *bs.get(0x15)?;
    if !(512..=4096).contains(&bpb.sector_size)
        || !bpb.sector_size.is_power_of_two()
        || bpb.cluster_sectors == 0
        || !bpb.cluster_sectors.is_power_of_two()
        || bpb.reserved == 0
        || bpb.fats == 0
        || bpb.fat_sectors == 0
        || !(media == 0xf0 || media >= 0xf8)
    {
        return None;
    }
    // Extended BPB: signature, serial, label; at 0x26 (FAT12/16) or 0x42 (FAT32).
    let ext = if bpb.fat32 { 0x42 } else { 0x26 };
    let has_ext = matches!(bs.get(ext), Some(0x28 | 0x29));
    let uuid = if has_ext {
        field(&bs, ext + 1, 4)
            .get(..4)
            .map(|s| format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0]))
    } else {
        None
    };
    let boot_label = if bs.get(ext) == Some(&0x29) {
        let raw = field(&bs, ext + 5, 11);
        if raw == b"NO NAME    " {
            None
        } else {
            fat_label(raw)
        }
    } else {
        None
    };
    let label = fat_root_label(dev, &bpb).or(boot_label);
    Some(FsInfo {
        fs_type: "vfat",
        label,
        uuid,
    })
}

fn fat_label(raw: &[u8]) -> Option<String> {
    let mut raw = raw.to_vec();
    if let Some(first) = raw.first_mut() {
        if *first == 0x05 {
            *first = 0xe5;
        }
    }
    text_label(&raw)
}

/// The volume-label entry of the root directory, which is what `fatlabel` and
/// Windows change (the boot sector copy often goes stale).
fn fat_root_label(dev: &(impl ReadAt + ?Sized), bpb: &Bpb) -> Option<String> {
    let fat_start = bpb.reserved * bpb.sector_size;
    let data_start = (bpb.reserved + bpb.fats * bpb.fat_sectors) * bpb.sector_size;
    if !bpb.fat32 {
        let len = usize::try_from(bpb.root_entries * 32).ok()?;
        let dir = read_exact(dev, data_start, len)?;
        return match scan_dir(&dir) {
            DirScan::Label(l) => l,
            _ => None,
        };
    }
    let cluster_bytes = bpb.cluster_sectors * bpb.sector_size;
    let root_dir_start = data_start;
    let mut cluster = bpb.root_cluster;
    // Follow the root directory's cluster chain, bounded against loops.
    for _ in 0..4096 {
        if !(2..0x0fff_fff8).contains(&cluster) {
            return None;
        }
        let at = root_dir_start + u64::from(cluster - 2) * cluster_bytes;
        let dir = read_exact(dev, at, usize::try_from(cluster_bytes).ok()?)?;
        match scan_dir(&dir) {
            DirScan::Label(l) => return l,
            DirScan::End => return None,
            DirScan::More => {}
        }
        let next = read_exact(dev, fat_start + u64::from(cluster) * 4, 4)?;
        cluster = le32(&next, 0) & 0x0fff_ffff;
    }
    None
}

enum DirScan {
    Label(Option<String>),
    End,
    More,
}

fn scan_dir(dir: &[u8]) -> DirScan {
    for e in dir.chunks_exact(32) {
        match e.first() {
            Some(0) | None => return DirScan::End,
            Some(0xe5) => continue,
            _ => {}
        }
        let attr = e.get(11).copied().unwrap_or(0);
        if attr == 0x0f {
            continue; // long-name fragment
        }
        if attr & 0x08 != 0 && attr & 0x10 == 0 {
            return DirScan::Label(fat_label(field(e, 0, 11)));
        }
    }
    DirScan::More
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_formats_and_rejects_zero() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_text(&b).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(uuid_text(&[0; 16]), None);
        assert_eq!(uuid_text(&[1; 3]), None);
    }

    #[test]
    fn iso_date_prefers_set_dates() {
        assert_eq!(
            iso_date(b"2026112200000000\0").unwrap(),
            "2026-11-22-00-00-00-00"
        );
        assert_eq!(iso_date(b"0000000000000000\0"), None);
        assert_eq!(iso_date(&[0; 17]), None);
        assert_eq!(iso_date(b"20x6112200000000\0"), None);
    }

    #[test]
    fn iso_falls_back_to_creation_date() {
        let mut img = vec![0u8; 20 * 2048];
        let pvd = 16 * 2048;
        img[pvd] = 1;
        img[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        img[pvd + 40..pvd + 72].copy_from_slice(b"CDROM                           ");
        img[pvd + 813..pvd + 829].copy_from_slice(b"2001020304050607");
        img[pvd + 830..pvd + 846].copy_from_slice(b"0000000000000000");
        img[pvd + 2048] = 0xff;
        img[pvd + 2049..pvd + 2054].copy_from_slice(b"CD001");
        let info = probe_fs(&img).unwrap();
        assert_eq!(info.fs_type, "iso9660");
        assert_eq!(info.label.as_deref(), Some("CDROM"));
        assert_eq!(info.uuid.as_deref(), Some("2001-02-03-04-05-06-07"));
    }

    #[test]
    fn joliet_label_merges_long_primary_name() {
        let j: Vec<u8> = "Boot Ext lower l"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        let iso = b"Boot Ext lower long name        ";
        assert_eq!(
            joliet_label(&j, iso).as_deref(),
            Some("Boot Ext lower long name")
        );
        let short: Vec<u8> = "abc"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .chain([0u8; 26])
            .collect();
        assert_eq!(joliet_label(&short, b"ABC").as_deref(), Some("abc"));
    }

    #[test]
    fn short_or_empty_input_is_not_a_filesystem() {
        assert_eq!(probe_fs(&[0u8; 0][..]), None);
        assert_eq!(probe_fs(&vec![0u8; 70 * 1024]), None);
        assert_eq!(probe_fs(&b"hsqs"[..]), None);
    }

    #[test]
    fn fat_label_restores_e5() {
        assert_eq!(fat_label(b"\x05BC        ").unwrap(), "\u{fffd}BC");
        assert_eq!(fat_label(b"NAME       ").as_deref(), Some("NAME"));
        assert_eq!(fat_label(b"           "), None);
    }
}
