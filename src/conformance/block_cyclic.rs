//! Checks of block-cyclic arrays: element access, blocks (one RMA
//! operation per contiguous run, counted), copies to and from contiguous
//! partitions, the element-wise algebra, reductions, `matmul`, `matvec`
//! and `matvec_transpose`, blocks that
//! do not divide the extent, ranks that own nothing, and a clean `Err` from
//! the operations that need one box per rank.

use super::array::grid_2d;
use super::{expect_err, ok, Check, SplitMix};
use crate::block::Block;
use crate::comm::{AccumulateOp, OneSidedComm};
use crate::counting::CountingComm;
use crate::error::Error;
use crate::partition::{linear_offset, ContinuousPartitioning};
use crate::DistArray;

/// The block-cyclic checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("block_cyclic_layouts", block_cyclic_layouts::<C>),
        ("block_cyclic_copies", block_cyclic_copies::<C>),
        ("block_cyclic_call_counts", block_cyclic_call_counts::<C>),
        ("block_cyclic_matmul", block_cyclic_matmul::<C>),
        ("block_cyclic_needs_boxes", block_cyclic_needs_boxes::<C>),
        ("block_cyclic_nonblocking", block_cyclic_nonblocking::<C>),
        ("block_cyclic_matvec", block_cyclic_matvec::<C>),
        (
            "block_cyclic_ghosts_and_slices",
            block_cyclic_ghosts_and_slices::<C>,
        ),
    ]
}

fn value<const N: usize>(g: [usize; N]) -> i64 {
    g.iter().fold(7, |a, &i| a * 31 + i as i64)
}

/// A block-cyclic array filled by its owners with `value`.
fn filled<C: OneSidedComm, const N: usize>(
    comm: &C,
    shape: [usize; N],
    grid: [usize; N],
    block: [usize; N],
) -> DistArray<i64, C, N> {
    let a = ok(
        comm,
        "block_cyclic",
        DistArray::<i64, C, N>::block_cyclic(comm.clone(), shape, grid, block),
    );
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(value)));
    ok(comm, "barrier", a.barrier());
    a
}

/// The serial reference of `value` over `shape`, row-major.
fn reference<const N: usize>(shape: [usize; N]) -> Vec<i64> {
    let len: usize = shape.iter().product();
    (0..len)
        .map(|k| value(crate::partition::multi_index(&shape, k)))
        .collect()
}

/// One layout: the parts cover the index space once, in the documented
/// order; elements, random blocks, writes and reductions agree with the
/// serial reference.
fn layout_check<C: OneSidedComm, const N: usize>(
    comm: &C,
    shape: [usize; N],
    grid: [usize; N],
    block: [usize; N],
    seed: u64,
) {
    let what = format!("shape {shape:?}, grid {grid:?}, blocks {block:?}");
    let a = filled(comm, shape, grid, block);
    let part = a.partitioning().clone();
    let serial = reference(shape);
    // every rank's part: its intervals in increasing order, its length
    let mut total = 0;
    for r in 0..comm.size() {
        let ivs = ok(comm, "part_intervals", part.part_intervals(r));
        let len: usize = ivs
            .iter()
            .map(|v| v.iter().map(|r| r.len()).sum::<usize>())
            .product();
        assert_eq!(
            len,
            ok(comm, "part_len", part.part_len(r)),
            "rank {}: {what}: rank {r}'s intervals and length disagree",
            comm.rank()
        );
        for v in &ivs {
            assert!(
                v.windows(2).all(|w| w[0].end <= w[1].start),
                "{what}: intervals not increasing"
            );
        }
        total += len;
    }
    assert_eq!(
        total,
        serial.len(),
        "{what}: the parts do not cover the array once"
    );
    // the local part holds exactly the owned values, in owner() order
    ok(
        comm,
        "with_local",
        a.with_local(|l| {
            for (k, (g, v)) in l.iter_global().enumerate() {
                assert_eq!(
                    v,
                    value(g),
                    "rank {}: {what}: local {k} at {g:?}",
                    comm.rank()
                );
                assert_eq!(
                    part.owner(g).unwrap(),
                    (comm.rank(), k),
                    "{what}: owner of {g:?}"
                );
                assert_eq!(l.local_offset(g), Some(k), "{what}: local_offset of {g:?}");
            }
        }),
    );
    assert_eq!(ok(comm, "to_vec", a.to_vec()), serial, "{what}: to_vec");
    // elements and random blocks, read by every rank
    let mut rng = SplitMix(seed);
    for _ in 0..6 {
        let idx: [usize; N] = std::array::from_fn(|d| rng.below(shape[d]));
        assert_eq!(
            ok(comm, "get", a.get(idx)),
            value(idx),
            "{what}: get {idx:?}"
        );
        let ranges = std::array::from_fn(|d| {
            let lo = rng.below(shape[d]);
            lo..lo + rng.below(shape[d] - lo) + 1
        });
        let b = Block::new(ranges);
        let gb = ok(comm, "get_block", a.get_block(&b));
        for (g, v) in gb.iter() {
            assert_eq!(v, value(g), "{what}: get_block {b:?} at {g:?}");
        }
    }
    // every rank adds 1 over one block (accumulate), then 10 at one element
    // (once every rank has read)
    ok(comm, "barrier", a.barrier());
    let b = Block::new(std::array::from_fn(|d| shape[d] / 3..shape[d]));
    let ones = crate::block::GlobalBlock::from_vec(b.clone(), vec![1; b.len()]);
    ok(
        comm,
        "put_block Sum",
        a.put_block(&ones.unwrap(), AccumulateOp::Sum),
    );
    ok(comm, "barrier", a.barrier());
    let last: [usize; N] = shape.map(|n| n - 1);
    if comm.rank() == 0 {
        let v = ok(comm, "get", a.get(last));
        ok(comm, "set", a.set(last, v + 10));
    }
    ok(comm, "barrier", a.barrier());
    let p = comm.size() as i64;
    let mut expected = serial.clone();
    for (k, e) in expected.iter_mut().enumerate() {
        let g = crate::partition::multi_index(&shape, k);
        if b.contains(g) {
            *e += p;
        }
    }
    *expected.last_mut().expect("non-empty") += 10;
    assert_eq!(
        ok(comm, "to_vec", a.to_vec()),
        expected,
        "{what}: after writes"
    );
    // element-wise algebra and a reduction over the whole array (once
    // every rank has read)
    ok(comm, "barrier", a.barrier());
    ok(comm, "scale", a.scale(2));
    let sum: i64 = expected.iter().map(|v| 2 * v).sum();
    assert_eq!(ok(comm, "sum", a.sum()), sum, "{what}: sum after scale");
}

fn block_cyclic_layouts<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let g2 = grid_2d(p);
    // 2-D, blocks that do not divide the extents
    layout_check(comm, [11, 7], g2, [2, 3], 1);
    // element-cyclic
    layout_check(comm, [6, 5], g2, [1, 1], 2);
    // the other orientation of the grid
    layout_check(comm, [9, 10], [g2[1], g2[0]], [2, 2], 3);
    // 1-D and 3-D
    layout_check(comm, [13], [p], [2], 4);
    layout_check(comm, [5, 4, 6], [p, 1, 1], [1, 2, 2], 5);
    // ranks that own nothing: one column over g2[1] process columns
    layout_check(comm, [9, 1], g2, [2, 1], 6);
    // a block size of at least ⌈n / p⌉ is a contiguous layout: parts of
    // nb rows, the last ones short or empty (ScaLAPACK's)
    let nb = 10usize.div_ceil(p);
    let c = ok(
        comm,
        "block_cyclic",
        ContinuousPartitioning::block_cyclic([10, 4], [p, 1], [nb, 4]),
    );
    assert!(!c.is_block_cyclic(), "a big block is contiguous");
    let sizes: Vec<usize> = (0..p)
        .map(|q| 10usize.min((q + 1) * nb).saturating_sub(q * nb))
        .collect();
    assert_eq!(
        c,
        ok(
            comm,
            "from_part_sizes",
            ContinuousPartitioning::from_part_sizes([sizes, vec![4]])
        ),
        "block size ⌈n/p⌉ is the contiguous layout"
    );
}

/// `copy_from` and `redistribute` between block-cyclic and contiguous
/// partitions, both ways, and between two block-cyclic layouts.
fn block_cyclic_copies<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [10, 9];
    let a = filled(comm, shape, grid_2d(p), [3, 2]);
    let serial = reference(shape);
    let contiguous = ok(comm, "redistribute_default", a.redistribute_default());
    assert!(!contiguous.partitioning().is_block_cyclic());
    assert_eq!(
        ok(comm, "to_vec", contiguous.to_vec()),
        serial,
        "to contiguous"
    );
    let b = ok(
        comm,
        "block_cyclic",
        DistArray::<i64, C, 2>::block_cyclic(comm.clone(), shape, [p, 1], [1, 4]),
    );
    ok(comm, "copy_from contiguous", b.copy_from(&contiguous));
    assert_eq!(
        ok(comm, "to_vec", b.to_vec()),
        serial,
        "contiguous to cyclic"
    );
    let c = ok(
        comm,
        "block_cyclic",
        DistArray::<i64, C, 2>::block_cyclic(comm.clone(), shape, grid_2d(p), [2, 2]),
    );
    ok(comm, "copy_from cyclic", c.copy_from(&b));
    assert_eq!(ok(comm, "to_vec", c.to_vec()), serial, "cyclic to cyclic");
    let back = ok(
        comm,
        "redistribute",
        c.redistribute(a.partitioning().clone()),
    );
    assert_eq!(back.partitioning(), a.partitioning());
    assert_eq!(
        ok(comm, "to_vec", back.to_vec()),
        serial,
        "back to the first layout"
    );
}

/// A block read from a block-cyclic array is one `get` per contiguous run
/// of the remote parts and one batch per remote piece.
fn block_cyclic_call_counts<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let cc = CountingComm::new(comm.clone());
    let shape = [13];
    let a = ok(
        comm,
        "block_cyclic",
        DistArray::<f64, _, 1>::block_cyclic(cc.clone(), shape, [p], [2]),
    );
    ok(comm, "barrier", a.barrier());
    cc.reset();
    let _ = ok(
        comm,
        "get_block",
        a.get_block(&Block::new(std::array::from_fn(|_| 0..13))),
    );
    let c = cc.counts();
    // blocks of 2: 7 blocks, block k on rank k mod p; each is one run
    let remote = (0..7).filter(|k| k % p != comm.rank()).count();
    assert_eq!(
        c.gets_total(),
        remote,
        "rank {}: one get per remote block",
        comm.rank()
    );
    assert_eq!(c.batches_total(), remote);
    // 2-D: a full-width row block is one run per owned row block
    let b = ok(
        comm,
        "block_cyclic",
        DistArray::<f64, _, 2>::block_cyclic(cc.clone(), [12, 5], [p, 1], [2, 5]),
    );
    ok(comm, "barrier", b.barrier());
    cc.reset();
    let _ = ok(comm, "get_block", b.get_block(&Block::new([1..11, 0..5])));
    let c = cc.counts();
    let pieces = (0..6).filter(|k| k % p != comm.rank()).count();
    assert_eq!(c.gets_total(), pieces, "one run per remote row block");
}

/// `matmul` with block-cyclic operands and result gives the bits of the
/// contiguous product.
fn block_cyclic_matmul<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let (m, k, n) = (9, 7, 8);
    let fill = |i: usize, j: usize| ((i * 7 + j * 3) % 11) as f64 * 0.37 - 1.1;
    let a = ok(
        comm,
        "a",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [m, k], grid_2d(p), [2, 3]),
    );
    ok(
        comm,
        "fill a",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| fill(i, j))),
    );
    let b = ok(
        comm,
        "b",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [k, n], |[i, j]| fill(j, i)),
    );
    let mut c = ok(
        comm,
        "c",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [m, n], [p, 1], [2, 8]),
    );
    let mut reference = ok(
        comm,
        "ref",
        DistArray::<f64, C, 2>::new(comm.clone(), [m, n]),
    );
    let a_contiguous = ok(comm, "redistribute", a.redistribute_default());
    ok(comm, "matmul", crate::matmul::matmul(&a, &b, &mut c));
    ok(
        comm,
        "matmul reference",
        crate::matmul::matmul(&a_contiguous, &b, &mut reference),
    );
    let (got, want) = (
        ok(comm, "to_vec", c.to_vec()),
        ok(comm, "to_vec", reference.to_vec()),
    );
    for (x, y) in got.iter().zip(&want) {
        assert_eq!(x.to_bits(), y.to_bits(), "block-cyclic matmul differs");
    }
    let mut serial = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|l| fill(i, l) * fill(j, l)).sum();
            serial[linear_offset(&[m, n], &[i, j])] = s;
        }
    }
    for (x, y) in got.iter().zip(&serial) {
        assert!((x - y).abs() < 1e-12, "matmul: {x} against {y}");
    }
}

/// Operations that need one box per rank give an `Err` on every rank.
fn block_cyclic_needs_boxes<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    if p == 1 {
        return; // one rank owns everything: never block-cyclic
    }
    let a = filled(comm, [12, 4], [p, 1], [1, 4]);
    assert!(a.partitioning().is_block_cyclic());
    expect_err(
        comm,
        "local_indices",
        a.local_indices(comm.rank()),
        |e| matches!(e, Error::InvalidPartition(m) if m.contains("block-cyclic")),
    );
    expect_err(
        comm,
        "Halo on a block-cyclic array",
        crate::Halo::new(&a, [1, 0], [false, false]),
        |e| matches!(e, Error::InvalidPartition(_) | Error::PeerFailed { .. }),
    );
    // still usable afterwards
    assert_eq!(ok(comm, "get", a.get([5, 2])), value([5, 2]));
    // bad layouts
    expect_err(
        comm,
        "block size 0",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [4, 4], [p, 1], [0, 1]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    expect_err(
        comm,
        "grid of the wrong size",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [4, 4], [p + 1, 1], [1, 1]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
}

/// Non-blocking blocks on a block-cyclic array: several pieces of one
/// block on one owner are read and written under one epoch per owner.
fn block_cyclic_nonblocking<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [11, 6];
    let a = filled(comm, shape, [p, 1], [1, 6]);
    let b = Block::new([1..10, 1..5]);
    let got = ok(comm, "get_block_start", a.get_block_start(&b));
    let got = ok(comm, "wait", got.wait());
    for (g, v) in got.iter() {
        assert_eq!(
            v,
            value(g),
            "rank {}: get_block_start at {g:?}",
            comm.rank()
        );
    }
    ok(comm, "barrier", a.barrier());
    let ones = ok(
        comm,
        "from_vec",
        crate::block::GlobalBlock::from_vec(b.clone(), vec![1; b.len()]),
    );
    let put = ok(
        comm,
        "put_block_start",
        a.put_block_start(ones, AccumulateOp::Sum),
    );
    ok(comm, "wait", put.wait());
    ok(comm, "barrier", a.barrier());
    let all = ok(comm, "to_vec", a.to_vec());
    for (k, v) in all.iter().enumerate() {
        let g = crate::partition::multi_index(&shape, k);
        let add = if b.contains(g) { p as i64 } else { 0 };
        assert_eq!(*v, value(g) + add, "after put_block_start at {g:?}");
    }
}

/// `matvec` and `matvec_transpose` with block-cyclic operands (any of the
/// three, blocks not dividing the extents, element-cyclic): the serial
/// product exactly (integer-valued floats), and again bit for bit.
fn block_cyclic_matvec<C: OneSidedComm>(comm: &C) {
    use crate::linalg::{matvec, matvec_transpose};
    let p = comm.size();
    let (m, n) = (13, 9);
    let av = |i: usize, j: usize| ((i * 7 + j * 3) % 11) as f64 - 5.0;
    let xv = |j: usize| (j % 5) as f64 - 2.0;
    let want: Vec<f64> = (0..m)
        .map(|i| (0..n).map(|j| av(i, j) * xv(j)).sum())
        .collect();
    let want_t: Vec<f64> = (0..n)
        .map(|j| (0..m).map(|i| av(i, j) * xv(i % n)).sum())
        .collect();
    let grid = grid_2d(p);
    let layouts = [
        (
            "contiguous",
            ContinuousPartitioning::with_grid([m, n], grid),
        ),
        (
            "2 x 2 blocks",
            ContinuousPartitioning::block_cyclic([m, n], grid, [2, 2]),
        ),
        (
            "element-cyclic",
            ContinuousPartitioning::block_cyclic([m, n], grid, [1, 1]),
        ),
    ];
    let vec_of = |len: usize, cyclic: bool, f: &dyn Fn(usize) -> f64| {
        let part = if cyclic {
            ContinuousPartitioning::block_cyclic([len], [p], [2])
        } else {
            ContinuousPartitioning::uniform([len], p)
        };
        let v = ok(
            comm,
            "vector",
            DistArray::<f64, C, 1>::with_partitioning(comm.clone(), ok(comm, "part", part)),
        );
        ok(
            comm,
            "fill",
            v.with_local_mut(|mut l| l.fill_with(|[i]| f(i))),
        );
        v
    };
    for (name, part) in layouts {
        let a = ok(
            comm,
            "a",
            DistArray::<f64, C, 2>::with_partitioning(comm.clone(), ok(comm, name, part)),
        );
        ok(
            comm,
            "fill",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| av(i, j))),
        );
        for cyclic_vectors in [false, true] {
            let x = vec_of(n, cyclic_vectors, &xv);
            let mut y = vec_of(m, cyclic_vectors, &|_| 99.0);
            ok(comm, "matvec", matvec(&a, &x, &mut y));
            let got = ok(comm, "to_vec", y.to_vec());
            assert_eq!(
                got,
                want,
                "rank {}: {name}, cyclic x/y {cyclic_vectors}",
                comm.rank()
            );
            ok(comm, "again", matvec(&a, &x, &mut y));
            assert_eq!(ok(comm, "to_vec", y.to_vec()), got);
            let xt = vec_of(m, cyclic_vectors, &|i| xv(i % n));
            let mut yt = vec_of(n, !cyclic_vectors, &|_| 0.0);
            ok(comm, "matvec_transpose", matvec_transpose(&a, &xt, &mut yt));
            assert_eq!(
                ok(comm, "to_vec", yt.to_vec()),
                want_t,
                "rank {}: transposed, {name}",
                comm.rank()
            );
            ok(comm, "barrier", comm.barrier());
            // a wrong length: refused on every rank
            let short = vec_of(n - 1, cyclic_vectors, &xv);
            expect_err(comm, "short x", matvec(&a, &short, &mut y), |e| {
                matches!(e, Error::OperandShape { .. })
            });
        }
    }
}

/// Ghost entries ([`GhostedBlock`](crate::GhostedBlock): any set of
/// global entries, fetched by owner) and slices (patches read, written and
/// accumulated) on a block-cyclic array: every value, and the writes land
/// where they belong.
fn block_cyclic_ghosts_and_slices<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [9, 10];
    let a = filled(comm, shape, grid_2d(p), [2, 3]);
    // the ghost entries of a 5-point stencil around this rank's first piece
    let me = comm.rank();
    let mut g = crate::GhostedBlock::new(&a);
    let mut wanted = Vec::new();
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            if (i * 3 + j + me).is_multiple_of(4) {
                ok(comm, "push", g.push([i, j]));
                wanted.push([i, j]);
            }
        }
    }
    ok(comm, "sync", g.sync(&a));
    for &at in &wanted {
        assert_eq!(
            ok(comm, "get_global", g.get_global(at)),
            value(at),
            "rank {me}: ghost {at:?}"
        );
    }
    // a patch across several owners' blocks: read, then (rank 0) written
    let patch = ok(comm, "slice", a.patch(Block::new([1..8, 2..9])));
    let got = ok(comm, "read", patch.read());
    for (at, v) in got.iter() {
        assert_eq!(v, value(at), "rank {me}: patch {at:?}");
    }
    ok(comm, "barrier", a.barrier());
    if me == 0 {
        ok(comm, "write", patch.write(&vec![-1; patch.len()]));
    }
    ok(comm, "barrier", a.barrier());
    let all = ok(comm, "to_vec", a.to_vec());
    for (k, &v) in all.iter().enumerate() {
        let at = crate::partition::multi_index(&shape, k);
        let inside = (1..8).contains(&at[0]) && (2..9).contains(&at[1]);
        assert_eq!(
            v,
            if inside { -1 } else { value(at) },
            "rank {me}: after the write, {at:?}"
        );
    }
    ok(comm, "barrier", a.barrier());
}
