//! Property tests: blocks, ghosts, redistribution and filter against a
//! serial reference over random shapes, partitions and P = 1..6, with RMA
//! call counts equal to the number of maximal runs per remote rank.

use distarray::counting::CountingComm;
use distarray::partition::linear_offset;
use distarray::threaded::{self, ThreadedComm};
use distarray::{
    AccumulateOp, Block, ContinuousPartitioning, DistArray, GhostedBlock, GlobalBlock, OneSidedComm,
};
use proptest::prelude::*;

/// A random 2-D partition for `p` ranks: grid `[p1, p / p1]`, random part sizes.
fn partition() -> impl Strategy<Value = (usize, Vec<usize>, Vec<usize>)> {
    (1usize..=6).prop_flat_map(|p| {
        let divisors: Vec<usize> = (1..=p).filter(|d| p % d == 0).collect();
        prop::sample::select(divisors).prop_flat_map(move |p1| {
            (
                Just(p),
                prop::collection::vec(0usize..4, p1),
                prop::collection::vec(0usize..4, p / p1),
            )
        })
    })
}

/// A block inside `shape` from four random numbers (possibly empty).
fn block_in(shape: [usize; 2], (a, b, c, d): (usize, usize, usize, usize)) -> Block<2> {
    let r = |x: usize, y: usize, n: usize| {
        let (x, y) = (x % (n + 1), y % (n + 1));
        x.min(y)..x.max(y)
    };
    Block::new([r(a, b, shape[0]), r(c, d, shape[1])])
}

fn value(i: usize, j: usize) -> i64 {
    (i * 100 + j) as i64
}

/// Minimal number of gets per target: maximal runs of consecutive window
/// offsets among the block's elements, computed element by element.
fn expected_runs(part: &ContinuousPartitioning<2>, block: &Block<2>, me: usize) -> Vec<usize> {
    let mut per: Vec<Vec<usize>> = vec![Vec::new(); part.nparts()];
    for i in block.ranges()[0].clone() {
        for j in block.ranges()[1].clone() {
            let (r, o) = part.owner([i, j]).unwrap();
            per[r].push(o);
        }
    }
    per.into_iter()
        .enumerate()
        .map(|(r, mut offs)| {
            if r == me {
                return 0;
            }
            offs.sort_unstable();
            offs.windows(2).filter(|w| w[1] != w[0] + 1).count() + usize::from(!offs.is_empty())
        })
        .collect()
}

fn make(
    comm: &CountingComm<ThreadedComm>,
    s0: &[usize],
    s1: &[usize],
) -> DistArray<i64, CountingComm<ThreadedComm>, 2> {
    let a = DistArray::with_part_sizes(comm.clone(), [s0.to_vec(), s1.to_vec()]).unwrap();
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j)))
        .unwrap();
    a.barrier().unwrap();
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn get_block_matches_serial_with_minimal_calls(
        (p, s0, s1) in partition(),
        corners in (0usize..100, 0usize..100, 0usize..100, 0usize..100),
    ) {
        let shape = [s0.iter().sum::<usize>(), s1.iter().sum::<usize>()];
        let blk = block_in(shape, corners);
        threaded::run(p, |comm| {
            let cc = CountingComm::new(comm);
            let a = make(&cc, &s0, &s1);
            cc.reset();
            let gb = a.get_block(&blk).unwrap();
            for (idx, v) in gb.iter() {
                assert_eq!(v, value(idx[0], idx[1]));
            }
            let c = cc.counts();
            assert_eq!(c.gets, expected_runs(a.partitioning(), &blk, cc.rank()));
            assert_eq!(c.elements, blk.iter_len_remote(a.partitioning(), cc.rank()));
        }).unwrap();
    }

    #[test]
    fn put_block_replace_and_sum_match_serial(
        (p, s0, s1) in partition(),
        rows in 0usize..4,
        cols in 0usize..4,
    ) {
        let shape = [s0.iter().sum::<usize>(), s1.iter().sum::<usize>()];
        let blk = Block::new([rows.min(shape[0])..shape[0], 0..cols.min(shape[1])]);
        threaded::run(p, |comm| {
            let cc = CountingComm::new(comm);
            let me = cc.rank();
            let a = make(&cc, &s0, &s1);
            let data: Vec<i64> = (0..blk.len()).map(|k| -(k as i64) - 1).collect();
            let gb = GlobalBlock::from_vec(blk.clone(), data.clone()).unwrap();
            cc.reset();
            if me == 0 {
                a.put_block(&gb, AccumulateOp::Replace).unwrap();
                assert_eq!(cc.counts().puts, expected_runs(a.partitioning(), &blk, me));
            }
            a.barrier().unwrap();
            let mut serial: Vec<i64> = (0..shape[0] * shape[1]).map(|k| value(k / shape[1].max(1), k % shape[1].max(1))).collect();
            for (k, (idx, _)) in gb.iter().enumerate() {
                serial[linear_offset(&shape, &idx)] = data[k];
            }
            assert_eq!(a.to_vec().unwrap(), serial);
            a.barrier().unwrap();
            cc.reset();
            a.put_block(&gb, AccumulateOp::Sum).unwrap();
            assert_eq!(cc.counts().accumulates, expected_runs(a.partitioning(), &blk, me));
            a.barrier().unwrap();
            for (k, (idx, _)) in gb.iter().enumerate() {
                serial[linear_offset(&shape, &idx)] += data[k] * p as i64;
            }
            assert_eq!(a.to_vec().unwrap(), serial);
        }).unwrap();
    }

    #[test]
    fn ghosts_match_serial_with_minimal_calls(
        (p, s0, s1) in partition(),
        picks in prop::collection::vec((0usize..100, 0usize..100), 0..40),
    ) {
        let shape = [s0.iter().sum::<usize>(), s1.iter().sum::<usize>()];
        prop_assume!(shape[0] > 0 && shape[1] > 0);
        let ids: Vec<[usize; 2]> = picks.iter().map(|&(i, j)| [i % shape[0], j % shape[1]]).collect();
        threaded::run(p, |comm| {
            let cc = CountingComm::new(comm);
            let me = cc.rank();
            let a = make(&cc, &s0, &s1);
            let mut g = GhostedBlock::from_global_ids(&a, ids.iter().copied()).unwrap();
            cc.reset();
            g.sync(&a).unwrap();
            for id in &ids {
                assert_eq!(g.get_global(*id).unwrap(), value(id[0], id[1]));
            }
            // minimal: maximal runs of distinct owned offsets per remote rank
            let mut per: Vec<Vec<usize>> = vec![Vec::new(); p];
            for id in &ids {
                let (r, o) = a.partitioning().owner(*id).unwrap();
                per[r].push(o);
            }
            let expect: Vec<usize> = per.into_iter().enumerate().map(|(r, mut o)| {
                o.sort_unstable();
                o.dedup();
                if r == me { 0 } else { o.windows(2).filter(|w| w[1] != w[0] + 1).count() + usize::from(!o.is_empty()) }
            }).collect();
            assert_eq!(cc.counts().gets, expect);
            let touched = expect.iter().filter(|&&n| n > 0).count();
            assert_eq!(cc.counts().locks_total() - cc.counts().locks[me], touched);
        }).unwrap();
    }

    #[test]
    fn redistribute_matches_serial(
        (p, s0, s1) in partition(),
        split in prop::collection::vec(0usize..100, 6),
    ) {
        let shape = [s0.iter().sum::<usize>(), s1.iter().sum::<usize>()];
        // new sizes: rows cut at random points into p parts, columns whole
        let mut cuts: Vec<usize> = split[..p - 1].iter().map(|&c| c % (shape[0] + 1)).collect();
        cuts.sort_unstable();
        let mut rows = Vec::new();
        let mut prev = 0;
        for c in cuts.iter().copied().chain([shape[0]]) {
            rows.push(c - prev);
            prev = c;
        }
        threaded::run(p, |comm| {
            let cc = CountingComm::new(comm);
            let a = make(&cc, &s0, &s1);
            let serial = a.to_vec().unwrap();
            let b = a.redistribute_sizes([rows.clone(), vec![shape[1]]]).unwrap();
            assert_eq!(b.partitioning().part_sizes(0), rows);
            assert_eq!(b.to_vec().unwrap(), serial);
            let c = b.redistribute(a.partitioning().clone()).unwrap();
            assert_eq!(c.to_vec().unwrap(), serial);
        }).unwrap();
    }

    #[test]
    fn filter_matches_serial(p in 1usize..=6, n in 0usize..40, m in 1i64..5) {
        threaded::run(p, |comm| {
            let a = DistArray::<i64, _, 1>::from_fn(comm, [n], |[i]| (i as i64 * 37) % 13).unwrap();
            let f = a.filter(|x| x % m == 0).unwrap();
            let serial: Vec<i64> = (0..n).map(|i| (i as i64 * 37) % 13).filter(|x| x % m == 0).collect();
            assert_eq!(f.to_vec().unwrap(), serial);
        }).unwrap();
    }
}

/// Elements a rank fetches remotely for a block.
trait RemoteLen {
    fn iter_len_remote(&self, part: &ContinuousPartitioning<2>, me: usize) -> usize;
}

impl RemoteLen for Block<2> {
    fn iter_len_remote(&self, part: &ContinuousPartitioning<2>, me: usize) -> usize {
        let mut n = 0;
        for i in self.ranges()[0].clone() {
            for j in self.ranges()[1].clone() {
                n += usize::from(part.owner([i, j]).unwrap().0 != me);
            }
        }
        n
    }
}
