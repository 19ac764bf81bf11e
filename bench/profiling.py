"""One operation of one contender under a profiler: where its time goes.

    python -m bench.profiling --contender store/postgresql --operation find_user
    python -m bench.profiling --contender store/sqlite --operation save_update --profiler cprofile
    python -m bench.profiling --contender store+enc/sqlite --operation find_refresh

Builds the same tables and contenders as a run (at ``--rows`` rows), warms
the operation up, then profiles ``--iterations`` timed calls (the untimed
prepare and check steps are in the profile too, and show up as such).
pyinstrument (a sampling profiler: little distortion of many small calls)
prints its call tree; cProfile prints the functions by own time and by
cumulative time. Every table made is dropped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from dataclasses import replace

from bench.runner import build_contenders, row_keys
from bench.settings import SIZES, Budget, Operation, Settings
from bench.tables import Tables
from bench.timing import TimedCell, sample, warm_up

__all__ = ["main"]

_BACKEND_OF_FAMILY = {"FileStore": "file", "DBStore": "mariadb"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument(
        "--contender",
        required=True,
        help="e.g. store/postgresql, store+enc/postgresql, floor/sqlite",
    )
    parser.add_argument(
        "--operation", required=True, choices=[op.slug for op in Operation], help="what to run"
    )
    parser.add_argument("--rows", type=int, default=10, choices=SIZES)
    parser.add_argument("--iterations", type=int, default=5_000)
    parser.add_argument("--profiler", choices=("pyinstrument", "cprofile"), default="pyinstrument")
    parser.add_argument(
        "--show-all", action="store_true", help="pyinstrument: show library frames too"
    )
    parser.add_argument("--postgres-url")
    parser.add_argument("--mysql-url")
    args = parser.parse_args(argv)

    family, _, backend = args.contender.partition("/")
    backend = _BACKEND_OF_FAMILY.get(family, backend)
    operation = Operation[args.operation.upper()]
    settings = replace(
        Settings(),
        backends=(backend,),
        operations=(operation,),
        count=False,
        budget=Budget(),
        encryption=family == "store+enc",
    )
    if args.postgres_url:
        settings = replace(settings, postgres_url=args.postgres_url)
    if args.mysql_url:
        settings = replace(settings, mysql_url=args.mysql_url)
    tables = Tables(settings)
    try:
        tables.create()
        tables.grow(args.rows)
        with build_contenders(settings, tables, {}, counting=False) as contenders:
            found = [c for c in contenders if c.name == args.contender]
            if not found:
                names = ", ".join(c.name for c in contenders)
                parser.error(f"no contender {args.contender!r}; this backend has {names}")
            contender = found[0]
            cell = TimedCell(
                contender.call(operation, row_keys(settings, args.rows, operation), False)
            )
            warm_up(cell, settings.budget)
            print(_profile(cell, args.iterations, args.profiler, args.show_all))
            taken = cell.samples
            print(
                f"{contender.name} {operation.value} at {args.rows:,} rows: "
                f"{taken.n} calls, median {taken.median / 1e3:.1f} µs under the profiler"
            )
    finally:
        errors = tables.drop()
        for error in errors:
            print(f"cleanup failed: {error}", file=sys.stderr)
    return 0


def _profile(cell: TimedCell, iterations: int, profiler: str, show_all: bool) -> str:
    if profiler == "pyinstrument":
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0001)
        sampler.start()
        sample(cell, iterations)
        sampler.stop()
        return str(sampler.output_text(unicode=True, color=False, show_all=show_all))
    profile = cProfile.Profile()
    profile.enable()
    sample(cell, iterations)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
