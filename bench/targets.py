"""The performance targets of issue 5, checked against one run's results.

Each target is met, missed, or not measured (the run did not include what it
needs), and says the measured figure that decided it: the worst case.
All comparisons are of medians.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.runner import CellResult
from bench.settings import LOOKUPS, Operation

__all__ = ["TargetResult", "check_targets"]

FIND_TOKEN = (Operation.FIND_USER, Operation.FIND_REFRESH, Operation.FIND_ACCESS)
FLOOR_LIMITS = {"postgresql": 2.0, "mariadb": 2.0, "sqlite": 4.0}
SAVE_LIMIT = 2.0
GROWTH_LIMIT = 1.3
GROWTH_ROWS = (10, 1_000_000)
DBSTORE_ROWS = 100_000
DBSTORE_FACTOR = 20.0


@dataclass(frozen=True)
class TargetResult:
    """One target: ``met`` is ``None`` when the run did not measure it."""

    name: str
    met: bool | None
    detail: str


class _Index:
    def __init__(self, results: Iterable[CellResult]) -> None:
        self._by = {(r.rows, r.operation, r.contender): r for r in results}

    def get(self, rows: int, operation: Operation, contender: str) -> CellResult | None:
        return self._by.get((rows, operation, contender))

    def rows(self) -> list[int]:
        return sorted({rows for rows, _op, _name in self._by})

    def ratio(self, rows: int, operation: Operation, top: str, bottom: str) -> float | None:
        a, b = self.get(rows, operation, top), self.get(rows, operation, bottom)
        if a is None or b is None or b.median_ns <= 0:
            return None
        return a.median_ns / b.median_ns

    def store_backends(self) -> list[str]:
        names = {name for _rows, _op, name in self._by if name.startswith("store/")}
        order = ("sqlite", "postgresql", "mariadb")
        return [b for b in order if f"store/{b}" in names]


def check_targets(results: Iterable[CellResult]) -> list[TargetResult]:
    """Every target, in the issue's order."""
    index = _Index(results)
    return [
        _vs_floor(index, FIND_TOKEN, "find_token", FLOOR_LIMITS),
        _vs_floor(index, (Operation.FIND_BY_ID,), "find_token_by_id", FLOOR_LIMITS),
        _vs_floor(
            index,
            (Operation.SAVE_UPDATE,),
            "save_token (update) vs UPDATE+COMMIT",
            dict.fromkeys(FLOOR_LIMITS, SAVE_LIMIT),
        ),
        _growth(index),
        _connections(index),
        _round_trips(index),
        _dbstore(index),
    ]


def _vs_floor(
    index: _Index, operations: tuple[Operation, ...], label: str, limits: dict[str, float]
) -> TargetResult:
    name = f"{label} within " + ", ".join(
        f"{limits[b]:g}x the floor on {b}" for b in ("postgresql", "mariadb", "sqlite")
    )
    parts, met = [], True
    for backend in index.store_backends():
        worst: tuple[float, int, Operation] | None = None
        for rows in index.rows():
            for op in operations:
                ratio = index.ratio(rows, op, f"store/{backend}", f"floor/{backend}")
                if ratio is not None and (worst is None or ratio > worst[0]):
                    worst = (ratio, rows, op)
        if worst is None:
            continue
        ratio, rows, op = worst
        ok = ratio <= limits[backend]
        met = met and ok
        parts.append(
            f"{backend}: worst {ratio:.2f}x ({op.value}, {rows:,} rows)"
            + ("" if ok else f", {ratio / limits[backend]:.2f}x over the limit")
        )
    if not parts:
        return TargetResult(name, None, "not measured")
    return TargetResult(name, met, "; ".join(parts))


def _growth(index: _Index) -> TargetResult:
    small, large = GROWTH_ROWS
    name = f"lookups at {large:,} rows within {GROWTH_LIMIT:g}x their time at {small} rows"
    measured = [rows for rows in index.rows() if rows > small]
    biggest = max(measured, default=None)
    if biggest is None or small not in index.rows():
        return TargetResult(name, None, "not measured")
    parts, met = [], True
    for family in ("store", "floor"):
        for backend in index.store_backends():
            contender = f"{family}/{backend}"
            worst: tuple[float, Operation] | None = None
            for op in LOOKUPS:
                a, b = index.get(biggest, op, contender), index.get(small, op, contender)
                if a is None or b is None:
                    continue
                ratio = a.median_ns / b.median_ns
                if worst is None or ratio > worst[0]:
                    worst = (ratio, op)
            if worst is None:
                continue
            ok = worst[0] <= GROWTH_LIMIT
            if family == "store":
                met = met and ok
            parts.append(f"{contender}: worst {worst[0]:.2f}x ({worst[1].value})")
    if biggest != large:
        return TargetResult(
            name,
            None,
            f"not measured at {large:,} rows (run with --max-rows {large}); "
            f"at {biggest:,} rows: " + "; ".join(parts),
        )
    return TargetResult(name, met, "; ".join(parts) + " (floor for reference)")


def _store_counts(index: _Index) -> list[CellResult]:
    return [
        r
        for rows in index.rows()
        for op in Operation
        for backend in index.store_backends()
        if (r := index.get(rows, op, f"store/{backend}")) is not None and r.counts is not None
    ]


def _connections(index: _Index) -> TargetResult:
    name = "0 new connections per operation in steady state (this store)"
    counted = [r for r in _store_counts(index) if r.counts and r.counts.connections is not None]
    if not counted:
        return TargetResult(name, None, "not measured (run without --no-count)")
    bad = [r for r in counted if r.counts and r.counts.connections]
    if bad:
        shown = ", ".join(
            f"{r.contender} {r.operation.value}: {r.counts.connections:g}"
            for r in bad
            if r.counts and r.counts.connections is not None
        )
        return TargetResult(name, False, shown)
    return TargetResult(name, True, f"0 in all {len(counted)} counted cells")


def _round_trips(index: _Index) -> TargetResult:
    name = "1 round trip per find_token, at most 2 per save_token (update) (this store)"
    limits = {op: 1.0 for op in (*FIND_TOKEN, Operation.FIND_BY_ID)}
    limits[Operation.SAVE_UPDATE] = 2.0
    worst: dict[Operation, float] = {}
    for r in _store_counts(index):
        if r.operation not in limits or r.counts is None:
            continue
        # On the wire for the servers; SQLite runs in-process: its statements.
        trips = r.counts.round_trips if r.counts.round_trips is not None else r.counts.statements
        if trips is not None:
            worst[r.operation] = max(worst.get(r.operation, 0.0), trips)
    if not worst:
        return TargetResult(name, None, "not measured (run without --no-count)")
    met = all(worst[op] <= limits[op] for op in worst)
    detail = "; ".join(f"{op.value}: at most {n:g}" for op, n in worst.items())
    return TargetResult(name, met, detail)


def _dbstore(index: _Index) -> TargetResult:
    name = f"at least {DBSTORE_FACTOR:g}x faster than the SDK's DBStore at {DBSTORE_ROWS:,} rows"
    ratios = [
        (ratio, op)
        for op in Operation
        if (ratio := index.ratio(DBSTORE_ROWS, op, "DBStore/mariadb", "store/mariadb")) is not None
    ]
    if not ratios:
        return TargetResult(name, None, f"not measured (needs MariaDB at {DBSTORE_ROWS:,} rows)")
    worst, op = min(ratios)
    met = worst >= DBSTORE_FACTOR
    detail = f"slowest gain {worst:.1f}x ({op.value}); " + ", ".join(
        f"{o.value} {r:.0f}x" for r, o in ratios
    )
    return TargetResult(name, met, detail)
