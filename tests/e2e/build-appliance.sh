#!/bin/sh
# Build a tiny appliance system image (squashfs) from busybox-static, for the QEMU
# end-to-end tests. Its /sbin/init prints OVERBOOT-E2E markers on the console (what it
# sees: image name, mounts, overmounted files, overboot's state), then powers off.
#
#   build-appliance.sh OUTDIR [--recovery] [--name NAME] [--with-overboot BIN]
#
# Writes OUTDIR/NAME.squashfs (NAME: appliance, or recovery with --recovery) and prints
# its path. The image is reproducible: fixed times, root-owned. --with-overboot puts
# BIN (a static build) in as /usr/bin/overboot: init then prints `overboot status`,
# runs `overboot bless` when the kernel command line has e2e.bless, and with
# e2e.verity-watch=PATH starts `overboot verity-watch` (as overboot-verity.service
# does) after its report, then reads PATH.
set -eu

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ "$#" -ge 1 ] || usage
out=$1; shift
name=appliance
overboot=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --recovery) name=recovery; shift ;;
        --name) [ "$#" -ge 2 ] || usage; name=$2; shift 2 ;;
        --with-overboot) [ "$#" -ge 2 ] || usage; overboot=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "build-appliance: unknown argument '$1'" >&2; usage ;;
    esac
done

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "build-appliance: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
    # 'file' may be absent; a static busybox has no program interpreter.
    if readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        echo "build-appliance: $busybox is not static (apt-get install busybox-static)" >&2; exit 1
    fi
fi

mkdir -p "$out"
tree="$out/tree-$name"
rm -rf "$tree"
mkdir -p "$tree/bin" "$tree/sbin" "$tree/usr/bin" "$tree/usr/sbin" "$tree/etc/ssh" \
    "$tree/opt/tools" "$tree/proc" "$tree/sys" "$tree/dev" "$tree/run" "$tree/tmp" \
    "$tree/root" "$tree/mnt" "$tree/var"
cp "$busybox" "$tree/bin/busybox"
chmod 755 "$tree/bin/busybox"
# Applet links, relative, as busybox --install -s would make them absolute.
"$busybox" --list-full | while read -r applet; do
    case "$applet" in */*) ;; *) continue ;; esac
    [ -e "$tree/$applet" ] && continue
    dir=${applet%/*}
    case "$dir" in
        bin) rel=busybox ;;
        sbin|usr) rel=../bin/busybox ;;
        usr/bin|usr/sbin) rel=../../bin/busybox ;;
        *) continue ;;
    esac
    mkdir -p "$tree/$dir"
    ln -s "$rel" "$tree/$applet"
done
rm -f "$tree/sbin/init"
if [ -n "$overboot" ]; then
    [ -f "$overboot" ] || { echo "build-appliance: '$overboot' does not exist" >&2; exit 1; }
    cp "$overboot" "$tree/usr/bin/overboot"
    chmod 755 "$tree/usr/bin/overboot"
fi

echo "$name" >"$tree/etc/appliance-release"
echo "image-$name" >"$tree/etc/hostname"
echo "from-image" >"$tree/etc/ssh/marker"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\n' >"$tree/etc/group"

cat >"$tree/sbin/init" <<'INIT'
#!/bin/sh
# overboot e2e appliance init: report what this system sees, then power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
m() { echo "OVERBOOT-E2E: $*"; }
m "init started"
m "system=$(cat /etc/appliance-release 2>/dev/null || echo unknown)"
m "pid=$$ argv=$*"
m "mounts begin"
cat /proc/mounts 2>/dev/null || echo "(no /proc/mounts)"
m "mounts end"
# Every path the root overlay's options name: a directory here, on which device,
# and the type of the mount at it (empty when it is no mount point).
m "overlay-paths begin"
opts=$(awk '$2 == "/" && $3 == "overlay" { print $4 }' /proc/mounts)
for opt in $(echo "$opts" | tr ',' ' '); do
    case "$opt" in lowerdir=*|upperdir=*|workdir=*) ;; *) continue ;; esac
    for p in $(echo "${opt#*=}" | tr ':' ' '); do
        if [ -d "$p" ]; then
            echo "${opt%%=*} $p dev=$(stat -c %d "$p") mount=$(awk -v p="$p" '$2 == p { t = $3 } END { print t }' /proc/mounts)"
        else
            echo "${opt%%=*} $p missing"
        fi
    done
done
echo "writable /mnt/overlay dev=$(stat -c %d /mnt/overlay 2>/dev/null)"
m "overlay-paths end"
# device-mapper devices and their names (dm-verity mounts).
for d in /sys/block/dm-*/dm/name; do
    [ -f "$d" ] && m "dm ${d#/sys/block/} $(cat "$d")"
done
for f in /etc/hostname /etc/ssh/marker /opt/tools/marker /etc/layer-marker; do
    if [ -f "$f" ]; then m "file $f=$(cat "$f")"; else m "file $f missing"; fi
done
if touch /.overboot-e2e-write 2>/dev/null; then m "root writable"; else m "root read-only"; fi
# e2e.read=PATH on the command line (repeatable): read the whole file, report errors.
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        e2e.read=*)
            f=${arg#e2e.read=}
            if err=$(cat "$f" 2>&1 >/dev/null); then m "read $f ok"; else m "read $f failed: $err"; fi
            ;;
    esac
done
if [ -f /run/overboot/state.json ]; then
    m "state begin"
    cat /run/overboot/state.json
    echo
    m "state end"
else
    m "no state.json"
fi
if [ -x /usr/bin/overboot ]; then
    m "status begin"
    /usr/bin/overboot status 2>&1
    m "status end"
    case " $(cat /proc/cmdline) " in
        *" e2e.bless "*)
            m "bless begin"
            /usr/bin/overboot bless 2>&1
            echo "bless-exit=$?"
            m "bless end"
            ;;
    esac
fi
m "done"
# e2e.verity-watch=PATH: the watcher listens, then PATH is read; a corrupted block
# there is recorded on BootExt and, by default, the watcher restarts the machine.
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        e2e.verity-watch=*)
            f=${arg#e2e.verity-watch=}
            /usr/bin/overboot verity-watch 2>&1 | tee /run/verity-watch.log &
            i=0
            until grep -q "watching" /run/verity-watch.log 2>/dev/null || [ "$i" -ge 30 ]; do
                sleep 1
                i=$((i + 1))
            done
            if err=$(cat "$f" 2>&1 >/dev/null); then m "watched read $f ok"; else m "watched read $f failed: $err"; fi
            sleep 30
            m "verity-watch did not restart"
            ;;
    esac
done
sync
poweroff -f
sleep 30
INIT
chmod 755 "$tree/sbin/init"

img="$out/$name.squashfs"
mksquashfs "$tree" "$img" -noappend -all-time 0 -mkfs-time 0 -all-root -no-progress -quiet >/dev/null
rm -rf "$tree"
echo "$img"
