//! `overboot check`: judge a BootExt tree before it goes onto a stick
//! ([`overboot::preview::check`]): whatever the boot would refuse is an error.

use super::plan::open_bootext;
use overboot::preview::{self, Preview};
use overboot::verify::TrustStore;
use serde::Serialize;
use std::path::Path;

pub(super) fn run(dir: &Path, trust: TrustStore, json: bool) -> i32 {
    let be = match open_bootext(dir) {
        Ok(be) => be,
        Err(code) => return code,
    };
    let mut report = preview::check(&be, trust);
    let code = if report.errors.is_empty() { 0 } else { 1 };
    if !json {
        print!("{}", report.render());
        return code;
    }
    let out = CheckReport {
        ok: report.errors.is_empty(),
        plan: report.plan.take(),
        errors: report.errors,
        warnings: report.warnings,
        fine: report.lines,
    };
    super::print_json(&out).max(code)
}

/// `check --json`.
#[derive(Serialize)]
struct CheckReport {
    /// No errors: the tree boots as planned.
    ok: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
    /// What was checked and found fine, one line each.
    fine: Vec<String>,
    /// The plan of a boot with an empty command line (as `plan --json`).
    plan: Option<Preview>,
}
