//! TLS for the test servers: a private CA and a server certificate it signs, made
//! by the `openssl` CLI into a test's directory, and the nginx directives that
//! serve with them. Nothing is trusted system-wide: a client trusts the CA only
//! when given `ca` (`overboot update --ca`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate (ECDSA P-256, valid two days) in one directory.
pub struct Tls {
    /// The CA's certificate (PEM): what a client is told to trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

impl Tls {
    /// A CA, and a server certificate for `names` (IP addresses become `IP:`
    /// subject alternative names, the rest `DNS:`), e.g. `["127.0.0.1", "localhost"]`,
    /// or a QEMU guest's forwarded address.
    pub fn generate(dir: &Path, names: &[&str]) -> Tls {
        std::fs::create_dir_all(dir).unwrap();
        let t = Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        let sans: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=overboot test CA",
                ])
                .args(new_key)
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&t.ca),
        );
        openssl(
            Command::new("openssl")
                .args(["req", "-subj", "/CN=overboot test server"])
                .args(new_key)
                .arg("-keyout")
                .arg(&t.key)
                .arg("-out")
                .arg(&csr),
        );
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&t.ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&t.cert),
        );
        t
    }

    /// nginx's `server` directives: listen on 127.0.0.1:`port` with TLS.
    pub fn nginx_listen(&self, port: u16) -> String {
        format!(
            "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

fn openssl(cmd: &mut Command) {
    let out = cmd.output().expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
