"""Helpers for a user's own tests.

:func:`assert_replays` checks new code against a recorded world in a test
suite, as a replayer of recorded histories does in CI: it passes when the
manifest reproduces every recorded step exactly and fails, listing the first
differences, when it does not (see docs/upgrades.md, "Shadow runs").
"""

from __future__ import annotations

import os
from typing import Sequence

from aos.manifest import Manifest
from aos.shadow import ShadowReport, shadow_run

__all__ = ["assert_replays"]


def assert_replays(world_path: str | os.PathLike[str], manifest: Manifest, *, since: int | None = None,
                   last: int | None = None, show: int = 5, earlier: Sequence[Manifest] = ()) -> ShadowReport:
    """Raise ``AssertionError`` unless ``manifest`` reproduces the recorded world at ``world_path`` exactly.

    Runs :func:`aos.shadow.shadow_run` (nothing is written to the world) over
    the whole journal by default, or over the window ``since=EVENT_ID`` /
    ``last=N`` steps. The message lists the counts and the first ``show``
    differing steps, side by side. Returns the report when it passes.
    ``earlier``: the manifests of earlier eras whose code pinned cells run.
    """
    if since is None and last is None:
        since = 1  # the whole journal: a recorded world checked from its beginning
    report = shadow_run(world_path, manifest, since=since, last=last, limit=show, earlier=earlier)
    if report.compared == 0:
        raise AssertionError(f"{world_path} has no recorded step in the window "
                             f"({report.requested}): nothing was compared")
    if not report.ok:
        raise AssertionError(f"manifest {manifest.name} does not reproduce {world_path}:\n"
                             + report.summary(show))
    return report
