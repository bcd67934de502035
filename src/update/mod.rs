//! `overboot update [URL]`: fetch, verify and stage a new system image from a
//! directory made by `overboot publish` and served by any HTTP server, downloading
//! only the chunks the appliance does not already have.
//!
//! The steps, in order (nothing on BootExt changes before step 6 but the partial
//! file, so any failure before it leaves BootExt as it was):
//! 1. the index: `SHA256SUMS`, checked against `SHA256SUMS.minisig` with a trusted
//!    key, whose trusted comment must name `SHA256SUMS`;
//! 2. the image: `--image NAME` or the newest by version; stop when it is active
//!    already, or was tried and rolled back, or cannot be made active (step 7's
//!    decision, taken again there);
//! 3. its chunk index (digest from the signed index) and its signature;
//! 4. room on BootExt for what is still missing;
//! 5. `System/.NAME.partial`: resumed, local chunks copied, the rest fetched
//!    ([`fetch`]), then the whole image checked against the signature (and the
//!    signed digest) as the boot will check it;
//! 6. `NAME.minisig`, then the rename of the partial file to `NAME` and an fsync of
//!    `System/`;
//! 7. `set-active --tries N`: the next boot is a trial (bless/rollback do the rest);
//! 8. `--keep K`: older images deleted, never the active, previous or recovery one;
//!    unfinished downloads of other images deleted;
//! 9. `System/last-update.json`.

pub mod fetch;
pub mod http;
pub mod pick;
pub mod record;
pub mod tls;

use crate::chunks::{self, Chunk};
use crate::sys::atomic;
use crate::sys::confined::Confined;
use crate::trial::{self, SYSTEM_DIR, Slot};
use crate::trial_boot::{apply_steps, read_disk, system_dir};
use crate::verify::{self, ChecksumEntry, Mode, SUMS_FILE, TrustStore};
use minisign_verify::Signature;
use record::Record;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode as FileMode, OFlags};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// Bounds on what is read whole from the server.
const MAX_SUMS: u64 = 1 << 20;
const MAX_SIG: u64 = 4096;
const MAX_CHUNK_INDEX: u64 = 64 << 20;

pub struct Options {
    pub url: Option<String>,
    pub image: Option<String>,
    pub tries: u32,
    pub keep: Option<usize>,
    pub bootext: PathBuf,
    /// Directories of trusted minisign keys (`*.pub`), all trusted.
    pub trust_keys: Vec<PathBuf>,
    /// Private CAs for https (PEM files) [default: `[update] ca`], trusted besides
    /// the system's.
    pub ca: Vec<PathBuf>,
    pub timeout: Duration,
}

/// The update, steps 1 to 9 (module documentation).
pub fn run(o: &Options) -> Result<Record, String> {
    let be = Confined::open(&o.bootext)
        .map_err(|e| format!("BootExt: {e} (give the mounted BootExt with --bootext DIR)"))?;
    let settings = manifest_settings(&be)?;
    let url = o
        .url
        .clone()
        .or(settings.url)
        .ok_or("no URL: give one, or set [update] url = \"...\" in BootExt's overboot.toml")?;
    let roots = ca_roots(&be, &o.ca, settings.ca.as_deref())?;
    if url.starts_with("https://") && roots.is_empty() {
        return Err(tls::no_roots(&url));
    }
    let trust = load_trust(&o.trust_keys);
    if trust.keys.is_empty() {
        let dirs: Vec<String> = o
            .trust_keys
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(format!(
            "no trusted key in {}{}: an update is only installed when its signature is checked; put the publisher's minisign .pub there or give --trust-keys DIR",
            dirs.join(" or "),
            if trust.problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", trust.problems.join("; "))
            }
        ));
    }
    let client = http::Client::new(&url, o.timeout, &roots);
    let mut rec = Record {
        url: url.clone(),
        when: now(),
        ..Record::default()
    };

    // 1. The signed index.
    let sums = client.get_small(SUMS_FILE, MAX_SUMS)?;
    let sums_sig = text(
        client.get_small(&format!("{SUMS_FILE}.minisig"), MAX_SIG)?,
        SUMS_FILE,
    )?;
    verify_detached(&trust, &sums, &sums_sig, SUMS_FILE, &client)?;
    let sums = text(sums, SUMS_FILE)?;
    let entries =
        verify::parse_checksums(&sums).map_err(|e| format!("{}: {e}", client.url(SUMS_FILE)))?;

    // 2. Which image, and whether there is anything to do.
    let name = pick::choose(&entries, o.image.as_deref())?;
    rec.image = name.clone();
    let disk = read_disk(&be);
    if disk.active.as_deref() == Some(name.as_str()) {
        rec.outcome = "up-to-date".into();
        return Ok(rec);
    }
    if let Slot::Present(t) = &disk.trial
        && t.image == name
        && t.outcome == trial::Outcome::RolledBack
    {
        log::warn!(
            "{name} was tried and rolled back; not installing it again (publish a newer image, or set-active it by hand)"
        );
        rec.outcome = "rolled-back-before".into();
        return Ok(rec);
    }
    // Step 7's decision, before anything is downloaded for nothing.
    crate::trial_boot::decide_trial(&be, &name, Some(o.tries))
        .map_err(|e| format!("{name} could not be made active: {e}; nothing changed"))?;

    // 3. Its chunk index and signature.
    let index_name = format!("{name}{}", chunks::INDEX_SUFFIX);
    let index = client.get_small(&index_name, MAX_CHUNK_INDEX)?;
    check_listed(&entries, &index_name, &index, &client)?;
    let target = chunks::parse_index(&text(index, &index_name)?, &client.url(&index_name))?;
    let sig_name = format!("{name}.minisig");
    let image_sig = text(client.get_small(&sig_name, MAX_SIG)?, &sig_name)?;
    rec.size = target.iter().map(|c| c.len).sum();

    // 4 and 5. The partial file.
    let sys = system_dir(&be)?;
    let partial_name = format!(".{name}.partial");
    let partial = open_partial(&sys, &partial_name)?;
    let (local, local_chunks) = local_images(&be, &name);
    let store = pick::local_store(&local_chunks);
    let b = fetch::Build {
        partial: &partial,
        target: &target,
        local: &local,
        store: &store,
        client: &client,
        name: &name,
    };
    let from = fetch::resume(&b)?;
    check_room(&sys, rec.size - from.bytes(&target), &name, rec.size)?;
    let counts = fetch::build(&b, from)?;
    rec.bytes_fetched = counts.fetched;
    rec.bytes_reused = counts.reused;
    rec.bytes_resumed = counts.resumed;
    rec.range_requests = counts.requests;
    if let Err(e) = verify_image(&partial, &name, &sums, &image_sig, &trust) {
        // Complete and wrong: the publisher's files disagree. Start afresh next time.
        let _ = rustix::fs::unlinkat(&sys, partial_name.as_str(), AtFlags::empty());
        return Err(e);
    }

    // 6. Into place.
    atomic::write_file(
        &sys,
        &sig_name,
        &trial::temp_name(&sig_name),
        image_sig.as_bytes(),
    )
    .map_err(|e| {
        let full = e.contains(&rustix::io::Errno::NOSPC.to_string());
        format!(
            "cannot write {SYSTEM_DIR}/{sig_name}: {e}{}",
            if full {
                "; BootExt is full: make room (--keep K deletes old images) and run again: the verified download is kept"
            } else {
                ""
            }
        )
    })?;
    rustix::fs::renameat(&sys, partial_name.as_str(), &sys, name.as_str())
        .and_then(|()| rustix::fs::fsync(&sys))
        .map_err(|e| format!("cannot rename {partial_name} to {name} in {SYSTEM_DIR}: {e}"))?;

    // 7. Active, as a trial.
    let (steps, _) = crate::trial_boot::decide_set_active(&be, &name, Some(o.tries))?;
    apply_steps(&be, &steps)
        .map_err(|e| format!("{name} is in {SYSTEM_DIR}/ but could not be made active: {e}"))?;
    rec.tries = Some(o.tries);
    rec.outcome = "installed".into();

    // 8. Old images, and downloads of other images left unfinished (a newer image
    // was published meanwhile: they would only take room).
    if let Some(k) = o.keep {
        rec.removed = prune(&be, &sys, &name, k);
    }
    for stale in be.list(SYSTEM_DIR).unwrap_or_default() {
        if stale.starts_with('.') && stale.ends_with(".partial") {
            if let Err(e) = atomic::remove(&sys, &stale) {
                log::warn!("cannot delete {SYSTEM_DIR}/{stale}: {e}");
            }
        }
    }

    // 9. The record.
    let json = serde_json::to_string_pretty(&rec).unwrap_or_default();
    if let Err(e) = atomic::write_file(
        &sys,
        record::FILE,
        &trial::temp_name(record::FILE),
        json.as_bytes(),
    ) {
        log::warn!("cannot write {SYSTEM_DIR}/{}: {e}", record::FILE);
    }
    Ok(rec)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text(bytes: Vec<u8>, name: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{name} from the server is not text"))
}

/// `[update]` in BootExt's manifest: the default URL and private CA file.
#[derive(Default)]
struct Settings {
    url: Option<String>,
    ca: Option<String>,
}

fn manifest_settings(be: &Confined) -> Result<Settings, String> {
    let path = crate::manifest::MANIFEST_PATH;
    let Some(text) = be.read_small(path, 1 << 20)? else {
        return Ok(Settings::default());
    };
    let table: toml::Table = text.parse().map_err(|e| format!("{path}: {e}"))?;
    let Some(update) = table.get("update") else {
        return Ok(Settings::default());
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        match update.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!(
                "{path}: [update] {key} is a {}, not a string; write {key} = \"...\"",
                v.type_str()
            )),
        }
    };
    Ok(Settings {
        url: string("url")?,
        ca: string("ca")?,
    })
}

/// The CAs an https update trusts: the system's, and `--ca` files or else
/// `[update] ca` (a path on BootExt, or an absolute path in the running system).
fn ca_roots(
    be: &Confined,
    cli: &[PathBuf],
    manifest: Option<&str>,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut roots = tls::system_certs();
    for path in cli {
        roots.extend(tls::read_certs(path)?);
    }
    match manifest {
        Some(_) if !cli.is_empty() => {}
        None => {}
        Some(ca) if std::path::Path::new(ca).is_absolute() => {
            roots.extend(tls::read_certs(std::path::Path::new(ca))?);
        }
        Some(ca) => {
            let what = format!("[update] ca = \"{ca}\" (on BootExt)");
            let pem = be
                .read_small(ca, 8 << 20)
                .map_err(|e| format!("{what}: {e}"))?
                .ok_or_else(|| format!("{what}: no such file"))?;
            roots.extend(tls::parse_certs(pem.as_bytes(), &what)?);
        }
    }
    Ok(roots)
}

/// Check a signature over `data` (a small file) with the trusted keys.
fn verify_detached(
    trust: &TrustStore,
    data: &[u8],
    sig_text: &str,
    name: &str,
    client: &http::Client,
) -> Result<(), String> {
    let url = client.url(name);
    let sig = Signature::decode(sig_text)
        .map_err(|e| format!("{url}.minisig is not a minisign signature: {e}"))?;
    let id = verify::key_id_of(sig_text)
        .ok_or_else(|| format!("{url}.minisig is not a minisign signature"))?;
    let key = trust.keys.iter().find(|k| k.id == id).ok_or_else(|| {
        format!(
            "{url} is signed by key {id}, which is not trusted (trusted: {})",
            ids(trust)
        )
    })?;
    key.key.verify(data, &sig, false).map_err(|e| {
        format!("{url}: bad signature under trusted key {id}: {e}; the index or its signature was altered; nothing changed")
    })?;
    // The index names no version: the publisher's min-version applies to images.
    verify::check_signed_claims(sig.trusted_comment(), name, None, &format!("{url}.minisig"))
        .map_err(|e| format!("{e}; nothing changed"))
}

fn ids(trust: &TrustStore) -> String {
    let mut ids: Vec<String> = trust.keys.iter().map(|k| k.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    ids.join(", ")
}

/// The keys of every directory in `dirs` (the running initramfs's and the
/// system's, or `--trust-keys`).
fn load_trust(dirs: &[PathBuf]) -> TrustStore {
    let mut trust = TrustStore::default();
    for d in dirs {
        let t = TrustStore::load(d);
        trust.keys.extend(t.keys);
        trust.problems.extend(t.problems);
    }
    trust
}

/// `data` must have the digest the signed index lists for `name`.
fn check_listed(
    entries: &[ChecksumEntry],
    name: &str,
    data: &[u8],
    client: &http::Client,
) -> Result<(), String> {
    let want = verify::find_digest(entries, name, SUMS_FILE)?
        .ok_or_else(|| format!("{name} is not listed in {SUMS_FILE}"))?;
    let got = verify::Sha256Digest(<sha2::Sha256 as sha2::Digest>::digest(data).into());
    if got != want {
        return Err(format!(
            "{}: SHA-256 {got}, the signed {SUMS_FILE} says {want}; the server sent something else; nothing changed",
            client.url(name)
        ));
    }
    Ok(())
}

/// The partial file, locked: two updates at once (the timer and an operator)
/// would write the same file.
fn open_partial(sys: &OwnedFd, name: &str) -> Result<File, String> {
    let fd = rustix::fs::openat(
        sys,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        FileMode::from_raw_mode(0o644),
    )
    .map_err(|e| {
        format!(
            "cannot open {SYSTEM_DIR}/{name}: {}",
            crate::sys::errno_text(e)
        )
    })?;
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        format!(
            "{SYSTEM_DIR}/{name} is locked ({}): another overboot update is running; nothing changed",
            crate::sys::errno_text(e)
        )
    })?;
    Ok(File::from(fd))
}

/// The images whose chunks can be reused (active, previous, recovery, and an
/// older copy of the new image), opened and chunked. One that cannot be read is
/// left out (its chunks are fetched instead).
fn local_images(be: &Confined, new: &str) -> (Vec<File>, Vec<Vec<Chunk>>) {
    let mut names: Vec<String> = [trial::ACTIVE, trial::PREVIOUS, trial::RECOVERY]
        .iter()
        .filter_map(|l| be.readlink(&format!("{SYSTEM_DIR}/{l}")).ok())
        .chain(std::iter::once(new.to_string()))
        .collect();
    names.sort();
    names.dedup();
    let mut files = Vec::new();
    let mut lists = Vec::new();
    for n in names {
        let Ok(fd) = be.open_file(&format!("{SYSTEM_DIR}/{n}")) else {
            continue;
        };
        let f = File::from(fd);
        match chunks::chunk_reader(&f) {
            Ok(list) if f.metadata().is_ok_and(|m| m.is_file()) => {
                files.push(f);
                lists.push(list);
            }
            Ok(_) => {}
            Err(e) => log::warn!("{SYSTEM_DIR}/{n} not reused: {e}"),
        }
    }
    (files, lists)
}

/// Refuse to start when BootExt lacks room for the bytes still missing.
fn check_room(sys: &OwnedFd, missing: u64, name: &str, size: u64) -> Result<(), String> {
    let st = rustix::fs::fstatvfs(sys).map_err(|e| format!("cannot statvfs {SYSTEM_DIR}: {e}"))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if missing > free {
        return Err(format!(
            "BootExt has {:.1} MB free, {name} ({:.1} MB) needs {:.1} MB more; make room (--keep K deletes old images) and run again; nothing changed",
            free as f64 / 1e6,
            size as f64 / 1e6,
            missing as f64 / 1e6
        ));
    }
    Ok(())
}

/// The whole image against its signature (trusted comment naming it) and the
/// signed digest, as the boot checks it.
fn verify_image(
    partial: &File,
    name: &str,
    sums: &str,
    sig: &str,
    trust: &TrustStore,
) -> Result<(), String> {
    let read = |rel: &str| -> Result<Option<String>, String> {
        Ok(if rel == SUMS_FILE {
            Some(sums.to_string())
        } else if rel == format!("{name}.minisig") {
            Some(sig.to_string())
        } else {
            None
        })
    };
    let expected = verify::prepare(name, Mode::Required, trust, &read)?;
    let mut d = expected.digester()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        use std::os::unix::fs::FileExt;
        let n = partial
            .read_at(&mut buf, offset)
            .map_err(|e| format!("cannot read the partial file: {e}"))?;
        if n == 0 {
            break;
        }
        d.update(buf.get(..n).unwrap_or_default());
        offset += n as u64;
    }
    d.finish(name)
        .map(|_| ())
        .map_err(|e| format!("{e}; nothing changed"))
}

/// Delete images beyond `keep` (oldest first), with their signatures; returns them.
fn prune(be: &Confined, sys: &OwnedFd, new: &str, keep: usize) -> Vec<String> {
    let links: Vec<String> = [trial::ACTIVE, trial::PREVIOUS, trial::RECOVERY]
        .iter()
        .filter_map(|l| be.readlink(&format!("{SYSTEM_DIR}/{l}")).ok())
        .collect();
    let mut protected: Vec<&str> = links.iter().map(String::as_str).collect();
    protected.push(new);
    let images: Vec<(String, i64)> = be
        .list(SYSTEM_DIR)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| pick::is_image_name(n))
        .filter_map(|n| {
            let fd = be.open_path(&format!("{SYSTEM_DIR}/{n}")).ok()?;
            let meta = File::from(fd).metadata().ok()?;
            meta.is_file().then(|| (n, meta.mtime()))
        })
        .collect();
    let mut removed = Vec::new();
    for n in pick::prune(&images, &protected, keep) {
        let sig = format!("{n}.minisig");
        match atomic::remove(sys, &n).and_then(|()| atomic::remove(sys, &sig)) {
            Ok(()) => removed.push(n),
            Err(e) => log::warn!("cannot delete {SYSTEM_DIR}/{n}: {e}"),
        }
    }
    removed
}
