#!/bin/sh
# compose-keys.sh — the CURVE keys docker-compose.yml mounts, made once into
# ./var/keys (run from the repository root, as root: it chowns the secrets).
#   sh ops/compose-keys.sh [SANCTUMCTL]
# SANCTUMCTL defaults to sanctumctl on PATH, else build/bin/sanctumctl; or
# run it inside the image, which has one:
#   docker run --rm --user 0 -v "$PWD:/src" -w /src sanctum sh ops/compose-keys.sh
# - one keypair per daemon of bus/bus_services.def (principal svc:NAME), and
#   the healthcheck's (ext:healthcheck), each added to ./var/keys/allow;
# - existing keys are kept (keygen makes only what is missing);
# - public certs 0644 and the allow-list 0755 (what keygen writes); the
#   secrets 0600 and owned by the image's uid 10001 (SANCTUM_UID), since a
#   bind-mounted secret keeps the host file's owner and mode.
set -eu
CTL=${1:-}
if [ -z "$CTL" ]; then
    if command -v sanctumctl >/dev/null 2>&1; then CTL=sanctumctl
    elif [ -x build/bin/sanctumctl ]; then CTL=build/bin/sanctumctl
    else echo "compose-keys: no sanctumctl (make, or run it in the image: see the top of $0)" >&2; exit 2
    fi
fi
[ -f bus/bus_services.def ] || { echo "compose-keys: run from the repository root" >&2; exit 2; }
UID_=${SANCTUM_UID:-10001}
KEYS=var/keys
export SANCTUM_SANCTUM_KEYS_DIR="$KEYS" SANCTUM_SANCTUM_ALLOW_DIR="$KEYS/allow"
for n in $(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' bus/bus_services.def); do
    "$CTL" keygen "$n" --principal "svc:$n" >/dev/null
done
"$CTL" keygen healthcheck --principal ext:healthcheck >/dev/null
chmod 0755 "$KEYS/allow"
chmod 0644 "$KEYS"/*.key "$KEYS"/allow/*.key
chmod 0600 "$KEYS"/*.key_secret
chown "$UID_:$UID_" "$KEYS"/*.key_secret
echo "compose-keys: $(ls "$KEYS"/*.key_secret | wc -l) keypairs in $KEYS (secrets 0600, uid $UID_)"
