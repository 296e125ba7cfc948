#!/bin/sh
# test_compose.sh — docker-compose.yml run for real, under Debian's podman,
# podman-compose and runc, with no registry at all (COMPOSE_TOOL=
# docker-compose: the same with Debian's docker-compose 1.29 against
# podman's Docker API; test_compose_docker.sh).
#
# From a clean copy of the source tree (tracked and new files, no build/ or
# var/): the base image (debootstrap, tests/deploy/lib.sh), the Sanctum image
# (podman build --pull=never, once per source tree), the keys as the compose
# file's instructions make them (ops/compose-keys.sh, run inside the image),
# then `podman-compose up -d` of the UNCHANGED compose file, and:
# - every container's healthcheck passes (podman runs healthchecks from
#   systemd timers; with no systemd on this host the test runs each one with
#   `podman healthcheck run`, and reads the status podman recorded);
# - `sanctumctl health` from another container on the compose network
#   reaches all seven;
# - something real through the suite: the procurement model, tuples and
#   policy into authz and its three decisions ($5,000 allow, $520,000
#   approval_required with carol then victor, $2,000,000 deny); two approver
#   devices enrolled, a two-level approval asked (as the orchestrator would)
#   and approved level by level, each signed by the approver's device;
# - story_procurement: the procurement example seeded from the operator's
#   container (`sanctumctl seed`: it cannot write the orchestrator's
#   workflows, which the compose file mounts read-only, and must say it
#   skipped them and seed the rest), then the story told as `make demo` tells
#   it (ops/demo_story.py, its sanctumctl the operator's, by `podman exec`):
#   $5,000 straight through; $520,000 paused, signed by carol's then victor's
#   device, a lease of at most ten minutes, written to the sandbox's sheet;
#   the receipt fetched, verified, tampered with and refused; $2,000,000
#   rejected with nothing in the sheet. This crosses the compose network
#   everywhere: the orchestrator's connectors call http://sandbox:7190, the
#   sandbox fetches the vault's JWKS from http://vault-broker:7133;
# - containers restarted (`podman-compose restart` of ciba-broker,
#   orchestrator and sandbox) and recreated (authz and auditor: rm, then up
#   again on the same named volumes): the approval, the devices, the tuples
#   and the decisions are all still there, and so is the story: its three
#   runs in the states they ended in, the sheet's rows unchanged, the receipt
#   the same bytes and still verifying against the JWKS kept from before;
# - teardown (`down -v`) leaves no container, volume or network behind.
# Prints `ok` / `not ok` lines, then `N passed, N failed`.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/deploy/lib.sh"
PROJECT=sanctumdeploy$$
WORK=$(mktemp -d /tmp/sanctum-compose.XXXXXX)
NET=${PROJECT}_default
OPS=${PROJECT}_ops          # the operator's container (sanctumctl)
SERVICES=$(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' "$ROOT/bus/bus_services.def")

# The compose tool: podman-compose (default), or COMPOSE_TOOL=docker-compose
# (Debian's docker-compose 1.29, test_compose_docker.sh) speaking the Docker
# API that podman serves on a socket of this test's own (`podman system
# service`): the same file, the same checks. Each labels its containers with
# the project under its own key.
COMPOSE_TOOL=${COMPOSE_TOOL:-podman-compose}
case $COMPOSE_TOOL in
    docker-compose) PROJECT_LABEL=com.docker.compose.project ;;
    podman-compose) PROJECT_LABEL=io.podman.compose.project ;;
    *) echo "COMPOSE_TOOL: podman-compose or docker-compose, not $COMPOSE_TOOL"; exit 2 ;;
esac
API_PID=""
compose () { (cd "$WORK" && $COMPOSE_TOOL -p "$PROJECT" "$@"); }

cleanup () {
    podman rm -f -t 0 "$OPS" >/dev/null 2>&1
    compose down -v >/dev/null 2>&1
    podman network rm -f "$NET" >/dev/null 2>&1
    [ -z "$API_PID" ] || kill "$API_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# sanctumctl in the operator's container on the compose network (started
# once the network is up), as an operator (ops:deploy-test): every daemon's
# connect endpoint from the compose file's x-endpoints, its own keys dir
# (var/ops: the public certs, its secret, the approvers' device secrets), the
# examples read-only, and /story (the story's working directory).
ctl () { podman exec -w /story "$OPS" sanctumctl --config /etc/sanctum/sanctum.conf "$@"; }

# ---- set-up (a failure here fails the run, it never skips it)
setup_tools () { need_tools podman "$COMPOSE_TOOL" runc debootstrap && containers_conf; }
check "tools_and_containers_conf" setup_tools

# docker-compose: podman's Docker-compatible API on a socket in $WORK
docker_api () {
    export DOCKER_HOST="unix://$WORK/podman.sock"
    podman system service --time=0 "$DOCKER_HOST" >"$WORK/api.log" 2>&1 &
    API_PID=$!
    i=0
    until podman --remote --url "$DOCKER_HOST" version >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -le 100 ] || { echo "podman's API never answered"; cat "$WORK/api.log"; return 1; }
        sleep 0.1
    done
    compose version
}
[ "$COMPOSE_TOOL" = docker-compose ] && check "docker_api_served_by_podman" docker_api
[ "$FAILED" -eq 0 ] || { summary; exit 1; }
check "base_image_debootstrap_import" base_image
check "image_build_pull_never" sanctum_image
[ "$FAILED" -eq 0 ] || { summary; exit 1; }

clean_copy () {
    (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK") \
        || return 1
    [ ! -e "$WORK/var" ] && [ ! -e "$WORK/build" ] || { echo "var/ or build/ copied"; return 1; }
}
check "clean_copy" clean_copy

# The keys as the compose file's header says, with the image's sanctumctl.
keys () {
    (cd "$WORK" && podman run --rm --user 0 -v "$WORK:/src" -w /src "$IMAGE" sh ops/compose-keys.sh) || return 1
    rc=0
    for n in $SERVICES healthcheck; do
        [ "$(stat -c '%a %u' "$WORK/var/keys/$n.key_secret")" = "600 10001" ] \
            || { echo "$n.key_secret: $(stat -c '%a %u' "$WORK/var/keys/$n.key_secret"), want 600 10001"; rc=1; }
        [ "$(stat -c '%a' "$WORK/var/keys/$n.key")" = 644 ] || { echo "$n.key not 0644"; rc=1; }
        grep -q secret-key "$WORK/var/keys/$n.key" && { echo "$n.key holds a secret"; rc=1; }
    done
    [ "$(stat -c '%a' "$WORK/var/keys/allow")" = 755 ] || { echo "allow/ not 0755"; rc=1; }
    # the operator identity of this test, in its own keys dir
    mkdir -p "$WORK/var/ops" && cp "$WORK/var/keys/"*.key "$WORK/var/ops/" || return 1
    # The ciba.authorize below is asked as the orchestrator would ask it
    # (svc:orchestrator only): until the orchestrator's runs drive it, the
    # test holds a copy of the orchestrator's secret in its own keys dir.
    cp -p "$WORK/var/keys/orchestrator.key_secret" "$WORK/var/ops/"
    podman run --rm --user 0 -v "$WORK/var:/var/x" -e SANCTUM_SANCTUM_KEYS_DIR=/var/x/ops \
        -e SANCTUM_SANCTUM_ALLOW_DIR=/var/x/keys/allow "$IMAGE" \
        sh -c 'sanctumctl keygen sanctumctl --principal ops:deploy-test && chown -R 10001:10001 /var/x/ops' \
        >/dev/null || return 1
    # the x-endpoints of the compose file, as an env file
    sed -n '/^x-endpoints:/,/^$/s/^  \(SANCTUM_[A-Z_]*\): \(.*\)$/\1=\2/p' "$WORK/docker-compose.yml" \
        >"$WORK/var/ops.env"
    [ "$(grep -c . "$WORK/var/ops.env")" -ge 14 ] || { echo "x-endpoints not read"; return 1; }
    return $rc
}
check "keys_as_instructed" keys

# Each container's healthcheck, run until it passes (60 s at most); then the
# status podman recorded must be healthy.
wait_healthy () {
    for s in $SERVICES; do
        c=${PROJECT}_${s}_1; i=0
        until podman healthcheck run "$c" >/dev/null 2>&1; do
            i=$((i + 1))
            [ $i -le 60 ] || { echo "$c: healthcheck never passed"; podman logs --tail 20 "$c"; return 1; }
            sleep 1
        done
        st=$(podman inspect -f '{{.State.Health.Status}}' "$c")
        [ "$st" = healthy ] || { echo "$c: $st"; return 1; }
    done
}

# `up -d`. docker-compose waits, before it starts the orchestrator, for its
# `depends_on: condition: service_healthy`; podman runs healthchecks only from
# systemd timers, absent here, so while `up` waits the test runs the
# project's healthchecks itself, once a second, as those timers would
# (podman-compose does not wait for health: nothing to run for it).
health_pump () {
    while :; do
        for c in $(podman ps -q --filter "label=$PROJECT_LABEL=$PROJECT"); do
            podman healthcheck run "$c" >/dev/null 2>&1
        done
        sleep 1
    done
}
compose_up () {
    pump=""
    if [ "$COMPOSE_TOOL" = docker-compose ]; then health_pump & pump=$!; fi
    compose up -d "$@"
    rc=$?
    [ -z "$pump" ] || { kill "$pump"; wait "$pump" 2>/dev/null; }
    return $rc
}

up () {
    compose_up >"$WORK/up.log" 2>&1 || { tail -n 20 "$WORK/up.log"; return 1; }
    n=$(podman ps -q --filter "label=$PROJECT_LABEL=$PROJECT" | wc -l)
    [ "$n" -eq "$(echo $SERVICES | wc -w)" ] || { echo "$n containers running"; podman ps -a; return 1; }
    wait_healthy
}
check "compose_up_all_healthy" up

operator_container () {
    mkdir -p "$WORK/story/var" || return 1
    podman run -d --name "$OPS" --network "$NET" --env-file "$WORK/var/ops.env" \
        -v "$WORK/var/ops:/etc/sanctum/keys" -v "$WORK/ops/examples:/examples:ro" \
        -v "$WORK/story:/story" "$IMAGE" sleep infinity >/dev/null
}
check "operator_container" operator_container

health_across_network () {
    out=$(ctl health) || { echo "$out"; return 1; }
    echo "$out"
    for s in $SERVICES; do
        echo "$out" | grep -q "^$s  *ok " || { echo "$s not ok"; return 1; }
    done
}
check "sanctumctl_health_from_a_container" health_across_network

# ---- something real through it
decide () { ctl --json authz decide agent:po-drafter po.write cost_center:engineering --context "{\"amount\": $1}"; }

decisions_as_expected () {
    d=$(decide 5000); echo "$d" | grep -q '"decision":"allow"' || { echo "5000: $d"; return 1; }
    d=$(decide 520000)
    echo "$d" | grep -q '"decision":"approval_required"' && echo "$d" | grep -q 'user:carol' \
        && echo "$d" | grep -q 'user:victor' || { echo "520000: $d"; return 1; }
    d=$(decide 2000000); echo "$d" | grep -q '"decision":"deny"' || { echo "2000000: $d"; return 1; }
}

authz_story () {
    ctl authz model write /examples/procurement/model.fga >/dev/null \
        && ctl authz write --file /examples/procurement/tuples.json --ignore-existing >/dev/null \
        && ctl authz policy write /examples/procurement/policy.json >/dev/null || return 1
    decisions_as_expected
}
check "authz_procurement_decisions" authz_story

body_field () { python3 -c 'import json,sys; b=json.load(sys.stdin)["body"]; print(eval(sys.argv[1]))' "$1"; }

APPROVAL=""
ciba_story () {
    for u in carol victor; do ctl device enroll "$u" >/dev/null || return 1; done
    r=$(ctl --key orchestrator --json inject ciba.authorize '{"chain":[{"approver":"user:carol","escalate_after":0},{"approver":"user:victor","escalate_after":0}],"binding_message":"PO-7 USD 520,000","run":"01JDZ0000000000000000DEPLY","node":"write_po"}' \
        --service ciba-broker) || { echo "$r"; return 1; }
    APPROVAL=$(echo "$r" | body_field 'b["approval_id"]')
    l0=$(echo "$r" | body_field 'b["levels"][0]["auth_req_id"]')
    l1=$(echo "$r" | body_field 'b["levels"][1]["auth_req_id"]')
    ctl approve "$l0" --as carol || return 1
    # victor's level is asked once carol's is approved
    i=0
    until ctl --json inject ciba.status "{\"approval_id\":\"$APPROVAL\"}" --service ciba-broker \
            | body_field 'b["levels"][1]["state"]' | grep -qx pending; do
        i=$((i + 1)); [ $i -le 20 ] || { echo "level 1 never asked"; return 1; }; sleep 0.5
    done
    ctl approve "$l1" --as victor || return 1
    approved
}
approved () {
    st=$(ctl --json inject ciba.status "{\"approval_id\":\"$APPROVAL\"}" --service ciba-broker \
         | body_field 'b["state"] + " " + ",".join(l["state"] for l in b["levels"])')
    [ "$st" = "approved approved,approved" ] || { echo "approval $APPROVAL: $st"; return 1; }
}
check "ciba_two_level_approval_signed_by_devices" ciba_story

# The procurement story through the compose suite, as `make demo` tells it.
# sanctumctl for ops/demo_story.py: the operator's, in its container.
printf '#!/bin/sh\nexec podman exec -w /story %s sanctumctl --config /etc/sanctum/sanctum.conf "$@"\n' "$OPS" \
    >"$WORK/sanctumctl" && chmod +x "$WORK/sanctumctl"
SMALL=""; BIG=""; HUGE=""

seed_from_a_container () {
    ctl --json seed >"$WORK/seed.json" 2>"$WORK/seed.err"
    rc=$?
    cat "$WORK/seed.err" "$WORK/seed.json"
    [ $rc -eq 0 ] || { echo "seed exited $rc"; return 1; }
    grep -q "skipping the workflows: cannot create /etc/sanctum/workflows" "$WORK/seed.err" \
        || { echo "seed did not say it skipped the workflows"; return 1; }
    python3 - "$WORK/seed.json" <<'PY' || return 1
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True, r
for item in ("connection sheets", "connection gmail"):
    assert item in r["seeded"], r
assert [s for s in r["skipped"] if s.startswith("workflows (/etc/sanctum/workflows")], r
PY
    # the orchestrator has the workflow, from its own read-only mount
    ctl --json workflows | grep -q '"procurement"' \
        || { echo "the orchestrator has no procurement workflow"; return 1; }
}
check "seed_from_a_container_skips_workflows" seed_from_a_container

# The story's lasting state: each run's state, the sheet's rows.
story_state () {
    for r in "$SMALL" "$BIG" "$HUGE"; do
        ctl --json run get "$r" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["run"], v["state"])' \
            || return 1
    done
    ctl --json sandbox rows erp | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["rows"], sort_keys=True))'
}

story_procurement () {
    (cd "$WORK/story" && /usr/bin/python3 "$WORK/ops/demo_story.py" "$WORK/sanctumctl") >"$WORK/story.log" 2>&1
    rc=$?
    cat "$WORK/story.log"
    [ $rc -eq 0 ] || { echo "demo_story.py exited $rc"; return 1; }
    [ "$(tail -n 1 "$WORK/story.log")" = "Every step happened as told." ] || { echo "last line not the story's"; return 1; }
    SMALL=$(sed -n 's/^  run \([0-9A-Z]*\) COMPLETED; .*/\1/p' "$WORK/story.log")
    BIG=$(sed -n 's/^  run \([0-9A-Z]*\) PAUSED .*/\1/p' "$WORK/story.log")
    HUGE=$(sed -n 's/^  run \([0-9A-Z]*\) REJECTED: .*/\1/p' "$WORK/story.log")
    [ -n "$SMALL" ] && [ -n "$BIG" ] && [ -n "$HUGE" ] || { echo "run ids not in the story's output"; return 1; }
    # what must survive the restarts below
    story_state >"$WORK/story.before" || return 1
    ctl receipt get "$BIG" >"$WORK/story/var/receipt.before" || return 1
    ctl receipt jwks >"$WORK/story/var/jwks.before" || return 1
}
check "story_procurement_through_compose" story_procurement

# ---- restart one, recreate another: nothing lost
devices_there () {
    out=$(ctl device list) || { echo "$out"; return 1; }
    echo "$out" | grep -q carol && echo "$out" | grep -q victor || { echo "devices: $out"; return 1; }
}
restart_keeps_state () {
    for s in ciba-broker orchestrator sandbox; do
        compose restart "$s" >/dev/null 2>&1 || { echo "restart $s failed"; return 1; }
    done
    for s in authz auditor; do
        podman rm -f "${PROJECT}_${s}_1" >/dev/null || return 1
    done
    compose_up >/dev/null 2>&1 || return 1
    wait_healthy && approved && devices_there && decisions_as_expected
}
check "restart_and_recreate_keep_data" restart_keeps_state

story_kept () {
    [ -n "$BIG" ] || { echo "no story to look at"; return 1; }
    story_state >"$WORK/story.after" || return 1
    cat "$WORK/story.after"
    diff "$WORK/story.before" "$WORK/story.after" || { echo "the story's state changed"; return 1; }
    printf '%s COMPLETED\n%s COMPLETED\n%s REJECTED\n' "$SMALL" "$BIG" "$HUGE" >"$WORK/runs.want"
    head -n 3 "$WORK/story.after" | diff "$WORK/runs.want" - || { echo "the runs are not as the story left them"; return 1; }
    ctl receipt get "$BIG" >"$WORK/story/var/receipt.after" || return 1
    cmp "$WORK/story/var/receipt.before" "$WORK/story/var/receipt.after" || { echo "the receipt changed"; return 1; }
    # against the auditor's key as it was before (the signing key is in its volume)
    ctl receipt verify var/receipt.after --jwks var/jwks.before
}
check "story_kept_across_restarts" story_kept

teardown () {
    # the operator's container first: it is on the compose network, which
    # `down` removes (docker-compose refuses to remove a network in use)
    podman rm -f -t 0 "$OPS" >/dev/null 2>&1
    compose down -v >"$WORK/down.log" 2>&1 || { cat "$WORK/down.log"; return 1; }
    podman network rm -f "$NET" >/dev/null 2>&1
    left=$(podman ps -aq --filter "label=$PROJECT_LABEL=$PROJECT"; \
           podman volume ls -q | grep "^$PROJECT" ; podman network ls -q | grep "^$PROJECT")
    [ -z "$left" ] || { echo "left behind: $left"; cat "$WORK/down.log"; return 1; }
}
check "teardown_leaves_nothing" teardown

summary
