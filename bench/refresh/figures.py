"""From a :class:`~bench.refresh.harness.RunResult` to the figures the targets are about.

Definitions (L is the access-token lifetime, ``margin`` the store's refresh
margin for it, ``max(min(300 s, L/2), 7 s)``: a token is due ``L - margin``
after it was issued):

- **refresh**: a refresh-token grant the fake answered with a new access token.
- **throttled**: a refresh-token grant the fake denied ("Access Denied": more
  than 10 in 10 minutes).
- **redundant refresh**: a refresh answered while a token issued less than
  ``(L - margin) / 2`` earlier existed, i.e. one that replaced a token still
  far from due. The window is half the refresh period the store aims at, so
  a refresh on schedule is never counted redundant, while the bursts of
  uncoordinated workers (milliseconds apart) always are. (For L <= 7 s the
  window is empty and the figure means nothing: such a token is due at once.)
- **generation**: a refresh that is not redundant: one new token per expiry.
  ``refreshes per generation`` is the figure whose target is exactly 1.
- **invalid-token failure**: a CRM call that the fake refused with
  INVALID_TOKEN (counted by the workers and, separately, by the fake).
- **lost save**: an access token the fake issued by a refresh that no worker's
  ``save_token`` committed. The table is also watched (polled every 20 ms):
  ``unseen`` counts issued tokens the watch never saw in the row, and the row
  must end holding the fake's newest token.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

from bench.refresh.harness import RunResult
from bench.refresh.model import OUTCOME_INVALID_TOKEN, OUTCOME_OK, OUTCOME_REFRESH_DENIED
from zoho_token_store.refresh import RefreshPolicy

__all__ = ["Figures", "figures", "markdown_table"]


@dataclass(frozen=True)
class Figures:
    backend: str
    scenario: str
    workers: int
    lifetime: float
    margin: float  # s before expiry that a token is due
    redundancy_window: float  # s: a refresh this soon after the previous token is redundant
    duration: float  # s from the grant exchange to the deadline
    due_points: int  # how many times a token came due in that time, on the store's schedule
    calls: int
    calls_per_second: float
    exchanges: int
    refreshes: int
    throttled: int
    generations: int
    redundant: int
    refreshes_per_generation: float | None
    failed_calls: int
    invalid_token_failures: int  # as the workers saw them
    fake_invalid_token_calls: int  # as the fake counted them
    refresh_denied_failures: int
    other_failures: int
    saves_lost: int
    unseen_in_table: int
    final_is_newest: bool
    leases_find_token: int
    leases_find_token_by_id: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    longest_failure_s: float  # from a worker's first failed call to its next good one
    killed: int
    takeover_after_kill_s: float | None  # from the kill to the next refresh
    worker_errors: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def margin_for(lifetime: float) -> float:
    """The store's default refresh margin, in seconds, for a token that lives ``lifetime`` s."""
    return RefreshPolicy().margin_ms(expiry=int(lifetime * 1000), issued_at=0) / 1000


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(run: RunResult) -> Figures:
    margin = margin_for(run.lifetime)
    window = (run.lifetime - margin) / 2
    ok_grants = [g for g in run.grants if g.outcome == "ok"]
    refreshes = [g for g in ok_grants if g.grant_type == "refresh_token"]
    throttled = [g for g in run.grants if g.grant_type == "refresh_token" and g.outcome != "ok"]

    redundant = 0
    previous: float | None = None
    for grant in ok_grants:
        if grant.grant_type == "refresh_token" and previous is not None:
            redundant += grant.at - previous < window
        previous = grant.at

    calls = [call for result in run.results for call in result.calls]
    outcomes = Counter(outcome for _, _, outcome in calls)
    failed = sum(n for outcome, n in outcomes.items() if outcome != OUTCOME_OK)
    invalid = outcomes[OUTCOME_INVALID_TOKEN]
    denied = outcomes[OUTCOME_REFRESH_DENIED]

    issued = {g.access_digest for g in refreshes}
    saved = {d for result in run.results for _, d, ok in result.saves if ok}
    seen = {sample.access_digest for sample in run.table} | {run.final_digest}
    newest = ok_grants[-1].access_digest if ok_grants else None

    leases = Counter(method for result in run.results for _, method in result.leases)
    latencies = [(end - start) * 1000 for start, end, _ in calls]

    longest_failure = 0.0
    for result in run.results:
        failing_since: float | None = None
        for start, _end, outcome in result.calls:
            if outcome != OUTCOME_OK and failing_since is None:
                failing_since = start
            elif outcome == OUTCOME_OK and failing_since is not None:
                longest_failure = max(longest_failure, start - failing_since)
                failing_since = None
        if failing_since is not None:
            longest_failure = max(longest_failure, run.deadline - failing_since)

    takeover = None
    if run.kill_at is not None:
        after = [g.at for g in refreshes if g.at > run.kill_at]
        takeover = after[0] - run.kill_at if after else math.inf

    span = run.deadline - run.started
    period = run.lifetime - margin
    return Figures(
        backend=run.backend,
        scenario=run.scenario,
        workers=run.workers,
        lifetime=run.lifetime,
        margin=margin,
        redundancy_window=window,
        duration=round(span, 2),
        due_points=int(span // period) if period > 0 else 0,
        calls=len(calls),
        calls_per_second=round(len(calls) / span, 1) if span > 0 else 0.0,
        exchanges=run.stats.exchanges,
        refreshes=len(refreshes),
        throttled=len(throttled),
        generations=len(refreshes) - redundant,
        redundant=redundant,
        refreshes_per_generation=(
            round(len(refreshes) / (len(refreshes) - redundant), 2)
            if len(refreshes) > redundant
            else None
        ),
        failed_calls=failed,
        invalid_token_failures=invalid,
        fake_invalid_token_calls=run.stats.invalid_token_calls,
        refresh_denied_failures=denied,
        other_failures=failed - invalid - denied,
        saves_lost=len(issued - saved),
        unseen_in_table=len(issued - seen),
        final_is_newest=newest is not None and run.final_digest == newest,
        leases_find_token=leases["find_token"],
        leases_find_token_by_id=leases["find_token_by_id"],
        latency_p50_ms=round(_percentile(latencies, 0.5), 1),
        latency_p99_ms=round(_percentile(latencies, 0.99), 1),
        latency_max_ms=round(max(latencies, default=math.nan), 1),
        longest_failure_s=round(longest_failure, 2),
        killed=len(run.dead),
        takeover_after_kill_s=None if takeover is None else round(takeover, 2),
        worker_errors=len(run.errors),
    )


_COLUMNS = [
    ("backend", "backend"),
    ("scenario", "scenario"),
    ("workers", "N"),
    ("calls", "calls"),
    ("due_points", "due points"),
    ("refreshes", "refreshes"),
    ("generations", "generations"),
    ("refreshes_per_generation", "refreshes / generation"),
    ("throttled", "throttled"),
    ("invalid_token_failures", "invalid-token failures"),
    ("refresh_denied_failures", "calls failed: refresh denied"),
    ("other_failures", "other failures"),
    ("saves_lost", "saves lost"),
    ("final_is_newest", "final = newest"),
    ("latency_p99_ms", "p99 call ms"),
    ("latency_max_ms", "max call ms"),
    ("longest_failure_s", "longest failure s"),
    ("leases_find_token", "leases: find_token"),
    ("leases_find_token_by_id", "leases: find_token_by_id"),
    ("takeover_after_kill_s", "takeover after kill s"),
]


def markdown_table(rows: list[Figures], extra: list[tuple[str, str]] | None = None) -> str:
    """The figures of several runs as one Markdown table."""
    columns = _COLUMNS + (extra or [])
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        values = row.as_dict()
        cells = []
        for name, _ in columns:
            value = values[name]
            cells.append("-" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
