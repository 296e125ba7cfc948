# tests/deploy/lib.sh — shared by the deployment tests (sourced, not run).
# The container engine set-up a new user needs on this kind of machine, the
# registry-free base image, the Sanctum image built from it once, and the
# `ok` / `not ok` accounting every test prints (`N passed, N failed` last).
#
# Nothing here is skipped for want of a tool: ops/deps.sh installs podman,
# podman-compose, runc, debootstrap and docker-compose, and a check whose
# tool is still missing fails and says which.

ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# Base images are cached here, keyed by month (a new month: a fresh
# debootstrap with that month's security updates).
CACHE=${SANCTUM_DEPLOY_CACHE:-/var/cache/sanctum}
IMAGE=${SANCTUM_IMAGE:-localhost/sanctum:latest}
MIRROR=${SANCTUM_DEBIAN_MIRROR:-}
PASSED=0
FAILED=0
T0=$(date +%s)

say () { echo "# $*"; }

# check NAME COMMAND... — record one result; the command's output is shown
# (indented) on failure only.
check () {
    _name=$1; shift
    _out=$(mktemp)
    if "$@" >"$_out" 2>&1; then
        echo "ok $_name"; PASSED=$((PASSED + 1))
    else
        echo "not ok $_name"; sed 's/^/#   /' "$_out" | tail -n 60; FAILED=$((FAILED + 1))
    fi
    rm -f "$_out"
}

# fail NAME WHY — a check that cannot run counts as failed, never skipped.
fail () {
    echo "not ok $1"; echo "#   $2"; FAILED=$((FAILED + 1))
}

summary () {
    say "$(basename "$0"): $(( $(date +%s) - T0 )) s"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

need_tools () {
    _missing=""
    for _t in "$@"; do command -v "$_t" >/dev/null 2>&1 || _missing="$_missing $_t"; done
    [ -z "$_missing" ] && return 0
    echo "missing:$_missing (ops/deps.sh installs them: run 'make deps' as root)"
    return 1
}

# /etc/containers/containers.conf as this machine needs it: runc (crun
# refuses the hybrid cgroup hierarchy), cgroupfs (no systemd as PID 1 on the
# host), and default ulimits below the VM's hard limits (podman's defaults
# exceed them). Written only when missing, and said so; an existing file is
# left alone.
containers_conf () {
    f=/etc/containers/containers.conf
    [ -f "$f" ] && return 0
    say "writing $f (runtime runc, cgroupfs, default_ulimits): there was none"
    mkdir -p /etc/containers
    cat >"$f" <<'CONF'
# Written by Sanctum's tests/deploy/lib.sh because none existed.
# crun refuses a hybrid cgroup hierarchy; the default ulimits exceed the hard
# limits of some VMs; without systemd as PID 1, cgroupfs manages cgroups.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

# The Debian mirror apt already uses (deb822 or one-line sources).
debian_mirror () {
    [ -n "$MIRROR" ] && { echo "$MIRROR"; return; }
    m=$(sed -n 's/^URIs: *\([^ ]*debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$m" ] || m=$(sed -n 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*debian\)\/\{0,1\} .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
    echo "${m:-http://deb.debian.org/debian}"
}

# The base image with no registry at all: debootstrap --variant=minbase
# bookworm, imported and tagged as the names ops/Dockerfile asks for. The
# tarball is cached per month; the import is skipped when the tags already
# point at that month's import.
base_image () {
    month=$(date +%Y%m)
    tar="$CACHE/debian-bookworm-minbase-$month.tar"
    if [ "$(podman image inspect -f '{{ index .Labels "sanctum.base" }}' docker.io/library/debian:bookworm 2>/dev/null)" = "$month" ] \
       && podman image exists docker.io/library/debian:bookworm-slim; then
        return 0
    fi
    mkdir -p "$CACHE" || return 1
    if [ ! -s "$tar" ]; then
        root=$(mktemp -d "$CACHE/rootfs.XXXXXX") || return 1
        say "debootstrap --variant=minbase bookworm from $(debian_mirror) (once a month)"
        debootstrap --variant=minbase bookworm "$root" "$(debian_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log"; rm -rf "$root"; return 1; }
        # the mirror the host uses, with security updates, as in Debian's images
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$(debian_mirror)" "$(debian_mirror)" \
            >"$root/etc/apt/sources.list"
        rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
        chmod 0755 "$root"      # mktemp's 0700 would become the image's /
        tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" || { rm -rf "$root"; return 1; }
        rm -rf "$root"
        find "$CACHE" -name 'debian-bookworm-minbase-*.tar' ! -name "$(basename "$tar")" -delete
    fi
    say "podman import $tar as docker.io/library/debian:bookworm and :bookworm-slim"
    podman import --change "LABEL sanctum.base=$month" --change 'CMD ["bash"]' \
        "$tar" docker.io/library/debian:bookworm >/dev/null || return 1
    podman tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
}

# The Sanctum image, built once per source tree: the tree's hash of the
# files the Dockerfile copies is the image's label, so a second run on the
# same sources reuses it.
sanctum_image () {
    key=$(cd "$ROOT" && { git ls-files -s Makefile ops proto bus services 2>/dev/null; \
                          git diff HEAD -- Makefile ops proto bus services 2>/dev/null; } | sha256sum | cut -c1-16)
    [ "$(podman image inspect -f '{{ index .Labels "sanctum.src" }}' "$IMAGE" 2>/dev/null)" = "$key" ] && return 0
    say "podman build --pull=never -f ops/Dockerfile -t $IMAGE (sources $key)"
    (cd "$ROOT" && podman build --pull=never --label "sanctum.src=$key" -f ops/Dockerfile -t "$IMAGE" .) \
        >"$CACHE/build.log" 2>&1 || { tail -n 30 "$CACHE/build.log"; return 1; }
    # The images of earlier sources are left untagged (~1.2 GB a build, the
    # build stage and the runtime): remove those, keeping this build's
    # stages (the next build's cache) and any image in use or a parent.
    podman images --filter dangling=true --filter label=sanctum.src \
        --format '{{.ID}} {{index .Labels "sanctum.src"}}' 2>/dev/null |
    while read -r id src; do
        [ "$src" = "$key" ] || podman rmi "$id" >/dev/null 2>&1 || true
    done
}
