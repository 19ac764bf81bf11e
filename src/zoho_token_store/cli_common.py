"""What the ``zoho-token-store`` subcommands share: settings, output, errors and formats.

Every failure a command can meet ends in :class:`ErrorHandlingGroup`: one line
on stderr and exit code 1, or the traceback too with ``--debug``. Usage errors
are Typer's own, with exit code 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import typer

try:  # Typer vendors Click from 0.28 on; before, it depends on Click itself.
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - Typer < 0.28 (the last on Python 3.9)
    from click.exceptions import ClickException  # type: ignore[import-not-found,no-redef,unused-ignore]  # only there with Typer < 0.28
from alembic.util import CommandError
from rich.console import Console
from sqlalchemy import URL, Engine
from sqlalchemy import exc as sa_exc
from typer.core import TyperGroup

from zoho_token_store.admin import TokenTable
from zoho_token_store.engine import is_memory_sqlite, make_engine, resolve_url
from zoho_token_store.errors import TokenStoreError, wrap_database_error
from zoho_token_store.refresh import RefreshPolicy
from zoho_token_store.store import SQLAlchemyTokenStore

__all__ = [
    "MAX_DURATION_TEXT",
    "PROG",
    "CommandFailed",
    "ErrorHandlingGroup",
    "Settings",
    "err",
    "examples",
    "expiry_text",
    "fail",
    "local_time",
    "out",
    "parse_duration",
    "relative",
    "settings",
]

PROG = "zoho-token-store"
_PIPE_WIDTH = 250
_DURATION = re.compile(r"([0-9]+)\s*(s|sec|m|min|h|d|w)", re.IGNORECASE)
_UNIT_MS = {"s": 1_000, "sec": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_UNIT_MS.update(d=86_400_000, w=7 * 86_400_000)
# Longer than any token lives, and short enough that now minus it stays a
# valid time and a BIGINT on every backend (a huge one overflowed differently
# on each: an error, a database error, a negative time).
_MAX_DURATION_DAYS = 100 * 365
MAX_DURATION_TEXT = f"100 years ({_MAX_DURATION_DAYS}d)"
_MAX_DURATION_MS = _MAX_DURATION_DAYS * _UNIT_MS["d"]


class CommandFailed(Exception):
    """A command could not do what was asked; the message is shown as it is."""


@dataclass(frozen=True)
class Settings:
    """The global options: where the token table is, and how to report failures."""

    url: str | None
    table: str
    debug: bool

    @property
    def resolved(self) -> URL:
        return resolve_url(self.url)

    @property
    def where(self) -> str:
        """The URL without its password, for messages."""
        return self.resolved.render_as_string(hide_password=True)

    def sqlite_file_missing(self) -> Path | None:
        """The path of a SQLite database file that does not exist, else ``None``."""
        url = self.resolved
        if url.get_backend_name() != "sqlite" or is_memory_sqlite(url) or not url.database:
            return None
        path = Path(url.database)
        return None if path.exists() else path

    def require_database(self) -> None:
        """Fail for a SQLite file that does not exist, rather than create an empty one."""
        missing = self.sqlite_file_missing()
        if missing is not None:
            fail(
                f"no SQLite database at {str(missing)!r}: "
                f"create it with `{PROG} --url {self.url or 'sqlite:///...'} upgrade`"
            )

    def engine(self, *, create: bool = False) -> Engine:
        """An engine on the database; a missing SQLite file is refused unless ``create``."""
        if not create:
            self.require_database()
        return make_engine(self.resolved)

    def store(self) -> SQLAlchemyTokenStore:
        """A store on the table, with refresh coordination off: an operator never takes a lease."""
        self.require_database()
        return SQLAlchemyTokenStore(
            self.resolved, table_name=self.table, refresh=RefreshPolicy(enabled=False)
        )

    def tokens(self) -> TokenTable:
        return TokenTable(self.engine(), self.table)


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # pragma: no cover - the callback always sets it
        raise RuntimeError("the global options were not read")
    return obj


def out() -> Console:
    """Rich output to stdout (looked up at each call, so tests can capture it).

    Messages are never wrapped. Into a pipe or a file, tables get up to
    ``_PIPE_WIDTH`` columns (or ``$COLUMNS``), rather than Rich's 80, so that
    each token stays on one line.
    """
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def examples(*lines: str) -> str:
    """An epilog of example command lines, kept as written by the help formatter."""
    return "\b\nExamples:\n" + "\n".join(f"  {PROG} {line}" for line in lines)


def fail(message: str) -> NoReturn:
    raise CommandFailed(message)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)-5.5s [%(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(debug: bool) -> None:
    """``--debug`` shows the migrations' and the store's log; otherwise the CLI reports itself."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    alembic_logger = logging.getLogger("alembic")
    if debug:
        root.addHandler(_StderrHandler())
        root.setLevel(logging.INFO)
        logging.getLogger("zoho_token_store").setLevel(logging.DEBUG)
        return
    if not any(isinstance(h, logging.NullHandler) for h in alembic_logger.handlers):
        # The upgrade command prints what the migrations report; without a
        # handler, Python would also print their warnings bare on stderr.
        alembic_logger.addHandler(logging.NullHandler())


# Click's own exceptions (usage errors and the like) carry their exit codes
# and messages: they pass through.
_PASS_THROUGH: tuple[type[BaseException], ...] = (ClickException, typer.Exit, typer.Abort)


class ErrorHandlingGroup(TyperGroup):
    """Turns every failure of a subcommand into one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            debug = isinstance(ctx.obj, Settings) and ctx.obj.debug
            message = describe(exc, ctx.invoked_subcommand or "command")
            if debug:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            err().print(f"{PROG}: {message}", markup=False)
            raise typer.Exit(1) from None


def describe(exc: Exception, command: str = "command") -> str:
    """One line for a failure, with no secret: only messages this package controls.

    A database error that nothing else labelled is labelled ``<command> failed: ...``.
    """
    if isinstance(exc, TokenStoreError):
        return str(exc.error_message)
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return str(wrap_database_error(command, exc).error_message)
    if isinstance(exc, (CommandFailed, CommandError)):
        return str(exc)
    if isinstance(exc, OSError):
        target = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{target}"
    return f"unexpected {type(exc).__name__}; run with --debug for the traceback"


# Formats ---------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``45min``, ``90s``, ``2w`` in milliseconds; raises ``BadParameter``.

    At most :data:`MAX_DURATION_TEXT`; a longer duration is a usage error too.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration: use a number and a unit, such as 90s, 45min, 12h, 30d, 2w"
        )
    digits = match.group(1).lstrip("0") or "0"
    # Checked by length first: int() refuses strings of over 4300 digits.
    if len(digits) > len(str(_MAX_DURATION_MS)):
        raise _out_of_range(text)
    duration = int(digits) * _UNIT_MS[match.group(2).lower()]
    if duration > _MAX_DURATION_MS:
        raise _out_of_range(text)
    return duration


def _out_of_range(text: str) -> typer.BadParameter:
    return typer.BadParameter(f"{text!r} is out of range: the longest is {MAX_DURATION_TEXT}")


def local_time(epoch_ms: int | None, *, seconds: bool = True) -> str:
    """Epoch milliseconds as local time, ``2026-12-03 18:04:05 CET``; ``-`` for none."""
    if epoch_ms is None:
        return "-"
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_ms} ms"
    return timestamp(moment, seconds=seconds)


def timestamp(value: datetime | None, *, seconds: bool = True) -> str:
    """A stored timestamp as local time; ``-`` for none."""
    if value is None:
        return "-"
    pattern = "%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z"
    return value.astimezone().strftime(pattern).strip()


def relative(delta_ms: int) -> str:
    """``in 42 min`` for a time ahead, ``expired 3 h ago`` for one past."""
    seconds = abs(delta_ms) // 1000
    if seconds < 60:
        amount = f"{seconds} s"
    elif seconds < 3600:
        amount = f"{seconds // 60} min"
    elif seconds < 48 * 3600:
        amount = f"{seconds // 3600} h"
    else:
        amount = f"{seconds // 86400} d"
    return f"in {amount}" if delta_ms >= 0 else f"expired {amount} ago"


def expiry_text(expiry: int | None, now: int) -> str:
    """``in 42 min`` or ``expired 3 h ago``; ``no expiry`` for none."""
    return "no expiry" if expiry is None else relative(expiry - now)
