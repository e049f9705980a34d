# Shared by the scripts: install Debian packages when missing, make the busybox base rootfs.

need_packages() {  # need_packages PKG...: installs the missing ones (needs root and apt)
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing Debian packages: ${missing[*]} (install them as root)" >&2
        return 1
    fi
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

busybox_rootfs_tar() {  # busybox_rootfs_tar OUT.tar: the base the conformance corpus expects
    local root busybox
    busybox=$(dpkg -L busybox-static | awk '/\/bin\/busybox$/ { print; exit }')
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev,var,usr/bin,sbin}
    cp "$busybox" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    find "$root" -type d -exec chmod 0755 {} +
    tar --numeric-owner --owner=0 --group=0 --sort=name -C "$root" -cf "$1" .
    rm -rf "$root"
}
