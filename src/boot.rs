//! The boot, when overboot runs as `/init` (DESIGN section 2): early mounts and
//! logging, kernel modules, BootExt found and mounted, the root assembled into
//! `/sysroot`, hand-off to the real init. Any fatal error goes to the failure policy;
//! PID 1 never returns, exits or unwinds.

use crate::assemble::{self, Request};
use crate::cmdline::{self, BootConfig, DeviceSpec};
use crate::pid1::{self, Fatal};
use crate::probe::{self, BlockDevice};
use crate::state::BootExtInfo;
use crate::sys::{errno_text, mounts};
use rustix::mount::MountAttrFlags;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Where BootExt is mounted in the initramfs while the root is assembled.
const BOOTEXT_MNT: &str = "/run/overboot/bootext";
const NEW_ROOT: &str = "/sysroot";
/// A volume carrying this file is BootExt when no label matches.
const LIVECD_MARKER: &str = "livecd";

/// Filesystems BootExt may carry, in the order a marker search tries them.
const BOOTEXT_FILESYSTEMS: &[&str] = &["ext4", "vfat", "btrfs", "xfs", "iso9660", "ext3", "ext2"];

pub fn main() -> ! {
    pid1::install_panic_hook();
    pid1::guard(|| run(None))
}

const INIT_USAGE: &str = "\
NAME: overboot's initramfs build. Run by the kernel as /init (PID 1), it boots
the appliance (DESIGN section 2). By hand it only knows:
  NAME assemble --bootext DIR --root DIR [--cmdline STR] [--state FILE]
                [--trust-keys DIR] [--meminfo FILE] [--run-dir DIR]
  NAME --version
Every other command is in `overboot` (see overboot assemble --help).";

/// Tells `mkinitramfs` that this build never unwinds, so the copy in the initramfs
/// can do without unwind tables (`overboot::initramfs::elf`).
#[cfg(panic = "abort")]
static NEVER_UNWINDS: [u8; 42] = *b"overboot-init: panic=abort, never unwinds\0";

/// `main` of the two initramfs builds, `overboot-init` and `overboot-init-net`
/// (`name`): `boot` as PID 1, else `assemble` and `/sbin/modprobe`. Leaving the
/// other commands out lets link-time optimisation drop their code.
pub fn init_main(name: &str, boot: fn() -> !) -> ! {
    // Keeps the marker through link-time optimisation.
    #[cfg(panic = "abort")]
    std::hint::black_box(&NEVER_UNWINDS);
    if pid1::is_pid1() {
        boot();
    }
    let args: Vec<String> = std::env::args().collect();
    // /sbin/modprobe in the initramfs is a link to /init: the kernel asking for a
    // module (crate::kmod::modprobe).
    crate::kmod::modprobe::exit_if_invoked_as_modprobe(&args);
    crate::command::init_stderr_logger();
    let rest = args.get(2..).unwrap_or(&[]);
    let usage = INIT_USAGE.replace("NAME", name);
    let code = match args.get(1).map(String::as_str) {
        Some("assemble") => match crate::command::parse_assemble(rest) {
            Ok(Some(o)) => crate::command::assemble(&o),
            Ok(None) => {
                println!("{usage}");
                0
            }
            Err(e) => {
                eprintln!("{name}: {e}\n\n{usage}");
                2
            }
        },
        Some("--version") => {
            println!("{name} {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("help" | "--help" | "-h") => {
            println!("{usage}");
            0
        }
        Some(other) => {
            eprintln!("{name}: unknown command '{other}'\n\n{usage}");
            2
        }
        None => {
            eprintln!("{usage}");
            2
        }
    };
    std::process::exit(code);
}

/// The boot of the network build (`overboot-init-net`), where `overboot.fetch=`
/// works. Only that binary reaches `crate::net`'s code.
pub fn main_net() -> ! {
    pid1::install_panic_hook();
    pid1::guard(|| run(Some(crate::net::run)))
}

/// The network step: configure the interface, fetch and verify the image.
type Netboot = fn(&BootConfig, &crate::verify::Paths) -> crate::net::NetBoot;

/// Where a boot without BootExt (a netboot) assembles from: an empty directory.
const NO_BOOTEXT: &str = "/run/overboot/no-bootext";

fn run(net: Option<Netboot>) -> Result<(), Fatal> {
    pid1::early_mounts().map_err(|e| {
        Fatal::new(
            "the early mounts (/proc, /sys, /dev, /run)",
            e,
            "use a kernel with devtmpfs, proc, sysfs and tmpfs",
        )
    })?;
    let cmdline_text = pid1::read_cmdline();
    let parsed = cmdline::parse(&cmdline_text);
    // The failure policy is known from here on; the manifest cannot change it because
    // a failure may come before BootExt is read.
    let early: BootConfig = parsed.settings.clone().resolve();
    pid1::set_failure_policy(early.onfail);
    pid1::init_logger(early.debug);
    log::info!("overboot {} starting", env!("CARGO_PKG_VERSION"));

    let modules = Modules::open();
    let seen_in_coldplug = modules
        .as_ref()
        .and_then(|m| m.coldplug(&|| probe::find(&early.bootext, &probe::scan())));
    let device = match seen_in_coldplug {
        Some(dev) => {
            announce(&dev);
            Some(dev)
        }
        None => match find_bootext(&early, modules.as_ref()) {
            Ok(dev) => Some(dev),
            // BootExt is optional for a netboot (the kamikazi pattern without a stick).
            Err(fatal) if early.fetch.is_some() => {
                log::warn!(
                    "no BootExt ({}): the network image boots without DIRS/, Overlay/, Units/ or a manifest",
                    fatal.found
                );
                None
            }
            Err(fatal) => return Err(fatal),
        },
    };
    let network = early.fetch.as_ref().map(|url| {
        // The coldplug stopped at BootExt: the NIC's driver may not be loaded yet.
        if let Some(m) = &modules {
            m.load_new_drivers();
        }
        match net {
            Some(step) => step(&early, &Default::default()),
            None => crate::net::NetBoot::refused(
                url,
                "overboot.fetch= needs the network build of /init (overboot-init-net), which mkinitramfs puts in with --modules net (or the default, every group)",
            ),
        }
    });
    let (bootext, info) = match &device {
        Some(device) => {
            if let (Some(m), Some(fs)) = (&modules, device.fs_type.as_deref()) {
                m.load(&[&format!("fs-{fs}")]);
            }
            (BOOTEXT_MNT, mount_bootext(device, &early.bootext)?)
        }
        None => (NO_BOOTEXT, no_bootext(&early)?),
    };
    let request = Request {
        bootext: bootext.into(),
        root: NEW_ROOT.into(),
        cmdline: cmdline_text,
        state_path: crate::state::STATE_PATH.into(),
        run_dir: "/run".into(),
        mode: "boot".into(),
        bootext_info: info,
        verify: Default::default(),
        network,
    };
    std::fs::create_dir_all(NEW_ROOT).map_err(|e| {
        Fatal::new(
            format!("the directory {NEW_ROOT}"),
            e.to_string(),
            "the initramfs must be writable",
        )
    })?;
    let assembled = assemble::assemble(&request)?;
    // The booted system's `overboot update` trusts what this boot trusted.
    let (keys, kept) = (crate::verify::TRUST_DIR, crate::verify::RUN_TRUST_DIR);
    if let Err(e) = crate::verify::keep_keys(Path::new(keys), Path::new(kept)) {
        log::warn!("{e}: overboot update will not trust this initramfs's keys");
    }
    // The bind at /mnt/cdrom in the new root keeps BootExt; this mount goes.
    let _ = mounts::detach(Path::new(BOOTEXT_MNT));
    let config = assembled.config;
    pid1::set_failure_policy(config.onfail);
    let candidates = pid1::init_candidates(config.init.as_deref());
    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let tail: Vec<String> = std::env::args().skip(1).collect();
    let steps: Vec<String> = assembled
        .state
        .timings
        .iter()
        .filter(|t| t.ms >= 1.0)
        .map(|t| format!("{} {:.0}", t.step, t.ms))
        .collect();
    log::info!(
        "assembled in {:.1} ms ({} ms); handing off",
        assembled.state.total_ms,
        steps.join(", ")
    );
    match pid1::switch_root(Path::new(NEW_ROOT), &candidates, &tail) {
        Ok(never) => match never {},
        Err(fatal) => Err(fatal),
    }
}

/// How many device aliases the boot tries drivers for, at the most.
const MAX_DEVICE_ALIASES: usize = 4096;

/// Modules always needed, whatever the hardware: the image and overlay stack.
const STACK_MODULES: &[&str] = &["loop", "squashfs", "overlay"];

/// Kernel modules for this boot, without modprobe or udev: the image stack, then the
/// drivers for the devices present (their `modalias` in sysfs, as udev's coldplug
/// does), again for devices those drivers reveal (a virtio disk appears once
/// virtio_pci is loaded) and for devices that appear while the boot waits for
/// BootExt. Loading only what matches keeps the boot fast: loading every storage
/// driver costs seconds under emulation. The filesystem of BootExt is loaded once it
/// is known.
struct Modules {
    dir: std::path::PathBuf,
    index: crate::kmod::ModuleIndex,
    cpu_modalias: Option<String>,
    /// Device aliases already tried, and every alias seen so far (to try those of
    /// devices that just appeared first).
    tried: RefCell<BTreeSet<String>>,
    seen: RefCell<BTreeSet<String>>,
}

impl Modules {
    fn open() -> Option<Modules> {
        let kver = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let dir = Path::new("/lib/modules").join(&kver);
        if !dir.exists() {
            log::info!(
                "no {} in the initramfs: relying on built-in drivers",
                dir.display()
            );
            return None;
        }
        match crate::kmod::ModuleIndex::load(&dir) {
            Ok(index) => Some(Modules {
                dir,
                index,
                cpu_modalias: crate::kmod::cpu_modalias(),
                tried: RefCell::default(),
                seen: RefCell::default(),
            }),
            Err(e) => {
                log::warn!("module index unreadable, relying on built-in drivers: {e}");
                None
            }
        }
    }

    /// Load `wanted` and what it needs; returns how many modules were loaded.
    fn load(&self, wanted: &[&str]) -> usize {
        let resolution = self
            .index
            .resolve_for_cpu(wanted, self.cpu_modalias.as_deref());
        let report = crate::kmod::load_resolution(&self.dir, &resolution);
        let what = wanted.join(" ");
        if report.all_ok() {
            log::debug!("{what}: {report}");
        } else {
            log::warn!("{what}: {report}");
        }
        report.count(|o| *o == crate::kmod::Outcome::Loaded)
    }

    /// Load drivers for the devices present, one device alias at a time, and stop
    /// as soon as `find_bootext` sees BootExt, which is returned: the booted
    /// system's udev loads the rest. Without BootExt, everything matching loads and
    /// the answer is None.
    fn coldplug(&self, find_bootext: &dyn Fn() -> Option<BlockDevice>) -> Option<BlockDevice> {
        self.load(STACK_MODULES);
        if let Some(dev) = find_bootext() {
            return Some(dev);
        }
        while let Some(loaded) = self.load_next_driver() {
            if loaded > 0
                && let Some(dev) = find_bootext()
            {
                return Some(dev);
            }
        }
        None
    }

    /// Drivers for every device that appeared since the coldplug (called while
    /// waiting for BootExt): a USB stick's disk shows up after usb-storage has
    /// loaded, and needs sd_mod.
    fn load_new_drivers(&self) {
        while self.load_next_driver().is_some() {}
    }

    /// Load the driver for one device alias not tried yet, in a stable order, those
    /// of devices that just appeared first (the virtio disk behind virtio_pci before
    /// the next PCI function's driver). The bus lists are read again each time,
    /// because a bus driver reveals new devices. Returns how many modules loaded,
    /// or None when no alias is left to try.
    fn load_next_driver(&self) -> Option<usize> {
        // A bound, should devices keep appearing with new aliases.
        if self.tried.borrow().len() >= MAX_DEVICE_ALIASES {
            return None;
        }
        let aliases = bus_modaliases(Path::new("/sys/bus"));
        let next = {
            let tried = self.tried.borrow();
            let seen = self.seen.borrow();
            let wanted = |a: &&String| !tried.contains(*a) && !self.index.lookup(a).is_empty();
            let fresh = aliases
                .iter()
                .filter(|a| !seen.contains(*a))
                .find(wanted)
                .cloned();
            fresh.or_else(|| aliases.iter().find(wanted).cloned())?
        };
        self.seen.borrow_mut().extend(aliases);
        self.tried.borrow_mut().insert(next.clone());
        Some(self.load(&[&next]))
    }
}

/// The `modalias` of every device on every bus: `/sys/bus/*/devices/*/modalias`,
/// what udev's coldplug goes through. The bus lists are flat, where a walk of all
/// of `/sys/devices` reads thousands of directories (about 0.1 s under emulation).
/// A bus without a `modalias` file (mmc: an SD card's `mmc:block`) gives it in the
/// device's `uevent` as `MODALIAS=`, which udev uses.
fn bus_modaliases(bus_root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(bus_root) else {
        return found;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for device in devices.flatten() {
            let dir = device.path();
            let alias = match std::fs::read_to_string(dir.join("modalias")) {
                Ok(text) => Some(text.trim().to_string()),
                Err(_) => std::fs::read_to_string(dir.join("uevent"))
                    .ok()
                    .and_then(|text| uevent_modalias(&text)),
            };
            if let Some(alias) = alias.filter(|a| !a.is_empty()) {
                found.insert(alias);
            }
        }
    }
    found
}

fn find_bootext(config: &BootConfig, modules: Option<&Modules>) -> Result<BlockDevice, Fatal> {
    let timeout = Duration::from_secs(u64::from(config.timeout_secs));
    log::info!(
        "waiting up to {} s for BootExt ({})",
        config.timeout_secs,
        config.bootext
    );
    let mut new_drivers = || {
        if let Some(m) = modules {
            m.load_new_drivers();
        }
    };
    match probe::wait_for_with(&config.bootext, timeout, &mut new_drivers) {
        Ok(dev) => {
            announce(&dev);
            Ok(dev)
        }
        Err(wait) => {
            if config.bootext == DeviceSpec::Label("BootExt".into())
                && let Some(dev) = find_by_marker(&wait.seen, modules)
            {
                log::warn!(
                    "no volume labelled BootExt; using {} which carries the '{LIVECD_MARKER}' marker",
                    dev.dev_path.display()
                );
                return Ok(dev);
            }
            Err(Fatal::new(
                format!("the BootExt volume ({})", config.bootext),
                wait.found(),
                wait.fix(),
            ))
        }
    }
}

/// A netboot without BootExt assembles from an empty directory: no DIRS/, no
/// manifest, no images but the network's.
fn no_bootext(config: &BootConfig) -> Result<BootExtInfo, Fatal> {
    std::fs::create_dir_all(NO_BOOTEXT).map_err(|e| {
        Fatal::new(
            format!("the directory {NO_BOOTEXT}"),
            e.to_string(),
            "/run must be writable",
        )
    })?;
    Ok(BootExtInfo {
        path: "none".into(),
        found_by: format!(
            "none: no {} within {} s (network boot)",
            config.bootext, config.timeout_secs
        ),
        device: None,
        fs_type: None,
    })
}

/// The line every boot gives once BootExt is found.
fn announce(dev: &BlockDevice) {
    log::info!(
        "BootExt is {} ({})",
        dev.dev_path.display(),
        dev.fs_type.as_deref().unwrap_or("unknown filesystem")
    );
}

/// The fallback of DESIGN section 2: a volume with the `livecd` marker file.
fn find_by_marker(devices: &[BlockDevice], modules: Option<&Modules>) -> Option<BlockDevice> {
    for dev in devices {
        let Some(fs) = dev
            .fs_type
            .as_deref()
            .filter(|f| BOOTEXT_FILESYSTEMS.contains(f))
        else {
            continue;
        };
        let Some(source) = dev.dev_path.to_str() else {
            continue;
        };
        if let Some(m) = modules {
            m.load(&[&format!("fs-{fs}")]);
        }
        let Ok(mnt) = mounts::new_mount(
            fs,
            source,
            &[("ro", None)],
            MountAttrFlags::MOUNT_ATTR_RDONLY,
        ) else {
            continue;
        };
        let Ok(marker) = rustix::fs::openat(
            &mnt,
            LIVECD_MARKER,
            rustix::fs::OFlags::PATH,
            rustix::fs::Mode::empty(),
        ) else {
            continue;
        };
        drop(marker);
        return Some(dev.clone());
    }
    None
}

fn mount_bootext(dev: &BlockDevice, spec: &DeviceSpec) -> Result<BootExtInfo, Fatal> {
    let source = dev.dev_path.display().to_string();
    let fs = dev.fs_type.clone().unwrap_or_else(|| "ext4".into());
    std::fs::create_dir_all(BOOTEXT_MNT).map_err(|e| {
        Fatal::new(
            format!("the directory {BOOTEXT_MNT}"),
            e.to_string(),
            "/run must be writable",
        )
    })?;
    // Anyone can rewrite the stick: nothing on it opens a device, runs, or gains
    // privileges from this mount. DIR_/FILE_ binds get their own flags (no noexec)
    // before they are visible (assemble::attach_staged).
    let attrs = MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    // Read-write, because DIR_ entries are mounted read-write; a medium that cannot be
    // written (iso9660, a write-protected card) is mounted read-only instead.
    let mnt = mounts::new_mount(&fs, &source, &[], attrs).or_else(|first| {
        log::warn!("BootExt {source} read-write: {first}; trying read-only");
        mounts::new_mount(
            &fs,
            &source,
            &[("ro", None)],
            attrs | MountAttrFlags::MOUNT_ATTR_RDONLY,
        )
    });
    let mnt = mnt.map_err(|e| {
        Fatal::new(
            format!("to mount BootExt {source} ({fs})"),
            e,
            "check the filesystem (fsck) and that the initramfs has its module",
        )
    })?;
    let target = mounts::open_dir(Path::new(BOOTEXT_MNT))
        .map_err(|e| Fatal::new(BOOTEXT_MNT, errno_text(e), "report this"))?;
    mounts::attach(&mnt, &target).map_err(|e| {
        Fatal::new(
            format!("to mount BootExt on {BOOTEXT_MNT}"),
            errno_text(e),
            "report this",
        )
    })?;
    Ok(BootExtInfo {
        path: source.clone(),
        found_by: spec.to_string(),
        device: Some(source),
        fs_type: Some(fs),
    })
}

/// `MODALIAS=` from the text of a sysfs `uevent` file.
fn uevent_modalias(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("MODALIAS="))
        .map(|a| a.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs-shaped tree: bus entries are links into `devices/`, as in `/sys`.
    #[test]
    fn bus_modaliases_reads_each_bus_device_once() {
        let sys = std::env::temp_dir().join(format!("overboot-bus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let device = |path: &str, modalias: Option<&str>| {
            let dir = sys.join("devices").join(path);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(text) = modalias {
                std::fs::write(dir.join("modalias"), text).unwrap();
            }
            dir
        };
        let on_bus = |bus: &str, name: &str, target: &Path| {
            let dir = sys.join("bus").join(bus).join("devices");
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
        };
        let pci = device("pci0000:00/0000:00:03.0", Some("pci:v00001AF4d00001001\n"));
        let virtio = device(
            "pci0000:00/0000:00:03.0/virtio0",
            Some("virtio:d00000002v00001AF4\n"),
        );
        let cpu = device("system/cpu/cpu0", None);
        // The mmc bus has no modalias file, only MODALIAS= in uevent.
        let card = device("pci0000:00/0000:00:04.0/mmc_host/mmc0/mmc0:4567", None);
        std::fs::write(
            card.join("uevent"),
            "DRIVER=\nMMC_TYPE=SD\nMODALIAS=mmc:block\n",
        )
        .unwrap();
        std::fs::write(cpu.join("uevent"), "DRIVER=processor\n").unwrap();
        let blank = device("platform/blank", Some("\n"));
        // Deep in devices/ but on no bus: not a coldplug candidate.
        device("virtual/tty/tty0/deep", Some("tty:deep"));
        on_bus("pci", "0000:00:03.0", &pci);
        on_bus("virtio", "virtio0", &virtio);
        on_bus("cpu", "cpu0", &cpu);
        on_bus("mmc", "mmc0:4567", &card);
        on_bus("platform", "blank", &blank);
        std::fs::create_dir_all(sys.join("bus/nodevices")).unwrap();

        let found = bus_modaliases(&sys.join("bus"));
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                "mmc:block",
                "pci:v00001AF4d00001001",
                "virtio:d00000002v00001AF4"
            ]
        );
        assert!(bus_modaliases(&sys.join("absent")).is_empty());
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
