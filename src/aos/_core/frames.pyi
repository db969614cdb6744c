"""The journal's frames: writing, scanning and checking them in C (``frames.pyx``)."""

from typing import Final

from _typeshed import ReadableBuffer

__all__ = ["append", "scan", "chain_check", "length_check", "FRAME_HEAD", "CHAIN_SIZE", "MAX_RECORD"]

FRAME_HEAD: Final[int]
CHAIN_SIZE: Final[int]
MAX_RECORD: Final[int]
SCAN_END: Final[int]
SCAN_SHORT_HEAD: Final[int]
SCAN_BAD_LENGTH: Final[int]
SCAN_PAST_END: Final[int]
SCAN_BAD_CHAIN: Final[int]

def length_check(n: int) -> int: ...
def append(buf: bytearray, prev: bytes, payload: bytes) -> bytes: ...
def chain_check(data: ReadableBuffer, offset: int, chain: bytes, limit: int) -> tuple[int, int, int, bytes]:
    """``(count, stop, offset, chain)``."""

def scan(data: ReadableBuffer, offset: int, chain: bytes, limit: int = -1,
         checked: bool = False) -> tuple[list[tuple[int, bytes, bytes]], int, int, bytes]:
    """``(frames, stop, offset, chain)``, each frame ``(offset, payload, chain)``."""

class FrameWriter:
    pending: int
    last_flush: float
    closed: bool
    def __init__(self, index: int, chain: bytes, offset: int, segment_bytes: int, header_size: int, mode: str,
                 group_commits: int, group_ms: float) -> None: ...
    @property
    def index(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def segment_bytes(self) -> int: ...
    @property
    def header_size(self) -> int: ...
    @property
    def mode(self) -> int:
        """0: none, 1: group, 2: always."""

    @property
    def group_commits(self) -> int: ...
    @property
    def group_ms(self) -> float: ...
    @property
    def chain(self) -> bytes: ...
    @property
    def buffered(self) -> int: ...
    def append(self, payload: bytes) -> int: ...
    def append_record(self, record: object) -> int: ...
    def commit_point(self) -> int: ...
    def pending_bytes(self) -> bytes: ...
    def clear(self) -> None: ...
    def take(self) -> bytes: ...
    def flushed(self, now: float) -> None: ...
    def new_segment(self, header_size: int) -> None: ...

class FrameCursor:
    _frames: list[tuple[int, bytes, bytes]]
    _i: int
    _first: int
    _next: bytes | None
    _scheduled: bytes | None
    records: int
    def __init__(self) -> None: ...
