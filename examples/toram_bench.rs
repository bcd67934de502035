//! Used by `bench/toram`: copy an image into a fresh tmpfs and check its SHA-256 in
//! the same pass, by overboot's own code path (`sys::toram::copy_to_ram`), and print
//! `bytes seconds`. Needs root (it creates a tmpfs). Not part of the boot.
//!
//!   toram_bench IMAGE SHA256-HEX [--no-copy]

use overboot::sys::toram::{self, PassError, Progress};
use overboot::verify::{Expected, Sha256Digest};
use rustix::fs::{Mode, OFlags};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(image), Some(hex)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: toram_bench IMAGE SHA256-HEX [--no-copy]");
        std::process::exit(2);
    };
    let copy = args.get(3).map(String::as_str) != Some("--no-copy");
    let Some(digest) = Sha256Digest::parse_hex(hex) else {
        eprintln!("toram_bench: {hex} is not a SHA-256 digest");
        std::process::exit(2);
    };
    let file = match rustix::fs::open(
        image.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("toram_bench: {image}: {e}");
            std::process::exit(1);
        }
    };
    let size = match rustix::fs::fstat(&file) {
        Ok(st) => st.st_size as u64,
        Err(e) => {
            eprintln!("toram_bench: {image}: {e}");
            std::process::exit(1);
        }
    };
    let expected = Expected {
        sha256: Some((digest, "bench".into())),
        signature: None,
        note: None,
    };
    let start = Instant::now();
    let result = expected.digester().and_then(|mut d| {
        let mut progress = Progress::with_output(None, "toram", image, size);
        let pass = if copy {
            toram::copy_to_ram(&file, size, image, Some(&mut d), &mut progress).map(drop)
        } else {
            toram::pass(&file, size, image, None, Some(&mut d), &mut progress)
        };
        pass.map_err(|e| match e {
            PassError::Source(e) | PassError::Ram(e) => e,
        })?;
        d.finish(image).map(drop)
    });
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => println!("{size} {secs:.6}"),
        Err(e) => {
            eprintln!("toram_bench: {e}");
            std::process::exit(1);
        }
    }
}
