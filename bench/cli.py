"""The command line: ``python -m bench [--quick] [--max-rows N] [--encryption] ...``.

Prints progress to stderr and the report (tables, then targets) to stdout;
optionally writes the same as JSON and Markdown, and the latency plot.
Exits 0 when the run completed (a missed target is reported, not an error),
1 when it failed or could not clean up after itself.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType

from bench import report
from bench.machine import describe
from bench.runner import run
from bench.settings import (
    BACKENDS,
    DEFAULT_MAX_ROWS,
    SERVER_BACKENDS,
    SIZES,
    Budget,
    Operation,
    Settings,
)
from bench.targets import check_targets

__all__ = ["main", "parse_settings"]


def _csv_choice(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        picked = tuple(v.strip() for v in value.split(",") if v.strip())
        unknown = [v for v in picked if v not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return picked

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmark SQLAlchemyTokenStore against the raw DBAPI floor and the Zoho SDK's "
            "DBStore and FileStore, at several table sizes."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few iterations of every operation at 10 rows: checks the benchmark runs "
        "(for CI), times nothing",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        choices=SIZES,
        help=f"largest table size (default {DEFAULT_MAX_ROWS:,}; 1000000 adds the 1M-row tables)",
    )
    parser.add_argument(
        "--proxy-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="reach PostgreSQL and MariaDB through a loopback proxy that delays every "
        "forwarded chunk by MS milliseconds (default backends then: postgresql,mariadb)",
    )
    parser.add_argument(
        "--backends",
        type=_csv_choice(BACKENDS),
        help=f"comma-separated, from {','.join(BACKENDS)} (default: all)",
    )
    names = tuple(op.slug for op in Operation)
    parser.add_argument(
        "--operations",
        type=_csv_choice(names),
        help=f"comma-separated, from {','.join(names)} (default: all)",
    )
    parser.add_argument("--seconds", type=float, help="timed budget per cell (default 2.0)")
    parser.add_argument("--max-iterations", type=int, help="iterations per cell at most (2000)")
    parser.add_argument(
        "--encryption",
        action="store_true",
        help="also measure this store with encryption at rest on (store+enc/<backend>, "
        "a table of its own whose rows are sealed under a key made for the run), and "
        "its median over the plain store's (column 'enc / plain')",
    )
    parser.add_argument(
        "--no-count", action="store_true", help="skip counting statements and round trips"
    )
    parser.add_argument(
        "--verify", action="store_true", help="read every save back (on with --quick)"
    )
    parser.add_argument("--postgres-url", help="default: $ZTS_BENCH_POSTGRES_URL or local")
    parser.add_argument("--mysql-url", help="default: $ZTS_BENCH_MYSQL_URL or local")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="write the tables as Markdown"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="plot find_token latency against size"
    )
    return parser


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    args = _parser().parse_args(argv)
    settings = Settings()
    backends = args.backends or (SERVER_BACKENDS if args.proxy_delay_ms > 0 else BACKENDS)
    budget = Budget.quick() if args.quick else Budget()
    if args.seconds is not None:
        budget = replace(budget, seconds=args.seconds)
    if args.max_iterations is not None:
        budget = replace(budget, max_iterations=args.max_iterations)
    settings = replace(
        settings,
        backends=backends,
        operations=tuple(Operation[n.upper()] for n in args.operations)
        if args.operations
        else tuple(Operation),
        max_rows=args.max_rows,
        quick=args.quick,
        proxy_delay_ms=max(0.0, args.proxy_delay_ms),
        count=not args.no_count,
        budget=budget,
        verify=args.verify or args.quick,
        encryption=args.encryption,
        postgres_url=args.postgres_url or settings.postgres_url,
        mysql_url=args.mysql_url or settings.mysql_url,
    )
    return settings, args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into SystemExit so that every table gets dropped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_settings(argv)
    signal.signal(signal.SIGTERM, _terminate)
    machine = describe(settings)
    result = run(settings)
    targets = check_targets(result.results)
    sys.stdout.write(report.text(result, targets, machine))
    if args.json:
        args.json.write_text(report.to_json(result, targets, machine))
    if args.markdown:
        args.markdown.write_text(report.markdown(result, targets, machine))
    if args.plot:
        from bench.plot import plot  # matplotlib only when asked for

        plot(report.to_json(result, targets, machine), args.plot)
    return 1 if result.cleanup_errors else 0
