//! Micro-benchmarks of the Lamellar backend against raw Lamellar calls.
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --examples
//! target/release/distarray-lamellar-run -n 2 -- target/release/examples/lamellar_bench
//! # over libfabric tcp (the `network` feature), loopback or two namespaces:
//! scripts/lamellar-network.sh --no-build netns -- target/release/examples/lamellar_bench
//! ```
//!
//! Every PE works on its right neighbour ((rank + 1) % P) at the same time
//! (with `--only0`, only PE 0 does; the others work on their own parts);
//! PE 0 prints its own timings. `--quick`: fewer element operations. Figures are medians of `REPS` repetitions.
//! `--block`: only the strided-block figures (a 2-D block of 1000 rows x 8
//! `f64` of the neighbour's part, `get_block_into` / `put_block_from`),
//! each with the runs packed into one active message and with one RDMA
//! operation per row, alternating.

use std::time::Instant;

use distarray::{AccumulateOp, DistArray, LockKind, OneSidedComm};
use distarray_lamellar::lamellar::active_messaging::prelude::*;
use distarray_lamellar::lamellar::memregion::prelude::*;
use distarray_lamellar::LamellarComm;

const REPS: usize = 5;

/// Median of `REPS` runs of `f` (each run returns its own elapsed seconds).
fn median(comm: &LamellarComm, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..REPS)
        .map(|_| {
            comm.barrier().unwrap();
            f()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[REPS / 2]
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let comm = LamellarComm::from_env().expect("world");
    // dropped before `comm` (declared after it)
    let world = comm.world().expect("world");
    let (me, p) = (comm.rank(), comm.size());
    // `--only0`: only PE 0 works on a remote PE; the others work on their
    // own parts (no transfers), so PE 0's target is otherwise idle.
    let only0 = std::env::args().any(|a| a == "--only0");
    let t = if only0 && me != 0 { me } else { (me + 1) % p };
    let quick = std::env::args().any(|a| a == "--quick");
    let n_small: usize = if quick { 200 } else { 2000 };
    let bulk_elems: usize = (8 << 20) / 8; // 8 MiB of f64
    let report = |what: &str, value: String| {
        if me == 0 {
            println!("{what:<58} {value}");
        }
    };
    if me == 0 {
        println!(
            "lamellar bench: {p} PEs, {} worker thread(s) per PE",
            world.num_threads_per_pe()
        );
    }

    if std::env::args().any(|a| a == "--block") {
        block_bench(&comm, t, &report);
        return;
    }

    let s = median(&comm, || {
        timed(|| {
            for _ in 0..100 {
                comm.barrier().unwrap();
            }
        })
    });
    report(
        "barrier (LamellarComm)",
        format!("{:.2} us", s / 100.0 * 1e6),
    );
    let s = median(&comm, || {
        timed(|| {
            for _ in 0..100 {
                world.barrier();
            }
        })
    });
    report(
        "barrier (raw LamellarWorld::barrier)",
        format!("{:.2} us", s / 100.0 * 1e6),
    );
    let s = median(&comm, || {
        timed(|| {
            for _ in 0..100 {
                std::hint::black_box(comm.allgather(&[me as u64]).unwrap());
            }
        })
    });
    report("allgather of one u64", format!("{:.2} us", s / 100.0 * 1e6));
    let s = median(&comm, || {
        timed(|| {
            let r = world.alloc_shared_mem_region::<u64>(1024).block();
            drop(r);
        })
    });
    report(
        "raw alloc_shared_mem_region (1024 u64) + drop",
        format!("{:.3} ms", s * 1e3),
    );

    // Window creation (collective) + drop.
    let s = median(&comm, || {
        timed(|| drop(comm.create_window::<f64>(1024).unwrap()))
    });
    report(
        "create_window (1024 f64) + drop",
        format!("{:.3} ms", s * 1e3),
    );

    let w = comm.create_window::<f64>(bulk_elems).unwrap();
    let region = w.backend().raw_region().expect("region");

    // Passive-target lock round trips.
    let s = median(&comm, || {
        timed(|| {
            for _ in 0..n_small {
                w.lock(t, LockKind::Shared).unwrap();
                w.unlock(t).unwrap();
            }
        })
    });
    report(
        "lock(shared)+unlock on neighbour",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Element get: one epoch per element (what DistArray::get does).
    let s = median(&comm, || {
        timed(|| {
            let mut v = [0.0f64];
            for i in 0..n_small {
                w.lock(t, LockKind::Shared).unwrap();
                w.get(t, i, &mut v).unwrap();
                w.unlock(t).unwrap();
            }
        })
    });
    report(
        "element get, lock+get+unlock (Window)",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Element get inside one epoch.
    let s = median(&comm, || {
        timed(|| {
            let mut v = [0.0f64];
            w.lock(t, LockKind::Shared).unwrap();
            for i in 0..n_small {
                w.get(t, i, &mut v).unwrap();
            }
            w.unlock(t).unwrap();
        })
    });
    report(
        "element get inside one epoch (Window)",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Element put inside one epoch.
    let s = median(&comm, || {
        timed(|| {
            w.lock(t, LockKind::Exclusive).unwrap();
            for i in 0..n_small {
                w.put(t, i, &[i as f64]).unwrap();
            }
            w.unlock(t).unwrap();
        })
    });
    report(
        "element put inside one epoch (Window)",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Raw Lamellar element put.
    let s = median(&comm, || {
        timed(|| {
            for i in 0..n_small {
                // SAFETY: in bounds; each PE writes only its neighbour's
                // part, and nobody reads it meanwhile.
                unsafe { region.put(t, i, i as f64).block() };
            }
        })
    });
    report(
        "element put, raw SharedMemoryRegion::put",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Raw Lamellar element get.
    let s = median(&comm, || {
        timed(|| {
            for i in 0..n_small {
                // SAFETY: in bounds; only read while nobody writes the region.
                std::hint::black_box(unsafe { region.get(t, i).block() });
            }
        })
    });
    report(
        "element get, raw SharedMemoryRegion::get",
        format!("{:.2} us", s / n_small as f64 * 1e6),
    );

    // Raw element gets by PE 0 while the target waits in Lamellar's own
    // barrier (which polls): how fast the target's runtime answers.
    {
        let n = n_small.min(200);
        let mut per_get = 0.0;
        if me == 0 {
            per_get = timed(|| {
                for i in 0..n {
                    // SAFETY: in bounds; only read while nobody writes the region.
                    std::hint::black_box(unsafe { region.get(1 % p, i).block() });
                }
            }) / n as f64;
        }
        world.barrier();
        report(
            "element get, raw, target idle in LamellarWorld::barrier",
            format!("{:.2} us", per_get * 1e6),
        );
    }

    // DistArray element get of an element owned by the neighbour.
    {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [p * 1024]).unwrap();
        let idx = t * 1024 + 7;
        let s = median(&comm, || {
            timed(|| {
                for _ in 0..n_small {
                    std::hint::black_box(a.get([idx]).unwrap());
                }
            })
        });
        report(
            "element get, DistArray::get (neighbour's element)",
            format!("{:.2} us", s / n_small as f64 * 1e6),
        );
    }

    // Bulk get of 8 MiB.
    let mut buf = vec![0.0f64; bulk_elems];
    let bytes = (bulk_elems * 8) as f64;
    let s = median(&comm, || {
        timed(|| {
            w.lock(t, LockKind::Shared).unwrap();
            w.get(t, 0, &mut buf).unwrap();
            w.unlock(t).unwrap();
        })
    });
    report(
        "bulk get 8 MiB (Window, lock+get+unlock)",
        format!("{:.2} GiB/s", bytes / s / (1u64 << 30) as f64),
    );
    let s = median(&comm, || {
        timed(|| {
            // SAFETY: in bounds; only read while nobody writes the region.
            std::hint::black_box(unsafe { region.get_buffer(t, 0, bulk_elems).block() });
        })
    });
    report(
        "bulk get 8 MiB (raw get_buffer)",
        format!("{:.2} GiB/s", bytes / s / (1u64 << 30) as f64),
    );
    let s = median(&comm, || {
        timed(|| {
            w.lock(t, LockKind::Exclusive).unwrap();
            w.put(t, 0, &buf).unwrap();
            w.unlock(t).unwrap();
        })
    });
    report(
        "bulk put 8 MiB (Window, lock+put+unlock)",
        format!("{:.2} GiB/s", bytes / s / (1u64 << 30) as f64),
    );
    let s = median(&comm, || {
        timed(|| {
            // SAFETY: in bounds; nobody else accesses the neighbour's part
            // while this PE writes it (each PE writes only its neighbour).
            unsafe { region.put_buffer(t, 0, &buf[..]).block() };
        })
    });
    report(
        "bulk put 8 MiB (raw put_buffer)",
        format!("{:.2} GiB/s", bytes / s / (1u64 << 30) as f64),
    );
    drop(buf);

    // Accumulate throughput: every PE adds into its neighbour at once.
    let s = median(&comm, || {
        timed(|| {
            w.lock(t, LockKind::Exclusive).unwrap();
            for i in 0..n_small {
                w.accumulate(t, i % 64, &[1.0], AccumulateOp::Sum).unwrap();
            }
            w.unlock(t).unwrap();
        })
    });
    report(
        "accumulate 1 element, one epoch (per PE)",
        format!(
            "{:.2} us/op, {:.0} kop/s",
            s / n_small as f64 * 1e6,
            n_small as f64 / s / 1e3
        ),
    );
    let len = 1 << 16;
    let ones = vec![1.0f64; len];
    let s = median(&comm, || {
        timed(|| {
            w.lock(t, LockKind::Exclusive).unwrap();
            w.accumulate(t, 0, &ones, AccumulateOp::Sum).unwrap();
            w.unlock(t).unwrap();
        })
    });
    report(
        "accumulate 64 Ki f64 in one call (per PE)",
        format!(
            "{:.2} ms, {:.1} M elements/s",
            s * 1e3,
            len as f64 / s / 1e6
        ),
    );
    comm.barrier().unwrap();
}

/// A 2-D block of 1000 rows x 8 `f64` of PE `t`'s part (1000 runs):
/// `get_block_into` and `put_block_from`, packed (one active message) and
/// per row (one RDMA operation each), alternating, 3 rounds.
fn block_bench(comm: &LamellarComm, t: usize, report: &dyn Fn(&str, String)) {
    use distarray::Block;
    const ROWS: usize = 1000;
    const COLS: usize = 64;
    const W: usize = 8;
    let p = comm.size();
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [p, 1], [ROWS * p, COLS]).unwrap();
    let block = Block::new([t * ROWS..(t + 1) * ROWS, 0..W]);
    let mut buf = vec![0.0f64; ROWS * W];
    // packing is off on a network lamellae (no active messages there)
    let modes: &[bool] = if comm.packed_transfers() {
        &[true, false]
    } else {
        &[false]
    };
    for round in 0..3 {
        for &packed in modes {
            comm.set_packed_transfers(packed);
            let ops0 = comm.remote_data_ops();
            let g = median(comm, || {
                timed(|| a.get_block_into(&block, &mut buf).unwrap())
            });
            let ops1 = comm.remote_data_ops();
            let s = median(comm, || {
                timed(|| {
                    a.put_block_from(&block, &buf, AccumulateOp::Replace)
                        .unwrap()
                })
            });
            let ops2 = comm.remote_data_ops();
            let how = if packed { "packed" } else { "per row" };
            report(
                &format!("round {round}: 2-D block {ROWS}x{W} f64, {how}: get / put"),
                format!(
                    "{:.1} us / {:.1} us  ({} / {} transfers each)",
                    g * 1e6,
                    s * 1e6,
                    (ops1 - ops0) / REPS as u64,
                    (ops2 - ops1) / REPS as u64
                ),
            );
        }
    }
    comm.set_packed_transfers(modes[0]);
    comm.barrier().unwrap();
}
