#!/usr/bin/env bash
# The main job on a fresh machine: installs what is needed, prepares the guest assets,
# builds the monitor and boots the demo guest (the project's test kernel and a busybox root
# disk), showing its console until it powers off.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
assets=$(guest/build-assets.sh | tail -n 1)
cargo build --release -p outpost-vmm
work=$(mktemp -d /tmp/outpost-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$assets/rootfs.ext4" "$work/rootfs.ext4"
cat > "$work/vm.json" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$assets/test-vmlinux",
    "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"
  },
  "machine-config": { "vcpu_count": 1, "mem_size_mib": 128 },
  "drives": [
    { "drive_id": "rootfs", "path_on_host": "$work/rootfs.ext4", "is_root_device": true, "is_read_only": false }
  ]
}
JSON
echo "Booting the demo guest (guest kernel code is emulated on this host's PVM KVM: about a minute)..."
target/release/outpost-vmm --no-api --log-level Info --config-file "$work/vm.json"
echo "outpost-vmm exited with status $?"
