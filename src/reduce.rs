//! Reductions beyond [`DistArray::sum`]: [`min`](DistArray::min) /
//! [`max`](DistArray::max), [`argmin`](DistArray::argmin) /
//! [`argmax`](DistArray::argmax), [`count`](DistArray::count),
//! [`any`](DistArray::any) / [`all`](DistArray::all),
//! [`mean`](DistArray::mean) and a [`map_reduce`](DistArray::map_reduce)
//! into another type.
//!
//! All are **collective** and **bitwise reproducible**: every rank folds
//! its part in row-major order, and the per-rank results are combined in
//! rank order, so the same array on the same partition gives the same bits
//! on every rank and in every run (the order does not depend on timing).
//! The searches (`min`, `max`, `argmin`, `argmax`), `count`, `any`, `all`
//! and integer folds do not depend on the order at all, so they give the
//! same result on any rank count and partition; so do
//! [`mean`](DistArray::mean) and [`map_sum`](DistArray::map_sum) with
//! [`Summation::Exact`](crate::Summation::Exact) (an exact sum, rounded
//! once). A floating-point fold through the closures of
//! [`map_reduce`](DistArray::map_reduce) depends on the partition.
//! The extremum searches (`min`, `argmax`, ...) skip values that are not
//! comparable with themselves (NaN) and return `None` when nothing is left
//! (an empty array); ties go to the first element in global row-major
//! order.
//!
//! ```
//! use distarray::{threaded, DistArray};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<i32, _, 2>::from_fn(comm.clone(), [4, 5], |[i, j]| (i as i32 - 2) * (j as i32))?;
//!     assert_eq!(a.min()?, Some(-8));
//!     assert_eq!(a.argmax()?, Some(([3, 4], 4)));
//!     assert_eq!(a.count(|v| v < 0)?, 2 * 4);
//!     assert!(a.any(|v| v == 0)? && !a.all(|v| v == 0)?);
//!     assert_eq!(a.mean()?, Some(-1.0));
//!     // sum of squares in i64, whatever the element type
//!     assert_eq!(a.map_reduce(0i64, |v| (v as i64).pow(2), |x, y| x + y)?, 180);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use bytemuck::Pod;

use crate::array::DistArray;
use crate::collective::vote_keyed_as;
use crate::comm::{Element, OneSidedComm, RealElement};
use crate::epoch::vote;
use crate::error::Result;
use crate::exact_sum::ExactSum;

/// Collective: every rank's `value`, indexed by rank (moved as bytes, so
/// any plain-old-data type works).
fn gather_pod<C: OneSidedComm, U: Pod>(comm: &C, value: &U) -> Result<Vec<U>> {
    let all = comm.allgather(bytemuck::bytes_of(value))?;
    Ok(all
        .iter()
        .map(|b| bytemuck::pod_read_unaligned::<U>(b))
        .collect())
}

/// `true` for values comparable with themselves (everything but NaN).
#[inline]
fn comparable<T: PartialOrd>(v: &T) -> bool {
    v.partial_cmp(v).is_some()
}

/// Which extremum a search looks for.
#[derive(Clone, Copy)]
enum Extremum {
    Min,
    Max,
}

impl Extremum {
    /// `true` if `v` is strictly better than `best`.
    #[inline]
    fn better<T: PartialOrd>(self, v: T, best: T) -> bool {
        match self {
            Extremum::Min => v < best,
            Extremum::Max => v > best,
        }
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: maps every element with `map`, folds each rank's part in
    /// row-major order starting from `identity` with `combine`, then
    /// combines the per-rank results in rank order (starting again from
    /// `identity`). `identity` must be neutral for `combine`. The result
    /// type is any plain-old-data type (`f64`, `[u64; 2]`, ...).
    pub fn map_reduce<U: Pod + Send>(
        &self,
        identity: U,
        map: impl Fn(T) -> U,
        combine: impl Fn(U, U) -> U,
    ) -> Result<U> {
        let local = self.with_local(|l| {
            l.as_slice()
                .iter()
                .fold(identity, |acc, &v| combine(acc, map(v)))
        });
        let mine = vote(self.comm(), local)?;
        let all = gather_pod(self.comm(), &mine)?;
        Ok(all.into_iter().fold(identity, &combine))
    }

    /// Collective: the sum of `map(v)` over all elements, as `f64`. With
    /// [`Summation::Exact`](crate::Summation::Exact) the mapped values are
    /// summed exactly ([`crate::exact_sum`]) and rounded once: the same bits
    /// for any rank count, partition and backend, as long as `map` depends
    /// on the value only. Otherwise like [`map_reduce`](Self::map_reduce)
    /// with `+` (row-major fold per rank, rank order). Two collectives
    /// either way: a vote that agrees the mode between the ranks, then the
    /// per-rank sums' allgather (or the exact allreduce). A mode that
    /// differs between ranks is an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) on every
    /// rank (so for [`mean`](Self::mean)).
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Summation};
    /// threaded::run_ok(3, |comm| {
    ///     let a = DistArray::<f32, _, 1>::from_fn(comm, [4], |[i]| i as f32)?
    ///         .with_summation(Summation::Exact);
    ///     assert_eq!(a.map_sum(|v| f64::from(v) * 1e16 - 1.0)?, 6e16 - 4.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn map_sum(&self, map: impl Fn(T) -> f64) -> Result<f64> {
        // both paths open with a vote (of nothing) carrying the mode in its
        // word: ranks whose modes differ all refuse there
        let modes = self.modes("map_sum");
        let (key, differs) = (modes.key(), || modes.differ());
        if self.summation() != crate::Summation::Exact {
            // map_reduce's fold: the vote, then the per-rank sums in rank order
            let local = self.with_local(|l| l.as_slice().iter().fold(0.0, |acc, &v| acc + map(v)));
            let mine = vote_keyed_as::<[u8; 0], _, _>(self.comm(), local, key, differs)?;
            let all = gather_pod(self.comm(), &mine)?;
            return Ok(all.into_iter().fold(0.0, |a, b| a + b));
        }
        let local = self.with_local(|l| {
            let mut acc = ExactSum::new();
            let mut buf = [0.0f64; crate::exact_sum::CHUNK];
            for c in l.as_slice().chunks(buf.len()) {
                for (o, &v) in buf.iter_mut().zip(c) {
                    *o = map(v);
                }
                acc.add_slice(&buf[..c.len()]);
            }
            [acc]
        });
        let local = vote_keyed_as::<[u8; 0], _, _>(self.comm(), local, key, differs)?;
        let [total] = crate::exact_sum::allreduce(self.comm(), Ok(local))?;
        Ok(total.to_f64())
    }

    /// Collective: the number of elements for which `pred` holds.
    pub fn count(&self, pred: impl Fn(T) -> bool) -> Result<usize> {
        let n = self.map_reduce(0u64, |v| u64::from(pred(v)), |a, b| a + b)?;
        Ok(n as usize)
    }

    /// Collective: `true` if `pred` holds for some element.
    pub fn any(&self, pred: impl Fn(T) -> bool) -> Result<bool> {
        Ok(self.map_reduce(0u8, |v| u8::from(pred(v)), |a, b| a | b)? != 0)
    }

    /// Collective: `true` if `pred` holds for every element (also for an
    /// empty array).
    pub fn all(&self, pred: impl Fn(T) -> bool) -> Result<bool> {
        Ok(self.map_reduce(1u8, |v| u8::from(pred(v)), |a, b| a & b)? != 0)
    }
}

/// The reductions that need an order or a conversion to `f64`: real
/// element types only.
impl<T: RealElement, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: the arithmetic mean as `f64` (the sum of the values
    /// converted to `f64` by [`map_sum`](Self::map_sum) — in the fixed
    /// order, or exactly with [`Summation::Exact`](crate::Summation::Exact)
    /// — divided by the length); `None` for an empty array.
    pub fn mean(&self) -> Result<Option<f64>> {
        let sum = self.map_sum(|v| v.to_f64())?;
        Ok((!self.is_empty()).then(|| sum / self.len() as f64))
    }

    /// Collective: the smallest element (NaN skipped); `None` if there is
    /// none.
    pub fn min(&self) -> Result<Option<T>> {
        Ok(self.extremum(Extremum::Min)?.map(|(_, v)| v))
    }

    /// Collective: the largest element (NaN skipped); `None` if there is
    /// none.
    pub fn max(&self) -> Result<Option<T>> {
        Ok(self.extremum(Extremum::Max)?.map(|(_, v)| v))
    }

    /// Collective: the global index and value of the smallest element, the
    /// first in global row-major order on ties (NaN skipped).
    pub fn argmin(&self) -> Result<Option<([usize; N], T)>> {
        self.extremum(Extremum::Min)
    }

    /// Collective: the global index and value of the largest element, the
    /// first in global row-major order on ties (NaN skipped).
    pub fn argmax(&self) -> Result<Option<([usize; N], T)>> {
        self.extremum(Extremum::Max)
    }

    /// The extremum search: each rank finds its first best element, then
    /// the per-rank winners are compared in rank order, ties going to the
    /// smaller global row-major index.
    fn extremum(&self, which: Extremum) -> Result<Option<([usize; N], T)>> {
        let local = self.with_local(|l| {
            let mut best: Option<(usize, T)> = None;
            for (k, &v) in l.as_slice().iter().enumerate() {
                if !comparable(&v) {
                    continue;
                }
                match best {
                    Some((_, b)) if !which.better(v, b) => {}
                    _ => best = Some((k, v)),
                }
            }
            best.map(|(k, v)| (l.global_index(k), v))
        });
        let mine = vote(self.comm(), local)?;
        let shape = self.shape();
        // (found, global row-major index, value) from every rank
        let record: (u64, u64, T) = match mine {
            Some((idx, v)) => (1, crate::partition::linear_offset(&shape, &idx) as u64, v),
            None => (0, 0, T::ZERO),
        };
        let mut bytes = bytemuck::bytes_of(&[record.0, record.1]).to_vec();
        bytes.extend_from_slice(bytemuck::bytes_of(&record.2));
        let all = self.comm().allgather(&bytes)?;
        let mut best: Option<(u64, T)> = None;
        for b in &all {
            let f: [u64; 2] = bytemuck::pod_read_unaligned(&b[..16]);
            let v: T = bytemuck::pod_read_unaligned(&b[16..]);
            if f[0] == 0 {
                continue;
            }
            best = match best {
                Some((bi, bv)) if which.better(v, bv) || (v == bv && f[1] < bi) => Some((f[1], v)),
                Some(b) => Some(b),
                None => Some((f[1], v)),
            };
        }
        Ok(best.map(|(i, v)| (crate::partition::multi_index(&shape, i as usize), v)))
    }
}
