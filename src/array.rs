//! [`DistArray`]: an N-dimensional array distributed over the ranks of a
//! [`OneSidedComm`], each rank's part stored row-major directly in window
//! memory.
//!
//! Constructors, `fill`, `sum`, `similar`, `barrier`, `from_fn` and `Drop` are
//! **collective**: every rank must call them, in the same order. Element
//! access ([`DistArray::get`] / [`DistArray::set`]), local views and
//! [`DistArray::to_vec`] are one-sided: a rank calls them alone.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::collective::{agree_fingerprints, allreduce_vote_keyed, fingerprint, vote_keyed_as};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm, WindowOf};
use crate::epoch::{vote, Epoch};
use crate::error::{Error, Result};
use crate::exact_sum::{Modes, Summation};
use crate::partition::{linear_offset, multi_index, ContinuousPartitioning};

/// An N-dimensional array of `T` distributed over the ranks of `C`.
///
/// ```
/// use distarray::{threaded, DistArray, OneSidedComm};
/// threaded::run_ok(2, |comm| {
///     // 4 x 3 matrix, rows split over the 2 ranks
///     let a = DistArray::<i64, _, 2>::from_fn(comm.clone(), [4, 3], |[i, j]| (10 * i + j) as i64)?;
///     assert_eq!(a.local_indices(comm.rank())?, [2 * comm.rank()..2 * comm.rank() + 2, 0..3]);
///     assert_eq!(a.get([3, 1])?, 31); // one-sided read, maybe remote
///     a.barrier()?;
///     if comm.rank() == 0 {
///         a.set([3, 1], -1)?; // one-sided write into rank 1's part
///     }
///     a.barrier()?;
///     assert_eq!(a.sum()?, (0..4).flat_map(|i| (0..3).map(move |j| 10 * i + j)).sum::<i64>() - 32);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct DistArray<T: Element, C: OneSidedComm, const N: usize> {
    comm: C,
    /// Shared with the communicator's [`HandleSlot`](crate::pending::HandleSlot)
    /// while a handle of this array is in flight (its epochs refer to the
    /// window); dropping the array completes that handle first, so this is
    /// the last `Arc` when the array drops and the window is freed then.
    win: Arc<WindowOf<C, T>>,
    part: Arc<ContinuousPartitioning<N>>,
    /// How floating-point reductions add ([`Summation`]).
    summation: Summation,
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for DistArray<T, C, N> {
    /// Collective (freeing the window is, on MPI): first completes this
    /// rank's non-blocking handle in flight, if any (see
    /// [`crate::pending`]), then frees the window.
    fn drop(&mut self) {
        self.comm.handle_slot().settle();
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: a zero-filled array with the given partitioning, which
    /// must have one part per rank.
    ///
    /// All constructors first agree collectively on their arguments: if any
    /// rank's arguments are invalid, or ranks disagree on the partition,
    /// every rank returns an `Err` (no rank is left waiting, no wrong
    /// answers).
    pub fn with_partitioning(comm: C, part: ContinuousPartitioning<N>) -> Result<Self> {
        Self::create(comm, Ok(part))
    }

    /// Collective: builds the array once every rank agreed on `part`.
    pub(crate) fn create(comm: C, part: Result<ContinuousPartitioning<N>>) -> Result<Self> {
        let part = part.and_then(|p| p.check_nparts(comm.size()).map(|_| p));
        let lens = part.as_ref().map_err(Clone::clone).and_then(|p| {
            (0..comm.size())
                .map(|r| p.part_len(r))
                .collect::<Result<Vec<usize>>>()
        });
        // One vote: valid arguments everywhere, the same partition, element
        // type and part sizes on every rank, every part addressable in bytes
        // and allocatable.
        let key = part.as_ref().map(fingerprint).unwrap_or(0);
        crate::comm::agree::agree_window_after::<T, C>(
            &comm,
            lens.as_ref()
                .map(|l| (key, l.as_slice()))
                .map_err(Clone::clone),
        )?;
        let (part, lens) = (part?, lens?);
        // SAFETY: the vote established that every rank passes the same
        // `lens` (derived from the same partition) and element type, that
        // every part's bytes fit and that every rank can allocate its part.
        let raw = unsafe { comm.allocate_window::<T>(&lens)? };
        let win = crate::comm::checked_window(&comm, raw, lens)?;
        Ok(DistArray {
            comm,
            win: Arc::new(win),
            part: Arc::new(part),
            summation: Summation::Ordered,
        })
    }

    /// Collective: a zero-filled array, the first dimension split evenly
    /// over all ranks (the remainder to the first ranks).
    pub fn new(comm: C, shape: [usize; N]) -> Result<Self> {
        let part = ContinuousPartitioning::uniform(shape, comm.size());
        Self::create(comm, part)
    }

    /// Collective: a zero-filled array over a process grid, dimension `d`
    /// split evenly into `grid[d]` parts; the grid's product must be the
    /// number of ranks.
    pub fn with_grid(comm: C, grid: [usize; N], shape: [usize; N]) -> Result<Self> {
        let part = ContinuousPartitioning::with_grid(shape, grid);
        Self::create(comm, part)
    }

    /// Collective: a zero-filled array in ScaLAPACK's block-cyclic layout
    /// ([`ContinuousPartitioning::block_cyclic`]): dimension `d` cut into
    /// blocks of `block[d]` indices dealt round-robin over `grid[d]`
    /// process coordinates; the grid's product must be the number of
    /// ranks. Element access, blocks, `copy_from` / `redistribute` (to and
    /// from any partition), the element-wise algebra, reductions and
    /// `matmul` work on it; ghosts, halos, transposes and matvec plans need
    /// a contiguous partition and return an `Err` (redistribute first).
    ///
    /// ```
    /// use distarray::{threaded, Block, DistArray};
    /// threaded::run_ok(4, |comm| {
    ///     // 2 x 2 process grid, 3 x 2 blocks
    ///     let a = DistArray::<f64, _, 2>::block_cyclic(comm, [10, 9], [2, 2], [3, 2])?;
    ///     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as f64))?;
    ///     a.barrier()?;
    ///     assert_eq!(a.get([7, 5])?, 75.0);
    ///     let b = a.get_block(&Block::new([2..5, 3..6]))?;
    ///     assert_eq!(b.get([4, 3])?, 43.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn block_cyclic(
        comm: C,
        shape: [usize; N],
        grid: [usize; N],
        block: [usize; N],
    ) -> Result<Self> {
        let part = ContinuousPartitioning::block_cyclic(shape, grid, block);
        Self::create(comm, part)
    }

    /// Collective: a zero-filled array with explicit part sizes per
    /// dimension (e.g. `[vec![7, 3], vec![10]]`: rows split 7 + 3, columns
    /// whole); the shape is their sums.
    pub fn with_part_sizes(comm: C, sizes: [Vec<usize>; N]) -> Result<Self> {
        let part = ContinuousPartitioning::from_part_sizes(sizes);
        Self::create(comm, part)
    }

    /// Collective: like [`DistArray::with_part_sizes`], but checks the sizes
    /// sum to `shape` in every dimension.
    pub fn with_part_sizes_checked(
        comm: C,
        shape: [usize; N],
        sizes: [Vec<usize>; N],
    ) -> Result<Self> {
        let part = ContinuousPartitioning::from_part_sizes(sizes).and_then(|part| {
            if part.shape() != shape {
                return Err(Error::InvalidPartition(format!(
                    "part sizes sum to shape {:?}, expected {shape:?}",
                    part.shape()
                )));
            }
            Ok(part)
        });
        Self::create(comm, part)
    }

    /// Collective: an array assembled from every rank's local part.
    /// `grid` is the process grid; `local_shape` and `data` (row-major,
    /// `data.len()` = product of `local_shape`) are this rank's part. The
    /// part sizes are gathered with `allgather`; parts in the same grid
    /// slab must agree on their extent in that dimension.
    pub fn from_local_parts(
        comm: C,
        grid: [usize; N],
        local_shape: [usize; N],
        data: &[T],
    ) -> Result<Self> {
        let local_len = local_shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b));
        let grid_part = ContinuousPartitioning::with_grid([0; N], grid).and_then(|g| {
            g.check_nparts(comm.size())?;
            let local_len = local_len.ok_or_else(|| {
                Error::InvalidPartition(format!("local shape {local_shape:?} overflows usize"))
            })?;
            if data.len() != local_len {
                return Err(Error::ShapeMismatch {
                    expected: vec![local_len],
                    found: vec![data.len()],
                });
            }
            Ok(g)
        });
        let grid_part = agree_fingerprints(
            &comm,
            grid_part.map(|g| {
                let key = fingerprint(&g);
                (g, key)
            }),
            || {
                Error::InvalidPartition(format!(
                    "ranks disagree on the arguments of this collective call (seen from rank {})",
                    comm.rank()
                ))
            },
        )?;
        let shapes = comm.allgather(&local_shape.map(|x| x as u64))?;
        let mut sizes: [Vec<Option<usize>>; N] = std::array::from_fn(|d| vec![None; grid[d]]);
        for (rank, s) in shapes.iter().enumerate() {
            let g = grid_part.grid_index(rank)?;
            for d in 0..N {
                let n = s[d] as usize;
                match sizes[d][g[d]] {
                    None => sizes[d][g[d]] = Some(n),
                    Some(m) if m == n => {}
                    Some(m) => {
                        // every rank sees the same shapes: all return this error
                        return Err(Error::InvalidPartition(format!(
                            "local parts disagree in dimension {d} at grid slab {}: {m} vs {n} (rank {rank})",
                            g[d]
                        )));
                    }
                }
            }
        }
        let sizes = sizes.map(|v| v.into_iter().map(|x| x.unwrap_or(0)).collect());
        let a = Self::with_part_sizes(comm, sizes)?;
        vote(
            &a.comm,
            a.with_local_mut(|mut l| l.as_mut_slice().copy_from_slice(data)),
        )?;
        Ok(a)
    }

    /// Collective: an array of `shape` split over the first dimension, every
    /// element set to `f(global index)` by its owner.
    pub fn from_fn(comm: C, shape: [usize; N], f: impl Fn([usize; N]) -> T) -> Result<Self> {
        let a = Self::new(comm, shape)?;
        vote(&a.comm, a.with_local_mut(|mut l| l.fill_with(&f)))?;
        Ok(a)
    }

    /// The communicator.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// The window holding the local parts (offsets are row-major offsets
    /// into each rank's part): the escape hatch for raw RMA.
    pub fn window(&self) -> &WindowOf<C, T> {
        &self.win
    }

    /// The window's `Arc` (for the handles of [`crate::pending`]).
    pub(crate) fn window_arc(&self) -> &Arc<WindowOf<C, T>> {
        &self.win
    }

    /// The global shape.
    pub fn shape(&self) -> [usize; N] {
        self.part.shape()
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// `true` if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partitioning.
    pub fn partitioning(&self) -> &ContinuousPartitioning<N> {
        &self.part
    }

    /// The global index ranges owned by `rank`.
    pub fn local_indices(&self, rank: usize) -> Result<[Range<usize>; N]> {
        self.part.part_range(rank)
    }

    /// The shape of this rank's part.
    pub fn local_shape(&self) -> [usize; N] {
        self.part
            .part_shape(self.comm.rank())
            .expect("own rank is in range")
    }

    /// Collective: a barrier over the array's ranks (its communicator's
    /// [`OneSidedComm::barrier`]). Every one-sided operation any rank
    /// completed (epoch closed) before it is visible to every rank after it.
    pub fn barrier(&self) -> Result<()> {
        self.comm.barrier()
    }

    /// Opens a passive-target epoch on `target`'s part: an RAII guard whose
    /// drop unlocks. Offsets of its operations are row-major offsets into
    /// that part.
    pub fn lock(&self, target: usize, kind: LockKind) -> Result<Epoch<'_, T, C::RawWindow<T>>> {
        Epoch::new(&self.win, target, kind)
    }

    /// Runs `f` inside a passive-target epoch on `target` (lock, `f`,
    /// unlock). The lock is released even when `f` fails or panics.
    ///
    /// While the epoch is open, do not wait for other ranks (collectives,
    /// or locks they may hold): they may be waiting for this lock.
    pub fn with_epoch<R>(
        &self,
        target: usize,
        kind: LockKind,
        f: impl FnOnce(&WindowOf<C, T>) -> Result<R>,
    ) -> Result<R> {
        let epoch = self.lock(target, kind)?;
        let out = f(&self.win)?;
        epoch.unlock()?;
        Ok(out)
    }

    /// Reads one element by global index: lock, get, unlock. One-sided and
    /// correct, but one round trip per element: the slow path. Use blocks
    /// ([`crate::Block`]) or local views for bulk access.
    pub fn get(&self, index: [usize; N]) -> Result<T> {
        let (rank, offset) = self.part.owner(index)?;
        let mut v = [T::default()];
        self.win
            .get_locked(rank, LockKind::Shared, offset, &mut v)?;
        Ok(v[0])
    }

    /// Writes one element by global index: exclusive lock, put, unlock. The
    /// slow path, like [`DistArray::get`].
    pub fn set(&self, index: [usize; N], value: T) -> Result<()> {
        let (rank, offset) = self.part.owner(index)?;
        self.win
            .put_locked(rank, LockKind::Exclusive, offset, &[value])
    }

    /// Runs `f` on a read-only view of this rank's part (shared lock on it).
    pub fn with_local<R>(&self, f: impl FnOnce(LocalView<'_, T, N>) -> R) -> Result<R> {
        let me = self.comm.rank();
        let map = PartMap::new(&self.part, me)?;
        self.with_epoch(me, LockKind::Shared, |w| {
            w.with_local(|data| f(LocalView { data, map }))
        })
    }

    /// Runs `f` on a mutable view of this rank's part (exclusive lock on
    /// it, so no other rank accesses it meanwhile).
    pub fn with_local_mut<R>(&self, f: impl FnOnce(LocalViewMut<'_, T, N>) -> R) -> Result<R> {
        let me = self.comm.rank();
        let map = PartMap::new(&self.part, me)?;
        self.with_epoch(me, LockKind::Exclusive, |w| {
            w.with_local_mut(|data| f(LocalViewMut { data, map }))
        })
    }

    /// [`DistArray::with_local`] for a closure that returns a `Result`: one
    /// `Result`, the closure's error or the view's (no `??`).
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Error};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<u8, _, 1>::new(comm, [4])?;
    ///     let first = a.try_with_local(|l| {
    ///         l.as_slice().first().copied().ok_or(Error::InvalidArgument("empty part".into()))
    ///     })?;
    ///     assert_eq!(first, 0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn try_with_local<R>(&self, f: impl FnOnce(LocalView<'_, T, N>) -> Result<R>) -> Result<R> {
        self.with_local(f)?
    }

    /// [`DistArray::with_local_mut`] for a closure that returns a `Result`.
    pub fn try_with_local_mut<R>(
        &self,
        f: impl FnOnce(LocalViewMut<'_, T, N>) -> Result<R>,
    ) -> Result<R> {
        self.with_local_mut(f)?
    }

    /// Collective: a zero-filled array of element type `U` with the same
    /// partitioning and the same [`Summation`] mode.
    pub fn similar<U: Element>(&self) -> Result<DistArray<U, C, N>> {
        Ok(
            DistArray::with_partitioning(self.comm.clone(), (*self.part).clone())?
                .with_summation(self.summation),
        )
    }

    /// This array with floating-point reductions in `mode` (builder form of
    /// [`set_summation`](Self::set_summation); local). Every rank must use
    /// the same mode: a reduction of an array whose mode differs between
    /// ranks is an [`Error::InvalidArgument`] on every rank
    /// ([`Summation`]).
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Summation};
    /// // the same bits on 1, 2, 3 and 4 ranks
    /// let sums: Vec<f64> = (1..=4)
    ///     .map(|p| {
    ///         threaded::run_ok(p, |comm| {
    ///             let x = DistArray::<f64, _, 1>::from_fn(comm, [1000], |[i]| 1.0 / (i as f64 + 1.0))?
    ///                 .with_summation(Summation::Exact);
    ///             x.sum()
    ///         })
    ///         .unwrap()[0]
    ///     })
    ///     .collect();
    /// assert!(sums.iter().all(|s| s.to_bits() == sums[0].to_bits()));
    /// ```
    pub fn with_summation(mut self, mode: Summation) -> Self {
        self.summation = mode;
        self
    }

    /// Sets how this array's floating-point reductions add (local; set the
    /// same mode on every rank: the reductions that read it agree it
    /// between the ranks, and a mode that differs is an
    /// [`Error::InvalidArgument`] on every rank, see [`Summation`]).
    /// [`Summation::Ordered`] by default; [`Summation::Exact`] gives the
    /// same bits for any rank count, partition and backend. Arrays made
    /// with [`similar`](Self::similar) inherit it.
    pub fn set_summation(&mut self, mode: Summation) {
        self.summation = mode;
    }

    /// How this array's floating-point reductions add.
    pub fn summation(&self) -> Summation {
        self.summation
    }

    /// `true` if reductions of this array sum exactly: the array asks for
    /// [`Summation::Exact`] and `T` is a floating-point or complex type
    /// (integer sums are exact anyway).
    pub(crate) fn sums_exactly(&self) -> bool {
        self.summation == Summation::Exact && crate::exact_sum::is_float_kind(T::KIND)
    }

    /// Collective: the exact sum of the elements (every rank's part into an
    /// [`ExactParts`](crate::exact_sum::ExactParts), merged in one
    /// allreduce), after a vote of a `P` that agrees `key` (`differs()` on
    /// every rank if it differs between ranks): the collective that the
    /// ordered path reduces its `P` in.
    fn exact_sum<P: bytemuck::Pod>(&self, key: u32, differs: impl FnOnce() -> Error) -> Result<T> {
        let local = self.with_local(|l| {
            let mut acc = crate::exact_sum::ExactParts::new();
            acc.add_slice(l.as_slice());
            acc
        });
        let local = vote_keyed_as::<P, _, _>(&self.comm, local, key, differs)?;
        Ok(crate::exact_sum::allreduce_parts(&self.comm, Ok(local))?.round::<T>())
    }

    /// The summation mode of this array, as the one operand of `operation`
    /// (for the vote that agrees it between the ranks).
    pub(crate) fn modes<'a>(&self, operation: &'a str) -> Modes<'a, 1> {
        Modes {
            operation,
            operands: [("the array", self.summation)],
        }
    }

    /// Collective: a zero-filled array of element type `U` and another shape
    /// on the same communicator, split over its first dimension.
    pub fn similar_with_shape<U: Element, const M: usize>(
        &self,
        shape: [usize; M],
    ) -> Result<DistArray<U, C, M>> {
        DistArray::new(self.comm.clone(), shape)
    }

    /// Collective: sets every element to `value`.
    pub fn fill(&self, value: T) -> Result<()> {
        vote(
            &self.comm,
            self.with_local_mut(|mut l| l.as_mut_slice().fill(value)),
        )
    }

    /// Collective: applies `f` to every local element, in place.
    pub fn map_local(&self, f: impl Fn(T) -> T) -> Result<()> {
        let local =
            self.with_local_mut(|mut l| l.as_mut_slice().iter_mut().for_each(|x| *x = f(*x)));
        vote(&self.comm, local)
    }

    /// Collective: reduces the local parts with `local` and combines the
    /// per-rank results in rank order with `combine` (deterministic: every
    /// rank gets the same value).
    ///
    /// One collective (an allreduce carrying the success vote), O(log P)
    /// rounds; the combination order is fixed (rank order, in the tree of
    /// [`crate::collective`] on the threaded and Lamellar backends, MPI's
    /// own fixed order on MPI), so the result is bitwise reproducible run
    /// to run (for this rank count and partition: a floating-point
    /// `combine` rounds differently when the parts change — for sums use
    /// [`sum`](Self::sum) / [`map_sum`](Self::map_sum) with
    /// [`Summation::Exact`]). `combine` must be associative. For the built-in operations
    /// prefer [`reduce_op`](Self::reduce_op) (or pass a
    /// [`kernels`](crate::kernels) function such as
    /// [`kernels::sum`](crate::kernels::sum) as `local`): its local pass
    /// runs with independent accumulators in a fixed order.
    pub fn reduce(&self, local: impl FnOnce(&[T]) -> T, combine: impl Fn(T, T) -> T) -> Result<T> {
        let mine = self.with_local(|l| local(l.as_slice()));
        crate::collective::allreduce_vote(&self.comm, mine, combine)
    }

    /// Collective: like [`reduce`](Self::reduce), but `local` sees the
    /// rank's [`LocalView`] — its values with their shape and global index
    /// range — and may return any plain-old-data type: for reductions that
    /// depend on where an element lies (a boundary norm, a weighted sum, a
    /// search returning an index). The per-rank results are combined in the
    /// fixed rank order of [`reduce`](Self::reduce); one collective.
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(3, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm, [4, 5], |[i, j]| (i * 5 + j) as f64)?;
    ///     // the sum of the last column, read from each part's own rows
    ///     let edge = a.reduce_local(
    ///         |l| {
    ///             let [rows, cols] = l.global_range();
    ///             let w = cols.len();
    ///             if cols.end != 5 || w == 0 {
    ///                 return 0.0;
    ///             }
    ///             (0..rows.len()).map(|r| l.as_slice()[r * w + w - 1]).sum()
    ///         },
    ///         |x, y| x + y,
    ///     )?;
    ///     assert_eq!(edge, 4.0 + 9.0 + 14.0 + 19.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn reduce_local<U: bytemuck::Pod>(
        &self,
        local: impl FnOnce(LocalView<'_, T, N>) -> U,
        combine: impl Fn(U, U) -> U,
    ) -> Result<U> {
        let mine = self.with_local(local);
        crate::collective::allreduce_vote(&self.comm, mine, combine)
    }

    /// Collective: reduces all elements with `op` ([`AccumulateOp::Sum`],
    /// [`AccumulateOp::Prod`] — wrapping for integers —,
    /// [`AccumulateOp::Min`], [`AccumulateOp::Max`]): each rank's part with
    /// [`kernels::reduce`](crate::kernels::reduce) (fixed order, bitwise
    /// reproducible), then the non-empty parts' results in the backend's
    /// fixed rank order. One collective.
    ///
    /// # Errors
    ///
    /// `Sum` follows the array's [`Summation`] mode like [`sum`](Self::sum)
    /// (exact, so independent of the rank count, with
    /// [`Summation::Exact`]); `Min` and `Max` are independent of the order
    /// anyway, and integer `Sum` / `Prod` wrap exactly. A floating-point
    /// `Prod` is always in the fixed order.
    ///
    /// [`Error::InvalidArgument`] on every rank for
    /// [`AccumulateOp::Replace`], and for `Min` / `Max` of an empty array
    /// (no identity); `Sum` / `Prod` of an empty array are `0` / `1`. Also
    /// on every rank when `op` or the array's [`Summation`] mode (whatever
    /// `op`) differs between ranks: both are agreed in the one collective's
    /// vote (with `Sum` in [`Summation::Exact`], in a vote before the exact
    /// allreduce).
    pub fn reduce_op(&self, op: AccumulateOp) -> Result<T> {
        // the operation and the mode (which choose the path, the payload
        // and how it combines) are agreed in the vote word
        let key = self.modes("reduce_op").key() | (op as u32) << 1;
        let differs = || {
            Error::InvalidArgument(format!(
                "reduce_op: the operation or the array's summation mode differs between ranks \
                 (on this rank {op:?}, {:?}); pass the same operation and set the same \
                 Summation on every rank",
                self.summation
            ))
        };
        if op == AccumulateOp::Sum && self.sums_exactly() {
            return self.exact_sum::<[T; 2]>(key, differs);
        }
        let local = self
            .with_local(|l| crate::kernels::reduce(l.as_slice(), op))
            .and_then(|r| r);
        // [value, present]: a rank with an empty part contributes nothing
        let mine = local.map(|v| match v {
            Some(v) => [v, T::ONE],
            None => [T::ZERO, T::ZERO],
        });
        let present = |p: &[T; 2]| p[1] == T::ONE;
        let combine = |a: [T; 2], b: [T; 2]| match (present(&a), present(&b)) {
            (true, true) => [T::combine(op, a[0], b[0]), T::ONE],
            (true, false) => a,
            _ => b,
        };
        let [value, found] = allreduce_vote_keyed(&self.comm, mine, key, combine, differs)?;
        match (found == T::ONE, op) {
            (true, _) => Ok(value),
            (false, AccumulateOp::Sum) => Ok(T::ZERO),
            (false, AccumulateOp::Prod) => Ok(T::ONE),
            (false, _) => Err(Error::InvalidArgument(format!(
                "{op:?} of an empty array has no value"
            ))),
        }
    }

    /// Collective: the sum of all elements (wrapping for integers): each
    /// rank's part with [`kernels::sum`](crate::kernels::sum) (fixed order,
    /// bitwise reproducible), the partial sums added in rank order, so every
    /// rank gets the same value. With [`Summation::Exact`]
    /// ([`with_summation`](Self::with_summation)) a floating-point or
    /// complex sum is the correctly rounded exact sum instead
    /// ([`crate::exact_sum`]): the same bits for any rank count, partition
    /// and backend. One collective (an allreduce carrying the success vote
    /// and the mode); with [`Summation::Exact`] a vote of the same size
    /// first, then the exact allreduce.
    ///
    /// # Errors
    ///
    /// On every rank: a failure of some rank's part, and an array whose
    /// [`Summation`] mode differs between ranks
    /// ([`Error::InvalidArgument`]).
    pub fn sum(&self) -> Result<T> {
        // the mode, which chooses the path, is agreed in the vote word
        let modes = self.modes("sum");
        if self.sums_exactly() {
            return self.exact_sum::<T>(modes.key(), || modes.differ());
        }
        // wrapping for integers, like accumulate(Sum)
        let mine = self.with_local(|l| crate::kernels::sum(l.as_slice()));
        crate::linalg::sum_agreed(&self.comm, mine, &modes)
    }

    /// One-sided: the whole array in global row-major order, read with one
    /// `get` per rank. For small arrays and tests: it copies everything.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let shape = self.shape();
        let mut out = vec![T::default(); self.len()];
        for rank in 0..self.comm.size() {
            let map = PartMap::new(&self.part, rank)?;
            let n: usize = map.shape.iter().product();
            if n == 0 {
                continue;
            }
            let mut buf = vec![T::default(); n];
            self.with_epoch(rank, LockKind::Shared, |w| w.get(rank, 0, &mut buf))?;
            for (k, v) in buf.into_iter().enumerate() {
                out[linear_offset(&shape, &map.global_index(k))] = v;
            }
        }
        Ok(out)
    }
}

/// Elements up to which `Display` prints an array whole.
const DISPLAY_MAX: usize = 1000;

impl<T: Element, C: OneSidedComm, const N: usize> fmt::Debug for DistArray<T, C, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistArray")
            .field("shape", &self.shape())
            .field("grid", &self.part.grid())
            .field("backend", &self.comm.backend_name())
            .field("rank", &self.comm.rank())
            .finish()
    }
}

/// Prints the whole array (read one-sidedly from every rank) when it has at
/// most 1000 elements, otherwise its shape and partition only. 2-D arrays
/// print one row per line.
impl<T: Element, C: OneSidedComm, const N: usize> fmt::Display for DistArray<T, C, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = self.shape();
        write!(f, "DistArray{shape:?} over grid {:?}", self.part.grid())?;
        if self.len() > DISPLAY_MAX {
            return write!(f, " (too large to print)");
        }
        let data = self.to_vec().map_err(|_| fmt::Error)?;
        let join = |xs: &[T]| {
            xs.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match N {
            2 if shape[1] > 0 => {
                writeln!(f, ":")?;
                for row in data.chunks(shape[1]) {
                    writeln!(f, "  [{}]", join(row))?;
                }
                Ok(())
            }
            _ => write!(f, ": [{}]", join(&data)),
        }
    }
}

/// A read-only view of one rank's part, addressed locally or globally.
pub struct LocalView<'a, T, const N: usize> {
    data: &'a [T],
    map: PartMap<'a, N>,
}

/// A mutable view of one rank's part, addressed locally or globally.
pub struct LocalViewMut<'a, T, const N: usize> {
    data: &'a mut [T],
    map: PartMap<'a, N>,
}

/// Where a rank's part lies in the index space: its grid position and
/// shape in the partition (one box, or blocks of a block-cyclic layout).
#[derive(Clone, Copy)]
struct PartMap<'a, const N: usize> {
    part: &'a ContinuousPartitioning<N>,
    coords: [usize; N],
    shape: [usize; N],
}

impl<'a, const N: usize> PartMap<'a, N> {
    fn new(part: &'a ContinuousPartitioning<N>, rank: usize) -> Result<Self> {
        Ok(PartMap {
            part,
            coords: part.grid_index(rank)?,
            shape: part.part_shape(rank)?,
        })
    }

    fn global_index(&self, offset: usize) -> [usize; N] {
        let li = multi_index(&self.shape, offset);
        self.part.global_of_local(self.coords, li)
    }

    fn local_offset(&self, index: [usize; N]) -> Option<usize> {
        let li = self.part.local_of_global(self.coords, index)?;
        Some(linear_offset(&self.shape, &li))
    }

    /// Per dimension, from the first owned index to one past the last.
    fn span(&self) -> [Range<usize>; N] {
        std::array::from_fn(|d| {
            let lo = self.part.global_of_local(self.coords, [0; N])[d];
            if self.shape[d] == 0 {
                lo..lo
            } else {
                let mut last = [0; N];
                last[d] = self.shape[d] - 1;
                lo..self.part.global_of_local(self.coords, last)[d] + 1
            }
        })
    }
}

macro_rules! view_common {
    ($ty:ident) => {
        impl<'a, T: Copy, const N: usize> $ty<'a, T, N> {
            /// The part's elements, row-major.
            pub fn as_slice(&self) -> &[T] {
                self.data
            }

            /// The part's shape.
            pub fn shape(&self) -> [usize; N] {
                self.map.shape
            }

            /// The global index ranges of the part (its box). On a
            /// block-cyclic dimension, the range from the first index the
            /// part owns to one past the last: the part owns only some of
            /// them (see [`ContinuousPartitioning::part_intervals`]; use
            /// `global_index` / `local_offset` to map).
            pub fn global_range(&self) -> [Range<usize>; N] {
                self.map.span()
            }

            /// The part as an `ndarray` view (dynamic dimension).
            pub fn view(&self) -> ArrayViewD<'_, T> {
                ArrayViewD::from_shape(IxDyn(&self.shape()), self.data)
                    .expect("shape matches length")
            }

            /// The global index of local row-major `offset`.
            pub fn global_index(&self, offset: usize) -> [usize; N] {
                self.map.global_index(offset)
            }

            /// Local offset of a global index, if this part owns it.
            pub fn local_offset(&self, index: [usize; N]) -> Option<usize> {
                self.map.local_offset(index)
            }

            /// The element at a global index, if this part owns it.
            pub fn get(&self, index: [usize; N]) -> Option<T> {
                self.local_offset(index).map(|o| self.data[o])
            }

            /// Iterates `(global index, value)` over the part in row-major order.
            pub fn iter_global(&self) -> impl Iterator<Item = ([usize; N], T)> + '_ {
                self.data
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| (self.global_index(k), v))
            }
        }
    };
}
view_common!(LocalView);
view_common!(LocalViewMut);

impl<T: Copy, const N: usize> LocalViewMut<'_, T, N> {
    /// The part's elements, row-major, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.data
    }

    /// The part as a mutable `ndarray` view (dynamic dimension).
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        let shape = self.shape();
        ArrayViewMutD::from_shape(IxDyn(&shape), self.data).expect("shape matches length")
    }

    /// Sets the element at a global index; `Err` if this part does not own it.
    pub fn set(&mut self, index: [usize; N], value: T) -> Result<()> {
        match self.local_offset(index) {
            Some(o) => {
                self.data[o] = value;
                Ok(())
            }
            None => Err(Error::IndexOutsideBlock {
                index: index.to_vec(),
                ranges: self.map.span().iter().map(|r| (r.start, r.end)).collect(),
            }),
        }
    }

    /// Sets every element to `f(global index)`.
    pub fn fill_with(&mut self, f: impl Fn([usize; N]) -> T) {
        for k in 0..self.data.len() {
            let g = self.global_index(k);
            self.data[k] = f(g);
        }
    }
}
