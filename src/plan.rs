//! The mount plan: which overmounts to make, where, in which order, and which entries
//! are skipped and why. Pure: entries and a [`Tree`] in, an ordered plan out. `plan`
//! prints it, `check` judges it, `assemble` executes it.

use crate::manifest::{ManifestKind, ManifestMount};
use crate::names::{self, Decoded, NodeKind, Prefix, Reading, TargetPath, Tree};
use serde::Serialize;
use std::collections::BTreeMap;

/// What an overmount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A directory bound onto a directory.
    Bind,
    /// A single file bound onto a file.
    File,
    /// A squashfs image, loop-attached read-only.
    Image,
    /// A fresh tmpfs (manifest only).
    Tmpfs,
}

/// An entry before its target is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it came from, for messages: `DIRS/DIR_etc_ssh` or `overboot.toml [[mount]] #2`.
    pub origin: String,
    /// Source relative to BootExt; `None` for tmpfs.
    pub source: Option<String>,
    pub kind: MountKind,
    pub read_only: bool,
    /// tmpfs `size=`.
    pub size: Option<String>,
    pub reading: Reading,
}

/// An overmount to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMount {
    pub origin: String,
    pub source: Option<String>,
    pub target: TargetPath,
    /// Where the target is once symlinks in the image are followed (inside the root).
    pub resolved: TargetPath,
    pub kind: MountKind,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Other readings of the name that also exist (reported by `check`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_exist: Vec<TargetPath>,
}

/// An entry not mounted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub entry: String,
    pub reason: String,
}

/// What a `DIRS/` entry is on BootExt (symlinks followed inside BootExt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceNode {
    Dir,
    /// A regular file; `image_problem` is the superblock check's verdict for files
    /// named as images.
    File {
        image_problem: Option<String>,
    },
    Other(String),
}

/// Turn one `DIRS/` entry into a candidate, or say why it cannot be one.
pub fn classify(name: &str, node: &SourceNode) -> Result<Candidate, String> {
    let is_dir = *node == SourceNode::Dir;
    let parsed = names::parse_entry_name(name, !is_dir)?;
    let kind = match (parsed.prefix, node) {
        (_, SourceNode::Other(what)) => {
            return Err(format!("it is {what}, not a directory or a file"));
        }
        (Prefix::Dir, SourceNode::Dir) => MountKind::Bind,
        (Prefix::Dir, SourceNode::File { image_problem }) => {
            if parsed.image_extension.is_none() {
                return Err(format!(
                    "a DIR_ entry must be a directory or a squashfs image named {}; this is a plain file (name it FILE_ to bind a single file)",
                    names::IMAGE_EXTENSIONS.join(", ")
                ));
            }
            if let Some(problem) = image_problem {
                return Err(format!("bad image: {problem}"));
            }
            MountKind::Image
        }
        (Prefix::File, SourceNode::File { .. }) => MountKind::File,
        (Prefix::File, SourceNode::Dir) => {
            return Err("a FILE_ entry must be a file; this is a directory (name it DIR_ to bind a directory)".into());
        }
    };
    Ok(Candidate {
        origin: format!("DIRS/{name}"),
        source: Some(format!("DIRS/{name}")),
        kind,
        read_only: kind == MountKind::Image,
        size: None,
        reading: parsed.reading,
    })
}

/// A manifest `[[mount]]` as a candidate. A bind's kind (directory or file) is decided
/// by what the source is.
pub fn from_manifest(
    m: &ManifestMount,
    source_node: Option<&SourceNode>,
) -> Result<Candidate, String> {
    let kind = match (m.kind, source_node) {
        (ManifestKind::Tmpfs, _) => MountKind::Tmpfs,
        (_, None) => {
            return Err(format!(
                "source {} does not exist on BootExt",
                m.source.as_deref().unwrap_or("?")
            ));
        }
        (_, Some(SourceNode::Other(what))) => return Err(format!("source is {what}")),
        (ManifestKind::Bind, Some(SourceNode::Dir)) => MountKind::Bind,
        (ManifestKind::Bind, Some(SourceNode::File { .. })) => MountKind::File,
        (ManifestKind::Image, Some(SourceNode::Dir)) => {
            return Err("kind = \"image\" but the source is a directory".into());
        }
        (
            ManifestKind::Image,
            Some(SourceNode::File {
                image_problem: Some(p),
            }),
        ) => return Err(format!("bad image: {p}")),
        (
            ManifestKind::Image,
            Some(SourceNode::File {
                image_problem: None,
            }),
        ) => MountKind::Image,
    };
    Ok(Candidate {
        origin: format!("overboot.toml [[mount]] #{}", m.index),
        source: m.source.clone(),
        kind,
        read_only: m.read_only,
        size: m.size.clone(),
        reading: Reading::Exact(m.target.clone()),
    })
}

/// Decode every candidate against `tree`, follow the target's symlinks inside the
/// tree, refuse what cannot work (reserved or impossible targets, kinds that do not
/// fit what is there, two entries landing on one place) and order the rest parents
/// before children, then by name, so the order is stable.
pub fn build(
    candidates: Vec<Candidate>,
    tree: &dyn Tree,
    reserved: &[TargetPath],
) -> (Vec<PlannedMount>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut by_place: BTreeMap<TargetPath, Vec<PlannedMount>> = BTreeMap::new();
    // Every lookup below is counted: a hostile tree or thousands of names cost a
    // bounded time (names::PASS_LOOKUPS), and reserved places are never walked.
    let budget = names::Budget::new(names::PASS_LOOKUPS);
    for c in candidates {
        // A name whose plain reading lies under a reserved place is refused before
        // any lookup (DIR_mnt_cdrom_...: BootExt itself at boot).
        if let Reading::Tokens(tokens) = &c.reading
            && let Ok(plain) = TargetPath::from_components(tokens.clone())
            && reserved.iter().any(|r| plain.starts_with(r))
            && let Err(reason) = crate::landing::check_reserved(&plain, &plain, reserved)
        {
            skipped.push(Skipped {
                entry: c.origin.clone(),
                reason,
            });
            continue;
        }
        let counted = budget.for_name(tree, reserved);
        if budget.spent() {
            skipped.push(Skipped {
                entry: c.origin.clone(),
                reason: counted.exhausted().unwrap_or_default(),
            });
            continue;
        }
        let Decoded { target, also_exist } = names::decode(&c.reading, &counted);
        let mut skip = |reason: String| {
            skipped.push(Skipped {
                entry: c.origin.clone(),
                reason,
            })
        };
        let canonical = names::canonical(&counted, target.components());
        if let Some(reason) = counted.exhausted() {
            skip(reason);
            continue;
        }
        let (real, existing) = match canonical {
            Ok(r) => r,
            Err(e) => {
                skip(format!("target {target}: {e}"));
                continue;
            }
        };
        let resolved = match TargetPath::from_components(real) {
            Ok(p) if !p.is_root() => p,
            _ => {
                skip(format!("target {target} resolves to the new root itself"));
                continue;
            }
        };
        let via = if resolved == target {
            String::new()
        } else {
            format!(" (a symlink in the image leads to {resolved})")
        };
        if let Err(reason) = crate::landing::check_reserved(&target, &resolved, reserved) {
            skip(reason);
            continue;
        }
        match (c.kind, existing) {
            (_, None) => {}
            (MountKind::File, Some(NodeKind::File)) => {}
            (MountKind::File, Some(NodeKind::Dir)) => {
                skip(format!(
                    "target {target}{via} is a directory in the image; a FILE_ entry can only cover a file"
                ));
                continue;
            }
            (_, Some(NodeKind::Dir)) => {}
            (_, Some(NodeKind::File)) => {
                skip(format!(
                    "target {target}{via} is a file in the image; a directory or image can only cover a directory (use FILE_ for a file)"
                ));
                continue;
            }
            (_, Some(NodeKind::Other)) => {
                skip(format!(
                    "target {target}{via} is a special file in the image"
                ));
                continue;
            }
        }
        by_place
            .entry(resolved.clone())
            .or_default()
            .push(PlannedMount {
                origin: c.origin,
                source: c.source,
                target,
                resolved,
                kind: c.kind,
                read_only: c.read_only,
                size: c.size,
                also_exist,
            });
    }
    let mut mounts = Vec::new();
    for (place, mut group) in by_place {
        if group.len() == 1 {
            mounts.append(&mut group);
            continue;
        }
        let all: Vec<&str> = group.iter().map(|m| m.origin.as_str()).collect();
        for m in &group {
            skipped.push(Skipped {
                entry: m.origin.clone(),
                reason: format!(
                    "{} entries land on {place} ({}); none is mounted until only one remains",
                    all.len(),
                    all.join(", ")
                ),
            });
        }
    }
    // BTreeMap order on components is parents before children already; keep it.
    (mounts, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{EmptyTree, Node};

    fn file() -> SourceNode {
        SourceNode::File {
            image_problem: None,
        }
    }

    fn targets(mounts: &[PlannedMount]) -> Vec<String> {
        mounts
            .iter()
            .map(|m| format!("{}={:?}", m.target, m.kind))
            .collect()
    }

    #[test]
    fn classify_table() {
        let ok = [
            ("DIR_etc_ssh", SourceNode::Dir, MountKind::Bind),
            ("DIR_opt.squashfs", file(), MountKind::Image),
            ("DIR_opt.sqfs", file(), MountKind::Image),
            ("FILE_etc_hostname", file(), MountKind::File),
        ];
        for (name, node, kind) in ok {
            assert_eq!(classify(name, &node).unwrap().kind, kind, "{name}");
        }
        let bad = [
            ("DIR_etc_motd", file(), "plain file"),
            ("FILE_etc", SourceNode::Dir, "must be a file"),
            (
                "DIR_x.squashfs",
                SourceNode::File {
                    image_problem: Some("truncated".into()),
                },
                "bad image: truncated",
            ),
            ("DIR_x", SourceNode::Other("a socket".into()), "a socket"),
            ("README", SourceNode::Dir, "neither DIR_ nor FILE_"),
            ("DIR_.._x", SourceNode::Dir, "'..'"),
        ];
        for (name, node, want) in bad {
            let e = classify(name, &node).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn parents_before_children_and_conflicts() {
        let cands = vec![
            classify("DIR_opt_tools.squashfs", &file()).unwrap(),
            classify("DIR_opt", &SourceNode::Dir).unwrap(),
            classify("DIR_etc_ssh", &SourceNode::Dir).unwrap(),
            classify("DIR_etc_ssh.squashfs", &file()).unwrap(),
            classify("FILE_etc_hostname", &file()).unwrap(),
            classify("DIR_etc", &SourceNode::Dir).unwrap(),
        ];
        let (mounts, skipped) = build(cands, &EmptyTree, &[]);
        assert_eq!(
            targets(&mounts),
            [
                "/etc=Bind",
                "/etc/hostname=File",
                "/opt=Bind",
                "/opt/tools=Image"
            ]
        );
        assert_eq!(skipped.len(), 2);
        for s in &skipped {
            assert!(
                s.reason
                    .contains("DIRS/DIR_etc_ssh, DIRS/DIR_etc_ssh.squashfs"),
                "{}",
                s.reason
            );
        }
    }

    #[test]
    fn reserved_targets_are_refused() {
        let reserved = [TargetPath::parse_absolute("/mnt/cdrom").unwrap()];
        let cands = vec![
            classify("DIR_mnt", &SourceNode::Dir).unwrap(),
            classify("DIR_mnt_cdrom", &SourceNode::Dir).unwrap(),
            classify("DIR_mnt_data", &SourceNode::Dir).unwrap(),
        ];
        let (mounts, skipped) = build(cands, &EmptyTree, &reserved);
        assert_eq!(targets(&mounts), ["/mnt/data=Bind"]);
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn file_onto_directory_is_refused() {
        struct EtcIsDir;
        impl Tree for EtcIsDir {
            fn lstat(&self, p: &[String]) -> Option<Node> {
                (p.is_empty() || p == ["etc"]).then_some(Node::Dir)
            }
        }
        let (mounts, skipped) = build(vec![classify("FILE_etc", &file()).unwrap()], &EtcIsDir, &[]);
        assert!(mounts.is_empty());
        assert!(
            skipped[0].reason.contains("is a directory"),
            "{}",
            skipped[0].reason
        );
    }
}
