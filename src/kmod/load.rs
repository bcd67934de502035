//! The thin kernel layer: load a [`Resolution`] with `finit_module`.

use super::{ModuleIndex, Resolution};
use rustix::io::Errno;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `MODULE_INIT_COMPRESSED_FILE` from `<linux/module.h>` (not in linux-raw-sys 0.12):
/// the kernel decompresses the file itself (Linux ≥ 5.17, `CONFIG_MODULE_DECOMPRESS`).
const MODULE_INIT_COMPRESSED_FILE: i32 = 4;

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    /// Was loaded before (`/sys/module/<name>` existed, or the kernel said EEXIST).
    AlreadyLoaded,
    Builtin,
    /// The kernel said ENODEV, or the module's `cpu:` aliases say so before it is
    /// tried: it is for hardware or a CPU feature this machine lacks (`crc32c_intel`
    /// without SSE4.2). Normal, not a failure.
    NoDevice,
    /// A wanted name that is no module, alias or built-in of this kernel.
    NotFound,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleReport {
    /// Normalised module name, or the wanted name for [`Outcome::NotFound`].
    pub name: String,
    /// The module file, when there is one.
    pub path: Option<PathBuf>,
    pub outcome: Outcome,
    /// Time spent in `finit_module` (zero when not called).
    pub elapsed: Duration,
}

/// Everything [`load_modules`] did; `Display` prints a summary line and one line
/// per module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    pub modules_dir: PathBuf,
    /// Set when nothing could be done at all (no readable `modules.dep`).
    pub error: Option<String>,
    pub modules: Vec<ModuleReport>,
    /// Soft dependencies not found: (module, soft dependency). Informational.
    pub softdeps_not_found: Vec<(String, String)>,
}

impl LoadReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.modules.iter().filter(|m| f(&m.outcome)).count()
    }

    /// The modules that failed, with their reason.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.modules.iter().filter_map(|m| match &m.outcome {
            Outcome::Failed(why) => Some((m.name.as_str(), why.as_str())),
            _ => None,
        })
    }

    /// True when nothing failed and every wanted name was found.
    pub fn all_ok(&self) -> bool {
        self.error.is_none()
            && self.count(|o| matches!(o, Outcome::Failed(_) | Outcome::NotFound)) == 0
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modules from {}: ", self.modules_dir.display())?;
        if let Some(e) = &self.error {
            return write!(f, "nothing loaded: {e}");
        }
        writeln!(
            f,
            "{} loaded, {} already loaded, {} built in, {} not for this machine, {} failed, \
             {} not found",
            self.count(|o| *o == Outcome::Loaded),
            self.count(|o| *o == Outcome::AlreadyLoaded),
            self.count(|o| *o == Outcome::Builtin),
            self.count(|o| *o == Outcome::NoDevice),
            self.count(|o| matches!(o, Outcome::Failed(_))),
            self.count(|o| *o == Outcome::NotFound),
        )?;
        for m in &self.modules {
            let (word, why) = match &m.outcome {
                Outcome::Loaded => ("loaded", ""),
                Outcome::AlreadyLoaded => ("already", ""),
                Outcome::Builtin => ("builtin", ""),
                Outcome::NoDevice => ("nodevice", "no device or CPU feature for it here"),
                Outcome::NotFound => ("notfound", ""),
                Outcome::Failed(why) => ("FAILED", why.as_str()),
            };
            write!(f, "  {word:<8} {}", m.name)?;
            if let Some(p) = &m.path
                && m.outcome != Outcome::Builtin
            {
                write!(f, " ({}", p.display())?;
                if !m.elapsed.is_zero() {
                    write!(f, ", {} ms", m.elapsed.as_millis())?;
                }
                write!(f, ")")?;
            }
            if !why.is_empty() {
                write!(f, ": {why}")?;
            }
            writeln!(f)?;
        }
        for (owner, dep) in &self.softdeps_not_found {
            writeln!(f, "  note     soft dependency '{dep}' of {owner} not found")?;
        }
        Ok(())
    }
}

/// `/lib/modules/<release of the running kernel>`.
pub fn running_modules_dir() -> std::path::PathBuf {
    let kver = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    Path::new("/lib/modules").join(kver)
}

/// Resolve `wanted` (module names or aliases) in `modules_dir` (= `/lib/modules/<kver>`)
/// and load the result. Never panics; every problem is in the report.
pub fn load_modules(modules_dir: &Path, wanted: &[&str]) -> LoadReport {
    match ModuleIndex::load(modules_dir) {
        Ok(index) => {
            let cpu = cpu_modalias();
            load_resolution(modules_dir, &index.resolve_for_cpu(wanted, cpu.as_deref()))
        }
        Err(e) => LoadReport {
            modules_dir: modules_dir.to_path_buf(),
            error: Some(e),
            ..LoadReport::default()
        },
    }
}

/// This CPU's modalias (`cpu:type:x86,ven…:feature:,0000,…`), which the `cpu:`
/// aliases of feature-specific modules are matched against; None without sysfs.
pub fn cpu_modalias() -> Option<String> {
    std::fs::read_to_string("/sys/devices/system/cpu/modalias")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Load an already computed [`Resolution`], in its order.
pub fn load_resolution(modules_dir: &Path, resolution: &Resolution) -> LoadReport {
    let mut report = LoadReport {
        modules_dir: modules_dir.to_path_buf(),
        softdeps_not_found: resolution.softdeps_not_found.clone(),
        ..LoadReport::default()
    };
    for b in &resolution.builtin {
        report.modules.push(ModuleReport {
            name: b.clone(),
            path: None,
            outcome: Outcome::Builtin,
            elapsed: Duration::ZERO,
        });
    }
    let mut failed: Vec<String> = Vec::new();
    let mut kernel_compression: Option<Option<String>> = None;
    for m in &resolution.load {
        let path = modules_dir.join(&m.path);
        let start = Instant::now();
        let outcome = if let Some(dep) = m.deps.iter().find(|d| failed.contains(d)) {
            Outcome::Failed(format!("not tried: it needs {dep}, which did not load"))
        } else if Path::new("/sys/module").join(&m.name).exists() {
            Outcome::AlreadyLoaded
        } else {
            let kc = kernel_compression.get_or_insert_with(read_kernel_compression);
            load_one(&path, kc.as_deref())
        };
        let elapsed = if outcome == Outcome::Loaded {
            start.elapsed()
        } else {
            Duration::ZERO
        };
        if matches!(outcome, Outcome::Failed(_) | Outcome::NoDevice) {
            failed.push(m.name.clone());
        }
        report.modules.push(ModuleReport {
            name: m.name.clone(),
            path: Some(path),
            outcome,
            elapsed,
        });
    }
    for m in &resolution.unsuited {
        report.modules.push(ModuleReport {
            name: m.name.clone(),
            path: Some(modules_dir.join(&m.path)),
            outcome: Outcome::NoDevice,
            elapsed: Duration::ZERO,
        });
    }
    for n in &resolution.not_found {
        report.modules.push(ModuleReport {
            name: n.clone(),
            path: None,
            outcome: Outcome::NotFound,
            elapsed: Duration::ZERO,
        });
    }
    report
}

/// `/sys/module/compression` names the one format the kernel decompresses
/// (`xz`, `gzip`, `zstd`); absent when it decompresses none (or sysfs is not
/// mounted, told apart by `/sys/module` itself).
fn read_kernel_compression() -> Option<String> {
    std::fs::read_to_string("/sys/module/compression")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The compression a module file is in, by name: `Some("xz")`, or None for `.ko`.
fn file_compression(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    }
}

fn load_one(path: &Path, kernel_compression: Option<&str>) -> Outcome {
    let compression = file_compression(path);
    let mut flags = 0;
    if let Some(c) = compression {
        match kernel_compression {
            Some(k) if k == c => flags = MODULE_INIT_COMPRESSED_FILE,
            Some(k) => {
                return Outcome::Failed(format!(
                    "the file is {c}-compressed but this kernel decompresses modules only \
                     in {k} (/sys/module/compression): ship it uncompressed or as .ko.{}",
                    if k == "zstd" {
                        "zst"
                    } else if k == "gzip" {
                        "gz"
                    } else {
                        k
                    }
                ));
            }
            None if Path::new("/sys/module").is_dir() => {
                return Outcome::Failed(format!(
                    "the file is {c}-compressed but this kernel cannot decompress modules \
                     (no /sys/module/compression: built without CONFIG_MODULE_DECOMPRESS): \
                     ship the modules uncompressed"
                ));
            }
            // sysfs not mounted: cannot tell, let the kernel answer.
            None => flags = MODULE_INIT_COMPRESSED_FILE,
        }
    }
    let file = match rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("cannot open the module file: {e}")),
    };
    match rustix::system::finit_module(&file, c"", flags) {
        Ok(()) => Outcome::Loaded,
        Err(Errno::EXIST) => Outcome::AlreadyLoaded,
        Err(Errno::NODEV) => Outcome::NoDevice,
        Err(e) => Outcome::Failed(explain(e, compression)),
    }
}

fn explain(e: Errno, compression: Option<&str>) -> String {
    let what = match e {
        Errno::NOEXEC => "invalid module format: built for another kernel version or architecture",
        Errno::NOENT => "unknown symbol: a module it needs is missing or failed (see dmesg)",
        Errno::KEYREJECTED | Errno::KEYEXPIRED | Errno::NOKEY => {
            "signature rejected: the kernel enforces module signatures"
        }
        Errno::PERM => "not permitted (not root, or module loading is disabled)",
        Errno::OPNOTSUPP if compression.is_some() => {
            "the kernel cannot decompress modules (CONFIG_MODULE_DECOMPRESS is off)"
        }
        Errno::INVAL if compression.is_some() => {
            "the kernel refused a compressed module: too old for in-kernel decompression \
             (Linux < 5.17) or another compression"
        }
        Errno::INVAL => "invalid parameters or module (see dmesg)",
        Errno::BUSY => "busy: the module is being loaded or removed",
        Errno::NOMEM => "out of memory",
        _ => "the kernel refused it (see dmesg)",
    };
    format!("{what} ({e:?}: {e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_name() {
        assert_eq!(file_compression(Path::new("a/b.ko.xz")), Some("xz"));
        assert_eq!(file_compression(Path::new("a/b.ko.zst")), Some("zstd"));
        assert_eq!(file_compression(Path::new("a/b.ko")), None);
    }

    #[test]
    fn wrong_compression_is_refused_before_the_kernel() {
        let o = load_one(Path::new("/nonexistent/x.ko.zst"), Some("xz"));
        assert!(
            matches!(&o, Outcome::Failed(w) if w.contains("only in xz")),
            "{o:?}"
        );
        let o = load_one(Path::new("/nonexistent/x.ko"), None);
        assert!(
            matches!(&o, Outcome::Failed(w) if w.contains("cannot open")),
            "{o:?}"
        );
    }

    #[test]
    fn modules_unsuited_to_the_cpu_are_reported_not_loaded() {
        let resolution = Resolution {
            unsuited: vec![crate::kmod::ModuleToLoad {
                name: "crc32c_intel".into(),
                path: "kernel/arch/x86/crypto/crc32c-intel.ko".into(),
                deps: vec![],
            }],
            ..Resolution::default()
        };
        // Nothing to load, so the kernel is not asked: this runs anywhere.
        let r = load_resolution(Path::new("/nonexistent/modules"), &resolution);
        assert!(r.all_ok());
        assert_eq!(r.modules.len(), 1);
        assert_eq!(r.modules[0].outcome, Outcome::NoDevice);
        assert!(r.modules[0].elapsed.is_zero());
        assert!(r.to_string().contains("1 not for this machine"), "{r}");
    }

    #[test]
    fn report_prints() {
        let r = LoadReport {
            modules_dir: "/lib/modules/6.1".into(),
            error: None,
            modules: vec![
                ModuleReport {
                    name: "loop".into(),
                    path: Some("/lib/modules/6.1/kernel/drivers/block/loop.ko".into()),
                    outcome: Outcome::Loaded,
                    elapsed: Duration::from_millis(3),
                },
                ModuleReport {
                    name: "crc32c_intel".into(),
                    path: None,
                    outcome: Outcome::Failed("no such device".into()),
                    elapsed: Duration::ZERO,
                },
            ],
            softdeps_not_found: vec![("btrfs".into(), "blake2b-256".into())],
        };
        let s = r.to_string();
        assert!(s.contains(
            "1 loaded, 0 already loaded, 0 built in, 0 not for this machine, 1 failed, 0 not found"
        ));
        assert!(s.contains("loaded   loop (/lib/modules/6.1/kernel/drivers/block/loop.ko, 3 ms)"));
        assert!(s.contains("FAILED   crc32c_intel: no such device"));
        assert!(s.contains("'blake2b-256' of btrfs"));
        assert!(!r.all_ok());
    }
}
