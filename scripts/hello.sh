#!/usr/bin/env bash
# Builds kiln, makes the busybox base image from Debian's busybox-static (installing it
# when missing), imports it, builds testdata/hello and runs it. Run as root.
#   scripts/hello.sh [--root DIR]      (default root: ./target/kiln-hello)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD/target/kiln-hello
[ "${1:-}" = --root ] && ROOT=${2:?--root needs a directory}
[ "$(id -u)" -eq 0 ] || { echo "hello.sh: kiln's sandbox needs root (namespaces, overlayfs)" >&2; exit 1; }
need_packages busybox-static
cargo build --release
KILN="target/release/kiln --root $ROOT"
BASE=127.0.0.1:5000/busybox:latest
if ! $KILN inspect "$BASE" >/dev/null 2>&1; then
    tar=$(mktemp --suffix .tar)
    busybox_rootfs_tar "$tar"
    $KILN import -c 'CMD ["sh"]' "$tar" "$BASE"
    rm -f "$tar"
fi
$KILN build --progress plain -t hello testdata/hello
$KILN run --rm hello
$KILN run --rm hello echo "kiln run works"
$KILN images
