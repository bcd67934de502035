//! toram (DESIGN section 2 step 5): copy the system image into RAM before it is
//! attached, and the single read pass that also feeds verification.
//!
//! The copy goes into a tmpfs of its own, sized to the image, created with the new
//! mount API and never attached anywhere: the file is created through the detached
//! mount's descriptor, reopened read-only, and handed to the loop device. The loop
//! device then holds the only reference; when it goes (autoclear, at unmount) the
//! tmpfs and its memory go with it. BootExt is no longer needed by the image.
//!
//! Holes of a sparse image are found with `SEEK_DATA`/`SEEK_HOLE` and stay holes in
//! RAM (they are hashed as zeros). Progress goes to `/dev/console` in PID-1 mode and
//! to standard error in `assemble` mode when it is a terminal, updated in place with
//! `\r` at most four times a second; the summary is a log line.
//!
//! The pure parts ([`parse_meminfo`], [`ram_budget`], [`progress_line`]) are
//! unit-tested; the rest is tested in `tests/toram.rs` and `tests/e2e_verify.rs`.

use super::errno_text;
use crate::verify::Digester;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Advice, Mode, OFlags, SeekFrom};
use rustix::io::Errno;
use rustix::mount::MountAttrFlags;
use std::io::Write;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Read size of one step of the pass.
const CHUNK: usize = 4 << 20;
/// Buffers in flight between the reader, writer and hashing threads.
const RING: usize = 4;
/// How far ahead of the pass the disk is asked to read (reads through the page cache).
const AHEAD: u64 = 32 << 20;
/// Kept free besides the copy: the larger of this and [`MARGIN_PERCENT`] of RAM.
pub const MARGIN_MIN: u64 = 64 * MIB;
pub const MARGIN_PERCENT: u64 = 5;

/// `MemAvailable` and `MemTotal` (bytes) from `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64), String> {
    let field = |name: &str| -> Result<u64, String> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .ok_or_else(|| format!("/proc/meminfo has no {name} line"))?;
        let mut words = line.split_whitespace().skip(1);
        let n: u64 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("/proc/meminfo: cannot read '{line}'"))?;
        let unit = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(u) => return Err(format!("/proc/meminfo: unknown unit {u} in '{line}'")),
        };
        n.checked_mul(unit)
            .ok_or_else(|| format!("/proc/meminfo: '{line}' overflows"))
    };
    Ok((field("MemAvailable")?, field("MemTotal")?))
}

/// How much the copy may take: available memory minus the margin.
pub fn ram_budget(available: u64, total: u64) -> u64 {
    let margin = MARGIN_MIN.max(total / 100 * MARGIN_PERCENT);
    available.saturating_sub(margin)
}

pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / MIB as f64)
}

/// What a refusal of toram tells the operator to change.
pub const TORAM_FIX: &str = "give the machine more memory or boot without overboot.toram";

/// Refusal when `need` bytes do not fit in the budget from `meminfo`; `fix` ends it.
pub fn check_fits(need: u64, meminfo: &str, image: &str, fix: &str) -> Result<(), String> {
    let (avail, total) = parse_meminfo(meminfo)?;
    let budget = ram_budget(avail, total);
    if need > budget {
        return Err(format!(
            "{image} needs {} in RAM, only {} can be spared ({} available of {}, keeping {} free); {fix}",
            mib(need),
            mib(budget),
            mib(avail),
            mib(total),
            mib(avail - budget),
        ));
    }
    Ok(())
}

/// One progress line (no line end): `overboot: toram NAME  42% 420.0/1000.0 MiB 85 MB/s ETA 7s`.
pub fn progress_line(verb: &str, name: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let pct = if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 && done < total {
        format!("ETA {:.0}s", (total - done) as f64 / rate)
    } else {
        "ETA -".to_string()
    };
    format!(
        "overboot: {verb} {name} {pct:3}% {:.1}/{:.1} MiB {:.0} MB/s {eta}",
        done as f64 / MIB as f64,
        total as f64 / MIB as f64,
        rate / 1e6
    )
}

/// The in-place progress display.
pub struct Progress {
    out: Option<Box<dyn Write>>,
    verb: &'static str,
    name: String,
    total: u64,
    start: Instant,
    last: Option<Instant>,
    width: usize,
}

impl Progress {
    /// `boot`: PID-1 mode, progress on `/dev/console`; otherwise standard error when it
    /// is a terminal, else nothing.
    pub fn new(boot: bool, verb: &'static str, name: &str, total: u64) -> Progress {
        let out: Option<Box<dyn Write>> = if boot {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags_noctty()
                .open("/dev/console")
                .ok()
                .map(|f| Box::new(f) as Box<dyn Write>)
        } else if rustix::termios::isatty(std::io::stderr()) {
            Some(Box::new(std::io::stderr()))
        } else {
            None
        };
        Progress::with_output(out, verb, name, total)
    }

    pub fn with_output(
        out: Option<Box<dyn Write>>,
        verb: &'static str,
        name: &str,
        total: u64,
    ) -> Progress {
        Progress {
            out,
            verb,
            name: name.to_string(),
            total,
            start: Instant::now(),
            last: None,
            width: 0,
        }
    }

    fn show(&mut self, done: u64) {
        let line = progress_line(
            self.verb,
            &self.name,
            done,
            self.total,
            self.start.elapsed(),
        );
        let pad = self.width.saturating_sub(line.len());
        self.width = line.len();
        if let Some(out) = self.out.as_mut() {
            let _ = write!(out, "\r{line}{:pad$}", "");
            let _ = out.flush();
        }
    }

    /// At most four updates a second (the first one always).
    pub fn update(&mut self, done: u64) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        self.show(done);
    }

    /// Show 100%, then blank the line: the summary follows as a log line.
    pub fn finish(&mut self) {
        if self.out.is_none() {
            return;
        }
        self.show(self.total);
        let width = self.width;
        if let Some(out) = self.out.as_mut() {
            let _ = write!(out, "\r{:width$}\r", "");
            let _ = out.flush();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(OFlags::NOCTTY.bits() as i32)
    }
}

/// A failure of the pass: the source (the image is unusable: next candidate) or the
/// destination (RAM: boot from BootExt instead).
#[derive(Debug)]
pub enum PassError {
    Source(String),
    Ram(String),
}

/// Next data extent at or after `pos`: `(start, end)`; `None` when only a hole is left.
fn next_extent(src: &OwnedFd, pos: u64, size: u64) -> Result<Option<(u64, u64)>, Errno> {
    let start = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
        Ok(s) => s,
        Err(Errno::NXIO) => return Ok(None),
        // No SEEK_DATA support: everything is data.
        Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => return Ok(Some((pos, size))),
        Err(e) => return Err(e),
    };
    if start >= size {
        return Ok(None);
    }
    let end = match rustix::fs::seek(src, SeekFrom::Hole(start)) {
        Ok(e) => e.min(size),
        Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => size,
        Err(e) => return Err(e),
    };
    Ok(Some((start, end.max(start))))
}

/// Read at `off` until `need` bytes (at most `buf.len()`) are in `buf` or the file
/// ends. With `O_DIRECT`, `buf` is whole blocks and `need` what is wanted of it.
fn pread_full(src: &OwnedFd, buf: &mut [u8], mut off: u64, need: usize) -> Result<usize, Errno> {
    let mut filled = 0;
    while filled < need.min(buf.len()) {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match rustix::io::pread(src, rest, off) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                off += n as u64;
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub fn pwrite_all(dst: &OwnedFd, mut data: &[u8], mut off: u64) -> Result<(), Errno> {
    while !data.is_empty() {
        match rustix::io::pwrite(dst, data, off) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(n) => {
                data = data.get(n..).unwrap_or_default();
                off += n as u64;
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Alignment of `O_DIRECT` reads: buffer address, offset and length (a page; the
/// logical block size of any disk is at most this).
const ALIGN: usize = 4096;

/// A read buffer of [`CHUNK`] bytes starting at an [`ALIGN`]ed address.
struct Buf {
    mem: Vec<u8>,
    at: usize,
}

impl Buf {
    fn new() -> Buf {
        let mem = vec![0u8; CHUNK + ALIGN];
        let at = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Buf { mem, at }
    }

    /// `len` bytes from the aligned start (empty if out of range, never a panic).
    fn get(&self, len: usize) -> &[u8] {
        self.mem.get(self.at..self.at + len).unwrap_or_default()
    }

    fn get_mut(&mut self, len: usize) -> &mut [u8] {
        self.mem.get_mut(self.at..self.at + len).unwrap_or_default()
    }
}

/// The source's `O_DIRECT` flag, set for the pass and put back as it was after it.
///
/// Direct reads go from the disk into the pass's buffers: no page cache to fill,
/// no copy out of it, which halves the CPU time of the read (`dd iflag=direct`: 0.04 s
/// of system time for 512 MiB against 0.1-0.9 s buffered on the development machine),
/// and the RAM copy is not doubled by a cached copy of the file. Filesystems without
/// direct I/O refuse the flag: the pass reads through the page cache then.
struct Direct<'a> {
    fd: &'a OwnedFd,
    old: Option<OFlags>,
}

impl<'a> Direct<'a> {
    fn set(fd: &'a OwnedFd) -> Direct<'a> {
        let old = rustix::fs::fcntl_getfl(fd).ok().filter(|old| {
            !old.contains(OFlags::DIRECT)
                && rustix::fs::fcntl_setfl(fd, *old | OFlags::DIRECT).is_ok()
        });
        Direct { fd, old }
    }

    fn on(&self) -> bool {
        self.old.is_some()
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            let _ = rustix::fs::fcntl_setfl(self.fd, old);
        }
    }
}

/// One piece of the image, in order, from the reader thread to the hashing one.
enum Piece {
    /// `len` bytes of `buf` are the image at `pos` (already in the copy).
    Data { pos: u64, buf: Buf, len: usize },
    /// A hole of this many bytes (zeros) follows.
    Hole(u64),
    /// The pass cannot go on.
    Failed(PassError),
}

/// Read the `want` bytes at `pos` into `buf`. `direct`: the source has `O_DIRECT`;
/// cleared (for the rest of the pass) when a direct read is refused, and the piece is
/// read again through the page cache.
fn read_piece(
    src: &OwnedFd,
    direct: &mut bool,
    name: &str,
    size: u64,
    mut buf: Buf,
    pos: u64,
    want: usize,
) -> Piece {
    let mut got = Err(Errno::INVAL);
    if *direct {
        // Whole blocks; past the end of the file the read is short.
        let blocks = want.div_ceil(ALIGN) * ALIGN;
        got = pread_full(src, buf.get_mut(blocks), pos, want).map(|n| n.min(want));
        if got == Err(Errno::INVAL) {
            *direct = false;
            let _ = rustix::fs::fcntl_getfl(src)
                .and_then(|fl| rustix::fs::fcntl_setfl(src, fl - OFlags::DIRECT));
        }
    }
    if !*direct {
        got = pread_full(src, buf.get_mut(want), pos, want);
    }
    let len = match got {
        Ok(0) => {
            return Piece::Failed(PassError::Source(format!(
                "{name}: ends at {pos} bytes, {size} expected (the file shrank while read)"
            )));
        }
        Ok(len) => len,
        Err(e) => {
            return Piece::Failed(PassError::Source(format!(
                "{name}: read error: {}",
                errno_text(e)
            )));
        }
    };
    Piece::Data { pos, buf, len }
}

/// Copy the data of `piece` to `dst` at the same place.
fn write_piece(piece: Piece, dst: Option<&OwnedFd>, name: &str) -> Piece {
    if let (Piece::Data { pos, buf, len }, Some(dst)) = (&piece, dst) {
        if let Err(e) = pwrite_all(dst, buf.get(*len), *pos) {
            return Piece::Failed(PassError::Ram(format!(
                "writing the RAM copy of {name} at {}: {}",
                mib(*pos),
                errno_text(e)
            )));
        }
    }
    piece
}

/// The writer thread: copies each piece from `input` to `dst`, then passes it on.
fn writer(
    dst: Option<&OwnedFd>,
    name: &str,
    input: &std::sync::mpsc::Receiver<Piece>,
    out: &std::sync::mpsc::SyncSender<Piece>,
) {
    for piece in input.iter() {
        let piece = write_piece(piece, dst, name);
        let stop = matches!(piece, Piece::Failed(_));
        if out.send(piece).is_err() || stop {
            return;
        }
    }
}

/// Where the data is: the extents of `src` in order, then holes, as
/// `(start, end)` of the next data from `pos` (`(size, size)` when only a hole is left).
fn extent_from(src: &OwnedFd, name: &str, pos: u64, size: u64) -> Result<(u64, u64), PassError> {
    next_extent(src, pos, size)
        .map(|x| x.unwrap_or((size, size)))
        .map_err(|e| PassError::Source(format!("{name}: seek: {}", errno_text(e))))
}

/// The reader thread: reads `src` in order into buffers taken from `free`, and sends
/// each (and each hole) to `out`. Stops quietly when the other side hangs up.
fn reader(
    src: &OwnedFd,
    mut direct: bool,
    size: u64,
    name: &str,
    free: &std::sync::mpsc::Receiver<Buf>,
    out: &std::sync::mpsc::SyncSender<Piece>,
) {
    let mut pos = 0u64;
    while pos < size {
        let (start, end) = match extent_from(src, name, pos, size) {
            Ok(x) => x,
            Err(e) => {
                let _ = out.send(Piece::Failed(e));
                return;
            }
        };
        if start > pos {
            if out.send(Piece::Hole(start - pos)).is_err() {
                return;
            }
            pos = start;
        }
        while pos < end {
            // Buffered: ask for the next window now, the disk reads it while this
            // thread copies and waits for a free buffer.
            if !direct && pos % (AHEAD / 2) < CHUNK as u64 {
                let from = pos + CHUNK as u64;
                let len = std::num::NonZeroU64::new(AHEAD.min(end.saturating_sub(from)));
                if len.is_some() {
                    let _ = rustix::fs::fadvise(src, from, len, Advice::WillNeed);
                }
            }
            let Ok(buf) = free.recv() else { return };
            let want = ((end - pos).min(CHUNK as u64)) as usize;
            let piece = read_piece(src, &mut direct, name, size, buf, pos, want);
            let stop = match &piece {
                Piece::Data { len, .. } => {
                    pos += *len as u64;
                    false
                }
                _ => true,
            };
            if out.send(piece).is_err() || stop {
                return;
            }
        }
    }
}

/// Hash one piece; `pos` is where the pass stands. Gives the buffer back.
fn consume(
    piece: Piece,
    pos: &mut u64,
    digest: &mut Option<&mut Digester<'_>>,
) -> Result<Option<Buf>, PassError> {
    match piece {
        Piece::Hole(n) => {
            if let Some(d) = digest.as_deref_mut() {
                d.update_zeros(n);
            }
            *pos += n;
            Ok(None)
        }
        Piece::Data { pos: at, buf, len } => {
            if let Some(d) = digest.as_deref_mut() {
                d.update(buf.get(len));
            }
            *pos = at + len as u64;
            Ok(Some(buf))
        }
        Piece::Failed(e) => Err(e),
    }
}

/// One pass over `src` (`size` bytes): every byte to `digest` (holes as zeros), data
/// to `dst` at the same offsets when given.
///
/// A pipeline of three threads and [`RING`] buffers of [`CHUNK`] bytes: a reader
/// thread reads (with `O_DIRECT` where it can, see [`Direct`]), a writer thread copies
/// into `dst`, and this thread hashes, each on a different chunk, so the disk, the
/// copy and the hash overlap. Should a thread not start, the same work is done here,
/// one step after the other.
pub fn pass(
    src: &OwnedFd,
    size: u64,
    name: &str,
    dst: Option<&OwnedFd>,
    mut digest: Option<&mut Digester<'_>>,
    progress: &mut Progress,
) -> Result<(), PassError> {
    use std::sync::mpsc;
    let direct = Direct::set(src);
    if !direct.on() {
        let _ = rustix::fs::fadvise(src, 0, None, Advice::Sequential);
    }
    let on = direct.on();
    progress.update(0);
    let mut pos = 0u64;
    let threaded = std::thread::scope(|s| -> Option<Result<(), PassError>> {
        let (free_tx, free_rx) = mpsc::sync_channel::<Buf>(RING);
        let (read_tx, read_rx) = mpsc::sync_channel::<Piece>(RING);
        let (out_tx, out_rx) = mpsc::sync_channel::<Piece>(RING);
        std::thread::Builder::new()
            .name("toram-write".into())
            .spawn_scoped(s, move || writer(dst, name, &read_rx, &out_tx))
            .ok()?;
        std::thread::Builder::new()
            .name("toram-read".into())
            .spawn_scoped(s, move || reader(src, on, size, name, &free_rx, &read_tx))
            .ok()?;
        for _ in 0..RING {
            let _ = free_tx.send(Buf::new());
        }
        // Returning drops `out_rx` and `free_tx`: the writer and the reader, if
        // still running, see the hang-up and end, and the scope joins them.
        Some((|| {
            for piece in out_rx.iter() {
                if let Some(buf) = consume(piece, &mut pos, &mut digest)? {
                    let _ = free_tx.send(buf);
                }
                progress.update(pos);
            }
            Ok(())
        })())
    });
    match threaded {
        Some(r) => r?,
        None => {
            log::warn!("toram: no reader thread, reading {name} in one thread");
            serial(src, on, size, name, &mut pos, dst, &mut digest, progress)?;
        }
    }
    drop(direct);
    if pos != size {
        return Err(PassError::Source(format!(
            "{name}: the read stopped at {pos} bytes, {size} expected"
        )));
    }
    progress.finish();
    Ok(())
}

/// [`pass`] without the reader thread.
#[allow(clippy::too_many_arguments)]
fn serial(
    src: &OwnedFd,
    mut direct: bool,
    size: u64,
    name: &str,
    pos: &mut u64,
    dst: Option<&OwnedFd>,
    digest: &mut Option<&mut Digester<'_>>,
    progress: &mut Progress,
) -> Result<(), PassError> {
    let mut buf = Buf::new();
    while *pos < size {
        let (start, end) = extent_from(src, name, *pos, size)?;
        if start > *pos {
            consume(Piece::Hole(start - *pos), pos, digest)?;
        }
        while *pos < end {
            let want = ((end - *pos).min(CHUNK as u64)) as usize;
            let piece = read_piece(src, &mut direct, name, size, buf, *pos, want);
            let piece = write_piece(piece, dst, name);
            buf = consume(piece, pos, digest)?.unwrap_or_else(Buf::new);
            progress.update(*pos);
        }
    }
    Ok(())
}

/// The image in RAM: a read-only descriptor of the copy.
pub struct InRam {
    pub file: OwnedFd,
    /// Bytes the copy occupies in RAM (holes excluded).
    pub allocated: u64,
}

/// Bytes `fd` occupies on its filesystem.
pub fn allocated(fd: &impl AsFd) -> Result<u64, Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_blocks as u64).saturating_mul(512))
}

/// A file of `size` bytes in a tmpfs of its own, sized to it, attached nowhere:
/// written through `rw`, then [`RamFile::read_only`] keeps only a read-only
/// descriptor, which alone holds the tmpfs (and its memory) from then on.
pub struct RamFile {
    mnt: OwnedFd,
    pub rw: OwnedFd,
}

impl RamFile {
    pub fn create(size: u64) -> Result<RamFile, String> {
        // Sized to the image (whole MiBs, plus one for the inode): holes cost nothing.
        let limit = size.div_ceil(MIB).saturating_add(1).saturating_mul(MIB);
        let mnt = super::mounts::new_mount(
            "tmpfs",
            "overboot-toram",
            &[
                ("size", Some(&limit.to_string())),
                ("mode", Some("0700")),
                ("nr_inodes", Some("8")),
            ],
            MountAttrFlags::MOUNT_ATTR_NODEV
                | MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )
        .map_err(|e| format!("cannot create the tmpfs for the copy: {e}"))?;
        let rw = rustix::fs::openat(
            &mnt,
            "image",
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::RUSR,
        )
        .map_err(|e| format!("cannot create the RAM copy: {}", errno_text(e)))?;
        rustix::fs::ftruncate(&rw, size)
            .map_err(|e| format!("cannot size the RAM copy: {}", errno_text(e)))?;
        Ok(RamFile { mnt, rw })
    }

    /// The copy, read-only; the tmpfs lives as long as the descriptor.
    pub fn read_only(self) -> Result<InRam, String> {
        let file = rustix::fs::openat(
            &self.mnt,
            "image",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot reopen the RAM copy: {}", errno_text(e)))?;
        let allocated = allocated(&file).unwrap_or(0);
        // `mnt` and `rw` close here: the read-only descriptor keeps the tmpfs alive.
        Ok(InRam { file, allocated })
    }
}

/// Copy `src` (`size` bytes, named `name` in messages) into a fresh tmpfs, feeding
/// `digest` in the same pass.
pub fn copy_to_ram(
    src: &OwnedFd,
    size: u64,
    name: &str,
    digest: Option<&mut Digester<'_>>,
    progress: &mut Progress,
) -> Result<InRam, PassError> {
    let ram = RamFile::create(size).map_err(PassError::Ram)?;
    pass(src, size, name, Some(&ram.rw), digest, progress)?;
    ram.read_only().map_err(PassError::Ram)
}

/// With toram, the tree of a sealed image goes to RAM too, so that nothing the
/// verity device reads is left on BootExt. When it cannot, the tree is read from
/// BootExt (a warning: BootExt must stay attached).
pub fn tree_to_ram(sealed: &mut crate::verity::boot::Sealed, boot: bool) {
    let len = crate::verity::boot::tree_len(sealed);
    let name = sealed.hash_file.clone();
    let mut progress = Progress::new(boot, "toram", &name, len);
    match copy_to_ram(&sealed.hash, len, &name, None, &mut progress) {
        Ok(ram) => sealed.hash = ram.file,
        Err(PassError::Source(e) | PassError::Ram(e)) => {
            log::warn!("toram: {name} stays on BootExt ({e}); BootExt must stay attached")
        }
    }
}

/// What [`prepare`] needs besides the image.
pub struct Options<'a> {
    pub mode: crate::verify::Mode,
    pub trust: &'a crate::verify::TrustStore,
    pub toram: bool,
    pub meminfo: &'a std::path::Path,
    /// PID-1 mode: progress on `/dev/console`.
    pub boot: bool,
}

/// A verified image, maybe in RAM.
pub struct Prepared {
    /// The RAM copy to attach instead of the file on BootExt.
    pub ram: Option<OwnedFd>,
    pub verified: crate::verify::Verification,
    pub toram: Option<crate::state::Toram>,
}

/// Steps 4 (verification) and 5 (toram) for one checked image: `image` is its path
/// relative to BootExt, `file` the open image. `Err` means this candidate is unusable
/// (verification refused or failed, read error). When the copy cannot be made (not
/// enough RAM, tmpfs failure) the image is verified and booted from BootExt instead,
/// with a loud warning and the reason in `toram.reason`: an operator who asked for
/// toram would rather boot from disk than not boot.
///
/// A `sealed` image (dm-verity, crate::verity::boot) skips the whole-image pass: its
/// blocks are checked as they are read.
pub fn prepare(
    be: &super::confined::Confined,
    image: &str,
    file: &OwnedFd,
    opts: &Options<'_>,
    sealed: bool,
) -> Result<Prepared, String> {
    let expected = if sealed {
        crate::verify::Expected {
            sha256: None,
            signature: None,
            note: Some(
                "whole-image hash skipped: sealed, dm-verity checks each block as it is read"
                    .into(),
            ),
        }
    } else {
        crate::verify::prepare(image, opts.mode, opts.trust, &|p| {
            be.read_small(p, super::confined::MAX_TEXT_BYTES)
        })?
    };
    let st = rustix::fs::fstat(file).map_err(|e| format!("{image}: {}", errno_text(e)))?;
    let size = st.st_size as u64;
    let mut toram = None;
    if opts.toram {
        let start = Instant::now();
        let need = allocated(file)
            .unwrap_or(size)
            .min(size.div_ceil(4096) * 4096);
        let fits = std::fs::read_to_string(opts.meminfo)
            .map_err(|e| format!("cannot read {}: {e}", opts.meminfo.display()))
            .and_then(|text| check_fits(need, &text, image, TORAM_FIX));
        let outcome = match fits {
            Ok(()) => {
                let mut digest = if expected.anything() {
                    Some(expected.digester()?)
                } else {
                    None
                };
                let mut progress = Progress::new(opts.boot, "toram", image, size);
                match copy_to_ram(file, size, image, digest.as_mut(), &mut progress) {
                    Ok(ram) => {
                        let verified = match digest {
                            Some(d) => d.finish(image)?,
                            None => crate::verify::Verification {
                                note: expected.note.clone(),
                                ..Default::default()
                            },
                        };
                        let ms = start.elapsed().as_secs_f64() * 1e3;
                        log::info!(
                            "toram: {image} copied to RAM, {} in {:.1} s ({:.0} MB/s), {} of RAM",
                            mib(size),
                            ms / 1e3,
                            size as f64 / (ms.max(0.001) * 1e3),
                            mib(ram.allocated)
                        );
                        return Ok(Prepared {
                            ram: Some(ram.file),
                            verified,
                            toram: Some(crate::state::Toram {
                                done: true,
                                size,
                                allocated: ram.allocated,
                                ms: (ms * 1e3).round() / 1e3,
                                reason: None,
                            }),
                        });
                    }
                    Err(PassError::Source(e)) => return Err(e),
                    Err(PassError::Ram(e)) => e,
                }
            }
            Err(e) => e,
        };
        log::warn!(
            "toram refused: {outcome}\n*** {image} runs from BootExt directly, NOT from RAM: BootExt must stay attached ***"
        );
        toram = Some(crate::state::Toram {
            done: false,
            size,
            reason: Some(outcome),
            ..Default::default()
        });
    }
    let verified = if expected.anything() {
        let mut digest = expected.digester()?;
        let mut progress = Progress::new(opts.boot, "verifying", image, size);
        pass(file, size, image, None, Some(&mut digest), &mut progress).map_err(|e| match e {
            PassError::Source(e) | PassError::Ram(e) => e,
        })?;
        digest.finish(image)?
    } else {
        crate::verify::Verification {
            note: expected.note.clone(),
            ..Default::default()
        }
    };
    Ok(Prepared {
        ram: None,
        verified,
        toram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str =
        "MemTotal:        2000000 kB\nMemFree:          100 kB\nMemAvailable:    1000000 kB\n";

    #[test]
    fn meminfo() {
        assert_eq!(
            parse_meminfo(MEMINFO).unwrap(),
            (1_000_000 * 1024, 2_000_000 * 1024)
        );
        assert!(
            parse_meminfo("MemTotal: 1 kB\n")
                .unwrap_err()
                .contains("MemAvailable")
        );
        assert!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB").is_err());
    }

    #[test]
    fn budget_keeps_the_larger_margin() {
        // 5% of 100 GiB is 5 GiB, more than 64 MiB.
        assert_eq!(ram_budget(50 << 30, 100 << 30), (50 << 30) - (5 << 30));
        // 5% of 512 MiB is 25.6 MiB: the 64 MiB floor applies.
        assert_eq!(ram_budget(400 * MIB, 512 * MIB), 336 * MIB);
        assert_eq!(ram_budget(10 * MIB, 512 * MIB), 0);
    }

    #[test]
    fn fits_or_refuses_clearly() {
        let avail = 1_000_000 * 1024u64;
        let budget = ram_budget(avail, 2_000_000 * 1024);
        assert!(check_fits(budget, MEMINFO, "System/a", TORAM_FIX).is_ok());
        let err = check_fits(budget + 1, MEMINFO, "System/a", TORAM_FIX).unwrap_err();
        assert!(
            err.contains("System/a needs") && err.contains("overboot.toram"),
            "{err}"
        );
    }

    #[test]
    fn progress_text() {
        let l = progress_line(
            "toram",
            "System/a",
            50 * MIB,
            100 * MIB,
            Duration::from_secs(1),
        );
        assert!(l.contains(" 50%"), "{l}");
        assert!(l.contains("50.0/100.0 MiB"), "{l}");
        assert!(l.contains("52 MB/s"), "{l}");
        assert!(l.contains("ETA 1s"), "{l}");
        let l = progress_line("toram", "x", 0, 0, Duration::ZERO);
        assert!(l.contains("100%") && l.contains("ETA -"), "{l}");
    }

    /// A sparse file: data, a hole, data not on a chunk boundary, a hole, data up to
    /// an end that is not on a block boundary.
    fn sparse_source(path: &std::path::Path) -> (OwnedFd, u64, Vec<u8>) {
        use std::os::unix::fs::FileExt;
        let size = 3 * CHUNK as u64 + 5 * MIB + 4096 + 100;
        let mut whole = vec![0u8; size as usize];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut fill = |from: usize, len: usize, whole: &mut Vec<u8>| {
            for b in &mut whole[from..from + len] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        };
        // More than RING chunks of data, so buffers are reused.
        let a = (RING + 1) * CHUNK / 2 + 123;
        fill(0, a, &mut whole);
        let b = 2 * CHUNK + 3 * MIB as usize;
        fill(b, 777, &mut whole);
        let c = size as usize - 3000;
        fill(c, 3000, &mut whole);
        let f = std::fs::File::create(path).unwrap();
        f.write_all_at(&whole[..a], 0).unwrap();
        f.write_all_at(&whole[b..b + 777], b as u64).unwrap();
        f.write_all_at(&whole[c..], c as u64).unwrap();
        assert_eq!(f.metadata().unwrap().len(), size);
        drop(f);
        let fd = rustix::fs::open(path, OFlags::RDONLY, Mode::empty()).unwrap();
        (fd, size, whole)
    }

    fn expected_sha(data: &[u8]) -> crate::verify::Expected {
        use sha2::Digest;
        crate::verify::Expected {
            sha256: Some((
                crate::verify::Sha256Digest(sha2::Sha256::digest(data).into()),
                "test".into(),
            )),
            signature: None,
            note: None,
        }
    }

    #[test]
    fn pass_copies_and_hashes_a_sparse_file_keeping_holes() {
        let dir = std::env::temp_dir().join(format!("overboot-toram-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, size, whole) = sparse_source(&dir.join("src"));
        let dst_path = dir.join("dst");
        let dst = rustix::fs::open(
            &dst_path,
            OFlags::CREATE | OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        rustix::fs::ftruncate(&dst, size).unwrap();
        let expected = expected_sha(&whole);
        let mut d = expected.digester().unwrap();
        let mut p = Progress::with_output(None, "toram", "src", size);
        if pass(&src, size, "src", Some(&dst), Some(&mut d), &mut p).is_err() {
            panic!("pass failed");
        }
        d.finish("src").unwrap();
        assert!(std::fs::read(&dst_path).unwrap() == whole, "copy differs");
        // O_DIRECT (set for the pass where the filesystem has it) is put back.
        let flags = rustix::fs::fcntl_getfl(&src).unwrap();
        assert!(!flags.contains(OFlags::DIRECT), "{flags:?}");
        let (src_alloc, dst_alloc) = (allocated(&src).unwrap(), allocated(&dst).unwrap());
        assert!(src_alloc < size - 6 * MIB, "source not sparse: {src_alloc}");
        assert!(dst_alloc <= src_alloc + MIB, "{dst_alloc} > {src_alloc}");

        // A digest over other bytes is refused: the pass really hashes what it read.
        let mut other = whole.clone();
        other[CHUNK + 1] ^= 1;
        let expected = expected_sha(&other);
        let mut d = expected.digester().unwrap();
        assert!(pass(&src, size, "src", None, Some(&mut d), &mut p).is_ok());
        assert!(d.finish("src").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pass_reports_a_failed_write_and_stops_the_reader() {
        let dir = std::env::temp_dir().join(format!("overboot-toram-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, size, _) = sparse_source(&dir.join("src"));
        // Read-only: every write fails with EBADF.
        let dst = rustix::fs::open(dir.join("src"), OFlags::RDONLY, Mode::empty()).unwrap();
        let mut p = Progress::with_output(None, "toram", "src", size);
        match pass(&src, size, "src", Some(&dst), None, &mut p) {
            Err(PassError::Ram(e)) => assert!(e.contains("writing the RAM copy of src"), "{e}"),
            Err(PassError::Source(e)) => panic!("source error {e}"),
            Ok(()) => panic!("a read-only destination was written"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn progress_is_rate_limited_and_in_place() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let mut p = Progress::with_output(Some(Box::new(buf.clone())), "toram", "a", 1000);
        for i in 0..1000 {
            p.update(i);
        }
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\n'), "{text:?}");
        assert_eq!(text.matches("overboot: toram").count(), 2, "{text:?}");
        assert!(text.contains("100%") && text.ends_with('\r'), "{text:?}");
    }
}
