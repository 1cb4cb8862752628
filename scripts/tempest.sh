#!/usr/bin/env bash
# Runs Tempest, OpenStack's own integration suite, against outpostd: the API tests of
# identity v3, compute, image v2, volume and network, with pre-provisioned accounts, and
# prints passed/failed/skipped per service (exit 1 when a test failed).
#
#   scripts/tempest.sh [REGEX]
#
# Without OUTPOST_TEMPEST_URL it starts its own outpostd (the workspace's debug build, as the
# control tests do: `cargo build --workspace --bins` first) on a free port with a temporary
# state directory, guests booted by outpost-vmm from the guest assets (guest/build-assets.sh).
# With OUTPOST_TEMPEST_URL=http://host:port and OUTPOST_ADMIN_PASSWORD it uses that outpostd.
# REGEX replaces the default selection (DEFAULT_TESTS below);
# OUTPOST_TEMPEST_CONCURRENCY sets Tempest's workers (default 1: guests boot slowly here).
#
# Tempest is installed from PyPI (scripts/tempest/requirements.txt, pinned) into a venv cached
# outside the work tree, keyed by the requirements' hash and the Python version, as
# scripts/openstack-venv.sh does:
#   ${OUTPOST_CACHE_DIR:-/var/cache/outpost}/tempest-venv/<key>/
# outpostd's log and Tempest's workspace (tempest/: etc/tempest.conf, etc/accounts.yaml,
# logs/, and results.subunit beside it) are kept in ${OUTPOST_TEMPEST_DIR:-a temporary
# directory}, named on stderr at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS="$REPO/scripts/tempest/requirements.txt"
CACHE="${OUTPOST_CACHE_DIR:-/var/cache/outpost}/tempest-venv"
PYTHON=${OUTPOST_PYTHON:-/usr/bin/python3}
ASSETS=${OUTPOST_GUEST_ASSETS:-/var/cache/outpost/guest/current}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug
# The API tests of the five services outpostd speaks, for the resources it serves:
# identity v3 (tokens, catalog, projects, users as Keystone's non-admin API), compute
# (flavors, key pairs, limits, quotas, server groups, servers: create, list, show, update,
# delete, actions, addresses, the negative tests), image v2 (all), volume (volumes,
# snapshots, extend, limits, quotas) and network (networks, subnets, ports, security groups,
# extensions, quotas). Suites of what is not served at all (server metadata and tags,
# rescue, instance actions, Keystone's admin API, routers, floating IPs, backups...) are
# not run; inside the suites run, tempest.conf switches off what is not served, as a
# deployer would (control/README.md, "Tempest", lists both).
DEFAULT_TESTS='^tempest\.api\.('
DEFAULT_TESTS+='identity\.v3\.'
DEFAULT_TESTS+='|compute\.(flavors|keypairs|limits|test_quotas|test_versions'
DEFAULT_TESTS+='|admin\.(test_flavors|test_keypairs_v210|test_quotas)'
DEFAULT_TESTS+='|servers\.(test_create_server\.|test_servers\.|test_servers_negative'
DEFAULT_TESTS+='|test_list_server_filters|test_list_servers_negative|test_delete_server'
DEFAULT_TESTS+='|test_server_group|test_server_actions|test_server_addresses))'
DEFAULT_TESTS+='|image\.v2\.'
DEFAULT_TESTS+='|volume\.(test_volumes_get|test_volumes_list|test_volumes_negative'
DEFAULT_TESTS+='|test_volumes_extend|test_volumes_snapshots|test_volume_absolute_limits'
DEFAULT_TESTS+='|test_versions|admin\.test_volume_quotas)'
DEFAULT_TESTS+='|network\.(test_networks|test_ports|test_security_groups|test_extensions'
DEFAULT_TESTS+='|test_versions|admin\.test_quotas))'
TESTS=${1:-$DEFAULT_TESTS}
# Tests inside those suites of a feature outpostd does not serve that no tempest.conf
# option switches off, each with its reason (scripts/tempest/exclude.txt).
EXCLUDE="$REPO/scripts/tempest/exclude.txt"

log() { echo "tempest.sh: $*" >&2; }

# The venv, built in place (a venv's scripts name its own path) and marked usable last.
py_version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
key="py${py_version}-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
venv="$CACHE/$key"
mkdir -p "$CACHE"
(
    flock 9
    if [ ! -e "$venv/.complete" ]; then
        log "building $venv"
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
            --requirement "$REQUIREMENTS" >&2
        "$venv/bin/tempest" --version >&2
        cp "$REQUIREMENTS" "$venv/.complete"
    fi
) 9>"$CACHE/.lock"

work=${OUTPOST_TEMPEST_DIR:-$(mktemp -d -t outpost-tempest.XXXXXX)}
mkdir -p "$work"
state=""
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    if [ -n "$state" ]; then
        # Monitors outlive outpostd by design: end the ones this run's outpostd started.
        for pid in $(pgrep -f -- "$state" || true); do kill -KILL "$pid" 2>/dev/null || true; done
        rm -rf "$state"
    fi
    log "workspace kept in $work"
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap too, so outpostd and its monitors never outlive it.
trap 'exit 130' INT TERM

url=${OUTPOST_TEMPEST_URL:-}
if [ -z "$url" ]; then
    [ -x "$TARGET/outpostd" ] && [ -x "$TARGET/outpost-vmm" ] ||
        { log "$TARGET/outpostd or outpost-vmm missing: run cargo build --workspace --bins"; exit 1; }
    [ -f "$ASSETS/rootfs.ext4" ] || { log "$ASSETS missing: run guest/build-assets.sh"; exit 1; }
    state=$(mktemp -d -t outpost-tempest-state.XXXXXX)
    port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url="http://127.0.0.1:$port"
    OUTPOST_ADMIN_PASSWORD=${OUTPOST_ADMIN_PASSWORD:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')}
    export OUTPOST_ADMIN_PASSWORD
    # The API tests need no host networking: this outpostd leaves the host's bridges, taps
    # and nftables alone (as the control tests' daemons do), so it disturbs nobody's.
    printf '[compute]\nmonitor = "%s"\nstop_timeout_secs = 10\n[network]\nmanage_host = false\n' \
        "$TARGET/outpost-vmm" >"$state/outpostd.toml"
    "$TARGET/outpostd" --state-dir "$state" --listen "127.0.0.1:$port" \
        --config "$state/outpostd.toml" 2>"$work/outpostd.log" &
    daemon=$!
    for _ in $(seq 100); do
        curl -sf "$url/identity/v3" >/dev/null && break
        kill -0 "$daemon" 2>/dev/null || { log "outpostd exited: see $work/outpostd.log"; exit 1; }
        sleep 0.1
    done
    log "outpostd $url, state $state, log $work/outpostd.log"
fi
: "${OUTPOST_ADMIN_PASSWORD:?the admin password of the outpostd at OUTPOST_TEMPEST_URL}"

# Tempest's workspace (where `tempest run` must be started), beside outpostd's log.
[ -e "$work/tempest/.stestr.conf" ] ||
    "$venv/bin/tempest" init --name "outpost-$(basename "$work")-$$" "$work/tempest" >&2
cd "$work/tempest"
"$venv/bin/python" "$REPO/scripts/tempest/outpost_tempest.py" setup \
    "$url" "$OUTPOST_ADMIN_PASSWORD" "$work/tempest" "$ASSETS" >&2
status=0
"$venv/bin/tempest" run --config-file "$work/tempest/etc/tempest.conf" --regex "$TESTS" \
    --exclude-list "$EXCLUDE" \
    --concurrency "${OUTPOST_TEMPEST_CONCURRENCY:-1}" --subunit >"$work/results.subunit" || status=$?
"$venv/bin/python" "$REPO/scripts/tempest/outpost_tempest.py" summary "$work/results.subunit" ||
    status=1
exit "$status"
