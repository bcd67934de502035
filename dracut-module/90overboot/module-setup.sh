#!/bin/bash
# dracut module "overboot": assemble the root from a BootExt volume with
# `overboot assemble` (kernel command line: root=overboot [overboot.*=...]).
# Called by dracut with its helpers (inst_*, instmods, dracut_module_included) and
# variables (moddir, systemdsystemunitdir, systemdutildir) in scope.
# shellcheck disable=SC2154

# The static binary that goes into the initramfs: $OVERBOOT_BIN, else /usr/bin/overboot.
overboot_binary() {
    local bin=${OVERBOOT_BIN:-/usr/bin/overboot}
    if [[ -x $bin ]]; then
        printf '%s\n' "$bin"
        return 0
    fi
    return 1
}

# called by dracut
check() {
    if ! overboot_binary > /dev/null; then
        derror "overboot: no executable ${OVERBOOT_BIN:-/usr/bin/overboot} (install overboot, or set OVERBOOT_BIN=/path/to/overboot)"
        return 1
    fi
    # Not pulled into host-only images by itself: add it with --add overboot.
    return 255
}

# called by dracut
depends() {
    echo base
    return 0
}

# called by dracut
installkernel() {
    hostonly='' instmods loop squashfs overlay ext4 vfat btrfs xfs isofs
}

# called by dracut
install() {
    local bin
    bin=$(overboot_binary) || {
        dfatal "overboot: no executable ${OVERBOOT_BIN:-/usr/bin/overboot}"
        return 1
    }
    inst_binary "$bin" /usr/bin/overboot
    inst_multiple mount umount mkdir modprobe sleep tr sed cat cp udevadm
    inst_simple "$moddir/overboot-lib.sh" /lib/overboot-lib.sh
    inst_hook cmdline 20 "$moddir/parse-overboot.sh"
    if dracut_module_included "systemd"; then
        inst_script "$moddir/overboot-assemble.sh" /usr/sbin/overboot-dracut-assemble
        inst_simple "$moddir/overboot-assemble.service" \
            "$systemdsystemunitdir/overboot-assemble.service"
        inst_script "$moddir/overboot-generator.sh" \
            "$systemdutildir/system-generators/overboot-generator"
    else
        inst_hook mount 10 "$moddir/mount-overboot.sh"
    fi
}
