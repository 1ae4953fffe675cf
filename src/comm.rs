//! The communication contract: [`OneSidedComm`], [`Window`] and the
//! [`Element`] types that can live in a window.
//!
//! Everything above this module (arrays, blocks, ghosts, linear algebra) is
//! written once against these traits. Backends (the in-process
//! [`threaded`](crate::threaded) one, MPI, Lamellar) implement them and
//! nothing else; the `conformance` module (feature
//! `conformance`) checks that they honour the semantics documented here.
//!
//! # The model
//!
//! A communicator has `size()` ranks. A [`Window`] is created collectively:
//! every rank exposes a part of `local_len` elements (lengths may differ
//! between ranks). Any rank may then read ([`Window::get`]), write
//! ([`Window::put`]) or combine ([`Window::accumulate`]) elements of any
//! rank's part, *one-sidedly*: the target does not take part.
//!
//! Accesses must happen inside an **access epoch** on the target:
//!
//! * *passive target*: [`Window::lock`] / [`Window::unlock`] on one target.
//!   A [`LockKind::Shared`] lock admits other shared lockers, an
//!   [`LockKind::Exclusive`] lock excludes every other rank. A rank may hold
//!   locks on several targets at once, but at most one on each.
//! * *active target*: [`Window::fence`] (collective) opens an epoch on all
//!   targets at once; the next `fence` completes every operation issued
//!   since, and [`Window::fence_end`] closes the fence epoch.
//!
//! Passive and active synchronisation must not be mixed on one window.
//!
//! # Access rules (every backend)
//!
//! Reads need a lock of either kind on the target (or a fence epoch);
//! **writes** (`put`, `accumulate`) need an **exclusive** lock on the target
//! (or a fence epoch). Local views (`with_local`, `with_local_mut`) need a
//! lock on the own part (exclusive for a mutable view), are refused in
//! fence epochs, and keep that lock until they end. Together these make
//! every safe program race-free: no write ever reaches memory that a live
//! slice points to. [`WindowState`](crate::checks::WindowState) enforces
//! them for every backend.
//!
//! # Completion
//!
//! The safe API is *blocking at the origin*: when `get` returns, the
//! destination buffer holds the data; when `put` / `accumulate` return, the
//! source buffer may be reused. Remote completion (visibility at the target
//! for other ranks) is guaranteed at [`Window::unlock`], [`Window::flush`] or
//! the next [`Window::fence`]. The `*_runs` methods batch many contiguous
//! runs to one target (one RMA operation per run) so that backends can wait
//! once for the whole batch.
//!
//! # Errors instead of undefined behaviour
//!
//! A target rank `>= size()`, an access outside the target's part, a buffer
//! whose length does not match, an operation outside an epoch, a second lock
//! on the same target and an unlock without a lock all return an
//! [`Error`](crate::Error) *before* anything is sent, on every backend.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, Mul, Sub};
use std::sync::Arc;

use num_complex::Complex;
use num_traits::{NumCast, One, Zero};

use crate::error::Result;
use crate::pending::HandleSlot;
use crate::rma::{RawWindow, Window};

/// The primitive type behind an [`Element`]; backends map it to their own
/// datatypes (e.g. `MPI_DOUBLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ElementKind {
    I8,
    I16,
    I32,
    I64,
    Isize,
    U8,
    U16,
    U32,
    U64,
    Usize,
    F32,
    F64,
    /// `Complex<f32>` (two `f32`: real, imaginary; C's `float _Complex`).
    C32,
    /// `Complex<f64>` (C's `double _Complex`).
    C64,
}

impl ElementKind {
    /// `true` for `F32` and `F64`.
    pub fn is_float(self) -> bool {
        matches!(self, ElementKind::F32 | ElementKind::F64)
    }

    /// `true` for `C32` and `C64`.
    pub fn is_complex(self) -> bool {
        matches!(self, ElementKind::C32 | ElementKind::C64)
    }

    /// Whether [`Window::accumulate`] with `op` is defined for this kind:
    /// every op for integers and floats; `Replace`, `Sum` and `Prod` for
    /// complex numbers, which have no order (`Min` / `Max`), as in MPI.
    pub fn supports(self, op: AccumulateOp) -> bool {
        !(self.is_complex() && matches!(op, AccumulateOp::Min | AccumulateOp::Max))
    }
}

/// How [`Window::accumulate`] combines an incoming value with the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccumulateOp {
    /// `target = incoming` (an atomic put).
    Replace,
    /// `target = target + incoming` (wrapping for integers).
    Sum,
    /// `target = target * incoming` (wrapping for integers).
    Prod,
    /// `target = min(target, incoming)`.
    Min,
    /// `target = max(target, incoming)`.
    Max,
}

/// Kind of a passive-target lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// Admits other shared lockers at the same time.
    Shared,
    /// Excludes every other rank while held.
    Exclusive,
}

/// Element types that can live in a window: the primitive integers and
/// floats, and complex numbers of `f32` / `f64` ([`Complex32`](crate::Complex32),
/// [`Complex64`](crate::Complex64)).
///
/// The numeric side comes from `num-traits` ([`Zero`], [`One`], [`NumCast`]
/// for conversions, e.g. `T::from(2.5)`); integer arithmetic that must not
/// overflow-panic (sums, accumulates) goes through [`Element::combine`],
/// which wraps. Element types are not ordered in general (complex numbers
/// are not): the operations that need an order (`min`, `argmax`, ...) ask
/// for `T: PartialOrd` in addition, and [`RealElement`] is the real types.
///
/// # Safety
///
/// Backends move elements as raw bytes and hand `KIND` to their runtime as
/// the datatype. An implementor guarantees that `Self` has exactly the size
/// and representation of `KIND` (for complex kinds: real part, then
/// imaginary part, as C's `_Complex` types and `num_complex::Complex`).
/// distarray implements it for all those types; there is no reason to
/// implement it elsewhere.
pub unsafe trait Element:
    bytemuck::Pod
    + Default
    + PartialEq
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Sum<Self>
    + Zero
    + One
    + NumCast
{
    /// The primitive kind of `Self`.
    const KIND: ElementKind;
    /// Additive identity (`Zero::zero()` as a constant).
    const ZERO: Self;
    /// Multiplicative identity (`One::one()` as a constant).
    const ONE: Self;

    /// The value [`Window::accumulate`] stores when `incoming` is combined
    /// into `current` with `op`. Backends that apply accumulates in software
    /// (threaded, Lamellar) use this; MPI uses its own reduction operators,
    /// which compute the same. Ops that [`ElementKind::supports`] refuses
    /// (`Min` / `Max` on complex numbers) are rejected by the backends with
    /// an error before this is called; here they leave `current` unchanged.
    fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self;

    /// The complex conjugate (the value itself for real types).
    #[inline]
    fn conj(self) -> Self {
        self
    }

    /// `self * a + b`; for `f32` and `f64` with one rounding (a fused
    /// multiply-add, `f64::mul_add`: the same bits on every machine, in
    /// hardware where the CPU has FMA). The stencil kernels use it.
    #[inline]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }

    /// The squared modulus `|x|²` as `f64` (for norms).
    fn abs2(self) -> f64;

    /// The modulus `|x|` as `f64` (the absolute value for real types;
    /// `hypot(re, im)` for complex ones, without overflow in the squares).
    fn modulus(self) -> f64;
}

/// The real (ordered) element types: the primitive integers and floats.
pub trait RealElement: Element + PartialOrd {
    /// Converts to `f64` (for means, norms, error reports, printing).
    fn to_f64(self) -> f64;
}

macro_rules! impl_element_int {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `$t` is the primitive integer type named by `ElementKind::$k`.
        unsafe impl Element for $t {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current.wrapping_add(incoming),
                    AccumulateOp::Prod => current.wrapping_mul(incoming),
                    AccumulateOp::Min => current.min(incoming),
                    AccumulateOp::Max => current.max(incoming),
                }
            }
            #[inline]
            fn abs2(self) -> f64 {
                (self as f64) * (self as f64)
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self as f64).abs()
            }
        }
        impl RealElement for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

macro_rules! impl_element_float {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `$t` is the primitive float type named by `ElementKind::$k`.
        unsafe impl Element for $t {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current + incoming,
                    AccumulateOp::Prod => current * incoming,
                    AccumulateOp::Min => current.min(incoming),
                    AccumulateOp::Max => current.max(incoming),
                }
            }
            #[inline]
            fn abs2(self) -> f64 {
                (self as f64) * (self as f64)
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self as f64).abs()
            }
            #[inline]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
        impl RealElement for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

macro_rules! impl_element_complex {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `Complex<$t>` is `#[repr(C)]` { re, im } of two `$t`:
        // exactly C's `_Complex` layout, which `ElementKind::$k` names.
        unsafe impl Element for Complex<$t> {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = Complex::new(0.0, 0.0);
            const ONE: Self = Complex::new(1.0, 0.0);
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current + incoming,
                    AccumulateOp::Prod => current * incoming,
                    // refused before (no order on complex numbers)
                    AccumulateOp::Min | AccumulateOp::Max => current,
                }
            }
            #[inline]
            fn conj(self) -> Self {
                Complex::conj(&self)
            }
            #[inline]
            fn abs2(self) -> f64 {
                let (re, im) = (self.re as f64, self.im as f64);
                re * re + im * im
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self.re as f64).hypot(self.im as f64)
            }
        }
    )*};
}
impl_element_int!(
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, isize => Isize,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, usize => Usize,
);
impl_element_float!(f32 => F32, f64 => F64);
impl_element_complex!(f32 => C32, f64 => C64);

/// A communicator with one-sided (RMA) windows.
///
/// Handles are cheap to clone; each rank holds its own. Methods marked
/// *collective* must be called by every rank of the communicator, in the
/// same order; the others are local.
///
/// # Waiting for other ranks
///
/// Every method that may wait for another rank — the collectives, the
/// neighbour exchange (and its [`Request::wait`]), window
/// allocation — must call [`HandleSlot::settle`] on
/// [`OneSidedComm::handle_slot`] before it waits, and every window must be
/// given that slot ([`WindowState::new`](crate::checks::WindowState::new)),
/// which settles it before every lock and fence: a rank never waits for
/// another one while its non-blocking handle holds locks (see
/// [`crate::pending`]). The conformance checks `crossing_handles` and
/// `leaked_handle_does_not_hang` hang on a backend that skips it.
pub trait OneSidedComm: Clone + Send + Sync + 'static {
    /// The raw window primitives of this backend ([`RawWindow`]); the
    /// checked layer over them is [`Window`] (see [`WindowOf`]).
    type RawWindow<T: Element>: RawWindow<T>;

    /// This rank, in `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// This rank's slot for its one non-blocking block handle on this
    /// communicator ([`crate::pending`]), shared by every clone of this
    /// handle (and by wrappers such as
    /// [`CountingComm`](crate::counting::CountingComm)): one per rank and
    /// communicator.
    fn handle_slot(&self) -> &Arc<HandleSlot>;

    /// Collective: returns once every rank has entered the barrier.
    ///
    /// Returns [`Error::Aborted`](crate::Error::Aborted) instead of blocking
    /// forever when another rank has failed (where the backend can tell).
    fn barrier(&self) -> Result<()>;

    /// Collective: every rank contributes `local` (lengths may differ);
    /// every rank receives all contributions, indexed by rank.
    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>>;

    /// Collective: combines every rank's `buf` with `combine` and leaves the
    /// result in every rank's `buf`. `buf` has the same length on every
    /// rank; `combine(lower, higher)` stores `lower ∘ higher` in `higher`
    /// (see [`Combiner`](crate::collective::Combiner)) and must be
    /// associative (it need not be commutative).
    ///
    /// Contract: contributions are combined **in rank order** (the left
    /// operand always covers lower ranks than the right one) with a
    /// bracketing fixed by the number of ranks and the length alone, and
    /// every rank receives the same bytes, so results are bitwise
    /// reproducible run to run. O(log P) rounds and O(`buf.len()`) bytes per
    /// message; never O(P) data per rank. The combiner runs on the calling
    /// thread. Payloads are meant to be small (scalars, votes, a few words).
    ///
    /// Most code uses the typed [`allreduce_vote`](crate::collective::allreduce_vote),
    /// which carries the success vote in the same call.
    fn allreduce_bytes(
        &self,
        buf: &mut [u8],
        combine: crate::collective::Combiner<'_>,
    ) -> Result<()>;

    /// Collective: copies `root`'s `buf` into every rank's `buf` (same length
    /// on every rank). O(log P) rounds. Error: `root >= size()` (on every
    /// rank). Typed, with the root's success carried along:
    /// [`broadcast_vote`](crate::collective::broadcast_vote).
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()>;

    /// The neighbour-message capability ([`NeighbourMessages`]), where this
    /// backend has point-to-point messages (MPI, threaded); `None` (the
    /// default) where it has not (Lamellar), and callers such as
    /// [`Halo`](crate::Halo) then use one-sided gets. A capability a
    /// backend implements or not, rather than a flag beside methods that
    /// fail: code that holds a `&dyn NeighbourMessages` can send.
    fn messages(&self) -> Option<&dyn NeighbourMessages> {
        None
    }

    /// Collective: creates a window in which this rank exposes `local_len`
    /// elements, initialised to `T::default()` (zero). Lengths may differ
    /// between ranks, and may be zero.
    ///
    /// One collective gathers every rank's length, element kind and whether
    /// it can allocate its part, so that a rank with another element type, a
    /// part whose size in bytes overflows or does not fit in memory fails
    /// the call on **every** rank ([`Error::InvalidArgument`],
    /// [`Error::OutOfMemory`], [`Error::PeerFailed`]) before anything is
    /// allocated.
    ///
    /// [`Error::InvalidArgument`]: crate::Error::InvalidArgument
    /// [`Error::OutOfMemory`]: crate::Error::OutOfMemory
    /// [`Error::PeerFailed`]: crate::Error::PeerFailed
    fn create_window<T: Element>(&self, local_len: usize) -> Result<WindowOf<Self, T>> {
        let lens = crate::checks::gather_window_lens::<T, Self>(self, local_len)?;
        // SAFETY: every rank passed the same `lens` (one allgather) and the
        // same element kind and size (checked on every rank from the same
        // gathered table), every part's byte size fits and every rank could
        // allocate its part.
        let raw = unsafe { self.allocate_window::<T>(&lens)? };
        checked_window(self, raw, lens)
    }

    /// Collective: creates a window with the per-rank lengths `lens` (index
    /// = rank), which every rank must pass identically, as a constructor
    /// that already agreed on them does. One vote checks that every rank
    /// passed the same lengths and element type and can allocate its part;
    /// if not, every rank returns an `Err` and nothing is allocated.
    fn create_window_with_lens<T: Element>(&self, lens: &[usize]) -> Result<WindowOf<Self, T>> {
        crate::checks::agree_window::<T, Self>(self, lens, 0)?;
        // SAFETY: the vote above established that every rank passed the same
        // lengths and element type and that every rank can allocate its part.
        let raw = unsafe { self.allocate_window::<T>(lens)? };
        checked_window(self, raw, lens.to_vec())
    }

    /// Collective, for backends: allocates the raw window with the per-rank
    /// lengths `lens`, zero-filled. Called by [`OneSidedComm::create_window`]
    /// and [`OneSidedComm::create_window_with_lens`] once every rank agreed,
    /// which wrap it in the checked [`Window`]; never call it directly.
    ///
    /// # Safety
    ///
    /// Every rank calls it with the same `lens` (one entry per rank) and the
    /// same `T`; every part's size in bytes fits in `isize`; every rank's
    /// [`OneSidedComm::check_allocation`] for its part succeeded. A backend
    /// relies on this to bound other ranks' accesses by `lens`.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<Self::RawWindow<T>>;

    /// Local: checks that this rank can allocate its part of a window whose
    /// parts hold `lens` elements of `elem_size` bytes each, without
    /// allocating; [`Error::OutOfMemory`](crate::Error::OutOfMemory) if not.
    /// The default compares this rank's part with the memory the operating
    /// system reports as available; backends with other limits (a shared
    /// memory file system, all ranks in one process) refine it.
    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        let mine = lens.get(self.rank()).copied().unwrap_or(0);
        crate::checks::check_memory(
            "this rank's part of a window",
            mine as u128 * elem_size as u128,
        )
    }

    /// A short name of the backend, for reports ("threaded", "mpi", ...).
    fn backend_name(&self) -> &'static str;
}

/// The checked window type of communicator `C` for elements `T`.
pub type WindowOf<C, T> = Window<T, <C as OneSidedComm>::RawWindow<T>>;

/// Wraps a freshly allocated raw window in the checked layer, with a
/// window state for `lens` and `comm`'s handle slot.
pub(crate) fn checked_window<C: OneSidedComm, T: Element>(
    comm: &C,
    raw: C::RawWindow<T>,
    lens: Vec<usize>,
) -> Result<WindowOf<C, T>> {
    let state = crate::checks::WindowState::new(comm.rank(), lens, comm.handle_slot().clone())?;
    Ok(Window::new(raw, state))
}

/// Point-to-point messages between neighbours: the capability a halo
/// update, a transpose or a reduce-scatter wants, which a backend has
/// (MPI, threaded) or not (Lamellar). Reached through
/// [`OneSidedComm::messages`]; [`messages_of`] turns its absence into an
/// error.
pub trait NeighbourMessages: Send + Sync {
    /// Collective: a sparse exchange of byte messages between neighbours,
    /// what a halo update needs. This rank sends each `sends[i].1` to rank
    /// `sends[i].0` and receives, from each rank `recvs[j].0`, exactly
    /// `recvs[j].1.len()` bytes into `recvs[j].1`. Every rank calls it the
    /// same number of times (with empty lists where it has no neighbours);
    /// the messages between two ranks are matched in the order their calls
    /// were made (for [`NeighbourMessages::exchange_bytes_start`], started), so
    /// the sender's and the receiver's lists must agree (both derived from
    /// one agreed plan, as [`Halo`](crate::Halo) does).
    ///
    /// Why messages and not RMA: a `get` needs a round trip (request, then
    /// reply) *and* a synchronisation telling the reader that the owner's
    /// data is ready; a message carries both in one one-way latency, and
    /// only between neighbours (PETSc's scatters, MPI's neighbourhood
    /// collectives). MPI sends each message with `MPI_Isend` and waits for
    /// all with one `MPI_Waitall`.
    ///
    /// Errors: a rank out of range (before anything is sent), a message
    /// whose length differs from the receiver's buffer (at the receiver).
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()>;

    /// Starts [`NeighbourMessages::exchange_bytes`] and returns without waiting
    /// where the backend can, so that the caller computes while the
    /// messages travel; [`Request::wait`] completes it. MPI posts
    /// its `MPI_Irecv`s and `MPI_Isend`s and returns (the `MPI_Waitall` is
    /// in `wait`); the threaded backend sends at once and receives in
    /// `wait`. The default runs the whole exchange before returning. Same
    /// rules, checks and errors as `exchange_bytes` (some errors only
    /// appear at `wait`).
    ///
    /// The safe way to use it is [`Halo::start_update`](crate::Halo::start_update).
    ///
    /// # Safety
    ///
    /// The backend may read the `sends` buffers and write the `recvs`
    /// buffers until the returned handle's `wait` has returned or the
    /// handle has been dropped (dropping it waits too): until then the
    /// caller must not write the `sends` buffers, nor read, write, move or
    /// free the `recvs` buffers. Leaking the handle (`mem::forget`) leaves
    /// the exchange in flight for good, so its buffers must then be leaked
    /// as well.
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        self.exchange_bytes(sends, recvs)?;
        Ok(Box::new(Completed))
    }
}

/// The neighbour-message capability of `comm`, or [`Error::Backend`](crate::Error::Backend)
/// naming the backend that has none.
pub fn messages_of<C: OneSidedComm>(comm: &C) -> Result<&dyn NeighbourMessages> {
    comm.messages().ok_or_else(|| {
        crate::Error::Backend(format!(
            "the {} backend has no point-to-point messages (NeighbourMessages)",
            comm.backend_name()
        ))
    })
}

/// Work in flight that completes later: a neighbour exchange (from
/// [`NeighbourMessages::exchange_bytes_start`]) or RMA operations (from
/// [`Window::get_runs_start`] / [`Window::write_runs_start`]). One type for
/// both, so that code holding several (a halo, a transpose, a pending
/// block) completes them alike. Dropping one without calling
/// [`Request::wait`] waits as well (and drops the outcome).
pub trait Request: Send {
    /// Waits until the work is complete at this rank: an exchange's
    /// messages sent and received, a read's data in its buffer, a write's
    /// source reusable (a write is complete at the target after the
    /// epoch's `flush` or `unlock`). Reports what went wrong (a received
    /// length that differs from its buffer, a failed peer, a failed
    /// operation). Implementations return, `Ok` or `Err`, only once the
    /// backend no longer uses the buffers: an operation that failed is over
    /// too (MPI waits for every request still active after an error);
    /// callers that cannot be sure of that, e.g. after an `Err` of another
    /// backend, leak them ([`Halo`](crate::Halo) does).
    fn wait(self: Box<Self>) -> Result<()>;
}

/// Work that completed before it was returned as a [`Request`] (the
/// defaults of [`NeighbourMessages::exchange_bytes_start`],
/// [`Window::get_runs_start`] and [`Window::write_runs_start`]).
#[derive(Debug, Clone, Copy)]
pub struct Completed;

impl Request for Completed {
    fn wait(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Complex32, Complex64};

    #[test]
    fn complex_elements_combine_conjugate_and_measure() {
        let (a, b) = (Complex64::new(1.0, 2.0), Complex64::new(-3.0, 0.5));
        assert_eq!(Complex64::combine(AccumulateOp::Sum, a, b), a + b);
        assert_eq!(Complex64::combine(AccumulateOp::Prod, a, b), a * b);
        assert_eq!(Complex64::combine(AccumulateOp::Replace, a, b), b);
        assert_eq!(a.conj(), Complex64::new(1.0, -2.0));
        assert_eq!(a.abs2(), 5.0);
        assert_eq!(Complex32::new(3.0, -4.0).modulus(), 5.0);
        // no overflow in the squares
        assert_eq!(Complex64::new(1e300, 1e300).modulus(), 1e300 * 2f64.sqrt());
        assert_eq!(<Complex64 as Element>::KIND, ElementKind::C64);
        assert_eq!(std::mem::size_of::<Complex32>(), 8);
        assert!(!ElementKind::C32.supports(AccumulateOp::Min));
        assert!(!ElementKind::C64.supports(AccumulateOp::Max));
        assert!(ElementKind::C64.supports(AccumulateOp::Sum));
        assert!(ElementKind::F32.supports(AccumulateOp::Min));
    }

    #[test]
    fn real_elements_keep_their_arithmetic() {
        assert_eq!(i8::combine(AccumulateOp::Sum, 127, 1), -128); // wraps
        assert_eq!((-3i32).conj(), -3);
        assert_eq!((-3i32).modulus(), 3.0);
        assert_eq!(2.5f32.abs2(), 6.25);
        assert_eq!(RealElement::to_f64(7u16), 7.0);
        // num-traits casts
        assert_eq!(<f64 as NumCast>::from(3u8), Some(3.0));
        assert_eq!(<u8 as NumCast>::from(300i32), None);
        assert_eq!(
            <Complex64 as NumCast>::from(2i32),
            Some(Complex64::new(2.0, 0.0))
        );
    }
}
