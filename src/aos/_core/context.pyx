# cython: language_level=3
# cython: freethreading_compatible=True
"""The fields of a step's context and of the event a reducer sees.

:class:`aos.context.StepContext` and :class:`aos.context.Event` are Python
classes built on these: the inline loop makes them and fills their fields
in C, without running Python code; their methods stay in
:mod:`aos.context`.
"""

__all__ = ["StepFields", "EventFields"]


cdef class StepFields:
    """``event_id``, ``reducer``, ``key`` and what the step has emitted, intended and read."""


cdef class EventFields:
    """``schema``, ``value`` and ``seq`` (the admission number)."""
