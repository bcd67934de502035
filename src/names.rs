//! `DIR_`/`FILE_` entry names and the paths they decode to (DESIGN section 1). Pure.
//!
//! `_` separates path components; `__` is an escaped literal `_` and makes the whole
//! name exact. Without an escape, a name whose components may themselves contain `_`
//! (`usr_lib_x86_64-linux-gnu`) is read the way that names what exists in the image;
//! the lookup is a [`Tree`], so the same decoding runs against an image read offline
//! (`plan`, `check`) and against the assembled root (`assemble`).

use serde::Serialize;
use std::fmt;

/// A path inside the new root, as validated components (never empty, `.`, `..` or
/// containing `/` or NUL). The root itself has no components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TargetPath(Vec<String>);

impl TargetPath {
    pub fn from_components(components: Vec<String>) -> Result<TargetPath, String> {
        for c in &components {
            check_component(c)?;
        }
        Ok(TargetPath(components))
    }

    /// An absolute path such as `/opt/my_app` (from the manifest).
    pub fn parse_absolute(text: &str) -> Result<TargetPath, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("'{text}' is not an absolute path"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err("'/' cannot be a target: it is the new root itself".into());
        }
        TargetPath::from_components(rest.split('/').map(str::to_string).collect())
            .map_err(|e| format!("'{text}': {e}"))
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &TargetPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path relative to the root, for `openat2` with `RESOLVE_IN_ROOT`.
    pub fn relative(&self) -> String {
        if self.0.is_empty() {
            ".".into()
        } else {
            self.0.join("/")
        }
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for c in &self.0 {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

impl Serialize for TargetPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `text` as it may be printed: control characters (a newline in a `DIRS/` name, an
/// escape sequence) written as `\n`, `\x1b`, so a name on BootExt cannot forge a
/// log line or repaint the console. Names are printed only through this.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn check_component(c: &str) -> Result<(), String> {
    match c {
        "" => Err("empty path component".into()),
        "." | ".." => Err(format!("'{c}' is not allowed as a path component")),
        _ if c.contains('/') || c.contains('\0') => Err(format!("'{c}' contains '/' or NUL")),
        _ => Ok(()),
    }
}

/// Which prefix an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Prefix {
    Dir,
    File,
}

/// Extensions that mark a `DIR_` entry as a squashfs image, longest first.
pub const IMAGE_EXTENSIONS: &[&str] = &[".squashfs.xz", ".squashfs", ".sqfs"];

/// A `DIRS/` file name taken apart: its prefix, the image extension if any, and the
/// encoded path (without either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub prefix: Prefix,
    pub image_extension: Option<&'static str>,
    pub reading: Reading,
}

/// How a name's path may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Escaped with `__`, or a manifest path: exactly these components.
    Exact(TargetPath),
    /// Split at every `_`; neighbouring tokens may join into one component.
    Tokens(Vec<String>),
}

/// Take a `DIRS/` entry name apart. `strip_image_extension` is false for entries that
/// are directories, whose name is all path.
pub fn parse_entry_name(name: &str, strip_image_extension: bool) -> Result<EntryName, String> {
    let (prefix, body) = if let Some(b) = name.strip_prefix("DIR_") {
        (Prefix::Dir, b)
    } else if let Some(b) = name.strip_prefix("FILE_") {
        (Prefix::File, b)
    } else {
        return Err("name starts with neither DIR_ nor FILE_".into());
    };
    let mut image_extension = None;
    let mut body = body;
    if prefix == Prefix::Dir && strip_image_extension {
        for ext in IMAGE_EXTENSIONS {
            if let Some(b) = body.strip_suffix(ext) {
                image_extension = Some(*ext);
                body = b;
                break;
            }
        }
    }
    let reading = tokenize(body)?;
    Ok(EntryName {
        prefix,
        image_extension,
        reading,
    })
}

/// Split an encoded path at `_`, honouring the `__` escape.
fn tokenize(body: &str) -> Result<Reading, String> {
    if body.is_empty() {
        return Err("no path after the prefix".into());
    }
    let mut tokens = vec![String::new()];
    let mut escaped = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            push_char(&mut tokens, c);
        } else if chars.peek() == Some(&'_') {
            chars.next();
            push_char(&mut tokens, '_');
            escaped = true;
        } else {
            if tokens.last().is_some_and(String::is_empty) {
                return Err(format!("empty path component in '{body}'"));
            }
            tokens.push(String::new());
        }
    }
    if tokens.last().is_some_and(String::is_empty) {
        return Err(format!("empty path component in '{body}' (trailing '_')"));
    }
    for t in &tokens {
        check_component(t).map_err(|e| format!("'{body}': {e}"))?;
    }
    if escaped {
        Ok(Reading::Exact(TargetPath(tokens)))
    } else {
        Ok(Reading::Tokens(tokens))
    }
}

fn push_char(tokens: &mut [String], c: char) {
    if let Some(last) = tokens.last_mut() {
        last.push(c);
    }
}

/// What a path in a tree is, symlinks followed within the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Other,
}

/// One node, not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    Other,
    Symlink(String),
}

/// Something names are decoded against: the image read offline, or the new root.
pub trait Tree {
    /// What `path` (symlink-free in its parents) is itself, or `None` if absent.
    fn lstat(&self, path: &[String]) -> Option<Node>;

    /// What `path` is, symlinks followed inside the tree.
    fn kind(&self, path: &[String]) -> Option<NodeKind> {
        canonical(self, path).ok()?.1
    }

    /// True once the lookups allowed are spent: decoding stops (see [`Counted`]).
    fn exhausted(&self) -> bool {
        false
    }
}

const MAX_SYMLINKS: usize = 40;

/// Resolve `path` inside `tree` the way the kernel resolves it with
/// `RESOLVE_IN_ROOT`: symlinks followed, `/` and `..` stopping at the tree's root.
/// Returns the symlink-free path and what is there (`None`: nothing yet, so it would
/// be created). Fails for a loop or a path that runs through a file.
pub fn canonical<T: Tree + ?Sized>(
    tree: &T,
    path: &[String],
) -> Result<(Vec<String>, Option<NodeKind>), String> {
    let mut pending: Vec<String> = path.iter().rev().cloned().collect();
    let mut real: Vec<String> = Vec::new();
    let mut links = 0;
    let mut last = Some(NodeKind::Dir);
    while let Some(name) = pending.pop() {
        match name.as_str() {
            "" | "." => continue,
            ".." => {
                real.pop();
                last = Some(NodeKind::Dir);
                continue;
            }
            _ => {}
        }
        match last {
            Some(NodeKind::Dir) => {}
            None => {
                // Below something that does not exist yet: all of it will be created.
                real.push(name);
                continue;
            }
            Some(_) => {
                return Err(format!(
                    "/{} is not a directory, so nothing can be below it",
                    real.join("/")
                ));
            }
        }
        real.push(name);
        last = match tree.lstat(&real) {
            None => None,
            Some(Node::Dir) => Some(NodeKind::Dir),
            Some(Node::File) => Some(NodeKind::File),
            Some(Node::Other) => Some(NodeKind::Other),
            Some(Node::Symlink(text)) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(format!(
                        "too many symlinks resolving {} (a loop?)",
                        TargetPath(path.to_vec())
                    ));
                }
                real.pop();
                if text.starts_with('/') {
                    real.clear();
                }
                pending.extend(text.split('/').rev().map(str::to_string));
                Some(NodeKind::Dir)
            }
        };
    }
    Ok((real, last))
}

/// A tree with nothing in it: every name decodes by its plain `_` split.
pub struct EmptyTree;

impl Tree for EmptyTree {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        path.is_empty().then_some(Node::Dir)
    }
}

/// The decoded target of a name, and the other readings that also exist (an
/// ambiguity `check` reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub target: TargetPath,
    pub also_exist: Vec<TargetPath>,
}

/// Lookups (one `lstat` of the tree, an `openat2` against the new root) one name may
/// cost, symlinks and the fallback included.
pub const NAME_LOOKUPS: u64 = 4096;
/// Lookups a whole pass over `DIRS/` may cost: a hostile tree (a deep directory,
/// thousands of names) cannot make decoding take more than a fraction of a second.
pub const PASS_LOOKUPS: u64 = 100_000;

/// The lookups left for a pass, shared by its names.
pub struct Budget {
    left: std::cell::Cell<u64>,
}

impl Budget {
    pub fn new(lookups: u64) -> Budget {
        Budget {
            left: std::cell::Cell::new(lookups),
        }
    }

    /// Nothing left: the remaining names are skipped without being looked at.
    pub fn spent(&self) -> bool {
        self.left.get() == 0
    }

    /// `tree` as seen by one name: its lookups counted against the smaller of
    /// [`NAME_LOOKUPS`] and what the pass has left, and `opaque` places (those
    /// overboot mounts itself: BootExt is one) never walked into.
    pub fn for_name<'a>(&'a self, tree: &'a dyn Tree, opaque: &'a [TargetPath]) -> Counted<'a> {
        let limit = NAME_LOOKUPS.min(self.left.get());
        Counted {
            tree,
            opaque,
            budget: self,
            limit,
            used: std::cell::Cell::new(0),
        }
    }
}

/// A tree whose lookups are counted (see [`Budget::for_name`]).
pub struct Counted<'a> {
    tree: &'a dyn Tree,
    opaque: &'a [TargetPath],
    budget: &'a Budget,
    limit: u64,
    used: std::cell::Cell<u64>,
}

impl Counted<'_> {
    /// Why this name's decoding was cut short, if it was: the decoding is then not
    /// to be trusted, and the entry is skipped with this reason.
    pub fn exhausted(&self) -> Option<String> {
        if self.used.get() <= self.limit && self.limit > 0 {
            return None;
        }
        Some(if self.limit < NAME_LOOKUPS {
            format!(
                "not decoded: the DIRS/ pass used its {PASS_LOOKUPS} lookups (a hostile tree or too many ambiguous names); name it exactly with '__' or use a [[mount]]"
            )
        } else {
            format!(
                "not decoded: it needs more than {NAME_LOOKUPS} lookups in the image (a deep or looping tree); name it exactly with '__' or use a [[mount]]"
            )
        })
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let spent = self.used.get().min(self.limit);
        self.budget
            .left
            .set(self.budget.left.get().saturating_sub(spent));
    }
}

impl Tree for Counted<'_> {
    fn exhausted(&self) -> bool {
        self.used.get() > self.limit
    }

    fn lstat(&self, path: &[String]) -> Option<Node> {
        let used = self.used.get() + 1;
        self.used.set(used);
        if used > self.limit {
            return None;
        }
        // A place overboot mounts itself is an empty directory to decoding.
        for place in self.opaque {
            let p = place.components();
            if path == p {
                return Some(Node::Dir);
            }
            if path.starts_with(p) {
                return None;
            }
        }
        self.tree.lstat(path)
    }
}

/// Decode a reading against a tree. The reading that names an existing path wins
/// (longer components tried first, so `x86_64-linux-gnu` beats `x86`/`64-linux-gnu`);
/// when none exists, the longest existing directory prefix is kept and the rest is
/// split at every `_`.
pub fn decode(reading: &Reading, tree: &dyn Tree) -> Decoded {
    let tokens = match reading {
        Reading::Exact(p) => {
            return Decoded {
                target: p.clone(),
                also_exist: vec![],
            };
        }
        Reading::Tokens(t) => t,
    };
    let mut found = Vec::new();
    find_existing(tokens, 0, &mut Vec::new(), tree, &mut found);
    if let Some(first) = found.first() {
        return Decoded {
            target: TargetPath(first.clone()),
            also_exist: found[1..].iter().cloned().map(TargetPath).collect(),
        };
    }
    // Nothing exists: keep the longest existing directory prefix.
    let mut path: Vec<String> = Vec::new();
    let mut i = 0;
    'outer: while i < tokens.len() && !tree.exhausted() {
        for k in (1..=tokens.len() - i).rev() {
            let mut candidate = path.clone();
            candidate.push(tokens[i..i + k].join("_"));
            if tree.kind(&candidate) == Some(NodeKind::Dir) {
                path = candidate;
                i += k;
                continue 'outer;
            }
        }
        break;
    }
    path.extend(tokens[i..].iter().cloned());
    Decoded {
        target: TargetPath(path),
        also_exist: vec![],
    }
}

/// Depth-first search for every segmentation that exists; results in preference
/// order (longer first components first). Stops after two: one wins, one proves an
/// ambiguity.
fn find_existing(
    tokens: &[String],
    start: usize,
    path: &mut Vec<String>,
    tree: &dyn Tree,
    found: &mut Vec<Vec<String>>,
) {
    for k in (1..=tokens.len() - start).rev() {
        if found.len() >= 2 || tree.exhausted() {
            return;
        }
        path.push(tokens[start..start + k].join("_"));
        match tree.kind(path) {
            Some(_) if start + k == tokens.len() => found.push(path.clone()),
            Some(NodeKind::Dir) => find_existing(tokens, start + k, path, tree, found),
            _ => {}
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree given as a list of paths; directories end with '/', symlinks are
    /// `path -> text`.
    struct ListTree(BTreeMap<Vec<String>, Node>);

    fn tree(paths: &[&str]) -> ListTree {
        let mut map = BTreeMap::new();
        for p in paths {
            let (p, kind) = match p.split_once(" -> ") {
                Some((p, t)) => (p, Node::Symlink(t.to_string())),
                None if p.ends_with('/') => (*p, Node::Dir),
                None => (*p, Node::File),
            };
            let comps: Vec<String> = p.trim_matches('/').split('/').map(str::to_string).collect();
            for n in 1..comps.len() {
                map.entry(comps[..n].to_vec()).or_insert(Node::Dir);
            }
            map.insert(comps, kind);
        }
        ListTree(map)
    }

    impl Tree for ListTree {
        fn lstat(&self, path: &[String]) -> Option<Node> {
            if path.is_empty() {
                return Some(Node::Dir);
            }
            self.0.get(path).cloned()
        }
    }

    fn decode_name(name: &str, t: &dyn Tree) -> Result<String, String> {
        let e = parse_entry_name(name, true)?;
        Ok(decode(&e.reading, t).target.to_string())
    }

    #[test]
    fn decoding_table() {
        let image = tree(&[
            "etc/ssh/",
            "usr/lib/x86_64-linux-gnu/",
            "usr/lib/x86/",
            "lib64/firmware/",
            "opt/",
            "etc/hostname",
            "var/lib/foo_bar/",
            "var/lib/foo/bar/",
        ]);
        let table = [
            ("DIR_etc_ssh", "/etc/ssh"),
            ("DIR_usr_lib_x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
            ("DIR_lib64_firmware.squashfs.xz", "/lib64/firmware"),
            ("DIR_lib64_firmware.squashfs", "/lib64/firmware"),
            ("DIR_lib64_firmware.sqfs", "/lib64/firmware"),
            ("FILE_etc_hostname", "/etc/hostname"),
            // Missing target: the existing prefix is kept, the rest split at '_'.
            ("DIR_opt_my_app_data", "/opt/my/app/data"),
            ("DIR_srv_www", "/srv/www"),
            // The escape says it exactly.
            ("DIR_opt_my__app", "/opt/my_app"),
            ("DIR_etc__", "/etc_"),
            ("DIR_a___b", "/a_/b"),
            // Both readings exist: the longer component wins, deterministically.
            ("DIR_var_lib_foo_bar", "/var/lib/foo_bar"),
            // FILE_ keeps its extension: it is part of the file name.
            ("FILE_etc_x.squashfs", "/etc/x.squashfs"),
        ];
        for (name, want) in table {
            assert_eq!(decode_name(name, &image).as_deref(), Ok(want), "{name}");
        }
    }

    #[test]
    fn ambiguity_is_reported() {
        let image = tree(&["var/lib/foo_bar/", "var/lib/foo/bar/"]);
        let e = parse_entry_name("DIR_var_lib_foo_bar", true).unwrap();
        let d = decode(&e.reading, &image);
        assert_eq!(d.target.to_string(), "/var/lib/foo_bar");
        assert_eq!(d.also_exist.len(), 1);
        assert_eq!(d.also_exist[0].to_string(), "/var/lib/foo/bar");
    }

    #[test]
    fn hostile_and_broken_names_are_refused() {
        let table = [
            ("DIR_", "no path"),
            ("DIR__etc", "empty path component"),
            ("DIR_etc_", "trailing"),
            ("DIR_etc__ssh_", "trailing"),
            ("DIR_etc_.._shadow", "'..' is not allowed"),
            ("DIR_.._.._x", "'..' is not allowed"),
            ("DIR_._x", "'.' is not allowed"),
            ("FILE_..", "'..' is not allowed"),
            ("DIR_.squashfs", "no path"),
            ("etc_ssh", "neither DIR_ nor FILE_"),
            ("dir_etc", "neither DIR_ nor FILE_"),
        ];
        for (name, want) in table {
            let err = parse_entry_name(name, true).expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn directories_keep_their_extension() {
        let e = parse_entry_name("DIR_srv_a.squashfs", false).unwrap();
        assert_eq!(e.image_extension, None);
        assert_eq!(
            decode(&e.reading, &EmptyTree).target.to_string(),
            "/srv/a.squashfs"
        );
    }

    #[test]
    fn decoding_cost_is_bounded() {
        // Every prefix exists: the search must still stop quickly.
        struct Everything;
        impl Tree for Everything {
            fn lstat(&self, _: &[String]) -> Option<Node> {
                Some(Node::Dir)
            }
        }
        let name = format!("DIR_{}", vec!["a"; 60].join("_"));
        let e = parse_entry_name(&name, true).unwrap();
        let d = decode(&e.reading, &Everything);
        assert_eq!(d.target.components().len(), 1);
    }

    #[test]
    fn canonical_follows_links_inside_the_tree() {
        let t = tree(&[
            "etc/",
            "srv/ssh/",
            "etc/ssh -> ../srv/ssh",
            "etc/up -> ../../../../x",
            "etc/abs -> /srv",
            "etc/loop -> loop",
            "etc/hostname",
        ]);
        let c = |p: &str| {
            canonical(
                &t,
                &p.trim_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            c("/etc/ssh").unwrap(),
            (
                vec!["srv".to_string(), "ssh".to_string()],
                Some(NodeKind::Dir)
            )
        );
        assert_eq!(c("/etc/up").unwrap(), (vec!["x".to_string()], None));
        assert_eq!(
            c("/etc/abs/ssh/new/deeper").unwrap().0.join("/"),
            "srv/ssh/new/deeper"
        );
        assert!(c("/etc/loop").unwrap_err().contains("too many symlinks"));
        assert!(
            c("/etc/hostname/x")
                .unwrap_err()
                .contains("not a directory")
        );
        assert_eq!(c("/etc/hostname").unwrap().1, Some(NodeKind::File));
    }

    #[test]
    fn absolute_targets() {
        assert_eq!(
            TargetPath::parse_absolute("/opt/my_app/")
                .unwrap()
                .to_string(),
            "/opt/my_app"
        );
        for bad in ["opt", "/", "/a//b", "/a/../b", "/./a"] {
            assert!(TargetPath::parse_absolute(bad).is_err(), "{bad}");
        }
    }

    /// Issue 10 item 2: a directory `a/a/…/a` 120 deep and names that walk it. On
    /// main one such name cost 388,823 lookups.
    struct Deep {
        depth: usize,
        lookups: std::cell::Cell<u64>,
    }

    impl Tree for Deep {
        fn lstat(&self, path: &[String]) -> Option<Node> {
            self.lookups.set(self.lookups.get() + 1);
            (path.len() <= self.depth && path.iter().all(|c| c == "a")).then_some(Node::Dir)
        }
    }

    #[test]
    fn decoding_is_bounded_per_name_and_per_pass() {
        let deep = Deep {
            depth: 120,
            lookups: std::cell::Cell::new(0),
        };
        let name = |i: usize| format!("DIR_{}z{i}", "a_".repeat(120));
        let budget = Budget::new(PASS_LOOKUPS);
        let mut reasons = Vec::new();
        for i in 0..100 {
            let before = deep.lookups.get();
            let e = parse_entry_name(&name(i), false).unwrap();
            let counted = budget.for_name(&deep, &[]);
            decode(&e.reading, &counted);
            let _ = canonical(&counted, &["a".to_string()]);
            reasons.push(
                counted
                    .exhausted()
                    .expect("a 120-deep walk exceeds one name's budget"),
            );
            drop(counted);
            assert!(deep.lookups.get() - before <= NAME_LOOKUPS, "name {i}");
        }
        assert!(deep.lookups.get() <= PASS_LOOKUPS, "{}", deep.lookups.get());
        assert!(
            reasons[0].contains("more than 4096 lookups"),
            "{}",
            reasons[0]
        );
        assert!(
            reasons[99].contains("the DIRS/ pass used its"),
            "{}",
            reasons[99]
        );
    }

    #[test]
    fn reserved_places_are_not_walked() {
        let deep = Deep {
            depth: 120,
            lookups: std::cell::Cell::new(0),
        };
        let budget = Budget::new(PASS_LOOKUPS);
        let opaque = [TargetPath::parse_absolute("/a/a").unwrap()];
        let e = parse_entry_name(&format!("DIR_{}z", "a_".repeat(120)), false).unwrap();
        let counted = budget.for_name(&deep, &opaque);
        let d = decode(&e.reading, &counted);
        assert!(counted.exhausted().is_none());
        // Three levels of 121 readings each, not 120 (which exhausts the budget).
        assert!(deep.lookups.get() < 1000, "{}", deep.lookups.get());
        assert_eq!(d.target.components().len(), 121);
    }
}
