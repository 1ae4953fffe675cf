//! [`LamellarCommBuilder`]: builds the Lamellar world of this process
//! and the regions of the communicator's collectives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use distarray::{Error, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;
use lamellar::Backend;

use super::allgather::SCRATCH_WORDS;
use super::barrier::BAR_WORDS;
use super::mailboxes::Mailboxes;
use super::messages::Transport;
use super::regions::RegionCache;
use super::tree::{SLOT_WORDS, TREE_WORDS};
use super::{CommInner, LamellarComm};

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
    /// Uses the lamellae named by `LAMELLAR_BACKEND` when it is set (as
    /// Lamellar does), else the `shmem` lamellae when `LAMELLAR_NUM_PES` is
    /// set (a job of `distarray-lamellar-run`), else the `local` one (a
    /// single PE). Must be called once per
    /// process: a second call returns an error (clone the communicator
    /// instead). Lamellar insists on being
    /// started from the thread that first touched it, normally `main`.
    pub fn build(self) -> Result<LamellarComm> {
        let backend = if std::env::var_os("LAMELLAR_BACKEND").is_some() {
            // An explicit choice (e.g. a network lamellae on a cluster,
            // with the job started by that lamellae's launcher).
            Backend::default()
        } else if let Ok(n) = std::env::var("LAMELLAR_NUM_PES") {
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
        } else {
            Backend::Local
        };
        static BUILT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if BUILT.swap(true, Ordering::SeqCst) {
            return Err(Error::Backend(
                "a LamellarComm was already built in this process (Lamellar allows one world \
                 per process): clone the first one"
                    .into(),
            ));
        }
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
        let bar = world
            .try_alloc_shared_mem_region::<u64>(BAR_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the barrier region: {e}")))?;
        let tree = world
            .try_alloc_shared_mem_region::<u64>(TREE_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the collectives' region: {e}")))?;
        let gone = world
            .try_alloc_shared_mem_region::<u64>(world.num_pes())
            .block()
            .map_err(|e| Error::Backend(format!("allocating the departure flags: {e}")))?;
        let tree_out = world.alloc_one_sided_mem_region::<u64>(SLOT_WORDS);
        // SAFETY: the regions are new; nobody accesses them before the
        // barrier.
        unsafe {
            bar.as_mut_slice().fill(0);
            tree.as_mut_slice().fill(0);
            gone.as_mut_slice().fill(0);
        }
        // Lamellar 0.8.1's active messages fail on the libfabric lamellae
        // here (the target cannot resolve the sender's buffer of the
        // serialized message: `local_alloc_and_offset_from_remote_pe_and_addr
        // failed`, a panic in the runtime; see BENCHMARKS-lamellar.md,
        // "Across nodes"). So on a network lamellae (an explicit
        // LAMELLAR_BACKEND other than shmem / local) this backend uses no
        // active messages: neighbour messages go through RDMA mailboxes
        // and strided transfers are not packed, unless
        // DISTARRAY_LAMELLAR_AM=1 asks for active messages anyway.
        let network = std::env::var("LAMELLAR_BACKEND")
            .is_ok_and(|v| !matches!(v.as_str(), "shmem" | "local"));
        let ams = match std::env::var("DISTARRAY_LAMELLAR_AM").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => !network,
        };
        // DISTARRAY_LAMELLAR_PACK=0: strided transfers as one RDMA
        // operation per run instead of one packed active message.
        if !ams || std::env::var("DISTARRAY_LAMELLAR_PACK").is_ok_and(|v| v == "0") {
            crate::window::set_packed(false);
        }
        // Neighbour messages: RDMA mailboxes (faster than the active
        // messages also on shmem, see the `messages` module);
        // DISTARRAY_LAMELLAR_MESSAGES=am|rdma|off forces one (off: no
        // messages capability, halos take one-sided gets). The same value
        // on every PE (the mailboxes are collective).
        let transport = Transport::from_env()?;
        let mail = match transport {
            Transport::Mailboxes => Some(Mailboxes::alloc(&world)?),
            _ => None,
        };
        world.barrier();
        Ok(LamellarComm::own(Arc::new(CommInner {
            rank: world.my_pe(),
            size: world.num_pes(),
            coll: Mutex::new(()),
            epoch: AtomicU64::new(0),
            bar,
            cache: Mutex::new(RegionCache::default()),
            live: Mutex::default(),
            next_window: AtomicU64::new(0),
            data_ops: AtomicU64::new(0),
            scratch,
            tree,
            tree_out: Mutex::new(tree_out),
            tree_seq: AtomicU64::new(0),
            tree_safe: AtomicU64::new(0),
            seqs: Mutex::new(super::messages::Sequences::new(world.num_pes())),
            gone,
            handles: Arc::default(),
            transport,
            mail,
            world,
        })))
    }
}
