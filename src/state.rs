//! `/run/overboot/state.json`: the record of one boot (DESIGN section 6). `status`
//! reads it; nothing else needs the kernel log to know what happened.

use crate::plan::Skipped;
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const STATE_PATH: &str = "/run/overboot/state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootExtInfo {
    /// The directory (assemble) or device (boot) BootExt was taken from.
    pub path: String,
    /// `--bootext`, or the spec that matched (`LABEL=BootExt`), or `livecd marker`.
    pub found_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Booted {
    /// `active`, `recovery` or `named`.
    pub choice: String,
    /// The link followed (`System/active-system`), if any.
    pub link: Option<String>,
    /// The image file, relative to BootExt.
    pub image: String,
    #[serde(rename = "loop")]
    pub loop_device: Option<String>,
    /// What was verified before mounting (`overboot.verify`, trusted keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<crate::verify::Verification>,
    /// `overboot.toram`: whether the image runs from RAM, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toram: Option<Toram>,
    /// The image is sealed and runs from a dm-verity device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<crate::verity::boot::VerityRecord>,
}

/// The toram step of the booted image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Toram {
    /// The image runs from a copy in RAM.
    pub done: bool,
    /// Image size (bytes).
    pub size: u64,
    /// RAM the copy takes (holes of a sparse image excluded).
    #[serde(default)]
    pub allocated: u64,
    #[serde(default)]
    pub ms: f64,
    /// Why the image runs from BootExt instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fallback {
    pub from: String,
    pub reason: String,
}

/// What this boot did with the trial update (see `crate::trial`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrialState {
    /// The image on trial (a file name in `System/`).
    pub image: String,
    pub tries: u32,
    /// Boots left after this one.
    pub boots_left: u32,
    /// `trial` (this boot is a counted trial boot), `rolled-back` (the trial ran out
    /// or was rolled back; the previous image is active), `not-counted` (BootExt could
    /// not be written: the previous image booted, the trial is still pending),
    /// `stale` (a trial file for an image that is not active: ignored), `unreadable`.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub choice: String,
    pub link: Option<String>,
    pub image: Option<String>,
    pub ok: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    /// `system`, `overlay`, `bootext`, `DIRS/DIR_…` or `overboot.toml [[mount]] #N`.
    pub origin: String,
    pub source: Option<String>,
    /// Where it was asked to go, inside the new root.
    pub target: String,
    /// Where it went after symlinks in the image were followed (inside the new root).
    pub resolved: String,
    pub kind: String,
    pub read_only: bool,
    /// Mounted from a dm-verity device (a sealed image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<crate::verity::boot::VerityRecord>,
}

/// The network step of a netboot (`overboot.fetch=`): what was tried and how it went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Network {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `ADDR/PREFIX`, from the lease or `overboot.ip=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The DHCP lease, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Image bytes fetched, and in how long.
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub ms: f64,
    /// How many times the transfer was resumed after a dropped connection.
    #[serde(default)]
    pub resumed: u32,
    /// Why the image did not come from the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A DHCP lease as recorded (addresses as text).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lease {
    pub server: Option<String>,
    pub router: Option<String>,
    pub dns: Vec<String>,
    pub seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub step: String,
    pub ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// `assemble` or `boot`.
    pub mode: String,
    pub bootext: BootExtInfo,
    pub root: String,
    pub requested: String,
    pub booted: Option<Booted>,
    pub fallback: Option<Fallback>,
    /// The trial update in progress or last ended (`System/trial`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<TrialState>,
    /// The network step, when the image was asked for over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    pub attempts: Vec<Attempt>,
    pub mounts: Vec<MountRecord>,
    /// `Overlay/` layers stacked, bottom first (the last is on top).
    #[serde(default)]
    pub layers: Vec<crate::layers::Layer>,
    /// `Units/` files and links installed for systemd.
    #[serde(default)]
    pub units: Vec<crate::units::UnitRecord>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub timings: Vec<Timing>,
    pub total_ms: f64,
}

/// Per-step stopwatch.
pub struct Clock {
    start: Instant,
    last: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        let now = Instant::now();
        Clock {
            start: now,
            last: now,
        }
    }
}

impl Clock {
    /// Record the time since the previous lap as `step`.
    pub fn lap(&mut self, state: &mut State, step: &str) {
        let now = Instant::now();
        state.timings.push(Timing {
            step: step.to_string(),
            ms: ms(now - self.last),
        });
        state.total_ms = ms(now - self.start);
        self.last = now;
    }
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Write the state file atomically (temp file + rename) in a directory on tmpfs.
pub fn write(state: &State, path: &std::path::Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename onto {}: {e}", path.display()))
}
