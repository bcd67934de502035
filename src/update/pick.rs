//! The update's decisions, pure: which published image to take, where each of its
//! chunks comes from, and which old images to delete.

use crate::chunks::{self, Chunk};
use crate::verify::{ChecksumEntry, Sha256Digest};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Suffixes of system image names in a published directory.
const IMAGE_SUFFIXES: &[&str] = &[".squashfs", ".sqfs"];

/// Order of image names by the version in them (`app-1.10` after `app-1.9`,
/// `app-1.9.1` after `app-1.9`): the verify module's version order, then bytes.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    crate::verify::compare_versions(a, b).then_with(|| a.cmp(b))
}

/// The image to install: `wanted` when given (it must be listed), else the newest
/// image name in `entries` by [`version_cmp`]. Its chunk index must be listed too.
pub fn choose(entries: &[ChecksumEntry], wanted: Option<&str>) -> Result<String, String> {
    let listed = |n: &str| entries.iter().any(|e| e.name == n);
    let name = match wanted {
        Some(w) if listed(w) => w.to_string(),
        Some(w) => return Err(format!("{w} is not listed in the published SHA256SUMS")),
        None => entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| IMAGE_SUFFIXES.iter().any(|s| n.ends_with(s)))
            .max_by(|a, b| version_cmp(a, b))
            .ok_or("the published SHA256SUMS lists no image (*.squashfs, *.sqfs)")?
            .to_string(),
    };
    if name.starts_with('.') || name.contains('/') || crate::trial::reserved_name(&name) {
        return Err(format!(
            "{name} cannot be an image name on BootExt (a path, a hidden or a reserved name)"
        ));
    }
    if !listed(&format!("{name}{}", chunks::INDEX_SUFFIX)) {
        return Err(format!(
            "{name}{} is not listed in SHA256SUMS; publish the image with overboot publish",
            chunks::INDEX_SUFFIX
        ));
    }
    Ok(name)
}

/// Where a chunk's bytes are found on the appliance: file number and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub file: usize,
    pub offset: u64,
}

/// The chunks the appliance has, by SHA-256 (the first place each is seen).
pub fn local_store(files: &[Vec<Chunk>]) -> HashMap<Sha256Digest, Local> {
    let mut store = HashMap::new();
    for (file, list) in files.iter().enumerate() {
        for c in list {
            store.entry(c.sha256).or_insert(Local {
                file,
                offset: c.offset,
            });
        }
    }
    store
}

/// A run of consecutive chunks of the new image with one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Chunk `index`, copied from the appliance.
    Local { index: usize, from: Local },
    /// Chunks `first..end`, fetched with one Range request.
    Remote { first: usize, end: usize },
}

/// The sources of chunks `start..` of `target`: local where the store has the chunk,
/// remote otherwise, consecutive remote chunks coalesced into requests of at most
/// `max_request` bytes (a request is never split inside a chunk).
pub fn segments(
    target: &[Chunk],
    start: usize,
    store: &HashMap<Sha256Digest, Local>,
    max_request: u64,
) -> Vec<Segment> {
    let mut out = Vec::new();
    for (index, c) in target.iter().enumerate().skip(start) {
        if let Some(from) = store.get(&c.sha256) {
            out.push(Segment::Local { index, from: *from });
            continue;
        }
        if let Some(Segment::Remote { first, end }) = out.last_mut()
            && *end == index
            && target[*first..=index].iter().map(|c| c.len).sum::<u64>() <= max_request
        {
            *end = index + 1;
            continue;
        }
        out.push(Segment::Remote {
            first: index,
            end: index + 1,
        });
    }
    out
}

/// The images to delete so that at most `keep` others stay: the oldest first, never
/// one in `protected` (active, previous, recovery, the new one). `images` are
/// (name, modification time) pairs.
pub fn prune(images: &[(String, i64)], protected: &[&str], keep: usize) -> Vec<String> {
    let mut others: Vec<&(String, i64)> = images
        .iter()
        .filter(|(n, _)| !protected.contains(&n.as_str()))
        .collect();
    others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| version_cmp(&b.0, &a.0)));
    others.iter().skip(keep).map(|(n, _)| n.clone()).collect()
}

/// Whether `name` is an image file in `System/` (what [`prune`] may consider).
pub fn is_image_name(name: &str) -> bool {
    !name.starts_with('.')
        && !crate::trial::reserved_name(name)
        && IMAGE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ChecksumEntry {
        ChecksumEntry {
            name: name.into(),
            digest: Sha256Digest([0; 32]),
        }
    }

    fn chunk(offset: u64, len: u64, id: u8) -> Chunk {
        Chunk {
            offset,
            len,
            sha256: Sha256Digest([id; 32]),
        }
    }

    #[test]
    fn versions_order_like_sort_v() {
        let mut names = vec![
            "app-1.10.squashfs",
            "app-1.9.squashfs",
            "app-1.9.1.squashfs",
            "app-2.squashfs",
            "app-1.09.squashfs",
        ];
        names.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            names,
            [
                "app-1.09.squashfs",
                "app-1.9.squashfs",
                "app-1.9.1.squashfs",
                "app-1.10.squashfs",
                "app-2.squashfs"
            ]
        );
    }

    #[test]
    fn choose_the_newest_image_with_a_chunk_index() {
        let all: Vec<_> = [
            "app-1.9.squashfs",
            "app-1.9.squashfs.chunks",
            "app-1.10.squashfs",
            "app-1.10.squashfs.chunks",
            "app-1.10.squashfs.roothash",
        ]
        .map(entry)
        .to_vec();
        assert_eq!(choose(&all, None).unwrap(), "app-1.10.squashfs");
        assert_eq!(
            choose(&all, Some("app-1.9.squashfs")).unwrap(),
            "app-1.9.squashfs"
        );
        let e = choose(&all, Some("app-3.squashfs")).unwrap_err();
        assert!(e.contains("not listed"), "{e}");
        let e = choose(&all[..1], None).unwrap_err();
        assert!(e.contains("app-1.9.squashfs.chunks is not listed"), "{e}");
        let e = choose(&[entry("README")], None).unwrap_err();
        assert!(e.contains("lists no image"), "{e}");
        let e = choose(&[entry("active-system")], Some("active-system")).unwrap_err();
        assert!(e.contains("reserved"), "{e}");
    }

    #[test]
    fn segments_reuse_local_chunks_and_coalesce_the_rest() {
        let target = [
            chunk(0, 10, 1),
            chunk(10, 10, 2),
            chunk(20, 10, 3),
            chunk(30, 10, 4),
            chunk(40, 10, 5),
            chunk(50, 10, 6),
        ];
        let store = local_store(&[
            vec![chunk(0, 10, 9), chunk(10, 10, 3)],
            vec![chunk(0, 10, 6)],
        ]);
        let segs = segments(&target, 0, &store, 20);
        assert_eq!(
            segs,
            [
                Segment::Remote { first: 0, end: 2 },
                Segment::Local {
                    index: 2,
                    from: Local {
                        file: 0,
                        offset: 10
                    }
                },
                // 30 bytes of remote chunks, at most 20 per request.
                Segment::Remote { first: 3, end: 5 },
                Segment::Local {
                    index: 5,
                    from: Local { file: 1, offset: 0 }
                },
            ]
        );
        // Resuming at chunk 4, a chunk larger than the limit still goes whole.
        assert_eq!(
            segments(&target, 4, &HashMap::new(), 5),
            [
                Segment::Remote { first: 4, end: 5 },
                Segment::Remote { first: 5, end: 6 }
            ]
        );
    }

    #[test]
    fn prune_keeps_the_newest_and_never_the_protected() {
        let images: Vec<(String, i64)> = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
            .map(|(n, t)| (n.to_string(), t))
            .to_vec();
        assert_eq!(prune(&images, &["a", "e"], 1), ["c", "b"]);
        assert_eq!(prune(&images, &["a", "e"], 5), Vec::<String>::new());
        assert_eq!(prune(&images, &[], 0).len(), 5);
        assert!(is_image_name("app-1.squashfs"));
        assert!(!is_image_name(".app-1.squashfs.partial"));
        assert!(!is_image_name("app-1.squashfs.minisig"));
    }
}
