"""aos: a deterministic, event-sourced world kernel with a native ticketed core.

>>> import aos
>>> m = aos.Manifest("acme/shop@1")
"""

import sys as _sys

if _sys.platform == "win32":  # (the build refuses too): the core uses pthreads and fcntl file locks
    raise ImportError("aos needs a POSIX system (Linux or macOS): its core uses pthreads and fcntl file locks; "
                      "Windows is not supported (use WSL)")

from aos import errors
from aos.adapters import EffectRequest, Outcome
from aos.capability import BudgetView
from aos.changes import Change, changes
from aos.context import Event, StepContext
from aos.eras import Era, UpgradeResult, upgrade
from aos.errors import *  # noqa: F401,F403 - the typed errors are part of the API
from aos.executor import RunResult
from aos.fleet import Fleet, FleetReplay, FleetRunResult, FleetSnapshot, LaneSnapshot, replay_fleet
from aos.journal import Durability, JournalReader
from aos.manifest import Manifest, code_identity
from aos.outbox import QueuedEffect
from aos.receipt import Receipt
from aos.replay import Replay, replay
from aos.rng import Rng
from aos.snapshot import SnapshotInfo
from aos.world import World

__version__ = "0.1.0"


def get_include() -> str:
    """The directory of the installed C headers (``aos_native.h``, the native reducer ABI, and
    ``aos_cbor.h``, canonical CBOR helpers for native reducers), for building a native reducer against
    this aos: ``include_dirs=[aos.get_include()]``. The Cython declarations (``aos/_core/native.pxd``)
    are installed beside the core, so ``cimport aos._core.native`` finds them."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "_core" / "include")


__all__ = [
    "World", "Manifest", "replay", "Replay", "Durability", "JournalReader", "Event",
    "StepContext", "Rng", "RunResult", "SnapshotInfo", "errors", "__version__", "EffectRequest", "Outcome",
    "BudgetView", "QueuedEffect", "Receipt", "upgrade", "UpgradeResult", "Era",
    "Change", "changes", "code_identity", "Fleet", "FleetRunResult", "FleetSnapshot", "FleetReplay", "LaneSnapshot",
    "replay_fleet", "get_include",
    *errors.__all__,
]

from aos.effect_policy import EffectPolicy  # noqa: E402 - effect policies (docs/effects.md)
from aos.effect_state import EffectStatus  # noqa: E402

__all__ += ["EffectPolicy", "EffectStatus"]
