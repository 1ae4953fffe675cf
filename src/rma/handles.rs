//! [`HandleSlot`]: each rank's one slot for a non-blocking block handle
//! on a communicator (see [`crate::pending`]). It lives at the bottom, with
//! the window checks that settle it before every lock and fence, so that a
//! rank never waits for another one while its handle holds locks.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};

/// What became of a handle's operations: set once, when they are complete.
pub(crate) type Outcome = OnceLock<Result<()>>;

/// A handle's operations in flight, with their element and window types
/// erased: one slot serves every array of a communicator.
pub(crate) trait Flight: Send {
    /// Waits for every request, then unlocks every target; the first error.
    fn close(self: Box<Self>) -> Result<()>;
}

/// The state of a [`HandleSlot`].
enum SlotState {
    Empty,
    /// A start is taking its locks (on some thread of this rank).
    Starting,
    /// A handle's operations, and where its outcome goes.
    InFlight {
        flight: Box<dyn Flight>,
        outcome: Arc<Outcome>,
    },
}

/// One rank's slot for the one non-blocking block handle it may have in
/// flight on a communicator (see the [`pending`](crate::pending) docs): every
/// clone of a communicator handle shares it, and every array and window of
/// the communicator uses it.
///
/// The slot owns the handle's lock epochs and requests; the handle
/// ([`PendingGet`](crate::PendingGet), [`PendingPut`](crate::PendingPut)) owns the buffers. Backends create one
/// slot per rank and communicator ([`OneSidedComm::handle_slot`](crate::OneSidedComm::handle_slot)), give it
/// to every window's [`WindowState`](crate::checks::WindowState) (which
/// settles it before every lock and fence), and call
/// [`HandleSlot::settle`] at the entry of every collective and of every
/// wait for another rank's message.
pub struct HandleSlot {
    state: Mutex<SlotState>,
    /// Windows created on the communicator so far (by this rank): every
    /// rank creates them collectively in the same order, so the count
    /// names a window alike on every rank (its fences' votes carry it).
    windows: std::sync::atomic::AtomicU64,
}

impl Default for HandleSlot {
    fn default() -> Self {
        HandleSlot::new()
    }
}

impl std::fmt::Debug for HandleSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.lock() {
            SlotState::Empty => "empty",
            SlotState::Starting => "starting",
            SlotState::InFlight { .. } => "in flight",
        };
        f.debug_struct("HandleSlot").field("state", &state).finish()
    }
}

impl HandleSlot {
    /// An empty slot.
    pub fn new() -> Self {
        HandleSlot {
            state: Mutex::new(SlotState::Empty),
            windows: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The serial number of the next window created on the communicator
    /// (0, 1, 2, … in creation order, the same on every rank).
    pub fn next_window_serial(&self) -> u64 {
        self.windows
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes the handle in flight, if any: waits for its operations and
    /// releases its locks; its `wait` then returns at once, with the
    /// outcome (an error too). Call it before anything that may wait for
    /// another rank. A start in progress (on another thread of this rank)
    /// is left alone: it waits only for locks above those it holds.
    pub fn settle(&self) {
        let mut state = self.lock();
        if let SlotState::InFlight { .. } = &*state {
            if let SlotState::InFlight { flight, outcome } =
                std::mem::replace(&mut *state, SlotState::Empty)
            {
                // the only place a flight is closed, under the slot's lock:
                // whoever comes next finds the outcome set
                let _ = outcome.set(flight.close());
            }
        }
    }

    /// Whether a handle of this rank is in flight (or being started).
    pub fn is_busy(&self) -> bool {
        !matches!(*self.lock(), SlotState::Empty)
    }

    /// Claims the slot for a start. Error: a handle is in flight or being
    /// started.
    pub(crate) fn claim(&self) -> Result<Claim<'_>> {
        let mut state = self.lock();
        match &*state {
            SlotState::Empty => {
                *state = SlotState::Starting;
                Ok(Claim {
                    slot: self,
                    installed: false,
                })
            }
            SlotState::Starting => Err(Error::HandleInFlight(
                "another thread of this rank is starting a non-blocking block operation on this \
                 communicator"
                    .into(),
            )),
            SlotState::InFlight { .. } => Err(Error::HandleInFlight(
                "this rank already has a non-blocking block operation in flight on this \
                 communicator (one at a time, on any of its arrays): wait for it first; any call \
                 that may wait for another rank (a lock, a collective) completes it, also a \
                 leaked one"
                    .into(),
            )),
        }
    }

    /// Completes the handle whose outcome cell is `outcome` if it is still
    /// in flight, and returns its outcome.
    pub(crate) fn settle_handle(&self, outcome: &Arc<Outcome>) -> Result<()> {
        {
            let state = self.lock();
            let ours = matches!(&*state, SlotState::InFlight { outcome: o, .. } if Arc::ptr_eq(o, outcome));
            drop(state);
            if ours {
                self.settle();
            }
        }
        outcome.get().cloned().unwrap_or_else(|| {
            Err(Error::Backend(
                "a non-blocking handle's operations were never completed".into(),
            ))
        })
    }
}

/// A claimed slot: a start in progress. Dropped without
/// [`Claim::install`] (the start failed), the slot is empty again.
pub(crate) struct Claim<'s> {
    slot: &'s HandleSlot,
    installed: bool,
}

impl Claim<'_> {
    /// Puts the started operations in the slot; returns their outcome
    /// cell.
    pub(crate) fn install(mut self, flight: Box<dyn Flight>) -> Arc<Outcome> {
        let outcome = Arc::new(Outcome::new());
        *self.slot.lock() = SlotState::InFlight {
            flight,
            outcome: outcome.clone(),
        };
        self.installed = true;
        outcome
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.installed {
            *self.slot.lock() = SlotState::Empty;
        }
    }
}
