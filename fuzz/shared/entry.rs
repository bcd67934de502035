//! The fuzz entry points, shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`)
//! and the corpus replay test (`tests/fuzz_corpus.rs`), so CI (stable, no libFuzzer)
//! runs every committed input through exactly the code the fuzzer ran.
//!
//! Each function takes raw fuzzer bytes, feeds them to one parser and asserts the
//! invariants that are cheap to check. A panic is a finding.
#![allow(dead_code)]

use overboot::cmdline::{self, DeviceSpec, OnFail, OverlaySize, SystemChoice};
use overboot::kmod::ModuleIndex;
use overboot::kmod::parse as kparse;
use overboot::manifest::{self, ManifestKind};
use overboot::names::{self, EmptyTree, Node, Reading, TargetPath, Tree};
use overboot::probe::fs::{ReadAt, probe_fs};
use overboot::probe::parts::{crc32, parse_table};
use overboot::superblock;
use overboot::trial::{self as tr, Disk, First, Slot, Status, Trial};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("cmdline", cmdline),
    ("manifest", manifest),
    ("names", names),
    ("probe", probe),
    ("kmod", kmod),
    ("trial", trial),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A path is what [`TargetPath`] promises: no empty, `.`, `..`, `/` or NUL component.
fn assert_valid_target(t: &TargetPath, what: &str) {
    for c in t.components() {
        assert!(
            !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0'),
            "{what}: bad component {c:?} in {t:?}"
        );
    }
    if !t.is_root() {
        assert_eq!(
            TargetPath::parse_absolute(&t.to_string()).as_ref(),
            Ok(t),
            "{what}: display/parse round trip"
        );
    }
}

// ---------------------------------------------------------------------------
// Kernel command line

fn check_device_spec(d: &DeviceSpec) {
    assert_eq!(
        DeviceSpec::parse(&d.to_string()).as_ref(),
        Ok(d),
        "DeviceSpec round trip"
    );
}

fn check_system(s: &SystemChoice) {
    assert_eq!(
        SystemChoice::parse(&s.to_string()).as_ref(),
        Ok(s),
        "SystemChoice round trip"
    );
}

fn check_overlay(o: OverlaySize) {
    let spelled = match o {
        OverlaySize::Percent(p) => {
            assert!((1..=100).contains(&p), "percent {p} out of range");
            format!("tmpfs:size={p}%")
        }
        OverlaySize::Bytes(b) => {
            // tmpfs reads size=0 as "no limit": a parsed size is never 0.
            assert!(b > 0, "overlay size 0 would be an unlimited tmpfs");
            assert_eq!(b % (1 << 20), 0, "overlay bytes {b} not whole MiB");
            format!("tmpfs:size={}M", b >> 20)
        }
    };
    assert_eq!(
        cmdline::parse_overlay(&spelled),
        Ok(o),
        "overlay round trip"
    );
    let _ = o.tmpfs_option();
}

pub fn cmdline(data: &[u8]) {
    let line = text(data);
    for w in cmdline::split_words(&line) {
        assert!(!w.contains('"'), "quote left in word {w:?}");
    }
    let parsed = cmdline::parse(&line);
    let s = &parsed.settings;
    if let Some(d) = &s.bootext {
        check_device_spec(d);
    }
    if let Some(sys) = &s.system {
        check_system(sys);
    }
    if let Some(o) = s.overlay {
        check_overlay(o);
    }
    if let Some(init) = &s.init {
        assert!(init.starts_with('/'), "init {init:?} not absolute");
    }
    // Deterministic, and layering/resolving never fails.
    assert_eq!(cmdline::parse(&line), parsed);
    let _ = parsed.settings.clone().over(Default::default()).resolve();
    // The value parsers on their own, on the whole text.
    if let Ok(d) = DeviceSpec::parse(&line) {
        check_device_spec(&d);
    }
    if let Ok(sys) = SystemChoice::parse(&line) {
        check_system(&sys);
    }
    if let Ok(o) = cmdline::parse_overlay(&line) {
        check_overlay(o);
    }
    let _ = OnFail::parse(&line);
}

// ---------------------------------------------------------------------------
// Manifest

pub fn manifest(data: &[u8]) {
    let m = manifest::parse(&text(data));
    if m.syntax_error {
        assert!(m.mounts.is_empty(), "mounts from an unparsable manifest");
    }
    for mount in &m.mounts {
        assert!(!mount.target.is_root(), "mount on the new root itself");
        assert_valid_target(&mount.target, "manifest target");
        match (&mount.kind, &mount.source) {
            (ManifestKind::Tmpfs, s) => assert!(s.is_none(), "tmpfs with a source"),
            (_, None) => panic!("bind/image mount without a source"),
            (_, Some(src)) => {
                assert!(!src.starts_with('/'), "absolute source {src:?}");
                assert!(
                    src.split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."),
                    "source {src:?} escapes BootExt"
                );
            }
        }
        if mount.kind == ManifestKind::Image {
            assert!(mount.read_only, "image mounted writable");
        }
    }
    if let Some(o) = m.settings.overlay {
        check_overlay(o);
    }
    if let Some(sys) = &m.settings.system {
        check_system(sys);
    }
    if let Some(init) = &m.settings.init {
        assert!(init.starts_with('/'), "init {init:?} not absolute");
    }
}

// ---------------------------------------------------------------------------
// DIR_/FILE_ names

/// A small in-memory tree: one path per line, directories end with `/`, symlinks
/// are `path -> target`, anything else is a file. At most 64 lines of 128
/// components: every parent is a key of its own, so building the map is quadratic in
/// a line's depth (a 1,000-deep line made the target run at 1,600 inputs/s); deeper
/// is reached through symlinks, as on a real stick.
pub struct ListTree(BTreeMap<Vec<String>, Node>);

impl ListTree {
    pub fn parse(lines: &str) -> ListTree {
        let mut map = BTreeMap::new();
        for line in lines.lines().take(64) {
            let (path, node) = match line.split_once(" -> ") {
                Some((p, t)) => (p, Node::Symlink(t.to_string())),
                None if line.ends_with('/') => (line, Node::Dir),
                None => (line, Node::File),
            };
            let comps: Vec<String> = path
                .split('/')
                .filter(|c| !c.is_empty())
                .take(128)
                .map(str::to_string)
                .collect();
            if comps.is_empty() {
                continue;
            }
            for n in 1..comps.len() {
                map.entry(comps[..n].to_vec()).or_insert(Node::Dir);
            }
            map.insert(comps, node);
        }
        ListTree(map)
    }
}

impl Tree for ListTree {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        if path.is_empty() {
            return Some(Node::Dir);
        }
        self.0.get(path).cloned()
    }
}

/// Input: first byte bit 0 = strip the image extension; then the entry name on the
/// first line, the tree (see [`ListTree`]) on the following lines.
pub fn names(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let strip = flags & 1 == 1;
    let all = text(rest);
    let (name, tree_text) = all.split_once('\n').unwrap_or((&all, ""));
    let tree = ListTree::parse(tree_text);

    let Ok(entry) = names::parse_entry_name(name, strip) else {
        return;
    };
    let body = name
        .strip_prefix("DIR_")
        .or_else(|| name.strip_prefix("FILE_"))
        .expect("accepted name has a prefix");
    let body = match entry.image_extension {
        Some(ext) => body.strip_suffix(ext).expect("extension is a suffix"),
        None => body,
    };
    match &entry.reading {
        Reading::Exact(p) => {
            assert!(!p.is_root(), "exact reading of nothing");
            assert_valid_target(p, "exact reading");
            // Escaping the components again gives the name back.
            let again: Vec<String> = p
                .components()
                .iter()
                .map(|c| c.replace('_', "__"))
                .collect();
            assert_eq!(again.join("_"), body, "exact reading re-encodes");
        }
        Reading::Tokens(t) => {
            assert!(!t.is_empty(), "no tokens");
            for tok in t {
                assert!(!tok.contains('_'), "token {tok:?} holds '_'");
            }
            assert_eq!(t.join("_"), body, "tokens re-join");
            let plain = names::decode(&entry.reading, &EmptyTree);
            assert_eq!(
                plain.target.components(),
                &t[..],
                "empty tree splits at '_'"
            );
        }
    }
    // The lookup budget (issue 10 item 2): whatever the name and the tree, one name
    // costs at most NAME_LOOKUPS lookups of the tree, decoding and resolving its
    // target included, and a name cut short says so. The boot always decodes
    // through a budget; this is that path.
    let counting = Counting {
        tree: &tree,
        lookups: std::cell::Cell::new(0),
    };
    let budget = names::Budget::new(names::PASS_LOOKUPS);
    let counted = budget.for_name(&counting, &[]);
    let decoded = names::decode(&entry.reading, &counted);
    let cut = counted.exhausted();
    // Resolving the target in the tree terminates and stays inside it.
    if let Ok((real, _)) = names::canonical(&counted, decoded.target.components()) {
        for c in &real {
            assert!(!c.is_empty() && c != "." && c != "..", "canonical {real:?}");
        }
    }
    drop(counted);
    let spent = counting.lookups.get();
    assert!(spent <= names::NAME_LOOKUPS, "{spent} lookups for one name");

    assert!(!decoded.target.is_root(), "decoded to the root");
    assert_valid_target(&decoded.target, "decoded target");
    if let Reading::Tokens(_) = entry.reading {
        assert_eq!(
            decoded.target.components().join("_"),
            body,
            "decoded re-joins"
        );
    }
    for other in &decoded.also_exist {
        assert_valid_target(other, "ambiguous reading");
        assert_ne!(other, &decoded.target, "ambiguity with itself");
    }
    // A name within its budget decodes as without one. Only then: without a budget
    // the search is exponential in the tokens over a tree of self-links (a 368-byte
    // input ran for more than 10 s, regressions/names/unbudgeted-search-is-exponential).
    if cut.is_none() {
        assert_eq!(
            names::decode(&entry.reading, &tree),
            decoded,
            "a name within its budget decodes as without one"
        );
    }
}

/// A tree that counts the lookups made of it.
struct Counting<'a> {
    tree: &'a ListTree,
    lookups: std::cell::Cell<u64>,
}

impl Tree for Counting<'_> {
    fn lstat(&self, path: &[String]) -> Option<Node> {
        self.lookups.set(self.lookups.get() + 1);
        self.tree.lstat(path)
    }
}

// ---------------------------------------------------------------------------
// Superblocks and partition tables

/// A device described compactly, so that a fuzz input can put bytes at 32 KiB
/// (ISO 9660) or 64 KiB (btrfs) without being that long: records of
/// `[sector: u16 LE][len: u16 LE][len bytes]`, sector in 512-byte units, later
/// records over earlier ones, zeros elsewhere. The device ends where the last
/// byte of any record ends (a record with len 0 only sets the size).
pub struct Sparse<'a> {
    pub len: u64,
    pub segs: Vec<(u64, &'a [u8])>,
}

impl<'a> Sparse<'a> {
    pub fn decode(mut data: &'a [u8]) -> Sparse<'a> {
        let mut segs = Vec::new();
        let mut len = 0u64;
        while data.len() >= 4 {
            let sector = u64::from(u16::from_le_bytes([data[0], data[1]]));
            let n = usize::from(u16::from_le_bytes([data[2], data[3]])).min(data.len() - 4);
            let bytes = &data[4..4 + n];
            let at = sector * 512;
            len = len.max(at + n as u64);
            segs.push((at, bytes));
            data = &data[4 + n..];
        }
        Sparse { len, segs }
    }

    /// The inverse, for building seeds from real images: every 512-byte sector
    /// that is not all zeros, merged into runs.
    pub fn encode(image: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let sectors = image.len().div_ceil(512).min(usize::from(u16::MAX));
        let mut s = 0;
        while s < sectors {
            let nonzero = |s: usize| {
                image[s * 512..((s + 1) * 512).min(image.len())]
                    .iter()
                    .any(|&b| b != 0)
            };
            if !nonzero(s) {
                s += 1;
                continue;
            }
            let start = s;
            while s < sectors && nonzero(s) && (s + 1 - start) * 512 <= usize::from(u16::MAX) {
                s += 1;
            }
            let bytes = &image[start * 512..(s * 512).min(image.len())];
            out.extend_from_slice(&(start as u16).to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let end = (image.len() / 512).min(usize::from(u16::MAX)) as u16;
        out.extend_from_slice(&end.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }
}

impl ReadAt for Sparse<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = usize::try_from(self.len - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let buf = &mut buf[..n];
        buf.fill(0);
        let end = offset + n as u64;
        for &(at, bytes) in &self.segs {
            let seg_end = at + bytes.len() as u64;
            if seg_end <= offset || at >= end {
                continue;
            }
            let from = offset.max(at);
            let to = end.min(seg_end);
            let dst = (from - offset) as usize..(to - offset) as usize;
            let src = (from - at) as usize..(to - at) as usize;
            buf[dst].copy_from_slice(&bytes[src]);
        }
        Ok(n)
    }
}

pub fn probe(data: &[u8]) {
    let dev = Sparse::decode(data);

    let mut head = vec![0u8; superblock::PROBE_LEN];
    let n = dev.read_at(0, &mut head).expect("sparse read");
    head.truncate(n);
    if let Ok(sq) = superblock::check_squashfs(&head, dev.len) {
        assert!(sq.bytes_used <= dev.len, "bytes_used beyond the file");
        assert!(sq.bytes_used >= superblock::SUPERBLOCK_LEN as u64);
        assert!(
            sq.block_size.is_power_of_two(),
            "block size {}",
            sq.block_size
        );
    }
    let _ = superblock::identify_foreign(&head);

    if let Some(fs) = probe_fs(&dev) {
        for s in [&fs.label, &fs.uuid].into_iter().flatten() {
            assert!(
                !s.is_empty(),
                "{}: empty label/uuid instead of None",
                fs.fs_type
            );
            assert!(!s.contains('\0'), "{}: NUL in {s:?}", fs.fs_type);
        }
    }

    check_table(&dev);
    // The fuzzer cannot forge CRC-32s: run the GPT parser again with them made
    // right, so mutated headers and entries get past the checksums.
    if let Some(img) = with_gpt_crcs_fixed(&dev) {
        check_table(&img);
    }
}

fn check_table(dev: &(impl ReadAt + ?Sized)) {
    if let Some(table) = parse_table(dev) {
        assert!(matches!(table.sector_size, 512 | 4096));
        let mut seen = BTreeSet::new();
        for e in &table.entries {
            assert!(e.number >= 1, "partition number 0");
            assert!(seen.insert(e.number), "partition {} twice", e.number);
            assert!(!e.part_uuid.is_empty(), "empty PARTUUID");
            if let Some(l) = &e.part_label {
                assert!(!l.is_empty() && !l.contains('\0'), "PARTLABEL {l:?}");
            }
        }
    }
}

/// The first 64 KiB of `dev` with the CRCs of a GPT header at 512 or 4096 (and of
/// its entry array, where that lies inside) recomputed; `None` without a header.
fn with_gpt_crcs_fixed(dev: &Sparse) -> Option<Vec<u8>> {
    let mut img = vec![0u8; usize::try_from(dev.len.min(1 << 16)).ok()?];
    let n = dev.read_at(0, &mut img).ok()?;
    img.truncate(n);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut any = false;
    for sector in [512usize, 4096] {
        let Some(hdr) = img.get(sector..sector + 512) else {
            continue;
        };
        if &hdr[..8] != b"EFI PART" {
            continue;
        }
        any = true;
        let hdr_size = u32_at(hdr, 12) as usize;
        let lba = u64::from(u32_at(hdr, 72)) | (u64::from(u32_at(hdr, 76)) << 32);
        let total = u64::from(u32_at(hdr, 80)) * u64::from(u32_at(hdr, 84));
        let start = lba.saturating_mul(sector as u64);
        if let Some(end) = start.checked_add(total)
            && end <= img.len() as u64
        {
            let crc = crc32(&img[start as usize..end as usize]);
            img[sector + 88..sector + 92].copy_from_slice(&crc.to_le_bytes());
        }
        if (92..=512).contains(&hdr_size) {
            let mut h = img[sector..sector + hdr_size].to_vec();
            h[16..20].fill(0);
            let crc = crc32(&h);
            img[sector + 16..sector + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    any.then_some(img)
}

// ---------------------------------------------------------------------------
// depmod metadata

/// Input: `modules.dep`, `modules.alias`, `modules.softdep`, `modules.builtin` and
/// `modules.builtin.modinfo`, separated by 0xFF bytes (never in UTF-8 text).
pub fn kmod(data: &[u8]) {
    let mut parts = data.splitn(5, |&b| b == 0xff);
    let mut next = || parts.next().unwrap_or(&[]);
    let (dep, alias, softdep, builtin, modinfo) = (next(), next(), next(), next(), next());
    let (dep, alias, softdep, builtin) = (text(dep), text(alias), text(softdep), text(builtin));

    let deps = kparse::parse_modules_dep(&dep);
    for d in &deps {
        assert!(!d.name.contains('-'), "name {:?} not normalised", d.name);
        assert!(!d.path.is_empty());
    }
    let aliases = kparse::parse_modules_alias(&alias);
    let softdeps = kparse::parse_modules_softdep(&softdep);
    for s in &softdeps {
        assert!(
            !s.pre.is_empty() || !s.post.is_empty(),
            "empty softdep kept"
        );
    }
    let builtins = kparse::parse_modules_builtin(&builtin);
    let builtin_aliases = kparse::parse_builtin_modinfo(modinfo);
    for a in &builtin_aliases {
        assert!(!a.module.is_empty() && !a.module.contains('.'));
        assert!(!a.pattern.is_empty());
    }

    // Names to ask for: the first words of each text (module names, patterns...).
    let words: Vec<String> = [&dep, &alias, &softdep, &builtin]
        .iter()
        .flat_map(|t| t.split_whitespace().take(3))
        .map(str::to_string)
        .collect();
    for a in aliases.iter().take(8) {
        for w in words.iter().take(8) {
            let _ = kparse::glob_match(&kparse::normalize_alias(&a.pattern), w);
        }
    }

    let index = ModuleIndex::from_parts(deps, aliases, softdeps, builtins, builtin_aliases);
    let wanted: Vec<&str> = words.iter().map(String::as_str).collect();
    let r = index.resolve(&wanted);
    let mut seen = BTreeSet::new();
    for m in &r.load {
        assert!(seen.insert(m.name.clone()), "{} loaded twice", m.name);
    }
}

// ---------------------------------------------------------------------------
// Trial record (`System/trial`) and the trial state machine

/// Byte 0 sets the disk around the record: bit 0 `active-system` names the record's
/// image (else another), bit 1 no `active-system` at all, bit 2 `previous-system`
/// exists, bit 3 it passes the checks, bit 4 the boot's writes fail. The rest is the
/// text of `System/trial`.
pub fn trial(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = text(rest);
    let parsed = tr::parse(&text);
    assert_eq!(parsed, tr::parse(&text), "parse is deterministic");
    let image = match &parsed {
        Ok(t) => {
            check_trial_record(t);
            t.image.clone()
        }
        Err(e) => {
            assert!(!e.is_empty(), "an error says what is wrong");
            "v2.squashfs".to_string()
        }
    };
    let disk = Disk {
        active: (flags & 2 == 0).then(|| {
            if flags & 1 != 0 {
                image.clone()
            } else {
                "other.squashfs".to_string()
            }
        }),
        previous: (flags & 4 != 0).then(|| "v1.squashfs".to_string()),
        previous_ok: flags & 8 != 0,
        trial: match parsed {
            Ok(t) => Slot::Present(t),
            Err(e) => Slot::Unreadable(e),
        },
    };
    let st = tr::status(&disk);
    assert_eq!(tr::describe(&st).is_none(), st == Status::None);
    check_boots(&disk, flags & 16 != 0);
    check_commands(&disk, &image);
}

/// A parsed record keeps its promises and reads back as written.
fn check_trial_record(t: &Trial) {
    assert!(
        !t.image.is_empty() && !t.image.contains('/') && !tr::reserved_name(&t.image),
        "image {:?}",
        t.image
    );
    assert!(t.boots_left <= t.tries && t.tries <= tr::MAX_TRIES, "{t:?}");
    let written = tr::render(t);
    let back = tr::parse(&written).unwrap_or_else(|e| panic!("render/parse: {e}\n{written}"));
    let want = Trial {
        reason: t.reason.as_ref().map(|r| r.replace(['\n', '\r'], " ")),
        ..t.clone()
    };
    assert_eq!(back, want, "render/parse round trip of\n{written}");
}

/// Boots in a row, each making its writes (or failing them): an image chosen on
/// purpose comes with its reason, the trial image never boots uncounted, and the
/// countdown ends: within `boots-left` + 2 boots nothing is written any more.
fn check_boots(start: &Disk, writes_fail: bool) {
    let limit = match &start.trial {
        Slot::Present(t) => t.boots_left + 2,
        _ => 2,
    };
    let mut d = start.clone();
    for _ in 0..=limit {
        let before = tr::status(&d);
        let plan = tr::boot(&d);
        if matches!(before, Status::RollbackUnfinished(_))
            || matches!(&before, Status::Pending(t) if t.boots_left == 0)
        {
            assert_eq!(
                plan.first,
                First::Previous,
                "a spent trial boots {before:?}"
            );
        }
        let plan = if writes_fail && !plan.steps.is_empty() {
            let p = tr::boot_write_failed(plan, "EROFS");
            assert!(p.steps.is_empty());
            if matches!(before, Status::Pending(_)) {
                assert_eq!(p.first, First::Previous, "uncounted trial boot");
            }
            p
        } else {
            plan
        };
        if plan.first == First::Previous {
            assert!(plan.reason.is_some(), "the previous image without a reason");
        }
        if plan.steps.is_empty() {
            return;
        }
        let next = plan.steps.iter().fold(d.clone(), |d, s| tr::apply(&d, s));
        if let (Status::Pending(a), Status::Pending(b)) = (&before, &tr::status(&next)) {
            assert!(
                b.boots_left < a.boots_left,
                "the countdown went {a:?} -> {b:?}"
            );
        }
        d = next;
    }
    panic!("still writing after {limit} boots from {start:?}: {d:?}");
}

/// `bless`, `rollback` and `set-active` answer with steps or a message; what their
/// steps leave is what they say, and no prefix of a trial's steps lets the new
/// image boot uncounted.
fn check_commands(d: &Disk, image: &str) {
    let apply_all = |steps: &[tr::Step]| steps.iter().fold(d.clone(), |d, s| tr::apply(&d, s));
    for booted in [Some(image), None] {
        if let Ok((steps, _)) = tr::bless(d, booted)
            && !steps.is_empty()
        {
            assert_eq!(tr::status(&apply_all(&steps)), Status::None, "blessed");
        }
    }
    if let Ok((steps, _)) = tr::rollback(d) {
        let after = apply_all(&steps);
        assert_eq!(
            after.active, d.previous,
            "rollback makes previous-system active"
        );
        assert!(
            !matches!(tr::status(&after), Status::Pending(_)),
            "{after:?}"
        );
    }
    let new = "v3.squashfs";
    for tries in [Some(3), None] {
        let Ok((steps, _)) = tr::set_active(d, new, tries, true) else {
            continue;
        };
        let mut p = d.clone();
        for s in &steps {
            p = tr::apply(&p, s);
            if tries.is_some() && p.active.as_deref() == Some(new) {
                assert!(
                    matches!(tr::status(&p), Status::Pending(_)),
                    "uncounted: {p:?}"
                );
            }
        }
        assert_eq!(p.active.as_deref(), Some(new), "set-active {new}: {p:?}");
    }
}
