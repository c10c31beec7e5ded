#!/usr/bin/env bash
# Tears the docker-compose demo down: stops and removes its containers
# (including `run` ones and orphans) and its network. The images stay, for
# a quick next scripts/demo-up.sh; extra arguments go to `down`, e.g.
# `--rmi all` removes the images too.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "demo-down: needs Docker Compose (docker compose or docker-compose)" >&2
    exit 1
fi
"${compose[@]}" --profile join down --remove-orphans --timeout 20 "$@"
