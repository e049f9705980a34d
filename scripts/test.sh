#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian's docker-registry,
# busybox-static, skopeo, umoci, passt for pasta, runc for --runtime), then runs every test. Run as root: the sandbox,
# overlayfs and end-to-end tests need it (they are skipped with a message otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_packages docker-registry busybox-static skopeo umoci tar passt runc
cargo test --workspace --all-targets "$@"
