//! The time of one ghost update (`Ghosted::update_ghosts`: the faces of
//! width 1 of an `n x n` `f64` array on a 2-D process grid, one message per
//! neighbour) on the Lamellar backend, with the neighbour messages' current
//! transport (`DISTARRAY_LAMELLAR_MESSAGES=am|rdma|off`).
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --example lamellar_halo
//! T=target/release
//! for t in am rdma off; do
//!   DISTARRAY_LAMELLAR_MESSAGES=$t $T/distarray-lamellar-run -n 4 -- $T/examples/lamellar_halo --n 1000
//! done
//! ```
//!
//! Updates run back to back (as in a stencil loop, no barrier between
//! them); PE 0 prints the median and the best of `--reps` rounds of
//! `--batch` updates, per update.

use distarray::{DistArray, Ghosted, OneSidedComm};
use distarray_lamellar::LamellarComm;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() -> distarray::Result<()> {
    let comm = LamellarComm::from_env()?;
    let (n, reps, batch) = (arg("--n", 1000), arg("--reps", 15), arg("--batch", 50));
    let p = comm.size();
    let p2 = (1..=p)
        .filter(|&d| d * d <= p && p / d * d == p)
        .max()
        .unwrap_or(1);
    let grid = [p / p2, p2];
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i * n + j) as f64))?;
    let mut g = Ghosted::new(&a, [1, 1], [false, false])?;
    for _ in 0..batch {
        g.update_ghosts()?;
    }
    let mut per_update = Vec::with_capacity(reps);
    for _ in 0..reps {
        comm.barrier()?;
        let t = std::time::Instant::now();
        for _ in 0..batch {
            g.update_ghosts()?;
        }
        per_update.push(t.elapsed().as_secs_f64() / batch as f64);
    }
    per_update.sort_by(f64::total_cmp);
    if comm.rank() == 0 {
        println!(
            "halo update, {n} x {n} f64, grid {grid:?}, {}: median {:.1} us, best {:.1} us \
             ({reps} rounds of {batch})",
            comm.message_transport(),
            per_update[reps / 2] * 1e6,
            per_update[0] * 1e6
        );
    }
    comm.barrier()
}
