#!/usr/bin/env bash
# A site of three boxes on this one machine (as root), driven with the stock `openstack`
# client: installs what is needed (Debian packages with etcd, the guest assets, the client's
# venv), builds, then runs the site demo (tests/src/bin/site-demo.rs on the rig of
# tests/src/rig.rs): each box a network namespace on one underlay bridge with its own etcd
# member and outpostd; an image uploaded through box 1; through box 2 a network and three
# guests in an anti-affinity group, one per box; `openstack hypervisor list`; each guest's
# DHCP lease and its pings to the guests on the other boxes over VXLAN. Everything is deleted
# and the rig torn down at the end, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
guest/build-assets.sh >/dev/null
OUTPOST_OPENSTACK_VENV=$(scripts/openstack-venv.sh)
export OUTPOST_OPENSTACK_VENV
cargo build --release -p outpost-vmm -p outpost-control -p outpost-tests --bins
exec "${CARGO_TARGET_DIR:-target}/release/site-demo"
