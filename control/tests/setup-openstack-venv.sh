#!/bin/sh
# Creates the python venv with python-openstackclient that the end-to-end test
# `openstack_cli` (control/tests/openstack_cli.rs) drives. It lives outside the work
# tree, in a cache dir, so the repo stays clean; the test is skipped while it is absent.
#
#   control/tests/setup-openstack-venv.sh            # creates or updates the venv
#   OUTPOST_OPENSTACK_VENV=/path control/tests/...   # elsewhere
set -eu
venv="${OUTPOST_OPENSTACK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost/openstack-venv}"
mkdir -p "$(dirname "$venv")"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet python-openstackclient
"$venv/bin/openstack" --version
echo "openstack client ready in $venv"
