//! `System/last-update.json`: what the last `overboot update` installed, written
//! atomically beside the images and shown by `overboot status`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Its name in `System/`.
pub const FILE: &str = "last-update.json";
/// Read at most this much of it (it is a few hundred bytes).
const MAX_BYTES: u64 = 64 * 1024;

/// The result of one `overboot update` (also its `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `installed`, `up-to-date` or `rolled-back-before`.
    pub outcome: String,
    pub image: String,
    pub url: String,
    /// Seconds since the epoch.
    pub when: u64,
    /// The image's size; downloaded and copied from local images.
    pub size: u64,
    pub bytes_fetched: u64,
    pub bytes_reused: u64,
    /// Bytes already in `.NAME.partial` from an interrupted run.
    pub bytes_resumed: u64,
    /// HTTP requests for image bytes (Range requests).
    pub range_requests: u32,
    /// The boots the new image has to be blessed in (`set-active --tries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries: Option<u32>,
    /// Images deleted to keep `--keep K`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Record {
    /// One line for people.
    pub fn summary(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        match self.outcome.as_str() {
            "installed" => format!(
                "installed {} ({:.1} MB): fetched {:.2} MB ({:.1}%) in {} range requests, reused {:.1} MB from local images{}",
                self.image,
                mb(self.size),
                mb(self.bytes_fetched),
                if self.size == 0 {
                    0.0
                } else {
                    100.0 * self.bytes_fetched as f64 / self.size as f64
                },
                self.range_requests,
                mb(self.bytes_reused),
                if self.bytes_resumed > 0 {
                    format!(", resumed {:.1} MB", mb(self.bytes_resumed))
                } else {
                    String::new()
                }
            ),
            _ => format!("{}: {}", self.image, self.outcome),
        }
    }
}

/// The `overboot status` line for the record on the BootExt at `bootext`, if any.
pub fn status_line(bootext: &Path) -> Option<String> {
    let be = crate::sys::confined::Confined::open(bootext).ok()?;
    let text = be
        .read_small(&format!("{}/{FILE}", crate::trial::SYSTEM_DIR), MAX_BYTES)
        .ok()??;
    let r: Record = serde_json::from_str(&text).ok()?;
    Some(format!(
        "Last update: {} (at {}, from {})",
        r.summary(),
        crate::calendar::utc_text(r.when),
        r.url
    ))
}
