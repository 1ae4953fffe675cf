#!/usr/bin/env bash
# Runs a command on an emulated network: in a private network namespace
# whose only device is loopback, every TCP packet on lo is held DELAY_US
# microseconds before it is delivered (iptables -> NFQUEUE -> delay.c).
#
#   bench/netem/with-delay.sh DELAY_US COMMAND [ARGS...]
#
# Needs root (namespaces, iptables) and the delay program built from
# bench/netem/delay.c into target/netem/delay (bench/netem/run.sh builds
# it; NETEM_DELAY_BIN names another path). The command sees only the namespace's
# loopback: its traffic never leaves the machine, and the namespace, its
# iptables rule and the delay process are gone when the command ends (also
# on Ctrl-C or an error). The packets go through the queue at a delay of 0
# too, so that the queue's own cost is the same at every delay and drops
# out of a fit of time against delay.
#
# Environment: NETEM_RT=0 to run the delay process without real-time
# priority (by default it runs SCHED_FIFO, where allowed, so that
# busy-polling MPI ranks cannot postpone its wake-ups); NETEM_QUEUE (0) for
# the queue number. Should the delay process die, packets pass undelayed
# (--queue-bypass) rather than being dropped.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 DELAY_US COMMAND [ARGS...]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
delay_bin=${NETEM_DELAY_BIN:-$here/../../target/netem/delay}

if [[ "${NETEM_INSIDE:-}" != 1 ]]; then
    if [[ $(id -u) != 0 ]]; then
        echo "$0: needs root (network namespace, iptables)" >&2
        exit 2
    fi
    [[ -x "$delay_bin" ]] || { echo "$0: build $delay_bin first (bench/netem/run.sh does)" >&2; exit 2; }
    # A new network namespace (and a mount namespace, so that nothing of the
    # caller's mounts changes); everything below runs inside it.
    exec unshare --net --mount env NETEM_INSIDE=1 "$0" "$@"
fi

delay_us=$1
shift
queue=${NETEM_QUEUE:-0}

delay_pid=
cleanup() {
    if [[ -n "$delay_pid" ]]; then
        kill -TERM "$delay_pid" 2>/dev/null || true
        wait "$delay_pid" 2>/dev/null || true
    fi
    iptables -D OUTPUT -o lo -p tcp -j NFQUEUE --queue-num "$queue" --queue-bypass 2>/dev/null || true
    ip6tables -D OUTPUT -o lo -p tcp -j NFQUEUE --queue-num "$queue" --queue-bypass 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip link set lo up

# Start the delay process and wait until it has bound the queue: packets
# sent to a queue nobody listens on are dropped.
ready=$(mktemp)
if [[ "${NETEM_RT:-1}" == 1 ]] && chrt -f 50 true 2>/dev/null; then
    chrt -f 50 "$delay_bin" "$queue" "$delay_us" >"$ready" &
else
    "$delay_bin" "$queue" "$delay_us" >"$ready" &
fi
delay_pid=$!
for _ in $(seq 100); do
    grep -q ready "$ready" && break
    kill -0 "$delay_pid" 2>/dev/null || { echo "$0: delay process failed" >&2; exit 1; }
    sleep 0.05
done
grep -q ready "$ready" || { echo "$0: delay process did not start" >&2; exit 1; }
rm -f "$ready"

iptables -A OUTPUT -o lo -p tcp -j NFQUEUE --queue-num "$queue" --queue-bypass
ip6tables -A OUTPUT -o lo -p tcp -j NFQUEUE --queue-num "$queue" --queue-bypass

status=0
"$@" || status=$?
exit "$status"
