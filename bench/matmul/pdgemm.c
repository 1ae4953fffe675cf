/* ScaLAPACK's pdgemm, the baseline of distarray's matmul
 * (bench/matmul/run.sh). C = A B for n x n doubles on the squarest process
 * grid of the ranks (2 x 1 for 2, as the distarray example), 2-D
 * block-cyclic with NB x NB blocks (default 128). One warm-up product, then
 * `reps` timed ones; prints the median (slowest rank).
 *
 *   mpicc -O3 -march=native -o pdgemm bench/matmul/pdgemm.c -lscalapack-openmpi -lopenblas
 *   OPENBLAS_NUM_THREADS=1 mpirun -n 2 ./pdgemm 2000 3 [nb]
 */
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
extern void pdgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
                    const double *alpha, const double *a, const int *ia, const int *ja, const int *desca,
                    const double *b, const int *ib, const int *jb, const int *descb,
                    const double *beta, double *c, const int *ic, const int *jc, const int *descc);

static int cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  int nb = argc > 3 ? atoi(argv[3]) : 128;
  int me, np, ctx, pr, pc, myr, myc, info, zero = 0, one = 1;
  Cblacs_pinfo(&me, &np);
  pr = np;
  for (int d = np; d >= 1; d--)
    if (np % d == 0 && d * d >= np) pr = d;
  pc = np / pr;
  Cblacs_get(-1, 0, &ctx);
  Cblacs_gridinit(&ctx, "Row", pr, pc);
  Cblacs_gridinfo(ctx, &pr, &pc, &myr, &myc);
  int lr = numroc_(&n, &nb, &myr, &zero, &pr), lc = numroc_(&n, &nb, &myc, &zero, &pc);
  int lld = lr > 1 ? lr : 1;
  int desc[9];
  descinit_(desc, &n, &n, &nb, &nb, &zero, &zero, &ctx, &lld, &info);
  double *a = malloc(sizeof(double) * (size_t)lld * (lc > 0 ? lc : 1));
  double *b = malloc(sizeof(double) * (size_t)lld * (lc > 0 ? lc : 1));
  double *c = malloc(sizeof(double) * (size_t)lld * (lc > 0 ? lc : 1));
  for (int jl = 0; jl < lc; jl++)
    for (int il = 0; il < lr; il++) {
      int i = (il / nb * pr + myr) * nb + il % nb, j = (jl / nb * pc + myc) * nb + jl % nb;
      a[il + (size_t)jl * lld] = (double)((i * 7 + j * 3) % 11) - 5.0;
      b[il + (size_t)jl * lld] = (double)((i * 5 + j) % 13) - 6.0;
      c[il + (size_t)jl * lld] = 0.0;
    }
  double alpha = 1.0, beta = 0.0, *t = malloc(sizeof(double) * (reps + 1));
  for (int r = 0; r <= reps; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    pdgemm_("N", "N", &n, &n, &n, &alpha, a, &one, &one, desc, b, &one, &one, desc, &beta, c, &one,
            &one, desc);
    double dt = MPI_Wtime() - t0, slowest;
    MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[r] = slowest;
  }
  qsort(t + 1, reps, sizeof(double), cmp);
  double med = t[1 + reps / 2];
  if (me == 0)
    printf("scalapack_pdgemm n=%d ranks=%d grid=%dx%d nb=%d ms=%.1f gflops=%.2f\n", n, np, pr, pc, nb,
           med * 1e3, 2.0 * n * (double)n * n / med / 1e9);
  free(a); free(b); free(c); free(t);
  Cblacs_gridexit(ctx);
  MPI_Finalize();
  return 0;
}
