#!/usr/bin/env bash
# distarray-lamellar on Lamellar's network transport (the `network` feature:
# libfabric lamellae, vendored OpenPMIx), 2 PEs over libfabric's `tcp`
# provider, launched by Open MPI's `mpirun` as the PMIx server.
#
#   scripts/lamellar-network.sh [--no-build] [loopback|netns|both] [-- PROGRAM ARGS...]
#
# Modes:
#   loopback  both PEs on this host, libfabric domain `lo`;
#   netns     two network namespaces joined by a veth pair, treated as two
#             hosts (one PE in each; needs root: `ip netns`, `unshare`);
#   both      (default) loopback, then netns.
# PROGRAM defaults to the conformance binary (the whole suite); e.g.
# `-- target/release/examples/lamellar_bench --quick` runs the bench instead.
#
# Not part of .ci/run: the first build of the feature takes 35-40 minutes on
# 2 cores (libfabric, OpenPMIx, libevent are built from vendored sources).
#
# Environment:
#   TARGET_DIR       cargo target directory (default: <repo>/target); passed
#                    as --target-dir, never exported as CARGO_TARGET_DIR
#                    (Lamellar's nested cargo would deadlock on it)
#   RUN_TIMEOUT      seconds per run before it is killed (default 900)
#   KEEP_NS=1        leave the namespaces up after the netns mode
#   NS_CPUS=mpirun   netns mode: let mpirun bind the PEs (both to CPU 0; the
#                    slow case, see below) instead of one CPU per namespace
#   MPIRUN_ARGS      extra arguments for mpirun (e.g. MCA options)
#   EXTRA_ENV        extra VAR names to forward to the PEs with `-x`
#                    (e.g. "FI_TCP_NODELAY FI_LOG_LEVEL")
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

build=1
mode=both
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    loopback|netns|both) mode=$1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

T="${TARGET_DIR:-$root/target}"
if [ "$build" = 1 ]; then
  echo "== building distarray-lamellar --features network (release) =="
  # With libssl-dev, libevent links the system OpenSSL instead of building
  # one (saves several minutes of a cold build).
  multiarch="$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
  if [ -z "${OPENSSL_NO_VENDOR:-}" ] && [ -e "/usr/lib/$multiarch/libssl.a" ] \
    && [ -e /usr/include/openssl/ssl.h ]; then
    export OPENSSL_NO_VENDOR=1 OPENSSL_LIB_DIR="/usr/lib/$multiarch" OPENSSL_INCLUDE_DIR=/usr/include
  fi
  CARGO_INCREMENTAL=0 nice -n 15 cargo build --release -p distarray-lamellar \
    --features network --bins --examples --target-dir "$T"
fi
if [ $# -gt 0 ]; then
  prog=("$@")
else
  prog=("$T/release/distarray-lamellar-conformance")
fi
prog[0]="$(readlink -f "${prog[0]}")"
[ -x "${prog[0]}" ] || { echo "not an executable: ${prog[0]}" >&2; exit 2; }

command -v mpirun.openmpi >/dev/null || { echo "needs mpirun.openmpi (apt install openmpi-bin)" >&2; exit 2; }
timeout_s="${RUN_TIMEOUT:-900}"
# Open MPI refuses root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LAMELLAR_BACKEND=libfabric LAMELLAR_ROFI_PROVIDER=tcp
# Two PEs on two cores: Lamellar's default (one worker per core) would
# oversubscribe; a single worker thread per PE.
export LAMELLAR_THREADS="${LAMELLAR_THREADS:-1}"
# Lamellar's default heap is 4 GB per PE; it adds pools on demand.
export LAMELLAR_HEAP_SIZE="${LAMELLAR_HEAP_SIZE:-268435456}"
fwd=(-x LAMELLAR_BACKEND -x LAMELLAR_ROFI_PROVIDER -x LAMELLAR_ROFI_DOMAIN -x LAMELLAR_THREADS
  -x LAMELLAR_HEAP_SIZE)
for v in ${EXTRA_ENV:-}; do fwd+=(-x "$v"); done
# shellcheck disable=SC2206
extra_mpirun=(${MPIRUN_ARGS:-})

run_loopback() {
  echo "== loopback: 2 PEs, libfabric tcp on lo =="
  LAMELLAR_ROFI_DOMAIN=lo timeout -k 10 "$timeout_s" \
    mpirun.openmpi -np 2 "${fwd[@]}" "${extra_mpirun[@]}" "${prog[@]}"
}

# --- two namespaces as two hosts -------------------------------------------
NS_A=dalam-a
NS_B=dalam-b
IP_A=10.200.7.1
IP_B=10.200.7.2
# Both ends of the veth pair carry the same name (each in its namespace), so
# one LAMELLAR_ROFI_DOMAIN serves both PEs.
IFACE=dalam0
tmp=""

ns_down() {
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  ip link del dalam-va 2>/dev/null || true
}

ns_up() {
  ns_down
  ip netns add "$NS_A"
  ip netns add "$NS_B"
  ip link add dalam-va type veth peer name dalam-vb
  ip link set dalam-va netns "$NS_A"
  ip link set dalam-vb netns "$NS_B"
  ip -n "$NS_A" link set dalam-va name "$IFACE"
  ip -n "$NS_B" link set dalam-vb name "$IFACE"
  ip -n "$NS_A" addr add "$IP_A/24" dev "$IFACE"
  ip -n "$NS_B" addr add "$IP_B/24" dev "$IFACE"
  for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$IFACE" up
  done
}

cleanup() {
  [ -n "$tmp" ] && rm -rf "$tmp"
  if [ "${KEEP_NS:-0}" != 1 ]; then ns_down; fi
}

run_netns() {
  echo "== netns: 2 PEs in namespaces $NS_A ($IP_A) and $NS_B ($IP_B), libfabric tcp on $IFACE =="
  [ "$(id -u)" = 0 ] || { echo "the netns mode needs root" >&2; return 2; }
  trap cleanup EXIT
  ns_up
  tmp="$(mktemp -d)"
  # Each "host" gets its own CPU. Open MPI binds each host's first rank to
  # that host's first core, CPU 0 here for both "hosts": both PEs would share
  # CPU 0, and a PE sleeping in a blocking get waits for a target polling in
  # Lamellar's barrier a scheduler time slice at a time (about 4 ms per get;
  # see BENCHMARKS-lamellar.md). So no binding by mpirun (`--bind-to none`);
  # the PEs inherit the CPU of their namespace's launcher (taskset: A on
  # CPU 0, B on CPU 1).
  # NS_CPUS=mpirun keeps mpirun's own binding (both PEs on CPU 0: only to
  # reproduce the slow case).
  cpu_a="" cpu_b=""
  if [ "${NS_CPUS:-split}" != mpirun ]; then
    extra_mpirun+=(--bind-to none)
    if [ "$(nproc)" -ge 2 ]; then
      cpu_a="taskset -c 0" cpu_b="taskset -c 1"
    fi
  fi
  # mpirun's "ssh" to host B: run the command in namespace B, under its own
  # host name (Open MPI's session directories are named after the host).
  cat >"$tmp/ns-agent" <<EOF
#!/bin/sh
# called as: ns-agent [options] HOST COMMAND...
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
shift
exec $cpu_b ip netns exec $NS_B unshare --uts sh -c "hostname $NS_B; \$*"
EOF
  chmod +x "$tmp/ns-agent"
  # mpirun itself (and PE 0) in namespace A, also under its own host name.
  LAMELLAR_ROFI_DOMAIN=$IFACE timeout -k 10 "$timeout_s" $cpu_a \
    ip netns exec "$NS_A" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$NS_A" \
    mpirun.openmpi -np 2 --host "$IP_A:1,$IP_B:1" \
      --mca plm_rsh_agent "$tmp/ns-agent" \
      --mca oob_tcp_if_include "$IP_A/24" \
      "${fwd[@]}" "${extra_mpirun[@]}" "${prog[@]}"
}

status=0
case "$mode" in
  loopback) run_loopback || status=$? ;;
  netns) run_netns || status=$? ;;
  both)
    run_loopback || status=$?
    echo "loopback: exit status $status"
    s2=0
    run_netns || s2=$?
    echo "netns: exit status $s2"
    [ "$status" = 0 ] && status=$s2
    ;;
esac
exit "$status"
