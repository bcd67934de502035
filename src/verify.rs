//! Image verification (DESIGN section 2 step 4, section 3 `overboot.verify`). Pure:
//! checksum files and signatures as text in, decisions and digests out; the image
//! bytes are fed by the caller (`sys::toram`) in one pass.
//!
//! Evidence beside an image `DIR/NAME` on BootExt:
//! - `DIR/NAME.sha256`: `sha256sum` output naming `NAME` (or a bare digest);
//! - `DIR/SHA256SUMS`: `sha256sum` output with a line for `NAME`;
//! - `DIR/NAME.minisig`: a minisign signature (pre-hashed, the default of minisign).
//!
//! Trusted minisign public keys are baked into the initramfs by
//! `overboot mkinitramfs --trust-key FILE` at [`TRUST_DIR`]`/<n>.pub`. The policy:
//!
//! | keys baked | signature | `overboot.verify` | checked |
//! |---|---|---|---|
//! | yes | missing | any | refused (unsigned) |
//! | yes | present | `0` | signature |
//! | yes | present | unset, `1` | signature, and the checksum if one exists |
//! | no | any | `0` | nothing |
//! | no | any | unset | the checksum if one exists |
//! | no | any | `1` | the checksum; none → refused |
//!
//! Without a trusted key a signature proves nothing, so it is never counted.

use crate::names::escape;
use minisign_verify::{PublicKey, Signature, StreamVerifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// Where trusted minisign public keys live, in the initramfs and (for
/// `overboot assemble`) in the running system.
pub const TRUST_DIR: &str = "/etc/overboot/trusted-keys";
/// Where the boot leaves the initramfs's trusted keys for the booted system, whose
/// `overboot update` trusts them: the initramfs is gone after the switch, `/run`
/// is carried over.
pub const RUN_TRUST_DIR: &str = "/run/overboot/trusted-keys";
/// Name of the checksum list beside the images.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Where verification and toram look outside BootExt; overridable for tests and
/// `overboot assemble` (`--trust-keys`, `--meminfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub trust_dir: std::path::PathBuf,
    pub meminfo: std::path::PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            trust_dir: TRUST_DIR.into(),
            meminfo: "/proc/meminfo".into(),
        }
    }
}

/// `overboot.verify`: unset, `1` or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Verify where a checksum exists.
    Auto,
    /// A checksum (or, with keys, a signature) is required.
    Required,
    /// Checksums are not checked (a signature still is when keys are baked in).
    Skip,
}

impl Mode {
    pub fn from_setting(verify: Option<bool>) -> Mode {
        match verify {
            None => Mode::Auto,
            Some(true) => Mode::Required,
            Some(false) => Mode::Skip,
        }
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Sha256Digest {
    /// 64 hex digits, either case.
    pub fn parse_hex(text: &str) -> Option<Sha256Digest> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair.first().copied().and_then(hex_val))?;
            let lo = (pair.get(1).copied().and_then(hex_val))?;
            *o = hi << 4 | lo;
        }
        Some(Sha256Digest(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One line of a checksum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumEntry {
    pub name: String,
    pub digest: Sha256Digest,
}

/// Undo `sha256sum`'s escaping of names holding `\` or a newline (such lines start
/// with `\`; in the name `\\` is `\` and `\n` a newline).
fn unescape(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = name.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Parse `sha256sum` output (`DIGEST  NAME`, `DIGEST *NAME`, escaped lines starting
/// with `\`) or the BSD form (`SHA256 (NAME) = DIGEST`). Blank lines and `#`
/// comments are skipped; any other line is an error naming its number.
pub fn parse_checksums(text: &str) -> Result<Vec<ChecksumEntry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {}: '{}' is not 'SHA256-DIGEST  NAME' (sha256sum format)",
                i + 1,
                line.chars().take(80).collect::<String>()
            )
        };
        let entry = if let Some(rest) = line.strip_prefix("SHA256 (") {
            let (name, digest) = rest.rsplit_once(") = ").ok_or_else(bad)?;
            ChecksumEntry {
                name: name.to_string(),
                digest: Sha256Digest::parse_hex(digest.trim()).ok_or_else(bad)?,
            }
        } else {
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let digest = line.get(..64).ok_or_else(bad)?;
            let digest = Sha256Digest::parse_hex(digest).ok_or_else(bad)?;
            let rest = line.get(64..).ok_or_else(bad)?;
            // " NAME" (text mode, two spaces in all) or " *NAME" (binary mode).
            let name = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))
                .ok_or_else(bad)?;
            if name.is_empty() {
                return Err(bad());
            }
            let name = if escaped {
                unescape(name).ok_or_else(bad)?
            } else {
                name.to_string()
            };
            ChecksumEntry { name, digest }
        };
        out.push(entry);
    }
    Ok(out)
}

/// The names a list may use for the image `file` (a bare file name): `file` and
/// `./file`.
fn names_match(listed: &str, file: &str) -> bool {
    listed == file || listed.strip_prefix("./") == Some(file)
}

/// The digest `entries` give for `file`: `Ok(None)` when not listed, an error when
/// two lines disagree.
pub fn find_digest(
    entries: &[ChecksumEntry],
    file: &str,
    source: &str,
) -> Result<Option<Sha256Digest>, String> {
    let mut found: Option<Sha256Digest> = None;
    for e in entries.iter().filter(|e| names_match(&e.name, file)) {
        match found {
            Some(d) if d != e.digest => {
                return Err(format!(
                    "{source} lists {file} twice with different digests ({d} and {}); fix the file",
                    e.digest
                ));
            }
            _ => found = Some(e.digest),
        }
    }
    Ok(found)
}

/// `NAME.sha256` beside the image: a bare digest, or `sha256sum` lines that must
/// name `file`.
pub fn parse_sidecar(text: &str, file: &str, source: &str) -> Result<Sha256Digest, String> {
    let first = text.split_whitespace().next().unwrap_or("");
    if text.split_whitespace().count() == 1
        && let Some(d) = Sha256Digest::parse_hex(first)
    {
        return Ok(d);
    }
    let entries = parse_checksums(text).map_err(|e| format!("{source}: {e}"))?;
    match find_digest(&entries, file, source)? {
        Some(d) => Ok(d),
        None => Err(format!(
            "{source} does not list {file} (it lists: {}); regenerate it with: sha256sum {file} > {file}.sha256",
            list_names(&entries)
        )),
    }
}

fn list_names(entries: &[ChecksumEntry]) -> String {
    if entries.is_empty() {
        return "nothing".into();
    }
    entries
        .iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A minisign key id, shown as minisign shows it (upper-case hex of the little-endian
/// number, as in the `untrusted comment:` line of its key files).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Standard base64 with padding (what minisign writes).
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 {
        return None;
    }
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The key id in the second line of a minisign key or signature file (bytes 2..10 of
/// its base64 payload).
pub(crate) fn key_id_of(text: &str) -> Option<KeyId> {
    let line = text.lines().nth(1)?.trim();
    let bin = base64_decode(line)?;
    let id: [u8; 8] = bin.get(2..10)?.try_into().ok()?;
    Some(KeyId(id))
}

/// A trusted public key.
#[derive(Clone)]
pub struct TrustedKey {
    pub id: KeyId,
    pub key: PublicKey,
    /// The file it came from.
    pub source: String,
    /// `min-version: V` after the key's two lines: images signed by this key must
    /// say `version:` at least `V` in their trusted comment.
    pub min_version: Option<String>,
}

/// Parse a minisign public key file (`untrusted comment:` line, base64 line, then
/// option lines: `min-version: V`), or the bare base64 line.
pub fn parse_public_key(text: &str, source: &str) -> Result<TrustedKey, String> {
    let text = text.trim();
    let min_version = key_options(text, source)?;
    let full = if text.lines().count() == 1 {
        format!("untrusted comment: {source}\n{text}\n")
    } else {
        text.to_string()
    };
    let bad = |why: String| {
        format!(
            "{source} is not a minisign public key ({why}); give the .pub file minisign -G wrote"
        )
    };
    let key = PublicKey::decode(&full).map_err(|e| bad(e.to_string()))?;
    let id = key_id_of(&full).ok_or_else(|| bad("no key id".into()))?;
    Ok(TrustedKey {
        id,
        key,
        source: source.to_string(),
        min_version,
    })
}

/// The option lines after a key's two lines. An unknown option is an error (fail
/// closed: a misspelt `min-version` must not mean "any version").
fn key_options(text: &str, source: &str) -> Result<Option<String>, String> {
    let mut min_version = None;
    for line in text
        .lines()
        .skip(2)
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("min-version", v)) if !v.is_empty() => min_version = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "{source}: unknown option line '{}' after the key; the only option is 'min-version: VERSION'",
                    escape(line)
                ));
            }
        }
    }
    Ok(min_version)
}

/// What a minisign trusted comment says about the file it signs. `minisign -S`
/// writes `timestamp:T<TAB>file:NAME<TAB>hashed`; `-t` replaces it, and overboot
/// reads `file:NAME` and `version:V` from it, fields separated by tabs or spaces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SignedClaims<'a> {
    pub file: Option<&'a str>,
    pub version: Option<&'a str>,
}

pub fn parse_trusted_comment(comment: &str) -> SignedClaims<'_> {
    let mut claims = SignedClaims::default();
    for field in comment.split([' ', '\t']) {
        if let Some(v) = field.strip_prefix("file:") {
            claims.file = Some(v);
        } else if let Some(v) = field.strip_prefix("version:") {
            claims.version = Some(v);
        }
    }
    claims
}

/// Order of two versions: `.`, `-`, `+` and `_` separate parts; two numeric parts
/// compare as numbers (`2025.10` > `2025.9`), a number is newer than text
/// (`2.1` > `2.rc1`), other parts compare as text, and when one is a prefix of the
/// other the longer is newer.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    const SEPARATORS: [char; 4] = ['.', '-', '+', '_'];
    let pa: Vec<&str> = a.split(SEPARATORS).collect();
    let pb: Vec<&str> = b.split(SEPARATORS).collect();
    for (x, y) in pa.iter().zip(pb.iter()) {
        let order = match (numeric(x), numeric(y)) {
            // Any length: no overflow, leading zeros ignored.
            (Some(m), Some(n)) => m.len().cmp(&n.len()).then(m.cmp(n)),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The digits of an all-digit version part without leading zeros.
fn numeric(part: &str) -> Option<&str> {
    (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        .then(|| part.trim_start_matches('0'))
}

/// Check what a signature's trusted comment claims: it must name `file` (the file
/// name the signed thing has on BootExt, so a validly signed file cannot be booted
/// under another name), and carry `version:` at least `min_version` when one is
/// set. For any signed file (images, `IMAGE.roothash`, update manifests). The
/// comment is authenticated only when the signature itself verifies: call this
/// and verify.
pub fn check_signed_claims(
    comment: &str,
    file: &str,
    min_version: Option<&str>,
    sig_file: &str,
) -> Result<(), String> {
    let claims = parse_trusted_comment(comment);
    let resign = format!("sign it under its own name: minisign -S -m {file}");
    match claims.file {
        Some(name) if name == file => {}
        Some(name) => {
            return Err(format!(
                "{sig_file} signs a file named '{}', not {file}: a signed file renamed is refused; {resign}",
                escape(name)
            ));
        }
        None => {
            return Err(format!(
                "{sig_file} has no 'file:NAME' in its trusted comment ('{}'); {resign} (a -t comment must include file:{file})",
                escape(comment)
            ));
        }
    }
    let Some(min) = min_version else {
        return Ok(());
    };
    match claims.version {
        Some(v) if compare_versions(v, min) != std::cmp::Ordering::Less => Ok(()),
        Some(v) => Err(format!(
            "{sig_file} signs version {}, older than the minimum {min}: an old image is refused; boot a newer one",
            escape(v)
        )),
        None => Err(format!(
            "{sig_file} carries no version and a minimum version ({min}) is set; sign with: minisign -S -m {file} -t 'file:{file} version:VERSION'"
        )),
    }
}

/// The trusted keys in `dir` (`*.pub`, sorted). A missing directory is no keys. A
/// file that is not a key is an error in `problems` and still turns enforcement on
/// (fail closed: an unreadable key must not mean "unsigned images are fine").
#[derive(Default, Clone)]
pub struct TrustStore {
    pub keys: Vec<TrustedKey>,
    pub problems: Vec<String>,
    /// The manifest's `[verify] min-version`: a floor for every key (an operator's
    /// guard against booting an old image by mistake; only a key's own
    /// `min-version:` holds against whoever can rewrite BootExt).
    pub min_version: Option<String>,
}

/// Copy the key files (`*.pub`) of `from` into `to`; returns how many. No `from`
/// (an initramfs without keys) is not an error.
pub fn keep_keys(from: &Path, to: &Path) -> Result<usize, String> {
    let entries = match std::fs::read_dir(from) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot list {}: {e}", from.display())),
    };
    let failed = |what: &Path, e: std::io::Error| format!("cannot copy {}: {e}", what.display());
    std::fs::create_dir_all(to).map_err(|e| failed(to, e))?;
    let mut kept = 0;
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        if let (Some(name), Some("pub")) =
            (path.file_name(), path.extension().and_then(|x| x.to_str()))
        {
            let data = std::fs::read(&path).map_err(|e| failed(&path, e))?;
            std::fs::write(to.join(name), data).map_err(|e| failed(&path, e))?;
            kept += 1;
        }
    }
    Ok(kept)
}

impl TrustStore {
    pub fn enforcing(&self) -> bool {
        !self.keys.is_empty() || !self.problems.is_empty()
    }

    pub fn load(dir: &Path) -> TrustStore {
        let mut store = TrustStore::default();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return store,
            Err(e) => {
                store
                    .problems
                    .push(format!("cannot list {}: {e}", dir.display()));
                return store;
            }
        };
        let mut files: Vec<_> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        files.sort();
        for f in files {
            let shown = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => match parse_public_key(&text, &shown) {
                    Ok(k) => store.keys.push(k),
                    Err(e) => store.problems.push(e),
                },
                Err(e) => store.problems.push(format!("cannot read {shown}: {e}")),
            }
        }
        store
    }

    /// The higher of the key's own minimum version and the manifest's.
    pub fn min_version_for<'a>(&'a self, key: &'a TrustedKey) -> Option<&'a str> {
        match (key.min_version.as_deref(), self.min_version.as_deref()) {
            (Some(k), Some(m)) if compare_versions(m, k).is_gt() => Some(m),
            (Some(k), _) => Some(k),
            (None, m) => m,
        }
    }

    fn ids(&self) -> String {
        if self.keys.is_empty() {
            return "none usable".into();
        }
        self.keys
            .iter()
            .map(|k| k.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What to check for one image, decided before it is read.
pub struct Expected {
    /// Digest, and the file that gave it.
    pub sha256: Option<(Sha256Digest, String)>,
    /// Signature, the key it names, and the signature file.
    pub signature: Option<(Signature, TrustedKey, String)>,
    /// Why nothing (or less) is checked, for the log and state.
    pub note: Option<String>,
}

impl Expected {
    pub fn anything(&self) -> bool {
        self.sha256.is_some() || self.signature.is_some()
    }

    /// Start a pass over the image.
    pub fn digester(&self) -> Result<Digester<'_>, String> {
        let sig = match &self.signature {
            Some((sig, key, file)) => Some(key.key.verify_stream(sig).map_err(|e| {
                format!("{file}: {e}; sign with a current minisign (pre-hashed, the default)")
            })?),
            None => None,
        };
        Ok(Digester {
            expected: self,
            sha: self.sha256.as_ref().map(|_| Sha256::new()),
            sig,
        })
    }
}

/// Inputs of the policy, as found on BootExt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    pub checksum: bool,
    pub signature: bool,
}

/// What the policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub checksum: bool,
    pub signature: bool,
}

/// The trust policy table (module doc). `Err` is the refusal, in operator words.
pub fn policy(mode: Mode, keys: bool, found: Evidence, image: &str) -> Result<Checks, String> {
    if keys {
        if !found.signature {
            return Err(format!(
                "{image} is not signed ({image}.minisig missing) and this initramfs trusts signed images only; sign it with: minisign -Sm {image}"
            ));
        }
        return Ok(Checks {
            checksum: found.checksum && mode != Mode::Skip,
            signature: true,
        });
    }
    match mode {
        Mode::Skip => Ok(Checks {
            checksum: false,
            signature: false,
        }),
        Mode::Auto => Ok(Checks {
            checksum: found.checksum,
            signature: false,
        }),
        Mode::Required if found.checksum => Ok(Checks {
            checksum: true,
            signature: false,
        }),
        Mode::Required => Err(format!(
            "overboot.verify=1 and {image} has no checksum ({image}.sha256 or a {SUMS_FILE} line){}; add one with: sha256sum NAME > NAME.sha256, or boot with overboot.verify=0",
            if found.signature {
                " (its signature cannot count: no trusted key is baked into the initramfs, see mkinitramfs --trust-key)"
            } else {
                ""
            }
        )),
    }
}

/// Read the evidence for `image` (a path relative to BootExt) with `read` (a
/// confined reader: `Ok(None)` when absent) and decide what to check.
pub fn prepare(
    image: &str,
    mode: Mode,
    trust: &TrustStore,
    read: &dyn Fn(&str) -> Result<Option<String>, String>,
) -> Result<Expected, String> {
    let (dir, file) = match image.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), image),
    };
    // Checksum: NAME.sha256 first, then SHA256SUMS.
    let sidecar = format!("{image}.sha256");
    let sums = format!("{dir}{SUMS_FILE}");
    let mut sha256 = None;
    if mode != Mode::Skip || trust.enforcing() {
        if let Some(text) = read(&sidecar)? {
            sha256 = Some((parse_sidecar(&text, file, &sidecar)?, sidecar.clone()));
        } else if let Some(text) = read(&sums)? {
            let entries = parse_checksums(&text).map_err(|e| format!("{sums}: {e}"))?;
            sha256 = find_digest(&entries, file, &sums)?.map(|d| (d, sums.clone()));
        }
    }
    let sig_file = format!("{image}.minisig");
    let sig_text = read(&sig_file)?;
    let checks = policy(
        mode,
        trust.enforcing(),
        Evidence {
            checksum: sha256.is_some(),
            signature: sig_text.is_some(),
        },
        image,
    )?;
    let mut note = None;
    let signature = match (checks.signature, sig_text) {
        (true, Some(text)) => {
            if !trust.problems.is_empty() && trust.keys.is_empty() {
                return Err(format!(
                    "no usable trusted key: {}; rebuild the initramfs with a valid --trust-key",
                    trust.problems.join("; ")
                ));
            }
            let id = key_id_of(&text).ok_or_else(|| {
                format!(
                    "{sig_file} is not a minisign signature; sign again with: minisign -Sm {image}"
                )
            })?;
            let sig = Signature::decode(&text).map_err(|e| {
                format!("{sig_file} is not a minisign signature ({e}); sign again with: minisign -Sm {image}")
            })?;
            let key = trust.keys.iter().find(|k| k.id == id).ok_or_else(|| {
                format!(
                    "{sig_file} is signed by key {id}, which is not trusted (trusted: {}); sign with a trusted key or add its public key with mkinitramfs --trust-key",
                    trust.ids()
                )
            })?;
            let file = image.rsplit('/').next().unwrap_or(image);
            let min = trust.min_version_for(key);
            check_signed_claims(sig.trusted_comment(), file, min, &sig_file)?;
            Some((sig, key.clone(), sig_file))
        }
        (false, Some(_)) if mode != Mode::Skip => {
            note = Some(format!(
                "{sig_file} not checked: no trusted key in the initramfs"
            ));
            None
        }
        _ => None,
    };
    let sha256 = if checks.checksum { sha256 } else { None };
    if sha256.is_none() && signature.is_none() {
        note = note.or(Some(match mode {
            Mode::Skip => "not verified: overboot.verify=0".to_string(),
            _ => format!("not verified: no {image}.sha256, {sums} line or trusted signature"),
        }));
    }
    Ok(Expected {
        sha256,
        signature,
        note,
    })
}

/// One pass over the image: every byte in order (holes as zeros).
pub struct Digester<'a> {
    expected: &'a Expected,
    sha: Option<Sha256>,
    sig: Option<StreamVerifier<'a>>,
}

impl Digester<'_> {
    pub fn update(&mut self, data: &[u8]) {
        if let Some(s) = self.sha.as_mut() {
            s.update(data);
        }
        if let Some(v) = self.sig.as_mut() {
            v.update(data);
        }
    }

    /// `n` zero bytes (a hole of a sparse file).
    pub fn update_zeros(&mut self, mut n: u64) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while n > 0 {
            let step = n.min(ZEROS.len() as u64) as usize;
            self.update(ZEROS.get(..step).unwrap_or(&ZEROS));
            n -= step as u64;
        }
    }

    /// Compare with what was expected. `image` names the image in messages.
    pub fn finish(self, image: &str) -> Result<Verification, String> {
        let mut out = Verification::default();
        if let (Some(h), Some((want, source))) = (self.sha, &self.expected.sha256) {
            let got = Sha256Digest(h.finalize().into());
            if got != *want {
                return Err(format!(
                    "{image}: SHA-256 mismatch: {source} expects {want}, the image has {got}; the image is damaged or the checksum is stale (recopy the image or regenerate {source})"
                ));
            }
            out.sha256 = Some(got.to_string());
            out.checksum_file = Some(source.clone());
        }
        if let (Some(mut v), Some((_, key, file))) = (self.sig, &self.expected.signature) {
            v.finalize().map_err(|e| {
                format!(
                    "{image}: bad signature: {file} does not match the image under trusted key {} ({}): {e}; the image or its signature was altered (recopy both, or sign again)",
                    key.id, key.source
                )
            })?;
            out.key_id = Some(key.id.to_string());
            out.signature_file = Some(file.clone());
        }
        out.note = self.expected.note.clone();
        Ok(out)
    }
}

/// What was verified, for state.json (`booted.verified`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Verification {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.checksum_file {
            parts.push(format!("sha256 ok ({f})"));
        }
        if let Some(k) = &self.key_id {
            parts.push(format!("signature ok (key {k})"));
        }
        if let Some(n) = &self.note {
            parts.push(n.clone());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keep_keys_copies_the_key_files() {
        let d = std::env::temp_dir().join(format!("overboot-keep-keys-{}", std::process::id()));
        let (from, to) = (d.join("initramfs"), d.join("run/overboot/trusted-keys"));
        assert_eq!(super::keep_keys(&from, &to), Ok(0));
        assert!(!to.exists(), "nothing kept, nothing made");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("0.pub"), "key zero").unwrap();
        std::fs::write(from.join("1.pub"), "key one").unwrap();
        std::fs::write(from.join("README"), "not a key").unwrap();
        assert_eq!(super::keep_keys(&from, &to), Ok(2));
        assert_eq!(
            std::fs::read_to_string(to.join("1.pub")).unwrap(),
            "key one"
        );
        assert!(!to.join("README").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    use super::*;

    const D1: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn d(hex: &str) -> Sha256Digest {
        Sha256Digest::parse_hex(hex).unwrap()
    }

    #[test]
    fn both_formats_and_binary_mode() {
        let text = format!(
            "{D1}  a.squashfs\n{D2} *b c.squashfs\n\nSHA256 (tag.squashfs) = {}\n# comment\n",
            D1.to_uppercase()
        );
        let e = parse_checksums(&text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "a.squashfs");
        assert_eq!(e[1].name, "b c.squashfs", "spaces in names kept");
        assert_eq!(e[1].digest, d(D2));
        assert_eq!(e[2].name, "tag.squashfs");
        assert_eq!(e[2].digest, d(D1), "upper-case hex accepted");
    }

    #[test]
    fn names_with_star_backslash_and_leading_space() {
        let text = format!("{D1}  *star.squashfs\n\\{D2}  back\\\\slash\\nnl\n{D1}   lead\n");
        let e = parse_checksums(&text).unwrap();
        assert_eq!(
            e[0].name, "*star.squashfs",
            "text mode: the * is the name's"
        );
        assert_eq!(e[1].name, "back\\slash\nnl");
        assert_eq!(e[2].name, " lead");
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        for bad in [
            format!("{D1}  ok\nnot a line\n"),
            format!("{D1}  ok\n{}  short\n", &D1[..60]),
            format!("{D1}  ok\n{D1}x name\n"),
            format!("{D1}  ok\n{D1}  \n"),
            format!("{D1}  ok\n\\{D1}  bad\\qescape\n"),
        ] {
            let err = parse_checksums(&bad).unwrap_err();
            assert!(err.starts_with("line 2:"), "{bad:?}: {err}");
        }
        assert!(parse_checksums("zz".repeat(32).as_str()).is_err());
    }

    #[test]
    fn find_in_multiple_entries() {
        let e = parse_checksums(&format!("{D1}  a.squashfs\n{D2}  ./b.squashfs\n")).unwrap();
        assert_eq!(find_digest(&e, "b.squashfs", "S").unwrap(), Some(d(D2)));
        assert_eq!(find_digest(&e, "a.squashfs", "S").unwrap(), Some(d(D1)));
        assert_eq!(find_digest(&e, "c.squashfs", "S").unwrap(), None);
        assert_eq!(find_digest(&e, "squashfs", "S").unwrap(), None);
        let dup = parse_checksums(&format!("{D1}  a\n{D1}  a\n")).unwrap();
        assert_eq!(find_digest(&dup, "a", "S").unwrap(), Some(d(D1)));
        let clash = parse_checksums(&format!("{D1}  a\n{D2}  ./a\n")).unwrap();
        let err = find_digest(&clash, "a", "S").unwrap_err();
        assert!(err.contains(D1) && err.contains(D2), "{err}");
    }

    #[test]
    fn sidecar_forms() {
        assert_eq!(
            parse_sidecar(&format!("{D1}\n"), "x", "x.sha256").unwrap(),
            d(D1)
        );
        assert_eq!(
            parse_sidecar(&format!("{D2}  x\n"), "x", "x.sha256").unwrap(),
            d(D2)
        );
        let err = parse_sidecar(&format!("{D2}  y\n"), "x", "x.sha256").unwrap_err();
        assert!(
            err.contains("does not list x") && err.contains("y"),
            "{err}"
        );
        assert!(parse_sidecar("garbage", "x", "x.sha256").is_err());
    }

    #[test]
    fn digest_mismatch_is_reported_with_both_values() {
        let exp = Expected {
            sha256: Some((d(D2), "System/a.sha256".into())),
            signature: None,
            note: None,
        };
        let mut g = exp.digester().unwrap();
        g.update(b"");
        let err = g.finish("System/a").unwrap_err();
        assert!(err.contains(D1) && err.contains(D2), "{err}");
        let mut g = exp.digester().unwrap();
        g.update(b"fo");
        g.update(b"o");
        let ok = g.finish("System/a").unwrap();
        assert_eq!(ok.sha256.as_deref(), Some(D2), "sha256(foo)");
        let mut g = exp.digester().unwrap();
        g.update_zeros(3);
        assert!(g.finish("System/a").is_err());
    }

    #[test]
    fn policy_table() {
        use Mode::*;
        let ev = |checksum, signature| Evidence {
            checksum,
            signature,
        };
        let ok = |checksum, signature| {
            Ok(Checks {
                checksum,
                signature,
            })
        };
        // (mode, keys, checksum, signature) -> checks or refusal
        type Row = (Mode, bool, bool, bool, Result<Checks, ()>);
        let table: &[Row] = &[
            (Auto, false, false, false, ok(false, false)),
            (Auto, false, true, false, ok(true, false)),
            (Auto, false, true, true, ok(true, false)),
            (Auto, false, false, true, ok(false, false)),
            (Required, false, true, false, ok(true, false)),
            (Required, false, false, false, Err(())),
            (Required, false, false, true, Err(())),
            (Skip, false, true, true, ok(false, false)),
            (Skip, false, false, false, ok(false, false)),
            (Auto, true, false, false, Err(())),
            (Auto, true, true, false, Err(())),
            (Skip, true, true, false, Err(())),
            (Required, true, true, false, Err(())),
            (Auto, true, false, true, ok(false, true)),
            (Auto, true, true, true, ok(true, true)),
            (Required, true, false, true, ok(false, true)),
            (Skip, true, true, true, ok(false, true)),
        ];
        for (mode, keys, c, s, want) in table {
            let got = policy(*mode, *keys, ev(*c, *s), "System/a");
            assert_eq!(
                got.clone().map_err(|_| ()),
                *want,
                "{mode:?} keys={keys} c={c} s={s}: {got:?}"
            );
        }
        let unsigned = policy(Auto, true, ev(true, false), "System/a").unwrap_err();
        assert!(unsigned.contains("not signed"), "{unsigned}");
        let none = policy(Required, false, ev(false, false), "System/a").unwrap_err();
        assert!(none.contains("overboot.verify=1"), "{none}");
    }

    #[test]
    fn base64_and_key_ids() {
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert!(base64_decode("Zm9v!").is_none());
        // A public key: "Ed", id 01..08, 32 key bytes.
        let mut bin = b"Ed".to_vec();
        bin.extend(1u8..=8);
        bin.extend([7u8; 32]);
        let b64 = encode(&bin);
        let k = parse_public_key(&format!("untrusted comment: t\n{b64}\n"), "k.pub").unwrap();
        assert_eq!(k.id.to_string(), "807060504030201");
        let bare = parse_public_key(&b64, "k.pub").unwrap();
        assert_eq!(bare.id, k.id);
        let err = parse_public_key("untrusted comment: t\nAAAA\n", "k.pub")
            .err()
            .unwrap();
        assert!(err.contains("k.pub"), "{err}");
    }

    fn encode(bin: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bin.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        while s.len() % 4 != 0 {
            s.push('=');
        }
        s
    }

    #[test]
    fn trusted_comment_binds_the_name() {
        let default = "timestamp:1796269621\tfile:a.squashfs\thashed";
        assert_eq!(
            parse_trusted_comment(default),
            SignedClaims {
                file: Some("a.squashfs"),
                version: None
            }
        );
        let sig = "S/a.minisig";
        assert!(check_signed_claims(default, "a.squashfs", None, sig).is_ok());
        let renamed = check_signed_claims(default, "b.squashfs", None, sig).unwrap_err();
        assert!(
            renamed.contains("'a.squashfs', not b.squashfs") && renamed.contains(sig),
            "{renamed}"
        );
        let custom = check_signed_claims("my release", "a.squashfs", None, sig).unwrap_err();
        assert!(custom.contains("no 'file:NAME'"), "{custom}");
        let hostile = check_signed_claims("file:x\n\u{1b}[2J", "a", None, sig).unwrap_err();
        assert!(
            !hostile.contains('\n') && !hostile.contains('\u{1b}'),
            "{hostile}"
        );
    }

    #[test]
    fn minimum_version() {
        let sig = "S/a.minisig";
        let signed = |v: &str| format!("file:a.squashfs version:{v}");
        assert!(check_signed_claims(&signed("2025.10"), "a.squashfs", Some("2025.9"), sig).is_ok());
        assert!(check_signed_claims(&signed("2025.9"), "a.squashfs", Some("2025.9"), sig).is_ok());
        let old = check_signed_claims(&signed("2025.1"), "a.squashfs", Some("2025.9"), sig);
        assert!(old.unwrap_err().contains("older than the minimum 2025.9"));
        let none = check_signed_claims("file:a.squashfs", "a.squashfs", Some("1"), sig);
        assert!(none.unwrap_err().contains("no version"));
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("2025.10", "2025.9", Greater),
            ("1.2", "1.2", Equal),
            ("1.2", "1.2.1", Less),
            ("2.1", "2.rc1", Greater),
            ("2.0-rc1", "2.0-rc2", Less),
            ("10", "9", Greater),
            ("99999999999999999999999", "1", Greater),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn key_min_version_option() {
        let mut bin = b"Ed".to_vec();
        bin.extend(1u8..=8);
        bin.extend([7u8; 32]);
        let key = format!("untrusted comment: t\n{}\n", encode(&bin));
        let k = parse_public_key(&format!("{key}min-version: 2025.2\n"), "k.pub").unwrap();
        assert_eq!(k.min_version.as_deref(), Some("2025.2"));
        let err = parse_public_key(&format!("{key}min-verison: 2025.2\n"), "k.pub")
            .err()
            .unwrap();
        assert!(err.contains("unknown option"), "{err}");
        let mut store = TrustStore {
            keys: vec![k.clone()],
            ..Default::default()
        };
        assert_eq!(store.min_version_for(&k), Some("2025.2"));
        store.min_version = Some("2026.1".into());
        assert_eq!(store.min_version_for(&k), Some("2026.1"), "the higher");
        store.min_version = Some("2024".into());
        assert_eq!(store.min_version_for(&k), Some("2025.2"), "the higher");
    }

    #[test]
    fn prepare_reads_sidecars_and_sums() {
        let files = |pairs: Vec<(String, String)>| {
            move |p: &str| -> Result<Option<String>, String> {
                Ok(pairs.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone()))
            }
        };
        let none = TrustStore::default();
        let read = files(vec![(
            "System/SHA256SUMS".into(),
            format!("{D1}  other\n{D2}  a.squashfs\n"),
        )]);
        let e = prepare("System/a.squashfs", Mode::Auto, &none, &read).unwrap();
        assert_eq!(e.sha256.as_ref().unwrap().0, d(D2));
        assert_eq!(e.sha256.as_ref().unwrap().1, "System/SHA256SUMS");
        let e = prepare("System/b.squashfs", Mode::Auto, &none, &read).unwrap();
        assert!(!e.anything() && e.note.is_some());
        assert!(prepare("System/b.squashfs", Mode::Required, &none, &read).is_err());
        let e = prepare("System/a.squashfs", Mode::Skip, &none, &read).unwrap();
        assert!(!e.anything());
        // The sidecar wins over the list.
        let read = files(vec![
            (
                "System/a.squashfs.sha256".into(),
                format!("{D1}  a.squashfs\n"),
            ),
            ("System/SHA256SUMS".into(), format!("{D2}  a.squashfs\n")),
        ]);
        let e = prepare("System/a.squashfs", Mode::Auto, &none, &read).unwrap();
        assert_eq!(e.sha256.as_ref().unwrap().0, d(D1));
        // A signature without keys is noted, not checked.
        let read = files(vec![("System/a.squashfs.minisig".into(), "x".into())]);
        let e = prepare("System/a.squashfs", Mode::Auto, &none, &read).unwrap();
        assert!(e.signature.is_none());
        assert!(e.note.unwrap().contains("no trusted key"));
        // Keys that failed to load still enforce signatures.
        let broken = TrustStore {
            keys: vec![],
            problems: vec!["k.pub: bad".into()],
            ..Default::default()
        };
        let err = prepare("System/a.squashfs", Mode::Skip, &broken, &files(vec![]))
            .err()
            .unwrap();
        assert!(err.contains("not signed"), "{err}");
    }
}
