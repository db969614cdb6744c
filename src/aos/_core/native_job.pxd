# A native step prepared for a worker that runs it without the GIL (internal to aos._core).
from aos._core.native cimport aos_out, aos_reducer_fn, aos_step_in


cdef struct NativeJob:
    aos_reducer_fn fn
    void* user
    aos_step_in inp
    aos_out out
    int rc
