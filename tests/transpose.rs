//! The transpose checks of the conformance suite alone, on the threaded
//! backend for P = 1..6, with and without neighbour messages (the full
//! suite in `conformance_threaded` runs them too; this is the quick loop).

use distarray::counting::CountingComm;
use distarray::{conformance, threaded};
use rstest::rstest;

fn run_transpose_checks<C: distarray::OneSidedComm>(comm: &C) -> usize {
    let checks: Vec<_> = conformance::checks::<C>()
        .into_iter()
        .filter(|(name, _)| name.starts_with("transpose"))
        .collect();
    for (_, check) in &checks {
        comm.barrier().expect("barrier");
        check(comm);
    }
    checks.len()
}

#[rstest]
fn transpose_checks(#[values(1, 2, 3, 4, 5, 6)] p: usize) {
    let n = threaded::run(p, |comm| run_transpose_checks(&comm))
        .unwrap_or_else(|e| panic!("P = {p}: {e}"));
    assert!(n.iter().all(|&k| k == 5), "{n:?}");
}

#[rstest]
fn transpose_checks_without_exchange(#[values(1, 2, 3, 4)] p: usize) {
    let n = threaded::run(p, |comm| {
        run_transpose_checks(&CountingComm::without_exchange(comm))
    })
    .unwrap_or_else(|e| panic!("P = {p}: {e}"));
    assert!(n.iter().all(|&k| k == 5), "{n:?}");
}

/// A rank that panics instead of taking part never hangs the others: their
/// transpose returns an error and `run` reports the panic.
#[test]
fn a_panicking_rank_does_not_hang_a_transpose() {
    use distarray::{DistArray, Error, OneSidedComm, TransposePlan};
    let r = threaded::run(3, |comm| {
        let a = DistArray::<f64, _, 2>::new(comm.clone(), [6, 6]).unwrap();
        let mut b = DistArray::<f64, _, 2>::new(comm.clone(), [6, 6]).unwrap();
        let mut plan = TransposePlan::new(&a, &b).unwrap();
        if comm.rank() == 1 {
            panic!("rank one gives up");
        }
        assert!(plan.transpose(&a, &mut b).is_err());
    });
    assert!(
        matches!(r, Err(Error::RankPanicked { rank: 1, .. })),
        "{r:?}"
    );
}

/// A local failure on one rank (its own part already locked, so the
/// transpose cannot read it) is an error on every rank, with messages and
/// without, and the next transpose works again.
#[rstest]
fn an_error_on_one_rank_fails_the_transpose_everywhere(#[values(false, true)] one_sided: bool) {
    use distarray::{DistArray, Error, LockKind, OneSidedComm, TransposePlan};
    fn body<C: OneSidedComm>(comm: C) {
        let me = comm.rank();
        let a = DistArray::<i64, _, 2>::from_fn(comm.clone(), [5, 7], |[i, j]| (10 * i + j) as i64)
            .unwrap();
        // rows -> rows: every pair of ranks exchanges a tile
        let mut b = DistArray::<i64, _, 2>::new(comm.clone(), [7, 5]).unwrap();
        let mut plan = TransposePlan::new(&a, &b).unwrap();
        {
            let _guard = (me == 1).then(|| a.lock(1, LockKind::Shared).unwrap());
            let e = plan.transpose(&a, &mut b).unwrap_err();
            if me == 1 {
                assert!(matches!(e, Error::AlreadyLocked { target: 1 }), "{e:?}");
            } else {
                assert!(matches!(e, Error::PeerFailed { rank: 1, .. }), "{e:?}");
            }
        }
        plan.transpose(&a, &mut b).unwrap();
        assert_eq!(b.get([6, 4]).unwrap(), 46);
    }
    let r = if one_sided {
        threaded::run(3, |comm| body(CountingComm::without_exchange(comm)))
    } else {
        threaded::run(3, body)
    };
    r.unwrap();
}
