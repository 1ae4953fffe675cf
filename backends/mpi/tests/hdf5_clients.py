"""A real HDF5 client (h5py + NumPy) against distarray's parallel HDF5 files.

    python3 hdf5_clients.py check FILE SEED   # read what distarray wrote, compare exactly
    python3 hdf5_clients.py write FILE SEED   # write a file distarray reads and checks
    python3 hdf5_clients.py check-cyclic FILE  # read what block-cyclic arrays wrote
    python3 hdf5_clients.py write-cyclic FILE  # write a file read into block-cyclic arrays

Values come from the same formula as `src/bin/hdf5_io.rs` (element k, the
row-major global index, of a dataset written with SEED):

* integers: k * 0x9E3779B97F4A7C15 + SEED * 0x1234567 (mod 2**64),
  truncated to the type's width (two's complement);
* float64: (k * 0.37 + SEED) / 3 - 17; float32: that, rounded;
* complex: real part as float, imaginary part -float(k, SEED + 5), each
  rounded to the part's type.

`write` varies the storage on purpose: some datasets big-endian, some
chunked, one gzip-compressed; distarray must read them all exactly.

The `-cyclic` modes use the datasets of `hdf5_io cyclic-write` /
`cyclic-read` (CYCLIC below: 2-D, element [i, j] = i * ncols + j), so an
element a block-cyclic layout put in the wrong place is found, and where.
"""

import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # the Rust test turns this into a clear failure
    print(f"hdf5_clients.py needs h5py and numpy (pip install h5py numpy): {e}")
    sys.exit(3)

SHAPES = {1: (37,), 2: (13, 11), 3: (5, 6, 7)}
TYPES = {
    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
    "f32": np.float32, "f64": np.float64,
    "c64": np.complex64, "c128": np.complex128,
}


def floats(k, seed):
    return (k.astype(np.float64) * 0.37 + float(seed)) / 3.0 - 17.0


def values(tname, shape, seed):
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.uint64)
    dtype = np.dtype(TYPES[tname])
    if dtype.kind in "iu":
        with np.errstate(over="ignore"):
            bits = k * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed * 0x1234567)
        v = bits.astype(dtype)
    elif dtype.kind == "f":
        v = floats(k, seed).astype(dtype)
    else:
        part = np.float32 if dtype == np.complex64 else np.float64
        v = np.empty(n, dtype=dtype)
        v.real = floats(k, seed).astype(part)
        v.imag = (-floats(k, seed + 5)).astype(part)
    return v.reshape(shape)


def check(path, seed):
    count = 0
    with h5py.File(path, "r") as f:
        for tname, t in TYPES.items():
            for ndim, shape in SHAPES.items():
                name = f"{tname}_{ndim}d"
                d = f[name]
                assert d.shape == shape, (name, d.shape, shape)
                assert d.dtype == np.dtype(t), (name, d.dtype, t)
                got = d[...]
                want = values(tname, shape, seed)
                # exact: compare the bytes, not the values
                assert got.tobytes() == want.tobytes(), (name, got.ravel()[:5], want.ravel()[:5])
                count += 1
        assert f.attrs["seed"] == seed and f.attrs["seed"].dtype == np.uint64
        assert f.attrs["scale"] == 0.37 and f.attrs["scale"].dtype == np.float64
        assert f.attrs["offset"] == -17 and f.attrs["offset"].dtype == np.int64
    print(f"h5py check: {count} datasets equal bit for bit, attributes ok")


def write(path, seed):
    count = 0
    with h5py.File(path, "w") as f:
        for i, tname in enumerate(TYPES):
            for ndim, shape in SHAPES.items():
                name = f"{tname}_{ndim}d"
                v = values(tname, shape, seed)
                if (i + ndim) % 3 == 0:  # big-endian storage
                    v = v.astype(v.dtype.newbyteorder(">"))
                if ndim == 3 and tname == "f64":
                    f.create_dataset(name, data=v, chunks=(2, 3, 7), compression="gzip")
                elif ndim == 2 and i % 2 == 0:
                    f.create_dataset(name, data=v, chunks=(4, 5))
                else:
                    f.create_dataset(name, data=v)
                count += 1
        f.attrs["seed"] = np.uint64(seed)
        f.attrs["scale"] = np.float64(0.37)
        f.attrs["offset"] = np.int64(-17)
    print(f"h5py write: {count} datasets")


CYCLIC = {"cyclic_f64": ((13, 11), np.float64), "cyclic_i32": ((10, 9), np.int32),
          "cyclic_u16": ((7, 17), np.uint16)}


def index_values(shape, t):
    """Element [i, j] = i * ncols + j."""
    return np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape).astype(t)


def check_cyclic(path):
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(CYCLIC), list(f.keys())
        for name, (shape, t) in CYCLIC.items():
            d = f[name]
            assert d.shape == shape, (name, d.shape, shape)
            assert d.dtype == np.dtype(t), (name, d.dtype, t)
            got, want = d[...], index_values(shape, t)
            wrong = [tuple(int(i) for i in w) for w in np.argwhere(got != want)]
            assert not wrong, (
                f"{name}: {len(wrong)} elements misplaced, first at {wrong[0]}: "
                f"{got[wrong[0]]} instead of {want[wrong[0]]}"
            )
    print(f"h5py check-cyclic: {len(CYCLIC)} datasets equal")


def write_cyclic(path):
    with h5py.File(path, "w") as f:
        for i, (name, (shape, t)) in enumerate(CYCLIC.items()):
            v = index_values(shape, t)
            if i == 0:
                f.create_dataset(name, data=v, chunks=(4, 5))
            elif i == 1:  # big-endian storage
                f.create_dataset(name, data=v.astype(v.dtype.newbyteorder(">")))
            else:
                f.create_dataset(name, data=v)
    print(f"h5py write-cyclic: {len(CYCLIC)} datasets")


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode in ("check-cyclic", "write-cyclic"):
        {"check-cyclic": check_cyclic, "write-cyclic": write_cyclic}[mode](path)
    else:
        {"check": check, "write": write}[mode](path, int(sys.argv[3]))
