//! The 2-D heat equation, time-stepped with checkpoints: an explicit
//! 5-point update on an n x n grid (zero boundary), tiled over a 2-D
//! process grid, one ghost layer through a `Halo`. Every `--checkpoint-every`
//! steps the field and the step count go into an atomic checkpoint; with
//! `--restart` the run continues from the last committed one, on any
//! number of ranks and any grid. Each cell's update is a fixed expression
//! of its neighbours, so the field after step s is the same bits whatever
//! the number of ranks, the grid, or where the run was restarted: the
//! printed fingerprint (a hash of all the bits) shows it.

use std::path::PathBuf;
use std::time::Instant;

use distarray::io::{write_zarr_with, Checkpoint, CheckpointWriter, ZarrOptions};
use distarray::{DistArray, Halo, OneSidedComm, Result};

/// The driver's options.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Grid points per side.
    pub n: usize,
    /// Run until this step.
    pub steps: usize,
    /// A checkpoint every this many steps (0: none).
    pub checkpoint_every: usize,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Continue from the last committed checkpoint in `dir`.
    pub restart: bool,
    /// The process grid (rows x columns); `None`: as square as possible.
    pub grid: Option<[usize; 2]>,
    /// Rows per chunk in the checkpoints (`None`: the default chunks).
    pub chunk_rows: Option<usize>,
    /// Write the final field as a Zarr array here.
    pub out: Option<PathBuf>,
    /// Ranks (threaded backend only).
    pub ranks: usize,
}

impl Opts {
    /// Parses `--n N --steps S --checkpoint-every K --dir D --restart
    /// --grid RxC --chunk-rows R --out PATH --ranks P`.
    pub fn from_args() -> Self {
        Self::parse(std::env::args().skip(1).collect())
    }

    /// Parses the options from `args` (without the program name).
    pub fn parse(args: Vec<String>) -> Self {
        let mut o = Opts {
            n: 256,
            steps: 20,
            checkpoint_every: 10,
            dir: std::env::temp_dir().join("distarray-heat"),
            restart: false,
            grid: None,
            chunk_rows: None,
            out: None,
            ranks: 4,
        };
        let mut i = 0;
        while i < args.len() {
            let val = || args.get(i + 1).cloned().unwrap_or_default();
            match args[i].as_str() {
                "--n" => o.n = val().parse().expect("--n N"),
                "--steps" => o.steps = val().parse().expect("--steps S"),
                "--checkpoint-every" => {
                    o.checkpoint_every = val().parse().expect("--checkpoint-every K")
                }
                "--dir" => o.dir = PathBuf::from(val()),
                "--grid" => {
                    let v: Vec<usize> = val()
                        .split('x')
                        .map(|s| s.parse().expect("--grid RxC"))
                        .collect();
                    o.grid = Some([v[0], v[1]]);
                }
                "--chunk-rows" => o.chunk_rows = Some(val().parse().expect("--chunk-rows R")),
                "--out" => o.out = Some(PathBuf::from(val())),
                "--ranks" => o.ranks = val().parse().expect("--ranks P"),
                "--restart" => {
                    o.restart = true;
                    i += 1;
                    continue;
                }
                other => panic!("unknown option {other}"),
            }
            i += 2;
        }
        o
    }
}

/// The most square grid with `p` parts.
fn square_grid(p: usize) -> [usize; 2] {
    let mut r = (p as f64).sqrt() as usize;
    while !p.is_multiple_of(r) {
        r -= 1;
    }
    [r, p / r]
}

/// The initial field: exact values in [0, 1).
fn initial([i, j]: [usize; 2]) -> f64 {
    ((i * 7 + j * 13) % 17) as f64 / 17.0
}

/// One explicit step of the extended (ghosted) box `ext` (rows `w` values
/// apart) into `out`.
fn step(ext: &[f64], shape: [usize; 2], w: usize, out: &mut [f64]) {
    const R: f64 = 0.2;
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let c = ext[(i + 1) * w + j + 1];
            let sum = ext[i * w + j + 1]
                + ext[(i + 2) * w + j + 1]
                + ext[(i + 1) * w + j]
                + ext[(i + 1) * w + j + 2];
            out[i * shape[1] + j] = c + R * (sum - 4.0 * c);
        }
    }
}

/// FNV-1a over the bits of every value (row-major).
fn fingerprint(v: &[f64]) -> u64 {
    v.iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Runs the driver on one rank; returns the final field's fingerprint
/// (the same on every rank).
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> Result<u64> {
    let n = o.n;
    let grid = o.grid.unwrap_or_else(|| square_grid(comm.size()));
    let u = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    let first = if o.restart {
        let ck = Checkpoint::open_latest(&comm, &o.dir)?;
        ck.read_into("u", &u)?;
        let s = ck.scalar_u64("step")? as usize;
        if comm.rank() == 0 {
            println!(
                "restarted from checkpoint {} (step {s}, written by {} ranks) on {} ranks, grid {grid:?}",
                ck.name(),
                ck.written_by_ranks(),
                comm.size()
            );
        }
        s
    } else {
        u.with_local_mut(|mut l| l.fill_with(initial))?;
        0
    };
    let v = u.similar::<f64>()?;
    let mut halo = Halo::new_faces(&u, [1, 1], [false, false])?;
    let s = u.local_shape();
    let (mut cur, mut nxt) = (&u, &v);
    let mut ckpt_secs = 0.0;
    for k in first..o.steps {
        halo.refresh(cur)?;
        // the halo's rows: `pitch` values apart (the part, two ghosts, padding)
        let pitch = halo.extended_shape()[1];
        nxt.with_local_mut(|mut l| step(halo.as_slice(), s, pitch, l.as_mut_slice()))?;
        std::mem::swap(&mut cur, &mut nxt);
        let done = k + 1;
        if o.checkpoint_every > 0 && done % o.checkpoint_every == 0 {
            let t = Instant::now();
            let mut ck = CheckpointWriter::create(&comm, &o.dir, &format!("step-{done:06}"))?;
            if let Some(r) = o.chunk_rows {
                ck.set_options(ZarrOptions::default().chunk_shape([r, n]));
            }
            ck.write("u", cur)?;
            ck.set_scalar("step", done as u64);
            ck.commit()?;
            ckpt_secs += t.elapsed().as_secs_f64();
        }
    }
    if let Some(out) = &o.out {
        write_zarr_with(cur, out, &ZarrOptions::default().overwrite(true))?;
    }
    let fp = fingerprint(&cur.to_vec()?);
    if comm.rank() == 0 {
        println!(
            "heat: n = {n}, step {} on {} ranks, grid {grid:?}: fingerprint {fp:016x} ({ckpt_secs:.3} s in checkpoints)",
            o.steps.max(first),
            comm.size()
        );
    }
    Ok(fp)
}
