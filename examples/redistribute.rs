//! The seed's redistribution example: a tiled matrix redistributed to a
//! column distribution and back, printing the arrays.
//!
//! ```text
//! cargo run --example redistribute            # 4 ranks on the threaded backend
//! cargo run --example redistribute -- 6       # 6 ranks
//! ```

use distarray::{threaded, DistArray, OneSidedComm};

fn main() -> distarray::Result<()> {
    let p: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("number of ranks"))
        .unwrap_or(4);
    let p1 = (1..=p)
        .filter(|d| p.is_multiple_of(*d) && d * d <= p)
        .max()
        .unwrap_or(1);
    let grid = [p1, p / p1];
    threaded::run_ok(p, |comm| {
        let me = comm.rank();
        // a 6 x 8 matrix on a tiled process grid, each element tagged with
        // the rank that owns it first
        let a = DistArray::<i32, _, 2>::with_grid(comm.clone(), grid, [6, 8])?;
        a.with_local_mut(|mut l| l.fill_with(|_| me as i32))?;
        a.barrier()?;
        if me == 0 {
            println!("tiled over a {grid:?} process grid (entry = original owner):\n{a}");
        }
        let cols = a.redistribute_grid([1, p])?;
        if me == 0 {
            println!(
                "redistributed to columns, grid {:?}:\n{cols}",
                cols.partitioning().grid()
            );
            for r in 0..p {
                println!("  rank {r} now owns {:?}", cols.local_indices(r)?);
            }
        }
        let back = cols.redistribute(a.partitioning().clone())?;
        let same = back.to_vec()? == a.to_vec()?;
        if me == 0 {
            println!("\nand back to the tiles:\n{back}");
            println!("round trip equal to the original: {same}");
        }
        assert!(same);
        Ok(())
    })?;
    Ok(())
}
