//! Many ranks accumulating into one part (issue 21): what distarray's
//! exclusive lock epochs cost against raw `MPI_Accumulate` under a shared
//! lock, measured in one run on the same window.
//!
//! Every rank adds `n` ones (`f64`, `Sum`) into rank 0's part, `iters`
//! times per trial, with
//!
//! * `put_block`: `DistArray::put_block(.., Sum)` — an exclusive lock epoch
//!   on rank 0 per update (rank 0's own update is a local exclusive view);
//! * `put_block_start`: `put_block_start(.., Sum)` + `wait` (request-based
//!   `MPI_Raccumulate`, same exclusive epochs);
//! * `raw exclusive`: `MPI_Win_lock(EXCLUSIVE, 0)` + `MPI_Accumulate` +
//!   `MPI_Win_unlock`;
//! * `raw shared`: the same under `MPI_LOCK_SHARED` (MPI makes concurrent
//!   accumulates element-wise atomic, so ranks need not exclude each other);
//! * `raw lock_all`: one `MPI_Win_lock_all` per trial, `MPI_Accumulate` +
//!   `MPI_Win_flush(0)` per update (no lock traffic at all).
//!
//! A trial is barrier, `iters` updates on every rank, barrier; rank 0
//! reports the median trial as time per update (every rank does `iters`
//! updates in that time). Trials of the variants alternate. At the end rank
//! 0 checks that every element of its part holds the exact number of
//! updates.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example accumulate_contention
//! mpirun -n 4 target/release/examples/accumulate_contention [n ...]
//! ```

use std::os::raw::{c_int, c_void};
use std::time::Instant;

use distarray::{AccumulateOp, Block, DistArray, GlobalBlock, OneSidedComm};
use distarray_mpi::MpiComm;
use mpi::collective::SystemOperation;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

/// Trials per variant (alternating).
const TRIALS: usize = 7;

const VARIANTS: [&str; 5] = [
    "put_block",
    "put_block_start",
    "raw exclusive",
    "raw shared",
    "raw lock_all",
];

fn check(rc: c_int) {
    assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI call failed");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `MPI_Accumulate` of `src` (`Sum`) into rank 0's part at displacement 0.
///
/// # Safety
///
/// The caller holds a passive-target epoch on rank 0 of `win` (a lock or
/// lock_all) and keeps `src` unchanged until the epoch is flushed or closed.
unsafe fn acc(win: ffi::MPI_Win, disp: ffi::MPI_Aint, src: &[f64]) {
    // SAFETY: `src` holds `src.len()` f64 (rank 0's part holds as many from
    // `disp`, its first element; the window's displacement unit is one
    // element); the epoch is the caller's.
    unsafe {
        check(ffi::MPI_Accumulate(
            src.as_ptr().cast::<c_void>(),
            src.len() as c_int,
            f64::equivalent_datatype().as_raw(),
            0,
            disp,
            src.len() as c_int,
            f64::equivalent_datatype().as_raw(),
            SystemOperation::sum().as_raw(),
            win,
        ));
    }
}

/// One trial of `variant`: `iters` updates of `n` ones into rank 0's part.
fn trial(
    comm: &MpiComm,
    a: &DistArray<f64, MpiComm, 1>,
    blk: &Block<1>,
    variant: &str,
    iters: usize,
) -> distarray::Result<f64> {
    let ones = vec![1.0f64; blk.len()];
    let win = a.window().backend().raw();
    // rank 0's first element in the raw window
    let disp = a.window().backend().displacement(0, 0)?;
    comm.barrier()?;
    let t = Instant::now();
    match variant {
        "put_block" => {
            let gb = GlobalBlock::from_vec(blk.clone(), ones)?;
            for _ in 0..iters {
                a.put_block(&gb, AccumulateOp::Sum)?;
            }
        }
        "put_block_start" => {
            let mut gb = GlobalBlock::from_vec(blk.clone(), ones)?;
            for _ in 0..iters {
                gb = a.put_block_start(gb, AccumulateOp::Sum)?.wait()?;
            }
        }
        "raw exclusive" | "raw shared" => {
            let kind = if variant == "raw shared" {
                ffi::MPI_LOCK_SHARED
            } else {
                ffi::MPI_LOCK_EXCLUSIVE
            } as c_int;
            for _ in 0..iters {
                // SAFETY: valid window, rank 0 in range; no distarray
                // operation runs meanwhile (barriers around the trial), and
                // the unlock completes the accumulate before `ones` is
                // reused.
                unsafe {
                    check(ffi::MPI_Win_lock(kind, 0, 0, win));
                    acc(win, disp, &ones);
                    check(ffi::MPI_Win_unlock(0, win));
                }
            }
        }
        "raw lock_all" => {
            // SAFETY: as above; lock_all opens an epoch on every target, the
            // flush completes each accumulate at rank 0, unlock_all closes.
            unsafe {
                check(ffi::MPI_Win_lock_all(0, win));
                for _ in 0..iters {
                    acc(win, disp, &ones);
                    check(ffi::MPI_Win_flush(0, win));
                }
                check(ffi::MPI_Win_unlock_all(win));
            }
        }
        other => unreachable!("variant {other}"),
    }
    comm.barrier()?;
    Ok(t.elapsed().as_secs_f64() / iters as f64)
}

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let (me, p) = (comm.rank(), comm.size());
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("element counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 1024, 131_072]
    } else {
        sizes
    };
    if me == 0 {
        println!(
            "accumulate_contention: {p} ranks each add n ones (f64 Sum) into rank 0's part; \
             median of {TRIALS} trials, µs per update"
        );
        print!("| n (bytes) | updates per rank |");
        for v in VARIANTS {
            print!(" {v} |");
        }
        println!(" put_block / raw shared |");
        println!("|{}", " --- |".repeat(VARIANTS.len() + 3));
    }
    for &n in &sizes {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [n * p])?;
        let [part] = a.local_indices(0)?;
        let blk = Block::new([part]);
        // about 8 MiB per rank per trial, at least 50 and at most 5000 updates
        let iters = (8 << 20) / (8 * n);
        let iters = iters.clamp(50, 5000);
        let mut times = vec![Vec::new(); VARIANTS.len()];
        for _ in 0..TRIALS {
            for (k, v) in VARIANTS.iter().enumerate() {
                times[k].push(trial(&comm, &a, &blk, v, iters)?);
            }
        }
        let want = (TRIALS * VARIANTS.len() * iters * p) as f64;
        if me == 0 {
            let exact = a.with_local(|l| l.as_slice().iter().all(|&v| v == want))?;
            assert!(exact, "n = {n}: every element must hold {want}");
            let med: Vec<f64> = times.into_iter().map(median).collect();
            print!("| {n} ({} B) | {iters} |", 8 * n);
            for t in &med {
                print!(" {:.2} |", t * 1e6);
            }
            println!(" {:.2}x |", med[0] / med[3]);
        }
        comm.barrier()?;
    }
    Ok(())
}
