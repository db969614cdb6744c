# cython: language_level=3
# cython: freethreading_compatible=True
"""The fields of a step's context and of the event a reducer sees.

:class:`aos.context.StepContext` and :class:`aos.context.Event` are Python
classes built on these: the inline loop makes them and fills their fields
in C, without running Python code; their methods stay in
:mod:`aos.context`.
"""

__all__ = ["StepFields", "EventFields", "TypedPlan"]


cdef class StepFields:
    """``event_id``, ``reducer``, ``key`` and what the step has emitted, intended and read."""


cdef class EventFields:
    """``schema``, ``value`` and ``seq`` (the admission number)."""


cdef class TypedPlan:
    """What the inline loop needs to hand a typed reducer its values in C (:mod:`aos.typed`).

    Made only when every declared type is a plain dataclass (``Shape.fast``):
    the loop sets a map holding exactly the fields into a new instance, as
    the ``wrapper`` does, and reads the returned instance's fields back into
    a map. Anything else (a map with other keys, a field that does not set)
    goes through ``wrapper``, from the start, before the reducer has run.
    """

    def __init__(self, fn, wrapper, state_type, tuple state_fields, dict events, returned):
        self.fn = fn
        self.wrapper = wrapper
        self.state_type = state_type
        self.state_fields = state_fields
        self.events = events
        self.returned = returned
