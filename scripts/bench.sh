#!/usr/bin/env bash
# Benchmarks kiln (target/release/kiln) and, when a Docker daemon answers, docker, with the
# shared harness (../shared/bench), in one run, and prints the ratios (lib/report.py).
#   scripts/bench.sh [--runs N] [WORKLOAD...]     (default: --runs 3, all workloads)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="${BENCH_DIR:-$repo/../shared/bench}"
[ -x "$bench/run.sh" ] || { echo "bench.sh: no harness at $bench" >&2; exit 2; }
runs=3
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
(cd "$repo" && cargo build --release -q)
# Scratch (kiln's --root per store, the contexts) goes to a fresh ext4 filesystem with a
# journal, on a loop device with direct I/O (no double caching), unless TMPDIR is set. Why:
# the project's machines have an ext4 root without a journal, and there the inode allocator
# skips inodes deleted in the last minutes, scanning them one by one (kernel:
# find_inode_bit -> recently_deleted): creating files right after mass deletions nearby
# becomes quadratic (10,000 files: 3 s instead of 0.16 s). The harness deletes each kiln
# store before the next cold build, next to where that build creates its files, but never
# deletes dockerd's data in /var/lib/docker: measured on the root filesystem, the
# comparison would measure that quirk, not the builders.
if [ -z "${TMPDIR:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null; then
    img=/var/tmp/kiln-bench.img mnt=/var/tmp/kiln-bench.mnt
    rm -f "$img"; truncate -s 32G "$img"; mkfs.ext4 -q -F "$img"
    dev="$(losetup --direct-io=on --show -f "$img")"
    mkdir -p "$mnt"; mount "$dev" "$mnt"
    trap 'umount "$mnt"; losetup -d "$dev"; rm -f "$img"' EXIT
    export TMPDIR="$mnt"
  else
    export TMPDIR=/var/tmp/kiln-bench
    mkdir -p "$TMPDIR"
  fi
fi
export BENCH_KILN="$repo/target/release/kiln"
builders=kiln
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  builders=kiln,docker
else
  echo "bench.sh: no running Docker daemon: kiln only (no ratios against BuildKit)" >&2
fi
out="$(mktemp -p /var/tmp kiln-bench-XXXXXX.jsonl)"
"$bench/run.sh" --builder "$builders" --runs "$runs" --json "$out" "${args[@]}"
python3 "$bench/lib/report.py" "$out"
echo "raw results: $out" >&2
