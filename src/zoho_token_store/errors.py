"""The store's one error family, rooted in the SDK's ``SDKException``.

Every error carries the SDK's ``TOKEN_STORE`` code, so code written against the
SDK's own stores keeps catching it. Messages name the operation and what went
wrong, never a token value or the client secret: the SDK formats ``str(cause)``
into its messages, so this family keeps the cause on ``cause`` and
``__cause__`` without pasting it into the text.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from zoho_token_store._sdk import SDKException

__all__ = [
    "TOKEN_STORE",
    "DatabaseError",
    "InvalidTokenError",
    "SchemaMissingError",
    "TokenStoreError",
    "wrap_database_error",
]

TOKEN_STORE = "TOKEN_STORE"  # noqa: S105  # the SDK's error code, not a password


class TokenStoreError(SDKException):  # type: ignore[misc]  # the SDK is untyped
    """Base of every error this package raises; ``code`` is ``TOKEN_STORE``."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(code=TOKEN_STORE, message=message)
        # Kept off the SDK's constructor on purpose: it would append str(cause),
        # and a driver's message may quote the statement's parameters.
        self.cause = cause

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_message!r})"


class InvalidTokenError(TokenStoreError):
    """The token given to the store cannot be stored or looked up as it is."""


class SchemaMissingError(TokenStoreError):
    """The token table, or the migration it needs, is not in the database."""


class DatabaseError(TokenStoreError):
    """The database failed or could not be reached; ``cause`` holds the driver's error."""


def wrap_database_error(operation: str, error: sa_exc.SQLAlchemyError) -> DatabaseError:
    """Turn a SQLAlchemy error into a :class:`DatabaseError` that is safe to log.

    The original error stays chained, as ``cause`` and ``__cause__``, so it is
    made safe in place first: its statement parameters (token values) are
    hidden, and the driver's message is cut to its first line. The lines after
    it can quote values: PostgreSQL's "DETAIL: Failing row contains (...)"
    lists every column of the row, secrets included.
    """
    if isinstance(error, sa_exc.StatementError):
        error.hide_parameters = True
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else None
    first_line = _first_line(driver_error if driver_error is not None else error)
    if driver_error is not None:
        driver_error.args = (first_line,)
        kind = type(driver_error)
        # SQLAlchemy rendered the driver's message into its own at creation.
        error.args = (f"({kind.__module__}.{kind.__name__}) {first_line}", *error.args[1:])
    detail = type(driver_error if driver_error is not None else error).__name__
    message = f"{operation} failed: {detail}" + (f": {first_line}" if first_line else "")
    return DatabaseError(message, cause=error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
