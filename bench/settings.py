"""What one benchmark run measures: operations, backends, table sizes and iteration budget."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_ROWS",
    "SERVER_BACKENDS",
    "SIZES",
    "Budget",
    "Operation",
    "Settings",
    "Stage",
    "stages",
]

# Backends, and the contenders each one brings:
#   sqlite      this store and the floor on a SQLite file
#   postgresql  this store and the floor on PostgreSQL (psycopg 3)
#   mariadb     this store and the floor on MariaDB (PyMySQL), and the SDK's DBStore
#   file        the SDK's FileStore (CSV)
# With ``encryption``, each database also brings this store with encryption
# at rest on, in a table of its own whose rows are sealed (store+enc/...).
BACKENDS = ("sqlite", "postgresql", "mariadb", "file")
SERVER_BACKENDS = ("postgresql", "mariadb")

# Table sizes for the lookups and saves; get_tokens runs at GET_TOKENS_ROWS.
SIZES = (10, 10_000, 100_000, 1_000_000)
GET_TOKENS_ROWS = 1_000
DEFAULT_MAX_ROWS = 100_000

POSTGRES_URL_ENV = "ZTS_BENCH_POSTGRES_URL"
MYSQL_URL_ENV = "ZTS_BENCH_MYSQL_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


class Operation(enum.Enum):
    """One store operation, as the SDK calls it. The value is its label in the tables."""

    FIND_USER = "find_token (user)"
    FIND_REFRESH = "find_token (refresh)"
    FIND_ACCESS = "find_token (access)"
    FIND_BY_ID = "find_token_by_id"
    SAVE_UPDATE = "save_token (update)"
    SAVE_INSERT = "save_token (insert)"
    GET_TOKENS = "get_tokens"

    @property
    def slug(self) -> str:
        """The operation's name on the command line: ``find_user``, ``save_update``..."""
        return self.name.lower()

    @property
    def is_lookup(self) -> bool:
        return self in LOOKUPS


LOOKUPS = (
    Operation.FIND_USER,
    Operation.FIND_REFRESH,
    Operation.FIND_ACCESS,
    Operation.FIND_BY_ID,
)
PER_ROW_OPERATIONS = (*LOOKUPS, Operation.SAVE_UPDATE, Operation.SAVE_INSERT)


@dataclass(frozen=True)
class Budget:
    """How many times each (operation, contender) cell runs.

    A cell first runs warm-up iterations for up to ``warmup_seconds`` (at most
    ``warmup_max``, at least one), then as many timed iterations as fit in
    ``seconds`` at the warm-up's median, clamped to
    [``min_iterations``, ``max_iterations``]. The timed iterations are split
    into ``rounds`` that alternate between the contenders of an operation, so
    that a slow spell of the machine falls on every contender alike.
    """

    warmup_seconds: float = 0.25
    warmup_max: int = 200
    seconds: float = 2.0
    min_iterations: int = 10
    max_iterations: int = 2_000
    rounds: int = 4
    # The counting pass: operations counted per cell, after counting_warmup
    # (more than psycopg's prepare_threshold of 5: its 6th execution of a
    # statement prepares it, a one-off extra round trip).
    counting_iterations: int = 10
    counting_warmup: int = 8

    @classmethod
    def quick(cls) -> Budget:
        """A few iterations of everything: checks that the benchmark works, times nothing."""
        return cls(
            warmup_seconds=0.0,
            warmup_max=1,
            seconds=0.0,
            min_iterations=3,
            max_iterations=3,
            rounds=1,
            counting_iterations=2,
            counting_warmup=1,
        )


@dataclass(frozen=True)
class Stage:
    """The operations measured once every table holds ``rows`` rows."""

    rows: int
    operations: tuple[Operation, ...]


@dataclass(frozen=True)
class Settings:
    """Everything one run needs to know."""

    backends: tuple[str, ...] = BACKENDS
    operations: tuple[Operation, ...] = tuple(Operation)
    max_rows: int = DEFAULT_MAX_ROWS
    quick: bool = False
    proxy_delay_ms: float = 0.0
    count: bool = True
    budget: Budget = field(default_factory=Budget)
    postgres_url: str = field(
        default_factory=lambda: os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    )
    mysql_url: str = field(default_factory=lambda: os.environ.get(MYSQL_URL_ENV, DEFAULT_MYSQL_URL))
    seed: int = 20_240_601
    verify: bool = False
    # Also measure this store with encryption at rest on (contenders
    # ``store+enc/<backend>``), beside the same store without it.
    encryption: bool = False

    @property
    def proxied(self) -> bool:
        """True when the timed contenders reach the servers through the delaying proxy."""
        return self.proxy_delay_ms > 0


def stages(settings: Settings) -> list[Stage]:
    """The table sizes of this run, smallest first, with what is measured at each.

    ``--quick`` measures everything at 10 rows. Otherwise every per-row
    operation runs at each size up to ``max_rows``, and ``get_tokens`` at
    1,000 rows, on the way from 10 rows to the next size.
    """
    wanted = settings.operations
    if settings.quick:
        return [Stage(SIZES[0], wanted)]
    per_row = tuple(op for op in wanted if op in PER_ROW_OPERATIONS)
    result: list[Stage] = []
    for rows in SIZES:
        if rows > settings.max_rows:
            break
        if (
            rows > GET_TOKENS_ROWS
            and Operation.GET_TOKENS in wanted
            and not _has_get_tokens(result)
        ):
            result.append(Stage(GET_TOKENS_ROWS, (Operation.GET_TOKENS,)))
        if per_row:
            result.append(Stage(rows, per_row))
    if (
        Operation.GET_TOKENS in wanted
        and not _has_get_tokens(result)
        and settings.max_rows >= GET_TOKENS_ROWS
    ):
        result.append(Stage(GET_TOKENS_ROWS, (Operation.GET_TOKENS,)))
    return result


def _has_get_tokens(result: list[Stage]) -> bool:
    return any(Operation.GET_TOKENS in stage.operations for stage in result)
