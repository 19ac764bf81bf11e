"""Between the SDK's ``OAuthToken`` and rows of the token table.

:func:`read_token` validates what a token carries once, up front, so bad input
fails with a clear error before any statement runs. :meth:`TokenFields.key` is
the one place that decides which stored row a token refers to; ``find_token``
and ``save_token`` both use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Optional

from zoho_token_store._sdk import OAuthToken, UserSignature
from zoho_token_store.crypto import Codec, PlainCodec, plain_digest
from zoho_token_store.errors import InvalidTokenError
from zoho_token_store.masking import mask

__all__ = [
    "MAX_TOKEN_CHARS",
    "SECRET_COLUMNS",
    "LookupKey",
    "TokenFields",
    "digest",
    "fill_missing",
    "read_id",
    "read_token",
    "to_oauth_token",
]

# Limits that keep every backend's behaviour the same: a longer value would be
# truncated by one backend and refused by another.
_MAX_SHORT = 255
_MAX_ID = 64
MAX_TOKEN_CHARS = 1024 * 1024  # a secret's longest, in characters
# A URL, kept within what MySQL's TEXT column holds (64 KiB) in any encoding.
_MAX_URL = 8192
# An expires_in longer than this is not quoted in an error (epoch ms have 13 digits).
_MAX_SHOWN_EXPIRY = 20
# All of a token's values together, in UTF-8 bytes. A save is one statement,
# and MySQL and MariaDB refuse a statement over max_allowed_packet (16 MiB by
# default on MariaDB). PyMySQL's escaping at most doubles a value, and sealing
# (only ASCII out, so nothing to escape) adds about a third: a token within
# this limit stays under that packet either way.
_MAX_TOTAL_BYTES = 6 * 1024 * 1024
# Epoch milliseconds as the SDK writes them: str(int). A canonical form, so the
# integer column gives back exactly the string that was saved.
_EXPIRY = re.compile(r"0|[1-9][0-9]{0,17}")

SECRET_COLUMNS = frozenset({"client_secret", "refresh_token", "access_token", "grant_token"})
_LIMITS = {
    "id": _MAX_ID,
    "redirect_url": _MAX_URL,
    **dict.fromkeys(SECRET_COLUMNS, MAX_TOKEN_CHARS),
}


# The digest of a value in a table without encryption keys.
digest = plain_digest

PLAIN = PlainCodec()


@dataclass(frozen=True)
class LookupKey:
    """Which rows a token refers to: ``column`` equals ``value``, or one of ``alternatives``.

    Alternatives are the digests a token value has under other encryption
    keys, and the plain one, while a table is being encrypted or rotated.
    """

    column: str
    value: str
    alternatives: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shown = mask(self.value) if self.column.endswith("_digest") else repr(self.value)
        return f"LookupKey({self.column}={shown})"

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.value, *self.alternatives)


@dataclass(frozen=True)
class TokenFields:
    """What one ``OAuthToken`` carries, validated. ``None`` means "not carried".

    The SDK treats an empty string like a missing value in most places, so
    empty strings are read as ``None`` here, and a save never writes them over
    a stored value.
    """

    id: Optional[str] = None  # noqa: UP045  # dataclass fields are evaluated on 3.9
    user_name: Optional[str] = None  # noqa: UP045
    client_id: Optional[str] = None  # noqa: UP045
    client_secret: Optional[str] = None  # noqa: UP045
    refresh_token: Optional[str] = None  # noqa: UP045
    access_token: Optional[str] = None  # noqa: UP045
    grant_token: Optional[str] = None  # noqa: UP045
    expiry_time: Optional[int] = None  # noqa: UP045
    redirect_url: Optional[str] = None  # noqa: UP045
    api_domain: Optional[str] = None  # noqa: UP045

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={mask(v) if f.name in SECRET_COLUMNS else repr(v)}"
            for f in fields(self)
            if (v := getattr(self, f.name)) is not None
        )
        return f"TokenFields({shown})"

    @property
    def has_credential(self) -> bool:
        """True when the token carries an access, refresh or grant token."""
        return any(v is not None for v in (self.access_token, self.refresh_token, self.grant_token))

    def key(self, codec: Codec = PLAIN) -> LookupKey | None:
        """The row this token refers to, in the SDK's order of precedence.

        1. the user name;
        2. the access token, when neither client id nor client secret is given;
        3. the grant token, else the refresh token, when both client id and
           client secret are given;
        4. the id, when none of the above applies (``OAuthToken.revoke`` looks
           a token up by id alone).

        ``None`` when the token names no row: a lookup then finds nothing,
        rather than an arbitrary row.
        """
        if self.user_name is not None:
            return LookupKey("user_name", self.user_name)
        has_id, has_secret = self.client_id is not None, self.client_secret is not None
        if self.access_token is not None and not has_id and not has_secret:
            return _by_digest("access_token", self.access_token, codec)
        if has_id and has_secret:
            if self.grant_token is not None:
                return _by_digest("grant_token", self.grant_token, codec)
            if self.refresh_token is not None:
                return _by_digest("refresh_token", self.refresh_token, codec)
        if self.id is not None:
            return LookupKey("id", self.id)
        return None

    def column_values(self, codec: Codec = PLAIN) -> dict[str, Any]:
        """The columns this token carries, as stored: secrets sealed, digests added; no ``id``."""
        values = {
            f.name: value
            for f in fields(self)
            if f.name != "id" and (value := getattr(self, f.name)) is not None
        }
        for name in ("refresh_token", "access_token", "grant_token"):
            if name in values:
                values[f"{name}_digest"] = codec.digest(values[name])
        for name in SECRET_COLUMNS & values.keys():
            values[name] = codec.seal(values[name])
        return values


def _by_digest(name: str, value: str, codec: Codec) -> LookupKey:
    first, *others = codec.lookup_digests(value)
    return LookupKey(f"{name}_digest", first, tuple(others))


def read_token(token: object, operation: str) -> TokenFields:
    """Validate ``token`` and return what it carries.

    Raises :class:`InvalidTokenError`, naming ``operation`` and the field,
    for anything the store could not keep exactly as given.
    """
    if not isinstance(token, OAuthToken):
        raise InvalidTokenError(f"{operation}: expected an OAuthToken, got {type(token).__name__}")
    signature = token.get_user_signature()
    if signature is not None and not isinstance(signature, UserSignature):
        raise InvalidTokenError(
            f"{operation}: user_signature must be a UserSignature, got {type(signature).__name__}"
        )
    raw = {
        "id": token.get_id(),
        "user_name": signature.get_name() if signature is not None else None,
        "client_id": token.get_client_id(),
        "client_secret": token.get_client_secret(),
        "refresh_token": token.get_refresh_token(),
        "access_token": token.get_access_token(),
        "grant_token": token.get_grant_token(),
        "redirect_url": token.get_redirect_url(),
        "api_domain": token.get_api_domain(),
    }
    values: dict[str, Any] = {name: _text(operation, name, value) for name, value in raw.items()}
    _check_total_size(operation, [value for value in values.values() if value is not None])
    values["expiry_time"] = _expiry(operation, token.get_expires_in())
    return TokenFields(**values)


def _check_total_size(operation: str, values: list[str]) -> None:
    # A character is at most four bytes: most tokens need no encoding here.
    if 4 * sum(map(len, values)) <= _MAX_TOTAL_BYTES:
        return
    size = sum(len(value.encode("utf-8")) for value in values)
    if size > _MAX_TOTAL_BYTES:
        raise InvalidTokenError(
            f"{operation}: the token's values are {size} bytes long together in UTF-8; "
            f"the limit is {_MAX_TOTAL_BYTES}"
        )


def _text(operation: str, name: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidTokenError(f"{operation}: {name} must be a string, got {type(value).__name__}")
    limit = _LIMITS.get(name, _MAX_SHORT)
    if len(value) > limit:
        raise InvalidTokenError(
            f"{operation}: {name} is {len(value)} characters long; the limit is {limit}"
        )
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text, and the others would keep it:
        # refusing it everywhere keeps the backends alike.
        raise InvalidTokenError(f"{operation}: {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTokenError(
            f"{operation}: {name} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return value


def read_id(value: object, operation: str) -> str:
    """Validate an id given on its own (``delete_token``, ``find_token_by_id``)."""
    if not isinstance(value, str) or value == "":
        got = "an empty string" if value == "" else type(value).__name__
        raise InvalidTokenError(f"{operation}: id must be a non-empty string, got {got}")
    checked = _text(operation, "id", value)
    assert checked is not None  # noqa: S101  # non-empty strings come back as they are
    return checked


def _expiry(operation: str, value: object) -> int | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _EXPIRY.fullmatch(value):
        # A short value is quoted to say what was wrong; a long one may be a
        # token passed in the wrong place, so only its length is given.
        if not isinstance(value, str):
            shown = f"type {type(value).__name__}"
        elif len(value) <= _MAX_SHOWN_EXPIRY:
            shown = repr(value)
        else:
            shown = f"a string of {len(value)} characters"
        raise InvalidTokenError(
            f"{operation}: expires_in must be epoch milliseconds as a decimal string, got {shown}"
        )
    return int(value)


# Each stored field: its column, and the SDK's getter and setter on OAuthToken.
_SDK_FIELDS = (
    ("id", "get_id", "set_id"),
    ("user_name", "get_user_signature", "set_user_signature"),
    ("client_id", "get_client_id", "set_client_id"),
    ("client_secret", "get_client_secret", "set_client_secret"),
    ("refresh_token", "get_refresh_token", "set_refresh_token"),
    ("access_token", "get_access_token", "set_access_token"),
    ("grant_token", "get_grant_token", "set_grant_token"),
    ("expiry_time", "get_expires_in", "set_expires_in"),
    ("redirect_url", "get_redirect_url", "set_redirect_url"),
    ("api_domain", "get_api_domain", "set_api_domain"),
)


def _sdk_value(row: Mapping[Any, Any], column: str, codec: Codec) -> Any:
    """A stored value as the SDK holds it: secrets opened, the user as a UserSignature."""
    value = row[column]
    if value is None:
        return None
    if column in SECRET_COLUMNS:
        return codec.open(value)
    if column == "user_name":
        return UserSignature(value)
    if column == "expiry_time":
        return str(value)
    return value


def to_oauth_token(row: Mapping[Any, Any], codec: Codec = PLAIN) -> OAuthToken:
    """A fully populated ``OAuthToken`` from a stored row, its secrets opened."""
    token = OAuthToken(id=row["id"])
    for column, _getter, setter in _SDK_FIELDS[1:]:
        getattr(token, setter)(_sdk_value(row, column, codec))
    return token


def fill_missing(token: OAuthToken, row: Mapping[Any, Any], codec: Codec = PLAIN) -> None:
    """Fill the fields ``token`` lacks from ``row``, as the SDK's stores do on a find."""
    for column, getter, setter in _SDK_FIELDS:
        value = getattr(token, getter)()
        if column == "user_name" and value is not None:
            # A UserSignature("") names nobody: it is as missing as None.
            value = value.get_name()
        if value is None or value == "":
            getattr(token, setter)(_sdk_value(row, column, codec))
