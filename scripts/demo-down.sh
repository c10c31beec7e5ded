#!/usr/bin/env bash
# Tears the docker-compose demo down: stops and removes its containers
# (including `run` ones and orphans) and its network. The volumes stay: the
# relay's (its key, certificate authority and last epoch) and each node's
# (its key and its copy of its rooms' history), so the next
# scripts/demo-up.sh brings the rooms back with their history. The images
# stay too, for a quick next demo-up. Extra arguments go to `down`:
# `--volumes` removes the volumes as well (the next demo-up starts afresh,
# with a new relay key), `--rmi all` the images.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/compose.sh
source scripts/compose.sh
"${compose[@]}" --profile join down --remove-orphans --timeout 20 "$@"
# ca.pem stays valid while the relay's volume does.
for arg in "$@"; do
    case "$arg" in
        -v | --volumes) rm -f target/docker/ca.pem ;;
    esac
done
