/* ScaLAPACK's pdgesv, the baseline of distarray_mpi::scalapack::gesv
 * (bench/dense_solve/run.sh): A X = B for an n x n diagonally dominant A and
 * one right-hand side, 2-D block-cyclic with NB x NB blocks (default 64),
 * on the BLACS grid the distarray example hands ScaLAPACK: distarray's
 * squarest pr x pc grid (pr <= pc) holds the transposed layout on a
 * pc x pr BLACS grid in column-major process order, so this program uses
 * that grid too (the factorisation's communication depends on its shape).
 * The matrix is refilled before each solve (outside the timing); one
 * warm-up solve, then `reps` timed ones; prints the median (slowest rank)
 * and the residual max |A x - b| of the last solve.
 *
 *   mpicc -O3 -march=native -o pdgesv bench/dense_solve/pdgesv.c -lscalapack-openmpi -lopenblas
 *   OPENBLAS_NUM_THREADS=1 mpirun -n 4 ./pdgesv 2000 3 [nb [pivot]]
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

extern void Cblacs_pinfo(int *me, int *np);
extern void Cblacs_get(int ctx, int what, int *val);
extern void Cblacs_gridinit(int *ctx, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctx, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctx);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc, const int *np);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ctx, const int *lld, int *info);
extern void pdgesv_(const int *n, const int *nrhs, double *a, const int *ia, const int *ja,
                    const int *desca, int *ipiv, double *b, const int *ib, const int *jb,
                    const int *descb, int *info);

static double entry(int i, int j, int n) {
  return 1.0 / (1 + i + 2 * j) + (i == j ? (double)n : 0.0);
}

/* With pivot != 0, row i of A is row q i + 3 mod n of entry()'s matrix (q
   the first of 7, 11, 13, 17 prime to n): every step of the LU pivots. */
static int row(int i, int n, int pivot) {
  if (!pivot) return i;
  int qs[4] = {7, 11, 13, 17}, q = 1;
  for (int k = 3; k >= 0; k--)
    if (n % qs[k] != 0) q = qs[k];
  return (int)(((long)q * i + 3) % n);
}

static int cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  int nb = argc > 3 ? atoi(argv[3]) : 64;
  int pivot = argc > 4 ? atoi(argv[4]) : 0;
  int me, np, ctx, pr, pc, myr, myc, info, zero = 0, one = 1;
  Cblacs_pinfo(&me, &np);
  pr = 1;
  for (int d = 1; d <= np; d++)
    if (np % d == 0 && d * d <= np) pr = d;
  pc = np / pr;
  Cblacs_get(-1, 0, &ctx);
  Cblacs_gridinit(&ctx, "Col", pc, pr);
  Cblacs_gridinfo(ctx, &pr, &pc, &myr, &myc);
  int lr = numroc_(&n, &nb, &myr, &zero, &pr), lc = numroc_(&n, &nb, &myc, &zero, &pc);
  int lcb = numroc_(&one, &nb, &myc, &zero, &pc);
  int lld = lr > 1 ? lr : 1;
  int desca[9], descb[9];
  descinit_(desca, &n, &n, &nb, &nb, &zero, &zero, &ctx, &lld, &info);
  descinit_(descb, &n, &one, &nb, &nb, &zero, &zero, &ctx, &lld, &info);
  double *a = malloc(sizeof(double) * (size_t)lld * (lc > 0 ? lc : 1));
  double *b = malloc(sizeof(double) * (size_t)lld * (lcb > 0 ? lcb : 1));
  int *ipiv = malloc(sizeof(int) * (lr + nb));
  double *t = malloc(sizeof(double) * (reps + 1));
  for (int r = 0; r <= reps; r++) {
    for (int jl = 0; jl < lc; jl++)
      for (int il = 0; il < lr; il++) {
        int i = (il / nb * pr + myr) * nb + il % nb, j = (jl / nb * pc + myc) * nb + jl % nb;
        a[il + (size_t)jl * lld] = entry(row(i, n, pivot), j, n);
      }
    for (int il = 0; il < lr && lcb > 0; il++) {
      int i = (il / nb * pr + myr) * nb + il % nb;
      b[il] = (double)i * 0.5;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    pdgesv_(&n, &one, a, &one, &one, desca, ipiv, b, &one, &one, descb, &info);
    double dt = MPI_Wtime() - t0, worst;
    MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[r] = worst;
    if (info != 0 && me == 0) fprintf(stderr, "pdgesv info %d\n", info);
  }
  /* residual of the last solve: gather x on every rank, then each rank
     checks its own rows of A x - b (A recomputed) */
  double *x = calloc((size_t)n, sizeof(double));
  for (int il = 0; il < lr && lcb > 0; il++) x[(il / nb * pr + myr) * nb + il % nb] = b[il];
  MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  double res = 0.0;
  for (int i = me; i < n; i += np) {
    double s = 0.0;
    for (int j = 0; j < n; j++) s += entry(row(i, n, pivot), j, n) * x[j];
    res = fmax(res, fabs(s - i * 0.5));
  }
  MPI_Allreduce(MPI_IN_PLACE, &res, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  qsort(t + 1, reps, sizeof(double), cmp);
  if (me == 0)
    printf("pdgesv n=%d P=%d blacs=%dx%d nb=%d ms=%.3f residual=%.3e\n", n, np, pr, pc, nb,
           1e3 * t[1 + reps / 2], res);
  Cblacs_gridexit(ctx);
  MPI_Finalize();
  return 0;
}
