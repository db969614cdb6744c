"""Idempotent submission: the index of keys ``World.submit(..., idempotency_key=)`` admitted events with.

A key admits its event once: a later submission with the same key admits
nothing and returns the first admission's number. The key is journaled with
the event (``EventAdmitted.idempotency_key``), so the index is kernel state
rebuilt from the journal — the newest snapshot holds it (its
``idempotency`` entry), replay of the records after it adds the rest, and a
replay from the first record makes the same index.

Retention: the index holds the last ``keep`` keyed admissions, in admission
order (``World.open(..., idempotency_keep=)``, default
:data:`DEFAULT_KEEP`); the oldest key is forgotten when a newer one would
exceed it. A key submitted again after it was forgotten admits its event
again, like an expired key of a payment API. The index is not journaled (a
duplicate writes nothing), so ``keep`` may change between opens; it decides
only which duplicates are recognised from then on. See docs/storage.md,
"Idempotent submission".
"""

from __future__ import annotations

from typing import Any

from aos.errors import IdempotencyKeyError

__all__ = ["SubmitKeys", "check_key", "key_problem", "MAX_KEY_BYTES", "DEFAULT_KEEP"]

MAX_KEY_BYTES = 255  # a key's UTF-8 length at most
DEFAULT_KEEP = 100_000  # keyed admissions the index remembers


def key_problem(key: Any) -> str | None:
    """What is wrong with ``key`` as an idempotency key (None: nothing)."""
    if not isinstance(key, str):
        return f"must be a str, got {type(key).__name__}"
    if not key:
        return "must not be empty"
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    if n > MAX_KEY_BYTES:
        return f"is {n} UTF-8 bytes long; at most {MAX_KEY_BYTES} are allowed"
    return None


def check_key(key: Any, where: str) -> str:
    """``key`` as a plain str, or :class:`IdempotencyKeyError` naming what is wrong (at ``where``)."""
    problem = key_problem(key)
    if problem is not None:
        shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
        raise IdempotencyKeyError(f"{where}: idempotency_key {shown} {problem}; nothing was admitted")
    return key if type(key) is str else str.__str__(key)


def check_keep(keep: Any) -> int:
    if type(keep) is not int or keep < 1:
        from aos.errors import ArgumentError

        raise ArgumentError(f"idempotency_keep must be an int >= 1, got {keep!r}")
    return keep


class SubmitKeys:
    """Keys of keyed admissions -> their admission numbers, oldest first, at most ``keep`` of them."""

    __slots__ = ("seqs", "keep")

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.seqs: dict[str, int] = {}  # in admission order (a dict keeps insertion order)
        self.keep = keep

    def __len__(self) -> int:
        return len(self.seqs)

    def get(self, key: str) -> int | None:
        return self.seqs.get(key)

    def record(self, key: str, seq: int) -> None:
        """Key ``key`` admitted event ``seq`` (the newest admission; a forgotten key admitted again moves last)."""
        seqs = self.seqs
        seqs.pop(key, None)
        seqs[key] = seq
        if len(seqs) > self.keep:
            del seqs[next(iter(seqs))]

    def limit(self, keep: int) -> None:
        """Keep at most the newest ``keep`` keys from now on."""
        self.keep = keep
        seqs = self.seqs
        while len(seqs) > keep:
            del seqs[next(iter(seqs))]

    def export(self) -> list[list[Any]]:
        """``[key, seq]`` rows, oldest first (a snapshot's ``idempotency`` entry)."""
        return [[k, s] for k, s in self.seqs.items()]

    def restore(self, rows: Any) -> None:
        """Rows as :meth:`export` makes them; ValueError when malformed."""
        if type(rows) is not list or not all(type(r) is list and len(r) == 2 and type(r[0]) is str
                                             and type(r[1]) is int and r[1] >= 0 for r in rows):
            raise ValueError("idempotency must be a list of [key, admission number] rows")
        self.seqs = {k: s for k, s in rows}
        if len(self.seqs) != len(rows):
            raise ValueError("idempotency names a key twice")
        self.limit(self.keep)
