//! `BootExt/Units/`: systemd units made visible to the booted systemd (DESIGN
//! section 1). They are copied (never executed, never linked to BootExt) into
//! `<run dir>/systemd/system/`, the runtime unit directory systemd reads at start;
//! at boot `/run` moves into the new root at hand-off, so they are there when
//! systemd starts and `*.wants/` links make them start at boot.
//!
//! Accepted in `Units/`:
//! - unit files `NAME.service`, `.socket`, `.target`, `.mount`, `.automount`,
//!   `.swap`, `.path`, `.timer`, `.slice` (templates `x@.service` too): regular files
//!   (links followed inside BootExt only), at most [`MAX_UNIT_BYTES`] each;
//! - drop-in directories `UNIT.d/` holding `*.conf` files;
//! - `UNIT.wants/` and `UNIT.requires/` directories of symlinks, each named after a
//!   unit and pointing at that unit (or at its template) as `NAME`, `../NAME` or an
//!   absolute path in a systemd unit directory. The unit must be in `Units/` (the
//!   link is written as `../NAME`) or in the image's unit directories (written as the
//!   absolute path found there).
//!
//! Anything else is skipped with its reason, never fatal. At most [`MAX_TOTAL_BYTES`]
//! and [`MAX_ENTRIES`] entries are copied.

use crate::names::{NodeKind, Tree};
use crate::plan::Skipped;
use crate::sys::confined::{Confined, Lookup};
use crate::sys::errno_text;
use rustix::fs::FileType;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

pub const UNITS_DIR: &str = "Units";
pub const MAX_UNIT_BYTES: u64 = 64 * 1024;
pub const MAX_TOTAL_BYTES: u64 = 1 << 20;
pub const MAX_ENTRIES: usize = 512;
/// Unit types that can be defined by a file.
pub const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "target",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
];
/// Where a unit named in a `*.wants/` link may be found in the image, in systemd's
/// order of precedence.
pub const IMAGE_UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];
/// Dependency directories accepted.
pub const DEP_SUFFIXES: &[&str] = &[".wants", ".requires"];

/// Why `name` is not a unit name systemd would load from a file, or `None`.
pub fn unit_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 255 {
        return Some(format!("'{name}' is not 1 to 255 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)))
    {
        return Some(format!(
            "'{name}' contains '{c}', not allowed in a unit name"
        ));
    }
    // `..service` would be written as a hidden file next to `..` (issue 10 item 9).
    if name.starts_with('.') {
        return Some(format!("'{name}' starts with '.', which no unit name does"));
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return Some(format!("'{name}' has no unit suffix (.service, .timer, …)"));
    };
    if !UNIT_SUFFIXES.contains(&suffix) {
        return Some(format!(
            "'{name}': .{suffix} is not a unit type overboot installs ({})",
            UNIT_SUFFIXES.join(", ")
        ));
    }
    let prefix = stem.split('@').next().unwrap_or("");
    if prefix.is_empty() || stem.matches('@').count() > 1 {
        return Some(format!("'{name}' is not a valid unit name"));
    }
    None
}

/// `x@i.service` → `x@.service`; `None` for names that are not instances.
pub fn template_of(name: &str) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let (prefix, instance) = stem.split_once('@')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{suffix}"))
}

/// What a top-level `Units/` entry is, by its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopEntry {
    Unit,
    /// `UNIT.d/`
    DropIn,
    /// `UNIT.wants/`, `UNIT.requires/`
    Deps,
}

/// Classify a top-level entry: `is_dir` after links are followed inside BootExt.
pub fn classify_top(name: &str, is_dir: bool) -> Result<TopEntry, String> {
    if is_dir {
        if let Some(unit) = name.strip_suffix(".d") {
            return match unit_name_problem(unit) {
                None => Ok(TopEntry::DropIn),
                Some(p) => Err(format!("a drop-in directory for no unit: {p}")),
            };
        }
        for dep in DEP_SUFFIXES {
            if let Some(unit) = name.strip_suffix(dep) {
                return match unit_name_problem(unit) {
                    None => Ok(TopEntry::Deps),
                    Some(p) => Err(format!("a {dep} directory for no unit: {p}")),
                };
            }
        }
        return Err("a directory that is not UNIT.wants/, UNIT.requires/ or UNIT.d/".into());
    }
    match unit_name_problem(name) {
        None => Ok(TopEntry::Unit),
        Some(p) => Err(p),
    }
}

/// The unit a dependency link names, from its text: `NAME`, `../NAME` or
/// `/…/systemd/system/NAME`, and `NAME` must be the entry's name or its template.
pub fn link_unit(entry: &str, text: &str) -> Result<String, String> {
    if let Some(p) = unit_name_problem(entry) {
        return Err(p);
    }
    let target = match text.rsplit_once('/') {
        None => text,
        Some(("..", n)) => n,
        Some((dir, n))
            if dir.strip_prefix('/').is_some_and(|d| {
                IMAGE_UNIT_DIRS
                    .iter()
                    .chain(&["run/systemd/system"])
                    .any(|u| d == *u)
            }) =>
        {
            n
        }
        Some(_) => {
            return Err(format!(
                "links to '{text}', outside the unit directories; write it as ../{entry}"
            ));
        }
    };
    if let Some(p) = unit_name_problem(target) {
        return Err(format!("links to '{text}': {p}"));
    }
    if target != entry && template_of(entry).as_deref() != Some(target) {
        return Err(format!(
            "links to {target}, not to {entry} (or its template); a dependency link must name the unit it pulls in"
        ));
    }
    Ok(target.to_string())
}

/// Where the written link points: `../NAME` for a unit from `Units/`, else the
/// path of the unit in the image, else an error.
pub fn link_target(unit: &str, in_units: bool, image: &dyn Tree) -> Result<String, String> {
    if in_units {
        return Ok(format!("../{unit}"));
    }
    for dir in IMAGE_UNIT_DIRS {
        let path: Vec<String> = dir.split('/').chain([unit]).map(String::from).collect();
        if image.kind(&path) == Some(NodeKind::File) {
            return Ok(format!("/{dir}/{unit}"));
        }
    }
    Err(format!(
        "names {unit}, which is neither in {UNITS_DIR}/ nor in the image ({})",
        IMAGE_UNIT_DIRS
            .iter()
            .map(|d| format!("/{d}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A file to copy: `path` relative to `systemd/system/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitFile {
    pub path: String,
    pub bytes: u64,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// A dependency link to write: `path` (`multi-user.target.wants/x.service`) → `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitLink {
    pub path: String,
    pub target: String,
}

/// What `Units/` holds, validated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitsPlan {
    pub files: Vec<UnitFile>,
    pub links: Vec<UnitLink>,
    pub skipped: Vec<Skipped>,
}

/// One installed unit, link or drop-in, for state.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// Where it was written (`<run dir>/systemd/system/…`).
    pub path: String,
    /// `file` or `link`.
    pub kind: String,
    /// A link's target; a file's origin on BootExt.
    pub source: String,
}

/// Read a regular file of at most `max` bytes (links followed inside BootExt).
fn read_file(be: &Confined, rel: &str, max: u64) -> Result<Vec<u8>, String> {
    let fd = be.open_file(rel).map_err(|e| match e {
        Lookup::Errno(Errno::XDEV) => {
            "leads outside BootExt (masking units from Units/ is not supported)".into()
        }
        e => e.to_string(),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(errno_text)?;
    if st.st_size as u64 > max {
        return Err(format!(
            "{} bytes, more than the {max} a unit file may have",
            st.st_size
        ));
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!("more than {max} bytes"));
    }
    Ok(buf)
}

fn is_dir(be: &Confined, rel: &str) -> Result<bool, String> {
    let fd = be.open_path(rel).map_err(|e| e.to_string())?;
    let st = rustix::fs::fstat(&fd).map_err(errno_text)?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Read and validate `Units/`. `image` is where units named by links but not in
/// `Units/` are looked for (the new root, or the image read offline).
pub fn scan(be: &Confined, image: &dyn Tree) -> UnitsPlan {
    let mut plan = UnitsPlan::default();
    let names = match be.list(UNITS_DIR) {
        Ok(n) => n,
        Err(e) => {
            plan.skipped.push(Skipped {
                entry: UNITS_DIR.into(),
                reason: format!("cannot list: {}", errno_text(e)),
            });
            return plan;
        }
    };
    let mut total = 0u64;
    let mut count = 0usize;
    let mut deps = Vec::new();
    let mut take = |plan: &mut UnitsPlan, rel: &str, path: String| {
        if count >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries in {UNITS_DIR}/"));
        }
        let content = read_file(be, rel, MAX_UNIT_BYTES)?;
        let bytes = content.len() as u64;
        if total + bytes > MAX_TOTAL_BYTES {
            return Err(format!(
                "{UNITS_DIR}/ would exceed {MAX_TOTAL_BYTES} bytes in all"
            ));
        }
        total += bytes;
        count += 1;
        plan.files.push(UnitFile {
            path,
            bytes,
            content,
        });
        Ok(())
    };
    for name in names {
        let rel = format!("{UNITS_DIR}/{name}");
        let kind = is_dir(be, &rel).and_then(|d| classify_top(&name, d));
        match kind {
            Err(reason) => skip(&mut plan, rel, reason),
            Ok(TopEntry::Unit) => {
                if let Err(reason) = take(&mut plan, &rel, name.clone()) {
                    skip(&mut plan, rel, reason);
                }
            }
            Ok(TopEntry::DropIn) => match be.list(&rel) {
                Err(e) => skip(&mut plan, rel, format!("cannot list: {}", errno_text(e))),
                Ok(inner) => {
                    for conf in inner {
                        let crel = format!("{rel}/{conf}");
                        if !conf.ends_with(".conf") || conf.starts_with('.') {
                            skip(&mut plan, crel, "a drop-in must be a NAME.conf file".into());
                            continue;
                        }
                        if let Err(reason) = take(&mut plan, &crel, format!("{name}/{conf}")) {
                            skip(&mut plan, crel, reason);
                        }
                    }
                }
            },
            Ok(TopEntry::Deps) => deps.push((name, rel)),
        }
    }
    // Links last: they may name units from Units/.
    for (name, rel) in deps {
        let inner = match be.list(&rel) {
            Ok(i) => i,
            Err(e) => {
                skip(&mut plan, rel, format!("cannot list: {}", errno_text(e)));
                continue;
            }
        };
        for entry in inner {
            let erel = format!("{rel}/{entry}");
            let result = match be.lstat_type(&erel) {
                Ok(FileType::Symlink) => be.readlink(&erel).map_err(errno_text),
                Ok(_) => Err("not a symlink: a dependency entry links to a unit".into()),
                Err(e) => Err(errno_text(e)),
            }
            .and_then(|text| link_unit(&entry, &text))
            .and_then(|unit| {
                let in_units = plan.files.iter().any(|f| f.path == unit);
                link_target(&unit, in_units, image)
            });
            match result {
                Ok(target) if count < MAX_ENTRIES => {
                    count += 1;
                    plan.links.push(UnitLink {
                        path: format!("{name}/{entry}"),
                        target,
                    });
                }
                Ok(_) => skip(
                    &mut plan,
                    erel,
                    format!("more than {MAX_ENTRIES} entries in {UNITS_DIR}/"),
                ),
                Err(reason) => skip(&mut plan, erel, reason),
            }
        }
    }
    plan
}

fn skip(plan: &mut UnitsPlan, entry: String, reason: String) {
    plan.skipped.push(Skipped { entry, reason });
}

/// Write the plan under `<run_dir>/systemd/system/`. Files replace what is there
/// (written to a temporary name, then renamed); problems skip the entry.
pub fn install(plan: &UnitsPlan, run_dir: &Path) -> (Vec<UnitRecord>, Vec<Skipped>) {
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    if plan.files.is_empty() && plan.links.is_empty() {
        return (done, skipped);
    }
    let base = run_dir.join("systemd/system");
    let mkdir = |p: &Path| -> Result<(), String> {
        std::fs::create_dir_all(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
    };
    if let Err(e) = mkdir(&base) {
        skipped.push(Skipped {
            entry: UNITS_DIR.into(),
            reason: e,
        });
        return (done, skipped);
    }
    for f in &plan.files {
        let dst = base.join(&f.path);
        let result = dst.parent().map(mkdir).unwrap_or(Ok(())).and_then(|()| {
            let tmp = dst.with_extension("overboot-tmp");
            std::fs::write(&tmp, &f.content)
                .and_then(|()| std::fs::rename(&tmp, &dst))
                .map_err(|e| format!("cannot write {}: {e}", dst.display()))
        });
        match result {
            Ok(()) => done.push(UnitRecord {
                path: dst.display().to_string(),
                kind: "file".into(),
                source: format!("{UNITS_DIR}/{}", f.path),
            }),
            Err(reason) => skipped.push(Skipped {
                entry: format!("{UNITS_DIR}/{}", f.path),
                reason,
            }),
        }
    }
    for l in &plan.links {
        let dst = base.join(&l.path);
        let result = dst.parent().map(mkdir).unwrap_or(Ok(())).and_then(|()| {
            match std::fs::symlink_metadata(&dst) {
                Ok(m) if m.is_dir() => {
                    return Err(format!("{} is a directory", dst.display()));
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&dst);
                }
                Err(_) => {}
            }
            std::os::unix::fs::symlink(&l.target, &dst)
                .map_err(|e| format!("cannot link {}: {e}", dst.display()))
        });
        match result {
            Ok(()) => done.push(UnitRecord {
                path: dst.display().to_string(),
                kind: "link".into(),
                source: l.target.clone(),
            }),
            Err(reason) => skipped.push(Skipped {
                entry: format!("{UNITS_DIR}/{}", l.path),
                reason,
            }),
        }
    }
    (done, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{EmptyTree, Node};

    #[test]
    fn unit_names() {
        for ok in [
            "a.service",
            "getty@.service",
            "getty@tty1.service",
            "x-y_z.timer",
            "multi-user.target",
            "var-lib.mount",
            "a\\x2db.slice",
        ] {
            assert_eq!(unit_name_problem(ok), None, "{ok}");
        }
        let bad = [
            ("", "1 to 255"),
            ("README", "no unit suffix"),
            ("a.conf", "not a unit type"),
            ("a.device", "not a unit type"),
            ("a b.service", "contains ' '"),
            ("..service", "starts with '.'"),
            (".x.service", "starts with '.'"),
            ("@x.service", "not a valid"),
            ("a@b@c.service", "not a valid"),
            (".service", "starts with"),
            ("a/b.service", "contains '/'"),
        ];
        for (name, want) in bad {
            let p = unit_name_problem(name).unwrap();
            assert!(p.contains(want), "{name}: {p}");
        }
        assert!(unit_name_problem(&format!("{}.service", "a".repeat(250))).is_some());
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template_of("getty@.service"), None);
        assert_eq!(template_of("a.service"), None);
    }

    #[test]
    fn top_entries() {
        assert_eq!(classify_top("a.service", false), Ok(TopEntry::Unit));
        assert_eq!(classify_top("a.service.d", true), Ok(TopEntry::DropIn));
        assert_eq!(
            classify_top("multi-user.target.wants", true),
            Ok(TopEntry::Deps)
        );
        assert_eq!(classify_top("a.socket.requires", true), Ok(TopEntry::Deps));
        assert!(
            classify_top("a.service", true)
                .unwrap_err()
                .contains("not UNIT.wants")
        );
        assert!(
            classify_top("junk.wants", true)
                .unwrap_err()
                .contains("for no unit")
        );
        assert!(
            classify_top("run.sh", false)
                .unwrap_err()
                .contains("not a unit type")
        );
    }

    #[test]
    fn links() {
        let ok = [
            ("a.service", "../a.service"),
            ("a.service", "a.service"),
            ("a.service", "/etc/systemd/system/a.service"),
            ("a.service", "/lib/systemd/system/a.service"),
            ("a.service", "/usr/lib/systemd/system/a.service"),
            ("getty@tty2.service", "../getty@.service"),
        ];
        for (entry, text) in ok {
            assert!(link_unit(entry, text).is_ok(), "{entry} -> {text}");
        }
        assert_eq!(
            link_unit("g@t.service", "../g@.service").unwrap(),
            "g@.service"
        );
        let bad = [
            (
                "a.service",
                "../../../etc/a.service",
                "outside the unit directories",
            ),
            ("a.service", "/etc/passwd", "outside the unit directories"),
            ("a.service", "../b.service", "not to a.service"),
            ("a.service", "../evil", "no unit suffix"),
            ("notaunit", "../a.service", "no unit suffix"),
        ];
        for (entry, text, want) in bad {
            let e = link_unit(entry, text).unwrap_err();
            assert!(e.contains(want), "{entry} -> {text}: {e}");
        }
    }

    #[test]
    fn link_targets() {
        struct Img;
        impl Tree for Img {
            fn lstat(&self, p: &[String]) -> Option<Node> {
                let p = p.join("/");
                match p.as_str() {
                    "" | "usr" | "usr/lib" | "usr/lib/systemd" | "usr/lib/systemd/system" => {
                        Some(Node::Dir)
                    }
                    "lib" => Some(Node::Symlink("usr/lib".into())),
                    "usr/lib/systemd/system/ssh.service" => Some(Node::File),
                    _ => None,
                }
            }
        }
        assert_eq!(
            link_target("x.service", true, &EmptyTree).unwrap(),
            "../x.service"
        );
        assert_eq!(
            link_target("ssh.service", false, &Img).unwrap(),
            "/usr/lib/systemd/system/ssh.service"
        );
        let e = link_target("nope.service", false, &Img).unwrap_err();
        assert!(e.contains("neither in Units/"), "{e}");
    }
}
