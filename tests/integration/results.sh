# results.sh — sourced by the shell integration tests: from the project
# root, a temporary directory $TMP (removed on exit), and the `ok NAME` /
# `not ok NAME # DETAIL` lines with their `N passed, N failed` summary.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0

# Record one result: result NAME STATUS [DETAIL]
result () {
    if [ "$2" -eq 0 ]; then
        echo "ok $1"; PASSED=$((PASSED + 1))
    else
        echo "not ok $1${3:+ # $3}"; FAILED=$((FAILED + 1))
    fi
}

# The summary line; exits 1 when anything failed.
results_done () {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
