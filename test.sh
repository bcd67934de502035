#!/bin/sh
# The whole test suite: formatting, lints, unit tests, namespace integration tests
# (real loop devices, squashfs, overlayfs; needs root), and the QEMU end-to-end boots
# of the static musl build. Run as root on Debian 12: it first installs what is missing
# (.ci/install: the packages in .ci/packages.d/, the musl target, clippy, rustfmt);
# OVERBOOT_NO_INSTALL=1 skips that.
set -eu
cd "$(dirname "$0")"
[ "${OVERBOOT_NO_INSTALL:-}" = 1 ] || .ci/install
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo build --release --target x86_64-unknown-linux-musl
OVERBOOT_MUSL_BIN="$PWD/target/x86_64-unknown-linux-musl/release/overboot"
export OVERBOOT_MUSL_BIN
tests/kernel/fetch >/dev/null
cargo test -- --test-threads=2
echo "test.sh: all tests passed"
