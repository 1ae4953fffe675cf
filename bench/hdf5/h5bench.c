/* Parallel HDF5 baseline for backends/mpi/examples/hdf5_bench.rs: the same
 * 2-D float64 array (rows split over the ranks as distarray's default
 * partition: the first `rows % P` ranks get one row more), each rank's rows
 * written and read as one hyperslab with collective MPI-IO transfers
 * (H5FD_MPIO_COLLECTIVE), contiguous dataset, no fill values, HDF5 1.8
 * object formats (as distarray writes it). Times, per repetition, the slowest rank from a
 * barrier to the end of H5Fclose:
 *   write = H5Fcreate + H5Dcreate + H5Dwrite + close,
 *   read  = H5Fopen + H5Dopen + H5Dread + close (into a buffer allocated once).
 *
 *   h5pcc -O3 -o h5bench h5bench.c
 *   mpirun -n 2 ./h5bench FILE ROWS COLS REPS
 */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                             \
    do {                                                                     \
        if ((x) < 0) {                                                       \
            fprintf(stderr, "h5bench: %s failed (line %d)\n", #x, __LINE__); \
            MPI_Abort(MPI_COMM_WORLD, 1);                                    \
        }                                                                    \
    } while (0)

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 5) {
        if (rank == 0) fprintf(stderr, "usage: h5bench FILE ROWS COLS REPS\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *path = argv[1];
    hsize_t rows = strtoull(argv[2], 0, 10), cols = strtoull(argv[3], 0, 10);
    int reps = atoi(argv[4]);
    hsize_t base = rows / size, extra = rows % size;
    hsize_t my_rows = base + (rank < (int)extra);
    hsize_t start = rank * base + (rank < (int)extra ? rank : extra);
    size_t n = (size_t)(my_rows * cols);
    double *buf = malloc(n * sizeof(double) + 1);
    for (size_t k = 0; k < n; k++) buf[k] = (double)(start * cols + k) * 0.5;

    double *tw = malloc(reps * sizeof(double)), *tr = malloc(reps * sizeof(double));
    hsize_t dims[2] = {rows, cols}, off[2] = {start, 0}, cnt[2] = {my_rows, cols};
    for (int r = 0; r < reps; r++) {
        /* write */
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        CHECK(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL));
        CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
        hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        CHECK(file);
        hid_t fspace = H5Screate_simple(2, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
        hid_t dset = H5Dcreate2(file, "x", H5T_NATIVE_DOUBLE, fspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        CHECK(dset);
        CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL));
        hid_t mspace = H5Screate_simple(2, cnt, NULL);
        hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
        CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
        CHECK(H5Dwrite(dset, H5T_NATIVE_DOUBLE, mspace, fspace, dxpl, buf));
        H5Pclose(dxpl); H5Sclose(mspace); H5Dclose(dset); H5Pclose(dcpl); H5Sclose(fspace);
        H5Pclose(fapl);
        CHECK(H5Fclose(file));
        double t1 = MPI_Wtime() - t0;
        MPI_Allreduce(&t1, &tw[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

        /* read */
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        fapl = H5Pcreate(H5P_FILE_ACCESS);
        CHECK(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL));
        file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
        CHECK(file);
        dset = H5Dopen2(file, "x", H5P_DEFAULT);
        CHECK(dset);
        fspace = H5Dget_space(dset);
        CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL));
        mspace = H5Screate_simple(2, cnt, NULL);
        dxpl = H5Pcreate(H5P_DATASET_XFER);
        CHECK(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
        CHECK(H5Dread(dset, H5T_NATIVE_DOUBLE, mspace, fspace, dxpl, buf));
        H5Pclose(dxpl); H5Sclose(mspace); H5Sclose(fspace); H5Dclose(dset); H5Pclose(fapl);
        CHECK(H5Fclose(file));
        t1 = MPI_Wtime() - t0;
        MPI_Allreduce(&t1, &tr[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    /* the values survived the round trip */
    for (size_t k = 0; k < n; k++)
        if (buf[k] != (double)(start * cols + k) * 0.5) {
            fprintf(stderr, "h5bench: wrong value at %zu\n", k);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    qsort(tw, reps, sizeof(double), cmp);
    qsort(tr, reps, sizeof(double), cmp);
    if (rank == 0) {
        double gib = (double)rows * cols * sizeof(double) / (1024.0 * 1024.0 * 1024.0);
        printf("c    P=%d %llux%llu f64 (%.4f GiB): write median %.2f ms (%.2f GiB/s, best %.2f ms), "
               "read median %.2f ms (%.2f GiB/s, best %.2f ms), %d reps\n",
               size, (unsigned long long)rows, (unsigned long long)cols, gib, 1e3 * tw[reps / 2],
               gib / tw[reps / 2], 1e3 * tw[0], 1e3 * tr[reps / 2], gib / tr[reps / 2],
               1e3 * tr[0], reps);
    }
    free(buf); free(tw); free(tr);
    MPI_Finalize();
    return 0;
}
