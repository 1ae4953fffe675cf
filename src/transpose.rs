//! Distributed transpose of 2-D arrays: [`DistArray::transpose_into`]
//! (`out = selfᵀ`), [`DistArray::transpose_add_into`] (`out += alpha ·
//! selfᵀ`), [`DistArray::transpose`] (a new array), and the reusable
//! [`TransposePlan`] behind them, for loops that transpose the same pair
//! of arrays again and again (the PRK transpose kernel `B += Aᵀ; A += 1`).
//!
//! The two arrays may be partitioned in any way: by rows, by columns, on a
//! 2-D process grid, with explicit (uneven) part sizes, with ranks that
//! own nothing. Rank `r` owns the box `A[I_r, J_r]`; rank `s` owns
//! `B[J'_s, I'_s]`; what `r` sends `s` is the tile `A[I_r ∩ I'_s, J_r ∩
//! J'_s]`, which lands in `s`'s part as `B[J_r ∩ J'_s, I_r ∩ I'_s]`. So
//! rows to columns (and columns to rows) with the same cuts moves nothing
//! between ranks, while rows to rows (or columns to columns, the PRK
//! layout) makes every pair of ranks exchange one tile.
//!
//! # Communication
//!
//! The plan ([`TransposePlan::new`], collective, no communication beyond
//! one vote) lists, for this rank, the tiles it sends to each rank and
//! receives from each rank. Each call then has every rank **pack** each
//! destination's tile *already transposed* (a cache-blocked local
//! transpose in 32 x 32 tiles), so that the receiver only copies
//! contiguous rows into its part; the own tile is transposed locally,
//! straight from `A`'s part into `B`'s, without communication. The tiles
//! travel in one of two ways:
//!
//! * **One message per rank pair** that shares data, where the backend has
//!   neighbour messages ([`OneSidedComm::messages`]: MPI,
//!   threaded), and nothing else: no vote, no barrier — per call and
//!   rank one neighbour exchange (one message to each rank it shares data
//!   with), the same communication as a hand-written MPI transpose. Each
//!   message ends with a status element (zero: packed; otherwise the
//!   sender failed and the receiver returns [`Error::PeerFailed`]), so a
//!   rank that fails still sends and nobody waits forever. Both parts are
//!   held from before the tiles are packed until they are unpacked, so
//!   nothing can fail on a rank after its messages are sent.
//!
//!   A tile that spans every column of its sender's part (all of them
//!   when `A` is split by columns only, as in the PRK layout) is whole,
//!   contiguous rows of that part: it is **sent from the part itself**,
//!   untransposed, with no packing pass (one message gathered from the
//!   rows and the status element:
//!   [`NeighbourMessages::exchange_vectored_start`](crate::NeighbourMessages::exchange_vectored_start),
//!   on MPI one `MPI_Isend` of an hindexed type), and the receiver
//!   transposes it into its part as it unpacks. (Measured against a
//!   hand-written C transpose that packs, n = 1000 on two ranks: see
//!   BENCHMARKS.md, "Transpose".)
//! * **One `get` per rank pair** elsewhere (no messages): every rank packs its
//!   outgoing tiles into its part of a staging window, a vote, one `get`
//!   per source rank, a vote.
//!
//! An error on a rank (an array partitioned unlike the plan, a refused
//! local view) is an error on that rank and on every rank that receives
//! a tile from it (as [`Error::PeerFailed`]; with the staging window, on
//! every rank), like [`Ghosted::update_ghosts`](crate::Ghosted::update_ghosts).
//! Errors from arguments (shapes, partitions) are the same on every rank.
//! After an error the contents of the output are unspecified.
//!
//! [`TransposePlan::transpose_add_map`] also updates `A` in the same pass
//! (`B += Aᵀ; A = f(A)`): each element of `A` is read once, so the PRK
//! kernel's `A += 1` costs no second sweep over `A` — except the rows sent
//! from the part itself, which are mapped once their messages have left
//! (a contiguous pass over them).
//!
//! Like the operations of [`crate::algebra`], a transpose reads `A`'s part
//! on its owner and writes `B`'s part on its owner: one-sided writes into
//! `A` and one-sided reads of `B` that other ranks issued before the call
//! must be complete (a [`DistArray::barrier`]). When the call returns,
//! this rank's part of `B` is complete; so is the part of every rank this
//! rank received a tile from (that rank holds its part of `B` from before
//! it sends until it has unpacked, so a read of it waits); other ranks'
//! parts may still be in progress on the message path, so synchronise
//! (any collective, or [`DistArray::barrier`]) before reading them.
//!
//! ```
//! use distarray::{threaded, DistArray, TransposePlan};
//! threaded::run_ok(3, |comm| {
//!     // A is 4 x 6 split by rows, B is 6 x 4 on a 1 x 3 grid (by columns)
//!     let a = DistArray::<i64, _, 2>::from_fn(comm.clone(), [4, 6], |[i, j]| (10 * i + j) as i64)?;
//!     let mut b = DistArray::<i64, _, 2>::with_grid(comm.clone(), [1, 3], [6, 4])?;
//!     a.transpose_into(&mut b)?;
//!     assert_eq!(b.get([5, 2])?, 25);
//!     // the PRK kernel: B += Aᵀ; A += 1, through one plan
//!     let mut plan = TransposePlan::new(&a, &b)?;
//!     for _ in 0..3 {
//!         plan.transpose_add_map(&a, &mut b, 1, |v| v + 1)?;
//!     }
//!     // the plan's calls complete this rank's part: synchronise before
//!     // reading another rank's
//!     b.barrier()?;
//!     // 25 + 25 + 26 + 27
//!     assert_eq!(b.get([5, 2])?, 103);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;

use crate::array::DistArray;
use crate::block::Block;
use crate::collective::{agree_fingerprints, fingerprint};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm, Request};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::kernels;
use crate::partition::ContinuousPartitioning;

/// Side of the square tiles of the cache-blocked local transpose.
const TILE: usize = 32;

/// A tile of `A` that moves between two ranks (or stays on one), in `A`'s
/// global indices.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tile {
    /// The other rank (destination of a send, source of a receive).
    rank: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    /// Where the tile starts in the sender's staging part (one-sided path).
    offset: usize,
    /// Sent as it lies in the sender's part, untransposed (message path,
    /// tiles spanning all columns of the sender's part: their rows are
    /// contiguous there); the receiver transposes it.
    raw: bool,
}

impl Tile {
    fn len(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
}

/// How the tiles travel.
enum Transport<T: Element, C: OneSidedComm> {
    /// Neighbour messages: one buffer per destination (its tile, packed
    /// transposed, then one status element).
    Messages { outbox: Vec<Vec<T>> },
    /// One-sided: every rank's outgoing tiles, packed one after the other
    /// in destination rank order.
    Staging { staging: DistArray<T, C, 1> },
}

/// What a call does with the transposed values.
#[derive(Debug, Clone, Copy)]
enum Op<T> {
    /// `out = selfᵀ`.
    Replace,
    /// `out += alpha · selfᵀ`.
    Add(T),
}

/// The communication plan of a transpose from one array to another,
/// reusable while their partitions stay the same (like a
/// [`Halo`](crate::Halo)): the tiles this rank sends and receives, the
/// message buffers, and on backends without neighbour messages the staging
/// window. See the [module docs](self).
///
/// ```
/// use distarray::{threaded, DistArray, OneSidedComm, TransposePlan};
/// threaded::run_ok(2, |comm| {
///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 4], |[i, j]| (4 * i + j) as f64)?;
///     let mut b = a.similar::<f64>()?;
///     let mut plan = TransposePlan::new(&a, &b)?; // collective
///     // rows -> rows on 2 ranks: this rank sends one message, to the other
///     assert_eq!(plan.destinations(), vec![1 - comm.rank()]);
///     plan.transpose(&a, &mut b)?;
///     b.barrier()?;
///     assert_eq!(b.get([1, 2])?, 9.0);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct TransposePlan<T: Element, C: OneSidedComm> {
    a_part: ContinuousPartitioning<2>,
    b_part: ContinuousPartitioning<2>,
    /// This rank's part of `A` and of `B` (global indices).
    a_own: [Range<usize>; 2],
    b_own: [Range<usize>; 2],
    /// The tile this rank keeps (in `A`'s indices), if any.
    own_tile: Option<Tile>,
    /// Tiles to other ranks, in rank order (`offset`: in this rank's
    /// staging part).
    sends: Vec<Tile>,
    /// Tiles from other ranks, in rank order (`offset`: in the source's
    /// staging part).
    recvs: Vec<Tile>,
    /// Receive buffers (index = `recvs`): the tile transposed, then (with
    /// messages) the status element.
    inbox: Vec<Vec<T>>,
    transport: Transport<T, C>,
}

impl<T: Element, C: OneSidedComm> std::fmt::Debug for TransposePlan<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransposePlan")
            .field("a_own", &self.a_own)
            .field("b_own", &self.b_own)
            .field("destinations", &self.destinations())
            .field("sources", &self.sources())
            .finish()
    }
}

/// `Ok` if `out` can receive the transpose of `a`: shape `[n1, n0]`, the
/// same number of ranks and the same rank.
fn check_pair<T: Element, C: OneSidedComm>(
    operation: &'static str,
    a: &DistArray<T, C, 2>,
    out: &DistArray<T, C, 2>,
) -> Result<()> {
    let (ca, cb) = (a.comm(), out.comm());
    if ca.size() != cb.size() || ca.rank() != cb.rank() {
        return Err(Error::InvalidArgument(format!(
            "{operation}: the arrays live on different communicators (rank {} of {} and rank {} \
             of {})",
            ca.rank(),
            ca.size(),
            cb.rank(),
            cb.size()
        )));
    }
    let [n0, n1] = a.shape();
    if out.shape() != [n1, n0] {
        return Err(Error::OperandShape {
            operation,
            operand: "out",
            expected: vec![n1, n0],
            found: out.shape().to_vec(),
            rule: "the output of a transpose has the source's shape reversed".into(),
        });
    }
    Ok(())
}

/// Collective, one vote ([`agree_fingerprints`]): every rank's `local`
/// result (its checks of the pair, and what it prepared from them) and the
/// agreement that every rank called the same `operation` on arrays of one
/// element type with the same partitions — which decide the path (a plan
/// or, block-cyclic, the general permutation) and the plan's messages.
/// Also the barrier after which `a` is complete everywhere. Errors on
/// every rank: a rank's own error ([`Error::PeerFailed`] on the others),
/// or [`Error::InvalidArgument`] if the calls differ between ranks.
fn agree_pair<T: Element, C: OneSidedComm, V>(
    operation: &'static str,
    a: &DistArray<T, C, 2>,
    out: &DistArray<T, C, 2>,
    local: Result<V>,
) -> Result<V> {
    let key = fingerprint(&(operation, T::KIND, a.partitioning(), out.partitioning()));
    agree_fingerprints(a.comm(), local.map(|v| (v, key)), || {
        Error::InvalidArgument(format!(
            "{operation}: the operation, element type or partition of the arrays differs \
             between ranks (every rank must pass arrays partitioned alike to this collective \
             call)"
        ))
    })
}

/// A [`TransposePlan`] laid out on one rank, its buffers not yet
/// allocated: the fields of the plan, and every rank's staging length
/// (empty with neighbour messages).
struct Laid {
    a_part: ContinuousPartitioning<2>,
    b_part: ContinuousPartitioning<2>,
    a_own: [Range<usize>; 2],
    b_own: [Range<usize>; 2],
    own_tile: Option<Tile>,
    sends: Vec<Tile>,
    recvs: Vec<Tile>,
    staging_len: Vec<usize>,
}

/// The tiles rank `r` sends (its part of `A` against `B`'s partition), in
/// destination rank order, its own tile included; `offset` is left 0.
fn tiles_of(
    a_part: &ContinuousPartitioning<2>,
    b_part: &ContinuousPartitioning<2>,
    r: usize,
) -> Result<Vec<Tile>> {
    let [rows, cols] = a_part.part_range(r)?;
    let mut out: Vec<Tile> = Block::new([cols, rows])
        .plan(b_part)?
        .into_iter()
        .map(|t| {
            let [c, r] = t.intersection.ranges().clone();
            Tile {
                rank: t.rank,
                rows: r,
                cols: c,
                offset: 0,
                raw: false,
            }
        })
        .collect();
    out.sort_by_key(|t| t.rank);
    Ok(out)
}

/// Whether a message's status element says its sender failed.
fn failed_status<T: Element>(status: &T) -> bool {
    bytemuck::bytes_of(status).iter().any(|&b| b != 0)
}

/// Where the kernels read `A`'s elements from: a part read as it is, or a
/// part whose elements are replaced by `g(v)` as they are read (the fused
/// update of [`TransposePlan::transpose_add_map`]), so that `A` is read
/// and written in the same pass. Indices are relative to a base (the
/// first element of the tile being read).
trait TileSource<T> {
    /// Makes `base` index 0 of the reads that follow.
    fn set_base(&mut self, base: usize);
    /// The element at `at`, mapped in place at once (the 4 x 4 kernel).
    fn read(&mut self, at: usize) -> T;
    /// The four elements from `at` on, mapped in place at once.
    fn read4(&mut self, at: usize) -> [T; 4];
    /// The element at `at`, left as it is until [`done`](Self::done) (the
    /// column kernel, whose strided stores back would be its bottleneck).
    fn peek(&mut self, at: usize) -> T;
    /// Maps a cache tile read with [`peek`](Self::peek) (`rows` x `cols`
    /// from `at`, rows `stride` apart) after its last read, row by row,
    /// while it is still in cache.
    fn done(&mut self, at: usize, rows: usize, cols: usize, stride: usize);
    /// Hints the CPU to fetch the element at `at` (which may lie outside
    /// the part: nothing is read).
    fn prefetch(&self, at: usize);
}

/// A part read as it is.
struct Plain<'a, T> {
    part: &'a [T],
    base: usize,
}

impl<T: Copy> TileSource<T> for Plain<'_, T> {
    fn set_base(&mut self, base: usize) {
        self.base = base;
    }

    #[inline(always)]
    fn read(&mut self, at: usize) -> T {
        self.part[self.base + at]
    }

    #[inline(always)]
    fn read4(&mut self, at: usize) -> [T; 4] {
        let s = &self.part[self.base + at..self.base + at + 4];
        [s[0], s[1], s[2], s[3]]
    }

    #[inline(always)]
    fn peek(&mut self, at: usize) -> T {
        self.part[self.base + at]
    }

    #[inline(always)]
    fn done(&mut self, _: usize, _: usize, _: usize, _: usize) {}

    #[inline(always)]
    fn prefetch(&self, at: usize) {
        kernels::prefetch_line(self.part.as_ptr().wrapping_add(self.base + at));
    }
}

/// A part whose elements become `g(v)` once read.
struct Mapped<'a, T, G> {
    part: &'a mut [T],
    g: &'a G,
    base: usize,
}

impl<T: Copy, G: Fn(T) -> T> TileSource<T> for Mapped<'_, T, G> {
    fn set_base(&mut self, base: usize) {
        self.base = base;
    }

    #[inline(always)]
    fn read(&mut self, at: usize) -> T {
        let d = &mut self.part[self.base + at];
        let v = *d;
        *d = (self.g)(v);
        v
    }

    #[inline(always)]
    fn read4(&mut self, at: usize) -> [T; 4] {
        let s = &mut self.part[self.base + at..self.base + at + 4];
        let v = [s[0], s[1], s[2], s[3]];
        for (d, x) in s.iter_mut().zip(v) {
            *d = (self.g)(x);
        }
        v
    }

    #[inline(always)]
    fn peek(&mut self, at: usize) -> T {
        self.part[self.base + at]
    }

    #[inline(always)]
    fn done(&mut self, at: usize, rows: usize, cols: usize, stride: usize) {
        for r in 0..rows {
            let first = self.base + at + r * stride;
            for v in &mut self.part[first..first + cols] {
                *v = (self.g)(*v);
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, at: usize) {
        kernels::prefetch_line(self.part.as_ptr().wrapping_add(self.base + at));
    }
}

/// Runs `$body` with `$src` bound to a [`TileSource`] over this rank's
/// part of `$a`: read as it is (a shared view) when `$map` is `None`,
/// mapped by the closure in `Some` (an exclusive view). The body is
/// compiled once for each kind of source.
macro_rules! with_source {
    ($a:expr, $map:expr, |$src:ident| $body:expr) => {
        match $map {
            Some(g) => $a.with_local_mut(|mut l| {
                let mut $src = Mapped {
                    part: l.as_mut_slice(),
                    g,
                    base: 0,
                };
                $body
            }),
            None => $a.with_local(|l| {
                let mut $src = Plain {
                    part: l.as_slice(),
                    base: 0,
                };
                $body
            }),
        }
    };
}

/// Tiles of at least this many bytes (source and destination together)
/// are transposed with software prefetch: their rows come from memory, or
/// from a cache the other ranks' traffic keeps evicting, and neither
/// tile-order walk is a pattern the hardware prefetchers follow. (Measured
/// here on the own tile of a 1000 x 1000 transpose on two ranks, 500 x 500
/// with the 4 x 4 kernel and the fused map: 1.8–1.9 ns per element with
/// its data evicted from the caches before each call, 0.84–0.88 with the
/// prefetch; 0.37 against 0.42 with the data in cache.)
const PREFETCH_BYTES: usize = 1 << 20;

/// Prefetches, while the tile at (`i0`, `j0`) is done, rows `i0 + off ..
/// i0 + off + m` of the next tile of `src` and columns `..` of `dst` it
/// will write: called once per group of `m` rows, it spreads the next
/// tile's fetches over the current one's work.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn prefetch_next_tile<T>(
    src: &impl TileSource<T>,
    ss: usize,
    dst: &[T],
    ds: usize,
    [rows, cols]: [usize; 2],
    [i0, j0]: [usize; 2],
    off: usize,
    m: usize,
) {
    let (ni, nj) = if j0 + TILE < cols {
        (i0, j0 + TILE)
    } else {
        (i0 + TILE, 0)
    };
    if ni >= rows {
        return;
    }
    let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    let (tr, tc) = (TILE.min(rows - ni), TILE.min(cols - nj));
    for r in ni + off..(ni + off + m).min(ni + tr) {
        for l in (0..tc).step_by(line) {
            src.prefetch(r * ss + nj + l);
        }
    }
    for c in nj + off..(nj + off + m).min(nj + tc) {
        for l in (0..tr).step_by(line) {
            kernels::prefetch_line(dst.as_ptr().wrapping_add(c * ds + ni + l));
        }
    }
}

/// `dst[j * ds + i] ∘= src[i * ss + j]` for `i < rows`, `j < cols`, `∘=`
/// being `f`, in `TILE` x `TILE` tiles (both sides stay in cache while a
/// tile is done), eight source rows at a time: for each column `j` of the
/// tile, eight reads down the column into registers, then one contiguous
/// update of eight elements of `dst`'s row `j`. (Measured on this machine,
/// packing a 2000 x 2000 tile out of a 4000 x 2000 part: 10–11 ms, as fast
/// as the C baseline's loop under gcc -O3 -march=native; 4 x 4
/// micro-tiles took 22 ms there, one element at a time 10–13 ms, and the
/// accumulating form 6–7 ms for all three and C; over a whole 4000 x
/// 4000 part the 4 x 4 form accumulates faster, 44 against 58 ms).
#[inline]
fn transpose_blocked<T: Element>(
    src: &mut impl TileSource<T>,
    ss: usize,
    dst: &mut [T],
    ds: usize,
    rows: usize,
    cols: usize,
    f: impl Fn(&mut T, T) + Copy,
) {
    const M: usize = 8;
    if rows == 0 || cols == 0 {
        return;
    }
    let prefetch = 2 * rows * cols * std::mem::size_of::<T>() >= PREFETCH_BYTES;
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(cols);
            let mut i = i0;
            while i + M <= i1 {
                if prefetch {
                    prefetch_next_tile(src, ss, dst, ds, [rows, cols], [i0, j0], i - i0, M);
                }
                for j in j0..j1 {
                    let mut v = [T::ZERO; M];
                    for (r, x) in v.iter_mut().enumerate() {
                        *x = src.peek((i + r) * ss + j);
                    }
                    let at = j * ds + i;
                    for (d, x) in dst[at..at + M].iter_mut().zip(v) {
                        f(d, x);
                    }
                }
                i += M;
            }
            for i in i..i1 {
                for j in j0..j1 {
                    f(&mut dst[j * ds + i], src.peek(i * ss + j));
                }
            }
            src.done(i0 * ss + j0, i1 - i0, j1 - j0, ss);
        }
    }
}

/// [`transpose_blocked`] for the accumulating updates, in `TILE` x `TILE`
/// tiles each walked in 4 x 4 micro-tiles: four short contiguous
/// reads of `src` rows into registers, four short contiguous updates of
/// `dst` rows. (Measured on this machine at n = 4000: 44 ms against 58 ms
/// for one element at a time down a strided column, and 41–46 ms for the
/// C baseline's loop under gcc -O3.)
#[inline]
fn transpose_blocked_4x4<T: Element>(
    src: &mut impl TileSource<T>,
    ss: usize,
    dst: &mut [T],
    ds: usize,
    rows: usize,
    cols: usize,
    f: impl Fn(&mut T, T) + Copy,
) {
    const M: usize = 4;
    if rows == 0 || cols == 0 {
        return;
    }
    let prefetch = 2 * rows * cols * std::mem::size_of::<T>() >= PREFETCH_BYTES;
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(cols);
            for i in (i0..i1).step_by(M) {
                if prefetch {
                    prefetch_next_tile(src, ss, dst, ds, [rows, cols], [i0, j0], i - i0, M);
                }
                let mi = M.min(i1 - i);
                for j in (j0..j1).step_by(M) {
                    let mj = M.min(j1 - j);
                    if mi == M && mj == M {
                        let mut blk = [[T::ZERO; M]; M];
                        for (r, b) in blk.iter_mut().enumerate() {
                            *b = src.read4((i + r) * ss + j);
                        }
                        for c in 0..M {
                            let at = (j + c) * ds + i;
                            for (d, b) in dst[at..at + M].iter_mut().zip(&blk) {
                                f(d, b[c]);
                            }
                        }
                    } else {
                        for r in 0..mi {
                            for c in 0..mj {
                                f(
                                    &mut dst[(j + c) * ds + i + r],
                                    src.read((i + r) * ss + j + c),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Calls `run` with the element update of `op` (a closure the kernels
/// inline: plain store, add, or scaled add; integers wrap).
macro_rules! with_update {
    ($op:expr, $run:expr) => {
        match $op {
            Op::Replace => $run(|d: &mut T, v: T| *d = v),
            Op::Add(alpha) if alpha == T::ONE => {
                $run(|d: &mut T, v: T| *d = T::combine(AccumulateOp::Sum, *d, v))
            }
            Op::Add(alpha) => $run(|d: &mut T, v: T| {
                *d = T::combine(
                    AccumulateOp::Sum,
                    *d,
                    T::combine(AccumulateOp::Prod, alpha, v),
                )
            }),
        }
    };
}

impl<T: Element, C: OneSidedComm> TransposePlan<T, C> {
    /// Collective: plans the transpose of `a` into `out` (shape `[n1, n0]`
    /// for `a` of shape `[n0, n1]`, any partitions of both) and allocates
    /// its buffers (and, on backends without neighbour messages, a staging
    /// window). The plan serves every pair of arrays partitioned like `a`
    /// and `out`.
    ///
    /// Errors, on every rank: `out` has the wrong shape
    /// ([`Error::OperandShape`]), the arrays are on communicators of
    /// different sizes ([`Error::InvalidArgument`]), either array is
    /// block-cyclic ([`Error::InvalidPartition`]: a plan needs one box per
    /// rank), the element type or the partition of either array differs
    /// between ranks ([`Error::InvalidArgument`]). One vote (then, without
    /// neighbour messages, the staging window's creation).
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Error, TransposePlan};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f32, _, 2>::new(comm.clone(), [3, 2])?;
    ///     let b = DistArray::<f32, _, 2>::new(comm.clone(), [3, 2])?;
    ///     // not [2, 3]: refused on every rank
    ///     let r = TransposePlan::new(&a, &b);
    ///     assert!(matches!(r, Err(Error::OperandShape { .. })));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new(a: &DistArray<T, C, 2>, out: &DistArray<T, C, 2>) -> Result<Self> {
        Self::plan("TransposePlan::new", a, out)
    }

    fn plan(
        operation: &'static str,
        a: &DistArray<T, C, 2>,
        out: &DistArray<T, C, 2>,
    ) -> Result<Self> {
        let laid = agree_pair(operation, a, out, Self::layout(operation, a, out))?;
        Self::finish(a.comm(), laid)
    }

    /// This rank's side of the plan (no communication): the checks of
    /// [`check_pair`], its tiles, and every rank's staging length on
    /// backends without messages. [`TransposePlan::finish`] allocates the
    /// buffers once the ranks agreed ([`agree_pair`]).
    fn layout(
        operation: &'static str,
        a: &DistArray<T, C, 2>,
        out: &DistArray<T, C, 2>,
    ) -> Result<Laid> {
        let comm = a.comm();
        let (me, p) = (comm.rank(), comm.size());
        let messages = comm.messages().is_some();
        let a_part = a.partitioning().clone();
        let b_part = out.partitioning().clone();
        check_pair(operation, a, out).and_then(|_| {
            let a_own = a_part.part_range(me)?;
            let b_own = b_part.part_range(me)?;
            let mut own_tile = None;
            let mut sends = Vec::new();
            let mut offset = 0;
            for mut t in tiles_of(&a_part, &b_part, me)? {
                if t.rank == me {
                    own_tile = Some(t);
                } else {
                    t.offset = offset;
                    offset += t.len();
                    sends.push(t);
                }
            }
            // my part of B, in A's indices, against A's partition
            let [brows, bcols] = b_own.clone();
            let mut recvs: Vec<Tile> = Block::new([bcols, brows])
                .plan(&a_part)?
                .into_iter()
                .filter(|t| t.rank != me)
                .map(|t| {
                    let [r, c] = t.intersection.ranges().clone();
                    Tile {
                        rank: t.rank,
                        rows: r,
                        cols: c,
                        offset: 0,
                        raw: false,
                    }
                })
                .collect();
            recvs.sort_by_key(|t| t.rank);
            // one-sided path: where each tile sits in its sender's staging
            // part, and every rank's staging length
            let mut staging_len = Vec::new();
            if !messages {
                staging_len = (0..p)
                    .map(|r| {
                        Ok(tiles_of(&a_part, &b_part, r)?
                            .iter()
                            .filter(|t| t.rank != r)
                            .map(Tile::len)
                            .sum())
                    })
                    .collect::<Result<Vec<usize>>>()?;
                for t in recvs.iter_mut() {
                    t.offset = tiles_of(&a_part, &b_part, t.rank)?
                        .iter()
                        .filter(|s| s.rank != t.rank && s.rank < me)
                        .map(Tile::len)
                        .sum();
                }
            }
            if messages {
                // whole rows of the sender's part travel from the part
                // itself, without packing
                for t in sends.iter_mut() {
                    t.raw = t.cols == a_own[1];
                }
                for t in recvs.iter_mut() {
                    t.raw = t.cols == a_part.part_range(t.rank)?[1];
                }
            }
            Ok(Laid {
                a_part,
                b_part,
                a_own,
                b_own,
                own_tile,
                sends,
                recvs,
                staging_len,
            })
        })
    }

    /// Collective on backends without messages (the staging window's
    /// creation): the plan [`TransposePlan::layout`] laid out, its buffers
    /// allocated, once every rank agreed on it ([`agree_pair`]).
    fn finish(comm: &C, laid: Laid) -> Result<Self> {
        let Laid {
            a_part,
            b_part,
            a_own,
            b_own,
            own_tile,
            sends,
            recvs,
            staging_len,
        } = laid;
        let messages = comm.messages().is_some();
        let status = usize::from(messages);
        let inbox = recvs
            .iter()
            .map(|t| vec![T::ZERO; t.len() + status])
            .collect();
        let transport = if messages {
            Transport::Messages {
                // a raw tile's message is the part's rows, then this
                // buffer's one status element
                outbox: sends
                    .iter()
                    .map(|t| vec![T::ZERO; if t.raw { 1 } else { t.len() + 1 }])
                    .collect(),
            }
        } else {
            Transport::Staging {
                staging: DistArray::with_part_sizes(comm.clone(), [staging_len])?,
            }
        };
        Ok(TransposePlan {
            a_part,
            b_part,
            a_own,
            b_own,
            own_tile,
            sends,
            recvs,
            inbox,
            transport,
        })
    }

    /// The ranks this rank sends a tile to, in rank order (itself
    /// excluded): one message (or, without messages, one `get` by that
    /// rank) each per call.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, OneSidedComm, TransposePlan};
    /// threaded::run_ok(3, |comm| {
    ///     // rank 0 owns no row of A: it sends nothing
    ///     let a = DistArray::<u16, _, 2>::with_part_sizes(comm.clone(), [vec![0, 2, 4], vec![6]])?;
    ///     let b = DistArray::<u16, _, 2>::new(comm.clone(), [6, 6])?;
    ///     let plan = TransposePlan::new(&a, &b)?;
    ///     if comm.rank() == 0 {
    ///         assert!(plan.destinations().is_empty());
    ///     }
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn destinations(&self) -> Vec<usize> {
        self.sends.iter().map(|t| t.rank).collect()
    }

    /// The ranks this rank receives a tile from, in rank order (itself
    /// excluded).
    ///
    /// ```
    /// use distarray::{threaded, DistArray, OneSidedComm, TransposePlan};
    /// threaded::run_ok(4, |comm| {
    ///     // rows -> rows on 4 ranks: every rank needs a tile of every other
    ///     let a = DistArray::<i8, _, 2>::new(comm.clone(), [8, 8])?;
    ///     let b = DistArray::<i8, _, 2>::new(comm.clone(), [8, 8])?;
    ///     let plan = TransposePlan::new(&a, &b)?;
    ///     let me = comm.rank();
    ///     assert_eq!(plan.sources(), (0..4).filter(|&r| r != me).collect::<Vec<_>>());
    ///     // rows -> columns: B's columns j are A's rows j, all local
    ///     let c = DistArray::<i8, _, 2>::with_grid(comm.clone(), [1, 4], [8, 8])?;
    ///     assert!(TransposePlan::new(&a, &c)?.sources().is_empty());
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn sources(&self) -> Vec<usize> {
        self.recvs.iter().map(|t| t.rank).collect()
    }

    /// Collective: `out = aᵀ`. `a` and `out` must be partitioned like the
    /// arrays the plan was made for ([`Error::InvalidPartition`] on every
    /// rank otherwise). With neighbour messages the call moves the tiles
    /// and nothing else (no vote): when it returns, this rank's part of
    /// `out` is complete, and so are the parts of the ranks it received a
    /// tile from; before reading other ranks' parts one-sidedly,
    /// synchronise (any collective, or [`DistArray::barrier`]). See the
    /// [module docs](self) for errors.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Error, TransposePlan};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<i32, _, 2>::from_fn(comm.clone(), [2, 2], |[i, j]| (2 * i + j) as i32)?;
    ///     let mut b = a.similar::<i32>()?;
    ///     let mut plan = TransposePlan::new(&a, &b)?;
    ///     plan.transpose(&a, &mut b)?;
    ///     b.barrier()?; // before reading other ranks' parts
    ///     assert_eq!(b.to_vec()?, vec![0, 2, 1, 3]);
    ///     // an output partitioned otherwise does not fit this plan
    ///     let mut cols = DistArray::<i32, _, 2>::with_grid(comm.clone(), [1, 2], [2, 2])?;
    ///     assert!(matches!(plan.transpose(&a, &mut cols), Err(Error::InvalidPartition(_))));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose(
        &mut self,
        a: &DistArray<T, C, 2>,
        out: &mut DistArray<T, C, 2>,
    ) -> Result<()> {
        self.run(a, out, Op::Replace, None::<&fn(T) -> T>)
    }

    /// Collective: `out = out + alpha · aᵀ` (integers wrap), partitioned
    /// as for [`TransposePlan::transpose`]. With `alpha` = 1 each element
    /// is one addition, so the result is exact wherever the sum is.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, TransposePlan};
    /// threaded::run_ok(2, |comm| {
    ///     // the PRK kernel on a 1 x 2 grid: B += Aᵀ; A += 1
    ///     let mut a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, 2], [4, 4])?;
    ///     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (4 * i + j) as f64))?;
    ///     let mut b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, 2], [4, 4])?;
    ///     let mut plan = TransposePlan::new(&a, &b)?;
    ///     for _ in 0..2 {
    ///         plan.transpose_add(&a, &mut b, 1.0)?;
    ///         a.add_scalar(1.0)?;
    ///     }
    ///     // A[1, 3] = 7, then 8
    ///     assert_eq!(b.get([3, 1])?, 15.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose_add(
        &mut self,
        a: &DistArray<T, C, 2>,
        out: &mut DistArray<T, C, 2>,
        alpha: T,
    ) -> Result<()> {
        self.run(a, out, Op::Add(alpha), None::<&fn(T) -> T>)
    }

    /// Collective: `out = out + alpha · aᵀ` and `a = f(a)`, element-wise,
    /// in one pass over `a`'s part: each element is read once, its old
    /// value goes into the transpose and `f` of it is written back (the
    /// PRK kernel's `B += Aᵀ; A += 1` without a second sweep over `A`;
    /// rows sent whole from the part, see the [module docs](self), are
    /// mapped after their messages have left).
    /// Partitions, communication and errors as for
    /// [`transpose_add`](Self::transpose_add); `a` is changed through its
    /// window's local epoch (like [`DistArray::map_local`]), so it is
    /// passed by reference. After an error the contents of `a` are
    /// unspecified too.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, TransposePlan};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 4], |[i, j]| (4 * i + j) as f64)?;
    ///     let mut b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, 2], [4, 4])?;
    ///     let mut plan = TransposePlan::new(&a, &b)?;
    ///     for _ in 0..2 {
    ///         plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0)?; // B += Aᵀ; A += 1
    ///     }
    ///     b.barrier()?; // before reading other ranks' parts
    ///     // A[1, 3] = 7, then 8
    ///     assert_eq!(b.get([3, 1])?, 15.0);
    ///     assert_eq!(a.get([1, 3])?, 9.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose_add_map(
        &mut self,
        a: &DistArray<T, C, 2>,
        out: &mut DistArray<T, C, 2>,
        alpha: T,
        f: impl Fn(T) -> T,
    ) -> Result<()> {
        self.run(a, out, Op::Add(alpha), Some(&f))
    }

    fn check(&self, a: &DistArray<T, C, 2>, out: &DistArray<T, C, 2>) -> Result<()> {
        check_pair("transpose", a, out)?;
        if a.partitioning() != &self.a_part || out.partitioning() != &self.b_part {
            return Err(Error::InvalidPartition(
                "transpose: the arrays are partitioned unlike the ones the plan was made for"
                    .into(),
            ));
        }
        Ok(())
    }

    fn run<G: Fn(T) -> T>(
        &mut self,
        a: &DistArray<T, C, 2>,
        out: &DistArray<T, C, 2>,
        op: Op<T>,
        map: Option<&G>,
    ) -> Result<()> {
        let comm = a.comm().clone();
        let checked = self.check(a, out);
        if matches!(self.transport, Transport::Staging { .. }) {
            let packed =
                checked.and_then(|_| flat(with_source!(a, map, |src| self.pack_staging(&mut src))));
            // every rank packed before anyone reads
            vote(&comm, packed)?;
            let moved = flat(with_source!(a, map, |src| {
                out.with_local_mut(|mut lb| self.own(&mut src, 0, lb.as_mut_slice(), op))
            }))
            .and_then(|_| self.fetch_staging())
            .and_then(|_| out.with_local_mut(|mut lb| self.unpack(lb.as_mut_slice(), op)));
            // nobody packs again before every rank has read
            return vote(&comm, moved);
        }
        // neighbour messages, no vote: both parts are held from before
        // the tiles are packed until they are unpacked, so nothing can
        // fail on this rank after its messages are sent; a rank that fails
        // before sends its tiles with the status element set to "failed"
        // (zero: packed), so its receivers return `PeerFailed` and nobody
        // waits forever
        let mut sent = false;
        let moved = checked.and_then(|_| {
            flat(flat(match map {
                Some(g) => a.with_local_mut(|mut la| {
                    out.with_local_mut(|mut lb| {
                        self.send_mapped(
                            &comm,
                            la.as_mut_slice(),
                            g,
                            lb.as_mut_slice(),
                            op,
                            &mut sent,
                        )
                    })
                }),
                None => a.with_local(|la| {
                    out.with_local_mut(|mut lb| {
                        self.send_plain(&comm, la.as_slice(), lb.as_mut_slice(), op, &mut sent)
                    })
                }),
            }))
        });
        if !sent {
            self.mark_failed();
            // this rank's own error is the one to report; the raw tiles'
            // messages come from stand-ins of their length
            let stand_ins: Vec<Vec<T>> = self
                .sends
                .iter()
                .map(|t| vec![T::ZERO; if t.raw { t.len() } else { 0 }])
                .collect();
            let raw: Vec<&[T]> = stand_ins.iter().map(|v| &v[..]).collect();
            let _ = self.exchange(&comm, &raw, |_| ());
        }
        moved
    }

    /// The message path with `a`'s part read as it is: packs the tiles
    /// that are not raw, sends every tile, transposes the own tile while
    /// they travel, then unpacks what came in. Sets `sent` once the
    /// messages are on their way.
    fn send_plain(
        &mut self,
        comm: &C,
        part: &[T],
        lb: &mut [T],
        op: Op<T>,
        sent: &mut bool,
    ) -> Result<()> {
        let mut src = Plain { part, base: 0 };
        self.pack_messages(&mut src);
        let raw = self.raw_rows(part);
        *sent = true;
        self.exchange(comm, &raw, |plan| plan.own(&mut src, 0, lb, op))?;
        self.check_statuses()?;
        self.unpack(lb, op);
        Ok(())
    }

    /// [`send_plain`](Self::send_plain) with `a = g(a)` in the same pass:
    /// packed tiles and the own tile are mapped as they are read; the raw
    /// tiles' rows, which the messages read from the part, after the
    /// exchange.
    fn send_mapped<G: Fn(T) -> T>(
        &mut self,
        comm: &C,
        part: &mut [T],
        g: &G,
        lb: &mut [T],
        op: Op<T>,
        sent: &mut bool,
    ) -> Result<()> {
        self.pack_messages(&mut Mapped { part, g, base: 0 });
        let acols = self.a_own[1].len();
        let a0 = self.a_own[0].start;
        // the own tile's rows, apart from the raw tiles' rows (a raw tile
        // spans whole rows of the part, so no other tile shares them)
        let own_rows = match &self.own_tile {
            Some(t) if t.len() > 0 => t.rows.start - a0..t.rows.end - a0,
            _ => 0..0,
        };
        let raw_rows: Vec<std::ops::Range<usize>> = self
            .sends
            .iter()
            .filter(|t| t.raw)
            .map(|t| t.rows.start - a0..t.rows.end - a0)
            .collect();
        {
            let (raw, own_part) = carve(part, acols, &raw_rows, own_rows.clone());
            let mut src = Mapped {
                part: own_part,
                g,
                base: 0,
            };
            let mut raw = raw.into_iter();
            let per_send: Vec<&[T]> = self
                .sends
                .iter()
                .map(|t| {
                    if t.raw {
                        raw.next().unwrap_or(&[])
                    } else {
                        &[]
                    }
                })
                .collect();
            *sent = true;
            self.exchange(comm, &per_send, |plan| {
                plan.own(&mut src, own_rows.start, lb, op)
            })?;
        }
        // the raw rows are sent: now map them (each tile's rows are one
        // contiguous run of the part)
        for r in &raw_rows {
            kernels::map_rows(part, &[r.start * acols], r.len() * acols, g);
        }
        self.check_statuses()?;
        self.unpack(lb, op);
        Ok(())
    }

    /// Each send's raw rows in `part` (empty for the tiles that are
    /// packed).
    fn raw_rows<'p>(&self, part: &'p [T]) -> Vec<&'p [T]> {
        let acols = self.a_own[1].len();
        let a0 = self.a_own[0].start;
        self.sends
            .iter()
            .map(|t| {
                if t.raw {
                    &part[(t.rows.start - a0) * acols..(t.rows.end - a0) * acols]
                } else {
                    &[]
                }
            })
            .collect()
    }

    /// Sets every outgoing message's status element to "failed".
    fn mark_failed(&mut self) {
        if let Transport::Messages { outbox } = &mut self.transport {
            for buf in outbox.iter_mut() {
                *buf.last_mut().expect("status element") = T::ONE;
            }
        }
    }

    /// Packs every outgoing tile that is not raw, transposed, into its
    /// message, and marks every message packed.
    fn pack_messages(&mut self, src: &mut impl TileSource<T>) {
        let Transport::Messages { outbox } = &mut self.transport else {
            unreachable!("message path")
        };
        for (t, buf) in self.sends.iter().zip(outbox.iter_mut()) {
            if !t.raw {
                pack_tile(src, &self.a_own, t, buf);
            }
            *buf.last_mut().expect("status element") = T::ZERO;
        }
    }

    /// Packs every outgoing tile, transposed, into this rank's staging
    /// part, one after the other.
    fn pack_staging(&mut self, src: &mut impl TileSource<T>) -> Result<()> {
        let Transport::Staging { staging } = &self.transport else {
            unreachable!("one-sided path")
        };
        if self.sends.is_empty() {
            return Ok(());
        }
        let (sends, a_own) = (&self.sends, &self.a_own);
        staging.with_local_mut(|mut st| {
            let st = st.as_mut_slice();
            for t in sends {
                pack_tile(src, a_own, t, &mut st[t.offset..t.offset + t.len()]);
            }
        })
    }

    /// One `get` per source rank, from its staging part into the inbox.
    fn fetch_staging(&mut self) -> Result<()> {
        let Transport::Staging { staging } = &self.transport else {
            unreachable!("one-sided path")
        };
        for (t, buf) in self.recvs.iter().zip(self.inbox.iter_mut()) {
            staging.with_epoch(t.rank, LockKind::Shared, |w| w.get(t.rank, t.offset, buf))?;
        }
        Ok(())
    }

    /// Sends every message (send `k`: `raw[k]`, empty for a packed tile,
    /// then its outbox buffer) and receives every incoming one, running
    /// `meanwhile` (which must not touch the message buffers nor the raw
    /// rows) while they travel; returns what it returned. If the exchange
    /// fails, the backend may not be done with the receive buffers: they are
    /// leaked and replaced, never reused or freed under it.
    fn exchange<R>(
        &mut self,
        comm: &C,
        raw: &[&[T]],
        meanwhile: impl FnOnce(&Self) -> R,
    ) -> Result<R> {
        if self.sends.is_empty() && self.recvs.is_empty() {
            // nothing to move (one rank, or partitions that keep every
            // tile local): no exchange at all
            return Ok(meanwhile(self));
        }
        let Transport::Messages { outbox } = &mut self.transport else {
            unreachable!("message path")
        };
        let pieces: Vec<[&[u8]; 2]> = raw
            .iter()
            .zip(outbox.iter())
            .map(|(rows, buf)| {
                [
                    bytemuck::cast_slice::<T, u8>(rows),
                    bytemuck::cast_slice(buf),
                ]
            })
            .collect();
        let sends: Vec<(usize, &[&[u8]])> = self
            .sends
            .iter()
            .zip(&pieces)
            .map(|(t, p)| (t.rank, &p[..]))
            .collect();
        let mut recvs: Vec<(usize, &mut [u8])> = self
            .recvs
            .iter()
            .zip(self.inbox.iter_mut())
            .map(|(t, b)| (t.rank, bytemuck::cast_slice_mut::<T, u8>(b)))
            .collect();
        // SAFETY: the buffers are the heap storage of `outbox` and `inbox`,
        // owned by this plan, which `&mut self` keeps from being touched
        // elsewhere, and the raw rows, borrowed (shared) for this whole
        // call; the pending exchange lives only in this function and is
        // waited for (or, when unwinding, dropped, which waits) before it
        // returns, and nothing writes the send buffers nor touches the
        // receive buffers meanwhile (`meanwhile` is `own`, which touches
        // the own tile's rows of `a`'s part, apart from the raw rows, and
        // `out`'s part).
        let started = crate::comm::messages_of(comm)
            .and_then(|m| unsafe { m.exchange_vectored_start(&sends, &mut recvs) });
        drop((sends, recvs));
        drop(pieces);
        let waited = started.and_then(|pending: Box<dyn Request>| {
            let r = meanwhile(self);
            pending.wait().map(|_| r)
        });
        if waited.is_err() {
            // (the raw rows of `a`'s part cannot be leaked: a send only
            // reads them, and `Request::wait` returns only once the backend
            // no longer uses any buffer; this is for backends that break
            // that promise on the receive side, where it would do harm)
            let fresh =
                |b: &mut Vec<T>| std::mem::forget(std::mem::replace(b, vec![T::ZERO; b.len()]));
            self.inbox.iter_mut().for_each(fresh);
            if let Transport::Messages { outbox } = &mut self.transport {
                outbox.iter_mut().for_each(fresh);
            }
        }
        waited
    }

    /// `PeerFailed` if a received message says its sender failed.
    fn check_statuses(&self) -> Result<()> {
        for (t, b) in self.recvs.iter().zip(self.inbox.iter()) {
            if failed_status(b.last().expect("status element")) {
                return Err(Error::PeerFailed {
                    rank: t.rank,
                    reason: "its transpose failed (its own call returned the error)".into(),
                });
            }
        }
        Ok(())
    }

    /// The tile this rank keeps: transposed from its part of `a` (`src`,
    /// whose index 0 is the start of the part's row `first_row`) straight
    /// into its part of `out` (`lb`).
    fn own(&self, src: &mut impl TileSource<T>, first_row: usize, lb: &mut [T], op: Op<T>) {
        let Some(t) = &self.own_tile else {
            return;
        };
        let (a_own, b_own) = (&self.a_own, &self.b_own);
        let (acols, bcols) = (a_own[1].len(), b_own[1].len());
        src.set_base(
            (t.rows.start - a_own[0].start - first_row) * acols + (t.cols.start - a_own[1].start),
        );
        let dst =
            &mut lb[(t.cols.start - b_own[0].start) * bcols + (t.rows.start - b_own[1].start)..];
        transpose_tile(src, acols, dst, bcols, t.rows.len(), t.cols.len(), op);
    }

    /// Copies (or adds) every received tile, row by row, into this rank's
    /// part of `out` (`lb`); raw tiles are transposed on the way.
    fn unpack(&self, lb: &mut [T], op: Op<T>) {
        let b_own = &self.b_own;
        let bcols = b_own[1].len();
        for (t, buf) in self.recvs.iter().zip(self.inbox.iter()) {
            let ni = t.rows.len();
            let col0 = t.rows.start - b_own[1].start;
            let first = (t.cols.start - b_own[0].start) * bcols + col0;
            let src = &buf[..t.len()];
            if t.raw {
                // the tile as it lay in the sender's part: transposed here
                let (rows, cols) = (t.rows.len(), t.cols.len());
                let mut src = Plain { part: src, base: 0 };
                transpose_tile(&mut src, cols, &mut lb[first..], bcols, rows, cols, op);
            } else {
                with_update!(op, |f| copy_rows(src, ni, &mut lb[first..], bcols, f));
            }
        }
    }
}

/// `dst[j * ds + i] = src[i * ss + j]` (or `+=`, `+= alpha ·`, by `op`)
/// for `i < rows`, `j < cols`: a tile transposed with the kernel each kind
/// of update ran fastest with here.
fn transpose_tile<T: Element>(
    src: &mut impl TileSource<T>,
    ss: usize,
    dst: &mut [T],
    ds: usize,
    rows: usize,
    cols: usize,
    op: Op<T>,
) {
    match op {
        Op::Replace => transpose_blocked(src, ss, dst, ds, rows, cols, |d, v| *d = v),
        _ => with_update!(op, |f| transpose_blocked_4x4(
            src, ss, dst, ds, rows, cols, f
        )),
    }
}

/// The result of a closure run inside a view, or the view's error.
fn flat<R>(r: Result<Result<R>>) -> Result<R> {
    r?
}

/// Splits `part` (rows of `width` elements) into the rows of each range of
/// `shared`, in their order, and the rows `own`, for reading the first
/// while writing the second. The ranges must not overlap one another nor
/// `own`, nor pass the part's end (panics otherwise: the plan's tiles are
/// disjoint boxes of the part).
fn carve<'p, T>(
    part: &'p mut [T],
    width: usize,
    shared: &[Range<usize>],
    own: Range<usize>,
) -> (Vec<&'p [T]>, &'p mut [T]) {
    // (start row, end row, index in `shared` or None for `own`), by start
    let mut cuts: Vec<(usize, usize, Option<usize>)> = shared
        .iter()
        .enumerate()
        .map(|(k, r)| (r.start, r.end, Some(k)))
        .chain(std::iter::once((own.start, own.end, None)))
        .collect();
    cuts.sort_unstable();
    let mut out: Vec<&[T]> = vec![&[]; shared.len()];
    let mut own_rows: &mut [T] = &mut [];
    let (mut rest, mut at) = (part, 0);
    for (start, end, k) in cuts {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut((start - at) * width);
        let (rows, tail) = tail.split_at_mut((end - start) * width);
        match k {
            Some(k) => out[k] = rows,
            None => own_rows = rows,
        }
        (rest, at) = (tail, end);
    }
    (out, own_rows)
}

/// `dst[r * ds + k] ∘= src[r * n + k]` for every row `r` of `src` (rows of
/// `n` elements), `∘=` being `f`.
#[inline]
fn copy_rows<T: Copy>(src: &[T], n: usize, dst: &mut [T], ds: usize, f: impl Fn(&mut T, T)) {
    if n == 0 {
        return;
    }
    for (r, s) in src.chunks_exact(n).enumerate() {
        for (d, &v) in dst[r * ds..r * ds + n].iter_mut().zip(s) {
            f(d, v);
        }
    }
}

/// Packs tile `t` of the part read through `src` (rows `own[0]`, columns
/// `own[1]`) transposed into the front of `buf`: row `j` of the packed
/// tile is column `j` of the tile.
fn pack_tile<T: Element>(
    src: &mut impl TileSource<T>,
    own: &[Range<usize>; 2],
    t: &Tile,
    buf: &mut [T],
) {
    let acols = own[1].len();
    if t.len() == 0 {
        return;
    }
    src.set_base((t.rows.start - own[0].start) * acols + (t.cols.start - own[1].start));
    transpose_blocked(
        src,
        acols,
        buf,
        t.rows.len(),
        t.rows.len(),
        t.cols.len(),
        |d, v| *d = v,
    );
}

impl<T: Element, C: OneSidedComm> DistArray<T, C, 2> {
    /// Collective: `out = selfᵀ`; `out` must have shape `[n1, n0]` for
    /// `self` of shape `[n0, n1]`, and may be partitioned in any way. One
    /// message per rank pair that shares data (one `get` on backends
    /// without messages); plans each call: a loop keeps a
    /// [`TransposePlan`] instead. See [`crate::transpose`]. Unlike the
    /// plan's calls it ends with a vote: when it returns, `out` is
    /// complete on every rank. Block-cyclic arrays (either side) go through
    /// [`permute_into`](DistArray::permute_into) (one `get_block` per
    /// piece, two votes).
    ///
    /// Errors, on every rank: `out` has the wrong shape
    /// ([`Error::OperandShape`]), the arrays are on communicators of
    /// different sizes ([`Error::InvalidArgument`]), the element type or
    /// the partition of either array differs between ranks, or one rank
    /// calls `transpose_into` and another
    /// [`transpose_add_into`](Self::transpose_add_into)
    /// ([`Error::InvalidArgument`]: the vote that opens the call agrees
    /// them before the path is chosen), a failure of any rank's part.
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(4, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [3, 5], |[i, j]| (10 * i + j) as f64)?;
    ///     // the output on a 2 x 2 grid, with uneven parts
    ///     let mut b = DistArray::<f64, _, 2>::with_part_sizes(comm.clone(), [vec![4, 1], vec![1, 2]])?;
    ///     a.transpose_into(&mut b)?;
    ///     assert_eq!(b.get([4, 2])?, 24.0);
    ///     // a wrong shape is an error on every rank
    ///     let mut c = a.similar::<f64>()?;
    ///     assert!(a.transpose_into(&mut c).is_err());
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose_into(&self, out: &mut DistArray<T, C, 2>) -> Result<()> {
        let Some(laid) = self.agree_transpose("transpose_into", out)? else {
            // no message plan for block-cyclic layouts: the general
            // permutation (one get_block per piece), checked and agreed
            return self.permute_agreed(out, [1, 0]);
        };
        let done = TransposePlan::finish(self.comm(), laid)?.transpose(self, out);
        // one-shot: complete (and an error) on every rank
        vote(self.comm(), done)
    }

    /// Collective, one vote ([`agree_pair`], also the barrier after which
    /// `self` is complete everywhere): the checks of `self` and `out` for
    /// a one-shot transpose, and on every rank the same path — `None` for
    /// the block-cyclic one (either array), else this rank's plan laid
    /// out. The path follows from the partitions, which the vote agrees
    /// before anyone takes it.
    fn agree_transpose(
        &self,
        operation: &'static str,
        out: &DistArray<T, C, 2>,
    ) -> Result<Option<Laid>> {
        let local = if self.partitioning().is_block_cyclic() || out.partitioning().is_block_cyclic()
        {
            check_pair(operation, self, out).map(|()| None)
        } else {
            TransposePlan::layout(operation, self, out).map(Some)
        };
        agree_pair(operation, self, out, local)
    }

    /// Collective: `out = out + alpha · selfᵀ` (integers wrap); the shapes,
    /// partitions, communication and errors of
    /// [`transpose_into`](Self::transpose_into).
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<i32, _, 2>::from_fn(comm.clone(), [2, 3], |[i, j]| (3 * i + j) as i32)?;
    ///     let mut b = DistArray::<i32, _, 2>::from_fn(comm.clone(), [3, 2], |_| 100)?;
    ///     a.transpose_add_into(&mut b, 2)?;
    ///     assert_eq!(b.get([2, 1])?, 100 + 2 * 5);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose_add_into(&self, out: &mut DistArray<T, C, 2>, alpha: T) -> Result<()> {
        let Some(laid) = self.agree_transpose("transpose_add_into", out)? else {
            // through a temporary partitioned like `out`
            let mut t = out.similar::<T>()?;
            self.permute_agreed(&mut t, [1, 0])?;
            let sum = |o: T, v: T| {
                T::combine(
                    AccumulateOp::Sum,
                    o,
                    T::combine(AccumulateOp::Prod, alpha, v),
                )
            };
            return out.update_with(&t, sum);
        };
        let done = TransposePlan::finish(self.comm(), laid)?.transpose_add(self, out, alpha);
        vote(self.comm(), done)
    }

    /// Collective: `selfᵀ` as a new array, split over its first dimension
    /// (the default partition), with this array's
    /// [`Summation`](crate::Summation) mode.
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(3, |comm| {
    ///     let a = DistArray::<u8, _, 2>::from_fn(comm, [2, 4], |[i, j]| (4 * i + j) as u8)?;
    ///     let t = a.transpose()?;
    ///     assert_eq!(t.shape(), [4, 2]);
    ///     assert_eq!(t.to_vec()?, vec![0, 4, 1, 5, 2, 6, 3, 7]);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn transpose(&self) -> Result<Self> {
        let [n0, n1] = self.shape();
        let mut out =
            DistArray::new(self.comm().clone(), [n1, n0])?.with_summation(self.summation());
        self.transpose_into(&mut out)?;
        Ok(out)
    }
}
