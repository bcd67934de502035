//! overboot::probe against real filesystems, partition tables and loop devices.
//! Images are made by the real tools; every field is compared with what blkid
//! reports on the same bytes. Runs as root (loop devices).

use overboot::cmdline::DeviceSpec;
use overboot::probe::{self, BlockDevice, fs::probe_fs, parts::parse_table};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "overboot-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A label nobody else on this machine uses (ext4 labels: 16 bytes at most).
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sparse(path: &Path, size: &str) {
    run("truncate", &["-s", size, path.to_str().unwrap()]);
}

/// What `blkid -p` reports, keyed by the `-o export` names (TYPE, LABEL, UUID,
/// VERSION, PART_ENTRY_*). Read from `-o udev`, whose `\xNN` escapes are
/// exact for any byte (`-o export` turns non-ASCII into `M-` notation).
fn blkid(path: &Path) -> HashMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "udev"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut map = HashMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = match k {
            "ID_FS_TYPE" => "TYPE",
            "ID_FS_LABEL_ENC" => "LABEL",
            "ID_FS_UUID_ENC" => "UUID",
            "ID_FS_VERSION" => "VERSION",
            other => match other.strip_prefix("ID_") {
                Some(rest) if rest.starts_with("PART_ENTRY_") => rest,
                _ => continue,
            },
        };
        let raw = v.as_bytes();
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'x') && i + 4 <= raw.len() {
                let hex = std::str::from_utf8(&raw[i + 2..i + 4]).unwrap();
                bytes.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            } else {
                bytes.push(raw[i]);
                i += 1;
            }
        }
        map.insert(key.to_string(), String::from_utf8(bytes).unwrap());
    }
    map
}

/// Probe an image file and require the same TYPE, LABEL and UUID as blkid.
fn check_image(path: &Path, want_type: &str, want_label: Option<&str>) {
    let info = probe_fs(&File::open(path).unwrap()).expect("no filesystem recognised");
    let b = blkid(path);
    assert_eq!(
        b.get("TYPE").map(String::as_str),
        Some(want_type),
        "blkid: {b:?}"
    );
    assert_eq!(info.fs_type, want_type, "{path:?}");
    assert_eq!(
        info.label.as_deref(),
        b.get("LABEL").map(String::as_str),
        "LABEL {b:?}"
    );
    assert_eq!(info.label.as_deref(), want_label, "LABEL");
    assert_eq!(
        info.uuid.as_deref(),
        b.get("UUID").map(String::as_str),
        "UUID {b:?}"
    );
}

#[test]
fn ext2_ext3_ext4() {
    let t = TempDir::new();
    for (mkfs, label) in [
        ("mkfs.ext2", "two"),
        ("mkfs.ext3", "three"),
        ("mkfs.ext4", "BootExt"),
    ] {
        let img = t.path(&format!("{mkfs}.img"));
        sparse(&img, "32M");
        run(mkfs, &["-q", "-F", "-L", label, img.to_str().unwrap()]);
        check_image(&img, &mkfs[5..], Some(label));
    }
    // No label; a UUID given in upper case is stored as bytes, printed lower.
    let img = t.path("nolabel.img");
    sparse(&img, "16M");
    let uuid = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9";
    run(
        "mkfs.ext4",
        &["-q", "-F", "-U", uuid, img.to_str().unwrap()],
    );
    check_image(&img, "ext4", None);
    let info = probe_fs(&File::open(&img).unwrap()).unwrap();
    assert_eq!(info.uuid.unwrap(), uuid.to_ascii_lowercase());
}

#[test]
fn vfat_12_16_32() {
    let t = TempDir::new();
    // FAT32 of 300 MiB: the root directory (with the label entry) lies far
    // beyond the first 70 KiB.
    for (bits, size, label) in [
        ("12", "2M", Some("SMALL")),
        ("16", "20M", Some("BootExt")),
        ("32", "300M", Some("BOOT EXT")),
        ("32", "40M", None),
    ] {
        let img = t.path(&format!("fat{bits}-{size}.img"));
        sparse(&img, size);
        let mut args = vec!["-F", bits];
        if let Some(l) = label {
            args.extend(["-n", l]);
        }
        args.push(img.to_str().unwrap());
        run("mkfs.vfat", &args);
        check_image(&img, "vfat", label);
        let b = blkid(&img);
        assert_eq!(
            b.get("VERSION").map(String::as_str),
            Some(&*format!("FAT{bits}"))
        );
    }
    // fatlabel rewrites the root-directory label: blkid and we follow it.
    let img = t.path("fat32-40M.img");
    run("fatlabel", &[img.to_str().unwrap(), "RELABELED"]);
    check_image(&img, "vfat", Some("RELABELED"));
}

#[test]
fn btrfs_xfs_squashfs() {
    let t = TempDir::new();
    let img = t.path("btrfs.img");
    sparse(&img, "128M");
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-L", "BootExt", img.to_str().unwrap()],
    );
    check_image(&img, "btrfs", Some("BootExt"));

    let img = t.path("xfs.img");
    sparse(&img, "300M");
    run(
        "mkfs.xfs",
        &["-q", "-f", "-L", "BootExt", img.to_str().unwrap()],
    );
    check_image(&img, "xfs", Some("BootExt"));

    let src = t.path("tree");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let img = t.path("sq.img");
    run(
        "mksquashfs",
        &[
            src.to_str().unwrap(),
            img.to_str().unwrap(),
            "-quiet",
            "-noappend",
        ],
    );
    check_image(&img, "squashfs", None);
}

#[test]
fn iso9660_plain_and_joliet() {
    let t = TempDir::new();
    let src = t.path("tree");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let img = t.path("plain.iso");
    run(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-V",
            "BOOTEXT",
            "-o",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    check_image(&img, "iso9660", Some("BOOTEXT"));
    // Joliet, a long mixed-case name, and set dates: blkid's UUID is the
    // modification date.
    let img = t.path("joliet.iso");
    run(
        "xorriso",
        &[
            "-report_about",
            "FAILURE",
            "-volume_date",
            "c",
            "2020010203040506",
            "-volume_date",
            "m",
            "2026112200000000",
            "-volid",
            "Boot Ext with a long name",
            "-joliet",
            "on",
            "-outdev",
            img.to_str().unwrap(),
            "-map",
            src.to_str().unwrap(),
            "/",
        ],
    );
    check_image(&img, "iso9660", Some("Boot Ext with a long name"));
    let info = probe_fs(&File::open(&img).unwrap()).unwrap();
    assert_eq!(info.uuid.as_deref(), Some("2026-11-22-00-00-00-00"));
}

/// A loop device, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(img: &Path, extra: &[&str]) -> Loop {
        let mut args = vec!["-f", "--show"];
        args.extend(extra);
        args.push(img.to_str().unwrap());
        let dev = run("losetup", &args).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "{dev}");
        Loop(dev)
    }
    fn name(&self) -> &str {
        self.0.trim_start_matches("/dev/")
    }
    /// Where `probe::scan` names partition `n`.
    fn dev_part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.0))
    }
    /// A device node of our own for partition `n`, made from the kernel's numbers in
    /// sysfs: a node left in /dev by an earlier partition can name another device.
    fn part(&self, n: u32) -> String {
        let name = format!("{}p{n}", self.name());
        let numbers = std::fs::read_to_string(format!("/sys/class/block/{name}/dev"))
            .unwrap_or_else(|e| panic!("{name} is not in /sys/class/block: {e}"));
        let (major, minor) = numbers.trim().split_once(':').unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-nodes");
        std::fs::create_dir_all(&dir).unwrap();
        let node = dir.join(&name);
        let _ = std::fs::remove_file(&node);
        run("mknod", &[node.to_str().unwrap(), "b", major, minor]);
        node.display().to_string()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn find(spec: &str, devs: &[BlockDevice]) -> Vec<BlockDevice> {
    let spec = DeviceSpec::parse(spec).unwrap();
    devs.iter()
        .filter(|d| probe::matches(&spec, d))
        .cloned()
        .collect()
}

/// The partition nodes appear asynchronously after `losetup -P`. A kernel built
/// without that partition-table parser (some VM kernels) splits nothing: then
/// the partitions are added from user space with `partx -a` (BLKPG), which is
/// the same sysfs view for the code under test.
fn wait_part(lo: &Loop, n: u32) -> String {
    // The kernel's list, not /dev: a node can outlive its partition there.
    let sys = format!("/sys/class/block/{}p{n}", lo.name());
    for i in 0..100 {
        if Path::new(&sys).exists() {
            return lo.part(n);
        }
        if i == 20 {
            let _ = Command::new("partx").args(["-a", &lo.0]).status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{sys} did not appear");
}

#[test]
fn scan_finds_loop_by_label_uuid_and_path() {
    let t = TempDir::new();
    let img = t.path("e4.img");
    sparse(&img, "32M");
    let label = unique("lu");
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", &label, img.to_str().unwrap()],
    );
    let lo = Loop::attach(&img, &["-r"]);
    let b = blkid(Path::new(&lo.0));
    let uuid = b.get("UUID").unwrap().clone();

    let devs = probe::scan();
    let hits = find(&format!("LABEL={label}"), &devs);
    assert_eq!(hits.len(), 1, "{hits:?}");
    let d = &hits[0];
    assert_eq!(d.name, lo.name());
    assert_eq!(d.dev_path, Path::new(&lo.0));
    assert_eq!(d.fs_type.as_deref(), Some("ext4"));
    assert_eq!(d.uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(d.size_bytes, 32 << 20);
    assert_eq!(d.part_uuid, None);
    assert_eq!(find(&format!("UUID={uuid}"), &devs), hits);
    assert_eq!(
        find(&format!("UUID={}", uuid.to_ascii_uppercase()), &devs),
        hits
    );
    assert_eq!(find(&lo.0, &devs), hits);
    // A symlink to the node (what /dev/disk/by-* would be) resolves to it.
    let link = t.path("link");
    std::os::unix::fs::symlink(&lo.0, &link).unwrap();
    let spec = DeviceSpec::Path(link.to_str().unwrap().to_string());
    assert!(probe::matches(&spec, d));
    assert!(find(&format!("LABEL={label}-no"), &devs).is_empty());
    // Nothing empty is listed; every loop device listed has a size.
    assert!(devs.iter().all(|d| d.size_bytes > 0));
}

#[test]
fn gpt_partitions_by_partuuid_and_partlabel() {
    let t = TempDir::new();
    let img = t.path("gpt.img");
    sparse(&img, "64M");
    let name1 = unique("pl");
    let name2 = format!("Ünïcode {}", unique("n"));
    let guid1 = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9";
    run(
        "sgdisk",
        &[
            "-o",
            "-n",
            "1:2048:+20M",
            "-c",
            &format!("1:{name1}"),
            "-u",
            &format!("1:{guid1}"),
            "-n",
            "3:0:+10M",
            "-c",
            &format!("3:{name2}"),
            img.to_str().unwrap(),
        ],
    );
    let table = parse_table(&File::open(&img).unwrap()).expect("no GPT found");
    assert_eq!(table.kind, "gpt");
    assert_eq!(table.entries.len(), 2);
    // A filesystem inside partition 1, to see both kinds of field together.
    let lo = Loop::attach(&img, &["-P"]);
    wait_part(&lo, 1);
    wait_part(&lo, 3);
    run("mkfs.vfat", &["-n", "INPART", &lo.part(1)]);

    for e in &table.entries {
        let b = blkid(Path::new(&lo.part(e.number)));
        assert_eq!(
            b.get("PART_ENTRY_NUMBER"),
            Some(&e.number.to_string()),
            "{b:?}"
        );
        assert_eq!(b.get("PART_ENTRY_UUID"), Some(&e.part_uuid), "{b:?}");
        assert_eq!(b.get("PART_ENTRY_NAME"), e.part_label.as_ref(), "{b:?}");
    }
    assert_eq!(table.entries[0].part_uuid, guid1.to_ascii_lowercase());
    assert_eq!(table.entries[1].part_label.as_deref(), Some(name2.as_str()));

    // Nodes of our own (as an initramfs without devtmpfs gets them): /dev can hold a
    // node left by an earlier partition with other numbers, which probe refuses.
    let dev_root = t.path("dev");
    let devs = probe::scan_at(Path::new("/sys"), &dev_root);
    let hits = find(&format!("PARTUUID={guid1}"), &devs);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].dev_path, dev_root.join(format!("{}p1", lo.name())));
    assert_eq!(hits[0].part_label.as_deref(), Some(name1.as_str()));
    assert_eq!(hits[0].fs_type.as_deref(), Some("vfat"));
    assert_eq!(hits[0].label.as_deref(), Some("INPART"));
    let b = blkid(Path::new(&lo.part(1)));
    assert_eq!(hits[0].uuid.as_ref(), b.get("UUID"));
    assert_eq!(find(&format!("PARTLABEL={name1}"), &devs), hits);
    let hits3 = find(&format!("PARTLABEL={name2}"), &devs);
    assert_eq!(hits3.len(), 1);
    assert_eq!(hits3[0].dev_path, dev_root.join(format!("{}p3", lo.name())));
    assert_eq!(hits3[0].part_uuid, Some(table.entries[1].part_uuid.clone()));
    // The whole disk carries no PARTUUID of its own.
    let disk = devs.iter().find(|d| d.name == lo.name()).unwrap();
    assert_eq!(disk.part_uuid, None);
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let t = TempDir::new();
    let img = t.path("gpt4k.img");
    sparse(&img, "64M");
    let name = unique("fk");
    {
        let lo = Loop::attach(&img, &["--sector-size", "4096"]);
        run(
            "sgdisk",
            &["-o", "-n", "2:0:+8M", "-c", &format!("2:{name}"), &lo.0],
        );
    }
    let table = parse_table(&File::open(&img).unwrap()).expect("no GPT found");
    assert_eq!((table.kind, table.sector_size), ("gpt", 4096));
    let e = &table.entries[0];
    assert_eq!(
        (e.number, e.part_label.as_deref()),
        (2, Some(name.as_str()))
    );
    let lo = Loop::attach(&img, &["-P", "--sector-size", "4096"]);
    wait_part(&lo, 2);
    let b = blkid(Path::new(&lo.part(2)));
    assert_eq!(b.get("PART_ENTRY_UUID"), Some(&e.part_uuid), "{b:?}");
    let hits = find(&format!("PARTLABEL={name}"), &probe::scan());
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].part_uuid.as_ref(), Some(&e.part_uuid));
}

#[test]
fn mbr_primary_and_logical_partuuids() {
    let t = TempDir::new();
    let img = t.path("mbr.img");
    sparse(&img, "64M");
    let layout = "label: dos\nlabel-id: 0x5eedf00d\nstart=2048,size=8M,type=83\n\
                  start=18432,size=30M,type=5\nstart=20480,size=8M,type=83\n\
                  start=38912,size=8M,type=c\n";
    let mut child = Command::new("sfdisk")
        .args(["-q", img.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(layout.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let table = parse_table(&File::open(&img).unwrap()).expect("no MBR found");
    assert_eq!(table.kind, "dos");
    let numbers: Vec<u32> = table.entries.iter().map(|e| e.number).collect();
    assert_eq!(numbers, [1, 2, 5, 6]);
    let lo = Loop::attach(&img, &["-P", "-r"]);
    for n in [1, 2, 5, 6] {
        wait_part(&lo, n);
    }
    let devs = probe::scan();
    for e in &table.entries {
        assert_eq!(e.part_uuid, format!("5eedf00d-{:02x}", e.number));
        let path = lo.part(e.number);
        let b = blkid(Path::new(&path));
        assert_eq!(
            b.get("PART_ENTRY_UUID"),
            Some(&e.part_uuid),
            "{path}: {b:?}"
        );
        let d = devs
            .iter()
            .find(|d| d.dev_path == lo.dev_part(e.number))
            .unwrap();
        assert_eq!(d.part_uuid.as_ref(), Some(&e.part_uuid));
    }
}

#[test]
fn wait_for_times_out_with_a_useful_message() {
    let t = TempDir::new();
    let img = t.path("v.img");
    sparse(&img, "20M");
    let label = unique("W").to_ascii_uppercase();
    run("mkfs.vfat", &["-n", &label, img.to_str().unwrap()]);
    let lo = Loop::attach(&img, &["-r"]);
    let wanted = unique("never");
    let start = Instant::now();
    let err = probe::wait_for(&DeviceSpec::Label(wanted.clone()), Duration::from_secs(1))
        .expect_err("a label that does not exist was found");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(err.waited >= Duration::from_secs(1));
    assert_eq!(err.spec, format!("LABEL={wanted}"));
    let text = err.to_string();
    let uuid = blkid(Path::new(&lo.0)).get("UUID").unwrap().clone();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{} (", lo.0)))
        .unwrap_or_else(|| panic!("{} not listed:\n{text}", lo.0));
    assert!(line.contains("TYPE=vfat"), "{line}");
    assert!(line.contains(&format!("LABEL=\"{label}\"")), "{line}");
    assert!(line.contains(&format!("UUID={uuid}")), "{line}");
    assert!(line.contains("20.0 MiB"), "{line}");
    assert!(
        text.contains(&format!("no block device matches LABEL={wanted}")),
        "{text}"
    );
    assert!(text.contains("overboot.bootext="), "{text}");
    assert!(
        text.contains(&format!("label the volume {wanted}")),
        "{text}"
    );
}

#[test]
fn wait_for_finds_a_late_device() {
    let t = TempDir::new();
    let img = t.path("late.img");
    sparse(&img, "32M");
    let label = unique("late");
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", &label, img.to_str().unwrap()],
    );
    let start = Instant::now();
    let img2 = img.clone();
    let attacher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        let lo = Loop::attach(&img2, &["-r"]);
        (lo, Instant::now())
    });
    let found = probe::wait_for(&DeviceSpec::Label(label.clone()), Duration::from_secs(20));
    let found_at = Instant::now();
    let (lo, attached_at) = attacher.join().unwrap();
    let dev = found.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dev.dev_path, Path::new(&lo.0));
    assert_eq!(dev.label.as_deref(), Some(label.as_str()));
    assert!(start.elapsed() >= Duration::from_secs(1));
    // Found on the uevent (or at worst the 1 s rescan), not at the timeout.
    let lag = found_at.saturating_duration_since(attached_at);
    assert!(
        lag < Duration::from_millis(1500),
        "found {lag:?} after the attach"
    );
}

#[test]
fn missing_device_nodes_are_created() {
    let t = TempDir::new();
    let img = t.path("n.img");
    sparse(&img, "16M");
    let label = unique("nd");
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", &label, img.to_str().unwrap()],
    );
    let lo = Loop::attach(&img, &["-r"]);
    // An empty directory as /dev: every node has to be made from sysfs' dev.
    let dev_root = t.path("dev");
    std::fs::create_dir(&dev_root).unwrap();
    let devs = probe::scan_at(Path::new("/sys"), &dev_root);
    let hits = find(&format!("LABEL={label}"), &devs);
    assert_eq!(hits.len(), 1, "{hits:?}");
    let node = dev_root.join(lo.name());
    assert_eq!(hits[0].dev_path, node);
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let made = std::fs::metadata(&node).unwrap();
    let real = std::fs::metadata(&lo.0).unwrap();
    assert!(made.file_type().is_block_device());
    assert_eq!(made.rdev(), real.rdev());
    // A path spec naming the real node matches the made one: same device.
    assert!(probe::matches(&DeviceSpec::Path(lo.0.clone()), &hits[0]));
}

#[test]
fn uevent_socket_reports_a_new_loop_device() {
    let t = TempDir::new();
    let img = t.path("u.img");
    sparse(&img, "8M");
    let sock = probe::uevent::UeventSocket::open().unwrap();
    let lo = Loop::attach(&img, &["-r"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let events = sock.wait(Duration::from_millis(200)).unwrap();
        if events
            .iter()
            .any(|e| e.is_block_arrival() && e.devname.as_deref() == Some(lo.name()))
        {
            return;
        }
        seen.extend(events);
    }
    panic!("no add/change uevent for {}; saw {seen:?}", lo.0);
}
