#!/bin/sh
# A shell client for the cyclegand daemon's control socket, with socat (docs/PROTOCOL.md).
#
#   examples/client.sh ping
#   examples/client.sh status
#   examples/client.sh directions
#   examples/client.sh translate IN OUT DIRECTION     (absolute or relative paths; the daemon
#                                                      reads and writes them with your permissions)
#   examples/client.sh subscribe                      (follow events; Ctrl-C to stop)
#
# The socket: $CYCLEGAND_SOCKET, else $XDG_RUNTIME_DIR/cyclegand.sock. Replies are printed as the
# daemon sends them (one JSON object per line); pipe them to `jq` for pretty output.
set -eu

SOCKET=${CYCLEGAND_SOCKET:-${XDG_RUNTIME_DIR:-/run/cyclegand}/cyclegand.sock}
command -v socat >/dev/null || { echo "client.sh: needs socat (apt-get install socat)" >&2; exit 1; }

# JSON string escaping for paths (backslash and double quote).
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$(pwd)" "$1" ;; esac; }
send() { printf '%s\n' "$1" | socat - "UNIX-CONNECT:$SOCKET"; }

case ${1:-} in
ping | version | status | models | directions | jobs | reload | shutdown)
    send "{\"id\":1,\"cmd\":\"$1\"}"
    ;;
translate)
    [ $# -eq 4 ] || { echo "usage: $0 translate IN OUT DIRECTION" >&2; exit 64; }
    send "{\"id\":1,\"cmd\":\"translate\",\"input\":$(quote "$(absolute "$2")"),\"output\":$(quote "$(absolute "$3")"),\"direction\":$(quote "$4")}"
    ;;
cancel)
    send "{\"id\":1,\"cmd\":\"cancel\",\"job\":$(quote "$2")}"
    ;;
subscribe)
    # Keep our side open: the subscription ends when the client closes its side.
    { printf '{"id":"events","cmd":"subscribe"}\n'; exec sleep 2147483647; } | socat - "UNIX-CONNECT:$SOCKET"
    ;;
*)
    sed -n '3,12p' "$0" >&2
    exit 64
    ;;
esac
