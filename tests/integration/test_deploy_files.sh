#!/bin/sh
# test_deploy_files.sh — check the deployment files without running anything:
# docker-compose.yml, ops/Dockerfile, ops/systemd/*, ops/examples/*.conf
# against each other, against bus/bus_config_keys.def and against the one
# list of services, bus/bus_services.def (names, sections, order, summaries).
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed. A check whose tool is missing FAILS and says
# what installs it (ops/deps.sh: systemd-analyze from `systemd`,
# docker-compose, PyYAML, dclint from tests/deploy/package.json); nothing is
# skipped. Running the files for real: tests/deploy/ (make test-deploy).

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
# Debian's python3 (with python3-yaml from ops/deps.sh), not another on PATH
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
# the services' names, in start order, from the one list (as the Makefile reads it)
DAEMONS=$(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' bus/bus_services.def | tr '\n' ' ')
# NAME|SECTION|AFTER|SUMMARY per service
SERVICE_ROWS=$(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)", *\([a-z0-9_]*\), *[a-z0-9_]*, *\([A-Z]*\), *"\([^"]*\)" *).*/\1|\2|\3|\4/p' \
    bus/bus_services.def)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0

# Record one result: check NAME COMMAND... (the command's output is shown on failure)
check () {
    name=$1; shift
    if "$@" >"$TMP/out" 2>&1; then
        echo "ok $name"; PASSED=$((PASSED + 1))
    else
        echo "not ok $name"; sed 's/^/#   /' "$TMP/out"; FAILED=$((FAILED + 1))
    fi
}

# A check that cannot run for want of a tool fails and says so.
missing () {
    echo "not ok $1"; echo "#   $2 (ops/deps.sh installs it: make deps)"; FAILED=$((FAILED + 1))
}

# ---- the one list of services, and the source tree beside it
services_list_ok () {
    n=$(grep -c '^BUS_SERVICE' bus/bus_services.def)
    rows=$(printf '%s\n' "$SERVICE_ROWS" | grep -c .)
    words=$(echo $DAEMONS | wc -w)
    [ "$n" -gt 0 ] && [ "$rows" -eq "$n" ] && [ "$words" -eq "$n" ] \
        || { echo "bus_services.def: $n entries, parsed $rows rows and $words names"; return 1; }
    dup=$(printf '%s\n' "$SERVICE_ROWS" | cut -d'|' -f1 | sort | uniq -d; \
          printf '%s\n' "$SERVICE_ROWS" | cut -d'|' -f2 | sort | uniq -d)
    [ -z "$dup" ] || { echo "bus_services.def: names or sections twice: $dup"; return 1; }
}
check "services_list_parses" services_list_ok

# services/<name>/main.c for every service, and no other directory there
services_dirs_ok () {
    rc=0
    for n in $DAEMONS; do
        [ -f "services/$n/main.c" ] || { echo "services/$n/main.c missing"; rc=1; }
    done
    have=$(cd services && ls -d */ | tr -d / | sort | tr '\n' ' ')
    want=$(printf '%s\n' $DAEMONS | sort | tr '\n' ' ')
    [ "$have" = "$want" ] || { echo "services/ holds: $have; bus_services.def lists: $want"; rc=1; }
    return $rc
}
check "services_dirs" services_dirs_ok

# ---- config keys: SECTION|KEY|DEFAULT per line, from the .def
sed -n 's/^BUS_CONFIG_KEY *( *\([a-z_]*\), *\([a-z_]*\), *[A-Z]*, *"\([^"]*\)".*/\1|\2|\3/p' \
    bus/bus_config_keys.def >"$TMP/keys"
keys_parsed () {
    n=$(wc -l <"$TMP/keys"); m=$(grep -c '^BUS_CONFIG_KEY' bus/bus_config_keys.def)
    [ "$n" -gt 0 ] && [ "$n" -eq "$m" ] || { echo "parsed $n of $m keys"; return 1; }
}
check "config_def_parses" keys_parsed

# Flatten an INI file to SECTION|KEY|VALUE lines.
ini_flat () {
    awk '/^[ \t]*[#;]/ || /^[ \t]*$/ { next }
         /^\[/ { gsub(/[][ \t]/, ""); s = $0; next }
         { k = $0; sub(/[ \t]*=.*/, "", k); v = $0; sub(/^[^=]*=[ \t]*/, "", v);
           sub(/[ \t]+$/, "", v); print s "|" k "|" v }' "$1"
}

# Every key of the .def, with its default (or the host path), nothing else.
conf_complete () {
    file=$1; host=$2
    ini_flat "$file" >"$TMP/flat" || return 1
    rc=0
    while IFS='|' read -r sec key def; do
        if [ "$host" = 1 ]; then
            case "$sec.$key" in
                sanctum.data_dir)  def=/var/lib/sanctum ;;
                sanctum.keys_dir)  def=/etc/sanctum/keys ;;
                sanctum.allow_dir) def=/etc/sanctum/keys/allow ;;
            esac
        else
            # the local example sits in ./var: its paths are relative to it
            case "$sec.$key" in
                sanctum.data_dir)  def=. ;;
                sanctum.keys_dir)  def=keys ;;
                sanctum.allow_dir) def=keys/allow ;;
            esac
        fi
        grep -qxF "$sec|$key|$def" "$TMP/flat" || { echo "$file: [$sec] $key = $def missing"; rc=1; }
    done <"$TMP/keys"
    cut -d'|' -f1,2 "$TMP/keys" | sort >"$TMP/want"
    cut -d'|' -f1,2 "$TMP/flat" | sort >"$TMP/have"
    extra=$(comm -13 "$TMP/want" "$TMP/have")
    dup=$(uniq -d "$TMP/have")
    [ -z "$extra" ] || { echo "$file: unknown keys: $extra"; rc=1; }
    [ -z "$dup" ] || { echo "$file: duplicate keys: $dup"; rc=1; }
    return $rc
}
check "example_conf_has_every_key" conf_complete ops/examples/sanctum.conf 0
check "host_conf_has_every_key" conf_complete ops/examples/sanctum.host.conf 1

# ---- systemd units
HARDENING="NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallFilter=@system-service
SystemCallArchitectures=native
CapabilityBoundingSet=
ReadOnlyPaths=/etc/sanctum"

unit_ok () {
    n=$1; summary=$2; f=ops/systemd/sanctum-$n.service
    [ -f "$f" ] || { echo "$f missing"; return 1; }
    rc=0
    printf '%s\n' "Description=Sanctum $n ($summary)" \
        "Type=notify" "NotifyAccess=main" "WatchdogSec=30s" "Restart=on-failure" \
        "ExecStart=/usr/local/bin/sanctum-$n --config /etc/sanctum/sanctum.conf" \
        "StateDirectory=sanctum/$n" "PartOf=sanctum.target" "WantedBy=sanctum.target" \
        "LoadCredential=$n.key_secret:/etc/sanctum/keys/$n.key_secret" "$HARDENING" \
        >"$TMP/lines"
    while IFS= read -r line; do
        grep -qxF "$line" "$f" || { echo "$f: no line '$line'"; rc=1; }
    done <"$TMP/lines"
    grep -q '^RestartSec=[0-9]' "$f" || { echo "$f: no RestartSec="; rc=1; }
    grep -q '^User=' "$f" || { echo "$f: no User="; rc=1; }
    # every daemon's public cert (a client needs the server's), and no other
    for m in $DAEMONS; do
        grep -qxF "LoadCredential=$m.key:/etc/sanctum/keys/$m.key" "$f" \
            || { echo "$f: no LoadCredential of $m.key"; rc=1; }
    done
    certs=$(grep -c '^LoadCredential=[^:]*\.key:' "$f"); want=$(echo $DAEMONS | wc -w)
    [ "$certs" -eq "$want" ] || { echo "$f: $certs public certs loaded, want $want"; rc=1; }
    grep '^Wants=' ops/systemd/sanctum.target | grep -qw "sanctum-$n.service" \
        || { echo "sanctum.target does not want sanctum-$n.service"; rc=1; }
    return $rc
}
printf '%s\n' "$SERVICE_ROWS" >"$TMP/rows"
while IFS='|' read -r n sec after summary; do
    check "unit_$n" unit_ok "$n" "$summary"
done <"$TMP/rows"

# exactly one unit per service, and the target wants exactly those
units_match_list () {
    have=$(cd ops/systemd && ls sanctum-*.service | sed 's/^sanctum-//; s/\.service$//' | sort | tr '\n' ' ')
    want=$(printf '%s\n' $DAEMONS | sort | tr '\n' ' ')
    [ "$have" = "$want" ] || { echo "ops/systemd has units for: $have; bus_services.def lists: $want"; return 1; }
    wants=$(sed -n 's/^Wants=//p' ops/systemd/sanctum.target | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
    want=$(printf 'sanctum-%s.service\n' $DAEMONS | sort | tr '\n' ' ')
    [ "$wants" = "$want" ] || { echo "sanctum.target Wants=$wants; want $want"; return 1; }
}
check "units_match_services_list" units_match_list

# A service marked OTHERS in bus_services.def starts last: its unit is
# After= and Wants= every other unit, and every other unit is Before= it.
units_order () {
    rc=0
    while IFS='|' read -r o sec after summary; do
        [ "$after" = OTHERS ] || continue
        for n in $DAEMONS; do
            [ "$n" = "$o" ] && continue
            for k in After Wants; do
                grep "^$k=" "ops/systemd/sanctum-$o.service" | grep -qw "sanctum-$n.service" \
                    || { echo "$o not $k= sanctum-$n.service"; rc=1; }
            done
            grep -qxF "Before=sanctum-$o.service" "ops/systemd/sanctum-$n.service" \
                || { echo "$n not Before= sanctum-$o.service"; rc=1; }
        done
    done <"$TMP/rows"
    return $rc
}
check "unit_order_after_others" units_order

# systemd-analyze verify: ExecStart must exist, so verify copies whose binary
# paths point at stubs; any diagnostic at all is a failure.
units_verify () {
    mkdir -p "$TMP/bin" "$TMP/units"
    for n in $DAEMONS; do
        printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/sanctum-$n"; chmod +x "$TMP/bin/sanctum-$n"
    done
    for f in ops/systemd/*.service ops/systemd/*.target; do
        sed "s#/usr/local/bin/#$TMP/bin/#" "$f" >"$TMP/units/$(basename "$f")"
    done
    out=$(cd "$TMP/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
          ./*.service ./sanctum.target 2>&1)
    st=$?
    out=$(printf '%s\n' "$out" | grep -v -e '^$' -e 'Failed to read \$container of PID 1')
    [ $st -eq 0 ] && [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }
}
if command -v systemd-analyze >/dev/null 2>&1; then
    check "units_systemd_analyze_verify" units_verify
else
    missing "units_systemd_analyze_verify" "no systemd-analyze (package systemd)"
fi

# ---- docker-compose.yml
compose_ok () {
    PYTHONPATH=ops/python $PY - <<'EOF'
import sys, yaml
import sanctum_services as ss
daemons = [s.name for s in ss.SERVICES]
sec = {s.name: s.section.upper() for s in ss.SERVICES}
# the default port of each section's rpc, pub and http (bus_config_keys.def)
port = {(s, k): d.rsplit(":", 1)[1] for s, k, _, d in ss.config_keys() if k in ("rpc", "pub", "http")}
d = yaml.safe_load(open("docker-compose.yml"))
errs = []
svcs = d.get("services") or {}
if sorted(svcs) != sorted(daemons):
    errs.append("services %s, want %s" % (sorted(svcs), sorted(daemons)))
vols = d.get("volumes") or {}
secrets = d.get("secrets") or {}
if "configs" in d:
    errs.append("top-level configs: podman-compose ignores them; use bind mounts")
if sorted(vols) != sorted("%s-data" % n for n in daemons):
    errs.append("volumes %s, want one <name>-data per service" % sorted(vols))
for n in daemons:
    s = svcs.get(n) or {}
    section = ss.by_name[n].section
    cmd = s.get("command")
    if cmd != ["sanctum-%s" % n, "--config", "/etc/sanctum/sanctum.conf"]:
        errs.append("%s: command %r" % (n, cmd))
    if "configs" in s:
        errs.append("%s: configs (ignored by podman-compose)" % n)
    test = " ".join((s.get("healthcheck") or {}).get("test") or [])
    if "sanctumctl --config /etc/sanctum/sanctum.conf health %s" % n not in test:
        errs.append("%s: healthcheck %r" % (n, test))
    mounts = [v for v in s.get("volumes") or [] if isinstance(v, str)]
    named = [v.split(":")[0] for v in mounts if v.split(":")[1] == "/var/lib/sanctum/%s" % n]
    if len(named) != 1 or named[0] not in vols:
        errs.append("%s: no named volume for /var/lib/sanctum/%s" % (n, n))
    # read-only bind mounts: target -> source
    binds = {v.get("target"): v.get("source") for v in s.get("volumes") or []
             if isinstance(v, dict) and v.get("type") == "bind" and v.get("read_only") is True}
    want = {"/etc/sanctum/sanctum.conf": "./ops/examples/sanctum.host.conf",
            "/etc/sanctum/keys/allow": "./var/keys/allow",
            "/etc/sanctum/keys/sanctumctl.key": "./var/keys/healthcheck.key"}
    for m in daemons:
        want["/etc/sanctum/keys/%s.key" % m] = "./var/keys/%s.key" % m
    for t, src in sorted(want.items()):
        if binds.get(t) != src:
            errs.append("%s: no read-only bind mount of %s at %s" % (n, src, t))
    for t, src in binds.items():
        if "secret" in t or "secret" in (src or ""):
            errs.append("%s: a secret as a plain bind mount: %s" % (n, t))
    # the secrets: its own key and the healthcheck's, no other
    tg = {x.get("target"): (secrets.get(x.get("source")) or {}).get("file") for x in s.get("secrets") or []}
    want_s = {"/etc/sanctum/keys/%s.key_secret" % n: "./var/keys/%s.key_secret" % n,
              "/etc/sanctum/keys/sanctumctl.key_secret": "./var/keys/healthcheck.key_secret"}
    if tg != want_s:
        errs.append("%s: secrets %s, want %s" % (n, tg, want_s))
    env = s.get("environment") or {}
    pre = "SANCTUM_%s_" % sec[n]
    for k in ("RPC", "PUB"):
        v = str(env.get(pre + k, ""))
        want = "tcp://*:%s" % port.get((section, k.lower()))
        if v != want:
            errs.append("%s: %s%s = %r, want the bind %s" % (n, pre, k, v, want))
    for m in daemons:
        if m == n:
            continue
        msec = ss.by_name[m].section
        for k in ("RPC", "PUB"):
            v = str(env.get("SANCTUM_%s_%s" % (sec[m], k), ""))
            if v != "tcp://%s:%s" % (m, port.get((msec, k.lower()))):
                errs.append("%s: connects to %s's %s at %r" % (n, m, k, v))
    dep = s.get("depends_on") or {}
    for m in daemons:
        want = ss.by_name[n].after_others and m != n
        if want and (dep.get(m) or {}).get("condition") != "service_healthy":
            errs.append("%s: no depends_on %s service_healthy" % (n, m))
        if not want and m in dep:
            errs.append("%s: depends_on %s, which bus_services.def does not ask for" % (n, m))
if not any(str(p).endswith(":7180") for p in svcs.get("telemetry", {}).get("ports") or []):
    errs.append("telemetry: port 7180 not published")
print("\n".join(errs))
sys.exit(1 if errs else 0)
EOF
}
if $PY -c 'import yaml' 2>/dev/null; then
    check "compose_services" compose_ok
else
    missing "compose_services" "no python3 PyYAML (package python3-yaml)"
fi

# `docker compose config` on a copy whose referenced files exist (stubs).
compose_config () {
    mkdir -p "$TMP/c/var/keys/allow" "$TMP/c/ops/examples"
    cp docker-compose.yml "$TMP/c/"; cp ops/examples/sanctum.host.conf "$TMP/c/ops/examples/"
    for n in $DAEMONS healthcheck; do : >"$TMP/c/var/keys/$n.key"; : >"$TMP/c/var/keys/$n.key_secret"; done
    (cd "$TMP/c" && $COMPOSE -f docker-compose.yml config -q)
}
if docker compose version >/dev/null 2>&1; then
    COMPOSE="docker compose"; check "compose_config" compose_config
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE="docker-compose"; check "compose_config" compose_config
else
    missing "compose_config" "no docker compose nor docker-compose (package docker-compose)"
fi

# ---- Dockerfile
dockerfile_ok () {
    f=ops/Dockerfile; rc=0
    for re in '^FROM debian:bookworm AS build' 'sh ops/deps.sh --build' \
              'make .*&& make install PREFIX=/usr/local' '^FROM debian:bookworm' '^USER sanctum' \
              'COPY --from=build .*/bin/'; do
        grep -q "$re" "$f" || { echo "$f: nothing matches '$re'"; rc=1; }
    done
    for p in libzmq5 libczmq4 libmsgpackc2 libsodium23 liblmdb0 libcurl4 libmicrohttpd12 \
             libjansson4 libinih1 libyaml-0-2; do
        grep -qw -- "$p" "$f" || { echo "$f: runtime package $p missing"; rc=1; }
    done
    # the runtime image makes a data directory per service (a named volume
    # mounted there takes its owner from it)
    have=$(sed -n 's/.*for s in \([a-z -]*\); do.*/\1/p' "$f" | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
    want=$(printf '%s\n' $DAEMONS | sort | tr '\n' ' ')
    [ "$have" = "$want" ] || { echo "$f: data directories for: $have; bus_services.def lists: $want"; rc=1; }
    return $rc
}
check "dockerfile" dockerfile_ok

# the build context leaves out local keys and build output
dockerignore_ok () {
    for p in var build .git; do
        grep -qx "$p" .dockerignore || { echo ".dockerignore: no line '$p'"; return 1; }
    done
}
check "dockerignore" dockerignore_ok

# dclint (npm, pinned in tests/deploy/package.json): errors fail, style
# warnings are shown but do not.
DCLINT=tests/deploy/node_modules/.bin/dclint
compose_dclint () { "$DCLINT" docker-compose.yml; }
if [ -x "$DCLINT" ]; then
    check "compose_dclint" compose_dclint
else
    missing "compose_dclint" "no $DCLINT (npm ci in tests/deploy)"
fi

# systemd-analyze security --offline=true: every unit's exposure <= 2.0.
# What keeps it above ~1: PrivateNetwork= (the daemons talk over TCP),
# AF_INET/AF_INET6/AF_UNIX/AF_NETLINK (TCP, sd_notify, libzmq's getifaddrs),
# no IPAddressAllow= (the addresses are the deployment's), @resources'
# sched_setscheduler/setpriority (libzmq, worker nice), PrivateUsers= and
# ProcSubset= (not tried under DynamicUser), RootDirectory=.
units_security () {
    rc=0
    for f in ops/systemd/*.service; do
        line=$(cd ops/systemd && systemd-analyze security --offline=true --no-pager "$(basename "$f")" 2>&1 | tail -n 1)
        score=$(echo "$line" | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')
        [ -n "$score" ] || { echo "$f: no score: $line"; rc=1; continue; }
        echo "$(basename "$f"): $score"
        awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "$f: exposure $score > 2.0"; rc=1; }
    done
    return $rc
}
if command -v systemd-analyze >/dev/null 2>&1; then
    check "units_systemd_analyze_security_le_2" units_security
else
    missing "units_systemd_analyze_security_le_2" "no systemd-analyze (package systemd)"
fi

# make install PREFIX=/usr DESTDIR=...: binaries, units pointing at them, the
# example config, the dashboard's files when the tree has them.
install_ok () {
    d="$TMP/destdir"
    make --no-print-directory BUILD="${BUILD:-build}" install PREFIX=/usr DESTDIR="$d" >"$TMP/install.log" 2>&1 \
        || { tail -n 20 "$TMP/install.log"; return 1; }
    rc=0
    for n in $DAEMONS; do
        [ -x "$d/usr/bin/sanctum-$n" ] || { echo "no /usr/bin/sanctum-$n"; rc=1; }
        u="$d/usr/lib/systemd/system/sanctum-$n.service"
        grep -qx "ExecStart=/usr/bin/sanctum-$n --config /etc/sanctum/sanctum.conf" "$u" 2>/dev/null \
            || { echo "$u: ExecStart not /usr/bin/sanctum-$n"; rc=1; }
    done
    [ -x "$d/usr/bin/sanctumctl" ] || { echo "no /usr/bin/sanctumctl"; rc=1; }
    [ -f "$d/usr/lib/systemd/system/sanctum.target" ] || { echo "no sanctum.target"; rc=1; }
    for f in sanctum.conf sanctum.host.conf; do
        [ -f "$d/usr/share/sanctum/examples/$f" ] || { echo "no share/sanctum/examples/$f"; rc=1; }
    done
    if [ -d services/telemetry/static ]; then
        [ -n "$(ls -A "$d/usr/share/sanctum/dashboard" 2>/dev/null)" ] || { echo "no dashboard files in share/sanctum/dashboard"; rc=1; }
    fi
    left=$(grep -rl /usr/local "$d/usr/lib/systemd/system" 2>/dev/null | head -n 3)
    [ -z "$left" ] || { echo "/usr/local left in: $left"; rc=1; }
    return $rc
}
check "make_install_prefix_destdir" install_ok

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
