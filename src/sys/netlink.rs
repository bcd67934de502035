//! rtnetlink over a rustix socket: what a boot needs to reach an HTTP server, and
//! nothing more (link up, an IPv4 address, a route). Messages are built by hand
//! (the layouts are fixed kernel ABI, cited beside each); the builders are pure and
//! unit-tested, [`Rtnl`] sends them and waits for the kernel's acknowledgement.

use super::errno_text;
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};
use std::net::Ipv4Addr;
use std::time::Duration;

// include/uapi/linux/netlink.h
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDRLEN: usize = 16;
// include/uapi/linux/rtnetlink.h
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RT_TABLE_MAIN: u8 = 254;
/// Routes installed "during boot".
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
// include/uapi/linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
// include/uapi/linux/if.h
const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
/// How long the kernel may take to answer one request.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One message: header, the fixed family struct, then attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, fixed: &[u8]) -> Msg {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(fixed);
        Msg(b)
    }

    /// `struct rtattr` (len u16, type u16) and the value, padded to 4 bytes.
    fn attr(mut self, kind: u16, value: &[u8]) -> Msg {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn done(mut self) -> Vec<u8> {
        let len = (self.0.len() as u32).to_ne_bytes();
        self.0[..4].copy_from_slice(&len);
        self.0
    }
}

/// RTM_NEWLINK setting IFF_UP on interface `index` (`struct ifinfomsg`: family u8,
/// pad u8, type u16, index i32, flags u32, change u32).
pub fn link_up(index: u32, seq: u32) -> Vec<u8> {
    let mut fixed = [0u8; 16];
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    fixed[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
    fixed[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    Msg::new(RTM_NEWLINK, 0, seq, &fixed).done()
}

/// RTM_NEWADDR: `address/prefix` on interface `index`, with its broadcast address
/// (`struct ifaddrmsg`: family u8, prefixlen u8, flags u8, scope u8, index u32).
pub fn add_address(index: u32, address: Ipv4Addr, prefix: u8, seq: u32) -> Vec<u8> {
    let mut fixed = [0u8; 8];
    fixed[0] = AF_INET;
    fixed[1] = prefix;
    fixed[3] = RT_SCOPE_UNIVERSE;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
    Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq, &fixed)
        .attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets())
        .attr(IFA_BROADCAST, &broadcast.octets())
        .done()
}

/// RTM_NEWROUTE in the main table to `dst/dst_len` out of interface `index`, through
/// `gateway` or (without one) on the link itself (`struct rtmsg`: family, dst_len,
/// src_len, tos, table, protocol, scope, type: u8 each; flags u32).
pub fn add_route(
    index: u32,
    dst: Ipv4Addr,
    dst_len: u8,
    gateway: Option<Ipv4Addr>,
    seq: u32,
) -> Vec<u8> {
    let mut fixed = [0u8; 12];
    fixed[0] = AF_INET;
    fixed[1] = dst_len;
    fixed[4] = RT_TABLE_MAIN;
    fixed[5] = RTPROT_BOOT;
    fixed[6] = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    fixed[7] = RTN_UNICAST;
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq, &fixed);
    if dst_len > 0 {
        m = m.attr(RTA_DST, &dst.octets());
    }
    if let Some(gw) = gateway {
        m = m.attr(RTA_GATEWAY, &gw.octets());
    }
    m.attr(RTA_OIF, &index.to_ne_bytes()).done()
}

/// The kernel's answer to request `seq` in `buf`: `Some(Ok)` for the
/// acknowledgement, `Some(Err)` for an error, `None` when `buf` holds no answer to it.
pub fn parse_ack(buf: &[u8], seq: u32) -> Option<Result<(), Errno>> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let got_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if kind == NLMSG_ERROR && got_seq == seq && len >= NLMSG_HDRLEN + 4 {
            let code = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
            return Some(if code == 0 {
                Ok(())
            } else {
                Err(Errno::from_raw_os_error(code.saturating_neg()))
            });
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    None
}

/// A route netlink socket.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, String> {
        // NETLINK_ROUTE is protocol 0, which rustix spells `None`.
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)
            .map_err(|e| format!("cannot open a route netlink socket: {}", errno_text(e)))?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(ACK_TIMEOUT),
        )
        .map_err(|e| format!("netlink socket timeout: {}", errno_text(e)))?;
        Ok(Rtnl { fd, seq: 1 })
    }

    /// Send one request built by `build(seq)` and wait for its acknowledgement.
    /// `what` names the request in the error.
    pub fn request(
        &mut self,
        what: &str,
        build: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<(), String> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = build(seq);
        let kernel = netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&self.fd, &msg, SendFlags::empty(), &kernel)
            .map_err(|e| format!("{what}: cannot send: {}", errno_text(e)))?;
        let mut buf = vec![0u8; 8192];
        // Bounded: other messages on the socket are skipped a few times at most.
        for _ in 0..16 {
            let (n, _) = match rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty()) {
                Ok(r) => r,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(format!(
                        "{what}: no answer from the kernel in {} s",
                        ACK_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => return Err(format!("{what}: {}", errno_text(e))),
            };
            match parse_ack(buf.get(..n).unwrap_or_default(), seq) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(format!("{what}: {}", errno_text(e))),
                None => continue,
            }
        }
        Err(format!("{what}: no acknowledgement from the kernel"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn link_up_message() {
        let m = link_up(3, 7);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), 32);
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&m, 8), 7);
        assert_eq!(u32_at(&m, 20), 3, "ifindex");
        assert_eq!((u32_at(&m, 24), u32_at(&m, 28)), (IFF_UP, IFF_UP));
    }

    #[test]
    fn address_message() {
        let m = add_address(2, Ipv4Addr::new(10, 0, 2, 15), 24, 1);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&m, 20), 2);
        // IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST: 8 bytes each.
        assert_eq!((u16_at(&m, 24), u16_at(&m, 26)), (8, IFA_LOCAL));
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!(u16_at(&m, 34), IFA_ADDRESS);
        assert_eq!(u16_at(&m, 42), IFA_BROADCAST);
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
        let m = add_address(2, Ipv4Addr::new(10, 0, 2, 15), 32, 1);
        assert_eq!(&m[44..48], &[10, 0, 2, 15]);
    }

    #[test]
    fn route_messages() {
        let m = add_route(
            2,
            Ipv4Addr::UNSPECIFIED,
            0,
            Some(Ipv4Addr::new(10, 0, 2, 2)),
            4,
        );
        assert_eq!(u16_at(&m, 4), RTM_NEWROUTE);
        assert_eq!(
            &m[16..24],
            &[
                AF_INET,
                0,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_BOOT,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        assert_eq!((u16_at(&m, 28), u16_at(&m, 30)), (8, RTA_GATEWAY));
        assert_eq!(&m[32..36], &[10, 0, 2, 2]);
        assert_eq!((u16_at(&m, 38), u32_at(&m, 40)), (RTA_OIF, 2));
        assert_eq!(m.len(), 44);
        let m = add_route(5, Ipv4Addr::BROADCAST, 32, None, 4);
        assert_eq!(m[17], 32);
        assert_eq!(m[22], RT_SCOPE_LINK);
        assert_eq!((u16_at(&m, 30), &m[32..36]), (RTA_DST, &[255u8; 4][..]));
        assert_eq!((u16_at(&m, 38), u32_at(&m, 40)), (RTA_OIF, 5));
    }

    fn error_reply(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m
    }

    #[test]
    fn acknowledgements() {
        assert_eq!(parse_ack(&error_reply(9, 0), 9), Some(Ok(())));
        assert_eq!(parse_ack(&error_reply(9, -17), 9), Some(Err(Errno::EXIST)));
        assert_eq!(parse_ack(&error_reply(8, 0), 9), None);
        let mut two = error_reply(8, 0);
        two.extend(error_reply(9, -1));
        assert_eq!(parse_ack(&two, 9), Some(Err(Errno::PERM)));
        assert_eq!(parse_ack(&[1, 2, 3], 9), None);
        let mut bad = error_reply(9, 0);
        bad[0] = 200;
        assert_eq!(parse_ack(&bad, 9), None);
    }
}
