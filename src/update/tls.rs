//! The certificate authorities an https update trusts: the running system's CA
//! bundle (Debian's ca-certificates, kept current by the images this command
//! installs, and where `update-ca-certificates` puts a site's own CA) plus the
//! private CAs given with `--ca FILE` or `[update] ca` (PEM, one or more
//! certificates). No roots are compiled in: what the system distrusts stays
//! distrusted.

use ureq::tls::{Certificate, PemItem};

/// The system bundles, first found wins: Debian, Ubuntu, Arch, Alpine; Fedora.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A CA bundle is a few hundred KB (Debian's: 220 KB).
const MAX_PEM: u64 = 8 << 20;

/// The certificates in `pem` (other PEM items, such as keys, are skipped); `what`
/// names the file in messages. A file without one is an error: a `--ca` that
/// trusts nothing is a mistake, not a choice.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{what}: not a PEM file: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

/// Read a PEM file of CA certificates.
pub fn read_certs(path: &std::path::Path) -> Result<Vec<Certificate<'static>>, String> {
    use std::io::Read;
    let what = path.display().to_string();
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM + 1).read_to_end(&mut pem))
        .map_err(|e| format!("cannot read the CA file {what}: {e}"))?;
    if pem.len() as u64 > MAX_PEM {
        return Err(format!(
            "{what} is larger than {MAX_PEM} bytes; not a CA file"
        ));
    }
    parse_certs(&pem, &what)
}

/// The system's CAs, or none when no bundle is installed (then only the private
/// CAs are trusted; [`no_roots`] says so when a URL is https).
pub fn system_certs() -> Vec<Certificate<'static>> {
    for path in SYSTEM_BUNDLES {
        let p = std::path::Path::new(path);
        if !p.exists() {
            continue;
        }
        match read_certs(p) {
            Ok(certs) => return certs,
            Err(e) => log::warn!("{e}; its CAs are not trusted"),
        }
    }
    Vec::new()
}

/// The message for an https URL with no CA to check its server against.
pub fn no_roots(url: &str) -> String {
    format!(
        "{url}: no CA certificate to check the server with: none of {} exists (apt-get install ca-certificates) and no --ca FILE or [update] ca was given",
        SYSTEM_BUNDLES.join(", ")
    )
}

/// What to do about a TLS failure, from rustls' message: a hint to add to it.
pub fn hint(rustls_message: &str) -> &'static str {
    if rustls_message.contains("UnknownIssuer") {
        " (unknown issuer: the server's certificate is not signed by a CA this system trusts; give its CA with --ca FILE or [update] ca in overboot.toml)"
    } else if rustls_message.contains("NotValidForName") {
        " (the server's certificate does not name the host in the URL: use a name or address it lists)"
    } else if rustls_message.contains("Expired") || rustls_message.contains("NotValidYet") {
        " (the server's certificate is outside its validity period: check the server, and this system's clock)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed certificate (openssl req -x509 -newkey ec P-256, one day), test
    // data only: these tests parse PEM, they check no chain.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUBNUxYw4jGUH2KB7Gbkpz67lTYrAwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSb3ZlcmJvb3QtdW5pdC10ZXN0MB4XDTI2MTIwMzA2NTk0MFoX
DTI2MTIwNDA2NTk0MFowHTEbMBkGA1UEAwwSb3ZlcmJvb3QtdW5pdC10ZXN0MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmARWBqeezCZqImcQmpCsLOhk9PdL03eF
c5m8GZDJtk/w6k3ttBsksbyZJchTYJ0OmMD10AB8Uda3xDTrSSXV8aNTMFEwHQYD
VR0OBBYEFKraY2tjDnARsNmUURtN6aTjtU6BMB8GA1UdIwQYMBaAFKraY2tjDnAR
sNmUURtN6aTjtU6BMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
AOhMrnaouUjkBDk6YIY23QYqZWAIG2xQGscwBDiu+fcuAiBeooViC2d4gcWqVLjh
40ocn5ACK7U8y8lAFKNk34BkrQ==
-----END CERTIFICATE-----
";

    #[test]
    fn pem_files() {
        assert_eq!(parse_certs(CERT.as_bytes(), "ca.pem").unwrap().len(), 1);
        let two = format!("# comment\n{CERT}{CERT}");
        assert_eq!(parse_certs(two.as_bytes(), "ca.pem").unwrap().len(), 2);
        let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIH5Ec0crfGobmLhAEtXx0qI+/rI2je+9kzFf3X9YP4To\n-----END PRIVATE KEY-----\n";
        let e = parse_certs(key.as_bytes(), "key.pem").unwrap_err();
        assert!(e.contains("key.pem holds no PEM certificate"), "{e}");
        let e = parse_certs(b"", "empty.pem").unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn tls_hints() {
        assert!(hint("invalid peer certificate: UnknownIssuer").contains("--ca FILE"));
        assert!(hint("invalid peer certificate: NotValidForNameContext { .. }").contains("name"));
        assert_eq!(hint("handshake failure"), "");
    }
}
