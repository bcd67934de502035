//! Pure parsers for the depmod metadata in `/lib/modules/<kver>/`: text in, data out.
//!
//! Lines that do not parse are skipped (depmod writes these files; a damaged line must
//! not stop a boot), and every function here is total: no panics on any input.

/// Module names are compared with `-` and `_` as the same character, as the kernel
/// does (`KBUILD_MODNAME` turns `-` into `_`): `usb-storage` ≡ `usb_storage`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// An alias or glob pattern normalised like a module name, except inside `[...]`
/// where `-` is a range (`[0-9]`) and must stay.
pub fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_class = false;
    for c in alias.chars() {
        match c {
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '-' if !in_class => out.push('_'),
            _ => out.push(c),
        }
    }
    out
}

/// Suffixes of module files, longest first.
pub const MODULE_SUFFIXES: &[&str] = &[".ko.zst", ".ko.xz", ".ko.gz", ".ko"];

/// The module name a file path stands for: `kernel/fs/fat/nls_iso8859-1.ko.xz` →
/// `nls_iso8859_1`.
pub fn module_name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = MODULE_SUFFIXES
        .iter()
        .find_map(|s| base.strip_suffix(s))
        .unwrap_or(base);
    normalize(stem)
}

/// One line of `modules.dep`: `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    /// Normalised module name.
    pub name: String,
    /// Path of the module file, relative to the modules directory (as written).
    pub path: String,
    /// Paths of every module it needs (the full closure, as depmod writes it).
    pub deps: Vec<String>,
}

pub fn parse_modules_dep(text: &str) -> Vec<DepEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        out.push(DepEntry {
            name: module_name_from_path(path),
            path: path.to_string(),
            deps: deps.split_whitespace().map(str::to_string).collect(),
        });
    }
    out
}

/// One `alias PATTERN MODULE` line (also used for built-in aliases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The glob pattern as written (`virtio:d00000002v*`).
    pub pattern: String,
    /// The module name as written.
    pub module: String,
}

pub fn parse_modules_alias(text: &str) -> Vec<Alias> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("alias") {
            continue;
        }
        if let (Some(pattern), Some(module), None) = (words.next(), words.next(), words.next()) {
            out.push(Alias {
                pattern: pattern.to_string(),
                module: module.to_string(),
            });
        }
    }
    out
}

/// `softdep NAME pre: A B post: C`: modules to load before and after NAME.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoftDep {
    /// The module name as written.
    pub module: String,
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// Words before any `pre:`/`post:` are ignored, as modprobe ignores them
/// (`softdep cifs gcm` in Debian's file says nothing about order).
pub fn parse_modules_softdep(text: &str) -> Vec<SoftDep> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else {
            continue;
        };
        let mut dep = SoftDep {
            module: module.to_string(),
            ..SoftDep::default()
        };
        #[derive(PartialEq)]
        enum Mode {
            None,
            Pre,
            Post,
        }
        let mut mode = Mode::None;
        for w in words {
            match w {
                "pre:" => mode = Mode::Pre,
                "post:" => mode = Mode::Post,
                _ if mode == Mode::Pre => dep.pre.push(w.to_string()),
                _ if mode == Mode::Post => dep.post.push(w.to_string()),
                _ => {}
            }
        }
        if !dep.pre.is_empty() || !dep.post.is_empty() {
            out.push(dep);
        }
    }
    out
}

/// `modules.builtin`: one path per line → normalised module names.
pub fn parse_modules_builtin(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(module_name_from_path)
        .collect()
}

/// `modules.builtin.modinfo`: NUL-separated `module.key=value` records. Returns the
/// aliases of built-in modules (`sha256_generic.alias=sha256`).
pub fn parse_builtin_modinfo(data: &[u8]) -> Vec<Alias> {
    let mut out = Vec::new();
    for record in data.split(|&b| b == 0) {
        let Ok(record) = std::str::from_utf8(record) else {
            continue;
        };
        let Some((key, value)) = record.split_once('=') else {
            continue;
        };
        if let Some(module) = key.strip_suffix(".alias")
            && !module.is_empty()
            && !module.contains('.')
            && !value.is_empty()
        {
            out.push(Alias {
                pattern: value.to_string(),
                module: module.to_string(),
            });
        }
    }
    out
}

/// Shell-style glob match (`fnmatch` without flags): `*` any run of characters,
/// `?` one character, `[abc]`, `[a-z]`, `[!x]`/`[^x]` one character of a set,
/// `\x` a literal `x`. A `[` without its `]` is a literal `[`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class_match(p, pi, t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (t[ti] == b'[').then_some(1),
            },
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(2),
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// Match one byte against the class starting at `p[start] == b'['`. Returns
/// (matched, length of the class in the pattern), or None when the class has no `]`.
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = p[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    Some((matched != negate, i + 1 - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("usb-storage"), "usb_storage");
        assert_eq!(
            module_name_from_path("kernel/fs/nls/nls_iso8859-1.ko.xz"),
            "nls_iso8859_1"
        );
        assert_eq!(module_name_from_path("a/b/ext4.ko"), "ext4");
        assert_eq!(module_name_from_path("x.ko.zst"), "x");
        assert_eq!(normalize_alias("fs-ext4"), "fs_ext4");
        assert_eq!(normalize_alias("pci:v[0-9]-x"), "pci:v[0-9]_x");
    }

    #[test]
    fn dep() {
        let t = "# c\nkernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko\n\
                 kernel/fs/mbcache.ko:\nbroken line\n:\n";
        let d = parse_modules_dep(t);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "ext4");
        assert_eq!(d[0].deps, ["kernel/lib/crc16.ko", "kernel/fs/mbcache.ko"]);
        assert!(d[1].deps.is_empty());
    }

    #[test]
    fn alias_softdep_builtin() {
        let a = parse_modules_alias(
            "# x\nalias fs-ext4 ext4\nalias bad\nalias virtio:d00000002v* virtio_blk\n",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].pattern, "virtio:d00000002v*");
        let s = parse_modules_softdep(
            "softdep ext4 pre: crypto-crc32c\nsoftdep cifs gcm\nsoftdep m pre: a b post: c\nsoftdep\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].pre, ["a", "b"]);
        assert_eq!(s[1].post, ["c"]);
        assert_eq!(
            parse_modules_builtin("kernel/crypto/crc32c.ko\n\nkernel/lib/crc-ccitt.ko\n"),
            ["crc32c", "crc_ccitt"]
        );
        let m = parse_builtin_modinfo(
            b"sha256_generic.alias=sha256\0sha256_generic.license=GPL\0x.alias=\0\xff\0",
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].module, "sha256_generic");
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "virtio:d00000002v*",
            "virtio:d00000002v00001AF4"
        ));
        assert!(!glob_match(
            "virtio:d00000002v*",
            "virtio:d00000003v00001AF4"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("pci:v*d*sv*", "pci:v00008086d00001234sv0000"));
        assert!(glob_match("x[0-9]y", "x5y"));
        assert!(!glob_match("x[0-9]y", "xay"));
        assert!(glob_match("x[!0-9]y", "xay"));
        assert!(glob_match("x[^0-9]y", "xay"));
        assert!(glob_match("x[]]y", "x]y"));
        assert!(glob_match("x[a-]y", "x-y"));
        assert!(glob_match("x[y", "x[y"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("fs_ext4", "fs_ext4"));
        assert!(!glob_match("fs_ext4", "fs_ext"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("**a", "a"));
    }

    #[test]
    fn globs_never_panic() {
        let alphabet = ["[", "]", "!", "^", "-", "*", "?", "\\", "a"];
        let texts = ["", "a", "[", "]", "-", "a-]", "\\", "aa*"];
        // Every pattern of up to 4 of these characters.
        let mut pats = vec![String::new()];
        let mut last = pats.clone();
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            pats.extend(last.iter().cloned());
        }
        for p in &pats {
            for t in texts {
                let _ = glob_match(p, t);
            }
            assert!(glob_match(p, p) || p.contains(['[', '*', '?', '\\']), "{p}");
        }
    }
}
