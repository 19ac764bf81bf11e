"""Encryption at rest, and lookup digests that work with or without it.

A :class:`Codec` turns secret values into what the table stores and back, and
gives the digests that lookups by token value use:

- :class:`PlainCodec` (no keys): values are stored as they are; a value's
  digest is its SHA-256.
- :class:`Keyring` (``encryption_keys=[...]`` or ``ZOHO_TOKEN_STORE_KEYS``):
  values are sealed with Fernet (AES-128-CBC with HMAC-SHA256, from the
  ``cryptography`` package) under the first key; every key opens. A value's
  digest is an HMAC-SHA256 under a lookup key derived from the first key
  (HKDF), so equal tokens can be found without the table showing which rows
  hold equal tokens to someone who has only the table.

A sealed value names its key: ``zts1:<key id>:<Fernet token>``. A plaintext
value that happens to begin with ``zts1:`` (or with ``zts0:``) is stored
behind ``zts0:``, so that no plaintext is ever taken for a sealed value. A row can so
be read whatever mix of plaintext and keys it holds while ``encrypt`` or
``rotate-key`` works through the table, and a lookup tries the digest under
every configured key and the plain one. The key id is a fingerprint that
reveals nothing of the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zoho_token_store.errors import TokenStoreError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = [
    "ESCAPE",
    "KEYS_ENV_VAR",
    "MIXED",
    "PREFIX",
    "Codec",
    "EncryptionError",
    "Keyring",
    "PlainCodec",
    "codec_from",
    "is_sealed",
    "plain_digest",
    "sealed_key_id",
]

KEYS_ENV_VAR = "ZOHO_TOKEN_STORE_KEYS"
PREFIX = "zts1:"
# Stored before a plaintext value that begins like a sealed or an escaped one.
ESCAPE = "zts0:"
# The key_id of a row whose secrets are not all sealed by one key.
MIXED = "mixed"
# A Fernet key: 32 bytes in url-safe base64, 44 characters. Checked before
# Fernet sees it: base64 decoding skips stray characters, so "KEY_A;KEY_B"
# would otherwise pass as key A alone and key B vanish without a word.
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class EncryptionError(TokenStoreError):
    """A key is missing, malformed or wrong; the message names the key id, never the key."""


def plain_digest(value: str) -> str:
    """The digest of a value in a table without keys: SHA-256, lowercase hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sealed(value: str) -> bool:
    """True for a value this module sealed (Zoho's own tokens start with ``1000.``)."""
    return value.startswith(PREFIX)


def _store_plain(value: str) -> str:
    return ESCAPE + value if value.startswith((PREFIX, ESCAPE)) else value


def _read_plain(value: str) -> str:
    return value[len(ESCAPE) :] if value.startswith(ESCAPE) else value


def sealed_key_id(value: str) -> str:
    """The id of the key that sealed ``value``."""
    return value[len(PREFIX) :].split(":", 1)[0]


class Codec:
    """How values are stored and found. The base is the plain, keyless codec."""

    key_id: str | None = None
    key_ids: tuple[str, ...] = ()

    def seal(self, value: str) -> str:
        return _store_plain(value)

    def open(self, value: str) -> str:
        if is_sealed(value):
            raise EncryptionError(
                f"a value is encrypted with key {sealed_key_id(value)}, and the store has no "
                f"keys: set {KEYS_ENV_VAR} or pass encryption_keys"
            )
        return _read_plain(value)

    def digest(self, value: str) -> str:
        """The digest written beside a new value."""
        return plain_digest(value)

    def lookup_digests(self, value: str) -> tuple[str, ...]:
        """Every digest a stored copy of ``value`` may carry."""
        return (plain_digest(value),)


class PlainCodec(Codec):
    """No encryption: values and SHA-256 digests as they are."""


class Keyring(Codec):
    """Seals with the first key, opens with any; see the module docstring."""

    def __init__(self, keys: Sequence[str]) -> None:
        try:
            from cryptography.fernet import Fernet
        except ImportError as exc:
            raise EncryptionError(
                "encryption needs its extra: pip install 'zoho-token-store[encryption]'",
                cause=exc,
            ) from None
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
            raise EncryptionError(
                f"encryption_keys must be a list of keys, got {type(keys).__name__}"
            )
        if not keys:
            raise EncryptionError("encryption_keys is empty: give at least one key")
        self._fernets: dict[str, Fernet] = {}
        self._lookup_keys: list[bytes] = []
        for position, key in enumerate(keys, start=1):
            if not isinstance(key, str) or not _FERNET_KEY.fullmatch(key.strip()):
                raise EncryptionError(
                    f"encryption key #{position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes, as Fernet.generate_key() makes)"
                )
            fernet = Fernet(key.strip())
            raw = _urlsafe_decode(key.strip())
            key_id = _fingerprint(raw)
            self._fernets.setdefault(key_id, fernet)
            self._lookup_keys.append(_derive_lookup_key(raw))
        self._current = next(iter(self._fernets))
        self.key_id = self._current
        self.key_ids = tuple(self._fernets)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.key_ids)!r})"

    def seal(self, value: str) -> str:
        # Every value is sealed, even one that looks sealed already: it came
        # from the caller, never from the table.
        token = self._fernets[self._current].encrypt(value.encode("utf-8")).decode("ascii")
        return f"{PREFIX}{self._current}:{token}"

    def open(self, value: str) -> str:
        if not is_sealed(value):
            return _read_plain(value)
        from cryptography.fernet import InvalidToken

        key_id = sealed_key_id(value)
        fernet = self._fernets.get(key_id)
        if fernet is None:
            raise EncryptionError(
                f"a value is encrypted with key {key_id}, which is not among the configured "
                f"keys ({', '.join(self.key_ids)})"
            )
        try:
            return fernet.decrypt(value[len(PREFIX) + len(key_id) + 1 :]).decode("utf-8")
        except InvalidToken:
            raise EncryptionError(
                f"a value sealed with key {key_id} does not decrypt: it was altered, or a "
                "different key has that id"
            ) from None

    def digest(self, value: str) -> str:
        return _hmac(self._lookup_keys[0], value)

    def lookup_digests(self, value: str) -> tuple[str, ...]:
        return (*(_hmac(key, value) for key in self._lookup_keys), plain_digest(value))


def codec_from(keys: Sequence[str] | None) -> Codec:
    """The codec for ``keys``, else ``ZOHO_TOKEN_STORE_KEYS`` (comma-separated), else plain."""
    if keys is None:
        configured = os.environ.get(KEYS_ENV_VAR, "")
        keys = [key for key in configured.split(",") if key.strip()]
        if not keys:
            return PlainCodec()
    return Keyring(keys)


def _urlsafe_decode(key: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(key.encode("ascii"))


def _fingerprint(raw_key: bytes) -> str:
    # A one-way, domain-separated fingerprint: naming the key in errors and
    # rows must not help anyone recover it.
    return hmac.new(raw_key, b"zoho-token-store key id", hashlib.sha256).hexdigest()[:12]


def _derive_lookup_key(raw_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"zoho-token-store lookup digest"
    ).derive(raw_key)


def _hmac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
