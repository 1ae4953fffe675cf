//! Runs distarray's backend-generic conformance suite on [`MpiComm`], then
//! a few MPI-specific checks (a sub-communicator, conflicts with local
//! views, dropping windows with open epochs).
//!
//! ```text
//! mpirun -n 4 target/debug/conformance
//! ```
//!
//! Every rank runs every check; a failing check panics, and the panic hook
//! aborts the whole job (non-zero exit). On success rank 0 prints
//! `conformance: all N checks passed on P ranks (mpi)`.

use distarray::{conformance, AccumulateOp, Element, Error, LockKind, OneSidedComm};
use distarray_mpi::MpiComm;
use mpi::topology::Color;
use mpi::traits::Communicator;

fn main() -> distarray::Result<()> {
    let (env, comm) = MpiComm::init()?;
    if comm.rank() == 0 {
        println!(
            "conformance: running on {} ranks ({} backend, MPI thread level {:?}, {})",
            comm.size(),
            comm.backend_name(),
            env.threading(),
            env.library_version()
        );
        for q in distarray_mpi::detected_quirks() {
            println!("conformance: worked around: {q}");
        }
    }
    let mut n = run_timed(&comm, &conformance::checks());
    n += mpi_checks(&comm);
    if comm.rank() == 0 {
        println!(
            "conformance: all {n} checks passed on {} ranks ({})",
            comm.size(),
            comm.backend_name()
        );
    }
    Ok(())
}

/// Runs `checks` like [`conformance::run_all`] (a barrier before each);
/// rank 0 prints the checks that took more than a second (slow MPI
/// configurations, e.g. oversubscribed MPICH, show where the time goes).
fn run_timed(comm: &MpiComm, checks: &[conformance::Check<MpiComm>]) -> usize {
    for (name, check) in checks {
        comm.barrier()
            .unwrap_or_else(|e| panic!("barrier before check {name}: {e}"));
        let start = std::time::Instant::now();
        check(comm);
        let took = start.elapsed();
        if comm.rank() == 0 && took.as_secs_f64() > 1.0 {
            println!("conformance: {name} took {took:.1?} on rank 0");
        }
    }
    comm.barrier().expect("final barrier");
    checks.len()
}

/// The MPI-specific checks; returns how many ran.
fn mpi_checks(comm: &MpiComm) -> usize {
    let checks: [conformance::Check<MpiComm>; 8] = [
        ("mpi_wrapping_accumulate", wrapping_accumulate),
        ("mpi_small_unaligned_parts", small_unaligned_parts),
        ("mpi_parts_on_lines", parts_on_lines),
        ("mpi_errors_return", errors_return),
        ("mpi_sub_communicator", sub_communicator),
        ("mpi_self_access_conflicts", self_access_conflicts),
        ("mpi_drop_with_open_epochs", drop_with_open_epochs),
        ("mpi_lock_get_unlock", lock_get_unlock),
    ];
    run_timed(comm, &checks)
}

/// The whole generic suite again on the halves of a split communicator
/// (even and odd ranks), one half after the other: Open MPI 4's default
/// one-sided component (osc/rdma) names its shared-memory file after the
/// communicator id, which both halves of one split share, so windows
/// created on them *at the same time* can collide (Open MPI issue 9492;
/// osc/sm does not have the bug).
fn sub_communicator(comm: &MpiComm) {
    let color = Color::with_value((comm.rank() % 2) as i32);
    let split = comm
        .communicator()
        .split_by_color(color)
        .expect("every rank has a colour");
    let expect_size = (comm.size() + 1 - comm.rank() % 2) / 2;
    assert_eq!(split.size() as usize, expect_size);
    let sub = MpiComm::from_communicator(split).expect("MpiComm on the split communicator");
    assert_eq!(sub.rank(), comm.rank() / 2);
    for half in 0..2 {
        if comm.rank() % 2 == half {
            conformance::run_all(&sub);
            // windows on the sub-communicator only span its ranks
            let w = sub
                .create_window::<u8>(3)
                .expect("window on the sub-communicator");
            assert_eq!(w.size(), expect_size);
            assert!(matches!(
                w.len_of(expect_size),
                Err(Error::RankOutOfRange { .. })
            ));
        }
        comm.barrier().expect("barrier between the halves");
    }
}

/// This rank's own RMA on its own part while a local view is alive fails
/// with `Conflict` (as on the threaded backend) instead of writing under a
/// live slice.
fn self_access_conflicts(comm: &MpiComm) {
    let me = comm.rank();
    let w = comm.create_window::<i32>(4).expect("create_window");
    w.lock(me, LockKind::Exclusive).expect("lock");
    let conflict = |r: distarray::Result<()>| matches!(r, Err(Error::Conflict { .. }));
    w.with_local(|_| {
        assert!(conflict(w.put(me, 0, &[1])), "put under a shared view");
        assert!(
            conflict(w.accumulate(me, 0, &[1], AccumulateOp::Sum)),
            "accumulate under a shared view"
        );
        assert!(
            matches!(w.with_local_mut(|_| ()), Err(Error::Conflict { .. })),
            "mutable view inside a shared view"
        );
        let mut v = [0];
        w.get(me, 0, &mut v)
            .expect("get under a shared view is fine");
    })
    .expect("with_local");
    w.with_local_mut(|s| {
        let mut v = [0];
        assert!(conflict(w.get(me, 0, &mut v)), "get under a mutable view");
        assert!(
            conflict(w.put_runs(me, &[(0, 1)], &[1])),
            "put_runs under a mutable view"
        );
        assert!(
            matches!(w.with_local(|_| ()), Err(Error::Conflict { .. })),
            "shared view inside a mutable view"
        );
        s[0] = 5;
    })
    .expect("with_local_mut");
    // the views are released: RMA on the own part works again
    w.put(me, 1, &[6]).expect("put after the views");
    let mut v = [0; 2];
    w.get(me, 0, &mut v).expect("get after the views");
    assert_eq!(v, [5, 6]);
    w.unlock(me).expect("unlock");
}

/// Dropping windows while this rank still holds locks, or inside a fence
/// epoch, releases them and frees the windows collectively (no hang; the
/// job goes on creating and locking windows afterwards).
fn drop_with_open_epochs(comm: &MpiComm) {
    let (me, p) = (comm.rank(), comm.size());
    let a = comm.create_window::<f64>(2).expect("create_window");
    // shared locks only: exclusive ones taken in a cycle would deadlock
    a.lock(me, LockKind::Shared).expect("lock");
    if p > 1 {
        a.lock((me + 1) % p, LockKind::Shared).expect("second lock");
    }
    let mut v = [0.0; 2];
    a.get((me + 1) % p, 0, &mut v).expect("get");
    drop(a);
    let b = comm.create_window::<f64>(2).expect("create_window");
    b.fence().expect("fence");
    b.put((me + 1) % p, 0, &[1.0]).expect("put in fence epoch");
    drop(b);
    let c = comm.create_window::<f64>(1).expect("create_window");
    for t in 0..p {
        c.lock(t, LockKind::Exclusive).expect("lock after drops");
        c.unlock(t).expect("unlock");
    }
}

/// `MpiWindow::lock_get_unlock` / `lock_put_unlock`: errors and data as
/// lock + get/put + unlock.
fn lock_get_unlock(comm: &MpiComm) {
    let (me, p) = (comm.rank(), comm.size());
    let w = comm.create_window::<u64>(2).expect("create_window");
    let t = (me + 1) % p;
    w.put_locked(t, LockKind::Exclusive, 1, &[me as u64 + 10])
        .expect("lock_put_unlock");
    comm.barrier().expect("barrier");
    let prev = (me + p - 1) % p;
    let mut v = [0u64; 2];
    w.get_locked(me, LockKind::Shared, 0, &mut v)
        .expect("lock_get_unlock");
    assert_eq!(v, [0, prev as u64 + 10]);
    assert!(matches!(
        w.get_locked(t, LockKind::Shared, 1, &mut v),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        w.get_locked(p, LockKind::Shared, 0, &mut v),
        Err(Error::RankOutOfRange { .. })
    ));
    w.lock(t, LockKind::Shared).expect("lock");
    assert!(matches!(
        w.get_locked(t, LockKind::Shared, 0, &mut v),
        Err(Error::AlreadyLocked { .. })
    ));
    w.unlock(t).expect("unlock");
    w.fence().expect("fence");
    assert!(matches!(
        w.put_locked(t, LockKind::Exclusive, 0, &[1]),
        Err(Error::EpochMismatch(_))
    ));
    w.fence_end().expect("fence_end");
    comm.barrier().expect("barrier");
}

/// Windows have `MPI_ERRORS_RETURN`: an erroneous call made directly on the
/// raw handle returns an error code (instead of aborting the job), which
/// `mpi_result` turns into `Error::Backend` with MPI's error string.
fn errors_return(comm: &MpiComm) {
    let w = comm.create_window::<f64>(1).expect("create_window");
    let bad_rank = comm.size() as std::os::raw::c_int;
    // SAFETY: a valid window handle; the rank is out of range, which MPI
    // detects and reports through the window's error handler.
    let rc = unsafe {
        mpi::ffi::MPI_Win_lock(
            mpi::ffi::MPI_LOCK_SHARED as _,
            bad_rank,
            0,
            w.backend().raw(),
        )
    };
    match distarray_mpi::mpi_result(rc, "MPI_Win_lock") {
        Err(Error::Backend(msg)) => {
            assert!(msg.starts_with("MPI_Win_lock failed: "), "{msg}");
            assert!(
                msg.to_lowercase().contains("rank"),
                "no MPI error string: {msg}"
            );
        }
        other => panic!("expected Error::Backend, got {other:?}"),
    }
    comm.barrier().expect("barrier");
}

/// Integer accumulates wrap on long runs, as on the caller's own part and
/// on the other backends (Open MPI 4's vectorised op component saturates
/// 8/16-bit Sum on runs that fill SIMD registers: 255u8 + 1 gave 255).
/// Every rank accumulates into all of rank 0's part under an exclusive
/// lock, then each into its neighbour's part in a fence epoch.
fn wrapping_accumulate(comm: &MpiComm) {
    wraps::<u8>(comm, 254, 2, AccumulateOp::Sum);
    wraps::<i8>(comm, 126, 3, AccumulateOp::Sum);
    wraps::<i8>(comm, -127, -5, AccumulateOp::Sum);
    wraps::<u16>(comm, 65534, 2, AccumulateOp::Sum);
    wraps::<i16>(comm, 32766, 3, AccumulateOp::Sum);
    wraps::<i16>(comm, -32767, -5, AccumulateOp::Sum);
    wraps::<u8>(comm, 17, 16, AccumulateOp::Prod);
    wraps::<i16>(comm, 300, 301, AccumulateOp::Prod);
    wraps::<u32>(comm, u32::MAX - 1, 3, AccumulateOp::Sum);
    wraps::<i64>(comm, i64::MAX, 1, AccumulateOp::Sum);
}

fn wraps<T: Element>(comm: &MpiComm, start: T, incoming: T, op: AccumulateOp) {
    const N: usize = 300;
    let (me, p) = (comm.rank(), comm.size());
    let w = comm.create_window::<T>(N).expect("create_window");
    let fill_own = |v: T| {
        w.lock(me, LockKind::Exclusive).expect("lock own part");
        w.with_local_mut(|s| s.fill(v)).expect("with_local_mut");
        w.unlock(me).expect("unlock own part");
    };
    let own = || {
        w.lock(me, LockKind::Shared).expect("lock own part");
        let v = w.with_local(|s| s.to_vec()).expect("with_local");
        w.unlock(me).expect("unlock own part");
        v
    };
    // every rank into rank 0 (rank 0 into its own part too)
    fill_own(start);
    comm.barrier().expect("barrier");
    let src = vec![incoming; N];
    w.lock(0, LockKind::Exclusive).expect("lock rank 0");
    w.accumulate(0, 0, &src, op).expect("accumulate");
    w.unlock(0).expect("unlock rank 0");
    comm.barrier().expect("barrier");
    if me == 0 {
        let expect = (0..p).fold(start, |acc, _| T::combine(op, acc, incoming));
        let got = own();
        assert!(
            got.iter().all(|&x| x == expect),
            "{:?} {op:?} of {start:?} and {p} x {incoming:?} on a run of {N}: expected {expect:?} \
             everywhere (wrapping), got {:?}",
            T::KIND,
            &got[..got.len().min(40)]
        );
    }
    comm.barrier().expect("barrier");
    // fence epoch: each rank into its neighbour's part, one run per rank
    fill_own(start);
    w.fence().expect("fence");
    w.accumulate((me + 1) % p, 0, &src, op)
        .expect("accumulate in a fence epoch");
    w.fence_end().expect("fence_end");
    let expect = T::combine(op, start, incoming);
    let got = own();
    assert!(
        got.iter().all(|&x| x == expect),
        "{:?} {op:?} in a fence epoch: expected {expect:?} everywhere, got {:?}",
        T::KIND,
        &got[..got.len().min(40)]
    );
    comm.barrier().expect("barrier");
}

/// Windows whose parts are a few bytes long, of a different length on each
/// rank (1..=17 bytes, some empty): every rank writes every other rank's
/// part and reads it back. MPICH 4.0 addressed the parts of such windows
/// wrongly (parts not a multiple of 16 bytes: gets and puts hit the
/// neighbour's bytes); distarray-mpi pads parts to 64 bytes.
/// Every rank's part of a window of 1-, 4- and 8-byte elements starts on a
/// 64-byte line (Open MPI places window memory 8 bytes past one; the
/// backend moves the part), and the elements the other ranks put and get
/// through RMA are the ones the owner sees in its local slice, at the same
/// offsets.
fn parts_on_lines(comm: &MpiComm) {
    fn case<T: distarray::Element + PartialEq + std::fmt::Debug>(
        comm: &MpiComm,
        value: impl Fn(usize, usize) -> T,
    ) {
        let (me, p) = (comm.rank(), comm.size());
        let len = 5 + me;
        let w = comm.create_window::<T>(len).expect("create_window");
        // the raw window's displacements: a part's end is one, past it or
        // a rank out of range is an error
        let raw = w.backend();
        assert!(raw.displacement(me, len).is_ok());
        assert!(matches!(
            raw.displacement(me, len + 1),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            raw.displacement(p, 0),
            Err(Error::InvalidArgument(_))
        ));
        w.lock(me, LockKind::Shared).expect("lock");
        w.with_local(|l| {
            assert_eq!(
                l.as_ptr() as usize % 64,
                0,
                "rank {me}: a part of {}-byte elements off a line",
                std::mem::size_of::<T>()
            )
        })
        .expect("with_local");
        w.unlock(me).expect("unlock");
        // the next rank writes every element of this rank's part remotely
        let next = (me + 1) % p;
        let src: Vec<T> = (0..5 + next).map(|i| value(next, i)).collect();
        w.lock(next, LockKind::Exclusive).expect("lock");
        w.put(next, 0, &src).expect("put");
        w.unlock(next).expect("unlock");
        comm.barrier().expect("barrier");
        w.lock(me, LockKind::Shared).expect("lock");
        w.with_local(|l| {
            let want: Vec<T> = (0..len).map(|i| value(me, i)).collect();
            assert_eq!(l, &want[..], "rank {me}: the puts seen locally");
        })
        .expect("with_local");
        w.unlock(me).expect("unlock");
        // and reads back, one element at a time, what the owner holds
        for i in 0..5 + next {
            let mut v = [value(0, 0)];
            w.lock(next, LockKind::Shared).expect("lock");
            w.get(next, i, &mut v).expect("get");
            w.unlock(next).expect("unlock");
            assert_eq!(
                v[0],
                value(next, i),
                "rank {me}: element {i} of rank {next}"
            );
        }
        comm.barrier().expect("barrier");
    }
    case::<u8>(comm, |r, i| (r * 16 + i + 1) as u8);
    case::<i32>(comm, |r, i| (r * 1000 + i) as i32 - 7);
    case::<f64>(comm, |r, i| r as f64 * 0.5 + i as f64);
}

fn small_unaligned_parts(comm: &MpiComm) {
    let (me, p) = (comm.rank(), comm.size());
    for round in 0..3usize {
        let len_of = |r: usize| (r * 7 + round * 5 + 1) % 18; // 0..=17
        let w = comm.create_window::<u8>(len_of(me)).expect("create_window");
        let value = |owner: usize, writer: usize, i: usize| (owner * 31 + writer * 7 + i + 1) as u8;
        // each rank writes its part in turn (exclusive), then all read all
        for t in 0..p {
            let n = len_of(t);
            let src: Vec<u8> = (0..n).map(|i| value(t, me, i)).collect();
            if (me + round) % p == t % p || p == 1 {
                w.lock(t, LockKind::Exclusive).expect("lock");
                w.put(t, 0, &src).expect("put");
                w.unlock(t).expect("unlock");
            }
        }
        comm.barrier().expect("barrier");
        for t in 0..p {
            let n = len_of(t);
            let writer = (0..p).find(|&r| (r + round) % p == t % p).unwrap_or(0);
            let mut got = vec![0u8; n];
            w.lock(t, LockKind::Shared).expect("lock");
            w.get(t, 0, &mut got).expect("get");
            w.unlock(t).expect("unlock");
            let expect: Vec<u8> = (0..n).map(|i| value(t, writer, i)).collect();
            assert_eq!(
                got, expect,
                "rank {me}: part of rank {t} ({n} bytes) in round {round}"
            );
        }
        comm.barrier().expect("barrier");
    }
}
