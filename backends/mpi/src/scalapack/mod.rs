//! ScaLAPACK on distarray's memory (feature `scalapack`): the LU solve
//! ([`gesv`]: `p?getrf`, then the solve on the right-hand sides as they
//! lie in memory), the Cholesky factorisation and solve
//! ([`potrf`], [`potrs`], [`posv`]) and the matrix product ([`gemm`]:
//! `p?gemm`) for `f32`, `f64`, `Complex32` and `Complex64`, called on the
//! local parts of 2-D block-cyclic [`DistArray`]s with no copy of the
//! matrices.
//!
//! # Layout
//!
//! A 2-D array on a `pr x pc` process grid with blocks `mb x nb` —
//! [`DistArray::block_cyclic`], or a contiguous partition whose parts are
//! blocks of equal size (the last ones short), which is the same thing —
//! is ScaLAPACK's 2-D block-cyclic layout, except for the order inside a
//! local part: distarray stores it row-major, ScaLAPACK column-major. So
//! the memory of an `m x n` array *is* the column-major block-cyclic
//! layout of its **transpose** (`n x m`, blocks `nb x mb`, on the BLACS
//! grid `pc x pr` in column-major process order, local leading dimension
//! the local number of columns). [`Grid::descriptor`] gives that
//! descriptor; the wrappers pass transposed problems accordingly:
//!
//! * `gemm`: `C = αAB + βC` is `Cᵀ = αBᵀAᵀ + βCᵀ`, one `p?gemm`;
//! * `gesv`: `p?getrf` factors `Aᵀ = P L U` in place; `B`'s memory is
//!   `Bᵀ`, and `AX = B` is `Xᵀ P L U = Bᵀ`, solved on the right where `Bᵀ`
//!   lies: two `p?trsm('R', .., 'N')`, then `p?lapiv` applies `Pᵀ` to the
//!   columns (no copy of `A` or `B`, and no transposed solve: `p?getrs`
//!   with `TRANS = 'T'` copies panels of the factors);
//! * `potrf` / `potrs`: a symmetric (Hermitian) `A` has `Aᵀ = A` (`Aᵀ =
//!   conj(A)`, Hermitian positive definite too): `p?potrf` factors the
//!   memory as it is; for complex types the solve conjugates the
//!   right-hand sides on their way in and out.
//!
//! Every call is collective over the arrays' communicator, and every rank
//! must pass the same arguments: arrays of the same global shapes, blocks
//! and process grids, the same element type and scalars. Errors (on every
//! rank): a partition that is not a 2-D block-cyclic layout, arrays on
//! different process grids or with incompatible blocks, non-square blocks
//! or matrices where the routine needs square ones, arrays on communicators
//! with other ranks or another rank order ([`Error::InvalidArgument`] /
//! [`Error::InvalidPartition`]), arguments that differ between ranks
//! ([`Error::InvalidArgument`]), a singular matrix or one that is not
//! positive definite ([`Error::Numerical`]), a view of an array refused on
//! some rank (for instance one that rank holds itself). No rank enters
//! ScaLAPACK before every rank has checked its arguments and every rank
//! learnt that all passed the same ones (one vote of the checks and of a
//! fingerprint of the arguments, before any view is taken) and holds its
//! views (a second one), so none waits in a BLACS collective for a rank
//! that returned an error, and none enters one with descriptors that
//! another rank's do not match.
//!
//! ```no_run
//! use distarray::DistArray;
//! use distarray_mpi::{scalapack, MpiComm};
//! let (_env, comm) = MpiComm::init()?;
//! let n = 1000;
//! // a 2 x 2 grid of 64 x 64 blocks (4 ranks)
//! let mut a = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [n, n], [2, 2], [64, 64])?;
//! a.with_local_mut(|mut l| l.fill_with(|[i, j]| if i == j { 4.0 } else { 1.0 / (1 + i + j) as f64 }))?;
//! let mut b = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [n, 1], [2, 2], [64, 64])?;
//! b.with_local_mut(|mut l| l.fill_with(|[i, _]| i as f64))?;
//! scalapack::gesv(&mut a, &mut b)?; // b now holds x with A x = b
//! # Ok::<(), distarray::Error>(())
//! ```

mod ffi;

use std::os::raw::{c_char, c_int};

use distarray::collective::allreduce_slice_vote;
use distarray::partition::block_cyclic_extent;
use distarray::{
    Complex32, Complex64, ContinuousPartitioning, DistArray, Element, Error, OneSidedComm, Result,
};

use crate::agree::{agree, fingerprint, gated};
use crate::lifetime;
use crate::MpiComm;

/// The element types ScaLAPACK computes with: `f32`, `f64`, `Complex32`,
/// `Complex64` (sealed).
pub trait ScalapackElement: Element + sealed::Sealed {
    /// Complex (conjugation matters in Hermitian routines).
    const COMPLEX: bool;

    /// `p?getrf`.
    ///
    /// # Safety
    ///
    /// The arguments describe valid buffers as ScaLAPACK documents.
    #[doc(hidden)]
    unsafe fn getrf(
        m: c_int,
        n: c_int,
        a: *mut Self,
        desca: &[c_int; 9],
        ipiv: *mut c_int,
    ) -> c_int;

    /// `p?trsm('R', uplo, 'N', diag)`: `B := B A⁻¹` for the `m x n`
    /// matrix `B` and the triangular `n x n` matrix `A` (`uplo` = `b'L'`
    /// or `b'U'`; `diag` = `b'U'` for a unit diagonal, `b'N'` otherwise).
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn trsm_right(
        uplo: u8,
        diag: u8,
        m: c_int,
        n: c_int,
        a: *const Self,
        desca: &[c_int; 9],
        b: *mut Self,
        descb: &[c_int; 9],
    );

    /// `p?lapiv('B', 'C', 'C')`: `B := B Pᵀ` for the `m x n` matrix `B`,
    /// where `P` is the permutation of the row pivots `ipiv` of a
    /// `p?getrf` (distributed over a process column as `descip` says),
    /// `iwork` its workspace.
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn unpivot_columns(
        m: c_int,
        n: c_int,
        b: *mut Self,
        descb: &[c_int; 9],
        ipiv: *const c_int,
        descip: &[c_int; 9],
        iwork: *mut c_int,
    );

    /// `p?potrf` (`uplo` = `b'L'` or `b'U'`).
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    unsafe fn potrf(uplo: u8, n: c_int, a: *mut Self, desca: &[c_int; 9]) -> c_int;

    /// `p?potrs`.
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn potrs(
        uplo: u8,
        n: c_int,
        nrhs: c_int,
        a: *const Self,
        desca: &[c_int; 9],
        b: *mut Self,
        descb: &[c_int; 9],
    ) -> c_int;

    /// `p?gemm` with no transposes: `C = αAB + βC`.
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: Self,
        a: *const Self,
        desca: &[c_int; 9],
        b: *const Self,
        descb: &[c_int; 9],
        beta: Self,
        c: *mut Self,
        descc: &[c_int; 9],
    );

    /// `C = Aᵀ` (`conj`: `C = Aᴴ`) for `C` of `m x n`.
    ///
    /// # Safety
    ///
    /// As for [`ScalapackElement::getrf`].
    #[doc(hidden)]
    unsafe fn tran(
        conj: bool,
        m: c_int,
        n: c_int,
        a: *const Self,
        desca: &[c_int; 9],
        c: *mut Self,
        descc: &[c_int; 9],
    );
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for distarray::Complex32 {}
    impl Sealed for distarray::Complex64 {}
}

const ONE: c_int = 1;

macro_rules! impl_element {
    ($t:ty, $complex:expr, $getrf:ident, $trsm:ident, $lapiv:ident, $potrf:ident, $potrs:ident, $gemm:ident, $tran:ident, $tranc:path) => {
        impl ScalapackElement for $t {
            const COMPLEX: bool = $complex;

            unsafe fn getrf(
                m: c_int,
                n: c_int,
                a: *mut Self,
                desca: &[c_int; 9],
                ipiv: *mut c_int,
            ) -> c_int {
                let mut info = 0;
                // SAFETY: the caller's guarantees.
                unsafe { ffi::$getrf(&m, &n, a, &ONE, &ONE, desca.as_ptr(), ipiv, &mut info) };
                info
            }

            unsafe fn trsm_right(
                uplo: u8,
                diag: u8,
                m: c_int,
                n: c_int,
                a: *const Self,
                desca: &[c_int; 9],
                b: *mut Self,
                descb: &[c_int; 9],
            ) {
                let (side, u, no, d) = (
                    b'R' as c_char,
                    uplo as c_char,
                    b'N' as c_char,
                    diag as c_char,
                );
                let one = <$t as Element>::ONE;
                // SAFETY: the caller's guarantees.
                unsafe {
                    ffi::$trsm(
                        &side,
                        &u,
                        &no,
                        &d,
                        &m,
                        &n,
                        &one,
                        a,
                        &ONE,
                        &ONE,
                        desca.as_ptr(),
                        b,
                        &ONE,
                        &ONE,
                        descb.as_ptr(),
                        1,
                        1,
                        1,
                        1,
                    )
                };
            }

            unsafe fn unpivot_columns(
                m: c_int,
                n: c_int,
                b: *mut Self,
                descb: &[c_int; 9],
                ipiv: *const c_int,
                descip: &[c_int; 9],
                iwork: *mut c_int,
            ) {
                let (back, col) = (b'B' as c_char, b'C' as c_char);
                // SAFETY: the caller's guarantees.
                unsafe {
                    ffi::$lapiv(
                        &back,
                        &col,
                        &col,
                        &m,
                        &n,
                        b,
                        &ONE,
                        &ONE,
                        descb.as_ptr(),
                        ipiv,
                        &ONE,
                        &ONE,
                        descip.as_ptr(),
                        iwork,
                        1,
                        1,
                        1,
                    )
                };
            }

            unsafe fn potrf(uplo: u8, n: c_int, a: *mut Self, desca: &[c_int; 9]) -> c_int {
                let mut info = 0;
                let u = uplo as c_char;
                // SAFETY: the caller's guarantees.
                unsafe { ffi::$potrf(&u, &n, a, &ONE, &ONE, desca.as_ptr(), &mut info, 1) };
                info
            }

            unsafe fn potrs(
                uplo: u8,
                n: c_int,
                nrhs: c_int,
                a: *const Self,
                desca: &[c_int; 9],
                b: *mut Self,
                descb: &[c_int; 9],
            ) -> c_int {
                let mut info = 0;
                let u = uplo as c_char;
                // SAFETY: the caller's guarantees.
                unsafe {
                    ffi::$potrs(
                        &u,
                        &n,
                        &nrhs,
                        a,
                        &ONE,
                        &ONE,
                        desca.as_ptr(),
                        b,
                        &ONE,
                        &ONE,
                        descb.as_ptr(),
                        &mut info,
                        1,
                    )
                };
                info
            }

            unsafe fn gemm(
                m: c_int,
                n: c_int,
                k: c_int,
                alpha: Self,
                a: *const Self,
                desca: &[c_int; 9],
                b: *const Self,
                descb: &[c_int; 9],
                beta: Self,
                c: *mut Self,
                descc: &[c_int; 9],
            ) {
                let nn = b'N' as c_char;
                // SAFETY: the caller's guarantees.
                unsafe {
                    ffi::$gemm(
                        &nn,
                        &nn,
                        &m,
                        &n,
                        &k,
                        &alpha,
                        a,
                        &ONE,
                        &ONE,
                        desca.as_ptr(),
                        b,
                        &ONE,
                        &ONE,
                        descb.as_ptr(),
                        &beta,
                        c,
                        &ONE,
                        &ONE,
                        descc.as_ptr(),
                        1,
                        1,
                    )
                };
            }

            unsafe fn tran(
                conj: bool,
                m: c_int,
                n: c_int,
                a: *const Self,
                desca: &[c_int; 9],
                c: *mut Self,
                descc: &[c_int; 9],
            ) {
                let (one, zero) = (<$t as Element>::ONE, <$t as Element>::ZERO);
                let f = if conj { $tranc } else { ffi::$tran };
                // SAFETY: the caller's guarantees.
                unsafe {
                    f(
                        &m,
                        &n,
                        &one,
                        a,
                        &ONE,
                        &ONE,
                        desca.as_ptr(),
                        &zero,
                        c,
                        &ONE,
                        &ONE,
                        descc.as_ptr(),
                    )
                };
            }
        }
    };
}

impl_element!(
    f32,
    false,
    psgetrf_,
    pstrsm_,
    pslapiv_,
    pspotrf_,
    pspotrs_,
    psgemm_,
    pstran_,
    ffi::pstran_
);
impl_element!(
    f64,
    false,
    pdgetrf_,
    pdtrsm_,
    pdlapiv_,
    pdpotrf_,
    pdpotrs_,
    pdgemm_,
    pdtran_,
    ffi::pdtran_
);
impl_element!(
    Complex32,
    true,
    pcgetrf_,
    pctrsm_,
    pclapiv_,
    pcpotrf_,
    pcpotrs_,
    pcgemm_,
    pctranu_,
    ffi::pctranc_
);
impl_element!(
    Complex64,
    true,
    pzgetrf_,
    pztrsm_,
    pzlapiv_,
    pzpotrf_,
    pzpotrs_,
    pzgemm_,
    pztranu_,
    ffi::pztranc_
);

/// A 2-D array's block-cyclic layout as ScaLAPACK sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Global shape.
    shape: [usize; 2],
    /// Block sizes per dimension.
    blocks: [usize; 2],
    /// Process grid.
    grid: [usize; 2],
    /// This rank's grid position.
    me: [usize; 2],
    /// This rank's local shape.
    local: [usize; 2],
}

impl Layout {
    /// What every rank must see alike (the ScaLAPACK descriptor without
    /// the local leading dimension): the global shape, the blocks and the
    /// process grid.
    fn global(&self) -> [[usize; 2]; 3] {
        [self.shape, self.blocks, self.grid]
    }
}

/// The block size of dimension `d` if its distribution is block-cyclic in
/// ScaLAPACK's sense (contiguous parts count if they are blocks of one
/// size, the last ones short or empty).
fn block_of(part: &ContinuousPartitioning<2>, d: usize) -> Result<usize> {
    if let Some(nb) = part.block_size(d) {
        return Ok(nb);
    }
    let (n, sizes) = (part.shape()[d], part.part_sizes(d));
    let nb = sizes[0].max(1);
    let fits = sizes
        .iter()
        .enumerate()
        .all(|(c, &s)| s == block_cyclic_extent(n, nb, c, sizes.len()));
    if fits {
        Ok(nb)
    } else {
        Err(Error::InvalidPartition(format!(
            "dimension {d}'s parts {sizes:?} are not a block-cyclic layout (parts of equal \
             blocks, the last ones short): use DistArray::block_cyclic or redistribute"
        )))
    }
}

fn layout_of<T: Element>(a: &DistArray<T, MpiComm, 2>) -> Result<Layout> {
    let part = a.partitioning();
    let me = part.grid_index(a.comm().rank())?;
    let blocks = [block_of(part, 0)?, block_of(part, 1)?];
    let layout = Layout {
        shape: part.shape(),
        blocks,
        grid: part.grid(),
        me,
        local: a.local_shape(),
    };
    if (0..2)
        .any(|d| layout.shape[d] > c_int::MAX as usize || layout.blocks[d] > c_int::MAX as usize)
    {
        return Err(Error::InvalidArgument(
            "a matrix dimension or block size exceeds ScaLAPACK's int range".into(),
        ));
    }
    Ok(layout)
}

/// A BLACS process grid over a communicator: the context every
/// descriptor of a call refers to. Made (collectively) for a `pr x pc`
/// distarray grid; BLACS sees it as `pc x pr` in column-major order (see
/// the [module docs](self)). Freed (collectively) when dropped.
pub struct Grid {
    ctxt: c_int,
    handle: c_int,
    grid: [usize; 2],
}

impl Grid {
    /// Collective: the BLACS grid for arrays on the `grid` (`[pr, pc]`)
    /// process grid of `comm`; every rank must pass the same grid. Errors
    /// on every rank (one vote before BLACS is called): `pr * pc` is not
    /// the number of ranks on some rank ([`Error::InvalidPartition`] there,
    /// [`Error::PeerFailed`] on the others), or the grid differs between
    /// ranks ([`Error::InvalidArgument`] everywhere).
    pub fn new(comm: &MpiComm, grid: [usize; 2]) -> Result<Self> {
        let local = Self::check(comm, grid).map(|()| ((), fingerprint(&("Grid::new", grid))));
        agree(comm, local, || {
            Error::InvalidArgument(format!(
                "Grid::new: the process grid ({grid:?} on rank {}) differs between ranks: every \
                 rank must pass the same grid to this collective call",
                comm.rank()
            ))
        })?;
        Self::init(comm, grid)
    }

    /// Collective: makes the BLACS grid. Every rank passes the same grid of
    /// `comm.size()` ranks (agreed by the caller: [`Grid::new`]'s vote, or
    /// the wrapper's argument vote, whose fingerprint holds the grid).
    fn init(comm: &MpiComm, grid: [usize; 2]) -> Result<Self> {
        // the same outcome on every rank: the same grid and size everywhere
        Self::check(comm, grid)?;
        let _serial = lifetime::enter()?;
        let raw = comm.inner().raw();
        // SAFETY: `raw` is a valid communicator of this process; BLACS
        // keeps its own handle to it (freed in `drop`).
        let handle = unsafe { ffi::Csys2blacs_handle(raw) };
        let mut ctxt = handle;
        let order = b"C\0";
        // SAFETY: collective over the communicator (every rank calls it
        // with the same grid); BLACS writes the new context to `ctxt`.
        unsafe {
            ffi::Cblacs_gridinit(
                &mut ctxt,
                order.as_ptr().cast(),
                grid[1] as c_int,
                grid[0] as c_int,
            )
        };
        Ok(Grid { ctxt, handle, grid })
    }

    /// This rank's check of a grid: `pr * pc` ranks, the size of `comm`.
    fn check(comm: &MpiComm, grid: [usize; 2]) -> Result<()> {
        match grid[0].checked_mul(grid[1]) {
            Some(n) if n == comm.size() && !grid.contains(&0) => Ok(()),
            _ => Err(Error::InvalidPartition(format!(
                "process grid {grid:?} does not have {} ranks",
                comm.size()
            ))),
        }
    }

    /// The ScaLAPACK descriptor (`DESC_` array of 9 ints) of `a`'s memory:
    /// the column-major block-cyclic layout of `aᵀ` (see the [module
    /// docs](self)), and its local leading dimension. Error: `a` is not a
    /// 2-D block-cyclic layout on this grid.
    pub fn descriptor<T: Element>(
        &self,
        a: &DistArray<T, MpiComm, 2>,
    ) -> Result<([i32; 9], usize)> {
        let l = layout_of(a)?;
        if l.grid != self.grid {
            return Err(Error::InvalidPartition(format!(
                "the array's process grid {:?} is not the BLACS grid {:?}",
                l.grid, self.grid
            )));
        }
        self.desc_t(&l)
    }

    /// The descriptor of the transpose of an array laid out as `l`.
    fn desc_t(&self, l: &Layout) -> Result<([c_int; 9], usize)> {
        let lld = l.local[1].max(1);
        self.desc([l.shape[1], l.shape[0]], [l.blocks[1], l.blocks[0]], lld)
            .map(|d| (d, lld))
    }

    /// The descriptor of the pivots `p?getrf` leaves for the transpose of
    /// a square array laid out as `l` (what `p?getrs` builds for them):
    /// a column vector over the BLACS process rows, replicated in each
    /// process column.
    fn pivot_desc(&self, l: &Layout) -> [c_int; 9] {
        let mut desc = [0 as c_int; 9];
        let mb = l.blocks[1].max(1) as c_int;
        // BLACS rows are distarray's grid columns (see the module docs)
        let m = (l.shape[1] + l.blocks[1].max(1) * l.grid[1]) as c_int;
        let lld = mb + l.local[1] as c_int;
        let (one, zero, mycol) = (1 as c_int, 0 as c_int, l.me[0] as c_int);
        // SAFETY: `desc` holds 9 ints; the others point to ints.
        unsafe {
            ffi::descset_(
                desc.as_mut_ptr(),
                &m,
                &one,
                &mb,
                &one,
                &zero,
                &mycol,
                &self.ctxt,
                &lld,
            )
        };
        desc
    }

    /// `descinit` of an `m x n` column-major matrix in blocks `mb x nb`.
    fn desc(&self, shape: [usize; 2], blocks: [usize; 2], lld: usize) -> Result<[c_int; 9]> {
        let mut desc = [0 as c_int; 9];
        let mut info = 0;
        let [m, n] = shape.map(|v| v as c_int);
        let [mb, nb] = blocks.map(|v| v.max(1) as c_int);
        let (zero, lld) = (0 as c_int, lld as c_int);
        // SAFETY: `desc` holds 9 ints; every other argument is a valid
        // pointer to an int.
        unsafe {
            ffi::descinit_(
                desc.as_mut_ptr(),
                &m,
                &n,
                &mb,
                &nb,
                &zero,
                &zero,
                &self.ctxt,
                &lld,
                &mut info,
            )
        };
        if info != 0 {
            return Err(Error::InvalidArgument(format!(
                "ScaLAPACK refused the descriptor (descinit info {info})"
            )));
        }
        Ok(desc)
    }
}

/// The BLACS grid for `grid` on `comm`: made collectively by the first
/// call that needs it, then kept by the communicator (every rank asks for
/// the same grids in the same order, so every rank makes it at the same
/// call) and freed with it.
fn grid_for(comm: &MpiComm, grid: [usize; 2]) -> Result<std::sync::Arc<Grid>> {
    let inner = comm.inner();
    let mut cache = inner.blacs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = cache.iter().find(|g| g.grid == grid) {
        return Ok(g.clone());
    }
    // the grid is part of every wrapper's agreed arguments (Layout::global)
    let g = std::sync::Arc::new(Grid::init(comm, grid)?);
    cache.push(g.clone());
    Ok(g)
}

impl Drop for Grid {
    fn drop(&mut self) {
        let Ok(_serial) = lifetime::enter() else {
            return; // MPI is finalised: nothing to free
        };
        // SAFETY: the context and handle this grid made; collective like
        // its creation (every rank drops its grid).
        unsafe {
            ffi::Cblacs_gridexit(self.ctxt);
            ffi::Cfree_blacs_system_handle(self.handle);
        }
    }
}

/// Collective (one vote, before any view is taken): this rank's argument
/// checks `checked`, and that every rank passed the same arguments — the
/// routine, the element type and `key` of the checked layouts (their
/// [`Layout::global`]s, the scalars), compared by [`fingerprint`] in the
/// same vote. Arguments that differ between ranks are an
/// [`Error::InvalidArgument`] on every rank. Also the barrier that keeps a
/// rank from locking its own parts for the call while another may still
/// read them one-sidedly from before it (that reader would wait for the
/// lock, the holder for the reader in the gate: a deadlock seen with
/// MPICH).
fn agreed<T: ScalapackElement, L, K: std::hash::Hash>(
    comm: &MpiComm,
    routine: &str,
    checked: Result<L>,
    key: impl FnOnce(&L) -> K,
) -> Result<L> {
    let local = checked.map(|l| {
        let h = fingerprint(&(routine, T::KIND, key(&l)));
        (l, h)
    });
    agree(comm, local, || {
        Error::InvalidArgument(format!(
            "{routine}: the arguments differ between ranks (global shapes, block sizes, process \
             grids, element type or scalars): every rank must pass the same ones to this \
             collective call"
        ))
    })
}

/// The layouts of the square matrix `a` (square blocks) and the
/// right-hand sides `b` of a solve, checked against each other.
fn solve_layouts<T: Element>(
    what: &str,
    a: &DistArray<T, MpiComm, 2>,
    b: &DistArray<T, MpiComm, 2>,
) -> Result<(Layout, Layout)> {
    let al = layout_of(a)?;
    square(what, &al)?;
    let bl = layout_of(b)?;
    rhs_fits(&al, &bl)?;
    same_ranks(a.comm(), b.comm(), "the right-hand side")?;
    Ok((al, bl))
}

/// `Err` unless `other` is the communicator of `a` or one with the same
/// ranks in the same order (congruent): the BLACS grid is `a`'s, and every
/// descriptor is built with this rank's position in it.
fn same_ranks(a: &MpiComm, other: &MpiComm, what: &str) -> Result<()> {
    let _serial = lifetime::enter()?;
    let mut verdict: c_int = 0;
    // SAFETY: two valid communicators of this process (kept alive by the
    // borrowed handles) and an out-pointer to an int; the MPI call lock is
    // held.
    let rc =
        unsafe { mpi::ffi::MPI_Comm_compare(a.inner().raw(), other.inner().raw(), &mut verdict) };
    // SAFETY: reading MPI's predefined comparison results.
    let (ident, congruent) = unsafe { (mpi::ffi::RSMPI_IDENT, mpi::ffi::RSMPI_CONGRUENT) };
    if rc != mpi::ffi::MPI_SUCCESS as c_int || (verdict != ident && verdict != congruent) {
        return Err(Error::InvalidPartition(format!(
            "{what} is on a communicator other than the matrix's (ScaLAPACK needs the same \
             ranks in the same order)"
        )));
    }
    Ok(())
}

/// The collective outcome of a ScaLAPACK `info`: an argument error (any
/// rank's `info < 0`) or `failure(info)` (the largest positive `info`).
fn outcome(
    comm: &MpiComm,
    routine: &str,
    info: c_int,
    failure: impl Fn(i64) -> String,
) -> Result<()> {
    // one allreduce: the largest info and the largest -info (the smallest)
    let mut both = [i64::from(info), -i64::from(info)];
    allreduce_slice_vote(comm, Ok(()), &mut both, i64::max)?;
    let [hi, neg_lo] = both;
    if neg_lo > 0 {
        return Err(Error::InvalidArgument(format!(
            "{routine}: argument {neg_lo} had an illegal value"
        )));
    }
    if hi > 0 {
        return Err(Error::Numerical(failure(hi)));
    }
    Ok(())
}

fn square(what: &str, l: &Layout) -> Result<()> {
    if l.shape[0] != l.shape[1] {
        return Err(Error::ShapeMismatch {
            expected: vec![l.shape[0], l.shape[0]],
            found: l.shape.to_vec(),
        });
    }
    if l.blocks[0] != l.blocks[1] {
        return Err(Error::InvalidArgument(format!(
            "{what} needs square blocks, not {:?}",
            l.blocks
        )));
    }
    Ok(())
}

/// Checks the right-hand sides `b` against the square `a`: `n` rows, the
/// same grid, rows in `a`'s blocks.
fn rhs_fits(a: &Layout, b: &Layout) -> Result<()> {
    if b.shape[0] != a.shape[0] {
        return Err(Error::ShapeMismatch {
            expected: vec![a.shape[0], b.shape[1]],
            found: b.shape.to_vec(),
        });
    }
    if b.grid != a.grid {
        return Err(Error::InvalidPartition(format!(
            "right-hand sides on grid {:?}, the matrix on {:?}",
            b.grid, a.grid
        )));
    }
    if b.blocks[0] != a.blocks[0] {
        return Err(Error::InvalidArgument(format!(
            "the right-hand sides' row blocks ({}) must be the matrix's ({})",
            b.blocks[0], a.blocks[0]
        )));
    }
    Ok(())
}

/// Runs `solve` on the right-hand sides `b` (laid out as `bl`, this
/// rank's part at `bt`, held under the caller's exclusive view) as a
/// column-major `n x nrhs` work matrix distributed like `a`'s columns
/// (rows over BLACS process rows in `a`'s blocks); `b`'s memory is `bᵀ`
/// and is transposed in (conjugated with `conj`) and the solution back
/// out. Collective; call it only after every rank passed the gate
/// ([`gated`]).
fn with_rhs<T: ScalapackElement>(
    grid: &Grid,
    a: &Layout,
    bl: &Layout,
    bt: *mut T,
    conj: bool,
    solve: impl FnOnce(&mut [T], &[c_int; 9]) -> c_int,
) -> Result<c_int> {
    let (n, nrhs) = (bl.shape[0], bl.shape[1]);
    let (desc_bt, _) = grid.desc_t(bl)?;
    // the work matrix: n x nrhs, rows in a's blocks over the BLACS rows
    // (distarray's grid columns), columns in b's column blocks
    let rows = block_cyclic_extent(n, a.blocks[0], bl.me[1], bl.grid[1]);
    let cols = block_cyclic_extent(nrhs, bl.blocks[1], bl.me[0], bl.grid[0]);
    let mut work = vec![T::ZERO; (rows * cols).max(1)];
    let desc_w = grid.desc([n, nrhs], [a.blocks[0], bl.blocks[1]], rows.max(1))?;
    let (ni, ri) = (n as c_int, nrhs as c_int);
    let _serial = lifetime::enter()?;
    // SAFETY: `bt` is this rank's part of bᵀ as `desc_bt` describes it,
    // exclusively the caller's under its view; `work` holds rows x cols
    // elements as `desc_w` says; every rank calls this (each passed the
    // gate); the MPI call lock is held.
    unsafe { T::tran(conj, ni, ri, bt, &desc_bt, work.as_mut_ptr(), &desc_w) };
    let info = solve(&mut work, &desc_w);
    // SAFETY: as above, the other way.
    unsafe { T::tran(conj, ri, ni, work.as_ptr(), &desc_w, bt, &desc_bt) };
    Ok(info)
}

/// Collective: solves `A X = B` by LU factorisation with partial pivoting
/// (`p?getrf`, then two `p?trsm` and `p?lapiv` on the right-hand sides
/// where they lie, see the [module docs](self)) — ScaLAPACK's `p?gesv`. `a` (`n x n`, square
/// blocks) is overwritten by the factors of `Aᵀ` (as ScaLAPACK leaves
/// them), `b` (`n x nrhs`, rows in `a`'s blocks, the same process grid) by
/// `X`. Errors: see the [module docs](self); a singular `A` gives
/// [`Error::Numerical`] on every rank (and `b` is left unchanged).
pub fn gesv<T: ScalapackElement>(
    a: &mut DistArray<T, MpiComm, 2>,
    b: &mut DistArray<T, MpiComm, 2>,
) -> Result<()> {
    let comm = a.comm().clone();
    let (al, bl) = agreed::<T, _, _>(&comm, "gesv", solve_layouts("gesv", a, b), |(al, bl)| {
        (al.global(), bl.global())
    })?;
    let n = al.shape[0] as c_int;
    let nrhs = bl.shape[1] as c_int;
    // LOCr(M) + MB of aᵀ
    let mut ipiv = vec![0 as c_int; al.local[1] + al.blocks[1]];
    let mut iwork = vec![0 as c_int; pivot_work(&al)];
    gated(&comm, |gate| {
        flat(a.with_local_mut(|mut la| {
            flat(b.with_local_mut(|mut lb| {
                gate.pass()?;
                let grid = grid_for(&comm, al.grid)?;
                let (desc_at, _) = grid.desc_t(&al)?;
                let (desc_bt, _) = grid.desc_t(&bl)?;
                let descip = grid.pivot_desc(&al);
                let at = la.as_mut_slice().as_mut_ptr();
                let info = {
                    let _serial = lifetime::enter()?;
                    // SAFETY: this rank's part of aᵀ as `desc_at` describes
                    // it, exclusively ours under the view; `ipiv` holds
                    // LOCr(n) + nb ints; every rank calls it (each passed
                    // the gate); the MPI call lock is held.
                    unsafe { T::getrf(n, n, at, &desc_at, ipiv.as_mut_ptr()) }
                };
                outcome(&comm, "p?getrf", info, |i| {
                    format!("the matrix is singular: U({i}, {i}) is exactly zero")
                })?;
                // Solve on the right, on bᵀ as it lies in memory (no copy,
                // no transposed solve): A X = B is Xᵀ Aᵀ = Bᵀ, and getrf
                // left Aᵀ = P L U, so Xᵀ = ((Bᵀ U⁻¹) L⁻¹) Pᵀ.
                let bt = lb.as_mut_slice().as_mut_ptr();
                let _serial = lifetime::enter()?;
                // SAFETY: `at` is this rank's part of the factors of aᵀ as
                // `desc_at` describes it (read only here, under our
                // view), `bt` this rank's part of bᵀ as `desc_bt` describes
                // it (exclusively ours under the view; its column blocks
                // are aᵀ's, checked by `rhs_fits`; both arrays on the same
                // ranks, checked by `same_ranks`), `ipiv` the pivots getrf
                // wrote, laid out as `descip` says, `iwork` at least the
                // workspace p?lapiv needs (`pivot_work`); every rank calls
                // these (each passed the gate and getrf's vote); the MPI
                // call lock is held.
                unsafe {
                    T::trsm_right(b'U', b'N', nrhs, n, at, &desc_at, bt, &desc_bt);
                    T::trsm_right(b'L', b'U', nrhs, n, at, &desc_at, bt, &desc_bt);
                    T::unpivot_columns(
                        nrhs,
                        n,
                        bt,
                        &desc_bt,
                        ipiv.as_ptr(),
                        &descip,
                        iwork.as_mut_ptr(),
                    );
                }
                Ok(())
            }))
        }))
    })
}

/// The result of a closure run inside a view, or the view's error.
fn flat<R>(r: Result<Result<R>>) -> Result<R> {
    r?
}

/// Workspace (ints) of `p?lapiv` transposing the pivots of the factors of
/// the transpose of an array laid out as `l`: ScaLAPACK asks for at most
/// `LOCc(M_P) + MB_P * ⌈⌈LOCr(M_P) / MB_P⌉ / (lcm / P_r)⌉ ≤ 2 M_P + MB_P`
/// with `M_P = n + MB · P_r`; twice that, for margin.
fn pivot_work(l: &Layout) -> usize {
    let mp = l.shape[0] + l.blocks[0].max(1) * l.grid[1];
    2 * (2 * mp + l.blocks[0].max(1)) + 64
}

/// Collective: the Cholesky factorisation of the symmetric (Hermitian)
/// positive definite `a` in place (`p?potrf`): `a`'s memory, which is
/// `Aᵀ = A` (`conj(A)` for complex, Hermitian positive definite too),
/// becomes its factor `L` in the lower triangle of that column-major
/// layout (the upper triangle of `a` row-major) — what [`potrs`] takes.
/// Only that triangle of `a` is read. Errors: see the [module docs](self);
/// not positive definite: [`Error::Numerical`] on every rank.
pub fn potrf<T: ScalapackElement>(a: &mut DistArray<T, MpiComm, 2>) -> Result<()> {
    let comm = a.comm().clone();
    let al = agreed::<T, _, _>(
        &comm,
        "potrf",
        layout_of(a).and_then(|al| square("potrf", &al).map(|_| al)),
        Layout::global,
    )?;
    let n = al.shape[0] as c_int;
    gated(&comm, |gate| {
        flat(a.with_local_mut(|mut la| {
            gate.pass()?;
            let grid = grid_for(&comm, al.grid)?;
            let (desc_at, _) = grid.desc_t(&al)?;
            let info = {
                let _serial = lifetime::enter()?;
                // SAFETY: this rank's part as `desc_at` describes it, ours
                // under the view; every rank calls it (each passed the
                // gate); the MPI call lock is held.
                unsafe { T::potrf(b'L', n, la.as_mut_slice().as_mut_ptr(), &desc_at) }
            };
            outcome(&comm, "p?potrf", info, |i| {
                format!(
                    "the matrix is not positive definite (its leading minor of order {i} is not)"
                )
            })
        }))
    })
}

/// Collective: solves `A X = B` with the Cholesky factor [`potrf`] left in
/// `a` (`p?potrs`); `b` (`n x nrhs`, rows in `a`'s blocks, the same grid)
/// is overwritten by `X`. `a` must hold `potrf`'s factor (otherwise the
/// result is meaningless, but nothing worse).
pub fn potrs<T: ScalapackElement>(
    a: &DistArray<T, MpiComm, 2>,
    b: &mut DistArray<T, MpiComm, 2>,
) -> Result<()> {
    let comm = a.comm().clone();
    let (al, bl) = agreed::<T, _, _>(&comm, "potrs", solve_layouts("potrs", a, b), |(al, bl)| {
        (al.global(), bl.global())
    })?;
    let n = al.shape[0] as c_int;
    gated(&comm, |gate| {
        flat(a.with_local(|la| {
            flat(b.with_local_mut(|mut lb| {
                gate.pass()?;
                let grid = grid_for(&comm, al.grid)?;
                let (desc_at, _) = grid.desc_t(&al)?;
                let at = la.as_slice().as_ptr();
                // complex: the memory factors conj(A), so solve for conj(X)
                // from conj(B) (conjugate transposes in and out)
                let bt = lb.as_mut_slice().as_mut_ptr();
                let info = with_rhs(&grid, &al, &bl, bt, T::COMPLEX, |w, desc_w| {
                    // SAFETY: the factor (read only, under our view) and
                    // the work matrix as their descriptors say; every rank
                    // calls it (each passed the gate); the MPI call lock is
                    // held by `with_rhs`.
                    unsafe { T::potrs(b'L', n, desc_w[3], at, &desc_at, w.as_mut_ptr(), desc_w) }
                })?;
                outcome(&comm, "p?potrs", info, |i| format!("p?potrs failed ({i})"))
            }))
        }))
    })
}

/// Collective: [`potrf`] then [`potrs`] — ScaLAPACK's `p?posv`.
pub fn posv<T: ScalapackElement>(
    a: &mut DistArray<T, MpiComm, 2>,
    b: &mut DistArray<T, MpiComm, 2>,
) -> Result<()> {
    // refuse the right-hand side before a is factored, on every rank
    let comm = a.comm().clone();
    agreed::<T, _, _>(&comm, "posv", solve_layouts("posv", a, b), |(al, bl)| {
        (al.global(), bl.global())
    })?;
    potrf(a)?;
    potrs(a, b)
}

/// Collective: `C = αAB + βC` with ScaLAPACK's `p?gemm` for `A` (`m x k`),
/// `B` (`k x n`) and `C` (`m x n`) on one process grid with compatible
/// blocks (`A`'s row blocks are `C`'s, `B`'s column blocks are `C`'s,
/// `A`'s column blocks are `B`'s row blocks). Errors: see the [module
/// docs](self).
pub fn gemm<T: ScalapackElement>(
    alpha: T,
    a: &DistArray<T, MpiComm, 2>,
    b: &DistArray<T, MpiComm, 2>,
    beta: T,
    c: &mut DistArray<T, MpiComm, 2>,
) -> Result<()> {
    let comm = c.comm().clone();
    let checked = (|| {
        let (al, bl, cl) = (layout_of(a)?, layout_of(b)?, layout_of(c)?);
        let [m, k] = al.shape;
        let n = bl.shape[1];
        if bl.shape[0] != k || cl.shape != [m, n] {
            return Err(Error::ShapeMismatch {
                expected: vec![m, k, k, n, m, n],
                found: vec![m, k, bl.shape[0], bl.shape[1], cl.shape[0], cl.shape[1]],
            });
        }
        if al.grid != cl.grid || bl.grid != cl.grid {
            return Err(Error::InvalidPartition(format!(
                "gemm needs one process grid: A {:?}, B {:?}, C {:?}",
                al.grid, bl.grid, cl.grid
            )));
        }
        if al.blocks[0] != cl.blocks[0]
            || bl.blocks[1] != cl.blocks[1]
            || al.blocks[1] != bl.blocks[0]
        {
            return Err(Error::InvalidArgument(format!(
                "gemm needs compatible blocks: A {:?}, B {:?}, C {:?}",
                al.blocks, bl.blocks, cl.blocks
            )));
        }
        same_ranks(&comm, a.comm(), "A")?;
        same_ranks(&comm, b.comm(), "B")?;
        Ok((al, bl, cl, [m, n, k]))
    })();
    let (al, bl, cl, [m, n, k]) = agreed::<T, _, _>(&comm, "gemm", checked, |(al, bl, cl, _)| {
        (
            [al.global(), bl.global(), cl.global()],
            bytemuck::bytes_of(&alpha),
            bytemuck::bytes_of(&beta),
        )
    })?;
    let (mi, ni, ki) = (m as c_int, n as c_int, k as c_int);
    let same = std::ptr::eq(a, b);
    gated(&comm, |gate| {
        flat(a.with_local(|la| {
            let pa = la.as_slice().as_ptr();
            let mut run = |pb: *const T| {
                flat(c.with_local_mut(|mut lc| {
                    gate.pass()?;
                    let grid = grid_for(&comm, cl.grid)?;
                    let (da, db, dc) = (
                        grid.desc_t(&al)?.0,
                        grid.desc_t(&bl)?.0,
                        grid.desc_t(&cl)?.0,
                    );
                    let _serial = lifetime::enter()?;
                    // SAFETY: Cᵀ = α Bᵀ Aᵀ + β Cᵀ on the memory of B, A and
                    // C as their descriptors say (A and B read only under
                    // their views, C ours under its exclusive view; the
                    // three on the same ranks, checked by `same_ranks`);
                    // every rank calls it (each passed the gate); the MPI
                    // call lock is held.
                    unsafe {
                        T::gemm(
                            ni,
                            mi,
                            ki,
                            alpha,
                            pb,
                            &db,
                            pa,
                            &da,
                            beta,
                            lc.as_mut_slice().as_mut_ptr(),
                            &dc,
                        )
                    };
                    Ok(())
                }))
            };
            if same {
                run(pa)
            } else {
                flat(b.with_local(|lb| run(lb.as_slice().as_ptr())))
            }
        }))
    })?;
    // every rank's part of C is complete
    distarray::epoch::vote(c.comm(), Ok(()))
}
