#!/usr/bin/env bash
# Builds the Python venv with the stock OpenStack client and SDK (pinned in
# control/tests/openstack-requirements.txt) that the end-to-end tests and bench/ drive, in a
# cache outside the work tree, keyed by the requirements and the Python version:
#
#   ${OUTPOST_CACHE_DIR:-/var/cache/outpost}/openstack-venv/<key>/    the venv
#   ${OUTPOST_CACHE_DIR:-/var/cache/outpost}/openstack-venv/current -> <key>
#
# Prints the venv directory on stdout (everything else goes to stderr). Idempotent: when the
# venv for the current key exists, it only re-points `current` and prints it. Uses Debian's
# python3 (python3-venv, scripts/install-deps.sh); PyPI must be reachable for the first build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS="$REPO/control/tests/openstack-requirements.txt"
CACHE="${OUTPOST_CACHE_DIR:-/var/cache/outpost}/openstack-venv"
PYTHON=${OUTPOST_PYTHON:-/usr/bin/python3}

log() { echo "openstack-venv: $*" >&2; }

py_version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
req_hash=$(sha256sum "$REQUIREMENTS" | cut -c1-16)
key="py${py_version}-${req_hash}"
venv="$CACHE/$key"

# A venv's scripts name its own path, so it cannot be built elsewhere and renamed: it is built
# in place, and a `.complete` file written last marks it usable; a directory without it is
# the remains of an interrupted run and is built again.
mkdir -p "$CACHE"
# One builder at a time (two test runs starting together would build over each other).
exec 9>"$CACHE/.lock"
flock 9
if [ ! -e "$venv/.complete" ]; then
    log "building $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
        --requirement "$REQUIREMENTS" >&2
    "$venv/bin/openstack" --version >&2
    "$venv/bin/python" -c 'import openstack' >&2
    cp "$REQUIREMENTS" "$venv/.complete"
fi

ln -sfn "$key" "$CACHE/current.tmp"
mv -T "$CACHE/current.tmp" "$CACHE/current"
echo "$venv"
