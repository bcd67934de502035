#!/bin/sh
# The whole test suite: formatting, lints, unit tests, namespace integration tests
# (real loop devices, squashfs, overlayfs; needs root), and the QEMU end-to-end boots
# of the static musl build. Run as root on Debian 12: it first installs what is missing
# (.ci/install: the packages in .ci/packages.d/, the musl target, clippy, rustfmt);
# OVERBOOT_NO_INSTALL=1 skips that.
set -eu
cd "$(dirname "$0")"
# A fresh clone gains nothing from incremental builds, which took 1.3 GB of the disk.
CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_INCREMENTAL
# Disk is what CI machines run short of: say what there was, and what the run used.
disk() { echo "test.sh: $1: $(df -h --output=avail . | tail -1 | tr -d ' ') free here, $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ') in ${TMPDIR:-/tmp}"; }
disk "at the start"
trap 'disk "at the end (target/ $(du -sh target 2>/dev/null | cut -f1), work/ $(du -sh work 2>/dev/null | cut -f1))"' EXIT
[ "${OVERBOOT_NO_INSTALL:-}" = 1 ] || .ci/install
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo build --release --target x86_64-unknown-linux-musl
OVERBOOT_MUSL_BIN="$PWD/target/x86_64-unknown-linux-musl/release/overboot"
export OVERBOOT_MUSL_BIN
disk "after the builds"
tests/kernel/fetch >/dev/null
cargo test -- --test-threads=2
echo "test.sh: all tests passed"
