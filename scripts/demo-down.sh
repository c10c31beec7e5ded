#!/usr/bin/env bash
# Tears the docker-compose demo down: stops and removes its containers
# (including `run` ones and orphans), its network and the relay's data
# volume (its key and certificate authority: the next demo-up.sh makes new
# ones), and the copy of ca.pem demo-up.sh made. The images stay, for a
# quick next scripts/demo-up.sh; extra arguments go to `down`, e.g.
# `--rmi all` removes the images too.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/compose.sh
source scripts/compose.sh
"${compose[@]}" --profile join down --volumes --remove-orphans --timeout 20 "$@"
rm -f target/docker/ca.pem
