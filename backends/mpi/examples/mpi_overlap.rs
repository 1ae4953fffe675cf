//! Overlap of non-blocking RMA with computation, on the MPI backend: rank 0
//! reads a block of rank 1's part while it computes on its own data, in
//! four ways, each timed (median of the trials, alternating):
//!
//! * `get`: `DistArray::get_block` alone;
//! * `compute`: the computation alone (sweeps over a local vector);
//! * `blocking`: `get_block`, then the computation;
//! * `overlapped`: `get_block_start`, the computation, `PendingGet::wait`.
//!
//! It prints the times and how much of the shorter of the two the overlap
//! hid: `(get + compute - overlapped) / min(get, compute)` (1 = all of it).
//! Whether the transfer moves while rank 0 computes depends on the MPI
//! library and transport (a progress thread, RDMA hardware, shared
//! memory): the figure says what this one does.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_overlap
//! mpirun -n 2 target/release/examples/mpi_overlap [elements] [sweeps]
//! ```

use std::hint::black_box;
use std::time::Instant;

use distarray::{Block, DistArray, OneSidedComm};
use distarray_mpi::MpiComm;

const TRIALS: usize = 11;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let (me, p) = (comm.rank(), comm.size());
    if p < 2 {
        eprintln!("mpi_overlap needs 2 ranks (mpirun -n 2 ...)");
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(1 << 17, |a| a.parse().expect("elements"));
    let sweeps: usize = args.next().map_or(8, |a| a.parse().expect("sweeps"));
    let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n * p], |[i]| i as f64)?;
    let rank1 = n..2 * n;
    let remote = Block::new([rank1]); // rank 1's part
    let local: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
    let compute = || {
        let mut s = 0.0;
        for k in 0..sweeps {
            s += local.iter().map(|x| x * (k as f64 + 1.0)).sum::<f64>();
        }
        black_box(s)
    };
    let (mut tg, mut tc, mut tb, mut to) = (vec![], vec![], vec![], vec![]);
    if me == 0 {
        for _ in 0..TRIALS {
            let t = Instant::now();
            black_box(a.get_block(&remote)?);
            tg.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            compute();
            tc.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            black_box(a.get_block(&remote)?);
            compute();
            tb.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let pending = a.get_block_start(&remote)?;
            compute();
            let got = pending.wait()?;
            to.push(t.elapsed().as_secs_f64());
            assert_eq!(got.as_slice()[n - 1], (2 * n - 1) as f64);
        }
    }
    comm.barrier()?;
    if me == 0 {
        let (g, c, b, o) = (median(tg), median(tc), median(tb), median(to));
        let hidden = (g + c - o) / g.min(c);
        println!(
            "mpi_overlap: {} KiB from rank 1, {sweeps} sweeps over {} KiB locally ({} ranks)",
            (n * 8) >> 10,
            (n * 8) >> 10,
            p
        );
        println!("| get | compute | blocking (get, then compute) | overlapped (start, compute, wait) | overlapped / blocking | hidden |");
        println!("| --- | --- | --- | --- | --- | --- |");
        println!(
            "| {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.2} | {:.0} % |",
            g * 1e6,
            c * 1e6,
            b * 1e6,
            o * 1e6,
            o / b,
            100.0 * hidden
        );
    }
    Ok(())
}
