"""Native (C) reducers: the ABI's Python side (``native.pyx``)."""

from typing import Final

from typing_extensions import CapsuleType

ABI_VERSION: Final[int]
CAPSULE_NAME: Final[str]

# ``(error, state_action, state, emits, effects)``: ``error`` None or the failure message; ``state_action``
# 0 keeps the state, 1 sets ``state``, 2 deletes the cell; emits ``(schema, value)``; effects
# ``(kind, params, cap, cost)``.
_Outputs = tuple[str | None, int, bytes | None, list[tuple[str, bytes]], list[tuple[str, bytes, str | None, int]]]

class NativeCall:
    @property
    def state(self) -> bytes | None: ...
    def outputs(self) -> _Outputs: ...

class NativeReducer:
    def __init__(self, fn: CapsuleType | int, user: CapsuleType | int | None = None) -> None: ...
    def prepare(self, event_id: int, state: bytes | None, schema: bytes, event: bytes, key: bytes,
                seed: bytes) -> NativeCall: ...
    def step(self, event_id: int, state: bytes | None, schema: bytes, event: bytes, key: bytes,
             seed: bytes) -> _Outputs: ...
