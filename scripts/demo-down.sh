#!/usr/bin/env bash
# Tears the docker-compose demo down: stops and removes its containers
# (including `run` ones and orphans) and its network. The images stay, for
# a quick next scripts/demo-up.sh; extra arguments go to `down`, e.g.
# `--rmi all` removes the images too.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/compose.sh
source scripts/compose.sh
"${compose[@]}" --profile join down --remove-orphans --timeout 20 "$@"
