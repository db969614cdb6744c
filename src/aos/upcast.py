"""Upcasters: how events of an old schema reach code that reads a newer one.

A manifest maps an old event schema to a newer one with a pure function
``fn(old_value) -> new_value`` (:meth:`aos.Manifest.upcast`). Upcasters
chain (``@1 -> @2 -> @3``). An event of an upcast schema is routed like the
chain's last schema and journaled as it arrived; the chain runs when the
event is delivered to a reducer of the manifest (each :class:`ReducerSpec`
holds the chains of the schemas it receives through them, in ``upcasts``),
so replay runs it again. See docs/upgrades.md, "Upcasters".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from aos import canonical
from aos.errors import AosError, UpcastError
from aos.identity import CodeIdentity

if TYPE_CHECKING:
    from aos.kernel import Inbox
    from aos.manifest import Manifest

__all__ = ["Upcaster", "Chain", "run_chain", "chain_label", "check_inbox"]

Upcast = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Upcaster:
    """One upcaster of a manifest: events of schema ``old`` become events of schema ``new``."""

    old: str
    new: str
    fn: Upcast
    identity: CodeIdentity

    @property
    def code_id(self) -> str:
        return self.identity.id

    def describe(self, legacy: bool = False) -> dict[str, Any]:
        """This upcaster's part of the manifest description."""
        d: dict[str, Any] = {"from": self.old, "to": self.new,
                             "code": self.identity.legacy_id if legacy else self.identity.id}
        parts = None if legacy else self.identity.parts
        if parts is not None:
            d["code_parts"] = parts
        return d


Chain = tuple[Upcaster, ...]  # the upcasters from a schema to the end of its chain, in order


def chain_label(chain: Chain) -> str:
    """``"a@1 -> a@2 -> a@3"``: the schemas a chain goes through, for messages."""
    return " -> ".join([chain[0].old, *(u.new for u in chain)])


def run_chain(chain: Chain, value: Any, where: str) -> tuple[str, bytes, Any]:
    """Run ``chain`` on an event value: ``(new schema, its canonical bytes, its canonical value)``.

    Each upcaster gets the canonical form of the value before it (as a
    decoded event of that schema would be); each result must be a value of
    the canonical model. Raises :class:`UpcastError` naming the upcaster and
    ``where`` (the event and the reducer it goes to).
    """
    data = b""
    for up in chain:
        try:
            value = up.fn(value)
        except Exception as exc:
            raise UpcastError(f"upcaster {up.old} -> {up.new} raised {type(exc).__name__}: {_text(exc)} "
                              f"({where})", up.old, up.new) from exc
        try:
            data = canonical.encode(value, where=f"value returned by upcaster {up.old} -> {up.new}")
        except AosError as exc:
            raise UpcastError(f"upcaster {up.old} -> {up.new} returned a value that is not an event value: "
                              f"{exc} ({where})", up.old, up.new) from exc
        value = canonical.decode_trusted(data)
    return chain[-1].new, data, value


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__
        return "<unprintable message>"


def check_inbox(inbox: "Inbox", manifest: "Manifest") -> int:
    """Run ``manifest``'s upcasters over every waiting event of a schema it upcasts; return how many ran.

    For an apply (docs/upgrades.md): inputs already in the mailboxes are
    delivered to the new era's code, through its upcasters; one that fails
    on such an input refuses the apply (:class:`UpcastError`) before
    anything is written.
    """
    chains = manifest.upcast_chains
    if not chains:
        return 0
    ran = 0
    for seq in sorted(inbox.events):
        schema, value, _left = inbox.events[seq]
        chain = chains.get(schema)
        if chain is None:
            continue
        run_chain(chain, canonical.decode_trusted(value),
                  f"event seq {seq} waiting in a mailbox; nothing was written, the world stays in its era")
        ran += 1
    return ran
