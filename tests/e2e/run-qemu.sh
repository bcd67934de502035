#!/bin/bash
# Boot an initramfs under QEMU (TCG) with the kernel from tests/kernel/fetch, serial
# console on stdout (and in --log), raw disks as virtio-blk, optionally one disk
# hot-added a few seconds after start, and a hard timeout that kills QEMU.
#
#   run-qemu.sh --initrd FILE --append "ARGS" [--disk IMG]... [--late-disk IMG]
#               [--late-delay S] [--late-after TEXT] [--timeout S] [--log FILE]
#               [--kernel FILE] [--mem MB] [--type-after TEXT --type LINE]
#               [--disk-bus virtio|virtio-scsi|sata|nvme|usb|mmc] [--cdrom ISO]
#               [--icount SHIFT] [--http-port PORT [--https-port PORT] [--pxe URL]]
#
# --disk-bus puts every --disk on that controller (default virtio: virtio-blk-pci;
# virtio-scsi: scsi-hd on virtio-scsi-pci; sata: ide-hd on an AHCI controller; nvme:
# one NVMe controller per disk; usb: usb-storage on an XHCI controller; mmc: an SD
# card on an SDHCI controller, one per disk). --cdrom puts
# ISO in the machine's CD drive (otherwise the drive is there, empty).
# The late disk is added --late-delay seconds (default 5) after QEMU starts, or after
# TEXT appeared on the serial console when --late-after is given.
# --type LINE is typed on the serial console once --type-after TEXT appeared on it.
# --icount SHIFT: while the guest CPU runs, its clock counts instructions (2^SHIFT ns
# each), so its CPU work takes the same guest time however busy the host is (idle
# waits still pass in real time; bench/boot --icount).
# --http-port gives the guest a virtio-net card on QEMU's user network with
# restrict=on (it reaches nothing outside), where 10.0.2.100:80 is carried to
# 127.0.0.1:PORT on the host and QEMU's DHCP server answers (guest 10.0.2.15,
# router 10.0.2.2); otherwise the guest has no network. --https-port carries
# 10.0.2.100:443 to 127.0.0.1:PORT the same way. --pxe boots from that card
# instead of --kernel/--initrd (QEMU's iPXE ROM, with URL as the DHCP boot file).
# Exit status: QEMU's (0 after a guest power-off or reboot, as -no-reboot makes a
# reboot end QEMU), 124 when the timeout killed it, 2 for bad usage.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
initrd="" append="" late="" late_after="" late_delay=5 timeout=120 log="" kernel="" mem=512
type_after="" type_line="" typist="" disk_bus=virtio cdrom="" icount="" http_port="" https_port="" pxe=""
disks=()

usage() {
    sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
need() { [ "$#" -ge 2 ] || { echo "run-qemu: $1 needs a value" >&2; exit 2; }; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --initrd) need "$@"; initrd=$2; shift 2 ;;
        --append) need "$@"; append=$2; shift 2 ;;
        --disk) need "$@"; disks+=("$2"); shift 2 ;;
        --late-disk) need "$@"; late=$2; shift 2 ;;
        --late-delay) need "$@"; late_delay=$2; shift 2 ;;
        --late-after) need "$@"; late_after=$2; shift 2 ;;
        --timeout) need "$@"; timeout=$2; shift 2 ;;
        --log) need "$@"; log=$2; shift 2 ;;
        --kernel) need "$@"; kernel=$2; shift 2 ;;
        --mem) need "$@"; mem=$2; shift 2 ;;
        --type-after) need "$@"; type_after=$2; shift 2 ;;
        --type) need "$@"; type_line=$2; shift 2 ;;
        --disk-bus) need "$@"; disk_bus=$2; shift 2 ;;
        --cdrom) need "$@"; cdrom=$2; shift 2 ;;
        --icount) need "$@"; icount=$2; shift 2 ;;
        --http-port) need "$@"; http_port=$2; shift 2 ;;
        --https-port) need "$@"; https_port=$2; shift 2 ;;
        --pxe) need "$@"; pxe=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run-qemu: unknown argument '$1'" >&2; usage ;;
    esac
done
if [ -n "$pxe" ]; then
    [ -n "$http_port" ] || { echo "run-qemu: --pxe needs --http-port" >&2; exit 2; }
else
    [ -n "$initrd" ] || { echo "run-qemu: --initrd is required" >&2; exit 2; }
    [ -f "$initrd" ] || { echo "run-qemu: initrd '$initrd' does not exist" >&2; exit 2; }
fi
for d in "${disks[@]}" ${late:+"$late"} ${cdrom:+"$cdrom"}; do
    [ -f "$d" ] || { echo "run-qemu: disk image '$d' does not exist" >&2; exit 2; }
done
case "$disk_bus" in
    virtio|virtio-scsi|sata|nvme|usb|mmc) ;;
    *) echo "run-qemu: --disk-bus must be virtio, virtio-scsi, sata, nvme, usb or mmc" >&2; exit 2 ;;
esac
case "$timeout" in ''|*[!0-9]*) echo "run-qemu: --timeout must be whole seconds" >&2; exit 2 ;; esac
case "$http_port" in *[!0-9]*) echo "run-qemu: --http-port must be a port number" >&2; exit 2 ;; esac
case "$https_port" in *[!0-9]*) echo "run-qemu: --https-port must be a port number" >&2; exit 2 ;; esac
if [ -n "$https_port" ] && [ -z "$http_port" ]; then
    echo "run-qemu: --https-port needs --http-port" >&2; exit 2
fi

if [ -z "$kernel" ]; then
    kdir="$top/work/kernel/current"
    if [ -f "$kdir/vmlinux" ]; then kernel="$kdir/vmlinux"
    elif [ -f "$kdir/vmlinuz" ]; then kernel="$kdir/vmlinuz"
    else echo "run-qemu: no kernel in $kdir: run tests/kernel/fetch first" >&2; exit 2
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/run-qemu.XXXXXX")
[ -n "$log" ] || log="$work/serial.log"
: >"$log"
mon="$work/monitor.sock"
feeder=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$feeder" ]; then kill "$feeder" 2>/dev/null || true; fi
    if [ -n "$typist" ]; then kill "$typist" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Sends one line to the QEMU monitor.
monitor() {
    printf '%s\n' "$1" | socat -t 2 - "UNIX-CONNECT:$mon" >/dev/null
}

hot_add() {
    local _i
    for _i in $(seq 1 100); do
        [ -S "$mon" ] && break
        sleep 0.1
    done
    if [ -n "$late_after" ]; then
        until grep -qF -- "$late_after" "$log" 2>/dev/null; do sleep 0.2; done
    fi
    sleep "$late_delay"
    echo "run-qemu: hot-adding $late" >&2
    monitor "drive_add 0 if=none,id=late0,file=$late,format=raw" &&
        monitor "device_add virtio-blk-pci,drive=late0,id=latedev0" ||
        echo "run-qemu: hot-adding $late failed" >&2
}

# Types one line on the serial console (QEMU's stdin) once TEXT was printed, then
# keeps the pipe open so QEMU does not see the end of its input.
type_in() {
    until grep -qF -- "$type_after" "$log" 2>/dev/null; do sleep 0.2; done
    sleep 1
    printf '%s\n' "$type_line"
    exec sleep "$timeout"
}

run() {
    local k=$1 args=()
    args=(-accel tcg -nographic -no-reboot -m "$mem" -smp 1
        -monitor "unix:$mon,server,nowait")
    if [ -n "$pxe" ]; then
        args+=(-boot n)
    else
        args+=(-kernel "$k" -initrd "$initrd" -append "console=ttyS0 panic=-1 no_timer_check $append")
    fi
    if [ -n "$http_port" ]; then
        args+=(-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:$http_port${https_port:+,guestfwd=tcp:10.0.2.100:443-cmd:socat - TCP:127.0.0.1:$https_port}${pxe:+,bootfile=$pxe}"
            -device "virtio-net-pci,netdev=n0")
    else
        args+=(-nic none)
    fi
    local n=0 d
    if [ -n "$icount" ]; then args+=(-icount "shift=$icount"); fi
    if [ -n "$cdrom" ]; then args+=(-drive "file=$cdrom,media=cdrom,readonly=on,format=raw"); fi
    case "$disk_bus" in
        virtio-scsi) args+=(-device "virtio-scsi-pci,id=scsi0") ;;
        sata) args+=(-device "ahci,id=ahci0") ;;
        usb) args+=(-device "qemu-xhci,id=xhci0") ;;
    esac
    for d in "${disks[@]}"; do
        args+=(-drive "if=none,id=d$n,file=$d,format=raw")
        case "$disk_bus" in
            virtio) args+=(-device "virtio-blk-pci,drive=d$n") ;;
            virtio-scsi) args+=(-device "scsi-hd,drive=d$n,bus=scsi0.0") ;;
            sata) args+=(-device "ide-hd,drive=d$n,bus=ahci0.$n") ;;
            nvme) args+=(-device "nvme,drive=d$n,serial=overboot$n") ;;
            usb) args+=(-device "usb-storage,drive=d$n,bus=xhci0.0") ;;
            mmc) args+=(-device "sdhci-pci,id=sdhci$n" -device "sd-card,drive=d$n") ;;
        esac
        n=$((n + 1))
    done
    rm -f "$mon"
    if [ -n "$late" ]; then hot_add & feeder=$!; fi
    local rc=0
    if [ -n "$type_line" ]; then
        exec 3< <(type_in)
        typist=$!
    else
        exec 3</dev/null
    fi
    timeout -k 5 "$timeout" qemu-system-x86_64 "${args[@]}" <&3 2>&1 | tee -a "$log" || rc=$?
    exec 3<&-
    if [ -n "$typist" ]; then kill "$typist" 2>/dev/null || true; typist=""; fi
    if [ -n "$feeder" ]; then kill "$feeder" 2>/dev/null || true; wait "$feeder" 2>/dev/null || true; feeder=""; fi
    return "$rc"
}

rc=0
run "$kernel" || rc=$?
# An uncompressed vmlinux needs the PVH note; without it QEMU refuses at once.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "${kernel##*/}" = vmlinux ] &&
    grep -q "PVH ELF Note\|Error loading" "$log" 2>/dev/null && [ -f "${kernel%/*}/vmlinuz" ]; then
    echo "run-qemu: $kernel did not boot, trying ${kernel%/*}/vmlinuz" >&2
    rc=0
    run "${kernel%/*}/vmlinuz" || rc=$?
fi
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "run-qemu: timeout after $timeout s: QEMU killed" | tee -a "$log" >&2
    exit 124
fi
exit "$rc"
