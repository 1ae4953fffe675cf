//! [`LocalViews`]: the local views a rank has open on its own part of a
//! window, and its RMA operations on that part in progress.

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct ViewCounts {
    /// Read-only local views alive.
    shared: usize,
    /// A mutable local view is alive.
    mutable: bool,
    /// RMA reads of the own part in progress (between approval and return).
    reads: usize,
    /// RMA writes of the own part in progress.
    writes: usize,
}

/// The local views (`with_local` / `with_local_mut`) a rank has open on its
/// own part of one window, and the RMA operations of that rank on its own
/// part that are in progress: a view and an access that could race (any view
/// against a write, a mutable view against anything) never coexist — the
/// later one is an [`Error::Conflict`]. Only accesses of a rank to its *own*
/// part go through here; other ranks are kept out by the locks (see
/// [`WindowState`](super::WindowState)).
#[derive(Debug, Default)]
pub struct LocalViews {
    counts: Mutex<ViewCounts>,
}

impl LocalViews {
    fn counts(&self) -> MutexGuard<'_, ViewCounts> {
        // Counter updates only: a poisoned mutex still holds consistent data.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an RMA access of rank `me` to its own part until the
    /// returned guard drops; fails if it would race with a live view.
    pub fn begin_access(&self, me: usize, write: bool) -> Result<AccessGuard<'_>> {
        let mut v = self.counts();
        if v.mutable || (write && v.shared > 0) {
            return Err(Error::Conflict {
                target: me,
                reason: if write {
                    "write while the owner holds a local view".into()
                } else {
                    "read while the owner holds a mutable local view".into()
                },
            });
        }
        if write {
            v.writes += 1;
        } else {
            v.reads += 1;
        }
        Ok(AccessGuard { views: self, write })
    }

    /// Registers a view of rank `me`'s part until the returned guard drops
    /// (also on unwind). A mutable view excludes every other view and every
    /// RMA access in progress; a shared one excludes writes.
    pub fn open(&self, me: usize, mutable: bool) -> Result<ViewGuard<'_>> {
        let mut v = self.counts();
        let busy = v.mutable || v.writes > 0 || (mutable && (v.shared > 0 || v.reads > 0));
        if busy {
            return Err(Error::Conflict {
                target: me,
                reason: "a local view that conflicts with another local view or with an RMA \
                         operation of this rank on its own part"
                    .into(),
            });
        }
        if mutable {
            v.mutable = true;
        } else {
            v.shared += 1;
        }
        Ok(ViewGuard {
            views: self,
            mutable,
        })
    }
}

/// A registered local view; unregisters it when dropped.
#[derive(Debug)]
pub struct ViewGuard<'a> {
    views: &'a LocalViews,
    mutable: bool,
}

impl Drop for ViewGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let mut v = self.views.counts();
        if self.mutable {
            v.mutable = false;
        } else {
            v.shared -= 1;
        }
    }
}

/// A registered RMA access of a rank to its own part; unregisters it when
/// dropped.
#[derive(Debug)]
pub struct AccessGuard<'a> {
    views: &'a LocalViews,
    write: bool,
}

impl Drop for AccessGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let mut v = self.views.counts();
        if self.write {
            v.writes -= 1;
        } else {
            v.reads -= 1;
        }
    }
}
