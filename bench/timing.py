"""The timed loop: warm-up, then real-time samples of the store call alone, and their statistics.

Each sample is ``time.perf_counter_ns()`` around ``OpCall.run``; building the
SDK token before and checking the result after are not timed. Around that,
``time.process_time_ns()`` measures the CPU time this process spent in the
call: the client's own work (Python, driver, system calls), without the
server's and without waits. On a shared machine it varies far less than real
time, and the difference between this store and the floor is the store's own
overhead. The garbage collector stays on (an application has it on), after
one collection before each cell; what was alive before the first cell (modules,
engines) is frozen out of its sight first (:func:`settle_heap`).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.contenders import OpCall
from bench.settings import Budget

__all__ = ["Samples", "TimedCell", "plan_iterations", "sample", "settle_heap", "split", "warm_up"]


@dataclass
class Samples:
    """Latencies of one (operation, contender) cell, in nanoseconds, and CPU times."""

    values: list[int] = field(default_factory=list)
    cpu: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def cpu_median(self) -> float:
        return float(statistics.median(self.cpu))

    @property
    def p99(self) -> float:
        """The 99th percentile by nearest rank: the smallest sample with 99% at or below it."""
        ordered = sorted(self.values)
        return float(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)])


@dataclass
class TimedCell:
    """One contender's operation being measured: its call and the next iteration number.

    Iteration numbers run on through warm-up and rounds, so that every
    iteration works on its own key, and every insert on a new user.
    """

    call: OpCall
    next_index: int = 0
    samples: Samples = field(default_factory=Samples)
    iterations: int = 0


def sample(cell: TimedCell, count: int, *, keep: bool = True) -> list[int]:
    """Run ``count`` iterations; return (and unless ``keep`` is false, keep) their latencies."""
    prepare, run, check = cell.call.prepare, cell.call.run, cell.call.check
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    taken: list[int] = []
    cpu: list[int] = []
    for i in range(cell.next_index, cell.next_index + count):
        arg = prepare(i)
        cpu_start = cpu_clock()
        start = clock()
        result = run(arg)
        end = clock()
        cpu_end = cpu_clock()
        check(arg, result)
        taken.append(end - start)
        cpu.append(cpu_end - cpu_start)
    cell.next_index += count
    if keep:
        cell.samples.values.extend(taken)
        cell.samples.cpu.extend(cpu)
    return taken


def settle_heap() -> None:
    """Collect garbage, then move every object alive now out of the collector's sight.

    After this, the per-cell collections in :func:`warm_up` only walk what the
    benchmark allocated since: fast, and each cell starts with a clean heap.
    """
    gc.collect()
    gc.freeze()


def warm_up(cell: TimedCell, budget: Budget) -> float:
    """Warm the cell up within the budget; return its median latency so far, in ns."""
    if budget.warmup_max > 1:
        gc.collect()
    taken = sample(cell, 1, keep=False)
    if budget.warmup_max > 1 and taken[0] > 0:
        more = int(budget.warmup_seconds * 1e9 / taken[0])
        taken += sample(cell, max(0, min(budget.warmup_max - 1, more)), keep=False)
    return float(statistics.median(taken))


def plan_iterations(estimate_ns: float, budget: Budget) -> int:
    """How many timed iterations fit the budget at ``estimate_ns`` each, within its bounds."""
    fits = int(budget.seconds * 1e9 / estimate_ns) if estimate_ns > 0 else budget.max_iterations
    return max(budget.min_iterations, min(budget.max_iterations, fits))


def split(total: int, rounds: int) -> Sequence[int]:
    """``total`` iterations in ``rounds`` nearly equal parts."""
    rounds = max(1, min(rounds, total))
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]
