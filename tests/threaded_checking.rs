//! The threaded backend's checking mode: race detection
//! (`threaded::run_checked`) and controlled schedules (`threaded::check`,
//! `threaded::replay`).

use distarray::{conformance, threaded, Error, LockKind, OneSidedComm};

/// The whole conformance suite is race-free: no false alarm, under OS
/// scheduling and under controlled schedules.
#[test]
fn conformance_suite_has_no_races() {
    for p in [1, 2, 3, 4, 8] {
        let counts = threaded::run_checked(p, |comm| conformance::run_all(&comm))
            .unwrap_or_else(|e| panic!("P = {p}: {e}"));
        assert_eq!(counts.len(), p);
    }
    threaded::check(3, 3, |comm| Ok(conformance::run_all(&comm))).unwrap_or_else(|f| panic!("{f}"));
}

/// Two ranks take the exclusive lock on rank 0 in turn and each records the
/// counter it saw: the order of the lock grants.
fn lock_order(comm: distarray::threaded::ThreadedComm) -> distarray::Result<u64> {
    let win = comm.create_window::<u64>(1)?;
    comm.barrier()?;
    win.lock(0, LockKind::Exclusive)?;
    let mut v = [0u64];
    win.get(0, 0, &mut v)?;
    win.flush(0)?;
    win.put(0, 0, &[v[0] + 1])?;
    win.unlock(0)?;
    comm.barrier()?;
    Ok(v[0])
}

#[test]
fn replay_reproduces_an_interleaving_and_seeds_explore_others() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..24 {
        let a: Vec<u64> = threaded::replay(3, seed, lock_order)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for _ in 0..3 {
            let b: Vec<u64> = threaded::replay(3, seed, lock_order)
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(a, b, "seed {seed} replays the same interleaving");
        }
        seen.insert(a);
    }
    // 3 ranks, 6 possible grant orders: the seeds find several of them.
    assert!(
        seen.len() >= 3,
        "only {} grant orders: {seen:?}",
        seen.len()
    );
}

#[test]
fn check_reports_the_failing_seed_and_replay_reproduces_it() {
    // A bug only some interleavings show: rank 1 expects rank 2's write to
    // have happened before its own lock epoch (it is ordered by a lock, so
    // it is not a race, just a wrong assumption).
    let f = |comm: distarray::threaded::ThreadedComm| -> distarray::Result<()> {
        let win = comm.create_window::<u64>(1)?;
        comm.barrier()?;
        if comm.rank() == 2 {
            win.put_locked(0, LockKind::Exclusive, 0, &[7])?;
        }
        if comm.rank() == 1 {
            let mut v = [0u64];
            win.get_locked(0, LockKind::Exclusive, 0, &mut v)?;
            if v[0] != 7 {
                return Err(Error::InvalidArgument(format!("saw {}", v[0])));
            }
        }
        comm.barrier()
    };
    let failure = threaded::check(3, 50, f).unwrap_err();
    assert!(matches!(failure.error, Error::InvalidArgument(ref m) if m == "saw 0"));
    for _ in 0..3 {
        let again = threaded::replay(3, failure.seed, f).unwrap();
        assert!(matches!(again[1], Err(Error::InvalidArgument(_))));
    }
    assert!(failure
        .to_string()
        .contains(&format!("seed {}", failure.seed)));
}

#[test]
fn lock_order_cycle_is_a_deadlock_not_a_hang() {
    let failure = threaded::check(2, 20, |comm| -> distarray::Result<()> {
        let win = comm.create_window::<u8>(1)?;
        comm.barrier()?;
        let (first, second) = if comm.rank() == 0 { (0, 1) } else { (1, 0) };
        win.lock(first, LockKind::Exclusive)?;
        let second_lock = win.lock(second, LockKind::Exclusive);
        if second_lock.is_ok() {
            win.unlock(second)?;
        }
        win.unlock(first)?;
        second_lock
    })
    .unwrap_err();
    assert!(
        matches!(failure.error, Error::Deadlock(ref m) if m.contains("waits for")),
        "{failure}"
    );
}

#[test]
fn fence_epoch_put_get_race_is_found_in_every_schedule() {
    // Rank 0 puts into rank 1's part while rank 2 reads it, one fence
    // epoch: a race whatever the order.
    for seed in 0..10 {
        let out = threaded::replay(3, seed, |comm| -> distarray::Result<()> {
            let win = comm.create_window::<i32>(2)?;
            win.fence()?;
            match comm.rank() {
                0 => win.put(1, 1, &[5])?,
                2 => win.get(1, 1, &mut [0])?,
                _ => {}
            }
            win.fence_end()
        })
        .unwrap();
        let race = out.iter().find_map(|r| match r {
            Err(e @ Error::Race { .. }) => Some(e.clone()),
            _ => None,
        });
        match race {
            Some(Error::Race {
                target: 1,
                offset: 1,
                first_rank,
                second_rank,
                ..
            }) => {
                let mut ranks = [first_rank, second_rank];
                ranks.sort();
                assert_eq!(ranks, [0, 2]);
            }
            other => panic!("seed {seed}: {other:?}"),
        }
    }
}

/// The same lock-order cycle on OS threads (plain `threaded::run`): both
/// ranks hold their first lock (a barrier makes sure), then wait for the
/// other's; the wait graph reports it.
#[test]
fn lock_order_cycle_on_os_threads_is_a_deadlock() {
    for _ in 0..5 {
        let out = threaded::run(2, |comm| -> distarray::Result<()> {
            let win = comm.create_window::<u8>(1)?;
            let (first, second) = if comm.rank() == 0 { (0, 1) } else { (1, 0) };
            win.lock(first, LockKind::Exclusive)?;
            let both_hold = comm.barrier();
            let second_lock = both_hold.and_then(|_| win.lock(second, LockKind::Exclusive));
            if second_lock.is_ok() {
                win.unlock(second)?;
            }
            win.unlock(first)?;
            second_lock
        })
        .unwrap();
        assert!(
            out.iter()
                .any(|r| matches!(r, Err(Error::Deadlock(m)) if m.starts_with("lock-order cycle"))),
            "{out:?}"
        );
    }
}

/// A three-rank cycle: rank r holds r and waits for r + 1.
#[test]
fn three_rank_lock_cycle_on_os_threads_is_a_deadlock() {
    let out = threaded::run(3, |comm| -> distarray::Result<()> {
        let win = comm.create_window::<u8>(1)?;
        let me = comm.rank();
        win.lock(me, LockKind::Exclusive)?;
        comm.barrier()?;
        let next = win.lock((me + 1) % 3, LockKind::Shared);
        if next.is_ok() {
            win.unlock((me + 1) % 3)?;
        }
        win.unlock(me)?;
        next
    })
    .unwrap();
    assert!(
        out.iter()
            .any(|r| matches!(r, Err(Error::Deadlock(m)) if m.starts_with("lock-order cycle"))),
        "{out:?}"
    );
}

/// A put to the own part lands only at the next flush or unlock: a local
/// view after it in the same epoch races with it; a flush orders them.
#[test]
fn own_put_then_view_needs_a_flush() {
    let run = |flush: bool| {
        threaded::run_checked(2, move |comm| -> distarray::Result<i32> {
            let me = comm.rank();
            let win = comm.create_window::<i32>(3)?;
            win.lock(me, LockKind::Exclusive)?;
            win.put(me, 1, &[7])?;
            if flush {
                win.flush(me)?;
            }
            let seen = win.with_local(|s| s[1]);
            win.unlock(me)?;
            seen
        })
        .unwrap()
    };
    for r in run(false) {
        assert!(
            matches!(
                r,
                Err(Error::Race { offset: 1, ref first_op, ref second_op, .. })
                    if first_op == "put" && second_op.starts_with("local read")
            ),
            "{r:?}"
        );
    }
    for r in run(true) {
        assert_eq!(r, Ok(7));
    }
}

/// Same-operation accumulates from every rank in one fence epoch are not a
/// race; a different operation on the same element is.
#[test]
fn accumulate_ops_must_agree() {
    let out = threaded::run_checked(4, |comm| -> distarray::Result<()> {
        let win = comm.create_window::<i64>(2)?;
        win.fence()?;
        win.accumulate(0, 0, &[1], distarray::AccumulateOp::Sum)?;
        win.fence()?;
        let op = if comm.rank() == 3 {
            distarray::AccumulateOp::Max
        } else {
            distarray::AccumulateOp::Sum
        };
        win.accumulate(0, 1, &[1], op)?;
        win.fence_end()
    })
    .unwrap();
    let races: Vec<_> = out
        .iter()
        .filter_map(|r| match r {
            Err(Error::Race {
                offset,
                first_op,
                second_op,
                ..
            }) => Some((*offset, first_op.clone(), second_op.clone())),
            _ => None,
        })
        .collect();
    assert!(!races.is_empty(), "{out:?}");
    for (offset, a, b) in races {
        assert_eq!(offset, 1);
        assert_ne!(a, b, "only different operations race");
    }
}

/// A rank polling a flag in a loop (each poll a locked get) does not starve
/// the rank that sets it: PCT's change points lower the poller's priority.
#[test]
fn polling_terminates_under_controlled_schedules() {
    threaded::check(2, 12, |comm| -> distarray::Result<u32> {
        let win = comm.create_window::<u32>(1)?;
        comm.barrier()?;
        let mut polls = 0;
        if comm.rank() == 0 {
            win.put_locked(1, LockKind::Exclusive, 0, &[1])?;
        } else {
            let mut flag = [0u32];
            while flag[0] == 0 {
                win.get_locked(1, LockKind::Shared, 0, &mut flag)?;
                polls += 1;
            }
        }
        comm.barrier()?;
        Ok(polls)
    })
    .unwrap_or_else(|f| panic!("{f}"));
}

/// The verdict follows happens-before, not timing: the put is long done
/// when the get runs (20 ms later), but nothing orders them, so it is a
/// race in every run, and the same program with a fence between them is
/// clean in every run.
#[test]
fn races_are_found_without_a_collision_in_time() {
    for separated in [false, true] {
        for _ in 0..3 {
            let out = threaded::run_checked(3, move |comm| -> distarray::Result<()> {
                let win = comm.create_window::<i32>(1)?;
                win.fence()?;
                if comm.rank() == 0 {
                    win.put(1, 0, &[3])?;
                }
                if separated {
                    win.fence()?;
                }
                if comm.rank() == 2 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    win.get(1, 0, &mut [0])?;
                }
                win.fence_end()
            })
            .unwrap();
            // (normally rank 0's put comes first, but a descheduled rank 0
            // may run late: either order is the same race)
            let raced = out.iter().any(|r| {
                matches!(r, Err(Error::Race { first_rank, second_rank, .. })
                    if first_rank + second_rank == 2 && first_rank != second_rank)
            });
            assert_eq!(raced, !separated, "{out:?}");
            if separated {
                assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
            }
        }
    }
}
