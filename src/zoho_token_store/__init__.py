"""A Zoho CRM SDK token store on SQLAlchemy: SQLite, PostgreSQL and MySQL/MariaDB.

>>> from zoho_token_store import SQLAlchemyTokenStore
>>> store = SQLAlchemyTokenStore("sqlite://")
>>> store.get_tokens()
[]
"""

from __future__ import annotations

from zoho_token_store.engine import MissingDependencyError
from zoho_token_store.errors import (
    DatabaseError,
    InvalidTokenError,
    SchemaMissingError,
    TokenStoreError,
)
from zoho_token_store.models import OAuthTokenRow
from zoho_token_store.store import SQLAlchemyTokenStore

__all__ = [
    "DatabaseError",
    "InvalidTokenError",
    "MissingDependencyError",
    "OAuthTokenRow",
    "SQLAlchemyTokenStore",
    "SchemaMissingError",
    "TokenStoreError",
]

__version__ = "0.1.0"
