#!/bin/sh
# Run every test: unit (cmocka), fuzz corpora replayed, integration (real
# processes). Each suite's own counts are added up; the last line printed is
# `N passed, N failed`. Exit status 1 if anything failed.
#
#   BUILD=build-san sh tests/run.sh          the same under sanitizers
#   SUITES="unit fuzz" sh tests/run.sh       a subset
#   SUITES=deploy sh tests/run.sh            the deployment run (make test-deploy)
BUILD=${BUILD:-build}
SUITES=${SUITES:-"unit fuzz integration"}
PY=/usr/bin/python3
total_pass=0
total_fail=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# count NAME FILE RC: read a suite's output for its counts
count () {
    name=$1; out=$2; rc=$3
    p=""; f=""
    line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    elif grep -q '^\[  PASSED  \]' "$out" || grep -q '^\[  FAILED  \]' "$out"; then
        p=$(grep '^\[  PASSED  \]' "$out" | sed -E 's/[^0-9]*([0-9]+).*/\1/' | awk '{s+=$1} END {print s+0}')
        f=$(grep '^\[  FAILED  \] [0-9]' "$out" | sed -E 's/[^0-9]*([0-9]+).*/\1/' | awk '{s+=$1} END {print s+0}')
    else
        p=0; f=0
        if [ "$rc" -eq 0 ]; then p=1; else f=1; fi
    fi
    # a crash or non-zero exit with no failure counted is still a failure
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    if [ "$f" -eq 0 ]; then status=ok; else status=FAIL; fi
    printf '%-4s %-40s %5d passed %3d failed\n' "$status" "$name" "$p" "$f"
    if [ "$f" -ne 0 ]; then
        echo "---- output of $name (last 60 lines) ----"
        tail -n 60 "$out"
        echo "----"
    fi
}

run_one () {
    name=$1; shift
    out="$log/$(echo "$name" | tr '/ ' '__').out"
    timeout 1200 "$@" > "$out" 2>&1
    count "$name" "$out" $?
}

for suite in $SUITES; do
    before=$((total_pass + total_fail))
    case $suite in
    unit)
        for t in "$BUILD"/tests/test_*; do
            [ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"
        done ;;
    fuzz)
        for t in "$BUILD"/tests/replay_fuzz_*; do
            [ -x "$t" ] || continue
            n=$(basename "$t" | sed 's/^replay_fuzz_//')
            run_one "fuzz/$n" "$t" "tests/fuzz/corpus/$n"
        done ;;
    integration)
        for t in tests/integration/test_*.py; do
            [ -f "$t" ] && run_one "integration/$(basename "$t" .py)" env BUILD="$BUILD" $PY "$t"
        done
        for t in tests/integration/test_*.sh; do
            [ -f "$t" ] && run_one "integration/$(basename "$t" .sh)" env BUILD="$BUILD" sh "$t"
        done ;;
    deploy)
        for t in tests/deploy/test_*.sh; do
            [ -f "$t" ] && run_one "deploy/$(basename "$t" .sh)" env BUILD="$BUILD" sh "$t"
        done ;;
    *)
        echo "unknown suite '$suite'" ;;
    esac
    # a suite that found nothing to run has failed
    if [ $((total_pass + total_fail)) -eq "$before" ]; then
        echo "FAIL suite '$suite' ran no test under $BUILD"
        total_fail=$((total_fail + 1))
    fi
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
