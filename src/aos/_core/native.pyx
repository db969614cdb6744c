# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""Calling native reducers (aos_native.h) with the GIL released.

The worker hands the step's inputs as byte strings; ``NativeReducer.step``
fills an ``aos_step_in``, releases the GIL, calls the C function, and turns
what it reported through the ``aos_out`` callbacks (collected in C buffers)
back into Python values.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport int64_t, uint8_t, uint32_t, uintptr_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, strlen


ABI_VERSION = 1
CAPSULE_NAME = "aos.reducer.v1"


cdef int buf_put(Buf* b, const void* src, size_t n) noexcept nogil:
    cdef size_t want = b.len + n
    cdef size_t cap
    cdef uint8_t* p
    if want > b.cap:
        cap = b.cap * 2 if b.cap else 256
        while cap < want:
            cap *= 2
        p = <uint8_t*>realloc(b.data, cap)
        if p == NULL:
            return -1
        b.data = p
        b.cap = cap
    if n:
        memcpy(b.data + b.len, src, n)
    b.len = want
    return 0


cdef int buf_put_sized(Buf* b, const void* src, size_t n) noexcept nogil:
    cdef uint32_t m = <uint32_t>n
    if n > <size_t>0xfffffffe:
        return -1
    if buf_put(b, &m, 4) != 0:
        return -1
    return buf_put(b, src, n)


cdef inline Impl* impl_of(aos_out* out) noexcept nogil:
    return <Impl*>out.impl


cdef int cb_set_state(aos_out* out, const uint8_t* data, size_t len) noexcept nogil:
    cdef Impl* im = impl_of(out)
    im.state.len = 0
    if data == NULL:
        im.state_action = 2
        return 0
    im.state_action = 1
    if buf_put(&im.state, data, len) != 0:
        im.oom = 1
        return -1
    return 0


cdef int cb_emit(aos_out* out, const char* schema, const uint8_t* value, size_t len) noexcept nogil:
    cdef Impl* im = impl_of(out)
    if schema == NULL or value == NULL:
        return -1
    if buf_put_sized(&im.emits, schema, strlen(schema)) != 0 or buf_put_sized(&im.emits, value, len) != 0:
        im.oom = 1
        return -1
    return 0


cdef int cb_effect(aos_out* out, const char* kind, const uint8_t* params, size_t len, const char* cap,
                   int64_t cost) noexcept nogil:
    cdef Impl* im = impl_of(out)
    cdef uint32_t none = 0xffffffff
    if kind == NULL or params == NULL:
        return -1
    if buf_put_sized(&im.effects, kind, strlen(kind)) != 0 or buf_put_sized(&im.effects, params, len) != 0:
        im.oom = 1
        return -1
    if cap == NULL:
        if buf_put(&im.effects, &none, 4) != 0:
            im.oom = 1
            return -1
    elif buf_put_sized(&im.effects, cap, strlen(cap)) != 0:
        im.oom = 1
        return -1
    if buf_put(&im.effects, &cost, 8) != 0:
        im.oom = 1
        return -1
    return 0


cdef int cb_fail(aos_out* out, const char* message) noexcept nogil:
    cdef Impl* im = impl_of(out)
    im.error.len = 0
    if message == NULL:
        return 0
    if buf_put(&im.error, message, strlen(message)) != 0:
        im.oom = 1
        return -1
    return 0


cdef bytes take(Buf* b, size_t* pos, size_t n):
    cdef bytes r = PyBytes_FromStringAndSize(<char*>b.data + pos[0], n)
    pos[0] += n
    return r


cdef uint32_t take_u32(Buf* b, size_t* pos):
    cdef uint32_t v
    memcpy(&v, b.data + pos[0], 4)
    pos[0] += 4
    return v


cdef tuple collect(Impl* im, int rc):
    """``(error, state_action, state, emits, effects)`` from what a call reported."""
    cdef size_t pos
    cdef uint32_t n
    cdef int64_t cost
    if im.oom:
        raise MemoryError("native reducer output")
    if rc != 0:
        msg = (PyBytes_FromStringAndSize(<char*>im.error.data, im.error.len).decode("utf-8", "replace")
               if im.error.len else f"native reducer returned {rc}")
        return msg, 0, None, [], []
    new_state = None
    if im.state_action == 1:
        pos = 0
        new_state = take(&im.state, &pos, im.state.len)
    emits = []
    pos = 0
    while pos < im.emits.len:
        n = take_u32(&im.emits, &pos)
        sch = take(&im.emits, &pos, n).decode("utf-8")
        n = take_u32(&im.emits, &pos)
        emits.append((sch, take(&im.emits, &pos, n)))
    effects = []
    pos = 0
    while pos < im.effects.len:
        n = take_u32(&im.effects, &pos)
        kind = take(&im.effects, &pos, n).decode("utf-8")
        n = take_u32(&im.effects, &pos)
        params = take(&im.effects, &pos, n)
        n = take_u32(&im.effects, &pos)
        cap = None if n == 0xffffffff else take(&im.effects, &pos, n).decode("utf-8")
        memcpy(&cost, im.effects.data + pos, 8)
        pos += 8
        effects.append((kind, params, cap, cost))
    return None, im.state_action, new_state, emits, effects


cdef void impl_init(Impl* im) noexcept:
    im.state.data = im.emits.data = im.effects.data = im.error.data = NULL
    im.state.len = im.emits.len = im.effects.len = im.error.len = 0
    im.state.cap = im.emits.cap = im.effects.cap = im.error.cap = 0
    im.state_action = 0
    im.oom = 0


cdef void impl_free(Impl* im) noexcept:
    free(im.state.data)
    free(im.emits.data)
    free(im.effects.data)
    free(im.error.data)
    impl_init(im)


cdef class NativeCall:
    """One native step prepared for a worker: inputs held, the call made later without the GIL.

    :meth:`NativeReducer.prepare` fills it (with the GIL); a worker runs the
    C function through its ``job`` (a ``NativeJob``, see native.pxd: the
    pipeline takes its address in C) without ever taking the GIL;
    :meth:`outputs` then reads the result.
    """

    # attributes: see native.pxd

    def __dealloc__(self):
        impl_free(&self.im)

    cpdef tuple outputs(self):
        """``(error, state_action, state, emits, effects)``, as :meth:`NativeReducer.step` returns."""
        try:
            return collect(&self.im, self.job.rc)
        finally:
            impl_free(&self.im)


cdef class NativeReducer:
    """A native reducer function (from a PyCapsule or an address) and its user pointer."""

    # attributes: see native.pxd

    def __init__(self, fn, user=None):
        if PyCapsule_IsValid(fn, CAPSULE_NAME.encode()):
            self.fn = <aos_reducer_fn>PyCapsule_GetPointer(fn, CAPSULE_NAME.encode())
        elif isinstance(fn, int) and fn:
            self.fn = <aos_reducer_fn><uintptr_t>fn
        else:
            raise TypeError(f"a native reducer is a PyCapsule named {CAPSULE_NAME!r} or a non-zero "
                            f"function address, got {fn!r}")
        if user is None:
            self.user = NULL
        elif isinstance(user, int):
            self.user = <void*><uintptr_t>user
        elif PyCapsule_IsValid(user, NULL):
            self.user = PyCapsule_GetPointer(user, NULL)
        else:
            raise TypeError(f"user must be None, an address or an unnamed PyCapsule, got {user!r}")
        self.keep = (fn, user)

    cpdef NativeCall prepare(self, int64_t event_id, object state, bytes schema, bytes event, bytes key, bytes seed):
        """A :class:`NativeCall` of one step, for a worker to run without the GIL."""
        cdef NativeCall c = NativeCall.__new__(NativeCall)
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes")
        c.state = state
        c.keep = (state, schema, event, key, seed, self)
        c.job.fn = self.fn
        c.job.user = self.user
        c.job.rc = 0
        c.job.inp.event_id = event_id
        if state is None:
            c.job.inp.state = NULL
            c.job.inp.state_len = 0
        else:
            c.job.inp.state = <const uint8_t*>PyBytes_AS_STRING(state)
            c.job.inp.state_len = PyBytes_GET_SIZE(state)
        c.job.inp.schema = PyBytes_AS_STRING(schema)
        c.job.inp.event = <const uint8_t*>PyBytes_AS_STRING(event)
        c.job.inp.event_len = PyBytes_GET_SIZE(event)
        c.job.inp.key = <const uint8_t*>PyBytes_AS_STRING(key)
        c.job.inp.key_len = PyBytes_GET_SIZE(key)
        c.job.inp.seed = <const uint8_t*>PyBytes_AS_STRING(seed)
        impl_init(&c.im)
        c.job.out.impl = &c.im
        c.job.out.set_state = cb_set_state
        c.job.out.emit = cb_emit
        c.job.out.effect = cb_effect
        c.job.out.fail = cb_fail
        return c

    def step(self, int64_t event_id, object state, bytes schema, bytes event, bytes key, bytes seed):
        """Run one step. Returns ``(error, state_action, state, emits, effects)``.

        ``error`` is None or the failure message; ``state_action`` 0 keeps the
        state, 1 sets ``state``, 2 deletes the cell; ``emits`` is a list of
        ``(schema, value)`` and ``effects`` of ``(kind, params, cap, cost)``.
        """
        cdef NativeCall c = self.prepare(event_id, state, schema, event, key, seed)
        with nogil:
            c.job.rc = c.job.fn(&c.job.inp, &c.job.out, c.job.user)
        return c.outputs()
