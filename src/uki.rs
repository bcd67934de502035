//! `overboot mkuki`: a unified kernel image. The kernel, overboot's initramfs (with the
//! trusted image keys inside) and the kernel command line become one PE file on
//! systemd's EFI stub, the way `ukify` makes it: `objcopy` adds the sections `.osrel`,
//! `.cmdline`, `.initrd` and `.linux` after the stub's own, and `sbsign` signs the
//! whole. Under Secure Boot the firmware checks that one signature, so nobody with the
//! stick can swap the initramfs or edit the command line (the stub ignores a command
//! line from the boot loader when the image is signed and carries its own).
//!
//! The layout is pure ([`pe_layout`], [`place_sections`]); `objcopy` and `sbsign` do
//! the writing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// systemd-boot-efi's stub.
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub output: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub os_release: Option<PathBuf>,
    pub stub: Option<PathBuf>,
    pub sign: Option<(PathBuf, PathBuf)>,
}

/// What the layout needs from the stub's PE header.
#[derive(Debug, PartialEq)]
pub struct PeLayout {
    pub image_base: u64,
    /// First address (relative to the image base) after the stub's last section.
    pub end: u64,
}

/// Sections are placed on page boundaries (a multiple of any PE section alignment the
/// stub uses up to 4 KiB).
const ALIGN: u64 = 4096;

fn le16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
}
fn le32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?).into())
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a PE32+ header: its image base and where its sections end in memory.
pub fn pe_layout(pe: &[u8]) -> Result<PeLayout, String> {
    let bad = |what: &str| format!("not a 64-bit EFI program (PE32+): {what}");
    if pe.get(..2) != Some(b"MZ") {
        return Err(bad("no MZ header"));
    }
    let pe_at = le32(pe, 0x3c).ok_or_else(|| bad("truncated DOS header"))? as usize;
    if pe.get(pe_at..pe_at + 4) != Some(b"PE\0\0") {
        return Err(bad("no PE signature"));
    }
    let coff = pe_at + 4;
    let sections = le16(pe, coff + 2).ok_or_else(|| bad("truncated COFF header"))?;
    let opt_size = le16(pe, coff + 16).ok_or_else(|| bad("truncated COFF header"))? as usize;
    let opt = coff + 20;
    if le16(pe, opt) != Some(0x20b) {
        return Err(bad("the optional header is not PE32+"));
    }
    let image_base = le64(pe, opt + 24).ok_or_else(|| bad("truncated optional header"))?;
    let table = opt + opt_size;
    let mut end = 0;
    for i in 0..sections as usize {
        let s = table + i * 40;
        let (Some(vsize), Some(vaddr), Some(raw)) =
            (le32(pe, s + 8), le32(pe, s + 12), le32(pe, s + 16))
        else {
            return Err(bad("truncated section table"));
        };
        end = end.max(vaddr + vsize.max(raw));
    }
    if end == 0 {
        return Err(bad("no sections"));
    }
    Ok(PeLayout { image_base, end })
}

fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Addresses (VMAs, image base included) for sections of the given sizes, in order,
/// each on its own page after the stub's sections.
pub fn place_sections(stub: &PeLayout, sizes: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    let mut at = align_up(stub.end);
    sizes
        .iter()
        .map(|&(name, size)| {
            let vma = stub.image_base + at;
            at = align_up(at + size.max(1));
            (name, vma)
        })
        .collect()
}

/// A command line that fits in `.cmdline`: one line, no NUL.
pub fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if cmdline.contains(['\n', '\0']) {
        return Err("--cmdline: one line without NUL bytes".into());
    }
    Ok(())
}

fn default_os_release() -> String {
    format!(
        "NAME=overboot\nID=overboot\nPRETTY_NAME=\"overboot appliance\"\nVERSION_ID={}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The `mkuki` command: build, then say what was built. Exit code 0 or 1.
pub fn execute(opts: &Options) -> i32 {
    match run(opts) {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("overboot: mkuki: {e}");
            1
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn tool(cmd: &mut Command, package: &str) -> Result<(), String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {name} ({e}): apt-get install {package}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Builds (and signs) the image next to the output, then renames it into place.
pub fn run(o: &Options) -> Result<String, String> {
    let stub_path = o.stub.clone().unwrap_or_else(|| DEFAULT_STUB.into());
    let stub = read(
        &stub_path,
        "the EFI stub (apt-get install systemd-boot-efi)",
    )?;
    let layout = pe_layout(&stub).map_err(|e| format!("{}: {e}", stub_path.display()))?;
    let kernel = read(&o.kernel, "--kernel")?;
    pe_layout(&kernel).map_err(|e| {
        format!(
            "--kernel {}: {e} (the kernel needs its EFI stub, CONFIG_EFI_STUB)",
            o.kernel.display()
        )
    })?;
    let initrd_len = fs::metadata(&o.initrd)
        .map_err(|e| format!("--initrd {}: {e}", o.initrd.display()))?
        .len();
    let dir = o
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = o
        .output
        .file_name()
        .ok_or("-o FILE names no file")?
        .to_string_lossy();
    let tmp = |suffix: &str| dir.join(format!(".{name}.{suffix}.tmp"));
    let (osrel, cmdline, unsigned, signed) =
        (tmp("osrel"), tmp("cmdline"), tmp("unsigned"), tmp("signed"));
    let cleanup = || {
        for f in [&osrel, &cmdline, &unsigned, &signed] {
            let _ = fs::remove_file(f);
        }
    };
    let result = (|| {
        let osrel_text = match &o.os_release {
            Some(p) => read(p, "--os-release")?,
            None => default_os_release().into_bytes(),
        };
        fs::write(&osrel, &osrel_text).map_err(|e| format!("{}: {e}", osrel.display()))?;
        fs::write(&cmdline, &o.cmdline).map_err(|e| format!("{}: {e}", cmdline.display()))?;
        let sections = [
            (".osrel", &osrel, osrel_text.len() as u64),
            (".cmdline", &cmdline, o.cmdline.len() as u64),
            (".initrd", &o.initrd, initrd_len),
            // The kernel last, as ukify does: nothing follows it in memory.
            (".linux", &o.kernel, kernel.len() as u64),
        ];
        let sizes: Vec<_> = sections.iter().map(|&(n, _, s)| (n, s)).collect();
        let mut objcopy = Command::new("objcopy");
        for ((name, file, _), (_, vma)) in sections.iter().zip(place_sections(&layout, &sizes)) {
            objcopy
                .arg("--add-section")
                .arg(format!("{name}={}", file.display()))
                .arg("--change-section-vma")
                .arg(format!("{name}={vma:#x}"));
        }
        tool(objcopy.arg(&stub_path).arg(&unsigned), "binutils")?;
        let done = match &o.sign {
            Some((key, cert)) => {
                tool(
                    Command::new("sbsign")
                        .arg("--key")
                        .arg(key)
                        .arg("--cert")
                        .arg(cert)
                        .arg("--output")
                        .arg(&signed)
                        .arg(&unsigned),
                    "sbsigntool",
                )?;
                &signed
            }
            None => &unsigned,
        };
        fs::rename(done, &o.output).map_err(|e| format!("cannot write {}: {e}", o.output.display()))
    })();
    cleanup();
    result?;
    Ok(format!(
        "wrote {}: {} on {}, {} KiB kernel, {} KiB initramfs, command line \"{}\", {}",
        o.output.display(),
        o.kernel.display(),
        stub_path.display(),
        kernel.len() / 1024,
        initrd_len / 1024,
        o.cmdline,
        if o.sign.is_some() {
            "signed"
        } else {
            "unsigned"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ header with the given sections (virtual address, virtual size, raw size).
    fn pe(base: u64, sections: &[(u32, u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x80];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b.extend_from_slice(b"PE\0\0");
        let mut coff = [0u8; 20];
        coff[2..4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        coff[16..18].copy_from_slice(&240u16.to_le_bytes());
        b.extend_from_slice(&coff);
        let mut opt = [0u8; 240];
        opt[..2].copy_from_slice(&0x20bu16.to_le_bytes());
        opt[24..32].copy_from_slice(&base.to_le_bytes());
        b.extend_from_slice(&opt);
        for &(vaddr, vsize, raw) in sections {
            let mut s = [0u8; 40];
            s[8..12].copy_from_slice(&vsize.to_le_bytes());
            s[12..16].copy_from_slice(&vaddr.to_le_bytes());
            s[16..20].copy_from_slice(&raw.to_le_bytes());
            b.extend_from_slice(&s);
        }
        b
    }

    #[test]
    fn layout_ends_after_the_furthest_section_raw_or_virtual() {
        let l = pe_layout(&pe(0, &[(0x4000, 0xbff0, 0xc000), (0x19100, 0x34, 0x200)])).unwrap();
        assert_eq!(
            l,
            PeLayout {
                image_base: 0,
                end: 0x19300
            }
        );
        let l = pe_layout(&pe(0x1_0000_0000, &[(0x1000, 0x5000, 0x200)])).unwrap();
        assert_eq!(l.end, 0x6000);
        assert_eq!(l.image_base, 0x1_0000_0000);
    }

    #[test]
    fn sections_go_on_their_own_pages_in_order_after_the_stub() {
        let stub = PeLayout {
            image_base: 0x1000_0000,
            end: 0x19300,
        };
        let placed = place_sections(
            &stub,
            &[
                (".osrel", 60),
                (".cmdline", 0),
                (".initrd", 4096),
                (".linux", 8_000_000),
            ],
        );
        assert_eq!(
            placed,
            vec![
                (".osrel", 0x1000_0000 + 0x1a000),
                (".cmdline", 0x1000_0000 + 0x1b000),
                (".initrd", 0x1000_0000 + 0x1c000),
                (".linux", 0x1000_0000 + 0x1d000),
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_a_pe32_plus() {
        assert!(pe_layout(b"\x7fELF").unwrap_err().contains("no MZ header"));
        let mut p = pe(0, &[(0x1000, 0x10, 0x10)]);
        p[0x80 + 24] = 0x0b; // PE32 (0x10b), not PE32+
        p[0x80 + 25] = 0x01;
        assert!(pe_layout(&p).unwrap_err().contains("not PE32+"));
        let p = pe(0, &[(0x1000, 0x10, 0x10)]);
        assert!(
            pe_layout(&p[..p.len() - 30])
                .unwrap_err()
                .contains("truncated section table")
        );
        assert!(pe_layout(&pe(0, &[])).unwrap_err().contains("no sections"));
    }

    #[test]
    fn the_debian_stub_is_read() {
        let Ok(stub) = fs::read(DEFAULT_STUB) else {
            panic!("{DEFAULT_STUB} is missing: apt-get install systemd-boot-efi");
        };
        let l = pe_layout(&stub).unwrap();
        assert!(l.end > 0x1000 && l.end < 0x100000, "{l:?}");
    }
}
