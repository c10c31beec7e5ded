#!/usr/bin/env bash
# Brings the docker-compose demo up from a fresh clone, offline: builds
# statically linked relay-svc and chat-node, stages them (debug info
# stripped) in target/docker/, builds the FROM-scratch images
# migrating-chat/relay-svc and migrating-chat/chat-node, starts
# docker-compose.yml (one relay, three bot nodes, every connection over
# TLS) and copies the relay's certificate authority out of its volume to
# target/docker/ca.pem, for grpcurl. Extra arguments go to `compose up -d`
# (e.g. a service name). scripts/demo-down.sh undoes it.
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
# The images' /data: nodes read the relay's ca.pem in it (0755 whatever
# the umask).
mkdir -p target/docker/data && touch target/docker/data/.keep
chmod 0755 target/docker/data
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

# The relay made its authority on first start (it is healthy only once it
# serves TLS): copy ca.pem out of its volume for grpcurl on this machine.
ca=target/docker/ca.pem
relay=$("${compose[@]}" ps -q relay)
if [ -n "$relay" ] && docker cp "$relay:/data/ca.pem" "$ca" 2>/dev/null; then
    echo "    the relay's certificate authority: $ca"
else
    echo "demo-up: could not copy ca.pem from the relay yet; later: docker cp \$(${compose[*]} ps -q relay):/data/ca.pem $ca" >&2
fi

c="${compose[*]}"
relay_port=${DEMO_RELAY_PORT:-5000}
cat <<TEXT

The demo is up: a relay and three bots (node1..node3), every connection
over TLS; the host moves every ${RELAY_MIGRATION_INTERVAL:-30s}.

  follow the chat:   $c logs -f
  join it yourself:  $c run --rm --name alice join --name alice --advertise alice:7000 --room lobby --room ops
                     (full-screen; add --mode line for plain lines; /quit leaves)
  inspect:           grpcurl -cacert $ca 127.0.0.1:$relay_port relay.v1.RelayService/CurrentHost
                     grpcurl -cacert $ca -d '{"name":"node1"}' 127.0.0.1:$relay_port relay.v1.RelayService/LookupMember
                     grpcurl -cacert $ca -servername NODE_ID.node.invalid \\
                       -d '{"service":"chat.v1.ChatService"}' 127.0.0.1:${DEMO_NODE1_PORT:-7001} grpc.health.v1.Health/Check
                     (NODE_ID: node1's nodeId from LookupMember; node2 and node3
                     are on ports ${DEMO_NODE2_PORT:-7002} and ${DEMO_NODE3_PORT:-7003})
  status:            $c ps
  tear down:         scripts/demo-down.sh
TEXT
