//! `BootExt/Apps/`: application images (DESIGN section 1). Each
//! `Apps/NAME.squashfs`, `NAME.squashfs.xz` or `NAME.sqfs` is loop-mounted
//! read-only (nodev, nosuid) at `/mnt/apps/NAME` in the new root, the directory
//! created in the overlay. `/mnt/apps` is reserved like `/mnt/cdrom`: no `DIRS/`
//! entry or `[[mount]]` may land on it, above it or in it. A bad entry is skipped
//! with its reason, never fatal.

use crate::bootext;
use crate::names::{IMAGE_EXTENSIONS, TargetPath};
use crate::plan::{Skipped, SourceNode};
use crate::sys::confined::Confined;
use crate::sys::errno_text;
use serde::Serialize;

pub const APPS_DIR: &str = "Apps";
/// Where apps appear in the new root.
pub const APPS_AT: &str = "/mnt/apps";

/// One usable app image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    /// The name without the image extension.
    pub name: String,
    /// Path relative to BootExt (`Apps/<file>`).
    pub source: String,
    /// `/mnt/apps/<name>`.
    pub target: TargetPath,
}

/// Turn one `Apps/` entry into an app, or say why it cannot be one.
pub fn classify(file: &str, node: &SourceNode) -> Result<App, String> {
    let Some(name) = IMAGE_EXTENSIONS.iter().find_map(|e| file.strip_suffix(e)) else {
        return Err(
            "not an app image: the name must end in .squashfs, .squashfs.xz or .sqfs".into(),
        );
    };
    match node {
        SourceNode::File {
            image_problem: None,
        } => {}
        SourceNode::File {
            image_problem: Some(p),
        } => return Err(format!("bad image: {p}")),
        SourceNode::Dir => return Err("a directory: an app is a squashfs image".into()),
        SourceNode::Other(what) => return Err(format!("{what}: an app is a squashfs image")),
    }
    if name.is_empty() || name.starts_with('.') {
        return Err(format!(
            "'{name}' cannot name /mnt/apps/<name> (empty or hidden)"
        ));
    }
    let target = TargetPath::parse_absolute(&format!("{APPS_AT}/{name}"))?;
    Ok(App {
        name: name.to_string(),
        source: format!("{APPS_DIR}/{file}"),
        target,
    })
}

/// Apps whose names collide (`x.squashfs` and `x.sqfs`) are all skipped.
pub fn drop_conflicts(apps: Vec<App>) -> (Vec<App>, Vec<Skipped>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for app in &apps {
        let same: Vec<&str> = apps
            .iter()
            .filter(|a| a.name == app.name)
            .map(|a| a.source.as_str())
            .collect();
        if same.len() > 1 {
            skipped.push(Skipped {
                entry: app.source.clone(),
                reason: format!(
                    "{} entries would land on {} ({}); none is mounted",
                    same.len(),
                    app.target,
                    same.join(", ")
                ),
            });
        } else {
            kept.push(app.clone());
        }
    }
    (kept, skipped)
}

/// Every `Apps/` entry, classified (links followed inside BootExt only, image
/// superblocks checked), conflicts removed.
pub fn scan(be: &Confined) -> (Vec<App>, Vec<Skipped>) {
    let mut apps = Vec::new();
    let mut skipped = Vec::new();
    let names = match crate::bootext::list_entries(be, APPS_DIR) {
        Ok(n) => n,
        Err(e) => {
            skipped.push(Skipped {
                entry: APPS_DIR.into(),
                reason: format!("cannot list: {}", errno_text(e)),
            });
            return (apps, skipped);
        }
    };
    for name in names {
        let rel = format!("{APPS_DIR}/{name}");
        match bootext::source_node(be, &rel, false).and_then(|node| classify(&name, &node)) {
            Ok(a) => apps.push(a),
            Err(reason) => skipped.push(Skipped { entry: rel, reason }),
        }
    }
    let (apps, more) = drop_conflicts(apps);
    skipped.extend(more);
    (apps, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(problem: Option<&str>) -> SourceNode {
        SourceNode::File {
            image_problem: problem.map(String::from),
        }
    }

    #[test]
    fn classify_table() {
        for (f, name) in [
            ("editor.squashfs", "editor"),
            ("db.squashfs.xz", "db"),
            ("x_y.sqfs", "x_y"),
        ] {
            let a = classify(f, &file(None)).unwrap();
            assert_eq!(a.name, name);
            assert_eq!(a.target.to_string(), format!("/mnt/apps/{name}"));
            assert_eq!(a.source, format!("Apps/{f}"));
        }
        let bad = [
            ("readme.txt", file(None), "not an app image"),
            (
                "a.squashfs",
                file(Some("bad magic")),
                "bad image: bad magic",
            ),
            ("d.squashfs", SourceNode::Dir, "a directory"),
            (".squashfs", file(None), "empty or hidden"),
            (".h.squashfs", file(None), "empty or hidden"),
            ("...sqfs", file(None), "empty or hidden"),
        ];
        for (f, node, want) in bad {
            let e = classify(f, &node).unwrap_err();
            assert!(e.contains(want), "{f}: {e}");
        }
    }

    #[test]
    fn conflicts() {
        let apps = vec![
            classify("a.squashfs", &file(None)).unwrap(),
            classify("a.sqfs", &file(None)).unwrap(),
            classify("b.sqfs", &file(None)).unwrap(),
        ];
        let (kept, skipped) = drop_conflicts(apps);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "b");
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("Apps/a.squashfs, Apps/a.sqfs"));
    }
}
