/* Preprocessed (not compiled) by build.rs: tells which MPI family the
 * headers belong to, so the crate's tests know which launcher to use. */
#include <mpi.h>
#if defined(OPEN_MPI)
DISTARRAY_MPI_FAMILY=openmpi
#elif defined(MPICH_VERSION) || defined(MPICH)
DISTARRAY_MPI_FAMILY=mpich
#else
DISTARRAY_MPI_FAMILY=other
#endif
