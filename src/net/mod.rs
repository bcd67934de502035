//! Netboot (`overboot.fetch=URL`): the system image over HTTP into RAM, verified in
//! the same pass, before BootExt's image. Pure parts: `dhcp` (DHCPv4 messages),
//! `http` (URL, request, response head); `link` brings the interface up and gets an
//! address, `fetch` streams the image, over `tls` for `https://`.
//!
//! Only the network build of `/init` (`overboot-init-net`, through
//! `boot::main_net`) reaches this code, so the plain `overboot-init` stays small.

pub mod dhcp;
pub mod fetch;
pub mod http;
pub mod index;
pub mod link;
pub mod tls;

use crate::cmdline::{BootConfig, IpConfig, NetIf};
use crate::state::{Lease, Network};
pub use fetch::Fetched;

/// The outcome of the network step, for `assemble`: the image, or why not (the boot
/// then goes on with BootExt's image), and the record for `state.json`.
pub struct NetBoot {
    pub record: Network,
    pub image: Result<Fetched, String>,
}

impl NetBoot {
    /// No network step: `why`.
    pub fn refused(url: &str, why: &str) -> NetBoot {
        log::warn!("netboot: {why}");
        NetBoot {
            record: Network {
                url: url.to_string(),
                error: Some(why.to_string()),
                ..Default::default()
            },
            image: Err(why.to_string()),
        }
    }
}

/// The network step of a boot with `overboot.fetch=`.
pub fn run(config: &BootConfig, paths: &crate::verify::Paths) -> NetBoot {
    let mut record = Network {
        url: config.fetch.clone().unwrap_or_default(),
        ..Default::default()
    };
    let image = configure_and_fetch(config, paths, &mut record).map_err(|e| {
        let e = match tried(&record) {
            Some(how) => format!("{e} (over {how})"),
            None => e,
        };
        log::warn!("netboot: {e}");
        record.error = Some(e.clone());
        e
    });
    NetBoot { record, image }
}

/// The interface, address and lease a failed fetch went over, for its message:
/// `eth0 52:54:00:12:34:56 as 10.0.2.15/24, DHCP lease from 10.0.2.2`.
fn tried(record: &Network) -> Option<String> {
    let iface = record.interface.as_deref()?;
    let mut how = format!("{iface} {}", record.mac.as_deref().unwrap_or("?"));
    if let Some(address) = &record.address {
        how.push_str(&format!(" as {address}"));
    }
    match &record.lease {
        Some(lease) => how.push_str(&format!(
            ", DHCP lease from {}",
            lease.server.as_deref().unwrap_or("an unnamed server")
        )),
        None => how.push_str(", static address"),
    }
    Some(how)
}

fn configure_and_fetch(
    config: &BootConfig,
    paths: &crate::verify::Paths,
    record: &mut Network,
) -> Result<Fetched, String> {
    let url = http::Url::parse(&record.url)?;
    let ip = match config.ip.as_deref() {
        Some(text) => IpConfig::parse(text).map_err(|e| format!("overboot.ip={e}"))?,
        None => IpConfig::Dhcp,
    };
    let want = config
        .netif
        .as_deref()
        .map(NetIf::parse)
        .transpose()
        .map_err(|e| format!("overboot.netif={e}"))?;
    log::info!("netboot: {url} ({ip})");
    let net = link::configure(want.as_ref(), &ip)?;
    record.interface = Some(net.iface.name.clone());
    record.mac = Some(net.iface.mac_text());
    record.address = Some(net.address.clone());
    record.lease = net.lease.as_ref().map(|l| Lease {
        server: l.server.map(|s| s.to_string()),
        router: l.router.map(|r| r.to_string()),
        dns: l.dns.iter().map(|d| d.to_string()).collect(),
        seconds: l.lease_secs,
    });
    record.notes = net.notes;
    let trust = crate::verify::TrustStore::load(&paths.trust_dir);
    let fetched = fetch::fetch(
        &url,
        &fetch::Inputs {
            trust: &trust,
            verify: config.verify,
            meminfo: &paths.meminfo,
            net_ca: std::path::Path::new(tls::NET_CA),
            verity: config.verity,
            boot: true,
        },
    )?;
    record.bytes = fetched.size;
    record.ms = fetched.ms;
    record.resumed = fetched.resumed;
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_interface_address_and_lease() {
        let mut r = Network {
            url: "http://10.0.2.100/a.squashfs".into(),
            ..Default::default()
        };
        assert_eq!(
            tried(&r),
            None,
            "no interface: the link's own error says why"
        );
        r.interface = Some("eth0".into());
        r.mac = Some("52:54:00:12:34:56".into());
        r.address = Some("10.0.2.20/24".into());
        assert_eq!(
            tried(&r).as_deref(),
            Some("eth0 52:54:00:12:34:56 as 10.0.2.20/24, static address")
        );
        r.lease = Some(Lease {
            server: Some("10.0.2.2".into()),
            ..Default::default()
        });
        assert_eq!(
            tried(&r).as_deref(),
            Some("eth0 52:54:00:12:34:56 as 10.0.2.20/24, DHCP lease from 10.0.2.2")
        );
    }
}
