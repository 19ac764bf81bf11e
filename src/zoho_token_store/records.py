"""Token rows as the SDK's own stores keep them, and merging a user's duplicate rows.

The SDK's ``DBStore`` table and ``FileStore`` CSV hold the same ten text
fields. Both stores can end up with several rows for one user (``DBStore``
inserts a second row when a save changes nothing; see
docs/migrating-from-dbstore.md), while this store keeps one row per user. Both
the adoption of a ``DBStore`` table (adopt.py) and ``zoho-token-store import``
(transfer.py) merge such rows with :func:`merge_duplicates`, by one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "FIELDS",
    "SECRET_FIELDS",
    "Merge",
    "Record",
    "merge_duplicates",
    "parse_expiry",
]

# The columns of the SDK's DBStore table, in its order (FileStore's CSV has the
# same order; its header calls redirect_url "redirect_uri").
FIELDS = (
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
)
SECRET_FIELDS = frozenset({"client_secret", "refresh_token", "access_token", "grant_token"})

# Fields a merged row takes from a duplicate when its own is empty. The access
# token and its expiry belong together and stay those of the kept row; so does
# the single-use grant token.
_FILLED = ("client_id", "client_secret", "refresh_token", "redirect_url", "api_domain")

# Epoch milliseconds: digits only, at most 18 (BIGINT, and the store's limit).
_EXPIRY = re.compile(r"[0-9]{1,18}")


def parse_expiry(text: str | None) -> int | None:
    """The expiry in epoch ms, or ``None`` when ``text`` is empty or not a number.

    Surrounding blanks and leading zeros are accepted; anything else that is
    not a whole number of milliseconds (``"soon"``, ``"1.7e12"``, ``"-5"``)
    gives ``None``: see :attr:`Record.bad_expiry`.
    """
    if text is None:
        return None
    stripped = text.strip()
    return int(stripped) if _EXPIRY.fullmatch(stripped) else None


@dataclass(frozen=True)
class Record:
    """One row of a DBStore table or FileStore file; empty strings read as ``None``.

    ``where`` says where it came from (``"line 7"``, ``"id '3'"``) for
    reports. The repr masks nothing because it shows no values at all.
    """

    where: str
    id: str | None = None
    user_name: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    grant_token: str | None = field(default=None, repr=False)
    expiry_time: str | None = None
    redirect_url: str | None = None
    api_domain: str | None = None

    @classmethod
    def from_values(cls, where: str, values: Mapping[Any, Any]) -> Record:
        """A record from column values; missing columns, ``None`` and ``""`` are empty."""
        cleaned: dict[str, str | None] = {}
        for name in FIELDS:
            value = values.get(name)
            cleaned[name] = None if value is None or value == "" else str(value)
        return cls(where=where, **cleaned)

    @property
    def expiry_ms(self) -> int | None:
        """The expiry as epoch ms; ``None`` when empty or not a number."""
        return parse_expiry(self.expiry_time)

    @property
    def bad_expiry(self) -> bool:
        """True when the record has an expiry that is not epoch milliseconds."""
        return self.expiry_time is not None and self.expiry_ms is None

    def values(self) -> dict[str, str | None]:
        """The ten fields by name."""
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True)
class Merge:
    """Several records of one user merged into one."""

    user_name: str
    kept: Record
    dropped: tuple[Record, ...]

    def describe(self) -> str:
        """One line for a report: which rows were merged, and which one was kept."""
        dropped = ", ".join(r.where for r in self.dropped)
        return (
            f"user {self.user_name!r}: {len(self.dropped) + 1} rows; kept {self.kept.where} "
            f"(latest expiry), merged {dropped} into it"
        )


def merge_duplicates(records: Iterable[Record]) -> tuple[list[Record], list[Merge]]:
    """One record per user name, in first-seen order, and the merges that made them.

    Of a user's records, the one whose access token expires last is kept
    (a record without a valid expiry counts as oldest; on a tie, the first
    one, which is the one the SDK's stores return for that user). Fields the
    kept record lacks (client id and secret, refresh token, redirect URL and
    API domain) are taken from the others, latest first. Records without a
    user name are never merged.
    """
    out: list[Record] = []
    groups: dict[str, list[Record]] = {}
    slots: dict[str, int] = {}
    for record in records:
        name = record.user_name
        if name is None:
            out.append(record)
            continue
        if name not in groups:
            groups[name] = []
            slots[name] = len(out)
            out.append(record)
        groups[name].append(record)
    merges: list[Merge] = []
    for name, group in groups.items():
        if len(group) == 1:
            continue
        ordered = [record for _, record in sorted(enumerate(group), key=_rank)]
        kept = ordered[0]
        filled: dict[str, Any] = {
            name_: next((getattr(r, name_) for r in ordered if getattr(r, name_) is not None), None)
            for name_ in _FILLED
        }
        merged = replace(kept, **filled)
        out[slots[name]] = merged
        merges.append(Merge(user_name=name, kept=merged, dropped=tuple(ordered[1:])))
    return out, merges


def _rank(item: tuple[int, Record]) -> tuple[int, int]:
    """Latest expiry first (none counts as oldest), then the order of appearance."""
    position, record = item
    expiry = record.expiry_ms
    return (-(expiry if expiry is not None else -1), position)
