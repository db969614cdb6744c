"""Effect policies: how an adapter is attempted — timeout, retries with backoff and jitter, dead letter.

A policy is operational, not part of the era: it changes no journal byte.
Only an effect's final receipt is journaled, so a world whose effects end
with the same outcomes writes the same journal however many attempts they
took (see docs/effects.md, "Effect policies").

Policies are given per effect kind or per capability, with an explicit
prefix so that neither can be mistaken for the other (an effect kind may be
any text)::

    World.open(path, m, effect_policies={
        "kind:payment.send": aos.EffectPolicy(timeout=5, retries=4, backoff=0.5),
        "cap:mail": aos.EffectPolicy(retries=2, dead_letter="park"),
    })

An intent takes the policy of its kind if there is one, else the policy of
its capability, else none (one attempt; an adapter that raises gives an
error receipt at once, as without policies).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping

from aos.errors import EffectPolicyError

__all__ = ["EffectPolicy", "DEAD_LETTERS", "resolve_policies", "Policies"]

DEAD_LETTERS = ("receipt", "park")


def _seconds(name: str, value: Any, *, allow_none: bool = False, positive: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a number of seconds > 0" if positive else "a number of seconds >= 0"
        raise EffectPolicyError(f"EffectPolicy {name} must be {need}{' or None' if allow_none else ''}, "
                                f"got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class EffectPolicy:
    """How the adapter of an effect is attempted.

    ``timeout``: seconds an attempt may take (None: no limit); an ``async``
    adapter is cancelled, a sync adapter's thread cannot be, so its late
    answer is discarded. ``retries``: attempts after the first when an
    attempt raises or times out (an adapter that *returns*
    ``Outcome("error", ...)`` has answered, and is not retried). The n-th
    retry waits ``min(max_backoff, backoff * 2**(n-1))`` seconds, scaled by a
    random factor in ``[1 - jitter, 1 + jitter]``. ``dead_letter``: after the
    last attempt, ``"receipt"`` admits an error receipt whose payload records
    the attempts (``{"error", "message", "attempts"}``); ``"park"`` keeps the
    intent queued, unsettled, in the world's durable dead-letter list until
    ``World.retry_effect`` (or ``aos effects --retry``) or
    ``World.give_up_effect``.
    """

    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.1
    max_backoff: float = 60.0
    jitter: float = 0.1
    dead_letter: str = "receipt"

    def __post_init__(self) -> None:
        _seconds("timeout", self.timeout, allow_none=True, positive=True)
        if type(self.retries) is not int or self.retries < 0:
            raise EffectPolicyError(f"EffectPolicy retries must be an int >= 0, got {self.retries!r}")
        _seconds("backoff", self.backoff)
        _seconds("max_backoff", self.max_backoff)
        if type(self.jitter) not in (int, float) or not 0 <= self.jitter <= 1:
            raise EffectPolicyError(f"EffectPolicy jitter must be a fraction from 0 to 1, got {self.jitter!r}")
        if self.dead_letter not in DEAD_LETTERS:
            raise EffectPolicyError(f"EffectPolicy dead_letter must be one of {DEAD_LETTERS}, "
                                    f"got {self.dead_letter!r}")

    @property
    def attempts(self) -> int:
        """The most attempts an intent gets under this policy."""
        return self.retries + 1

    def delay(self, failed: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failed``-th failed attempt (1 for the first) before the next one."""
        base = min(self.max_backoff, self.backoff * 2.0 ** min(failed - 1, 64))
        if self.jitter and base:
            base *= 1.0 + self.jitter * (2.0 * (rng or random).random() - 1.0)
        return max(0.0, base)


class Policies:
    """The policies of one world, looked up per intent: its kind's, else its capability's, else None."""

    __slots__ = ("by_kind", "by_cap")

    def __init__(self, by_kind: dict[str, EffectPolicy] | None = None,
                 by_cap: dict[str, EffectPolicy] | None = None) -> None:
        self.by_kind = by_kind or {}
        self.by_cap = by_cap or {}

    def __bool__(self) -> bool:
        return bool(self.by_kind or self.by_cap)

    def for_effect(self, kind: str, cap: str) -> EffectPolicy | None:
        got = self.by_kind.get(kind)
        return got if got is not None else self.by_cap.get(cap)


def resolve_policies(policies: Mapping[str, EffectPolicy] | None, capabilities: Mapping[str, Any]) -> Policies:
    """Check ``World.open(effect_policies=...)`` against the manifest's capabilities (name -> Capability).

    Keys are ``"kind:<effect kind>"`` (a kind some capability covers) or
    ``"cap:<capability>"`` (a declared capability); values are
    :class:`EffectPolicy`. Anything else raises :class:`EffectPolicyError`
    naming the key.
    """
    if policies is None:
        return Policies()
    if not isinstance(policies, Mapping):
        raise EffectPolicyError(f"effect_policies must map 'kind:<kind>' or 'cap:<capability>' to "
                                f"aos.EffectPolicy, got {type(policies).__name__}")
    kinds = {k for c in capabilities.values() for k in c.effects}
    out = Policies()
    for key, policy in policies.items():
        if not isinstance(key, str):
            raise EffectPolicyError(f"effect_policies key {key!r} is not a string ('kind:<kind>' or "
                                    "'cap:<capability>')", key=None)
        if not isinstance(policy, EffectPolicy):
            raise EffectPolicyError(f"effect_policies[{key!r}] must be an aos.EffectPolicy, got "
                                    f"{type(policy).__name__}", key=key)
        prefix, sep, name = key.partition(":")
        if not sep or not name or prefix not in ("kind", "cap"):
            raise EffectPolicyError(f"effect_policies key {key!r} must be 'kind:<effect kind>' or "
                                    "'cap:<capability>'", key=key)
        if prefix == "kind":
            if name not in kinds:
                raise EffectPolicyError(f"effect_policies key {key!r}: no capability of the manifest covers "
                                        f"effect kind {name!r}", key=key)
            out.by_kind[name] = policy
        else:
            if name not in capabilities:
                raise EffectPolicyError(f"effect_policies key {key!r}: the manifest declares no capability "
                                        f"{name!r}", key=key)
            out.by_cap[name] = policy
    return out
