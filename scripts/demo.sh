#!/usr/bin/env bash
# The main job on a fresh machine (as root): installs what is needed, prepares the guest
# assets, builds, starts outpostd with its embedded defaults (SQLite, state in a directory it
# creates, the host's networking managed), and with the `outpost` CLI: creates network
# demo-net with a subnet, registers the test guest's root disk as an image (with a check
# script that takes an address by DHCP and pings the gateway), a small flavor, boots a demo
# server (one outpost-vmm) on demo-net, waits for the guest to report its network, prints its
# console and the server list. On exit it deletes the server, then the subnet and network
# (so no bridge, dnsmasq or nftables table of ours is left), then stops outpostd.
# OUTPOST_DEMO_KEEP=1 leaves the daemon, the network and the server running and says how to
# reach them. OUTPOST_DEMO_CIDR picks another subnet (default 10.99.0.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
assets=$(guest/build-assets.sh | tail -n 1)
cargo build --release -p outpost-vmm -p outpost-control
bin=$PWD/target/release
state=$(mktemp -d /tmp/outpost-demo.XXXXXX)
export OUTPOST_SOCKET=$state/outpostd.sock
port=${OUTPOST_DEMO_PORT:-8774}
cidr=${OUTPOST_DEMO_CIDR:-10.99.0.0/24}
outpost() { "$bin/outpost" "$@"; }

# The guest's part (guest/init runs /etc/outpost/checks.sh after OUTPOST-INIT-OK): eth0 from
# the network's DHCP server (dnsmasq on the host), the address it got, a ping of the gateway
# the lease named, and one line saying how it went, which the demo waits for.
cat >"$state/checks.sh" <<'EOF'
#!/bin/sh
if ! udhcpc -i eth0 -q -n -O mtu -t 10 -T 3 -s /usr/share/udhcpc/default.script >/tmp/dhcp 2>&1; then
    cat /tmp/dhcp
    echo "OUTPOST-DEMO-NET-FAILED no DHCP lease on eth0"
    exit 1
fi
ip -4 addr show eth0
ip -4 route
me=
for word in $(ip -4 -o addr show dev eth0); do
    case $word in */*) me=${word%/*}; break ;; esac
done
# "default via GATEWAY dev eth0"
set -- $(ip -4 route show default)
gw=$3
if ping -c 3 -W 3 "$gw"; then
    echo "OUTPOST-DEMO-NET-OK $me (gateway $gw answered)"
else
    echo "OUTPOST-DEMO-NET-FAILED $me: the gateway $gw did not answer"
    exit 1
fi
EOF
# The demo image: the guest's root file system, copied, with that script written in.
cp "$assets/rootfs.ext4" "$state/demo-rootfs.ext4"
printf 'cd /etc/outpost\nrm checks.sh\nwrite %s checks.sh\n' "$state/checks.sh" >"$state/debugfs.cmd"
debugfs -w -f "$state/debugfs.cmd" "$state/demo-rootfs.ext4" >/dev/null 2>&1
debugfs -R "cat /etc/outpost/checks.sh" "$state/demo-rootfs.ext4" 2>/dev/null |
    grep -q OUTPOST-DEMO-NET-OK || { echo "demo: could not write checks.sh into the image" >&2; exit 1; }

"$bin/outpostd" --state-dir "$state" --listen "127.0.0.1:$port" >"$state/outpostd.log" 2>&1 &
daemon=$!
cleanup() {
    if [ "${OUTPOST_DEMO_KEEP:-0}" != 1 ]; then
        # Guests outlive outpostd by design, and so does the host's networking (adopted at
        # the next start): delete the server, then the network, and wait for the host agent
        # to take down the bridge, dnsmasq and nftables tables before stopping the daemon.
        outpost server delete demo --wait >/dev/null 2>&1 || true
        outpost subnet delete demo-subnet >/dev/null 2>&1 || true
        if net=$(outpost -f json network show demo-net 2>/dev/null |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'); then
            outpost network delete "$net" >/dev/null 2>&1 || true
            bridge=opb$(printf %s "$net" | tr -d - | cut -c1-12)
            for _ in $(seq 100); do
                ip link show "$bridge" >/dev/null 2>&1 || break
                sleep 0.1
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

outpost network create demo-net
outpost subnet create demo-subnet --network demo-net --subnet-range "$cidr"
outpost flavor create m1.demo --vcpus 1 --ram 128 --disk 1
image=$(outpost -f json image create demo-guest --file "$state/demo-rootfs.ext4" --disk-format raw |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "image demo-guest: $image"
echo "Booting the demo server on demo-net (guest kernel code is emulated on a PVM host: about a minute)..."
outpost server create demo --flavor m1.demo --image "$image" --network demo-net --wait
result=
for _ in $(seq 300); do
    result=$(outpost server console demo 2>/dev/null | grep -o 'OUTPOST-DEMO-NET-[A-Z]*' | head -n 1 || true)
    [ -n "$result" ] && break
    sleep 1
done
outpost server console demo
outpost server list
if [ "$result" != OUTPOST-DEMO-NET-OK ]; then
    echo "demo: the guest did not report its network (${result:-no report in 300 s}); outpostd's log:" >&2
    tail -n 30 "$state/outpostd.log" >&2
    exit 1
fi
echo "The demo server took its address from demo-net's DHCP and reached the gateway."
if [ "${OUTPOST_DEMO_KEEP:-0}" = 1 ]; then
    echo "Left running. export OUTPOST_SOCKET=$OUTPOST_SOCKET; admin password in $state/admin-password"
    echo "To clean up: $bin/outpost server delete demo --wait; $bin/outpost network delete demo-net;"
    echo "then kill $daemon (outpostd)."
fi
