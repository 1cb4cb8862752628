#!/usr/bin/env bash
# Installs every Debian package that Outpost's builds and tests need on a fresh Debian 12 host.
# Idempotent: when all packages are already installed it returns without touching apt.
set -euo pipefail

PACKAGES=(
    # Guest assets: busybox for the guest userland, images and archives.
    busybox-static e2fsprogs cpio xz-utils zstd lz4 file binutils
    # Building the test kernel from Debian's own source tree.
    linux-source-6.1 build-essential make gcc bc flex bison libelf-dev libssl-dev perl kmod
    # Integration tests: host networking, DHCP for guests, disk images, Python helpers.
    iproute2 nftables dnsmasq-base iputils-ping qemu-utils python3 python3-venv
    # A site of several boxes: etcd (v3 API only, docs/cluster.md) and protoc for the etcd
    # client crate's generated gRPC code (with protobuf's well-known types).
    etcd-server etcd-client protobuf-compiler libprotobuf-dev
    # The rig talks to each box's outpostd over its unix socket with curl.
    curl
    # outpostd writes config drives (vfat labelled config-2) without mounting them.
    dosfstools mtools
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query exits non-zero for unknown packages; the status word is what matters.
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == installed ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's etcd-server enables a system member on 127.0.0.1:2379; Outpost starts its own
# members (one per box, configured for the site), so the packaged unit stays off.
if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >&2 || true
fi
