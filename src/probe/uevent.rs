//! Kernel uevents (`NETLINK_KOBJECT_UEVENT`, group 1): how a late disk is
//! noticed without udev. The parser is pure; the socket is a thin wrapper.

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, bind, netlink, recv};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The fields of a kernel uevent the block-device wait cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub subsystem: Option<String>,
    pub devname: Option<String>,
    pub modalias: Option<String>,
}

impl Uevent {
    /// A block device appeared or changed (a loop device got its backing file,
    /// a medium was inserted): worth a rescan.
    pub fn is_block_arrival(&self) -> bool {
        self.subsystem.as_deref() == Some("block")
            && matches!(self.action.as_str(), "add" | "change")
    }

    /// A device with a `MODALIAS` appeared: a driver may have to be loaded for it
    /// (the SCSI disk behind a USB stick shows up a second after usb-storage
    /// loads, and needs sd_mod).
    pub fn wants_a_driver(&self) -> bool {
        self.action == "add" && self.modalias.is_some()
    }
}

/// Parse a kernel uevent datagram: `ACTION@DEVPATH\0KEY=VALUE\0…`. Messages
/// relayed by udev (`libudev` header) and malformed ones give `None`.
pub fn parse_uevent(msg: &[u8]) -> Option<Uevent> {
    let mut parts = msg.split(|&c| c == 0);
    let head = parts.next()?;
    if head.starts_with(b"libudev") || !head.contains(&b'@') {
        return None;
    }
    let mut ev = Uevent {
        action: String::new(),
        subsystem: None,
        devname: None,
        modalias: None,
    };
    for kv in parts {
        let text = String::from_utf8_lossy(kv);
        if let Some((k, v)) = text.split_once('=') {
            match k {
                "ACTION" => ev.action = v.to_string(),
                "SUBSYSTEM" => ev.subsystem = Some(v.to_string()),
                "DEVNAME" => ev.devname = Some(v.to_string()),
                "MODALIAS" => ev.modalias = Some(v.to_string()),
                _ => {}
            }
        }
    }
    if ev.action.is_empty() {
        let head = String::from_utf8_lossy(head);
        ev.action = head.split('@').next().unwrap_or_default().to_string();
    }
    Some(ev)
}

/// A socket subscribed to the kernel's uevent broadcasts.
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    pub fn open() -> std::io::Result<UeventSocket> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
        Ok(UeventSocket { fd })
    }

    /// Wait up to `timeout` for uevents; returns the ones that arrived (all
    /// that are queued, not just the first). Empty on timeout.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<Vec<Uevent>> {
        let ts = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match recv(&self.fd, &mut buf[..], RecvFlags::empty()) {
                Ok((n, _)) => {
                    if let Some(ev) = buf.get(..n).and_then(parse_uevent) {
                        out.push(ev);
                    }
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => break,
                // Queue overflowed: events were lost, which a rescan covers.
                Err(rustix::io::Errno::NOBUFS) => {
                    out.push(Uevent {
                        action: "change".into(),
                        subsystem: Some("block".into()),
                        devname: None,
                        modalias: None,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_uevent() {
        let msg = b"add@/devices/virtual/block/loop0/loop0p1\0ACTION=add\0DEVPATH=/devices/virtual/block/loop0/loop0p1\0SUBSYSTEM=block\0DEVNAME=loop0p1\0DEVTYPE=partition\0SEQNUM=5\0";
        let ev = parse_uevent(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem.as_deref(), Some("block"));
        assert_eq!(ev.devname.as_deref(), Some("loop0p1"));
        assert!(ev.is_block_arrival());
    }

    #[test]
    fn ignores_udev_and_other_subsystems() {
        assert_eq!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(parse_uevent(b"garbage"), None);
        let ev = parse_uevent(b"remove@/x\0ACTION=remove\0SUBSYSTEM=block\0").unwrap();
        assert!(!ev.is_block_arrival());
        let ev = parse_uevent(b"add@/x\0ACTION=add\0SUBSYSTEM=net\0").unwrap();
        assert!(!ev.is_block_arrival());
        assert!(!ev.wants_a_driver());
    }

    #[test]
    fn a_new_device_with_a_modalias_wants_a_driver() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0/usb2/2-1/2-1:1.0/host2/target2:0:0/2:0:0:0\0ACTION=add\0SUBSYSTEM=scsi\0DEVTYPE=scsi_device\0MODALIAS=scsi:t-0x00\0SEQNUM=900\0";
        let ev = parse_uevent(msg).unwrap();
        assert_eq!(ev.modalias.as_deref(), Some("scsi:t-0x00"));
        assert!(ev.wants_a_driver());
        assert!(!ev.is_block_arrival());
        let gone = parse_uevent(b"remove@/x\0ACTION=remove\0MODALIAS=scsi:t-0x00\0").unwrap();
        assert!(!gone.wants_a_driver());
    }
}
