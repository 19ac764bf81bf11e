"""An in-memory model of the ``TokenStore`` contract, for model-based tests.

Written from the docstrings of ``SQLAlchemyTokenStore`` and ``TokenFields``
and from docs/contract.md; nothing here imports the store, so the model is a
second, independent statement of the contract. (The id fallback of a save is
in neither docstring yet: it is stated by test_contract.py's
``test_a_save_that_learns_the_user_name_updates_the_row_its_id_names``.)

Tokens and rows are plain dicts of the ten fields the SDK sees (the shape of
``tokens.as_dict``), with ``expires_in`` as the SDK's string of epoch
milliseconds.

What the contract says, as the model implements it:

- An empty string means "not carried", as ``None`` does. A save never writes
  one, and a find fills it like a missing field.
- The row a token refers to is chosen by ``TokenFields.key``'s precedence:
  the user name; else the access token when neither client id nor client
  secret is given; else, with both, the grant token, then the refresh token;
  else the id. With none of these the token names no row. Token values are not
  unique: where several rows hold one, "the lower id wins" (contract.md).
- ``find_token`` fills the token's empty fields from the row and returns the
  token itself; when the row's expiry is later than the token's (or the token
  has none) and the row has an access token, the token takes the row's access
  token and expiry.
- ``save_token`` refuses a token with no access, refresh or grant token.
  Otherwise it updates the row the token refers to with the fields the token
  carries; when its key finds no row but the token carries the id of one (it
  came from that row, and has since learnt a user name), it updates that row.
  Else it inserts a row under the token's id or a new UUID. It gives the token
  the row's id when the token has none.
- ``delete_token`` and ``find_token_by_id`` refuse an id that is not a
  non-empty string; an unknown id is not an error.
- ``get_tokens`` returns every row, oldest first.

Refresh coordination is not modelled: the store under test runs with it off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = [
    "FIELDS",
    "ModelError",
    "ReferenceStore",
    "Row",
    "carried",
    "lookup_key",
]

FIELDS = (
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expires_in",
    "redirect_url",
    "api_domain",
)

Row = dict[str, Optional[str]]


def carried(value: object) -> bool:
    """True when a field holds a value: ``None`` and ``""`` are "not carried"."""
    return value is not None and value != ""


def lookup_key(token: Row) -> tuple[str, str] | None:
    """The column and value of the row ``token`` refers to, in the documented precedence."""
    if carried(token["user_name"]):
        return "user_name", str(token["user_name"])
    has_client_id = carried(token["client_id"])
    has_client_secret = carried(token["client_secret"])
    if carried(token["access_token"]) and not has_client_id and not has_client_secret:
        return "access_token", str(token["access_token"])
    if has_client_id and has_client_secret:
        for name in ("grant_token", "refresh_token"):
            if carried(token[name]):
                return name, str(token[name])
    if carried(token["id"]):
        return "id", str(token["id"])
    return None


@dataclass(frozen=True)
class ModelError:
    """An operation the contract says fails: the error's type and exact message."""

    type_name: str
    message: str


@dataclass
class ReferenceStore:
    """The documented behaviour of one token table, in memory."""

    rows: dict[str, Row] = field(default_factory=dict)  # by id, oldest first

    # The six operations ------------------------------------------------------------

    def find_token(self, token: Row) -> tuple[Row | None, Row]:
        """``(returned, token after the call)``; ``returned`` is the token itself or None."""
        key = lookup_key(token)
        row = self._row_for(key) if key is not None else None
        if row is None:
            return None, dict(token)
        filled = dict(token)
        for name in FIELDS:
            if not carried(token[name]):
                filled[name] = row[name]
        token_expiry = token["expires_in"]
        stored_expiry = row["expires_in"]
        later = stored_expiry is not None and (
            not carried(token_expiry) or int(stored_expiry) > int(str(token_expiry))
        )
        if later and row["access_token"] is not None:
            filled["access_token"] = row["access_token"]
            filled["expires_in"] = stored_expiry
        return filled, filled

    def save_token(self, token: Row, new_uuid: str | None) -> tuple[ModelError | None, Row]:
        """``(error or None, token after the call)``.

        ``new_uuid`` is the id the store chose for a token without one (the
        model cannot predict a UUID); it is used only when the token has no id.
        """
        if not any(carried(token[n]) for n in ("access_token", "refresh_token", "grant_token")):
            return (
                ModelError(
                    "InvalidTokenError",
                    "save_token: the token carries no access, refresh or grant token",
                ),
                dict(token),
            )
        token_id = token["id"] if carried(token["id"]) else new_uuid
        assert token_id is not None, "a token without an id needs the id the store chose"
        key = lookup_key(token) or ("id", token_id)
        values = {n: token[n] for n in FIELDS if n != "id" and carried(token[n])}
        row = self._row_for(key)
        if row is None and key[0] != "id" and carried(token["id"]):
            # The row the token's id names takes a user name only if it has none.
            row = self.rows.get(str(token["id"]))
            if row is not None and "user_name" in values and row["user_name"] is not None:
                return (
                    ModelError(
                        "InvalidTokenError",
                        f"save_token: id {token['id']!r} is the row of another user, and a "
                        "row keeps its user: save this user's token without that id",
                    ),
                    dict(token),
                )
        if row is not None:
            row.update(values)
            row_id = row["id"]
        else:
            self.rows[token_id] = {n: None for n in FIELDS} | values | {"id": token_id}
            row_id = token_id
        after = dict(token)
        if not carried(token["id"]):
            after["id"] = row_id
        return None, after

    def delete_token(self, token_id: object) -> ModelError | None:
        error = self._check_id("delete_token", token_id)
        if error is None:
            self.rows.pop(str(token_id), None)
        return error

    def get_tokens(self) -> list[Row]:
        return [dict(row) for row in self.rows.values()]

    def delete_tokens(self) -> None:
        self.rows.clear()

    def find_token_by_id(self, token_id: object) -> ModelError | Row | None:
        error = self._check_id("find_token_by_id", token_id)
        if error is not None:
            return error
        row = self.rows.get(str(token_id))
        return dict(row) if row is not None else None

    # Helpers ---------------------------------------------------------------------

    def ids(self) -> list[str]:
        return list(self.rows)

    def _row_for(self, key: tuple[str, str] | None) -> Row | None:
        if key is None:
            return None
        column, value = key
        if column == "id":
            return self.rows.get(value)
        matching = [row for row in self.rows.values() if row[column] == value]
        return min(matching, key=lambda row: str(row["id"])) if matching else None

    @staticmethod
    def _check_id(operation: str, token_id: object) -> ModelError | None:
        if isinstance(token_id, str) and token_id != "":
            return None
        got = "an empty string" if token_id == "" else type(token_id).__name__
        return ModelError(
            "InvalidTokenError", f"{operation}: id must be a non-empty string, got {got}"
        )
