//! `overboot images`: the system images on BootExt right now, as `rauc status` shows
//! slots: which is active, previous, recovery and on trial (boots left), and for each
//! its size, compression and whether the boot would take it with the keys at hand
//! ([`overboot::preview::would_boot`]: superblock, checksum, signature, readable tree).

use super::plan::open_bootext;
use overboot::names::IMAGE_EXTENSIONS;
use overboot::preview;
use overboot::sys::confined::Confined;
use overboot::trial::{Disk, Outcome, SYSTEM_DIR, Slot};
use overboot::verify::TrustStore;
use serde::Serialize;
use std::path::Path;

/// `images --json`.
#[derive(Serialize)]
struct Images {
    bootext: String,
    images: Vec<Image>,
}

#[derive(Serialize)]
struct Image {
    /// The file name in `System/`.
    name: String,
    /// `active`, `previous`, `recovery`, `trial`: the links and the trial naming it.
    roles: Vec<String>,
    /// Boots left of a pending trial of this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    boots_left: Option<u32>,
    bytes: u64,
    /// The squashfs compression, or `None` when the superblock cannot be read.
    compression: Option<String>,
    /// The boot would take it (verification included).
    boots: bool,
    /// What verification found (`boots`), or why the boot would refuse it.
    verdict: String,
}

pub(super) fn run(bootext: &Path, trust: TrustStore, json: bool) -> i32 {
    let be = match open_bootext(bootext) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let opts = preview::Options {
        cmdline: String::new(),
        trust,
    };
    let mut names: Vec<String> = be
        .list(SYSTEM_DIR)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.starts_with('.') && IMAGE_EXTENSIONS.iter().any(|e| n.ends_with(e)))
        .collect();
    names.sort();
    let disk = overboot::trial_boot::read_disk(&be);
    let recovery = be.readlink(overboot::select::RECOVERY_LINK).ok();
    let images: Vec<Image> = names
        .iter()
        .map(|n| image(&be, n, &disk, recovery.as_deref(), &opts))
        .collect();
    if json {
        return super::print_json(&Images {
            bootext: be.path.display().to_string(),
            images,
        });
    }
    println!("BootExt: {}", be.path.display());
    if images.is_empty() {
        println!("  no images in {SYSTEM_DIR}/");
    }
    for i in &images {
        let mut roles = i.roles.join(", ");
        if let Some(n) = i.boots_left {
            roles += &format!(" ({n} boots left)");
        }
        println!(
            "{SYSTEM_DIR}/{}{}",
            i.name,
            if roles.is_empty() {
                String::new()
            } else {
                format!(" [{roles}]")
            }
        );
        println!(
            "    {} bytes, {}",
            i.bytes,
            i.compression.as_deref().unwrap_or("not a squashfs image")
        );
        if i.boots {
            println!(
                "    boots: {}",
                nonempty(&i.verdict, "not verified (no checksum or signature)")
            );
        } else {
            println!("    refused by the boot: {}", i.verdict);
        }
    }
    0
}

fn nonempty<'a>(s: &'a str, otherwise: &'a str) -> &'a str {
    if s.is_empty() { otherwise } else { s }
}

/// One image: what names it, its size and compression, and the boot's verdict.
fn image(
    be: &Confined,
    name: &str,
    disk: &Disk,
    recovery: Option<&str>,
    opts: &preview::Options,
) -> Image {
    let rel = format!("{SYSTEM_DIR}/{name}");
    let mut roles: Vec<String> = [
        ("active", disk.active.as_deref()),
        ("previous", disk.previous.as_deref()),
        ("recovery", recovery),
    ]
    .into_iter()
    .filter(|(_, target)| *target == Some(name))
    .map(|(role, _)| role.to_string())
    .collect();
    let mut boots_left = None;
    if let Slot::Present(t) = &disk.trial
        && t.image == name
    {
        match t.outcome {
            Outcome::Pending => {
                roles.push("trial".into());
                boots_left = Some(t.boots_left);
            }
            Outcome::RolledBack => roles.push("rolled back".into()),
        }
    }
    let (bytes, compression) = match be.open_file(&rel) {
        Ok(file) => {
            let size = rustix::fs::fstat(&file)
                .map(|s| s.st_size as u64)
                .unwrap_or(0);
            let sb = overboot::select::read_superblock(&file, size).ok();
            (size, sb.map(|s| s.compression.to_string()))
        }
        Err(_) => (0, None),
    };
    let (boots, verdict) = match preview::would_boot(be, name, opts) {
        Ok(summary) => (true, summary),
        Err(e) => (false, e),
    };
    Image {
        name: name.to_string(),
        roles,
        boots_left,
        bytes,
        compression,
        boots,
        verdict,
    }
}
