//! The run-time corruption record, `System/verity-corrupted` on BootExt: how a
//! corrupted block read while the system runs reaches the next boot.
//!
//! dm-verity's own `restart_on_corruption` restarts at once and leaves nothing a next
//! boot can read (on x86 no reboot reason survives), so the same block would restart
//! the machine at every boot. The kernel table therefore always fails the read with
//! EIO; the kernel also sends a uevent (`DM_VERITY_ERR_BLOCK_NR=<type>,<block>` on
//! the dm device) that `overboot verity-watch` (`super::watch`, run by
//! `overboot-verity.service`) turns into a line here before it restarts or panics as
//! `overboot.verity-error` says. The next boot refuses an image recorded here with
//! the same root hash ([`refusal`]): a system image falls back to recovery, another
//! entry is skipped, with the reason in `state.json`. A new image (sealed again: a new
//! root hash) is not concerned; `overboot set-active IMAGE` forgets IMAGE's lines.
//!
//! One line per image: `ROOT_HASH KIND BLOCK IMAGE` (KIND `data` or `metadata`, as
//! the kernel logs it; IMAGE relative to BootExt, to the end of the line). Lines
//! starting with `#` and malformed lines are ignored.

use crate::sys::atomic;
use crate::sys::confined::Confined;
use crate::trial::{SYSTEM_DIR, temp_name};

/// The record's name in `System/`.
pub const FILE: &str = "verity-corrupted";
/// Its path on BootExt.
pub const PATH: &str = "System/verity-corrupted";
/// Read at most this much of it (a line per corrupted image).
pub const MAX_BYTES: u64 = 16 * 1024;

/// One corrupted image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub root_hash: String,
    /// `data` or `metadata` (a block of the hash tree).
    pub kind: String,
    pub block: u64,
    /// Relative to BootExt (`System/active.squashfs`).
    pub image: String,
}

impl Entry {
    /// For `overboot status` and the logs.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} block {} failed dm-verity while the system ran (root hash {})",
            self.image, self.kind, self.block, self.root_hash
        )
    }
}

/// The entries of a record's text.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let (root_hash, kind, block, image) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(Entry {
                root_hash: root_hash.into(),
                kind: kind.into(),
                block: block.parse().ok()?,
                image: image.into(),
            })
        })
        .collect()
}

/// A record's text.
pub fn render(entries: &[Entry]) -> String {
    let mut text = String::from(
        "# Written by overboot verity-watch: images with a corrupted block (ROOT_HASH KIND BLOCK IMAGE).\n# The boot refuses them; delete a line (or run overboot set-active IMAGE) to try one again.\n",
    );
    for e in entries {
        text.push_str(&format!(
            "{} {} {} {}\n",
            e.root_hash, e.kind, e.block, e.image
        ));
    }
    text
}

/// At boot: why `image`, sealed with root hash `root` (hex), is refused, if the
/// record (its text) names it with that root hash. (Lean on purpose: it is in
/// overboot-init.)
pub fn refusal(record: &str, image: &str, root: &str) -> Option<String> {
    record.lines().find_map(|l| {
        let mut f = l.splitn(4, ' ');
        let (hash, kind, block, named) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let block: u64 = block.parse().ok()?;
        (named == image && hash.eq_ignore_ascii_case(root)).then(|| {
            format!(
                "{kind} block {block} of {image} failed dm-verity while the system ran (recorded in {PATH}); replace the image and seal it again, or delete its line there (set-active --force does) to try it again"
            )
        })
    })
}

/// At boot (and in `plan`/`check`): the record's text, if any. One that cannot be
/// read (too big, not text, leads outside BootExt) is ignored with a warning.
pub fn at_boot(be: &Confined, warnings: &mut Vec<String>) -> Option<String> {
    be.read_small(PATH, MAX_BYTES).unwrap_or_else(|e| {
        let w = format!("{e}: the dm-verity corruption record is ignored");
        log::warn!("{w}");
        warnings.push(w);
        None
    })
}

/// The entries on the BootExt at `be` (none when there is no record).
pub fn read(be: &Confined) -> Result<Vec<Entry>, String> {
    Ok(be
        .read_small(PATH, MAX_BYTES)?
        .map(|t| parse(&t))
        .unwrap_or_default())
}

/// `overboot status` lines for the record on the BootExt mounted at `bootext`.
pub fn status_lines(bootext: &std::path::Path) -> Vec<String> {
    let Ok(be) = Confined::open(bootext) else {
        return Vec::new();
    };
    match read(&be) {
        Ok(entries) => entries
            .iter()
            .map(|e| format!("Corrupted: {} (the next boot refuses it)", e.describe()))
            .collect(),
        Err(e) => vec![format!("Corrupted: {e}")],
    }
}

/// `overboot set-active IMAGE`: the operator asks for IMAGE again, so its lines go;
/// one line on stderr says so. Returns whether the record could be updated.
pub fn forget_for_set_active(be: &Confined, image: &str) -> bool {
    match forget(be, image) {
        Ok(gone) => {
            for e in gone {
                eprintln!(
                    "overboot: forgot the corruption recorded in {PATH}: {}",
                    e.describe()
                );
            }
            true
        }
        Err(e) => {
            eprintln!("overboot: set-active: cannot update {PATH}: {e}");
            false
        }
    }
}

/// Replace the record with `entries` (remove it when there are none), atomically.
fn write(be: &Confined, entries: &[Entry]) -> Result<(), String> {
    let dir = be
        .open_dir(SYSTEM_DIR)
        .map_err(|e| Confined::describe(SYSTEM_DIR, e))?;
    if entries.is_empty() {
        return atomic::remove(&dir, FILE);
    }
    let text = render(entries);
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{PATH} would be {} bytes, more than the {MAX_BYTES} the boot reads",
            text.len()
        ));
    }
    atomic::write_file(&dir, FILE, &temp_name(FILE), text.as_bytes())
}

/// Record `entry` unless its image is recorded with the same root hash already;
/// returns whether it was added.
pub fn add(be: &Confined, entry: Entry) -> Result<bool, String> {
    let mut entries = read(be)?;
    if entries
        .iter()
        .any(|e| e.image == entry.image && e.root_hash == entry.root_hash)
    {
        return Ok(false);
    }
    entries.push(entry);
    write(be, &entries).map(|()| true)
}

/// Forget the lines of `image` (relative to BootExt); returns them.
pub fn forget(be: &Confined, image: &str) -> Result<Vec<Entry>, String> {
    let (gone, kept): (Vec<Entry>, Vec<Entry>) =
        read(be)?.into_iter().partition(|e| e.image == image);
    if !gone.is_empty() {
        write(be, &kept)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(image: &str, root: &str) -> Entry {
        Entry {
            root_hash: root.into(),
            kind: "data".into(),
            block: 17,
            image: image.into(),
        }
    }

    #[test]
    fn round_trips_and_ignores_junk() {
        let entries = vec![
            entry("System/active.squashfs", "ab01"),
            entry("DIRS/DIR_opt a.squashfs", "cd02"),
        ];
        let text = render(&entries);
        assert_eq!(parse(&text), entries);
        let junk = format!("{text}short line\nab data notanumber X\n\n");
        assert_eq!(parse(&junk), entries);
    }

    #[test]
    fn refuses_only_the_recorded_image_with_its_root_hash() {
        let text = render(&[entry("System/active.squashfs", "ab01")]);
        let why = refusal(&text, "System/active.squashfs", "AB01").unwrap();
        assert!(
            why.starts_with("data block 17 of System/active.squashfs failed dm-verity"),
            "{why}"
        );
        assert!(why.contains(PATH), "{why}");
        // Sealed again: another root hash, not concerned.
        assert_eq!(refusal(&text, "System/active.squashfs", "ffff"), None);
        assert_eq!(refusal(&text, "System/other.squashfs", "ab01"), None);
        assert_eq!(refusal("", "System/active.squashfs", "ab01"), None);
    }
}
