//! `overboot inspect FILE`: what an initramfs holds (as `lsinitramfs -l`): every
//! entry with its type, permissions and size, then what it means for a boot: the
//! kernel modules and for which kernel, the keys it trusts, its `/init`.

use overboot::initramfs::keys::{self, Member};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// `inspect --json`.
#[derive(Serialize)]
struct Inspection {
    file: String,
    entries: Vec<Entry>,
    /// Kernel modules (`lib/modules/VER/...ko*`) per kernel version.
    modules: BTreeMap<String, usize>,
    /// `etc/overboot/trusted-keys/*.pub`: images must carry a good signature.
    trusted_keys: Vec<String>,
    /// The size of `/init`, when it is a file.
    init_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Entry {
    path: String,
    /// `file`, `dir`, `link`, `char`, `block`, `fifo`, `socket`.
    kind: &'static str,
    /// Permission bits, octal.
    mode: String,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

pub(super) fn run(file: &Path, json: bool) -> i32 {
    let members = match keys::members(file) {
        Ok(m) => m,
        Err(e) => return super::fail(format!("inspect: {e}")),
    };
    let entries: Vec<Entry> = members.iter().map(entry).collect();
    let mut modules: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "file") {
        if let Some(rest) = e.path.strip_prefix("lib/modules/")
            && let Some((kver, _)) = rest.split_once('/')
            && (e.path.contains(".ko"))
        {
            *modules.entry(kver.to_string()).or_default() += 1;
        }
    }
    let keys_dir = format!("{}/", overboot::verify::TRUST_DIR.trim_start_matches('/'));
    let inspection = Inspection {
        file: file.display().to_string(),
        trusted_keys: entries
            .iter()
            .filter(|e| e.path.starts_with(&keys_dir) && e.path.ends_with(".pub"))
            .map(|e| e.path.clone())
            .collect(),
        init_bytes: entries
            .iter()
            .find(|e| e.path == "init" && e.kind == "file")
            .map(|e| e.bytes),
        modules,
        entries,
    };
    if json {
        return super::print_json(&inspection);
    }
    print!("{}", render(&inspection));
    0
}

fn entry(m: &Member) -> Entry {
    let kind = match m.mode & 0o170000 {
        0o100000 => "file",
        0o040000 => "dir",
        0o120000 => "link",
        0o020000 => "char",
        0o060000 => "block",
        0o010000 => "fifo",
        _ => "socket",
    };
    Entry {
        path: m.name.trim_start_matches("./").to_string(),
        kind,
        mode: format!("{:04o}", m.mode & 0o7777),
        bytes: m.data.len() as u64,
        target: (kind == "link").then(|| String::from_utf8_lossy(&m.data).into_owned()),
    }
}

fn render(i: &Inspection) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for e in &i.entries {
        let link = e
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<6} {} {:>10} {}{link}",
            e.kind, e.mode, e.bytes, e.path
        );
    }
    let _ = writeln!(o, "\n{} entries", i.entries.len());
    match &i.init_bytes {
        Some(n) => {
            let _ = writeln!(o, "/init: {n} bytes");
        }
        None => {
            let _ = writeln!(o, "/init: none (not a bootable initramfs)");
        }
    }
    for (kver, n) in &i.modules {
        let _ = writeln!(o, "kernel modules: {n} for {kver}");
    }
    let _ = writeln!(
        o,
        "trusted keys: {}",
        if i.trusted_keys.is_empty() {
            "none (images are not required to be signed)".to_string()
        } else {
            i.trusted_keys.join(" ")
        }
    );
    o
}
