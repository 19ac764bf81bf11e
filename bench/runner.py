"""One benchmark run: for each table size, grow the tables, count, then time every contender.

Every operation is timed on all contenders together: each is warmed up and
given its number of iterations, then the iterations run in alternating rounds
(see :class:`~bench.settings.Budget`). Every contender of one run sees the
same sequence of random rows.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from sqlalchemy import URL

from bench.contenders import (
    Contender,
    DBStoreContender,
    EncryptedStoreContender,
    FileStoreContender,
    StoreContender,
    mysql_connector_missing,
)
from bench.counting import OpCounts, count_operation
from bench.floor import FloorContender, connect_floor
from bench.proxy import LoopbackProxy
from bench.settings import SERVER_BACKENDS, Operation, Settings, Stage, stages
from bench.tables import Tables
from bench.timing import TimedCell, plan_iterations, sample, settle_heap, split, warm_up

__all__ = ["CellResult", "RunResult", "build_contenders", "row_keys", "run"]

# Rows are picked from a list this long, cycled.
_KEYS = 8_192

Log = Callable[[str], None]


@dataclass(frozen=True)
class CellResult:
    """One operation of one contender at one table size."""

    rows: int
    operation: Operation
    contender: str
    n: int
    median_ns: float
    p99_ns: float
    cpu_median_ns: float
    counts: OpCounts | None = None


@dataclass
class RunResult:
    """Everything one run measured, and what it could not."""

    settings: Settings
    results: list[CellResult] = field(default_factory=list)
    fill_seconds: dict[int, dict[str, float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    cleanup_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # The machine's 1-minute load average when the run started and ended: on a
    # shared machine, what else was running.
    load: tuple[float, float] = (0.0, 0.0)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(settings: Settings, log: Log = _stderr) -> RunResult:
    """Run the whole benchmark; every table and file it made is gone when it returns."""
    started = time.perf_counter()
    result = RunResult(settings)
    load_at_start = os.getloadavg()[0]
    missing = mysql_connector_missing() if "mariadb" in settings.backends else None
    if missing is not None:
        result.skipped.append(f"DBStore/mariadb: {missing}")
        log(f"skipping DBStore/mariadb: {missing}")
    tables = Tables(settings)
    with ExitStack() as stack:
        stack.callback(lambda: result.cleanup_errors.extend(tables.drop()))
        tables.create()
        timing_proxies = (
            _proxies(stack, tables, settings.proxy_delay_ms) if settings.proxied else {}
        )
        counting_proxies = _proxies(stack, tables, 0.0) if settings.count else {}
        timed = stack.enter_context(
            build_contenders(settings, tables, timing_proxies, counting=False, dbstore=not missing)
        )
        settle_heap()
        for stage in stages(settings):
            log(f"[{stage.rows:,} rows] filling")
            result.fill_seconds[stage.rows] = tables.grow(stage.rows)
            counts: dict[tuple[Operation, str], OpCounts] = {}
            if settings.count:
                with build_contenders(
                    settings, tables, counting_proxies, counting=True, dbstore=not missing
                ) as counted:
                    counts = _count_stage(settings, stage, counted, counting_proxies)
            for operation in stage.operations:
                result.results += _time_operation(settings, stage, operation, timed, counts, log)
    result.seconds = time.perf_counter() - started
    result.load = (load_at_start, os.getloadavg()[0])
    return result


def _proxies(stack: ExitStack, tables: Tables, delay_ms: float) -> dict[str, LoopbackProxy]:
    """A proxy, delaying each chunk by ``delay_ms``, in front of each server of this run."""
    proxies: dict[str, LoopbackProxy] = {}
    for backend in SERVER_BACKENDS:
        table = tables.store.get(backend)
        if table is not None:
            url = table.url
            proxy = LoopbackProxy(url.host or "127.0.0.1", url.port or _default_port(url), delay_ms)
            proxies[backend] = stack.enter_context(proxy)
    return proxies


def _default_port(url: URL) -> int:
    return 5432 if url.get_backend_name() == "postgresql" else 3306


def _via(url: URL, proxy: LoopbackProxy | None) -> URL:
    return url if proxy is None else url.set(host="127.0.0.1", port=proxy.port)


@contextmanager
def build_contenders(
    settings: Settings,
    tables: Tables,
    proxies: dict[str, LoopbackProxy],
    *,
    counting: bool,
    dbstore: bool = True,
) -> Iterator[list[Contender]]:
    """The contenders of this run, in table order, reaching servers through ``proxies``."""
    contenders: list[Contender] = []
    try:
        for backend, table in tables.store.items():
            url = _via(table.url, proxies.get(backend))
            connect = connect_floor(backend, url=url, path=tables.sqlite_path)
            contenders.append(FloorContender(backend, table.state, table.name, connect))
            contenders.append(StoreContender(backend, table.state, url, table.name, counting))
            sealed = tables.encrypted.get(backend)
            if sealed is not None:
                contenders.append(
                    EncryptedStoreContender(
                        backend,
                        sealed.state,
                        _via(sealed.url, proxies.get(backend)),
                        sealed.name,
                        counting,
                        sealed.keys,
                    )
                )
            if backend == "mariadb" and tables.sdk is not None and dbstore:
                sdk_url = _via(tables.sdk.url, proxies.get(backend))
                contenders.append(DBStoreContender(tables.sdk.state, sdk_url, tables.sdk.name))
        if tables.csv is not None:
            contenders.append(FileStoreContender(tables.csv.state, str(tables.csv.path)))
        yield contenders
    finally:
        for contender in contenders:
            contender.close()


def row_keys(settings: Settings, rows: int, operation: Operation) -> list[int]:
    rng = random.Random(f"{settings.seed}:{rows}:{operation.slug}")
    return [rng.randrange(rows) for _ in range(_KEYS)]


def _count_stage(
    settings: Settings,
    stage: Stage,
    contenders: list[Contender],
    proxies: dict[str, LoopbackProxy],
) -> dict[tuple[Operation, str], OpCounts]:
    counts: dict[tuple[Operation, str], OpCounts] = {}
    budget = settings.budget
    for operation in stage.operations:
        keys = row_keys(settings, stage.rows, operation)
        for contender in contenders:
            if contender.family == "FileStore":
                continue  # no connection, no statements: nothing to count
            proxy = proxies.get(contender.backend)
            counts[(operation, contender.name)] = count_operation(
                contender,
                contender.call(operation, keys, settings.verify),
                proxy,
                iterations=budget.counting_iterations,
                warmup=budget.counting_warmup,
            )
    return counts


def _time_operation(
    settings: Settings,
    stage: Stage,
    operation: Operation,
    contenders: list[Contender],
    counts: dict[tuple[Operation, str], OpCounts],
    log: Log,
) -> list[CellResult]:
    budget = settings.budget
    keys = row_keys(settings, stage.rows, operation)
    cells = {c.name: TimedCell(c.call(operation, keys, settings.verify)) for c in contenders}
    for cell in cells.values():
        cell.iterations = plan_iterations(warm_up(cell, budget), budget)
    for round_number in range(budget.rounds):
        for cell in cells.values():
            parts = split(cell.iterations, budget.rounds)
            if round_number < len(parts):
                sample(cell, parts[round_number])
    results = []
    for name, cell in cells.items():
        samples = cell.samples
        results.append(
            CellResult(
                stage.rows,
                operation,
                name,
                samples.n,
                samples.median,
                samples.p99,
                samples.cpu_median,
                counts.get((operation, name)),
            )
        )
        log(
            f"[{stage.rows:,} rows] {operation.value:<21} {name:<20} n={samples.n:<5} "
            f"median {samples.median / 1e3:9.1f} us  p99 {samples.p99 / 1e3:9.1f} us  "
            f"cpu {samples.cpu_median / 1e3:9.1f} us"
        )
    return results
