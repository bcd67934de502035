//! DHCPv4 messages (RFC 2131, options RFC 2132): the four a client needs
//! (DISCOVER, OFFER, REQUEST, ACK/NAK), built and parsed here. Pure: bytes in, bytes
//! out; the exchange over a socket is in `net::link`.
//!
//! Every message asks for the broadcast flag: a client without an address cannot
//! receive a unicast reply through a UDP socket, and servers then broadcast.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// The fixed BOOTP part (RFC 2131 figure 1) before the options.
const FIXED: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message (RFC 1542 section 2.1): some relays drop shorter ones.
const MIN_LEN: usize = 300;
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const FLAG_BROADCAST: u16 = 0x8000;

// Options (RFC 2132).
const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_MESSAGE: u8 = 56;
const OPT_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Discover,
            2 => Kind::Offer,
            3 => Kind::Request,
            5 => Kind::Ack,
            6 => Kind::Nak,
            _ => return None,
        })
    }
}

/// A DISCOVER, or a REQUEST for `offer` (the address and the server that offered it).
pub fn client_message(kind: Kind, xid: u32, mac: [u8; 6], offer: Option<&Reply>) -> Vec<u8> {
    let mut m = vec![0u8; FIXED];
    m[0] = BOOTREQUEST;
    m[1] = HTYPE_ETHERNET;
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind as u8]);
    if let Some(o) = offer {
        m.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
        m.extend_from_slice(&o.address.octets());
        if let Some(server) = o.server {
            m.extend_from_slice(&[OPT_SERVER_ID, 4]);
            m.extend_from_slice(&server.octets());
        }
    }
    m.extend_from_slice(&[
        OPT_PARAMS,
        4,
        OPT_SUBNET_MASK,
        OPT_ROUTER,
        OPT_DNS,
        OPT_LEASE_TIME,
    ]);
    m.push(OPT_END);
    if m.len() < MIN_LEN {
        m.resize(MIN_LEN, OPT_PAD);
    }
    m
}

/// A server's answer, as far as a client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Kind,
    /// `yiaddr`: the address offered or acknowledged.
    pub address: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    /// Option 56, the server's reason (with a NAK).
    pub message: Option<String>,
}

/// Parse a reply; `Ok(None)` for a message that is not for this client (another
/// transaction, another hardware address, a request from another client).
pub fn parse_reply(data: &[u8], xid: u32, mac: [u8; 6]) -> Result<Option<Reply>, String> {
    if data.len() < FIXED + MAGIC.len() {
        return Err(format!(
            "a DHCP message of {} bytes is too short",
            data.len()
        ));
    }
    if data[0] != BOOTREPLY || data[4..8] != xid.to_be_bytes() || data[28..34] != mac {
        return Ok(None);
    }
    if data[FIXED..FIXED + 4] != MAGIC {
        return Err("not a DHCP message (no magic cookie)".into());
    }
    let address = ip(&data[16..20]);
    let mut kind = None;
    let mut reply = Reply {
        kind: Kind::Offer,
        address,
        server: None,
        netmask: None,
        router: None,
        dns: Vec::new(),
        lease_secs: None,
        message: None,
    };
    let mut opts = &data[FIXED + 4..];
    // Each step consumes at least one byte: the walk ends.
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            OPT_PAD => {
                opts = rest;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| format!("DHCP option {code} has no length"))?;
        let value = rest
            .get(..usize::from(len))
            .ok_or_else(|| format!("DHCP option {code} runs past the message"))?;
        opts = &rest[usize::from(len)..];
        let first_ip = || (value.len() >= 4).then(|| ip(&value[..4]));
        match code {
            OPT_MESSAGE_TYPE => kind = value.first().and_then(|v| Kind::from_u8(*v)),
            OPT_SERVER_ID => reply.server = first_ip(),
            OPT_SUBNET_MASK => reply.netmask = first_ip(),
            OPT_ROUTER => reply.router = first_ip(),
            OPT_DNS => reply.dns = value.chunks_exact(4).map(ip).collect(),
            OPT_LEASE_TIME if value.len() == 4 => {
                reply.lease_secs =
                    Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            OPT_MESSAGE => reply.message = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    match kind {
        Some(k @ (Kind::Offer | Kind::Ack | Kind::Nak)) => {
            reply.kind = k;
            Ok(Some(reply))
        }
        // A BOOTP reply without a type, or a type a client does not expect.
        _ => Ok(None),
    }
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Prefix length of a netmask (`255.255.255.0` → 24); `None` when not contiguous.
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The lease a boot runs with, recorded in `state.json` (`network.lease`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

impl Lease {
    /// From an ACK. Without a usable netmask the prefix is /24 (what nearly every
    /// LAN uses), and `note` says so.
    pub fn from_ack(ack: &Reply) -> (Lease, Option<String>) {
        let (prefix, note) = match ack.netmask.map(|m| (m, prefix_len(m))) {
            Some((_, Some(p))) if p > 0 => (p, None),
            Some((m, _)) => (24, Some(format!("netmask {m} is not usable; using /24"))),
            None => (24, Some("no netmask in the lease; using /24".into())),
        };
        (
            Lease {
                address: ack.address,
                prefix,
                router: ack.router,
                dns: ack.dns.clone(),
                server: ack.server,
                lease_secs: ack.lease_secs,
            },
            note,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// A server reply as slirp sends it.
    fn server_reply(kind: u8, xid: u32, mac: [u8; 6], extra: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = BOOTREPLY;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m[28..34].copy_from_slice(&mac);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind]);
        m.extend_from_slice(&[OPT_SERVER_ID, 4, 10, 0, 2, 2]);
        m.extend_from_slice(&[OPT_SUBNET_MASK, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[OPT_ROUTER, 4, 10, 0, 2, 2]);
        m.extend_from_slice(&[OPT_DNS, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        m.extend_from_slice(&[OPT_LEASE_TIME, 4, 0, 1, 0x51, 0x80]);
        m.extend_from_slice(extra);
        m.push(OPT_END);
        m
    }

    #[test]
    fn discover_and_request_carry_what_servers_need() {
        let d = client_message(Kind::Discover, 0xdead_beef, MAC, None);
        assert_eq!(d.len(), MIN_LEN);
        assert_eq!(&d[..4], &[1, 1, 6, 0]);
        assert_eq!(&d[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&d[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&d[28..34], &MAC);
        assert_eq!(&d[FIXED..FIXED + 4], &MAGIC);
        assert_eq!(&d[FIXED + 4..FIXED + 7], &[53, 1, 1]);

        let offer = parse_reply(&server_reply(2, 7, MAC, &[]), 7, MAC)
            .unwrap()
            .unwrap();
        let r = client_message(Kind::Request, 7, MAC, Some(&offer));
        let opts = &r[FIXED + 4..];
        assert_eq!(&opts[..3], &[53, 1, 3]);
        assert_eq!(&opts[3..9], &[50, 4, 10, 0, 2, 15], "requested address");
        assert_eq!(&opts[9..15], &[54, 4, 10, 0, 2, 2], "server identifier");
    }

    #[test]
    fn offer_and_ack_are_read() {
        let r = parse_reply(&server_reply(5, 9, MAC, &[]), 9, MAC)
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, Kind::Ack);
        assert_eq!(r.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            r.dns,
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(r.lease_secs, Some(86400));
        let (lease, note) = Lease::from_ack(&r);
        assert_eq!((lease.prefix, note), (24, None));

        let nak = parse_reply(&server_reply(6, 9, MAC, &[56, 3, b'n', b'o', b'!']), 9, MAC)
            .unwrap()
            .unwrap();
        assert_eq!(nak.kind, Kind::Nak);
        assert_eq!(nak.message.as_deref(), Some("no!"));
    }

    #[test]
    fn replies_for_others_are_ignored_and_garbage_refused() {
        let other_mac = [1, 2, 3, 4, 5, 6];
        assert_eq!(parse_reply(&server_reply(2, 9, MAC, &[]), 8, MAC), Ok(None));
        assert_eq!(
            parse_reply(&server_reply(2, 9, other_mac, &[]), 9, MAC),
            Ok(None)
        );
        // Our own broadcast DISCOVER, seen by the socket.
        let own = client_message(Kind::Discover, 9, MAC, None);
        assert_eq!(parse_reply(&own, 9, MAC), Ok(None));
        // A message type a client does not take.
        assert_eq!(parse_reply(&server_reply(1, 9, MAC, &[]), 9, MAC), Ok(None));
        assert!(
            parse_reply(&[2; 100], 9, MAC)
                .unwrap_err()
                .contains("too short")
        );
        let mut cut = server_reply(2, 9, MAC, &[]);
        cut.truncate(cut.len() - 8);
        cut.extend_from_slice(&[OPT_DNS, 200, 1]);
        assert!(parse_reply(&cut, 9, MAC).unwrap_err().contains("runs past"));
        let mut no_magic = server_reply(2, 9, MAC, &[]);
        no_magic[FIXED] = 0;
        assert!(
            parse_reply(&no_magic, 9, MAC)
                .unwrap_err()
                .contains("magic")
        );
    }

    /// Every prefix of a valid reply, and every single-byte change of one, parses
    /// without a panic (the fuzz invariant, deterministically).
    #[test]
    fn truncated_and_flipped_replies_never_panic() {
        let good = server_reply(5, 9, MAC, &[56, 2, b'o', b'k']);
        for n in 0..good.len() {
            let _ = parse_reply(&good[..n], 9, MAC);
        }
        for i in FIXED..good.len() {
            for v in [0u8, 1, 4, 255] {
                let mut m = good.clone();
                m[i] = v;
                let _ = parse_reply(&m, 9, MAC);
            }
        }
    }

    #[test]
    fn netmask_prefix() {
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_len(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 0, 255, 0)), None);
        let mut r = parse_reply(&server_reply(5, 9, MAC, &[]), 9, MAC)
            .unwrap()
            .unwrap();
        r.netmask = Some(Ipv4Addr::new(255, 0, 255, 0));
        let (lease, note) = Lease::from_ack(&r);
        assert_eq!(lease.prefix, 24);
        assert!(note.unwrap().contains("not usable"));
    }
}
