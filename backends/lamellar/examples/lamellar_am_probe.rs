//! Probe: do raw Lamellar active messages (no distarray involved) work on
//! this lamellae? Each PE sends its right neighbour one small active
//! message and three carrying 8, 1000 and 100 000 bytes, and prints the
//! replies. On `shmem` they do; over libfabric `tcp` with Lamellar 0.8.1
//! the target panics at the first one (`local_alloc_and_offset_from_remote_pe_and_addr
//! failed`), which is why this backend uses no active messages on a network
//! lamellae (see BENCHMARKS-lamellar.md). Rerun it to test a new Lamellar:
//!
//! ```text
//! target/release/distarray-lamellar-run -n 2 -- target/release/examples/lamellar_am_probe
//! scripts/lamellar-network.sh --no-build loopback -- target/release/examples/lamellar_am_probe
//! ```
use lamellar::active_messaging::prelude::*;

#[lamellar::AmData(Debug, Clone)]
struct Probe {
    bytes: Vec<u8>,
}

#[lamellar::am]
impl LamellarAM for Probe {
    async fn exec(self) -> usize {
        self.bytes.len()
    }
}

#[lamellar::AmData(Debug, Clone)]
struct Small {
    x: usize,
}

#[lamellar::am]
impl LamellarAM for Small {
    async fn exec(self) -> usize {
        self.x + 1
    }
}

fn main() {
    let world = lamellar::LamellarWorldBuilder::new().build();
    let me = world.my_pe();
    let other = (me + 1) % world.num_pes();
    world.barrier();
    let r = world.exec_am_pe(other, Small { x: me }).block();
    println!("PE {me}: small AM -> {r}");
    for n in [8usize, 1000, 100_000] {
        let r = world.exec_am_pe(other, Probe { bytes: vec![1; n] }).block();
        println!("PE {me}: AM with {n} bytes -> {r}");
    }
    world.barrier();
}
