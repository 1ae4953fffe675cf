//! [`LamellarComm`]: the [`OneSidedComm`] of one Lamellar world.
//!
//! One world per process (Lamellar allows no second one), created from the
//! environment: with `LAMELLAR_NUM_PES` set (as the launcher
//! `distarray-lamellar-run` does) the `shmem` lamellae joins the job named by
//! `LAMELLAR_PE_ID` / `LAMELLAR_JOB_ID`; without it a single PE runs on the
//! `local` lamellae.

use std::sync::{Arc, Mutex};

use distarray::{Element, Error, OneSidedComm, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;
use lamellar::Backend;

use crate::window::LamellarWindow;

/// Bytes per PE that [`OneSidedComm::allgather`] moves through the
/// persistent scratch region; larger contributions use a temporary region.
const SCRATCH_BYTES: usize = 64 * 1024;
const SCRATCH_WORDS: usize = SCRATCH_BYTES / 8;

/// The Lamellar backend's communicator: a cheap handle on the world of this
/// process.
///
/// Collective operations (`barrier`, `allgather`, `create_window`, window
/// `fence`s) must be called by every PE in the same order, from one thread
/// per PE.
#[derive(Clone)]
pub struct LamellarComm {
    inner: Arc<CommInner>,
}

struct CommInner {
    rank: usize,
    size: usize,
    /// Serialises collectives issued from several threads of one PE.
    coll: Mutex<()>,
    /// Word 0 of each PE's part: the byte length of its contribution;
    /// words 1.. its bytes (when they fit).
    scratch: SharedMemoryRegion<u64>,
    // Declared last: dropped after the region above.
    world: LamellarWorld,
}

/// How the world of a [`LamellarComm`] is built.
#[derive(Debug, Clone)]
pub struct LamellarCommBuilder {
    threads: Option<usize>,
    exit_on_panic: bool,
}

impl Default for LamellarCommBuilder {
    fn default() -> Self {
        LamellarCommBuilder {
            threads: None,
            exit_on_panic: true,
        }
    }
}

impl LamellarCommBuilder {
    /// Number of Lamellar worker threads (default: `LAMELLAR_THREADS`, else
    /// Lamellar's default, the number of cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Whether a panic anywhere in this process ends it at once (default
    /// `true`). Lamellar cannot recover from a panicking PE: its peers
    /// block in the next collective and the panicking process itself hangs
    /// in the runtime's shutdown. Exiting lets the launcher see the failure
    /// and stop the other PEs. The hook prints the usual panic message
    /// first and then exits with status 101 (the status of a panicking
    /// Rust `main`).
    pub fn exit_on_panic(mut self, yes: bool) -> Self {
        self.exit_on_panic = yes;
        self
    }

    /// Builds the world (collective over the job) and its communicator.
    ///
    /// Uses the `shmem` lamellae when `LAMELLAR_NUM_PES` is set, the
    /// `local` one (a single PE) otherwise. Must be called once per
    /// process; Lamellar panics on a second world. Lamellar insists on being
    /// started from the thread that first touched it, normally `main`.
    pub fn build(self) -> Result<LamellarComm> {
        let backend = match std::env::var("LAMELLAR_NUM_PES") {
            Ok(n) => {
                for var in ["LAMELLAR_NUM_PES", "LAMELLAR_PE_ID", "LAMELLAR_JOB_ID"] {
                    let val = std::env::var(var).map_err(|_| {
                        Error::Backend(format!(
                            "LAMELLAR_NUM_PES={n} is set but {var} is not: start the job \
                             with distarray-lamellar-run"
                        ))
                    })?;
                    val.parse::<usize>()
                        .map_err(|_| Error::Backend(format!("{var}={val:?} is not a number")))?;
                }
                Backend::Shmem
            }
            Err(_) => Backend::Local,
        };
        let default_hook = std::panic::take_hook();
        let mut builder = LamellarWorldBuilder::new().with_lamellae(backend);
        if let Some(t) = self.threads {
            builder = builder.set_num_threads(t);
        }
        let world = builder.build();
        if self.exit_on_panic {
            // Replaces Lamellar's hook (which tries a forced shutdown that
            // the shmem lamellae does not implement).
            let rank = world.my_pe();
            std::panic::set_hook(Box::new(move |info| {
                default_hook(info);
                eprintln!("distarray-lamellar: PE {rank} panicked; exiting so that the job ends");
                std::process::exit(101);
            }));
        } else {
            // Lamellar's own hook stays; keep ours unused.
            drop(default_hook);
        }
        let scratch = world
            .try_alloc_shared_mem_region::<u64>(SCRATCH_WORDS + 1)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the allgather scratch region: {e}")))?;
        world.barrier();
        Ok(LamellarComm {
            inner: Arc::new(CommInner {
                rank: world.my_pe(),
                size: world.num_pes(),
                coll: Mutex::new(()),
                scratch,
                world,
            }),
        })
    }
}

impl LamellarComm {
    /// Builds the world from the environment with default settings (see
    /// [`LamellarCommBuilder::build`]).
    pub fn from_env() -> Result<Self> {
        LamellarCommBuilder::default().build()
    }

    /// A builder for non-default settings.
    pub fn builder() -> LamellarCommBuilder {
        LamellarCommBuilder::default()
    }

    /// The underlying Lamellar world (for code that mixes distarray with raw
    /// Lamellar calls, e.g. benchmarks).
    pub fn world(&self) -> &LamellarWorld {
        &self.inner.world
    }

    fn coll_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.coll.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allgather of byte strings (collective).
    fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let inner = &*self.inner;
        let (me, n) = (inner.rank, inner.size);
        let _g = self.coll_guard();
        // Nobody still reads the scratch region from the previous call.
        inner.world.barrier();
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
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        inner.world.barrier();
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
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        inner.world.barrier();
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

impl OneSidedComm for LamellarComm {
    type Window<T: Element> = LamellarWindow<T>;

    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn size(&self) -> usize {
        self.inner.size
    }

    fn barrier(&self) -> Result<()> {
        // A failed PE ends the whole job (exit-on-panic hook + launcher), so
        // a barrier never has to report `Error::Aborted` here.
        let _g = self.coll_guard();
        self.inner.world.barrier();
        Ok(())
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        let parts = self.allgather_bytes(bytemuck::cast_slice(local))?;
        parts
            .into_iter()
            .map(|bytes| {
                if bytes.len() % std::mem::size_of::<T>() != 0 {
                    return Err(Error::Backend(format!(
                        "allgather received {} bytes, not a whole number of {:?} elements",
                        bytes.len(),
                        T::KIND
                    )));
                }
                let mut v = vec![T::ZERO; bytes.len() / std::mem::size_of::<T>()];
                bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes);
                Ok(v)
            })
            .collect()
    }

    fn create_window<T: Element>(&self, local_len: usize) -> Result<LamellarWindow<T>> {
        let lens: Vec<usize> = self
            .allgather(&[local_len as u64])?
            .into_iter()
            .map(|v| v[0] as usize)
            .collect();
        let _g = self.coll_guard();
        LamellarWindow::create(self.clone(), lens)
    }

    fn backend_name(&self) -> &'static str {
        "lamellar"
    }
}

impl std::fmt::Debug for LamellarComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LamellarComm")
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .finish()
    }
}
