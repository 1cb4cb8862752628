#!/usr/bin/env bash
# Installs Outpost on a box, as root: the Debian packages it needs, release builds of
# outpostd, outpost and outpost-vmm in /usr/local/bin, a configuration in
# /etc/outpost/outpostd.toml (the embedded defaults; kept if present), state in
# /var/lib/outpost, and the systemd unit packaging/outpostd.service, enabled and started where
# systemd runs the machine. Idempotent: run it again to upgrade (outpostd restarts; guests
# keep running and are adopted).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
assets=$(guest/build-assets.sh | tail -n 1)
cargo build --release -p outpost-vmm -p outpost-control
install -m 0755 target/release/outpostd target/release/outpost target/release/outpost-vmm \
    /usr/local/bin/
install -d -m 0700 /var/lib/outpost
install -d -m 0755 /etc/outpost /usr/local/share/doc/outpost
install -m 0644 README.md /usr/local/share/doc/outpost/README.md
if [ ! -e /etc/outpost/outpostd.toml ]; then
    cat >/etc/outpost/outpostd.toml <<CONF
# outpostd's configuration: every setting has a default (control/README.md lists them).
[compute]
monitor = "/usr/local/bin/outpost-vmm"
[guest]
kernel = "$assets/test-vmlinux"
rootfs = "$assets/rootfs.ext4"
[network]
manage_host = true
CONF
fi
install -m 0644 packaging/outpostd.service /etc/systemd/system/outpostd.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable outpostd.service
    systemctl restart outpostd.service
    echo "install.sh: outpostd is running (systemctl status outpostd; its API socket is /var/lib/outpost/outpostd.sock)"
else
    echo "install.sh: systemd does not run this machine; start outpostd yourself:" \
        "/usr/local/bin/outpostd --config /etc/outpost/outpostd.toml --state-dir /var/lib/outpost"
fi
