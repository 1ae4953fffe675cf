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
/// without, and the next transpose works again: rows -> rows (every tile
/// packed) and columns -> columns (every tile sent from the part itself),
/// plain and with the fused map.
#[rstest]
fn an_error_on_one_rank_fails_the_transpose_everywhere(
    #[values(false, true)] one_sided: bool,
    #[values(false, true)] columns: bool,
) {
    use distarray::{DistArray, Error, LockKind, OneSidedComm, TransposePlan};
    fn body<C: OneSidedComm>(comm: C, columns: bool) {
        let (me, p) = (comm.rank(), comm.size());
        let grid = if columns { [1, p] } else { [p, 1] };
        let a = DistArray::<i64, _, 2>::with_grid(comm.clone(), grid, [5, 7]).unwrap();
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as i64))
            .unwrap();
        // every pair of ranks exchanges a tile
        let mut b = DistArray::<i64, _, 2>::with_grid(comm.clone(), grid, [7, 5]).unwrap();
        let mut plan = TransposePlan::new(&a, &b).unwrap();
        for fused in [false, true] {
            let _guard = (me == 1).then(|| a.lock(1, LockKind::Shared).unwrap());
            let e = if fused {
                plan.transpose_add_map(&a, &mut b, 1, |v| v + 1)
            } else {
                plan.transpose(&a, &mut b)
            }
            .unwrap_err();
            if me == 1 {
                assert!(matches!(e, Error::AlreadyLocked { target: 1 }), "{e:?}");
            } else {
                assert!(matches!(e, Error::PeerFailed { rank: 1, .. }), "{e:?}");
            }
        }
        // after the failures (which leave `a` unspecified: the fused call
        // may have mapped it on the other ranks): a clean transpose, then
        // the fused kernel
        b.barrier().unwrap();
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as i64))
            .unwrap();
        plan.transpose(&a, &mut b).unwrap();
        plan.transpose_add_map(&a, &mut b, 1, |v| v + 1).unwrap();
        b.barrier().unwrap();
        assert_eq!(b.get([6, 4]).unwrap(), 92);
        assert_eq!(a.get([4, 6]).unwrap(), 47);
    }
    let r = if one_sided {
        threaded::run(3, |comm| {
            body(CountingComm::without_exchange(comm), columns)
        })
    } else {
        threaded::run(3, |comm| body(comm, columns))
    };
    r.unwrap();
}
