//! Servers for the netboot and update tests, on 127.0.0.1 only
//! (shared/notes/network-tests.md): Debian's nginx serving a directory over HTTP or
//! HTTPS ([`tls`]), and a relay in front of it that cuts the first connections after
//! a number of bytes (a dropped transfer).
#![allow(dead_code)]

pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// nginx serving `root` on 127.0.0.1:`port`; stopped when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    https: bool,
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Serve `root`; `dir` holds nginx's configuration, logs and temporary files.
    pub fn start(root: &Path, dir: &Path) -> Nginx {
        Nginx::start_with(root, dir, None)
    }

    /// Serve `root` over HTTPS with `tls`'s server certificate.
    pub fn start_tls(root: &Path, dir: &Path, tls: &tls::Tls) -> Nginx {
        Nginx::start_with(root, dir, Some(tls))
    }

    fn start_with(root: &Path, dir: &Path, tls: Option<&tls::Tls>) -> Nginx {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let listen = match tls {
            Some(t) => t.nginx_listen(port),
            None => format!("listen 127.0.0.1:{port};\n"),
        };
        let d = dir.display();
        let conf = format!(
            "user root;\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    {listen}    root {};\n  }}\n}}\n",
            root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx)");
        wait_for_port(port);
        Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
            https: tls.is_some(),
        }
    }

    /// `http://127.0.0.1:PORT/path` (`https://` when serving with TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{path}", self.port)
    }

    /// Lines of the access log (requests and status codes).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then stops its workers too (a killed master
    /// leaves them running).
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on 127.0.0.1:{port} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A relay on 127.0.0.1:`port` to `upstream` that closes each of the first `cuts`
/// connections after `after` bytes of response; it serves until the test ends.
pub struct CuttingRelay {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
}

impl CuttingRelay {
    pub fn start(upstream: u16, cuts: usize, after: u64) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let limit = if n < cuts { Some(after) } else { None };
                std::thread::spawn(move || relay(client, upstream, limit));
            }
        });
        CuttingRelay { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// One connection: the request up (until the blank line), the response down, at
/// most `limit` bytes of it.
fn relay(mut client: TcpStream, upstream: u16, limit: Option<u64>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    if server.write_all(&request).is_err() {
        return;
    }
    let mut sent = 0u64;
    let mut buf = [0u8; 16384];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(l) if sent + n as u64 >= l => {
                let _ = client.write_all(&buf[..(l - sent) as usize]);
                break;
            }
            _ => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A minisign key pair in `dir`: (public key, secret key).
pub fn minisign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let _ = std::fs::remove_file(&public);
    let _ = std::fs::remove_file(&secret);
    let out = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .expect("minisign");
    assert!(out.status.success(), "minisign -G: {out:?}");
    (public, secret)
}

/// Sign `file` into `file.minisig` (or `to`).
pub fn minisign(secret: &Path, file: &Path, to: Option<&Path>) {
    let sig = to.map(Path::to_path_buf).unwrap_or_else(|| {
        let mut s = file.as_os_str().to_owned();
        s.push(".minisig");
        PathBuf::from(s)
    });
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(secret)
        .arg("-m")
        .arg(file)
        .arg("-x")
        .arg(&sig)
        .output()
        .expect("minisign");
    assert!(out.status.success(), "minisign -S: {out:?}");
}
