#!/usr/bin/env bash
# Builds Outpost's guest assets (test kernel, Debian cloud kernel, initrds, root image) into a
# cache outside the work tree, keyed by the versions and hashes of every input:
#
#   ${OUTPOST_CACHE_DIR:-/var/cache/outpost}/guest/<key>/    the assets (see guest/README.md)
#   ${OUTPOST_CACHE_DIR:-/var/cache/outpost}/guest/current -> <key>
#
# Prints the asset directory on stdout (everything else goes to stderr). Idempotent: when the
# directory for the current key exists, it only re-points `current` and prints it. Every
# cache entry is assembled in a temporary directory on the same file system and renamed into
# place, so an interrupted run never leaves a half-built entry behind.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUEST_SRC="$REPO/guest"
CACHE_ROOT=${OUTPOST_CACHE_DIR:-/var/cache/outpost}
GUEST_CACHE="$CACHE_ROOT/guest"
JOBS=${OUTPOST_BUILD_JOBS:-2}

KERNEL_FRAGMENT="$GUEST_SRC/test-kernel.config"
INIT_SCRIPT="$GUEST_SRC/init"
UDHCPC_SCRIPT="$GUEST_SRC/udhcpc.script"
KERNEL_SOURCE_PKG=linux-source-6.1
KERNEL_SOURCE_TARBALL=/usr/src/linux-source-6.1.tar.xz
DEBIAN_KERNEL_META=linux-image-cloud-amd64
# The Debian kernel's drivers that our devices need (dependencies are added from modules.dep).
DEBIAN_MODULES=(virtio virtio_ring virtio_mmio virtio_blk failover net_failover virtio_net virtio-rng)
ROOTFS_SIZE=64M

log() { echo "build-assets: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Keeps a cache key to characters that are safe in a path (Debian versions may hold + : ~).
sanitize() { tr -c 'A-Za-z0-9._\n-' '_' <<<"$1"; }

"$REPO/scripts/install-deps.sh" >&2

# --- Inputs and the key ------------------------------------------------------------------

kernel_source_version=$(dpkg-query -W -f='${Version}' "$KERNEL_SOURCE_PKG")
[[ -f $KERNEL_SOURCE_TARBALL ]] || die "$KERNEL_SOURCE_TARBALL missing although $KERNEL_SOURCE_PKG is installed"
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static)
gcc_version=$(gcc -dumpfullversion)

resolve_debian_kernel() {
    apt-cache depends "$DEBIAN_KERNEL_META" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
debian_kernel_pkg=$(resolve_debian_kernel)
if [[ -z $debian_kernel_pkg ]]; then
    # A fresh machine whose package lists were never fetched (install-deps skipped apt).
    log "package lists do not know $DEBIAN_KERNEL_META; running apt-get update"
    apt-get update -q >&2
    debian_kernel_pkg=$(resolve_debian_kernel)
fi
[[ -n $debian_kernel_pkg ]] || die "cannot resolve the kernel package that $DEBIAN_KERNEL_META depends on"
debian_kernel_version=$(apt-cache show --no-all-versions "$debian_kernel_pkg" | awk '$1 == "Version:" { print $2; exit }')
[[ -n $debian_kernel_version ]] || die "apt-cache knows no version of $debian_kernel_pkg"

# The test kernel depends on its source, our fragment and the compiler only.
kernel_hash=$(
    {
        echo "$kernel_source_version"
        echo "$gcc_version"
        cat "$KERNEL_FRAGMENT"
    } | sha256sum | cut -c1-12
)
kernel_id="$(sanitize "$kernel_source_version")_$kernel_hash"

# The asset set depends on everything, this script included.
assets_hash=$(
    {
        echo "$kernel_id"
        echo "$debian_kernel_pkg $debian_kernel_version"
        echo "$busybox_version"
        cat "$INIT_SCRIPT" "$UDHCPC_SCRIPT" "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-12
)
key="linux-$(sanitize "$kernel_source_version")_debian-$(sanitize "$debian_kernel_version")_$assets_hash"
out_dir="$GUEST_CACHE/$key"

point_current_and_print() {
    # The mtime says when an entry was last used: pruning keeps the recently used ones.
    touch "$out_dir"
    ln -sfn "$key" "$GUEST_CACHE/.current.new"
    mv -T "$GUEST_CACHE/.current.new" "$GUEST_CACHE/current"
    echo "$out_dir"
}

mkdir -p "$GUEST_CACHE"
# One builder at a time; a second caller waits and then finds the entry built.
exec 9>"$GUEST_CACHE/.lock"
flock 9

if [[ -f $out_dir/manifest ]]; then
    point_current_and_print
    exit 0
fi

# Temporary directories of runs that were killed: we hold the lock, so none is in use.
rm -rf "$GUEST_CACHE"/.tmp.*
work=$(mktemp -d "$GUEST_CACHE/.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "building $key"

# --- The test kernel ---------------------------------------------------------------------

# Every `CONFIG_X=v` line of the fragment must be in the final .config exactly, and every
# `# CONFIG_X is not set` line must not be set there: olddefconfig silently drops options
# whose dependencies are missing, and that must not go unnoticed.
check_kernel_config() {
    local fragment=$1 config=$2 line bad=0
    while IFS= read -r line; do
        if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=.*$ ]]; then
            if ! grep -qxF -- "$line" "$config"; then
                log "config: wanted '$line', got '$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$config" || echo unset)'"
                bad=1
            fi
        elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            if grep -qE "^${BASH_REMATCH[1]}=" "$config"; then
                log "config: wanted ${BASH_REMATCH[1]} off, got '$(grep -E "^${BASH_REMATCH[1]}=" "$config")'"
                bad=1
            fi
        fi
    done <"$fragment"
    ((bad == 0)) || die "the test kernel's .config does not honour $fragment (see above)"
}

build_test_kernel() {
    local dest="$GUEST_CACHE/kernel/$kernel_id"
    if [[ -f $dest/vmlinux && -f $dest/bzImage ]]; then
        log "test kernel $kernel_id: cached"
        return
    fi
    local kwork="$work/kernel"
    local src="$kwork/linux-source-6.1" obj="$kwork/build" klog="$work/kernel-build.log"
    mkdir -p "$kwork" "$obj"
    log "test kernel $kernel_id: unpacking $KERNEL_SOURCE_TARBALL"
    tar -xf "$KERNEL_SOURCE_TARBALL" -C "$kwork"
    [[ -d $src ]] || die "$KERNEL_SOURCE_TARBALL did not unpack to linux-source-6.1/"

    # A build that does not depend on who built it, where, or when.
    export KBUILD_BUILD_USER=outpost KBUILD_BUILD_HOST=outpost
    export KBUILD_BUILD_TIMESTAMP="Debian $kernel_source_version"

    log "test kernel: tinyconfig + $KERNEL_FRAGMENT"
    {
        make -C "$src" O="$obj" tinyconfig
        "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$KERNEL_FRAGMENT"
        make -C "$src" O="$obj" olddefconfig
    } >"$klog" 2>&1 || {
        tail -n 30 "$klog" >&2
        die "configuring the test kernel failed"
    }
    check_kernel_config "$KERNEL_FRAGMENT" "$obj/.config"

    log "test kernel: make -j$JOBS vmlinux bzImage (a few minutes; log in $klog)"
    local started=$SECONDS
    if ! make -C "$src" O="$obj" -j"$JOBS" vmlinux bzImage >>"$klog" 2>&1; then
        tail -n 40 "$klog" >&2
        die "building the test kernel failed"
    fi
    log "test kernel: built in $((SECONDS - started)) s"

    local staged="$kwork/out"
    mkdir -p "$staged" "$GUEST_CACHE/kernel"
    cp "$obj/vmlinux" "$staged/vmlinux"
    cp "$obj/arch/x86/boot/bzImage" "$staged/bzImage"
    cp "$obj/.config" "$staged/config"
    rm -rf "$dest"
    mv -T "$staged" "$dest"
    rm -rf "$kwork"
}

# --- The Debian cloud kernel -------------------------------------------------------------

debian_root="$work/debian-root"
fetch_debian_kernel() {
    local debs="$GUEST_CACHE/debian"
    local deb
    deb="$debs/$(sanitize "${debian_kernel_pkg}_${debian_kernel_version}").deb"
    if [[ ! -f $deb ]]; then
        log "downloading $debian_kernel_pkg=$debian_kernel_version"
        mkdir -p "$debs" "$work/download"
        # apt warns that it downloads unsandboxed as root into a directory _apt cannot
        # write; that is expected here.
        (cd "$work/download" && apt-get download -q "$debian_kernel_pkg=$debian_kernel_version") >"$work/download.log" 2>&1 || {
            cat "$work/download.log" >&2
            die "apt-get download $debian_kernel_pkg=$debian_kernel_version failed"
        }
        local got=("$work/download"/*.deb)
        [[ ${#got[@]} -eq 1 && -f ${got[0]} ]] || die "apt-get download produced no single .deb"
        mv "${got[0]}" "$deb.new"
        mv "$deb.new" "$deb"
    fi
    dpkg -x "$deb" "$debian_root"
}

# --- Root file systems ---------------------------------------------------------------------

# The skeleton every image shares: busybox, init, mount points, the udhcpc hook.
populate_common() {
    local root=$1
    mkdir -p "$root"/{bin,sbin,dev,etc/outpost,proc,sys,tmp,run,root,usr/share/udhcpc}
    mkdir -p "$root"/mnt/vd{a,b,c,d,e,f,g,h}
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    install -m 0755 /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    install -m 0755 "$INIT_SCRIPT" "$root/init"
    install -m 0755 "$UDHCPC_SCRIPT" "$root/usr/share/udhcpc/default.script"
    ln -s /run/resolv.conf "$root/etc/resolv.conf"
    # The kernel opens /dev/console for init before anything is mounted (the Debian kernel
    # does not mount devtmpfs by itself).
    mknod -m 0600 "$root/dev/console" c 5 1
}

# newc cpio, uncompressed, every entry owned by root.
make_cpio() {
    local root=$1 archive=$2
    # Fixed mtimes and sorted names: the same inputs give the same bytes.
    find "$root" -exec touch -h -d @0 {} +
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) >"$archive"
}

build_test_initrd() {
    local root="$work/test-initrd"
    populate_common "$root"
    make_cpio "$root" "$staged_assets/test-initrd.cpio"
}

build_debian_initrd() {
    local root="$work/debian-initrd"
    populate_common "$root"

    local kver
    kver=$(cd "$debian_root/lib/modules" && ls)
    [[ -n $kver && $kver != *$'\n'* ]] || die "expected one kernel release under $debian_root/lib/modules, found '$kver'"
    [[ -f $debian_root/boot/vmlinuz-$kver ]] || die "no /boot/vmlinuz-$kver in $debian_kernel_pkg"
    cp "$debian_root/boot/vmlinuz-$kver" "$staged_assets/debian-vmlinuz"
    echo "$kver" >"$staged_assets/debian-kernel-version"

    # The package ships no modules.dep (its postinst runs depmod); make it, then let modprobe
    # read it and list each module after the ones it needs.
    depmod -b "$debian_root" "$kver"
    local mod deps line path rel name
    local -a order=()
    local -A seen=()
    for mod in "${DEBIAN_MODULES[@]}"; do
        deps=$(modprobe -d "$debian_root" -S "$kver" --show-depends "$mod") ||
            die "module $mod not found in $debian_kernel_pkg"
        while read -r line; do
            case $line in
                builtin\ *) continue ;;
                insmod\ *) path=$(awk '{ print $2 }' <<<"$line") ;;
                *) die "unexpected modprobe output for $mod: $line" ;;
            esac
            [[ -n ${seen[$path]:-} ]] && continue
            seen[$path]=1
            order+=("$path")
        done <<<"$deps"
    done

    local list="$root/etc/outpost/modules"
    : >"$list"
    for path in "${order[@]}"; do
        rel=${path#"$debian_root"}
        name=$(basename "$rel")
        name=${name%%.ko*}
        mkdir -p "$root$(dirname "$rel")"
        # insmod needs plain ELF objects: unpack compressed modules here, not in the guest.
        case $rel in
            *.ko) cp "$path" "$root$rel" ;;
            *.ko.xz) xz -dc "$path" >"$root${rel%.xz}" ;;
            *.ko.zst) zstd -q -dc "$path" >"$root${rel%.zst}" ;;
            *.ko.gz) gzip -dc "$path" >"$root${rel%.gz}" ;;
            *) die "unknown module format: $rel" ;;
        esac
        echo "$name ${rel%.ko*}.ko" >>"$list"
    done
    log "debian initrd: modules in load order: $(awk '{ print $1 }' "$list" | tr '\n' ' ')"
    make_cpio "$root" "$staged_assets/debian-initrd.cpio"
}

build_rootfs() {
    local root="$work/rootfs"
    populate_common "$root"
    mkdir -p "$root/usr/bin" "$root/usr/sbin"
    # What `busybox --install -s` would do in the guest, done here so that booting costs
    # nothing: a symlink per applet. Our init replaces busybox's own.
    local applet
    while read -r applet; do
        case $applet in
            bin/busybox | bin/sh | sbin/init | linuxrc) continue ;;
        esac
        [[ -e $root/$applet || -L $root/$applet ]] && continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -s /bin/busybox "$root/$applet"
    done < <(/bin/busybox --list-full)
    install -m 0755 "$INIT_SCRIPT" "$root/sbin/init"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
    echo outpost-guest >"$root/etc/hostname"

    # No journal and no metadata checksums: both cost guest kernel instructions (crc32c in
    # software) on every metadata write. Inode tables are zeroed here so that the guest
    # kernel starts no lazy-init thread.
    truncate -s "$ROOTFS_SIZE" "$staged_assets/rootfs.ext4"
    mkfs.ext4 -q -F -L outpost-root -m 0 -b 4096 \
        -O ^has_journal,^metadata_csum \
        -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 \
        -d "$root" "$staged_assets/rootfs.ext4" >&2
}

# --- Checks on the results -----------------------------------------------------------------

verify_assets() {
    local d=$1
    file -b "$d/test-vmlinux" | grep -q '^ELF 64-bit LSB executable, x86-64' ||
        die "test-vmlinux is not an x86-64 ELF executable: $(file -b "$d/test-vmlinux")"
    # XEN_ELFNOTE_PHYS32_ENTRY is note type 18 (0x12) in the "Xen" namespace: the PVH entry.
    readelf -n "$d/test-vmlinux" | grep -Eq '^\s*Xen\s+0x[0-9a-f]+\s+.*(0x00000012|PHYS32_ENTRY)' ||
        die "test-vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note (PVH entry)"
    file -b "$d/test-bzImage" | grep -q 'Linux kernel x86 boot executable bzImage' ||
        die "test-bzImage is not a bzImage: $(file -b "$d/test-bzImage")"
    file -b "$d/debian-vmlinuz" | grep -q 'Linux kernel x86 boot executable bzImage' ||
        die "debian-vmlinuz is not a bzImage: $(file -b "$d/debian-vmlinuz")"
    local cpio
    for cpio in test-initrd.cpio debian-initrd.cpio; do
        cpio --quiet -t <"$d/$cpio" | grep -qx 'init' || die "$cpio has no /init"
        cpio --quiet -t <"$d/$cpio" | grep -qx 'bin/busybox' || die "$cpio has no /bin/busybox"
    done
    cpio --quiet -t <"$d/debian-initrd.cpio" | grep -q 'virtio_mmio\.ko$' ||
        die "debian-initrd.cpio has no virtio_mmio.ko"
    local f
    for f in sbin/init init bin/busybox bin/sh dev/console; do
        debugfs -R "stat /$f" "$d/rootfs.ext4" 2>/dev/null | grep -q '^Inode:' ||
            die "rootfs.ext4 has no /$f"
    done
    e2fsck -fn "$d/rootfs.ext4" >/dev/null 2>&1 || die "rootfs.ext4 does not pass e2fsck"
}

# --- Assembly ------------------------------------------------------------------------------

build_test_kernel
fetch_debian_kernel

staged_assets="$work/assets"
mkdir -p "$staged_assets"
cp "$GUEST_CACHE/kernel/$kernel_id/vmlinux" "$staged_assets/test-vmlinux"
cp "$GUEST_CACHE/kernel/$kernel_id/bzImage" "$staged_assets/test-bzImage"
cp "$GUEST_CACHE/kernel/$kernel_id/config" "$staged_assets/test-kernel.config"
install -m 0755 /bin/busybox "$staged_assets/busybox"
install -m 0755 "$INIT_SCRIPT" "$staged_assets/init"
install -m 0755 "$UDHCPC_SCRIPT" "$staged_assets/udhcpc.script"
build_test_initrd
build_debian_initrd
build_rootfs
verify_assets "$staged_assets"

cat >"$staged_assets/manifest" <<EOF
key=$key
test_kernel_source=$KERNEL_SOURCE_PKG $kernel_source_version
test_kernel_id=$kernel_id
gcc=$gcc_version
debian_kernel_package=$debian_kernel_pkg $debian_kernel_version
debian_kernel_release=$(cat "$staged_assets/debian-kernel-version")
busybox=busybox-static $busybox_version
EOF

rm -rf "$out_dir"
mv -T "$staged_assets" "$out_dir"
log "assets ready in $out_dir"
point_current_and_print

# --- Pruning -------------------------------------------------------------------------------

# Keep the newest KEEP_ENTRIES asset sets (tests of an older checkout may still use one),
# the kernels those were made from, and the Debian package of the current one.
KEEP_ENTRIES=3
prune_cache() {
    local entry id deb
    local -A keep_kernels=()
    local -a entries
    # Our own entry names (sanitized keys): ls -t is the plain way to order them by use.
    # shellcheck disable=SC2012
    mapfile -t entries < <(cd "$GUEST_CACHE" && ls -1dt linux-*/ 2>/dev/null | sed 's:/$::')
    for entry in "${entries[@]:$KEEP_ENTRIES}"; do
        [[ $entry == "$key" ]] && continue
        log "pruning old asset set $entry"
        rm -rf "${GUEST_CACHE:?}/$entry"
    done
    for entry in "$GUEST_CACHE"/linux-*/manifest; do
        [[ -f $entry ]] || continue
        id=$(awk -F= '$1 == "test_kernel_id" { print $2 }' "$entry")
        [[ -n $id ]] && keep_kernels[$id]=1
    done
    for entry in "$GUEST_CACHE"/kernel/*/; do
        id=$(basename "$entry")
        [[ -n ${keep_kernels[$id]:-} ]] || {
            log "pruning old test kernel $id"
            rm -rf "${GUEST_CACHE:?}/kernel/$id"
        }
    done
    for deb in "$GUEST_CACHE"/debian/*.deb; do
        [[ -f $deb && $(basename "$deb") != "$(sanitize "${debian_kernel_pkg}_${debian_kernel_version}").deb" ]] || continue
        log "pruning old Debian kernel package $(basename "$deb")"
        rm -f "$deb"
    done
}
prune_cache
