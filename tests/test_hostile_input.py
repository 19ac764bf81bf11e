"""Hostile input, on every backend: each case is stored exactly, finds nothing, or is refused.

One oracle for the whole corpus:

- a value the store accepts is stored and returned exactly: by id, by the key
  it is looked up with, in ``get_tokens``, and in the raw row (on MariaDB, as
  the exact UTF-8 bytes too);
- a lookup that matches nothing returns ``None`` and changes nothing;
- a refused call raises an ``SDKException`` with code ``TOKEN_STORE`` whose
  message says what was wrong, and leaves the table byte-for-byte as it was
  (a raw ``SELECT *`` of every column, before and after).

Every test starts from one seeded row (Grace's), so "unchanged" means something.
test_errors_and_secrets.py covers the single-field refusals (types, NUL, the
length limits); this corpus combines SQL metacharacters, control characters,
long and four-byte values, look-alike user names and ids, falsy and
foreign objects, and table names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import pytest
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    make_url,
    select,
)
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from conftest import Backend, drop_schema
from reference_model import FIELDS, Row, carried, lookup_key
from tokens import as_dict, make_token
from zoho_token_store import SchemaMissingError, SQLAlchemyTokenStore, TokenStoreError, migrate

KIB_64 = 64 * 1024
MIB = 1024 * 1024
CLIENT = {"client_id": "1000.HOSTILE", "client_secret": "hostile-secret"}
SEED: Row = {
    "id": "seed-row",
    "user_name": "grace@example.com",
    "client_id": "1000.SEEDCLIENT",
    "client_secret": "seed-secret",
    "refresh_token": "1000.seed-refresh",
    "access_token": "1000.seed-access",
    "grant_token": None,
    "expires_in": "4102444800000",
    "redirect_url": "https://app.example.com/cb",
    "api_domain": "https://www.zohoapis.com",
}
C0_CONTROLS = "".join(chr(c) for c in range(1, 32)) + "\x7f"
SQL_SOUP = "';--%_\\\"`/*?:$1%s%(x)s"

# Bugs, by backend: the reason names the bug reported with this suite.


def row(**fields: Any) -> Row:
    """A token's ten fields: the given ones, the rest absent."""
    unknown = set(fields) - set(FIELDS)
    assert not unknown, unknown
    return {name: fields.get(name) for name in FIELDS}


def to_sdk(token: Row) -> OAuthToken:
    return make_token(
        id=token["id"],
        user=token["user_name"],
        client_id=token["client_id"],
        client_secret=token["client_secret"],
        refresh=token["refresh_token"],
        access=token["access_token"],
        grant=token["grant_token"],
        expires=token["expires_in"],
        redirect_url=token["redirect_url"],
        api_domain=token["api_domain"],
    )


def repeat(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def snapshot(store: SQLAlchemyTokenStore) -> list[tuple[Any, ...]]:
    """Every column of every row, ordered: the table byte for byte."""
    table = store.table
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(table.c.id)).all()]


@pytest.fixture
def seeded(store: SQLAlchemyTokenStore) -> SQLAlchemyTokenStore:
    store.save_token(to_sdk(SEED))
    return store


# --- accepted values are stored and returned exactly ----------------------------------


class Tainted(str):
    """A ``str`` subclass, as some frameworks hand out for request data."""


class SubclassedToken(OAuthToken):  # type: ignore[misc]
    """An app's own subclass of the SDK token."""


@dataclass(frozen=True)
class Stored:
    """``token`` is saved, then found exactly by its id, by its key and in get_tokens."""

    name: str
    token: Row
    build: Callable[[Row], OAuthToken] = to_sdk
    # Columns whose raw stored form differs from the value (crypto.ESCAPE).
    raw: dict[str, str] = field(default_factory=dict)


def build_tainted(token: Row) -> OAuthToken:
    return to_sdk({k: Tainted(v) if isinstance(v, str) else v for k, v in token.items()})


def build_subclass(token: Row) -> OAuthToken:
    held = SubclassedToken(id="placeholder")
    source = to_sdk(token)
    for name in ("id", "user_signature", "client_id", "client_secret", "refresh_token"):
        getattr(held, f"set_{name}")(getattr(source, f"get_{name}")())
    for name in ("access_token", "grant_token", "expires_in", "redirect_url", "api_domain"):
        getattr(held, f"set_{name}")(getattr(source, f"get_{name}")())
    return held


STORED = [
    # SQL metacharacters in every kind of field
    Stored("user-drop-table", row(user_name="'; DROP TABLE oauthtoken; --", access_token="1000.a")),
    Stored(
        "user-quote-paren-delete",
        row(user_name='robert"); DELETE FROM oauthtoken; --', refresh_token="1000.r", **CLIENT),
    ),
    Stored("user-comment-markers", row(user_name="ann@example.com'; /* */ -- #", grant_token="g")),
    Stored("user-like-wildcards", row(user_name="%_ann_%", access_token="1000.a")),
    Stored("access-or-1-equals-1", row(access_token="' OR '1'='1")),
    Stored("refresh-mysql-comment", row(refresh_token="x' OR 1=1 #", **CLIENT)),
    Stored("grant-backslashes", row(grant_token="\\'; \\\\ \\x00 \\n \\", **CLIENT)),
    Stored("id-or-1-equals-1", row(id="1 OR 1=1", access_token="1000.a")),
    Stored("id-quote-comment", row(id="'--", access_token="1000.a")),
    Stored(
        "client-id-placeholders", row(client_id="%s %(x)s {0} ? :name $1 %%", refresh_token="r")
    ),
    Stored("api-domain-quotes", row(api_domain="`t` \"q\" [b] 's'", access_token="1000.a")),
    Stored(
        "redirect-url-injection", row(redirect_url="https://x/cb?a=1';--&b=%27", grant_token="g")
    ),
    # Control characters and invisible code points
    Stored("user-tab-newline-cr", row(user_name="ann\tbob\nline\rend", access_token="1000.a")),
    Stored("access-every-c0-control", row(access_token=C0_CONTROLS)),
    Stored("refresh-c1-controls", row(refresh_token="\x80\x85\x9f\xa0", **CLIENT)),
    Stored("user-line-separators", row(user_name="a\u2028b\u2029c", access_token="1000.a")),
    Stored("user-zero-width", row(user_name="a\u200bb\u200dc\ufeff", access_token="1000.a")),
    Stored("user-rtl-override", row(user_name="\u202egnp.exe@example.com", access_token="a")),
    Stored("id-ansi-escape", row(id="\x1b[31mred\x1b[0m", access_token="1000.a")),
    Stored("secret-del-chars", row(client_secret="\x7f\x7f", client_id="c", refresh_token="r")),
    Stored("access-single-space", row(access_token=" ")),
    Stored(
        "access-looks-encrypted",
        row(user_name="eve@example.com", access_token="zts1:abc:def"),
        raw={"access_token": "zts0:zts1:abc:def"},
    ),
    Stored(
        "refresh-looks-escaped",
        row(refresh_token="zts0:zts0:r", **CLIENT),
        raw={"refresh_token": "zts0:zts0:zts0:r"},
    ),
    # Long values
    Stored("access-64KiB-sql-soup", row(access_token=repeat(SQL_SOUP, KIB_64))),
    Stored("refresh-1MiB-emoji", row(refresh_token="\U0001f600" * MIB, **CLIENT)),
    Stored("secret-1MiB-controls", row(client_secret=repeat(C0_CONTROLS, MIB), refresh_token="r")),
    Stored("grant-64KiB-combining", row(grant_token="e\u0301" * (KIB_64 // 2), **CLIENT)),
    Stored(
        # 6 MiB less 9 bytes, all values together: just within the limit.
        "four-secrets-6MiB-together",
        row(
            user_name="big@example.com",
            client_id="1000.BIG",
            client_secret="\U0001d11e" * (3 * MIB // 8 - 8),
            refresh_token="\U0001d11f" * (3 * MIB // 8),
            access_token="\U0001d120" * (3 * MIB // 8),
            grant_token="\U0001d121" * (3 * MIB // 8),
        ),
    ),
    # Unicode user names (four-byte characters checked byte for byte on MariaDB)
    Stored("user-cjk-diaeresis", row(user_name="zoë@例え.jp", access_token="1000.a")),
    Stored("user-emoji", row(user_name="\U0001f600@example.com", access_token="1000.a")),
    Stored("user-zwj-sequence", row(user_name="\U0001f469\u200d\U0001f4bb dev", grant_token="g")),
    Stored(
        "user-flags", row(user_name="\U0001f1ef\U0001f1f5\U0001f1eb\U0001f1f7", grant_token="g")
    ),
    Stored("user-255-emoji", row(user_name="\U0001f600" * 255, access_token="1000.a")),
    Stored("user-math-letters", row(user_name="\U0001d49c\U0001d4c3\U0001d4c3", access_token="a")),
    Stored("user-single-space", row(user_name=" ", access_token="1000.a")),
    Stored("user-leading-space", row(user_name=" ann@example.com", access_token="1000.a")),
    Stored("id-emoji", row(id="\U0001f511-1", access_token="1000.a")),
    # Empty strings are "not carried"
    Stored(
        "empty-strings-stored-as-absent",
        row(
            id="",
            user_name="",
            client_id="",
            client_secret="",
            refresh_token="",
            access_token="1000.a",
            grant_token="",
            expires_in="",
            redirect_url="",
            api_domain="",
        ),
    ),
    Stored("empty-id-gets-a-new-uuid", row(id="", user_name="ann@example.com", grant_token="g")),
    # Objects of unusual but acceptable types
    Stored(
        "str-subclass-values",
        row(id="tainted", user_name="ann@example.com", access_token="1000.a", **CLIENT),
        build=build_tainted,
    ),
    Stored(
        "oauth-token-subclass",
        row(user_name="ann@example.com", refresh_token="r", expires_in="4102444800000", **CLIENT),
        build=build_subclass,
    ),
]


def expected_row(token: Row, row_id: str) -> Row:
    return {name: (value if carried(value) else None) for name, value in token.items()} | {
        "id": row_id
    }


def probe_for(token: Row) -> Row:
    """The least a token needs to carry to be found as ``token`` is (its lookup key)."""
    key = lookup_key(token)
    assert key is not None
    column, value = key
    if column in ("refresh_token", "grant_token"):
        return row(
            client_id=token["client_id"], client_secret=token["client_secret"], **{column: value}
        )
    return row(**{column: value})


def assert_raw_row_is(
    store: SQLAlchemyTokenStore, backend: Backend, expected: Row, raw_forms: Row | None = None
) -> None:
    table = store.table
    with store.engine.connect() as conn:
        raw = conn.execute(select(table).where(table.c.id == expected["id"])).mappings().one()
        if backend.name == "mariadb":
            # The exact bytes: utf8mb4 keeps four-byte characters as they are.
            columns = ("id", "user_name", "client_id", "api_domain")
            hexed = conn.execute(
                select(*(func.hex(table.c[c]) for c in columns)).where(table.c.id == expected["id"])
            ).one()
            assert list(hexed) == [
                expected[c].encode("utf-8").hex().upper() if expected[c] is not None else None
                for c in columns
            ]
    stored = {name: raw[name] for name in FIELDS if name != "expires_in"}
    stored["expires_in"] = str(raw["expiry_time"]) if raw["expiry_time"] is not None else None
    assert stored == {**expected, **(raw_forms or {})}


@pytest.mark.parametrize("case", STORED, ids=[c.name for c in STORED])
def test_a_hostile_value_is_stored_and_returned_exactly(
    seeded: SQLAlchemyTokenStore,
    backend: Backend,
    case: Stored,
) -> None:
    held = case.build(case.token)

    seeded.save_token(held)

    row_id = held.get_id()
    if not carried(case.token["id"]):
        assert len(row_id) == 36 and row_id.count("-") == 4
    expected = expected_row(case.token, row_id)
    assert as_dict(seeded.find_token_by_id(row_id)) == expected
    probe = to_sdk(probe_for(expected))
    assert seeded.find_token(probe) is probe
    assert as_dict(probe) == expected
    stored = sorted((as_dict(t) for t in seeded.get_tokens()), key=lambda t: str(t["id"]))
    assert stored == sorted([SEED, expected], key=lambda t: str(t["id"]))
    assert_raw_row_is(seeded, backend, expected, case.raw)


# --- look-alike user names and ids are different users and rows --------------------------


LOOK_ALIKE_USERS = [
    pytest.param("ann@example.com", "Ann@example.com", id="case"),
    pytest.param("\u00e9@example.com", "e\u0301@example.com", id="nfc-vs-nfd"),
    pytest.param("ann@example.com", "ann@example.com ", id="trailing-space"),
    pytest.param("ann@example.com", " ann@example.com", id="leading-space"),
    pytest.param("ann@example.com", "ann@example.com\t", id="trailing-tab"),
    pytest.param("ann@example.com", "ann@example.com\u00a0", id="trailing-nbsp"),
    pytest.param("stra\u00dfe@example.com", "strasse@example.com", id="sharp-s"),
    pytest.param("ann@example.com", "\uff41nn@example.com", id="fullwidth"),
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKE_USERS)
def test_look_alike_user_names_are_two_users_with_their_own_tokens(
    store: SQLAlchemyTokenStore,
    first: str,
    second: str,
) -> None:
    store.save_token(to_sdk(row(user_name=first, access_token="1000.first", id="row-first")))

    store.save_token(to_sdk(row(user_name=second, access_token="1000.second", id="row-second")))

    found = [(t.get_id(), t.get_user_signature().get_name()) for t in store.get_tokens()]
    assert sorted(found) == [("row-first", first), ("row-second", second)]
    for user, access in ((first, "1000.first"), (second, "1000.second")):
        probe = to_sdk(row(user_name=user))
        assert store.find_token(probe) is probe
        assert (probe.get_access_token(), probe.get_user_signature().get_name()) == (access, user)


# --- lookups that match nothing change nothing ------------------------------------------


@dataclass(frozen=True)
class FindsNothing:
    name: str
    call: Callable[[SQLAlchemyTokenStore], object]


def find(**fields: Any) -> Callable[[SQLAlchemyTokenStore], object]:
    return lambda store: store.find_token(to_sdk(row(**fields)))


FINDS_NOTHING = [
    FindsNothing("find-by-id-or-1-equals-1", lambda s: s.find_token_by_id("' OR '1'='1")),
    FindsNothing("delete-or-1-equals-1", lambda s: s.delete_token("' OR '1'='1")),
    FindsNothing("delete-percent", lambda s: s.delete_token("%")),
    FindsNothing("delete-star", lambda s: s.delete_token("*")),
    FindsNothing("find-by-id-space", lambda s: s.find_token_by_id(" ")),
    FindsNothing("find-by-id-seed-uppercase", lambda s: s.find_token_by_id("SEED-ROW")),
    FindsNothing("find-user-percent", find(user_name="%")),
    FindsNothing("find-user-underscore-wildcard", find(user_name="grace@example_com")),
    FindsNothing("find-user-seed-uppercase", find(user_name="GRACE@example.com")),
    FindsNothing("find-access-or-1-equals-1", find(access_token="' OR 1=1 --")),
    FindsNothing("find-access-seed-prefix", find(access_token="1000.seed")),
    FindsNothing("find-refresh-without-client-secret", find(refresh_token="1000.seed-refresh")),
    FindsNothing("find-only-empty-strings", find(**dict.fromkeys(FIELDS, ""))),
    FindsNothing("find-user-seed-trailing-space", find(user_name="grace@example.com ")),
    FindsNothing("find-by-id-seed-trailing-space", lambda s: s.find_token_by_id("seed-row ")),
    FindsNothing("delete-seed-trailing-space", lambda s: s.delete_token("seed-row ")),
]


@pytest.mark.parametrize("case", FINDS_NOTHING, ids=[c.name for c in FINDS_NOTHING])
def test_a_hostile_lookup_finds_nothing_and_changes_nothing(
    seeded: SQLAlchemyTokenStore,
    case: FindsNothing,
) -> None:
    before = snapshot(seeded)

    assert case.call(seeded) is None

    assert snapshot(seeded) == before


# --- refused calls change nothing ---------------------------------------------------------


class DuckToken:
    """Has every getter of an OAuthToken, but is not one."""

    def __getattr__(self, name: str) -> Callable[[], str]:
        if name.startswith("get_"):
            return lambda: "1000.duck"
        raise AttributeError(name)


@dataclass(frozen=True)
class Refused:
    name: str
    call: Callable[[SQLAlchemyTokenStore], object]
    message: str


def save(**fields: Any) -> Callable[[SQLAlchemyTokenStore], object]:
    return lambda store: store.save_token(to_sdk(row(**fields)))


def save_with(setter: str, value: object) -> Callable[[SQLAlchemyTokenStore], object]:
    def call(store: SQLAlchemyTokenStore) -> None:
        token = to_sdk(row(user_name="ann@example.com", access_token="1000.a"))
        getattr(token, setter)(value)
        store.save_token(token)

    return call


def expiry_message(value: str) -> str:
    return f"save_token: expires_in must be epoch milliseconds as a decimal string, got {value!r}"


REFUSED = [
    Refused(
        "find-by-id-bytes",
        lambda s: s.find_token_by_id(b"seed-row"),
        "find_token_by_id: id must be a non-empty string, got bytes",
    ),
    Refused(
        "delete-bytes",
        lambda s: s.delete_token(b"seed-row"),
        "delete_token: id must be a non-empty string, got bytes",
    ),
    Refused(
        "find-by-id-float",
        lambda s: s.find_token_by_id(1.0),
        "find_token_by_id: id must be a non-empty string, got float",
    ),
    Refused(
        "delete-list",
        lambda s: s.delete_token(["seed-row"]),
        "delete_token: id must be a non-empty string, got list",
    ),
    Refused(
        "delete-object",
        lambda s: s.delete_token(object()),
        "delete_token: id must be a non-empty string, got object",
    ),
    Refused(
        "find-token-none",
        lambda s: s.find_token(None),
        "find_token: expected an OAuthToken, got NoneType",
    ),
    Refused(
        "find-token-int", lambda s: s.find_token(42), "find_token: expected an OAuthToken, got int"
    ),
    Refused(
        "save-duck-typed-token",
        lambda s: s.save_token(DuckToken()),
        "save_token: expected an OAuthToken, got DuckToken",
    ),
    Refused(
        "find-duck-typed-token",
        lambda s: s.find_token(DuckToken()),
        "find_token: expected an OAuthToken, got DuckToken",
    ),
    Refused(
        "save-user-name-bytes",
        save_with("set_user_signature", UserSignature(b"ann@example.com")),
        "save_token: user_name must be a string, got bytes",
    ),
    Refused("save-id-zero", save_with("set_id", 0), "save_token: id must be a string, got int"),
    Refused(
        "save-client-id-false",
        save_with("set_client_id", False),
        "save_token: client_id must be a string, got bool",
    ),
    Refused(
        "save-access-true",
        save_with("set_access_token", True),
        "save_token: access_token must be a string, got bool",
    ),
    Refused(
        "save-refresh-bytes-with-sql",
        save_with("set_refresh_token", b"'; DROP TABLE oauthtoken; --"),
        "save_token: refresh_token must be a string, got bytes",
    ),
    Refused(
        "save-four-secrets-1MiB-four-byte",
        save(
            user_name="big@example.com",
            client_id="1000.BIG",
            client_secret="\U0001d11e" * MIB,
            refresh_token="\U0001d11f" * MIB,
            access_token="\U0001d120" * MIB,
            grant_token="\U0001d121" * MIB,
        ),
        "save_token: the token's values are 16777239 bytes long together in UTF-8; "
        "the limit is 6291456",
    ),
    Refused(
        "find-two-1MiB-emoji-tokens",
        find(
            access_token="\U0001f600" * MIB,
            refresh_token="\U0001f600" * MIB,
            client_id="1000.C",
            client_secret="s",
        ),
        "find_token: the token's values are 8388615 bytes long together in UTF-8; "
        "the limit is 6291456",
    ),
    Refused(
        "save-user-256-emoji",
        save(user_name="\U0001f600" * 256, access_token="1000.a"),
        "save_token: user_name is 256 characters long; the limit is 255",
    ),
    Refused(
        "save-only-empty-credentials",
        save(user_name="grace@example.com", access_token="", refresh_token="", grant_token=""),
        "save_token: the token carries no access, refresh or grant token",
    ),
    *(
        Refused(
            f"save-expiry-{label}", save(access_token="1000.a", expires_in=v), expiry_message(v)
        )
        for label, v in [
            ("arabic-indic-digits", "\u0661\u0662\u0663"),
            ("fullwidth-digits", "\uff11\uff12\uff13"),
            ("plus-sign", "+1"),
            ("underscore", "1_000"),
            ("hex", "0x10"),
            ("trailing-newline", "4102444800000\n"),
            ("sql", "1;DROP TABLE t"),  # short enough to be quoted (20 characters)
        ]
    ),
    # Ids given on their own are checked as the ids in tokens are.
    Refused(
        "find-by-id-nul",
        lambda s: s.find_token_by_id("seed\x00row"),
        "find_token_by_id: id contains a NUL character",
    ),
    Refused(
        "delete-nul",
        lambda s: s.delete_token("seed\x00row"),
        "delete_token: id contains a NUL character",
    ),
    Refused(
        "find-by-id-65-characters",
        lambda s: s.find_token_by_id("x" * 65),
        "find_token_by_id: id is 65 characters long; the limit is 64",
    ),
    Refused(
        "delete-65-characters",
        lambda s: s.delete_token("x" * 65),
        "delete_token: id is 65 characters long; the limit is 64",
    ),
    # A lone surrogate cannot be encoded as UTF-8 for the database.
    Refused(
        "save-user-lone-surrogate",
        save(user_name="ann\ud800@example.com", access_token="1000.a"),
        "save_token: user_name is not valid Unicode (it holds a lone surrogate)",
    ),
    Refused(
        "save-access-lone-surrogate",
        save(access_token="1000.\udfff"),
        "save_token: access_token is not valid Unicode (it holds a lone surrogate)",
    ),
    Refused(
        "find-refresh-lone-surrogate",
        find(refresh_token="\ud83d", **CLIENT),
        "find_token: refresh_token is not valid Unicode (it holds a lone surrogate)",
    ),
    Refused(
        "find-by-id-lone-surrogate",
        lambda s: s.find_token_by_id("seed\ud800"),
        "find_token_by_id: id is not valid Unicode (it holds a lone surrogate)",
    ),
    Refused(
        "delete-lone-surrogate",
        lambda s: s.delete_token("seed\ud800"),
        "delete_token: id is not valid Unicode (it holds a lone surrogate)",
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_a_hostile_call_is_refused_with_a_clear_error_and_changes_nothing(
    seeded: SQLAlchemyTokenStore,
    case: Refused,
) -> None:
    before = snapshot(seeded)

    with pytest.raises(TokenStoreError) as info:
        case.call(seeded)

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message == case.message
    assert snapshot(seeded) == before


# --- table names --------------------------------------------------------------------------


def table_name_message(name: object) -> str:
    return (
        f"invalid table name {name!r}: use 1 to 29 letters, digits or underscores, "
        "starting with a letter or underscore"
    )


@pytest.mark.parametrize(
    "table_name",
    [
        "tokens;",
        'tok"ens',
        "tok`ens",
        "tokens\n",
        "tok\x00ens",
        "public.tokens",
        "tok\u0131ens",
        "\U0001f600",
        None,
        42,
        b"tokens",
    ],
    ids=[
        "semicolon",
        "double-quote",
        "backtick",
        "trailing-newline",
        "nul",
        "schema-qualified",
        "dotless-i",
        "emoji",
        "none",
        "int",
        "bytes",
    ],
)
def test_an_invalid_table_name_is_refused_before_any_connection(
    seeded: SQLAlchemyTokenStore, backend: Backend, table_name: object
) -> None:
    before = snapshot(seeded)

    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore(backend.url, table_name=table_name)  # type: ignore[arg-type]

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message == table_name_message(table_name)
    assert snapshot(seeded) == before


@pytest.fixture
def private_database(backend: Backend) -> Iterator[str]:
    """A URL where any table name is this test's own: a schema or database of its own."""
    if backend.name.startswith("sqlite"):
        yield backend.url  # a file of this session, or memory
        return
    name = f"zts_hostile_{os.getpid()}"
    admin = create_engine(backend.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend.name == "postgresql":
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {name}")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = make_url(backend.url)
        if backend.name == "postgresql":
            url = url.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            url = url.set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend.name == "postgresql":
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@pytest.mark.parametrize("table_name", ["select", "order", "user"])
def test_a_reserved_word_is_a_usable_table_name(
    backend: Backend, private_database: str, table_name: str
) -> None:
    if backend.name != "sqlite_memory":
        migrate.upgrade(private_database, table_name=table_name)
    store = SQLAlchemyTokenStore(private_database, table_name=table_name)
    try:
        token = to_sdk(row(user_name="ann@example.com", access_token="1000.a", id="row-1"))
        store.save_token(token)
        assert [as_dict(t) for t in store.get_tokens()] == [as_dict(token)]
        store.delete_token("row-1")
        assert store.get_tokens() == []
    finally:
        store.close()
        if backend.name != "sqlite_memory":
            drop_schema(private_database, table_name)


class ForeignRow(NamedTuple):
    id: str
    email: str


FOREIGN_ROWS = [ForeignRow("1", "a@example.com"), ForeignRow("2", "b@example.com")]


@pytest.fixture
def foreign_table(backend: Backend, store: SQLAlchemyTokenStore) -> Iterator[tuple[Engine, Table]]:
    """Another application's table, with two rows, on the store's database."""
    metadata = MetaData()
    users = Table(
        f"app_users_{os.getpid()}",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("email", String(255)),
    )
    engine = store.engine if backend.name == "sqlite_memory" else create_engine(backend.url)
    with engine.begin() as conn:
        users.drop(conn, checkfirst=True)
        users.create(conn)
        conn.execute(users.insert(), [FOREIGN_ROWS[0]._asdict(), FOREIGN_ROWS[1]._asdict()])
    yield engine, users
    with engine.begin() as conn:
        users.drop(conn, checkfirst=True)
    if engine is not store.engine:
        engine.dispose()


OPERATIONS: dict[str, Callable[[SQLAlchemyTokenStore], object]] = {
    "find_token": find(user_name="a@example.com"),
    "save_token": save(user_name="a@example.com", access_token="1000.a"),
    "get_tokens": lambda s: s.get_tokens(),
    "find_token_by_id": lambda s: s.find_token_by_id("1"),
    "delete_token": lambda s: s.delete_token("1"),
    "delete_tokens": lambda s: s.delete_tokens(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_table_name_naming_another_apps_table_is_refused_and_its_rows_are_kept(
    backend: Backend,
    store: SQLAlchemyTokenStore,
    foreign_table: tuple[Engine, Table],
    operation: str,
) -> None:
    engine, users = foreign_table
    name = users.name
    on_foreign = (
        SQLAlchemyTokenStore(store.engine, table_name=name)
        if backend.name == "sqlite_memory"
        else SQLAlchemyTokenStore(backend.url, table_name=name)
    )
    try:
        with pytest.raises(SchemaMissingError) as info:
            OPERATIONS[operation](on_foreign)
    finally:
        on_foreign.close()

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message.startswith(
        f"{operation}: the table {name!r} exists but was not created by these migrations"
    )
    with engine.connect() as conn:
        assert conn.execute(select(users).order_by(users.c.id)).all() == FOREIGN_ROWS


def test_the_corpus_has_at_least_fifty_cases() -> None:
    cases: Sequence[object] = [*STORED, *LOOK_ALIKE_USERS, *FINDS_NOTHING, *REFUSED]
    assert len(cases) >= 50
