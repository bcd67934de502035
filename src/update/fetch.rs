//! Building the new image in `System/.NAME.partial`, chunk by chunk in image order:
//! what an interrupted run left is kept (its chunks are checked again), chunks the
//! appliance already has are copied from its images, the rest come from the server
//! in coalesced Range requests. Every chunk is checked against its SHA-256 in the
//! (signed) chunk index before the next one starts, so the file is always a
//! verified prefix plus at most one unfinished chunk.

use super::http::Client;
use super::pick::{self, Local, Segment};
use crate::chunks::Chunk;
use crate::verify::Sha256Digest;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::IsTerminal;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Largest Range request: few requests, and each read still bounded by the timeout.
pub const MAX_REQUEST: u64 = 16 << 20;

/// What building the image took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub fetched: u64,
    pub reused: u64,
    pub resumed: u64,
    pub requests: u32,
}

/// The partial file, the image's chunks and where the bytes can come from.
pub struct Build<'a> {
    pub partial: &'a File,
    pub target: &'a [Chunk],
    pub local: &'a [File],
    pub store: &'a HashMap<Sha256Digest, Local>,
    pub client: &'a Client,
    /// The image's name on the server.
    pub name: &'a str,
}

/// Where a run resumes: chunks `..index` verified in the partial file, and `tail`
/// bytes of chunk `index` already there (unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub index: usize,
    pub tail: u64,
}

impl Resume {
    pub fn bytes(&self, target: &[Chunk]) -> u64 {
        target.get(self.index).map_or_else(
            || target.last().map_or(0, |c| c.offset + c.len),
            |c| c.offset + self.tail,
        )
    }
}

fn read_exact_at(f: &File, len: u64, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn digest(data: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(data).into())
}

/// Check what the partial file holds and cut it back to a verified prefix (plus the
/// unfinished chunk, when that chunk will come from the server).
pub fn resume(b: &Build) -> Result<Resume, String> {
    let have = b
        .partial
        .metadata()
        .map_err(|e| format!("cannot stat the partial file: {e}"))?
        .len();
    let mut index = 0;
    for c in b.target {
        if c.offset + c.len > have {
            break;
        }
        let data = read_exact_at(b.partial, c.len, c.offset)
            .map_err(|e| format!("cannot read the partial file: {e}"))?;
        if digest(&data) != c.sha256 {
            break;
        }
        index += 1;
    }
    let tail = match b.target.get(index) {
        // An unfinished chunk is kept; a whole one that did not match is not.
        Some(c) if !b.store.contains_key(&c.sha256) && have < c.offset + c.len => {
            have.saturating_sub(c.offset)
        }
        _ => 0,
    };
    let r = Resume { index, tail };
    b.partial
        .set_len(r.bytes(b.target))
        .map_err(|e| format!("cannot truncate the partial file: {e}"))?;
    Ok(r)
}

/// Fill the partial file from `from` on; returns the byte counts.
pub fn build(b: &Build, from: Resume) -> Result<Counts, String> {
    let mut counts = Counts {
        resumed: from.bytes(b.target),
        ..Counts::default()
    };
    let total = b.target.last().map_or(0, |c| c.offset + c.len);
    let mut progress = Progress::new(total, counts.resumed);
    let mut tail = from.tail;
    for seg in pick::segments(b.target, from.index, b.store, MAX_REQUEST) {
        match seg {
            Segment::Local { index, from } => {
                let c = b.target[index];
                match copy_local(b, &c, from) {
                    Ok(()) => counts.reused += c.len,
                    Err(why) => {
                        log::warn!("{why}; fetching it instead");
                        fetch(b, index, index + 1, 0, &mut counts)?;
                    }
                }
                progress.add(c.len);
            }
            Segment::Remote { first, end } => {
                let before = counts.fetched;
                fetch(b, first, end, tail, &mut counts)?;
                progress.add(counts.fetched - before);
                tail = 0;
            }
        }
    }
    progress.done();
    b.partial
        .sync_all()
        .map_err(|e| format!("cannot fsync the partial file: {e}"))?;
    Ok(counts)
}

/// Copy one chunk from a local image, checking its digest first.
fn copy_local(b: &Build, c: &Chunk, from: Local) -> Result<(), String> {
    let src = b.local.get(from.file).ok_or("no such local image")?;
    let data = read_exact_at(src, c.len, from.offset)
        .map_err(|e| format!("local chunk at {}: {e}", from.offset))?;
    if digest(&data) != c.sha256 {
        return Err(format!(
            "local chunk at {} changed since it was read",
            from.offset
        ));
    }
    write_at(b.partial, &data, c.offset)
}

fn write_at(f: &File, data: &[u8], offset: u64) -> Result<(), String> {
    f.write_all_at(data, offset).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
            "BootExt is full (ENOSPC) while writing the new image; make room (overboot update --keep K deletes old images) and run again: what was downloaded is kept".to_string()
        } else {
            format!("cannot write the partial file: {e}")
        }
    })
}

/// Fetch chunks `first..end` with one Range request, starting `tail` bytes into
/// chunk `first` (bytes an earlier run left), checking each chunk as it completes.
fn fetch(
    b: &Build,
    first: usize,
    end: usize,
    tail: u64,
    counts: &mut Counts,
) -> Result<(), String> {
    let (start, stop) = (
        b.target[first].offset,
        b.target[end - 1].offset + b.target[end - 1].len,
    );
    let mut index = first;
    let mut sha = Sha256::new();
    let mut in_chunk = tail;
    if tail > 0 {
        let have = read_exact_at(b.partial, tail, start)
            .map_err(|e| format!("cannot read the partial file: {e}"))?;
        sha.update(&have);
    }
    let mut pos = start + tail;
    let mut sink = |mut data: &[u8]| -> Result<(), String> {
        write_at(b.partial, data, pos)?;
        pos += data.len() as u64;
        counts.fetched += data.len() as u64;
        while !data.is_empty() {
            let c = &b.target[index];
            let take = ((c.len - in_chunk) as usize).min(data.len());
            let (now, rest) = data.split_at(take);
            sha.update(now);
            in_chunk += take as u64;
            data = rest;
            if in_chunk == c.len {
                let got = Sha256Digest(std::mem::take(&mut sha).finalize().into());
                if got != c.sha256 {
                    return Err(format!(
                        "the server sent wrong data for bytes {}-{} of {}: SHA-256 {got}, the signed chunk index says {}",
                        c.offset,
                        c.offset + c.len - 1,
                        b.name,
                        c.sha256
                    ));
                }
                index += 1;
                in_chunk = 0;
            }
        }
        Ok(())
    };
    counts.requests += 1;
    b.client.get_range(b.name, start + tail, stop, &mut sink)
}

/// A progress line (percent, MB/s, ETA) on a terminal; nothing in a unit.
struct Progress {
    total: u64,
    done: u64,
    /// Bytes done before this run (not counted in the rate).
    base: u64,
    start: Instant,
    shown: Option<Instant>,
    tty: bool,
}

impl Progress {
    fn new(total: u64, done: u64) -> Progress {
        Progress {
            total,
            done,
            base: done,
            start: Instant::now(),
            shown: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if !self.tty || self.shown.is_some_and(|t| t.elapsed().as_millis() < 250) {
            return;
        }
        self.shown = Some(Instant::now());
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = (self.done - self.base) as f64 / secs;
        let left = self.total.saturating_sub(self.done) as f64 / rate.max(1.0);
        eprint!(
            "\roverboot: update: {:3}% {:6.1} MB/s ETA {:4.0} s ",
            self.done * 100 / self.total.max(1),
            rate / 1e6,
            left
        );
    }

    fn done(&self) {
        if self.tty && self.shown.is_some() {
            eprintln!();
        }
    }
}
