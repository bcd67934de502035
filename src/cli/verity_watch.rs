//! `overboot verity-watch`: the sealed images of this boot, from the state file,
//! watched by `overboot::verity::watch`.

use overboot::state::State;
use overboot::verity::watch::{self, Watched};
use std::path::Path;

pub(super) fn run(state: &Path, bootext: &Path) -> i32 {
    let s: State = match std::fs::read_to_string(state)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            return super::fail(format!(
                "verity-watch: cannot read the state file {}: {e} (was this system booted by overboot?)",
                state.display()
            ));
        }
    };
    watch::run(&sealed(&s), bootext)
}

/// Every dm-verity device of the boot: mounts (system image, DIRS, Apps) and layers.
fn sealed(s: &State) -> Vec<Watched> {
    let records = s
        .mounts
        .iter()
        .filter_map(|m| m.verity.as_ref())
        .chain(s.layers.iter().filter_map(|l| l.verity.as_ref()))
        .chain(s.booted.iter().filter_map(|b| b.verity.as_ref()));
    let mut watched: Vec<Watched> = Vec::new();
    for w in records.filter_map(Watched::from_record) {
        if !watched.iter().any(|x| x.devname == w.devname) {
            watched.push(w);
        }
    }
    watched
}
