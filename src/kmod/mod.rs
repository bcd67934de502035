//! Kernel modules without modprobe (DESIGN section 2, step 2).
//!
//! [`parse`] reads depmod's text files; [`ModuleIndex`] answers "what must be loaded,
//! in which order, for these names or aliases" ([`ModuleIndex::resolve`], pure); the
//! thin kernel layer [`load_modules`] loads the answer with `finit_module`;
//! [`modprobe`] answers the kernel's own requests for a module during the boot.

mod load;
pub mod modprobe;
pub mod parse;

pub use load::{
    LoadReport, ModuleReport, Outcome, cpu_modalias, load_modules, load_resolution,
    running_modules_dir,
};

use parse::{Alias, DepEntry, SoftDep};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A set of modules for one piece of hardware or one file system, chosen by name with
/// `overboot mkinitramfs --modules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleGroup {
    pub name: &'static str,
    pub what: &'static str,
    pub modules: &'static [&'static str],
}

/// Always in the initramfs: the system image and the overlay.
pub const CORE_MODULES: &[&str] = &["loop", "squashfs", "overlay"];

/// What `--modules` can name. The default is every group, so one initramfs boots any
/// machine; an appliance builder who knows the hardware names fewer and gets a much
/// smaller initramfs (bench/boot.md). None of these is built into Debian 6.1's kernel;
/// their dependencies and soft dependencies (`crc32c` for ext4, `sha256`/`xxhash64`
/// for btrfs) are found by [`ModuleIndex::resolve`], and names built into another
/// kernel are reported as built in, never as failures.
pub const MODULE_GROUPS: &[ModuleGroup] = &[
    ModuleGroup {
        name: "ext4",
        what: "BootExt on ext2/3/4 (the default)",
        modules: &["ext4"],
    },
    ModuleGroup {
        name: "vfat",
        // vfat mounts need the default codepage (437) and iocharset (ascii);
        // iso8859-1 and utf8 are the usual `iocharset=` values.
        what: "BootExt on FAT",
        modules: &[
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_iso8859-1",
            "nls_utf8",
        ],
    },
    ModuleGroup {
        name: "btrfs",
        what: "BootExt on btrfs",
        modules: &["btrfs"],
    },
    ModuleGroup {
        name: "xfs",
        what: "BootExt on XFS",
        modules: &["xfs"],
    },
    ModuleGroup {
        name: "iso9660",
        what: "BootExt on a CD/DVD image (live media)",
        modules: &["isofs", "sr_mod"],
    },
    ModuleGroup {
        name: "virtio",
        what: "QEMU/KVM disks (virtio-blk)",
        modules: &["virtio_pci", "virtio_blk"],
    },
    ModuleGroup {
        name: "virtio-scsi",
        what: "QEMU/KVM disks on virtio-scsi",
        modules: &["virtio_pci", "virtio_scsi", "sd_mod"],
    },
    ModuleGroup {
        name: "sata",
        what: "SATA and IDE disks (AHCI, PIIX)",
        modules: &["ahci", "ata_piix", "sd_mod"],
    },
    ModuleGroup {
        name: "nvme",
        what: "NVMe disks",
        modules: &["nvme"],
    },
    ModuleGroup {
        name: "usb",
        what: "USB sticks and disks",
        modules: &["xhci_pci", "ehci_pci", "usb-storage", "uas", "sd_mod"],
    },
    ModuleGroup {
        name: "mmc",
        what: "SD cards and eMMC",
        modules: &["sdhci_pci", "mmc_block"],
    },
    ModuleGroup {
        name: "keyboard",
        what: "a USB keyboard for the emergency shell",
        modules: &["xhci_pci", "ehci_pci", "usbhid", "hid_generic"],
    },
    ModuleGroup {
        name: "verity",
        // dm-verity pulls in dm-mod, dm-bufio and reed_solomon (FEC): ~0.6 MB
        // uncompressed, too much for the core of a 1 MB initramfs.
        what: "sealed images (overboot seal): dm-verity and device-mapper",
        modules: &["dm-verity"],
    },
    ModuleGroup {
        name: NET_GROUP,
        what: "network cards for netboot (overboot.fetch=; puts in overboot-init-net)",
        modules: &[
            "virtio_net",
            "e1000",
            "e1000e",
            "igb",
            "ixgbe",
            "r8169",
            "tg3",
            "bnxt_en",
        ],
    },
];

/// The group of network drivers: an initramfs with any of them gets the network
/// build of `/init`.
pub const NET_GROUP: &str = "net";

/// Whether `modules` (as from [`modules_for`]) include a network driver.
pub fn has_network_driver(modules: &[String]) -> bool {
    MODULE_GROUPS
        .iter()
        .filter(|g| g.name == NET_GROUP)
        .flat_map(|g| g.modules)
        .any(|m| modules.iter().any(|w| w == m))
}

/// The modules to put in an initramfs for `names` (group names or module names;
/// `all` is every group): the core first, each module once, in a stable order.
pub fn modules_for(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    };
    CORE_MODULES.iter().for_each(|m| add(m));
    for name in names {
        match MODULE_GROUPS.iter().find(|g| g.name == *name) {
            Some(g) => g.modules.iter().for_each(|m| add(m)),
            None if *name == "all" => MODULE_GROUPS
                .iter()
                .flat_map(|g| g.modules)
                .for_each(|m| add(m)),
            None => add(name),
        }
    }
    out
}

/// Every module of every group: the default initramfs.
pub fn all_boot_modules() -> Vec<String> {
    modules_for(&["all"])
}

/// One module to load: name, file and the modules it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleToLoad {
    /// Normalised name (`usb_storage`), as in `/sys/module/`.
    pub name: String,
    /// File path relative to the modules directory (`kernel/fs/ext4/ext4.ko`).
    pub path: String,
    /// Normalised names of its hard dependencies (from `modules.dep`).
    pub deps: Vec<String>,
}

/// The answer of [`ModuleIndex::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Load order: dependencies first, soft `pre:` before, `post:` after, no duplicates.
    pub load: Vec<ModuleToLoad>,
    /// Built-in modules that satisfied a wanted name, an alias or a soft dependency.
    pub builtin: Vec<String>,
    /// Wanted names that are neither a module, an alias nor built in.
    pub not_found: Vec<String>,
    /// Soft dependencies that were not found: (module, soft dependency).
    pub softdeps_not_found: Vec<(String, String)>,
    /// Modules left out because they are for CPU features this CPU lacks
    /// ([`ModuleIndex::resolve_for_cpu`]).
    pub unsuited: Vec<ModuleToLoad>,
}

/// What one name or alias stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Normalised names of loadable modules (several for an alias such as
    /// `crypto-crc32c`, which modprobe also loads all of).
    pub modules: Vec<String>,
    /// Normalised names of built-in modules it names.
    pub builtin: Vec<String>,
}

impl Lookup {
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty() && self.builtin.is_empty()
    }
}

/// depmod's view of `/lib/modules/<kver>`, indexed by normalised name.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    modules: BTreeMap<String, DepEntry>,
    aliases: Vec<Alias>,
    /// Normalised alias patterns, parallel to `aliases`.
    alias_norm: Vec<String>,
    softdeps: BTreeMap<String, SoftDep>,
    builtin: BTreeSet<String>,
    builtin_aliases: Vec<Alias>,
}

fn read_text(dir: &Path, name: &str, required: bool) -> Result<String, String> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!(
            "cannot read {}: {e}{}",
            path.display(),
            if required {
                " (is this a modules directory /lib/modules/<kver> on which depmod has run?)"
            } else {
                ""
            }
        )),
    }
}

impl ModuleIndex {
    /// Read `modules.dep` (required), `modules.alias`, `modules.softdep`,
    /// `modules.builtin` and `modules.builtin.modinfo` (each optional) from
    /// `modules_dir` (= `/lib/modules/<kver>`).
    pub fn load(modules_dir: &Path) -> Result<ModuleIndex, String> {
        let dep = read_text(modules_dir, "modules.dep", true)?;
        let alias = read_text(modules_dir, "modules.alias", false)?;
        let softdep = read_text(modules_dir, "modules.softdep", false)?;
        let builtin = read_text(modules_dir, "modules.builtin", false)?;
        let modinfo_path = modules_dir.join("modules.builtin.modinfo");
        let modinfo = match std::fs::read(&modinfo_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", modinfo_path.display())),
        };
        Ok(ModuleIndex::from_parts(
            parse::parse_modules_dep(&dep),
            parse::parse_modules_alias(&alias),
            parse::parse_modules_softdep(&softdep),
            parse::parse_modules_builtin(&builtin),
            parse::parse_builtin_modinfo(&modinfo),
        ))
    }

    /// Build from file texts (`modules.dep`, `.alias`, `.softdep`, `.builtin`).
    pub fn from_texts(dep: &str, alias: &str, softdep: &str, builtin: &str) -> ModuleIndex {
        ModuleIndex::from_parts(
            parse::parse_modules_dep(dep),
            parse::parse_modules_alias(alias),
            parse::parse_modules_softdep(softdep),
            parse::parse_modules_builtin(builtin),
            Vec::new(),
        )
    }

    pub fn from_parts(
        deps: Vec<DepEntry>,
        aliases: Vec<Alias>,
        softdeps: Vec<SoftDep>,
        builtin: Vec<String>,
        builtin_aliases: Vec<Alias>,
    ) -> ModuleIndex {
        let mut modules = BTreeMap::new();
        for d in deps {
            // First line wins, as in modprobe.
            modules.entry(d.name.clone()).or_insert(d);
        }
        let mut merged: BTreeMap<String, SoftDep> = BTreeMap::new();
        for s in softdeps {
            let e = merged.entry(parse::normalize(&s.module)).or_default();
            if e.module.is_empty() {
                e.module = s.module.clone();
            }
            e.pre.extend(s.pre);
            e.post.extend(s.post);
        }
        let alias_norm = aliases
            .iter()
            .map(|a| parse::normalize_alias(&a.pattern))
            .collect();
        ModuleIndex {
            modules,
            aliases,
            alias_norm,
            softdeps: merged,
            builtin: builtin.into_iter().collect(),
            builtin_aliases,
        }
    }

    /// The `modules.dep` entry of a module (any spelling of its name).
    pub fn module(&self, name: &str) -> Option<&DepEntry> {
        self.modules.get(&parse::normalize(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&parse::normalize(name))
    }

    /// Every `modules.dep` entry, by normalised name.
    pub fn modules(&self) -> impl Iterator<Item = &DepEntry> {
        self.modules.values()
    }

    /// Every `modules.alias` line, in file order.
    pub fn aliases(&self) -> &[Alias] {
        &self.aliases
    }

    /// Soft dependencies, merged per module.
    pub fn softdeps(&self) -> impl Iterator<Item = &SoftDep> {
        self.softdeps.values()
    }

    /// Normalised names of built-in modules.
    pub fn builtins(&self) -> impl Iterator<Item = &String> {
        self.builtin.iter()
    }

    /// Aliases of built-in modules (`modules.builtin.modinfo`).
    pub fn builtin_aliases(&self) -> &[Alias] {
        &self.builtin_aliases
    }

    /// What a name or alias stands for: a module name first, then a built-in name,
    /// then `modules.alias` (glob patterns), then built-in aliases.
    pub fn lookup(&self, wanted: &str) -> Lookup {
        let mut found = Lookup::default();
        let name = parse::normalize(wanted);
        if self.modules.contains_key(&name) {
            found.modules.push(name);
            return found;
        }
        if self.builtin.contains(&name) {
            found.builtin.push(name);
            return found;
        }
        let text = parse::normalize_alias(wanted);
        for (alias, pattern) in self.aliases.iter().zip(&self.alias_norm) {
            if !parse::glob_match(pattern, &text) {
                continue;
            }
            let target = parse::normalize(&alias.module);
            if self.modules.contains_key(&target) {
                if !found.modules.contains(&target) {
                    found.modules.push(target);
                }
            } else if self.builtin.contains(&target) && !found.builtin.contains(&target) {
                found.builtin.push(target);
            }
        }
        if found.is_empty() {
            for alias in &self.builtin_aliases {
                if parse::glob_match(&parse::normalize_alias(&alias.pattern), &text) {
                    let target = parse::normalize(&alias.module);
                    if !found.builtin.contains(&target) {
                        found.builtin.push(target);
                    }
                }
            }
        }
        found
    }

    /// True when `module` is made for CPU features this CPU lacks: it has `cpu:`
    /// aliases (`MODULE_DEVICE_TABLE(x86cpu, …)`, such as crc32c_intel's SSE4.2) and
    /// none of them matches `cpu_modalias` (`/sys/devices/system/cpu/modalias`). Such a
    /// module's init refuses with ENODEV; loading it only to be refused costs a
    /// signature check and an RCU grace period. A module without `cpu:` aliases fits
    /// any CPU.
    pub fn unsuited_to_cpu(&self, module: &str, cpu_modalias: &str) -> bool {
        let module = parse::normalize(module);
        let cpu = parse::normalize_alias(cpu_modalias.trim());
        let mut has_cpu_alias = false;
        for (alias, pattern) in self.aliases.iter().zip(&self.alias_norm) {
            if pattern.starts_with("cpu:") && parse::normalize(&alias.module) == module {
                if parse::glob_match(pattern, &cpu) {
                    return false;
                }
                has_cpu_alias = true;
            }
        }
        has_cpu_alias
    }

    /// The ordered load list for module names or aliases (`ext4`, `fs-ext4`,
    /// `crypto-crc32c`, `virtio:d00000002v00001AF4`). Names not found are reported
    /// in the result, never an error.
    pub fn resolve(&self, wanted: &[&str]) -> Resolution {
        let mut r = Resolver {
            index: self,
            out: Resolution::default(),
            placed: BTreeSet::new(),
            visiting: BTreeSet::new(),
        };
        for w in wanted {
            let found = self.lookup(w);
            if found.is_empty() {
                if !r.out.not_found.iter().any(|n| n == w) {
                    r.out.not_found.push((*w).to_string());
                }
                continue;
            }
            r.take(found);
        }
        r.out
    }

    /// [`resolve`](Self::resolve), then leave out the modules made for CPU features
    /// this CPU lacks ([`unsuited_to_cpu`](Self::unsuited_to_cpu)): the second of
    /// `crypto-crc32c`'s two providers, crc32c_intel, on a CPU without SSE4.2. A
    /// module another one in the list needs is kept, so that its failure is seen.
    /// Without a CPU modalias nothing is left out.
    pub fn resolve_for_cpu(&self, wanted: &[&str], cpu_modalias: Option<&str>) -> Resolution {
        let mut out = self.resolve(wanted);
        let Some(cpu) = cpu_modalias.filter(|c| !c.trim().is_empty()) else {
            return out;
        };
        let needed: BTreeSet<String> = out.load.iter().flat_map(|m| m.deps.clone()).collect();
        let (unsuited, load) = out
            .load
            .into_iter()
            .partition(|m| !needed.contains(&m.name) && self.unsuited_to_cpu(&m.name, cpu));
        out.load = load;
        out.unsuited = unsuited;
        out
    }
}

struct Resolver<'a> {
    index: &'a ModuleIndex,
    out: Resolution,
    placed: BTreeSet<String>,
    visiting: BTreeSet<String>,
}

impl Resolver<'_> {
    fn take(&mut self, found: Lookup) {
        for b in found.builtin {
            if !self.out.builtin.contains(&b) {
                self.out.builtin.push(b);
            }
        }
        for m in found.modules {
            self.visit(&m, None);
        }
    }

    fn softdep(&mut self, owner: &str, spec: &str) {
        let found = self.index.lookup(spec);
        if found.is_empty() {
            let pair = (owner.to_string(), spec.to_string());
            if !self.out.softdeps_not_found.contains(&pair) {
                self.out.softdeps_not_found.push(pair);
            }
        } else {
            self.take(found);
        }
    }

    /// Place `name` after what it needs. `path` is given for a dependency that has
    /// no `modules.dep` line of its own (a damaged file): it is still loaded.
    fn visit(&mut self, name: &str, path: Option<&str>) {
        if self.placed.contains(name) || !self.visiting.insert(name.to_string()) {
            return;
        }
        let index = self.index;
        let entry = index.modules.get(name);
        let dep_paths: &[String] = entry.map(|e| e.deps.as_slice()).unwrap_or(&[]);
        // depmod lists the modules that need others first; load from the end.
        for dep in dep_paths.iter().rev() {
            let dep_name = parse::module_name_from_path(dep);
            if index.builtin.contains(&dep_name) {
                continue;
            }
            self.visit(&dep_name, Some(dep));
        }
        // Then its `pre:` soft dependencies, right before it (modprobe's order).
        let soft = index.softdeps.get(name);
        if let Some(s) = soft {
            for p in &s.pre {
                self.softdep(name, p);
            }
        }
        let file = entry.map(|e| e.path.as_str()).or(path);
        if let Some(file) = file {
            self.out.load.push(ModuleToLoad {
                name: name.to_string(),
                path: file.to_string(),
                deps: dep_paths
                    .iter()
                    .map(|d| parse::module_name_from_path(d))
                    .collect(),
            });
        }
        self.placed.insert(name.to_string());
        self.visiting.remove(name);
        if let Some(s) = soft {
            for p in &s.post {
                self.softdep(name, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_start_with_the_core_and_have_no_duplicates() {
        let some = modules_for(&["ext4", "virtio", "sata", "e1000"]);
        assert_eq!(
            some,
            [
                "loop",
                "squashfs",
                "overlay",
                "ext4",
                "virtio_pci",
                "virtio_blk",
                "ahci",
                "ata_piix",
                "sd_mod",
                "e1000"
            ]
        );
        let all = all_boot_modules();
        for g in MODULE_GROUPS {
            assert!(
                g.modules.iter().all(|m| all.iter().any(|a| a == m)),
                "{}",
                g.name
            );
        }
        let mut seen = BTreeSet::new();
        assert!(all.iter().all(|m| seen.insert(m)));
        assert_eq!(modules_for(&[]), CORE_MODULES);
    }

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
kernel/lib/crc16.ko:\n\
kernel/fs/mbcache.ko:\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/crypto/crc32c_generic.ko:\n\
kernel/arch/x86/crypto/crc32c-intel.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko\n\
kernel/drivers/usb/core/usbcore.ko:\n\
kernel/a.ko: kernel/b.ko\n\
kernel/b.ko: kernel/a.ko\n\
kernel/p.ko:\n\
kernel/q.ko:\n\
kernel/m.ko: kernel/gone.ko kernel/lib/crc32.ko\n";
    const ALIAS: &str = "alias crypto-crc32c-intel crc32c_intel\n\
alias crypto-crc32c crc32c_intel\n\
alias fs-ext4 ext4\n\
alias crypto-crc32c crc32c_generic\n\
alias virtio:d00000002v* virtio_blk\n\
alias crypto-crc32 crc32\n\
alias stale nosuchmodule\n\
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n";
    const SOFT: &str = "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n\
softdep q pre: p post: usb-storage missing\nsoftdep p pre: q\n";
    const BUILTIN: &str = "kernel/lib/crc32.ko\nkernel/fs/binfmt_elf.ko\n";

    fn index() -> ModuleIndex {
        ModuleIndex::from_texts(DEP, ALIAS, SOFT, BUILTIN)
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.load.iter().map(|m| m.name.as_str()).collect()
    }

    fn pos(r: &Resolution, n: &str) -> usize {
        names(r).iter().position(|x| *x == n).unwrap()
    }

    #[test]
    fn ext4_with_softdep() {
        let r = index().resolve(&["ext4"]);
        assert_eq!(
            names(&r),
            [
                "crc32c_intel",
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ],
            "jbd2's own pre: softdep comes first, then ext4's deps from the end of its line"
        );
        assert_eq!(r.load[5].path, "kernel/fs/ext4/ext4.ko");
        assert_eq!(r.load[5].deps, ["crc16", "mbcache", "jbd2"]);
        assert!(r.not_found.is_empty() && r.builtin.is_empty());
    }

    #[test]
    fn aliases_dashes_and_builtin() {
        let i = index();
        let r = i.resolve(&[
            "fs-ext4",
            "usb_storage",
            "usb-storage",
            "virtio:d00000002v00001AF4",
        ]);
        assert_eq!(names(&r).iter().filter(|n| **n == "ext4").count(), 1);
        assert!(pos(&r, "usbcore") < pos(&r, "usb_storage"));
        assert!(pos(&r, "virtio_ring") < pos(&r, "virtio"));
        assert!(pos(&r, "virtio") < pos(&r, "virtio_blk"));
        let r = i.resolve(&[
            "crc32",
            "crypto-crc32",
            "binfmt-elf",
            "nope",
            "stale",
            "nope",
        ]);
        assert!(r.load.is_empty());
        assert_eq!(r.builtin, ["crc32", "binfmt_elf"]);
        assert_eq!(r.not_found, ["nope", "stale"]);
        assert_eq!(
            i.lookup("crypto-crc32c").modules,
            ["crc32c_intel", "crc32c_generic"]
        );
        assert!(i.lookup("virtio:d00000003v1").is_empty());
    }

    /// `/sys/devices/system/cpu/modalias` of QEMU's default CPU (no SSE4.2, 0094)
    /// and of one with it.
    const CPU_WITHOUT_SSE42: &str = "cpu:type:x86,ven0000fam0006mod0006:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0017,0018,0019,001A,002B,0034,003B,003D,0068,006F,0070,0072,0074,0075,0080,008C,0093";
    const CPU_WITH_SSE42: &str = "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0002,0003,0080,008C,0093,0094,0095\n";

    #[test]
    fn modules_for_a_missing_cpu_feature_are_left_out() {
        let i = index();
        assert!(i.unsuited_to_cpu("crc32c-intel", CPU_WITHOUT_SSE42));
        assert!(!i.unsuited_to_cpu("crc32c_intel", CPU_WITH_SSE42));
        // No cpu: alias: fits any CPU.
        assert!(!i.unsuited_to_cpu("crc32c_generic", CPU_WITHOUT_SSE42));
        assert!(!i.unsuited_to_cpu("ext4", ""));

        let without = i.resolve_for_cpu(&["ext4"], Some(CPU_WITHOUT_SSE42));
        assert_eq!(
            names(&without),
            ["crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]
        );
        assert_eq!(without.unsuited.len(), 1);
        assert_eq!(without.unsuited[0].name, "crc32c_intel");
        let with = i.resolve_for_cpu(&["ext4"], Some(CPU_WITH_SSE42));
        assert_eq!(names(&with), names(&i.resolve(&["ext4"])));
        assert!(with.unsuited.is_empty());
        // Unknown CPU: nothing is left out.
        assert_eq!(names(&i.resolve_for_cpu(&["ext4"], None)).len(), 6);
        assert_eq!(names(&i.resolve_for_cpu(&["ext4"], Some(" "))).len(), 6);
    }

    #[test]
    fn a_cpu_feature_module_another_needs_is_kept() {
        let i = ModuleIndex::from_texts(
            "kernel/user.ko: kernel/fast.ko\nkernel/fast.ko:\n",
            "alias cpu:type:x86,ven*fam*mod*:feature:*0094* fast\n",
            "",
            "",
        );
        let r = i.resolve_for_cpu(&["user"], Some(CPU_WITHOUT_SSE42));
        assert_eq!(names(&r), ["fast", "user"]);
        assert!(r.unsuited.is_empty());
        let r = i.resolve_for_cpu(&["fast"], Some(CPU_WITHOUT_SSE42));
        assert!(r.load.is_empty());
        assert_eq!(r.unsuited[0].name, "fast");
    }

    #[test]
    fn cycles_post_and_missing() {
        let r = index().resolve(&["a", "q", "m"]);
        // a <-> b: each once.
        assert_eq!(
            names(&r)
                .iter()
                .filter(|n| **n == "a" || **n == "b")
                .count(),
            2
        );
        // q pre: p (whose own pre: q is the cycle), post: usb-storage.
        assert!(pos(&r, "p") < pos(&r, "q"));
        assert!(pos(&r, "q") < pos(&r, "usb_storage"));
        assert_eq!(
            r.softdeps_not_found,
            [("q".to_string(), "missing".to_string())]
        );
        // m needs gone.ko (no line of its own: still loaded) and built-in crc32 (skipped).
        assert!(pos(&r, "gone") < pos(&r, "m"));
        assert!(!names(&r).contains(&"crc32"));
        let mut seen = BTreeSet::new();
        assert!(r.load.iter().all(|m| seen.insert(m.name.clone())));
    }
}
