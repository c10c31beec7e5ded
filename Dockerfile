# Images of the migrating chat, built offline: nothing is pulled. Each stage
# holds one statically linked, debug-stripped binary that
# scripts/demo-up.sh (or tests/tests/docker.rs) built and put in
# target/docker/ first:
#
#   docker build --target relay-svc -t migrating-chat/relay-svc .
#   docker build --target chat-node -t migrating-chat/chat-node .
#
# A scratch image has no shell: healthchecks run the binaries' own `health`
# subcommand (grpc.health.v1 Check), in exec form.

# /data (owned by the unprivileged user) keeps the relay's key, its TLS
# authority (ca.pem, ca.key) and its last epoch, and a node's key and
# pinned relay key, across container restarts. The relay runs as a user of
# its own (65532), nodes as nobody (65534): a node given the relay's data
# volume read-only, for ca.pem (0644), cannot read ca.key or relay.key
# (0600).
FROM scratch AS relay-svc
COPY target/docker/relay-svc /relay-svc
COPY --chown=65532:65532 target/docker/data /data
ENV RELAY_DATA_DIR=/data
USER 65532:65532
EXPOSE 5000
# Over TLS, as the relay serves by default; its certificate names 127.0.0.1.
HEALTHCHECK --interval=5s --timeout=4s --retries=3 CMD ["/relay-svc", "health", "--ca", "/data/ca.pem", "127.0.0.1:5000"]
ENTRYPOINT ["/relay-svc"]

# chat-node listens on an ephemeral port unless told otherwise: the demo and
# the tests use --listen 0.0.0.0:7000 and set their healthcheck to match.
FROM scratch AS chat-node
COPY target/docker/chat-node /chat-node
COPY --chown=65534:65534 target/docker/data /data
ENV CHAT_DATA_DIR=/data
USER 65534:65534
EXPOSE 7000
ENTRYPOINT ["/chat-node"]
