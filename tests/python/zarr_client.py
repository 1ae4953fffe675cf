"""The real Zarr client for distarray's interoperability tests.

    python3 zarr_client.py check DIR   # read what distarray wrote
    python3 zarr_client.py write DIR   # write arrays for distarray to read
    python3 zarr_client.py check-cyclic DIR  # read what block-cyclic arrays wrote
    python3 zarr_client.py write-cyclic DIR  # write arrays read into block-cyclic ones

`check` reads DIR/manifest.json (a list of {"name", "dtype", "shape"}),
opens each DIR/NAME.zarr with zarr-python, and compares dtype, shape and
the raw bytes with DIR/NAME.bin (what distarray's to_vec gave). It also
opens the checkpoint group DIR/ckpt/step-3 if present and checks its
attributes. `write` makes arrays with numpy (seeded), stores them with
zarr-python (default codecs, Zarr v3 and v2, unaligned chunks) and writes
the expected raw bytes and a manifest for distarray to check.

The `-cyclic` modes take their list of arrays from DIR/manifest.json,
written by the Rust test (a list of {"name", "dtype", "shape"}, and for
`write-cyclic` also "chunks" and "format"); every array is 2-D and element
[i, j] is i * ncols + j in its dtype, so an element the block-cyclic
layout put in the wrong place is found, and where. `check-cyclic` also
checks the checkpoint group DIR/ckpt/cyclic if the manifest names it
(the entry with "checkpoint": true).
"""
import json
import sys

import numpy as np
import zarr


def check(d):
    manifest = json.load(open(f"{d}/manifest.json"))
    for entry in manifest:
        a = zarr.open_array(f"{d}/{entry['name']}.zarr", mode="r")
        v = a[...]
        assert str(v.dtype) == entry["dtype"], (entry, v.dtype)
        assert list(v.shape) == entry["shape"], (entry, v.shape)
        want = open(f"{d}/{entry['name']}.bin", "rb").read()
        got = np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes()
        assert got == want, f"{entry['name']}: values differ"
    try:
        g = zarr.open_group(f"{d}/ckpt/step-3", mode="r")
    except Exception:  # no checkpoint in this directory
        g = None
    if g is not None:
        m = g.attrs["distarray_checkpoint"]
        assert m["committed"] is True and m["scalars"]["step"] == {"i64": 3}, m
        u = g["u"][...]
        want = open(f"{d}/ckpt_u.bin", "rb").read()
        assert u.tobytes() == want, "checkpoint array differs"
    print(f"checked {len(manifest)} arrays")


def write(d):
    rng = np.random.default_rng(20261204)
    out = []

    def put(name, values, chunks, fmt=3, **kw):
        a = zarr.create_array(
            store=f"{d}/{name}.zarr",
            shape=values.shape,
            chunks=chunks,
            dtype=values.dtype,
            zarr_format=fmt,
            **kw,
        )
        a[...] = values
        open(f"{d}/{name}.bin", "wb").write(values.astype(values.dtype.newbyteorder("<")).tobytes())
        out.append({"name": name, "dtype": str(values.dtype), "shape": list(values.shape)})

    put("f64_zstd", rng.standard_normal((13, 9)), (4, 5))
    put("f32_raw", rng.standard_normal((7, 6, 5)).astype(np.float32), (3, 2, 5), compressors=None)
    put("i16", rng.integers(-30000, 30000, size=(41,), dtype=np.int16), (8,))
    put("u64", rng.integers(0, 2**63, size=(6, 7), dtype=np.uint64), (6, 2))
    c = rng.standard_normal((5, 8)) + 1j * rng.standard_normal((5, 8))
    put("c128", c, (2, 3))
    put("c64", c.astype(np.complex64), (5, 8))
    put("f64_crc", rng.standard_normal((10, 4)), (3, 4), compressors=zarr.codecs.Crc32cCodec())
    put("i32_gzip", rng.integers(-1000, 1000, size=(9, 9), dtype=np.int32), (4, 4),
        compressors=zarr.codecs.GzipCodec(level=5))
    put("f64_v2", rng.standard_normal((11, 3)), (5, 3), fmt=2)
    # a sparse array: chunks never written read as the fill value (0)
    a = zarr.create_array(store=f"{d}/sparse.zarr", shape=(8, 8), chunks=(4, 4), dtype="f8", fill_value=0.0)
    v = np.zeros((8, 8))
    v[5, 6] = 2.5
    a[5, 6] = 2.5
    open(f"{d}/sparse.bin", "wb").write(v.tobytes())
    out.append({"name": "sparse", "dtype": "float64", "shape": [8, 8]})
    json.dump(out, open(f"{d}/manifest.json", "w"))
    print(f"wrote {len(out)} arrays")


def index_values(entry):
    """Element [i, j] = i * ncols + j, in the entry's dtype."""
    rows, cols = entry["shape"]
    return np.arange(rows * cols, dtype=np.int64).reshape(rows, cols).astype(entry["dtype"])


def assert_index_values(name, v, entry):
    assert str(v.dtype) == entry["dtype"], (name, v.dtype, entry)
    assert list(v.shape) == entry["shape"], (name, v.shape, entry)
    want = index_values(entry)
    wrong = [tuple(int(i) for i in w) for w in np.argwhere(v != want)]
    assert not wrong, (
        f"{name}: {len(wrong)} elements misplaced, first at {wrong[0]}: "
        f"{v[wrong[0]]} instead of {want[wrong[0]]}"
    )


def check_cyclic(d):
    manifest = json.load(open(f"{d}/manifest.json"))
    for entry in manifest:
        if entry.get("checkpoint"):
            g = zarr.open_group(f"{d}/ckpt/cyclic", mode="r")
            assert g.attrs["distarray_checkpoint"]["committed"] is True
            v = g[entry["name"]][...]
        else:
            v = zarr.open_array(f"{d}/{entry['name']}.zarr", mode="r")[...]
        assert_index_values(entry["name"], v, entry)
    print(f"checked {len(manifest)} block-cyclic arrays")


def write_cyclic(d):
    manifest = json.load(open(f"{d}/manifest.json"))
    for entry in manifest:
        v = index_values(entry)
        a = zarr.create_array(
            store=f"{d}/{entry['name']}.zarr",
            shape=v.shape,
            chunks=tuple(entry["chunks"]),
            dtype=v.dtype,
            zarr_format=entry["format"],
        )
        a[...] = v
        # read back through zarr-python: what distarray must find
        assert_index_values(entry["name"], a[...], entry)
    print(f"wrote {len(manifest)} arrays for block-cyclic reads")


if __name__ == "__main__":
    {
        "check": check,
        "write": write,
        "check-cyclic": check_cyclic,
        "write-cyclic": write_cyclic,
    }[sys.argv[1]](sys.argv[2])
