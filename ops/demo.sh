#!/bin/sh
# The Sanctum demo, on the embedded defaults under ./var.
# Starts every process under `sanctumctl up` (which seeds the procurement
# example on first start), shows them healthy, lets an external Python client
# (ops/examples/inject/inject.py, its own key allowed as ext:erp-gateway)
# start a run, follow its events to the end and fetch its receipt, shows the
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
echo "== an external Python client (ext:erp-gateway) starts a run, follows it, fetches its receipt =="
conf () { sed -n "/^\[$1\]/,/^\[/s/^$2 *= *//p" var/sanctum.conf; }
SANCTUM_ORCHESTRATOR_RPC=${SANCTUM_ORCHESTRATOR_RPC:-$(conf orchestrator rpc)} \
SANCTUM_ORCHESTRATOR_PUB=${SANCTUM_ORCHESTRATOR_PUB:-$(conf orchestrator pub)} \
SANCTUM_AUDITOR_RPC=${SANCTUM_AUDITOR_RPC:-$(conf auditor rpc)} \
    $PY ops/examples/inject/inject.py --keys var/keys --name erp-gateway --vendor Initech --amount 1200 \
    >var/inject.out
rc=$?
cut -c1-120 var/inject.out              # the receipt's JWS is long: its start
[ $rc -eq 0 ] || exit 1
echo
sh ops/demo_authz.sh "$CTL" || exit 1
URL=${SANCTUM_TELEMETRY_HTTP:-$(conf telemetry http)}
echo
echo "== the procurement story (watch it live: http://${URL:-127.0.0.1:7180}/) =="
$PY ops/demo_story.py "$CTL" || { echo "see var/up.log"; exit 1; }
echo
echo "== stopping =="
kill -INT $UP; wait $UP
trap - EXIT INT TERM
echo "demo finished: all processes stopped"
