#!/bin/sh
# dracut mount hook (shell init): assemble the root into $NEWROOT with overboot.
# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
# shellcheck source=SCRIPTDIR/overboot-lib.sh
. /lib/overboot-lib.sh

# root and NEWROOT come from dracut's init.
# shellcheck disable=SC2154
if [ "$root" = overboot ] && ! overboot_mounted "$NEWROOT"; then
    if overboot_assemble_root "$NEWROOT"; then
        info "overboot: root assembled on $NEWROOT"
    else
        die "overboot could not assemble the root on $NEWROOT (message above, also in $OVERBOOT_LOG)"
    fi
fi
