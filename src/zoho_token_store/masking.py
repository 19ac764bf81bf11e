"""Masked display of secrets: enough to tell two tokens apart, never enough to use one."""

from __future__ import annotations

from zoho_token_store.crypto import is_sealed, sealed_key_id

__all__ = ["mask"]

_SHOWN = 4


def mask(value: str | None) -> str:
    """Return a display form of a secret that never contains the secret itself.

    Zoho tokens start with a public prefix (``1000.``) and carry at least 64
    random characters; showing the last four of those is what dashboards show
    for API keys. Short values show no characters at all, since four of them
    would be a large share of the secret.

    >>> mask("1000.0123456789abcdef0123456789abcdef")
    '1000.…cdef'
    >>> mask("short")
    '…(5)'
    >>> mask(None)
    '-'
    """
    if value is None or value == "":
        return "-"
    if is_sealed(value):
        return f"encrypted ({sealed_key_id(value)})"
    if len(value) < 24:
        return f"…({len(value)})"
    prefix, dot, _ = value.partition(".")
    shown_prefix = f"{prefix}{dot}" if dot and len(prefix) <= 6 else ""
    return f"{shown_prefix}…{value[-_SHOWN:]}"
