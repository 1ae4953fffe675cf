//! The allgather of a [`LamellarComm`](crate::LamellarComm): every PE
//! writes its contribution into its part of a persistent scratch region
//! (or, when some PE's does not fit, of a temporary region), and every PE
//! reads the others' parts between two barriers.

use distarray::{Error, Result};
use lamellar::memregion::prelude::*;

use super::Comm;

/// Bytes per PE that [`OneSidedComm::allgather`] moves through the
/// persistent scratch region; larger contributions use a temporary region.
///
/// [`OneSidedComm::allgather`]: distarray::OneSidedComm::allgather
const SCRATCH_BYTES: usize = 64 * 1024;
pub(super) const SCRATCH_WORDS: usize = SCRATCH_BYTES / 8;

impl Comm {
    /// Allgather of byte strings (collective).
    pub(super) fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let _g = self.coll_guard();
        self.allgather_bytes_locked(mine)
    }

    /// Allgather of byte strings (collective; the caller holds the guard).
    pub(super) fn allgather_bytes_locked(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let inner = &*self.inner;
        let (me, n) = (inner.rank, inner.size);
        // Nobody still reads the scratch region from the previous call.
        self.sync();
        let fits = mine.len() <= SCRATCH_BYTES;
        // SAFETY: this PE's part of the scratch region is written only here,
        // between two barriers during which no PE reads it; the slice is
        // dropped before the second barrier.
        unsafe {
            let words = inner.scratch.as_mut_slice();
            words[0] = mine.len() as u64;
            if fits {
                let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut words[1..]);
                dst[..mine.len()].copy_from_slice(mine);
            }
        }
        self.sync();
        let mut lens = Vec::with_capacity(n);
        for pe in 0..n {
            let len = if pe == me {
                mine.len()
            } else {
                // SAFETY: word 0 of `pe`'s part exists (the region has
                // SCRATCH_WORDS + 1 words) and is not written until the next
                // call's first barrier.
                unsafe { inner.scratch.get(pe, 0).block() as usize }
            };
            lens.push(len);
        }
        let max = lens.iter().copied().max().unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        if max <= SCRATCH_BYTES {
            for (pe, &len) in lens.iter().enumerate() {
                if pe == me {
                    out.push(mine.to_vec());
                } else if len == 0 {
                    out.push(Vec::new());
                } else {
                    // SAFETY: words 1..=ceil(len / 8) of `pe`'s part were
                    // written before the barrier and stay unchanged until the
                    // next call's first barrier.
                    let words = unsafe { inner.scratch.get_buffer(pe, 1, len.div_ceil(8)).block() };
                    out.push(bytemuck::cast_slice::<u64, u8>(&words)[..len].to_vec());
                }
            }
            return Ok(out);
        }
        // Every PE saw the same lengths, so every PE takes this branch: a
        // temporary region large enough for the largest contribution.
        // Lamellar frees it once every PE has dropped its handle.
        let big = inner
            .world
            .try_alloc_shared_mem_region::<u64>(max.div_ceil(8))
            .block()
            .map_err(|e| Error::Backend(format!("allocating an allgather region: {e}")))?;
        // SAFETY: the region is new; only this PE writes its part, before the
        // barrier below, after which it is only read.
        unsafe {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(big.as_mut_slice());
            dst[..mine.len()].copy_from_slice(mine);
        }
        self.sync();
        for (pe, &len) in lens.iter().enumerate() {
            if pe == me {
                out.push(mine.to_vec());
            } else if len == 0 {
                out.push(Vec::new());
            } else {
                // SAFETY: in bounds (the region holds `max >= len` bytes per
                // PE); written before the barrier, read-only afterwards.
                let words = unsafe { big.get_buffer(pe, 0, len.div_ceil(8)).block() };
                out.push(bytemuck::cast_slice::<u64, u8>(&words)[..len].to_vec());
            }
        }
        Ok(out)
    }
}
