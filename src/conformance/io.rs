//! Zarr I/O and checkpoints (feature `zarr`): round trips between
//! partitions, a rank that owns nothing, every error on every rank, an
//! uncommitted checkpoint refused. The scratch directory is chosen by rank
//! 0 and broadcast, so every backend (threads, processes) agrees on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{expect_err, ok, Check};
use crate::comm::{Element, OneSidedComm};
use crate::error::Error;
use crate::io::{
    read_zarr, read_zarr_into, write_zarr, write_zarr_with, Checkpoint, CheckpointWriter,
    ZarrOptions,
};
use crate::{Complex64, DistArray};

/// The I/O checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("io_zarr_round_trips", round_trips::<C>),
        ("io_zarr_errors_on_every_rank", errors::<C>),
        ("io_checkpoint_commit_and_refusal", checkpoints::<C>),
    ]
}

/// A fresh scratch directory, the same on every rank (rank 0's choice).
fn scratch<C: OneSidedComm>(comm: &C, tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mine = if comm.rank() == 0 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!(
            "distarray-conf-{tag}-{}-{n}-{}",
            std::process::id(),
            comm.size()
        ));
        let _ = std::fs::remove_dir_all(&d);
        Ok(d.display().to_string())
    } else {
        Ok(String::new())
    };
    PathBuf::from(ok(
        comm,
        "broadcast the scratch path",
        crate::io::broadcast_path(comm, mine),
    ))
}

/// Removes the scratch directory (rank 0, after everyone is done).
fn cleanup<C: OneSidedComm>(comm: &C, dir: &Path) {
    ok(comm, "barrier", comm.barrier());
    if comm.rank() == 0 {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Part sizes over `size` ranks with the last rank owning nothing (when
/// there are at least 2 ranks).
fn lopsided(n: usize, size: usize) -> Vec<usize> {
    let mut v = crate::partition::distribute(n, size.saturating_sub(1).max(1));
    if size > 1 {
        v.push(0);
    }
    v
}

/// Writes `a` with odd chunks, reads it into `b` (another partition) and
/// checks every element against `f`.
fn trip<T: Element, C: OneSidedComm, const N: usize>(
    comm: &C,
    path: &Path,
    a: &DistArray<T, C, N>,
    b: &DistArray<T, C, N>,
    chunks: [usize; N],
    f: impl Fn([usize; N]) -> T,
) {
    let opts = ZarrOptions::default().chunk_shape(chunks);
    ok(comm, "write_zarr_with", write_zarr_with(a, path, &opts));
    ok(comm, "read_zarr_into", read_zarr_into(b, path));
    ok(
        comm,
        "compare",
        b.with_local(|l| {
            for (idx, v) in l.iter_global() {
                assert_eq!(
                    v,
                    f(idx),
                    "rank {}: element {idx:?} after a round trip",
                    comm.rank()
                );
            }
        }),
    );
}

fn round_trips<C: OneSidedComm>(comm: &C) {
    let dir = scratch(comm, "zarr");
    let p = comm.size();
    // 2-D f64: grid-ish partition written, lopsided rows read, 3 x 4 chunks
    let f2 = |[i, j]: [usize; 2]| (i * 1000 + j) as f64 * 0.5 - 7.25;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [11, 7], f2),
    );
    let b = ok(
        comm,
        "lopsided",
        DistArray::<f64, C, 2>::with_part_sizes(comm.clone(), [lopsided(11, p), vec![7]]),
    );
    trip(comm, &dir.join("f64.zarr"), &a, &b, [3, 4], f2);
    // the default partition, through read_zarr
    let c: DistArray<f64, C, 2> = ok(
        comm,
        "read_zarr",
        read_zarr(comm.clone(), dir.join("f64.zarr")),
    );
    assert_eq!(
        c.to_vec().unwrap(),
        a.to_vec().unwrap(),
        "read_zarr gives the written values"
    );
    // 1-D i32 with chunks larger than some parts
    let f1 = |[i]: [usize; 1]| (i as i32 * 7919) % 251 - 100;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<i32, C, 1>::from_fn(comm.clone(), [37], f1),
    );
    let b = ok(
        comm,
        "lopsided",
        DistArray::<i32, C, 1>::with_part_sizes(comm.clone(), [lopsided(37, p)]),
    );
    trip(comm, &dir.join("i32.zarr"), &a, &b, [10], f1);
    // 3-D complex, last dimension split when possible
    let f3 = |[i, j, k]: [usize; 3]| Complex64::new(i as f64 + 0.25 * j as f64, -(k as f64) / 8.0);
    let grid = if p.is_multiple_of(2) {
        [p / 2, 1, 2]
    } else {
        [p, 1, 1]
    };
    let a = ok(
        comm,
        "from_fn",
        DistArray::<Complex64, C, 3>::from_fn(comm.clone(), [5, 3, 6], f3),
    );
    let b = ok(
        comm,
        "grid",
        DistArray::<Complex64, C, 3>::with_grid(comm.clone(), grid, [5, 3, 6]),
    );
    trip(comm, &dir.join("c128.zarr"), &a, &b, [2, 2, 4], f3);
    // u8 with the default chunks
    let fu = |[i, j]: [usize; 2]| (i * 31 + j) as u8;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<u8, C, 2>::from_fn(comm.clone(), [9, 4], fu),
    );
    ok(comm, "write_zarr", write_zarr(&a, dir.join("u8.zarr")));
    let b: DistArray<u8, C, 2> = ok(
        comm,
        "read_zarr",
        read_zarr(comm.clone(), dir.join("u8.zarr")),
    );
    assert_eq!(b.to_vec().unwrap(), a.to_vec().unwrap());
    // block-cyclic arrays (parts of many boxes, blocks not dividing the
    // extents, ranks owning nothing at P > 3): written from one, read into
    // another and into a contiguous one, and the other way round
    let fc = |[i, j]: [usize; 2]| (i * 100 + j) as f64 - 0.5;
    let g = super::array::grid_2d(p);
    let a = ok(
        comm,
        "block_cyclic",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [9, 7], g, [2, 3]),
    );
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(fc)));
    let b = ok(
        comm,
        "element-cyclic",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [9, 7], [p, 1], [1, 1]),
    );
    trip(comm, &dir.join("cyclic.zarr"), &a, &b, [4, 4], fc);
    let c = ok(
        comm,
        "contiguous",
        DistArray::<f64, C, 2>::with_part_sizes(comm.clone(), [lopsided(9, p), vec![7]]),
    );
    ok(
        comm,
        "read into contiguous",
        read_zarr_into(&c, dir.join("cyclic.zarr")),
    );
    assert_eq!(
        c.to_vec().unwrap(),
        a.to_vec().unwrap(),
        "block-cyclic file read contiguously"
    );
    ok(
        comm,
        "write contiguous",
        write_zarr(&c, dir.join("contiguous.zarr")),
    );
    let d = ok(comm, "similar", a.similar::<f64>());
    ok(
        comm,
        "read into block-cyclic",
        read_zarr_into(&d, dir.join("contiguous.zarr")),
    );
    assert_eq!(
        d.to_vec().unwrap(),
        a.to_vec().unwrap(),
        "contiguous file read block-cyclically"
    );
    cleanup(comm, &dir);
}

fn errors<C: OneSidedComm>(comm: &C) {
    let dir = scratch(comm, "zarr-err");
    let a = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [6, 5], |[i, j]| (i + j) as f64),
    );
    let path = dir.join("a.zarr");
    ok(comm, "write", write_zarr(&a, &path));
    // a path that differs between ranks (only with 2 ranks or more)
    if comm.size() > 1 {
        let mine = dir.join(format!("r{}.zarr", comm.rank()));
        expect_err(comm, "path differs", write_zarr(&a, &mine), |e| {
            matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
        });
        expect_err(comm, "read path differs", read_zarr_into(&a, &mine), |e| {
            matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
        });
        // options that differ between ranks
        let opts = ZarrOptions::default().chunk_shape([1 + comm.rank() % 2, 5]);
        expect_err(
            comm,
            "options differ",
            write_zarr_with(&a, dir.join("o.zarr"), &opts),
            |e| matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. }),
        );
        mismatched_arrays(comm, &dir);
    }
    // a missing path
    expect_err(
        comm,
        "missing",
        read_zarr::<f64, C, 2>(comm.clone(), dir.join("nope.zarr")),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    // the wrong element type, dimension count and shape
    expect_err(
        comm,
        "wrong type",
        read_zarr::<f32, C, 2>(comm.clone(), &path),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    expect_err(
        comm,
        "wrong dims",
        read_zarr::<f64, C, 1>(comm.clone(), &path),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    let other = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [6, 4]),
    );
    expect_err(comm, "wrong shape", read_zarr_into(&other, &path), |e| {
        matches!(e, Error::ShapeMismatch { .. } | Error::PeerFailed { .. })
    });
    // a bad chunk shape
    let bad = ZarrOptions::default().chunk_shape([0, 5]);
    expect_err(
        comm,
        "zero chunk",
        write_zarr_with(&a, dir.join("z.zarr"), &bad),
        |e| matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. }),
    );
    // an existing array is not overwritten, and stays intact
    let zeros = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [6, 5]),
    );
    expect_err(comm, "exists", write_zarr(&zeros, &path), |e| {
        matches!(e, Error::Io { .. } | Error::PeerFailed { .. })
    });
    let back: DistArray<f64, C, 2> = ok(comm, "read", read_zarr(comm.clone(), &path));
    assert_eq!(
        back.to_vec().unwrap(),
        a.to_vec().unwrap(),
        "refused overwrite left the data"
    );
    // a directory that is not a Zarr array is never replaced
    if comm.rank() == 0 {
        std::fs::create_dir_all(dir.join("keep")).unwrap();
        std::fs::write(dir.join("keep").join("precious.txt"), b"x").unwrap();
    }
    ok(comm, "barrier", comm.barrier());
    expect_err(
        comm,
        "not zarr",
        write_zarr_with(
            &a,
            dir.join("keep"),
            &ZarrOptions::default().overwrite(true),
        ),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    assert!(dir.join("keep").join("precious.txt").exists());
    // a corrupted chunk: one flipped byte fails its checksum on every rank
    ok(
        comm,
        "write small chunks",
        write_zarr_with(
            &a,
            dir.join("c.zarr"),
            &ZarrOptions::default().chunk_shape([2, 5]),
        ),
    );
    if comm.rank() == 0 {
        let chunk = dir.join("c.zarr").join("c").join("1").join("0");
        let mut bytes = std::fs::read(&chunk).unwrap();
        bytes[3] ^= 0x40;
        std::fs::write(&chunk, bytes).unwrap();
    }
    ok(comm, "barrier", comm.barrier());
    expect_err(
        comm,
        "corrupted",
        read_zarr::<f64, C, 2>(comm.clone(), dir.join("c.zarr")),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    // a truncated chunk too
    if comm.rank() == 0 {
        let chunk = dir.join("c.zarr").join("c").join("2").join("0");
        let bytes = std::fs::read(&chunk).unwrap();
        std::fs::write(&chunk, &bytes[..bytes.len() / 2]).unwrap();
    }
    ok(comm, "barrier", comm.barrier());
    let b = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [6, 5]),
    );
    expect_err(
        comm,
        "truncated",
        read_zarr_into(&b, dir.join("c.zarr")),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    cleanup(comm, &dir);
}

/// Whether `e` is the error of a collective call whose arguments differ
/// between ranks.
fn invalid(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
}

/// A `[4 P, 5]` array dealt cyclically by rows (a part of many boxes on
/// every rank count) and one of the same shape split into row blocks.
fn cyclic_and_rows<C: OneSidedComm>(comm: &C) -> (DistArray<f64, C, 2>, DistArray<f64, C, 2>) {
    let p = comm.size();
    let shape = [4 * p, 5];
    let f = |[i, j]: [usize; 2]| (i * 10 + j) as f64;
    let cyclic = ok(
        comm,
        "block_cyclic",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), shape, [p, 1], [1, 1]),
    );
    assert!(cyclic.partitioning().is_block_cyclic());
    ok(comm, "fill", cyclic.with_local_mut(|mut l| l.fill_with(f)));
    let rows = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), shape, f),
    );
    (cyclic, rows)
}

/// Ranks passing different arrays to one collective call (a broken
/// contract): a block-cyclic array on rank 0 and a contiguous one of the
/// same shape elsewhere (the ranks used to take different paths, one
/// through a redistribution, and wait for each other in different
/// collectives), two contiguous partitions, two element types. An `Err`
/// on every rank, nothing written, and good calls work afterwards.
fn mismatched_arrays<C: OneSidedComm>(comm: &C, dir: &Path) {
    let rank = comm.rank();
    let (cyclic, rows) = cyclic_and_rows(comm);
    let shape = rows.shape();
    let cols = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [1, comm.size()], shape),
    );
    let single = ok(
        comm,
        "new",
        DistArray::<f32, C, 2>::new(comm.clone(), shape),
    );
    let refused = [
        dir.join("mixed-cyclic.zarr"),
        dir.join("mixed-grid.zarr"),
        dir.join("mixed-type.zarr"),
    ];
    let r = if rank == 0 {
        write_zarr(&cyclic, &refused[0])
    } else {
        write_zarr(&rows, &refused[0])
    };
    expect_err(comm, "write: block-cyclic on rank 0 only", r, invalid);
    let r = if rank == 0 {
        write_zarr(&rows, &refused[1])
    } else {
        write_zarr(&cols, &refused[1])
    };
    expect_err(comm, "write: partitions differ", r, invalid);
    let r = if rank == 0 {
        write_zarr(&rows, &refused[2])
    } else {
        write_zarr(&single, &refused[2])
    };
    expect_err(comm, "write: element types differ", r, invalid);
    ok(comm, "barrier", comm.barrier());
    for path in &refused {
        assert!(!path.exists(), "a refused write left {}", path.display());
    }
    // still in step: a good write, then the same mismatches on read
    let good = dir.join("cyclic.zarr");
    ok(comm, "write block-cyclic", write_zarr(&cyclic, &good));
    let back = ok(comm, "similar", rows.similar::<f64>());
    let r = if rank == 0 {
        read_zarr_into(&cyclic, &good)
    } else {
        read_zarr_into(&back, &good)
    };
    expect_err(comm, "read: block-cyclic on rank 0 only", r, invalid);
    let r = if rank == 0 {
        read_zarr_into(&back, &good)
    } else {
        read_zarr_into(&cols, &good)
    };
    expect_err(comm, "read: partitions differ", r, invalid);
    ok(comm, "read", read_zarr_into(&back, &good));
    assert_eq!(
        back.to_vec().unwrap(),
        rows.to_vec().unwrap(),
        "a good read after the refused ones"
    );
}

fn checkpoints<C: OneSidedComm>(comm: &C) {
    let root = scratch(comm, "ckpt");
    let p = comm.size();
    let fu = |[i, j]: [usize; 2]| (i * 10 + j) as f64 / 4.0;
    let u = ok(
        comm,
        "u",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [7, 6], fu),
    );
    let n = ok(
        comm,
        "n",
        DistArray::<i64, C, 1>::from_fn(comm.clone(), [9], |[i]| i as i64 - 4),
    );
    let mut ck = ok(
        comm,
        "create",
        CheckpointWriter::create(comm, &root, "step-1"),
    );
    ok(comm, "write u", ck.write("u", &u));
    ok(comm, "write n", ck.write("n", &n));
    expect_err(comm, "same array twice", ck.write("u", &u), |e| {
        matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
    });
    // a block-cyclic array on rank 0 and a contiguous one elsewhere: refused
    // on every rank, and the checkpoint goes on
    let (cyclic, rows) = cyclic_and_rows(comm);
    if p > 1 {
        let r = if comm.rank() == 0 {
            ck.write("c", &cyclic)
        } else {
            ck.write("c", &rows)
        };
        expect_err(comm, "block-cyclic on rank 0 only", r, invalid);
    }
    ok(comm, "write c", ck.write("c", &cyclic));
    ck.set_scalar("step", 1i64);
    ck.set_scalar("time", 0.1f64);
    ck.set_scalar("nan", f64::NAN);
    ok(comm, "commit", ck.commit());
    // a second checkpoint written but never committed
    let mut half = ok(
        comm,
        "create",
        CheckpointWriter::create(comm, &root, "step-2"),
    );
    ok(comm, "write u", half.write("u", &u));
    drop(half);
    // a checkpoint name is never reused
    expect_err(
        comm,
        "exists",
        CheckpointWriter::create(comm, &root, "step-1").map(|_| ()),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    // scalars that differ between ranks are refused at commit
    if p > 1 {
        let mut bad = ok(
            comm,
            "create",
            CheckpointWriter::create(comm, &root, "step-x"),
        );
        bad.set_scalar("step", comm.rank() as i64);
        expect_err(comm, "scalars differ", bad.commit(), |e| {
            matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. })
        });
    }
    assert_eq!(
        ok(comm, "list", Checkpoint::list(comm, &root)),
        vec!["step-1".to_string()]
    );
    expect_err(
        comm,
        "never committed",
        Checkpoint::open(comm, &root, "step-2").map(|_| ()),
        |e| match e {
            Error::Io { message, .. } => message.contains("never committed"),
            Error::PeerFailed { reason, .. } => reason.contains("never committed"),
            _ => false,
        },
    );
    let ck = ok(comm, "open_latest", Checkpoint::open_latest(comm, &root));
    assert_eq!(ck.name(), "step-1");
    assert_eq!(ck.scalar_i64("step").unwrap(), 1);
    assert_eq!(ck.scalar_f64("time").unwrap().to_bits(), 0.1f64.to_bits());
    assert!(ck.scalar_f64("nan").unwrap().is_nan());
    assert!(
        ck.scalar_f64("step").is_err(),
        "a scalar of another type is an error"
    );
    assert_eq!(
        ck.array_names(),
        vec!["c".to_string(), "n".to_string(), "u".to_string()]
    );
    // read on rank 0 into a block-cyclic array, elsewhere into a contiguous
    // one: refused on every rank; then a good read
    let back = ok(comm, "similar", rows.similar::<f64>());
    if p > 1 {
        let r = if comm.rank() == 0 {
            ck.read_into("c", &cyclic)
        } else {
            ck.read_into("c", &back)
        };
        expect_err(comm, "read: block-cyclic on rank 0 only", r, invalid);
    }
    ok(comm, "read_into c", ck.read_into("c", &back));
    assert_eq!(back.to_vec().unwrap(), rows.to_vec().unwrap());
    // read into another partition
    let v = ok(
        comm,
        "lopsided",
        DistArray::<f64, C, 2>::with_part_sizes(comm.clone(), [lopsided(7, p), vec![6]]),
    );
    ok(comm, "read_into", ck.read_into("u", &v));
    assert_eq!(v.to_vec().unwrap(), u.to_vec().unwrap());
    let m: DistArray<i64, C, 1> = ok(comm, "read", ck.read("n"));
    assert_eq!(m.to_vec().unwrap(), n.to_vec().unwrap());
    expect_err(
        comm,
        "wrong type",
        ck.read::<f32, 2>("u").map(|_| ()),
        |e| matches!(e, Error::Io { .. } | Error::PeerFailed { .. }),
    );
    // a deleted chunk inside a committed checkpoint is damage, not fill
    if comm.rank() == 0 {
        std::fs::remove_file(root.join("step-1").join("u").join("c").join("0").join("0")).unwrap();
    }
    ok(comm, "barrier", comm.barrier());
    expect_err(comm, "missing chunk", ck.read_into("u", &v), |e| {
        matches!(e, Error::Io { .. } | Error::PeerFailed { .. })
    });
    cleanup(comm, &root);
}
