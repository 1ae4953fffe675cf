//! The 3-D stencil driver: explicit diffusion steps
//! `u ← u + ν (Σ six neighbours − 6 u)` on a periodic `n³` grid, the array
//! tiled over a 3-D process grid, ghost layers through one [`Halo`]
//! refreshed per step. Checks the result against a serial run of the same
//! arithmetic (bit for bit) and prints the time per step.

use std::time::Instant;

use distarray::{DistArray, Halo, OneSidedComm, Result};

/// Options of the 3-D stencil driver.
pub struct Opts {
    /// Grid points per dimension.
    pub n: usize,
    /// Diffusion steps.
    pub steps: usize,
    /// Ranks (threads of the threaded backend).
    pub ranks: usize,
    /// Compare with a serial run (O(n³ · steps) on every rank).
    pub check: bool,
    /// Also time the serial run on rank 0 (the same-run baseline).
    pub baseline: bool,
}

impl Opts {
    /// `--n N --steps S --ranks P --no-check --baseline`.
    pub fn from_args() -> Self {
        let mut o = Opts {
            n: 64,
            steps: 20,
            ranks: 2,
            check: true,
            baseline: false,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let val = || args.get(i + 1).and_then(|v| v.parse().ok());
            let mut used = 2;
            match args[i].as_str() {
                "--n" => o.n = val().expect("--n N"),
                "--steps" => o.steps = val().expect("--steps S"),
                "--ranks" => o.ranks = val().expect("--ranks P"),
                "--no-check" => {
                    o.check = false;
                    used = 1;
                }
                "--baseline" => {
                    o.baseline = true;
                    used = 1;
                }
                a => panic!("unknown argument {a}"),
            }
            i += used;
        }
        o
    }
}

const NU: f64 = 0.1;

/// A process grid of three factors of `p`, as even as possible.
pub fn grid_3d(p: usize) -> [usize; 3] {
    let mut best = [p, 1, 1];
    for a in 1..=p {
        for b in 1..=p / a {
            if p % (a * b) == 0 {
                let c = p / (a * b);
                let spread = |g: [usize; 3]| g.iter().max().unwrap() - g.iter().min().unwrap();
                if spread([a, b, c]) < spread(best) {
                    best = [a, b, c];
                }
            }
        }
    }
    best
}

fn initial([i, j, k]: [usize; 3], n: usize) -> f64 {
    let x = |v: usize| (v as f64 + 0.5) / n as f64;
    (6.0 * x(i)).sin() * (4.0 * x(j)).cos() + x(k)
}

/// One step on a row-major extended box `ext` (ghost width 1) of interior
/// shape `s`, into `out` (row-major over `s`).
fn step(ext: &[f64], s: [usize; 3], out: &mut [f64]) {
    let (e1, e2) = (s[1] + 2, s[2] + 2);
    let at = |i: usize, j: usize, k: usize| (i * e1 + j) * e2 + k;
    let mut o = 0;
    for i in 1..=s[0] {
        for j in 1..=s[1] {
            for k in 1..=s[2] {
                let c = ext[at(i, j, k)];
                let nb = ext[at(i - 1, j, k)]
                    + ext[at(i + 1, j, k)]
                    + ext[at(i, j - 1, k)]
                    + ext[at(i, j + 1, k)]
                    + ext[at(i, j, k - 1)]
                    + ext[at(i, j, k + 1)];
                out[o] = c + NU * (nb - 6.0 * c);
                o += 1;
            }
        }
    }
}

/// The serial reference: the same arithmetic on the whole periodic grid.
fn serial(n: usize, steps: usize) -> Vec<f64> {
    let idx = |i: usize, j: usize, k: usize| (i * n + j) * n + k;
    let mut u: Vec<f64> = (0..n * n * n)
        .map(|l| initial([l / (n * n), (l / n) % n, l % n], n))
        .collect();
    let mut ext = vec![0.0; (n + 2).pow(3)];
    let mut next = vec![0.0; n * n * n];
    for _ in 0..steps {
        let e = n + 2;
        for i in 0..e {
            for j in 0..e {
                for k in 0..e {
                    let w = |v: usize| (v + n - 1) % n;
                    ext[(i * e + j) * e + k] = u[idx(w(i), w(j), w(k))];
                }
            }
        }
        step(&ext, [n, n, n], &mut next);
        std::mem::swap(&mut u, &mut next);
    }
    u
}

/// Runs the driver on one rank; returns the seconds per step (the slowest
/// rank's, the same on every rank).
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> Result<f64> {
    let n = o.n;
    let grid = grid_3d(comm.size());
    let u = DistArray::<f64, _, 3>::with_grid(comm.clone(), grid, [n, n, n])?;
    u.with_local_mut(|mut l| l.fill_with(|i| initial(i, n)))?;
    let v = u.similar::<f64>()?;
    // a 7-point stencil reads the faces only: 6 neighbours, not 26
    let mut halo = Halo::new_faces(&u, [1, 1, 1], [true, true, true])?;
    let s = u.local_shape();
    let (mut cur, mut nxt) = (&u, &v);
    // the compute floor: the same kernel on the whole grid, one thread, no
    // ghost exchange (the ghost cells filled once beforehand)
    let baseline = if o.baseline && comm.rank() == 0 {
        let e = n + 2;
        let ext: Vec<f64> = (0..e * e * e)
            .map(|l| {
                let w = |v: usize| (v + n - 1) % n;
                initial([w(l / (e * e)), w((l / e) % e), w(l % e)], n)
            })
            .collect();
        let mut out = vec![0.0; n * n * n];
        let t = Instant::now();
        for _ in 0..o.steps {
            step(std::hint::black_box(&ext), [n, n, n], &mut out);
        }
        std::hint::black_box(&out);
        Some(t.elapsed().as_secs_f64() / o.steps.max(1) as f64)
    } else {
        None
    };
    u.sync()?;
    let start = Instant::now();
    for _ in 0..o.steps {
        halo.refresh(cur)?;
        nxt.with_local_mut(|mut l| step(halo.as_slice(), s, l.as_mut_slice()))?;
        std::mem::swap(&mut cur, &mut nxt);
    }
    let mine = start.elapsed().as_secs_f64() / o.steps.max(1) as f64;
    let per_step = u
        .comm()
        .allgather(&[mine])?
        .iter()
        .map(|t| t[0])
        .fold(0.0, f64::max);
    cur.sync()?;
    if o.check {
        let got = cur.to_vec()?;
        let expect = serial(n, o.steps);
        if got != expect {
            let worst = got
                .iter()
                .zip(&expect)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            return Err(distarray::Error::InvalidArgument(format!(
                "stencil result differs from the serial run (max |diff| {worst:e})"
            )));
        }
    }
    if comm.rank() == 0 {
        println!(
            "3-D stencil: n = {n}, {} steps, {} ranks on grid {grid:?}: {:.3} ms per step{}",
            o.steps,
            comm.size(),
            per_step * 1e3,
            if o.check {
                ", equal to the serial run"
            } else {
                ""
            }
        );
        if let Some(b) = baseline {
            println!(
                "  baseline, the kernel alone on the whole grid (one thread, no ghost exchange): \
                 {:.3} ms per step; ratio distributed / baseline {:.2}",
                b * 1e3,
                per_step / b
            );
        }
    }
    Ok(per_step)
}
