//! The fetch of a netboot (`overboot::net::fetch`) against real servers on
//! 127.0.0.1: Debian's nginx, python's http.server (which ignores `Range`), and a
//! relay that drops connections mid-transfer. The image goes into a real tmpfs (the
//! toram copy), so this needs root. DHCP, netlink and the boot wiring are tested
//! under QEMU in `tests/e2e_netboot.rs`.

mod common;
mod net_common;

use net_common::tls::Tls;
use net_common::{CuttingRelay, Nginx, free_port, minisign, minisign_keys};
use overboot::net::fetch::{Fetched, Inputs, fetch};
use overboot::net::http::Url;
use overboot::verify::TrustStore;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MIB: usize = 1 << 20;

struct Setup {
    _tmp: TempDir,
    www: PathBuf,
    image: Vec<u8>,
    trust: TrustStore,
    secret: PathBuf,
    dir: PathBuf,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 5 MiB image of pseudo-random bytes, signed, in `www/`, and a trust store with
/// the key.
fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("overboot-netboot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let www = dir.join("www");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    let image = common::noise(5, 5 * MIB);
    std::fs::write(www.join("a.squashfs"), &image).unwrap();
    let (public, secret) = minisign_keys(&dir, "k");
    std::fs::copy(&public, keys.join("k.pub")).unwrap();
    minisign(&secret, &www.join("a.squashfs"), None);
    let trust = TrustStore::load(&keys);
    assert_eq!(trust.keys.len(), 1, "{:?}", trust.problems);
    Setup {
        _tmp: TempDir(dir.clone()),
        www,
        image,
        trust,
        secret,
        dir,
    }
}

fn url(port: u16, path: &str) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap()
}

fn inputs<'a>(trust: &'a TrustStore, verify: Option<bool>, meminfo: &'a Path) -> Inputs<'a> {
    Inputs {
        trust,
        verify,
        meminfo,
        net_ca: Path::new("/nonexistent/net-ca.pem"),
        verity: None,
        boot: false,
    }
}

fn contents(f: Fetched) -> Vec<u8> {
    let mut data = Vec::new();
    std::fs::File::from(f.file).read_to_end(&mut data).unwrap();
    data
}

fn refused(r: Result<Fetched, String>, why: &str) -> String {
    match r {
        Ok(f) => panic!("{} was fetched, expected a refusal ({why})", f.name),
        Err(e) => {
            assert!(e.contains(why), "expected '{why}' in: {e}");
            e
        }
    }
}

#[test]
fn a_signed_image_arrives_in_ram_resumed_after_dropped_connections() {
    let s = setup("resume");
    let nginx = Nginx::start(&s.www, &s.dir.join("nginx"));
    // The signature (first connection) goes through whole; the image's two next
    // connections are cut after 1 MiB each.
    let relay = CuttingRelay::start(nginx.port, 0, 0);
    let meminfo = Path::new("/proc/meminfo");
    let f = fetch(
        &url(relay.port, "/a.squashfs"),
        &inputs(&s.trust, None, meminfo),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.resumed, 0);
    assert!(f.verified.key_id.is_some(), "{:?}", f.verified);
    assert_eq!(f.name, "a.squashfs");
    assert!(contents(f) == s.image, "the copy in RAM differs");

    let cut = CuttingRelay::start(nginx.port, 3, MIB as u64);
    // Connection 0: the signature, cut after 1 MiB (it is far smaller: whole).
    let f = fetch(
        &url(cut.port, "/a.squashfs"),
        &inputs(&s.trust, None, meminfo),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.resumed, 2, "two cut transfers, each resumed");
    assert_eq!(
        cut.connections(),
        5,
        "signature, the image in three parts, then IMAGE.verity (404: not sealed)"
    );
    assert_eq!(f.size, s.image.len() as u64);
    assert!(f.verified.key_id.is_some());
    assert!(contents(f) == s.image, "the resumed copy differs");
    let log = nginx.access_log();
    assert_eq!(
        log.lines().filter(|l| l.contains("\" 206 ")).count(),
        2,
        "two Range requests answered 206:\n{log}"
    );
}

/// python's http.server answers a `Range` request with the whole file (200): the
/// fetch starts over and still verifies.
#[test]
fn a_server_without_ranges_starts_over() {
    let s = setup("norange");
    let port = free_port();
    let _py = Python(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(&s.www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed().as_secs() < 10,
            "python's http.server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cut = CuttingRelay::start(port, 2, 2 * MIB as u64);
    let f = fetch(
        &url(cut.port, "/a.squashfs"),
        &inputs(&s.trust, None, Path::new("/proc/meminfo")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.resumed, 1);
    assert!(contents(f) == s.image);
}

struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_unsigned_unreachable_and_too_large_are_refused() {
    let s = setup("refused");
    let nginx = Nginx::start(&s.www, &s.dir.join("nginx"));
    let meminfo = Path::new("/proc/meminfo");
    let a = url(nginx.port, "/a.squashfs");

    // A signature by the trusted key for b.squashfs, of other bytes.
    let other = s.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("b.squashfs"), b"not the image").unwrap();
    minisign(
        &s.secret,
        &other.join("b.squashfs"),
        Some(&s.www.join("b.squashfs.minisig")),
    );
    std::fs::copy(s.www.join("a.squashfs"), s.www.join("b.squashfs")).unwrap();
    let b = url(nginx.port, "/b.squashfs");
    refused(fetch(&b, &inputs(&s.trust, None, meminfo)), "bad signature");
    // Unsigned, with a trusted key: refused whatever overboot.verify says.
    std::fs::copy(s.www.join("a.squashfs"), s.www.join("c.squashfs")).unwrap();
    let c = url(nginx.port, "/c.squashfs");
    refused(
        fetch(&c, &inputs(&s.trust, Some(false), meminfo)),
        "not signed",
    );
    // No trusted key: refused unless overboot.verify=0.
    let none = TrustStore::default();
    refused(fetch(&c, &inputs(&none, None, meminfo)), "must be signed");
    let f = fetch(&c, &inputs(&none, Some(false), meminfo)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        f.verified
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("not verified"),
        "{:?}",
        f.verified
    );
    assert!(contents(f) == s.image);

    // Not enough RAM: refused before any byte is written, with the numbers.
    let small = s.dir.join("meminfo");
    std::fs::write(&small, "MemTotal: 131072 kB\nMemAvailable: 70000 kB\n").unwrap();
    let e = refused(fetch(&a, &inputs(&s.trust, None, &small)), "can be spared");
    assert!(e.contains("more memory"), "{e}");

    refused(
        fetch(
            &url(nginx.port, "/missing.squashfs"),
            &inputs(&none, Some(false), meminfo),
        ),
        "HTTP 404",
    );
    refused(
        fetch(
            &url(free_port(), "/a.squashfs"),
            &inputs(&s.trust, None, meminfo),
        ),
        "cannot connect to 127.0.0.1",
    );
    // A directory that `overboot publish` did not make.
    refused(
        fetch(&url(nginx.port, "/"), &inputs(&s.trust, None, meminfo)),
        "SHA256SUMS: not found (404)",
    );
}

/// A directory made by `overboot publish`: its newest image (by version, as
/// `overboot update` chooses), checked against the signed list and its signature.
#[test]
fn a_directory_url_takes_the_newest_published_image() {
    let s = setup("dir");
    let publish = s.dir.join("publish");
    let out = s.www.join("pub");
    std::fs::create_dir_all(&publish).unwrap();
    let older = common::noise(7, MIB);
    std::fs::write(publish.join("app-1.9.squashfs"), &older).unwrap();
    std::fs::write(publish.join("app-1.10.squashfs"), &s.image).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_overboot"))
        .arg("publish")
        .arg(publish.join("app-1.9.squashfs"))
        .arg(publish.join("app-1.10.squashfs"))
        .arg("--sign")
        .arg(&s.secret)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "overboot publish: {run:?}");
    let nginx = Nginx::start(&s.www, &s.dir.join("nginx"));
    let meminfo = Path::new("/proc/meminfo");
    let f = fetch(&url(nginx.port, "/pub/"), &inputs(&s.trust, None, meminfo))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.name, "app-1.10.squashfs");
    assert!(
        f.verified.sha256.is_some() && f.verified.key_id.is_some(),
        "{:?}",
        f.verified
    );
    assert!(contents(f) == s.image);

    // An altered list is refused; so is a directory without a trusted key.
    let sums = out.join("SHA256SUMS");
    let text = std::fs::read_to_string(&sums).unwrap();
    std::fs::write(&sums, text.replace("app-1.9.squashfs", "app-9.9.squashfs")).unwrap();
    refused(
        fetch(&url(nginx.port, "/pub/"), &inputs(&s.trust, None, meminfo)),
        "bad signature",
    );
    let none = TrustStore::default();
    refused(
        fetch(
            &url(nginx.port, "/pub/"),
            &inputs(&none, Some(false), meminfo),
        ),
        "trusted key",
    );

    // A signed image served under another name: its signature names the original.
    std::fs::copy(s.www.join("a.squashfs"), s.www.join("z.squashfs")).unwrap();
    std::fs::copy(
        s.www.join("a.squashfs.minisig"),
        s.www.join("z.squashfs.minisig"),
    )
    .unwrap();
    refused(
        fetch(
            &url(nginx.port, "/z.squashfs"),
            &inputs(&s.trust, None, meminfo),
        ),
        "a signed file renamed is refused",
    );
}

/// `https://` with a private CA, as `mkinitramfs --net-ca` bakes it in: the image
/// arrives through TLS and verifies. A CA that did not sign the server's
/// certificate, a certificate for another name, and no CA file at all are refused,
/// each saying what to change.
#[test]
fn https_trusts_the_initramfs_ca_only() {
    let s = setup("https");
    let tls = Tls::generate(&s.dir.join("tls"), &["127.0.0.1"]);
    let nginx = Nginx::start_tls(&s.www, &s.dir.join("nginx"), &tls);
    let meminfo = Path::new("/proc/meminfo");
    let with_ca = |ca| Inputs {
        net_ca: ca,
        ..inputs(&s.trust, None, meminfo)
    };
    let a = Url::parse(&nginx.url("a.squashfs")).unwrap();
    let f = fetch(&a, &with_ca(&tls.ca)).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.verified.key_id.is_some(), "{:?}", f.verified);
    assert!(contents(f) == s.image, "the copy in RAM differs");
    let log = nginx.access_log();
    assert!(
        log.contains("GET /a.squashfs.minisig HTTP/1.1\" 200"),
        "{log}"
    );
    assert!(log.contains("GET /a.squashfs HTTP/1.1\" 200"), "{log}");

    let other = Tls::generate(&s.dir.join("other"), &["127.0.0.1"]);
    let e = refused(
        fetch(&a, &with_ca(&other.ca)),
        "not signed by a CA this initramfs trusts",
    );
    assert!(e.contains("--net-ca"), "{e}");
    let by_name = Url::parse(&format!("https://localhost:{}/a.squashfs", nginx.port)).unwrap();
    refused(fetch(&by_name, &with_ca(&tls.ca)), "is not for localhost");
    let e = refused(
        fetch(&a, &inputs(&s.trust, None, meminfo)),
        "https:// needs the CA certificates the initramfs trusts",
    );
    assert!(e.contains("--net-ca"), "{e}");
    // Only the successful fetch reached the server with requests (the last one for
    // a seal, which this image has not).
    let log = nginx.access_log();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(
        log.contains("GET /a.squashfs.verity HTTP/1.1\" 404"),
        "{log}"
    );
}

/// A sealed image (`overboot seal --sign`): `IMAGE.verity` comes into RAM beside the
/// image, with its root hash checked against `IMAGE.roothash.minisig`. A tree of
/// another image is refused, and so is an unsealed image under `overboot.verity=1`;
/// `overboot.verity=0` fetches no seal. (dm-verity over the RAM copies:
/// `tests/e2e_netboot.rs`.)
#[test]
fn a_sealed_image_brings_its_tree_and_signed_root_hash() {
    let s = setup("sealed");
    let seal = |image: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_overboot"))
            .arg("seal")
            .arg(image)
            .arg("--sign")
            .arg(&s.secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "overboot seal: {out:?}");
    };
    seal(&s.www.join("a.squashfs"));
    let nginx = Nginx::start(&s.www, &s.dir.join("nginx"));
    let meminfo = Path::new("/proc/meminfo");
    let with_verity = |verity| Inputs {
        verity,
        ..inputs(&s.trust, None, meminfo)
    };
    let a = url(nginx.port, "/a.squashfs");
    let f = fetch(&a, &with_verity(None)).unwrap_or_else(|e| panic!("{e}"));
    let sealed = f.sealed.as_ref().expect("the seal was fetched");
    let roothash = std::fs::read_to_string(s.www.join("a.squashfs.roothash")).unwrap();
    assert_eq!(overboot::verity::format::hex(&sealed.root), roothash.trim());
    assert_eq!(
        sealed.signed_by, f.verified.key_id,
        "signed by the same key"
    );
    let mut tree = Vec::new();
    std::fs::File::from(sealed.hash.try_clone().unwrap())
        .read_to_end(&mut tree)
        .unwrap();
    assert!(tree == std::fs::read(s.www.join("a.squashfs.verity")).unwrap());
    let f = fetch(&a, &with_verity(Some(false))).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.sealed.is_none());

    // The tree of a smaller image, under a's name.
    let other = s.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("a.squashfs"), common::noise(9, MIB)).unwrap();
    seal(&other.join("a.squashfs"));
    std::fs::copy(
        other.join("a.squashfs.verity"),
        s.www.join("a.squashfs.verity"),
    )
    .unwrap();
    refused(fetch(&a, &with_verity(None)), "belongs to another image");

    // Signed, not sealed.
    std::fs::copy(s.www.join("a.squashfs"), s.www.join("c.squashfs")).unwrap();
    minisign(&s.secret, &s.www.join("c.squashfs"), None);
    let c = url(nginx.port, "/c.squashfs");
    assert!(fetch(&c, &with_verity(None)).unwrap().sealed.is_none());
    refused(
        fetch(&c, &with_verity(Some(true))),
        "overboot.verity=1 and http://127.0.0.1",
    );
}
