"""Differential, randomized testing: random workloads run through every path must write the same journal.

* :mod:`differential.workload` — a workload as plain data (reducers, capabilities,
  policy rules, an invariant, world options and a script of phases) and the
  Hypothesis strategy that draws one;
* :mod:`differential.factory` — turns a workload into an ``aos.Manifest`` and
  plays its script against a world;
* :mod:`differential.paths` — the paths a workload can take to a journal (the
  reference: the inline executor in one session; the threads executor with
  1, 2 and 4 workers under seeded delays; closing and reopening the world
  between phases) and :func:`differential.paths.check`, which runs a workload
  through all of them and compares each with the reference.
"""
