//! HTTP/1.1 and HTTPS for `overboot update`: whole small files (the index, the chunk
//! index, signatures) and byte ranges of an image. Every wait is bounded: connect,
//! the response head and each read of the body by the same `--timeout`; redirects by
//! [`MAX_REDIRECTS`]. What a server sends is checked before it is used: the status,
//! the `Content-Range` of a range, the length of everything.

use std::io::Read;
use std::time::Duration;
use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Redirects followed (a mirror or a CDN may send one or two).
pub const MAX_REDIRECTS: u32 = 5;

pub struct Client {
    agent: Agent,
    base: String,
}

/// Why a request failed: whether the rest of the update may go on is the caller's
/// choice; the message names the URL and what was wrong.
pub type HttpError = String;

impl Client {
    /// A client for the files under `base` (a directory URL), trusting the CAs
    /// `roots` for https ([`super::tls`]).
    pub fn new(base: &str, timeout: Duration, roots: &[Certificate<'static>]) -> Client {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(roots))
            // ring, as netboot's TLS (src/net/tls.rs): one crypto stack. rustls is
            // pinned beside ureq in Cargo.toml, so a mismatch fails to build.
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .build();
        let agent: Agent = Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .max_redirects(MAX_REDIRECTS)
            .http_status_as_error(false)
            .user_agent(concat!("overboot/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// `name`, whole, at most `max` bytes.
    pub fn get_small(&self, name: &str, max: u64) -> Result<Vec<u8>, HttpError> {
        let url = self.url(name);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("GET {url}: {}", describe(e)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("GET {url}: HTTP {status}{}", hint(status)));
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        body.as_reader()
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
        if out.len() as u64 > max {
            return Err(format!(
                "GET {url}: larger than {max} bytes; not an overboot index"
            ));
        }
        Ok(out)
    }

    /// Bytes `start..end` of `name`, passed to `sink` as they arrive. Fails unless
    /// the server answers 206 with exactly that range and sends all of it.
    pub fn get_range(
        &self,
        name: &str,
        start: u64,
        end: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), HttpError> {
        let url = self.url(name);
        let resp = self
            .agent
            .get(&url)
            .header("Range", format!("bytes={start}-{}", end - 1))
            .call()
            .map_err(|e| format!("GET {url}: {}", describe(e)))?;
        let status = resp.status().as_u16();
        if status != 206 {
            return Err(format!(
                "GET {url} bytes {start}-{}: HTTP {status}{}",
                end - 1,
                if status == 200 {
                    " (the server ignores Range requests; serve the directory with a server that honours them, as nginx does)".to_string()
                } else {
                    hint(status)
                }
            ));
        }
        let range = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if parse_content_range(&range) != Some((start, end)) {
            return Err(format!(
                "GET {url}: asked for bytes {start}-{}, the server sent Content-Range '{range}'",
                end - 1
            ));
        }
        let mut body = resp.into_body();
        let mut reader = body.as_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < end - start {
            let want = buf.len().min((end - start - got) as usize);
            let n = match reader.read(buf.get_mut(..want).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(format!(
                        "GET {url}: connection lost after {got} of {} bytes: {e}",
                        end - start
                    ));
                }
            };
            sink(buf.get(..n).unwrap_or_default())?;
            got += n as u64;
        }
        if got < end - start {
            return Err(format!(
                "GET {url}: the body ended after {got} of {} bytes (truncated)",
                end - start
            ));
        }
        Ok(())
    }
}

/// A failed request, with what to do about a certificate the client rejected.
/// (rustls' verdict reaches us inside an I/O error: only its text tells.)
fn describe(e: ureq::Error) -> String {
    let text = e.to_string();
    match e {
        ureq::Error::TooManyRedirects => {
            format!("{text} (more than {MAX_REDIRECTS}: a redirect loop on the server?)")
        }
        ureq::Error::Timeout(_) => {
            format!("{text} (no answer within --timeout; the server is down or overloaded)")
        }
        _ => format!("{text}{}", super::tls::hint(&text)),
    }
}

fn hint(status: u16) -> String {
    match status {
        404 => " (not found: check the URL, or publish the image there)".into(),
        500..=599 => " (server error: try again later)".into(),
        _ => String::new(),
    }
}

/// `bytes A-B/TOTAL` → (A, B + 1).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let (range, _total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b >= a).then_some((a, b + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 100)));
        assert_eq!(parse_content_range("bytes 10-10/*"), Some((10, 11)));
        assert_eq!(parse_content_range("bytes 10-9/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
