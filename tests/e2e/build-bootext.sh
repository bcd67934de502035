#!/bin/sh
# Build a BootExt volume image for the QEMU end-to-end tests, without mounting
# anything: an ext4 filesystem made with mkfs.ext4 -d from a tree holding
#   System/active.squashfs, System/recovery.squashfs,
#   System/active-system -> active.squashfs, System/recovery-system -> recovery.squashfs,
#   DIRS/DIR_etc_ssh/marker, DIRS/FILE_etc_hostname,
#   DIRS/DIR_opt_tools.squashfs.xz (a squashfs made with -comp xz), livecd.
#
#   build-bootext.sh OUTIMG SYSTEM_IMG RECOVERY_IMG [--corrupt-active] [--label L]
#                    [--uuid U] [--gpt] [--partuuid U] [--partlabel L]
#                    [--file SRC=PATH_IN_BOOTEXT]... [--iso] [--vfat [--mbr]] [--btrfs]
#
# --gpt makes OUTIMG a GPT disk whose partition 1 holds the filesystem. --iso makes
# it an ISO 9660 image with Rock Ridge (symlinks kept) for a CD drive. --vfat makes
# it a FAT filesystem (mkfs.vfat, filled with mtools' mcopy); FAT has no symlinks, so
# System/active-system and recovery-system are copies of the images; with --mbr the
# FAT filesystem is partition 1 (type c, FAT32 LBA) of an MBR disk, as on a USB stick
# formatted by most tools. --btrfs makes
# it btrfs (mkfs.btrfs --rootdir, 128 MiB). Prints
# LABEL=, UUID= (and with --gpt PARTUUID=, PARTLABEL=) lines for the kernel command line.
set -eu
export PATH="$PATH:/usr/sbin:/sbin"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ "$#" -ge 3 ] || usage
outimg=$1 system=$2 recovery=$3
shift 3
label=BootExt uuid="" gpt=0 iso=0 vfat=0 mbr=0 btrfs=0 partuuid="" partlabel=BootExt corrupt=0 files=""
need() { [ "$#" -ge 2 ] || { echo "build-bootext: $1 needs a value" >&2; exit 2; }; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --corrupt-active) corrupt=1; shift ;;
        --label) need "$@"; label=$2; shift 2 ;;
        --uuid) need "$@"; uuid=$2; shift 2 ;;
        --gpt) gpt=1; shift ;;
        --iso) iso=1; shift ;;
        --vfat) vfat=1; shift ;;
        --mbr) mbr=1; shift ;;
        --btrfs) btrfs=1; shift ;;
        --partuuid) need "$@"; partuuid=$2; shift 2 ;;
        --partlabel) need "$@"; partlabel=$2; shift 2 ;;
        --file) need "$@"; files="$files
$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "build-bootext: unknown argument '$1'" >&2; usage ;;
    esac
done
for f in "$system" "$recovery"; do
    [ -f "$f" ] || { echo "build-bootext: image '$f' does not exist" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/build-bootext.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/tree"
mkdir -p "$tree/System" "$tree/DIRS/DIR_etc_ssh" "$work/tools"

if [ "$corrupt" = 1 ]; then
    # Same name, no squashfs inside: 256 KiB of a repeated byte.
    head -c 262144 /dev/zero | tr '\0' 'G' >"$tree/System/active.squashfs"
else
    cp "$system" "$tree/System/active.squashfs"
fi
cp "$recovery" "$tree/System/recovery.squashfs"
ln -s active.squashfs "$tree/System/active-system"
ln -s recovery.squashfs "$tree/System/recovery-system"

echo "from-bootext-ssh" >"$tree/DIRS/DIR_etc_ssh/marker"
echo "bootext-host" >"$tree/DIRS/FILE_etc_hostname"
echo "from-tools-image" >"$work/tools/marker"
mksquashfs "$work/tools" "$tree/DIRS/DIR_opt_tools.squashfs.xz" -comp xz -noappend \
    -all-time 0 -mkfs-time 0 -all-root -no-progress -quiet >/dev/null
: >"$tree/livecd"

printf '%s\n' "$files" | while IFS= read -r spec; do
    [ -n "$spec" ] || continue
    src=${spec%%=*} dst=${spec#*=}
    case "$dst" in /*|*..*|"") echo "build-bootext: bad --file target '$dst'" >&2; exit 2 ;; esac
    mkdir -p "$tree/$(dirname "$dst")"
    cp -a "$src" "$tree/$dst"
done

if [ "$iso" = 1 ]; then
    rm -f "$outimg"
    if ! msg=$(xorriso -as mkisofs -quiet -R -V "$label" -o "$outimg" "$tree" 2>&1); then
        echo "build-bootext: xorriso failed: $msg" >&2; exit 1
    fi
    echo "LABEL=$label"
    exit 0
fi

if [ "$vfat" = 1 ]; then
    fat="$work/fat.img"
    mkfs.vfat -n "$label" -C "$fat" 65536 >/dev/null 2>&1 ||
        { echo "build-bootext: mkfs.vfat failed" >&2; exit 1; }
    cp -rL "$tree" "$work/fat"
    if ! msg=$(MTOOLS_SKIP_CHECK=1 mcopy -s -i "$fat" "$work/fat"/* ::/ 2>&1); then
        echo "build-bootext: mcopy failed: $msg" >&2; exit 1
    fi
    rm -f "$outimg"
    if [ "$mbr" = 1 ]; then
        truncate -s 66M "$outimg"
        if ! msg=$(echo 'start=2048, size=131072, type=c' | sfdisk -q "$outimg" 2>&1); then
            echo "build-bootext: sfdisk failed: $msg" >&2; exit 1
        fi
        dd if="$fat" of="$outimg" bs=1M seek=1 conv=notrunc,sparse status=none
    else
        mv "$fat" "$outimg"
    fi
    echo "LABEL=$label"
    exit 0
fi

if [ "$btrfs" = 1 ]; then
    rm -f "$outimg"
    truncate -s 128M "$outimg"
    if ! msg=$(mkfs.btrfs -q -L "$label" --rootdir "$tree" "$outimg" 2>&1); then
        echo "build-bootext: mkfs.btrfs failed: $msg" >&2; exit 1
    fi
    echo "LABEL=$label"
    exit 0
fi

fs="$work/fs.img"
set -- -q -F -t ext4 -L "$label" -d "$tree" -E root_owner=0:0
[ -n "$uuid" ] && set -- "$@" -U "$uuid"
rm -f "$fs"
mke2fs "$@" "$fs" 64M >/dev/null
fsuuid=$(dumpe2fs -h "$fs" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')

if [ "$gpt" = 1 ]; then
    # 1 MiB before the partition, 64 MiB partition, room for the backup GPT after it.
    rm -f "$outimg"
    truncate -s 66M "$outimg"
    set -- -n 1:2048:+64M -t 1:8300 -c "1:$partlabel"
    [ -n "$partuuid" ] && set -- "$@" -u "1:$partuuid"
    if ! msg=$(sgdisk "$@" "$outimg" 2>&1); then
        echo "build-bootext: sgdisk failed: $msg" >&2; exit 1
    fi
    dd if="$fs" of="$outimg" bs=1M seek=1 conv=notrunc,sparse status=none
    pu=$(sgdisk -i 1 "$outimg" | sed -n 's/^Partition unique GUID: *//p' | tr 'A-F' 'a-f')
    echo "LABEL=$label"
    echo "UUID=$fsuuid"
    echo "PARTUUID=$pu"
    echo "PARTLABEL=$partlabel"
else
    mv "$fs" "$outimg"
    echo "LABEL=$label"
    echo "UUID=$fsuuid"
fi
