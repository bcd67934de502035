//! A reproducible writer of "newc" cpio archives (the format the kernel unpacks
//! into its rootfs: see the kernel's `Documentation/driver-api/early-userspace/
//! buffer-format.rst`). Entries are sorted by path, so parents come before their
//! children; times are 0, owner root, inode numbers count up from 1 in that order.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// Target of the link.
    Symlink(String),
    /// (major, minor)
    CharDev(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits (`0o755`).
    pub perm: u32,
    pub kind: Kind,
}

/// Paths are relative (`dev/console`); a leading `/` is dropped.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Add an entry, and any missing parent directory (mode 0755). A later entry
    /// with the same path replaces the earlier one.
    pub fn add(&mut self, path: &str, perm: u32, kind: Kind) {
        let path = clean(path);
        if path.is_empty() {
            return;
        }
        let comps: Vec<&str> = path.split('/').collect();
        for i in 1..comps.len() {
            self.entries.entry(comps[..i].join("/")).or_insert(Entry {
                perm: 0o755,
                kind: Kind::Dir,
            });
        }
        self.entries.insert(path, Entry { perm, kind });
    }

    pub fn dir(&mut self, path: &str, perm: u32) {
        self.add(path, perm, Kind::Dir);
    }

    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) {
        self.add(path, perm, Kind::File(data));
    }

    /// Move the entries at `paths` (those present) into an archive of their own,
    /// with their parent directories.
    pub fn take(&mut self, paths: &[&str]) -> Archive {
        let mut out = Archive::new();
        for p in paths {
            let path = clean(p);
            if let Some(e) = self.entries.remove(&path) {
                out.add(&path, e.perm, e.kind);
            }
        }
        out
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The archive bytes, ending with the `TRAILER!!!` entry, padded to 512 bytes.
    /// Fails only for a file of 4 GiB or more (newc sizes are 32 bits).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for (n, (path, e)) in self.entries.iter().enumerate() {
            let (type_bits, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
                Kind::Dir => (0o040000, 2, &[], (0, 0)),
                Kind::File(d) => (0o100000, 1, d, (0, 0)),
                Kind::Symlink(t) => (0o120000, 1, t.as_bytes(), (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, 1, &[], (*ma, *mi)),
            };
            if u32::try_from(data.len()).is_err() {
                return Err(format!("{path}: 4 GiB or more, too big for a cpio archive"));
            }
            let ino = u32::try_from(n + 1).unwrap_or(u32::MAX);
            push_entry(
                &mut out,
                path,
                ino,
                type_bits | (e.perm & 0o7777),
                nlink,
                data,
                rdev,
            );
        }
        push_entry(&mut out, "TRAILER!!!", 0, 0, 1, &[], (0, 0));
        out.resize(out.len().div_ceil(512) * 512, 0);
        Ok(out)
    }
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(4) * 4, 0);
}

fn push_entry(
    out: &mut Vec<u8>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
    rdev: (u32, u32),
) {
    // newc: magic, then 13 fields of 8 hex digits: ino mode uid gid nlink mtime
    // filesize devmajor devminor rdevmajor rdevminor namesize check.
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut a = Archive::new();
        a.file("/a/b/c", 0o644, b"hello".to_vec());
        a.add("dev/console", 0o600, Kind::CharDev(5, 1));
        a.add("bin/sh", 0o777, Kind::Symlink("busybox".into()));
        let names: Vec<_> = a.entries().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            ["a", "a/b", "a/b/c", "bin", "bin/sh", "dev", "dev/console"]
        );
        let b = a.to_bytes().unwrap();
        assert_eq!(b.len() % 512, 0);
        // First header: "a", inode 1, directory 0755, nlink 2, namesize 2.
        let h = std::str::from_utf8(&b[..110]).unwrap();
        assert_eq!(&h[..6], "070701");
        assert_eq!(&h[6..14], "00000001");
        assert_eq!(&h[14..22], "000041ED");
        assert_eq!(&h[38..46], "00000002");
        assert_eq!(&h[94..102], "00000002");
        assert_eq!(&b[110..112], b"a\0");
        // Next header starts 4-aligned: 110 + 2 = 112.
        assert_eq!(&b[112..118], b"070701");
        assert!(b.windows(5).any(|w| w == b"hello"));
        assert!(b.windows(11).any(|w| w == b"TRAILER!!!\0"));
        assert_eq!(a.to_bytes().unwrap(), b);
    }
}
