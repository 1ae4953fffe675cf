//! What lives at each target PE of a window: the passive-target lock word
//! and the accumulate mutex, plus the active messages that manipulate them.
//!
//! Lamellar memory regions offer RDMA get/put and atomic load/store/swap,
//! but no remote compare-and-swap and no remote add. So the two operations
//! that need an atomic read-modify-write at the target are *executed at the
//! target* by active messages:
//!
//! * [`DistarrayLockAm`] tries to take the reader/writer lock of the target's part
//!   and answers whether it succeeded; the origin retries with back-off
//!   until it does ([`acquire`]). [`DistarrayUnlockAm`] releases it.
//! * [`DistarrayAccumulateAm`] carries the origin's values (as bytes) and combines
//!   them into the target's part with [`Element::combine`] under the
//!   target's accumulate mutex, which makes accumulates element-wise atomic
//!   with respect to each other (the MPI guarantee).
//!
//! One [`TargetState`] per PE is shared through a [`Darc`] (Lamellar's
//! distributed `Arc`): an active message carrying the `Darc` dereferences it
//! to the *executing* PE's instance. When the origin is the target itself
//! the same functions run directly, without a message.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use distarray::{AccumulateOp, Element, ElementKind};
use lamellar::active_messaging::prelude::*;
use lamellar::darc::prelude::*;

/// The state of a passive-target lock on one PE's part of a window.
#[derive(Debug, Default)]
struct LockWord {
    /// Number of shared holders.
    readers: usize,
    /// An exclusive holder exists.
    writer: bool,
}

/// Per-PE state of one window (one instance on every PE, behind a `Darc`).
pub(crate) struct TargetState {
    lock: Mutex<LockWord>,
    acc: Mutex<()>,
    /// Address of this PE's part of the window memory (in this process).
    base: usize,
    /// True length (elements) of this PE's part.
    len: usize,
    /// The element type of the window (the same on every PE).
    kind: ElementKind,
    /// Keeps the memory region (and so `base`) alive as long as this state
    /// is reachable, e.g. from an active message still in flight.
    _region: Box<dyn std::any::Any + Send + Sync>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a few assignments that cannot panic
    // half-way, so a poisoned mutex still guards consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TargetState {
    /// State for a part of `len` elements of kind `kind` at address `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to at least `len` initialised, properly aligned
    /// elements of the type named by `kind`, kept alive by `region`, and
    /// written by nothing but this window's operations (RDMA, accumulate
    /// messages, local views) while the state exists.
    pub(crate) unsafe fn new(
        base: *mut u8,
        len: usize,
        kind: ElementKind,
        region: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        TargetState {
            lock: Mutex::new(LockWord::default()),
            acc: Mutex::new(()),
            base: base as usize,
            len,
            kind,
            _region: region,
        }
    }

    /// Tries to take the lock; `true` if it was granted.
    pub(crate) fn try_lock(&self, exclusive: bool) -> bool {
        let mut w = relock(&self.lock);
        if w.writer || (exclusive && w.readers > 0) {
            return false;
        }
        if exclusive {
            w.writer = true;
        } else {
            w.readers += 1;
        }
        true
    }

    /// Releases a lock taken by [`TargetState::try_lock`].
    pub(crate) fn release(&self, exclusive: bool) {
        let mut w = relock(&self.lock);
        if exclusive {
            debug_assert!(w.writer, "exclusive unlock without a writer");
            w.writer = false;
        } else {
            debug_assert!(w.readers > 0, "shared unlock without readers");
            w.readers = w.readers.saturating_sub(1);
        }
    }

    /// Combines `bytes` (elements of this window's kind, unaligned) into
    /// this PE's part from element `offset` on, atomically with respect to
    /// every other accumulate on this part.
    pub(crate) fn accumulate(&self, offset: usize, op: AccumulateOp, bytes: &[u8]) {
        macro_rules! dispatch {
            ($($k:ident => $t:ty),* $(,)?) => {
                match self.kind {
                    $(ElementKind::$k => self.accumulate_typed::<$t>(offset, op, bytes),)*
                }
            };
        }
        dispatch!(
            I8 => i8, I16 => i16, I32 => i32, I64 => i64, Isize => isize,
            U8 => u8, U16 => u16, U32 => u32, U64 => u64, Usize => usize,
            F32 => f32, F64 => f64,
        )
    }

    fn accumulate_typed<T: Element>(&self, offset: usize, op: AccumulateOp, bytes: &[u8]) {
        let size = std::mem::size_of::<T>();
        assert_eq!(
            bytes.len() % size,
            0,
            "accumulate payload is not a whole number of elements"
        );
        let n = bytes.len() / size;
        // The origin checked the bounds against the same layout; a failure
        // here is a bug in this crate, not a user error.
        assert!(
            offset.checked_add(n).is_some_and(|end| end <= self.len),
            "accumulate of {n} element(s) at {offset} outside a part of {}",
            self.len
        );
        let _g = relock(&self.acc);
        let base = self.base as *mut T;
        for (i, chunk) in bytes.chunks_exact(size).enumerate() {
            let v: T = bytemuck::pod_read_unaligned(chunk);
            // SAFETY: `offset + i < self.len` (asserted above) and `base`
            // points to `self.len` aligned, initialised `T`s (the contract
            // of `TargetState::new`; `kind` names `T`, so the dispatch in
            // `accumulate` picked the right type). The accumulate mutex is
            // held, so no other accumulate touches the element meanwhile.
            unsafe {
                let p = base.add(offset + i);
                p.write(T::combine(op, p.read(), v));
            }
        }
    }
}

/// Encodes an [`AccumulateOp`] for an active message.
pub(crate) fn op_code(op: AccumulateOp) -> u8 {
    match op {
        AccumulateOp::Replace => 0,
        AccumulateOp::Sum => 1,
        AccumulateOp::Prod => 2,
        AccumulateOp::Min => 3,
        AccumulateOp::Max => 4,
    }
}

fn op_from_code(code: u8) -> AccumulateOp {
    match code {
        0 => AccumulateOp::Replace,
        1 => AccumulateOp::Sum,
        2 => AccumulateOp::Prod,
        3 => AccumulateOp::Min,
        4 => AccumulateOp::Max,
        _ => unreachable!("invalid accumulate op code {code}"),
    }
}

// Lamellar registers active messages by their bare type name, process-wide
// (its own `LockAm` / `UnlockAm` exist): hence the prefixed names.

/// Tries to take the lock of the executing PE; answers whether it did.
#[lamellar::AmData(Clone)]
pub(crate) struct DistarrayLockAm {
    pub(crate) state: Darc<TargetState>,
    pub(crate) exclusive: bool,
}

#[lamellar::am]
impl LamellarAM for DistarrayLockAm {
    async fn exec(self) -> bool {
        self.state.try_lock(self.exclusive)
    }
}

/// Releases a lock on the executing PE.
#[lamellar::AmData(Clone)]
pub(crate) struct DistarrayUnlockAm {
    pub(crate) state: Darc<TargetState>,
    pub(crate) exclusive: bool,
}

#[lamellar::am]
impl LamellarAM for DistarrayUnlockAm {
    async fn exec(self) {
        self.state.release(self.exclusive);
    }
}

/// Accumulates `data` into the executing PE's part.
#[lamellar::AmData(Clone)]
pub(crate) struct DistarrayAccumulateAm {
    pub(crate) state: Darc<TargetState>,
    pub(crate) offset: usize,
    pub(crate) op: u8,
    pub(crate) data: Vec<u8>,
}

#[lamellar::am]
impl LamellarAM for DistarrayAccumulateAm {
    async fn exec(self) {
        let op = op_from_code(self.op);
        self.state.accumulate(self.offset, op, &self.data);
    }
}

/// Calls `attempt` until it returns `true`, backing off between failures:
/// a few immediate retries, then yields, then sleeps growing to 1 ms.
pub(crate) fn acquire(mut attempt: impl FnMut() -> bool) {
    let mut failures = 0u32;
    while !attempt() {
        failures += 1;
        if failures < 4 {
            std::hint::spin_loop();
        } else if failures < 16 {
            std::thread::yield_now();
        } else {
            let us = (10u64 << (failures - 16).min(7)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
        }
    }
}
