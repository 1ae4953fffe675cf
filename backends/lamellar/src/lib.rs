//! Lamellar backend for distarray (in progress).
