#!/bin/sh
# The Sanctum demo, on the embedded defaults under ./var.
# Starts every process under `sanctumctl up` (which seeds the procurement
# example on first start), shows them healthy, lets an external Python client
# inject a request and shows the reply and the event it caused, shows the
# three authz decisions, then tells the procurement story end to end
# (ops/demo_story.py), then stops everything (nothing is left running).
# Exits 0 only if every step happened as told.
set -u
BUILD=${BUILD:-build}
CTL="$BUILD/bin/sanctumctl"
PY=/usr/bin/python3
"$CTL" init >/dev/null || exit 1
"$CTL" keygen erp-gateway --principal ext:erp-gateway >/dev/null || exit 1
"$CTL" up 2>var/up.log &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null' EXIT INT TERM

i=0
until "$CTL" health >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "services did not come up; see var/up.log"; exit 1; }
    sleep 0.2
done
echo "== every service, healthy =="
"$CTL" health
echo
echo "== an external Python client (ext:erp-gateway) injects a request =="
# the environment overrides the file (SANCTUM_<SECTION>_<KEY>), as in the daemons
RPC=${SANCTUM_ORCHESTRATOR_RPC:-$(sed -n '/^\[orchestrator\]/,/^\[/s/^rpc *= *//p' var/sanctum.conf)}
PUB=${SANCTUM_ORCHESTRATOR_PUB:-$(sed -n '/^\[orchestrator\]/,/^\[/s/^pub *= *//p' var/sanctum.conf)}
PYTHONPATH=ops/python $PY ops/python/inject_demo.py var/keys "${RPC:-tcp://127.0.0.1:7101}" "${PUB:-tcp://127.0.0.1:7102}" orchestrator || exit 1
echo
sh ops/demo_authz.sh "$CTL" || exit 1
URL=${SANCTUM_TELEMETRY_HTTP:-$(sed -n '/^\[telemetry\]/,/^\[/s/^http *= *//p' var/sanctum.conf)}
echo
echo "== the procurement story (watch it live: http://${URL:-127.0.0.1:7180}/) =="
$PY ops/demo_story.py "$CTL" || { echo "see var/up.log"; exit 1; }
echo
echo "== stopping =="
kill -INT $UP; wait $UP
trap - EXIT INT TERM
echo "demo finished: all processes stopped"
