#!/usr/bin/env bash
# The benchmark (issue 6) in one command: installs what it needs if missing
# (nats-server and redis-server from Debian's packages, and a font for the
# plots), builds in release mode, and runs every scenario. chat-bench starts
# its own nats-server and redis-server on free ports and stops them after.
#
# Output: the table on stdout; docs/bench/results.json, results.md and the
# PNG plots. Extra arguments go to chat-bench, e.g.
#   scripts/bench.sh --quick            # every scenario small (< 1 minute)
#   scripts/bench.sh --scenarios A,B    # only some scenarios
#   scripts/bench.sh --quick --out /tmp/bench   # results elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "bench.sh: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -p chat-bench
# Results go to docs/bench unless the caller says --out.
out=(--out docs/bench)
for arg in "$@"; do
    case "$arg" in --out | --out=*) out=() ;; esac
done
exec target/release/chat-bench "${out[@]}" "$@"
