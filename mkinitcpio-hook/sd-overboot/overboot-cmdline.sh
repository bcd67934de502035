#!/bin/sh
# getarg for overboot-lib.sh in a systemd initramfs without dracut (mkinitcpio
# sd-overboot): `getarg KEY=` prints the value of the last KEY=VALUE on the kernel
# command line and succeeds, or fails when there is none; `getarg KEY` succeeds when
# the bare word KEY is there. The command line is $SYSTEMD_PROC_CMDLINE when set (as
# systemd itself reads it), else /proc/cmdline. Words are split on blanks; quoting
# is not interpreted (overboot's parameters take no blanks).

overboot_cmdline() {
    if [ -n "${SYSTEMD_PROC_CMDLINE+set}" ]; then
        printf '%s\n' "$SYSTEMD_PROC_CMDLINE"
    else
        cat /proc/cmdline 2> /dev/null
    fi
}

getarg() {
    _ga_key=$1
    _ga_hit=1
    _ga_val=""
    _ga_line=$(overboot_cmdline)
    set -f
    # shellcheck disable=SC2086 # split into words on purpose, without globbing
    set -- $_ga_line
    set +f
    for _ga_w in "$@"; do
        case "$_ga_key" in
            *=)
                case "$_ga_w" in
                    "$_ga_key"*)
                        _ga_val=${_ga_w#"$_ga_key"}
                        _ga_hit=0
                        ;;
                esac
                ;;
            *) [ "$_ga_w" = "$_ga_key" ] && _ga_hit=0 ;;
        esac
    done
    case "$_ga_key" in
        *=) [ "$_ga_hit" = 0 ] && printf '%s\n' "$_ga_val" ;;
    esac
    return "$_ga_hit"
}
