//! Quick smoke test while the conformance suite is not available.
use distarray::{AccumulateOp, DistArray, LockKind, OneSidedComm, Window};
use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let (me, p) = (comm.rank(), comm.size());
    let all = comm.allgather(&vec![me as f64; me])?;
    assert_eq!(all.len(), p);
    let w = comm.create_window::<i64>(4 + me)?;
    w.lock(me, LockKind::Shared)?;
    assert!(w.with_local(|s| s.iter().all(|&x| x == 0))?);
    w.unlock(me)?;
    comm.barrier()?;
    for t in 0..p {
        w.lock(t, LockKind::Shared)?;
        w.accumulate(t, 0, &[1, 2], AccumulateOp::Sum)?;
        w.unlock(t)?;
    }
    comm.barrier()?;
    w.lock(me, LockKind::Shared)?;
    let v = w.with_local(|s| s.to_vec())?;
    w.unlock(me)?;
    assert_eq!(&v[..2], &[p as i64, 2 * p as i64]);
    w.fence()?;
    w.put((me + 1) % p, 3, &[me as i64])?;
    w.fence()?;
    let v = w.with_local(|s| s[3])?;
    assert_eq!(v, ((me + p - 1) % p) as i64);
    w.fence_end()?;
    let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [7, 5], |[i, j]| (i * 5 + j) as f64)?;
    assert_eq!(a.get([6, 4])?, 34.0);
    assert_eq!(a.sum()?, (0..35).sum::<usize>() as f64);
    drop(w);
    if me == 0 {
        println!("smoke: ok on {p} ranks");
    }
    Ok(())
}
