#!/usr/bin/env bash
# Builds kiln, makes the busybox base image from Debian's busybox-static (installing it
# when missing), imports it, builds testdata/hello and runs it. Run as root.
#   scripts/hello.sh [--root DIR]      (default root: $CARGO_TARGET_DIR/kiln-hello, or ./target/…)
# Leaves the busybox root filesystem tarball at $CARGO_TARGET_DIR/busybox-rootfs.tar for
# `kiln import`, and says how to put kiln on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
ROOT=$TARGET/kiln-hello
[ "${1:-}" = --root ] && ROOT=${2:?--root needs a directory}
[ "$(id -u)" -eq 0 ] || { echo "hello.sh: kiln's sandbox needs root (namespaces, overlayfs)" >&2; exit 1; }
need_packages busybox-static
cargo build --release
KILN="$TARGET/release/kiln --root $ROOT"
BASE=127.0.0.1:5000/busybox:latest
if ! $KILN inspect "$BASE" >/dev/null 2>&1; then
    busybox_rootfs_tar "$TARGET/busybox-rootfs.tar"
    $KILN import -c 'CMD ["sh"]' "$TARGET/busybox-rootfs.tar" "$BASE"
fi
$KILN build --progress plain -t hello testdata/hello
$KILN run --rm hello
$KILN run --rm hello echo "kiln run works"
$KILN images
cat <<MSG

kiln works. To use it from anywhere (as root):
  install -m 755 $TARGET/release/kiln $TARGET/release/kiln-shim /usr/local/bin/
  kiln --root $ROOT run --rm -it hello sh
A busybox root filesystem for images of your own: $TARGET/busybox-rootfs.tar
  kiln import -c 'CMD ["sh"]' $TARGET/busybox-rootfs.tar busybox
MSG
