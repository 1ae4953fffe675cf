//! The tree collectives of the threaded backend: the bracketing is the
//! documented one (`collective::tree_combine`), and failures never hang.

use std::time::{Duration, Instant};

use distarray::collective::{allreduce_vote, tree_combine, vote};
use distarray::{threaded, DistArray, Error, OneSidedComm};
use rstest::rstest;

fn wild(r: usize) -> f64 {
    let e = (r * 7 % 13) as i32 - 6;
    (1.0 + r as f64 / 3.0) * 10f64.powi(e) * if r.is_multiple_of(2) { 1.0 } else { -1.0 }
}

#[rstest]
fn allreduce_bits_are_the_documented_tree(#[values(1, 2, 3, 5, 8, 9)] p: usize) {
    let got = threaded::run(p, |comm| {
        allreduce_vote(&comm, Ok(wild(comm.rank())), |a, b| a + b)
    })
    .unwrap();
    let parts: Vec<[u8; 8]> = (0..p).map(|r| wild(r).to_le_bytes()).collect();
    let refs: Vec<&[u8]> = parts.iter().map(|b| &b[..]).collect();
    let add = |lo: &[u8], hi: &mut [u8]| {
        let (a, b) = (
            f64::from_le_bytes(lo.try_into().unwrap()),
            f64::from_le_bytes(hi[..].try_into().unwrap()),
        );
        hi.copy_from_slice(&(a + b).to_le_bytes());
    };
    let want = f64::from_le_bytes(tree_combine(&refs, &add).try_into().unwrap());
    for g in got {
        assert_eq!(g.unwrap().to_bits(), want.to_bits());
    }
}

#[test]
fn a_rank_returning_before_an_allreduce_does_not_hang_it() {
    let start = Instant::now();
    let r = threaded::run(5, |comm| {
        if comm.rank() == 3 {
            return Ok(0.0);
        }
        allreduce_vote(&comm, Ok(1.0), |a, b| a + b)
    })
    .unwrap();
    for (rank, v) in r.into_iter().enumerate() {
        if rank != 3 {
            assert!(
                matches!(v, Err(Error::Aborted { .. })),
                "rank {rank}: {v:?}"
            );
        }
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_panic_during_an_allreduce_ends_the_run() {
    let start = Instant::now();
    let r = threaded::run(4, |comm| {
        if comm.rank() == 0 {
            panic!("rank zero gives up");
        }
        allreduce_vote(&comm, Ok(comm.rank() as u64), |a, b| a + b)
    });
    assert!(
        matches!(r, Err(Error::RankPanicked { rank: 0, .. })),
        "{r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn payloads_of_different_lengths_fail_instead_of_hanging() {
    let start = Instant::now();
    let r = threaded::run(2, |comm| {
        let mut buf = vec![0u8; 8 * (comm.rank() + 1)];
        comm.allreduce_bytes(&mut buf, &|_, _| {})
    })
    .unwrap();
    assert!(r.iter().all(|v| v.is_err()), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_vote_inside_a_locked_view_is_reported_as_a_deadlock() {
    let start = Instant::now();
    threaded::run(2, |comm| {
        let a = DistArray::<f64, _, 1>::new(comm.clone(), [4]).unwrap();
        if comm.rank() == 0 {
            // holds the exclusive lock on its part while waiting in a vote
            a.with_local_mut(|_| vote(&comm, Ok(())).unwrap()).unwrap();
        } else {
            std::thread::sleep(Duration::from_millis(30));
            let e = a.get([0]).unwrap_err();
            assert!(matches!(e, Error::Deadlock(_)), "{e:?}");
            vote(&comm, Ok(())).unwrap(); // completes rank 0's vote
        }
        a.barrier().unwrap();
        assert_eq!(a.get([0]).unwrap(), 0.0);
    })
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// Votes, reductions and a column-split product (tree collectives and
/// staging puts) in checking mode and under controlled schedules: no
/// spurious race or deadlock, and the same bits in every schedule.
fn reduce_everything(comm: threaded::ThreadedComm) -> distarray::Result<Vec<u64>> {
    let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [12], |[i]| wild(i))?;
    vote(&comm, Ok(()))?;
    let d = distarray::linalg::dot(&x, &x)?;
    let s = x.sum()?;
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, comm.size()], [5, 12])?;
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| wild(i * 12 + j)))?;
    let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [5])?;
    distarray::linalg::matvec(&a, &x, &mut y)?;
    let mut out = vec![d.to_bits(), s.to_bits()];
    out.extend(y.to_vec()?.iter().map(|v| v.to_bits()));
    Ok(out)
}

#[test]
fn tree_collectives_under_checking_mode_and_controlled_schedules() {
    let plain = threaded::run(3, reduce_everything).unwrap();
    let want = plain[0].as_ref().unwrap().clone();
    let checked = threaded::run_checked(3, reduce_everything).unwrap();
    for r in &checked {
        assert_eq!(r.as_ref().ok(), Some(&want), "{checked:?}");
    }
    threaded::check(3, 40, |comm| {
        let v = reduce_everything(comm)?;
        assert_eq!(v, want, "the same bits in every schedule");
        Ok::<_, Error>(())
    })
    .unwrap();
    for seed in [1, 7] {
        for r in threaded::replay(3, seed, reduce_everything).unwrap() {
            assert_eq!(r.unwrap(), want);
        }
    }
}

#[test]
fn a_length_mismatch_breaks_the_communicator_instead_of_hanging_later() {
    let start = Instant::now();
    let r = threaded::run(2, |comm| {
        let mut buf = vec![0u8; 8 * (comm.rank() + 1)];
        let first = comm.allreduce_bytes(&mut buf, &|_, _| {});
        // rank 0 carries on into a barrier, rank 1 is still in the allreduce
        let second = comm.barrier();
        (first.is_err(), second.is_err())
    })
    .unwrap();
    assert!(r.iter().all(|&(a, b)| a && b), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// The recursive-halving reduce-scatter against a serial sum, for every P
/// up to 9 and parts of every size (empty ones too): exact for integers,
/// bitwise the same on every run for floats.
#[test]
fn reduce_scatter_halving_sums_every_part() {
    use distarray::collective::reduce_scatter_halving;
    for p in 1..=9usize {
        // part sizes 0, 1, 2, 0, 1, 2, ... plus 3 on the last rank
        let sizes: Vec<usize> = (0..p)
            .map(|r| r % 3 + usize::from(r == p - 1) * 3)
            .collect();
        let mut bounds = vec![0usize];
        for s in &sizes {
            bounds.push(bounds.last().unwrap() + s);
        }
        let n = *bounds.last().unwrap();
        let contrib = |r: usize, i: usize| (r * 131 + i * 7) as u64;
        let want: Vec<u64> = (0..n)
            .map(|i| (0..p).map(|r| contrib(r, i)).sum())
            .collect();
        let b = bounds.clone();
        let got = distarray::threaded::run_ok(p, move |comm| {
            let me = comm.rank();
            let mut data: Vec<u64> = (0..n).map(|i| contrib(me, i)).collect();
            reduce_scatter_halving(&comm, &mut data, &b, |x, y| x + y)?;
            let mut fl: Vec<f64> = (0..n).map(|i| 0.1 * contrib(me, i) as f64 + 1e-3).collect();
            let mut fl2 = fl.clone();
            reduce_scatter_halving(&comm, &mut fl, &b, |x, y| x + y)?;
            reduce_scatter_halving(&comm, &mut fl2, &b, |x, y| x + y)?;
            let r = b[me]..b[me + 1];
            let same = fl[r.clone()]
                .iter()
                .zip(&fl2[r.clone()])
                .all(|(x, y)| x.to_bits() == y.to_bits());
            Ok((data[r].to_vec(), same))
        })
        .unwrap();
        for (r, (mine, same)) in got.into_iter().enumerate() {
            assert_eq!(mine, want[bounds[r]..bounds[r + 1]], "P = {p}, rank {r}");
            assert!(same, "P = {p}: floats differ between two runs");
        }
    }
    // bounds that do not fit: refused on every rank
    let errs = distarray::threaded::run(3, |comm| {
        let mut data = vec![0u8; 4];
        reduce_scatter_halving(&comm, &mut data, &[0, 1, 2], |x, y| x + y)
    })
    .unwrap();
    assert!(errs
        .iter()
        .all(|e| matches!(e, Err(distarray::Error::InvalidArgument(_)))));
}

/// A halo leaked with an update in flight (its message never received)
/// does not shift the next exchange between the same ranks: messages are
/// matched by the order their exchanges started.
#[test]
fn leaked_halo_does_not_shift_later_exchanges() {
    use distarray::{DistArray, Halo};
    let out = distarray::threaded::run_ok(2, |comm| {
        let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [8], |[i]| i as f64)?;
        let b = DistArray::<f64, _, 1>::from_fn(comm.clone(), [8], |[i]| 100.0 + i as f64)?;
        let mut leaked = Halo::new(&a, [1], [true])?;
        let mut hb = Halo::new(&b, [1], [true])?;
        std::mem::forget(leaked.start_update(&a)?);
        std::mem::forget(leaked);
        hb.update_ghosts(&b)?;
        let r = hb.own_range()[0].clone();
        Ok((
            hb.get([r.start as isize - 1]),
            ((r.start + 7) % 8) as f64 + 100.0,
        ))
    })
    .unwrap();
    for (got, want) in out {
        assert_eq!(got, Some(want));
    }
}
