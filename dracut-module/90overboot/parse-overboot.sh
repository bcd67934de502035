#!/bin/sh
# dracut cmdline hook: root=overboot claims the root for overboot, so dracut's own
# root handling (and rootfs-block, dmsquash-live, ...) leaves it alone. The waiting
# for BootExt is bounded by overboot.timeout= (default 30 s), not by rd.retry=.
# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
# shellcheck source=SCRIPTDIR/overboot-lib.sh
. /lib/overboot-lib.sh

# hookdir and DRACUT_SYSTEMD come from dracut-lib.sh and the init.
# shellcheck disable=SC2154
if overboot_wanted; then
    root=overboot
    rootok=1
    export root rootok
    _ob_spec=$(overboot_spec)
    if ! overboot_candidates "$_ob_spec" > /dev/null; then
        die "overboot: overboot.bootext=$_ob_spec is not LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev/ path"
    fi
    if [ -z "$DRACUT_SYSTEMD" ]; then
        # Shell init: the initqueue ends once BootExt is there or the wait is over;
        # the mount hook then assembles the root or says why not.
        echo '. /lib/overboot-lib.sh && overboot_initqueue_finished' \
            > "$hookdir/initqueue/finished/overboot-bootext.sh"
    fi
    echo '[ -e /lib/overboot-lib.sh ] && . /lib/overboot-lib.sh && overboot_emergency' \
        > "$hookdir/emergency/05-overboot.sh"
fi
