//! MPI RMA backend for distarray (in progress).
