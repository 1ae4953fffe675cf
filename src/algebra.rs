//! Whole-array algebra: element-wise maps and zips of arrays into a target
//! array, scalar forms, and copies between arrays.
//!
//! Every operation here is **collective** (every rank calls it, in the
//! same order) and ends with a success vote, so an error on one rank is an
//! error on every rank and the results are visible to every rank when it
//! returns (like [`DistArray::fill`]). Like `fill`, it starts writing its
//! target at once: one-sided reads of the target that other ranks issued
//! before the call must be complete, so put a [`DistArray::barrier`] between
//! reading remote elements of an array and overwriting it collectively. The target is `&mut`, so it can never
//! alias a source; sources may be the same array several times.
//!
//! The element-wise operations need every operand **partitioned alike**
//! (same shape and same part boundaries): each rank then works on its own
//! parts only, without communication and without temporaries. To combine
//! arrays partitioned differently, bring one to the other's partition
//! first with [`DistArray::copy_from`] (any partition to any partition,
//! through the plan [`DistArray::redistribute`] uses) or `redistribute`.
//!
//! ```
//! use distarray::{threaded, DistArray};
//! let z = threaded::run_ok(3, |comm| {
//!     let x = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 5], |[i, j]| (i + j) as f64)?;
//!     let y = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 5], |[i, _]| i as f64)?;
//!     let mut z = x.similar::<f64>()?;
//!     z.zip_with(&x, &y, |a, b| a * b + 2.0)?; // z = x .* y .+ 2
//!     z.axpy(-1.0, &y)?; // z -= y
//!     z.to_vec()
//! })
//! .unwrap();
//! assert_eq!(z[0][5 + 3], (1.0 + 3.0) * 1.0 + 2.0 - 1.0); // element [1, 3]
//! ```

use crate::array::DistArray;
use crate::block::{scatter_box, Block};
use crate::collective::{agree_fingerprints, fingerprint};
use crate::comm::{Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};

/// `Err(OperandShape)` naming `operand` unless it has the target's shape.
fn check_shape<T: Element, S: Element, C: OneSidedComm, const N: usize>(
    operation: &'static str,
    target: &DistArray<T, C, N>,
    operand: &'static str,
    src: &DistArray<S, C, N>,
) -> Result<()> {
    if target.shape() != src.shape() {
        return Err(Error::OperandShape {
            operation,
            operand,
            expected: target.shape().to_vec(),
            found: src.shape().to_vec(),
            rule: format!("{operand} must have the target's shape").into(),
        });
    }
    Ok(())
}

/// `Err` naming `operand` unless it has the target's shape and partition.
pub(crate) fn check_alike<T: Element, S: Element, C: OneSidedComm, const N: usize>(
    operation: &'static str,
    target: &DistArray<T, C, N>,
    operand: &'static str,
    src: &DistArray<S, C, N>,
) -> Result<()> {
    check_shape(operation, target, operand, src)?;
    if target.partitioning() != src.partitioning() {
        let sizes = |p: &crate::ContinuousPartitioning<N>| -> Vec<Vec<usize>> {
            (0..N).map(|d| p.part_sizes(d)).collect()
        };
        return Err(Error::InvalidPartition(format!(
            "{operation}: operand {operand} must be partitioned like the target: its part sizes \
             are {:?}, the target's {:?} (copy_from or redistribute it first)",
            sizes(src.partitioning()),
            sizes(target.partitioning())
        )));
    }
    Ok(())
}

/// `true` if two references point to the same array object.
fn same_object<A, B>(a: &A, b: &B) -> bool {
    std::ptr::eq(a as *const A as *const u8, b as *const B as *const u8)
}

/// Runs `f` with read-only slices of the local parts of `arrays` (in
/// order), each distinct array locked once even if it appears several
/// times.
fn with_locals<S: Element, C: OneSidedComm, const N: usize, R>(
    arrays: &[&DistArray<S, C, N>],
    f: impl FnOnce(&[&[S]]) -> R,
) -> Result<R> {
    // distinct arrays, and for each position the index of its distinct array
    let mut distinct: Vec<&DistArray<S, C, N>> = Vec::new();
    let slot: Vec<usize> = arrays
        .iter()
        .map(
            |a| match distinct.iter().position(|d| same_object(*d, *a)) {
                Some(k) => k,
                None => {
                    distinct.push(a);
                    distinct.len() - 1
                }
            },
        )
        .collect();
    let mut f = Some(f);
    let mut out = None;
    lock_all(&distinct, &[], &mut |locals: &[&[S]]| {
        let per_operand: Vec<&[S]> = slot.iter().map(|&k| locals[k]).collect();
        out = Some((f.take().expect("called once"))(&per_operand));
    })?;
    Ok(out.expect("called once"))
}

/// Locks the arrays' own parts one after the other (shared) and calls `f`
/// with the slices held so far plus all of theirs once every lock is held.
fn lock_all<S: Element, C: OneSidedComm, const N: usize>(
    arrays: &[&DistArray<S, C, N>],
    held: &[&[S]],
    f: &mut dyn FnMut(&[&[S]]),
) -> Result<()> {
    match arrays.split_first() {
        None => {
            f(held);
            Ok(())
        }
        Some((first, rest)) => first.try_with_local(|l| {
            let mut inner: Vec<&[S]> = held.to_vec();
            inner.push(l.as_slice());
            lock_all(rest, &inner, f)
        }),
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: `self[i] = f(self[i], x[i])` for every element (`x`
    /// partitioned like `self`).
    pub fn update_with<A: Element>(
        &mut self,
        x: &DistArray<A, C, N>,
        f: impl Fn(T, A) -> T,
    ) -> Result<()> {
        let local = check_alike("update_with", self, "x", x).and_then(|_| {
            x.try_with_local(|lx| {
                self.with_local_mut(|mut lt| {
                    for (t, &a) in lt.as_mut_slice().iter_mut().zip(lx.as_slice()) {
                        *t = f(*t, a);
                    }
                })
            })
        });
        vote(self.comm(), local)
    }

    /// Collective: `self[i] = f(a[i])` (`a` partitioned like `self`, of any
    /// element type).
    pub fn map_from<A: Element>(
        &mut self,
        a: &DistArray<A, C, N>,
        f: impl Fn(A) -> T,
    ) -> Result<()> {
        let local = check_alike("map_from", self, "a", a).and_then(|_| {
            a.try_with_local(|la| {
                self.with_local_mut(|mut lt| {
                    for (t, &v) in lt.as_mut_slice().iter_mut().zip(la.as_slice()) {
                        *t = f(v);
                    }
                })
            })
        });
        vote(self.comm(), local)
    }

    /// Collective: `self[i] = f(a[i], b[i])` (`a` and `b` partitioned like
    /// `self`, of any element types; `a` and `b` may be the same array).
    pub fn zip_with<A: Element, B: Element>(
        &mut self,
        a: &DistArray<A, C, N>,
        b: &DistArray<B, C, N>,
        f: impl Fn(A, B) -> T,
    ) -> Result<()> {
        let local = check_alike("zip_with", self, "a", a)
            .and_then(|_| check_alike("zip_with", self, "b", b))
            .and_then(|_| {
                a.try_with_local(|la| {
                    let la = la.as_slice();
                    let run = |lb: &[B]| {
                        self.with_local_mut(|mut lt| {
                            let lt = lt.as_mut_slice();
                            for ((t, &x), &y) in lt.iter_mut().zip(la).zip(lb) {
                                *t = f(x, y);
                            }
                        })
                    };
                    if same_object(a, b) {
                        // one array twice: a second lock on it would be
                        // refused; the same object has one element type,
                        // so the cast is the identity
                        run(bytemuck::cast_slice::<A, B>(la))
                    } else {
                        b.with_local(|lb| run(lb.as_slice()))?
                    }
                })
            });
        vote(self.comm(), local)
    }

    /// Collective: `self[i] = f(&[s[i] for s in sources])`, the n-ary zip
    /// (every source partitioned like `self`; a source may appear several
    /// times). `f` gets the sources' values in order.
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(2, |comm| {
    ///     let xs: Vec<_> = (0..4)
    ///         .map(|k| DistArray::<i32, _, 1>::from_fn(comm.clone(), [6], |[i]| (k * i) as i32))
    ///         .collect::<distarray::Result<_>>()?;
    ///     let mut total = xs[0].similar::<i64>()?;
    ///     total.zip_n(&xs.iter().collect::<Vec<_>>(), |v| v.iter().map(|&x| x as i64).sum())?;
    ///     assert_eq!(total.to_vec()?, (0..6).map(|i| 6 * i).collect::<Vec<i64>>());
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn zip_n<S: Element>(
        &mut self,
        sources: &[&DistArray<S, C, N>],
        f: impl Fn(&[S]) -> T,
    ) -> Result<()> {
        let local = sources
            .iter()
            .try_for_each(|s| check_alike("zip_n", self, "sources[..]", s))
            .and_then(|_| {
                let mut args = vec![S::default(); sources.len()];
                with_locals(sources, |locals| {
                    self.with_local_mut(|mut lt| {
                        for (i, t) in lt.as_mut_slice().iter_mut().enumerate() {
                            for (arg, l) in args.iter_mut().zip(locals) {
                                *arg = l[i];
                            }
                            *t = f(&args);
                        }
                    })
                })?
            });
        vote(self.comm(), local)
    }

    /// Collective: `self = src` element-wise for `src` partitioned like
    /// `self` (a local copy on every rank, no communication). For any other
    /// partition use [`DistArray::copy_from`].
    pub fn assign(&self, src: &DistArray<T, C, N>) -> Result<()> {
        let local = check_alike("assign", self, "src", src).and_then(|_| {
            src.try_with_local(|ls| {
                self.with_local_mut(|mut lt| lt.as_mut_slice().copy_from_slice(ls.as_slice()))
            })
        });
        vote(self.comm(), local)
    }

    /// Collective: `self = src` element-wise for `src` of the same shape
    /// and **any** partition (Julia's `copyto!`, Global Arrays' `NGA_Copy`).
    /// Partitioned alike, it is [`DistArray::assign`]; otherwise every rank
    /// pulls its own part of `self` from `src` straight into window memory,
    /// one `get` per contiguous run per source rank (the plan
    /// [`DistArray::redistribute`] uses).
    ///
    /// Errors, on every rank: `src` has another shape
    /// ([`Error::OperandShape`]), the partition of either array differs
    /// between ranks ([`Error::InvalidArgument`]), a failure of any rank's
    /// part.
    pub fn copy_from(&self, src: &DistArray<T, C, N>) -> Result<()> {
        // The path (a local copy and one vote, or a vote, the pulls and a
        // vote) follows from the two partitions: both paths open with a
        // vote of the same kind that agrees them, so ranks that would take
        // different paths meet in it and all refuse.
        let key = fingerprint(&("copy_from", self.partitioning(), src.partitioning()));
        let differs = || {
            Error::InvalidArgument(
                "copy_from: the partition of the arrays differs between ranks (every rank must \
                 pass arrays partitioned alike to this collective call)"
                    .into(),
            )
        };
        if self.partitioning() == src.partitioning() {
            // assign's local copy, then its vote
            let local = src.try_with_local(|ls| {
                self.with_local_mut(|mut lt| lt.as_mut_slice().copy_from_slice(ls.as_slice()))
            });
            return agree_fingerprints(self.comm(), local.map(|()| ((), key)), differs);
        }
        let shape = check_shape("copy_from", self, "src", src);
        // also the barrier that makes src complete everywhere before anyone
        // reads it
        agree_fingerprints(self.comm(), shape.map(|()| ((), key)), differs)?;
        let pieces = self.partitioning().part_pieces(self.comm().rank());
        let pulled = pieces.and_then(|pieces| {
            self.try_with_local_mut(|mut l| {
                if let [(one, _)] = pieces.as_slice() {
                    // the part is one box: straight into window memory
                    return src.get_block_into(&Block::new(one.clone()), l.as_mut_slice());
                }
                // block-cyclic: box by box, each into its place in the part
                let part = Block::new(l.shape().map(|n| 0..n));
                for (global, local) in &pieces {
                    let piece = src.get_block(&Block::new(global.clone()))?;
                    let at = Block::new(std::array::from_fn(|d| {
                        local[d]..local[d] + global[d].len()
                    }));
                    scatter_box(&part, l.as_mut_slice(), &at, piece.as_slice());
                }
                Ok(())
            })
        });
        vote(self.comm(), pulled)
    }

    /// Collective: `self = alpha * self`.
    pub fn scale(&self, alpha: T) -> Result<()> {
        self.map_local(|v| alpha * v)
    }

    /// Collective: `self = self + s` for a scalar `s`. Like
    /// [`map_local`](Self::map_local), it takes `&self`: the parts are
    /// changed through the window's local epochs.
    pub fn add_scalar(&self, s: T) -> Result<()> {
        self.map_local(|v| v + s)
    }

    /// Collective: `self = self + alpha * x` (`x` partitioned like `self`).
    pub fn axpy(&mut self, alpha: T, x: &DistArray<T, C, N>) -> Result<()> {
        self.update_with(x, |t, v| t + alpha * v)
    }

    /// Collective: `self = alpha * x + beta * self` (`x` partitioned like
    /// `self`), for any dimension.
    pub fn axpby(&mut self, alpha: T, x: &DistArray<T, C, N>, beta: T) -> Result<()> {
        self.update_with(x, |t, v| alpha * v + beta * t)
    }

    /// Collective: `self = self + x` element-wise.
    pub fn add_assign(&mut self, x: &DistArray<T, C, N>) -> Result<()> {
        self.update_with(x, |t, v| t + v)
    }

    /// Collective: `self = self - x` element-wise.
    pub fn sub_assign(&mut self, x: &DistArray<T, C, N>) -> Result<()> {
        self.update_with(x, |t, v| t - v)
    }

    /// Collective: `self = self * x` element-wise.
    pub fn mul_assign(&mut self, x: &DistArray<T, C, N>) -> Result<()> {
        self.update_with(x, |t, v| t * v)
    }
}
