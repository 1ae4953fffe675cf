//! Failure handling and strictness of the threaded backend: a failed rank
//! never hangs the others, and conflicting accesses are errors.

use std::time::{Duration, Instant};

use distarray::threaded::{self, ThreadedComm};
use distarray::{DistArray, Error, LockKind, OneSidedComm};

#[test]
fn panicking_rank_makes_run_return_an_error() {
    let start = Instant::now();
    let r = threaded::run(4, |comm| {
        if comm.rank() == 2 {
            panic!("rank two gives up");
        }
        // the others would wait forever for rank 2 without failure handling
        comm.barrier()?;
        comm.barrier()
    });
    match r {
        Err(Error::RankPanicked { rank, message }) => {
            assert_eq!(rank, 2);
            assert!(message.contains("rank two gives up"));
        }
        other => panic!("expected RankPanicked, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn others_see_aborted_in_barrier() {
    let seen = std::sync::Mutex::new(Vec::new());
    let r = threaded::run(3, |comm| {
        if comm.rank() == 0 {
            panic!("first");
        }
        let e = comm.barrier().unwrap_err();
        seen.lock().unwrap().push(e);
    });
    assert!(matches!(r, Err(Error::RankPanicked { rank: 0, .. })));
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|e| matches!(e, Error::Aborted { rank: 0, .. })));
}

#[test]
fn panic_while_holding_a_lock_does_not_hang_waiters() {
    let r = threaded::run(2, |comm: ThreadedComm| {
        let w = comm.create_window::<f64>(4).unwrap();
        if comm.rank() == 0 {
            w.lock(0, LockKind::Exclusive).unwrap();
            comm.barrier().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            // leak the handle so that unwinding cannot release the lock
            std::mem::forget(w);
            panic!("dies holding the lock");
        }
        comm.barrier().unwrap();
        // waits for rank 0's exclusive lock, which is never released
        let e = w.lock(0, LockKind::Shared).unwrap_err();
        assert!(matches!(e, Error::Aborted { rank: 0, .. }), "{e:?}");
    });
    assert!(matches!(r, Err(Error::RankPanicked { rank: 0, .. })));
}

#[test]
fn early_return_does_not_hang_a_collective() {
    let r = threaded::run(3, |comm| {
        if comm.rank() == 1 {
            return Ok(()); // skips the barrier
        }
        comm.barrier()
    })
    .unwrap();
    assert!(r[1].is_ok());
    assert!(matches!(r[0], Err(Error::Aborted { rank: 1, .. })));
    assert!(matches!(r[2], Err(Error::Aborted { rank: 1, .. })));
}

#[test]
fn early_drop_of_an_array_on_one_rank() {
    // Dropping is not collective on the threaded backend: the others keep
    // using their handles (memory lives until the last handle drops).
    let r = threaded::run(2, |comm| -> distarray::Result<f64> {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [8])?;
        a.fill(1.0)?;
        if comm.rank() == 0 {
            drop(a);
            comm.barrier()?;
            return Ok(0.0);
        }
        comm.barrier()?;
        let v = a.get([0])?; // rank 0's part, after rank 0 dropped its handle
        Ok(v)
    })
    .unwrap();
    assert_eq!(r[1].clone().unwrap(), 1.0);
}

#[test]
fn run_rejects_zero_ranks() {
    assert!(matches!(
        threaded::run(0, |_| ()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn remote_write_cannot_reach_a_shared_local_view() {
    threaded::run(2, |comm| {
        let w = comm.create_window::<i32>(2).unwrap();
        if comm.rank() == 0 {
            w.lock(0, LockKind::Shared).unwrap();
            let seen = w
                .with_local(|s| {
                    let before = s[0];
                    comm.barrier().unwrap(); // rank 1 tries to write now
                    comm.barrier().unwrap();
                    (before, s[0])
                })
                .unwrap();
            assert_eq!(seen, (0, 0));
            w.unlock(0).unwrap();
        } else {
            comm.barrier().unwrap();
            // a write under a shared lock is refused outright
            w.lock(0, LockKind::Shared).unwrap();
            let e = w.put(0, 0, &[5]).unwrap_err();
            assert!(matches!(e, Error::EpochMismatch(_)), "{e:?}");
            let mut v = [0];
            w.get(0, 0, &mut v).unwrap(); // reading alongside is fine
            w.unlock(0).unwrap();
            // and an exclusive lock waits for the view; here the owner waits
            // in a barrier inside it, which is reported instead of hanging
            let e = w.lock(0, LockKind::Exclusive).unwrap_err();
            assert!(matches!(e, Error::Deadlock(_)), "{e:?}");
            comm.barrier().unwrap();
        }
    })
    .unwrap();
}

#[test]
fn own_rma_inside_a_mutable_view_is_a_conflict() {
    threaded::run(1, |comm| {
        let w = comm.create_window::<u8>(3).unwrap();
        w.lock(0, LockKind::Exclusive).unwrap();
        w.with_local_mut(|s| {
            s[0] = 1;
            let mut v = [0u8];
            assert!(matches!(w.get(0, 0, &mut v), Err(Error::Conflict { .. })));
            assert!(matches!(w.put(0, 0, &v), Err(Error::Conflict { .. })));
            assert!(matches!(w.with_local(|_| ()), Err(Error::Conflict { .. })));
        })
        .unwrap();
        let mut v = [0u8];
        w.get(0, 0, &mut v).unwrap();
        assert_eq!(v, [1]);
        w.unlock(0).unwrap();
    })
    .unwrap();
}

#[test]
fn exclusive_lock_blocks_until_released() {
    let order = std::sync::Mutex::new(Vec::new());
    threaded::run(2, |comm| {
        let w = comm.create_window::<u64>(1).unwrap();
        if comm.rank() == 0 {
            w.lock(0, LockKind::Exclusive).unwrap();
            comm.barrier().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            order.lock().unwrap().push("rank 0 releases");
            w.unlock(0).unwrap();
        } else {
            comm.barrier().unwrap();
            w.lock(0, LockKind::Shared).unwrap();
            order.lock().unwrap().push("rank 1 acquires");
            w.unlock(0).unwrap();
        }
    })
    .unwrap();
    assert_eq!(
        order.into_inner().unwrap(),
        vec!["rank 0 releases", "rank 1 acquires"]
    );
}

#[test]
fn a_panic_inside_a_local_view_releases_the_lock() {
    threaded::run(2, |comm| {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [4]).unwrap();
        if comm.rank() == 0 {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                a.with_local_mut(|_| panic!("inside the view")).unwrap();
            }));
            assert!(caught.is_err());
            // the epoch guard unlocked during unwinding: locking again works
            a.with_local(|l| assert_eq!(l.as_slice().len(), 2)).unwrap();
        }
        a.barrier().unwrap();
        // and other ranks can read rank 0's part
        assert_eq!(a.get([0]).unwrap(), 0.0);
    })
    .unwrap();
}

#[test]
fn an_error_on_one_rank_fails_the_collective_everywhere() {
    let r = threaded::run(3, |comm| {
        let a = DistArray::<i32, _, 1>::new(comm.clone(), [6]).unwrap();
        // rank 1 holds a lock on its own part: its fill fails locally
        let _guard = (comm.rank() == 1).then(|| a.lock(1, LockKind::Shared).unwrap());
        let e = a.fill(7).unwrap_err();
        if comm.rank() == 1 {
            assert!(matches!(e, Error::AlreadyLocked { target: 1 }), "{e:?}");
        } else {
            // the other ranks learn rank 1's own reason
            assert!(
                matches!(&e, Error::PeerFailed { rank: 1, reason } if reason.contains("already locked")),
                "{e:?}"
            );
        }
    });
    r.unwrap();
}

#[test]
fn a_collective_inside_a_locked_view_is_reported_as_a_deadlock() {
    let start = Instant::now();
    threaded::run(2, |comm| {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [4]).unwrap();
        if comm.rank() == 0 {
            // holds the exclusive lock on its part while waiting in a barrier
            a.with_local_mut(|_| a.barrier().unwrap()).unwrap();
        } else {
            std::thread::sleep(Duration::from_millis(30));
            let e = a.get([0]).unwrap_err();
            assert!(matches!(e, Error::Deadlock(_)), "{e:?}");
            a.barrier().unwrap(); // completes rank 0's barrier
        }
        a.barrier().unwrap();
        assert_eq!(a.get([0]).unwrap(), 0.0);
    })
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn run_ok_flattens_results_and_returns_the_root_cause() {
    let v = threaded::run_ok(3, |comm| Ok(comm.rank() * 2)).unwrap();
    assert_eq!(v, vec![0, 2, 4]);
    // rank 2's own error wins over the PeerFailed the lower ranks return
    let e = threaded::run_ok(3, |comm| {
        let a = DistArray::<i32, _, 1>::new(comm.clone(), [6])?;
        let _guard = (comm.rank() == 2).then(|| a.lock(2, LockKind::Shared).unwrap());
        a.fill(1)
    })
    .unwrap_err();
    assert!(matches!(e, Error::AlreadyLocked { target: 2 }), "{e:?}");
    // a panic is reported as such
    let e = threaded::run_ok(2, |comm| {
        if comm.rank() == 1 {
            panic!("rank one gives up");
        }
        comm.barrier()
    })
    .unwrap_err();
    assert!(matches!(e, Error::RankPanicked { rank: 1, .. }), "{e:?}");
}

#[test]
fn a_rejected_constructor_argument_reaches_every_rank_with_its_reason() {
    let r = threaded::run(3, |comm| {
        let grid = if comm.rank() == 1 { [0, 3] } else { [1, 3] };
        DistArray::<f64, _, 2>::with_grid(comm, grid, [4, 4]).map(|_| ())
    })
    .unwrap();
    assert!(
        matches!(&r[1], Err(Error::InvalidPartition(_))),
        "{:?}",
        r[1]
    );
    for k in [0, 2] {
        let e = r[k].as_ref().unwrap_err();
        assert!(
            matches!(e, Error::PeerFailed { rank: 1, reason } if reason.contains("no parts in dimension 0")),
            "{e:?}"
        );
        // the message says which rank and why
        assert!(e.to_string().contains("rank 1 failed"), "{e}");
    }
}

#[test]
fn messages_count_parts_and_ranks_in_good_grammar() {
    let e = distarray::ContinuousPartitioning::<1>::with_grid([4], [1])
        .unwrap()
        .check_nparts(2)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid partition: process grid [1] has 1 part but the communicator has 2 ranks"
    );
    let e = Error::RankOutOfRange { rank: 3, size: 1 };
    assert_eq!(
        e.to_string(),
        "rank 3 is out of range for a communicator of 1 rank"
    );
}

/// An epoch guard dropped inside a view of the part it locks cannot unlock
/// (the view relies on the lock): the rank panics, which ends the run,
/// instead of leaking a lock the other rank would wait for forever.
#[test]
fn epoch_dropped_inside_its_view_does_not_leak_the_lock() {
    let r = threaded::run(2, |comm| {
        let a = distarray::DistArray::<u8, _, 1>::new(comm.clone(), [4]).unwrap();
        if comm.rank() == 0 {
            let epoch = a.lock(0, LockKind::Exclusive).unwrap();
            let _ = a.window().with_local(|_| drop(epoch));
        } else {
            // would wait forever for rank 0's leaked lock
            let _ = a.set([0], 1);
        }
    });
    assert!(
        matches!(&r, Err(Error::RankPanicked { rank: 0, message }) if message.contains("Epoch dropped")),
        "{r:?}"
    );
}

/// A rank waiting in a neighbour exchange waits for its neighbours only:
/// rank 0 holds a lock on rank 2 while it waits for rank 1's message, and
/// rank 2 waits for that lock. Rank 1's message arrives later, so every
/// rank finishes — no `Deadlock` reported (an exchange is not a collective
/// that rank 2 must join).
#[test]
fn exchange_waits_only_for_neighbours() {
    let out = threaded::run(3, |comm| {
        let w = comm.create_window::<u8>(1)?;
        comm.barrier()?;
        match comm.rank() {
            0 => {
                w.lock(2, LockKind::Exclusive)?;
                let mut got = [0u8];
                comm.messages()
                    .expect("threaded has messages")
                    .exchange_bytes(&[], &mut [(1, &mut got[..])])?;
                w.unlock(2)?;
                assert_eq!(got, [7]);
            }
            1 => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                comm.messages()
                    .expect("threaded has messages")
                    .exchange_bytes(&[(0, &[7u8][..])], &mut [])?;
            }
            _ => {
                std::thread::sleep(std::time::Duration::from_millis(30));
                w.lock(2, LockKind::Shared)?;
                w.unlock(2)?;
                comm.messages()
                    .expect("threaded has messages")
                    .exchange_bytes(&[], &mut [])?;
            }
        }
        comm.barrier()
    })
    .unwrap();
    for (r, o) in out.into_iter().enumerate() {
        assert!(o.is_ok(), "rank {r}: {o:?}");
    }
}
