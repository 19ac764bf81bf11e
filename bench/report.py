"""The run's tables, as aligned text for the terminal or Markdown for the docs, and as JSON.

One table per table size. Each row is one operation of one contender:
median and p99 latency (real time), the median CPU time of the client
process in the call (timing.py), iterations, this store's time as a multiple of the
floor's (store rows), the SDK store's time as a multiple of this store's on
the same kind of storage (DBStore against this store on MariaDB, FileStore
against this store on SQLite), then the counts per operation (counting.py):
``stmts`` client-side statements and commits, ``rt`` round trips on the
wire, ``conn`` new connections, ``srv`` MariaDB's own statement count.
A run with ``--encryption`` adds the column ``enc / plain``: the encrypted
store's median over the same store's without encryption on the same
database, the cost of encryption at rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.runner import CellResult, RunResult
from bench.settings import Operation
from bench.targets import TargetResult

__all__ = ["markdown", "text", "to_json"]

HEADER = (
    "operation",
    "contender",
    "median",
    "p99",
    "cpu",
    "n",
    "x floor",
    "SDK / store",
    "stmts",
    "rt",
    "conn",
    "srv",
)
ENCRYPTION_HEADER = "enc / plain"
# The SDK store each family is compared with, and the contender it is compared to.
_SDK_BASELINE = {"DBStore/mariadb": "store/mariadb", "FileStore/csv": "store/sqlite"}
# This store's contenders: the floor's time is the baseline of each.
_STORE_FAMILIES = ("store/", "store+enc/")
ENCRYPTED_PREFIX = "store+enc/"


def _encrypted(results: Sequence[CellResult]) -> bool:
    return any(r.contender.startswith(ENCRYPTED_PREFIX) for r in results)


def _header(results: Sequence[CellResult]) -> list[str]:
    """The columns; ``enc / plain`` after ``x floor`` when the run measured encryption."""
    header = list(HEADER)
    if _encrypted(results):
        header.insert(header.index("x floor") + 1, ENCRYPTION_HEADER)
    return header


def encryption_ratio(by: dict[tuple[Operation, str], CellResult], r: CellResult) -> str:
    """The encrypted store's median over the plain store's on the same database, or ''."""
    if not r.contender.startswith(ENCRYPTED_PREFIX):
        return ""
    plain = by.get((r.operation, "store/" + r.contender.split("/", 1)[1]))
    if plain is None or plain.median_ns <= 0:
        return ""
    return f"{r.median_ns / plain.median_ns:.2f}x"


def duration(ns: float) -> str:
    """A latency in the unit that reads best: µs below 10 ms, else ms."""
    us = ns / 1e3
    if us < 10:
        return f"{us:.2f} µs"
    if us < 10_000:
        return f"{us:,.0f} µs"
    return f"{us / 1e3:,.1f} ms"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _rows(results: Sequence[CellResult], size: int) -> list[list[str]]:
    by = {(r.operation, r.contender): r for r in results if r.rows == size}
    with_encryption = _encrypted(results)
    table: list[list[str]] = []
    for operation in Operation:
        names = [name for op, name in by if op is operation]
        for i, name in enumerate(names):
            r = by[(operation, name)]
            vs_floor = ""
            if name.startswith(_STORE_FAMILIES):
                floor = by.get((operation, "floor/" + name.split("/", 1)[1]))
                if floor is not None:
                    vs_floor = f"{r.median_ns / floor.median_ns:.2f}x"
            vs_store = ""
            if name in _SDK_BASELINE:
                store = by.get((operation, _SDK_BASELINE[name]))
                if store is not None:
                    vs_store = f"{r.median_ns / store.median_ns:.1f}x"
            counts = r.counts
            row = [
                operation.value if i == 0 else "",
                name,
                duration(r.median_ns),
                duration(r.p99_ns),
                duration(r.cpu_median_ns),
                str(r.n),
                vs_floor,
                vs_store,
                _count(counts.statements if counts else None),
                _count(counts.round_trips if counts else None),
                _count(counts.connections if counts else None),
                _count(counts.server_statements if counts else None),
            ]
            if with_encryption:
                row.insert(HEADER.index("x floor") + 1, encryption_ratio(by, r))
            table.append(row)
    return table


def _sizes(run: RunResult) -> list[int]:
    return sorted({r.rows for r in run.results})


def _title(run: RunResult, size: int) -> str:
    title = f"{size:,} rows"
    if run.settings.proxied:
        title += f", servers behind a proxy adding {run.settings.proxy_delay_ms:g} ms per chunk"
    return title


def _aligned(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def text(run: RunResult, targets: list[TargetResult], machine: dict[str, str]) -> str:
    """The whole report for the terminal."""
    out = ["", "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items())]
    out.append(_summary(run))
    for size in _sizes(run):
        out += [
            "",
            f"== {_title(run, size)} ==",
            _aligned(_header(run.results), _rows(run.results, size)),
        ]
    out += ["", "Targets:"]
    if run.settings.quick:
        out.append("  not evaluated: --quick checks that the benchmark runs, it times nothing")
    else:
        out += [f"  [{_verdict(t)}] {t.name}: {t.detail}" for t in targets]
    out += _notes(run)
    return "\n".join(out) + "\n"


def _summary(run: RunResult) -> str:
    start, end = run.load
    return (
        f"Run: {run.seconds / 60:.1f} min; load average (1 min) {start:.2f} at the start, "
        f"{end:.2f} at the end."
    )


def markdown(run: RunResult, targets: list[TargetResult], machine: dict[str, str]) -> str:
    """The tables and targets in Markdown, as docs/performance.md quotes them."""
    out: list[str] = []
    header = _header(run.results)
    for size in _sizes(run):
        out += [f"#### {_title(run, size)}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
        out += ["| " + " | ".join(row) + " |" for row in _rows(run.results, size)]
        out.append("")
    out += ["| target | result | measured |", "|---|---|---|"]
    out += [f"| {t.name} | {_verdict(t)} | {t.detail} |" for t in targets]
    out.append("")
    out += [line.lstrip() for line in _notes(run)]
    out.append(_summary(run) + " Machine:")
    out += ["", *[f"- {k}: {v}" for k, v in machine.items()], ""]
    return "\n".join(out)


def _verdict(target: TargetResult) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[target.met]


def _notes(run: RunResult) -> list[str]:
    notes = [f"  skipped {s}" for s in run.skipped]
    notes += [f"  cleanup failed: {e}" for e in run.cleanup_errors]
    return ["", *notes] if notes else []


def to_json(run: RunResult, targets: list[TargetResult], machine: dict[str, str]) -> str:
    """Everything the run measured, for plot.py and for comparing runs."""
    settings = asdict(run.settings)
    settings["operations"] = [op.slug for op in run.settings.operations]
    data: dict[str, Any] = {
        "machine": machine,
        "settings": settings,
        "seconds": run.seconds,
        "load_average": list(run.load),
        "fill_seconds": {str(k): v for k, v in run.fill_seconds.items()},
        "skipped": run.skipped,
        "cleanup_errors": run.cleanup_errors,
        "results": [
            {
                "rows": r.rows,
                "operation": r.operation.slug,
                "label": r.operation.value,
                "contender": r.contender,
                "n": r.n,
                "median_ns": r.median_ns,
                "p99_ns": r.p99_ns,
                "cpu_median_ns": r.cpu_median_ns,
                "counts": asdict(r.counts) if r.counts else None,
            }
            for r in run.results
        ],
        "targets": [asdict(t) for t in targets],
    }
    return json.dumps(data, indent=1, ensure_ascii=False)
