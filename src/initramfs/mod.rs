//! `overboot mkinitramfs`: build the standalone initramfs (DESIGN section 4) — the
//! `overboot-init` build as `/init`, the kernel modules a boot needs (the groups of
//! [`crate::kmod::MODULE_GROUPS`] asked for, and what they need) with a small depmod
//! index of just those, `/dev/console`, `/sbin/modprobe` (a link to `/init`, see
//! [`crate::kmod::modprobe`]) and optionally busybox as a shell. Runs on the build
//! host, never at boot.
//!
//! The archive is reproducible: same inputs, same bytes.

pub mod cpio;
pub mod elf;
pub mod host;
pub mod keys;

use crate::kmod::{MODULE_GROUPS, ModuleIndex, Resolution, modules_for, parse};
use cpio::{Archive, Kind};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BUSYBOX: &str = "/bin/busybox";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Lz4,
    Zstd,
    Xz,
    Gzip,
    None,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            "xz" => Some(Compression::Xz),
            "gzip" | "gz" => Some(Compression::Gzip),
            "none" => Some(Compression::None),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub output: PathBuf,
    pub kver: Option<String>,
    pub modules_dir: Option<PathBuf>,
    /// None: choose ([`default_compression`]).
    pub compress: Option<Compression>,
    pub add_shell: bool,
    /// None: find `overboot-init` (see [`default_binary`]).
    pub binary: Option<PathBuf>,
    /// Groups or module names; `all` when not given.
    pub modules: Vec<String>,
    /// Minisign public keys to bake in (`--trust-key`).
    pub trust_keys: Vec<PathBuf>,
    /// CA certificates for `https://` netboot (`--net-ca`); empty: the build
    /// machine's bundle, when the network group is in.
    pub net_ca: Vec<PathBuf>,
    /// Build even when a module named in `modules` is not in the kernel.
    pub allow_missing: bool,
}

/// Build the initramfs `opts` describe and say what went in. Exit code: 0 or 1.
pub fn execute(opts: &Options) -> i32 {
    match run(opts) {
        Ok(summary) => {
            print!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("overboot: mkinitramfs: {e}");
            1
        }
    }
}

fn run(opts: &Options) -> Result<String, String> {
    let (kver, modules_dir) = kver_and_dir(opts)?;
    let (wanted, from_host) = wanted_modules(&opts.modules)?;
    let net = crate::kmod::has_network_driver(&wanted);
    let binary_path = opts.binary.clone().unwrap_or_else(|| default_binary(net));
    let mut binary = read_static_elf(&binary_path, "--binary")?;
    if elf::declares_no_unwinding(&binary) {
        elf::zero_unwind_tables(&mut binary);
    }
    let busybox = if opts.add_shell {
        Some(read_static_elf(Path::new(BUSYBOX), "--add-shell")?)
    } else {
        None
    };
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let built = build(&kver, &modules_dir, &wanted, binary, busybox).map_err(|e| {
        if opts.modules_dir.is_none() {
            format!("{e}; for another kernel give --kver VER or --modules-dir DIR")
        } else {
            e
        }
    })?;
    let unknown = unknown_names(&opts.modules, &built.resolution.not_found);
    if !unknown.is_empty() && !opts.allow_missing {
        return Err(format!(
            "--modules {}: neither a module of {kver} (in {}) nor built in, nor a group ({}); check the spelling, or give --allow-missing to build without it",
            unknown.join(","),
            modules_dir.display(),
            MODULE_GROUPS
                .iter()
                .map(|g| g.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut built = built;
    add_trust_keys(&mut built.archive, &opts.trust_keys)?;
    let ca_note = add_net_ca(&mut built.archive, net, &opts.net_ca)?;
    let compression = opts.compress.unwrap_or_else(default_compression);
    let entries = built.archive.len();
    let (raw_len, data) = archive_bytes(built.archive, compression)?;
    write_atomically(&opts.output, &data)?;

    let mut s = format!(
        "wrote {}: /init from {}, {} entries, {} modules for {kver}, {} KiB uncompressed, {} KiB {}\n",
        opts.output.display(),
        binary_path.display(),
        entries,
        built.resolution.load.len(),
        raw_len.div_ceil(1024),
        data.len().div_ceil(1024),
        compression.name(),
    );
    s += &ca_note;
    if !built.resolution.builtin.is_empty() {
        s += &format!(
            "built into this kernel: {}\n",
            built.resolution.builtin.join(" ")
        );
    }
    // A driver of this machine that the kernel has no module for is built in here
    // (and most likely there): a note, not a warning.
    let (host_only, missing): (Vec<&String>, Vec<&String>) = built
        .resolution
        .not_found
        .iter()
        .partition(|m| from_host.contains(*m) && !opts.modules.contains(*m));
    if !host_only.is_empty() {
        s += &format!(
            "note: drivers of this machine that {kver} has no module for (built in?): {}\n",
            join(&host_only)
        );
    }
    if !missing.is_empty() {
        s += &format!(
            "warning: not in this kernel (neither module nor built in): {}\n",
            join(&missing)
        );
    }
    for (m, d) in &built.resolution.softdeps_not_found {
        s += &format!("warning: soft dependency '{d}' of {m} not found\n");
    }
    Ok(s)
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The module names for `--modules` (groups, module names, `all`, `host`), and those
/// `host` stood for (printed on stderr, so the builder sees what was chosen).
fn wanted_modules(names: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let listed: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "host")
        .collect();
    let mut wanted = modules_for(&listed);
    if listed.len() == names.len() {
        return Ok((wanted, Vec::new()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("--modules host: cannot read /proc/self/mounts: {e}"))?;
    let from_host = host::host_modules(Path::new("/sys"), &mounts);
    eprintln!("--modules host: {}", from_host.join(" "));
    for m in &from_host {
        if !wanted.contains(m) {
            wanted.push(m.clone());
        }
    }
    Ok((wanted, from_host))
}

/// The names given with `--modules` (not groups) that the kernel lacks: a misspelt
/// name must not pass as a warning in an image that then cannot find its disk.
fn unknown_names(given: &[String], not_found: &[String]) -> Vec<String> {
    given
        .iter()
        .filter(|n| !["all", "host"].contains(&n.as_str()))
        .filter(|n| !MODULE_GROUPS.iter().any(|g| g.name == n.as_str()))
        .filter(|n| {
            let norm = n.replace('-', "_");
            not_found.iter().any(|m| m.replace('-', "_") == norm)
        })
        .cloned()
        .collect()
}

/// `--trust-key` files, checked, at `crate::verify::TRUST_DIR/<n>.pub`.
fn add_trust_keys(a: &mut Archive, keys: &[PathBuf]) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    let dir = crate::verify::TRUST_DIR.trim_start_matches('/');
    let mut path = String::new();
    for part in dir.split('/') {
        path = if path.is_empty() {
            part.to_string()
        } else {
            format!("{path}/{part}")
        };
        a.dir(&path, 0o755);
    }
    for (n, key) in keys.iter().enumerate() {
        let text = std::fs::read_to_string(key)
            .map_err(|e| format!("--trust-key {}: {e}", key.display()))?;
        let parsed = crate::verify::parse_public_key(&text, &key.display().to_string())?;
        eprintln!(
            "trusting minisign key {} from {} as /{dir}/{n}.pub",
            parsed.id,
            key.display()
        );
        a.file(&format!("{dir}/{n}.pub"), 0o644, text.into_bytes());
    }
    Ok(())
}

/// The CA bundle that `https://` netboot trusts when no `--net-ca` is given: the
/// build machine's, as curl on it would trust (Debian, Ubuntu, Arch, Alpine path).
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CA certificates of `https://` netboot, at `net::tls::NET_CA`, when the image
/// has the network group: the `--net-ca` files (each checked to hold certificates),
/// else [`HOST_CA_BUNDLE`]. The bundle is the default so that `https://` works as it
/// does with curl on the build machine; a fleet with its own CA gives `--net-ca` and
/// then trusts that CA only (and saves the bundle's ~120 KB, xz). Returns the line
/// for the summary.
fn add_net_ca(a: &mut Archive, net: bool, files: &[PathBuf]) -> Result<String, String> {
    if !net {
        return match files.first() {
            Some(f) => Err(format!(
                "--net-ca {}: only the network build of /init fetches over https://; add the net group (--modules net,...)",
                f.display()
            )),
            None => Ok(String::new()),
        };
    }
    let (files, source) = if files.is_empty() {
        let host = PathBuf::from(HOST_CA_BUNDLE);
        if !host.exists() {
            return Ok(format!(
                "note: no {HOST_CA_BUNDLE} on this machine and no --net-ca: https:// netboot will be refused (http:// works)\n"
            ));
        }
        (vec![host], "this machine's bundle")
    } else {
        (files.to_vec(), "--net-ca")
    };
    let mut pem = Vec::new();
    for f in &files {
        let data = std::fs::read(f).map_err(|e| format!("--net-ca {}: {e}", f.display()))?;
        crate::net::tls::config(&data, &f.display().to_string())
            .map_err(|e| format!("--net-ca {e}"))?;
        pem.extend_from_slice(&data);
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
    }
    // The archive adds the parent directories.
    let path = crate::net::tls::NET_CA.trim_start_matches('/');
    let len = pem.len();
    a.file(path, 0o644, pem);
    Ok(format!(
        "https:// trusts the CA certificates of {source} ({}), {len} bytes at /{path}\n",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn kver_and_dir(opts: &Options) -> Result<(String, PathBuf), String> {
    let kver = match (&opts.kver, &opts.modules_dir) {
        (Some(k), _) => k.clone(),
        (None, Some(dir)) => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or(format!(
                "cannot take a kernel version from --modules-dir {}: give --kver",
                dir.display()
            ))?,
        (None, None) => rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
    };
    if kver.is_empty() || kver.contains('/') || kver.starts_with('.') {
        return Err(format!("'{kver}' is not a kernel version"));
    }
    let dir = opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/lib/modules").join(&kver));
    Ok((kver, dir))
}

/// The archive before compression, and what went into it.
pub struct Built {
    pub archive: Archive,
    pub resolution: Resolution,
}

/// Assemble the archive: `/init` = `binary`, the modules `wanted` (names or aliases)
/// and what they need from `modules_dir` at `/lib/modules/<kver>/` with a reduced
/// index, device nodes, and busybox when given.
pub fn build(
    kver: &str,
    modules_dir: &Path,
    wanted: &[&str],
    binary: Vec<u8>,
    busybox: Option<Vec<u8>>,
) -> Result<Built, String> {
    let index = ModuleIndex::load(modules_dir)?;
    let resolution = index.resolve(wanted);
    let mut a = Archive::new();
    for d in ["dev", "proc", "sys", "run", "sysroot", "lib/modules"] {
        a.dir(d, 0o755);
    }
    a.dir("tmp", 0o1777);
    a.add("dev/console", 0o600, Kind::CharDev(5, 1));
    a.add("dev/null", 0o666, Kind::CharDev(1, 3));
    a.file("init", 0o755, binary);
    // The kernel runs /sbin/modprobe for modules nothing asked for beforehand (a
    // FAT mount's codepage): /init answers under that name (kmod::modprobe).
    a.add("sbin/modprobe", 0o777, Kind::Symlink("../init".into()));
    if let Some(bb) = busybox {
        a.file("bin/busybox", 0o755, bb);
        a.add("bin/sh", 0o777, Kind::Symlink("busybox".into()));
    }
    let base = format!("lib/modules/{kver}");
    a.dir(&base, 0o755);
    for m in &resolution.load {
        if !is_safe_relative(&m.path) {
            return Err(format!(
                "modules.dep in {} names '{}': not a path inside the modules directory",
                modules_dir.display(),
                m.path
            ));
        }
        let src = modules_dir.join(&m.path);
        let data = std::fs::read(&src).map_err(|e| {
            format!(
                "cannot read module {} ({e}): is depmod's modules.dep in {} current?",
                src.display(),
                modules_dir.display()
            )
        })?;
        a.file(&format!("{base}/{}", m.path), 0o644, data);
    }
    for (name, data) in reduced_index(&index, &resolution) {
        a.file(&format!("{base}/{name}"), 0o644, data);
    }
    Ok(Built {
        archive: a,
        resolution,
    })
}

fn is_safe_relative(p: &str) -> bool {
    !p.starts_with('/') && !p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
}

/// `modules.dep`, `.alias`, `.softdep`, `.builtin`, `.builtin.modinfo` covering just
/// the included modules (all built-ins: a name that is built in must stay known).
pub fn reduced_index(index: &ModuleIndex, r: &Resolution) -> Vec<(&'static str, Vec<u8>)> {
    let included: BTreeSet<&str> = r.load.iter().map(|m| m.name.as_str()).collect();
    let keep = |module: &str| included.contains(parse::normalize(module).as_str());
    let mut dep = String::new();
    for m in &r.load {
        let deps = index
            .module(&m.name)
            .map(|e| e.deps.join(" "))
            .unwrap_or_default();
        dep += &format!(
            "{}:{}{deps}\n",
            m.path,
            if deps.is_empty() { "" } else { " " }
        );
    }
    let mut alias = String::new();
    for a in index.aliases().iter().filter(|a| keep(&a.module)) {
        alias += &format!("alias {} {}\n", a.pattern, a.module);
    }
    let mut soft = String::new();
    for s in index.softdeps().filter(|s| keep(&s.module)) {
        soft += &format!("softdep {}", s.module);
        if !s.pre.is_empty() {
            soft += &format!(" pre: {}", s.pre.join(" "));
        }
        if !s.post.is_empty() {
            soft += &format!(" post: {}", s.post.join(" "));
        }
        soft += "\n";
    }
    // Built-in names as paths of the same shape depmod writes (the name is what counts).
    let builtin: String = index
        .builtins()
        .map(|b| format!("kernel/{b}.ko\n"))
        .collect();
    let mut modinfo = Vec::new();
    for a in index.builtin_aliases() {
        modinfo.extend_from_slice(format!("{}.alias={}\0", a.module, a.pattern).as_bytes());
    }
    vec![
        ("modules.dep", dep.into_bytes()),
        ("modules.alias", alias.into_bytes()),
        ("modules.softdep", soft.into_bytes()),
        ("modules.builtin", builtin.into_bytes()),
        ("modules.builtin.modinfo", modinfo),
    ]
}

/// Read an executable that must run in the initramfs, where there is no dynamic
/// loader and no library: refuse anything but a static ELF.
fn read_static_elf(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    check_static_elf(&data).map_err(|e| {
        format!(
            "{what}: {} {e}; it must be a static executable (overboot: build it with \
             --target x86_64-unknown-linux-musl; busybox: Debian's busybox-static)",
            path.display()
        )
    })?;
    Ok(data)
}

/// `Ok` for an ELF executable without `PT_INTERP` (static, or static-pie).
pub fn check_static_elf(data: &[u8]) -> Result<(), String> {
    if data.get(..4) != Some(b"\x7fELF") {
        return Err("is not an ELF file".into());
    }
    let class64 = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("has an unknown ELF class".into()),
    };
    let little = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("has an unknown ELF byte order".into()),
    };
    let num = |off: usize, len: usize| -> Option<u64> {
        let b = data.get(off..off.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if little { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let bad = || "is a truncated or damaged ELF file".to_string();
    let e_type = num(16, 2).ok_or_else(bad)?;
    if e_type != 2 && e_type != 3 {
        return Err("is not an ELF executable (a relocatable object or core file?)".into());
    }
    let (phoff, phentsize, phnum) = if class64 {
        (num(32, 8), num(54, 2), num(56, 2))
    } else {
        (num(28, 4), num(42, 2), num(44, 2))
    };
    let (phoff, phentsize, phnum) = (
        phoff.ok_or_else(bad)?,
        phentsize.ok_or_else(bad)?,
        phnum.ok_or_else(bad)?,
    );
    for i in 0..phnum {
        let off = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(bad)?;
        let p_type = num(off, 4).ok_or_else(bad)?;
        if p_type == 3 {
            return Err("is dynamically linked (it has a PT_INTERP program header)".into());
        }
    }
    Ok(())
}

fn command_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// What `--compress` is when not given: the first of these whose command is here, else
/// gzip (in-process, always there). lz4 by measurement (bench/boot.md, `bench/boot
/// --compression --icount 0`): the kernel unpacks the every-group image 1.47 s faster
/// than xz under QEMU, and it boots sooner than the xz image made for the hardware
/// (`--modules ext4,virtio`); zstd is in between. xz stays the choice for the
/// smallest image (`--compress xz`).
const PREFERRED: [Compression; 2] = [Compression::Lz4, Compression::Zstd];

fn default_compression() -> Compression {
    let chosen = PREFERRED
        .into_iter()
        .find(|c| command_exists(c.name()))
        .unwrap_or(Compression::Gzip);
    if chosen != PREFERRED[0] {
        eprintln!(
            "note: no {} command (Debian package {}), using {}",
            PREFERRED[0].name(),
            debian_package(PREFERRED[0].name()),
            chosen.name()
        );
    }
    chosen
}

/// The Debian package that has the command `cmd`.
fn debian_package(cmd: &str) -> &str {
    if cmd == "xz" { "xz-utils" } else { cmd }
}

/// The `--modules` groups, one line each, for the help text.
pub fn groups_help() -> String {
    let mut s = String::from("\nmodule groups:\n");
    for g in MODULE_GROUPS {
        s += &format!("  {:<10} {} ({})\n", g.name, g.what, g.modules.join(" "));
    }
    s
}

/// The `/init` to use when `--binary` is not given: the `overboot-init` build (with
/// network drivers, `net`: `overboot-init-net`) next to this program (a cargo build,
/// `/usr/bin`), or in `../lib/overboot/` (the Debian package), else this program
/// itself (it boots too, netboot included, only bigger).
pub fn default_binary(net: bool) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let name = if net {
        "overboot-init-net"
    } else {
        "overboot-init"
    };
    if let Some(dir) = me.parent() {
        for candidate in [dir.join(name), dir.join("../lib/overboot").join(name)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    me
}

/// The programs of an initramfs: compressed apart with xz, see [`archive_bytes`].
const EXECUTABLES: &[&str] = &["init", "bin/busybox"];

/// The initramfs bytes and the uncompressed size. With xz, two concatenated archives
/// (the kernel unpacks one after the other): the programs through xz's x86 filter,
/// which makes machine code about 4% smaller, and the rest (kernel modules, which are
/// relocatable objects the filter makes larger) without it.
pub fn archive_bytes(mut archive: Archive, c: Compression) -> Result<(usize, Vec<u8>), String> {
    if c != Compression::Xz {
        let raw = archive.to_bytes()?;
        return Ok((raw.len(), compress(&raw, c)?));
    }
    let programs = archive.take(EXECUTABLES).to_bytes()?;
    let rest = archive.to_bytes()?;
    let mut data = compress(&rest, c)?;
    // Streams start on a 4-byte boundary (xz stream padding is zeros).
    data.resize(data.len().div_ceil(4) * 4, 0);
    data.extend(pipe("xz", &XZ_X86_ARGS, &programs)?);
    Ok((rest.len() + programs.len(), data))
}

/// xz for the kernel: CRC32 check (the kernel's unxz checks no other), single-threaded
/// (reproducible), -9e with an 8 MiB window (a small initramfs fits in it whole; the
/// kernel allocates the window the header names).
const XZ_ARGS: [&str; 5] = [
    "-q",
    "-c",
    "-T1",
    "--check=crc32",
    "--lzma2=preset=9e,dict=8MiB",
];
/// The programs: after the x86 filter, machine code compresses better with four
/// literal context bits and no position bits (`lc=4,pb=0`: 968 bytes less for
/// overboot-init; the modules are better off with the defaults).
const XZ_X86_ARGS: [&str; 6] = [
    "-q",
    "-c",
    "-T1",
    "--check=crc32",
    "--x86",
    "--lzma2=preset=9e,dict=8MiB,lc=4,pb=0",
];

/// Compress for the kernel's initramfs unpacker. gzip in-process (flate2 on the
/// pure-Rust zlib-rs backend); lz4, zstd and xz through their commands, with settings
/// the kernel decompressor accepts (lz4: the legacy format, `-l`, the only one its
/// unpacker reads; xz: CRC32 check) and that are reproducible (single-threaded).
/// lz4 `-9` (high compression) rather than the fast level: the default image is 19%
/// smaller (6.5 MB against 8.1 MB); `-12` saves 0.7% more at eight times the time.
pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>, String> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(data)
                .and_then(|()| enc.finish())
                .map_err(|e| format!("gzip: {e}"))
        }
        Compression::Lz4 => pipe("lz4", &["-q", "-c", "-l", "-9"], data),
        Compression::Zstd => pipe("zstd", &["-q", "-c", "-19", "-T1", "--no-progress"], data),
        Compression::Xz => pipe("xz", &XZ_ARGS, data),
    }
}

pub(crate) fn pipe(cmd: &str, args: &[&str], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run '{cmd}' ({e}): install it (Debian package {}) or use another --compress",
                debian_package(cmd))
        })?;
    let mut stdin = child.stdin.take().ok_or(format!("{cmd}: no stdin"))?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let written = writer
        .join()
        .map_err(|_| format!("{cmd}: writer thread failed"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    written.map_err(|e| format!("{cmd}: writing its input: {e}"))?;
    Ok(out.stdout)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), String> {
    let name = path
        .file_name()
        .ok_or(format!("-o {}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--net-ca`: only with the network group, only files holding certificates;
    /// a good one (made by the openssl CLI) is the one file at `net::tls::NET_CA`.
    #[test]
    fn net_ca_files_are_checked_and_need_the_network_group() {
        let dir = std::env::temp_dir().join(format!("overboot-net-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let mut a = Archive::new();
        let e = add_net_ca(&mut a, false, std::slice::from_ref(&junk)).unwrap_err();
        assert!(e.contains("add the net group"), "{e}");
        assert_eq!(add_net_ca(&mut a, false, &[]), Ok(String::new()));
        let e = add_net_ca(&mut a, true, std::slice::from_ref(&junk)).unwrap_err();
        assert!(e.contains("no usable CA certificate"), "{e}");
        assert_eq!(a.len(), 0, "nothing added by a refusal");

        let ca = dir.join("ca.pem");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-newkey",
                "ec",
            ])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(out.status.success(), "{out:?}");
        let note = add_net_ca(&mut a, true, std::slice::from_ref(&ca)).unwrap();
        assert!(note.contains("--net-ca"), "{note}");
        let path = crate::net::tls::NET_CA.trim_start_matches('/');
        let (_, entry) = a.entries().find(|(p, _)| p.as_str() == path).unwrap();
        match &entry.kind {
            cpio::Kind::File(data) => assert!(*data == std::fs::read(&ca).unwrap()),
            _ => panic!("{path} is not a file"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kver_from_modules_dir() {
        let mut o = Options {
            output: "x".into(),
            kver: None,
            modules_dir: Some("/m/6.1.0-56-amd64".into()),
            compress: None,
            add_shell: false,
            binary: None,
            modules: vec!["all".into()],
            trust_keys: vec![],
            net_ca: vec![],
            allow_missing: false,
        };
        assert_eq!(
            kver_and_dir(&o).unwrap(),
            (
                "6.1.0-56-amd64".to_string(),
                PathBuf::from("/m/6.1.0-56-amd64")
            )
        );
        o.kver = Some("../x".into());
        assert!(kver_and_dir(&o).is_err());
    }

    #[test]
    fn elf_checks() {
        assert!(
            check_static_elf(b"#!/bin/sh\n")
                .unwrap_err()
                .contains("not an ELF")
        );
        assert!(check_static_elf(b"\x7fELF\x02\x01").is_err());
        // The test binary itself is dynamically linked (glibc target).
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert!(check_static_elf(&me).unwrap_err().contains("PT_INTERP"));
        // Truncated or absurd headers never panic.
        for n in 0..200 {
            let _ = check_static_elf(&me[..n]);
        }
        let mut odd = me[..64].to_vec();
        odd[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        odd[54..58].copy_from_slice(&[0xff; 4]);
        assert!(check_static_elf(&odd).unwrap_err().contains("truncated"));
    }

    #[test]
    fn safe_paths() {
        assert!(is_safe_relative("kernel/fs/ext4/ext4.ko"));
        assert!(!is_safe_relative("/etc/x"));
        assert!(!is_safe_relative("kernel/../../x"));
        assert!(!is_safe_relative("a//b"));
    }

    #[test]
    fn gzip_roundtrip() {
        let data = b"overboot ".repeat(1000);
        let z = compress(&data, Compression::Gzip).unwrap();
        assert_eq!(&z[..2], b"\x1f\x8b");
        let mut d = flate2::read::GzDecoder::new(&z[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(compress(&data, Compression::Gzip).unwrap(), z);
    }
}
