#!/bin/sh
# test_fresh.sh — the README's two commands tried as a new user would, in a
# fresh Debian 12 minbase container (the registry-free base image of
# tests/deploy/lib.sh: debootstrap --variant=minbase bookworm).
#
# A clean copy of the source tree (tracked and new files, no build/ or var/),
# committed as a git repository the container clones from; in the container,
# only what the README says to install first (`apt-get update && apt-get
# install -y make git`), then, from the clone:
# - `make demo`: exit 0, the story's "Every step happened as told." and the
#   demo's own last line, and no sanctum process left running after it;
# - `make test`, ONLY when SANCTUM_FRESH_MAKE_TEST=1: it is long (every
#   unit, fuzz-replay and integration test, built and run in the container
#   on top of the demo's minutes), so `make test-deploy` leaves it out unless
#   asked; its last line must be `N passed, 0 failed`. Without the variable
#   the check is not run, not counted, and the output says so.
# Each make's time is printed (`# make demo in the fresh container: N s`).
# Everything else `make demo` needs it installs itself (ops/deps.sh): that is
# what is tested. The container keeps the .debs it downloads in
# $CACHE/fresh-apt between runs (download time only; apt installs them
# afresh each time). It has the network a default podman container has.
# Prints `ok` / `not ok` lines, then `N passed, N failed`.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/deploy/lib.sh"
CT=sanctum-fresh-$$
WORK=$(mktemp -d /tmp/sanctum-fresh.XXXXXX)

cleanup () {
    [ -n "${KEEP:-}" ] || podman rm -f -t 0 "$CT" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

in_ct () { podman exec -w /root/sanctum "$CT" sh -c "$1"; }

# ---- set-up (a failure here fails the run, it never skips it)
setup_tools () { need_tools podman runc debootstrap git && containers_conf; }
check "tools_and_containers_conf" setup_tools
[ "$FAILED" -eq 0 ] || { summary; exit 1; }
check "base_image_debootstrap_import" base_image
[ "$FAILED" -eq 0 ] || { summary; exit 1; }

# The tree a new user would clone: tracked and new files, nothing ignored.
clean_repo () {
    mkdir -p "$WORK/src" || return 1
    (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK/src") || return 1
    [ ! -e "$WORK/src/var" ] && [ ! -e "$WORK/src/build" ] || { echo "var/ or build/ copied"; return 1; }
    (cd "$WORK/src" && git init -q && git add -A \
        && git -c user.name=test -c user.email=test@invalid commit -qm "the tree under test") || return 1
}
check "clean_repo" clean_repo

# A fresh container of the minbase image; only make and git, as the README says.
fresh_container () {
    mkdir -p "$CACHE/fresh-apt/partial" || return 1
    podman run -d --name "$CT" -v "$WORK/src:/src:ro" -v "$CACHE/fresh-apt:/var/cache/apt/archives" \
        docker.io/library/debian:bookworm sleep infinity >/dev/null || return 1
    podman exec "$CT" sh -c 'command -v make' && { echo "the base image has make already"; return 1; }
    podman exec "$CT" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make git' \
        >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log"; return 1; }
    podman exec "$CT" git clone -q /src /root/sanctum
}
check "fresh_container_make_and_git" fresh_container
[ "$FAILED" -eq 0 ] || { summary; exit 1; }

sanctum_running () {
    in_ct 'for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case "$c" in sanctum*) echo "$c";; esac; done'
}

# make TARGET in the clone, timed (the time into $WORK/TARGET.time, said
# after the check); its output into $WORK/TARGET.log.
make_in_ct () {
    t0=$(date +%s)
    in_ct "make $1" >"$WORK/$1.log" 2>&1
    rc=$?
    echo "$(( $(date +%s) - t0 )) s (exit $rc)" >"$WORK/$1.time"
    tail -n 40 "$WORK/$1.log"
    [ $rc -eq 0 ] || { echo "make $1 exited $rc"; return 1; }
}

make_demo () {
    make_in_ct demo || return 1
    grep -qx "Every step happened as told." "$WORK/demo.log" || { echo "no 'Every step happened as told.'"; return 1; }
    [ "$(tail -n 1 "$WORK/demo.log")" = "demo finished: all processes stopped" ] \
        || { echo "last line: $(tail -n 1 "$WORK/demo.log")"; return 1; }
    left=$(sanctum_running)
    [ -z "$left" ] || { echo "left running: $left"; return 1; }
}
check "make_demo" make_demo
say "make demo in the fresh container: $(cat "$WORK/demo.time" 2>/dev/null)"

make_test () {
    make_in_ct test || return 1
    tail -n 1 "$WORK/test.log" | grep -Eqx '[0-9]+ passed, 0 failed' || { echo "last line not 'N passed, 0 failed'"; return 1; }
}
if [ "${SANCTUM_FRESH_MAKE_TEST:-}" = 1 ]; then
    check "make_test" make_test
    say "make test in the fresh container: $(cat "$WORK/test.time" 2>/dev/null)"
else
    say "make test in the fresh container not run (long): SANCTUM_FRESH_MAKE_TEST=1 runs it"
fi

summary
