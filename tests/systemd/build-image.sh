#!/bin/sh
# Build a real Debian system image for the systemd end-to-end test:
# debootstrap --variant=minbase with systemd-sysv, set up to boot quickly and quietly
# from squashfs + overlay (see ../shared/notes/real-systemd-e2e.md), with a marker unit
# that prints on the console once multi-user.target is reached and powers off.
#
#   build-image.sh OUT.squashfs [--with-overboot BIN]
#
# --with-overboot installs BIN (the static build) as /usr/bin/overboot with the
# repository's systemd/overboot-verity.service enabled (WantedBy=sysinit.target), as
# the Debian package does. The debootstrap tree is cached next to OUT (it takes
# ~35 s); the squashfs is rebuilt.
set -eu
export PATH="$PATH:/usr/sbin:/sbin"
out=$1
overboot=""
if [ "$#" -ge 3 ] && [ "$2" = --with-overboot ]; then overboot=$3; fi
top=$(cd "$(dirname "$0")/../.." && pwd)
cache="$(dirname "$out")/systemd-root"
if [ ! -f "$cache/.complete" ]; then
    rm -rf "$cache"
    debootstrap --variant=minbase --include=systemd-sysv bookworm "$cache" http://deb.debian.org/debian >/dev/null
    chroot "$cache" apt-get clean
    rm -rf "$cache"/var/lib/apt/lists/*
    touch "$cache/.complete"
fi
r=$cache
: >"$r/etc/fstab"
chroot "$r" passwd -d root >/dev/null
echo appliance-systemd >"$r/etc/hostname"
ln -sfn /lib/systemd/system/multi-user.target "$r/etc/systemd/system/default.target"
touch "$r/etc/.updated" "$r/var/.updated"
for u in serial-getty@ttyS0.service systemd-firstboot.service getty-static.service \
         e2scrub_reap.service proc-sys-fs-binfmt_misc.automount apt-daily.timer \
         apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
    ln -sfn /dev/null "$r/etc/systemd/system/$u"
done
wants="$r/etc/systemd/system/sysinit.target.wants"
rm -f "$r/usr/bin/overboot" "$r/lib/systemd/system/overboot-verity.service" \
    "$wants/overboot-verity.service"
if [ -n "$overboot" ]; then
    install -D -m 0755 "$overboot" "$r/usr/bin/overboot"
    install -D -m 0644 "$top/systemd/overboot-verity.service" \
        "$r/lib/systemd/system/overboot-verity.service"
    mkdir -p "$wants"
    ln -sfn /lib/systemd/system/overboot-verity.service "$wants/overboot-verity.service"
fi
cat >"$r/etc/systemd/system/overboot-e2e.service" <<'UNIT'
[Unit]
Description=overboot e2e marker
DefaultDependencies=no
After=multi-user.target

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/console
ExecStart=/bin/sh -c 'echo "OVERBOOT-E2E: systemd reached multi-user.target"; echo "OVERBOOT-E2E: mounts begin"; cat /proc/mounts; echo "OVERBOOT-E2E: mounts end"; echo "OVERBOOT-E2E: hostname=$(cat /etc/hostname)"; echo "OVERBOOT-E2E: state begin"; cat /run/overboot/state.json; echo "OVERBOOT-E2E: state end"; echo "OVERBOOT-E2E: overboot-verity.service $(systemctl is-active overboot-verity.service)"; journalctl -b -o cat -u overboot-verity.service | grep verity-watch; systemctl is-system-running || true; echo "OVERBOOT-E2E: done"; systemctl poweroff --force'

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
ln -sfn ../overboot-e2e.service "$r/etc/systemd/system/multi-user.target.wants/overboot-e2e.service"
rm -f "$out"
mksquashfs "$r" "$out" -comp zstd -noappend -all-time 0 -mkfs-time 0 -no-progress -quiet \
    -e "$r/.complete" >/dev/null
