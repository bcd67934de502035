//! dm-verity forward error correction: `IMAGE.fec`, the Reed-Solomon parity that lets
//! the kernel repair a corrupted block instead of failing the read, in the layout
//! `veritysetup format --fec-device` writes and the kernel's dm-verity-fec reads.
//!
//! The protected area is the image's data blocks followed by the hash file after its
//! superblock block. It is cut into `rsn = 255 - roots` columns of `rounds` blocks
//! each (zeros past the end); round `n` takes block `n + i * rounds` of each column
//! `i`, and for each byte offset `b` of a block the `rsn` bytes at `b` form one
//! RS(255, rsn) code word over GF(2^8) (polynomial 0x11d, first root 1^0, primitive
//! element 1). The `roots` parity bytes of each word are written in order: round by
//! round, byte by byte. One damaged byte per word is repairable per parity byte
//! pair, and the interleaving spreads a whole damaged block over `bs` words.
//! Pure: blocks in, parity out.

use std::io::{self, Write};

/// Parity bytes per code word (`veritysetup --fec-roots`, 2..=24; 2 is its default).
pub const DEFAULT_ROOTS: u8 = 2;
const NN: usize = 255;

/// The shape of the parity for an area of `blocks` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecLayout {
    pub roots: u8,
    /// Blocks covered: data blocks, then the hash file's blocks after its superblock
    /// (the table's `fec_blocks`).
    pub blocks: u64,
    pub rounds: u64,
}

impl FecLayout {
    pub fn new(blocks: u64, roots: u8) -> Result<FecLayout, String> {
        if !(2..=24).contains(&roots) {
            return Err(format!("{roots} FEC roots: from 2 to 24"));
        }
        Ok(FecLayout {
            roots,
            blocks,
            rounds: blocks.div_ceil(Self::rsn_of(roots) as u64),
        })
    }

    fn rsn_of(roots: u8) -> usize {
        NN - roots as usize
    }

    /// Data bytes per code word.
    pub fn rsn(&self) -> usize {
        Self::rsn_of(self.roots)
    }

    /// Bytes of the parity file.
    pub fn file_len(&self, block: usize) -> u64 {
        self.rounds * block as u64 * self.roots as u64
    }
}

/// A Reed-Solomon encoder over GF(2^8), polynomial 0x11d, generator roots
/// alpha^0 .. alpha^(roots-1) (the kernel's `init_rs(8, 0x11d, 0, 1, roots)`).
pub struct Rs {
    alpha: [u8; 256],
    log: [u8; 256],
    /// Generator polynomial coefficients as logs, highest degree first after 1.
    gen_log: Vec<u8>,
    roots: usize,
}

impl Rs {
    pub fn new(roots: u8) -> Rs {
        let (mut alpha, mut log) = ([0u8; 256], [0u8; 256]);
        let mut x: u16 = 1;
        for (i, a) in alpha.iter_mut().take(NN).enumerate() {
            *a = x as u8;
            log[x as usize] = i as u8;
            x <<= 1;
            if x & 0x100 != 0 {
                x ^= 0x11d;
            }
        }
        let roots = roots as usize;
        // g(x) = prod (x - alpha^i), i = 0..roots, coefficients g[0] (x^0) ..
        let mut g = vec![0u8; roots + 1];
        g[0] = 1;
        for i in 0..roots {
            for j in (1..=i + 1).rev() {
                g[j] = g[j - 1] ^ mul(&alpha, &log, g[j], alpha[i]);
            }
            g[0] = mul(&alpha, &log, g[0], alpha[i]);
        }
        // The LFSR below multiplies the feedback by g[roots-1-j] for parity[j];
        // g[roots] is 1. Zero coefficients cannot occur for these generators.
        let gen_log = g[..roots].iter().map(|&c| log[c as usize]).collect();
        Rs {
            alpha,
            log,
            gen_log,
            roots,
        }
    }

    /// The parity of `data` (at most 255 - roots bytes) into `parity` (roots bytes).
    pub fn encode(&self, data: &[u8], parity: &mut [u8]) {
        parity.fill(0);
        for &d in data {
            let fb = d ^ parity[0];
            parity.copy_within(1.., 0);
            parity[self.roots - 1] = 0;
            if fb != 0 {
                let lf = self.log[fb as usize] as usize;
                for (j, p) in parity.iter_mut().enumerate() {
                    let gl = self.gen_log[self.roots - 1 - j] as usize;
                    *p ^= self.alpha[(lf + gl) % NN];
                }
            }
        }
    }
}

fn mul(alpha: &[u8; 256], log: &[u8; 256], a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    alpha[(log[a as usize] as usize + log[b as usize] as usize) % NN]
}

/// Write the parity of the area described by `layout`: `read(block, buf)` fills
/// `buf` (one block) with area block `block` (`block < layout.blocks`).
pub fn write_parity(
    layout: &FecLayout,
    block: usize,
    mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    out: &mut impl Write,
) -> io::Result<()> {
    let rs = Rs::new(layout.roots);
    let rsn = layout.rsn();
    let mut buf = vec![0u8; block * rsn];
    let mut word = vec![0u8; rsn];
    let mut parity = vec![0u8; layout.roots as usize];
    let mut out_round = Vec::with_capacity(block * layout.roots as usize);
    for n in 0..layout.rounds {
        for (i, b) in buf.chunks_exact_mut(block).enumerate() {
            let at = n + i as u64 * layout.rounds;
            if at < layout.blocks {
                read(at, b)?;
            } else {
                b.fill(0);
            }
        }
        out_round.clear();
        for b in 0..block {
            for (i, w) in word.iter_mut().enumerate() {
                *w = buf[i * block + b];
            }
            rs.encode(&word, &mut parity);
            out_round.extend_from_slice(&parity);
        }
        out.write_all(&out_round)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A code word (data then parity) evaluates to zero at every generator root.
    #[test]
    fn code_words_vanish_at_the_roots() {
        for roots in [2u8, 4, 24] {
            let rs = Rs::new(roots);
            let data: Vec<u8> = (0..(255 - roots as usize))
                .map(|i| (i * 37 + 11) as u8)
                .collect();
            let mut parity = vec![0u8; roots as usize];
            rs.encode(&data, &mut parity);
            let word: Vec<u8> = data.iter().chain(&parity).copied().collect();
            for r in 0..roots as usize {
                // Horner: c(x) = word[0] x^(n-1) + ... + word[n-1].
                let x = rs.alpha[r];
                let v = word
                    .iter()
                    .fold(0u8, |acc, &c| mul(&rs.alpha, &rs.log, acc, x) ^ c);
                assert_eq!(v, 0, "roots {roots}, root {r}");
            }
        }
    }

    #[test]
    fn layout_sizes() {
        let l = FecLayout::new(1000, 2).unwrap();
        assert_eq!(l.rsn(), 253);
        assert_eq!(l.rounds, 4);
        assert_eq!(l.file_len(4096), 4 * 4096 * 2);
        assert!(FecLayout::new(10, 1).is_err());
    }
}
