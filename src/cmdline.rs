//! Kernel command line parsing (DESIGN section 3). Pure: text in, settings out.
//!
//! The kernel command line and the manifest both produce [`Settings`] (every field
//! optional); [`Settings::over`] layers them and [`Settings::resolve`] fills in the
//! documented defaults, giving the [`BootConfig`] the boot runs with.

use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;

/// Where BootExt is: `LABEL=`, `UUID=`, `PARTUUID=`, `PARTLABEL=` or a `/dev` path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DeviceSpec {
    Label(String),
    Uuid(String),
    PartUuid(String),
    PartLabel(String),
    Path(String),
}

impl DeviceSpec {
    pub fn parse(text: &str) -> Result<DeviceSpec, String> {
        let nonempty = |kind: &str, v: &str| {
            if v.is_empty() {
                Err(format!("{kind}= needs a value"))
            } else {
                Ok(v.to_string())
            }
        };
        if let Some(v) = text.strip_prefix("LABEL=") {
            Ok(DeviceSpec::Label(nonempty("LABEL", v)?))
        } else if let Some(v) = text.strip_prefix("UUID=") {
            Ok(DeviceSpec::Uuid(nonempty("UUID", v)?.to_ascii_lowercase()))
        } else if let Some(v) = text.strip_prefix("PARTUUID=") {
            Ok(DeviceSpec::PartUuid(
                nonempty("PARTUUID", v)?.to_ascii_lowercase(),
            ))
        } else if let Some(v) = text.strip_prefix("PARTLABEL=") {
            Ok(DeviceSpec::PartLabel(nonempty("PARTLABEL", v)?))
        } else if text.starts_with("/dev/") && text.len() > 5 {
            Ok(DeviceSpec::Path(text.to_string()))
        } else {
            Err(format!(
                "'{text}' is not LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path"
            ))
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Label(v) => write!(f, "LABEL={v}"),
            DeviceSpec::Uuid(v) => write!(f, "UUID={v}"),
            DeviceSpec::PartUuid(v) => write!(f, "PARTUUID={v}"),
            DeviceSpec::PartLabel(v) => write!(f, "PARTLABEL={v}"),
            DeviceSpec::Path(v) => write!(f, "{v}"),
        }
    }
}

/// Which system image to boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemChoice {
    Active,
    Recovery,
    /// A file name under `System/`.
    Named(String),
}

impl SystemChoice {
    pub fn parse(text: &str) -> Result<SystemChoice, String> {
        match text {
            "active" => Ok(SystemChoice::Active),
            "recovery" => Ok(SystemChoice::Recovery),
            "" => Err("needs active, recovery or an image name".into()),
            name if name.contains('/') || name == "." || name == ".." => Err(format!(
                "'{name}' must be a file name in System/, without '/'"
            )),
            name => Ok(SystemChoice::Named(name.to_string())),
        }
    }
}

impl fmt::Display for SystemChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemChoice::Active => f.write_str("active"),
            SystemChoice::Recovery => f.write_str("recovery"),
            SystemChoice::Named(n) => f.write_str(n),
        }
    }
}

/// Size of the tmpfs that holds the writable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OverlaySize {
    /// Percent of RAM, as tmpfs understands `size=N%`.
    Percent(u8),
    Bytes(u64),
}

impl OverlaySize {
    /// The value for tmpfs' `size=` option.
    pub fn tmpfs_option(self) -> String {
        match self {
            OverlaySize::Percent(p) => format!("{p}%"),
            OverlaySize::Bytes(b) => b.to_string(),
        }
    }
}

/// `overboot.overlay=tmpfs[:size=N%|NM|NG]`.
pub fn parse_overlay(text: &str) -> Result<OverlaySize, String> {
    let rest = text.strip_prefix("tmpfs").ok_or_else(|| {
        format!("'{text}': only 'tmpfs[:size=N%|NM|NG]' or 'persist' is supported")
    })?;
    if rest.is_empty() {
        return Ok(DEFAULT_OVERLAY_SIZE);
    }
    let size = rest
        .strip_prefix(":size=")
        .ok_or_else(|| format!("'{text}': expected tmpfs:size=N%, NM or NG"))?;
    parse_size(size, "mg").map_err(|e| format!("'{text}': {e}"))
}

/// The units a size may carry: `%` of RAM, or a power of two.
const SIZE_UNITS: &[(&str, u64)] = &[("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)];

/// A tmpfs size: `N%` (1 to 100) or `N` and a unit of `units` (`k`, `m`, `g`, either
/// case). The number may not overflow (an overflowing size must not wrap into a
/// small one) and may not be zero (tmpfs reads 0 as "no limit").
pub fn parse_size(size: &str, units: &str) -> Result<OverlaySize, String> {
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    // "K, M, G or %" from "kmg".
    let allowed = || {
        let mut list = String::new();
        for u in units.chars() {
            list.push(u.to_ascii_uppercase());
            list.push_str(", ");
        }
        list + "or %"
    };
    if digits.is_empty() {
        return Err(format!("size '{size}' does not start with a number"));
    }
    let too_big = || format!("size '{size}' is too large (at most 16 EiB in all)");
    let n: u64 = digits.parse().map_err(|_| too_big())?;
    if unit == "%" {
        return match n {
            1..=100 => Ok(OverlaySize::Percent(n as u8)),
            _ => Err(format!("size '{size}' must be 1% to 100%")),
        };
    }
    let lower = unit.to_ascii_lowercase();
    let Some((_, scale)) = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == lower && units.contains(*u))
    else {
        return Err(format!("size '{size}': unit must be {}", allowed()));
    };
    if n == 0 {
        return Err(format!(
            "size '{size}' is zero, which tmpfs takes as unlimited"
        ));
    }
    Ok(OverlaySize::Bytes(
        n.checked_mul(*scale).ok_or_else(too_big)?,
    ))
}

/// What PID 1 does after a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    Shell,
    Reboot,
    Poweroff,
    Halt,
}

impl OnFail {
    pub fn parse(text: &str) -> Result<OnFail, String> {
        match text {
            "shell" => Ok(OnFail::Shell),
            "reboot" => Ok(OnFail::Reboot),
            "poweroff" => Ok(OnFail::Poweroff),
            "halt" => Ok(OnFail::Halt),
            _ => Err(format!(
                "'{text}': expected shell, reboot, poweroff or halt"
            )),
        }
    }
}

/// How the network interface gets its address for `overboot.fetch=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    Dhcp,
    /// `overboot.ip=ADDR/PREFIX,GATEWAY[,DNS]`.
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        dns: Option<Ipv4Addr>,
    },
}

impl IpConfig {
    /// `dhcp` or `ADDR/PREFIX,GATEWAY[,DNS]`.
    pub fn parse(text: &str) -> Result<IpConfig, String> {
        if text == "dhcp" {
            return Ok(IpConfig::Dhcp);
        }
        let usage = || format!("'{text}': expected dhcp or ADDR/PREFIX,GATEWAY[,DNS]");
        let mut parts = text.split(',');
        let (addr, prefix) = parts
            .next()
            .and_then(|a| a.split_once('/'))
            .ok_or_else(usage)?;
        let ip = |what: &str, v: &str| {
            v.parse::<Ipv4Addr>()
                .map_err(|_| format!("'{text}': {what} '{v}' is not an IPv4 address"))
        };
        let address = ip("address", addr)?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("'{text}': prefix '{prefix}' is not 1 to 32"))?;
        let gateway = ip("gateway", parts.next().ok_or_else(usage)?)?;
        let dns = parts.next().map(|d| ip("DNS server", d)).transpose()?;
        if parts.next().is_some() {
            return Err(usage());
        }
        Ok(IpConfig::Static {
            address,
            prefix,
            gateway,
            dns,
        })
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Dhcp => f.write_str("dhcp"),
            IpConfig::Static {
                address,
                prefix,
                gateway,
                dns,
            } => {
                write!(f, "{address}/{prefix},{gateway}")?;
                match dns {
                    Some(d) => write!(f, ",{d}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `overboot.netif=`: an interface name or its MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetIf {
    Name(String),
    Mac([u8; 6]),
}

impl NetIf {
    pub fn parse(text: &str) -> Result<NetIf, String> {
        let bytes: Vec<Option<u8>> = text
            .split(':')
            .map(|b| {
                (b.len() == 2)
                    .then(|| u8::from_str_radix(b, 16).ok())
                    .flatten()
            })
            .collect();
        if bytes.len() == 6 {
            let mut mac = [0u8; 6];
            for (m, b) in mac.iter_mut().zip(&bytes) {
                *m =
                    b.ok_or_else(|| format!("'{text}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            }
            return Ok(NetIf::Mac(mac));
        }
        // IFNAMSIZ is 16 with the terminating NUL.
        if text.is_empty()
            || text.len() > 15
            || text.contains(['/', ':'])
            || text.contains(char::is_whitespace)
        {
            return Err(format!(
                "'{text}' is neither an interface name nor a MAC address"
            ));
        }
        Ok(NetIf::Name(text.to_string()))
    }
}

impl fmt::Display for NetIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetIf::Name(n) => f.write_str(n),
            NetIf::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}

/// `overboot.fetch=URL`: checked for its scheme and host here; the network build of
/// `/init` parses it fully (`net::http::Url`).
fn parse_fetch(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("'{text}': the URL must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("'{text}': the URL has no host"));
    }
    Ok(text.to_string())
}

/// Every setting optional: what one source (command line, manifest) says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub bootext: Option<DeviceSpec>,
    pub system: Option<SystemChoice>,
    pub toram: Option<bool>,
    pub overlay: Option<OverlaySize>,
    /// `overboot.overlay=persist`: the writable layer on BootExt (`Persist/`).
    pub persist: Option<bool>,
    pub dirs: Option<bool>,
    pub timeout_secs: Option<u32>,
    pub verify: Option<bool>,
    /// `overboot.verity`: dm-verity where sealed (unset), required (1) or off (0).
    pub verity: Option<bool>,
    pub verity_error: Option<crate::verity::format::OnError>,
    pub onfail: Option<OnFail>,
    pub debug: Option<bool>,
    pub init: Option<String>,
    /// `overboot.fetch=URL`: the system image from the network (netboot).
    pub fetch: Option<String>,
    /// `overboot.ip=` and `overboot.netif=` as written: only the network build of
    /// `/init` reads them ([`IpConfig::parse`], [`NetIf::parse`]), so the parsers stay
    /// out of the plain build.
    pub ip: Option<String>,
    pub netif: Option<String>,
}

pub const DEFAULT_OVERLAY_SIZE: OverlaySize = OverlaySize::Percent(50);
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// The settings a boot runs with, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootConfig {
    pub bootext: DeviceSpec,
    pub system: SystemChoice,
    pub toram: bool,
    pub overlay: OverlaySize,
    /// Upper layer on BootExt (`Persist/`) instead of tmpfs; tmpfs of `overlay`'s
    /// size stays the fallback.
    pub persist: bool,
    pub dirs: bool,
    pub timeout_secs: u32,
    /// `None`: verify where a checksum exists.
    pub verify: Option<bool>,
    /// `None`: dm-verity for images with a `NAME.verity` (crate::verity::boot).
    pub verity: Option<bool>,
    /// What a corrupted block does at run time (default EIO).
    #[serde(serialize_with = "serialize_on_error")]
    pub verity_error: crate::verity::format::OnError,
    /// `None`: shell if the initramfs has one, else reboot.
    pub onfail: Option<OnFail>,
    pub debug: bool,
    pub init: Option<String>,
    /// The image URL for a network boot; `ip` and `netif` say how to get there
    /// (as written; `None`: DHCP on the first interface with a link).
    pub fetch: Option<String>,
    pub ip: Option<String>,
    pub netif: Option<String>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Settings::default().resolve()
    }
}

impl Settings {
    /// `self` wins where it says something; `lower` fills the rest.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            bootext: self.bootext.or(lower.bootext),
            system: self.system.or(lower.system),
            toram: self.toram.or(lower.toram),
            overlay: self.overlay.or(lower.overlay),
            persist: self.persist.or(lower.persist),
            dirs: self.dirs.or(lower.dirs),
            timeout_secs: self.timeout_secs.or(lower.timeout_secs),
            verify: self.verify.or(lower.verify),
            verity: self.verity.or(lower.verity),
            verity_error: self.verity_error.or(lower.verity_error),
            onfail: self.onfail.or(lower.onfail),
            debug: self.debug.or(lower.debug),
            init: self.init.or(lower.init),
            fetch: self.fetch.or(lower.fetch),
            ip: self.ip.or(lower.ip),
            netif: self.netif.or(lower.netif),
        }
    }

    pub fn resolve(self) -> BootConfig {
        BootConfig {
            bootext: self
                .bootext
                .unwrap_or_else(|| DeviceSpec::Label("BootExt".into())),
            system: self.system.unwrap_or(SystemChoice::Active),
            toram: self.toram.unwrap_or(false),
            overlay: self.overlay.unwrap_or(DEFAULT_OVERLAY_SIZE),
            persist: self.persist.unwrap_or(false),
            dirs: self.dirs.unwrap_or(true),
            timeout_secs: self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
            verify: self.verify,
            verity: self.verity,
            verity_error: self.verity_error.unwrap_or_default(),
            onfail: self.onfail,
            debug: self.debug.unwrap_or(false),
            init: self.init,
            fetch: self.fetch,
            ip: self.ip,
            netif: self.netif,
        }
    }

    /// Every key [`Settings::apply`] knows (for "did you mean").
    pub const PARAMETERS: &'static [&'static str] = &[
        "bootext",
        "system",
        "toram",
        "overlay",
        "dirs",
        "timeout",
        "verify",
        "verity",
        "verity-error",
        "onfail",
        "debug",
        "fetch",
        "ip",
        "netif",
    ];

    /// Apply one `key=value` setting (key without the `overboot.` prefix). Shared by
    /// the command line and the manifest so both accept the same words.
    pub fn apply<'a>(&mut self, key: &str, value: Option<&'a str>) -> Result<(), String> {
        let missing = || format!("overboot.{key} needs a value");
        let need = |v: Option<&'a str>| v.ok_or_else(missing);
        match key {
            "bootext" => self.bootext = Some(DeviceSpec::parse(need(value)?)?),
            "system" => self.system = Some(SystemChoice::parse(need(value)?)?),
            "toram" => self.toram = Some(parse_bool(value.unwrap_or("1"))?),
            "overlay" => {
                let v = need(value)?;
                if v == "persist" {
                    self.persist = Some(true);
                } else {
                    self.overlay = Some(parse_overlay(v)?);
                    self.persist = Some(false);
                }
            }
            "dirs" => self.dirs = Some(parse_bool(need(value)?)?),
            "timeout" => {
                let v = need(value)?;
                self.timeout_secs =
                    Some(v.parse().map_err(|_| {
                        format!("overboot.timeout='{v}' is not a number of seconds")
                    })?)
            }
            "verify" => self.verify = Some(parse_bool(need(value)?)?),
            "verity" => self.verity = Some(parse_bool(need(value)?)?),
            "verity-error" => {
                let v = need(value)?;
                self.verity_error =
                    Some(crate::verity::format::OnError::parse(v).ok_or_else(|| {
                        format!("overboot.verity-error='{v}': expected eio, restart or panic")
                    })?)
            }
            "onfail" => self.onfail = Some(OnFail::parse(need(value)?)?),
            "debug" => self.debug = Some(parse_bool(value.unwrap_or("1"))?),
            "fetch" => self.fetch = Some(parse_fetch(need(value)?)?),
            "ip" => self.ip = Some(need(value)?.to_string()),
            "netif" => self.netif = Some(need(value)?.to_string()),
            _ => {
                return Err(format!(
                    "unknown parameter overboot.{key}{}",
                    crate::suggest::did_you_mean(key, Self::PARAMETERS)
                ));
            }
        }
        Ok(())
    }
}

fn serialize_on_error<S: serde::Serializer>(
    v: &crate::verity::format::OnError,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        _ => Err(format!("'{v}' is not 0 or 1")),
    }
}

/// Result of parsing a kernel command line: the settings found and the problems,
/// which are reported and never fatal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Split a kernel command line into words the way the kernel does: whitespace
/// separates, double quotes group (and are dropped).
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut word));
                    has_word = false;
                }
            }
            c => {
                word.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(word);
    }
    words
}

/// Parse the kernel command line. Only `overboot.*` and `init=` are ours; the rest
/// belongs to the kernel and other programs. Everything after `--` goes to init.
pub fn parse(cmdline: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for word in split_words(cmdline) {
        if word == "--" {
            break;
        }
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        if key == "init" {
            match value {
                Some(v) if v.starts_with('/') => parsed.settings.init = Some(v.to_string()),
                _ => parsed.warnings.push(format!(
                    "init={} ignored: it must be an absolute path",
                    value.unwrap_or("")
                )),
            }
            continue;
        }
        let Some(ours) = key.strip_prefix("overboot.") else {
            continue;
        };
        if let Err(e) = parsed.settings.apply(ours, value) {
            parsed.warnings.push(format!("{word}: {e}"));
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_given() {
        let p = parse("quiet console=ttyS0 root=/dev/sda1");
        assert!(p.warnings.is_empty());
        let c = p.settings.resolve();
        assert_eq!(c.bootext, DeviceSpec::Label("BootExt".into()));
        assert_eq!(c.system, SystemChoice::Active);
        assert!(!c.toram && c.dirs && !c.debug);
        assert_eq!(c.overlay, OverlaySize::Percent(50));
        assert_eq!(c.timeout_secs, 30);
        assert_eq!(c.verify, None);
        assert_eq!(c.onfail, None);
        assert_eq!(c.init, None);
        assert_eq!((c.fetch, c.ip, c.netif), (None, None, None));
    }

    #[test]
    fn every_parameter() {
        type Check = fn(&BootConfig) -> bool;
        let table: &[(&str, Check)] = &[
            ("overboot.bootext=UUID=AbCd-1234", |c| {
                c.bootext == DeviceSpec::Uuid("abcd-1234".into())
            }),
            ("overboot.bootext=PARTUUID=1-2", |c| {
                c.bootext == DeviceSpec::PartUuid("1-2".into())
            }),
            ("overboot.bootext=PARTLABEL=boot", |c| {
                c.bootext == DeviceSpec::PartLabel("boot".into())
            }),
            ("overboot.bootext=LABEL=X", |c| {
                c.bootext == DeviceSpec::Label("X".into())
            }),
            ("overboot.bootext=/dev/vdb", |c| {
                c.bootext == DeviceSpec::Path("/dev/vdb".into())
            }),
            ("overboot.system=recovery", |c| {
                c.system == SystemChoice::Recovery
            }),
            ("overboot.system=active", |c| {
                c.system == SystemChoice::Active
            }),
            ("overboot.system=v2.squashfs", |c| {
                c.system == SystemChoice::Named("v2.squashfs".into())
            }),
            ("overboot.toram", |c| c.toram),
            ("overboot.toram=1", |c| c.toram),
            ("overboot.toram=0", |c| !c.toram),
            ("overboot.overlay=tmpfs", |c| {
                c.overlay == OverlaySize::Percent(50)
            }),
            ("overboot.overlay=tmpfs:size=25%", |c| {
                c.overlay == OverlaySize::Percent(25)
            }),
            ("overboot.overlay=tmpfs:size=512M", |c| {
                c.overlay == OverlaySize::Bytes(512 << 20)
            }),
            ("overboot.overlay=tmpfs:size=2G", |c| {
                c.overlay == OverlaySize::Bytes(2 << 30)
            }),
            ("overboot.overlay=persist", |c| {
                c.persist && c.overlay == OverlaySize::Percent(50)
            }),
            (
                "overboot.overlay=persist overboot.overlay=tmpfs:size=1G",
                |c| !c.persist && c.overlay == OverlaySize::Bytes(1 << 30),
            ),
            ("overboot.dirs=0", |c| !c.dirs),
            ("overboot.timeout=5", |c| c.timeout_secs == 5),
            ("overboot.verify=0", |c| c.verify == Some(false)),
            ("overboot.verify=1", |c| c.verify == Some(true)),
            ("overboot.verity=1", |c| c.verity == Some(true)),
            ("overboot.verity=0", |c| c.verity == Some(false)),
            ("overboot.verity-error=eio", |c| {
                c.verity_error == crate::verity::format::OnError::Eio
            }),
            ("overboot.debug", |c| {
                c.verity_error == crate::verity::format::OnError::Restart
            }),
            ("overboot.onfail=poweroff", |c| {
                c.onfail == Some(OnFail::Poweroff)
            }),
            ("overboot.onfail=shell", |c| c.onfail == Some(OnFail::Shell)),
            ("overboot.onfail=reboot", |c| {
                c.onfail == Some(OnFail::Reboot)
            }),
            ("overboot.onfail=halt", |c| c.onfail == Some(OnFail::Halt)),
            ("overboot.debug", |c| c.debug),
            ("init=/bin/sh", |c| c.init.as_deref() == Some("/bin/sh")),
            ("overboot.fetch=http://10.0.2.100/a.squashfs", |c| {
                c.fetch.as_deref() == Some("http://10.0.2.100/a.squashfs") && c.ip.is_none()
            }),
            ("overboot.fetch=https://boot.example/img/", |c| {
                c.fetch.as_deref() == Some("https://boot.example/img/")
            }),
            (
                "overboot.ip=10.0.2.15/24,10.0.2.2 overboot.netif=eth1",
                |c| {
                    c.ip.as_deref() == Some("10.0.2.15/24,10.0.2.2")
                        && c.netif.as_deref() == Some("eth1")
                },
            ),
        ];
        for (line, check) in table {
            let p = parse(line);
            assert!(p.warnings.is_empty(), "{line}: {:?}", p.warnings);
            assert!(check(&p.settings.resolve()), "{line}");
        }
    }

    #[test]
    fn every_parameter_listed_is_known() {
        for key in Settings::PARAMETERS {
            let e = Settings::default().apply(key, Some("x")).err();
            assert!(
                !e.is_some_and(|e| e.contains("unknown parameter")),
                "{key} is listed but not applied"
            );
        }
        let e = Settings::default().apply("veriy", Some("1")).unwrap_err();
        assert!(e.ends_with("(did you mean 'verify'?)"), "{e}");
    }

    #[test]
    fn bad_values_and_unknown_parameters_are_reported() {
        let table = [
            (
                "overboot.frobnicate=1",
                "unknown parameter overboot.frobnicate",
            ),
            ("overboot.system=", "needs active"),
            ("overboot.system=../x", "without '/'"),
            ("overboot.timeout=soon", "not a number"),
            ("overboot.overlay=zram", "only 'tmpfs"),
            ("overboot.overlay=tmpfs:size=0%", "1% to 100%"),
            ("overboot.overlay=tmpfs:size=12K", "unit must be"),
            ("overboot.overlay=tmpfs:size=99999999999999G", "too large"),
            // Issue 10 item 7: on main, "does not start with a number".
            (
                "overboot.overlay=tmpfs:size=99999999999999999999999G",
                "too large",
            ),
            (
                "overboot.overlay=tmpfs:size=G",
                "does not start with a number",
            ),
            ("overboot.onfail=explode", "expected shell"),
            ("overboot.bootext=sda1", "not LABEL="),
            ("overboot.bootext=LABEL=", "needs a value"),
            ("overboot.dirs", "needs a value"),
            ("overboot.toram=maybe", "not 0 or 1"),
            (
                "overboot.verity-error=reboot",
                "expected eio, restart or panic",
            ),
            ("init=sbin/init", "absolute path"),
            ("overboot.fetch=ftp://x/a", "http:// or https://"),
            ("overboot.fetch=http:///a", "no host"),
            ("overboot.fetch", "needs a value"),
            ("overboot.ip", "needs a value"),
        ];
        for (line, expected) in table {
            let p = parse(line);
            assert_eq!(p.warnings.len(), 1, "{line}");
            assert!(
                p.warnings[0].contains(expected),
                "{line}: {}",
                p.warnings[0]
            );
            // A bad value never changes a setting.
            assert_eq!(p.settings, Settings::default(), "{line}");
        }
    }

    #[test]
    fn network_addresses_and_interfaces() {
        let ip = |t: &str| IpConfig::parse(t);
        assert_eq!(ip("dhcp"), Ok(IpConfig::Dhcp));
        let s = ip("192.168.1.5/24,192.168.1.1").unwrap();
        assert_eq!(
            s,
            IpConfig::Static {
                address: Ipv4Addr::new(192, 168, 1, 5),
                prefix: 24,
                gateway: Ipv4Addr::new(192, 168, 1, 1),
                dns: None,
            }
        );
        assert_eq!(s.to_string(), "192.168.1.5/24,192.168.1.1");
        let s = ip("10.0.2.15/24,10.0.2.2,10.0.2.3").unwrap();
        assert_eq!(s.to_string(), "10.0.2.15/24,10.0.2.2,10.0.2.3");
        for (bad, why) in [
            ("static", "expected dhcp"),
            ("10.0.0.1/24", "expected dhcp"),
            ("10.0.0.1/33,10.0.0.254", "not 1 to 32"),
            ("10.0.0.300/24,10.0.0.254", "not an IPv4"),
            ("10.0.0.1/24,gw", "gateway 'gw'"),
            ("10.0.0.1/24,10.0.0.254,dns", "DNS server"),
            ("10.0.0.1/24,10.0.0.254,1.1.1.1,x", "expected dhcp"),
        ] {
            let e = ip(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(NetIf::parse("eth1"), Ok(NetIf::Name("eth1".into())));
        let mac = NetIf::parse("52:54:00:12:34:5A").unwrap();
        assert_eq!(mac, NetIf::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x5a]));
        assert_eq!(mac.to_string(), "52:54:00:12:34:5a");
        for (bad, why) in [
            ("52:54:00:12:34:zz", "not a MAC"),
            ("a/b", "neither"),
            ("averyveryverylongname", "neither"),
            ("", "neither"),
        ] {
            let e = NetIf::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn later_words_win_and_after_double_dash_is_for_init() {
        let p = parse("overboot.system=recovery overboot.system=active -- overboot.dirs=0");
        let c = p.settings.resolve();
        assert_eq!(c.system, SystemChoice::Active);
        assert!(c.dirs);
    }

    #[test]
    fn layering_command_line_over_manifest() {
        let manifest = Settings {
            dirs: Some(false),
            timeout_secs: Some(9),
            ..Default::default()
        };
        let cmd = parse("overboot.dirs=1").settings;
        let c = cmd.over(manifest).resolve();
        assert!(c.dirs);
        assert_eq!(c.timeout_secs, 9);
    }

    #[test]
    fn persist_layers_command_line_over_manifest() {
        let manifest = parse("overboot.overlay=persist").settings;
        assert!(manifest.clone().resolve().persist);
        let cmd = parse("overboot.overlay=tmpfs").settings;
        assert!(!cmd.over(manifest.clone()).resolve().persist);
        let cmd = parse("quiet").settings;
        assert!(cmd.over(manifest).resolve().persist);
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            split_words("  a  b\t\"c d\" e\"f g\"\n"),
            vec!["a", "b", "c d", "ef g"]
        );
        assert_eq!(split_words("\"\""), vec![""]);
        assert!(split_words("").is_empty());
    }

    /// Found by the fuzz invariant (fuzz/regressions/cmdline/): `size=0M` gave a
    /// tmpfs with size=0, which the kernel takes as unlimited.
    #[test]
    fn zero_overlay_size_is_refused() {
        for v in ["tmpfs:size=0M", "tmpfs:size=00G", "tmpfs:size=0g"] {
            let e = parse_overlay(v).unwrap_err();
            assert!(e.contains("unlimited"), "{v}: {e}");
        }
        assert_eq!(
            parse_overlay("tmpfs:size=1M"),
            Ok(OverlaySize::Bytes(1 << 20))
        );
        let p = parse("overboot.overlay=tmpfs:size=0M");
        assert_eq!(p.settings.overlay, None);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }
}
