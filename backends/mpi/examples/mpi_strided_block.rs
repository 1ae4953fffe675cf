//! A strided block read, measured against raw MPI in one run: rank 0 reads
//! a column panel (all of rank 1's rows, `w` columns) of an `n x n` `f64`
//! array split by rows over 2 ranks. That is `n / 2` runs of `w` elements
//! on one target:
//!
//! * `DistArray::get_block_into` (one `MPI_Get` with a derived target
//!   datatype per target; one `MPI_Get` per row with
//!   `DISTARRAY_MPI_DATATYPES=0`);
//! * raw MPI, one `MPI_Get` with an `MPI_Type_vector` target type (what a C
//!   programmer writes);
//! * raw MPI, one `MPI_Get` per row.
//!
//! Each raw variant is a shared lock, the gets and the unlock. Trials of
//! the variants alternate; the median trial is reported, and the ratios
//! against the raw vector type.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_strided_block
//! mpirun -n 2 target/release/examples/mpi_strided_block [n] [w]
//! DISTARRAY_MPI_DATATYPES=0 mpirun -n 2 target/release/examples/mpi_strided_block
//! ```

use std::os::raw::c_int;
use std::time::Instant;

use distarray::{Block, DistArray, OneSidedComm};
use distarray_mpi::MpiComm;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

const TRIALS: usize = 9;

fn main() -> distarray::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: n w"))
        .collect();
    let n = args.first().copied().unwrap_or(4000);
    let w = args.get(1).copied().unwrap_or(64).min(n);
    let (env, comm) = MpiComm::init()?;
    if comm.size() != 2 {
        return Err(distarray::Error::InvalidArgument(
            "run on exactly 2 ranks".into(),
        ));
    }
    let a =
        DistArray::<f64, _, 2>::from_fn(comm.clone(), [n, n], |idx| (idx[0] * n + idx[1]) as f64)?;
    a.barrier()?;
    let rows = a.partitioning().part_range(1)?[0].clone();
    let nrows = rows.len();
    let block = Block::new([rows.clone(), 0..w]);
    let raw = RawWindow {
        win: a.window().backend().raw(),
        first: a.window().backend().displacement(1, 0)?,
    };
    let mut buf = vec![0.0f64; nrows * w];
    let (mut ours, mut vector, mut per_row) = (Vec::new(), Vec::new(), Vec::new());
    if comm.rank() == 0 {
        for _ in 0..TRIALS {
            let t = Instant::now();
            a.get_block_into(&block, &mut buf)?;
            ours.push(t.elapsed().as_secs_f64());
            assert_eq!(buf[w + 1], ((rows.start + 1) * n + 1) as f64);
            let t = Instant::now();
            raw.get_vector(nrows, n, w, &mut buf);
            vector.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            raw.get_rows(nrows, n, w, &mut buf);
            per_row.push(t.elapsed().as_secs_f64());
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2] * 1e3
        };
        let (o, v, r) = (med(&mut ours), med(&mut vector), med(&mut per_row));
        let datatypes = std::env::var("DISTARRAY_MPI_DATATYPES").map_or(true, |v| v != "0");
        println!(
            "n={n} w={w} runs={nrows} datatypes={} | get_block_into {o:.3} ms | raw vector type {v:.3} ms | raw per row {r:.3} ms | ours/vector {:.2}x | per-row/vector {:.2}x",
            if datatypes { "on" } else { "off" },
            o / v,
            r / v
        );
    }
    comm.barrier()?;
    drop(a);
    drop(env);
    Ok(())
}

/// The array's own MPI window, used raw for the baselines (as a C program
/// would use its window).
struct RawWindow {
    win: ffi::MPI_Win,
    /// Rank 1's first element in the raw window.
    first: ffi::MPI_Aint,
}

impl RawWindow {
    /// Lock rank 1, one `MPI_Get` of a vector type, unlock.
    fn get_vector(&self, rows: usize, n: usize, w: usize, dst: &mut [f64]) {
        let dt = f64::equivalent_datatype().as_raw();
        // SAFETY: out-pointer for the type handle.
        let mut ty: ffi::MPI_Datatype = unsafe { std::mem::zeroed() };
        // SAFETY: a vector of `rows` blocks of `w` doubles, stride `n`;
        // committed, used once and freed; `dst` holds `rows * w` doubles;
        // the target range lies in rank 1's part; the unlock completes the
        // get before `dst` is released.
        unsafe {
            ffi::MPI_Type_vector(rows as c_int, w as c_int, n as c_int, dt, &mut ty);
            ffi::MPI_Type_commit(&mut ty);
            ffi::MPI_Win_lock(ffi::MPI_LOCK_SHARED as c_int, 1, 0, self.win);
            ffi::MPI_Get(
                dst.as_mut_ptr().cast(),
                (rows * w) as c_int,
                dt,
                1,
                self.first,
                1,
                ty,
                self.win,
            );
            ffi::MPI_Win_unlock(1, self.win);
            ffi::MPI_Type_free(&mut ty);
        }
    }

    /// Lock rank 1, one `MPI_Get` per row, unlock.
    fn get_rows(&self, rows: usize, n: usize, w: usize, dst: &mut [f64]) {
        let dt = f64::equivalent_datatype().as_raw();
        // SAFETY: each get reads `w` doubles of row `r` of rank 1's part
        // into its own piece of `dst`; the unlock completes them before
        // `dst` is released.
        unsafe {
            ffi::MPI_Win_lock(ffi::MPI_LOCK_SHARED as c_int, 1, 0, self.win);
            for (r, piece) in dst.chunks_mut(w).enumerate().take(rows) {
                ffi::MPI_Get(
                    piece.as_mut_ptr().cast(),
                    w as c_int,
                    dt,
                    1,
                    self.first + (r * n) as ffi::MPI_Aint,
                    w as c_int,
                    dt,
                    self.win,
                );
            }
            ffi::MPI_Win_unlock(1, self.win);
        }
    }
}
