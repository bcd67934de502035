//! Helpers for the fleet-update tests (`tests/update.rs`, `tests/powercut.rs`):
//! minisign keys made by the minisign tool, `overboot publish`, a real nginx on
//! 127.0.0.1, publisher images, and `overboot update` against a BootExt tree.

use super::*;
use std::process::Command;

/// A minisign key pair made by the minisign tool (unencrypted: `-W`).
pub struct Keys {
    pub secret: PathBuf,
    pub public: PathBuf,
}

pub fn keys(dir: &Path) -> Keys {
    let k = Keys {
        secret: dir.join("test.key"),
        public: dir.join("test.pub"),
    };
    sh(
        "minisign",
        &[
            "-G".as_ref(),
            "-W".as_ref(),
            "-p".as_ref(),
            k.public.as_os_str(),
            "-s".as_ref(),
            k.secret.as_os_str(),
        ],
    );
    k
}

pub fn publish(images: &[&Path], keys: &Keys, out: &Path) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec!["publish".as_ref()];
    args.extend(images.iter().map(|p| p.as_os_str()));
    args.extend([
        "--sign".as_ref(),
        keys.secret.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    overboot(args)
}

// ---------------------------------------------------------------------------
// nginx on 127.0.0.1
// ---------------------------------------------------------------------------

/// Debian's nginx serving `root` on 127.0.0.1 at a free port, with a generated
/// configuration (`daemon off`, everything under its own directory), stopped on
/// drop. Locations: `/` the published directory, `/slow/` the same at 256 KB/s,
/// `/moved/` a redirect to `/`, `/broken/` HTTP 500 for everything, `/loop/` a
/// redirect to itself, `/norange/` the same files with Range requests ignored.
pub struct Nginx {
    child: std::process::Child,
    dir: PathBuf,
    port: u16,
    scheme: &'static str,
}

/// The path of [`Nginx::log`]'s own requests.
const BARRIER: &str = ".log-barrier-";

impl Nginx {
    pub fn start(dir: &Path, root: &Path) -> Nginx {
        Nginx::serve(dir, root, None)
    }

    /// The same over https: `listen` gives the `listen ... ssl` and certificate
    /// directives for a port (`net_common::tls::Tls::nginx_listen`).
    pub fn start_tls(dir: &Path, root: &Path, listen: impl Fn(u16) -> String) -> Nginx {
        Nginx::serve(dir, root, Some(&listen))
    }

    fn serve(dir: &Path, root: &Path, tls: Option<&dyn Fn(u16) -> String>) -> Nginx {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = match tls {
            Some(listen) => listen(port),
            None => format!("listen 127.0.0.1:{port};"),
        };
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nuser root;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
               log_format bytes '$status $body_bytes_sent \"$request\" \"$http_range\"';\n\
               access_log {d}/access.log bytes;\n\
               client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi;\n\
               scgi_temp_path {d}/tmp/scgi;\n\
               default_type application/octet-stream;\n\
               server {{\n\
                 {listen}\n\
                 root {root};\n\
                 location /slow/ {{ alias {root}/; limit_rate 256k; }}\n\
                 location /moved/ {{ rewrite ^/moved/(.*)$ /$1 redirect; }}\n\
                 location /broken/ {{ return 500; }}\n\
                 location /loop/ {{ return 302 /loop/; }}\n\
                 location /norange/ {{ alias {root}/; max_ranges 0; }}\n\
               }}\n\
             }}\n",
            root = root.display()
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start nginx (is it installed?)");
        let n = Nginx {
            child,
            dir: dir.to_path_buf(),
            port,
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "nginx did not listen on 127.0.0.1:{port}: {}",
            fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}/{path}", self.scheme, self.port)
    }

    /// Body bytes served with a 2xx status for requests whose line contains
    /// `what`, since `from` (a line count of the access log).
    pub fn served(&self, what: &str, from: usize) -> u64 {
        self.log()
            .iter()
            .skip(from)
            .filter(|l| l.starts_with('2') && l.contains(what))
            .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
            .sum()
    }

    /// The access log with every request answered so far in it. nginx writes a
    /// request's line just after the response, so a client can be done (and a test
    /// read the log) first: a request of our own, which the one nginx process
    /// answers and logs after those, marks the end. Its lines are left out.
    pub fn log(&self) -> Vec<String> {
        static BARRIERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = BARRIERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let marker = format!("/{BARRIER}{n} ");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            )
            .build()
            .into();
        agent
            .get(self.url(&format!("{BARRIER}{n}")))
            .call()
            .expect("the log barrier request");
        let read = || fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut text = read();
        while !text.contains(&marker) {
            assert!(
                std::time::Instant::now() < deadline,
                "{marker} not logged: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
            text = read();
        }
        text.lines()
            .filter(|l| !l.contains(BARRIER))
            .map(String::from)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The publisher's image `app-VERSION.squashfs` (marker `app-VERSION`): a system
/// tree with `packages` packages of 200 KB; `changed` replaces the 18th (an update
/// of one package).
pub fn app_image(work: &Path, out: &Path, version: &str, packages: u64, changed: bool) -> PathBuf {
    let img = out.join(format!("app-{version}.squashfs"));
    squashfs_from(work, &img, Comp::Gzip, |t| {
        system_tree(t, &format!("app-{version}"));
        for i in 0..packages {
            let seed = if changed && i == 17 { 1000 + i } else { i };
            let p = t.join(format!("usr/lib/pkg{i:02}/lib.so"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, noise(seed, 200 * 1024)).unwrap();
        }
    });
    img
}

pub fn trust_dir(ns: &Ns, keys: &Keys) -> PathBuf {
    let d = ns.dir("trusted-keys");
    fs::copy(&keys.public, d.join("publisher.pub")).unwrap();
    d
}

pub fn update(be: &Path, trust: &Path, url: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "update",
        url,
        "--bootext",
        be.to_str().unwrap(),
        "--trust-keys",
        trust.to_str().unwrap(),
        "--timeout",
        "10",
    ];
    args.extend(extra);
    overboot(args)
}
