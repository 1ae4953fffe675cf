#!/usr/bin/env bash
# The whole test suite: the core crate (threaded backend, P = 1..8), then the
# MPI backend on Open MPI and on MPICH (1..4 ranks, shared memory and TCP,
# each MPI in its own target directory, with parallel HDF5) and the Lamellar
# backend (1..4 PEs), Zarr I/O and checkpoints on all three.
# Installs the Debian packages the backends need when run as root on a
# machine that lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The I/O tests check files against the real Python clients (zarr, numpy,
# h5py from PyPI).
if ! python3 -c "import zarr, numpy, h5py" >/dev/null 2>&1; then
  echo "== installing the Python clients of the I/O tests: zarr numpy h5py =="
  python3 -m pip install -q zarr numpy h5py \
    || python3 -m pip install -q --break-system-packages zarr numpy h5py
fi

echo "== core crate: unit, integration, doc tests (threaded backend, Zarr I/O) =="
cargo test --all-targets
cargo test --doc --features zarr

need_pkgs=()
command -v mpirun.openmpi >/dev/null 2>&1 || need_pkgs+=(openmpi-bin libopenmpi-dev)
command -v mpiexec.mpich >/dev/null 2>&1 || need_pkgs+=(mpich libmpich-dev)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
ls /usr/lib/x86_64-linux-gnu/libopenblas.so* >/dev/null 2>&1 || need_pkgs+=(libopenblas-dev)
# Parallel HDF5 for each MPI (the MPI backend's `hdf5` feature), h5dump, and
# Python for the h5py client test.
hdf5_dir="/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)/hdf5"
[ -e "$hdf5_dir/openmpi/libhdf5.so" ] || need_pkgs+=(libhdf5-openmpi-dev)
[ -e "$hdf5_dir/mpich/libhdf5.so" ] || need_pkgs+=(libhdf5-mpich-dev)
command -v h5dump >/dev/null 2>&1 || need_pkgs+=(hdf5-tools)
# ScaLAPACK for each MPI (the MPI backend's `scalapack` feature)
libdir="/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
ls "$libdir"/libscalapack-openmpi.so >/dev/null 2>&1 || need_pkgs+=(libscalapack-openmpi-dev)
ls "$libdir"/libscalapack-mpich.so >/dev/null 2>&1 || need_pkgs+=(libscalapack-mpich-dev)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3 python3-pip)
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
# The `hdf5` feature links the parallel HDF5 of the same MPI (HDF5_DIR:
# pkg-config's `hdf5` names only one of Debian's two; build.rs refuses a
# mismatch).
echo "== MPI backend on Open MPI: conformance (1..4 ranks, shared memory and TCP), faults, examples, parallel HDF5 =="
MPICC=mpicc.openmpi MPIEXEC=mpirun.openmpi HDF5_DIR="$hdf5_dir/openmpi" \
  cargo test -p distarray-mpi --features hdf5,fault-injection,scalapack
echo "== MPI backend on MPICH: the same suite under mpiexec.mpich =="
MPICC=mpicc.mpich MPIEXEC=mpiexec.mpich HDF5_DIR="$hdf5_dir/mpich" CARGO_TARGET_DIR=target/mpich \
  cargo test -p distarray-mpi --features hdf5,fault-injection,scalapack

echo "== Lamellar backend: conformance with 1..4 PEs =="
cargo test -p distarray-lamellar
