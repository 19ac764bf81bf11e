"""``python -m bench.refresh``: coordinated against uncoordinated refresh, N SDK processes.

    python -m bench.refresh --workers 32 --backend postgresql
    python -m bench.refresh --workers 32 --backend all --kill \\
        --json refresh.json --plot docs/refresh-coordination.png

Server URLs come from ``ZTS_TEST_POSTGRES_URL`` and ``ZTS_TEST_MYSQL_URL``
(the defaults of tests/conftest.py); SQLite is a file in a temporary
directory. Each backend gets a table of its own, migrated at the start and
dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from sqlalchemy import MetaData, Table

from bench.refresh.figures import Figures, figures, markdown_table
from bench.refresh.harness import RunResult, WorkerPool, run_scenario
from bench.refresh.model import KILL_AFTER_LEASE, KILL_BEFORE_SAVE, NO_KILL
from zoho_token_store import migrate
from zoho_token_store.engine import make_engine, resolve_url
from zoho_token_store.refresh import RefreshPolicy

SERVER_URLS = {
    "postgresql": os.environ.get(
        "ZTS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("ZTS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]


@contextmanager
def _database(name: str) -> Iterator[tuple[str, str]]:
    """A migrated table of this run's own on backend ``name``: (url, table name)."""
    table = f"rcb_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="zts-refresh-db-") as tmp:
        url = f"sqlite:///{tmp}/tokens.db" if name == "sqlite" else SERVER_URLS[name]
        migrate.upgrade(url, table_name=table)
        try:
            yield url, table
        finally:
            migrate.downgrade(url, "base", table_name=table)
            engine = make_engine(resolve_url(url))
            try:
                with engine.connect() as conn:
                    Table(migrate.version_table_name(table), MetaData()).drop(conn, checkfirst=True)
            finally:
                engine.dispose()


@dataclass(frozen=True)
class _Kind:
    policy: RefreshPolicy
    kill: str = NO_KILL
    skewed: bool = False


def _kinds(args: argparse.Namespace) -> dict[str, _Kind]:
    short_lease = RefreshPolicy(lease_timeout=args.lease_timeout)
    return {
        "coordinated": _Kind(RefreshPolicy()),
        "uncoordinated": _Kind(RefreshPolicy(enabled=False)),
        # The first lease holder dies (SIGKILL) as soon as the store tells it to refresh.
        "killed-holder": _Kind(short_lease, KILL_AFTER_LEASE),
        # ... after it has refreshed, before it saves: the fake issued a token nobody saves.
        "killed-before-save": _Kind(short_lease, KILL_BEFORE_SAVE),
        # ... with the default lease timeout (30 s) and wait bound (10 s).
        "killed-holder-default-lease": _Kind(RefreshPolicy(), KILL_AFTER_LEASE),
        # --skewed-workers workers' clocks run --skew seconds ahead.
        "skewed": _Kind(RefreshPolicy(), skewed=True),
        "skewed-uncoordinated": _Kind(RefreshPolicy(enabled=False), skewed=True),
    }


def _timeline(run: RunResult) -> dict[str, object]:
    """What the plot needs from a run, times relative to its grant exchange; no token values."""
    failures = sorted(  # when each failed call ended, i.e. failed
        (end - run.started, outcome)
        for result in run.results
        for _start, end, outcome in result.calls
        if outcome != "ok"
    )
    return {
        "backend": run.backend,
        "scenario": run.scenario,
        "workers": run.workers,
        "lifetime": run.lifetime,
        "duration": run.deadline - run.started,
        "kill_at": None if run.kill_at is None else run.kill_at - run.started,
        "grants": [(g.at - run.started, g.grant_type, g.outcome) for g in run.grants],
        "failures": failures,
    }


def _print_run(row: Figures) -> None:
    print(
        f"  {row.backend:<10} {row.scenario:<19} calls {row.calls:>6}  "
        f"refreshes {row.refreshes:>3}  generations {row.generations:>3}  "
        f"throttled {row.throttled:>3}  failed {row.failed_calls:>5} "
        f"(invalid token {row.invalid_token_failures}, denied {row.refresh_denied_failures})  "
        f"lost saves {row.saves_lost}  final=newest {row.final_is_newest}  "
        f"leases {row.leases_find_token}+{row.leases_find_token_by_id}  "
        f"p99 {row.latency_p99_ms} ms  max {row.latency_max_ms} ms"
        + (f"  takeover {row.takeover_after_kill_s} s" if row.takeover_after_kill_s else ""),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.refresh",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=32, help="worker processes (default 32)")
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*BACKENDS, "all"],
        help="repeatable; 'all' for every one (default: all)",
    )
    parser.add_argument("--lifetime", type=int, default=12, help="access-token lifetime, s")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of calls per run")
    parser.add_argument(
        "--scenarios",
        default="coordinated,uncoordinated",
        help="comma-separated, run in this order on each backend: coordinated, uncoordinated, "
        "killed-holder, killed-before-save, killed-holder-default-lease, skewed, "
        "skewed-uncoordinated (default: coordinated,uncoordinated)",
    )
    parser.add_argument("--kill", action="store_true", help="add the killed-holder scenario")
    parser.add_argument(
        "--lease-timeout",
        type=float,
        default=2.0,
        help="s, for killed-holder and killed-before-save",
    )
    parser.add_argument("--skew", type=float, default=3.0, help="s ahead, for the skewed runs")
    parser.add_argument(
        "--skewed-workers", type=int, default=1, help="how many workers' clocks are skewed"
    )
    parser.add_argument("--pause", type=float, default=0.02, help="s between a worker's calls")
    parser.add_argument(
        "--reinit-every",
        type=int,
        default=20,
        help="a worker starts over with a new token (find_token) every this many calls",
    )
    parser.add_argument("--json", help="write figures and timelines here")
    parser.add_argument("--plot", help="write the PNG plot here (needs matplotlib)")
    args = parser.parse_args(argv)
    chosen = args.backend or ["all"]
    backends = BACKENDS if "all" in chosen else list(dict.fromkeys(chosen))
    kinds = _kinds(args)
    names = args.scenarios.split(",") + (["killed-holder"] if args.kill else [])
    unknown = [name for name in names if name not in kinds]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")

    rows: list[Figures] = []
    timelines: list[dict[str, object]] = []
    began = time.time()
    print(f"starting {args.workers} worker processes (spawn)...", flush=True)
    with WorkerPool(args.workers) as pool:
        for backend in backends:
            with _database(backend) as (url, table):
                for name in dict.fromkeys(names):
                    kind = kinds[name]
                    run = run_scenario(
                        pool,
                        backend=backend,
                        url=url,
                        table_name=table,
                        scenario=name,
                        policy=kind.policy,
                        lifetime=args.lifetime,
                        duration=args.duration,
                        pause=args.pause,
                        reinit_every=args.reinit_every,
                        kill=kind.kill,
                        skew=args.skew if kind.skewed else 0.0,
                        skewed_workers=args.skewed_workers if kind.skewed else 0,
                    )
                    for error in run.errors:
                        print(error, file=sys.stderr)
                    row = figures(run)
                    _print_run(row)
                    rows.append(row)
                    timelines.append(_timeline(run))
    print(f"\n{len(rows)} runs in {time.time() - began:.0f} s\n")
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"figures": [asdict(r) for r in rows], "timelines": timelines}, out)
    if args.plot:
        from bench.refresh.plot import plot

        plot(timelines, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
