//! Local kernel benchmark (one core): `kernels::dot`, `norm2`, `sum`,
//! `axpby`, `axpy_dot`, `cg_update`, the 5-point stencil
//! (`stencil5`, `stencil5_dot`) and `stencil::Stencil` (the PRK radius-2
//! star, accumulating; the 3-D 7-point Laplacian with its fused dot), each against the memory-bandwidth floor of
//! its own access pattern, measured in the same run by a reference loop that
//! moves the same bytes with trivial integer work (reads summed into 16
//! independent sums with the same software prefetch as the kernels, writes
//! as XOR with ordinary stores), compiled for the same vector width as the
//! kernels (AVX2 where the CPU has it). The floor of the read-only kernels (dot, norm2, sum) is the
//! single-core **read bandwidth**. Also times the single-accumulator dot of
//! the earlier code, for comparison.
//!
//! Two sizes per kernel: vectors far larger than the last-level cache
//! (DRAM bandwidth), and the Poisson CG example's 512 x 512 grid (2 MiB per
//! vector: cache bandwidth). Each figure is the best of the repetitions
//! (load on a shared machine only adds time), kernel and floor alternating.
//! Writes `bench-results/kernels.csv` and `bench-results/kernels.svg`.
//!
//! ```text
//! cargo bench --bench kernels
//! cargo bench --bench kernels -- 4194304 262144     # vector lengths
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use distarray::exact_sum::{ExactNorm, ExactSum};
use distarray::kernels::{self, Block2, Stencil5};
use distarray::stencil::{self, Stencil};

/// A kernel run and its floor: (name, bytes moved, kernel, floor).
type Case<'a> = (String, usize, Box<dyn FnMut() + 'a>, Box<dyn FnMut() + 'a>);

fn best_of(reps: usize, kernel: &mut dyn FnMut(), floor: &mut dyn FnMut()) -> (f64, f64) {
    let (mut tk, mut tf) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let t = Instant::now();
        floor();
        tf = tf.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        kernel();
        tk = tk.min(t.elapsed().as_secs_f64());
    }
    (tk, tf)
}

/// Runs `$body` compiled for AVX2 when the CPU has it (as the kernels do),
/// so that the floor loops use the same vector width as the kernels.
macro_rules! with_avx2 {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is available (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[allow(clippy::needless_return)]
            $body
        }
    };
}

/// The same software prefetch as the kernels' single-stream loops use
/// (2 KiB ahead), so that the floor is the best read loop, not a weaker one.
#[inline(always)]
fn prefetch_ahead(chunk: &[u64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = chunk.as_ptr().cast::<i8>();
        // SAFETY: a prefetch is a hint that never faults, for any address
        // (formed with wrapping arithmetic); SSE is x86-64 baseline.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2048));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2048 + 64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = chunk;
}

with_avx2! {
    /// Reads `a` (as u64 words) into 16 independent wrapping sums: memory
    /// is the only limit.
    fn read1(a: &[u64]) -> u64 {
        let mut acc = [0u64; 16];
        for c in a.chunks_exact(16) {
            prefetch_ahead(c);
            for l in 0..16 {
                acc[l] = acc[l].wrapping_add(c[l]);
            }
        }
        acc.iter().fold(0, |s, v| s.wrapping_add(*v))
    }
}

with_avx2! {
    /// Reads two buffers (16 independent sums of `a ^ b`).
    fn read2(a: &[u64], b: &[u64]) -> u64 {
        let mut acc = [0u64; 16];
        for (c, d) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
            prefetch_ahead(c);
            prefetch_ahead(d);
            for l in 0..16 {
                acc[l] = acc[l].wrapping_add(c[l] ^ d[l]);
            }
        }
        acc.iter().fold(0, |s, v| s.wrapping_add(*v))
    }
}

with_avx2! {
    /// `y ^= x`: reads both, writes `y`.
    fn xor_into(y: &mut [u64], x: &[u64]) -> () {
        for (a, b) in y.iter_mut().zip(x) {
            *a ^= *b;
        }
    }
}

with_avx2! {
    /// `y = x ^ 1`: reads `x`, writes `y` with ordinary stores (a memcpy
    /// may use non-temporal stores, which no kernel here does).
    fn copy_xor(y: &mut [u64], x: &[u64]) -> () {
        for (a, b) in y.iter_mut().zip(x) {
            *a = *b ^ 1;
        }
    }
}

with_avx2! {
    /// `z ^= p, w ^= q` in one pass (cg_update's pattern).
    fn xor_into2(z: &mut [u64], w: &mut [u64], p: &[u64], q: &[u64]) -> () {
        for (((a, b), c), d) in z.iter_mut().zip(w.iter_mut()).zip(p).zip(q) {
            *a ^= *c;
            *b ^= *d;
        }
    }
}

fn as_u64(v: &[f64]) -> &[u64] {
    bytemuck::cast_slice(v)
}

fn as_u64_mut(v: &mut [f64]) -> &mut [u64] {
    bytemuck::cast_slice_mut(v)
}

/// The single-accumulator dot product of the code before the kernels.
fn dot_running(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).fold(0.0, |s, (a, b)| s + a * b)
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 * 1e-3 - 0.5)
        .collect()
}

fn run(n: usize, reps: usize, csv: &mut String, report: &mut String) {
    let x = data(n, 1);
    let y = data(n, 2);
    let mut z = data(n, 3);
    let mut w = data(n, 4);
    let side = (n as f64).sqrt() as usize;
    let grid = side * side;
    let (xs, ys) = (
        std::cell::RefCell::new(y.clone()),
        std::cell::RefCell::new(z.clone()),
    );
    let st = Stencil5::<f64>::laplacian();
    let f = 8usize; // bytes per element
    let mut cases: Vec<Case<'_>> = Vec::new();
    let (xr, yr) = (&x, &y);
    cases.push((
        "dot".into(),
        2 * f * n,
        Box::new(move || {
            black_box(kernels::dot(black_box(xr), black_box(yr)));
        }),
        Box::new(move || {
            black_box(read2(as_u64(xr), as_u64(yr)));
        }),
    ));
    cases.push((
        "dot before (one running sum)".into(),
        2 * f * n,
        Box::new(move || {
            black_box(dot_running(black_box(xr), black_box(yr)));
        }),
        Box::new(move || {
            black_box(read2(as_u64(xr), as_u64(yr)));
        }),
    ));
    cases.push((
        "sum".into(),
        f * n,
        Box::new(move || {
            black_box(kernels::sum(black_box(xr)));
        }),
        Box::new(move || {
            black_box(read1(as_u64(xr)));
        }),
    ));
    cases.push((
        "norm2".into(),
        f * n,
        Box::new(move || {
            black_box(kernels::norm2(black_box(xr)));
        }),
        Box::new(move || {
            black_box(read1(as_u64(xr)));
        }),
    ));
    // the exact (P-independent) reductions, same data, same floors
    cases.push((
        "sum exact".into(),
        f * n,
        Box::new(move || {
            let mut acc = ExactSum::new();
            acc.add_slice(black_box(xr));
            black_box(acc.to_f64());
        }),
        Box::new(move || {
            black_box(read1(as_u64(xr)));
        }),
    ));
    cases.push((
        "dot exact".into(),
        2 * f * n,
        Box::new(move || {
            let mut acc = ExactSum::new();
            acc.add_products(black_box(xr), black_box(yr));
            black_box(acc.to_f64());
        }),
        Box::new(move || {
            black_box(read2(as_u64(xr), as_u64(yr)));
        }),
    ));
    cases.push((
        "norm2 exact".into(),
        f * n,
        Box::new(move || {
            let mut acc = ExactNorm::new();
            acc.add_slice(black_box(xr));
            black_box(acc.norm());
        }),
        Box::new(move || {
            black_box(read1(as_u64(xr)));
        }),
    ));
    let (xs, ys) = (&xs, &ys);
    cases.push((
        "axpby".into(),
        3 * f * n,
        Box::new(move || kernels::axpby(0.5, xr, 0.25, &mut xs.borrow_mut())),
        Box::new(move || xor_into(as_u64_mut(&mut ys.borrow_mut()), as_u64(xr))),
    ));
    cases.push((
        "axpy_dot".into(),
        3 * f * n,
        Box::new(move || {
            black_box(kernels::axpy_dot(1e-9, xr, &mut xs.borrow_mut()));
        }),
        Box::new(move || xor_into(as_u64_mut(&mut ys.borrow_mut()), as_u64(xr))),
    ));
    let (zr, wr) = (
        std::cell::RefCell::new(&mut z),
        std::cell::RefCell::new(&mut w),
    );
    let (zr, wr) = (&zr, &wr);
    cases.push((
        "cg_update".into(),
        6 * f * n,
        Box::new(move || {
            black_box(kernels::cg_update(
                1e-9,
                xr,
                yr,
                &mut zr.borrow_mut(),
                &mut wr.borrow_mut(),
            ));
        }),
        Box::new(move || {
            let mut zb = zr.borrow_mut();
            let mut wb = wr.borrow_mut();
            xor_into2(
                as_u64_mut(&mut zb),
                as_u64_mut(&mut wb),
                as_u64(xr),
                as_u64(yr),
            )
        }),
    ));
    cases.push((
        format!("stencil5 ({side}x{side})"),
        2 * f * grid,
        Box::new(move || {
            let b = Block2::rows(side, side, &xr[..grid], None, None);
            kernels::stencil5(&st, &b, &mut xs.borrow_mut()[..grid]).unwrap();
        }),
        Box::new(move || {
            copy_xor(
                as_u64_mut(&mut ys.borrow_mut()[..grid]),
                as_u64(&xr[..grid]),
            )
        }),
    ));
    cases.push((
        format!("stencil5_dot ({side}x{side})"),
        2 * f * grid,
        Box::new(move || {
            let b = Block2::rows(side, side, &xr[..grid], None, None);
            black_box(kernels::stencil5_dot(&st, &b, &mut xs.borrow_mut()[..grid]).unwrap());
        }),
        Box::new(move || {
            copy_xor(
                as_u64_mut(&mut ys.borrow_mut()[..grid]),
                as_u64(&xr[..grid]),
            )
        }),
    ));
    // `stencil::Stencil` of any radius: the PRK radius-2 star (9 points) on
    // the side x side grid, `OUT += S(IN)` over the interior (as the PRK
    // kernel and `Ghosted::apply_to` do), and the 7-point 3-D Laplacian on
    // a cube of about the same number of points. Floor: the same bytes
    // (read IN, read and write OUT) with trivial work.
    let star2 = Stencil::<f64, 2>::star(2, |o| {
        let r = o[0].unsigned_abs().max(o[1].unsigned_abs());
        if r == 0 {
            0.0
        } else {
            (o[0] + o[1]).signum() as f64 / (4 * r) as f64
        }
    })
    .unwrap();
    cases.push((
        format!("Stencil radius-2 star, OUT += S(IN) ({side}x{side})"),
        3 * f * grid,
        Box::new(move || {
            let region = [2..side - 2, 2..side - 2];
            let m = (side - 4) * (side - 4);
            stencil::apply(
                &star2,
                &xr[..grid],
                [side, side],
                region,
                &mut xs.borrow_mut()[..m],
                true,
            )
            .unwrap();
        }),
        Box::new(move || {
            // OUT ^= IN: read both, write OUT (the accumulate's traffic)
            xor_into(
                as_u64_mut(&mut ys.borrow_mut()[..grid]),
                as_u64(&xr[..grid]),
            )
        }),
    ));
    let c = (n as f64).cbrt() as usize;
    let cube = c * c * c;
    let lap3 = Stencil::<f64, 3>::neg_laplacian();
    cases.push((
        format!("Stencil 7-point 3-D, apply_dot ({c}x{c}x{c})"),
        2 * f * cube,
        Box::new(move || {
            let region = [1..c - 1, 1..c - 1, 1..c - 1];
            let m = (c - 2) * (c - 2) * (c - 2);
            black_box(
                stencil::apply_dot(
                    &lap3,
                    &xr[..cube],
                    [c, c, c],
                    region,
                    &mut xs.borrow_mut()[..m],
                )
                .unwrap(),
            );
        }),
        Box::new(move || {
            copy_xor(
                as_u64_mut(&mut ys.borrow_mut()[..cube]),
                as_u64(&xr[..cube]),
            )
        }),
    ));
    // the read bandwidth itself, for the report
    let mut read_t = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        black_box(read2(as_u64(&x), as_u64(&y)));
        read_t = read_t.min(t.elapsed().as_secs_f64());
    }
    let read_bw = (2 * f * n) as f64 / read_t / 1e9;
    writeln!(
        report,
        "n = {n} ({:.1} MiB per vector): single-core read bandwidth {read_bw:.1} GB/s",
        (f * n) as f64 / (1 << 20) as f64
    )
    .unwrap();
    for (name, bytes, mut k, mut fl) in cases {
        k(); // warm up (page faults, caches)
        let (tk, tf) = best_of(reps, &mut *k, &mut *fl);
        let frac = tf / tk;
        writeln!(
            report,
            "  {name:34} {:9.3} ms  {:6.1} GB/s  floor {:9.3} ms  = {:5.1}% of the floor",
            tk * 1e3,
            bytes as f64 / tk / 1e9,
            tf * 1e3,
            100.0 * frac
        )
        .unwrap();
        writeln!(
            csv,
            "{name},{n},{bytes},{tk:.6e},{tf:.6e},{read_bw:.2},{:.2},{frac:.4}",
            bytes as f64 / tk / 1e9
        )
        .unwrap();
    }
    black_box(&ys);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets`: a smoke pass that writes nothing
        let (mut csv, mut report) = (String::new(), String::new());
        run(4096, 2, &mut csv, &mut report);
        assert_eq!(csv.lines().count(), 14);
        println!("kernels bench: smoke run only (use `cargo bench` to measure)");
        return;
    }
    let sizes: Vec<usize> = {
        let v: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if v.is_empty() {
            vec![1 << 22, 1 << 18]
        } else {
            v
        }
    };
    let mut csv = String::from("kernel,n,bytes,time_s,floor_s,read_bw_gbs,gbs,fraction_of_floor\n");
    let mut report = String::new();
    for &n in &sizes {
        let reps = (2_000_000_000 / (n * 8)).clamp(20, 1000);
        run(n, reps, &mut csv, &mut report);
    }
    print!("{report}");
    std::fs::create_dir_all("bench-results").unwrap();
    std::fs::write("bench-results/kernels.csv", &csv).unwrap();
    std::fs::write("bench-results/kernels.svg", plot(&csv)).unwrap();
    println!("wrote bench-results/kernels.csv and bench-results/kernels.svg");
}

/// Horizontal bars: each kernel's fraction of its bandwidth floor, one bar
/// per size, with the 90 % target line.
fn plot(csv: &str) -> String {
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let (w, bar, m, left) = (720.0, 16.0, 40.0, 300.0);
    let h = m * 2.0 + bar * rows.len() as f64 + 20.0;
    let px = |v: f64| left + v.min(1.2) / 1.2 * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{}' y='20' text-anchor='middle' font-size='14'>distarray local kernels: fraction of the same-run bandwidth floor (one core)</text>\n",
        w / 2.0
    );
    for k in 0..=6 {
        let v = k as f64 * 0.2;
        let _ = writeln!(
            s,
            "<line x1='{x}' y1='{m}' x2='{x}' y2='{}' stroke='#ddd'/><text x='{x}' y='{}' text-anchor='middle'>{:.0}%</text>",
            h - m,
            h - m + 14.0,
            v * 100.0,
            x = px(v)
        );
    }
    let _ = writeln!(
        s,
        "<line x1='{x}' y1='{m}' x2='{x}' y2='{}' stroke='#d62728' stroke-dasharray='4 3'/>",
        h - m,
        x = px(0.9)
    );
    let sizes: Vec<&str> = {
        let mut v: Vec<&str> = rows.iter().map(|r| r[1]).collect();
        v.dedup();
        v
    };
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];
    for (i, r) in rows.iter().enumerate() {
        let y = m + bar * i as f64;
        let frac: f64 = r[7].parse().unwrap_or(0.0);
        let c = colors[sizes.iter().position(|s| *s == r[1]).unwrap_or(0) % colors.len()];
        let _ = writeln!(
            s,
            "<rect x='{left}' y='{}' width='{}' height='{}' fill='{c}'/><text x='{}' y='{}' text-anchor='end'>{} (n={})</text>",
            y + 2.0,
            px(frac) - left,
            bar - 4.0,
            left - 6.0,
            y + bar - 4.0,
            r[0],
            r[1]
        );
    }
    s.push_str("</svg>\n");
    s
}
