#!/bin/bash
# overboot demo: build the static binary, a tiny appliance and recovery image, a BootExt
# volume and the initramfs, then boot it all under QEMU so you can watch the appliance
# come up (serial console in this terminal, also saved to work/demo/console.log).
#
#   ./demo.sh [--recovery] [--corrupt-active] [--append "ARGS"] [--no-install]
#
#   --recovery        boot the recovery image (overboot.system=recovery)
#   --corrupt-active  put garbage in place of the active image: watch the fallback
#   --append ARGS     more kernel command line (e.g. overboot.debug)
#   --no-install      do not run apt-get / rustup (everything is already there)
#
# Run as root on Debian 12. OVERBOOT_BIN=/path/to/overboot skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD

system_arg="" corrupt="" extra="" install=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --recovery) system_arg="overboot.system=recovery"; shift ;;
        --corrupt-active) corrupt="--corrupt-active"; shift ;;
        --append) [ "$#" -ge 2 ] || { echo "demo: --append needs a value" >&2; exit 2; }
            extra=$2; shift 2 ;;
        --no-install) install=0; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }

if [ "$install" = 1 ]; then
    step "Installing the tools (apt-get, rustup)"
    pkgs=(qemu-system-x86 squashfs-tools e2fsprogs busybox-static kmod zstd xz-utils lz4 gdisk cpio socat musl-tools)
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 ||
        echo "demo: 'rustup target add x86_64-unknown-linux-musl' failed; the build may fail" >&2
fi

step "Fetching the Debian stock kernel"
kdir=$(tests/kernel/fetch)
kver=$(basename "$kdir")
echo "kernel $kver in $kdir"

if [ -n "${OVERBOOT_BIN:-}" ]; then
    bin=$OVERBOOT_BIN
    step "Using $bin"
else
    step "Building overboot (static, musl)"
    cargo build --release --target x86_64-unknown-linux-musl
    bin="$top/target/x86_64-unknown-linux-musl/release/overboot"
fi
[ -x "$bin" ] || { echo "demo: $bin is not an executable" >&2; exit 1; }

out="$top/work/demo"
mkdir -p "$out"
step "Building the appliance and recovery images"
tests/e2e/build-appliance.sh "$out"
tests/e2e/build-appliance.sh "$out" --recovery

step "Building the BootExt volume ($out/bootext.img)"
tests/e2e/build-bootext.sh "$out/bootext.img" "$out/appliance.squashfs" "$out/recovery.squashfs" ${corrupt:+"$corrupt"}

step "Building the initramfs ($out/initramfs.img)"
"$bin" mkinitramfs -o "$out/initramfs.img" --kver "$kver" \
    --modules-dir "$top/work/kernel/current/root/lib/modules/$kver"
[ -s "$out/initramfs.img" ] || {
    echo "demo: '$bin mkinitramfs' made no $out/initramfs.img (is that subcommand in this build?)" >&2
    exit 1
}

append="overboot.onfail=poweroff $system_arg $extra"
step "Booting under QEMU: $append (Ctrl-A X quits)"
rc=0
tests/e2e/run-qemu.sh --initrd "$out/initramfs.img" --disk "$out/bootext.img" \
    --append "$append" --timeout 180 --log "$out/console.log" || rc=$?

step "What the appliance saw"
log="$out/console.log"
grep -a 'OVERBOOT-E2E: \(system=\|file \|root \|done\)' "$log" | tr -d '\r' || true
if grep -aq 'OVERBOOT-E2E: done' "$log"; then
    echo
    echo "demo: the appliance booted through overboot and powered off (console log: $log)"
    exit 0
fi
echo
echo "demo: the appliance did not finish booting (QEMU exit $rc); see $log" >&2
exit 1
