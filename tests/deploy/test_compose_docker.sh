#!/bin/sh
# test_compose_docker.sh — test_compose.sh with Debian's docker-compose 1.29
# in place of podman-compose: the unchanged compose file, its instructions
# and every check, through the Docker API that podman serves on a socket of
# the test's own (no Docker engine here). Compose v2 is not packaged for
# Debian 12, so it is not run.
COMPOSE_TOOL=docker-compose exec sh "$(dirname "$0")/test_compose.sh"
