//! The regions of a window ([`Regions`]) and their reuse: a
//! [`RegionCache`] of dropped windows' regions that every PE has free.

use std::any::{Any, TypeId};

use distarray::{Element, Error, Result};
use lamellar::memregion::prelude::*;

use super::Comm;
use crate::target::CTL_WORDS;

/// At most this many bytes per PE of dropped windows are kept for reuse.
const CACHE_BYTES: usize = 256 << 20;
/// At most this many dropped windows are kept for reuse.
const CACHE_ENTRIES: usize = 64;

/// The data and control regions of a window, identified by a sequence
/// number that is the same on every PE (regions are created collectively).
pub(crate) struct Regions {
    pub(crate) id: u64,
    pub(super) type_id: TypeId,
    /// Elements per PE.
    pub(crate) cap: usize,
    bytes: usize,
    /// A `SharedMemoryRegion<T>` for the window's `T`.
    data: Box<dyn Any + Send + Sync>,
    pub(crate) ctl: SharedMemoryRegion<u64>,
}

impl Drop for Regions {
    /// The packed transfers ([`crate::pack`]) no longer reach the memory.
    fn drop(&mut self) {
        crate::pack::unregister(self.id);
    }
}

impl Regions {
    /// The data region as a region of `T`s.
    pub(crate) fn data<T: Element>(&self) -> SharedMemoryRegion<T> {
        self.data
            .downcast_ref::<SharedMemoryRegion<T>>()
            .expect("window regions of the right type")
            .clone()
    }
}

/// Windows' regions whose window this PE has dropped.
///
/// Allocating a Lamellar region is slow (tens of milliseconds on `shmem`:
/// new shared-memory segments and internal barriers), so `create_window`
/// reuses the regions of dropped windows. A region may be reused only once
/// *every* PE has dropped its window: creation gathers each PE's list of
/// free region ids and picks one that is free everywhere, so all PEs pick
/// the same. Every PE's accesses to the old window were complete when it
/// dropped it, before it entered the collective creation.
#[derive(Default)]
pub(super) struct RegionCache {
    next_id: u64,
    pub(super) free: Vec<Regions>,
}

impl Comm {
    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, RegionCache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collective: allocates new regions for a window of `need` elements
    /// per PE (rounded up to a power of two, for reuse, below 1 Mi).
    pub(super) fn alloc_regions<T: Element>(&self, need: usize) -> Result<Regions> {
        let world = &self.inner.world;
        let cap = if need <= 1 << 20 {
            need.next_power_of_two()
        } else {
            need
        };
        let data = world
            .try_alloc_shared_mem_region::<T>(cap)
            .block()
            .map_err(|e| Error::Backend(format!("allocating a window of {cap} elements: {e}")))?;
        let ctl = world
            .try_alloc_shared_mem_region::<u64>(CTL_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating a window's control words: {e}")))?;
        let id = {
            let mut cache = self.cache();
            cache.next_id += 1;
            cache.next_id
        };
        // SAFETY: only the address of this PE's part is taken.
        let base = unsafe { data.as_mut_ptr() }
            .map_err(|e| Error::Backend(format!("window region has no local part: {e:?}")))?;
        crate::pack::register::<T>(id, base, cap);
        Ok(Regions {
            id,
            type_id: TypeId::of::<T>(),
            cap,
            bytes: cap * std::mem::size_of::<T>(),
            data: Box::new(data),
            ctl,
        })
    }

    /// Keeps the regions of a window this PE dropped for reuse (or frees
    /// them, oldest first, beyond the cache limits).
    pub(crate) fn recycle(&self, regions: Regions) {
        let mut cache = self.cache();
        cache.free.push(regions);
        let mut total: usize = cache.free.iter().map(|r| r.bytes).sum();
        while cache.free.len() > CACHE_ENTRIES || (total > CACHE_BYTES && cache.free.len() > 1) {
            let oldest = (0..cache.free.len())
                .min_by_key(|&i| cache.free[i].id)
                .expect("non-empty");
            total -= cache.free[oldest].bytes;
            cache.free.swap_remove(oldest);
        }
    }
}

/// Free bytes of the file system behind `/dev/shm`, if it can be told.
pub(super) fn shm_free_bytes() -> Option<u128> {
    let path = std::ffi::CString::new("/dev/shm").ok()?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a
    // valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid,
    // exclusively borrowed out-parameter of the right type.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u128 * st.f_frsize as u128)
}
