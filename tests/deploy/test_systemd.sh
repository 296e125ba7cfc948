#!/bin/sh
# test_systemd.sh — the shipped systemd units run for real: Debian's systemd
# 252 as PID 1 in a container (`podman run --privileged --systemd=always`,
# tests/deploy/systemd.Containerfile on the registry-free base image).
#
# `make install PREFIX=/usr/local DESTDIR=<stage>` on the host, the stage
# copied into the container's /, /etc/sanctum laid out as
# ops/examples/sanctum.host.conf says, then:
# - each unit started alone (`systemctl start` returns once the daemon sent
#   READY=1) answers `sanctumctl health` AT ONCE, no retry: READY=1 only once
#   it serves; every unit is Type=notify and active under sanctum.target;
# - the watchdog stays fed under load: with WatchdogSec=2s (a test drop-in),
#   ten seconds of requests leave every daemon's PID unchanged, NRestarts 0,
#   and its last keep-alive (WatchdogTimestamp) recent;
# - DynamicUser and StateDirectory hold the data: /var/lib/private/sanctum/
#   <name> owned by the unit's dynamic user, 0700, with its LMDB; tuples
#   written to authz survive a restart of the unit;
# - a daemon killed with SIGKILL is restarted (Restart=on-failure): a new
#   PID, NRestarts 1, serving again;
# - `systemctl stop sanctum.target` stops every unit, the orchestrator (which
#   talks to all the others) fully stopped before any other began to stop.
#
# Credentials: in such a container LoadCredential= (even SetCredential= for
# root) delivers an EMPTY directory here, so the daemons would find no key.
# The shipped units keep LoadCredential=; IN THIS TEST ONLY a drop-in
# (50-test-keys.conf) empties LoadCredential= and has a privileged
# ExecStartPre=+ copy the unit's own secret and the public certs into its
# RuntimeDirectory, owned by its dynamic user, which becomes keys_dir. The
# key lookup in a credentials directory is covered by tests/unit/
# test_keys_files.c.
# Prints `ok` / `not ok` lines, then `N passed, N failed`.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/deploy/lib.sh"
BUILD=${BUILD:-build}
SD_IMAGE=localhost/sanctum-systemd:test
CT=sanctum-systemd-$$
STAGE=$(mktemp -d /tmp/sanctum-stage.XXXXXX) && chmod 0755 "$STAGE"  # copied onto / below
SERVICES=$(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' "$ROOT/bus/bus_services.def")
# the ones that start before the orchestrator, in bus_services.def's order
FIRST=$(echo $SERVICES | tr ' ' '\n' | grep -vx orchestrator)

cleanup () {
    [ -n "${KEEP:-}" ] || podman rm -f -t 5 "$CT" >/dev/null 2>&1
    rm -rf "$STAGE"
}
trap cleanup EXIT INT TERM

in_ct () { podman exec "$CT" sh -c "$1"; }
ctl () { podman exec "$CT" sanctumctl --config /etc/sanctum/sanctum.conf "$@"; }
prop () { podman exec "$CT" systemctl show -p "$2" --value "sanctum-$1.service"; }

# ---- set-up
setup_tools () { need_tools podman runc debootstrap make && containers_conf; }
check "tools_and_containers_conf" setup_tools
[ "$FAILED" -eq 0 ] || { summary; exit 1; }
check "base_image_debootstrap_import" base_image

# The systemd image: rebuilt when its Containerfile or the base changes.
systemd_image () {
    key=$( { cat "$ROOT/tests/deploy/systemd.Containerfile"; \
             podman image inspect -f '{{.Id}}' docker.io/library/debian:bookworm; } | sha256sum | cut -c1-16)
    [ "$(podman image inspect -f '{{ index .Labels "sanctum.src" }}' "$SD_IMAGE" 2>/dev/null)" = "$key" ] && return 0
    podman build --pull=never -q --label "sanctum.src=$key" -f "$ROOT/tests/deploy/systemd.Containerfile" \
        -t "$SD_IMAGE" "$ROOT/tests/deploy"
}
check "systemd_image" systemd_image

install_stage () {
    (cd "$ROOT" && make --no-print-directory BUILD="$BUILD" install PREFIX=/usr/local DESTDIR="$STAGE") \
        >"$STAGE.log" 2>&1 || { tail -n 20 "$STAGE.log"; rm -f "$STAGE.log"; return 1; }
    rm -f "$STAGE.log"
    for n in $SERVICES; do
        [ -x "$STAGE/usr/local/bin/sanctum-$n" ] && [ -f "$STAGE/usr/local/lib/systemd/system/sanctum-$n.service" ] \
            || { echo "sanctum-$n not installed"; return 1; }
    done
}
check "make_install_stage" install_stage

boot () {
    podman run -d --privileged --systemd=always --name "$CT" -v "$STAGE:/stage:ro" "$SD_IMAGE" >/dev/null || return 1
    i=0
    until st=$(in_ct 'systemctl is-system-running' 2>/dev/null); [ "$st" = running ] || [ "$st" = degraded ]; do
        i=$((i + 1)); [ $i -le 60 ] || { echo "systemd: $st"; return 1; }; sleep 0.5
    done
    echo "systemd $(in_ct 'systemctl --version | head -n 1'): $st"
    [ "$st" = running ] || { in_ct 'systemctl --failed --no-legend'; return 1; }
}
check "systemd_boots_as_pid1" boot
[ "$FAILED" -eq 0 ] || { summary; exit 1; }

# The host layout of ops/examples/sanctum.host.conf, keys made by sanctumctl,
# and the test-only drop-ins.
layout () {
    in_ct 'cp -a /stage/. / && install -d -m 0755 /etc/sanctum /etc/sanctum/keys
           install -m 0644 /usr/local/share/sanctum/examples/sanctum.host.conf /etc/sanctum/sanctum.conf' || return 1
    for n in $SERVICES; do ctl keygen "$n" --principal "svc:$n" >/dev/null || return 1; done
    ctl keygen sanctumctl --principal ops:sanctumctl >/dev/null || return 1
    for n in $SERVICES; do
        podman exec -i "$CT" sh -c "mkdir -p /etc/systemd/system/sanctum-$n.service.d && \
            cat > /etc/systemd/system/sanctum-$n.service.d/50-test-keys.conf" <<EOF
# TEST ONLY (tests/deploy/test_systemd.sh): in this container systemd
# delivers credentials as an empty directory, so LoadCredential= is emptied
# and a privileged ExecStartPre copies this unit's own secret and the public
# certs into its RuntimeDirectory (owned by its dynamic user) instead.
[Service]
LoadCredential=
RuntimeDirectory=sanctum-keys-$n
RuntimeDirectoryMode=0700
ExecStartPre=+/bin/sh -c 'cp /etc/sanctum/keys/$n.key_secret /etc/sanctum/keys/*.key "\$RUNTIME_DIRECTORY"/ && chown -R --reference="\$RUNTIME_DIRECTORY" "\$RUNTIME_DIRECTORY" && chmod 0400 "\$RUNTIME_DIRECTORY"/*'
Environment=SANCTUM_SANCTUM_KEYS_DIR=/run/sanctum-keys-$n
# a short watchdog, so ten seconds of load would show a missed keep-alive
WatchdogSec=2s
EOF
        [ $? -eq 0 ] || return 1
    done
    in_ct 'systemctl daemon-reload'
}
check "host_layout_keys_dropins" layout

# Each unit alone, in start order: `systemctl start` blocks until READY=1,
# and health must answer at once.
ready_means_serving () {
    rc=0
    for n in $FIRST orchestrator; do
        in_ct "systemctl start sanctum-$n.service" || { in_ct "journalctl -u sanctum-$n -n 20 --no-pager"; return 1; }
        out=$(ctl health "$n" 2>&1) || { echo "$n: READY=1 sent but health failed at once: $out"; rc=1; }
        t=$(prop "$n" Type); a=$(prop "$n" NotifyAccess)
        [ "$t" = notify ] && [ "$a" = main ] || { echo "$n: Type=$t NotifyAccess=$a"; rc=1; }
    done
    return $rc
}
check "ready_only_once_serving" ready_means_serving

target_all_active () {
    in_ct 'systemctl start sanctum.target' || return 1
    rc=0
    for n in $SERVICES; do
        st=$(prop "$n" ActiveState); [ "$st" = active ] || { echo "$n: $st"; rc=1; }
    done
    [ "$(in_ct 'systemctl is-active sanctum.target')" = active ] || { echo "sanctum.target not active"; rc=1; }
    out=$(ctl health) || { echo "$out"; rc=1; }
    return $rc
}
check "sanctum_target_all_active" target_all_active

# ---- data under DynamicUser + StateDirectory
EX=/usr/local/share/sanctum/examples/procurement
state_dirs () {
    ctl authz model write "$EX/model.fga" >/dev/null && ctl authz write --file "$EX/tuples.json" --ignore-existing >/dev/null \
        && ctl authz policy write "$EX/policy.json" >/dev/null || return 1
    rc=0
    for n in $SERVICES; do
        d=/var/lib/private/sanctum/$n
        owner=$(in_ct "stat -c '%U %a' $d") || { echo "$d missing"; rc=1; continue; }
        [ "$owner" = "sanctum-$n 700" ] || { echo "$d: $owner, want sanctum-$n 700"; rc=1; }
        in_ct "find $d -name '*.mdb' | grep -q ." || { echo "$d: no LMDB"; rc=1; }
        [ "$(prop "$n" DynamicUser)" = yes ] || { echo "$n: DynamicUser no"; rc=1; }
    done
    in_ct 'systemctl restart sanctum-authz.service' || return 1
    d=$(ctl --json authz decide agent:po-drafter po.write cost_center:engineering --context '{"amount": 520000}')
    echo "$d" | grep -q approval_required || { echo "after restart: $d"; rc=1; }
    return $rc
}
check "dynamicuser_statedirectory_hold_data" state_dirs

# ---- the watchdog under load (WatchdogSec=2s from the drop-in)
watchdog_fed () {
    rc=0
    for n in $SERVICES; do eval "pid_$(echo $n | tr - _)=$(prop "$n" MainPID)"; done
    end=$(( $(date +%s) + 10 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        in_ct 'for i in 1 2 3 4 5 6 7 8 9 10; do
                 sanctumctl --config /etc/sanctum/sanctum.conf authz decide agent:po-drafter po.write \
                   cost_center:engineering --context "{\"amount\": $i}" >/dev/null || exit 1
               done; sanctumctl --config /etc/sanctum/sanctum.conf health >/dev/null' || { echo "requests failed"; rc=1; break; }
    done
    now=$(in_ct 'cat /proc/uptime' | cut -d' ' -f1 | cut -d. -f1)
    for n in $SERVICES; do
        v=pid_$(echo $n | tr - _); eval "was=\$$v"
        [ "$(prop "$n" MainPID)" = "$was" ] || { echo "$n: PID changed under load"; rc=1; }
        [ "$(prop "$n" WatchdogUSec)" = 2s ] || { echo "$n: WatchdogUSec $(prop "$n" WatchdogUSec)"; rc=1; }
        last=$(( $(prop "$n" WatchdogTimestampMonotonic) / 1000000 ))
        [ $((now - last)) -le 2 ] || { echo "$n: last keep-alive ${last}s, now ${now}s"; rc=1; }
    done
    in_ct 'journalctl --no-pager -u "sanctum-*" | grep -i "watchdog timeout"' && rc=1
    return $rc
}
check "watchdog_fed_under_load" watchdog_fed

killed_is_restarted () {
    n=ciba-broker
    was=$(prop $n MainPID); r0=$(prop $n NRestarts)
    in_ct "systemctl kill -s KILL sanctum-$n.service" || return 1
    i=0
    until [ "$(prop $n ActiveState)" = active ] && [ "$(prop $n MainPID)" != "$was" ] && [ "$(prop $n MainPID)" != 0 ]; do
        i=$((i + 1)); [ $i -le 40 ] || { echo "$n not restarted: $(prop $n ActiveState)"; return 1; }; sleep 0.25
    done
    [ "$(prop $n NRestarts)" -eq $((r0 + 1)) ] || { echo "NRestarts $(prop $n NRestarts), was $r0"; return 1; }
    ctl health $n >/dev/null
}
check "sigkilled_daemon_restarted" killed_is_restarted

stop_in_order () {
    in_ct 'systemctl stop sanctum.target' || return 1
    # systemctl waits for the target's own stop job, which ends before the
    # PartOf= stop jobs it propagated: a daemon ordered after the
    # orchestrator may still be stopping when it returns. Give them their
    # TimeoutStopSec (30 s) to be inactive.
    rc=0
    for n in $SERVICES; do
        i=0
        while st=$(prop "$n" ActiveState); [ "$st" != inactive ] && [ $i -lt 120 ]; do
            i=$((i + 1)); sleep 0.25
        done
        [ "$st" = inactive ] || { echo "$n: $st 30 s after stop"; rc=1; }
    done
    o=$(prop orchestrator InactiveEnterTimestampMonotonic)
    for n in $FIRST; do
        b=$(prop "$n" ActiveExitTimestampMonotonic)
        [ "$o" -le "$b" ] || { echo "$n began to stop ($b) before the orchestrator had stopped ($o)"; rc=1; }
    done
    return $rc
}
check "target_stop_in_order" stop_in_order

summary
