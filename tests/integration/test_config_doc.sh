#!/bin/sh
# test_config_doc.sh — README.md's table of configuration keys is the one
# ops/config_doc.py makes from bus/bus_config_keys.def (the table the
# daemons read), and it lists every key of that table.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`.

. "$(dirname "$0")/results.sh"
PY=/usr/bin/python3

$PY ops/config_doc.py --check; result "readme_config_table_current" $?
n=$(grep -c '^BUS_CONFIG_KEY' bus/bus_config_keys.def)
m=$($PY ops/config_doc.py | grep -c '^| `\[')
[ "$n" -gt 50 ] && [ "$n" -eq "$m" ]; result "every_key_in_the_table ($m of $n)" $?
grep -q '^| `\[ciba\] oidc_issuer` |' README.md; result "readme_has_ciba_oidc_issuer" $?
results_done
