#!/bin/sh
# overboot for dracut: helpers shared by the cmdline hook, the mount hook (shell
# init) and overboot-dracut-assemble (systemd init). Needs dracut-lib.sh (getarg).
#
# root=overboot hands the root to overboot: BootExt is found through udev's
# /dev/disk/by-* links (overboot.bootext=, default LABEL=BootExt), mounted read-write
# at /run/overboot/bootext as overboot's own PID-1 mode does, and the root is
# assembled into $NEWROOT by `overboot assemble`. dracut does the hand-off.

OVERBOOT_MNT=/run/overboot/bootext
OVERBOOT_LOG=/run/overboot/assemble.log
OVERBOOT_DEADLINE=/run/overboot/deadline
OVERBOOT_FAILED=/run/overboot/failed

# True when the kernel command line hands the root to overboot.
overboot_wanted() {
    [ "$(getarg root=)" = overboot ]
}

# The BootExt spec: overboot.bootext=, else LABEL=BootExt.
overboot_spec() {
    _ob_spec=$(getarg overboot.bootext=)
    printf '%s\n' "${_ob_spec:-LABEL=BootExt}"
}

# overboot.timeout= in whole seconds (default 30), as overboot reads it.
overboot_timeout() {
    _ob_t=$(getarg overboot.timeout=)
    case "$_ob_t" in
        '' | *[!0-9]*) echo 30 ;;
        *) echo "$_ob_t" ;;
    esac
}

# A label as udev writes it in /dev/disk/by-label (/ and space escaped).
overboot_udev_escape() {
    printf '%s\n' "$1" | sed 's,\\,\\x5c,g;s,/,\\x2f,g;s, ,\\x20,g'
}

# The /dev paths that can name SPEC, one per line: UUIDs are tried as written, in
# lower and in upper case (ext4 and btrfs show lower case, vfat upper case). Fails on
# a spec that is not LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path.
overboot_candidates() {
    case "$1" in
        LABEL=?*) echo "/dev/disk/by-label/$(overboot_udev_escape "${1#LABEL=}")" ;;
        PARTLABEL=?*) echo "/dev/disk/by-partlabel/$(overboot_udev_escape "${1#PARTLABEL=}")" ;;
        UUID=?* | PARTUUID=?*)
            _ob_kind=uuid
            [ "${1%%=*}" = PARTUUID ] && _ob_kind=partuuid
            _ob_v=${1#*=}
            echo "/dev/disk/by-$_ob_kind/$_ob_v"
            echo "/dev/disk/by-$_ob_kind/$(printf '%s' "$_ob_v" | tr 'A-F' 'a-f')"
            echo "/dev/disk/by-$_ob_kind/$(printf '%s' "$_ob_v" | tr 'a-f' 'A-F')"
            ;;
        /dev/?*) echo "$1" ;;
        *) return 1 ;;
    esac
}

# Prints the first existing device for SPEC; fails when there is none (yet).
overboot_find() {
    _ob_list=$(overboot_candidates "$1") || return 1
    for _ob_c in $_ob_list; do
        if [ -b "$_ob_c" ]; then
            printf '%s\n' "$_ob_c"
            return 0
        fi
    done
    return 1
}

# Seconds since boot, whole.
overboot_uptime() {
    read -r _ob_up _ < /proc/uptime
    echo "${_ob_up%%.*}"
}

# Remember when waiting for BootExt ends: now + overboot.timeout.
overboot_set_deadline() {
    mkdir -p /run/overboot
    echo $(($(overboot_uptime) + $(overboot_timeout))) > "$OVERBOOT_DEADLINE"
}

overboot_deadline_passed() {
    [ -r "$OVERBOOT_DEADLINE" ] || return 0
    read -r _ob_dl < "$OVERBOOT_DEADLINE"
    [ "$(overboot_uptime)" -ge "${_ob_dl:-0}" ]
}

# The initqueue is finished for overboot once BootExt is there or the wait is over.
# The wait starts at the first call.
overboot_initqueue_finished() {
    overboot_find "$(overboot_spec)" > /dev/null && return 0
    [ -r "$OVERBOOT_DEADLINE" ] || overboot_set_deadline
    overboot_deadline_passed
}

# What the machine shows instead: labelled volumes and block devices.
overboot_found() {
    _ob_found=""
    for _ob_l in /dev/disk/by-label/* /dev/disk/by-partlabel/*; do
        [ -e "$_ob_l" ] || continue
        case "$_ob_l" in
            */by-label/*) _ob_found="$_ob_found LABEL=${_ob_l##*/}" ;;
            *) _ob_found="$_ob_found PARTLABEL=${_ob_l##*/}" ;;
        esac
    done
    _ob_devs=""
    for _ob_b in /sys/class/block/*; do
        [ -e "$_ob_b" ] || continue
        _ob_devs="$_ob_devs ${_ob_b##*/}"
    done
    printf 'labels:%s; block devices:%s\n' "${_ob_found:- none}" "${_ob_devs:- none}"
}

# Print one message the way overboot does (what was looked for, what was found,
# what to change) to stderr, and keep it for the emergency hook.
overboot_fail() {
    mkdir -p /run/overboot
    {
        echo "overboot: cannot assemble: looked for $1"
        echo "  found: $2"
        echo "  to fix: $3"
    } > /run/overboot/fail.msg
    cat /run/overboot/fail.msg >> "$OVERBOOT_LOG"
    cat /run/overboot/fail.msg >&2
    : > "$OVERBOOT_FAILED"
    return 1
}

# The first line of stdin.
overboot_first() {
    read -r _ob_first || [ -n "$_ob_first" ]
    printf '%s\n' "$_ob_first"
}

# Wait for BootExt up to overboot.timeout from the start of the wait (in the shell
# init, the initqueue's), then print its device.
overboot_wait_bootext() {
    _ob_spec=$(overboot_spec)
    if ! overboot_candidates "$_ob_spec" > /dev/null; then
        overboot_fail "the BootExt volume (overboot.bootext=$_ob_spec)" \
            "a spec that is not LABEL=, UUID=, PARTUUID=, PARTLABEL= or /dev/..." \
            "set overboot.bootext=LABEL=BootExt (or UUID=, PARTUUID=, PARTLABEL=, /dev/...)"
        return 1
    fi
    [ -r "$OVERBOOT_DEADLINE" ] || overboot_set_deadline
    while ! overboot_find "$_ob_spec"; do
        if overboot_deadline_passed; then
            # What udev still has queued (a slow machine) is looked at before
            # concluding, and is in the list of what was found.
            udevadm settle --timeout=10 > /dev/null 2>&1 || :
            overboot_find "$_ob_spec" && return 0
            overboot_fail "the BootExt volume ($_ob_spec, as $(overboot_candidates "$_ob_spec" | overboot_first)) for $(overboot_timeout) s" \
                "$(overboot_found)" \
                "label the volume BootExt (e2label DEV BootExt), or set overboot.bootext=LABEL=|UUID=|PARTUUID=|PARTLABEL=|/dev/..., or raise overboot.timeout="
            return 1
        fi
        udevadm settle --timeout=1 > /dev/null 2>&1 || :
        sleep 0.5
    done
}

# True when something is mounted on $1.
overboot_mounted() {
    while read -r _ _ob_mp _; do
        [ "$_ob_mp" = "$1" ] && return 0
    done < /proc/mounts
    return 1
}

# Find and mount BootExt, then assemble the root into $1 with `overboot assemble`.
# overboot's own messages go to stderr and to /run/overboot/assemble.log.
overboot_assemble_root() {
    _ob_root=$1
    mkdir -p /run/overboot
    rm -f "$OVERBOOT_FAILED"
    _ob_dev=$(overboot_wait_bootext) || return 1
    if ! overboot_mounted "$OVERBOOT_MNT"; then
        mkdir -p "$OVERBOOT_MNT"
        # Read-write (DIR_ entries are bound read-write); a medium that cannot be
        # written (iso9660, a write-protected card) read-only, as overboot's init does;
        # nodev,nosuid,noexec as there (overboot gives its DIR_ binds their own flags).
        if ! _ob_err=$(mount -o rw,nodev,nosuid,noexec "$_ob_dev" "$OVERBOOT_MNT" 2>&1) &&
            ! _ob_err2=$(mount -o ro,nodev,nosuid,noexec "$_ob_dev" "$OVERBOOT_MNT" 2>&1); then
            _ob_err="$_ob_err; read-only: $_ob_err2"
            overboot_fail "to mount BootExt ($_ob_dev) read-write on $OVERBOOT_MNT" \
                "mount said: $_ob_err" \
                "check the filesystem on $_ob_dev (ext4, vfat, btrfs, xfs or iso9660) with fsck, and that its module is in the initramfs"
            return 1
        fi
    fi
    # Modular kernels: what `overboot assemble` needs (it loads nothing in this mode).
    modprobe -q -a loop squashfs overlay > /dev/null 2>&1 || :
    mkdir -p "$_ob_root"
    _ob_rc=0
    overboot assemble --bootext "$OVERBOOT_MNT" --root "$_ob_root" > /run/overboot/assemble.out 2>&1 || _ob_rc=$?
    cat /run/overboot/assemble.out >> "$OVERBOOT_LOG"
    cat /run/overboot/assemble.out >&2
    if [ "$_ob_rc" -ne 0 ]; then
        cp /run/overboot/assemble.out /run/overboot/fail.msg
        : > "$OVERBOOT_FAILED"
        return 1
    fi
}

# Shows overboot's message again just before dracut's emergency shell or power-off.
overboot_emergency() {
    [ -e "$OVERBOOT_FAILED" ] || return 0
    echo "overboot: the root was not assembled:" >&2
    cat /run/overboot/fail.msg >&2
}
