/* A hand-written C MPI radius-R star stencil on a 2-D process grid, in the
 * style of the Parallel Research Kernels' `stencil`: each iteration
 *   OUT += S(IN) at the points at least R away from the grid's edge,
 *   IN  += 1    everywhere,
 * with the R-wide faces of IN exchanged between grid neighbours first
 * (MPI_Isend/MPI_Irecv of packed faces, one message per neighbour).
 * The baseline for examples/mpi_stencil.rs (bench/stencil/run.sh).
 *
 * Build: mpicc -O3 -march=native -DRADIUS=2 stencil.c (the radius fixed at
 * compile time, as in the PRK code, so that the point loops unroll).
 * usage: stencil N ITERS [R]   prints "c_stencil n=.. p=.. per_iter_ms=.. checksum=.."
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long lo_of(long n, int parts, int k) { return n * k / parts; }

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 3) {
    if (rank == 0) fprintf(stderr, "usage: stencil N ITERS [R]\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  long n = atol(argv[1]);
  int iters = atoi(argv[2]);
#ifdef RADIUS
  /* a compile-time radius (as the PRK code has it): the loops unroll */
  const int R = RADIUS;
  if (argc > 3 && atoi(argv[3]) != RADIUS) {
    if (rank == 0) fprintf(stderr, "compiled for R = %d\n", RADIUS);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
#else
  int R = argc > 3 ? atoi(argv[3]) : 2;
#endif
  int dims[2] = {0, 0};
  MPI_Dims_create(size, 2, dims);
  int pr = rank / dims[1], pc = rank % dims[1];
  long i0 = lo_of(n, dims[0], pr), i1 = lo_of(n, dims[0], pr + 1);
  long j0 = lo_of(n, dims[1], pc), j1 = lo_of(n, dims[1], pc + 1);
  long h = i1 - i0, w = j1 - j0, W = w + 2 * R;
  double *in = calloc((h + 2 * R) * W, sizeof(double));
  double *out = calloc(h * w, sizeof(double));
#define IN(i, j) in[((i) - i0 + R) * W + ((j) - j0 + R)]
#define OUT(i, j) out[((i) - i0) * w + ((j) - j0)]
  for (long i = i0; i < i1; i++)
    for (long j = j0; j < j1; j++) IN(i, j) = (double)(i + j);
  /* PRK star weights */
  double wt[2 * 8 + 1][2 * 8 + 1];
  memset(wt, 0, sizeof wt);
#define WT(a, b) wt[(a) + R][(b) + R]
  for (int k = 1; k <= R; k++) {
    WT(0, k) = WT(k, 0) = 1.0 / (2.0 * k * R);
    WT(0, -k) = WT(-k, 0) = -1.0 / (2.0 * k * R);
  }
  int up = pr > 0 ? rank - dims[1] : MPI_PROC_NULL;
  int down = pr < dims[0] - 1 ? rank + dims[1] : MPI_PROC_NULL;
  int left = pc > 0 ? rank - 1 : MPI_PROC_NULL;
  int right = pc < dims[1] - 1 ? rank + 1 : MPI_PROC_NULL;
  double *sbuf[4], *rbuf[4];
  long vlen = R * w, hlen = R * h;
  for (int k = 0; k < 4; k++) {
    long len = k < 2 ? vlen : hlen;
    sbuf[k] = malloc(len * sizeof(double));
    rbuf[k] = malloc(len * sizeof(double));
  }
  long ilo = i0 > R ? i0 : R, ihi = i1 < n - R ? i1 : n - R;
  long jlo = j0 > R ? j0 : R, jhi = j1 < n - R ? j1 : n - R;
  double t0 = 0, t_apply = 0, t_add = 0;
  for (int it = 0; it <= iters; it++) {
    if (it == 1) { /* the first iteration is the warm-up */
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = MPI_Wtime();
    }
    MPI_Request req[8];
    int nr = 0;
    /* rows: up (k=0) and down (k=1), contiguous in IN but packed like
     * the columns for a uniform code path */
    int nb[4] = {up, down, left, right};
    for (int k = 0; k < 4; k++) {
      long len = k < 2 ? vlen : hlen;
      if (nb[k] == MPI_PROC_NULL) continue;
      MPI_Irecv(rbuf[k], len, MPI_DOUBLE, nb[k], 0, MPI_COMM_WORLD, &req[nr++]);
    }
    for (int k = 0; k < 4; k++) {
      if (nb[k] == MPI_PROC_NULL) continue;
      long p = 0;
      if (k == 0)
        for (long i = i0; i < i0 + R; i++) for (long j = j0; j < j1; j++) sbuf[k][p++] = IN(i, j);
      if (k == 1)
        for (long i = i1 - R; i < i1; i++) for (long j = j0; j < j1; j++) sbuf[k][p++] = IN(i, j);
      if (k == 2)
        for (long i = i0; i < i1; i++) for (long j = j0; j < j0 + R; j++) sbuf[k][p++] = IN(i, j);
      if (k == 3)
        for (long i = i0; i < i1; i++) for (long j = j1 - R; j < j1; j++) sbuf[k][p++] = IN(i, j);
      MPI_Isend(sbuf[k], p, MPI_DOUBLE, nb[k], 0, MPI_COMM_WORLD, &req[nr++]);
    }
    MPI_Waitall(nr, req, MPI_STATUSES_IGNORE);
    for (int k = 0; k < 4; k++) {
      if (nb[k] == MPI_PROC_NULL) continue;
      long p = 0;
      if (k == 0)
        for (long i = i0 - R; i < i0; i++) for (long j = j0; j < j1; j++) IN(i, j) = rbuf[k][p++];
      if (k == 1)
        for (long i = i1; i < i1 + R; i++) for (long j = j0; j < j1; j++) IN(i, j) = rbuf[k][p++];
      if (k == 2)
        for (long i = i0; i < i1; i++) for (long j = j0 - R; j < j0; j++) IN(i, j) = rbuf[k][p++];
      if (k == 3)
        for (long i = i0; i < i1; i++) for (long j = j1; j < j1 + R; j++) IN(i, j) = rbuf[k][p++];
    }
    double ta = MPI_Wtime();
    for (long i = ilo; i < ihi; i++)
      for (long j = jlo; j < jhi; j++) {
        double acc = 0.0;
        for (int k = -R; k <= R; k++) acc += WT(0, k) * IN(i, j + k);
        for (int k = -R; k < 0; k++) acc += WT(k, 0) * IN(i + k, j);
        for (int k = 1; k <= R; k++) acc += WT(k, 0) * IN(i + k, j);
        OUT(i, j) += acc;
      }
    double tb = MPI_Wtime();
    for (long i = i0; i < i1; i++)
      for (long j = j0; j < j1; j++) IN(i, j) += 1.0;
    if (it > 0) {
      t_apply += tb - ta;
      t_add += MPI_Wtime() - tb;
    }
  }
  double t = MPI_Wtime() - t0, tmax;
  MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  double local = 0, sum = 0;
  for (long k = 0; k < h * w; k++) local += out[k];
  MPI_Reduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0 && getenv("PARTS"))
    fprintf(stderr, "apply %.4f add %.4f ms\n", t_apply / iters * 1e3, t_add / iters * 1e3);
  if (rank == 0)
    printf("c_stencil n=%ld p=%d r=%d per_iter_ms=%.4f checksum=%.6e\n", n, size, R,
           tmax / iters * 1e3, sum);
  MPI_Finalize();
  return 0;
}
