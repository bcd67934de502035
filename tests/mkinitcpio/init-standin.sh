#!/bin/sh
# A stand-in for mkinitcpio's /init and init_functions, written for the tests from
# their documented behaviour (github archlinux/mkinitcpio), to run a runtime hook
# outside an initramfs:
#   - the kernel command line (OB_CMDLINE) is cached as key=value lines for getarg;
#   - run_hook of every hook in HOOKS (from OB_HOOKS_DIR) runs in order;
#   - root= is resolved with resolve_device (a failure leaves it as it is);
#   - "$mount_handler" is called with the new root (NEWROOT) as $1;
#   - then, as init does: nothing mounted on the new root, or no init in it, is
#     the end (exit 1 here, an emergency shell there).
# launch_interactive_shell only reports that it was called. udev is not running.
set -u
: "${OB_CMDLINE:?}" "${OB_HOOKS_DIR:?}" "${NEWROOT:?}" "${HOOKS:=overboot}"
OB_CACHE=$(mktemp)
trap 'rm -f "$OB_CACHE"' EXIT
udevd_running=0
mount_handler=default_mount_handler
init=/sbin/init
export EMERGENCYHOOKS=""

msg() {
    [ "$(getarg quiet)" = y ] || echo "$@"
}

err() {
    echo "ERROR: $*"
}

# getarg KEY [DEFAULT]: the last KEY= on the command line ("y" for a bare KEY).
getarg() {
    si_v=""
    si_hit=0
    while IFS= read -r si_l; do
        case "$si_l" in
            "$1="*) si_v=${si_l#*=} si_hit=1 ;;
        esac
    done < "$OB_CACHE"
    if [ "$si_hit" = 1 ] && [ -n "$si_v" ]; then
        printf '%s' "$si_v"
    else
        printf '%s' "${2:-}"
    fi
}

# poll_device DEV [SECONDS]: true once DEV is a block device; waits only with udev.
poll_device() {
    si_left=$(( ${2:-10} * 10 ))
    if [ "$udevd_running" -eq 1 ]; then
        while [ ! -b "$1" ] && [ "$si_left" -gt 0 ]; do
            sleep 0.1
            si_left=$((si_left - 1))
        done
    fi
    [ -b "$1" ]
}

# resolve_device SPEC: tags through blkid (or udev's by-* links when udev runs),
# /dev paths waited for with poll_device (rootdelay=); prints the device.
resolve_device() {
    si_dev=$1
    case "$1" in
        UUID=* | LABEL=* | PARTUUID=* | PARTLABEL=*)
            si_found=$(blkid -lt "$1" -o device 2> /dev/null)
            if [ -z "$si_found" ] && [ "$udevd_running" -eq 1 ]; then
                si_kind=$(printf '%s' "${1%%=*}" | tr '[:upper:]' '[:lower:]')
                si_found=/dev/disk/by-$si_kind/$(printf '%s' "${1#*=}" | sed 's,/,\\x2f,g')
            fi
            [ -n "$si_found" ] && si_dev=$si_found
            ;;
    esac
    case "$si_dev" in
        /dev/*)
            if poll_device "$si_dev" "$(getarg rootdelay)"; then
                echo "$si_dev"
                return 0
            fi
            ;;
    esac
    return 1
}

launch_interactive_shell() {
    echo "STANDIN: launch_interactive_shell $*"
}

run_hookfunctions() {
    si_fn=$1 si_desc=$2
    shift 2
    for si_hook in "$@"; do
        [ -r "$OB_HOOKS_DIR/$si_hook" ] || continue
        unset -f "$si_fn"
        # shellcheck disable=SC1090
        . "$OB_HOOKS_DIR/$si_hook"
        command -v "$si_fn" > /dev/null || continue
        msg ":: running $si_desc [$si_hook]"
        "$si_fn"
    done
}

default_mount_handler() {
    echo "STANDIN: default_mount_handler $1"
}

for si_word in $OB_CMDLINE; do
    case "$si_word" in
        *=*) printf '%s\n' "$si_word" >> "$OB_CACHE" ;;
        *) printf '%s=y\n' "$si_word" >> "$OB_CACHE" ;;
    esac
done
root=$(getarg root)

# shellcheck disable=SC2086
run_hookfunctions run_hook hook $HOOKS

if si_rootdev=$(resolve_device "$root"); then
    case "$root" in
        UUID=* | LABEL=* | PARTUUID=* | PARTLABEL=*) ;;
        *) root=$si_rootdev ;;
    esac
fi

echo "STANDIN: mount_handler=$mount_handler"
"$mount_handler" "$NEWROOT"

# init compares with / (the parent of /new_root); here the parent of NEWROOT.
if [ "$(stat -c %D "$NEWROOT/..")" = "$(stat -c %D "$NEWROOT")" ]; then
    echo "STANDIN: nothing mounted on $NEWROOT"
    exit 1
elif [ ! -x "$NEWROOT$init" ]; then
    echo "STANDIN: $init missing in $NEWROOT"
    exit 1
fi
echo "STANDIN: root mounted on $NEWROOT, $init present: switch_root would follow"
