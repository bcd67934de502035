//! `https://` for the network `/init`: rustls over the fetch's own TCP connection,
//! with ring, the crypto provider that `overboot update` already links through ureq
//! (one TLS stack in the project). Only `overboot-init-net` reaches this code; the
//! plain `overboot-init` (the 1 MB image) does not carry it.
//!
//! Trust anchors are the PEM certificates at [`NET_CA`], which `mkinitramfs` writes
//! when the network group is in (`--net-ca FILE`, else the build machine's CA
//! bundle). Validity times are checked against the kernel's clock, which Linux sets
//! from the RTC early in boot: there is no network time before the fetch. A wrong
//! RTC therefore shows up as a certificate "not valid yet" or "expired", and the
//! refusal names the clock's time so that the cause is plain (set the RTC, or serve
//! over http://: the image's signature protects it either way).
//!
//! On a CPU without AES instructions (QEMU's default CPU, a Raspberry Pi 4), the
//! client offers ChaCha20-Poly1305 first: in software it is several times faster
//! than AES-GCM (`bench/netboot --https`).

use super::http::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::TcpStream;
use std::sync::Arc;

/// Where the initramfs carries the CA certificates that `https://` trusts.
pub const NET_CA: &str = "/etc/overboot/net-ca.pem";

/// An open TLS connection.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A client configuration that trusts the certificates in `pem` (from `source`).
pub fn config(pem: &[u8], source: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("{source}: {e:?}"))?;
        // A bundle may hold certificates webpki cannot use as anchors: skip them,
        // as curl does, and count on the others.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "{source}: no usable CA certificate (PEM) in it; build the initramfs with mkinitramfs --net-ca CA.pem"
        ));
    }
    let mut provider = rustls::crypto::ring::default_provider();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpu_has_aes(&cpuinfo) {
        // Without AES instructions, ChaCha20-Poly1305 is the faster cipher in
        // software (Go and BoringSSL choose the same way); the server follows the
        // client's order under TLS 1.3 by default.
        provider
            .cipher_suites
            .sort_by_key(|s| !is_chacha(s.suite()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether `/proc/cpuinfo` lists AES instructions (`aes` in x86's `flags`, or in
/// arm64's `Features`).
pub fn cpu_has_aes(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        matches!(key.trim(), "flags" | "Features") && value.split_whitespace().any(|f| f == "aes")
    })
}

fn is_chacha(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// TLS over `tcp` to `url`'s host, with the handshake done, so that a refused
/// certificate fails here with one clear message rather than in the first read.
pub fn connect(
    config: &Arc<ClientConfig>,
    url: &Url,
    mut tcp: TcpStream,
) -> Result<TlsStream, String> {
    let name = ServerName::try_from(url.host.as_str())
        .map_err(|_| format!("{url}: '{}' is not a host name or address", url.host))?
        .to_owned();
    let mut conn =
        ClientConnection::new(config.clone(), name).map_err(|e| format!("{url}: TLS: {e}"))?;
    // Bounded: each call either progresses the handshake or fails (the socket has
    // read and write timeouts), and a handshake is a few messages.
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| handshake_error(url, &e))?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// What a failed handshake means, and what to change.
fn handshake_error(url: &Url, e: &std::io::Error) -> String {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(c)) => certificate_error(url, c),
        Some(other) => format!("{url}: TLS handshake failed: {other}"),
        None => format!("{url}: TLS handshake failed: {e}"),
    }
}

fn certificate_error(url: &Url, c: &CertificateError) -> String {
    use CertificateError as C;
    let clock = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!(
            "this machine's clock says {} (Linux set it from the RTC); if that is wrong, set the RTC, otherwise renew the server's certificate",
            crate::calendar::utc_text(now)
        )
    };
    match c {
        // BadSignature: a trusted CA of the same name did not sign it.
        C::UnknownIssuer | C::BadSignature => format!(
            "{url}: the server's certificate is not signed by a CA this initramfs trusts ({NET_CA}; {c:?}); build the initramfs with mkinitramfs --net-ca CA.pem, CA.pem being the CA that signed the server's certificate"
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => format!(
            "{url}: the server's certificate is not valid yet: {}",
            clock()
        ),
        C::Expired | C::ExpiredContext { .. } => {
            format!("{url}: the server's certificate has expired: {}", clock())
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "{url}: the server's certificate is not for {}; use the name or address the certificate names in overboot.fetch=",
            url.host
        ),
        other => format!("{url}: the server's certificate is refused: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_instructions_from_cpuinfo() {
        assert!(cpu_has_aes(
            "processor\t: 0\nflags\t\t: fpu sse2 aes pclmulqdq avx\n"
        ));
        assert!(cpu_has_aes(
            "Features\t: fp asimd aes pmull sha1 sha2 crc32\n"
        ));
        // QEMU's qemu64 CPU, and a Raspberry Pi 4 (no crypto extensions).
        assert!(!cpu_has_aes(
            "flags\t\t: fpu de pse tsc msr pae sse sse2 pni\n"
        ));
        assert!(!cpu_has_aes("Features\t: fp asimd evtstrm crc32 cpuid\n"));
        assert!(!cpu_has_aes(
            "flags\t\t: aesni_like_but_not\nmodel name\t: aes\n"
        ));
        assert!(!cpu_has_aes(""));
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let e = config(b"not a certificate\n", "net-ca.pem").unwrap_err();
        assert!(e.contains("no usable CA certificate"), "{e}");
    }

    #[test]
    fn refusals_say_what_to_change() {
        let url = Url::parse("https://10.0.2.100/a.squashfs").unwrap();
        for c in [
            CertificateError::UnknownIssuer,
            CertificateError::BadSignature,
        ] {
            let e = certificate_error(&url, &c);
            assert!(
                e.contains("not signed by a CA") && e.contains("--net-ca"),
                "{e}"
            );
        }
        let e = certificate_error(&url, &CertificateError::Expired);
        assert!(e.contains("clock says") && e.contains("RTC"), "{e}");
        let e = certificate_error(&url, &CertificateError::NotValidForName);
        assert!(e.contains("not for 10.0.2.100"), "{e}");
    }
}
