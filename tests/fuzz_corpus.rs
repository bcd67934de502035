//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and crash
//! regressions (`fuzz/regressions/<target>/`) through the same entry points the
//! libFuzzer targets use, so a stable-only CI catches what the fuzzer once found.

#[path = "../fuzz/shared/entry.rs"]
mod entry;

use std::panic;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every input of one target; returns how many ran. Fails listing each input
/// that panicked (with its message), not just the first.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let mut inputs = files(&fuzz_dir().join("corpus").join(target));
    inputs.extend(files(&fuzz_dir().join("regressions").join(target)));
    let mut failures = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        if let Err(e) = panic::catch_unwind(|| f(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs panic:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
    inputs.len()
}

#[test]
fn cmdline_corpus() {
    assert!(replay("cmdline", entry::cmdline) > 0);
}

#[test]
fn manifest_corpus() {
    assert!(replay("manifest", entry::manifest) > 0);
}

#[test]
fn names_corpus() {
    assert!(replay("names", entry::names) > 0);
}

#[test]
fn probe_corpus() {
    assert!(replay("probe", entry::probe) > 0);
}

#[test]
fn kmod_corpus() {
    assert!(replay("kmod", entry::kmod) > 0);
}

#[test]
fn trial_corpus() {
    assert!(replay("trial", entry::trial) > 0);
}

/// Every target has a corpus directory, and every corpus directory a target.
#[test]
fn every_target_has_a_corpus() {
    let names: Vec<&str> = entry::TARGETS.iter().map(|(n, _)| *n).collect();
    let mut dirs: Vec<String> = files_and_dirs(&fuzz_dir().join("corpus"));
    dirs.sort();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(dirs, expected);
}

fn files_and_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The sparse device the probe target reads through: encode/decode round trip on
/// a made-up image (bytes at 0, 32 KiB and just before the end).
#[test]
fn sparse_device_round_trip() {
    use overboot::probe::fs::ReadAt;
    let mut image = vec![0u8; 70_000];
    image[0..4].copy_from_slice(b"hsqs");
    image[32_768..32_775].copy_from_slice(b"\x01CD001\x01");
    image[69_000] = 7;
    let enc = entry::Sparse::encode(&image);
    assert!(enc.len() < 2_000, "encoded {} bytes", enc.len());
    let dev = entry::Sparse::decode(&enc);
    assert_eq!(dev.len, 69_632); // whole sectors
    let mut back = vec![0u8; image.len()];
    let n = dev.read_at(0, &mut back).unwrap();
    assert_eq!(n, 69_632);
    assert_eq!(&back[..n], &image[..n]);
    let mut mid = [0u8; 10];
    assert_eq!(dev.read_at(32_766, &mut mid).unwrap(), 10);
    assert_eq!(&mid[2..9], b"\x01CD001\x01");
}
