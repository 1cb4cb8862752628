#!/usr/bin/env bash
# The main job on a fresh machine: installs what is needed, prepares the guest assets,
# builds, starts outpostd with its embedded defaults (SQLite, state in a directory it
# creates), registers the test guest's root disk as an image and a small flavor, boots a demo
# server (one outpost-vmm) and prints its console. OUTPOST_DEMO_KEEP=1 leaves the daemon and
# the server running and says how to reach them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
assets=$(guest/build-assets.sh | tail -n 1)
cargo build --release -p outpost-vmm -p outpost-control
bin=$PWD/target/release
state=$(mktemp -d /tmp/outpost-demo.XXXXXX)
export OUTPOST_SOCKET=$state/outpostd.sock
port=${OUTPOST_DEMO_PORT:-8774}

"$bin/outpostd" --state-dir "$state" --listen "127.0.0.1:$port" >"$state/outpostd.log" 2>&1 &
daemon=$!
cleanup() {
    if [ "${OUTPOST_DEMO_KEEP:-0}" != 1 ]; then
        # Guests outlive outpostd by design: delete the server and wait until it is gone
        # before stopping the daemon.
        if "$bin/outpost" server delete demo >/dev/null 2>&1; then
            for _ in $(seq 100); do
                "$bin/outpost" server show demo >/dev/null 2>&1 || break
                sleep 0.2
            done
        fi
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
        rm -rf "$state"
    fi
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$OUTPOST_SOCKET" ] && break; sleep 0.1; done
[ -S "$OUTPOST_SOCKET" ] || { cat "$state/outpostd.log"; exit 1; }
echo "outpostd is up: socket $OUTPOST_SOCKET, OpenStack APIs on http://127.0.0.1:$port"

"$bin/outpost" flavor create m1.demo --vcpus 1 --ram 128 --disk 1
image=$("$bin/outpost" -f json image create demo-guest --file "$assets/rootfs.ext4" --disk-format raw |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "image demo-guest: $image"
echo "Booting the demo server (guest kernel code is emulated on a PVM host: about a minute)..."
"$bin/outpost" server create demo --flavor m1.demo --image "$image" --wait
for _ in $(seq 300); do
    "$bin/outpost" server console demo 2>/dev/null | grep -q OUTPOST-INIT-OK && break
    sleep 1
done
"$bin/outpost" server console demo
"$bin/outpost" server list
if [ "${OUTPOST_DEMO_KEEP:-0}" = 1 ]; then
    echo "Left running. export OUTPOST_SOCKET=$OUTPOST_SOCKET; admin password in $state/admin-password"
fi
