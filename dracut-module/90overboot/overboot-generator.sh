#!/bin/sh
# systemd generator (dracut, systemd init). For root=overboot, systemd-fstab-generator
# writes a sysroot.mount with What=overboot, which cannot be mounted. This generator
# writes, into the early directory (which takes precedence), a sysroot.mount that is
# satisfied by overboot-assemble.service: it requires and follows the service, and
# mounts nothing itself once /sysroot is a mount point.
# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
# shellcheck source=SCRIPTDIR/overboot-lib.sh
. /lib/overboot-lib.sh

overboot_wanted || exit 0
early=${2:-}
[ -n "$early" ] || exit 1
mkdir -p "$early/initrd-root-fs.target.requires"
cat > "$early/sysroot.mount" << 'UNIT'
# Written by overboot-generator for root=overboot.
[Unit]
Description=/sysroot assembled by overboot
SourcePath=/proc/cmdline
Requires=overboot-assemble.service
After=overboot-assemble.service
Before=initrd-root-fs.target
ConditionPathIsMountPoint=!/sysroot

[Mount]
What=overboot
Where=/sysroot
Type=overlay
UNIT
ln -sf ../sysroot.mount "$early/initrd-root-fs.target.requires/sysroot.mount"
exit 0
