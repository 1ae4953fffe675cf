/*
 * petsc_cg: PETSc's conjugate gradient on the system of distarray's Poisson
 * example (examples/apps/poisson.rs), matrix-free, for a side-by-side
 * comparison on the emulated network of bench/netem.
 *
 * The n x n grid is a DMDA split into row blocks (1 x P processes, as the
 * distarray example splits whole grid rows); the 5-point operator
 * (4 u - neighbours, Dirichlet zero outside the grid) is a MatShell whose
 * product exchanges the ghost rows with DMGlobalToLocal. The right-hand
 * side is A u* for the example's manufactured solution u*, the initial
 * guess zero, no preconditioner, the stopping test ||r|| <= rtol ||b||.
 * Any KSP option can be given on the command line (e.g. -ksp_type pipecg,
 * -ksp_norm_type natural).
 *
 * Usage: mpirun -n 2 ./petsc_cg [-n 64] [-rtol 1e-8]
 * Prints, on rank 0, the iterations, the relative residual, the solve time
 * and the time per iteration, and the max error against u*.
 *
 * Build: mpicc -O2 petsc_cg.c $(pkg-config --cflags --libs PETSc) -lm
 */
#include <math.h>
#include <petscdmda.h>
#include <petscksp.h>

typedef struct {
    DM da;
    Vec local; /* ghosted work vector */
} Ctx;

static PetscErrorCode apply(Mat A, Vec u, Vec y)
{
    Ctx *ctx;
    DMDALocalInfo info;
    const PetscScalar **uu;
    PetscScalar **yy;

    PetscFunctionBeginUser;
    PetscCall(MatShellGetContext(A, &ctx));
    PetscCall(DMDAGetLocalInfo(ctx->da, &info));
    PetscCall(DMGlobalToLocalBegin(ctx->da, u, INSERT_VALUES, ctx->local));
    PetscCall(DMGlobalToLocalEnd(ctx->da, u, INSERT_VALUES, ctx->local));
    PetscCall(DMDAVecGetArrayRead(ctx->da, ctx->local, &uu));
    PetscCall(DMDAVecGetArray(ctx->da, y, &yy));
    for (PetscInt j = info.ys; j < info.ys + info.ym; j++) {
        for (PetscInt i = info.xs; i < info.xs + info.xm; i++) {
            PetscScalar v = 4.0 * uu[j][i];
            if (i > 0)
                v -= uu[j][i - 1];
            if (i + 1 < info.mx)
                v -= uu[j][i + 1];
            if (j > 0)
                v -= uu[j - 1][i];
            if (j + 1 < info.my)
                v -= uu[j + 1][i];
            yy[j][i] = v;
        }
    }
    PetscCall(DMDAVecRestoreArrayRead(ctx->da, ctx->local, &uu));
    PetscCall(DMDAVecRestoreArray(ctx->da, y, &yy));
    PetscCall(PetscLogFlops(6.0 * info.xm * info.ym));
    PetscFunctionReturn(0);
}

/* u*(row, col) of the distarray example: row = DMDA j (y), col = i (x). */
static PetscScalar exact(PetscInt n, PetscInt row, PetscInt col)
{
    PetscReal h = 1.0 / (PetscReal)(n + 1);
    PetscReal x = (PetscReal)(row + 1) * h, y = (PetscReal)(col + 1) * h;
    return sin(PETSC_PI * x) * sin(2.0 * PETSC_PI * y) + x * y;
}

int main(int argc, char **argv)
{
    PetscInt n = 64, its;
    PetscReal rtol = 1e-8, rnorm, bnorm, err;
    PetscMPIInt size;
    Ctx ctx;
    Mat A;
    Vec ustar, b, x;
    KSP ksp;
    PC pc;
    DMDALocalInfo info;
    PetscScalar **us;

    PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
    PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
    PetscCall(PetscOptionsGetReal(NULL, NULL, "-rtol", &rtol, NULL));
    PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));

    /* n x n grid, 1 x size process grid: whole grid rows per rank */
    PetscCall(DMDACreate2d(PETSC_COMM_WORLD, DM_BOUNDARY_NONE, DM_BOUNDARY_NONE,
                           DMDA_STENCIL_STAR, n, n, 1, size, 1, 1, NULL, NULL, &ctx.da));
    PetscCall(DMSetUp(ctx.da));
    PetscCall(DMCreateLocalVector(ctx.da, &ctx.local));
    PetscCall(DMCreateGlobalVector(ctx.da, &ustar));
    PetscCall(VecDuplicate(ustar, &b));
    PetscCall(VecDuplicate(ustar, &x));
    PetscCall(DMDAGetLocalInfo(ctx.da, &info));

    PetscCall(DMDAVecGetArray(ctx.da, ustar, &us));
    for (PetscInt j = info.ys; j < info.ys + info.ym; j++)
        for (PetscInt i = info.xs; i < info.xs + info.xm; i++)
            us[j][i] = exact(n, j, i);
    PetscCall(DMDAVecRestoreArray(ctx.da, ustar, &us));

    PetscCall(MatCreateShell(PETSC_COMM_WORLD, info.xm * info.ym, info.xm * info.ym, n * n,
                             n * n, &ctx, &A));
    PetscCall(MatShellSetOperation(A, MATOP_MULT, (void (*)(void))apply));
    PetscCall(MatSetOption(A, MAT_SYMMETRIC, PETSC_TRUE));
    PetscCall(MatMult(A, ustar, b)); /* the discrete solution is exactly u* */

    PetscCall(KSPCreate(PETSC_COMM_WORLD, &ksp));
    PetscCall(KSPSetOperators(ksp, A, A));
    PetscCall(KSPSetType(ksp, KSPCG));
    PetscCall(KSPGetPC(ksp, &pc));
    PetscCall(PCSetType(pc, PCNONE));
    PetscCall(KSPSetTolerances(ksp, rtol, 0.0, PETSC_DEFAULT, 10 * n * n));
    PetscCall(KSPSetFromOptions(ksp));
    PetscCall(KSPSetUp(ksp));

    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    double t0 = MPI_Wtime();
    PetscCall(KSPSolve(ksp, b, x));
    double elapsed = MPI_Wtime() - t0;

    PetscCall(KSPGetIterationNumber(ksp, &its));
    PetscCall(KSPGetResidualNorm(ksp, &rnorm));
    PetscCall(VecNorm(b, NORM_2, &bnorm));
    PetscCall(VecAXPY(x, -1.0, ustar));
    PetscCall(VecNorm(x, NORM_INFINITY, &err));
    KSPType type;
    PetscCall(KSPGetType(ksp, &type));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                          "PETSc %s (matrix-free), %" PetscInt_FMT " x %" PetscInt_FMT
                          " grid, %d rank(s)\n",
                          type, n, n, size));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                          "  CG: %" PetscInt_FMT " iterations, relative residual %.2e, %.4f s "
                          "(%.4f ms/iteration)\n",
                          its, (double)(rnorm / bnorm), elapsed,
                          1e3 * elapsed / (double)(its > 0 ? its : 1)));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "  max error against the discrete solution: %.2e\n",
                          (double)err));

    PetscCall(KSPDestroy(&ksp));
    PetscCall(MatDestroy(&A));
    PetscCall(VecDestroy(&x));
    PetscCall(VecDestroy(&b));
    PetscCall(VecDestroy(&ustar));
    PetscCall(VecDestroy(&ctx.local));
    PetscCall(DMDestroy(&ctx.da));
    PetscCall(PetscFinalize());
    return 0;
}
