//! Checks of [`Halo`]: every cell of the extended box against the serial
//! array, for periodic and non-periodic dimensions, widths larger than a
//! neighbour's part, and empty parts.

use std::ops::Range;

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::partition::multi_index;
use crate::{DistArray, Halo};

/// The halo checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("halo_nd", halo_nd::<C>),
        ("halo_rma_calls", halo_rma_calls::<C>),
        ("halo_leaked_update", halo_leaked_update::<C>),
        ("halo_messages", halo_messages::<C>),
    ]
}

/// On a 2 x 2 grid of an 8 x 8 array with one ghost layer (not periodic),
/// rank 0 (rows 0..4, columns 0..4) needs the row below from rank 2, the
/// column to the right from rank 1 (strided in rank 1's memory) and the
/// corner from rank 3: the neighbours pack them, so each costs one `get`
/// in one epoch, refresh after refresh.
fn halo_rma_calls<C: OneSidedComm>(comm: &C) {
    if comm.size() != 4 {
        return;
    }
    let cc = crate::counting::CountingComm::new(comm.clone());
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f32, _, 2>::with_grid(cc.clone(), [2, 2], [8, 8]),
    );
    let mut h = ok(comm, "Halo::new", Halo::new(&a, [1, 1], [false, false]));
    assert_eq!(h.neighbours().len(), 3);
    // without corners the diagonal neighbour drops out
    let faces = ok(
        comm,
        "Halo::new_faces",
        Halo::new_faces(&a, [1, 1], [false, false]),
    );
    let mut nb = faces.neighbours();
    nb.sort_unstable();
    let me = comm.rank();
    let mut want = vec![me ^ 1, me ^ 2];
    want.sort_unstable();
    assert_eq!(nb, want, "rank {me}");
    for _ in 0..3 {
        ok(comm, "pack", h.pack(&a));
        ok(comm, "barrier", a.barrier());
        cc.reset();
        ok(comm, "fetch", h.fetch(&a));
        let c = cc.counts();
        // every rank has the same pattern, mirrored
        assert_eq!(c.gets_total(), 3, "rank {}: {c:?}", comm.rank());
        let me = comm.rank();
        let (right, below, diag) = (me ^ 1, me ^ 2, me ^ 3);
        assert_eq!(c.gets[right], 1, "rank {me}: {c:?}");
        assert_eq!(c.gets[below], 1, "rank {me}: {c:?}");
        assert_eq!(c.gets[diag], 1, "rank {me}: {c:?}");
        assert_eq!(
            c.locks[right] + c.locks[below] + c.locks[diag],
            3,
            "rank {me}: {c:?}"
        );
        ok(comm, "barrier", a.barrier());
    }
    // fetch_ghosts fills the ghosts only: the interior keeps what it held
    ok(comm, "fill", a.fill(3.0));
    ok(comm, "barrier", a.barrier());
    h.view_mut().fill(-1.0);
    ok(comm, "pack", h.pack(&a));
    ok(comm, "barrier", a.barrier());
    ok(comm, "fetch_ghosts", h.fetch_ghosts(&a));
    let own = h.own_range();
    let interior_cell = own.clone().map(|r| r.start as isize);
    assert_eq!(h.get(interior_cell), Some(-1.0));
    for (d, r) in own.iter().enumerate() {
        for high in [false, true] {
            let inside = if high { r.end < 8 } else { r.start > 0 };
            let want = if inside { 3.0 } else { -1.0 };
            assert!(
                h.ghost_face(d, high).iter().all(|&v| v == want),
                "face {d} {high}"
            );
        }
    }
    ok(comm, "barrier", a.barrier());
    // fetch refuses an array of another partition
    let b = ok(comm, "new", DistArray::<f32, _, 2>::new(cc.clone(), [8, 8]));
    expect_err(comm, "fetch from another partition", h.fetch(&b), |e| {
        matches!(e, Error::InvalidPartition(_))
    });
    ok(comm, "barrier", comm.barrier());
}

/// Where the backend has neighbour messages, a ghost update is one
/// exchange of one message per neighbour and nothing else: no `get`, no
/// lock, no collective (no barrier, no vote), update after update, blocking
/// or started; the ghosts hold the neighbours' values.
fn halo_messages<C: OneSidedComm>(comm: &C) {
    if comm.messages().is_none() {
        return;
    }
    let (me, p) = (comm.rank(), comm.size());
    let cc = crate::counting::CountingComm::new(comm.clone());
    let shape = [6, 8];
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, _, 2>::with_grid(cc.clone(), grid_2d(p), shape),
    );
    let f = |[i, j]: [usize; 2]| (i * 100 + j) as f64;
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(f)));
    for corners in [false, true] {
        let mut h = if corners {
            ok(comm, "Halo::new", Halo::new(&a, [1, 1], [false, true]))
        } else {
            ok(
                comm,
                "Halo::new_faces",
                Halo::new_faces(&a, [1, 1], [false, true]),
            )
        };
        let neighbours = h.neighbours();
        for round in 0..3 {
            ok(comm, "barrier", cc.barrier());
            cc.reset();
            if round == 1 {
                let u = ok(comm, "start_update", h.start_update(&a));
                ok(comm, "finish", u.finish());
            } else {
                ok(comm, "update_ghosts", h.update_ghosts(&a));
            }
            let c = cc.counts();
            assert_eq!(c.collectives, 0, "rank {me}, round {round}: {c:?}");
            assert_eq!(c.exchanges, 1, "rank {me}, round {round}: {c:?}");
            // a symmetric pattern: this rank sends to the ranks it receives from
            assert_eq!(c.messages, neighbours.len(), "rank {me}: {c:?}");
            assert_eq!(c.gets_total(), 0, "rank {me}: {c:?}");
            // (a view of the own part may lock it; no other rank's)
            let remote_locks: usize = (0..p).filter(|&r| r != me).map(|r| c.locks[r]).sum();
            assert_eq!(remote_locks, 0, "rank {me}: {c:?}");
            // a ghost face inside the array holds the neighbour's values
            let own = h.own_range();
            if own.iter().all(|r| !r.is_empty()) {
                let j = own[1].start as isize;
                if own[0].start > 0 {
                    let i = own[0].start - 1;
                    assert_eq!(h.get([i as isize, j]), Some(f([i, j as usize])));
                }
                let below = (own[1].start + shape[1] - 1) % shape[1];
                let i = own[0].start as isize;
                assert_eq!(h.get([i, j - 1]), Some(f([i as usize, below])));
            }
        }
    }
    ok(comm, "barrier", comm.barrier());
}

/// The global index whose value the cell at `g` (an index of the extended
/// box, negative or past the end beyond an edge) holds: wrapped around in
/// a periodic dimension; `None` past a non-periodic edge.
pub(super) fn wrapped<const N: usize>(
    g: [isize; N],
    shape: [usize; N],
    periodic: [bool; N],
) -> Option<[usize; N]> {
    let mut inside = [0usize; N];
    for d in 0..N {
        let n = shape[d] as isize;
        if (0..n).contains(&g[d]) {
            inside[d] = g[d] as usize;
        } else if periodic[d] {
            inside[d] = g[d].rem_euclid(n) as usize;
        } else {
            return None;
        }
    }
    Some(inside)
}

/// In how many dimensions the cell `rel` of an extended box (ghost width
/// `width` around the part `own`) lies outside the part.
pub(super) fn dims_outside<const N: usize>(
    rel: &[usize; N],
    width: [usize; N],
    own: &[Range<usize>; N],
) -> usize {
    (0..N)
        .filter(|&d| rel[d] < width[d] || rel[d] >= width[d] + own[d].len())
        .count()
}

/// Refreshes a halo of `a` (filled with `f`) and compares every cell of
/// the extended box: ghosts inside the array or wrapped around hold `f` of
/// the owner's index, ghosts past a non-periodic edge keep `BOUNDARY`.
fn check_halo<C: OneSidedComm, const N: usize>(
    comm: &C,
    a: &DistArray<i64, C, N>,
    f: impl Fn([usize; N]) -> i64,
    width: [usize; N],
    periodic: [bool; N],
    corners: bool,
) {
    const BOUNDARY: i64 = -7;
    let shape = a.shape();
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(&f)));
    let mut h = if corners {
        ok(comm, "Halo::new", Halo::new(a, width, periodic))
    } else {
        ok(comm, "Halo::new_faces", Halo::new_faces(a, width, periodic))
    };
    h.view_mut().fill(BOUNDARY);
    // three times, after every element changed, through the same plan: a
    // refresh (interior and ghosts), an update started and finished (ghosts
    // only: the interior keeps round 0's values), a blocking ghost update
    // and an update packed from a view the caller holds
    for round in 0..4i64 {
        match round {
            0 => ok(comm, "refresh", h.refresh(a)),
            1 => {
                let update = ok(comm, "start_update", h.start_update(a));
                ok(comm, "GhostUpdate::finish", update.finish())
            }
            2 => ok(comm, "update_ghosts", h.update_ghosts(a)),
            _ => ok(
                comm,
                "start_update_from",
                a.try_with_local(|l| h.start_update_from(a, l.as_slice())?.finish()),
            ),
        }
        let own = h.own_range();
        let ext = h.extended_shape();
        // the part and its ghost layers; the extended box's rows are padded
        // to whole 64-byte lines past them (in two or more dimensions)
        let boxed: [usize; N] = std::array::from_fn(|d| own[d].len() + 2 * width[d]);
        for d in 0..N {
            if d + 1 < N {
                assert_eq!(ext[d], boxed[d], "dimension {d} is not padded");
            } else {
                let want = crate::halo::aligned::padded_row::<i64>(boxed[d], N);
                assert_eq!(ext[d], want, "rows of whole lines where that is cheap");
            }
        }
        let past: [isize; N] = std::array::from_fn(|d| {
            own[d].start as isize - width[d] as isize + boxed[d] as isize - (d + 1 < N) as isize
        });
        assert_eq!(h.get(past), None, "the padding is not a ghost cell");
        let total: usize = if own.iter().any(|r| r.is_empty()) {
            0
        } else {
            boxed.iter().product()
        };
        for k in 0..total {
            let rel = multi_index(&boxed, k);
            let g: [isize; N] = std::array::from_fn(|d| {
                own[d].start as isize - width[d] as isize + rel[d] as isize
            });
            // without corners, cells outside the part in two or more
            // dimensions are not fetched
            let beyond = dims_outside(&rel, width, &own);
            let expect = match wrapped(g, shape, periodic) {
                None => BOUNDARY,
                Some(_) if !corners && beyond > 1 => BOUNDARY,
                Some(inside) if beyond == 0 => {
                    // the interior, copied by the refresh of round 0 only
                    f(inside)
                }
                Some(inside) => f(inside) + round,
            };
            assert_eq!(
                h.get(g),
                Some(expect),
                "rank {}: round {round}, cell {g:?} (width {width:?}, periodic {periodic:?})",
                comm.rank()
            );
            assert_eq!(h.view()[rel.as_slice()], expect);
        }
        // every face holds the cells of the extended box it covers
        for d in 0..N {
            for high in [false, true] {
                let face = h.ghost_face(d, high);
                let mut want = ext;
                want[d] = width[d];
                for dd in 0..N {
                    if dd != d {
                        want[dd] = own[dd].len();
                    }
                }
                assert_eq!(face.shape(), &want[..]);
                for (k, &v) in face.iter().enumerate() {
                    let fi = multi_index(&want, k);
                    let e: [isize; N] = std::array::from_fn(|dd| {
                        let base = if dd != d {
                            own[dd].start as isize
                        } else if high {
                            own[dd].end as isize
                        } else {
                            own[dd].start as isize - width[dd] as isize
                        };
                        base + fi[dd] as isize
                    });
                    assert_eq!(Some(v), h.get(e), "face {d} high {high} at {e:?}");
                }
            }
        }
        ok(comm, "map_local", a.map_local(|v| v + 1));
    }
    // an own part of the wrong length: refused, every rank still done
    let r = h.start_update_from(a, &[]).map(|u| u.finish());
    let empty = h.own_range().iter().any(|r| r.is_empty());
    assert!(
        empty || matches!(r, Err(Error::InvalidArgument(_))),
        "{r:?}"
    );
    ok(comm, "barrier", comm.barrier());
}

fn halo_nd<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), grid_2d(p), [7, 9]),
    );
    let f2 = |[i, j]: [usize; 2]| (i * 100 + j) as i64;
    check_halo(comm, &a, f2, [2, 1], [true, false], true);
    check_halo(comm, &a, f2, [1, 3], [false, true], true);
    check_halo(comm, &a, f2, [0, 2], [false, false], true);
    check_halo(comm, &a, f2, [1, 2], [true, true], false);
    // rows long enough to be padded to whole lines (71 + 2 x 1 -> 80 i64,
    // 71 + 2 x 2 -> 80 in 3-D), split over the first dimension only
    let wide = ok(
        comm,
        "wide",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), [p, 1], [2 * p + 1, 71]),
    );
    check_halo(comm, &wide, f2, [1, 1], [true, true], true);
    check_halo(comm, &wide, f2, [2, 1], [false, true], false);
    let deep = ok(
        comm,
        "deep",
        DistArray::<i64, C, 3>::with_grid(comm.clone(), [p, 1, 1], [p + 1, 2, 71]),
    );
    let f3 = |[i, j, k]: [usize; 3]| (i * 10_000 + j * 100 + k) as i64;
    check_halo(comm, &deep, f3, [1, 1, 2], [false, true, true], true);
    // 3-D over the first dimension: with more ranks than rows some parts
    // are empty; widths larger than a part reach past the neighbour
    let b = ok(
        comm,
        "new",
        DistArray::<i64, C, 3>::new(comm.clone(), [4, 3, 5]),
    );
    check_halo(comm, &b, f3, [3, 1, 2], [true, true, false], true);
    check_halo(comm, &b, f3, [1, 1, 1], [false, false, true], true);
    check_halo(comm, &b, f3, [1, 1, 1], [true, true, true], false);
    // a periodic width beyond the extent is refused
    expect_err(
        comm,
        "too wide",
        Halo::new(&a, [8, 0], [true, false]),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    ok(comm, "barrier", comm.barrier());
}

/// A ghost update started and leaked (`mem::forget`) is completed by the
/// next update or by dropping the halo: no rank waits forever, the next
/// update sees the new values, nothing is written after the halo is gone.
fn halo_leaked_update<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "from_fn",
        DistArray::<f64, _, 1>::from_fn(comm.clone(), [3 * p], |[i]| i as f64),
    );
    let mut h = ok(comm, "Halo::new", Halo::new(&a, [1], [true]));
    let update = ok(comm, "start_update", h.start_update(&a));
    std::mem::forget(update);
    ok(comm, "map_local", a.map_local(|v| v + 100.0));
    ok(comm, "update_ghosts", h.update_ghosts(&a));
    let r = h.own_range()[0].clone();
    let below = (r.start + 3 * p - 1) % (3 * p);
    assert_eq!(h.get([r.start as isize - 1]), Some(below as f64 + 100.0));
    // two updates in flight, finished in the other order: each gets its
    // own array's values (messages match in start order, as MPI posts them)
    let b = ok(
        comm,
        "from_fn",
        DistArray::<f64, _, 1>::from_fn(comm.clone(), [3 * p], |[i]| 1000.0 + i as f64),
    );
    let mut hb = ok(comm, "Halo::new", Halo::new(&b, [1], [true]));
    let ua = ok(comm, "start_update a", h.start_update(&a));
    let ub = ok(comm, "start_update b", hb.start_update(&b));
    ok(comm, "finish b", ub.finish());
    ok(comm, "finish a", ua.finish());
    assert_eq!(h.get([r.start as isize - 1]), Some(below as f64 + 100.0));
    assert_eq!(hb.get([r.start as isize - 1]), Some(below as f64 + 1000.0));
    // leaked again, then the halo dropped: the drop completes it
    let update = ok(comm, "start_update", h.start_update(&a));
    std::mem::forget(update);
    drop(h);
    // dropped unfinished: it waits, and the halo stays usable
    let mut h = ok(comm, "Halo::new", Halo::new(&a, [1], [true]));
    drop(ok(comm, "start_update", h.start_update(&a)));
    ok(comm, "update_ghosts", h.update_ghosts(&a));
    assert_eq!(h.get([r.start as isize - 1]), Some(below as f64 + 100.0));
    ok(comm, "barrier", comm.barrier());
}
