//! Parallel HDF5 checks (feature `hdf5`), one per mode, run under `mpirun`
//! / `mpiexec` by `tests/mpirun.rs`:
//!
//! * `write FILE SEED`: writes every element type (`i8`..`i64`,
//!   `u8`..`u64`, `f32`, `f64`, `Complex32`, `Complex64`) in 1, 2 and 3
//!   dimensions (datasets `<type>_<N>d`, shapes `[37]`, `[13, 11]`,
//!   `[5, 6, 7]`) on a process grid (2-D: as square as the rank count
//!   allows; 3-D: the last two dimensions split), values from the formula
//!   of [`Gen`] with `SEED`, and attributes `seed` (u64), `scale` (f64),
//!   `offset` (i64);
//! * `read FILE SEED`: reads them back with other partitions (1-D: explicit
//!   part sizes with an empty part; 2-D: columns split; 3-D: the first
//!   dimension split) through `read_into`, and with the default partition
//!   through `read`, and checks every element's **bits** against the
//!   formula, and the attributes (the files may come from another rank
//!   count, or from h5py: `tests/hdf5_clients.py` uses the same formula);
//! * `cyclic-write FILE [swap]`: writes 2-D block-cyclic arrays (datasets
//!   `cyclic_f64` `[13, 11]`, `cyclic_i32` `[10, 9]`, `cyclic_u16`
//!   `[7, 17]`, element `[i, j]` = `i * ncols + j`) on the process grid of
//!   [`grid2`], blocks dividing neither extent, reads them back into other
//!   block-cyclic layouts and checks every element; with `swap`, elements
//!   `[3, 0]` and `[0, 3]` of `cyclic_f64` are swapped before the write (a
//!   file `tests/hdf5_clients.py check-cyclic` must refuse);
//! * `cyclic-read FILE`: reads those datasets (written by h5py:
//!   `hdf5_clients.py write-cyclic`) into block-cyclic arrays on the grid of
//!   [`grid2`] and checks every element;
//! * `faults DIR`: bad input gives an `Err` on every rank and the job goes
//!   on (missing file, path or name different between ranks, no
//!   permission, not an HDF5 file, truncated and corrupted files, wrong
//!   element type, wrong shape or dimension count, existing dataset name,
//!   read-only file, bad names, attributes of the wrong type or of
//!   different values, arrays of different shapes, element types or
//!   partitions on different ranks, block-cyclic on one rank only).
//!
//! Each mode prints `hdf5_io <mode>: ok (...)` on rank 0 when every
//! assertion held; a failed assertion panics (the panic hook aborts the
//! job, non-zero exit).

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use distarray::{Complex32, Complex64, DistArray, Error, OneSidedComm, Result};
use distarray_mpi::hdf5::{Hdf5Element, Hdf5File};
use distarray_mpi::MpiComm;

/// The value formula shared with `tests/hdf5_clients.py`: element `k`
/// (row-major global index) of a dataset written with `seed`.
trait Gen: Hdf5Element + Debug {
    const NAME: &'static str;
    fn gen(k: u64, seed: u64) -> Self;
}

/// Integers: `k * 0x9E3779B97F4A7C15 + seed * 0x1234567` (mod 2^64),
/// truncated to the type's width (two's complement), as NumPy's `astype`.
fn int_bits(k: u64, seed: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(seed.wrapping_mul(0x123_4567))
}

/// Floats: `(k * 0.37 + seed) / 3 - 17` in f64 (f32: rounded from it).
fn float(k: u64, seed: u64) -> f64 {
    (k as f64 * 0.37 + seed as f64) / 3.0 - 17.0
}

macro_rules! gen_int {
    ($($t:ty => $name:expr),*) => {$(
        impl Gen for $t {
            const NAME: &'static str = $name;
            fn gen(k: u64, seed: u64) -> Self {
                int_bits(k, seed) as $t
            }
        }
    )*};
}
gen_int!(i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64",
         u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64");

impl Gen for f64 {
    const NAME: &'static str = "f64";
    fn gen(k: u64, seed: u64) -> Self {
        float(k, seed)
    }
}

impl Gen for f32 {
    const NAME: &'static str = "f32";
    fn gen(k: u64, seed: u64) -> Self {
        float(k, seed) as f32
    }
}

/// Complex: real part `float(k, seed)`, imaginary part `-float(k, seed + 5)`.
impl Gen for Complex64 {
    const NAME: &'static str = "c128";
    fn gen(k: u64, seed: u64) -> Self {
        Complex64::new(float(k, seed), -float(k, seed + 5))
    }
}

impl Gen for Complex32 {
    const NAME: &'static str = "c64";
    fn gen(k: u64, seed: u64) -> Self {
        Complex32::new(float(k, seed) as f32, -float(k, seed + 5) as f32)
    }
}

const SHAPE1: [usize; 1] = [37];
const SHAPE2: [usize; 2] = [13, 11];
const SHAPE3: [usize; 3] = [5, 6, 7];

/// A 2-D grid for `p` ranks, as square as possible (`[a, p / a]`, `a` the
/// largest divisor of `p` not above its square root).
fn grid2(p: usize) -> [usize; 2] {
    let a = (1..=p)
        .filter(|a| p.is_multiple_of(*a) && a * a <= p)
        .max()
        .unwrap_or(1);
    [a, p / a]
}

fn fail(what: &str, e: Error) -> ! {
    panic!("{what}: {e}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    let arg = |i: usize| {
        args.get(i).cloned().unwrap_or_else(|| {
            eprintln!(
                "usage: hdf5_io write|read FILE SEED | hdf5_io cyclic-write FILE [swap] \
                 | hdf5_io cyclic-read FILE | hdf5_io faults DIR"
            );
            std::process::exit(2)
        })
    };
    let mode = arg(1);
    let summary = match mode.as_str() {
        "write" => write_all(&comm, Path::new(&arg(2)), arg(3).parse().expect("SEED")),
        "read" => read_all(&comm, Path::new(&arg(2)), arg(3).parse().expect("SEED")),
        "cyclic-write" => cyclic_write(&comm, Path::new(&arg(2)), args.get(3)),
        "cyclic-read" => cyclic_read(&comm, Path::new(&arg(2))),
        "faults" => faults(&comm, Path::new(&arg(2))),
        other => {
            eprintln!("hdf5_io: unknown mode {other:?}");
            std::process::exit(2);
        }
    };
    if comm.rank() == 0 {
        println!("hdf5_io {mode}: ok ({summary}) on {} rank(s)", comm.size());
    }
}

// ---------------------------------------------------------------- write

fn fill<T: Gen, const N: usize>(a: &DistArray<T, MpiComm, N>, seed: u64) -> Result<()> {
    let shape = a.shape();
    a.with_local_mut(|mut l| {
        l.fill_with(|idx| {
            T::gen(
                distarray::partition::linear_offset(&shape, &idx) as u64,
                seed,
            )
        })
    })
}

fn write_type<T: Gen>(comm: &MpiComm, file: &Hdf5File, seed: u64) -> Result<()> {
    let p = comm.size();
    let a1 = DistArray::<T, _, 1>::new(comm.clone(), SHAPE1)?;
    let a2 = DistArray::<T, _, 2>::with_grid(comm.clone(), grid2(p), SHAPE2)?;
    let [g0, g1] = grid2(p);
    let a3 = DistArray::<T, _, 3>::with_grid(comm.clone(), [1, g0, g1], SHAPE3)?;
    fill(&a1, seed)?;
    fill(&a2, seed)?;
    fill(&a3, seed)?;
    file.write(&format!("{}_1d", T::NAME), &a1)?;
    collective(file, "write 1-d");
    file.write(&format!("{}_2d", T::NAME), &a2)?;
    collective(file, "write 2-d");
    file.write(&format!("{}_3d", T::NAME), &a3)?;
    collective(file, "write 3-d");
    Ok(())
}

/// The last transfer was a collective MPI-IO one (native element types
/// need no conversion, so HDF5 must not have fallen back to independent).
fn collective(file: &Hdf5File, what: &str) {
    assert_eq!(
        file.last_transfer_collective(),
        Some(true),
        "{what}: not a collective transfer"
    );
}

/// Runs `$f::<T>(args)` for every element type; returns how many.
macro_rules! for_all_types {
    ($f:ident($($arg:expr),*)) => {{
        $f::<i8>($($arg),*)?;
        $f::<i16>($($arg),*)?;
        $f::<i32>($($arg),*)?;
        $f::<i64>($($arg),*)?;
        $f::<u8>($($arg),*)?;
        $f::<u16>($($arg),*)?;
        $f::<u32>($($arg),*)?;
        $f::<u64>($($arg),*)?;
        $f::<f32>($($arg),*)?;
        $f::<f64>($($arg),*)?;
        $f::<Complex32>($($arg),*)?;
        $f::<Complex64>($($arg),*)?;
        Ok::<usize, Error>(12)
    }};
}

fn write_all(comm: &MpiComm, path: &Path, seed: u64) -> String {
    let run = || -> Result<usize> {
        let file = Hdf5File::create(comm, path)?;
        let n = for_all_types!(write_type(comm, &file, seed))?;
        file.write_attr("seed", seed)?;
        file.write_attr("scale", 0.37f64)?;
        file.write_attr("offset", -17i64)?;
        file.close()?;
        Ok(n)
    };
    let n = run().unwrap_or_else(|e| fail("write", e));
    format!("{} datasets, grid {:?}", 3 * n, grid2(comm.size()))
}

// ---------------------------------------------------------------- read

/// Checks every local element of `a` against the formula, bit for bit.
fn check<T: Gen, const N: usize>(a: &DistArray<T, MpiComm, N>, seed: u64, what: &str) -> usize {
    let shape = a.shape();
    let range = a.local_indices(a.comm().rank()).expect("local_indices");
    let part: [usize; N] = std::array::from_fn(|d| range[d].len());
    a.with_local(|l| {
        let data = l.as_slice();
        for (off, v) in data.iter().enumerate() {
            let local = distarray::partition::multi_index(&part, off);
            let global: [usize; N] = std::array::from_fn(|d| range[d].start + local[d]);
            let k = distarray::partition::linear_offset(&shape, &global) as u64;
            let want = T::gen(k, seed);
            assert!(
                bytemuck::bytes_of(v) == bytemuck::bytes_of(&want),
                "{what}: element {global:?} on rank {} is {v:?}, expected {want:?}",
                a.comm().rank()
            );
        }
        data.len()
    })
    .expect("with_local")
}

fn read_type<T: Gen>(comm: &MpiComm, file: &Hdf5File, seed: u64) -> Result<()> {
    let p = comm.size();
    let name = |n: usize| format!("{}_{n}d", T::NAME);
    // 1-D: explicit part sizes, rank 1 (if any) gets nothing
    let mut sizes = vec![0; p];
    let others: Vec<usize> = (0..p).filter(|&r| r != 1 || p == 1).collect();
    for (i, &r) in others.iter().enumerate() {
        sizes[r] = SHAPE1[0] / others.len() + usize::from(i < SHAPE1[0] % others.len());
    }
    let a1 = DistArray::<T, _, 1>::with_part_sizes(comm.clone(), [sizes])?;
    file.read_into(&name(1), &a1)?;
    check(&a1, seed, &name(1));
    // 2-D: columns split; 3-D: first dimension split
    let a2 = DistArray::<T, _, 2>::with_grid(comm.clone(), [1, p], SHAPE2)?;
    file.read_into(&name(2), &a2)?;
    check(&a2, seed, &name(2));
    let a3 = DistArray::<T, _, 3>::with_grid(comm.clone(), [p, 1, 1], SHAPE3)?;
    file.read_into(&name(3), &a3)?;
    check(&a3, seed, &name(3));
    // the default partition
    let b1 = file.read::<T, 1>(&name(1))?;
    check(&b1, seed, &name(1));
    let b2 = file.read::<T, 2>(&name(2))?;
    check(&b2, seed, &name(2));
    let b3 = file.read::<T, 3>(&name(3))?;
    check(&b3, seed, &name(3));
    assert_eq!(b3.shape(), SHAPE3);
    Ok(())
}

fn read_all(comm: &MpiComm, path: &Path, seed: u64) -> String {
    let run = || -> Result<usize> {
        let file = Hdf5File::open(comm, path)?;
        let n = for_all_types!(read_type(comm, &file, seed))?;
        assert_eq!(file.read_attr::<u64>("seed")?, seed);
        assert_eq!(file.read_attr::<f64>("scale")?.to_bits(), 0.37f64.to_bits());
        assert_eq!(file.read_attr::<i64>("offset")?, -17);
        let names = file.dataset_names()?;
        assert!(names.len() >= 3 * n, "{names:?}");
        assert_eq!(file.dataset_shape("f64_2d")?, SHAPE2.to_vec());
        file.close()?;
        Ok(n)
    };
    let n = run().unwrap_or_else(|e| fail("read", e));
    format!("{} datasets checked bit for bit, 2 partitions each", 3 * n)
}

// ---------------------------------------------------------------- block-cyclic

/// Element `[i, j]` of the block-cyclic datasets: `i * ncols + j` (exact in
/// every type used, and `hdf5_clients.py`'s `check-cyclic` formula).
trait IndexValue: Hdf5Element + PartialEq + Debug {
    fn index_value(k: usize) -> Self;
}

impl IndexValue for f64 {
    fn index_value(k: usize) -> Self {
        k as f64
    }
}

impl IndexValue for i32 {
    fn index_value(k: usize) -> Self {
        k as i32
    }
}

impl IndexValue for u16 {
    fn index_value(k: usize) -> Self {
        k as u16
    }
}

/// The block-cyclic datasets: name, shape, block size (on the grid of
/// [`grid2`] for 1 to 4 ranks, the blocks divide neither extent and every
/// dimension split over more than one rank holds more than one cycle).
const CYCLIC_F64: (&str, [usize; 2], [usize; 2]) = ("cyclic_f64", [13, 11], [3, 2]);
const CYCLIC_I32: (&str, [usize; 2], [usize; 2]) = ("cyclic_i32", [10, 9], [4, 2]);
const CYCLIC_U16: (&str, [usize; 2], [usize; 2]) = ("cyclic_u16", [7, 17], [2, 4]);

/// A block-cyclic array on `grid` (asserted block-cyclic).
fn cyclic<T: IndexValue>(
    comm: &MpiComm,
    shape: [usize; 2],
    grid: [usize; 2],
    block: [usize; 2],
) -> DistArray<T, MpiComm, 2> {
    let a = DistArray::<T, _, 2>::block_cyclic(comm.clone(), shape, grid, block)
        .unwrap_or_else(|e| fail("block_cyclic", e));
    assert!(
        a.partitioning().is_block_cyclic(),
        "{shape:?} on {grid:?} in blocks {block:?} is not block-cyclic"
    );
    a
}

/// Checks every local element of `a` against `i * ncols + j`, and the
/// whole array through `to_vec`; returns the number of local elements.
fn check_index_values<T: IndexValue>(a: &DistArray<T, MpiComm, 2>, what: &str) -> usize {
    let cols = a.shape()[1];
    let rank = a.comm().rank();
    let n = a
        .with_local(|l| {
            for ([i, j], v) in l.iter_global() {
                let want = T::index_value(i * cols + j);
                assert!(
                    v == want,
                    "{what}: element [{i}, {j}] on rank {rank} is {v:?}, expected {want:?}"
                );
            }
            l.as_slice().len()
        })
        .unwrap_or_else(|e| fail("with_local", e));
    // to_vec reads the other ranks' parts one-sidedly: every rank's
    // writes (a local fill) must be complete first
    a.barrier().unwrap_or_else(|e| fail("barrier", e));
    let all = a.to_vec().unwrap_or_else(|e| fail("to_vec", e));
    let want: Vec<T> = (0..all.len()).map(T::index_value).collect();
    assert!(all == want, "{what}: to_vec differs");
    n
}

/// Writes dataset `spec` from a block-cyclic array on `grid2(p)` (with
/// `swap`, elements `[3, 0]` and `[0, 3]` swapped), then reads it back into
/// the transposed grid with the blocks swapped and checks it (unless
/// swapped).
fn cyclic_write_one<T: IndexValue>(
    comm: &MpiComm,
    file: &Hdf5File,
    (name, shape, block): (&str, [usize; 2], [usize; 2]),
    swap: bool,
) -> Result<()> {
    let grid = grid2(comm.size());
    let a = cyclic::<T>(comm, shape, grid, block);
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| T::index_value(i * shape[1] + j)))?;
    if swap {
        a.barrier()?;
        if comm.rank() == 0 {
            let (x, y) = (a.get([3, 0])?, a.get([0, 3])?);
            a.set([3, 0], y)?;
            a.set([0, 3], x)?;
        }
        a.barrier()?;
    } else {
        check_index_values(&a, &format!("{name} before the write"));
    }
    file.write(name, &a)?;
    collective(file, name);
    if !swap {
        let b = cyclic::<T>(comm, shape, [grid[1], grid[0]], [block[1], block[0]]);
        file.read_into(name, &b)?;
        check_index_values(
            &b,
            &format!("{name} read back on grid {:?}", b.partitioning().grid()),
        );
        check_index_values(
            &file.read::<T, 2>(name)?,
            &format!("{name} read back by rows"),
        );
    }
    Ok(())
}

fn cyclic_write(comm: &MpiComm, path: &Path, mode: Option<&String>) -> String {
    let swap = match mode.map(String::as_str) {
        None => false,
        Some("swap") => true,
        Some(other) => {
            eprintln!("hdf5_io cyclic-write: unknown option {other:?}");
            std::process::exit(2)
        }
    };
    let run = || -> Result<()> {
        let file = Hdf5File::create(comm, path)?;
        cyclic_write_one::<f64>(comm, &file, CYCLIC_F64, swap)?;
        cyclic_write_one::<i32>(comm, &file, CYCLIC_I32, false)?;
        cyclic_write_one::<u16>(comm, &file, CYCLIC_U16, false)?;
        file.close()
    };
    run().unwrap_or_else(|e| fail("cyclic-write", e));
    format!(
        "3 block-cyclic datasets{}, grid {:?}",
        if swap { " (2 elements swapped)" } else { "" },
        grid2(comm.size())
    )
}

fn cyclic_read_one<T: IndexValue>(
    comm: &MpiComm,
    file: &Hdf5File,
    (name, shape, block): (&str, [usize; 2], [usize; 2]),
) -> Result<usize> {
    let a = cyclic::<T>(comm, shape, grid2(comm.size()), block);
    file.read_into(name, &a)?;
    Ok(check_index_values(&a, name))
}

fn cyclic_read(comm: &MpiComm, path: &Path) -> String {
    let run = || -> Result<usize> {
        let file = Hdf5File::open(comm, path)?;
        let n = cyclic_read_one::<f64>(comm, &file, CYCLIC_F64)?
            + cyclic_read_one::<i32>(comm, &file, CYCLIC_I32)?
            + cyclic_read_one::<u16>(comm, &file, CYCLIC_U16)?;
        file.close()?;
        Ok(n)
    };
    let n = run().unwrap_or_else(|e| fail("cyclic-read", e));
    format!(
        "3 block-cyclic datasets checked, grid {:?}, {n} elements on rank {}",
        grid2(comm.size()),
        comm.rank()
    )
}

// ---------------------------------------------------------------- faults

/// Asserts that `r` is an `Err` (on this rank: every rank asserts it) and
/// that it matches `pred`; returns a short description.
fn expect_err<T: Debug>(
    comm: &MpiComm,
    what: &str,
    r: Result<T>,
    pred: impl Fn(&Error) -> bool,
) -> String {
    match r {
        Err(e) => {
            assert!(
                pred(&e),
                "{what}: unexpected error on rank {}: {e}",
                comm.rank()
            );
            if comm.rank() == 0 {
                eprintln!("hdf5_io faults: {what}: {e}");
            }
            what.to_string()
        }
        Ok(v) => panic!(
            "{what}: expected an Err on rank {}, got Ok({v:?})",
            comm.rank()
        ),
    }
}

fn io_err(e: &Error) -> bool {
    matches!(e, Error::Io { .. } | Error::PeerFailed { .. })
}

fn io_err_says(needle: &'static str) -> impl Fn(&Error) -> bool {
    move |e| match e {
        Error::Io { message, .. } => message.contains(needle),
        Error::PeerFailed { reason, .. } => reason.contains(needle),
        _ => false,
    }
}

fn invalid(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
}

fn faults(comm: &MpiComm, dir: &Path) -> String {
    let rank = comm.rank();
    let p = comm.size();
    let mut done = Vec::new();
    let ok = |what: &str, r: Result<()>| r.unwrap_or_else(|e| fail(what, e));
    let good: PathBuf = dir.join("good.h5");

    // a good file to work with
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid2(p), SHAPE2).expect("array");
    ok("fill", fill(&a, 3));
    {
        let f = Hdf5File::create(comm, &good).expect("create good.h5");
        ok("write", f.write("u", &a));
        ok("attr", f.write_attr("n", 7u64));
        // a view refused on rank 0 only (it holds an exclusive one itself):
        // an error on every rank, where the others used to wait in the
        // collective transfer; no dataset "refused" is left behind (the
        // names are checked below)
        let r = if rank == 0 {
            a.with_local_mut(|_| f.write("refused", &a))
                .expect("outer view")
        } else {
            f.write("refused", &a)
        };
        expect_err(comm, "write with a view refused on rank 0", r, |_| true);
        let r = if rank == 0 {
            a.with_local(|_| f.read_into("u", &a)).expect("outer view")
        } else {
            f.read_into("u", &a)
        };
        expect_err(comm, "read_into with a view refused on rank 0", r, |_| true);
        ok("close", f.close());
    }

    // the same file named relatively on rank 0 and absolutely elsewhere: fine
    {
        let rel = std::env::current_dir()
            .ok()
            .and_then(|cwd| good.strip_prefix(&cwd).ok().map(Path::to_path_buf));
        let name = match (rank, rel) {
            (0, Some(rel)) => rel,
            _ => good.clone(),
        };
        let f = Hdf5File::open(comm, &name).expect("same file, relative and absolute names");
        ok("close", f.close());
    }

    // missing file, missing directory
    done.push(expect_err(
        comm,
        "missing file",
        Hdf5File::open(comm, dir.join("missing.h5")),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "open_rw of a missing file",
        Hdf5File::open_rw(comm, dir.join("missing.h5")),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "create in a missing directory",
        Hdf5File::create(comm, dir.join("no/such/dir/x.h5")),
        io_err,
    ));

    // a path that differs between ranks (only rank 0's exists)
    let mine = if rank == 0 {
        good.clone()
    } else {
        dir.join(format!("rank{rank}.h5"))
    };
    if p > 1 {
        done.push(expect_err(
            comm,
            "path differs between ranks",
            Hdf5File::open(comm, &mine),
            invalid,
        ));
        done.push(expect_err(
            comm,
            "create with a path that differs between ranks",
            Hdf5File::create(comm, dir.join(format!("c{rank}.h5"))),
            invalid,
        ));
    }

    // no permission: sysfs refuses new files with EACCES, even to root
    done.push(expect_err(
        comm,
        "no permission to create",
        Hdf5File::create(comm, "/sys/distarray_hdf5_test.h5"),
        io_err_says("ermission denied"),
    ));
    // a file without write permission (only enforced for non-root users)
    let ro = dir.join("readonly.h5");
    if rank == 0 {
        std::fs::copy(&good, &ro).expect("copy");
        let mut perm = std::fs::metadata(&ro).expect("metadata").permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&ro, perm).expect("chmod");
    }
    ok("barrier", comm.barrier());
    let writable_anyway = std::fs::OpenOptions::new().write(true).open(&ro).is_ok();
    if !writable_anyway {
        done.push(expect_err(
            comm,
            "open_rw without write permission",
            Hdf5File::open_rw(comm, &ro),
            io_err,
        ));
    }

    // not an HDF5 file, truncated, corrupted
    let text = dir.join("text.h5");
    let truncated = dir.join("truncated.h5");
    let cut = dir.join("cut.h5");
    let corrupted = dir.join("corrupted.h5");
    let flipped = dir.join("flipped.h5");
    if rank == 0 {
        std::fs::write(&text, "not an HDF5 file\n").expect("write text");
        let bytes = std::fs::read(&good).expect("read good.h5");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("truncated");
        std::fs::write(&cut, &bytes[..bytes.len() - 8]).expect("cut");
        let mut bad = bytes.clone();
        bad[..8].copy_from_slice(b"NOTHDF5!");
        std::fs::write(&corrupted, &bad).expect("corrupted");
        // superblock version 2 (HDF5 1.8 formats): byte 40 lies in the root
        // group's address, covered by the checksum at bytes 44..48
        assert_eq!(bytes[8], 2, "good.h5 should have a version 2 superblock");
        let mut bad = bytes.clone();
        bad[40] ^= 0x10;
        std::fs::write(&flipped, &bad).expect("flipped");
    }
    ok("barrier", comm.barrier());
    done.push(expect_err(
        comm,
        "not an HDF5 file",
        Hdf5File::open(comm, &text),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "truncated file",
        Hdf5File::open(comm, &truncated),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "file cut short by 8 bytes",
        Hdf5File::open(comm, &cut),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "corrupted signature",
        Hdf5File::open(comm, &corrupted),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "one bit flipped in the superblock",
        Hdf5File::open(comm, &flipped),
        io_err_says("checksum"),
    ));
    done.push(expect_err(
        comm,
        "a directory",
        Hdf5File::open(comm, dir),
        io_err,
    ));

    // the good file, read-only
    let f = Hdf5File::open(comm, &good).expect("open good.h5");
    assert_eq!(f.last_transfer_collective(), None);
    done.push(expect_err(
        comm,
        "missing dataset",
        f.read::<f64, 2>("nothing"),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "f64 dataset read as f32",
        f.read::<f32, 2>("u"),
        io_err_says("not"),
    ));
    done.push(expect_err(
        comm,
        "f64 dataset read as i64",
        f.read::<i64, 2>("u"),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "f64 dataset read as Complex64",
        f.read::<Complex64, 2>("u"),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "2-d dataset read as 3-d",
        f.read::<f64, 3>("u"),
        io_err_says("dimension"),
    ));
    let wrong =
        DistArray::<f64, _, 2>::new(comm.clone(), [SHAPE2[0], SHAPE2[1] + 1]).expect("array");
    done.push(expect_err(
        comm,
        "read_into an array of another shape",
        f.read_into("u", &wrong),
        |e| matches!(e, Error::ShapeMismatch { .. } | Error::PeerFailed { .. }),
    ));
    let flat = DistArray::<f64, _, 1>::new(comm.clone(), [SHAPE2[0] * SHAPE2[1]]).expect("array");
    done.push(expect_err(
        comm,
        "read_into a 1-d array",
        f.read_into("u", &flat),
        |e| matches!(e, Error::ShapeMismatch { .. } | Error::PeerFailed { .. }),
    ));
    done.push(expect_err(
        comm,
        "write to a read-only file",
        f.write("v", &a),
        io_err_says("read-only"),
    ));
    done.push(expect_err(
        comm,
        "attribute on a read-only file",
        f.write_attr("m", 1u64),
        io_err,
    ));
    done.push(expect_err(
        comm,
        "empty name",
        f.read::<f64, 2>(""),
        invalid,
    ));
    if p > 1 {
        let name = if rank == 0 { "u" } else { "v" };
        done.push(expect_err(
            comm,
            "name differs between ranks",
            f.read::<f64, 2>(name),
            invalid,
        ));
    }
    done.push(expect_err(
        comm,
        "u64 attribute read as i64",
        f.read_attr::<i64>("n"),
        io_err_says("type"),
    ));
    done.push(expect_err(
        comm,
        "missing attribute",
        f.read_attr::<u64>("none"),
        io_err,
    ));
    assert_eq!(f.read_attr::<u64>("n").expect("attr"), 7);
    // still in step: a good read after all of that
    let back = f.read::<f64, 2>("u").expect("read u");
    collective(&f, "read u");
    check(&back, 3, "u after the errors");
    ok("close", f.close());

    // read-write: an existing dataset name is refused and left unchanged
    let f = Hdf5File::open_rw(comm, &good).expect("open_rw good.h5");
    let other = DistArray::<f64, _, 2>::new(comm.clone(), SHAPE2).expect("array");
    done.push(expect_err(
        comm,
        "write over an existing dataset",
        f.write("u", &other),
        io_err_says("exists"),
    ));
    if p > 1 {
        let name = if rank == 0 { "w0" } else { "w1" };
        done.push(expect_err(
            comm,
            "write with a name that differs between ranks",
            f.write(name, &a),
            invalid,
        ));
        // arrays of another shape or element type on rank 0 than on the
        // others: refused on every rank before HDF5 creates anything (the
        // names are checked below)
        let wider =
            DistArray::<f64, _, 2>::with_grid(comm.clone(), grid2(p), [SHAPE2[0], SHAPE2[1] + 1])
                .expect("array");
        let r = f.write("s", if rank == 0 { &a } else { &wider });
        done.push(expect_err(
            comm,
            "write with a shape that differs between ranks",
            r,
            invalid,
        ));
        let single =
            DistArray::<f32, _, 2>::with_grid(comm.clone(), grid2(p), SHAPE2).expect("array");
        let r = if rank == 0 {
            f.write("t", &a)
        } else {
            f.write("t", &single)
        };
        done.push(expect_err(
            comm,
            "write with an element type that differs between ranks",
            r,
            invalid,
        ));
        let value = rank as u64;
        done.push(expect_err(
            comm,
            "attribute value differs between ranks",
            f.write_attr("m", value),
            invalid,
        ));
    }
    ok("write a second dataset", f.write("w", &a));
    ok("replace an attribute", f.write_attr("n", 8u64));
    assert_eq!(f.read_attr::<u64>("n").expect("attr"), 8);
    let back = f.read::<f64, 2>("u").expect("read u");
    check(&back, 3, "u after the refused write");
    let w = f.read::<f64, 2>("w").expect("read w");
    check(&w, 3, "w");
    assert_eq!(
        f.dataset_names().expect("names"),
        vec!["u".to_string(), "w".to_string()]
    );
    // block-cyclic arrays (blocks not dividing the extents) written and read
    // back, through contiguous copies on their grid
    let bc = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), SHAPE2, grid2(p), [3, 2])
        .expect("block-cyclic array");
    ok("fill block-cyclic", bc.copy_from(&a));
    ok("write block-cyclic", f.write("bc", &bc));
    let back = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), SHAPE2, [p, 1], [1, 1])
        .expect("element-cyclic array");
    ok("read into element-cyclic", f.read_into("bc", &back));
    assert_eq!(back.to_vec().expect("to_vec"), a.to_vec().expect("to_vec"));
    ok("read u into block-cyclic", f.read_into("u", &bc));
    assert_eq!(bc.to_vec().expect("to_vec"), a.to_vec().expect("to_vec"));
    if p > 1 {
        // a block-cyclic array on rank 0 and a contiguous one of the same
        // shape elsewhere: rank 0 used to redistribute (collective) while
        // the others voted, and the job hung or aborted; now refused on
        // every rank before either path is taken, no dataset left
        let r = f.write("mixed", if rank == 0 { &bc } else { &a });
        done.push(expect_err(
            comm,
            "write with a block-cyclic array on rank 0 only",
            r,
            invalid,
        ));
        let r = f.read_into("u", if rank == 0 { &bc } else { &a });
        done.push(expect_err(
            comm,
            "read_into with a block-cyclic array on rank 0 only",
            r,
            invalid,
        ));
        // two contiguous partitions of one shape: each rank's hyperslab
        // came from its own partition (overlaps and holes in the dataset,
        // parts of the array never read); now refused
        let rows = DistArray::<f64, _, 2>::new(comm.clone(), SHAPE2).expect("array");
        let cols = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, p], SHAPE2).expect("array");
        let r = f.write("mixed", if rank == 0 { &rows } else { &cols });
        done.push(expect_err(
            comm,
            "write with a partition that differs between ranks",
            r,
            invalid,
        ));
        let r = f.read_into("u", if rank == 0 { &rows } else { &cols });
        done.push(expect_err(
            comm,
            "read_into with a partition that differs between ranks",
            r,
            invalid,
        ));
        // still in step
        ok("read u into rows", f.read_into("u", &rows));
        assert_eq!(rows.to_vec().expect("to_vec"), a.to_vec().expect("to_vec"));
    }
    assert_eq!(
        f.dataset_names().expect("names"),
        vec!["bc".to_string(), "u".to_string(), "w".to_string()]
    );
    ok("close", f.close());

    // an array of another communicator shape cannot be written: tested by
    // rank and size; the file and the array here share MPI_COMM_WORLD's.
    format!("{} bad inputs refused on every rank", done.len())
}
