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
# Scratch (kiln's --root, contexts) off /tmp by default: on the project's machines creating
# files under /tmp is ~10x slower than elsewhere on the same ext4 filesystem, while dockerd
# works in /var/lib/docker; comparing there would measure the directory, not the builder.
if [ -z "${TMPDIR:-}" ]; then
  export TMPDIR=/var/tmp/kiln-bench
  mkdir -p "$TMPDIR"
fi
export BENCH_KILN="$repo/target/release/kiln"
builders=kiln
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  builders=kiln,docker
else
  echo "bench.sh: no running Docker daemon: kiln only (no ratios against BuildKit)" >&2
fi
out="$(mktemp -t kiln-bench-XXXXXX.jsonl)"
"$bench/run.sh" --builder "$builders" --runs "$runs" --json "$out" "${args[@]}"
python3 "$bench/lib/report.py" "$out"
echo "raw results: $out" >&2
