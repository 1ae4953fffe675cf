/*
 * mpi_profile: an LD_PRELOAD library (PMPI interposition) that counts the
 * calls of the MPI functions that communicate and the wall time spent in
 * them, per rank, and prints a table from rank 0 at MPI_Finalize.
 *
 * On the emulated network of bench/netem this shows where the network round
 * trips of a CG iteration go: running the same solver for two iteration
 * counts and subtracting removes the set-up (bench/netem/profile.sh).
 *
 * Usage: mpirun -x LD_PRELOAD=/path/libmpi_profile.so -n 2 ./program
 * Output (stderr of rank 0), one line per function that was called:
 *   mpi_profile FUNCTION calls=N time_us=T
 *
 * Build: mpicc -O2 -shared -fPIC -o libmpi_profile.so mpi_profile.c
 */
#include <mpi.h>
#include <stdio.h>

enum {
    F_BARRIER,
    F_ALLREDUCE,
    F_IALLREDUCE,
    F_ALLGATHER,
    F_ALLGATHERV,
    F_BCAST,
    F_REDUCE_SCATTER_BLOCK,
    F_SEND,
    F_RECV,
    F_ISEND,
    F_IRECV,
    F_SENDRECV,
    F_WAIT,
    F_WAITALL,
    F_START,
    F_STARTALL,
    F_WIN_LOCK,
    F_WIN_UNLOCK,
    F_WIN_LOCK_ALL,
    F_WIN_UNLOCK_ALL,
    F_WIN_FLUSH,
    F_WIN_FLUSH_LOCAL,
    F_WIN_FLUSH_ALL,
    F_WIN_SYNC,
    F_WIN_FENCE,
    F_GET,
    F_PUT,
    F_ACCUMULATE,
    F_RGET,
    F_RPUT,
    F_WIN_ALLOCATE,
    F_WIN_FREE,
    F_COUNT
};

static const char *names[F_COUNT] = {
    "MPI_Barrier",      "MPI_Allreduce",         "MPI_Iallreduce",    "MPI_Allgather",
    "MPI_Allgatherv",   "MPI_Bcast",             "MPI_Reduce_scatter_block",
    "MPI_Send",         "MPI_Recv",              "MPI_Isend",         "MPI_Irecv",
    "MPI_Sendrecv",     "MPI_Wait",              "MPI_Waitall",       "MPI_Start",
    "MPI_Startall",     "MPI_Win_lock",          "MPI_Win_unlock",    "MPI_Win_lock_all",
    "MPI_Win_unlock_all", "MPI_Win_flush",       "MPI_Win_flush_local",
    "MPI_Win_flush_all", "MPI_Win_sync",         "MPI_Win_fence",     "MPI_Get",
    "MPI_Put",          "MPI_Accumulate",        "MPI_Rget",          "MPI_Rput",
    "MPI_Win_allocate", "MPI_Win_free",
};

static long long calls[F_COUNT];
static double seconds[F_COUNT];

/* Times the PMPI call `expr` under counter `f`. */
#define TIMED(f, expr)                                                                            \
    do {                                                                                          \
        double t0_ = PMPI_Wtime();                                                                \
        int rc_ = (expr);                                                                         \
        seconds[f] += PMPI_Wtime() - t0_;                                                         \
        calls[f]++;                                                                               \
        return rc_;                                                                               \
    } while (0)

int MPI_Barrier(MPI_Comm c) { TIMED(F_BARRIER, PMPI_Barrier(c)); }
int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c)
{
    TIMED(F_ALLREDUCE, PMPI_Allreduce(s, r, n, t, o, c));
}
int MPI_Iallreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c,
                   MPI_Request *q)
{
    TIMED(F_IALLREDUCE, PMPI_Iallreduce(s, r, n, t, o, c, q));
}
int MPI_Allgather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt,
                  MPI_Comm c)
{
    TIMED(F_ALLGATHER, PMPI_Allgather(s, sn, st, r, rn, rt, c));
}
int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int *rn,
                   const int *d, MPI_Datatype rt, MPI_Comm c)
{
    TIMED(F_ALLGATHERV, PMPI_Allgatherv(s, sn, st, r, rn, d, rt, c));
}
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c)
{
    TIMED(F_BCAST, PMPI_Bcast(b, n, t, root, c));
}
int MPI_Reduce_scatter_block(const void *s, void *r, int n, MPI_Datatype t, MPI_Op o,
                             MPI_Comm c)
{
    TIMED(F_REDUCE_SCATTER_BLOCK, PMPI_Reduce_scatter_block(s, r, n, t, o, c));
}
int MPI_Send(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    TIMED(F_SEND, PMPI_Send(b, n, t, d, tag, c));
}
int MPI_Recv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st)
{
    TIMED(F_RECV, PMPI_Recv(b, n, t, s, tag, c, st));
}
int MPI_Isend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *q)
{
    TIMED(F_ISEND, PMPI_Isend(b, n, t, d, tag, c, q));
}
int MPI_Irecv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *q)
{
    TIMED(F_IRECV, PMPI_Irecv(b, n, t, s, tag, c, q));
}
int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype st, int d, int stag, void *rb, int rn,
                 MPI_Datatype rt, int s, int rtag, MPI_Comm c, MPI_Status *status)
{
    TIMED(F_SENDRECV, PMPI_Sendrecv(sb, sn, st, d, stag, rb, rn, rt, s, rtag, c, status));
}
int MPI_Wait(MPI_Request *q, MPI_Status *s) { TIMED(F_WAIT, PMPI_Wait(q, s)); }
int MPI_Waitall(int n, MPI_Request q[], MPI_Status s[]) { TIMED(F_WAITALL, PMPI_Waitall(n, q, s)); }
int MPI_Start(MPI_Request *q) { TIMED(F_START, PMPI_Start(q)); }
int MPI_Startall(int n, MPI_Request q[]) { TIMED(F_STARTALL, PMPI_Startall(n, q)); }
int MPI_Win_lock(int k, int r, int a, MPI_Win w) { TIMED(F_WIN_LOCK, PMPI_Win_lock(k, r, a, w)); }
int MPI_Win_unlock(int r, MPI_Win w) { TIMED(F_WIN_UNLOCK, PMPI_Win_unlock(r, w)); }
int MPI_Win_lock_all(int a, MPI_Win w) { TIMED(F_WIN_LOCK_ALL, PMPI_Win_lock_all(a, w)); }
int MPI_Win_unlock_all(MPI_Win w) { TIMED(F_WIN_UNLOCK_ALL, PMPI_Win_unlock_all(w)); }
int MPI_Win_flush(int r, MPI_Win w) { TIMED(F_WIN_FLUSH, PMPI_Win_flush(r, w)); }
int MPI_Win_flush_local(int r, MPI_Win w) { TIMED(F_WIN_FLUSH_LOCAL, PMPI_Win_flush_local(r, w)); }
int MPI_Win_flush_all(MPI_Win w) { TIMED(F_WIN_FLUSH_ALL, PMPI_Win_flush_all(w)); }
int MPI_Win_sync(MPI_Win w) { TIMED(F_WIN_SYNC, PMPI_Win_sync(w)); }
int MPI_Win_fence(int a, MPI_Win w) { TIMED(F_WIN_FENCE, PMPI_Win_fence(a, w)); }
int MPI_Get(void *o, int on, MPI_Datatype ot, int r, MPI_Aint d, int tn, MPI_Datatype tt,
            MPI_Win w)
{
    TIMED(F_GET, PMPI_Get(o, on, ot, r, d, tn, tt, w));
}
int MPI_Put(const void *o, int on, MPI_Datatype ot, int r, MPI_Aint d, int tn, MPI_Datatype tt,
            MPI_Win w)
{
    TIMED(F_PUT, PMPI_Put(o, on, ot, r, d, tn, tt, w));
}
int MPI_Accumulate(const void *o, int on, MPI_Datatype ot, int r, MPI_Aint d, int tn,
                   MPI_Datatype tt, MPI_Op op, MPI_Win w)
{
    TIMED(F_ACCUMULATE, PMPI_Accumulate(o, on, ot, r, d, tn, tt, op, w));
}
int MPI_Rget(void *o, int on, MPI_Datatype ot, int r, MPI_Aint d, int tn, MPI_Datatype tt,
             MPI_Win w, MPI_Request *q)
{
    TIMED(F_RGET, PMPI_Rget(o, on, ot, r, d, tn, tt, w, q));
}
int MPI_Rput(const void *o, int on, MPI_Datatype ot, int r, MPI_Aint d, int tn,
             MPI_Datatype tt, MPI_Win w, MPI_Request *q)
{
    TIMED(F_RPUT, PMPI_Rput(o, on, ot, r, d, tn, tt, w, q));
}
int MPI_Win_allocate(MPI_Aint size, int du, MPI_Info i, MPI_Comm c, void *base, MPI_Win *w)
{
    TIMED(F_WIN_ALLOCATE, PMPI_Win_allocate(size, du, i, c, base, w));
}
int MPI_Win_free(MPI_Win *w) { TIMED(F_WIN_FREE, PMPI_Win_free(w)); }

int MPI_Finalize(void)
{
    int rank = 0, init = 0;
    PMPI_Initialized(&init);
    if (init)
        PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0)
        for (int f = 0; f < F_COUNT; f++)
            if (calls[f])
                fprintf(stderr, "mpi_profile %s calls=%lld time_us=%.1f\n", names[f], calls[f],
                        seconds[f] * 1e6);
    return PMPI_Finalize();
}
