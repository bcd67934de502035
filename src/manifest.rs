//! `BootExt/overboot.toml` (DESIGN section 6). Pure: text in, settings and explicit
//! mounts out. Problems are warnings: a broken manifest never stops a boot.
//!
//! ```toml
//! [defaults]              # the command line's keys without "overboot."
//! system = "recovery"
//! dirs = false
//! overlay = "tmpfs:size=25%"
//!
//! [[mount]]
//! source = "Data/app"     # relative to BootExt
//! target = "/opt/my_app"
//! kind = "bind"           # bind | image | tmpfs
//! read_only = false
//! size = "16M"            # tmpfs only
//!
//! [verify]
//! min-version = "2025.2"  # signed images must carry version: at least this
//! ```

use crate::cmdline::Settings;
use crate::names::TargetPath;

/// Where the manifest lives on BootExt.
pub const MANIFEST_PATH: &str = "overboot.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    Bind,
    Image,
    Tmpfs,
}

/// One `[[mount]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMount {
    /// Position in the file (1-based), to name it in messages.
    pub index: usize,
    /// Path relative to BootExt (`None` for tmpfs).
    pub source: Option<String>,
    pub target: TargetPath,
    pub kind: ManifestKind,
    pub read_only: bool,
    /// tmpfs `size=` value.
    pub size: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub settings: Settings,
    pub mounts: Vec<ManifestMount>,
    pub warnings: Vec<String>,
    /// `[verify] min-version`: signed images must say at least this `version:`.
    pub min_version: Option<String>,
    /// True when the file could not be parsed at all (check reports it as an error).
    pub syntax_error: bool,
}

const TABLES: &[&str] = &["defaults", "mount", "update", "verify"];
const MOUNT_KEYS: &[&str] = &["source", "target", "kind", "read_only", "size"];

/// One `[[mount]]` as written.
struct RawMount {
    source: Option<String>,
    target: String,
    kind: Option<String>,
    read_only: bool,
    size: Option<String>,
}

/// Line (1-based) of a byte offset, for messages.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

pub fn parse(text: &str) -> Manifest {
    let mut manifest = Manifest::default();
    let mut doc: toml::Table = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            let msg = e.message().trim().to_string();
            manifest.warnings.push(format!(
                "{MANIFEST_PATH}{at}: {msg}; the manifest is ignored and the defaults apply"
            ));
            manifest.syntax_error = true;
            return manifest;
        }
    };
    // Every table read on its own, so that every problem is found in one pass and a
    // bad part skips only itself. `[update]` is read by `overboot update`.
    let defaults = match doc.remove("defaults") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            manifest.warnings.push(format!(
                "{MANIFEST_PATH}: defaults is a {}, not a [defaults] table; ignored",
                other.type_str()
            ));
            toml::Table::new()
        }
    };
    let mounts = match doc.remove("mount") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(other) => {
            manifest.warnings.push(format!(
                "{MANIFEST_PATH}: mount is a {}, not [[mount]] tables; ignored",
                other.type_str()
            ));
            Vec::new()
        }
    };
    doc.remove("update");
    for (key, value) in &defaults {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
            toml::Value::Integer(i) => i.to_string(),
            other => {
                manifest.warnings.push(format!(
                    "{MANIFEST_PATH}: [defaults] {key} is a {}, not a string, number or boolean; ignored", other.type_str()
                ));
                continue;
            }
        };
        if key == "bootext" || key == "timeout" {
            manifest.warnings.push(format!(
                "{MANIFEST_PATH}: [defaults] {key} has no effect here: BootExt is found before its manifest is read; use overboot.{key}= on the kernel command line"
            ));
            continue;
        }
        if key == "init" {
            if text.starts_with('/') {
                manifest.settings.init = Some(text);
            } else {
                manifest.warnings.push(format!(
                    "{MANIFEST_PATH}: [defaults] init = '{text}' must be an absolute path; ignored"
                ));
            }
            continue;
        }
        if let Err(e) = manifest.settings.apply(key, Some(&text)) {
            manifest
                .warnings
                .push(format!("{MANIFEST_PATH}: [defaults] {key}: {e}"));
        }
    }
    manifest.min_version = read_verify(doc.remove("verify"), &mut manifest.warnings);
    for key in doc.keys() {
        manifest.warnings.push(format!(
            "{MANIFEST_PATH}: unknown table or key '{key}'{}; ignored",
            crate::suggest::did_you_mean(key, TABLES)
        ));
    }
    for (i, table) in mounts.into_iter().enumerate() {
        let index = i + 1;
        match read_mount(table).and_then(|raw| validate_mount(index, raw)) {
            Ok(m) => manifest.mounts.push(m),
            Err(e) => manifest.warnings.push(format!(
                "{MANIFEST_PATH}: [[mount]] #{index}: {e}; this mount is skipped"
            )),
        }
    }
    manifest
}

/// `[verify]`: `min-version`, the least `version:` a signed image may carry.
fn read_verify(value: Option<toml::Value>, warnings: &mut Vec<String>) -> Option<String> {
    let table = match value? {
        toml::Value::Table(t) => t,
        other => {
            warnings.push(format!(
                "{MANIFEST_PATH}: verify is a {}, not a [verify] table; ignored",
                other.type_str()
            ));
            return None;
        }
    };
    let mut min_version = None;
    for (key, value) in table {
        match (key.as_str(), value) {
            ("min-version", toml::Value::String(v)) => min_version = Some(v),
            ("min-version", other) => warnings.push(format!(
                "{MANIFEST_PATH}: [verify] min-version is a {}, not a string; ignored",
                other.type_str()
            )),
            (other, _) => warnings.push(format!(
                "{MANIFEST_PATH}: [verify] unknown key '{other}'{}; ignored",
                crate::suggest::did_you_mean(other, &["min-version"])
            )),
        }
    }
    min_version
}

/// One `[[mount]]` table: every unknown key named at once (a misspelt `read_only`
/// must not mount read-write quietly), then the known ones read.
fn read_mount(value: toml::Value) -> Result<RawMount, String> {
    let toml::Value::Table(table) = value else {
        return Err(format!("a {}, not a table", value.type_str()));
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !MOUNT_KEYS.contains(&k.as_str()))
        .map(|k| format!("'{k}'{}", crate::suggest::did_you_mean(k, MOUNT_KEYS)))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("unknown key {}", unknown.join(", ")));
    }
    let text = |key: &str| match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{key} is a {}, not a string", v.type_str())),
    };
    let read_only = match table.get("read_only") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(v) => {
            return Err(format!(
                "read_only is a {}, not true or false",
                v.type_str()
            ));
        }
    };
    Ok(RawMount {
        source: text("source")?,
        target: text("target")?.ok_or("target is missing")?,
        kind: text("kind")?,
        read_only,
        size: text("size")?,
    })
}

fn validate_mount(index: usize, raw: RawMount) -> Result<ManifestMount, String> {
    let target = TargetPath::parse_absolute(&raw.target).map_err(|e| format!("target {e}"))?;
    let kind = match raw.kind.as_deref() {
        None | Some("bind") => ManifestKind::Bind,
        Some("image") => ManifestKind::Image,
        Some("tmpfs") => ManifestKind::Tmpfs,
        Some(other) => {
            return Err(format!(
                "kind '{other}' is not bind, image or tmpfs{}",
                crate::suggest::did_you_mean(other, &["bind", "image", "tmpfs"])
            ));
        }
    };
    let source = match (kind, raw.source) {
        (ManifestKind::Tmpfs, None) => None,
        (ManifestKind::Tmpfs, Some(_)) => return Err("a tmpfs mount takes no source".into()),
        (_, None) => return Err("source is missing".into()),
        (_, Some(s)) => Some(validate_source(&s)?),
    };
    if raw.size.is_some() && kind != ManifestKind::Tmpfs {
        return Err("size applies to tmpfs mounts only".into());
    }
    if let Some(size) = &raw.size {
        // Checked as the command line's sizes are (no overflow, no zero); the
        // kernel is given the text, which says the same number.
        crate::cmdline::parse_size(size, "kmg")?;
    }
    Ok(ManifestMount {
        index,
        source,
        target,
        kind,
        read_only: raw.read_only || kind == ManifestKind::Image,
        size: raw.size,
    })
}

/// A source must stay inside BootExt: relative, no `..`, no empty components.
fn validate_source(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        return Err(format!("source '{s}' must be relative to BootExt"));
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "source '{s}' must be a plain path inside BootExt (no '..', '.' or '//')"
        ));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::{OverlaySize, SystemChoice};

    #[test]
    fn defaults_and_mounts() {
        let m = parse(
            r#"
[defaults]
system = "recovery"
dirs = false
overlay = "tmpfs:size=64M"
debug = true

[[mount]]
source = "Data/app/"
target = "/opt/my_app"

[[mount]]
source = "Images/tools.squashfs"
target = "/opt/tools"
kind = "image"

[[mount]]
target = "/var/cache"
kind = "tmpfs"
size = "16M"
"#,
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(m.settings.system, Some(SystemChoice::Recovery));
        assert_eq!(m.settings.dirs, Some(false));
        assert_eq!(m.settings.debug, Some(true));
        assert_eq!(m.settings.overlay, Some(OverlaySize::Bytes(64 << 20)));
        assert_eq!(m.mounts.len(), 3);
        assert_eq!(m.mounts[0].source.as_deref(), Some("Data/app"));
        assert_eq!(m.mounts[0].target.to_string(), "/opt/my_app");
        assert!(!m.mounts[0].read_only);
        assert_eq!(m.mounts[1].kind, ManifestKind::Image);
        assert!(m.mounts[1].read_only);
        assert_eq!(m.mounts[2].kind, ManifestKind::Tmpfs);
        assert_eq!(m.mounts[2].size.as_deref(), Some("16M"));
    }

    #[test]
    fn syntax_error_names_the_line_and_keeps_defaults() {
        let m = parse("[defaults]\nsystem = \"recovery\"\ndirs = \n");
        assert!(m.syntax_error);
        assert_eq!(m.settings, Settings::default());
        assert!(m.warnings[0].contains("line 3"), "{}", m.warnings[0]);
    }

    #[test]
    fn bad_entries_are_warned_and_skipped() {
        let table = [
            (
                "[defaults]\nfrobnicate = 1\n",
                "unknown parameter overboot.frobnicate",
            ),
            ("[defaults]\nbootext = \"LABEL=x\"\n", "has no effect here"),
            ("[defaults]\nsystem = [1]\n", "not a string"),
            ("[defaults]\ninit = \"sbin/init\"\n", "absolute path"),
            (
                "[[mount]]\nsource = \"../etc\"\ntarget = \"/x\"\n",
                "plain path inside BootExt",
            ),
            (
                "[[mount]]\nsource = \"/etc\"\ntarget = \"/x\"\n",
                "relative to BootExt",
            ),
            (
                "[[mount]]\nsource = \"a\"\ntarget = \"x\"\n",
                "not an absolute path",
            ),
            (
                "[[mount]]\nsource = \"a\"\ntarget = \"/x/../y\"\n",
                "'..' is not allowed",
            ),
            (
                "[[mount]]\nsource = \"a\"\ntarget = \"/\"\n",
                "new root itself",
            ),
            ("[[mount]]\ntarget = \"/x\"\n", "source is missing"),
            (
                "[[mount]]\nsource = \"a\"\ntarget = \"/x\"\nkind = \"nfs\"\n",
                "not bind, image or tmpfs",
            ),
            (
                "[[mount]]\ntarget = \"/x\"\nkind = \"tmpfs\"\nsize = \"lots\"\n",
                "does not start with a number",
            ),
            // Issue 10 item 7: on main this became size=13343673113640960k.
            (
                "[[mount]]\ntarget = \"/x\"\nkind = \"tmpfs\"\nsize = \"99999999999999999999999G\"\n",
                "is too large",
            ),
            (
                "[[mount]]\ntarget = \"/x\"\nkind = \"tmpfs\"\nsize = \"17179869184G\"\n",
                "is too large",
            ),
            (
                "[[mount]]\ntarget = \"/x\"\nkind = \"tmpfs\"\nsize = \"0k\"\n",
                "is zero",
            ),
            (
                "[[mount]]\nsource = \"a\"\ntarget = \"/x\"\nsize = \"1M\"\n",
                "tmpfs mounts only",
            ),
        ];
        for (text, want) in table {
            let m = parse(text);
            assert!(!m.syntax_error, "{text}");
            assert_eq!(m.warnings.len(), 1, "{text}: {:?}", m.warnings);
            assert!(m.warnings[0].contains(want), "{text}: {}", m.warnings[0]);
            assert!(m.mounts.is_empty());
        }
    }

    /// Found by fuzzing (fuzz/regressions/manifest/): a size ending in a multi-byte
    /// character was sliced inside it and panicked.
    #[test]
    fn size_with_multibyte_unit_is_a_warning_not_a_panic() {
        for size in ["1\u{fffd}", "\u{e9}", "16\u{e9}", "1\u{1f600}"] {
            let m = parse(&format!(
                "[[mount]]\ntarget = \"/x\"\nkind = \"tmpfs\"\nsize = \"{size}\"\n"
            ));
            assert!(m.mounts.is_empty(), "{size}");
            assert!(m.warnings[0].contains("size '"), "{:?}", m.warnings);
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_suggestions() {
        let m = parse(concat!(
            "[mounts]\nx = 1\n",
            "[defaults]\nveriy = true\n",
            "[verify]\nmin-verison = \"2025.1\"\n",
            "[[mount]]\nsource = \"Data/a\"\ntarget = \"/srv/a\"\nread_onyl = true\n",
            "[[mount]]\nsource = \"Data/b\"\ntarget = \"/srv/b\"\nkind = \"bindd\"\n",
            "[[mount]]\nsource = \"Data/c\"\ntarget = \"/srv/c\"\nread_only = \"yes\"\n",
            "[[mount]]\nsource = \"Data/d\"\ntarget = \"/srv/d\"\n",
        ));
        assert!(!m.syntax_error);
        let all = m.warnings.join("\n");
        for want in [
            "unknown table or key 'mounts' (did you mean 'mount'?)",
            "[defaults] veriy: unknown parameter overboot.veriy (did you mean 'verify'?)",
            "[[mount]] #1: unknown key 'read_onyl' (did you mean 'read_only'?)",
            "[[mount]] #2: kind 'bindd' is not bind, image or tmpfs (did you mean 'bind'?)",
            "[[mount]] #3: ",
            "[verify] unknown key 'min-verison' (did you mean 'min-version'?)",
        ] {
            assert!(all.contains(want), "no {want:?} in:\n{all}");
        }
        assert_eq!(m.warnings.len(), 6, "{all}");
        // The good mount still counts.
        assert_eq!(m.mounts.len(), 1);
        assert_eq!(m.mounts[0].index, 4);
    }
}
