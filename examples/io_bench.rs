//! Zarr write and read bandwidth on the threaded backend, fsync included,
//! and the memory the I/O needs beyond the array (peak RSS). Compare with
//! the disk's own sequential bandwidth from `dd` in the same run:
//! `bench/io/run.sh` does both.
//!
//! ```text
//! cargo run --release --features zarr --example io_bench -- --gib 2 --ranks 2 --dir /var/tmp/iob
//! ```
//! Options: `--gib G` (array size, f64), `--ranks P`, `--dir D`,
//! `--chunk-mib M` (chunk size; default: the library's ~8 MiB),
//! `--drop-caches` (before the read, as root: a cold read from disk).

use std::time::Instant;

use distarray::io::{read_zarr_into, write_zarr_with, ZarrOptions};
use distarray::{threaded, DistArray, OneSidedComm};

/// The peak resident set of this process so far, in bytes.
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

fn main() -> distarray::Result<()> {
    let mut gib = 2.0f64;
    let mut ranks = 2usize;
    let mut dir = std::env::temp_dir().join("distarray-io-bench");
    let mut chunk_mib: Option<usize> = None;
    let mut drop_caches = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--gib" => gib = args[i + 1].parse().expect("--gib G"),
            "--ranks" => ranks = args[i + 1].parse().expect("--ranks P"),
            "--dir" => dir = args[i + 1].clone().into(),
            "--chunk-mib" => chunk_mib = Some(args[i + 1].parse().expect("--chunk-mib M")),
            "--drop-caches" => {
                drop_caches = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    let cols = 8192usize;
    let rows = ((gib * (1u64 << 30) as f64) / (8 * cols) as f64) as usize;
    let bytes = (rows * cols * 8) as f64;
    let path = dir.join("a.zarr");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let mut opts = ZarrOptions::default();
    if let Some(m) = chunk_mib {
        opts = opts.chunk_shape([((m << 20) / (8 * cols)).max(1), cols]);
    }
    threaded::run_ok(ranks, |comm| {
        let a = DistArray::<f64, _, 2>::new(comm.clone(), [rows, cols])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i * cols + j) as f64))?;
        comm.barrier()?;
        let before = peak_rss();
        comm.barrier()?;
        let t = Instant::now();
        write_zarr_with(&a, &path, &opts)?;
        let write = t.elapsed().as_secs_f64();
        let after_write = peak_rss();
        if drop_caches && comm.rank() == 0 {
            let _ = std::process::Command::new("sync").status();
            let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        }
        comm.barrier()?;
        a.fill(0.0)?;
        comm.barrier()?;
        let t = Instant::now();
        read_zarr_into(&a, &path)?;
        let read = t.elapsed().as_secs_f64();
        let ok = a.with_local(|l| {
            l.iter_global()
                .all(|([i, j], v)| v == (i * cols + j) as f64)
        })?;
        let ok = distarray::collective::allreduce_vote(&comm, Ok(u8::from(ok)), |x, y| x & y)? == 1;
        let after_read = peak_rss();
        if comm.rank() == 0 {
            println!(
                "zarr {:.2} GiB f64 on {ranks} rank(s): write {:.2} GB/s ({write:.2} s, fsync included), read {:.2} GB/s ({read:.2} s){}; peak RSS beyond the array: write {:.0} MiB, read {:.0} MiB; values {}",
                bytes / (1u64 << 30) as f64,
                bytes / write / 1e9,
                bytes / read / 1e9,
                if drop_caches { " cold" } else { " (page cache)" },
                after_write.saturating_sub(before) as f64 / (1u64 << 20) as f64,
                after_read.saturating_sub(after_write) as f64 / (1u64 << 20) as f64,
                if ok { "ok" } else { "WRONG" }
            );
        }
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
