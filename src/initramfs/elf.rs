//! Unwind tables out of `/init`: `overboot-init` is built with `panic = "abort"` and
//! its panic hook never returns (it prints the message and follows the failure
//! policy), so nothing ever reads its `.eh_frame`, nor the tables only an unwinder
//! reads: `.eh_frame_hdr` (its index) and `.gcc_except_table` (the landing pads the
//! standard library was built with, read by the personality routine while unwinding).
//! Zeroing those bytes in the copy that goes into the initramfs (the layout stays as it
//! is; zeros compress to nothing) saves about 30 KB of the compressed image, and 3.8 KB
//! more for `.gcc_except_table` (bench/boot.md). Only done for a binary that says it
//! never unwinds, with [`never_unwinds_marker`] in its data.

/// The marker `overboot-init` carries when built with `panic = "abort"`. Built from two
/// halves so that the program that searches for it does not carry it whole.
pub fn never_unwinds_marker() -> Vec<u8> {
    [
        &b"overboot-init: panic=abort, "[..],
        &b"never unwinds\0"[..],
    ]
    .concat()
}

/// Whether `elf` carries the marker.
pub fn declares_no_unwinding(elf: &[u8]) -> bool {
    let marker = never_unwinds_marker();
    elf.windows(marker.len()).any(|w| w == marker.as_slice())
}

/// Zero the contents of `.eh_frame`, `.eh_frame_hdr` and `.gcc_except_table` of a
/// little-endian ELF64 file; returns the number of bytes zeroed. Anything that does not parse is left alone (0).
pub fn zero_unwind_tables(elf: &mut [u8]) -> usize {
    let Some(sections) = sections(elf) else {
        return 0;
    };
    let mut zeroed = 0;
    for (name, range) in sections {
        if matches!(
            name.as_slice(),
            b".eh_frame" | b".eh_frame_hdr" | b".gcc_except_table"
        ) && let Some(bytes) = elf.get_mut(range)
        {
            bytes.fill(0);
            zeroed += bytes.len();
        }
    }
    zeroed
}

/// (name, file range) of every section with contents in the file.
fn sections(elf: &[u8]) -> Option<Vec<(Vec<u8>, std::ops::Range<usize>)>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None; // not ELF64 little-endian
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    if shentsize < 0x40 || shstrndx >= shnum {
        return None;
    }
    let header = |i: usize| -> Option<(u32, u32, std::ops::Range<usize>)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(h)?;
        let kind = u32_at(h + 4)?;
        let start = usize::try_from(u64_at(h + 0x18)?).ok()?;
        let len = usize::try_from(u64_at(h + 0x20)?).ok()?;
        Some((name, kind, start..start.checked_add(len)?))
    };
    let (_, _, strtab) = header(shstrndx)?;
    let strtab = elf.get(strtab)?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let (name, kind, range) = header(i)?;
        const SHT_NOBITS: u32 = 8;
        if kind == SHT_NOBITS {
            continue;
        }
        let name = strtab.get(usize::try_from(name).ok()?..)?;
        let end = name.iter().position(|b| *b == 0)?;
        out.push((name[..end].to_vec(), range));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a null section, .text, .eh_frame, .shstrtab and
    /// .gcc_except_table.
    fn tiny_elf() -> Vec<u8> {
        let strtab = b"\0.text\0.eh_frame\0.shstrtab\0.gcc_except_table\0";
        let mut elf = vec![0u8; 0x40];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let text_at = elf.len();
        elf.extend([0x90u8; 16]);
        let eh_at = elf.len();
        elf.extend([0xabu8; 24]);
        let except_at = elf.len();
        elf.extend([0xcdu8; 8]);
        let str_at = elf.len();
        elf.extend(strtab);
        let shoff = elf.len();
        let sh = |name: u32, kind: u32, off: usize, len: usize| {
            let mut h = vec![0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(len as u64).to_le_bytes());
            h
        };
        let headers = [
            sh(0, 0, 0, 0),
            sh(1, 1, text_at, 16),
            sh(7, 1, eh_at, 24),
            sh(17, 3, str_at, strtab.len()),
            sh(27, 1, except_at, 8),
        ]
        .concat();
        elf.extend(headers);
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        elf
    }

    #[test]
    fn zeroes_only_the_unwind_tables() {
        let mut elf = tiny_elf();
        assert_eq!(zero_unwind_tables(&mut elf), 32);
        assert!(elf[0x40..0x50].iter().all(|b| *b == 0x90), ".text kept");
        assert!(elf[0x50..0x68].iter().all(|b| *b == 0), ".eh_frame zeroed");
        assert!(
            elf[0x68..0x70].iter().all(|b| *b == 0),
            ".gcc_except_table zeroed"
        );
        assert!(elf[0x70..0x70 + 10].starts_with(b"\0.text\0"), "names kept");
    }

    #[test]
    fn anything_else_is_left_alone() {
        for mut bad in [b"not an elf".to_vec(), tiny_elf()[..0x30].to_vec(), {
            let mut e = tiny_elf();
            e[0x3e] = 9; // string table index out of range
            e
        }] {
            let before = bad.clone();
            assert_eq!(zero_unwind_tables(&mut bad), 0);
            assert_eq!(bad, before);
        }
    }

    #[test]
    fn marker_is_found_only_whole() {
        let m = never_unwinds_marker();
        assert!(declares_no_unwinding(
            &[b"xx".as_slice(), &m, b"yy"].concat()
        ));
        assert!(!declares_no_unwinding(&m[..m.len() - 1]));
    }
}
