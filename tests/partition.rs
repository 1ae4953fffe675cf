//! ContinuousPartitioning: the port of MPIArrays.jl's "Partitioning" test set
//! and property tests of owner lookup.

use distarray::partition::{distribute, linear_offset};
use distarray::{ContinuousPartitioning, Error};
use proptest::prelude::*;

#[test]
fn distribute_gives_remainder_to_first_parts() {
    assert_eq!(distribute(10, 3), vec![4, 3, 3]);
    assert_eq!(distribute(9, 3), vec![3, 3, 3]);
    assert_eq!(distribute(3, 5), vec![1, 1, 1, 0, 0]);
    assert_eq!(distribute(0, 2), vec![0, 0]);
    assert!(distribute(5, 0).is_empty());
}

#[test]
fn mpiarrays_partitioning() {
    // part sizes [2, 5, 3] x [2, 3]; in 1-based terms part (3, 2) covers
    // rows 8:10 and columns 3:5
    let p = ContinuousPartitioning::from_part_sizes([vec![2, 5, 3], vec![2, 3]]).unwrap();
    assert_eq!(p.shape(), [10, 5]);
    assert_eq!(p.grid(), [3, 2]);
    assert_eq!(p.nparts(), 6);
    assert_eq!(p.boundaries(0), &[0, 2, 7, 10]);
    assert_eq!(p.boundaries(1), &[0, 2, 5]);
    let rank = p.rank_of([2, 1]).unwrap();
    assert_eq!(rank, 5, "row-major process grid");
    assert_eq!(p.part_range(rank).unwrap(), [7..10, 2..5]);
    assert_eq!(p.grid_index(rank).unwrap(), [2, 1]);
    assert_eq!(p.part_range(0).unwrap(), [0..2, 0..2]);
    assert_eq!(p.part_range(1).unwrap(), [0..2, 2..5]);
    assert_eq!(p.part_range(2).unwrap(), [2..7, 0..2]);
    assert_eq!(p.part_shape(2).unwrap(), [5, 2]);
    assert_eq!(p.part_len(3).unwrap(), 15);
    // owner: element (9, 4) (1-based (10, 5)) is the last of part (3, 2)
    assert_eq!(p.owner([9, 4]).unwrap(), (5, 8));
    assert_eq!(p.owner([0, 0]).unwrap(), (0, 0));
    assert_eq!(p.owner([6, 1]).unwrap(), (2, 9));
    assert_eq!(p.local_to_global(5, 8).unwrap(), [9, 4]);
}

#[test]
fn partition_errors() {
    let p = ContinuousPartitioning::with_grid([10, 5], [3, 2]).unwrap();
    assert!(matches!(
        p.owner([10, 0]),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        p.part_range(6),
        Err(Error::RankOutOfRange { rank: 6, size: 6 })
    ));
    assert!(matches!(
        p.rank_of([3, 0]),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        p.local_to_global(0, 100),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(p.check_nparts(4), Err(Error::InvalidPartition(_))));
    assert!(matches!(
        ContinuousPartitioning::with_grid([4, 4], [0, 1]),
        Err(Error::InvalidPartition(_))
    ));
    assert!(matches!(
        ContinuousPartitioning::<1>::from_part_sizes([vec![]]),
        Err(Error::InvalidPartition(_))
    ));
}

#[test]
fn empty_parts_are_skipped_by_owner() {
    let p = ContinuousPartitioning::from_part_sizes([vec![2, 0, 0, 3, 0]]).unwrap();
    assert_eq!(p.owner([1]).unwrap(), (0, 1));
    assert_eq!(p.owner([2]).unwrap(), (3, 0));
    assert_eq!(p.owner([4]).unwrap(), (3, 2));
}

proptest! {
    /// Every index has exactly one owner, which agrees with the part ranges,
    /// and local offsets round-trip.
    #[test]
    fn owner_matches_part_ranges(
        sizes0 in prop::collection::vec(0usize..5, 1..5),
        sizes1 in prop::collection::vec(0usize..4, 1..4),
    ) {
        let p = ContinuousPartitioning::from_part_sizes([sizes0, sizes1]).unwrap();
        let shape = p.shape();
        let mut seen = vec![0usize; shape[0] * shape[1]];
        for rank in 0..p.nparts() {
            let r = p.part_range(rank).unwrap();
            let mut k = 0;
            for i in r[0].clone() {
                for j in r[1].clone() {
                    prop_assert_eq!(p.owner([i, j]).unwrap(), (rank, k));
                    prop_assert_eq!(p.local_to_global(rank, k).unwrap(), [i, j]);
                    seen[linear_offset(&shape, &[i, j])] += 1;
                    k += 1;
                }
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }
}

#[test]
fn overflowing_sizes_are_errors_not_panics() {
    assert!(matches!(
        ContinuousPartitioning::from_part_sizes([vec![usize::MAX, 1], vec![1]]),
        Err(Error::InvalidPartition(_))
    ));
    assert!(matches!(
        ContinuousPartitioning::from_part_sizes([vec![usize::MAX / 2], vec![4]]),
        Err(Error::InvalidPartition(_))
    ));
}
