#!/bin/sh
# test_deploy_files.sh — check the deployment files without running anything:
# docker-compose.yml, ops/Dockerfile, ops/systemd/*, ops/examples/*.conf
# against each other and against bus/bus_config_keys.def.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
# Debian's python3 (with python3-yaml from ops/deps.sh), not another on PATH
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
DAEMONS="orchestrator authz ciba-broker vault-broker auditor telemetry sandbox"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
SKIPPED=0

# Record one result: check NAME COMMAND... (the command's output is shown on failure)
check () {
    name=$1; shift
    if "$@" >"$TMP/out" 2>&1; then
        echo "ok $name"; PASSED=$((PASSED + 1))
    else
        echo "not ok $name"; sed 's/^/#   /' "$TMP/out"; FAILED=$((FAILED + 1))
    fi
}

# A check skipped for want of a tool counts as passed and says so.
skip () {
    echo "skip $1: $2"; SKIPPED=$((SKIPPED + 1))
}

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
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallFilter=@system-service
SystemCallArchitectures=native
CapabilityBoundingSet=
ReadOnlyPaths=/etc/sanctum"

unit_ok () {
    n=$1; f=ops/systemd/sanctum-$n.service
    [ -f "$f" ] || { echo "$f missing"; return 1; }
    rc=0
    printf '%s\n' "Type=notify" "NotifyAccess=main" "WatchdogSec=30s" "Restart=on-failure" \
        "ExecStart=/usr/local/bin/sanctum-$n --config /etc/sanctum/sanctum.conf" \
        "StateDirectory=sanctum/$n" "PartOf=sanctum.target" "WantedBy=sanctum.target" \
        "LoadCredential=$n.key_secret:/etc/sanctum/keys/$n.key_secret" "$HARDENING" \
        >"$TMP/lines"
    while IFS= read -r line; do
        grep -qxF "$line" "$f" || { echo "$f: no line '$line'"; rc=1; }
    done <"$TMP/lines"
    grep -q '^RestartSec=[0-9]' "$f" || { echo "$f: no RestartSec="; rc=1; }
    grep -q '^User=' "$f" || { echo "$f: no User="; rc=1; }
    grep '^Wants=' ops/systemd/sanctum.target | grep -qw "sanctum-$n.service" \
        || { echo "sanctum.target does not want sanctum-$n.service"; rc=1; }
    return $rc
}
for n in $DAEMONS; do check "unit_$n" unit_ok "$n"; done

orchestrator_last () {
    rc=0
    for n in $DAEMONS; do
        [ "$n" = orchestrator ] && continue
        grep '^After=' ops/systemd/sanctum-orchestrator.service | grep -qw "sanctum-$n.service" \
            || { echo "orchestrator not After= sanctum-$n.service"; rc=1; }
    done
    return $rc
}
check "unit_order_orchestrator_last" orchestrator_last

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
    skip "units_systemd_analyze_verify" "no systemd-analyze"
fi

# ---- docker-compose.yml
compose_ok () {
    $PY - "$DAEMONS" <<'EOF'
import sys, yaml
daemons = sys.argv[1].split()
sec = {"ciba-broker": "CIBA", "vault-broker": "VAULT"}
d = yaml.safe_load(open("docker-compose.yml"))
errs = []
svcs = d.get("services") or {}
if sorted(svcs) != sorted(daemons):
    errs.append("services %s, want %s" % (sorted(svcs), sorted(daemons)))
vols = d.get("volumes") or {}
secrets = d.get("secrets") or {}
for n in daemons:
    s = svcs.get(n) or {}
    cmd = s.get("command")
    if cmd != ["sanctum-%s" % n, "--config", "/etc/sanctum/sanctum.conf"]:
        errs.append("%s: command %r" % (n, cmd))
    test = " ".join((s.get("healthcheck") or {}).get("test") or [])
    if "sanctumctl --config /etc/sanctum/sanctum.conf health %s" % n not in test:
        errs.append("%s: healthcheck %r" % (n, test))
    mounts = [v for v in s.get("volumes") or [] if isinstance(v, str)]
    named = [v.split(":")[0] for v in mounts if v.split(":")[1] == "/var/lib/sanctum/%s" % n]
    if len(named) != 1 or named[0] not in vols:
        errs.append("%s: no named volume for /var/lib/sanctum/%s" % (n, n))
    tg = ["%s:%s" % (x.get("source"), x.get("target")) for x in s.get("secrets") or []]
    if not any(t.endswith(":/etc/sanctum/keys/%s.key_secret" % n) and t.split(":")[0] in secrets
               for t in tg):
        errs.append("%s: no secret for %s.key_secret" % (n, n))
    env = s.get("environment") or {}
    pre = "SANCTUM_%s_" % sec.get(n, n.upper())
    for k in ("RPC", "PUB"):
        v = str(env.get(pre + k, ""))
        if not v.startswith("tcp://*:"):
            errs.append("%s: %s%s = %r, want a tcp://*:PORT bind" % (n, pre, k, v))
    for m in daemons:
        if m == n:
            continue
        v = str(env.get("SANCTUM_%s_RPC" % sec.get(m, m.upper()), ""))
        if not v.startswith("tcp://%s:" % m):
            errs.append("%s: connects to %s at %r" % (n, m, v))
dep = svcs.get("orchestrator", {}).get("depends_on") or {}
for n in daemons:
    if n != "orchestrator" and (dep.get(n) or {}).get("condition") != "service_healthy":
        errs.append("orchestrator: no depends_on %s service_healthy" % n)
if not any(str(p).endswith(":7180") for p in svcs.get("telemetry", {}).get("ports") or []):
    errs.append("telemetry: port 7180 not published")
print("\n".join(errs))
sys.exit(1 if errs else 0)
EOF
}
if $PY -c 'import yaml' 2>/dev/null; then
    check "compose_services" compose_ok
else
    skip "compose_services" "no python3 PyYAML"
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
    skip "compose_config" "no docker compose"
fi

# ---- Dockerfile
dockerfile_ok () {
    f=ops/Dockerfile; rc=0
    for re in '^FROM debian:bookworm AS build' 'make deps' \
              'make .*&& make install PREFIX=/usr/local' '^FROM debian:bookworm' '^USER sanctum' \
              'COPY --from=build .*/bin/'; do
        grep -q "$re" "$f" || { echo "$f: nothing matches '$re'"; rc=1; }
    done
    for p in libzmq5 libczmq4 libmsgpackc2 libsodium23 liblmdb0 libcurl4 libmicrohttpd12 \
             libjansson4 libinih1 libyaml-0-2; do
        grep -qw -- "$p" "$f" || { echo "$f: runtime package $p missing"; rc=1; }
    done
    return $rc
}
check "dockerfile" dockerfile_ok

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
