/*
 * distarray-mpi's C shim: the MPI handles and constants the crate needs,
 * taken from the `mpi.h` of whichever MPI library the build found, so that
 * the Rust code never depends on how one implementation spells them (Open
 * MPI's handles are pointers to predefined objects, MPICH's are integers).
 * Compiled by build.rs with the same MPI that the `mpi` crate was built
 * against (build-probe-mpi: MPI_PKG_CONFIG, CRAY_MPICH_DIR, MPICC, mpicc).
 */
#include <mpi.h>

/* Sizes of the handle types as this shim sees them: checked at start-up
 * against the `mpi` crate's bindings, so that a shim and bindings built
 * against two different MPI libraries fail with an error instead of
 * reading garbage. */
const int DISTARRAY_SIZEOF_MPI_OP = (int)sizeof(MPI_Op);
const int DISTARRAY_SIZEOF_MPI_DATATYPE = (int)sizeof(MPI_Datatype);
const int DISTARRAY_SIZEOF_MPI_COMM = (int)sizeof(MPI_Comm);
const MPI_Comm DISTARRAY_MPI_COMM_WORLD = MPI_COMM_WORLD;

/* Element datatypes. */
const MPI_Datatype DISTARRAY_MPI_INT8_T = MPI_INT8_T;
const MPI_Datatype DISTARRAY_MPI_INT16_T = MPI_INT16_T;
const MPI_Datatype DISTARRAY_MPI_INT32_T = MPI_INT32_T;
const MPI_Datatype DISTARRAY_MPI_INT64_T = MPI_INT64_T;
const MPI_Datatype DISTARRAY_MPI_UINT8_T = MPI_UINT8_T;
const MPI_Datatype DISTARRAY_MPI_UINT16_T = MPI_UINT16_T;
const MPI_Datatype DISTARRAY_MPI_UINT32_T = MPI_UINT32_T;
const MPI_Datatype DISTARRAY_MPI_UINT64_T = MPI_UINT64_T;
const MPI_Datatype DISTARRAY_MPI_FLOAT = MPI_FLOAT;
const MPI_Datatype DISTARRAY_MPI_DOUBLE = MPI_DOUBLE;
const MPI_Datatype DISTARRAY_MPI_C_FLOAT_COMPLEX = MPI_C_FLOAT_COMPLEX;
const MPI_Datatype DISTARRAY_MPI_C_DOUBLE_COMPLEX = MPI_C_DOUBLE_COMPLEX;
const MPI_Datatype DISTARRAY_MPI_DATATYPE_NULL = MPI_DATATYPE_NULL;

/* Reduction operators (MPI_REPLACE: the `mpi` crate exports none). */
const MPI_Op DISTARRAY_MPI_REPLACE = MPI_REPLACE;
const MPI_Op DISTARRAY_MPI_SUM = MPI_SUM;
const MPI_Op DISTARRAY_MPI_PROD = MPI_PROD;
const MPI_Op DISTARRAY_MPI_MIN = MPI_MIN;
const MPI_Op DISTARRAY_MPI_MAX = MPI_MAX;
const MPI_Op DISTARRAY_MPI_OP_NULL = MPI_OP_NULL;

/* Error handlers (the communicator's is swapped around window creation). */
const MPI_Errhandler DISTARRAY_MPI_ERRORS_RETURN = MPI_ERRORS_RETURN;

/* Error classes told apart in messages. */
const int DISTARRAY_MPI_ERR_NO_MEM = MPI_ERR_NO_MEM;

/* Called once, at the start of MPI_Finalize (see below). */
static void (*distarray_finalize_callback)(void) = 0;

/* Delete callback of the attribute set on MPI_COMM_SELF: MPI deletes the
 * attributes of MPI_COMM_SELF first thing in MPI_Finalize, while MPI still
 * works (MPI standard, "Allowing User Functions at Process Termination"). */
static int distarray_on_self_delete(MPI_Comm comm, int keyval, void *attr, void *extra)
{
    (void)comm;
    (void)keyval;
    (void)attr;
    (void)extra;
    if (distarray_finalize_callback) {
        distarray_finalize_callback();
    }
    return MPI_SUCCESS;
}

/* Arranges for `callback` to run at the start of MPI_Finalize, whoever
 * calls it. MPI must be initialised; call once per process. Returns an MPI
 * error code. */
int distarray_mpi_watch_finalize(void (*callback)(void))
{
    int keyval;
    int rc;
    distarray_finalize_callback = callback;
    rc = MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, distarray_on_self_delete, &keyval, 0);
    if (rc != MPI_SUCCESS) {
        return rc;
    }
    return MPI_Comm_set_attr(MPI_COMM_SELF, keyval, 0);
}
