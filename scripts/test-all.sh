#!/usr/bin/env bash
# The whole test suite: the core crate (threaded backend, P = 1..8), then the
# MPI backend on Open MPI and on MPICH (1..4 ranks, shared memory and TCP,
# each MPI in its own target directory) and the Lamellar backend (1..4 PEs).
# Installs the Debian packages the backends need when run as root on a
# machine that lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== core crate: unit, integration, doc tests (threaded backend) =="
cargo test --all-targets
cargo test --doc

need_pkgs=()
command -v mpirun.openmpi >/dev/null 2>&1 || need_pkgs+=(openmpi-bin libopenmpi-dev)
command -v mpiexec.mpich >/dev/null 2>&1 || need_pkgs+=(mpich libmpich-dev)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
ls /usr/lib/x86_64-linux-gnu/libopenblas.so* >/dev/null 2>&1 || need_pkgs+=(libopenblas-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need_pkgs[*]} =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing packages: ${need_pkgs[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi

echo "== core crate with the CBLAS kernel (system OpenBLAS) =="
cargo test --features openblas --test linalg --test conformance_threaded --test examples

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Each MPI library builds in its own target directory (cargo does not
# rebuild the `mpi` crate when MPICC changes). Open MPI: the default one.
echo "== MPI backend on Open MPI: conformance (1..4 ranks, shared memory and TCP), faults, examples =="
MPICC=mpicc.openmpi MPIEXEC=mpirun.openmpi cargo test -p distarray-mpi
echo "== MPI backend on MPICH: the same suite under mpiexec.mpich =="
MPICC=mpicc.mpich MPIEXEC=mpiexec.mpich CARGO_TARGET_DIR=target/mpich cargo test -p distarray-mpi

echo "== Lamellar backend: conformance with 1..4 PEs =="
cargo test -p distarray-lamellar
