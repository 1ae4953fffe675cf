//! [`MatvecPlan`]: reusable, bitwise-reproducible matvec plans (re-exported
//! as `linalg::MatvecPlan`).

use std::ops::Range;

use crate::array::DistArray;
use crate::collective::{agree_fingerprints, allreduce_slice_vote, allreduce_vote, fingerprint};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm, WindowOf};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::linalg::{gemv_local, gemv_transpose_local};
use crate::overlap::OpenReads;
use crate::partition::ContinuousPartitioning;

/// How a [`MatvecPlan`] combines the ranks' partial results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Every rank's result lands in its own part of `y`: nothing to combine.
    Direct,
    /// Contributors put their partial sums into per-contributor slots of
    /// the owners' staging windows; owners add the slots in rank order
    /// (O(owners reached) messages per rank, O(rows) data).
    Staging,
    /// Every rank contributes to all of a short `y` (`A` split by columns
    /// only, `y` at most [`TREE_BYTES`] bytes — or any length on backends
    /// without neighbour messages — more than 2 ranks): one allreduce of
    /// the partial vectors carrying the vote (O(log P) messages per rank,
    /// fixed tree order), each rank keeps its part.
    Tree,
    /// Every rank contributes to all of a longer `y` (`A` split by columns
    /// only, more than 2 ranks, a backend with neighbour messages): a
    /// reduce-scatter by recursive halving
    /// ([`reduce_scatter_halving`](crate::collective::reduce_scatter_halving)):
    /// ⌈log2 P⌉ exchanges, O(log P) messages and O(rows) data per rank,
    /// fixed pairing order.
    Halving,
}

/// Largest `y` (in bytes) a [`Reduction::Tree`] plan combines with one
/// allreduce (one message slot of the Lamellar backend, less the vote).
pub const TREE_BYTES: usize = 4096 - 8;

/// A piece of `x` to fetch: `len` elements at `offset` of `owner`'s part
/// into `xs[at..]`.
#[derive(Debug, Clone)]
struct Fetch {
    owner: usize,
    offset: usize,
    len: usize,
    at: usize,
}

/// A piece of this rank's partial result for another owner: `part[src]`
/// goes to `offset` of `owner`'s staging part.
#[derive(Debug, Clone)]
struct Send {
    owner: usize,
    offset: usize,
    src: Range<usize>,
}

/// One contribution to this rank's part of `y`, in rank order: `len`
/// values for `y_local[at..]`, from this rank's own partial sums
/// (`part[from..]`) or from `staging[from..]`.
#[derive(Debug, Clone)]
struct Slot {
    own: bool,
    from: usize,
    at: usize,
    len: usize,
}

/// A reusable plan for `y = A x` (or `y = Aᵀ x`) with fixed
/// partitions of `A`, `x` and `y` — made once, applied many times with no
/// re-planning and no allocation of its buffers per call — whose reduction
/// of partial sums is **bitwise reproducible** run to run. It is not
/// independent of the rank count when a row's terms (a column's, for the
/// transpose) are split over several ranks: each contributor's partial sum
/// rounds its own group of terms, and the groups follow the partition
/// (exact partial sums would need an integer accumulator per element of
/// `y`, ~280 bytes each, on the wire). With `A` split by rows only
/// (`matvec`), every `y[i]` is one kernel call over the whole row and the
/// bits are the same on any number of ranks.
///
/// # How a product runs
///
/// 1. One collective vote (which also acts as the barrier after which `x` is
///    complete everywhere) checks the operands against the plan.
/// 2. Each rank fetches the slice of `x` its block of `A` needs: one `get`
///    per rank owning a piece of it (its neighbours in `x`), all in flight
///    together on MPI, a local copy for its own piece, and multiplies it
///    with its block.
/// 3. If every rank's result lands in its own part of `y` (row split of
///    `A` matching `y`'s partition: the *direct* case) it is written there
///    and the product is done (2 collectives in all).
/// 4. Otherwise (a column split: several ranks contribute to one element)
///    each contributor **puts** its partial sums into its own slot of the
///    owner's *staging* window — one message per owner of its rows, never
///    an accumulate — and after a second vote each owner adds the slots in
///    **rank order**: the same bits run after run, whatever the arrival
///    order (3 collectives in all, O(neighbours) messages per rank).
///
/// 5. A pure column split with a short `y` ([`TREE_BYTES`], more than 2
///    ranks) skips the staging: one allreduce of the partial vectors
///    (carrying the vote) combines them in the fixed tree order, O(log P)
///    messages per rank instead of P − 1 puts ([`Reduction::Tree`]).
/// 6. A pure column split with a longer `y`, on a backend with neighbour
///    messages (MPI, threaded, Lamellar), combines the partial vectors by a
///    reduce-scatter by recursive halving: ⌈log2 P⌉ neighbour exchanges,
///    O(log P) messages and O(rows) data per rank, in a pairing order
///    fixed by P ([`Reduction::Halving`]); elsewhere by the
///    allreduce of step 5, whatever its length.
///
/// [`MatvecPlan::apply_dot`] also returns `x · y` with the final vote
/// carried in the dot product's allreduce: a CG iteration (product,
/// `p · Ap`, `r · r`) then costs 3 collectives with a row split of `A`.
///
/// ```
/// use distarray::{linalg::MatvecPlan, threaded, DistArray};
/// threaded::run(3, |comm| -> distarray::Result<()> {
///     // A (4 x 6) split by columns: every rank contributes to every row
///     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, 3], [4, 6])?;
///     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + j) as f64 * 0.1))?;
///     let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [6], |[j]| 1.0 / (j + 1) as f64)?;
///     let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [4])?;
///     let mut plan = MatvecPlan::new(&a, &x, &y)?;
///     plan.apply(&a, &x, &mut y)?;
///     let first = y.to_vec()?;
///     for _ in 0..5 {
///         plan.apply(&a, &x, &mut y)?;
///         // bitwise identical every time
///         assert!(y.to_vec()?.iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits()));
///     }
///     Ok(())
/// })
/// .unwrap()
/// .into_iter()
/// .collect::<distarray::Result<Vec<_>>>()
/// .unwrap();
/// ```
pub struct MatvecPlan<T: Element, C: OneSidedComm> {
    comm: C,
    transpose: bool,
    a_part: ContinuousPartitioning<2>,
    x_part: ContinuousPartitioning<1>,
    y_part: ContinuousPartitioning<1>,
    /// This rank's block of `A`.
    rows: usize,
    cols: usize,
    /// The range of `y` this rank's block produces (rows, or columns for
    /// the transpose) and its overlap with this rank's part of `y`.
    out: Range<usize>,
    fetch: Vec<Fetch>,
    sends: Vec<Send>,
    slots: Vec<Slot>,
    /// How the partial results are combined.
    reduction: Reduction,
    /// `true` when every rank's result lands in its own part of `y` only.
    direct: bool,
    staging: Option<WindowOf<C, T>>,
    /// Where each rank's part of `y` starts (and its end), for
    /// [`Reduction::Halving`], and that reduction's buffers.
    bounds: Vec<usize>,
    halving: crate::collective::HalvingScratch<T>,
    xs: Vec<T>,
    part: Vec<T>,
}

fn overlap(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    a.start.max(b.start)..a.end.min(b.end).max(a.start.max(b.start))
}

/// `Err(OperandShape)` naming `operand` unless its length is `expected`.
pub(crate) fn check_operand(
    operation: &'static str,
    operand: &'static str,
    expected: usize,
    found: usize,
    rule: impl FnOnce() -> String,
) -> Result<()> {
    if expected != found {
        return Err(Error::OperandShape {
            operation,
            operand,
            expected: vec![expected],
            found: vec![found],
            rule: rule().into(),
        });
    }
    Ok(())
}

/// The name of the product, for errors.
fn operation(transpose: bool) -> &'static str {
    if transpose {
        "matvec_transpose"
    } else {
        "matvec"
    }
}

/// This rank's checks of the operands of `y = A x` (`y = Aᵀ x` with
/// `transpose`): the lengths of `x` and `y` against `A`'s shape
/// ([`Error::OperandShape`]).
pub(crate) fn check_operands<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &DistArray<T, C, 1>,
    transpose: bool,
) -> Result<()> {
    let [m, n] = a.shape();
    let (n_in, n_out) = if transpose { (m, n) } else { (n, m) };
    let (along_x, along_y) = if transpose {
        ("row", "column")
    } else {
        ("column", "row")
    };
    let op = operation(transpose);
    check_operand(op, "x", n_in, x.len(), || {
        format!("x needs one element per {along_x} of a, which is {m} x {n}")
    })?;
    check_operand(op, "y", n_out, y.len(), || {
        format!("y needs one element per {along_y} of a, which is {m} x {n}")
    })
}

/// Collective, one vote ([`agree_fingerprints`]): every rank's `local`
/// result (its [`check_operands`], and whatever it prepared from them) and
/// the agreement that every rank asked for the same product (`transpose`)
/// of arrays of one element type with the same partitions. The path a
/// product takes (block-cyclic or a plan, and the plan's collectives)
/// follows from these, so after this vote every rank takes the same one.
/// Also the barrier after which `x` is complete everywhere. Errors on
/// every rank: a rank's own error ([`Error::PeerFailed`] on the others),
/// or [`Error::InvalidArgument`] if the products or partitions differ
/// between ranks.
pub(crate) fn agree_operands<T: Element, C: OneSidedComm, V>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &DistArray<T, C, 1>,
    transpose: bool,
    local: Result<V>,
) -> Result<V> {
    let op = operation(transpose);
    let key = fingerprint(&(
        op,
        T::KIND,
        a.partitioning(),
        x.partitioning(),
        y.partitioning(),
    ));
    agree_fingerprints(a.comm(), local.map(|v| (v, key)), || {
        Error::InvalidArgument(format!(
            "{op}: the operation, element type or partition of a, x or y differs between ranks \
             (every rank must pass arrays partitioned alike to this collective call)"
        ))
    })
}

/// A [`MatvecPlan`] laid out on this rank ([`MatvecPlan::layout`]), its
/// staging window not yet created: every rank's staging length if it
/// needs one.
pub(crate) struct Laid<T: Element, C: OneSidedComm> {
    plan: MatvecPlan<T, C>,
    staging_lens: Option<Vec<usize>>,
}

impl<T: Element, C: OneSidedComm> MatvecPlan<T, C> {
    /// Collective: a plan for `y = A x` with the partitions of `a`, `x` and
    /// `y` (`A` is `m x n`, `x` has `n` elements, `y` `m`). Creates the
    /// staging window when `A` is split by columns. One vote (then the
    /// staging window's creation, if any).
    ///
    /// Errors, on every rank (the failing rank's own error,
    /// [`Error::PeerFailed`] on the others): wrong lengths
    /// ([`Error::OperandShape`]); a block-cyclic operand
    /// ([`Error::InvalidPartition`]: a plan needs one box per rank,
    /// [`matvec`](crate::linalg::matvec) takes any partition); the element
    /// type or the partition of `a`, `x` or `y`, or the product asked for,
    /// differing between ranks ([`Error::InvalidArgument`]).
    pub fn new(
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &DistArray<T, C, 1>,
    ) -> Result<Self> {
        Self::build(a, x, y, false)
    }

    /// Collective: a plan for `y = Aᵀ x` (`x` has `m` elements, `y` `n`);
    /// communication and errors as for [`MatvecPlan::new`].
    pub fn new_transpose(
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &DistArray<T, C, 1>,
    ) -> Result<Self> {
        Self::build(a, x, y, true)
    }

    fn build(
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &DistArray<T, C, 1>,
        transpose: bool,
    ) -> Result<Self> {
        let local =
            check_operands(a, x, y, transpose).and_then(|()| Self::layout(a, x, y, transpose));
        // before the staging window: a rank whose operands fail, or differ
        // from the others', must not leave them in that collective alone
        Self::finish(agree_operands(a, x, y, transpose, local)?)
    }

    /// This rank's side of a plan for operands whose lengths
    /// [`check_operands`] passed (no communication), and every rank's
    /// staging length if the plan needs a staging window
    /// ([`MatvecPlan::finish`] creates it once the ranks agreed).
    pub(crate) fn layout(
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &DistArray<T, C, 1>,
        transpose: bool,
    ) -> Result<Laid<T, C>> {
        let [m, n] = a.shape();
        let n_out = if transpose { n } else { m };
        let comm = a.comm().clone();
        let (me, p) = (comm.rank(), comm.size());
        let (a_part, x_part, y_part) = (
            a.partitioning().clone(),
            x.partitioning().clone(),
            y.partitioning().clone(),
        );
        // (input range, output range) of a rank's block
        let io = |r: usize| -> Result<(Range<usize>, Range<usize>)> {
            let [rows, cols] = a_part.part_range(r)?;
            Ok(if transpose {
                (rows, cols)
            } else {
                (cols, rows)
            })
        };
        let y_range = |r: usize| -> Result<Range<usize>> { Ok(y_part.part_range(r)?[0].clone()) };
        let (input, out) = io(me)?;
        let [rows, cols] = a_part.part_shape(me)?;

        let mut fetch = Vec::new();
        for o in 0..p {
            let xr = x_part.part_range(o)?[0].clone();
            let ov = overlap(&input, &xr);
            if !ov.is_empty() {
                fetch.push(Fetch {
                    owner: o,
                    offset: ov.start - xr.start,
                    len: ov.len(),
                    at: ov.start - input.start,
                });
            }
        }

        // Contributor c reaches owner o when its block has inputs and its
        // output range meets o's part of y.
        let reaches = |c: usize, o: usize| -> Result<Range<usize>> {
            let (i, out) = io(c)?;
            Ok(if i.is_empty() {
                0..0
            } else {
                overlap(&out, &y_range(o)?)
            })
        };
        // direct: every contributor's output lies in its own part of y
        let mut direct = true;
        for c in 0..p {
            let (i, o) = io(c)?;
            let yr = y_range(c)?;
            if !i.is_empty() && !o.is_empty() && (o.start < yr.start || o.end > yr.end) {
                direct = false;
                break;
            }
        }

        // the short, pure column split: one allreduce instead of staging
        let out_dim = usize::from(transpose);
        // the pure column split: every rank contributes to all of y; a
        // short y, or any y where the backend has no neighbour messages for
        // the halving, takes one allreduce (O(log P) rounds)
        let pure_column_split = !direct && a_part.grid()[out_dim] == 1 && p > 2;
        let tree = pure_column_split
            && (n_out * std::mem::size_of::<T>() <= TREE_BYTES || comm.messages().is_none());
        let reduction = if direct {
            Reduction::Direct
        } else if tree {
            Reduction::Tree
        } else if pure_column_split && comm.messages().is_some() {
            Reduction::Halving
        } else {
            Reduction::Staging
        };
        let mut sends = Vec::new();
        let mut slots = Vec::new();
        let mut staging_len = 0;
        if reduction == Reduction::Staging {
            // where this rank's pieces go: its slot in each owner's staging,
            // after the slots of lower-ranked contributors
            for o in 0..p {
                let mine = reaches(me, o)?;
                if mine.is_empty() || o == me {
                    continue;
                }
                let mut offset = 0;
                for c in (0..me).filter(|&c| c != o) {
                    offset += reaches(c, o)?.len();
                }
                sends.push(Send {
                    owner: o,
                    offset,
                    src: mine.start - out.start..mine.end - out.start,
                });
            }
            // what this rank adds up, in rank order
            let yr = y_range(me)?;
            for c in 0..p {
                let piece = reaches(c, me)?;
                if piece.is_empty() {
                    continue;
                }
                if c == me {
                    slots.push(Slot {
                        own: true,
                        from: piece.start - out.start,
                        at: piece.start - yr.start,
                        len: piece.len(),
                    });
                } else {
                    slots.push(Slot {
                        own: false,
                        from: staging_len,
                        at: piece.start - yr.start,
                        len: piece.len(),
                    });
                    staging_len += piece.len();
                }
            }
        }
        let bounds = if reduction == Reduction::Halving {
            let mut b = (0..p)
                .map(|r| Ok(y_range(r)?.start))
                .collect::<Result<Vec<usize>>>()?;
            b.push(n_out);
            b
        } else {
            Vec::new()
        };
        let staging_lens = if reduction != Reduction::Staging {
            None
        } else {
            // Every rank's staging length, without a gather: the output
            // blocks of A cover y, and each is produced by the `k` ranks of
            // its grid slab whose input block is not empty; an owner stages
            // all but its own contribution.
            let in_dim = usize::from(!transpose);
            let k = a_part.part_sizes(in_dim).iter().filter(|&&s| s > 0).count();
            let lens = (0..p)
                .map(|o| {
                    let (i, out) = io(o)?;
                    let yr = y_range(o)?;
                    let own = if i.is_empty() {
                        0
                    } else {
                        overlap(&out, &yr).len()
                    };
                    Ok(k * yr.len() - own)
                })
                .collect::<Result<Vec<usize>>>()?;
            debug_assert_eq!(lens[me], staging_len, "staging layout");
            Some(lens)
        };
        let plan = MatvecPlan {
            comm,
            transpose,
            a_part,
            x_part,
            y_part,
            rows,
            cols,
            out,
            fetch,
            sends,
            slots,
            reduction,
            direct,
            staging: None,
            bounds,
            halving: Default::default(),
            xs: vec![T::ZERO; input.len()],
            part: vec![
                T::ZERO;
                if direct {
                    0
                } else {
                    if transpose {
                        cols
                    } else {
                        rows
                    }
                }
            ],
        };
        Ok(Laid { plan, staging_lens })
    }

    /// Collective if the plan needs a staging window (its creation):
    /// the plan [`MatvecPlan::layout`] laid out, once every rank agreed
    /// on the operands ([`agree_operands`]).
    pub(crate) fn finish(laid: Laid<T, C>) -> Result<Self> {
        let Laid {
            mut plan,
            staging_lens,
        } = laid;
        if let Some(lens) = staging_lens {
            plan.staging = Some(plan.comm.create_window_with_lens::<T>(&lens)?);
        }
        Ok(plan)
    }

    /// `true` if the plan needs no staging (every rank's result lands in
    /// its own part of `y`).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// How this plan combines the partial results.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// Messages this rank sends per product: gets of `x` from other ranks
    /// plus puts into other ranks' staging slots.
    pub fn messages_per_apply(&self) -> usize {
        let me = self.comm.rank();
        self.fetch.iter().filter(|f| f.owner != me).count() + self.sends.len()
    }

    fn check(
        &self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &DistArray<T, C, 1>,
    ) -> Result<()> {
        if a.partitioning() != &self.a_part
            || x.partitioning() != &self.x_part
            || y.partitioning() != &self.y_part
        {
            return Err(Error::InvalidPartition(
                "MatvecPlan applied to arrays partitioned differently from those it was made for"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Collective: `y = A x` (or `Aᵀ x` for a transpose plan). `x` must be
    /// complete (its writers' epochs closed); the vote at the start is the
    /// barrier that orders them. 2 collectives in the direct case, 3 with
    /// staging.
    pub fn apply(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
    ) -> Result<()> {
        let done = self.product(a, x, y, false);
        vote(&self.comm, done)
    }

    /// Collective: `y = A x` as [`MatvecPlan::apply`], and returns `x · y`
    /// (`x` and `y` partitioned alike), whose allreduce also carries the
    /// final vote: one collective fewer than `apply` followed by
    /// [`dot`](crate::linalg::dot).
    pub fn apply_dot(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
    ) -> Result<T> {
        let same = if x.partitioning() == y.partitioning() {
            Ok(())
        } else {
            Err(Error::InvalidPartition(
                "apply_dot needs x and y partitioned alike".into(),
            ))
        };
        let local = self.product(a, x, y, same.is_err()).and_then(|_| {
            same?;
            let add = |s: T, v: T| T::combine(AccumulateOp::Sum, s, v);
            x.with_local(|lx| {
                y.with_local(|ly| {
                    lx.as_slice()
                        .iter()
                        .zip(ly.as_slice())
                        .fold(T::ZERO, |s, (&a, &b)| add(s, a * b))
                })
            })?
        });
        allreduce_vote(&self.comm, local, |a, b| {
            T::combine(AccumulateOp::Sum, a, b)
        })
    }

    /// The product up to (not including) the final vote.
    fn product(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
        fail: bool,
    ) -> Result<()> {
        let checked = self.check(a, x, y).and_then(|_| {
            if fail {
                Err(Error::InvalidPartition(
                    "x and y partitioned differently".into(),
                ))
            } else {
                Ok(())
            }
        });
        // x is complete everywhere, nobody reads y or the staging any more
        vote(&self.comm, checked)?;
        self.product_voted(a, x, y)
    }

    /// [`MatvecPlan::apply`] of a plan just made for these very arrays,
    /// after the vote that agreed them ([`agree_operands`], which also
    /// stands for the vote at the start of `apply`).
    pub(crate) fn apply_agreed(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
    ) -> Result<()> {
        let done = self.product_voted(a, x, y);
        vote(&self.comm, done)
    }

    /// The product after the vote at its start, up to (not including) the
    /// final vote.
    fn product_voted(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
    ) -> Result<()> {
        let computed = self.fetch_and_multiply(a, x, y);
        if self.direct {
            return computed;
        }
        if self.reduction == Reduction::Halving {
            // every rank takes part in every exchange, also after a local
            // failure (its partial sums are then void: the vote says so)
            let summed = crate::collective::reduce_scatter_halving_with(
                &self.comm,
                &mut self.part,
                &self.bounds,
                |a, b| T::combine(AccumulateOp::Sum, a, b),
                &mut self.halving,
            );
            vote(&self.comm, computed.and(summed))?;
            let yr = self.y_part.part_range(self.comm.rank())?[0].clone();
            let part = &self.part;
            return y.with_local_mut(|mut ly| ly.as_mut_slice().copy_from_slice(&part[yr]));
        }
        if self.reduction == Reduction::Tree {
            // the partial vectors summed in tree order, with the vote
            allreduce_slice_vote(&self.comm, computed, &mut self.part, |a, b| {
                T::combine(AccumulateOp::Sum, a, b)
            })?;
            let yr = self.y_part.part_range(self.comm.rank())?[0].clone();
            let part = &self.part;
            return y.with_local_mut(|mut ly| ly.as_mut_slice().copy_from_slice(&part[yr]));
        }
        // every partial sum is in its owner's staging
        vote(&self.comm, computed)?;
        self.add_slots(y)
    }

    fn fetch_and_multiply(
        &mut self,
        a: &DistArray<T, C, 2>,
        x: &DistArray<T, C, 1>,
        y: &mut DistArray<T, C, 1>,
    ) -> Result<()> {
        let me = self.comm.rank();
        {
            // all remote pieces of x in flight together (MPI), then
            // completion; pieces are in increasing `at` order, so in
            // increasing owner order (x is 1-D), and the own piece is copied
            // at its turn: locks in rank order, as every multi-target
            // operation takes them (no lock cycle, see crate::pending)
            let mut open = OpenReads::new(x.window());
            let mut rest: &mut [T] = &mut self.xs;
            let mut done = 0;
            for f in &self.fetch {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(f.at - done);
                let (dst, tail) = tail.split_at_mut(f.len);
                rest = tail;
                done = f.at + f.len;
                if f.owner == me {
                    x.with_local(|l| {
                        dst.copy_from_slice(&l.as_slice()[f.offset..f.offset + f.len])
                    })?;
                } else {
                    open.read(f.owner, &[(f.offset, f.len)], dst)?;
                }
            }
            open.close()?;
        }
        let (rows, cols, transpose) = (self.rows, self.cols, self.transpose);
        let xs = &self.xs;
        let kernel = |la: &[T], out: &mut [T]| {
            if transpose {
                gemv_transpose_local(la, rows, cols, xs, out)
            } else {
                gemv_local(la, rows, cols, xs, out)
            }
        };
        if self.direct {
            let yr = self.y_part.part_range(me)?[0].clone();
            let out = self.out.clone();
            let has_input = !xs.is_empty();
            return a.with_local(|la| {
                y.with_local_mut(|mut ly| {
                    let ly = ly.as_mut_slice();
                    if has_input && out == yr {
                        kernel(la.as_slice(), ly);
                    } else {
                        // parts of y no block reaches are zero
                        ly.fill(T::ZERO);
                        if has_input && !out.is_empty() {
                            let mut tmp = vec![T::ZERO; out.len()];
                            kernel(la.as_slice(), &mut tmp);
                            let ov = overlap(&out, &yr);
                            ly[ov.start - yr.start..ov.end - yr.start]
                                .copy_from_slice(&tmp[ov.start - out.start..ov.end - out.start]);
                        }
                    }
                })
            })?;
        }
        let part = &mut self.part;
        a.with_local(|la| kernel(la.as_slice(), part))?;
        if self.reduction != Reduction::Staging {
            // the partial vectors are combined by a collective
            return Ok(());
        }
        let staging = self.staging.as_ref().expect("staging plan");
        for s in &self.sends {
            staging.put_locked(
                s.owner,
                LockKind::Exclusive,
                s.offset,
                &self.part[s.src.clone()],
            )?;
        }
        Ok(())
    }

    /// Adds this rank's own partial sums and its staging slots into its
    /// part of `y`, in rank order.
    fn add_slots(&self, y: &mut DistArray<T, C, 1>) -> Result<()> {
        let me = self.comm.rank();
        let staging = self.staging.as_ref().expect("staging plan");
        staging.lock(me, LockKind::Shared)?;
        let summed = staging.with_local(|st| {
            y.with_local_mut(|mut ly| {
                let ly = ly.as_mut_slice();
                ly.fill(T::ZERO);
                for s in &self.slots {
                    let src = if s.own {
                        &self.part[s.from..s.from + s.len]
                    } else {
                        &st[s.from..s.from + s.len]
                    };
                    for (d, &v) in ly[s.at..s.at + s.len].iter_mut().zip(src) {
                        *d = T::combine(AccumulateOp::Sum, *d, v);
                    }
                }
            })
        });
        let unlocked = staging.unlock(me);
        summed.and_then(|r| r).and(unlocked)
    }
}

impl<T: Element, C: OneSidedComm> std::fmt::Debug for MatvecPlan<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatvecPlan")
            .field("transpose", &self.transpose)
            .field("reduction", &self.reduction)
            .field("fetches", &self.fetch.len())
            .field("sends", &self.sends.len())
            .field("slots", &self.slots.len())
            .finish()
    }
}
