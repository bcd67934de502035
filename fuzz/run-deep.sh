#!/bin/bash
# Fuzz targets to depth, one after another: each to RUNS executions (default 15
# million) or SECS seconds (default 3000), whichever comes first. Built without a
# sanitizer and with overflow checks: the parsers are safe Rust, so AddressSanitizer
# finds nothing there that a panic does not, and costs 5x the executions (manifest:
# 6,769/s with it, 35,124/s without, same corpus, same minute); overflow checks turn
# an arithmetic overflow into a panic the fuzzer reports.
#
#   cd fuzz && ./run-deep.sh manifest probe        # new inputs in $OUT/<target>
#
# Needs cargo-fuzz; uses the stable toolchain through RUSTC_BOOTSTRAP, as the
# README's other commands do.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/fuzz-deep}
TARGET_DIR=${TARGET_DIR:-target-deep}
RUSTC_BOOTSTRAP=1 cargo fuzz build -O --debug-assertions --sanitizer none --target-dir "$TARGET_DIR"
bin=$TARGET_DIR/x86_64-unknown-linux-gnu/release

for t in "$@"; do
    # Input length: a kernel command line is at most 2,048 bytes (x86); an entry
    # name is one file name plus a small tree; probe's sparse images need room.
    case $t in
    cmdline) len=(-max_len=2048) ;;
    names) len=(-max_len=1024) ;;
    probe) len=(-max_len=65536) ;;
    *) len=() ;;
    esac
    dirs=(corpus/"$t")
    [ -d regressions/"$t" ] && dirs+=(regressions/"$t")
    mkdir -p "$OUT/$t" "$OUT/artifacts/$t"
    echo "$(date -u +%FT%TZ) $t: start" >&2
    "$bin/$t" -runs="${RUNS:-15000000}" -max_total_time="${SECS:-3000}" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$t/" "${len[@]}" "$OUT/$t" "${dirs[@]}" \
        >"$OUT/$t.log" 2>&1 || echo "$t: stopped on a finding, see $OUT/artifacts/$t" >&2
    grep -E '^(#[0-9]+\s+DONE|stat::)' "$OUT/$t.log" >&2 || true
done
