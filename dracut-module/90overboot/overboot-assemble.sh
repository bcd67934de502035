#!/bin/sh
# ExecStart of overboot-assemble.service (systemd init): find and mount BootExt,
# assemble the root into $NEWROOT (/sysroot). A failure fails the unit, whose
# OnFailure= is emergency.target; overboot's message is on the console and in the journal.
export DRACUT_SYSTEMD=1
if [ -f /dracut-state.sh ]; then
    # shellcheck source=/dev/null
    . /dracut-state.sh 2> /dev/null
fi
# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
# shellcheck source=SCRIPTDIR/overboot-lib.sh
. /lib/overboot-lib.sh

overboot_wanted || exit 0
overboot_assemble_root "${NEWROOT:-/sysroot}" || exit 1
