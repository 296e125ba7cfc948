#!/bin/sh
# test_make_clean.sh — `make clean` removes every build tree the Makefile
# and CI make: each directory named as BUILD=DIR or BUILD := DIR in the
# Makefile and .ci/run (build-clang, build-san, build-fuzz ...) and the
# default build. Checked on `make -n clean`: nothing is removed here.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed.

. "$(dirname "$0")/results.sh"

dirs=$(cat Makefile .ci/run 2>/dev/null \
       | grep -Eo 'BUILD[[:space:]]*:?=[[:space:]]*[A-Za-z0-9_./-]+' \
       | sed -E 's/^BUILD[[:space:]]*:?=[[:space:]]*//' | grep -v '\$' | sort -u)
dirs=$(printf '%s\n%s\n' build "$dirs" | sort -u)
[ "$(echo "$dirs" | wc -l)" -ge 3 ]; result "build_trees_found" $? "found: $(echo $dirs)"

line=$(make -n clean 2>&1)
for d in $dirs; do
    echo "$line" | grep -Eq "(^|[[:space:]])$d([[:space:]]|\$)"
    result "make clean names $d" $? "make -n clean: $line"
done

results_done
