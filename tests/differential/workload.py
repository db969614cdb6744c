"""A workload as plain data, and the Hypothesis strategy that draws one.

Every field is a plain value, so a failing example prints as a readable
constructor call that can be pasted back into :func:`differential.paths.check`.
Each feature — emits, effects, budget reads, failures, invariants, priorities,
policy rules, the step's random numbers — is switched on at random per
reducer or per workload, so Hypothesis can shrink a failure down to the
features it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume
from hypothesis import strategies as st

SCHEMAS = ("diff/A@1", "diff/B@1", "diff/C@1")  # every input and emitted event carries k, n, hop
KEYS = 4  # keyed reducers' cells: k is 0..KEYS-1
CAPS = {"timers": "timer.set", "blobs": "blob.put"}
UNCOVERED = "rocket.launch"  # an effect kind no capability covers: denied at commit
EFFECT_KINDS = (*CAPS.values(), UNCOVERED)


@dataclass(frozen=True)
class ReducerPlan:
    """What one reducer does; its name is ``diff/R<index>@1``.

    On an input or emitted event ``{k, n, hop}`` it adds ``n`` to its cell's
    ``n``; then, each only when switched on: draws ``ctx.rng`` (``rng``),
    reads a capability's remaining budget (``reads``), emits each schema of
    ``emits`` while ``hop`` > 0, intends each effect kind of ``effects``
    (naming its capability or the wrong one as ``cap`` says, with repeating
    idempotency keys when ``same_key``), and ends the step by raising when ``n % raise_every == 1``, returning an
    unencodable value when ``n % bad_every == 2`` or deleting the cell
    (returning None) when ``n % delete_every == 3`` (0: never). Receipts and
    denials (``sys/`` events) are appended to the cell's ``sys`` list.
    """

    keyed: bool
    priority: int
    takes: tuple[int, ...]  # indices into SCHEMAS
    emits: tuple[int, ...] = ()
    effects: tuple[str, ...] = ()
    rng: bool = False
    reads: str | None = None  # a capability name
    cap: int = 0  # 0: ctx.effect picks the covering capability; 1: names it; 2: names the other one every other step
    same_key: bool = False  # idempotency keys repeat across steps: a repeated intent is denied as a duplicate
    raise_every: int = 0
    bad_every: int = 0
    delete_every: int = 0


@dataclass(frozen=True)
class Input:
    schema: int  # index into SCHEMAS
    k: int
    n: int
    hop: int  # how many more times the event may be passed on by emits


@dataclass(frozen=True)
class Phase:
    """Submit ``inputs``; run ``cut`` steps (when set), then until quiet; settle; maybe snapshot.

    Settling answers the first ``settle`` pending effects in queue order with
    receipts derived from each effect alone (see ``factory.receipt_for``),
    ``rule`` choosing the mix: ok at the reserved cost, ok cheaper, error,
    or ok dearer than reserved (refused when the budget cannot take it).
    """

    inputs: tuple[Input, ...]
    cut: int | None = None
    settle: int = 0
    rule: int = 0
    snapshot: bool = False


@dataclass(frozen=True)
class Workload:
    reducers: tuple[ReducerPlan, ...]
    phases: tuple[Phase, ...]
    budgets: tuple[int, int] = (100, 100)  # timers, blobs
    rules: tuple[tuple[str, str, int], ...] = ()  # policy rules in order: (allow/deny, effect kind, reducer index)
    invariant: int = 0  # 0: none; else a cell whose n is a positive multiple of it violates
    invariant_floor: int | None = None  # a step leaving less than this of "timers" violates
    window: int = 64
    aging: int = 256
    snapshot_every: int = 0
    delay_seed: int = 0  # the threads paths' per-ticket delays

    def steps_bound(self) -> int:
        """A rough upper bound of the steps the inputs cause (emit chains fan out)."""
        fan = max(1, sum(len(r.emits) for r in self.reducers))
        routes = max(1, len(self.reducers))
        return sum(routes * sum(fan ** h for h in range(i.hop + 1)) for p in self.phases for i in p.inputs)


# Budget contention that parallel runs meet on every run: keyed cells read the "timers" budget that
# the steps before them reserve, so workers compute against stale reads and the committer recomputes.
CONTENTION = Workload(
    reducers=(ReducerPlan(keyed=True, priority=1, takes=(0,), emits=(1,), effects=("timer.set",), reads="timers"),
              ReducerPlan(keyed=True, priority=1, takes=(1,), effects=("timer.set",), reads="timers", rng=True)),
    phases=(Phase(tuple(Input(i % 2, i % 4, i % 13, 1) for i in range(12)), settle=6, rule=1),
            Phase(tuple(Input(i % 2, (i + 1) % 4, i * 5 % 13, 1) for i in range(12)), cut=5, settle=6, rule=2)),
    budgets=(40, 10),
)


# ----------------------------------------------------------------- strategies
def _subset(items: tuple, *, min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[tuple]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=max_size or len(items),
                    unique=True).map(lambda xs: tuple(sorted(xs, key=items.index)))


_every = st.sampled_from([0, 0, 0, 0, 3, 5, 7])

reducer_plans = st.builds(
    ReducerPlan,
    keyed=st.booleans(),
    priority=st.integers(0, 3),
    takes=_subset(tuple(range(len(SCHEMAS))), min_size=1),
    emits=_subset(tuple(range(len(SCHEMAS))), max_size=2),
    effects=_subset(EFFECT_KINDS),
    rng=st.booleans(),
    reads=st.sampled_from([None, *CAPS, *CAPS]),
    cap=st.integers(0, 2),
    same_key=st.booleans(),
    raise_every=_every,
    bad_every=_every,
    delete_every=_every,
)

inputs = st.builds(Input, schema=st.integers(0, len(SCHEMAS) - 1), k=st.integers(0, KEYS - 1),
                   n=st.integers(0, 12), hop=st.integers(0, 2))

phases = st.builds(Phase, inputs=st.lists(inputs, min_size=1, max_size=10).map(tuple),
                   cut=st.sampled_from([None, None, 1, 3, 10]), settle=st.integers(0, 6),
                   rule=st.integers(0, 3), snapshot=st.booleans())


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    reducers = tuple(draw(st.lists(reducer_plans, min_size=1, max_size=4)))
    rules = tuple(draw(st.lists(st.tuples(st.sampled_from(["deny", "deny", "allow"]), st.sampled_from(EFFECT_KINDS[:2]),
                                          st.integers(0, len(reducers) - 1)), max_size=3, unique=True)))
    wl = Workload(
        reducers=reducers,
        phases=tuple(draw(st.lists(phases, min_size=1, max_size=4))),
        budgets=(draw(st.integers(0, 30)), draw(st.integers(0, 30))),
        rules=rules,
        invariant=draw(st.sampled_from([0, 0, 4, 7])),
        invariant_floor=draw(st.sampled_from([None, None, None, 2])),
        window=draw(st.sampled_from([1, 2, 8, 64])),
        aging=draw(st.sampled_from([1, 5, 256])),
        snapshot_every=draw(st.sampled_from([0, 0, 2, 5])),
        delay_seed=draw(st.integers(0, 2**16)),
    )
    # Keep examples small enough to run through every path many times: emit chains fan out.
    assume(wl.steps_bound() <= 600)
    return wl
