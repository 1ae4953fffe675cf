//! The radius-R star stencil of the Parallel Research Kernels on a 2-D
//! process grid, written the idiomatic way: a [`Ghosted`] input (its part
//! stored inside its ghost margins), one `update_ghosts` per iteration
//! (one message per neighbour, faces only), then the stencil of any radius
//! applied in place and `IN += 1` on the part in the same pass
//! ([`Ghosted::apply_within_map`]). Each iteration:
//!
//! ```text
//! OUT += S(IN)  at the points at least R away from the grid's edge
//! IN  += 1      everywhere
//! ```
//!
//! The baseline is `bench/stencil/stencil.c`, the same kernel in C MPI;
//! `bench/stencil/run.sh` runs both. `--unfused` applies the stencil and
//! maps `IN` in two calls (`apply_within`, then `map_inplace`: two passes
//! over memory); `--halo` runs the older idiom instead (a `Halo` refreshed
//! from a `DistArray` each iteration: a copy of the whole part and a vote
//! per refresh).
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_stencil
//! mpirun -n 2 target/release/examples/mpi_stencil N ITERS [R] [--unfused | --halo]
//! ```
//! It prints `rust_stencil n=.. p=.. r=.. per_iter_ms=.. checksum=..`
//! (the checksum, the sum of OUT, is `2 (ITERS + 1) (N - 2R)^2`). With
//! `PARTS=1` in the environment (`mpirun -x PARTS ...`) the ghosted form
//! also prints rank 0's time per iteration in the ghost update, the
//! stencil and `IN += 1` (together when fused; the C program prints the
//! same split).

use std::time::Instant;

use distarray::stencil::{self, Stencil};
use distarray::{DistArray, Ghosted, Halo, OneSidedComm};
use distarray_mpi::MpiComm;

/// The process grid `MPI_Dims_create` picks for two dimensions.
fn dims(p: usize) -> [usize; 2] {
    let mut a = (p as f64).sqrt() as usize;
    while a > 1 && !p.is_multiple_of(a) {
        a -= 1;
    }
    [p / a, a]
}

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let halo_idiom = args.iter().any(|a| a == "--halo");
    let unfused = args.iter().any(|a| a == "--unfused");
    let nums: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("N ITERS [R]"))
        .collect();
    let (n, iters) = (
        nums.first().copied().unwrap_or(1000),
        nums.get(1).copied().unwrap_or(20),
    );
    let r = nums.get(2).copied().unwrap_or(2);
    let grid = dims(comm.size());
    let rr = r as isize;
    // the PRK weights: ±1/(2kR) at distance k along each axis
    let st = Stencil::<f64, 2>::star(r, |o| {
        let k = o[0] + o[1];
        if k == 0 {
            0.0
        } else {
            k.signum() as f64 / (2.0 * k.abs() as f64 * rr as f64)
        }
    })?;
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    let out = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    let inner = [r..n - r, r..n - r];
    let mut t0 = Instant::now();
    if halo_idiom {
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + j) as f64))?;
        let mut h = Halo::new_faces(&a, [r, r], [false, false])?;
        let ext = h.extended_shape();
        let own = h.own_range();
        for it in 0..=iters {
            if it == 1 {
                comm.barrier()?;
                t0 = Instant::now();
            }
            h.refresh(&a)?;
            let region: [std::ops::Range<usize>; 2] = std::array::from_fn(|d| {
                let s = own[d].start.max(r);
                let e = own[d].end.min(n - r).max(s);
                s - own[d].start + r..e - own[d].start + r
            });
            let shape = region.clone().map(|x| x.len());
            let mut buf = vec![0.0; shape[0] * shape[1]];
            stencil::apply(&st, h.as_slice(), ext, region.clone(), &mut buf, false)?;
            out.with_local_mut(|mut l| {
                let w = own[1].len();
                for (k, row) in buf.chunks(shape[1].max(1)).enumerate() {
                    let i = region[0].start - r + k;
                    let j = region[1].start - r;
                    let dst = &mut l.as_mut_slice()[i * w + j..i * w + j + row.len()];
                    dst.iter_mut().zip(row).for_each(|(o, v)| *o += v);
                }
            })?;
            a.map_local(|v| v + 1.0)?;
        }
    } else {
        let mut parts = [0.0f64; 3];
        let mut input = Ghosted::new_faces(&a, [r, r], [false, false])?;
        input.fill_with(|[i, j]| (i + j) as f64);
        for it in 0..=iters {
            if it == 1 {
                comm.barrier()?;
                t0 = Instant::now();
            }
            let t1 = Instant::now();
            input.update_ghosts()?;
            let t2 = Instant::now();
            if unfused {
                input.apply_within(&st, &out, inner.clone(), true)?;
            } else {
                // OUT += S(IN); IN += 1, in one pass
                input.apply_within_map(&st, &out, inner.clone(), true, |v| v + 1.0)?;
            }
            let t3 = Instant::now();
            if unfused {
                input.map_inplace(|v| v + 1.0);
            }
            let t4 = Instant::now();
            if std::env::var("PARTS").is_ok() && it > 0 {
                parts[0] += (t2 - t1).as_secs_f64();
                parts[1] += (t3 - t2).as_secs_f64();
                parts[2] += (t4 - t3).as_secs_f64();
            }
        }
        if std::env::var("PARTS").is_ok() {
            eprintln!(
                "update {:.4} apply {:.4} map {:.4} ms",
                parts[0] / iters as f64 * 1e3,
                parts[1] / iters as f64 * 1e3,
                parts[2] / iters as f64 * 1e3
            );
        }
    }
    let t = t0.elapsed().as_secs_f64();
    let tmax = distarray::collective::allreduce_vote(&comm, Ok(t), f64::max)?;
    let checksum = out.sum()?;
    if comm.rank() == 0 {
        println!(
            "rust_stencil{} n={n} p={} r={r} per_iter_ms={:.4} checksum={checksum:.6e}",
            if halo_idiom {
                "_halo"
            } else if unfused {
                "_unfused"
            } else {
                ""
            },
            comm.size(),
            tmax / iters as f64 * 1e3
        );
    }
    Ok(())
}
