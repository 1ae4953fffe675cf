//! MPI-specific failure cases, one per mode (run under `mpirun` /
//! `mpiexec` by `tests/mpirun.rs`):
//!
//! * `after-finalize`: handles that outlive the `MpiEnv` guard return
//!   `Error::Backend` from every operation and never call MPI;
//! * `universe-finalize`: the same when the `mpi` crate's `Universe`
//!   (not this crate) finalises MPI;
//! * `thread-level`: `init_with_threading` refuses levels below
//!   `MPI_THREAD_SERIALIZED`, and `init` asks for (and gets) exactly that;
//! * `app-funneled`: `MpiComm::world` refuses an MPI that the application
//!   initialised at `MPI_THREAD_FUNNELED`;
//! * `chunk-failure`: a `get` / `put` / `accumulate` whose third chunk
//!   fails (injected) completes the first two before returning the error;
//! * `window-failure`: window creation that MPI cannot do (run it where no
//!   one-sided component works) returns an `Err` naming cause and fix on
//!   every rank, and the job goes on;
//! * `crossing-handles` (3 ranks): the program of issue 21 — ranks 0 and
//!   1 start `put_block_start(.., Sum)` on two arrays towards rank 2, in
//!   opposite orders, then wait — completes (a second start may be refused
//!   with `Error::HandleInFlight`) instead of hanging;
//! * `leaked-handle` (3 ranks): a handle leaked with `mem::forget` while
//!   another rank writes its target and the owner opens a view hangs no
//!   rank: the leaker's barrier completes it;
//! * `datatype-cache` (2 ranks): strided blocks of one shape, read and
//!   written again and again, build one MPI vector type per window (not
//!   one per operation), and more shapes than a window keeps still give
//!   the right values.
//!
//! Each mode prints `mpi_faults <mode>: ok (...)` on rank 0 when every
//! assertion held; a failed assertion panics (the panic hook aborts the
//! job, non-zero exit).

use distarray::{AccumulateOp, DistArray, Error, LockKind, OneSidedComm};
#[cfg(feature = "fault-injection")]
use distarray_mpi::fault_injection;
use distarray_mpi::{MpiComm, Threading};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "after-finalize" => after_finalize(false),
        "universe-finalize" => after_finalize(true),
        "thread-level" => thread_level(),
        "app-funneled" => app_funneled(),
        #[cfg(feature = "fault-injection")]
        "chunk-failure" => chunk_failure(),
        "window-failure" => window_failure(),
        "crossing-handles" => crossing_handles(),
        "leaked-handle" => leaked_handle(),
        "datatype-cache" => datatype_cache(),
        "multiple-threads" => multiple_threads(),
        other => {
            eprintln!(
                "usage: mpi_faults after-finalize|universe-finalize|thread-level|app-funneled|\
                 chunk-failure|window-failure|crossing-handles|leaked-handle|datatype-cache|\
                 multiple-threads (got \
                 {other:?})"
            );
            std::process::exit(2);
        }
    }
}

/// Asserts that `r` is `Err(Error::Backend(..))` saying MPI is finalised.
fn finalised<T: std::fmt::Debug>(what: &str, r: distarray::Result<T>) {
    match r {
        Err(Error::Backend(msg)) if msg.contains("finalised") => {}
        other => panic!("{what} after MPI_Finalize: expected Error::Backend, got {other:?}"),
    }
}

fn after_finalize(through_universe: bool) {
    let mut env = None;
    let mut universe = None;
    let comm = if through_universe {
        let (u, _) = mpi::initialize_with_threading(Threading::Serialized).expect("MPI_Init");
        universe = Some(u);
        MpiComm::world().expect("MpiComm::world")
    } else {
        let (e, comm) = MpiComm::init().expect("MpiComm::init");
        env = Some(e);
        comm
    };
    let (me, p) = (comm.rank(), comm.size());
    let w = comm.create_window::<u32>(4).expect("create_window");
    let v = comm.create_window::<u32>(4).expect("create_window");
    let a = DistArray::<f64, _, 1>::new(comm.clone(), [2 * p]).expect("DistArray::new");
    let f = comm.create_window::<u8>(2).expect("create_window");
    // epochs open at finalisation: operations in them would reach MPI
    w.lock(me, LockKind::Exclusive).expect("lock");
    f.fence().expect("fence");
    comm.barrier().expect("barrier");
    // finalise MPI while every handle is alive
    drop(env.take());
    drop(universe.take());
    let mut buf = [0u32; 2];
    finalised("get", w.get(me, 0, &mut buf));
    finalised("put", w.put(me, 0, &[1, 2]));
    finalised("accumulate", w.accumulate(me, 0, &[1], AccumulateOp::Sum));
    finalised("get_runs", w.get_runs(me, &[(0, 1), (2, 1)], &mut buf));
    finalised("put_runs", w.put_runs(me, &[(0, 2)], &[1, 2]));
    finalised("flush", w.flush(me));
    finalised("with_local", w.with_local(|s| s.to_vec()));
    finalised("with_local_mut", w.with_local_mut(|s| s[0] = 7));
    finalised("unlock", w.unlock(me));
    finalised("lock", v.lock(0, LockKind::Shared));
    finalised("get_locked", v.get_locked(0, LockKind::Shared, 0, &mut buf));
    finalised("put_locked", v.put_locked(0, LockKind::Exclusive, 0, &[3]));
    finalised("fence", v.fence());
    finalised("put in a fence epoch", f.put((me + 1) % p, 0, &[1]));
    finalised("fence_end", f.fence_end());
    finalised("barrier", comm.barrier());
    finalised("allgather", comm.allgather(&[1u8]));
    finalised("create_window", comm.create_window::<u8>(1));
    finalised("DistArray::get", a.get([0]));
    finalised("DistArray::set", a.set([0], 1.0));
    finalised("DistArray::with_local", a.with_local(|_| ()));
    finalised(
        "DistArray::new",
        DistArray::<f64, _, 1>::new(comm.clone(), [4]),
    );
    assert!(
        MpiComm::world().is_err(),
        "MpiComm::world after MPI_Finalize"
    );
    // dropping the handles after finalisation frees nothing and does not crash
    drop((w, v, f, a, comm));
    if me == 0 {
        let how = if through_universe {
            "the mpi crate's Universe"
        } else {
            "MpiEnv"
        };
        println!(
            "mpi_faults {}: ok (23 operations after MPI_Finalize by {how} returned Error::Backend)",
            if through_universe {
                "universe-finalize"
            } else {
                "after-finalize"
            }
        );
    }
}

fn thread_level() {
    for low in [Threading::Single, Threading::Funneled] {
        match MpiComm::init_with_threading(low) {
            Err(Error::InvalidArgument(msg)) => {
                assert!(msg.contains("Serialized"), "{msg}")
            }
            other => panic!("init_with_threading({low:?}) must be refused, got {other:?}"),
        }
    }
    assert!(
        !mpi::environment::is_initialized(),
        "a refused level must not initialise MPI"
    );
    let (env, comm) = MpiComm::init().expect("MpiComm::init");
    // MPI_Query_thread: what MPI was asked for and provides
    assert_eq!(
        env.threading(),
        Threading::Serialized,
        "MpiComm::init must ask for MPI_THREAD_SERIALIZED (and no more)"
    );
    assert_eq!(mpi::environment::threading_support(), Threading::Serialized);
    comm.barrier().expect("barrier");
    if comm.rank() == 0 {
        println!(
            "mpi_faults thread-level: ok (Single and Funneled refused, init got {:?})",
            env.threading()
        );
    }
}

fn app_funneled() {
    let (universe, provided) =
        mpi::initialize_with_threading(Threading::Funneled).expect("MPI_Init_thread");
    assert!(provided < Threading::Serialized, "MPI gave {provided:?}");
    match MpiComm::world() {
        Err(Error::Backend(msg)) => assert!(msg.contains("SERIALIZED"), "{msg}"),
        other => panic!("MpiComm::world at {provided:?} must be refused, got {other:?}"),
    }
    let rank = mpi::traits::Communicator::rank(&universe.world());
    drop(universe);
    if rank == 0 {
        println!("mpi_faults app-funneled: ok (MpiComm::world refused {provided:?})");
    }
}

#[cfg(feature = "fault-injection")]
/// Rank 0 works on rank 1's part (its own with one rank) in chunks of 4
/// elements whose third chunk fails; every other rank waits in a barrier.
fn chunk_failure() {
    const N: usize = 12;
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    let (me, p) = (comm.rank(), comm.size());
    let target = usize::from(p > 1);
    let w = comm.create_window::<u32>(N).expect("create_window");
    let reset = |base: u32| {
        if me == target {
            w.lock(me, LockKind::Exclusive).expect("lock");
            w.with_local_mut(|s| {
                for (i, x) in s.iter_mut().enumerate() {
                    *x = base + i as u32;
                }
            })
            .expect("with_local_mut");
            w.unlock(me).expect("unlock");
        }
        comm.barrier().expect("barrier");
    };
    let read = || {
        let mut v = [0u32; N];
        w.lock(target, LockKind::Shared).expect("lock");
        w.get(target, 0, &mut v).expect("get");
        w.unlock(target).expect("unlock");
        v
    };
    // runs `call` in chunks of 4 elements with the third chunk failing
    let injected = |what: &str, call: &mut dyn FnMut() -> distarray::Result<()>| {
        fault_injection::set_chunk_len(4);
        fault_injection::fail_chunk(Some(2));
        let r = call();
        fault_injection::fail_chunk(None);
        fault_injection::set_chunk_len(usize::MAX);
        match r {
            Err(Error::Backend(msg)) if msg.contains("injected failure of chunk 2") => {}
            other => panic!("{what}: expected the injected failure, got {other:?}"),
        }
    };
    let issued = 8; // chunks 0 and 1 of 4 elements
    reset(100);
    if me == 0 {
        // get: the issued chunks are complete when the error returns
        let mut dst = [0u32; N];
        w.lock(target, LockKind::Shared).expect("lock");
        injected("get", &mut || w.get(target, 0, &mut dst));
        let seen = dst; // read before any other MPI call
        w.unlock(target).expect("unlock");
        let expect: Vec<u32> = (0..issued as u32).map(|i| 100 + i).collect();
        assert_eq!(
            &seen[..issued],
            &expect[..],
            "get returned its error with issued chunks incomplete"
        );

        // put: the issued chunks used `src` before the error returned
        let mut src: Vec<u32> = (0..N as u32).map(|i| 200 + i).collect();
        w.lock(target, LockKind::Exclusive).expect("lock");
        injected("put", &mut || w.put(target, 0, &src));
        src.fill(999); // the caller reuses its buffer
        w.unlock(target).expect("unlock");
        let got = read();
        let expect: Vec<u32> = (0..N as u32)
            .map(|i| {
                if (i as usize) < issued {
                    200 + i
                } else {
                    100 + i
                }
            })
            .collect();
        assert_eq!(&got[..], &expect[..], "put after its error returned");

        // accumulate: likewise
        let mut src = vec![1000u32; N];
        w.lock(target, LockKind::Exclusive).expect("lock");
        injected("accumulate", &mut || {
            w.accumulate(target, 0, &src, AccumulateOp::Sum)
        });
        src.fill(5);
        w.unlock(target).expect("unlock");
        let got2 = read();
        let expect2: Vec<u32> = expect
            .iter()
            .enumerate()
            .map(|(i, &x)| if i < issued { x + 1000 } else { x })
            .collect();
        assert_eq!(
            &got2[..],
            &expect2[..],
            "accumulate after its error returned"
        );

        // without the injection the same calls succeed
        let mut all = [0u32; N];
        w.lock(target, LockKind::Exclusive).expect("lock");
        w.get(target, 0, &mut all).expect("get");
        assert_eq!(&all[..], &expect2[..]);
        w.unlock(target).expect("unlock");
    }
    comm.barrier().expect("barrier");
    if me == 0 {
        println!(
            "mpi_faults chunk-failure: ok (get, put, accumulate completed 2 issued chunks of 3)"
        );
    }
}

fn window_failure() {
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    match comm.create_window::<f64>(16) {
        Err(Error::Backend(msg)) => {
            assert!(msg.contains("MPI_Win_allocate failed"), "{msg}");
            assert!(
                msg.contains("--mca osc pt2pt") && msg.contains("Likely cause"),
                "the error must name the cause and the fix: {msg}"
            );
            if comm.rank() == 0 {
                println!("mpi_faults window-failure: error was: {msg}");
            }
        }
        other => panic!("window creation was expected to fail here, got {other:?}"),
    }
    // the job goes on: collectives still work, arrays fail the same way
    comm.barrier().expect("barrier after the failed window");
    assert!(DistArray::<f64, _, 1>::new(comm.clone(), [8]).is_err());
    comm.barrier().expect("barrier");
    if comm.rank() == 0 {
        println!("mpi_faults window-failure: ok");
    }
}

/// Two 1-D arrays of `f64` with 4 elements per rank, and the block of the
/// last rank's part.
fn two_arrays(
    comm: &MpiComm,
) -> (
    DistArray<f64, MpiComm, 1>,
    DistArray<f64, MpiComm, 1>,
    distarray::Block<1>,
) {
    let p = comm.size();
    let a = DistArray::<f64, _, 1>::new(comm.clone(), [4 * p]).expect("DistArray::new");
    let b = DistArray::<f64, _, 1>::new(comm.clone(), [4 * p]).expect("DistArray::new");
    let [part] = a.local_indices(p - 1).expect("local_indices");
    (a, b, distarray::Block::new([part]))
}

fn ones(blk: &distarray::Block<1>) -> distarray::GlobalBlock<f64, 1> {
    distarray::GlobalBlock::from_vec(blk.clone(), vec![1.0; blk.len()]).expect("length")
}

/// The program of issue 21 on MPI: each handle of the old design held an
/// exclusive lock epoch on rank 2 from start to wait, so rank 0 (holding
/// A, waiting for B) and rank 1 (holding B, waiting for A) hung in
/// `MPI_Win_lock`.
fn crossing_handles() {
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    let (me, p) = (comm.rank(), comm.size());
    assert!(p >= 3, "crossing-handles needs 3 ranks");
    let (a, b, blk) = two_arrays(&comm);
    comm.barrier().expect("barrier");
    let mut refused = 0u8;
    if me < 2 {
        let (first, second) = if me == 0 { (&a, &b) } else { (&b, &a) };
        let h1 = first
            .put_block_start(ones(&blk), AccumulateOp::Sum)
            .expect("first put_block_start");
        // both ranks hold their first handle before either starts its second
        std::thread::sleep(std::time::Duration::from_millis(200));
        let h2 = match second.put_block_start(ones(&blk), AccumulateOp::Sum) {
            Ok(h) => Some(h),
            Err(Error::HandleInFlight(_)) => None,
            Err(e) => panic!("rank {me}: second put_block_start: {e}"),
        };
        h1.wait().expect("first wait");
        match h2 {
            Some(h) => drop(h.wait().expect("second wait")),
            None => {
                refused = 1;
                second
                    .put_block_start(ones(&blk), AccumulateOp::Sum)
                    .expect("second put_block_start, after the first wait")
                    .wait()
                    .expect("second wait");
            }
        }
    }
    comm.barrier().expect("barrier");
    let refusals: u8 = comm
        .allgather(&[refused])
        .expect("allgather")
        .iter()
        .map(|v| v[0])
        .sum();
    if me == p - 1 {
        let sums = (
            a.with_local(|l| l.as_slice().to_vec()).expect("with_local"),
            b.with_local(|l| l.as_slice().to_vec()).expect("with_local"),
        );
        assert_eq!(sums, (vec![2.0; 4], vec![2.0; 4]), "rank {me}");
        println!(
            "mpi_faults crossing-handles: ok ({refusals} second start(s) refused with \
             HandleInFlight, every sum exact on rank {me})"
        );
    }
}

/// A leaked handle hangs no rank (see the module docs).
fn leaked_handle() {
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    let (me, p) = (comm.rank(), comm.size());
    assert!(p >= 3, "leaked-handle needs 3 ranks");
    let (a, _b, blk) = two_arrays(&comm);
    comm.barrier().expect("barrier");
    match me {
        0 => std::mem::forget(
            a.put_block_start(ones(&blk), AccumulateOp::Sum)
                .expect("put_block_start"),
        ),
        1 => a
            .put_block(&ones(&blk), AccumulateOp::Sum)
            .expect("put_block"),
        _ => {}
    }
    if me == p - 1 {
        a.with_local(|l| l.as_slice().len()).expect("with_local");
    }
    comm.barrier().expect("barrier");
    if me == p - 1 {
        let got = a.with_local(|l| l.as_slice().to_vec()).expect("with_local");
        assert_eq!(
            got,
            vec![2.0; 4],
            "the leaked Sum is complete after the barrier"
        );
    }
    comm.barrier().expect("barrier");
    if me == 0 {
        println!("mpi_faults leaked-handle: ok (the leaked Sum completed at the leaker's barrier)");
    }
}

/// `datatype-cache`: see the module docs.
fn datatype_cache() {
    use distarray::Block;
    let (_env, comm) = MpiComm::init().expect("init");
    let (me, p) = (comm.rank(), comm.size());
    assert_eq!(p, 2, "datatype-cache runs on 2 ranks");
    let (n0, n1) = (16, 40);
    let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [n0, n1], |[i, j]| (i * n1 + j) as f64)
        .expect("array");
    // rows 8..16 are rank 1's, rows 0..8 rank 0's: a block of the other's
    let rows = if me == 0 { 9..13 } else { 2..6 };
    let block = Block::new([rows.clone(), 5..12]);
    let before = distarray_mpi::datatypes_created();
    for _ in 0..10 {
        let got = a.get_block(&block).expect("get_block");
        for (k, v) in got.as_slice().iter().enumerate() {
            let (i, j) = (rows.start + k / 7, 5 + k % 7);
            assert_eq!(*v, (i * n1 + j) as f64);
        }
    }
    a.barrier().expect("barrier");
    // the same shape written: the same type
    let b = a.similar::<f64>().expect("b");
    for _ in 0..10 {
        b.put_block_from(&block, &[1.0; 28], AccumulateOp::Replace)
            .expect("put_block");
    }
    b.barrier().expect("barrier");
    let one_shape = distarray_mpi::datatypes_created() - before;
    // (one per window: a's for the gets, b's for the puts)
    assert_eq!(
        one_shape, 2,
        "rank {me}: vector types built for one block shape"
    );
    // more shapes than a window keeps: every read still right
    let before = distarray_mpi::datatypes_created();
    for round in 0..2 {
        for w in 2..30 {
            let block = Block::new([rows.clone(), 1..1 + w]);
            let got = a.get_block(&block).expect("get_block");
            for (k, v) in got.as_slice().iter().enumerate() {
                let (i, j) = (rows.start + k / w, 1 + k % w);
                assert_eq!(*v, (i * n1 + j) as f64, "round {round}, width {w}");
            }
        }
    }
    let many = distarray_mpi::datatypes_created() - before;
    assert!(many >= 28, "rank {me}: {many} types for 28 shapes");
    a.barrier().expect("barrier");
    if me == 0 {
        println!(
            "mpi_faults datatype-cache: ok (one shape: {one_shape} types, 28 shapes twice: {many})"
        );
    }
}

/// Under `MPI_THREAD_MULTIPLE` (no call lock): two threads of each rank
/// read strided blocks of many shapes from one array at once, so each
/// evicts datatypes from the window's cache that the other may be about
/// to use (a freed type used to be handed out: outside review); every
/// value read is checked. Then a thread keeps reading while the main
/// thread finalises MPI: its reads return errors from some point on, and
/// none runs beside `MPI_Finalize`.
fn multiple_threads() {
    use distarray::Block;
    let (env, comm) = MpiComm::init_with_threading(Threading::Multiple).expect("init");
    let (me, p) = (comm.rank(), comm.size());
    assert_eq!(p, 2, "multiple-threads runs on 2 ranks");
    if env.threading() < Threading::Multiple {
        if me == 0 {
            println!("mpi_faults multiple-threads: ok (MPI provides no MPI_THREAD_MULTIPLE)");
        }
        return;
    }
    let (n0, n1) = (16, 40);
    let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [n0, n1], |[i, j]| (i * n1 + j) as f64)
        .expect("array");
    let rows = if me == 0 { 9..13 } else { 2..6 };
    // one shared epoch on the other rank's part, two threads issuing
    // strided reads in it at once (28 shapes each, in opposite orders)
    let other = 1 - me;
    a.with_epoch(other, LockKind::Shared, |w| {
        std::thread::scope(|s| {
            for t in 0..2 {
                s.spawn(move || {
                    for round in 0..20 {
                        for w0 in 2..30 {
                            let len = if t == 0 { w0 } else { 31 - w0 };
                            // rows 2..6 of the other's part, columns 1..1 + len
                            let runs: Vec<_> = (2..6).map(|r| (r * n1 + 1, len)).collect();
                            let mut got = vec![0.0; 4 * len];
                            w.get_runs(other, &runs, &mut got).expect("get_runs");
                            for (k, v) in got.iter().enumerate() {
                                let (i, j) = (other * 8 + 2 + k / len, 1 + k % len);
                                assert_eq!(*v, (i * n1 + j) as f64, "thread {t}, round {round}");
                            }
                        }
                    }
                });
            }
        });
        Ok(())
    })
    .expect("epoch");
    a.barrier().expect("barrier");
    // a reader beside finalisation
    let a = std::sync::Arc::new(a);
    let reader = {
        let (a, rows) = (a.clone(), rows.clone());
        std::thread::spawn(move || {
            let block = Block::new([rows, 3..9]);
            let mut ok = 0usize;
            loop {
                match a.get_block(&block) {
                    Ok(_) => ok += 1,
                    Err(Error::Backend(m)) if m.contains("finalised") => return ok,
                    Err(e) => panic!("read beside finalisation: {e:?}"),
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    comm.barrier().expect("barrier");
    drop(comm);
    drop(env); // MPI_Finalize, with the array still alive in the reader
    let reads = reader.join().expect("reader");
    if me == 0 {
        println!("mpi_faults multiple-threads: ok ({reads} reads beside finalisation)");
    }
}
