//! `overboot verity-watch`: in the booted system (`overboot-verity.service`), turn
//! the kernel's report of a corrupted block into a record the next boot reads
//! (super::corrupted), then do what `overboot.verity-error` says.
//!
//! dm-verity reports every corrupted block it finds (the first 100 per device,
//! drivers/md/dm-verity-target.c `verity_handle_err`) with a `change` uevent on the
//! dm device carrying `DM_VERITY_ERR_BLOCK_NR=<type>,<block>` (type 0: a data block,
//! 1: a block of the hash tree), before it fails the read with EIO. The watcher
//! listens on `NETLINK_KOBJECT_UEVENT` (only messages from the kernel itself count),
//! matches the device (`DEVNAME=dm-N`) against the sealed images of this boot (from
//! `state.json`), writes `System/verity-corrupted` atomically, then: `eio` goes on,
//! `restart` syncs and restarts, `panic` syncs and panics the kernel. When the record
//! cannot be written it does not restart (the next boot would read the same block and
//! restart again): it says so and goes on as `eio`.
//!
//! What was read before it listened (by systemd's early start, say) is found in the
//! kernel log: once the socket is bound, `/dev/kmsg` is read for dm-verity's
//! `verity: MAJ:MIN: data block N is corrupted` lines, MAJ:MIN being the data device
//! under a watched dm device (`/sys/block/dm-N/slaves/*/dev`); those are recorded and
//! acted on the same way. Nothing is missed between the two: the socket queues what
//! comes while the log is read.
//!
//! Not on the boot path (the `overboot` CLI binary, not `overboot-init`).

use super::boot::VerityRecord;
use super::corrupted::{self, Entry};
use super::format::OnError;
use crate::sys::confined::Confined;
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
use std::path::Path;

/// The uevent variable dm-verity sets (`DM_VERITY_ENV_VAR_NAME`).
const ENV_VAR: &str = "DM_VERITY_ERR_BLOCK_NR";

/// A sealed image of this boot: its dm device and what to record about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// `dm-N`, as uevents name the device.
    pub devname: String,
    /// Relative to BootExt.
    pub image: String,
    pub root_hash: String,
    pub on_error: OnError,
}

impl Watched {
    /// From a mount's verity record in `state.json`.
    pub fn from_record(r: &VerityRecord) -> Option<Watched> {
        Some(Watched {
            devname: r.device.strip_prefix("/dev/")?.to_string(),
            image: r
                .hash_file
                .strip_suffix(super::seal::VERITY_SUFFIX)?
                .to_string(),
            root_hash: r.root_hash.clone(),
            on_error: OnError::parse(&r.on_error).unwrap_or_default(),
        })
    }
}

/// What one corruption uevent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub devname: String,
    /// `data` or `metadata`, as the kernel logs it.
    pub kind: &'static str,
    pub block: u64,
}

/// A corruption uevent (`change@…\0ACTION=change\0…\0DEVNAME=dm-0\0
/// DM_VERITY_ERR_BLOCK_NR=0,12\0`), or `None` for any other message.
pub fn parse_corruption(msg: &[u8]) -> Option<Corruption> {
    let (mut devname, mut err) = (None, None);
    for field in msg.split(|&b| b == 0) {
        let field = std::str::from_utf8(field).ok()?;
        if let Some(v) = field.strip_prefix("DEVNAME=") {
            devname = Some(v);
        } else if let Some(v) = field
            .strip_prefix(ENV_VAR)
            .and_then(|v| v.strip_prefix('='))
        {
            err = Some(v);
        }
    }
    let (kind, block) = err?.split_once(',')?;
    Some(Corruption {
        devname: devname?.to_string(),
        kind: match kind {
            "0" => "data",
            "1" => "metadata",
            _ => return None,
        },
        block: block.parse().ok()?,
    })
}

/// Watch `watched` until killed; records go to the BootExt mounted at `bootext`.
/// Returns an exit code only when it cannot watch (1) or there is nothing to watch
/// (0).
pub fn run(watched: &[Watched], bootext: &Path) -> i32 {
    if watched.is_empty() {
        println!("overboot: verity-watch: no sealed image is mounted, nothing to watch");
        return 0;
    }
    let sock = match open_socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "overboot: verity-watch: cannot listen to kernel uevents (NETLINK_KOBJECT_UEVENT): {}",
                crate::sys::errno_text(e)
            );
            return 1;
        }
    };
    let names: Vec<String> = watched
        .iter()
        .map(|w| format!("{} ({})", w.image, w.devname))
        .collect();
    eprintln!("overboot: verity-watch: watching {}", names.join(", "));
    let mut reported: Vec<String> = Vec::new();
    for c in logged(watched) {
        report(watched, &c, bootext, &mut reported);
    }
    let mut buf = vec![0u8; 8192];
    loop {
        if let Some(c) = receive(&sock, &mut buf) {
            report(watched, &c, bootext, &mut reported);
        }
    }
}

/// Record `c` and act, once per device (the kernel reports up to 100 blocks each).
fn report(watched: &[Watched], c: &Corruption, bootext: &Path, reported: &mut Vec<String>) {
    let Some(w) = watched.iter().find(|w| w.devname == c.devname) else {
        return;
    };
    if reported.contains(&w.devname) {
        return;
    }
    reported.push(w.devname.clone());
    if record(w, c, bootext) {
        act(w.on_error);
    }
}

/// `MAJ:MIN`, `data`/`metadata` and the block of a dm-verity log line
/// (`device-mapper: verity: 7:1: data block 16 is corrupted`).
pub fn parse_logged(line: &str) -> Option<(&str, &'static str, u64)> {
    let rest = &line[line.find("verity: ")? + "verity: ".len()..];
    let (dev, rest) = rest.split_once(": ")?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix("data block ") {
        ("data", r)
    } else {
        ("metadata", rest.strip_prefix("metadata block ")?)
    };
    let block = rest.strip_suffix(" is corrupted")?.parse().ok()?;
    Some((dev, kind, block))
}

/// The corruptions of watched devices in the kernel log (`/dev/kmsg`, read without
/// waiting). A log that cannot be read is said and skipped: the uevents still count.
fn logged(watched: &[Watched]) -> Vec<Corruption> {
    // The data device (and hash device) numbers under each dm device.
    let under: Vec<(String, &Watched)> = watched
        .iter()
        .flat_map(|w| {
            let slaves = std::fs::read_dir(format!("/sys/block/{}/slaves", w.devname));
            slaves
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
                .map(move |d| (d.trim().to_string(), w))
        })
        .collect();
    let lines = match kernel_log() {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!(
                "overboot: verity-watch: cannot read /dev/kmsg ({e}): corruptions before now are not looked for"
            );
            return Vec::new();
        }
    };
    lines
        .iter()
        .filter_map(|l| parse_logged(l))
        .filter_map(|(dev, kind, block)| {
            let (_, w) = under.iter().find(|(d, _)| d == dev)?;
            Some(Corruption {
                devname: w.devname.clone(),
                kind,
                block,
            })
        })
        .collect()
}

/// The messages in the kernel's log buffer now (one `read` per record; bounded).
fn kernel_log() -> std::io::Result<Vec<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        // The end of the log is then EAGAIN, not a wait for the next message.
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open("/dev/kmsg")?;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    for _ in 0..1_000_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                // `PRIO,SEQ,TIME,FLAGS;MESSAGE\n` (continuation lines follow).
                if let Some((_, msg)) = text.split_once(';') {
                    lines.push(msg.lines().next().unwrap_or_default().to_string());
                }
            }
            // A record overwritten while reading: go on with the next.
            Err(e) if e.raw_os_error() == Some(Errno::PIPE.raw_os_error()) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(lines)
}

fn open_socket() -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::KOBJECT_UEVENT),
    )?;
    // Group 1: the kernel's broadcasts (udev relays on group 2).
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 1))?;
    Ok(fd)
}

/// The next corruption report, if the next message is one from the kernel.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> Option<Corruption> {
    match rustix::net::recvfrom(sock, &mut *buf, RecvFlags::empty()) {
        Ok((n, _, Some(from))) => {
            let kernel = SocketAddrNetlink::try_from(from).is_ok_and(|a| a.pid() == 0);
            buf.get(..n).filter(|_| kernel).and_then(parse_corruption)
        }
        Ok(_) | Err(Errno::INTR) => None,
        // The queue overflowed (a burst of uevents): a corruption among them is
        // lost here, but the kernel reports the next read of the block again.
        Err(Errno::NOBUFS) => {
            eprintln!("overboot: verity-watch: uevents were lost (receive queue full)");
            None
        }
        Err(e) => {
            eprintln!(
                "overboot: verity-watch: receiving uevents: {}",
                crate::sys::errno_text(e)
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
            None
        }
    }
}

/// Write the record; whether it is on BootExt now (then the policy may act).
fn record(w: &Watched, c: &Corruption, bootext: &Path) -> bool {
    let entry = Entry {
        root_hash: w.root_hash.clone(),
        kind: c.kind.into(),
        block: c.block,
        image: w.image.clone(),
    };
    let said = entry.describe();
    let at = format!("{}/{}", bootext.display(), corrupted::PATH);
    match Confined::open(bootext).and_then(|be| corrupted::add(&be, entry)) {
        Ok(_) => {
            say(&format!(
                "{said}; recorded in {at}: the next boot refuses it"
            ));
            true
        }
        Err(e) => {
            say(&format!(
                "{said}; cannot record it in {at}: {e}; not restarting (the next boot would read the same block), the system runs on as with overboot.verity-error=eio"
            ));
            false
        }
    }
}

/// What the watcher did, on stderr (the journal) and in the kernel log: a message
/// written just before a restart reaches the console and the next boot's
/// `journalctl -b -1` only from there.
fn say(msg: &str) {
    let line = format!("overboot: verity-watch: {msg}");
    eprintln!("{line}");
    // Error level (3): on the console even with `quiet`.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| std::io::Write::write_all(&mut k, format!("<3>{line}\n").as_bytes()));
}

/// `overboot.verity-error`, once the corruption is recorded.
fn act(on: OnError) {
    let failed = |what: &str, e: String| say(&format!("cannot {what}: {e}; the system runs on"));
    match on {
        OnError::Eio => say("overboot.verity-error=eio: the system runs on"),
        OnError::Restart => {
            say("overboot.verity-error=restart: restarting");
            rustix::fs::sync();
            if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::Restart) {
                failed("restart", crate::sys::errno_text(e));
            }
        }
        OnError::Panic => {
            say("overboot.verity-error=panic: panicking the kernel");
            rustix::fs::sync();
            if let Err(e) = std::fs::write("/proc/sysrq-trigger", "c") {
                failed("panic the kernel (/proc/sysrq-trigger)", e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_uevents_and_others() {
        let msg = b"change@/devices/virtual/block/dm-1\0ACTION=change\0DEVPATH=/devices/virtual/block/dm-1\0SUBSYSTEM=block\0DM_VERITY_ERR_BLOCK_NR=0,4242\0MAJOR=254\0MINOR=1\0DEVNAME=dm-1\0DEVTYPE=disk\0SEQNUM=1200\0";
        assert_eq!(
            parse_corruption(msg),
            Some(Corruption {
                devname: "dm-1".into(),
                kind: "data",
                block: 4242
            })
        );
        let meta = b"change@/x\0DEVNAME=dm-0\0DM_VERITY_ERR_BLOCK_NR=1,7\0";
        assert_eq!(parse_corruption(meta).unwrap().kind, "metadata");
        // Other uevents, and malformed values.
        assert_eq!(
            parse_corruption(b"change@/x\0DEVNAME=dm-0\0DM_NAME=a\0"),
            None
        );
        assert_eq!(
            parse_corruption(b"change@/x\0DEVNAME=dm-0\0DM_VERITY_ERR_BLOCK_NR=2,7\0"),
            None
        );
        assert_eq!(
            parse_corruption(b"change@/x\0DM_VERITY_ERR_BLOCK_NR=0,7\0"),
            None
        );
    }

    #[test]
    fn corruptions_in_the_kernel_log() {
        assert_eq!(
            parse_logged("device-mapper: verity: 7:1: data block 16 is corrupted"),
            Some(("7:1", "data", 16))
        );
        assert_eq!(
            parse_logged("device-mapper: verity: 7:3: metadata block 9 is corrupted"),
            Some(("7:3", "metadata", 9))
        );
        for other in [
            "device-mapper: verity: 7:1: reached maximum errors",
            "device-mapper: verity: sha256 using implementation \"sha256-avx2\"",
            "EXT4-fs (vda): mounted filesystem",
        ] {
            assert_eq!(parse_logged(other), None, "{other}");
        }
    }

    #[test]
    fn watched_from_state_records() {
        let r = VerityRecord {
            device: "/dev/dm-3".into(),
            name: "overboot-Apps-x.squashfs".into(),
            root_hash: "ab".into(),
            hash_file: "Apps/x.squashfs.verity".into(),
            signed_by: None,
            on_error: "panic".into(),
            fec_file: None,
        };
        assert_eq!(
            Watched::from_record(&r),
            Some(Watched {
                devname: "dm-3".into(),
                image: "Apps/x.squashfs".into(),
                root_hash: "ab".into(),
                on_error: OnError::Panic,
            })
        );
    }
}
