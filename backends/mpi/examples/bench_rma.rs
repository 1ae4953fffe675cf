//! Overhead of distarray's MPI backend against raw `mpi::ffi` calls on the
//! same window, measured in one run:
//!
//! * element get: `DistArray::get` (shared lock + `MPI_Get` +
//!   `MPI_Win_flush_local` + unlock, plus distarray's checks) vs raw
//!   `MPI_Win_lock` + `MPI_Get` + `MPI_Win_unlock`; also the same through
//!   the `Window` trait, through `MpiWindow::lock_get_unlock` (no
//!   intermediate flush), raw with the flush, distarray's checks alone, and
//!   element set (`DistArray::set` vs raw exclusive lock + `MPI_Put` +
//!   unlock);
//! * bulk get of 64 MiB: `Window::get` in a `DistArray::with_epoch` and
//!   `DistArray::get_block_into` vs raw lock + `MPI_Get` + unlock.
//!
//! Rank 0 measures against rank 1's part (remote); the other ranks wait in
//! a barrier. Trials of each variant alternate, and the median trial is
//! reported.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example bench_rma
//! mpirun -n 2 target/release/examples/bench_rma [multiple]
//! ```

use std::hint::black_box;
use std::os::raw::{c_int, c_void};
use std::time::Instant;

use distarray::checks::{Access, WindowState};
use distarray::{Block, DistArray, LockKind, OneSidedComm};
use distarray_mpi::{MpiComm, Threading};
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

/// Element gets per trial.
/// (`BENCH_RMA_ELEM_ITERS` overrides it: over TCP, where a get costs tens
/// of microseconds, e.g. 2000.)
const ELEM_ITERS: usize = 200_000;
/// Trials per variant (alternating).
const TRIALS: usize = 9;
/// Bulk transfer size.
const BULK_BYTES: usize = 64 << 20;
const BULK_TRIALS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn check(rc: c_int) {
    assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI call failed");
}

/// Raw lock + MPI_Get (+ MPI_Win_flush_local if `flush_local`) + unlock of
/// one element, `n` times; seconds per call.
fn raw_elem_get(
    win: ffi::MPI_Win,
    target: c_int,
    disp: ffi::MPI_Aint,
    n: usize,
    flush_local: bool,
) -> f64 {
    let dt = f64::equivalent_datatype().as_raw();
    let mut v = 0.0f64;
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: valid window and rank, `disp` inside the target's part,
        // `v` is a valid f64 buffer, and the unlock completes the get
        // before `v` is read.
        unsafe {
            check(ffi::MPI_Win_lock(
                ffi::MPI_LOCK_SHARED as c_int,
                target,
                0,
                win,
            ));
            check(ffi::MPI_Get(
                (&mut v as *mut f64).cast::<c_void>(),
                1,
                dt,
                target,
                disp,
                1,
                dt,
                win,
            ));
            if flush_local {
                check(ffi::MPI_Win_flush_local(target, win));
            }
            check(ffi::MPI_Win_unlock(target, win));
        }
        black_box(v);
    }
    t.elapsed().as_secs_f64() / n as f64
}

/// Raw exclusive lock + MPI_Put + unlock of one element; seconds per call.
fn raw_elem_put(win: ffi::MPI_Win, target: c_int, disp: ffi::MPI_Aint, n: usize) -> f64 {
    let dt = f64::equivalent_datatype().as_raw();
    let t = Instant::now();
    for i in 0..n {
        let v = i as f64;
        // SAFETY: as in `raw_elem_get`; the unlock completes the put.
        unsafe {
            check(ffi::MPI_Win_lock(
                ffi::MPI_LOCK_EXCLUSIVE as c_int,
                target,
                0,
                win,
            ));
            check(ffi::MPI_Put(
                (&v as *const f64).cast::<c_void>(),
                1,
                dt,
                target,
                disp,
                1,
                dt,
                win,
            ));
            check(ffi::MPI_Win_unlock(target, win));
        }
    }
    t.elapsed().as_secs_f64() / n as f64
}

/// Raw lock + one MPI_Get of `buf.len()` f64 + unlock; seconds.
fn raw_bulk_get(win: ffi::MPI_Win, target: c_int, disp: ffi::MPI_Aint, buf: &mut [f64]) -> f64 {
    let dt = f64::equivalent_datatype().as_raw();
    let t = Instant::now();
    // SAFETY: valid window and rank; the target's part holds `buf.len()`
    // elements from displacement `disp` (its first element); the unlock
    // completes the get.
    unsafe {
        check(ffi::MPI_Win_lock(
            ffi::MPI_LOCK_SHARED as c_int,
            target,
            0,
            win,
        ));
        check(ffi::MPI_Get(
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len() as c_int,
            dt,
            target,
            disp,
            buf.len() as c_int,
            dt,
            win,
        ));
        check(ffi::MPI_Win_unlock(target, win));
    }
    t.elapsed().as_secs_f64()
}

fn main() -> distarray::Result<()> {
    let elem_iters: usize = std::env::var("BENCH_RMA_ELEM_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ELEM_ITERS);
    // MPI_THREAD_SERIALIZED (what MpiComm::init asks for), or
    // `bench_rma multiple` for MPI_THREAD_MULTIPLE (no crate-level lock).
    let level = match std::env::args().nth(1).as_deref() {
        Some("multiple") => Threading::Multiple,
        _ => Threading::Serialized,
    };
    let (env, comm) = MpiComm::init_with_threading(level)?;
    let (me, p) = (comm.rank(), comm.size());
    if p < 2 {
        eprintln!("bench_rma needs at least 2 ranks (mpirun -n 2 ...)");
        return Ok(());
    }
    let target = 1usize;

    // ---- element access: a 1-D array of 1024 f64 per rank ----
    let per = 1024usize;
    let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [per * p], |[i]| i as f64)?;
    let idx = per * target + 17; // owned by `target`, local offset 17
    let win = a.window().backend().raw();
    // local offset 17 of `target`'s part in the raw window
    let d17 = a.window().backend().displacement(target, 17)?;
    let mut elem = Vec::new();
    if me == 0 {
        // warm-up
        for _ in 0..10_000 {
            black_box(a.get([idx])?);
        }
        raw_elem_get(win, target as c_int, d17, 10_000, false);
        let (mut da, mut tr, mut fast, mut rw, mut rwf) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut set_da, mut set_fast, mut set_rw, mut checks) = (vec![], vec![], vec![], vec![]);
        for _ in 0..TRIALS {
            let t = Instant::now();
            for _ in 0..elem_iters {
                black_box(a.get(black_box([idx]))?);
            }
            da.push(t.elapsed().as_secs_f64() / elem_iters as f64);

            let w = a.window();
            let mut v = [0.0f64];
            let t = Instant::now();
            for _ in 0..elem_iters {
                w.lock(target, LockKind::Shared)?;
                w.get(target, 17, &mut v)?;
                w.unlock(target)?;
                black_box(v);
            }
            tr.push(t.elapsed().as_secs_f64() / elem_iters as f64);

            let t = Instant::now();
            for _ in 0..elem_iters {
                w.get_locked(target, LockKind::Shared, 17, &mut v)?;
                black_box(v);
            }
            fast.push(t.elapsed().as_secs_f64() / elem_iters as f64);

            rw.push(raw_elem_get(win, target as c_int, d17, elem_iters, false));
            rwf.push(raw_elem_get(win, target as c_int, d17, elem_iters, true));

            let t = Instant::now();
            for i in 0..elem_iters / 4 {
                a.set(black_box([idx]), i as f64)?;
            }
            set_da.push(t.elapsed().as_secs_f64() / (elem_iters / 4) as f64);
            set_rw.push(raw_elem_put(win, target as c_int, d17, elem_iters / 4));
            let t = Instant::now();
            for i in 0..elem_iters / 4 {
                w.put_locked(target, LockKind::Exclusive, 17, &[i as f64])?;
            }
            set_fast.push(t.elapsed().as_secs_f64() / (elem_iters / 4) as f64);

            // the backend-independent checks alone, as `DistArray::get` runs
            // them (a one-shot epoch approved by the window state)
            let state = WindowState::new(me, vec![per; p], Default::default())?;
            let t = Instant::now();
            for _ in 0..elem_iters {
                let one = state.begin_one_shot(
                    black_box(target),
                    LockKind::Shared,
                    Access::Read,
                    17,
                    1,
                )?;
                drop(black_box(one));
            }
            checks.push(t.elapsed().as_secs_f64() / elem_iters as f64);
        }
        let (da, tr, fast, rw, rwf) = (
            median(da),
            median(tr),
            median(fast),
            median(rw),
            median(rwf),
        );
        let (set_da, set_fast, set_rw, checks) = (
            median(set_da),
            median(set_fast),
            median(set_rw),
            median(checks),
        );
        elem = vec![
            format!("| element get, `DistArray::get` | {:.3} µs | {:.2}× |", da * 1e6, da / rw),
            format!("| element get, `Window` lock + get + unlock | {:.3} µs | {:.2}× |", tr * 1e6, tr / rw),
            format!("| element get, raw `MPI_Win_lock` + `MPI_Get` + `MPI_Win_unlock` | {:.3} µs | 1.00× |", rw * 1e6),
            format!(
                "| element get, `MpiWindow::lock_get_unlock` | {:.3} µs | {:.2}× |",
                fast * 1e6,
                fast / rw
            ),
            format!(
                "| element get, raw lock + `MPI_Get` + `MPI_Win_flush_local` + unlock | {:.3} µs | {:.2}× |",
                rwf * 1e6,
                rwf / rw
            ),
            format!(
                "| (distarray's checks alone: `WindowState` one-shot approval) | {:.3} µs | {:.2}× |",
                checks * 1e6,
                checks / rw
            ),
            format!("| element set, `DistArray::set` | {:.3} µs | {:.2}× |", set_da * 1e6, set_da / set_rw),
            format!(
                "| element set, `MpiWindow::lock_put_unlock` | {:.3} µs | {:.2}× |",
                set_fast * 1e6,
                set_fast / set_rw
            ),
            format!("| element set, raw exclusive lock + `MPI_Put` + unlock | {:.3} µs | 1.00× |", set_rw * 1e6),
        ];
    }
    comm.barrier()?;
    drop(a);

    // ---- bulk: 64 MiB in `target`'s part ----
    let n = BULK_BYTES / std::mem::size_of::<f64>();
    let b = DistArray::<f64, _, 1>::with_part_sizes(
        comm.clone(),
        [(0..p).map(|r| if r == target { n } else { 0 }).collect()],
    )?;
    if me == target {
        b.with_local_mut(|mut l| {
            l.as_mut_slice()
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = i as f64)
        })?;
    }
    b.barrier()?;
    let mut bulk = Vec::new();
    if me == 0 {
        let win = b.window().backend().raw();
        let disp = b.window().backend().displacement(target, 0)?;
        let mut buf = vec![0.0f64; n];
        // warm-up (also faults the pages of `buf` in)
        raw_bulk_get(win, target as c_int, disp, &mut buf);
        let (mut da, mut blk, mut rw) = (vec![], vec![], vec![]);
        let block = Block::full(b.shape()); // all of it lives on `target`
        for _ in 0..BULK_TRIALS {
            let t = Instant::now();
            b.with_epoch(target, LockKind::Shared, |w| w.get(target, 0, &mut buf))?;
            da.push(t.elapsed().as_secs_f64());
            assert_eq!(buf[n - 1], (n - 1) as f64);
            buf[n - 1] = 0.0;
            rw.push(raw_bulk_get(win, target as c_int, disp, &mut buf));
            assert_eq!(buf[n - 1], (n - 1) as f64);
            buf[n - 1] = 0.0;
            let t = Instant::now();
            b.get_block_into(&block, &mut buf)?;
            blk.push(t.elapsed().as_secs_f64());
            assert_eq!(buf[n - 1], (n - 1) as f64);
        }
        let gib = BULK_BYTES as f64 / (1u64 << 30) as f64;
        let (da, blk, rw) = (gib / median(da), gib / median(blk), gib / median(rw));
        bulk = vec![
            format!("| bulk get 64 MiB, `Window::get` in a `DistArray::with_epoch` | {da:.2} GiB/s | {:.2}× |", da / rw),
            format!(
                "| bulk get 64 MiB, `DistArray::get_block_into` (packs, then copies) | {blk:.2} GiB/s | {:.2}× |",
                blk / rw
            ),
            format!("| bulk get 64 MiB, raw lock + `MPI_Get` + unlock | {rw:.2} GiB/s | 1.00× |"),
        ];
    }
    b.barrier()?;
    drop(b);

    if me == 0 {
        println!(
            "distarray-mpi RMA overhead, {p} ranks, {}, MPI thread level {:?}, rank 0 reading rank \
             {target}'s part (median of {TRIALS} trials)",
            env.library_version(),
            env.threading()
        );
        println!();
        println!("| operation | time / rate | relative to raw |");
        println!("| --- | --- | --- |");
        for l in elem.iter().chain(&bulk) {
            println!("{l}");
        }
    }
    Ok(())
}
