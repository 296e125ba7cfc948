#!/bin/sh
# test_authz_conformance.sh — OpenFGA's test files through `sanctumctl authz test`:
#   - consolidated_1_1_tests.yaml and abac_tests.yaml (the YAML originals, DSL
#     models), with the contextual-tuple pass: every assertion must pass;
#   - language/stores/*/store.fga.yaml: the valid stores must pass; a store
#     with expected_errors.json must be refused (exit 1) naming each expected
#     error (one assertion per expected error);
#   - ops/examples/procurement/procurement.fga.yaml: must pass;
#   - a modular model (model_file: fga.mod) made here: must pass, and be
#     refused naming file, line and column once a module redefines a relation.
# Conformance data: $SANCTUM_CONFORMANCE_DIR, else ../shared/conformance/openfga
# from the repository root. Prints `ok FILE (...)` / `not ok FILE (...)` per
# file, then `N passed, N failed` counting assertions over all files; exits 1
# when anything failed.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) CTL=$BUILD/bin/sanctumctl ;; *) CTL=$ROOT/$BUILD/bin/sanctumctl ;; esac
CONF=${SANCTUM_CONFORMANCE_DIR:-$ROOT/../shared/conformance/openfga}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
START=$(date +%s.%N)

if [ ! -x "$CTL" ]; then
    echo "not ok sanctumctl: $CTL is missing (make first)"; echo "0 passed, 1 failed"; exit 1
fi
if [ ! -d "$CONF" ]; then
    echo "not ok conformance data: $CONF is missing (set SANCTUM_CONFORMANCE_DIR)"; echo "0 passed, 1 failed"; exit 1
fi

# sanctumctl runs in a scratch directory. If this build of sanctumctl still
# loads a client key for every `authz` command, give it one there.
cd "$TMP" || exit 1
"$CTL" authz test >/dev/null 2>&1
[ $? -eq 2 ] || "$CTL" init >/dev/null 2>&1

# Add the `N passed, N failed` counts of the last such line in a file.
add_counts () {
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    P=${p:-0}; F=${f:-0}
}

# A file that must pass: exit 0 and no failed assertion.
must_pass () {
    name=$1; file=$2; shift 2
    "$CTL" authz test "$file" "$@" >"$TMP/out" 2>&1
    rc=$?
    add_counts "$TMP/out"
    if [ "$rc" -ne 0 ] && [ "$F" -eq 0 ]; then F=1; fi
    PASSED=$((PASSED + P)); FAILED=$((FAILED + F))
    if [ "$rc" -eq 0 ] && [ "$F" -eq 0 ] && [ "$P" -gt 0 ]; then
        echo "ok $name ($P passed, $F failed)"
        grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$TMP/out" | sed 's/^/#   /'
    else
        echo "not ok $name ($P passed, $F failed, exit $rc)"; sed 's/^/#   /' "$TMP/out" | tail -n 40
    fi
}

# A store file that must be refused: exit 1 and, for each error listed in
# expected_errors.json, a message naming it (one assertion each).
must_refuse () {
    name=$1; file=$2; expected=$3
    "$CTL" authz test "$file" >"$TMP/out" 2>&1
    rc=$?
    p=0; f=0
    props=$(grep -o '"additionalProperty": *"[^"]*"' "$expected" | sed 's/.*: *"\(.*\)"/\1/')
    for prop in $props; do
        if grep -q "additional properties ('$prop')" "$TMP/out"; then p=$((p + 1)); else f=$((f + 1)); fi
    done
    if grep -q '"keyword": *"valid_store"' "$expected"; then
        if grep -q "'model' or 'model_file' must be present" "$TMP/out"; then p=$((p + 1)); else f=$((f + 1)); fi
    fi
    if [ "$rc" -ne 1 ] || [ $((p + f)) -eq 0 ]; then f=$((f + 1)); fi
    PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
    if [ "$f" -eq 0 ]; then
        echo "ok $name (refused: $p expected errors reported)"
    else
        echo "not ok $name (exit $rc, $p of $((p + f)) expected errors reported)"
    fi
    sed 's/^/#   /' "$TMP/out"
}

for f in consolidated_1_1_tests.yaml abac_tests.yaml; do
    must_pass "$f" "$CONF/$f"
done
for store in "$CONF"/language/stores/*/store.fga.yaml; do
    [ -f "$store" ] || continue
    d=$(dirname "$store")
    name="language/stores/$(basename "$d")"
    if [ -f "$d/expected_errors.json" ]; then
        must_refuse "$name" "$store" "$d/expected_errors.json"
    else
        must_pass "$name" "$store"
    fi
done
must_pass "ops/examples/procurement" "$ROOT/ops/examples/procurement/procurement.fga.yaml"

# A modular model (model_file: fga.mod): passes; a module that redefines a
# relation of the type it extends is refused, naming the file, line and column.
MOD=$TMP/modular
mkdir -p "$MOD/team"
printf "schema: '1.2'\ncontents:\n  - core.fga\n  - team/docs.fga\n" >"$MOD/fga.mod"
printf "module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n" >"$MOD/core.fga"
printf "module docs\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n" >"$MOD/team/docs.fga"
cat >"$MOD/store.fga.yaml" <<'YAML'
name: modular
model_file: fga.mod
tuples:
  - {user: "user:anne", relation: owner, object: "doc:1"}
tests:
  - name: owners view
    check:
      - {user: "user:anne", object: "doc:1", assertions: {viewer: true, owner: true}}
      - {user: "user:bob", object: "doc:1", assertions: {viewer: false}}
    list_objects:
      - {user: "user:anne", type: doc, assertions: {viewer: ["doc:1"]}}
YAML
must_pass "modular model (fga.mod)" "$MOD/store.fga.yaml"
printf "module docs\n\nextend type doc\n  relations\n    define owner: [user]\n" >"$MOD/team/docs.fga"
"$CTL" authz test "$MOD/store.fga.yaml" >"$TMP/out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q "team/docs.fga line 5 column 12: relation owner already exists on type doc" "$TMP/out"; then
    PASSED=$((PASSED + 1)); echo "ok modular model refused with file, line and column"
else
    FAILED=$((FAILED + 1)); echo "not ok modular model refused (exit $rc)"; sed 's/^/#   /' "$TMP/out"
fi

END=$(date +%s.%N)
echo "# took $(awk "BEGIN { printf \"%.2f\", $END - $START }") s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
