#!/bin/sh
# Install the Debian packages Sanctum needs, only those missing.
# Non-interactive; a no-op when everything is present.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev \
 libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev lmdb-utils libsodium-dev \
 libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libcmocka-dev libinih-dev libyaml-dev \
 python3 python3-zmq python3-msgpack python3-yaml procps openssl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
