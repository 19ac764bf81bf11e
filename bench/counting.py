"""Statements, round trips and new connections per operation, three ways.

The counting pass runs apart from the timed one, on contenders of their own
whose server connections go through a :class:`~bench.proxy.LoopbackProxy`
with no delay, and whose store engines carry counting event listeners. For
each iteration it reads every counter just before and just after the timed
call (the untimed check, which may delete an inserted row, is outside):

- ``statements``: what the client sent, by its own count: for this store,
  SQLAlchemy's ``before_cursor_execute`` plus the dialect's DBAPI commit and
  rollback calls; for the floor, its own executes and commits;
- ``round_trips``: the proxy's count of server replies to the client (see
  proxy.py); only for PostgreSQL and MariaDB;
- ``connections``: new connections, by the proxy for the servers, by the
  pool's ``connect`` event for this store on SQLite, and by construction for
  the floor (it opens two, once);
- ``server_statements``: MariaDB's own session ``Questions``, for the
  contenders with persistent sessions (this store and the floor), less what
  reading the counter adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.contenders import ClientCounts, Contender, OpCall
from bench.proxy import LoopbackProxy, ProxyCounts
from bench.timing import TimedCell, sample

__all__ = ["OpCounts", "count_operation"]

SLOW_NS = 20_000_000
SLOW_ITERATIONS = 3


@dataclass(frozen=True)
class OpCounts:
    """Per-operation averages; ``None`` where a counter does not apply."""

    statements: float | None
    round_trips: float | None
    connections: float | None
    server_statements: float | None


@dataclass(frozen=True)
class _Reading:
    client: ClientCounts
    wire: ProxyCounts | None


def count_operation(
    contender: Contender,
    call: OpCall,
    proxy: LoopbackProxy | None,
    *,
    iterations: int,
    warmup: int,
) -> OpCounts:
    """Run ``call`` ``warmup`` times, then count ``iterations`` runs of it one by one.

    A call slower than ``SLOW_NS`` (the SDK's stores on large tables) is
    warmed up once and counted ``SLOW_ITERATIONS`` times: its counts do not
    vary, and its time is better spent in the timed pass.
    """
    cell = TimedCell(call)
    (first,) = sample(cell, 1, keep=False)
    if first > SLOW_NS:
        iterations = min(iterations, SLOW_ITERATIONS)
    else:
        sample(cell, max(0, warmup - 1), keep=False)
    server_cost = _server_read_cost(contender)
    statements = round_trips = connections = server = 0
    for _ in range(iterations):
        arg = call.prepare(cell.next_index)
        cell.next_index += 1
        server_before = contender.server_statements()
        before = _Reading(contender.counts(), proxy.counts() if proxy else None)
        result = call.run(arg)
        after = _Reading(contender.counts(), proxy.counts() if proxy else None)
        server_after = contender.server_statements()
        call.check(arg, result)
        statements += _delta(after.client.statements, before.client.statements)
        if after.wire is not None and before.wire is not None:
            wire = after.wire - before.wire
            round_trips += wire.round_trips
            connections += wire.connections
        else:
            connections += _delta(after.client.connects, before.client.connects)
        if server_after is not None and server_before is not None and server_cost is not None:
            server += server_after - server_before - server_cost
    n = float(iterations)
    client = contender.counts()
    return OpCounts(
        statements=statements / n if client.statements is not None else None,
        round_trips=round_trips / n if proxy is not None else None,
        connections=connections / n if proxy is not None or client.connects is not None else None,
        server_statements=server / n if server_cost is not None else None,
    )


def _delta(after: int | None, before: int | None) -> int:
    return after - before if after is not None and before is not None else 0


def _server_read_cost(contender: Contender) -> int | None:
    """How much reading the server's counter adds to it (MariaDB counts the SHOW itself)."""
    first = contender.server_statements()
    if first is None:
        return None
    second = contender.server_statements()
    assert second is not None
    return second - first
