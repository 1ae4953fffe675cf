//! matvec benchmark on the threaded backend, against baselines measured in
//! the same run: (a) a serial dgemv on the same matrix (CBLAS with
//! `--features openblas`, the plain-Rust kernel otherwise), (b) the
//! memory-bandwidth floor 8·N²/bw with bw measured here (P threads reading
//! at once). Writes `bench-results/matvec.csv` and `bench-results/matvec.svg`.
//!
//! ```text
//! cargo bench --features openblas --bench matvec             # N = 5000 and 15000
//! cargo bench --features openblas --bench matvec -- 5000     # one size
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use distarray::linalg::{gemv_local, gemv_rust, matvec};
use distarray::{threaded, DistArray, OneSidedComm};

const REPS: usize = 7;

fn a_elem(i: usize, j: usize) -> f64 {
    ((i * 7 + j * 3) % 11) as f64 * 0.1 - 0.5
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Sums a buffer as 4 interleaved streams (like a 4-row gemv kernel reads
/// its matrix), integer adds so that only memory limits it. A single
/// stream reads ~25% slower here: it would underestimate the bandwidth
/// that dgemv reaches and so overstate the floor.
fn read4(b: &[u64]) -> u64 {
    let q = b.len() / 4 / 4 * 4;
    let (s0, rest) = b.split_at(q);
    let (s1, rest) = rest.split_at(q);
    let (s2, s3) = rest.split_at(q);
    let mut acc = [0u64; 16];
    let rows = s0
        .chunks_exact(4)
        .zip(s1.chunks_exact(4))
        .zip(s2.chunks_exact(4))
        .zip(s3.chunks_exact(4));
    for (((a, b), c), d) in rows {
        for l in 0..4 {
            acc[l] = acc[l].wrapping_add(a[l]);
            acc[4 + l] = acc[4 + l].wrapping_add(b[l]);
            acc[8 + l] = acc[8 + l].wrapping_add(c[l]);
            acc[12 + l] = acc[12 + l].wrapping_add(d[l]);
        }
    }
    acc.iter().fold(0, |x, y| x.wrapping_add(*y))
}

/// Read bandwidth in GB/s with `threads` threads reading `total_bytes` at
/// once, each its own buffer with [`read4`] (best of 8). Measured on the
/// matrix's size, so that the floor sees the same cache effects as the
/// product (the L3 of some machines here is reported as 300 MiB).
fn bandwidth(threads: usize, total_bytes: usize) -> f64 {
    let len = total_bytes / 8 / threads / 16 * 16;
    let bufs: Vec<Vec<u64>> = (0..threads)
        .map(|t| (0..len as u64).map(|v| v ^ t as u64).collect())
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..8 {
        let barrier = std::sync::Barrier::new(threads);
        let t0 = Instant::now();
        let sums: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = bufs
                .iter()
                .map(|b| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        read4(b)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(sums);
    }
    (threads * len * 8) as f64 / best / 1e9
}

/// Serial product on a plain matrix: (time, kernel name).
fn serial(n: usize, kernel: &str) -> f64 {
    let a: Vec<f64> = (0..n * n).map(|k| a_elem(k / n, k % n)).collect();
    let x: Vec<f64> = (0..n).map(|j| j as f64 * 1e-3).collect();
    let mut y = vec![0.0; n];
    let mut times = Vec::new();
    for _ in 0..REPS + 1 {
        let t = Instant::now();
        if kernel == "rust" {
            gemv_rust(&a, n, n, &x, &mut y);
        } else {
            gemv_local(&a, n, n, &x, &mut y);
        }
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&y);
    }
    times.remove(0);
    median(times)
}

/// Distributed product on `p` threaded ranks: median over reps of the
/// slowest rank's time.
fn distributed(n: usize, p: usize, rows: bool) -> f64 {
    let per_rank = threaded::run(p, |comm| -> distarray::Result<Vec<f64>> {
        let grid = if rows {
            [comm.size(), 1]
        } else {
            [1, comm.size()]
        };
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| a_elem(i, j)))?;
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[j]| j as f64 * 1e-3)?;
        let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [n])?;
        matvec(&a, &x, &mut y)?;
        let mut t = Vec::new();
        for _ in 0..REPS {
            comm.barrier()?;
            let t0 = Instant::now();
            matvec(&a, &x, &mut y)?;
            t.push(t0.elapsed().as_secs_f64());
        }
        Ok(t)
    })
    .expect("run");
    let per_rank: Vec<Vec<f64>> = per_rank.into_iter().map(|r| r.expect("rank")).collect();
    median(
        (0..REPS)
            .map(|k| per_rank.iter().map(|t| t[k]).fold(0.0, f64::max))
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not:
    // there, run a small smoke pass that measures and writes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        for rows in [true, false] {
            assert!(distributed(96, 2, rows).is_finite());
        }
        assert!(serial(96, "rust").is_finite());
        println!("matvec bench: smoke run only (use `cargo bench` to measure)");
        return;
    }
    let sizes: Vec<usize> = {
        let v: Vec<usize> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .filter_map(|a| a.parse().ok())
            .collect();
        if v.is_empty() {
            vec![5000, 15000]
        } else {
            v
        }
    };
    let blas = cfg!(feature = "blas");
    let kernel = if blas { "cblas" } else { "rust" };
    println!(
        "serial baseline kernel: {}",
        if blas {
            "CBLAS dgemv (OpenBLAS)"
        } else {
            "plain Rust (no BLAS feature)"
        }
    );
    let mut csv = String::from("n,p,dist,time_s,serial_blas_s,serial_rust_s,bw_gbs,floor_s,ratio_vs_serial,fraction_of_bw\n");
    let mut report = String::new();
    for &n in &sizes {
        let t_serial = serial(n, kernel);
        let t_rust = serial(n, "rust");
        let bytes = 8.0 * (n * n) as f64;
        let bw1 = bandwidth(1, n * n * 8);
        let bw2 = bandwidth(2, n * n * 8);
        writeln!(report, "N = {n}: read bandwidth over {:.0} MB: {bw1:.1} GB/s (1 thread), {bw2:.1} GB/s (2 threads)", bytes / 1e6).unwrap();
        writeln!(
            report,
            "  serial {kernel} dgemv {:.2} ms, serial Rust kernel {:.2} ms, floor(1) {:.2} ms, floor(2) {:.2} ms",
            t_serial * 1e3,
            t_rust * 1e3,
            bytes / bw1 / 1e6,
            bytes / bw2 / 1e6
        )
        .unwrap();
        for p in [1usize, 2] {
            for rows in [true, false] {
                let t = distributed(n, p, rows);
                let bw = if p == 1 { bw1 } else { bw2 };
                let floor = bytes / (bw * 1e9);
                let dist = if rows { "rows" } else { "cols" };
                writeln!(
                    report,
                    "  P = {p} {dist:4}: {:.2} ms  = {:.3}x serial dgemv, {:.0}% of measured bandwidth ({:.1} GB/s)",
                    t * 1e3,
                    t / t_serial,
                    100.0 * floor / t,
                    bytes / t / 1e9
                )
                .unwrap();
                writeln!(csv, "{n},{p},{dist},{t:.6},{t_serial:.6},{t_rust:.6},{bw:.2},{floor:.6},{:.4},{:.4}", t / t_serial, floor / t).unwrap();
            }
        }
    }
    print!("{report}");
    std::fs::create_dir_all("bench-results").unwrap();
    std::fs::write("bench-results/matvec.csv", &csv).unwrap();
    std::fs::write("bench-results/matvec.svg", plot(&csv)).unwrap();
    println!("wrote bench-results/matvec.csv and bench-results/matvec.svg");
}

/// A small SVG: time per product against P, one line per (N, distribution),
/// with the bandwidth floor dashed; times normalised by the serial dgemv.
fn plot(csv: &str) -> String {
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let (w, h, m) = (640.0, 400.0, 60.0);
    let ymax = rows
        .iter()
        .map(|r| r[3].parse::<f64>().unwrap() / r[4].parse::<f64>().unwrap())
        .fold(1.2f64, f64::max)
        * 1.1;
    let px = |p: f64| m + (p - 1.0) * (w - 2.0 * m);
    let py = |v: f64| h - m - v / ymax * (h - 2.0 * m);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{}' y='20' text-anchor='middle' font-size='14'>distarray matvec (threaded backend): time / serial dgemv</text>\n\
         <line x1='{m}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{m}' y1='{m}' x2='{m}' y2='{}' stroke='black'/>\n",
        w / 2.0, h - m, w - m, h - m, h - m
    );
    for p in [1.0, 2.0] {
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' text-anchor='middle'>P = {p}</text>",
            px(p),
            h - m + 20.0
        );
    }
    let mut k = 0.0;
    while k <= ymax {
        let _ = writeln!(s, "<text x='{}' y='{}' text-anchor='end'>{k:.1}</text><line x1='{m}' y1='{}' x2='{}' y2='{}' stroke='#ddd'/>", m - 5.0, py(k) + 4.0, py(k), w - m, py(k));
        k += 0.2;
    }
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    type Series = (String, Vec<(f64, f64, f64)>);
    let mut series: Vec<Series> = Vec::new();
    for r in &rows {
        let key = format!("N={} {}", r[0], r[2]);
        let (t, ser, floor) = (
            r[3].parse::<f64>().unwrap(),
            r[4].parse::<f64>().unwrap(),
            r[7].parse::<f64>().unwrap(),
        );
        let pt = (r[1].parse::<f64>().unwrap(), t / ser, floor / ser);
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(pt),
            None => series.push((key, vec![pt])),
        }
    }
    for (i, (key, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let line: Vec<String> = pts
            .iter()
            .map(|(p, v, _)| format!("{},{}", px(*p), py(*v)))
            .collect();
        let fl: Vec<String> = pts
            .iter()
            .map(|(p, _, f)| format!("{},{}", px(*p), py(*f)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points='{}' fill='none' stroke='{c}' stroke-width='2'/>",
            line.join(" ")
        );
        let _ = writeln!(
            s,
            "<polyline points='{}' fill='none' stroke='{c}' stroke-dasharray='4 3'/>",
            fl.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' fill='{c}'>{key} (dashed: bandwidth floor)</text>",
            w - m - 230.0,
            m + 15.0 * i as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
