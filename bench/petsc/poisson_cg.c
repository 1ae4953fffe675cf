/*
 * Matrix-free PETSc CG on the 2-D Poisson problem of distarray's Poisson CG
 * example (apps/src/poisson.rs), for a same-run comparison.
 *
 *   - grid: n x n unknowns on a DMDA (star stencil, width 1), Dirichlet zero
 *     outside the grid;
 *   - operator: a MatShell applying the 5-point stencil
 *     y = 4 u - u_west - u_east - u_north - u_south, written as a PETSc
 *     expert would: ghost exchange with DMGlobalToLocal into a persistent
 *     local vector whose physical-boundary ghosts (DM_BOUNDARY_GHOSTED) stay
 *     zero, then one branch-free loop;
 *   - b = A u* with the same manufactured solution
 *     u*(i, j) = sin(pi x) sin(2 pi y) + x y, x = (i + 1) h, y = (j + 1) h,
 *     h = 1 / (n + 1), i the grid row (DMDA y index), j the column (x index);
 *   - KSPCG, PCNONE, rtol 1e-8 (relative to ||b||, zero initial guess), as
 *     distarray's example.
 *
 * Options: -n N (512), -reps R (1: solves timed, the median is reported),
 * plus any PETSc option (-ksp_view, -log_view, ...).
 * Prints one line on rank 0:
 *   petsc_cg n=512 ranks=1 iterations=1436 time_s=... ms_per_iteration=... resid=... err=...
 */
#include <petscdmda.h>
#include <petscksp.h>

typedef struct {
  DM  da;
  Vec local; /* persistent local vector: boundary ghosts stay zero */
} Ctx;

static PetscErrorCode apply(Mat A, Vec u, Vec y)
{
  Ctx                *ctx;
  const PetscScalar **uu;
  PetscScalar       **yy;
  PetscInt            xs, ys, xm, ym, i, j;

  PetscFunctionBeginUser;
  PetscCall(MatShellGetContext(A, &ctx));
  PetscCall(DMGlobalToLocalBegin(ctx->da, u, INSERT_VALUES, ctx->local));
  PetscCall(DMGlobalToLocalEnd(ctx->da, u, INSERT_VALUES, ctx->local));
  PetscCall(DMDAGetCorners(ctx->da, &xs, &ys, NULL, &xm, &ym, NULL));
  PetscCall(DMDAVecGetArrayRead(ctx->da, ctx->local, &uu));
  PetscCall(DMDAVecGetArray(ctx->da, y, &yy));
  for (j = ys; j < ys + ym; j++) {
    const PetscScalar *row = uu[j], *up = uu[j - 1], *down = uu[j + 1];
    PetscScalar       *out = yy[j];
    for (i = xs; i < xs + xm; i++) out[i] = 4.0 * row[i] - row[i - 1] - row[i + 1] - up[i] - down[i];
  }
  PetscCall(DMDAVecRestoreArrayRead(ctx->da, ctx->local, &uu));
  PetscCall(DMDAVecRestoreArray(ctx->da, y, &yy));
  PetscCall(PetscLogFlops(9.0 * xm * ym));
  PetscFunctionReturn(0);
}

static PetscReal exact(PetscInt n, PetscInt i, PetscInt j)
{
  PetscReal h = 1.0 / (PetscReal)(n + 1), x = (i + 1) * h, y = (j + 1) * h;
  return PetscSinReal(PETSC_PI * x) * PetscSinReal(2.0 * PETSC_PI * y) + x * y;
}

static int cmp(const void *a, const void *b)
{
  PetscReal x = *(const PetscReal *)a, y = *(const PetscReal *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
  Ctx          ctx;
  Mat          A;
  Vec          ustar, b, x, diff;
  KSP          ksp;
  PC           pc;
  PetscInt     n = 512, reps = 1, xs, ys, xm, ym, i, j, its = 0, r;
  PetscMPIInt  size;
  PetscScalar **us;
  PetscReal    times[64], rnorm, bnorm, err;

  PetscFunctionBeginUser;
  PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  if (reps < 1) reps = 1;
  if (reps > 64) reps = 64;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));

  PetscCall(DMDACreate2d(PETSC_COMM_WORLD, DM_BOUNDARY_GHOSTED, DM_BOUNDARY_GHOSTED, DMDA_STENCIL_STAR, n, n, PETSC_DECIDE, PETSC_DECIDE, 1, 1, NULL, NULL, &ctx.da));
  PetscCall(DMSetFromOptions(ctx.da));
  PetscCall(DMSetUp(ctx.da));
  PetscCall(DMCreateLocalVector(ctx.da, &ctx.local));
  PetscCall(VecZeroEntries(ctx.local));

  PetscCall(DMCreateGlobalVector(ctx.da, &ustar));
  PetscCall(VecDuplicate(ustar, &b));
  PetscCall(VecDuplicate(ustar, &x));
  PetscCall(VecDuplicate(ustar, &diff));
  PetscCall(DMDAGetCorners(ctx.da, &xs, &ys, NULL, &xm, &ym, NULL));
  PetscCall(DMDAVecGetArray(ctx.da, ustar, &us));
  for (j = ys; j < ys + ym; j++)
    for (i = xs; i < xs + xm; i++) us[j][i] = exact(n, j, i);
  PetscCall(DMDAVecRestoreArray(ctx.da, ustar, &us));

  PetscCall(MatCreateShell(PETSC_COMM_WORLD, xm * ym, xm * ym, n * n, n * n, &ctx, &A));
  PetscCall(MatShellSetOperation(A, MATOP_MULT, (void (*)(void))apply));
  PetscCall(MatSetOption(A, MAT_SYMMETRIC, PETSC_TRUE));
  PetscCall(MatMult(A, ustar, b)); /* b = A u* */

  PetscCall(KSPCreate(PETSC_COMM_WORLD, &ksp));
  PetscCall(KSPSetOperators(ksp, A, A));
  PetscCall(KSPSetType(ksp, KSPCG));
  PetscCall(KSPGetPC(ksp, &pc));
  PetscCall(PCSetType(pc, PCNONE));
  PetscCall(KSPSetTolerances(ksp, 1e-8, PETSC_DEFAULT, PETSC_DEFAULT, 10 * n * n));
  PetscCall(KSPSetFromOptions(ksp));
  PetscCall(KSPSetUp(ksp));

  for (r = 0; r < reps; r++) {
    PetscLogDouble t0, t1;
    PetscCall(VecZeroEntries(x));
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    PetscCall(PetscTime(&t0));
    PetscCall(KSPSolve(ksp, b, x));
    PetscCall(PetscTime(&t1));
    times[r] = t1 - t0;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &times[r], 1, MPIU_REAL, MPI_MAX, PETSC_COMM_WORLD));
    PetscCall(KSPGetIterationNumber(ksp, &its));
  }
  qsort(times, reps, sizeof(PetscReal), cmp);

  /* true relative residual and the error against u* */
  PetscCall(MatMult(A, x, diff));
  PetscCall(VecAYPX(diff, -1.0, b));
  PetscCall(VecNorm(diff, NORM_2, &rnorm));
  PetscCall(VecNorm(b, NORM_2, &bnorm));
  PetscCall(VecWAXPY(diff, -1.0, ustar, x));
  PetscCall(VecNorm(diff, NORM_INFINITY, &err));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "petsc_cg n=%" PetscInt_FMT " ranks=%d iterations=%" PetscInt_FMT " time_s=%.6f ms_per_iteration=%.6f resid=%.3e err=%.3e\n", n, size, its, (double)times[reps / 2],
                        1e3 * (double)times[reps / 2] / (double)(its > 0 ? its : 1), (double)(rnorm / bnorm), (double)err));

  PetscCall(KSPDestroy(&ksp));
  PetscCall(MatDestroy(&A));
  PetscCall(VecDestroy(&ustar));
  PetscCall(VecDestroy(&b));
  PetscCall(VecDestroy(&x));
  PetscCall(VecDestroy(&diff));
  PetscCall(VecDestroy(&ctx.local));
  PetscCall(DMDestroy(&ctx.da));
  PetscCall(PetscFinalize());
  return 0;
}
