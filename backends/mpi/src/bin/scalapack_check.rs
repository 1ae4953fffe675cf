//! The ScaLAPACK wrappers under `mpirun` (feature `scalapack`; run by
//! `tests/mpirun.rs` on 1, 2, 3 and 4 ranks): LU and Cholesky solves of
//! dense systems checked by their residual, `gemm` against distarray's own
//! `matmul`, for `f32`, `f64`, `Complex32` and `Complex64`, on
//! block-cyclic arrays whose blocks do not divide the extents and on a
//! contiguous layout; then the errors — a singular matrix, a matrix that
//! is not positive definite, non-square blocks, mismatched shapes,
//! partitions that are no block-cyclic layout, arrays on a communicator
//! with the ranks in another order, a view refused on one rank — on every
//! rank. Prints
//! `scalapack_check: ok` on rank 0.
//!
//! `scalapack_check mismatch` (2 or more ranks) breaks the collective
//! contract instead: rank 0 passes arrays of another shape, block size,
//! process grid, number of right-hand sides or element type than the other
//! ranks to `gesv`, `posv`, `potrf` and `gemm`, and another process grid
//! to `Grid::new`; every rank must get an [`Error::InvalidArgument`] (not
//! an abort, a hang or a wrong answer), and a correct call after each must
//! succeed. Prints
//! `scalapack_check mismatch: ok` on rank 0.

use distarray::{Complex32, Complex64, DistArray, Error, OneSidedComm};
use distarray_mpi::scalapack::{self, ScalapackElement};
use distarray_mpi::MpiComm;
use mpi::topology::{Color, Communicator};

/// A `pr x pc` grid for `p` ranks, as square as possible.
fn grid(p: usize) -> [usize; 2] {
    let pr = (1..=p)
        .filter(|d| p.is_multiple_of(*d) && d * d <= p)
        .max()
        .unwrap_or(1);
    [pr, p / pr]
}

/// Element conversions for the checks.
trait Num: ScalapackElement {
    fn real(x: f64) -> Self;
    fn cplx(re: f64, im: f64) -> Self;
    fn abs(self) -> f64;
    fn tol() -> f64;
}

impl Num for f32 {
    fn real(x: f64) -> Self {
        x as f32
    }
    fn cplx(re: f64, _: f64) -> Self {
        re as f32
    }
    fn abs(self) -> f64 {
        f64::from(self).abs()
    }
    fn tol() -> f64 {
        1e-3
    }
}
impl Num for f64 {
    fn real(x: f64) -> Self {
        x
    }
    fn cplx(re: f64, _: f64) -> Self {
        re
    }
    fn abs(self) -> f64 {
        self.abs()
    }
    fn tol() -> f64 {
        1e-10
    }
}
impl Num for Complex32 {
    fn real(x: f64) -> Self {
        Complex32::new(x as f32, 0.0)
    }
    fn cplx(re: f64, im: f64) -> Self {
        Complex32::new(re as f32, im as f32)
    }
    fn abs(self) -> f64 {
        f64::from(self.norm())
    }
    fn tol() -> f64 {
        1e-3
    }
}
impl Num for Complex64 {
    fn real(x: f64) -> Self {
        Complex64::new(x, 0.0)
    }
    fn cplx(re: f64, im: f64) -> Self {
        Complex64::new(re, im)
    }
    fn abs(self) -> f64 {
        self.norm()
    }
    fn tol() -> f64 {
        1e-10
    }
}

/// A general, well-conditioned matrix entry.
fn general<T: Num>(i: usize, j: usize, n: usize) -> T {
    let v = 1.0 / (1 + i + 2 * j) as f64 + if i == j { n as f64 } else { 0.0 };
    T::cplx(v, 0.25 * ((i * 3 + j) % 5) as f64 - 0.5)
}

/// [`general`] with its rows permuted (row `i` is row `5i + 3 mod n` of
/// it, `n` prime to 5): as well conditioned, but the largest entry of
/// each row and column is off the diagonal, so the LU pivots on every
/// step (in the factors of `Aᵀ` that `gesv` computes, too).
fn pivoting<T: Num>(i: usize, j: usize, n: usize) -> T {
    general((5 * i + 3) % n, j, n)
}

/// A Hermitian positive definite entry: diagonally dominant, `a(j, i) =
/// conj(a(i, j))`.
fn hpd<T: Num>(i: usize, j: usize, n: usize) -> T {
    if i == j {
        return T::real(2.0 * n as f64);
    }
    let (lo, hi) = (i.min(j), i.max(j));
    let im = 0.1 * ((lo + 2 * hi) % 3) as f64;
    T::cplx(1.0 / (1 + lo + hi) as f64, if i < j { im } else { -im })
}

/// The right-hand sides.
fn rhs<T: Num>(i: usize, j: usize) -> T {
    T::cplx((i as f64 - 3.0 * j as f64) * 0.5, (i % 3) as f64)
}

fn make<T: Num>(
    comm: &MpiComm,
    shape: [usize; 2],
    blocks: [usize; 2],
    f: impl Fn(usize, usize) -> T,
) -> DistArray<T, MpiComm, 2> {
    let a = DistArray::<T, _, 2>::block_cyclic(comm.clone(), shape, grid(comm.size()), blocks)
        .expect("block_cyclic");
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j)))
        .expect("fill");
    a.barrier().expect("barrier");
    a
}

/// max |A X - B| over the entries, with A and B made again by `fa`, `fb`.
fn residual<T: Num>(
    comm: &MpiComm,
    x: &DistArray<T, MpiComm, 2>,
    fa: impl Fn(usize, usize) -> T,
    fb: impl Fn(usize, usize) -> T,
) -> f64 {
    let [n, nrhs] = x.shape();
    let a = DistArray::<T, _, 2>::from_fn(comm.clone(), [n, n], |[i, j]| fa(i, j)).expect("a");
    let mut ax = DistArray::<T, _, 2>::new(comm.clone(), [n, nrhs]).expect("ax");
    distarray::matmul::matmul(&a, x, &mut ax).expect("matmul");
    let ax = ax.to_vec().expect("to_vec");
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in 0..nrhs {
            let d = ax[i * nrhs + j] - fb(i, j);
            worst = worst.max(d.abs());
        }
    }
    worst
}

fn solves<T: Num>(comm: &MpiComm, what: &str) {
    let n = 37;
    let (fa, fb) = (|i, j| general::<T>(i, j, 37), |i, j| rhs::<T>(i, j));
    // LU, blocks not dividing the extents
    let mut a = make(comm, [n, n], [4, 4], fa);
    let mut b = make(comm, [n, 3], [4, 2], fb);
    scalapack::gesv(&mut a, &mut b).expect("gesv");
    let r = residual(comm, &b, fa, fb);
    assert!(r < T::tol() * n as f64, "{what}: gesv residual {r}");
    // LU that pivots, one and several right-hand sides
    let fp = |i, j| pivoting::<T>(i, j, 37);
    for (nrhs, blocks) in [(1, [4, 1]), (5, [4, 2])] {
        let mut a = make(comm, [n, n], [4, 4], fp);
        let mut b = make(comm, [n, nrhs], blocks, fb);
        scalapack::gesv(&mut a, &mut b).expect("gesv");
        let r = residual(comm, &b, fp, fb);
        assert!(
            r < T::tol() * n as f64,
            "{what}: pivoting gesv residual {r} ({nrhs} rhs)"
        );
    }
    // Cholesky
    let fh = |i, j| hpd::<T>(i, j, 37);
    let mut a = make(comm, [n, n], [5, 5], fh);
    let mut b = make(comm, [n, 2], [5, 1], fb);
    scalapack::posv(&mut a, &mut b).expect("posv");
    let r = residual(comm, &b, fh, fb);
    assert!(r < T::tol() * n as f64, "{what}: posv residual {r}");
    // gemm against distarray's matmul
    let (m, k, nn) = (13, 9, 11);
    let a = make(comm, [m, k], [3, 2], |i, j| general::<T>(i, j, 5));
    let b = make(comm, [k, nn], [2, 4], |i, j| rhs::<T>(i, j));
    let mut c = make(comm, [m, nn], [3, 4], |i, j| T::real((i + j) as f64));
    let two = T::real(2.0);
    scalapack::gemm(two, &a, &b, T::real(0.5), &mut c).expect("gemm");
    let mut ab = DistArray::<T, _, 2>::new(comm.clone(), [m, nn]).expect("ab");
    distarray::matmul::matmul(&a, &b, &mut ab).expect("matmul");
    let (got, ab) = (c.to_vec().expect("c"), ab.to_vec().expect("ab"));
    for i in 0..m {
        for j in 0..nn {
            let want = two * ab[i * nn + j] + T::real(0.5 * (i + j) as f64);
            let d = got[i * nn + j] - want;
            assert!(d.abs() < T::tol() * 10.0, "{what}: gemm ({i}, {j})");
        }
    }
}

fn errors(comm: &MpiComm) {
    let p = comm.size();
    // singular: two equal rows
    let mut a = make(comm, [8, 8], [2, 2], |i, j| {
        general::<f64>(if i == 5 { 4 } else { i }, j, 8)
    });
    let mut b = make(comm, [8, 1], [2, 1], |i, _| i as f64);
    let before = b.to_vec().expect("b");
    match scalapack::gesv(&mut a, &mut b) {
        Err(Error::Numerical(m)) if m.contains("singular") => {}
        other => panic!("rank {}: singular gesv gave {other:?}", comm.rank()),
    }
    assert_eq!(b.to_vec().expect("b"), before, "b changed by a failed gesv");
    // not positive definite
    let mut a = make(comm, [6, 6], [2, 2], |i, j| if i == j { -1.0 } else { 0.0 });
    match scalapack::potrf(&mut a) {
        Err(Error::Numerical(m)) if m.contains("positive definite") => {}
        other => panic!("rank {}: potrf of -I gave {other:?}", comm.rank()),
    }
    // non-square blocks, wrong shapes
    let mut a = make(comm, [6, 6], [2, 3], |i, j| general::<f64>(i, j, 6));
    let mut b = make(comm, [6, 1], [2, 1], |i, _| i as f64);
    assert!(matches!(
        scalapack::gesv(&mut a, &mut b),
        Err(Error::InvalidArgument(_))
    ));
    let mut a = make(comm, [6, 5], [2, 2], |i, j| general::<f64>(i, j, 6));
    assert!(matches!(
        scalapack::gesv(&mut a, &mut b),
        Err(Error::ShapeMismatch { .. })
    ));
    let (x, y) = (
        make(comm, [4, 3], [2, 2], |i, j| (i + j) as f64),
        make(comm, [4, 3], [2, 2], |i, j| (i + j) as f64),
    );
    let mut z = make(comm, [4, 3], [2, 2], |_, _| 0.0);
    assert!(matches!(
        scalapack::gemm(1.0, &x, &y, 0.0, &mut z),
        Err(Error::ShapeMismatch { .. })
    ));
    // the right-hand side on the same ranks in reverse order: refused on
    // every rank (outside review: BLACS took each rank for the other's
    // position, and p?trsm wrote through an empty part's pointer)
    let rev = MpiComm::from_communicator(
        comm.communicator()
            .split_by_color_with_key(Color::with_value(0), (p - comm.rank()) as i32)
            .expect("every rank has a colour"),
    )
    .expect("reversed communicator");
    let mut a = make(comm, [8, 8], [2, 2], |i, j| general::<f64>(i, j, 8));
    let mut b = make(&rev, [8, 1], [2, 1], |i, _| i as f64);
    let r = scalapack::gesv(&mut a, &mut b);
    if p > 1 {
        assert!(
            matches!(r, Err(Error::InvalidPartition(_))),
            "rank {}: {r:?}",
            comm.rank()
        );
    } else {
        r.expect("one rank: the same ranks in the same order");
    }
    let x = make(&rev, [4, 4], [2, 2], |i, j| (i + j) as f64);
    let y = make(comm, [4, 4], [2, 2], |i, j| (i * j) as f64);
    let mut z = make(comm, [4, 4], [2, 2], |_, _| 0.0);
    let r = scalapack::gemm(1.0, &x, &y, 0.0, &mut z);
    assert_eq!(r.is_err(), p > 1, "rank {}: {r:?}", comm.rank());
    // a view refused on one rank only (rank 0 holds one of A's already):
    // an error on every rank, where the others used to wait in p?gemm
    let x = make(comm, [4, 4], [2, 2], |i, j| (i + j) as f64);
    let r = if comm.rank() == 0 {
        x.with_local(|_| scalapack::gemm(1.0, &x, &y, 0.0, &mut z))
            .expect("outer view")
    } else {
        scalapack::gemm(1.0, &x, &y, 0.0, &mut z)
    };
    assert!(
        r.is_err(),
        "rank {}: gemm with a view refused on rank 0 gave {r:?}",
        comm.rank()
    );
    // and the arrays work again afterwards
    scalapack::gemm(1.0, &x, &y, 0.0, &mut z).expect("gemm after the refused view");
    // a contiguous partition that is a ScaLAPACK layout works ...
    if p > 1 {
        let n = 4 * p;
        let mut a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [p, 1], [n, n]).expect("a");
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| general::<f64>(i, j, n)))
            .expect("fill");
        let mut b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [p, 1], [n, 1]).expect("b");
        b.with_local_mut(|mut l| l.fill_with(|[i, _]| i as f64))
            .expect("fill");
        // rows in blocks of 4 over p, columns one block of n: square blocks
        // are needed, so this one is refused ...
        assert!(matches!(
            scalapack::gesv(&mut a, &mut b),
            Err(Error::InvalidArgument(_))
        ));
        // ... and parts that are no blocks at all are a partition error
        let mut sizes = vec![0; p];
        sizes[0] = 1;
        sizes[p - 1] += n - 1;
        let mut c =
            DistArray::<f64, _, 2>::with_part_sizes(comm.clone(), [sizes, vec![n]]).expect("c");
        assert!(matches!(
            scalapack::potrf(&mut c),
            Err(Error::InvalidPartition(_))
        ));
    }
}

/// `make` on an explicit process grid.
fn make_on<T: Num>(
    comm: &MpiComm,
    shape: [usize; 2],
    grid: [usize; 2],
    blocks: [usize; 2],
    f: impl Fn(usize, usize) -> T,
) -> DistArray<T, MpiComm, 2> {
    let a = DistArray::<T, _, 2>::block_cyclic(comm.clone(), shape, grid, blocks)
        .expect("block_cyclic");
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j)))
        .expect("fill");
    a.barrier().expect("barrier");
    a
}

/// Asserts that `r` is the error every rank must get when the ranks passed
/// arguments that differ (a broken collective contract).
fn differs<R: std::fmt::Debug>(comm: &MpiComm, what: &str, r: distarray::Result<R>) {
    match r {
        Err(Error::InvalidArgument(m)) if m.contains("differ") => {
            if comm.rank() == 0 {
                eprintln!("scalapack_check mismatch: {what}: {m}");
            }
        }
        other => panic!(
            "rank {}: {what}: expected InvalidArgument (arguments differ between ranks), got \
             {other:?}",
            comm.rank()
        ),
    }
}

/// A correct LU solve after a refused call: the ranks are still in step.
fn good_gesv(comm: &MpiComm, after: &str) {
    let n = 11;
    let (fa, fb) = (|i, j| general::<f64>(i, j, 11), |i, j| rhs::<f64>(i, j));
    let mut a = make(comm, [n, n], [3, 3], fa);
    let mut b = make(comm, [n, 2], [3, 1], fb);
    scalapack::gesv(&mut a, &mut b).unwrap_or_else(|e| panic!("gesv after {after}: {e}"));
    let r = residual(comm, &b, fa, fb);
    assert!(r < 1e-10 * n as f64, "gesv after {after}: residual {r}");
}

/// Rank 0 passes other arguments than the other ranks (see the module
/// docs): an `InvalidArgument` on every rank, then a good call works.
fn mismatch(comm: &MpiComm) {
    let p = comm.size();
    assert!(p > 1, "the mismatch mode needs 2 or more ranks");
    let first = comm.rank() == 0;
    let fa = |n: usize| move |i, j| general::<f64>(i, j, n);
    let fh = |n: usize| move |i, j| hpd::<f64>(i, j, n);
    let fb = |i, j| rhs::<f64>(i, j);
    let pick = |x: usize, y: usize| if first { x } else { y };

    // gesv: n = 8 on rank 0, n = 9 elsewhere (every array is made by every
    // rank; each rank passes its own pair)
    let mut a = [8, 9].map(|n| make(comm, [n, n], [2, 2], fa(n)));
    let mut b = [8, 9].map(|n| make(comm, [n, 1], [2, 1], fb));
    let [a0, a1] = &mut a;
    let [b0, b1] = &mut b;
    let r = if first {
        scalapack::gesv(a0, b0)
    } else {
        scalapack::gesv(a1, b1)
    };
    differs(comm, "gesv, n = 8 against n = 9", r);
    good_gesv(comm, "gesv with different n");

    // gesv: the same shapes in 2 x 2 blocks on rank 0, 3 x 3 elsewhere
    let mut a = [2, 3].map(|nb| make(comm, [12, 12], [nb, nb], fa(12)));
    let mut b = [2, 3].map(|nb| make(comm, [12, 2], [nb, 1], fb));
    let k = pick(0, 1);
    let r = scalapack::gesv(&mut a[k], &mut b[k]);
    differs(comm, "gesv, 2 x 2 against 3 x 3 blocks", r);
    good_gesv(comm, "gesv with different blocks");

    // gesv: one right-hand side on rank 0, two elsewhere
    let mut a = make(comm, [10, 10], [2, 2], fa(10));
    let mut b = [1, 2].map(|nrhs| make(comm, [10, nrhs], [2, 1], fb));
    let r = scalapack::gesv(&mut a, &mut b[pick(0, 1)]);
    differs(comm, "gesv, 1 against 2 right-hand sides", r);
    good_gesv(comm, "gesv with different nrhs");

    // posv and potrf: n = 8 on rank 0, n = 9 elsewhere
    let mut a = [8, 9].map(|n| make(comm, [n, n], [2, 2], fh(n)));
    let mut b = [8, 9].map(|n| make(comm, [n, 2], [2, 1], fb));
    let k = pick(0, 1);
    let r = scalapack::posv(&mut a[k], &mut b[k]);
    differs(comm, "posv, n = 8 against n = 9", r);
    good_gesv(comm, "posv with different n");
    let r = scalapack::potrf(&mut a[k]);
    differs(comm, "potrf, n = 8 against n = 9", r);
    good_gesv(comm, "potrf with different n");

    // gemm: the same shapes and blocks on a 1 x p grid on rank 0, p x 1
    // elsewhere
    let grids = [[1, p], [p, 1]];
    let x = grids.map(|g| make_on(comm, [6, 5], g, [2, 2], |i, j| (i + j) as f64));
    let y = grids.map(|g| make_on(comm, [5, 4], g, [2, 2], |i, j| (i * j) as f64));
    let mut z = grids.map(|g| make_on(comm, [6, 4], g, [2, 2], |_, _| 0.0));
    let k = pick(0, 1);
    let r = scalapack::gemm(1.0, &x[k], &y[k], 0.0, &mut z[k]);
    differs(comm, "gemm, grid 1 x p against p x 1", r);
    good_gesv(comm, "gemm on different grids");

    // gemm: k = 5 on rank 0, k = 7 elsewhere
    let x = [5, 7].map(|k| make(comm, [6, k], [2, 2], |i, j| (i + j) as f64));
    let y = [5, 7].map(|k| make(comm, [k, 4], [2, 2], |i, j| (i * j) as f64));
    let mut z = make(comm, [6, 4], [2, 2], |_, _| 0.0);
    let k = pick(0, 1);
    let r = scalapack::gemm(1.0, &x[k], &y[k], 0.0, &mut z);
    differs(comm, "gemm, k = 5 against k = 7", r);
    good_gesv(comm, "gemm with different k");

    // gemm: f64 on rank 0, f32 elsewhere (the same layouts)
    let x64 = make(comm, [6, 6], [2, 2], |i, j| (i + j) as f64);
    let mut z64 = make(comm, [6, 6], [2, 2], |_, _| 0.0f64);
    let x32 = make(comm, [6, 6], [2, 2], |i, j| (i + j) as f32);
    let mut z32 = make(comm, [6, 6], [2, 2], |_, _| 0.0f32);
    let r = if first {
        scalapack::gemm(1.0, &x64, &x64, 0.0, &mut z64)
    } else {
        scalapack::gemm(1.0, &x32, &x32, 0.0, &mut z32)
    };
    differs(comm, "gemm, f64 against f32", r);
    good_gesv(comm, "gemm with different element types");

    // gemm: alpha = 1 on rank 0, 2 elsewhere
    let x = make(comm, [6, 6], [2, 2], |i, j| (i + j) as f64);
    let mut z = make(comm, [6, 6], [2, 2], |_, _| 0.0);
    let r = scalapack::gemm(pick(1, 2) as f64, &x, &x, 0.0, &mut z);
    differs(comm, "gemm, alpha = 1 against 2", r);
    // and the same arrays work afterwards
    scalapack::gemm(1.0, &x, &x, 0.0, &mut z).expect("gemm after the refused one");
    good_gesv(comm, "gemm with different alpha");

    // Grid::new: a 1 x p grid on rank 0, p x 1 elsewhere
    let r = scalapack::Grid::new(comm, if first { [1, p] } else { [p, 1] });
    differs(comm, "Grid::new, 1 x p against p x 1", r.map(|_| ()));
    good_gesv(comm, "Grid::new with different grids");
    // Grid::new: a grid of p + 1 ranks on rank 0 (its own check fails),
    // 1 x p elsewhere: rank 0's error, PeerFailed on the others
    let r = scalapack::Grid::new(comm, if first { [1, p + 1] } else { [1, p] });
    match r.map(|_| ()) {
        Err(Error::InvalidPartition(m)) if first => {
            eprintln!("scalapack_check mismatch: Grid::new, p + 1 ranks on rank 0: {m}");
        }
        Err(Error::PeerFailed { .. }) if !first => {}
        other => panic!(
            "rank {}: Grid::new with p + 1 ranks on rank 0: expected rank 0's \
             InvalidPartition, PeerFailed elsewhere; got {other:?}",
            comm.rank()
        ),
    }
    // and a good grid afterwards, whose descriptors work
    let g = scalapack::Grid::new(comm, grid(p)).expect("Grid::new after the refused ones");
    let a = make(comm, [7, 7], [2, 2], fa(7));
    g.descriptor(&a).expect("descriptor on the good grid");
    drop(g);
    good_gesv(comm, "Grid::new with a bad grid on rank 0");
}

fn main() {
    let (_env, comm) = MpiComm::init().expect("MpiComm::init");
    if std::env::args().nth(1).as_deref() == Some("mismatch") {
        mismatch(&comm);
        comm.barrier().expect("barrier");
        if comm.rank() == 0 {
            println!("scalapack_check mismatch: ok ({} ranks)", comm.size());
        }
        return;
    }
    solves::<f64>(&comm, "f64");
    solves::<f32>(&comm, "f32");
    solves::<Complex64>(&comm, "Complex64");
    solves::<Complex32>(&comm, "Complex32");
    errors(&comm);
    comm.barrier().expect("barrier");
    if comm.rank() == 0 {
        println!(
            "scalapack_check: ok ({} ranks, grid {:?})",
            comm.size(),
            grid(comm.size())
        );
    }
}
