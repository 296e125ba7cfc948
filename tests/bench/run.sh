#!/bin/sh
# Run every benchmark binary in $BUILD/bench (bench_bus, bench_kit, bench_authz, ...)
# and every benchmark script tests/bench/bench_*.py (bench_telemetry_browser:
# a real browser), print their output, and exit non-zero if any of them
# fails or none exists.
# Extra arguments (e.g. --quick) are passed to every benchmark.
BUILD=${BUILD:-build}
ran=0
failed=""
one () {
    name=$1; shift
    echo "== $name"
    "$@"
    rc=$?
    ran=$((ran + 1))
    if [ "$rc" -ne 0 ]; then
        echo "== $name FAILED (exit $rc)"
        failed="$failed $name"
    fi
}
for bin in "$BUILD"/bench/bench_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    one "$(basename "$bin")" "$bin" "$@"
done
for script in "$(dirname "$0")"/bench_*.py; do
    [ -f "$script" ] || continue
    one "$(basename "$script" .py)" env BUILD="$BUILD" /usr/bin/python3 "$script" "$@"
done
if [ "$ran" -eq 0 ]; then
    echo "no benchmarks found in $BUILD/bench (build them with make bench)"
    exit 1
fi
if [ -n "$failed" ]; then
    echo "benchmarks: $ran run, failed:$failed"
    exit 1
fi
echo "benchmarks: $ran run, all completed"
