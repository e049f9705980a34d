#!/usr/bin/env bash
# Runs the cgroup v2 tests (crates/executor/tests/cgroup_v2.rs) for real in a throw-away VM
# whose only cgroup hierarchy is cgroup2 with every controller: for hosts where cgroup v1
# holds the controllers and they cannot be moved (the development host: see cgroup_v2.rs).
# The host's cgroups and mounts are not touched.
#
# Needs qemu (`apt-get install --no-install-recommends qemu-system-x86`), busybox, cargo and
# Debian's apt (to download a kernel, `linux-image-cloud-amd64`, unpacked here, never
# installed), or KILN_VM_KERNEL=/path/to/vmlinuz and KILN_VM_OVERLAY_KO=/path/to/overlay.ko
# (the sandbox mounts overlayfs) for the same kernel.
#
# Usage (from anywhere in the workspace): crates/executor/tests/cgroup_v2_vm.sh
# Exit status: the tests' (1 when the VM did not report one). KILN_VM_ACCEL=kvm uses KVM;
# the default is TCG, because KVM nested in the development host's VM hangs while the
# kernel decompresses itself (the boot takes ~5 s under TCG anyway).
set -euo pipefail

ws=$(cd "$(dirname "$0")/../../.." && pwd)
scratch=${KILN_VM_DIR:-/var/tmp/kiln-cgroup-v2-vm}
accel=${KILN_VM_ACCEL:-tcg}
mkdir -p "$scratch"

# The test binary, and the helper at the absolute path compiled into it.
tests=$(cd "$ws" && cargo test -p kiln-executor --test cgroup_v2 --no-run \
    --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*/cgroup_v2-[^"]*"' | cut -d'"' -f4 | tail -1)
target=$(cd "$ws" && cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
helper=$target/debug/kiln-sandbox-test-helper
[ -x "$tests" ] && [ -x "$helper" ] || { echo "no test binary or helper" >&2; exit 1; }

# A kernel with overlayfs as a module next to it.
if [ -z "${KILN_VM_KERNEL:-}" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || { echo "no linux-image-cloud-amd64 in apt (apt-get update?)" >&2; exit 1; }
    if [ ! -d "$scratch/$pkg" ]; then
        (cd "$scratch" && apt-get download -qq "$pkg" 2>/dev/null &&
            dpkg-deb -x "$pkg"_*.deb "$pkg.tmp" && mv "$pkg.tmp" "$pkg")
    fi
    KILN_VM_KERNEL=$(ls "$scratch/$pkg"/boot/vmlinuz-*)
    KILN_VM_OVERLAY_KO=$(find "$scratch/$pkg/lib/modules" -name overlay.ko | head -1)
fi

# The initramfs: busybox, the binaries and their libraries, an init that runs the tests.
root=$scratch/root
rm -rf "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc,root,var/tmp,lib/modules} "$root$(dirname "$helper")"
cp "$(command -v busybox)" "$root/bin/busybox"
cp "$helper" "$root$helper"
cp "$tests" "$root/bin/cgroup_v2"
cp "$KILN_VM_OVERLAY_KO" "$root/lib/modules/overlay.ko"
for lib in $(ldd "$tests" "$helper" "$root/bin/busybox" 2>/dev/null |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*[^:]$/ { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root
if [ "${1:-}" != stage2 ]; then
    # pivot_root (which the sandbox uses) refuses the initramfs as the current root.
    mkdir -p /newroot
    mount -t tmpfs -o size=90% tmpfs /newroot
    for d in /*; do
        case $d in /proc|/sys|/dev|/newroot) ;; *) cp -a "$d" /newroot/ ;; esac
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    exec switch_root /newroot /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
insmod /lib/modules/overlay.ko
ip link set lo up
echo "kernel $(uname -r); cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
/bin/cgroup_v2 --test-threads 1 --nocapture 2>&1
echo "cgroup_v2 exit=$?"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) >"$scratch/initrd.cpio"

log=$scratch/console.log
timeout 900 qemu-system-x86_64 -accel "$accel" -m 1024 -smp 2 -nographic -no-reboot \
    -kernel "$KILN_VM_KERNEL" -initrd "$scratch/initrd.cpio" \
    -append "console=ttyS0 rdinit=/init panic=-1 quiet" >"$log" 2>&1 || true
sed -n '/cgroup2 controllers:/,$p' "$log" | tr -d '\r' | sed 's/.*\(kernel [0-9]\)/\1/'
code=$(sed -n 's/.*cgroup_v2 exit=\([0-9]*\).*/\1/p' "$log" | tail -1)
exit "${code:-1}"
