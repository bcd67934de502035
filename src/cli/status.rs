//! `overboot status`: what this boot did, from the state file.

use overboot::preview::describe_layer;
use overboot::state;
use std::path::Path;

pub(super) fn run(path: &Path, bootext: &Path, json: bool) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return super::fail(format!(
                "cannot read {}: {e} (was this system booted by overboot?)",
                path.display()
            ));
        }
    };
    let s: state::State = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            return super::fail(format!(
                "{} is not a state file this version understands: {e}",
                path.display()
            ));
        }
    };
    if json {
        // The state file as written, every field kept.
        return match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => super::print_json(&v),
            Err(e) => super::fail(format!("{}: {e}", path.display())),
        };
    }
    print!("{}", render_status(&s));
    if let Some(line) = overboot::update::record::status_line(bootext) {
        println!("{line}");
    }
    for line in overboot::verity::corrupted::status_lines(bootext) {
        println!("{line}");
    }
    0
}

/// The readable form of a state file.
fn render_status(s: &state::State) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "BootExt:   {} (found by {}{})",
        s.bootext.device.as_deref().unwrap_or(&s.bootext.path),
        s.bootext.found_by,
        s.bootext
            .fs_type
            .as_deref()
            .map(|f| format!(", {f}"))
            .unwrap_or_default()
    );
    match &s.booted {
        Some(b) => {
            let via = b
                .link
                .as_deref()
                .map(|l| format!(" via {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "Booted:    {} ({}{via}) on {}",
                b.image,
                b.choice,
                b.loop_device.as_deref().unwrap_or("?")
            );
        }
        None => {
            let _ = writeln!(o, "Booted:    nothing");
        }
    }
    let _ = writeln!(o, "Requested: {}", s.requested);
    if let Some(f) = &s.fallback {
        let _ = writeln!(o, "Fallback:  from {}: {}", f.from, f.reason);
    }
    if let Some(b) = &s.booted {
        for line in image_lines(b) {
            let _ = writeln!(o, "{line}");
        }
    }
    if let Some(upper) = s.mounts.iter().find(|m| m.origin == "overlay") {
        let _ = writeln!(o, "Overlay:   {}", upper.source.as_deref().unwrap_or("?"));
    }
    if let Some(t) = &s.trial {
        let _ = writeln!(o, "{}", trial_line(t, s.booted.as_ref()));
    }
    if !s.layers.is_empty() {
        let _ = writeln!(o, "\nOverlay/ layers, bottom first ({}):", s.layers.len());
        for (n, l) in s.layers.iter().enumerate() {
            let _ = writeln!(o, "  {}", describe_layer(n, l));
        }
    }
    if !s.units.is_empty() {
        let _ = writeln!(o, "\nUnits ({}):", s.units.len());
        for u in &s.units {
            let _ = writeln!(o, "  {} {} ({})", u.kind, u.path, u.source);
        }
    }
    let _ = writeln!(o, "\nMounts ({}):", s.mounts.len());
    for m in &s.mounts {
        let at = if m.resolved != m.target {
            format!("{} -> {}", m.target, m.resolved)
        } else {
            m.target.clone()
        };
        let _ = writeln!(
            o,
            "  {:<28} {:<9} {:<3} {}",
            at,
            m.kind,
            if m.read_only { "ro" } else { "rw" },
            m.origin
        );
        if let Some(v) = &m.verity {
            let _ = writeln!(o, "  {:<28} {}", "", overboot::verity::boot::describe(v));
        }
    }
    if !s.skipped.is_empty() {
        let _ = writeln!(o, "\nSkipped ({}):", s.skipped.len());
        for k in &s.skipped {
            let _ = writeln!(o, "  {}: {}", k.entry, k.reason);
        }
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(o, "\nWarnings:");
        for w in &s.warnings {
            let _ = writeln!(o, "  {w}");
        }
    }
    let _ = writeln!(o, "\nTimings:");
    for t in &s.timings {
        let _ = writeln!(o, "  {:<14} {:>9.1} ms", t.step, t.ms);
    }
    let _ = writeln!(o, "  {:<14} {:>9.1} ms", "total", s.total_ms);
    o
}

/// What the state file knows of the booted image: its verification and toram.
fn image_lines(b: &state::Booted) -> Vec<String> {
    let mut lines = vec![match &b.verified {
        Some(v) => format!("Verified:  {}", v.summary()),
        None => "Verified:  no (no checksum or signature was checked)".into(),
    }];
    if let Some(t) = &b.toram {
        lines.push(if t.done {
            format!(
                "Toram:     in RAM ({} bytes, {} allocated, {:.1} ms)",
                t.size, t.allocated, t.ms
            )
        } else {
            format!(
                "Toram:     no: {}",
                t.reason.as_deref().unwrap_or("not done")
            )
        });
    }
    lines
}

/// The Trial line: what this boot did with the trial, never advising `bless` when the
/// image that booted is not the one on trial (`bless` refuses then).
fn trial_line(t: &state::TrialState, booted: Option<&state::Booted>) -> String {
    let booted_name = booted.map(|b| b.image.strip_prefix("System/").unwrap_or(&b.image));
    let left = format!("{} of {} boots left", t.boots_left, t.tries);
    match t.outcome.as_str() {
        "trial" if booted_name != Some(t.image.as_str()) => format!(
            "Trial:     {} counted a boot ({left}) but did not come up: {} booted instead (see Fallback); `overboot rollback` ends the trial",
            t.image,
            booted_name.unwrap_or("nothing")
        ),
        "rolled-back" => format!("Trial:     warning: {} rolled-back: {}", t.image, t.detail),
        _ => format!(
            "Trial:     {} {} ({left}): {}",
            t.image, t.outcome, t.detail
        ),
    }
}
