#!/bin/sh
# Build the Debian package overboot_<version>_amd64.deb with dpkg-deb (no root, no
# fakeroot: files are owned by root in the archive).
#
#   packaging/build-deb.sh [--binary FILE] [--out DIR] [--version V] [--top DIR]
#
#   --binary FILE   the static musl build (default: $OVERBOOT_MUSL_BIN, else
#                   target/x86_64-unknown-linux-musl/release/overboot; build it with
#                   cargo build --release --target x86_64-unknown-linux-musl)
#   --out DIR       where the .deb goes (default: target/debian)
#   --version V     package version (default: Cargo.toml's)
#   --top DIR       the source tree (default: this script's repository)
#
# Contents: /usr/bin/overboot; /usr/lib/overboot/overboot-init and overboot-init-net
# (the initramfs builds, found next to --binary; mkinitramfs puts one in as /init, the
# -net one when the initramfs has network drivers); /usr/lib/dracut/modules.d/90overboot/ (every file of
# dracut-module/90overboot/); /usr/lib/initcpio/{install,hooks}/ (from
# mkinitcpio-hook/); /lib/systemd/system/overboot-bless.service and
# overboot-verity.service (enabled by postinst);
# /usr/share/man/man8/overboot.8.gz (doc/man/overboot.8, generated); the bash, zsh and
# fish completions (overboot generate completions); /usr/share/overboot/{skeleton/,grub.cfg,mkbootext}
# and /usr/bin/mkbootext; /usr/share/doc/overboot/copyright. Prints the .deb's path.
set -eu

prog=build-deb
die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
need() { [ "$#" -ge 2 ] || { echo "$prog: $1 needs a value" >&2; exit 2; }; }

top=$(cd "$(dirname "$0")/.." && pwd)
binary="" out="" version=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --binary) need "$@"; binary=$2; shift 2 ;;
        --out) need "$@"; out=$2; shift 2 ;;
        --version) need "$@"; version=$2; shift 2 ;;
        --top) need "$@"; top=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "$prog: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
[ -n "$binary" ] || binary=${OVERBOOT_MUSL_BIN:-$top/target/x86_64-unknown-linux-musl/release/overboot}
[ -n "$out" ] || out=$top/target/debian
[ -f "$binary" ] ||
    die "no overboot binary at $binary: build it with 'cargo build --release --target x86_64-unknown-linux-musl' or give --binary"
if [ -z "$version" ]; then
    version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$top/Cargo.toml" | head -n 1)
    [ -n "$version" ] || die "no version = \"...\" in $top/Cargo.toml: give --version"
fi
case "$version" in
    [0-9]*) ;;
    *) die "version '$version' must start with a digit (Debian policy)" ;;
esac
# The binary runs as /init before any library exists: it must be static.
if command -v readelf >/dev/null 2>&1 &&
    readelf -l "$binary" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$binary is dynamically linked: use the x86_64-unknown-linux-musl build"
fi
for f in boot-layout/skeleton boot-layout/grub.cfg boot-layout/mkbootext \
    systemd/overboot-bless.service systemd/overboot-verity.service \
    systemd/overboot-update.service \
    systemd/overboot-update.timer doc/man/overboot.8 packaging/copyright; do
    [ -e "$top/$f" ] || die "$top/$f is missing"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/build-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# install_tree SRC DEST: copy the files under SRC (if it exists) to DEST, 0755 for
# executables, 0644 for the rest.
install_tree() {
    [ -d "$1" ] || { echo "$prog: note: $1 not found, nothing from it in the package" >&2; return 0; }
    mkdir -p "$2"
    # -L: a link in the tree (sd-overboot shares dracut's overboot-lib.sh) goes in as a file.
    cp -RL "$1/." "$2/"
    find "$2" -type d -exec chmod 0755 {} +
    find "$2" -type f -perm /111 -exec chmod 0755 {} +
    find "$2" -type f ! -perm /111 -exec chmod 0644 {} +
}

install -D -m 0755 "$binary" "$root/usr/bin/overboot"
# The boot-only build beside it (cargo builds both): smaller initramfs images.
init_binary=$(dirname "$binary")/overboot-init
[ -f "$init_binary" ] ||
    die "no overboot-init next to $binary: cargo build --release --target x86_64-unknown-linux-musl builds both"
install -D -m 0755 "$init_binary" "$root/usr/lib/overboot/overboot-init"
[ -f "$init_binary-net" ] ||
    die "no overboot-init-net next to $binary: cargo build --release --target x86_64-unknown-linux-musl builds it"
install -D -m 0755 "$init_binary-net" "$root/usr/lib/overboot/overboot-init-net"
install_tree "$top/dracut-module/90overboot" "$root/usr/lib/dracut/modules.d/90overboot"
install_tree "$top/mkinitcpio-hook/install" "$root/usr/lib/initcpio/install"
install_tree "$top/mkinitcpio-hook/hooks" "$root/usr/lib/initcpio/hooks"
install_tree "$top/mkinitcpio-hook/sd-overboot" "$root/usr/lib/initcpio/sd-overboot"
for unit in overboot-bless.service overboot-verity.service; do
    install -D -m 0644 "$top/systemd/$unit" "$root/lib/systemd/system/$unit"
done
# Fleet updates: shipped disabled (the operator enables the timer).
for unit in overboot-update.service overboot-update.timer; do
    install -D -m 0644 "$top/systemd/$unit" "$root/lib/systemd/system/$unit"
done
mkdir -p "$root/usr/share/man/man8"
gzip -9n <"$top/doc/man/overboot.8" >"$root/usr/share/man/man8/overboot.8.gz"
chmod 0644 "$root/usr/share/man/man8/overboot.8.gz"
# Shell completions, generated from the command line's declaration by the binary itself.
for c in bash:bash-completion/completions/overboot zsh:zsh/vendor-completions/_overboot \
    fish:fish/vendor_completions.d/overboot.fish; do
    dest=$root/usr/share/${c#*:}
    mkdir -p "$(dirname "$dest")"
    "$binary" generate completions "${c%%:*}" >"$dest" ||
        die "$binary generate completions ${c%%:*} failed"
    chmod 0644 "$dest"
done
mkdir -p "$root/usr/share/overboot"
cp -a "$top/boot-layout/skeleton" "$root/usr/share/overboot/skeleton"
find "$root/usr/share/overboot/skeleton" -type d -exec chmod 0755 {} +
find "$root/usr/share/overboot/skeleton" -type f -exec chmod 0644 {} +
install -m 0644 "$top/boot-layout/grub.cfg" "$root/usr/share/overboot/grub.cfg"
install -m 0755 "$top/boot-layout/mkbootext" "$root/usr/share/overboot/mkbootext"
ln -s ../share/overboot/mkbootext "$root/usr/bin/mkbootext"
install -D -m 0644 "$top/packaging/copyright" "$root/usr/share/doc/overboot/copyright"

mkdir -p "$root/DEBIAN"
install -m 0755 "$top/packaging/postinst" "$root/DEBIAN/postinst"
install -m 0755 "$top/packaging/postrm" "$root/DEBIAN/postrm"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: overboot
Version: $version
Architecture: amd64
Maintainer: overboot developers <overboot@localhost>
Installed-Size: $size
Section: admin
Priority: optional
Recommends: grub-pc-bin, grub-efi-amd64-bin, grub-common, e2fsprogs, fdisk, dosfstools, mtools, lz4, xz-utils
Suggests: dracut, squashfs-tools, systemd-boot-efi, sbsigntool, binutils, openssl, shim-signed, grub-efi-amd64-signed
Homepage: https://github.com/overboot/overboot
Description: early-boot overlay assembler for read-only appliance systems
 overboot runs as /init in a small initramfs (or as a dracut or mkinitcpio hook):
 it finds the volume labelled BootExt, mounts the selected squashfs system image
 read-only under a tmpfs overlay, bind-mounts the operator's DIRS/ entries onto the
 new root, records what it did in /run/overboot/state.json and starts systemd.
 .
 The package holds the static binary (overboot mkinitramfs builds the initramfs),
 the dracut module and mkinitcpio hook, the boot-blessing unit, the reference
 BootExt layout and mkbootext, which builds a bootable BootExt disk image (BIOS,
 UEFI or both; with --secure-boot, signed unified kernel images made by overboot
 mkuki).
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/overboot_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null ||
    die "dpkg-deb could not build $deb"
echo "$deb"
