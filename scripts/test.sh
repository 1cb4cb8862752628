#!/usr/bin/env bash
# Runs all of Outpost's tests on a fresh machine: installs the Debian packages it needs,
# prepares the guest assets and the OpenStack client's Python venv (cached outside the work
# tree, keyed by version), builds, and
# runs the unit tests and the end-to-end tests that boot real guests on /dev/kvm.
# OUTPOST_SLOW_TESTS=1 adds the stock Debian kernel's boot (about ten minutes on PVM), the
# fuzz targets and Tempest's API tests (scripts/tempest.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Which CPU this run is on: the PVM instruction emulator follows the host vendor's rules
# (vmm/src/pvm/vendor.rs) and its tests compare against the host's own instructions.
cpu_field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'; }
cpu_flags=" $(cpu_field flags) "
kvm_kind=hardware
[ -d /sys/module/kvm_pvm ] && kvm_kind=PVM
echo "test.sh: host CPU $(cpu_field vendor_id) family $(cpu_field 'cpu family') model $(cpu_field model): $(cpu_field 'model name');" \
    "x87/XSAVE-relevant flags:$(for f in xsave xsaveopt xsavec xsaves xsaveerptr avx avx512f popcnt abm bmi1 movbe rdtscp rdpid; do
        case "$cpu_flags" in *" $f "*) printf ' %s' "$f" ;; *) printf ' -%s' "$f" ;; esac
    done); /dev/kvm: $kvm_kind"

# The disk the build and the tests' state directories use: thick volumes and guests' disks
# are real files, and a full disk fails tests in ways that look like bugs.
echo "test.sh: free space: $(df -h --output=avail . | tail -1 | tr -d ' ') here," \
    "$(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ') in ${TMPDIR:-/tmp}"
# One build, never rebuilt piecemeal: incremental state would double the target directory.
export CARGO_INCREMENTAL=0

scripts/install-deps.sh
# The test runner, cargo-nextest (.config/nextest.toml): built into cargo's own bin directory,
# outside the work tree, where the machine does not have it yet.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest --version 0.9.143
fi
guest/build-assets.sh >/dev/null
# The stock OpenStack client and SDK the end-to-end tests drive (cached, keyed by version).
OUTPOST_OPENSTACK_VENV=$(scripts/openstack-venv.sh)
export OUTPOST_OPENSTACK_VENV
# The rules the code keeps (STYLE.md): formatting and every lint, warnings as errors.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
# The documentation's examples, then every test in a process of its own, two at a time on a
# 2-core machine (.config/nextest.toml says which run alone or first); the fuzz targets'
# tests replay every input in fuzz/corpus/ through their target, uninstrumented.
cargo test --workspace --doc
cargo nextest run --workspace
if [ "${OUTPOST_SLOW_TESTS:-0}" = 1 ]; then
    # Every fuzz target, instrumented, for 10 s each from the corpus: a crash, a hang or a
    # runaway allocation fails the run (scripts/fuzz.sh alone runs them for 10^7 executions).
    # In the slow suite because its first, optimised and instrumented build of the whole
    # dependency tree takes about ten minutes on a 2-core machine.
    scripts/fuzz.sh --seconds 10
    # The stock Debian kernel and the 8-vCPU/16-GiB guest: minutes each on a PVM host.
    cargo nextest run --workspace --run-ignored only
    # Tempest, OpenStack's own suite, on the API tests of the five services against a real
    # outpostd (control/README.md, "Tempest"): its servers tests boot guests one at a time.
    scripts/tempest.sh
fi
