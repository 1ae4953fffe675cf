//! Parallel HDF5 through distarray against the C program
//! `bench/hdf5/h5bench.c` (raw `H5Dwrite` / `H5Dread`): the same 2-D
//! float64 array, rows split over the ranks (the default partition), each
//! rank's part one hyperslab in one collective transfer, contiguous
//! dataset without fill values. Times, per repetition, the slowest rank
//! from a barrier to the end of the close:
//!
//! * write = `Hdf5File::create` + `write` + `close`;
//! * read  = `Hdf5File::open` + `read_into` (an array allocated once, as
//!   the C program's buffer) + `close`.
//!
//! ```text
//! cargo build --release -p distarray-mpi --features hdf5 --example hdf5_bench
//! mpirun -n 2 target/release/examples/hdf5_bench FILE ROWS COLS REPS
//! ```
//!
//! `bench/hdf5/run.sh` builds both and runs them alternately.

use std::time::Instant;

use distarray::{DistArray, OneSidedComm, Result};
use distarray_mpi::hdf5::Hdf5File;
use distarray_mpi::MpiComm;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: hdf5_bench FILE ROWS COLS REPS");
        std::process::exit(2);
    }
    let path = &args[1];
    let rows: usize = args[2].parse().expect("ROWS");
    let cols: usize = args[3].parse().expect("COLS");
    let reps: usize = args[4].parse().expect("REPS");
    let (_env, comm) = MpiComm::init()?;

    let a = DistArray::<f64, _, 2>::new(comm.clone(), [rows, cols])?;
    let value = |i: usize, j: usize| (i * cols + j) as f64 * 0.5;
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j)))?;
    let b = a.similar::<f64>()?;

    // the slowest rank's time of `f`, from a barrier
    let timed = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        comm.barrier()?;
        let t0 = Instant::now();
        f()?;
        let t = t0.elapsed().as_secs_f64();
        let all = comm.allgather(&[t])?;
        Ok(all.iter().map(|v| v[0]).fold(0.0, f64::max))
    };
    let mut tw = Vec::with_capacity(reps);
    let mut tr = Vec::with_capacity(reps);
    for _ in 0..reps {
        tw.push(timed(&|| {
            let file = Hdf5File::create(&comm, path)?;
            file.write("x", &a)?;
            file.close()
        })?);
        tr.push(timed(&|| {
            let file = Hdf5File::open(&comm, path)?;
            file.read_into("x", &b)?;
            file.close()
        })?);
    }
    // the values survived the round trip
    let range = b.local_indices(comm.rank())?;
    b.with_local(|l| {
        let c = range[1].len();
        for (k, v) in l.as_slice().iter().enumerate() {
            let (i, j) = (range[0].start + k / c, range[1].start + k % c);
            assert!(*v == value(i, j), "wrong value at [{i}, {j}]");
        }
    })?;
    tw.sort_by(f64::total_cmp);
    tr.sort_by(f64::total_cmp);
    if comm.rank() == 0 {
        let gib = (rows * cols * 8) as f64 / (1u64 << 30) as f64;
        let (w, r) = (tw[reps / 2], tr[reps / 2]);
        println!(
            "rust P={} {rows}x{cols} f64 ({gib:.4} GiB): write median {:.2} ms ({:.2} GiB/s, best \
             {:.2} ms), read median {:.2} ms ({:.2} GiB/s, best {:.2} ms), {reps} reps",
            comm.size(),
            1e3 * w,
            gib / w,
            1e3 * tw[0],
            1e3 * r,
            gib / r,
            1e3 * tr[0]
        );
    }
    Ok(())
}
