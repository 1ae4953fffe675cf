//! The 3-D stencil driver: explicit diffusion steps
//! `u ← (1 − 6ν) u + ν Σ six neighbours` on a periodic `n³` grid, the
//! array tiled over a 3-D process grid. The idiomatic form: two
//! [`Ghosted`] arrays (each rank's part stored inside its ghost margins),
//! per step one ghost update (faces only, one message per neighbour) and
//! the 7-point [`Stencil`] from one into the other — no copy of the part.
//! Checks the result against a serial run of the same kernel on the whole
//! grid (bit for bit: the stencil's evaluation order does not depend on
//! the partition) and prints the time per step.

use std::time::Instant;

use distarray::stencil::{self, Stencil};
use distarray::{DistArray, Ghosted, OneSidedComm, Result};

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
            if p.is_multiple_of(a * b) {
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

/// The diffusion step as a stencil: `(1 − 6ν)` at the centre, `ν` at the
/// six neighbours.
fn diffusion() -> Stencil<f64, 3> {
    Stencil::star(1, |o| if o == [0, 0, 0] { 1.0 - 6.0 * NU } else { NU }).expect("radius 1")
}

/// The whole periodic grid with one ghost layer, row-major over `n + 2`.
fn padded(u: &[f64], n: usize) -> Vec<f64> {
    let e = n + 2;
    let w = |v: usize| (v + n - 1) % n;
    (0..e * e * e)
        .map(|l| u[(w(l / (e * e)) * n + w((l / e) % e)) * n + w(l % e)])
        .collect()
}

/// The serial reference: the same stencil on the whole periodic grid.
fn serial(n: usize, steps: usize) -> Vec<f64> {
    let st = diffusion();
    let mut u: Vec<f64> = (0..n * n * n)
        .map(|l| initial([l / (n * n), (l / n) % n, l % n], n))
        .collect();
    let e = n + 2;
    for _ in 0..steps {
        let ext = padded(&u, n);
        stencil::apply(
            &st,
            &ext,
            [e, e, e],
            [1..n + 1, 1..n + 1, 1..n + 1],
            &mut u,
            false,
        )
        .expect("serial stencil");
    }
    u
}

/// Runs the driver on one rank; returns the seconds per step (the slowest
/// rank's, the same on every rank).
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> Result<f64> {
    let n = o.n;
    let grid = grid_3d(comm.size());
    let u = DistArray::<f64, _, 3>::with_grid(comm.clone(), grid, [n, n, n])?;
    let st = diffusion();
    // a 7-point stencil reads the faces only: 6 neighbours, not 26
    let mut cur = Ghosted::new_faces(&u, [1, 1, 1], [true, true, true])?;
    let mut nxt = Ghosted::new_faces(&u, [1, 1, 1], [true, true, true])?;
    cur.fill_with(|i| initial(i, n));
    // the compute floor: the same kernel on the whole grid, one thread, no
    // ghost exchange (the ghost cells filled once beforehand)
    let baseline = if o.baseline && comm.rank() == 0 {
        let e = n + 2;
        let all: Vec<f64> = (0..n * n * n)
            .map(|l| initial([l / (n * n), (l / n) % n, l % n], n))
            .collect();
        let ext = padded(&all, n);
        let mut out = vec![0.0; n * n * n];
        let t = Instant::now();
        for _ in 0..o.steps {
            stencil::apply(
                &st,
                std::hint::black_box(&ext),
                [e, e, e],
                [1..n + 1, 1..n + 1, 1..n + 1],
                &mut out,
                false,
            )?;
        }
        std::hint::black_box(&out);
        Some(t.elapsed().as_secs_f64() / o.steps.max(1) as f64)
    } else {
        None
    };
    u.barrier()?;
    let start = Instant::now();
    for _ in 0..o.steps {
        cur.update_ghosts()?;
        cur.apply_to(&st, &mut nxt, false)?;
        std::mem::swap(&mut cur, &mut nxt);
    }
    let mine = start.elapsed().as_secs_f64() / o.steps.max(1) as f64;
    let per_step = u
        .comm()
        .allgather(&[mine])?
        .iter()
        .map(|t| t[0])
        .fold(0.0, f64::max);
    cur.store(&u)?;
    if o.check {
        let got = u.to_vec()?;
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
