//! The network interface for a netboot: chosen (`overboot.netif=`, else the first
//! with a link), brought up, and given an address by DHCP or `overboot.ip=`, with
//! a default route and `/etc/resolv.conf`. Every wait is bounded by a named timeout.

use super::dhcp::{self, Kind, Lease, Reply};
use crate::cmdline::{IpConfig, NetIf};
use crate::sys::netlink::{self, Rtnl};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the boot waits for a network interface to appear (its driver probing).
const IFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for a link (carrier) once the interfaces are up.
const CARRIER_TIMEOUT: Duration = Duration::from_secs(15);
/// DHCP: the wait for an answer to each DISCOVER (RFC 2131 4.1: about doubling).
const DISCOVER_WAITS: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(8),
];
/// DHCP: the wait for the ACK to a REQUEST.
const ACK_WAIT: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(100);
const SYS_CLASS_NET: &str = "/sys/class/net";
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// `ARPHRD_ETHER` (include/uapi/linux/if_arp.h): the interfaces DHCP here serves.
const ARPHRD_ETHER: &str = "1";

/// An Ethernet interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Iface {
    pub fn mac_text(&self) -> String {
        NetIf::Mac(self.mac).to_string()
    }
}

/// The Ethernet interfaces under `root` (`/sys/class/net`), by name.
pub fn list(root: &Path) -> Vec<Iface> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).unwrap_or_default();
        if read("type").trim() != ARPHRD_ETHER {
            continue;
        }
        let mac = match NetIf::parse(read("address").trim()) {
            Ok(NetIf::Mac(m)) => Some(m),
            _ => None,
        };
        let (Ok(index), Some(mac)) = (read("ifindex").trim().parse::<u32>(), mac) else {
            continue;
        };
        found.push(Iface { name, index, mac });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The interfaces `want` allows (all when `None`).
pub fn matching<'a>(ifaces: &'a [Iface], want: Option<&NetIf>) -> Vec<&'a Iface> {
    ifaces
        .iter()
        .filter(|i| match want {
            None => true,
            Some(NetIf::Name(n)) => &i.name == n,
            Some(NetIf::Mac(m)) => &i.mac == m,
        })
        .collect()
}

fn has_carrier(root: &Path, iface: &Iface) -> bool {
    std::fs::read_to_string(root.join(&iface.name).join("carrier")).is_ok_and(|c| c.trim() == "1")
}

/// The network as configured: which interface, and how it got its address.
pub struct Configured {
    pub iface: Iface,
    pub lease: Option<Lease>,
    pub address: String,
    pub notes: Vec<String>,
}

/// Choose the interface, bring it up, configure it.
pub fn configure(want: Option<&NetIf>, ip: &IpConfig) -> Result<Configured, String> {
    let root = Path::new(SYS_CLASS_NET);
    let which = want.map_or("an Ethernet interface".to_string(), |w| {
        format!("interface {w}")
    });
    let start = Instant::now();
    let candidates = loop {
        let all = list(root);
        let m: Vec<Iface> = matching(&all, want).into_iter().cloned().collect();
        if !m.is_empty() {
            break m;
        }
        if start.elapsed() > IFACE_TIMEOUT {
            let seen: Vec<String> = all
                .iter()
                .map(|i| format!("{} ({})", i.name, i.mac_text()))
                .collect();
            return Err(format!(
                "no {which} appeared in {} s (seen: {}); check overboot.netif= and that the initramfs has the NIC's driver (mkinitramfs --modules net)",
                IFACE_TIMEOUT.as_secs(),
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ));
        }
        std::thread::sleep(POLL);
    };
    let mut rtnl = Rtnl::open()?;
    for i in &candidates {
        rtnl.request(&format!("bringing {} up", i.name), |seq| {
            netlink::link_up(i.index, seq)
        })?;
    }
    let start = Instant::now();
    let iface = loop {
        if let Some(i) = candidates.iter().find(|i| has_carrier(root, i)) {
            break i.clone();
        }
        if start.elapsed() > CARRIER_TIMEOUT {
            let names: Vec<&str> = candidates.iter().map(|i| i.name.as_str()).collect();
            return Err(format!(
                "no link on {} within {} s; check the cable or the switch port",
                names.join(", "),
                CARRIER_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    };
    log::info!("network: {} ({}) has a link", iface.name, iface.mac_text());
    let mut notes = Vec::new();
    let (address, prefix, gateway, dns, lease) = match ip {
        IpConfig::Static {
            address,
            prefix,
            gateway,
            dns,
        } => (
            *address,
            *prefix,
            Some(*gateway),
            dns.iter().copied().collect(),
            None,
        ),
        IpConfig::Dhcp => {
            // A route for the limited broadcast: the DISCOVER leaves through this
            // interface although it has no address yet.
            rtnl.request("the DHCP broadcast route", |seq| {
                netlink::add_route(iface.index, Ipv4Addr::BROADCAST, 32, None, seq)
            })?;
            let ack = exchange(&iface)?;
            let (lease, note) = Lease::from_ack(&ack);
            notes.extend(note);
            (
                lease.address,
                lease.prefix,
                lease.router,
                lease.dns.clone(),
                Some(lease),
            )
        }
    };
    let shown = format!("{address}/{prefix}");
    rtnl.request(&format!("address {shown} on {}", iface.name), |seq| {
        netlink::add_address(iface.index, address, prefix, seq)
    })?;
    match gateway {
        Some(gw) => rtnl.request(&format!("default route via {gw}"), |seq| {
            netlink::add_route(iface.index, Ipv4Addr::UNSPECIFIED, 0, Some(gw), seq)
        })?,
        None => notes.push("no router in the lease: only the local network is reachable".into()),
    }
    if !dns.is_empty() {
        let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        if let Err(e) = std::fs::write(RESOLV_CONF, text) {
            notes.push(format!("cannot write {RESOLV_CONF}: {e}"));
        }
    }
    log::info!(
        "network: {} is {shown}{}",
        iface.name,
        gateway.map_or(String::new(), |g| format!(", router {g}"))
    );
    Ok(Configured {
        iface,
        lease,
        address: shown,
        notes,
    })
}

/// DISCOVER, OFFER, REQUEST, ACK on `iface`, retried with growing waits.
fn exchange(iface: &Iface) -> Result<Reply, String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT))
        .map_err(|e| format!("DHCP: cannot bind UDP port {}: {e}", dhcp::CLIENT_PORT))?;
    sock.set_broadcast(true)
        .map_err(|e| format!("DHCP: cannot allow broadcasts: {e}"))?;
    let xid = transaction_id(&iface.mac);
    let server = (Ipv4Addr::BROADCAST, dhcp::SERVER_PORT);
    let send = |m: Vec<u8>| {
        sock.send_to(&m, server)
            .map(|_| ())
            .map_err(|e| format!("DHCP: cannot send on {}: {e}", iface.name))
    };
    let mut waited = Duration::ZERO;
    let mut naks = Vec::new();
    for wait in DISCOVER_WAITS {
        send(dhcp::client_message(Kind::Discover, xid, iface.mac, None))?;
        waited += wait;
        let Some(offer) = receive(&sock, xid, iface.mac, &[Kind::Offer], wait)? else {
            continue;
        };
        log::info!(
            "DHCP: {} offered by {}",
            offer.address,
            offer.server.map_or("?".to_string(), |s| s.to_string())
        );
        send(dhcp::client_message(
            Kind::Request,
            xid,
            iface.mac,
            Some(&offer),
        ))?;
        waited += ACK_WAIT;
        match receive(&sock, xid, iface.mac, &[Kind::Ack, Kind::Nak], ACK_WAIT)? {
            Some(r) if r.kind == Kind::Ack => return Ok(r),
            Some(nak) => naks.push(nak.message.unwrap_or_else(|| "no reason given".into())),
            None => {}
        }
    }
    Err(format!(
        "no DHCP lease on {} ({}) after {} DISCOVERs in {} s{}; check the DHCP server, or give overboot.ip=ADDR/PREFIX,GATEWAY",
        iface.name,
        iface.mac_text(),
        DISCOVER_WAITS.len(),
        waited.as_secs(),
        if naks.is_empty() {
            String::new()
        } else {
            format!(" (refused: {})", naks.join("; "))
        }
    ))
}

/// The first reply of one of `kinds` within `wait`; `Ok(None)` when none came.
fn receive(
    sock: &UdpSocket,
    xid: u32,
    mac: [u8; 6],
    kinds: &[Kind],
    wait: Duration,
) -> Result<Option<Reply>, String> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| format!("DHCP: {e}"))?;
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("DHCP: {e}")),
        };
        match dhcp::parse_reply(buf.get(..n).unwrap_or_default(), xid, mac) {
            Ok(Some(r)) if kinds.contains(&r.kind) => return Ok(Some(r)),
            Ok(_) => {}
            Err(e) => log::debug!("DHCP: ignoring a message: {e}"),
        }
    }
}

/// A transaction id that differs between machines and boots.
fn transaction_id(mac: &[u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ nanos.rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_from_sysfs_and_the_choice() {
        let root = std::env::temp_dir().join(format!("overboot-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let iface = |name: &str, kind: &str, index: &str, mac: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("ifindex"), format!("{index}\n")).unwrap();
            std::fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        };
        iface("lo", "772", "1", "00:00:00:00:00:00");
        iface("enp0s3", "1", "2", "52:54:00:12:34:56");
        iface("eth1", "1", "3", "52:54:00:12:34:57");
        iface("broken", "1", "x", "52:54:00:12:34:58");
        let all = list(&root);
        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["enp0s3", "eth1"]);
        assert_eq!(all[0].index, 2);
        assert_eq!(all[1].mac_text(), "52:54:00:12:34:57");
        assert_eq!(matching(&all, None).len(), 2);
        let by_name = NetIf::Name("eth1".into());
        assert_eq!(matching(&all, Some(&by_name))[0].index, 3);
        let by_mac = NetIf::parse("52:54:00:12:34:56").unwrap();
        assert_eq!(matching(&all, Some(&by_mac))[0].name, "enp0s3");
        assert!(matching(&all, Some(&NetIf::Name("wlan0".into()))).is_empty());
        std::fs::write(root.join("eth1/carrier"), "1\n").unwrap();
        assert!(has_carrier(&root, &all[1]) && !has_carrier(&root, &all[0]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
