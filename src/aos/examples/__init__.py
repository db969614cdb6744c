"""Example reducers shipped with aos (used by its tests and benchmarks)."""
