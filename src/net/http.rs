//! HTTP/1.1 for one thing: GET a file, from an offset (`Range`) to resume. Pure: the
//! URL, the request text and the response head; the transfer is in `net::fetch`.
//!
//! Bounded on purpose: a head larger than [`MAX_HEAD`] is refused, a chunked body is
//! refused (a static file server sends `Content-Length`), and the length of the body
//! must be known before the first byte is written to RAM.

/// The largest response head read before the body.
pub const MAX_HEAD: usize = 16 * 1024;

/// `http://host[:port]/path` or `https://…` (TLS: `net::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{text}: not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("{text}: user names in URLs are not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{text}: port '{p}' is not a number from 1 to 65535"))?,
            ),
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text}: the URL has no host"));
        }
        if path.contains(|c: char| c.is_ascii_control() || c == ' ') || path.contains('#') {
            return Err(format!(
                "{text}: the path has spaces, control characters or a fragment"
            ));
        }
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The last path component (the file name), if the URL names a file.
    pub fn file_name(&self) -> Option<&str> {
        let path = self.path.split('?').next().unwrap_or_default();
        path.rsplit('/').next().filter(|n| !n.is_empty())
    }

    /// The URL of `name` beside this one (`http://h/dir/a` + `a.minisig`).
    pub fn sibling(&self, name: &str) -> Url {
        let path = self.path.split('?').next().unwrap_or_default();
        let dir = match path.rfind('/') {
            Some(i) => &path[..=i],
            None => "/",
        };
        Url {
            path: format!("{dir}{name}"),
            ..self.clone()
        }
    }

    /// The `Host:` value: the port only when it is not the default.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// The request for `url` from byte `from` on (`Range` only when `from > 0`).
pub fn request(url: &Url, from: u64) -> String {
    let range = if from > 0 {
        format!("Range: bytes={from}-\r\n")
    } else {
        String::new()
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: overboot/{}\r\nAccept-Encoding: identity\r\n{range}Connection: close\r\n\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    )
}

/// Where the head ends (the index after the blank line), once it has arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What a response head says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<u64>,
    /// `Content-Range: bytes START-END/TOTAL`.
    pub range: Option<(u64, u64, u64)>,
    pub location: Option<String>,
    pub chunked: bool,
}

pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the response head is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let status = words.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(format!("not an HTTP/1.x response: '{status_line}'"));
    };
    let mut h = Head {
        status,
        reason: words.next().unwrap_or_default().to_string(),
        content_length: None,
        range: None,
        location: None,
        chunked: false,
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("a header line without ':': '{line}'"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                h.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("Content-Length '{value}' is not a number"))?,
                )
            }
            "content-range" => h.range = Some(parse_content_range(value)?),
            "location" => h.location = Some(value.to_string()),
            "transfer-encoding" => h.chunked = !value.eq_ignore_ascii_case("identity"),
            _ => {}
        }
    }
    Ok(h)
}

fn parse_content_range(value: &str) -> Result<(u64, u64, u64), String> {
    let bad = || format!("Content-Range '{value}' is not 'bytes START-END/TOTAL'");
    let spec = value.strip_prefix("bytes ").ok_or_else(bad)?;
    let (span, total) = spec.split_once('/').ok_or_else(bad)?;
    let (start, end) = span.split_once('-').ok_or_else(bad)?;
    let n = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (start, end, total) = (n(start)?, n(end)?, n(total)?);
    if start > end || end >= total {
        return Err(bad());
    }
    Ok((start, end, total))
}

/// What to do with a response to a request from byte `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The body is the file from `start` (0, or `from` for a resumed transfer), of
    /// `total` bytes in all.
    Body { start: u64, total: u64 },
    /// Ask again there (a redirect).
    Redirect(String),
}

pub fn plan(head: &Head, from: u64) -> Result<Plan, String> {
    if head.chunked {
        return Err("the server sent a chunked body; serve the image as a static file".into());
    }
    match head.status {
        200 => {
            let total = head
                .content_length
                .ok_or("the server sent no Content-Length")?;
            // A server without ranges sends the whole file again: start over.
            Ok(Plan::Body { start: 0, total })
        }
        206 => {
            let (start, end, total) = head
                .range
                .ok_or("a partial response (206) without Content-Range")?;
            if start != from || end + 1 != total {
                return Err(format!(
                    "asked for bytes {from}- and the server sent {start}-{end}/{total}"
                ));
            }
            Ok(Plan::Body { start, total })
        }
        301 | 302 | 303 | 307 | 308 => head
            .location
            .clone()
            .map(Plan::Redirect)
            .ok_or_else(|| format!("HTTP {} without a Location", head.status)),
        s => Err(format!("HTTP {s} {}", head.reason)),
    }
}

/// The URL a redirect points at: absolute, or a path on the same server.
pub fn redirect_target(from: &Url, location: &str) -> Result<Url, String> {
    if location.starts_with('/') {
        return Ok(Url {
            path: location.to_string(),
            ..from.clone()
        });
    }
    Url::parse(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://10.0.2.100/images/a.squashfs").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "10.0.2.100", 80, "/images/a.squashfs")
        );
        assert_eq!(u.file_name(), Some("a.squashfs"));
        assert_eq!(
            u.sibling("a.squashfs.minisig").to_string(),
            "http://10.0.2.100/images/a.squashfs.minisig"
        );
        let u = Url::parse("https://boot.example:8443").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (true, 8443, "/"));
        assert_eq!(u.file_name(), None);
        assert_eq!(u.to_string(), "https://boot.example:8443/");
        let u = Url::parse("http://[fd00::1]:8080/x?y=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 8080));
        assert_eq!(u.file_name(), Some("x"));
        assert_eq!(u.to_string(), "http://[fd00::1]:8080/x?y=1");
        for (bad, why) in [
            ("ftp://x/a", "not an http"),
            ("http://:80/a", "no host"),
            ("http://h:0/a", "port '0'"),
            ("http://h:99999/a", "port"),
            ("http://u:p@h/a", "user names"),
            ("http://h/a b", "spaces"),
            ("http://h/a#frag", "fragment"),
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn request_text() {
        let u = Url::parse("http://10.0.2.100:8080/a.squashfs").unwrap();
        let r = request(&u, 0);
        assert!(r.starts_with("GET /a.squashfs HTTP/1.1\r\nHost: 10.0.2.100:8080\r\n"));
        assert!(!r.contains("Range"));
        assert!(r.ends_with("Connection: close\r\n\r\n"));
        assert!(request(&u, 1234).contains("\r\nRange: bytes=1234-\r\n"));
    }

    #[test]
    fn heads_and_what_they_mean() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\ncontent-length: 1000\r\n\r\nBODY";
        let end = head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"BODY");
        let h = parse_head(&raw[..end]).unwrap();
        assert_eq!((h.status, h.content_length), (200, Some(1000)));
        assert_eq!(
            plan(&h, 0),
            Ok(Plan::Body {
                start: 0,
                total: 1000
            })
        );
        // A server that ignores Range: the whole file again.
        assert_eq!(
            plan(&h, 500),
            Ok(Plan::Body {
                start: 0,
                total: 1000
            })
        );

        let h = parse_head(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 500-999/1000\r\nContent-Length: 500\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            plan(&h, 500),
            Ok(Plan::Body {
                start: 500,
                total: 1000
            })
        );
        assert!(plan(&h, 400).unwrap_err().contains("asked for bytes 400-"));

        let h = parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert_eq!(plan(&h, 0), Err("HTTP 404 Not Found".into()));
        let h = parse_head(b"HTTP/1.1 301 Moved\r\nLocation: /b/a.squashfs\r\n\r\n").unwrap();
        assert_eq!(plan(&h, 0), Ok(Plan::Redirect("/b/a.squashfs".into())));
        let from = Url::parse("http://h:81/a.squashfs").unwrap();
        assert_eq!(
            redirect_target(&from, "/b/a.squashfs").unwrap().to_string(),
            "http://h:81/b/a.squashfs"
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(plan(&h, 0).unwrap_err().contains("chunked"));
        let h = parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(plan(&h, 0).unwrap_err().contains("Content-Length"));
    }

    #[test]
    fn bad_heads_are_refused() {
        for (raw, why) in [
            (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "not an HTTP/1.x"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "not an HTTP/1.x"),
            (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "without ':'"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "not a number",
            ),
            (
                b"HTTP/1.1 206 OK\r\nContent-Range: bytes 9-3/10\r\n\r\n",
                "Content-Range",
            ),
            (
                b"HTTP/1.1 206 OK\r\nContent-Range: bytes 0-10/10\r\n\r\n",
                "Content-Range",
            ),
            (b"HTTP/1.1 200 \xff\r\n\r\n", "not text"),
        ] {
            let e = parse_head(raw).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(raw));
        }
    }
}
