/*
 * mpi_lat: per-call latencies of the MPI operations distarray is built on,
 * between 2 ranks: ping-pong (the calibration of an emulated network's
 * round trip), allreduce of one double, barrier, and passive-target RMA
 * epochs on an MPI_Win_allocate window: lock + 8-byte get + unlock and
 * lock + 8-byte put + unlock (rank 0 on rank 1's memory while rank 1
 * waits in a barrier, which keeps its progress engine turning), and a get
 * completed by MPI_Win_flush inside one long lock_all epoch; and, for
 * bandwidth, a ping-pong of 1 MiB each way and lock + 1 MiB get + unlock
 * (REPS / 10 calls, at least 10).
 *
 * Usage: mpirun -n 2 ./mpi_lat [REPS]
 * Prints one line per operation on rank 0: name, mean, median and minimum
 * time per call in microseconds over REPS (default 200) timed calls, after
 * 20 untimed ones. Ping-pong is the time of one full round trip.
 *
 * Build: mpicc -O2 -o mpi_lat mpi_lat.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Calls are timed back to back, each one's start the previous one's end:
 * the mean is the cost of a call in a chain of dependent calls (as in an
 * iterative solver), which for a collective on 2 ranks is one one-way
 * message (both ranks send at once), not a round trip. The median and
 * minimum of single calls show the spread; for a collective they depend on
 * how far the peer is ahead. */
static void report(const char *name, double *t, int n, int rank)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i];
    qsort(t, (size_t)n, sizeof *t, cmp);
    if (rank == 0)
        printf("%-26s mean %9.1f us   median %9.1f us   min %9.1f us  p90 %.1f max %.1f\n", name, sum / n * 1e6,
               t[n / 2] * 1e6, t[0] * 1e6, t[n*9/10]*1e6, t[n-1]*1e6);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0)
            fprintf(stderr, "mpi_lat needs exactly 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    const int warm = 20;
    double *t = malloc(sizeof(double) * (size_t)reps);
    double x = 1.0, y = 0.0;
    int peer = 1 - rank;

    /* ping-pong: one round trip of an 8-byte message */
    for (int i = -warm; i < reps; i++) {
        double t0 = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(&x, 1, MPI_DOUBLE, peer, 0, MPI_COMM_WORLD);
            MPI_Recv(&y, 1, MPI_DOUBLE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&y, 1, MPI_DOUBLE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&x, 1, MPI_DOUBLE, peer, 0, MPI_COMM_WORLD);
        }
        if (i >= 0)
            t[i] = MPI_Wtime() - t0;
    }
    report("ping-pong (round trip)", t, reps, rank);

    /* allreduce of one double */
    for (int i = -warm; i < reps; i++) {
        double t0 = MPI_Wtime();
        MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (i >= 0)
            t[i] = MPI_Wtime() - t0;
    }
    report("allreduce (1 double)", t, reps, rank);

    /* barrier */
    for (int i = -warm; i < reps; i++) {
        double t0 = MPI_Wtime();
        MPI_Barrier(MPI_COMM_WORLD);
        if (i >= 0)
            t[i] = MPI_Wtime() - t0;
    }
    report("barrier", t, reps, rank);

    /* bandwidth: ping-pong of 1 MiB each way */
    const int big = 1 << 17; /* doubles: 1 MiB */
    const int big_reps = reps / 10 > 10 ? reps / 10 : 10;
    double *buf = calloc((size_t)big, sizeof(double));
    for (int i = -2; i < big_reps; i++) {
        double t0 = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(buf, big, MPI_DOUBLE, peer, 1, MPI_COMM_WORLD);
            MPI_Recv(buf, big, MPI_DOUBLE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, big, MPI_DOUBLE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, big, MPI_DOUBLE, peer, 1, MPI_COMM_WORLD);
        }
        if (i >= 0)
            t[i] = MPI_Wtime() - t0;
    }
    report("ping-pong 1 MiB", t, big_reps, rank);

    /* passive-target RMA on an allocated window of 1 MiB */
    double *base;
    MPI_Win win;
    MPI_Win_allocate(big * sizeof(double), sizeof(double), MPI_INFO_NULL, MPI_COMM_WORLD,
                     &base, &win);
    for (int k = 0; k < 2; k++) {
        /* rank 0 times epochs on rank 1; rank 1 keeps MPI progressing in
         * a barrier that rank 0 enters when it is done */
        if (rank == 0) {
            for (int i = -warm; i < reps; i++) {
                double t0 = MPI_Wtime();
                MPI_Win_lock(k == 0 ? MPI_LOCK_SHARED : MPI_LOCK_EXCLUSIVE, 1, 0, win);
                if (k == 0)
                    MPI_Get(&y, 1, MPI_DOUBLE, 1, 7, 1, MPI_DOUBLE, win);
                else
                    MPI_Put(&x, 1, MPI_DOUBLE, 1, 7, 1, MPI_DOUBLE, win);
                MPI_Win_unlock(1, win);
                if (i >= 0)
                    t[i] = MPI_Wtime() - t0;
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
        report(k == 0 ? "lock(sh)+get+unlock" : "lock(ex)+put+unlock", t, reps, rank);
    }
    /* a get completed by MPI_Win_flush inside one long MPI_Win_lock_all
     * epoch (no lock or unlock per access) */
    if (rank == 0) {
        MPI_Win_lock_all(0, win);
        for (int i = -warm; i < reps; i++) {
            double t0 = MPI_Wtime();
            MPI_Get(&y, 1, MPI_DOUBLE, 1, 7, 1, MPI_DOUBLE, win);
            MPI_Win_flush(1, win);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        }
        MPI_Win_unlock_all(win);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    report("get+flush (lock_all held)", t, reps, rank);

    /* a neighbour exchange by one-sided puts, both ranks at once: each puts
     * 8 bytes into the other's window, then one MPI_Win_fence completes
     * them (the fence epoch stays open from one exchange to the next) */
    {
        int peer = 1 - rank;
        MPI_Win_fence(MPI_MODE_NOPRECEDE, win);
        for (int i = -warm; i < reps; i++) {
            double t0 = MPI_Wtime();
            MPI_Put(&x, 1, MPI_DOUBLE, peer, (MPI_Aint)(i & 1), 1, MPI_DOUBLE, win);
            MPI_Win_fence(0, win);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        }
        MPI_Win_fence(MPI_MODE_NOSUCCEED, win);
        report("put+fence (exchange)", t, reps, rank);
    }
    /* the same exchange with a neighbour-only epoch: post and start
     * (MPI_Win_post / MPI_Win_start on the peer's group), put, complete,
     * wait */
    {
        int peer = 1 - rank;
        MPI_Group world, pg;
        MPI_Comm_group(MPI_COMM_WORLD, &world);
        MPI_Group_incl(world, 1, &peer, &pg);
        for (int i = -warm; i < reps; i++) {
            double t0 = MPI_Wtime();
            MPI_Win_post(pg, 0, win);
            MPI_Win_start(pg, 0, win);
            MPI_Put(&x, 1, MPI_DOUBLE, peer, 7, 1, MPI_DOUBLE, win);
            MPI_Win_complete(win);
            MPI_Win_wait(win);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        }
        MPI_Group_free(&pg);
        MPI_Group_free(&world);
        MPI_Barrier(MPI_COMM_WORLD);
        report("pscw put (exchange)", t, reps, rank);
    }
    /* the same, with the exposure epoch posted early: right after the
     * previous exchange's wait (the program has read what arrived), so
     * that the next start finds the post already there */
    {
        int peer = 1 - rank;
        MPI_Group world, pg;
        MPI_Comm_group(MPI_COMM_WORLD, &world);
        MPI_Group_incl(world, 1, &peer, &pg);
        MPI_Win_post(pg, 0, win);
        for (int i = -warm; i < reps; i++) {
            double t0 = MPI_Wtime();
            MPI_Win_start(pg, 0, win);
            MPI_Put(&x, 1, MPI_DOUBLE, peer, 7, 1, MPI_DOUBLE, win);
            MPI_Win_complete(win);
            MPI_Win_wait(win);
            MPI_Win_post(pg, 0, win);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        }
        MPI_Win_start(pg, 0, win);
        MPI_Win_complete(win);
        MPI_Win_wait(win);
        MPI_Group_free(&pg);
        MPI_Group_free(&world);
        MPI_Barrier(MPI_COMM_WORLD);
        report("pscw put, early post", t, reps, rank);
    }

    if (rank == 0) {
        for (int i = -2; i < big_reps; i++) {
            double t0 = MPI_Wtime();
            MPI_Win_lock(MPI_LOCK_SHARED, 1, 0, win);
            MPI_Get(buf, big, MPI_DOUBLE, 1, 0, big, MPI_DOUBLE, win);
            MPI_Win_unlock(1, win);
            if (i >= 0)
                t[i] = MPI_Wtime() - t0;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    report("lock(sh)+get 1 MiB+unlock", t, big_reps, rank);
    MPI_Win_free(&win);
    free(buf);

    free(t);
    MPI_Finalize();
    return 0;
}
