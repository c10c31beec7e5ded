#!/usr/bin/env bash
# Brings the docker-compose demo up from a fresh clone, offline: builds
# statically linked relay-svc and chat-node, stages them (debug info
# stripped) in target/docker/, builds the FROM-scratch images
# migrating-chat/relay-svc and migrating-chat/chat-node, and starts
# docker-compose.yml (one relay, three bot nodes). Extra arguments go to
# `compose up -d` (e.g. a service name). scripts/demo-down.sh undoes it.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/compose.sh
source scripts/compose.sh
docker info >/dev/null 2>&1 || { echo "demo-up: the Docker engine is not reachable" >&2; exit 1; }

# Static binaries. The explicit --target keeps build scripts and proc macros
# dynamically linked: only the two binaries get +crt-static.
triple=$(rustc -vV | sed -n 's/^host: //p')
echo "==> building static binaries for $triple"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$triple" -p relay-svc -p chat-node --bins
out="${CARGO_TARGET_DIR:-target}/$triple/release"
mkdir -p target/docker/data && touch target/docker/data/.keep
for bin in relay-svc chat-node; do
    strip --strip-debug -o "target/docker/$bin" "$out/$bin"
done

echo "==> building images (FROM scratch, nothing is pulled)"
for bin in relay-svc chat-node; do
    docker build --quiet --target "$bin" -t "migrating-chat/$bin:latest" . >/dev/null
done
docker image ls --filter 'reference=migrating-chat/*:latest' \
    --format '    {{.Repository}}:{{.Tag}}  {{.Size}}'

echo "==> starting the demo"
"${compose[@]}" up -d --no-build --remove-orphans "$@"

c="${compose[*]}"
cat <<TEXT

The demo is up: a relay and three bots (node1..node3); the host moves every
${RELAY_MIGRATION_INTERVAL:-30s}.

  follow the chat:   $c logs -f
  join it yourself:  $c run --rm --name alice join --name alice --advertise alice:7000
                     (full-screen; add --mode line for plain lines; /quit leaves)
  inspect:           grpcurl -plaintext 127.0.0.1:${DEMO_RELAY_PORT:-5000} relay.v1.RelayService/CurrentHost
                     grpcurl -plaintext -d '{"service":"chat.v1.ChatService"}' 127.0.0.1:${DEMO_NODE1_PORT:-7001} grpc.health.v1.Health/Check
                     (node2 and node3 are on ports ${DEMO_NODE2_PORT:-7002} and ${DEMO_NODE3_PORT:-7003})
  status:            $c ps
  tear down:         scripts/demo-down.sh
TEXT
