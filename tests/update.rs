//! Fleet updates over HTTP: `overboot publish` makes a directory that a real nginx
//! on 127.0.0.1 serves (generated configuration, `daemon off`, its own prefix and
//! port, stopped at the end); `overboot update` runs against BootExt trees in a
//! private mount namespace. Signatures are checked with the minisign tool as well
//! as by overboot, so the format is minisign's own.

mod common;
mod net_common;

use common::fleet::*;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// `minisign -V` of `file` with `key`: the trusted comment it prints.
fn minisign_verify(file: &Path, key: &Path) -> String {
    let out = Command::new("minisign")
        .args(["-V", "-m"])
        .arg(file)
        .arg("-p")
        .arg(key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "minisign -V {}: {text}",
        file.display()
    );
    text
}

#[test]
fn publish_writes_signed_images_chunk_indexes_and_sums() {
    let t = TempDir::new("publish");
    let k = keys(t.path());
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let one = src.join("app-1.0.squashfs");
    fs::write(&one, vec![7u8; 700_000]).unwrap();
    fs::write(src.join("app-1.0.squashfs.roothash"), "abc\n").unwrap();
    let out = t.path().join("pub");
    publish(&[&one], &k, &out).expect_code(0);
    // A second version later: SHA256SUMS keeps the first one's lines.
    let two = src.join("app-1.1.squashfs");
    fs::write(&two, vec![8u8; 300_000]).unwrap();
    let r = publish(&[&two], &k, &out);
    r.expect_code(0);
    assert!(
        r.stdout.contains("app-1.1.squashfs: 300000 bytes"),
        "{}",
        r.stdout
    );

    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    assert_eq!(
        names,
        [
            "app-1.0.squashfs",
            "app-1.0.squashfs.chunks",
            "app-1.0.squashfs.roothash",
            "app-1.1.squashfs",
            "app-1.1.squashfs.chunks",
        ]
    );
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    // minisign itself accepts every signature, and each names its file.
    for name in ["app-1.0.squashfs", "app-1.1.squashfs", "SHA256SUMS"] {
        let said = minisign_verify(&out.join(name), &k.public);
        assert!(said.contains(&format!("\tfile:{name}\t")), "{said}");
    }
    // 700000 equal bytes: MAX_CHUNK pieces (256 KiB), the index adds up.
    let index = fs::read_to_string(out.join("app-1.0.squashfs.chunks")).unwrap();
    assert!(
        index.starts_with("overboot-chunks 1 size=700000\n"),
        "{index}"
    );
    assert_eq!(index.lines().count(), 1 + 3);
    // A key that is not a secret key: refused, nothing written.
    let bad = publish(
        &[&one],
        &Keys {
            secret: k.public.clone(),
            public: k.public.clone(),
        },
        &t.path().join("none"),
    );
    bad.expect_code(1);
    assert!(
        bad.stderr.contains("is not a minisign secret key"),
        "{}",
        bad.stderr
    );
}

// ---------------------------------------------------------------------------
// Appliance side
// ---------------------------------------------------------------------------

/// BootExt as [`tree_snapshot`] sees it, without the partial download.
fn snapshot(be: &Path) -> std::collections::BTreeMap<String, String> {
    let mut snap = tree_snapshot(be);
    snap.retain(|k, _| !k.ends_with(".partial"));
    snap
}

fn link(be: &Path, name: &str) -> String {
    fs::read_link(be.join("System").join(name))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn fresh_download_up_to_date_then_delta_of_one_package() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let trust = trust_dir(ns, &k);
        let builds = ns.dir("builds");
        let work = ns.dir("work");
        let public = ns.dir("public");
        let v1 = app_image(&work, &builds, "1.0", 40, false);
        publish(&[&v1], &k, &public).expect_code(0);
        let nginx = Nginx::start(&ns.dir("nginx"), &public);
        let be = BootExt::standard(ns);

        // Fresh: nothing in common with a.squashfs; through a redirect.
        let r = update(&be.path, &trust, &nginx.url("moved/"), &["--json"]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rec["outcome"], "installed", "{}", r.stdout);
        let size = fs::metadata(&v1).unwrap().len();
        assert_eq!(rec["size"], size);
        assert_eq!(nginx.served("app-1.0.squashfs HTTP", 0), size);
        assert_eq!(
            fs::read(be.path.join("System/app-1.0.squashfs")).unwrap(),
            fs::read(&v1).unwrap()
        );
        assert_eq!(link(&be.path, "active-system"), "app-1.0.squashfs");
        assert_eq!(link(&be.path, "previous-system"), "a.squashfs");
        let trial = fs::read_to_string(be.path.join("System/trial")).unwrap();
        assert!(trial.contains("tries=3"), "{trial}");
        assert!(!be.path.join("System/.app-1.0.squashfs.partial").exists());
        // The boot takes it, signature checked with the same key.
        let boot = assemble_args(ns, &be.path, "", &["--trust-keys", trust.to_str().unwrap()]);
        boot.run.expect_code(0);
        let st = boot.state();
        assert_eq!(st["booted"]["image"], "System/app-1.0.squashfs", "{st}");
        assert!(st["booted"]["verified"]["key_id"].is_string(), "{st}");
        overboot([
            "bless",
            "--bootext",
            be.path.to_str().unwrap(),
            "--state",
            boot.state_path.to_str().unwrap(),
        ])
        .expect_code(0);
        boot.teardown(ns);

        // Again: up to date, only the index is read.
        let seen = nginx.log().len();
        let r = update(&be.path, &trust, &nginx.url(""), &[]);
        r.expect_code(0);
        assert!(
            r.stdout.contains("app-1.0.squashfs: up-to-date"),
            "{}",
            r.stdout
        );
        assert_eq!(nginx.served("squashfs", seen), 0);

        // One package changed: only what changed is fetched.
        let v2 = app_image(&work, &builds, "1.1", 40, true);
        publish(&[&v2], &k, &public).expect_code(0);
        let seen = nginx.log().len();
        // An older image and an abandoned download: --keep 0 deletes the image not
        // active, previous or recovery; the stale partial goes too.
        fs::copy(
            be.path.join("System/a.squashfs"),
            be.path.join("System/old-0.1.squashfs"),
        )
        .unwrap();
        fs::write(be.path.join("System/.app-0.9.squashfs.partial"), "x").unwrap();
        let r = update(&be.path, &trust, &nginx.url(""), &["--json", "--keep", "0"]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let mut removed: Vec<&str> = rec["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        removed.sort();
        assert_eq!(removed, ["a.squashfs", "old-0.1.squashfs"], "{rec}");
        assert!(!be.path.join("System/.app-0.9.squashfs.partial").exists());
        assert!(be.path.join("System/r.squashfs").exists());
        assert!(
            be.path.join("System/app-1.0.squashfs").exists(),
            "previous kept"
        );
        let size = fs::metadata(&v2).unwrap().len();
        let fetched = nginx.served("app-1.1.squashfs HTTP", seen);
        eprintln!(
            "delta: {fetched} of {size} bytes ({:.1}%), {} range requests",
            100.0 * fetched as f64 / size as f64,
            rec["range_requests"]
        );
        assert_eq!(rec["bytes_fetched"], fetched);
        assert_eq!(
            rec["bytes_fetched"].as_u64().unwrap() + rec["bytes_reused"].as_u64().unwrap(),
            size
        );
        assert!(fetched * 10 <= size, "fetched {fetched} of {size}");
        assert!(rec["range_requests"].as_u64().unwrap() <= 4, "{rec}");
        assert_eq!(
            fs::read(be.path.join("System/app-1.1.squashfs")).unwrap(),
            fs::read(&v2).unwrap()
        );
        assert_eq!(link(&be.path, "active-system"), "app-1.1.squashfs");
        assert_eq!(link(&be.path, "previous-system"), "app-1.0.squashfs");
        // overboot status shows it.
        let boot = assemble_ok(ns, &be.path, "");
        let st = overboot([
            "status",
            "--state",
            boot.state_path.to_str().unwrap(),
            "--bootext",
            be.path.to_str().unwrap(),
        ]);
        st.expect_code(0);
        // When, which image, bytes fetched and reused.
        let line = st.stdout.lines().find(|l| l.starts_with("Last update: "));
        let line = line.unwrap_or_else(|| panic!("{}", st.stdout));
        for want in [
            "installed app-1.1.squashfs",
            "fetched ",
            "reused ",
            " UTC, from http://127.0.0.1:",
        ] {
            assert!(line.contains(want), "{want}: {line}");
        }
        boot.teardown(ns);
    });
}

/// A copy of the published directory `from` as `www/NAME`, changed by `edit`.
fn variant(www: &Path, from: &Path, name: &str, edit: impl FnOnce(&Path)) {
    let d = www.join(name);
    fs::create_dir_all(&d).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    edit(&d);
}

#[test]
fn faults_leave_bootext_as_it_was() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let other = keys(&ns.dir("other-keys"));
        let trust = trust_dir(ns, &k);
        let work = ns.dir("work");
        let good = ns.dir("good");
        let v1 = app_image(&work, &ns.dir("builds"), "1.0", 40, false);
        publish(&[&v1], &k, &good).expect_code(0);
        let www = ns.dir("www");
        let img = "app-1.0.squashfs";
        let resign = |d: &Path, key: &Keys, comment: &str| {
            let sums = d.join("SHA256SUMS");
            sh(
                "minisign",
                &[
                    "-S".as_ref(),
                    "-s".as_ref(),
                    key.secret.as_os_str(),
                    "-m".as_ref(),
                    sums.as_os_str(),
                    "-t".as_ref(),
                    comment.as_ref(),
                ],
            );
        };
        variant(&www, &good, "good", |_| {});
        variant(&www, &good, "foreign-key", |d| {
            resign(d, &other, "file:SHA256SUMS")
        });
        variant(&www, &good, "other-file", |d| {
            resign(d, &k, "file:SHA256SUMS.old")
        });
        variant(&www, &good, "altered-index", |d| {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(d.join("SHA256SUMS"))
                .unwrap();
            std::io::Write::write_all(
                &mut f,
                format!("{}  x.squashfs\n", "0".repeat(64)).as_bytes(),
            )
            .unwrap();
        });
        variant(&www, &good, "garbage", |d| {
            let p = d.join(img);
            let mut data = fs::read(&p).unwrap();
            data[3_000_000..3_000_100].fill(0x55);
            fs::write(&p, data).unwrap();
        });
        variant(&www, &good, "image-signature-of-another-file", |d| {
            let sig = d.join(format!("{img}.minisig"));
            fs::copy(d.join("SHA256SUMS.minisig"), sig).unwrap();
        });
        variant(&www, &good, "bad-image-signature", |d| {
            // The right key and name, over other bytes.
            let sig = d.join(format!("{img}.minisig"));
            let comment = format!("file:{img}");
            let args = ["-S", "-s", k.secret.to_str().unwrap(), "-m"];
            let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
            let sums = d.join("SHA256SUMS");
            args.extend([sums.as_os_str(), "-x".as_ref(), sig.as_os_str()]);
            args.extend(["-t", comment.as_str()].map(std::ffi::OsStr::new));
            sh("minisign", &args);
        });
        variant(&www, &good, "short", |d| {
            let p = d.join(img);
            let len = fs::metadata(&p).unwrap().len();
            truncate(&p, len - 100_000);
        });
        let nginx = Nginx::start(&ns.dir("nginx"), &www);
        let be = BootExt::standard(ns);
        let before = snapshot(&be.path);
        let cases = [
            ("nothing/", "HTTP 404"),
            ("broken/", "HTTP 500"),
            ("foreign-key/", "which is not trusted"),
            (
                "other-file/",
                "signs a file named 'SHA256SUMS.old', not SHA256SUMS",
            ),
            ("altered-index/", "bad signature"),
            ("garbage/", "the server sent wrong data for bytes"),
            // The trusted comment names the file signed (issue 10 item 8).
            (
                "image-signature-of-another-file/",
                "signs a file named 'SHA256SUMS', not app-1.0.squashfs",
            ),
            ("bad-image-signature/", "bad signature"),
            ("short/", img),
            // Whole files where ranges were asked for: refused, not spliced in.
            ("norange/good/", "the server ignores Range requests"),
        ];
        for (path, want) in cases {
            let r = update(&be.path, &trust, &nginx.url(path), &[]);
            r.expect_code(1);
            assert!(r.stderr.contains(want), "{path}: {}", r.stderr);
            assert_eq!(snapshot(&be.path), before, "{path} changed BootExt");
            let _ = fs::remove_file(be.path.join(format!("System/.{img}.partial")));
        }
        // Another update at work on the same image (its lock held): refused.
        let held = fs::File::create(be.path.join(format!("System/.{img}.partial"))).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let r = update(&be.path, &trust, &nginx.url("good/"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("another overboot update is running"),
            "{}",
            r.stderr
        );
        assert_eq!(snapshot(&be.path), before);
        drop(held);

        // No trusted key: refused before anything is fetched.
        let seen = nginx.log().len();
        let r = update(&be.path, &ns.dir("no-keys"), &nginx.url("good/"), &[]);
        r.expect_code(1);
        assert!(r.stderr.contains("no trusted key"), "{}", r.stderr);
        assert_eq!(nginx.log().len(), seen);

        // A BootExt too small for the image: refused before writing.
        let small = ns.dir("small");
        sh(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                "size=2m".as_ref(),
                "tmpfs".as_ref(),
                small.as_os_str(),
            ],
        );
        fs::create_dir(small.join("System")).unwrap();
        // No active image to return to: a trial is impossible, said before any
        // download (set-active's own decision).
        let seen = nginx.log().len();
        let r = update(&small, &trust, &nginx.url("good/"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("could not be made active: a trial needs a good image"),
            "{}",
            r.stderr
        );
        assert_eq!(nginx.served(img, seen), 0);
        assert_eq!(fs::read_dir(small.join("System")).unwrap().count(), 0);
        let tiny = app_image(&work, &ns.dir("builds"), "0.9", 0, false);
        fs::copy(&tiny, small.join("System/app-0.9.squashfs")).unwrap();
        std::os::unix::fs::symlink("app-0.9.squashfs", small.join("System/active-system")).unwrap();
        let r = update(&small, &trust, &nginx.url("good/"), &[]);
        r.expect_code(1);
        assert!(r.stderr.contains("BootExt has 2.0 MB free"), "{}", r.stderr);
        assert_eq!(
            fs::metadata(small.join(format!("System/.{img}.partial")))
                .unwrap()
                .len(),
            0
        );

        // Then the good directory installs.
        update(&be.path, &trust, &nginx.url("good/"), &[]).expect_code(0);
        assert_eq!(link(&be.path, "active-system"), img);
    });
}

#[test]
fn a_transfer_cut_mid_way_resumes_where_it_stopped() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let trust = trust_dir(ns, &k);
        let public = ns.dir("public");
        let v1 = app_image(&ns.dir("work"), &ns.dir("builds"), "1.0", 40, false);
        publish(&[&v1], &k, &public).expect_code(0);
        let size = fs::metadata(&v1).unwrap().len();
        let be = BootExt::standard(ns);
        let partial = be.path.join("System/.app-1.0.squashfs.partial");

        // At 256 KB/s the 8 MB download takes half a minute: the server dies
        // after 1 MB has arrived.
        let slow = Nginx::start(&ns.dir("nginx-slow"), &public);
        let client = Command::new(BIN)
            .args(["update", &slow.url("slow/"), "--bootext"])
            .arg(&be.path)
            .arg("--trust-keys")
            .arg(&trust)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fs::metadata(&partial).map_or(0, |m| m.len()) < 1_000_000 {
            assert!(std::time::Instant::now() < deadline, "no progress");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(slow);
        let out = client.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("connection lost") || stderr.contains("truncated"),
            "{stderr}"
        );
        assert_eq!(link(&be.path, "active-system"), "a.squashfs");
        let have = fs::metadata(&partial).unwrap().len();
        assert!(have >= 1_000_000 && have < size, "{have}");

        // The next run fetches only the rest.
        let nginx = Nginx::start(&ns.dir("nginx"), &public);
        let r = update(&be.path, &trust, &nginx.url(""), &["--json"]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rec["bytes_resumed"], have, "{rec}");
        assert_eq!(nginx.served("app-1.0.squashfs HTTP", 0), size - have);
        assert_eq!(
            fs::read(be.path.join("System/app-1.0.squashfs")).unwrap(),
            fs::read(&v1).unwrap()
        );
        assert!(!partial.exists());
    });
}

/// The TLS fixture (tests/net_common/tls.rs, shared with the netboot tests): nginx
/// serves https on 127.0.0.1 with a server certificate that `openssl s_client`
/// verifies against the generated CA, for the IP address and the name, and not
/// against the system's CAs.
#[test]
fn tls_fixture_serves_a_certificate_its_ca_verifies() {
    let t = TempDir::new("tls-fixture");
    let tls = net_common::tls::Tls::generate(&t.path().join("tls"), &["127.0.0.1", "localhost"]);
    let www = t.path().join("www");
    fs::create_dir_all(&www).unwrap();
    let nginx = net_common::Nginx::start_tls(&www, &t.path().join("nginx"), &tls);
    assert!(nginx.url("x").starts_with("https://127.0.0.1:"));
    let connect = |ca: Option<&Path>, check: [&str; 2]| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", nginx.port))
            .args(["-verify_return_error", check[0], check[1]])
            .stdin(std::process::Stdio::null());
        if let Some(ca) = ca {
            cmd.arg("-CAfile").arg(ca);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for check in [
        ["-verify_ip", "127.0.0.1"],
        ["-verify_hostname", "localhost"],
    ] {
        let (ok, said) = connect(Some(&tls.ca), check);
        assert!(ok && said.contains("Verify return code: 0 (ok)"), "{said}");
    }
    let (ok, said) = connect(None, ["-verify_ip", "127.0.0.1"]);
    assert!(!ok, "verified without the CA: {said}");
}

/// HTTPS with a private CA (the TLS fixture's): refused without the CA (unknown
/// issuer, or no CA at all; BootExt as it was), installed with `--ca`, then a delta
/// in Range requests with the URL and the CA from `[update]` in overboot.toml.
#[test]
fn https_with_a_private_ca_fresh_then_delta() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let trust = trust_dir(ns, &k);
        let (work, builds, public) = (ns.dir("work"), ns.dir("builds"), ns.dir("public"));
        let v1 = app_image(&work, &builds, "1.0", 40, false);
        publish(&[&v1], &k, &public).expect_code(0);
        let tls = net_common::tls::Tls::generate(&ns.dir("tls"), &["127.0.0.1", "localhost"]);
        let nginx = Nginx::start_tls(&ns.dir("nginx"), &public, |p| tls.nginx_listen(p));
        let be = BootExt::standard(ns);
        let before = snapshot(&be.path);

        // The system's CAs do not know the server's: refused before any request.
        let r = update(&be.path, &trust, &nginx.url(""), &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("UnknownIssuer") && r.stderr.contains("give its CA with --ca FILE"),
            "{}",
            r.stderr
        );
        assert_eq!(snapshot(&be.path), before);
        assert!(nginx.log().is_empty(), "{:?}", nginx.log());
        // A --ca file without a certificate (the server's key): refused.
        let r = update(
            &be.path,
            &trust,
            &nginx.url(""),
            &["--ca", tls.key.to_str().unwrap()],
        );
        r.expect_code(1);
        assert!(
            r.stderr.contains("holds no PEM certificate"),
            "{}",
            r.stderr
        );

        // No system CA bundle (hidden under an empty tmpfs in this namespace) and no
        // --ca: said before connecting. From here on only the private CA is trusted.
        sh(
            "mount",
            &["-t", "tmpfs", "tmpfs", "/etc/ssl/certs"].map(std::ffi::OsStr::new),
        );
        let r = update(&be.path, &trust, &nginx.url(""), &[]);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("no CA certificate to check the server with"),
            "{}",
            r.stderr
        );
        assert!(nginx.log().is_empty(), "{:?}", nginx.log());

        // With the CA: a fresh download.
        let ca = tls.ca.to_str().unwrap();
        let r = update(&be.path, &trust, &nginx.url(""), &["--ca", ca, "--json"]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rec["outcome"], "installed", "{}", r.stdout);
        let size = fs::metadata(&v1).unwrap().len();
        assert_eq!(nginx.served("app-1.0.squashfs HTTP", 0), size);
        assert_eq!(
            fs::read(be.path.join("System/app-1.0.squashfs")).unwrap(),
            fs::read(&v1).unwrap()
        );
        assert_eq!(link(&be.path, "active-system"), "app-1.0.squashfs");

        // One package changed; URL and CA from the manifest, the CA on BootExt.
        let v2 = app_image(&work, &builds, "1.1", 40, true);
        publish(&[&v2], &k, &public).expect_code(0);
        fs::copy(&tls.ca, be.path.join("update-ca.pem")).unwrap();
        fs::write(
            be.path.join("overboot.toml"),
            format!(
                "[update]\nurl = \"{}\"\nca = \"update-ca.pem\"\n",
                nginx.url("")
            ),
        )
        .unwrap();
        let seen = nginx.log().len();
        let r = overboot([
            "update",
            "--json",
            "--bootext",
            be.path.to_str().unwrap(),
            "--trust-keys",
            trust.to_str().unwrap(),
        ]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rec["outcome"], "installed", "{}", r.stdout);
        let size = fs::metadata(&v2).unwrap().len();
        let fetched = nginx.served("app-1.1.squashfs HTTP", seen);
        assert_eq!(rec["bytes_fetched"], fetched, "{rec}");
        assert!(
            fetched > 0 && fetched * 10 <= size,
            "fetched {fetched} of {size}"
        );
        // Every image request was a Range request answered 206.
        let image_lines: Vec<String> = nginx.log()[seen..]
            .iter()
            .filter(|l| l.contains("app-1.1.squashfs HTTP"))
            .cloned()
            .collect();
        assert_eq!(
            image_lines.len() as u64,
            rec["range_requests"].as_u64().unwrap()
        );
        assert!(
            image_lines
                .iter()
                .all(|l| l.starts_with("206 ") && l.contains("\"bytes=")),
            "{image_lines:?}"
        );
        assert_eq!(
            fs::read(be.path.join("System/app-1.1.squashfs")).unwrap(),
            fs::read(&v2).unwrap()
        );
        assert_eq!(link(&be.path, "active-system"), "app-1.1.squashfs");

        // [update] ca as an absolute path (the running system's file), and one that
        // does not exist.
        let manifest = |ca: &str| {
            let text = format!("[update]\nurl = \"{}\"\nca = \"{ca}\"\n", nginx.url(""));
            fs::write(be.path.join("overboot.toml"), text).unwrap();
            let be = be.path.to_str().unwrap();
            overboot([
                "update",
                "--bootext",
                be,
                "--trust-keys",
                trust.to_str().unwrap(),
            ])
        };
        let r = manifest(tls.ca.to_str().unwrap());
        r.expect_code(0);
        assert!(
            r.stdout.contains("app-1.1.squashfs: up-to-date"),
            "{}",
            r.stdout
        );
        let r = manifest("missing-ca.pem");
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("[update] ca = \"missing-ca.pem\" (on BootExt): no such file"),
            "{}",
            r.stderr
        );
    });
}

/// Without `--trust-keys`, update trusts the running initramfs's keys (which the
/// boot leaves in /run/overboot/trusted-keys: `verify::keep_keys`, checked at boot
/// in tests/e2e_verify.rs) and /etc/overboot/trusted-keys, both.
#[test]
fn default_trust_is_the_initramfs_keys_and_etc() {
    Ns::run(|ns| {
        let (k, other) = (keys(&ns.dir("keys")), keys(&ns.dir("other-keys")));
        let (work, builds, public) = (ns.dir("work"), ns.dir("builds"), ns.dir("public"));
        let v1 = app_image(&work, &builds, "1.0", 4, false);
        publish(&[&v1], &k, &public).expect_code(0);
        let nginx = Nginx::start(&ns.dir("nginx"), &public);
        let be = BootExt::standard(ns);
        let update = || {
            overboot([
                "update",
                &nginx.url(""),
                "--bootext",
                be.path.to_str().unwrap(),
            ])
        };
        // /etc writable in this namespace only (an overlay over it); /run is the
        // namespace's own tmpfs.
        let opts = format!(
            "lowerdir=/etc,upperdir={},workdir={}",
            ns.dir("etc-upper").display(),
            ns.dir("etc-work").display()
        );
        sh(
            "mount",
            &["-t", "overlay", "overlay", "-o", &opts, "/etc"].map(std::ffi::OsStr::new),
        );
        let (initramfs_keys, etc_keys) = (
            Path::new(overboot::verify::RUN_TRUST_DIR),
            Path::new(overboot::verify::TRUST_DIR),
        );
        fs::create_dir_all(initramfs_keys).unwrap();
        fs::create_dir_all(etc_keys).unwrap();

        let r = update();
        r.expect_code(1);
        assert!(
            r.stderr.contains(
                "no trusted key in /run/overboot/trusted-keys or /etc/overboot/trusted-keys"
            ),
            "{}",
            r.stderr
        );
        // Another publisher's key in /etc: refused.
        fs::copy(&other.public, etc_keys.join("other.pub")).unwrap();
        let r = update();
        r.expect_code(1);
        assert!(r.stderr.contains("which is not trusted"), "{}", r.stderr);
        assert_eq!(link(&be.path, "active-system"), "a.squashfs");
        // The initramfs's key, as the boot leaves it: installed.
        fs::copy(&k.public, initramfs_keys.join("0.pub")).unwrap();
        update().expect_code(0);
        assert_eq!(link(&be.path, "active-system"), "app-1.0.squashfs");
        // A newer image from the publisher whose key is in /etc: installed too.
        let v2 = app_image(&work, &builds, "1.1", 4, true);
        publish(&[&v2], &other, &public).expect_code(0);
        update().expect_code(0);
        assert_eq!(link(&be.path, "active-system"), "app-1.1.squashfs");
    });
}

/// The limits and choices of §2, §4 and §5 not covered above: a redirect loop and a
/// server that never answers end in bounded time with what was wrong; a progress
/// line on a terminal only; `--image` takes an older image; an image tried and
/// rolled back is not installed again.
#[test]
fn limits_progress_image_choice_and_rolled_back() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let trust = trust_dir(ns, &k);
        let (work, builds, public) = (ns.dir("work"), ns.dir("builds"), ns.dir("public"));
        let v1 = app_image(&work, &builds, "1.0", 20, false);
        let v2 = app_image(&work, &builds, "1.1", 20, true);
        publish(&[&v1, &v2], &k, &public).expect_code(0);
        let nginx = Nginx::start(&ns.dir("nginx"), &public);
        let be = BootExt::standard(ns);
        let before = snapshot(&be.path);

        // A redirect loop: given up after 5 redirects.
        let seen = nginx.log().len();
        let r = update(&be.path, &trust, &nginx.url("loop/"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("too many redirects (more than 5"),
            "{}",
            r.stderr
        );
        assert_eq!(nginx.log().len() - seen, 6, "{:?}", nginx.log());
        // A server that accepts and never answers: --timeout 1 ends the wait.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let start = std::time::Instant::now();
        let r = overboot([
            "update",
            &url,
            "--timeout",
            "1",
            "--bootext",
            be.path.to_str().unwrap(),
            "--trust-keys",
            trust.to_str().unwrap(),
        ]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("timeout") && r.stderr.contains("no answer within --timeout"),
            "{}",
            r.stderr
        );
        // Bounded (the test's own guard, generous for a loaded machine).
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(snapshot(&be.path), before);

        // --image: the older of two published images, with a progress line on a
        // terminal (script(1) gives the command one).
        let cmd = format!(
            "{BIN} update {} --image app-1.0.squashfs --bootext {} --trust-keys {}",
            nginx.url(""),
            be.path.display(),
            trust.display()
        );
        let tty = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&tty.stdout);
        assert!(tty.status.success(), "{said}");
        assert!(
            said.contains("\roverboot: update: ") && said.contains(" MB/s ETA "),
            "{said}"
        );
        assert_eq!(link(&be.path, "active-system"), "app-1.0.squashfs");
        // ...and none without one (stderr is a pipe here).
        overboot(["rollback", "--bootext", be.path.to_str().unwrap()]).expect_code(0);
        assert_eq!(link(&be.path, "active-system"), "a.squashfs");
        let r = update(
            &be.path,
            &trust,
            &nginx.url(""),
            &["--image", "app-1.0.squashfs"],
        );
        r.expect_code(0);
        assert!(r.stdout.contains("rolled-back-before"), "{}", r.stdout);
        assert!(
            r.stderr.contains("was tried and rolled back"),
            "{}",
            r.stderr
        );
        assert_eq!(link(&be.path, "active-system"), "a.squashfs");
        // The newest, not rolled back, installs; no progress line in a pipe.
        let r = update(&be.path, &trust, &nginx.url(""), &[]);
        r.expect_code(0);
        assert!(!r.stderr.contains("ETA"), "{}", r.stderr);
        assert_eq!(link(&be.path, "active-system"), "app-1.1.squashfs");
    });
}

/// BootExt full at the last write (the image fits to the page, its signature does
/// not): exit 1 with the reason, nothing installed, the verified download kept;
/// with room made, the next run installs it without fetching a byte.
#[test]
fn a_disk_full_at_the_last_write_keeps_the_download() {
    Ns::run(|ns| {
        let k = keys(&ns.dir("keys"));
        let trust = trust_dir(ns, &k);
        let (work, builds, public) = (ns.dir("work"), ns.dir("builds"), ns.dir("public"));
        let v1 = app_image(&work, &builds, "1.0", 10, false);
        publish(&[&v1], &k, &public).expect_code(0);
        let nginx = Nginx::start(&ns.dir("nginx"), &public);
        let old = app_image(&work, &builds, "0.9", 0, false);
        let size = fs::metadata(&v1).unwrap().len();
        let old_size = fs::metadata(&old).unwrap().len();
        assert_eq!(
            (size % 4096, old_size % 4096),
            (0, 0),
            "mksquashfs pads to 4 KiB"
        );
        // The active image and the new one fill it (a short symlink takes no page).
        let be = ns.dir("small");
        let mount = |opts: String| {
            let args = ["-t", "tmpfs", "-o", &opts, "tmpfs", be.to_str().unwrap()];
            sh("mount", &args.map(std::ffi::OsStr::new));
        };
        mount(format!("size={}", size + old_size));
        fs::create_dir(be.join("System")).unwrap();
        fs::copy(&old, be.join("System/app-0.9.squashfs")).unwrap();
        std::os::unix::fs::symlink("app-0.9.squashfs", be.join("System/active-system")).unwrap();

        let r = update(&be, &trust, &nginx.url(""), &[]);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("cannot write System/app-1.0.squashfs.minisig")
                && r.stderr.contains("BootExt is full: make room"),
            "{}",
            r.stderr
        );
        let partial = be.join("System/.app-1.0.squashfs.partial");
        assert_eq!(fs::metadata(&partial).unwrap().len(), size);
        assert!(!be.join("System/app-1.0.squashfs").exists());
        assert_eq!(link(&be, "active-system"), "app-0.9.squashfs");

        mount(format!("remount,size={}", size + (1 << 20)));
        let r = update(&be, &trust, &nginx.url(""), &["--json"]);
        r.expect_code(0);
        let rec: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        // All of it was in the partial file: nothing fetched, nothing copied.
        assert_eq!(rec["bytes_resumed"], size, "{rec}");
        assert_eq!(rec["bytes_fetched"], 0, "{rec}");
        assert_eq!(rec["range_requests"], 0, "{rec}");
        assert_eq!(link(&be, "active-system"), "app-1.0.squashfs");
        assert!(!partial.exists());
    });
}
