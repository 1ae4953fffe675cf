#!/usr/bin/env bash
# Zarr write/read bandwidth against the disk's own sequential bandwidth,
# same run: dd (write with conv=fdatasync; read after dropping the page
# cache), then distarray's io_bench on 1 and 2 ranks (threaded backend).
# Usage: bash bench/io/run.sh [GiB] [dir]   (as root for the cold reads)
set -euo pipefail
cd "$(dirname "$0")/../.."
GIB=${1:-2}
DIR=${2:-/var/tmp/distarray-io-bench}
mkdir -p "$DIR"
cargo build --release --features zarr --example io_bench 2>/dev/null
MB=$((GIB * 1024))
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
for round in 1 2; do
  echo "== round $round =="
  drop
  dd if=/dev/zero of="$DIR/dd.bin" bs=1M count=$MB conv=fdatasync 2>&1 | tail -1 | sed 's/^/dd write: /'
  drop
  dd if="$DIR/dd.bin" of=/dev/null bs=1M 2>&1 | tail -1 | sed 's/^/dd read (cold): /'
  rm -f "$DIR/dd.bin"
  for p in 1 2; do
    drop
    target/release/examples/io_bench --gib "$GIB" --ranks $p --dir "$DIR/z" --drop-caches
  done
done
