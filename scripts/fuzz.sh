#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) with coverage instrumentation and runs them on stable Rust:
# libFuzzer is linked through the libfuzzer-sys crate (its C++ built with the system's g++)
# and rustc instruments the code with LLVM's SanitizerCoverage (`-C passes=sancov-module`,
# all stable flags), so no nightly toolchain and no cargo-fuzz are needed.
#
#   scripts/fuzz.sh                       every target for 10^7 executions
#   scripts/fuzz.sh --runs 100000         every target for that many executions
#   scripts/fuzz.sh --seconds 12          every target for that long (what scripts/test.sh runs)
#   scripts/fuzz.sh --build-only
#   scripts/fuzz.sh virtio_block pvm_emulate   only these targets
#
# Each target starts from its corpus in fuzz/corpus/<target>/ and adds what it finds to a
# scratch copy (OUTPOST_FUZZ_KEEP=1 merges new inputs back into the repo's corpus). A crash
# stops the script with the input saved as fuzz/artifacts/<target>/crash-*; replay it with
# `<binary> <file>`, and once fixed, add it to the corpus so tests/corpus.rs keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
seconds=
build_only=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --build-only) build_only=1; shift ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, and puts the
# instrumented artifacts in their own directory beside the ordinary build's. The `fuzz`
# profile (root Cargo.toml) is a release build with debug assertions and overflow checks.
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="--cfg fuzzing -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=4 \
-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
-C llvm-args=-sanitizer-coverage-trace-compares -C llvm-args=-sanitizer-coverage-stack-depth"
cargo build -p outpost-fuzz --features libfuzzer --profile fuzz --target "$triple" \
    $(printf -- '--bin %s ' "${targets[@]}")
[ "$build_only" = 1 ] && exit 0

bin_dir="${CARGO_TARGET_DIR:-target}/$triple/fuzz"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    limit=(-runs="$runs")
    [ -n "$seconds" ] && limit=(-max_total_time="$seconds")
    echo "fuzz.sh: $t (${limit[*]})"
    # -timeout: one input may take at most 10 s (a hang is a crash too); -rss_limit_mb: the
    # monitor must not let a guest or tenant make it allocate without bound.
    if ! "$bin_dir/$t" "$scratch/$t" "fuzz/corpus/$t" "${limit[@]}" -timeout=10 \
        -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" 2>"$scratch/$t.log"; then
        tail -n 60 "$scratch/$t.log" >&2
        echo "fuzz.sh: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+.*DONE' \
        "$scratch/$t.log" | sed "s/^/fuzz.sh: $t: /"
    if [ "${OUTPOST_FUZZ_KEEP:-0}" = 1 ]; then
        "$bin_dir/$t" -merge=1 "fuzz/corpus/$t" "$scratch/$t" 2>/dev/null
    fi
done
