/* A hand-written MPI transpose in the style of the Parallel Research
 * Kernels (PRK MPI1 "transpose"): the baseline for distarray's
 * TransposePlan::transpose_add (backends/mpi/examples/mpi_transpose.rs).
 *
 * A and B are n x n doubles, both split by columns over P ranks (n % P ==
 * 0): rank r owns columns [r*nb, (r+1)*nb), stored row-major as n rows of
 * nb elements (the same layout as a distarray part on a 1 x P grid).
 * Each iteration: B += A^T, then A += 1.
 *
 * B[:, J_s] = A[J_s, :]^T, so rank r sends rank s the nb x nb tile
 * A[J_s, J_r], packed already transposed with a cache-blocked loop (TILE x
 * TILE), in ONE message (MPI_Isend; the receives are posted first with
 * MPI_Irecv); the diagonal tile is transposed in place locally; received
 * tiles are added row by row (contiguous). Per iteration and rank: P-1
 * sends and P-1 receives, no collective.
 *
 *   mpicc -O3 -march=native -o transpose bench/transpose/transpose.c
 *   mpirun -n 2 ./transpose --n 4000 --iters 10
 *
 * Prints one line: c_transpose n=... ranks=... iterations=...
 * ms_per_iteration=... (mean over the timed iterations, slowest rank; the
 * first iteration is a warm-up and not timed, as in the PRK) error=...
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define TILE 32

static void usage(void) {
  fprintf(stderr, "usage: transpose [--n N] [--iters K]\n");
  MPI_Abort(MPI_COMM_WORLD, 2);
}

/* dst[j*ds + i] op= src[i*ss + j], i < rows, j < cols, in TILE x TILE tiles */
static void transpose_set(const double *restrict src, size_t ss, double *restrict dst,
                          size_t ds, size_t rows, size_t cols) {
  for (size_t i0 = 0; i0 < rows; i0 += TILE) {
    size_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
    for (size_t j0 = 0; j0 < cols; j0 += TILE) {
      size_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
      for (size_t j = j0; j < j1; j++)
        for (size_t i = i0; i < i1; i++) dst[j * ds + i] = src[i * ss + j];
    }
  }
}

static void transpose_add(const double *restrict src, size_t ss, double *restrict dst,
                          size_t ds, size_t rows, size_t cols) {
  for (size_t i0 = 0; i0 < rows; i0 += TILE) {
    size_t i1 = i0 + TILE < rows ? i0 + TILE : rows;
    for (size_t j0 = 0; j0 < cols; j0 += TILE) {
      size_t j1 = j0 + TILE < cols ? j0 + TILE : cols;
      for (size_t j = j0; j < j1; j++)
        for (size_t i = i0; i < i1; i++) dst[j * ds + i] += src[i * ss + j];
    }
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int me, p;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  size_t n = 1000;
  int iters = 10;
  for (int k = 1; k < argc; k++) {
    if (!strcmp(argv[k], "--n") && k + 1 < argc) n = strtoul(argv[++k], NULL, 10);
    else if (!strcmp(argv[k], "--iters") && k + 1 < argc) iters = atoi(argv[++k]);
    else usage();
  }
  if (n % (size_t)p != 0 || iters < 1) {
    if (me == 0) fprintf(stderr, "n must be a multiple of the number of ranks\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  size_t nb = n / p, c0 = (size_t)me * nb, tile = nb * nb;
  double *a = malloc(n * nb * sizeof *a), *b = malloc(n * nb * sizeof *b);
  double *out = malloc((p > 1 ? p - 1 : 1) * tile * sizeof *out);
  double *in = malloc((p > 1 ? p - 1 : 1) * tile * sizeof *in);
  MPI_Request *req = malloc(2 * (size_t)(p > 1 ? p : 1) * sizeof *req);
  if (!a || !b || !out || !in || !req) MPI_Abort(MPI_COMM_WORLD, 3);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < nb; j++) {
      a[i * nb + j] = (double)(i * n + c0 + j);
      b[i * nb + j] = 0.0;
    }

  double t0 = 0.0;
  for (int it = 0; it <= iters; it++) {
    if (it == 1) {
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = MPI_Wtime();
    }
    int nreq = 0;
    /* receives first: from rank r the tile B[J_r, J_me], packed transposed */
    for (int ph = 1; ph < p; ph++) {
      int from = (me + ph) % p;
      MPI_Irecv(in + (ph - 1) * tile, (int)tile, MPI_DOUBLE, from, 0, MPI_COMM_WORLD,
                &req[nreq++]);
    }
    /* to rank s: A[J_s, J_me] transposed */
    for (int ph = 1; ph < p; ph++) {
      int to = (me - ph + p) % p;
      double *buf = out + (ph - 1) * tile;
      transpose_set(a + (size_t)to * nb * nb, nb, buf, nb, nb, nb);
      MPI_Isend(buf, (int)tile, MPI_DOUBLE, to, 0, MPI_COMM_WORLD, &req[nreq++]);
    }
    /* the diagonal tile: B[J_me, J_me] += A[J_me, J_me]^T */
    transpose_add(a + c0 * nb, nb, b + c0 * nb, nb, nb, nb);
    MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
    for (int ph = 1; ph < p; ph++) {
      int from = (me + ph) % p;
      const double *src = in + (ph - 1) * tile;
      double *dst = b + (size_t)from * nb * nb;
      for (size_t k = 0; k < tile; k++) dst[k] += src[k];
    }
    /* A += 1 */
    for (size_t k = 0; k < n * nb; k++) a[k] += 1.0;
  }
  double local = MPI_Wtime() - t0, t;
  MPI_Reduce(&local, &t, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

  /* B[i, j] = sum_{k=0..iters} (A0[j, i] + k) */
  double err = 0.0, k1 = iters + 1.0, add = 0.5 * iters * (iters + 1.0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < nb; j++) {
      double want = k1 * (double)((c0 + j) * n + i) + add;
      err += fabs(b[i * nb + j] - want);
    }
  double abserr;
  MPI_Reduce(&err, &abserr, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (me == 0)
    printf("c_transpose n=%zu ranks=%d iterations=%d ms_per_iteration=%.4f error=%g\n", n, p,
           iters, 1e3 * t / iters, abserr);
  free(a); free(b); free(out); free(in); free(req);
  MPI_Finalize();
  return abserr == 0.0 ? 0 : 1;
}
