# Sourced by the demo scripts (from the repository root): sets `compose` to
# the Docker Compose command found here, `docker compose` (the plugin) or the
# standalone `docker-compose`, or stops the calling script with an error
# naming it.
# shellcheck shell=bash

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "$(basename "$0" .sh): needs Docker Compose (docker compose or docker-compose)" >&2
    exit 1
fi
