#!/bin/sh
# Regenerate the seed inputs in corpus/<target>/ (seed-*): hand-written texts, real
# depmod metadata, and real filesystem images / partition tables made by the real
# tools, encoded in the probe target's sparse device format (see shared/entry.rs).
# Run from fuzz/; needs e2fsprogs dosfstools btrfs-progs xfsprogs squashfs-tools
# xorriso fdisk gdisk python3.  The fuzzer's own finds are kept next to them.
set -eu
cd "$(dirname "$0")"
C=corpus
mkdir -p $C/cmdline $C/manifest $C/names $C/probe $C/kmod $C/trial
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT

# --- cmdline
printf '%s' 'BOOT_IMAGE=/vmlinuz root=/dev/ram0 quiet console=ttyS0 overboot.bootext=LABEL=BootExt overboot.system=recovery overboot.overlay=tmpfs:size=25% overboot.timeout=10 overboot.debug init=/sbin/init -- single' > $C/cmdline/seed-1
printf '%s' 'overboot.bootext=UUID=ABCD-1234 overboot.toram=1 overboot.dirs=0 overboot.verify=1 overboot.onfail=poweroff overboot.overlay=tmpfs:size=512M "overboot.system=my image.squashfs" overboot.bogus' > $C/cmdline/seed-2
printf '%s' 'overboot.bootext=PARTUUID=0FC63DAF-8483 overboot.bootext=PARTLABEL=boot overboot.bootext=/dev/vda2 overboot.overlay=tmpfs:size=2G overboot.system=../x init=relative' > $C/cmdline/seed-3

# --- manifest
cat > $C/manifest/seed-1 <<'T'
[defaults]
system = "recovery"
dirs = false
overlay = "tmpfs:size=25%"
toram = true
init = "/lib/systemd/systemd"
timeout = 5

[[mount]]
source = "Data/app"
target = "/opt/my_app"
kind = "bind"
read_only = false

[[mount]]
source = "Images/tools.squashfs"
target = "/opt/tools/"
kind = "image"

[[mount]]
target = "/var/cache"
kind = "tmpfs"
size = "16M"
T
cat > $C/manifest/seed-2 <<'T'
[defaults]
onfail = "shell"
verify = 1
debug = [1]
[[mount]]
source = "../etc"
target = "relative"
[[mount]]
target = "/x/../y"
kind = "tmpfs"
size = "10%"
T

# --- names: flags byte, name line, tree lines
printf '\001DIR_usr_lib_x86_64-linux-gnu_foo.squashfs\nusr/lib/x86_64-linux-gnu/\nusr/lib/x86/\nlib -> usr/lib\n' > $C/names/seed-1
printf '\000FILE_etc_ssh_sshd__config\netc/ssh/\n' > $C/names/seed-2
printf '\001DIR_var_lib_foo_bar_baz.sqfs\nvar/lib/foo_bar/\nvar/lib/foo/bar/\nloop -> loop/a\nup -> ../../etc\n' > $C/names/seed-3

# --- kmod: dep 0xFF alias 0xFF softdep 0xFF builtin 0xFF builtin.modinfo
m=$(ls -d ../work/kernel/current/root/lib/modules/*/ | head -1)
{
  grep -E '/(ext4|jbd2|mbcache|crc16|virtio_blk|virtio_scsi|squashfs|overlay|loop|vfat|fat|nls_cp437|nls_ascii|usb-storage|sd_mod|nvme|nvme-core)\.ko' "$m/modules.dep"
  printf '\377'
  grep -E ' (ext4|virtio_blk|squashfs|overlay|nvme|usb_storage|crc32c_generic|crc32c_intel)$' "$m/modules.alias" | head -40
  printf '\377'
  head -c 1500 "$m/modules.softdep"
  printf '\377'
  head -20 "$m/modules.builtin"
  printf '\377'
  tr '\0' '\n' < "$m/modules.builtin.modinfo" | grep -E '\.alias=' | head -30 | tr '\n' '\0'
} > $C/kmod/seed-1

# --- trial: byte 0 = the disk around the record (see shared/entry.rs), then System/trial
t1='# overboot trial: written by overboot set-active
image=v2.squashfs
tries=3
boots-left=2
outcome=pending
'
printf '\015%s' "$t1" > $C/trial/seed-pending-armed
printf '\035%s' "$t1" > $C/trial/seed-pending-writes-fail
printf '\014%s' "$t1" > $C/trial/seed-pending-stale
printf '\015image=v2.squashfs\ntries=5\nboots-left=0\noutcome=pending\n' > $C/trial/seed-spent
printf '\015image=v2.squashfs\ntries=1\nboots-left=0\noutcome=rolled-back\nreason=the trial of v2.squashfs ran out\n' > $C/trial/seed-rollback-unfinished
printf '\014image=v2.squashfs\ntries=2\nboots-left=1\noutcome=rolled-back\nreason=overboot rollback to v1.squashfs\n' > $C/trial/seed-rolled-back
printf '\005image=v2.squashfs\ntries=1000\nboots-left=1000\noutcome=pending\n' > $C/trial/seed-no-good-previous
printf '\015image = a b.squashfs \r\n tries=+4\nboots-left=04\noutcome=pending\nreason=x\ry\n# end' > $C/trial/seed-spelling
printf '\015image=v2.squashfs\ntries=3\nboots-left=4\noutcome=pending\n' > $C/trial/seed-left-over-tries
printf '\017image=active-system\ntries=1\nboots-left=1\noutcome=maybe\nkey=value\n' > $C/trial/seed-bad

# --- probe: real images, sparse-encoded
enc() { python3 - "$1" "$2" <<'P'
import sys
img = open(sys.argv[1], 'rb').read()[:512 * 400]   # first 200 KiB is all any probe reads
size = min(__import__('os').path.getsize(sys.argv[1]) // 512, 0xffff)
out = bytearray(); s = 0; n = len(img) // 512
nz = lambda s: any(img[s*512:(s+1)*512])
while s < n:
    if not nz(s): s += 1; continue
    a = s
    while s < n and nz(s) and (s + 1 - a) * 512 <= 0xffff: s += 1
    b = img[a*512:s*512]
    out += a.to_bytes(2, 'little') + len(b).to_bytes(2, 'little') + b
out += size.to_bytes(2, 'little') + b'\0\0'
open(sys.argv[2], 'wb').write(out)
P
}
truncate -s 8M $t/ext4; mkfs.ext4 -q -L BootExt -U 0fc63daf-8483-4772-8e79-3d69d8477de4 $t/ext4; enc $t/ext4 $C/probe/seed-ext4
truncate -s 8M $t/ext2; mkfs.ext2 -q -L old $t/ext2; enc $t/ext2 $C/probe/seed-ext2
truncate -s 8M $t/fat; mkfs.vfat -n BOOTEXT -i 1234abcd $t/fat >/dev/null; enc $t/fat $C/probe/seed-vfat
mkdir -p $t/d; echo hi > $t/d/f
truncate -s 32M $t/fat32; mkfs.vfat -F 32 -n "" $t/fat32 >/dev/null; enc $t/fat32 $C/probe/seed-fat32
truncate -s 120M $t/btrfs; mkfs.btrfs -q -L BootExt $t/btrfs; enc $t/btrfs $C/probe/seed-btrfs
truncate -s 300M $t/xfs; mkfs.xfs -q -L BootExt $t/xfs; enc $t/xfs $C/probe/seed-xfs
mksquashfs $t/d $t/sq -quiet -noappend -comp gzip >/dev/null; enc $t/sq $C/probe/seed-squashfs
xorriso -as mkisofs -quiet -V BootExt -o $t/iso $t/d 2>/dev/null; enc $t/iso $C/probe/seed-iso9660
truncate -s 4M $t/gpt; sgdisk -o -n1:2048:4095 -c1:BootExt -t1:8300 -n2:4096:0 -c2:data $t/gpt >/dev/null 2>&1; enc $t/gpt $C/probe/seed-gpt
truncate -s 4M $t/mbr; printf 'label: dos\n2048,2048,83\n4096,,5\n4200,1000,83\n' | sfdisk -q $t/mbr >/dev/null; enc $t/mbr $C/probe/seed-mbr
ls -l $C/*/seed-*
