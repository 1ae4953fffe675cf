//! [`OpenReads`]: reads from several targets in flight at once, completed
//! together — the safe wrapper around [`Window::get_runs_start`] that
//! [`GhostedBlock::sync_overlapped`](crate::GhostedBlock::sync_overlapped)
//! and the matvec plans use.

use std::marker::PhantomData;

use crate::comm::{Element, LockKind, Request};
use crate::error::Result;
use crate::rma::{RawWindow, Window};

/// Lock epochs opened on several targets with non-blocking operations
/// issued in them, completed together: [`Epochs::close`] (or the drop, also
/// when unwinding) waits for every request, then unlocks every target. The
/// core of [`OpenReads`] and of the handles of [`crate::pending`].
pub(crate) struct Epochs<'w, T: Element, R: RawWindow<T>> {
    win: &'w Window<T, R>,
    targets: Vec<usize>,
    /// The operations in flight (request-based where the backend has them).
    requests: Vec<Box<dyn Request + 'w>>,
    _elem: PhantomData<T>,
}

impl<'w, T: Element, R: RawWindow<T>> Epochs<'w, T, R> {
    /// No epoch open yet.
    pub(crate) fn new(win: &'w Window<T, R>) -> Self {
        Epochs {
            win,
            targets: Vec::new(),
            requests: Vec::new(),
            _elem: PhantomData,
        }
    }

    /// The window.
    pub(crate) fn window(&self) -> &'w Window<T, R> {
        self.win
    }

    /// The targets locked so far.
    pub(crate) fn targets(&self) -> &[usize] {
        &self.targets
    }

    /// Opens an epoch of `kind` on `target`, unless this set already holds
    /// one there (a block-cyclic block has several pieces on one owner).
    pub(crate) fn lock(&mut self, target: usize, kind: LockKind) -> Result<()> {
        if self.targets.contains(&target) {
            return Ok(());
        }
        self.win.lock(target, kind)?;
        self.targets.push(target);
        Ok(())
    }

    /// Keeps `req` until [`Epochs::close`].
    pub(crate) fn push(&mut self, req: Box<dyn Request + 'w>) {
        self.requests.push(req);
    }

    /// Waits for every request, then unlocks every opened target; the first
    /// error.
    pub(crate) fn close(&mut self) -> Result<()> {
        let mut out = Ok(());
        for r in self.requests.drain(..) {
            out = out.and(r.wait());
        }
        for t in self.targets.drain(..) {
            out = out.and(self.win.unlock(t));
        }
        out
    }
}

impl<T: Element, R: RawWindow<T>> Drop for Epochs<'_, T, R> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Shared epochs opened on several targets with non-blocking reads issued
/// in them ([`Epochs`]), completed by [`OpenReads::close`] or the drop.
///
/// Sound because the destination buffers are borrowed for `'b`, which
/// outlives this value, and this value cannot be leaked by callers outside
/// the crate (it is not public): every caller keeps it on its stack until
/// it is closed or dropped.
pub(crate) struct OpenReads<'w, 'b, T: Element, R: RawWindow<T>> {
    epochs: Epochs<'w, T, R>,
    _dst: PhantomData<&'b mut [T]>,
}

impl<'w, 'b, T: Element, R: RawWindow<T>> OpenReads<'w, 'b, T, R> {
    /// No epoch open yet.
    pub(crate) fn new(win: &'w Window<T, R>) -> Self {
        OpenReads {
            epochs: Epochs::new(win),
            _dst: PhantomData,
        }
    }

    /// Opens a shared epoch on `target` and issues the reads of `runs`
    /// into `dst`, which stays borrowed until the reads are complete.
    pub(crate) fn read(
        &mut self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &'b mut [T],
    ) -> Result<()> {
        self.epochs.lock(target, LockKind::Shared)?;
        // SAFETY: `dst` is borrowed for `'b`, longer than `self` lives;
        // nothing else can touch it meanwhile, and `self.epochs` waits for
        // the request (then unlocks `target`) in `close` or, at the latest,
        // in its drop — also when unwinding — before the borrow can end.
        let req = unsafe { self.epochs.window().get_runs_start(target, runs, dst)? };
        self.epochs.push(req);
        Ok(())
    }

    /// Waits for every read, then unlocks every opened target; the first
    /// error.
    pub(crate) fn close(&mut self) -> Result<()> {
        self.epochs.close()
    }
}
