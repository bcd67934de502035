//! `overboot plan`: the ordered mount plan for a BootExt tree, computed as the boot
//! would ([`overboot::preview`]), mounting nothing.

use overboot::preview;
use overboot::sys::confined::Confined;
use overboot::verify::TrustStore;
use std::path::Path;

pub(super) fn run(bootext: &Path, cmdline: Option<&str>, trust: TrustStore, json: bool) -> i32 {
    let be = match open_bootext(bootext) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let opts = preview::Options {
        cmdline: overboot::command::cmdline_or_proc(cmdline),
        trust,
    };
    let out = preview::compute(&be, &opts);
    if json {
        if super::print_json(&out) != 0 {
            return 1;
        }
    } else {
        print!("{}", preview::render_plan(&out, &be));
    }
    if out.system.is_none() {
        for a in &out.attempts {
            eprintln!(
                "overboot: {}: {}",
                a.choice,
                a.reason.as_deref().unwrap_or("?")
            );
        }
        return 1;
    }
    0
}

/// BootExt opened for confined lookups; the exit code of the failure otherwise.
pub(super) fn open_bootext(dir: &Path) -> Result<Confined, i32> {
    Confined::open(dir).map_err(|e| {
        super::fail(format!(
            "BootExt: {e} (give the mounted BootExt with --bootext DIR)"
        ))
    })
}
