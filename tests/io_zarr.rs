//! Zarr I/O and checkpoints on the threaded backend: the conformance
//! checks at P = 1..5, round trips across rank counts and partitions for
//! every element type, zarr-python reading and writing files (also of
//! block-cyclic arrays), and the I/O errors a user makes.

use distarray::io::{
    read_zarr, read_zarr_into, write_zarr_with, Checkpoint, CheckpointWriter, ZarrOptions,
};
use distarray::{
    conformance, threaded, Complex32, Complex64, DistArray, Element, Error, OneSidedComm,
};
use distarray_apps::heat as heat_app;
use rstest::rstest;
use std::path::{Path, PathBuf};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distarray-io-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[rstest]
fn io_conformance_checks(#[values(1, 2, 3, 4, 5)] p: usize) {
    threaded::run(p, |comm| {
        for (name, check) in conformance::checks() {
            if name.starts_with("io_") {
                check(&comm);
            }
        }
    })
    .unwrap_or_else(|e| panic!("P = {p}: {e}"));
}

/// A value of every element type from a global flat index (exact in every
/// type, so comparisons are bitwise).
trait FromIndex: Element {
    fn at(k: usize) -> Self;
}
macro_rules! from_index_int {
    ($($t:ty),*) => {$(
        impl FromIndex for $t {
            fn at(k: usize) -> Self { ((k * 7919 + 13) % 251) as $t }
        }
    )*};
}
from_index_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);
impl FromIndex for f32 {
    fn at(k: usize) -> Self {
        (k as f32) * 0.375 - 11.0
    }
}
impl FromIndex for f64 {
    fn at(k: usize) -> Self {
        (k as f64) * 0.1 - 3.0
    }
}
impl FromIndex for Complex32 {
    fn at(k: usize) -> Self {
        Complex32::new(k as f32 * 0.5, -(k as f32) / 16.0)
    }
}
impl FromIndex for Complex64 {
    fn at(k: usize) -> Self {
        Complex64::new(k as f64 / 3.0, -(k as f64) * 1e-300)
    }
}

fn flat<const N: usize>(shape: [usize; N], idx: [usize; N]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, n)| acc * n + i)
}

/// Written on 4 ranks (2 x 2-ish grid), read on 3 ranks with another grid
/// and on 1 rank: the same bits.
fn across_rank_counts<T: FromIndex, const N: usize>(
    dir: &Path,
    shape: [usize; N],
    grid4: [usize; N],
    grid3: [usize; N],
    chunks: [usize; N],
) {
    let path = dir.join(format!(
        "{}-{N}d.zarr",
        std::any::type_name::<T>().replace("::", "_")
    ));
    threaded::run_ok(4, |comm| {
        let a = DistArray::<T, _, N>::with_grid(comm.clone(), grid4, shape)?;
        a.with_local_mut(|mut l| l.fill_with(|i| T::at(flat(shape, i))))?;
        write_zarr_with(&a, &path, &ZarrOptions::default().chunk_shape(chunks))
    })
    .unwrap();
    for (p, grid) in [(3, grid3), (1, [1; N])] {
        threaded::run_ok(p, |comm| {
            let b = DistArray::<T, _, N>::with_grid(comm.clone(), grid, shape)?;
            read_zarr_into(&b, &path)?;
            b.with_local(|l| {
                for (i, v) in l.iter_global() {
                    assert_eq!(
                        bytemuck::bytes_of(&v),
                        bytemuck::bytes_of(&T::at(flat(shape, i))),
                        "{i:?} at P = {p}"
                    );
                }
            })
        })
        .unwrap();
    }
}

#[test]
fn every_element_type_across_rank_counts_and_grids() {
    let dir = scratch("types");
    macro_rules! all {
        ($($t:ty),*) => {$(
            across_rank_counts::<$t, 1>(&dir, [29], [4], [3], [5]);
            across_rank_counts::<$t, 2>(&dir, [9, 10], [2, 2], [1, 3], [4, 3]);
            across_rank_counts::<$t, 3>(&dir, [5, 4, 6], [2, 1, 2], [3, 1, 1], [2, 3, 4]);
        )*};
    }
    all!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64, Complex32, Complex64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_element_type_is_named_in_the_error() {
    let dir = scratch("names");
    let path = dir.join("a.zarr");
    threaded::run_ok(2, |comm| {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [4])?;
        distarray::io::write_zarr(&a, &path)
    })
    .unwrap();
    let errs = threaded::run(2, |comm| read_zarr::<i32, _, 1>(comm, &path).map(|_| ())).unwrap();
    match &errs[0] {
        Err(Error::Io { message, .. }) => {
            assert!(
                message.contains("float64") && message.contains("int32"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(errs[1], Err(Error::Io { .. })),
        "every rank read the metadata itself"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_path_where_nothing_can_be_written_is_an_error_on_every_rank() {
    // root ignores permission bits, so use a path below a regular file
    let dir = scratch("perm");
    std::fs::write(dir.join("file"), b"x").unwrap();
    let errs = threaded::run(3, |comm| {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [4])?;
        distarray::io::write_zarr(&a, dir.join("file").join("a.zarr"))
    })
    .unwrap();
    assert!(matches!(errs[0], Err(Error::Io { .. })), "{:?}", errs[0]);
    assert!(
        errs[1..]
            .iter()
            .all(|e| matches!(e, Err(Error::PeerFailed { rank: 0, .. }))),
        "{errs:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_restart_on_another_rank_count() {
    let root = scratch("restart");
    threaded::run_ok(4, |comm| {
        let u =
            DistArray::<f64, _, 2>::from_fn(comm.clone(), [10, 8], |[i, j]| f64::at(i * 8 + j))?;
        let mut ck = CheckpointWriter::create(&comm, &root, "a")?;
        ck.write("u", &u)?;
        ck.set_scalar("step", 5i64);
        ck.commit()?;
        let mut ck = CheckpointWriter::create(&comm, &root, "b")?;
        u.map_local(|v| v * 2.0)?;
        ck.write("u", &u)?;
        ck.set_scalar("step", 6i64);
        ck.commit()
    })
    .unwrap();
    threaded::run_ok(3, |comm| {
        assert_eq!(Checkpoint::list(&comm, &root)?, vec!["a", "b"]);
        let ck = Checkpoint::open_latest(&comm, &root)?;
        assert_eq!(ck.scalar_i64("step")?, 6);
        assert_eq!(ck.written_by_ranks(), 4);
        let u = DistArray::<f64, _, 2>::with_grid(comm.clone(), [3, 1], [10, 8])?;
        ck.read_into("u", &u)?;
        u.with_local(|l| {
            for ([i, j], v) in l.iter_global() {
                assert_eq!(v.to_bits(), (f64::at(i * 8 + j) * 2.0).to_bits());
            }
        })
    })
    .unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `python3 tests/python/<script> <mode> <dir>`, or panics saying how
/// to get Python.
fn python_command(script: &str, mode: &str, dir: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join(script);
    std::process::Command::new("python3")
        .arg(&script)
        .arg(mode)
        .arg(dir)
        .output()
        .expect("python3 runs (install Python 3 with `pip install zarr numpy h5py`; scripts/test-all.sh does)")
}

/// `python3` with `zarr` and `numpy` succeeds and returns its output, or a
/// panic that says how to get them.
fn python_client(script: &str, mode: &str, dir: &Path) -> String {
    let out = python_command(script, mode, dir);
    assert!(
        out.status.success(),
        "{script} {mode} failed (needs `pip install zarr numpy`):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `a` as `dir/name.zarr` and its values as `dir/name.bin`; returns
/// the manifest entry.
fn publish<T: Element, const N: usize>(
    dir: &Path,
    name: &str,
    dtype: &str,
    a: &DistArray<T, threaded::ThreadedComm, N>,
    opts: &ZarrOptions,
) -> distarray::Result<String> {
    write_zarr_with(a, dir.join(format!("{name}.zarr")), opts)?;
    let v = a.to_vec()?;
    if a.comm().rank() == 0 {
        std::fs::write(
            dir.join(format!("{name}.bin")),
            bytemuck::cast_slice::<T, u8>(&v),
        )
        .unwrap();
    }
    Ok(format!(
        r#"{{"name": "{name}", "dtype": "{dtype}", "shape": {:?}}}"#,
        a.shape()
    ))
}

#[test]
fn python_zarr_reads_what_distarray_writes() {
    use distarray::io::Compression;
    let dir = scratch("py-read");
    threaded::run_ok(3, |comm| {
        let mut m = Vec::new();
        let f = DistArray::<f64, _, 2>::with_grid(comm.clone(), [3, 1], [13, 7])?;
        f.with_local_mut(|mut l| l.fill_with(|[i, j]| f64::at(i * 7 + j).sin()))?;
        m.push(publish(&dir, "f64", "float64", &f, &ZarrOptions::default().chunk_shape([5, 3]))?);
        m.push(publish(&dir, "f64_zstd", "float64", &f, &ZarrOptions::default().compression(Compression::Zstd(3)))?);
        m.push(publish(&dir, "f64_gzip", "float64", &f, &ZarrOptions::default().compression(Compression::Gzip(4)).checksum(false))?);
        let c = DistArray::<Complex64, _, 3>::from_fn(comm.clone(), [4, 3, 5], |[i, j, k]| Complex64::at(i * 15 + j * 5 + k))?;
        m.push(publish(&dir, "c128", "complex128", &c, &ZarrOptions::default().chunk_shape([3, 2, 2]))?);
        let c = DistArray::<Complex32, _, 1>::from_fn(comm.clone(), [17], |[i]| Complex32::at(i))?;
        m.push(publish(&dir, "c64", "complex64", &c, &ZarrOptions::default().chunk_shape([4]))?);
        let g = DistArray::<f32, _, 1>::from_fn(comm.clone(), [23], |[i]| f32::at(i))?;
        m.push(publish(&dir, "f32", "float32", &g, &ZarrOptions::default())?);
        macro_rules! ints {
            ($($t:ty => $n:literal),*) => {$(
                let a = DistArray::<$t, _, 2>::from_fn(comm.clone(), [5, 6], |[i, j]| <$t>::at(i * 6 + j))?;
                m.push(publish(&dir, $n, $n, &a, &ZarrOptions::default().chunk_shape([2, 4]))?);
            )*};
        }
        ints!(i8 => "int8", i16 => "int16", i32 => "int32", i64 => "int64", u8 => "uint8", u16 => "uint16", u32 => "uint32", u64 => "uint64");
        // a checkpoint group
        let u = DistArray::<f64, _, 2>::from_fn(comm.clone(), [6, 4], |[i, j]| f64::at(i * 4 + j))?;
        let mut ck = CheckpointWriter::create(&comm, dir.join("ckpt"), "step-3")?;
        ck.write("u", &u)?;
        ck.set_scalar("step", 3i64);
        ck.commit()?;
        let uv = u.to_vec()?;
        if comm.rank() == 0 {
            std::fs::write(dir.join("ckpt_u.bin"), bytemuck::cast_slice::<f64, u8>(&uv)).unwrap();
            std::fs::write(dir.join("manifest.json"), format!("[{}]", m.join(", "))).unwrap();
        }
        Ok(())
    })
    .unwrap();
    python_client("zarr_client.py", "check", &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads `dir/name.zarr` on `p` ranks (a grid over the first dimensions)
/// and compares its bytes with `dir/name.bin`.
fn check_python_array<T: Element, const N: usize>(
    dir: &Path,
    name: &str,
    shape: &[usize],
    p: usize,
) {
    let want = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
    let shape: [usize; N] = shape.try_into().unwrap();
    let got = threaded::run_ok(p, |comm| {
        let a: DistArray<T, _, N> = read_zarr(comm.clone(), dir.join(format!("{name}.zarr")))?;
        assert_eq!(a.shape(), shape);
        let mut grid = [1; N];
        grid[0] = p.min(shape[0]).max(1);
        if shape[0] >= p {
            let b = DistArray::<T, _, N>::with_grid(comm.clone(), grid, shape)?;
            read_zarr_into(&b, dir.join(format!("{name}.zarr")))?;
            assert_eq!(b.to_vec()?, a.to_vec()?);
        }
        a.to_vec()
    })
    .unwrap();
    assert_eq!(
        bytemuck::cast_slice::<T, u8>(&got[0]),
        &want[..],
        "{name}: values differ from numpy's"
    );
}

#[test]
fn distarray_reads_what_python_zarr_writes() {
    let dir = scratch("py-write");
    python_client("zarr_client.py", "write", &dir);
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut n = 0;
    for entry in manifest.split('{').skip(1) {
        let field = |k: &str| {
            let at = entry.find(&format!("\"{k}\": ")).unwrap() + k.len() + 4;
            entry[at..]
                .split(['"', ']'])
                .find(|s| !s.is_empty() && *s != "[")
                .unwrap()
                .to_string()
        };
        let (name, dtype) = (field("name"), field("dtype"));
        let shape_text = &entry[entry.find('[').unwrap() + 1..entry.find(']').unwrap()];
        let shape: Vec<usize> = shape_text
            .split(',')
            .map(|s| s.trim().parse().unwrap())
            .collect();
        for p in [1, 2, 3] {
            macro_rules! by_rank {
                ($t:ty) => {
                    match shape.len() {
                        1 => check_python_array::<$t, 1>(&dir, &name, &shape, p),
                        2 => check_python_array::<$t, 2>(&dir, &name, &shape, p),
                        3 => check_python_array::<$t, 3>(&dir, &name, &shape, p),
                        d => panic!("{d} dimensions"),
                    }
                };
            }
            match dtype.as_str() {
                "float64" => by_rank!(f64),
                "float32" => by_rank!(f32),
                "int16" => by_rank!(i16),
                "int32" => by_rank!(i32),
                "uint64" => by_rank!(u64),
                "complex128" => by_rank!(Complex64),
                "complex64" => by_rank!(Complex32),
                other => panic!("dtype {other} not covered"),
            }
        }
        n += 1;
    }
    assert_eq!(n, 10, "every array Python wrote was checked");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Element `[i, j]` of the block-cyclic tests' arrays: `i * ncols + j`,
/// exact in every element type used, so a misplaced element is found.
trait IndexValue: Element + PartialEq + std::fmt::Debug {
    const DTYPE: &'static str;
    fn index_value(k: usize) -> Self;
}
impl IndexValue for f64 {
    const DTYPE: &'static str = "float64";
    fn index_value(k: usize) -> Self {
        k as f64
    }
}
impl IndexValue for i32 {
    const DTYPE: &'static str = "int32";
    fn index_value(k: usize) -> Self {
        k as i32
    }
}
impl IndexValue for u16 {
    const DTYPE: &'static str = "uint16";
    fn index_value(k: usize) -> Self {
        k as u16
    }
}

/// A 2-D block-cyclic array whose element `[i, j]` is `i * ncols + j`
/// (asserted to be block-cyclic: a dimension whose blocks cover its extent
/// in one cycle falls back to the contiguous layout).
fn cyclic_index_array<T: IndexValue>(
    comm: &threaded::ThreadedComm,
    shape: [usize; 2],
    grid: [usize; 2],
    block: [usize; 2],
) -> distarray::Result<DistArray<T, threaded::ThreadedComm, 2>> {
    let a = DistArray::<T, _, 2>::block_cyclic(comm.clone(), shape, grid, block)?;
    assert!(
        a.partitioning().is_block_cyclic(),
        "{shape:?} {grid:?} {block:?}"
    );
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| T::index_value(i * shape[1] + j)))?;
    Ok(a)
}

/// Checks every local element of `a` against `i * ncols + j`, and the
/// whole array through `to_vec`.
fn check_index_values<T: IndexValue>(
    a: &DistArray<T, threaded::ThreadedComm, 2>,
    what: &str,
) -> distarray::Result<()> {
    let cols = a.shape()[1];
    let rank = a.comm().rank();
    a.with_local(|l| {
        for ([i, j], v) in l.iter_global() {
            assert_eq!(
                v,
                T::index_value(i * cols + j),
                "{what}: [{i}, {j}] on rank {rank}"
            );
        }
    })?;
    // to_vec reads the other ranks' parts one-sidedly: every rank's
    // writes (a local fill) must be complete first
    a.barrier()?;
    let all = a.to_vec()?;
    let want: Vec<T> = (0..all.len()).map(T::index_value).collect();
    assert_eq!(all, want, "{what}: to_vec");
    Ok(())
}

fn manifest_entry<T: IndexValue>(name: &str, shape: [usize; 2], extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "dtype": "{}", "shape": {shape:?}{extra}}}"#,
        T::DTYPE
    )
}

/// zarr-python reads arrays written from block-cyclic arrays (4 ranks on a
/// 2 x 2 grid and 3 ranks on a 1 x 3 grid, blocks that divide neither
/// extent, chunks that match neither the blocks nor the parts, and a
/// checkpoint) and finds element `[i, j]` equal to `i * ncols + j`
/// everywhere; the files also read back into other block-cyclic layouts.
/// An array with two elements swapped is refused by the Python check.
#[test]
fn python_zarr_reads_what_block_cyclic_arrays_write() {
    let dir = scratch("py-cyclic-read");
    let mut manifest = Vec::new();
    // 4 ranks, 2 x 2 grid: f64 (chunks [5, 4]) and a checkpoint of i32
    threaded::run_ok(4, |comm| {
        let a = cyclic_index_array::<f64>(&comm, [13, 11], [2, 2], [3, 2])?;
        write_zarr_with(
            &a,
            dir.join("f64_2x2.zarr"),
            &ZarrOptions::default().chunk_shape([5, 4]),
        )?;
        let u = cyclic_index_array::<i32>(&comm, [10, 9], [2, 2], [4, 2])?;
        let mut ck = CheckpointWriter::create(&comm, dir.join("ckpt"), "cyclic")?;
        ck.write("u", &u)?;
        ck.commit()
    })
    .unwrap();
    manifest.push(manifest_entry::<f64>("f64_2x2", [13, 11], ""));
    manifest.push(manifest_entry::<i32>(
        "u",
        [10, 9],
        r#", "checkpoint": true"#,
    ));
    // 3 ranks, 1 x 3 grid: u16 (default chunks) and i32 (chunks [3, 7])
    threaded::run_ok(3, |comm| {
        let a = cyclic_index_array::<u16>(&comm, [7, 17], [1, 3], [2, 4])?;
        write_zarr_with(&a, dir.join("u16_1x3.zarr"), &ZarrOptions::default())?;
        let b = cyclic_index_array::<i32>(&comm, [12, 10], [1, 3], [5, 3])?;
        write_zarr_with(
            &b,
            dir.join("i32_1x3.zarr"),
            &ZarrOptions::default().chunk_shape([3, 7]),
        )
    })
    .unwrap();
    manifest.push(manifest_entry::<u16>("u16_1x3", [7, 17], ""));
    manifest.push(manifest_entry::<i32>("i32_1x3", [12, 10], ""));
    std::fs::write(
        dir.join("manifest.json"),
        format!("[{}]", manifest.join(", ")),
    )
    .unwrap();
    let out = python_client("zarr_client.py", "check-cyclic", &dir);
    assert!(out.contains("checked 4 block-cyclic arrays"), "{out}");
    // distarray reads them back into other block-cyclic layouts
    threaded::run_ok(4, |comm| {
        let b = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [13, 11], [4, 1], [2, 3])?;
        read_zarr_into(&b, dir.join("f64_2x2.zarr"))?;
        check_index_values(&b, "f64_2x2 read back on a 4 x 1 grid")?;
        let v = DistArray::<i32, _, 2>::block_cyclic(comm.clone(), [10, 9], [1, 4], [3, 2])?;
        Checkpoint::open(&comm, dir.join("ckpt"), "cyclic")?.read_into("u", &v)?;
        check_index_values(&v, "checkpoint read back on a 1 x 4 grid")?;
        let c = DistArray::<i32, _, 2>::block_cyclic(comm.clone(), [12, 10], [2, 2], [2, 4])?;
        read_zarr_into(&c, dir.join("i32_1x3.zarr"))?;
        check_index_values(&c, "i32_1x3 read back on a 2 x 2 grid")
    })
    .unwrap();

    // the check can fail: two elements swapped are found
    let bad = scratch("py-cyclic-swapped");
    threaded::run_ok(4, |comm| {
        let a = cyclic_index_array::<f64>(&comm, [13, 11], [2, 2], [3, 2])?;
        a.barrier()?;
        if comm.rank() == 0 {
            let (x, y) = (a.get([3, 0])?, a.get([0, 3])?);
            a.set([3, 0], y)?;
            a.set([0, 3], x)?;
        }
        a.barrier()?;
        write_zarr_with(
            &a,
            bad.join("f64_2x2.zarr"),
            &ZarrOptions::default().chunk_shape([5, 4]),
        )
    })
    .unwrap();
    std::fs::write(
        bad.join("manifest.json"),
        format!("[{}]", manifest_entry::<f64>("f64_2x2", [13, 11], "")),
    )
    .unwrap();
    let refused = python_command("zarr_client.py", "check-cyclic", &bad);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("misplaced"),
        "zarr_client.py check-cyclic accepted swapped elements:\n{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&bad).unwrap();
}

/// zarr-python writes arrays (Zarr v3 with its default codecs and v2,
/// chunks unaligned with every layout below) that distarray reads into
/// block-cyclic arrays on 4 ranks (2 x 2 grid) and on 3 ranks (1 x 3 grid),
/// blocks dividing neither extent: every element is `i * ncols + j`.
#[test]
fn distarray_reads_into_block_cyclic_arrays_what_python_zarr_writes() {
    let dir = scratch("py-cyclic-write");
    let manifest = [
        manifest_entry::<f64>("f64_v3", [13, 11], r#", "chunks": [4, 5], "format": 3"#),
        manifest_entry::<i32>("i32_v2", [9, 14], r#", "chunks": [2, 3], "format": 2"#),
    ];
    std::fs::write(
        dir.join("manifest.json"),
        format!("[{}]", manifest.join(", ")),
    )
    .unwrap();
    let out = python_client("zarr_client.py", "write-cyclic", &dir);
    assert!(
        out.contains("wrote 2 arrays for block-cyclic reads"),
        "{out}"
    );
    for (p, grid, blocks) in [(4, [2, 2], [[3, 2], [2, 4]]), (3, [1, 3], [[4, 2], [3, 3]])] {
        threaded::run_ok(p, |comm| {
            let what = |name: &str| format!("{name} on {p} ranks, grid {grid:?}");
            let a = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [13, 11], grid, blocks[0])?;
            assert!(a.partitioning().is_block_cyclic());
            read_zarr_into(&a, dir.join("f64_v3.zarr"))?;
            check_index_values(&a, &what("f64_v3"))?;
            let b = DistArray::<i32, _, 2>::block_cyclic(comm.clone(), [9, 14], grid, blocks[1])?;
            assert!(b.partitioning().is_block_cyclic());
            read_zarr_into(&b, dir.join("i32_v2.zarr"))?;
            check_index_values(&b, &what("i32_v2"))
        })
        .unwrap_or_else(|e| panic!("{p} ranks: {e}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 20 steps on 4 ranks with a checkpoint at 10; the restart at 10 on 3
/// ranks (another grid) reaches step 20 with the same bits.
#[test]
fn heat_restart_on_three_ranks_equals_the_uninterrupted_run() {
    let dir = scratch("heat");
    let opts = |restart: bool, grid: [usize; 2], dir: PathBuf| heat_app::Opts {
        n: 37,
        steps: 20,
        checkpoint_every: 10,
        dir,
        restart,
        grid: Some(grid),
        chunk_rows: Some(5),
        out: None,
        ranks: 0,
    };
    let full = opts(false, [2, 2], dir.join("a"));
    let fp_full = threaded::run_ok(4, |comm| heat_app::run(comm, &full)).unwrap();
    // the same 10 steps again, then a restart on 3 ranks from step 10
    let first = heat_app::Opts {
        steps: 10,
        ..opts(false, [2, 2], dir.join("b"))
    };
    threaded::run_ok(4, |comm| heat_app::run(comm, &first)).unwrap();
    let rest = opts(true, [1, 3], dir.join("b"));
    let fp_rest = threaded::run_ok(3, |comm| heat_app::run(comm, &rest)).unwrap();
    assert_eq!(
        fp_rest[0], fp_full[0],
        "restarted run differs from the uninterrupted one"
    );
    // and a serial run agrees too
    let serial = heat_app::Opts {
        checkpoint_every: 0,
        ..opts(false, [1, 1], dir.join("c"))
    };
    let fp_serial = threaded::run_ok(1, |comm| heat_app::run(comm, &serial)).unwrap();
    assert_eq!(fp_serial[0], fp_full[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run killed (`kill -9`) in the middle of writing a checkpoint leaves
/// the earlier one intact: the half-written one is refused, and the
/// restart from the last committed one reaches the same bits.
#[test]
fn a_run_killed_while_checkpointing_leaves_the_previous_checkpoint() {
    let dir = scratch("kill");
    let ckdir = dir.join("ck");
    // this test binary, re-run as the heat example (see heat_child_process)
    let child = |args: &[&str]| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "heat_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("DISTARRAY_HEAT_CHILD", args.join(" "));
        c
    };
    let run = |args: &[&str]| child(args).output().unwrap();
    // the reference: 30 steps uninterrupted
    let reference = run(&[
        "--n",
        "600",
        "--steps",
        "30",
        "--checkpoint-every",
        "0",
        "--ranks",
        "2",
        "--dir",
        dir.join("ref").to_str().unwrap(),
    ]);
    assert!(reference.status.success());
    let fp = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split("fingerprint ")
            .nth(1)
            .map(|s| s[..16].to_string())
            .unwrap_or_else(|| panic!("no fingerprint in {text}"))
    };
    let mut killed_mid_write = false;
    for attempt in 0..5 {
        let _ = std::fs::remove_dir_all(&ckdir);
        let mut child = child(&[
            "--n",
            "600",
            "--steps",
            "30",
            "--checkpoint-every",
            "10",
            "--chunk-rows",
            "2",
            "--ranks",
            "2",
            "--dir",
            ckdir.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
        // wait until the second checkpoint is being written, then kill
        let staging = ckdir.join(".step-000020.partial").join("u").join("c");
        let start = std::time::Instant::now();
        while !staging.exists() && start.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if ckdir.join("step-000010").exists() && !ckdir.join("step-000020").exists() {
            killed_mid_write = true;
            break;
        }
        eprintln!("attempt {attempt}: the kill missed the write window; again");
    }
    assert!(
        killed_mid_write,
        "could not kill the run while it wrote the checkpoint"
    );
    // the half-written checkpoint is refused, the earlier one reads
    let errs = threaded::run(2, |comm| {
        Checkpoint::open(&comm, &ckdir, "step-000020").map(|_| ())
    })
    .unwrap();
    match &errs[0] {
        Err(Error::Io { message, .. }) => assert!(message.contains("never committed"), "{message}"),
        other => panic!("{other:?}"),
    }
    let names = threaded::run_ok(1, |comm| Checkpoint::list(&comm, &ckdir)).unwrap();
    assert_eq!(names[0], vec!["step-000010"]);
    // restart on 3 ranks: the same bits as the uninterrupted run
    let restarted = run(&[
        "--n",
        "600",
        "--steps",
        "30",
        "--checkpoint-every",
        "10",
        "--ranks",
        "3",
        "--restart",
        "--dir",
        ckdir.to_str().unwrap(),
    ]);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_eq!(fp(&restarted), fp(&reference));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Not a test of its own: the child process of
/// `a_run_killed_while_checkpointing_leaves_the_previous_checkpoint` (this
/// test binary re-run with the heat example's options in
/// `DISTARRAY_HEAT_CHILD`); without them it does nothing.
#[test]
fn heat_child_process() {
    let Ok(args) = std::env::var("DISTARRAY_HEAT_CHILD") else {
        return;
    };
    let o = heat_app::Opts::parse(args.split_whitespace().map(str::to_string).collect());
    threaded::run_ok(o.ranks, |comm| heat_app::run(comm, &o)).unwrap();
}

/// A full disk (a 1 MiB tmpfs) is an error on every rank; the checkpoint
/// written before stays readable and the failed one is not listed. Needs
/// root to mount the tmpfs (CI runs as root); elsewhere it says so and
/// returns.
#[test]
fn a_full_disk_is_an_error_on_every_rank_and_keeps_the_previous_checkpoint() {
    let dir = scratch("full");
    let root_user = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            !root_user,
            "root could not mount a tmpfs at {}",
            dir.display()
        );
        eprintln!("not root: cannot mount a small tmpfs, the full-disk case is not run");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(dir.clone());
    let errs = threaded::run(3, |comm| {
        let small = DistArray::<f64, _, 1>::from_fn(comm.clone(), [1000], |[i]| i as f64)?;
        let mut ck = CheckpointWriter::create(&comm, &dir, "small")?;
        ck.write("u", &small)?;
        ck.commit()?;
        let big = DistArray::<f64, _, 1>::from_fn(comm.clone(), [300_000], |[i]| i as f64)?;
        let mut ck = CheckpointWriter::create(&comm, &dir, "big")?;
        ck.write("u", &big)?;
        ck.commit()
    })
    .unwrap();
    assert!(errs.iter().all(|e| e.is_err()), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| matches!(e, Err(Error::Io { message, .. }) if message.contains("space"))),
        "the writing rank names the full disk: {errs:?}"
    );
    threaded::run_ok(2, |comm| {
        assert_eq!(Checkpoint::list(&comm, &dir)?, vec!["small"]);
        let u: DistArray<f64, _, 1> = Checkpoint::open(&comm, &dir, "small")?.read("u")?;
        assert_eq!(u.get([999])?, 999.0);
        Ok(())
    })
    .unwrap();
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
}
