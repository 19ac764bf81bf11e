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

    The statement's parameters are token values, so they are hidden on the
    original error too before it is chained: a traceback printed by a logger
    shows the SQL, never the values.
    """
    if isinstance(error, sa_exc.StatementError):
        error.hide_parameters = True
    detail = (
        type(error.orig).__name__ if isinstance(error, sa_exc.DBAPIError) else type(error).__name__
    )
    first_line = _first_line(error)
    message = (
        f"{operation} failed: {detail}: {first_line}"
        if first_line
        else f"{operation} failed: {detail}"
    )
    return DatabaseError(message, cause=error)


def _first_line(error: sa_exc.SQLAlchemyError) -> str:
    # The driver's own message, without SQLAlchemy's "[SQL: ...]" tail. Driver
    # messages name columns and constraints, not the bound values.
    source: BaseException = (
        error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig else error
    )
    text = str(source).strip().splitlines()
    return text[0][:300] if text else ""
