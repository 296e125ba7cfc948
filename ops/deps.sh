#!/bin/sh
# Install the Debian packages Sanctum needs, only those missing.
# Non-interactive; a no-op when everything is present.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev \
 libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev lmdb-utils libsodium-dev \
 libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libcmocka-dev libinih-dev libyaml-dev \
 python3 python3-zmq python3-msgpack python3-yaml python3-cryptography procps openssl \
 chromium prometheus systemd docker-compose"
# chromium (headless, driven by playwright-core: the dashboard's browser test)
# and prometheus (its promtool checks telemetry's /metrics).
# Node and npm, for the independent JOSE verifier (tests/js): Debian's,
# unless a node with its own npm (e.g. NodeSource's) is already there.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
# The deployment tests (make test-deploy): containers with no registry
# (podman, runc, a debootstrapped base image), podman-compose, and the DNS
# of the compose network (CNI's dnsname). systemd-analyze (package systemd)
# and docker-compose are in PKGS: test_deploy_files.sh uses them.
DEPLOY_PKGS="podman podman-compose runc debootstrap uidmap slirp4netns \
 containernetworking-plugins golang-github-containernetworking-plugin-dnsname dnsmasq-base \
 iptables catatonit"
# --build: only what building the binaries needs (ops/Dockerfile's build stage)
# --demo: that and what `make demo` / `make up` run (the Python client and
#         demo story): no browser, prometheus, clang or npm trees
# --deploy: also the deployment tests' tools
BUILD_PKGS="build-essential pkg-config libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev \
 libsodium-dev libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libinih-dev libyaml-dev"
case "${1:-}" in
    --build) PKGS="$BUILD_PKGS" ;;
    --demo) PKGS="$BUILD_PKGS python3 python3-zmq python3-msgpack procps" ;;
    --deploy) PKGS="$PKGS $DEPLOY_PKGS" ;;
esac

# tests/js/node_modules (jose, @openfga/sdk, oidc-provider, playwright-core) from its lock
# file, when any is missing. Not fatal: without the registry, the tests that
# need them skip their JS part and say so.
js_deps () {
    js="$(dirname "$0")/../tests/js"
    [ -d "$js/node_modules/jose" ] && [ -d "$js/node_modules/@openfga/sdk" ] \
        && [ -d "$js/node_modules/oidc-provider" ] && [ -d "$js/node_modules/playwright-core" ] && return 0
    command -v npm >/dev/null 2>&1 || return 0
    echo "deps: npm ci in tests/js"
    (cd "$js" && npm ci --no-audit --no-fund >/dev/null 2>&1) \
        || echo "deps: npm ci in tests/js failed (registry unreachable?)"
    return 0
}

# ops/examples/inject/node_modules (zeromq, @msgpack/msgpack): the Node
# injection example, run by test_inject_examples.py (which fails without it).
inject_js () {
    d="$(dirname "$0")/examples/inject"
    [ -d "$d/node_modules/zeromq" ] && [ -d "$d/node_modules/@msgpack/msgpack" ] && return 0
    command -v npm >/dev/null 2>&1 || return 0
    echo "deps: npm ci in ops/examples/inject"
    (cd "$d" && npm ci --no-audit --no-fund >/dev/null 2>&1) \
        || echo "deps: npm ci in ops/examples/inject failed (registry unreachable?)"
    return 0
}

# tests/deploy/node_modules (dclint, pinned), for test_deploy_files.sh.
deploy_js () {
    d="$(dirname "$0")/../tests/deploy"
    [ -x "$d/node_modules/.bin/dclint" ] && return 0
    echo "deps: npm ci in tests/deploy"
    (cd "$d" && npm ci --no-audit --no-fund >/dev/null 2>&1) \
        || { echo "deps: npm ci in tests/deploy failed (registry unreachable?)"; return 1; }
}
# After the packages: the npm trees. tests/deploy's is fatal for --deploy;
# for `make test`, test_deploy_files.sh's dclint check fails and says why.
finish () {
    [ "${1:-}" = --build ] || [ "${1:-}" = --demo ] && return 0
    js_deps
    inject_js
    deploy_js && return 0
    [ "${1:-}" != --deploy ]
}

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { finish "${1:-}"; exit $?; }
echo "deps: installing$missing"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
finish "${1:-}"
