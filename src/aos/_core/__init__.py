"""The native (Cython) core of aos: the hot scheduling loop.

There is no pure-Python fallback: importing this package fails when the
extension modules were not compiled by the package build.
"""

from aos._core.pipeline import Pipeline
from aos._core.sequencer import Sequencer

__all__ = ["Sequencer", "Pipeline"]
