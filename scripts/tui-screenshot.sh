#!/usr/bin/env bash
# Renders docs/tui.png (or the path given) from a real session: a relay on
# 127.0.0.1, alice and bob in the full-screen interface (each in its own
# tmux terminal on a private tmux server) and dave in line mode, fed from
# a pipe. They chat and send private messages while the host moves every
# 3 s; then alice's screen is captured with its colours (`capture-pane -e -N`)
# and drawn by scripts/render_ansi_png.py.
#
# Needs tmux, python3 with Pillow (pip install pillow) and a monospace font
# (DejaVu Sans Mono: apt-get install fonts-dejavu-core).
# Env: TUI_SHOT_COLS / TUI_SHOT_ROWS (terminal size, default 100x26),
# TUI_SHOT_PROFILE (cargo profile of the binaries, default release),
# TUI_SHOT_ANSI (also keep the captured screen, escape sequences and all,
# there: render_ansi_png.py can draw it again with other options).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/tui.png}
cols=${TUI_SHOT_COLS:-100}
rows=${TUI_SHOT_ROWS:-26}
profile=${TUI_SHOT_PROFILE:-release}

die() { echo "tui-screenshot: $*" >&2; exit 1; }
command -v tmux >/dev/null || die "needs tmux (apt-get install tmux)"
python3 -c 'import PIL' 2>/dev/null || die "needs Pillow: pip install pillow"

echo "==> building relay-svc and chat-node ($profile)"
cargo build --quiet --profile "$profile" -p relay-svc -p chat-node --bins
case $profile in dev) dir=debug ;; *) dir=$profile ;; esac
bin="${CARGO_TARGET_DIR:-target}/$dir"
bin=$(cd "$bin" && pwd)

work=$(mktemp -d)
socket="chat-tui-shot-$$"
tm() { tmux -f /dev/null -L "$socket" "$@"; }
pids=()
cleanup() {
    exec 3>&- 2>/dev/null || true
    tm kill-server 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$socket"
    rm -rf "$work"
}
trap cleanup EXIT

# Polls alice's screen until it matches an extended regex (10 s at most).
wait_for() {
    local pattern=$1 what=$2 i
    for ((i = 0; i < 200; i++)); do
        tm capture-pane -p -t alice | grep -Eq -- "$pattern" && return 0
        sleep 0.05
    done
    tm capture-pane -p -t alice >&2
    die "timed out waiting for $what"
}
say() { # say SESSION TEXT: types a line in a full-screen client
    tm send-keys -t "$1" -l "$2"
    tm send-keys -t "$1" Enter
    sleep 0.9
}
dave() { # dave TEXT: a line from the line-mode client
    echo "$1" >&3
    sleep 0.9
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
relay="http://127.0.0.1:$port"
echo "==> relay on 127.0.0.1:$port, alice and bob in tmux, dave in line mode"
"$bin/relay-svc" --listen "127.0.0.1:$port" --plaintext --min-users 3 --migration-interval 3s \
    >"$work/relay.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do
    "$bin/relay-svc" health "127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.05
done

tui() { # tui NAME: a full-screen client in its own tmux session
    tm new-session -d -s "$1" -c "$work" -x "$cols" -y "$rows" \
        "$bin/chat-node" "$relay" --name "$1" --listen 127.0.0.1:0 --mode tui
}
tui alice
wait_for 'host: alice' "alice to host the chat"
tui bob
wait_for 'bob joined' "bob to join"
mkfifo "$work/dave.in"
"$bin/chat-node" "$relay" --name dave --listen 127.0.0.1:0 --mode line \
    <"$work/dave.in" >"$work/dave.out" 2>&1 &
pids+=($!)
exec 3>"$work/dave.in"
wait_for ' active' "the chat to activate"

echo "==> chatting while the host moves"
say alice "morning! the chat server is on my laptop right now"
say bob "not for long: it moves to another member every few seconds"
dave "I'm on the plain line interface, same chat"
say bob "/msg alice coffee at 11?"
say alice "/msg bob sure, see you there"
dave "did anything get lost while the host moved?"
say alice "nothing lost, nothing twice: the new host resumes from the log"
say bob "watch the status bar: host and epoch change"
tm send-keys -t alice F2
wait_for 'host: [a-z]+ \(epoch ([4-9]|[1-9][0-9])\)' "a few host moves"
dave "there it goes again"
tm send-keys -t alice -l "/msg dave that's the make-before-break hand"
wait_for 'make-before-break hand$' "alice's half-typed line"

tm capture-pane -e -p -N -t alice >"$work/screen.ansi"
cursor=$(tm display-message -p -t alice '#{cursor_x},#{cursor_y}')
if [ -n "${TUI_SHOT_ANSI:-}" ]; then
    cp "$work/screen.ansi" "$TUI_SHOT_ANSI"
    echo "==> kept the capture in $TUI_SHOT_ANSI (cursor at $cursor)"
fi
mkdir -p "$(dirname "$out")"
python3 scripts/render_ansi_png.py "$work/screen.ansi" "$out" \
    --cols "$cols" --rows "$rows" --cursor "$cursor" --title "alice — chat-node"
echo "==> wrote $out"
