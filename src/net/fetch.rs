//! The system image over HTTP, streamed straight into a tmpfs of its own (the toram
//! copy of `sys::toram`: same RAM check, progress line and one-pass hashing), resumed
//! with `Range` when the connection drops, and verified before anything mounts it.
//!
//! A URL ending in `/` is a directory made by `overboot publish`: its newest image is
//! fetched (`net::index`). A network image must be signed by a key baked into the
//! initramfs, by a signature naming it (`file:NAME`, `verify::check_signed_claims`); only an
//! explicit `overboot.verify=0` (in an initramfs without keys) boots an unsigned one,
//! with a loud warning. `https://` goes through `net::tls` (the CA certificates of
//! the initramfs); it adds privacy and server authentication, the signature already
//! makes plain HTTP safe against a changed image.

use super::http::{self, Head, Plan, Url};
use super::index;
use super::tls;
use crate::sys::errno_text;
use crate::sys::toram::{self, Progress, RamFile};
use crate::verify::{self, Digester, Expected, Mode, TrustStore, Verification};
use crate::verity::boot::Sealed;
use crate::verity::seal::{ROOTHASH_SUFFIX, VERITY_SUFFIX};
use std::cell::OnceCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent for this long counts as dropped (and is resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times a dropped transfer is resumed before the fetch gives up.
pub const MAX_RESUMES: u32 = 8;
/// The wait before each resume, doubling up to the last.
const RESUME_WAITS: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
const MAX_REDIRECTS: usize = 5;
/// The largest signature file read.
const MAX_SIGNATURE: u64 = 64 * 1024;
/// The largest `SHA256SUMS` of a directory read.
const MAX_LIST: u64 = 1 << 20;
const CHUNK: usize = 256 * 1024;

/// The image in RAM, verified.
pub struct Fetched {
    pub file: rustix::fd::OwnedFd,
    /// The file name in the URL (what the signature names).
    pub name: String,
    pub size: u64,
    pub allocated: u64,
    pub verified: Verification,
    /// `IMAGE.verity` (in RAM), checked with its root hash: the image is then read
    /// through dm-verity.
    pub sealed: Option<Sealed>,
    pub resumed: u32,
    pub ms: f64,
}

/// What the fetch needs besides the URL.
pub struct Inputs<'a> {
    pub trust: &'a TrustStore,
    pub verify: Option<bool>,
    pub meminfo: &'a Path,
    /// The CA certificates (PEM) `https://` trusts (`tls::NET_CA` at boot).
    pub net_ca: &'a Path,
    /// `overboot.verity`: fetch `IMAGE.verity` where the server has it (unset),
    /// require it (`1`), or not (`0`).
    pub verity: Option<bool>,
    /// PID-1 mode: progress on `/dev/console`.
    pub boot: bool,
}

/// How a network image is verified, or why it is refused: the signature is
/// required unless `overboot.verify=0` says otherwise in an initramfs without keys
/// (with keys, `verify::prepare` requires it whatever `overboot.verify` says).
/// The second value is the loud warning for an unverified image.
pub fn network_mode(
    enforcing: bool,
    verify: Option<bool>,
    url: &str,
) -> Result<(Mode, Option<String>), String> {
    match (enforcing, verify) {
        (true, v) => Ok((Mode::from_setting(v), None)),
        (false, Some(false)) => Ok((
            Mode::Skip,
            Some(format!(
                "*** {url} is NOT VERIFIED (overboot.verify=0, no trusted key): whoever can answer for that server decides what this machine runs ***"
            )),
        )),
        (false, _) => Err(format!(
            "{url}: a network image must be signed, and this initramfs trusts no key; build it with mkinitramfs --trust-key KEY.pub and publish IMAGE.minisig beside the image (minisign -Sm IMAGE), or boot with overboot.verify=0 to accept an unverified image"
        )),
    }
}

/// Fetch, verify and keep in RAM the image at `url`.
pub fn fetch(url: &Url, inp: &Inputs<'_>) -> Result<Fetched, String> {
    let client = Client {
        net_ca: inp.net_ca,
        tls: OnceCell::new(),
    };
    let (mode, warning) = network_mode(inp.trust.enforcing(), inp.verify, &url.to_string())?;
    if let Some(w) = &warning {
        log::warn!("{w}");
    }
    // A directory: its newest image, and the signed list that names it.
    let (url, sums) = match url.file_name() {
        Some(_) => (url.clone(), None),
        None => {
            let (image, sums) = newest_in_directory(&client, url, inp.trust)?;
            (image, Some(sums))
        }
    };
    let name = url.file_name().unwrap_or_default().to_string();
    let sig_name = format!("{name}.minisig");
    let signature = if inp.trust.enforcing() {
        get_small(&client, &url.sibling(&sig_name), MAX_SIGNATURE)?
    } else {
        None
    };
    let expected = verify::prepare(&name, mode, inp.trust, &|p: &str| {
        Ok(match p {
            p if p == sig_name => signature.clone(),
            verify::SUMS_FILE => sums.clone(),
            _ => None,
        })
    })
    .map_err(|e| format!("{url}: {e}"))?;

    let start = Instant::now();
    let (mut url, head, conn) = get(&client, &url, 0)?;
    let (total, ram) = ram_for(
        &url,
        &head,
        inp.meminfo,
        "give the machine more memory, or boot an image from BootExt",
    )?;
    let mut progress = Progress::new(inp.boot, "fetch", &name, total);
    let mut transfer = Transfer {
        client: &client,
        ram: &ram,
        expected: &expected,
        digest: expected.digester()?,
        pos: 0,
        total,
    };
    let resumed = transfer.run(&mut url, conn, &mut progress)?;
    progress.finish();
    let Transfer { digest, .. } = transfer;
    let verified = digest.finish(&name)?;
    let in_ram = ram.read_only()?;
    let sealed = fetch_seal(&client, &url, &name, total, inp)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    log::info!(
        "fetched {url}: {} in {:.1} s ({:.1} MB/s){}",
        toram::mib(total),
        ms / 1e3,
        total as f64 / (ms.max(0.001) * 1e3),
        if resumed > 0 {
            format!(", resumed {resumed} times")
        } else {
            String::new()
        }
    );
    Ok(Fetched {
        file: in_ram.file,
        name,
        size: total,
        allocated: in_ram.allocated,
        verified,
        sealed,
        resumed,
        ms: (ms * 1e3).round() / 1e3,
    })
}

/// The seal of the image at `url` (`name`, `size` bytes), as `overboot seal` writes
/// it beside the image: `NAME.verity` into RAM (the dm-verity device reads it there),
/// `NAME.roothash` and, with trusted keys, `NAME.roothash.minisig`, checked as a seal
/// on BootExt is (`verity::boot::check`). `Ok(None)`: the server has no `NAME.verity`
/// and `overboot.verity=1` was not given.
fn fetch_seal(
    client: &Client<'_>,
    url: &Url,
    name: &str,
    size: u64,
    inp: &Inputs<'_>,
) -> Result<Option<Sealed>, String> {
    if inp.verity == Some(false) {
        return Ok(None);
    }
    let tree_url = url.sibling(&format!("{name}{VERITY_SUFFIX}"));
    let Some(tree) = get_to_ram(client, &tree_url, inp)? else {
        return match inp.verity {
            Some(true) => Err(format!(
                "overboot.verity=1 and {url} is not sealed ({tree_url}: not found (404)); seal it with overboot seal IMAGE --sign KEY and publish IMAGE.verity, IMAGE.roothash and IMAGE.roothash.minisig beside it"
            )),
            _ => Ok(None),
        };
    };
    let roothash_name = format!("{name}{ROOTHASH_SUFFIX}");
    let roothash = get_small(client, &url.sibling(&roothash_name), 4096)?;
    let sig_name = format!("{roothash_name}.minisig");
    let signature = if inp.trust.enforcing() {
        get_small(client, &url.sibling(&sig_name), MAX_SIGNATURE)?
    } else {
        None
    };
    let read = |p: &str| {
        Ok(if p == sig_name {
            signature.clone()
        } else {
            None
        })
    };
    let sealed = crate::verity::boot::check(name, size, tree, roothash, &read, inp.trust)
        .map_err(|e| format!("{url}: {e}"))?;
    log::info!("netboot: {name} is sealed ({tree_url})");
    Ok(Some(sealed))
}

/// The length of the body `head` announces, and a RAM file for it once the RAM
/// check (`toram::check_fits`, `fix` for its refusal) passed.
fn ram_for(url: &Url, head: &Head, meminfo: &Path, fix: &str) -> Result<(u64, RamFile), String> {
    let total = match http::plan(head, 0).map_err(|e| format!("{url}: {e}"))? {
        Plan::Body { total, .. } => total,
        Plan::Redirect(_) => return Err(format!("{url}: too many redirects")),
    };
    let text = std::fs::read_to_string(meminfo)
        .map_err(|e| format!("cannot read {}: {e}", meminfo.display()))?;
    toram::check_fits(total, &text, &url.to_string(), fix)?;
    Ok((total, RamFile::create(total)?))
}

/// A file of the server in a RAM file of its own, read-only once complete;
/// `Ok(None)` on 404. Not resumed: it is small beside the image (a hash tree).
fn get_to_ram(
    client: &Client<'_>,
    url: &Url,
    inp: &Inputs<'_>,
) -> Result<Option<rustix::fd::OwnedFd>, String> {
    let (url, head, conn) = get(client, url, 0)?;
    if head.status == 404 {
        return Ok(None);
    }
    let (total, ram) = ram_for(&url, &head, inp.meminfo, "give the machine more memory")?;
    let Conn {
        mut stream,
        leftover,
    } = conn;
    let mut pos = 0u64;
    let put = |data: &[u8], pos: &mut u64| {
        let data = data.get(..(total - *pos).min(data.len() as u64) as usize);
        let data = data.unwrap_or_default();
        toram::pwrite_all(&ram.rw, data, *pos)
            .map_err(|e| format!("writing {url} into RAM: {}", errno_text(e)))?;
        *pos += data.len() as u64;
        Ok::<(), String>(())
    };
    put(&leftover, &mut pos)?;
    let mut buf = vec![0u8; CHUNK];
    while pos < total {
        let want = ((total - pos).min(CHUNK as u64)) as usize;
        match stream.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => {
                return Err(format!(
                    "{url}: the connection closed after {pos} of {total} bytes"
                ));
            }
            Ok(n) => put(buf.get(..n).unwrap_or_default(), &mut pos)?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    Ok(Some(ram.read_only()?.file))
}

/// The newest image of the directory at `dir` (`index`), and its signed list.
fn newest_in_directory(
    client: &Client<'_>,
    dir: &Url,
    trust: &TrustStore,
) -> Result<(Url, String), String> {
    if !trust.enforcing() {
        return Err(format!(
            "{dir} is a directory: choosing its newest image needs its signed {} and a trusted key (mkinitramfs --trust-key); or give the image's own URL",
            verify::SUMS_FILE
        ));
    }
    let list_url = dir.sibling(verify::SUMS_FILE);
    let missing =
        |u: &Url| format!("{u}: not found (404); is {dir} a directory made by overboot publish?");
    let sums = get_small(client, &list_url, MAX_LIST)?.ok_or_else(|| missing(&list_url))?;
    let sig_url = dir.sibling(&format!("{}.minisig", verify::SUMS_FILE));
    let sig = get_small(client, &sig_url, MAX_SIGNATURE)?.ok_or_else(|| missing(&sig_url))?;
    index::verify_list(&sums, &sig, trust).map_err(|e| format!("{list_url}: {e}"))?;
    let entries = verify::parse_checksums(&sums).map_err(|e| format!("{list_url}: {e}"))?;
    let name =
        crate::update::pick::choose(&entries, None).map_err(|e| format!("{list_url}: {e}"))?;
    log::info!("netboot: {dir} offers {name} as its newest image");
    Ok((dir.sibling(&name), sums))
}

/// Why a transfer stopped before the end.
enum Stop {
    /// The connection: resume from where it stopped.
    Dropped(String),
    /// Anything else: give up.
    Fatal(String),
}

/// One image on its way into RAM: where it stands and the hash of what came so far.
struct Transfer<'a> {
    client: &'a Client<'a>,
    ram: &'a RamFile,
    expected: &'a Expected,
    digest: Digester<'a>,
    pos: u64,
    total: u64,
}

impl Transfer<'_> {
    /// Stream until the end, resuming after drops; returns how many resumes it took.
    fn run(&mut self, url: &mut Url, first: Conn, progress: &mut Progress) -> Result<u32, String> {
        let mut conn = Some(first);
        let mut resumed = 0u32;
        loop {
            let stop = match conn.take() {
                Some(c) => match self.stream(c, progress) {
                    Ok(()) => return Ok(resumed),
                    Err(stop) => stop,
                },
                None => match self.reconnect(url) {
                    Ok(c) => {
                        conn = Some(c);
                        continue;
                    }
                    Err(stop) => stop,
                },
            };
            let why = match stop {
                Stop::Fatal(e) => return Err(e),
                Stop::Dropped(why) => why,
            };
            resumed += 1;
            if resumed > MAX_RESUMES {
                return Err(format!(
                    "{url}: gave up after {MAX_RESUMES} resumes at {} of {}: {why}",
                    toram::mib(self.pos),
                    toram::mib(self.total)
                ));
            }
            log::warn!(
                "{url}: connection lost at {} of {} ({why}); resuming there (attempt {resumed} of {MAX_RESUMES})",
                toram::mib(self.pos),
                toram::mib(self.total)
            );
            let wait = RESUME_WAITS[(resumed as usize - 1).min(RESUME_WAITS.len() - 1)];
            std::thread::sleep(wait);
        }
    }

    /// A new connection from `pos`, with the server's answer checked against the
    /// transfer so far.
    fn reconnect(&mut self, url: &mut Url) -> Result<Conn, Stop> {
        let (to, head, conn) = get(self.client, url, self.pos).map_err(Stop::Dropped)?;
        *url = to;
        match http::plan(&head, self.pos) {
            Ok(Plan::Body { total, .. }) if total != self.total => Err(Stop::Fatal(format!(
                "{url}: the image changed on the server during the fetch ({} bytes, now {total})",
                self.total
            ))),
            Ok(Plan::Body { start: 0, .. }) if self.pos > 0 => {
                log::warn!("{url}: the server does not resume (no Range): starting over");
                self.pos = 0;
                self.digest = self.expected.digester().map_err(Stop::Fatal)?;
                Ok(conn)
            }
            Ok(Plan::Body { .. }) => Ok(conn),
            Ok(Plan::Redirect(_)) => Err(Stop::Dropped("a redirect while resuming".into())),
            // A 5xx is worth another try; anything else will not change.
            Err(e) if head.status >= 500 => Err(Stop::Dropped(e)),
            Err(e) => Err(Stop::Fatal(format!("{url}: {e}"))),
        }
    }

    /// Write the body from `conn` into RAM until the end or a drop.
    fn stream(&mut self, conn: Conn, progress: &mut Progress) -> Result<(), Stop> {
        let Conn {
            mut stream,
            leftover,
        } = conn;
        self.put(&leftover)?;
        let mut buf = vec![0u8; CHUNK];
        while self.pos < self.total {
            let want = ((self.total - self.pos).min(CHUNK as u64)) as usize;
            let n = match stream.read(buf.get_mut(..want).unwrap_or_default()) {
                Ok(0) => return Err(Stop::Dropped("the server closed the connection".into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Dropped(e.to_string())),
            };
            self.put(buf.get(..n).unwrap_or_default())?;
            progress.update(self.pos);
        }
        Ok(())
    }

    /// Bytes of the body at `pos`: into RAM and the hash.
    fn put(&mut self, data: &[u8]) -> Result<(), Stop> {
        let room = (self.total - self.pos).min(data.len() as u64) as usize;
        let data = data.get(..room).unwrap_or_default();
        toram::pwrite_all(&self.ram.rw, data, self.pos).map_err(|e| {
            Stop::Fatal(format!(
                "writing the image into RAM at {}: {}",
                toram::mib(self.pos),
                errno_text(e)
            ))
        })?;
        self.digest.update(data);
        self.pos += data.len() as u64;
        Ok(())
    }
}

/// Opens the connections of one fetch: plain TCP, or TLS with the CA certificates
/// of the initramfs, read once, on the first `https://` URL.
struct Client<'a> {
    net_ca: &'a Path,
    tls: OnceCell<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Client<'_> {
    /// A connection to `url`'s server, with timeouts, TLS done for `https://`.
    fn connect(&self, url: &Url) -> Result<Stream, String> {
        let addr = resolve(url)?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("{url}: cannot connect to {addr}: {e}"))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(READ_TIMEOUT)))
            .map_err(|e| format!("{url}: {e}"))?;
        if !url.https {
            return Ok(Stream::Plain(tcp));
        }
        let config = self
            .tls
            .get_or_init(|| {
                let pem = std::fs::read(self.net_ca).map_err(|e| {
                    format!(
                        "https:// needs the CA certificates the initramfs trusts, in {}: {e}; build it with mkinitramfs --net-ca CA.pem",
                        self.net_ca.display()
                    )
                })?;
                tls::config(&pem, &self.net_ca.display().to_string())
            })
            .as_ref()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Stream::Tls(Box::new(tls::connect(config, url, tcp)?)))
    }
}

/// A connection, with or without TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tls::TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An open response: the stream after the head, and the body bytes read with it.
struct Conn {
    stream: Stream,
    leftover: Vec<u8>,
}

/// GET `url` from byte `from`, following redirects; returns the final URL, the
/// head and the connection.
fn get(client: &Client<'_>, url: &Url, from: u64) -> Result<(Url, Head, Conn), String> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (head, conn) = request(client, &url, from)?;
        match (head.status, &head.location) {
            (301 | 302 | 303 | 307 | 308, Some(to)) => {
                url =
                    http::redirect_target(&url, to).map_err(|e| format!("{url}: redirect: {e}"))?;
            }
            _ => return Ok((url, head, conn)),
        }
    }
    Err(format!("{url}: more than {MAX_REDIRECTS} redirects"))
}

/// One request and its response head.
fn request(client: &Client<'_>, url: &Url, from: u64) -> Result<(Head, Conn), String> {
    let mut stream = client.connect(url)?;
    stream
        .write_all(http::request(url, from).as_bytes())
        .map_err(|e| format!("{url}: sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = http::head_end(&buf) {
            break end;
        }
        if buf.len() > http::MAX_HEAD {
            return Err(format!(
                "{url}: the response head is larger than {} bytes",
                http::MAX_HEAD
            ));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "{url}: the server closed the connection before answering"
                ));
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{url}: reading the answer: {e}")),
        }
    };
    let head =
        http::parse_head(buf.get(..end).unwrap_or_default()).map_err(|e| format!("{url}: {e}"))?;
    let leftover = buf.get(end..).unwrap_or_default().to_vec();
    Ok((head, Conn { stream, leftover }))
}

/// The server's address: the host as an address, else through `/etc/resolv.conf`
/// (written from the lease or `overboot.ip=`; the resolver's own timeouts bound it).
fn resolve(url: &Url) -> Result<SocketAddr, String> {
    if let Ok(ip) = url.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{url}: {} has no address", url.host))
}

/// A small file (a signature): `Ok(None)` when the server has none (404).
fn get_small(client: &Client<'_>, url: &Url, max: u64) -> Result<Option<String>, String> {
    let (url, head, conn) = get(client, url, 0)?;
    if head.status == 404 {
        return Ok(None);
    }
    let len = match http::plan(&head, 0).map_err(|e| format!("{url}: {e}"))? {
        Plan::Body { total, .. } if total <= max => total,
        Plan::Body { total, .. } => {
            return Err(format!(
                "{url}: {total} bytes, more than a signature ({max})"
            ));
        }
        Plan::Redirect(_) => return Err(format!("{url}: too many redirects")),
    };
    let Conn {
        stream,
        mut leftover,
    } = conn;
    leftover.truncate(len as usize);
    let rest = len - leftover.len() as u64;
    stream
        .take(rest)
        .read_to_end(&mut leftover)
        .map_err(|e| format!("{url}: {e}"))?;
    if leftover.len() as u64 != len {
        return Err(format!(
            "{url}: the connection closed after {} of {len} bytes",
            leftover.len()
        ));
    }
    String::from_utf8(leftover)
        .map(Some)
        .map_err(|_| format!("{url}: not a text file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_image_must_be_signed_unless_verify_is_off() {
        let url = "http://10.0.2.100/a.squashfs";
        assert_eq!(network_mode(true, None, url), Ok((Mode::Auto, None)));
        // With keys, verify=0 does not turn the signature off (verify::policy).
        assert_eq!(network_mode(true, Some(false), url), Ok((Mode::Skip, None)));
        let e = network_mode(false, None, url).unwrap_err();
        assert!(
            e.contains("must be signed") && e.contains("--trust-key"),
            "{e}"
        );
        assert!(network_mode(false, Some(true), url).is_err());
        let (mode, warning) = network_mode(false, Some(false), url).unwrap();
        assert_eq!(mode, Mode::Skip);
        assert!(warning.unwrap().contains("NOT VERIFIED"));
    }
}
