"""The benchmark's data: row ``k`` of every table, and the SDK tokens each operation passes.

Every value is a function of the row number, so a lookup of row ``k`` knows
what it must find without reading the table first. Tokens have the shape of
Zoho's (``1000.<32 hex>.<32 hex>``).

Ids are zero-padded to ten digits. The SDK's DBStore picks a new id as
``max(id) + 1`` with ``id`` compared as a string; with padded ids string and
number order agree, so its inserts don't collide with the filled rows (with
plain ``"1"`` to ``"10"`` the next id would be ``"10"`` again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from zoho_token_store.crypto import Codec, PlainCodec

__all__ = [
    "API_DOMAIN",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FAR_EXPIRY_MS",
    "REDIRECT_URL",
    "TableState",
    "access_token",
    "refresh_token",
    "row_id",
    "sdk_rows",
    "store_rows",
    "user_name",
]

CLIENT_ID = "1000.BENCHCLIENT0000000000000000000"
CLIENT_SECRET = "bench0123456789abcdef0123456789abcdef01234"
REDIRECT_URL = "https://app.example.com/oauth/callback"
API_DOMAIN = "https://www.zohoapis.com"
# 2100-01-01: no stored token ever comes due during a run, so a lookup never
# takes the store's refresh-lease path (that path is tested, not benchmarked).
FAR_EXPIRY_MS = 4_102_444_800_000


def row_id(k: int) -> str:
    return f"{k:010d}"


def user_name(k: int) -> str:
    return f"user{k:07d}@bench.example.com"


def _hex(kind: str, k: int, generation: int = 0) -> str:
    return hashlib.blake2b(f"{kind}:{k}:{generation}".encode(), digest_size=16).hexdigest()


def refresh_token(k: int) -> str:
    return f"1000.{_hex('r', k)}.{_hex('R', k)}"


def access_token(k: int, generation: int = 0) -> str:
    return f"1000.{_hex('a', k, generation)}.{_hex('A', k, generation)}"


def store_rows(start: int, stop: int, codec: Codec | None = None) -> Iterator[dict[str, Any]]:
    """Rows ``start`` to ``stop - 1`` of this store's table, digests included.

    Stored as a store with ``codec`` writes them: without one, in plaintext
    with SHA-256 digests and no ``key_id``; with a keyring, every secret
    sealed under its first key, HMAC digests, and that key's id, so that a
    store with the same keys reads them by digest and decrypts them.
    """
    codec = codec or PlainCodec()
    for k in range(start, stop):
        refresh, access = refresh_token(k), access_token(k)
        yield {
            "id": row_id(k),
            "user_name": user_name(k),
            "client_id": CLIENT_ID,
            "client_secret": codec.seal(CLIENT_SECRET),
            "refresh_token": codec.seal(refresh),
            "access_token": codec.seal(access),
            "grant_token": None,
            "expiry_time": FAR_EXPIRY_MS,
            "redirect_url": REDIRECT_URL,
            "api_domain": API_DOMAIN,
            "refresh_token_digest": codec.digest(refresh),
            "access_token_digest": codec.digest(access),
            "grant_token_digest": None,
            "issued_at": FAR_EXPIRY_MS - 3_600_000,
            "refresh_lease_until": None,
            "key_id": codec.key_id,
        }


def sdk_rows(start: int, stop: int) -> Iterator[tuple[str | None, ...]]:
    """The same rows in the ten columns of the SDK's DBStore table and FileStore CSV."""
    for k in range(start, stop):
        yield (
            row_id(k),
            user_name(k),
            CLIENT_ID,
            CLIENT_SECRET,
            refresh_token(k),
            access_token(k),
            None,
            str(FAR_EXPIRY_MS),
            REDIRECT_URL,
            API_DOMAIN,
        )


@dataclass
class TableState:
    """What one table (or CSV file) holds now: its size, and the access tokens saves changed.

    Contenders that share a table (this store and the floor) share its state,
    so a lookup by access token always asks for the row's current token.
    """

    rows: int = 0
    _access: dict[int, str] = field(default_factory=dict)
    _generation: int = 0

    def access_token(self, k: int) -> str:
        """Row ``k``'s current access token."""
        return self._access.get(k) or access_token(k)

    def new_access_token(self, k: int) -> str:
        """A fresh access token for row ``k``, as a refresh brings; recorded as current."""
        self._generation += 1
        token = access_token(k, self._generation)
        self._access[k] = token
        return token

    # The tokens the SDK hands a store, one per operation -------------------------------

    def by_user(self, k: int) -> OAuthToken:
        """The SDK's token on the first call for a user: user, client and refresh token."""
        return OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=refresh_token(k),
            user_signature=UserSignature(user_name(k)),
        )

    def by_refresh(self, k: int) -> OAuthToken:
        """A token built from a refresh token with its client id and secret."""
        return OAuthToken(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=refresh_token(k)
        )

    def by_access(self, k: int) -> OAuthToken:
        """A token that holds only an access token (no client id or secret)."""
        return OAuthToken(access_token=self.access_token(k))

    def refreshed(self, k: int) -> OAuthToken:
        """The SDK's token right after a refresh, as ``OAuthToken.get_token`` saves it.

        Every field, the id the store gave it, a new access token and a new expiry.
        """
        token = OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=refresh_token(k),
            redirect_url=REDIRECT_URL,
            id=row_id(k),
            access_token=self.new_access_token(k),
            user_signature=UserSignature(user_name(k)),
            api_domain=API_DOMAIN,
        )
        token.set_expires_in(str(FAR_EXPIRY_MS + self._generation))
        return token

    @staticmethod
    def granted(n: int) -> OAuthToken:
        """The SDK's token right after a grant-token exchange for a new user: no id yet."""
        token = OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_token=f"1000.{_hex('g', n)}.{_hex('G', n)}",
            refresh_token=f"1000.{_hex('nr', n)}.{_hex('NR', n)}",
            redirect_url=REDIRECT_URL,
            access_token=f"1000.{_hex('na', n)}.{_hex('NA', n)}",
            user_signature=UserSignature(f"new{n:07d}@bench.example.com"),
            api_domain=API_DOMAIN,
        )
        token.set_expires_in(str(FAR_EXPIRY_MS))
        return token
