"""Errors and secrets: bad input is refused, failures are wrapped, and no secret leaks.

Every store test runs on each backend through the ``store`` fixture (an empty
token table of this worker's own). What the tests hold the store to:

- bad input raises ``InvalidTokenError`` naming the operation and the field,
  before any statement runs, so the table is left as it was;
- values up to the documented limits round-trip exactly on every backend;
- a database failure is a ``DatabaseError`` whose ``cause`` and ``__cause__``
  are the SQLAlchemy error, and neither it, its traceback nor the DEBUG logs
  of ``sqlalchemy`` and ``zoho_token_store`` contain a token value or the
  client secret;
- every error is a ``TokenStoreError`` and an SDK ``SDKException`` with code
  ``TOKEN_STORE``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, make_url, select
from sqlalchemy.orm import Session
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from zoho_token_store import (
    DatabaseError,
    InvalidTokenError,
    MissingDependencyError,
    OAuthTokenRow,
    SchemaMissingError,
    SQLAlchemyTokenStore,
    TokenStoreError,
)
from zoho_token_store.engine import resolve_url
from zoho_token_store.mapping import LookupKey, digest, read_token

CLIENT_ID = "1000.ERRCLIENTID"
ADA = "ada@example.com"
GRACE = "grace@example.com"
EXPIRY = "4102444800000"  # 2100-01-01: never due for refresh
MIB = 1024 * 1024
KIB_64 = 64 * 1024
URL_PASSWORD = "pw-hunter2-do-not-echo"

# Token values and client secrets: none of them may appear in an error or a log.
ADA_SECRETS = {
    "client_secret": "cs-ada-7f3a9b2e41d04c6a8e5f1b2c3d4e5f60",
    "refresh_token": "1000.rt-ada-8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
    "access_token": "1000.at-ada-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c",
    "grant_token": "1000.gt-ada-5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
}
GRACE_SECRETS = {
    "client_secret": "cs-grace-11223344556677889900aabbccddeeff",
    "refresh_token": "1000.rt-grace-ffeeddccbbaa00998877665544332211",
    "access_token": "1000.at-grace-0123456789abcdef0123456789abcdef",
    "grant_token": "1000.gt-grace-fedcba9876543210fedcba9876543210",
}

TokenRecord = tuple[Optional[str], ...]


def make_token(
    user_name: str | None,
    secrets: dict[str, str],
    *,
    token_id: str | None = None,
    expires_in: str | None = EXPIRY,
) -> OAuthToken:
    """A fully populated token, as the SDK has one after a grant exchange."""
    token = OAuthToken(
        client_id=CLIENT_ID,
        client_secret=secrets["client_secret"],
        grant_token=secrets["grant_token"],
        refresh_token=secrets["refresh_token"],
        redirect_url="https://app.example.com/oauth/callback",
        id=token_id,
        access_token=secrets["access_token"],
        user_signature=UserSignature(user_name) if user_name is not None else None,
        api_domain="https://www.zohoapis.com",
    )
    token.set_expires_in(expires_in)
    return token


def record(token: OAuthToken) -> TokenRecord:
    """Every field of a token, for exact comparisons (``OAuthToken`` has no ``__eq__``)."""
    signature = token.get_user_signature()
    return (
        token.get_id(),
        signature.get_name() if signature is not None else None,
        token.get_client_id(),
        token.get_client_secret(),
        token.get_refresh_token(),
        token.get_access_token(),
        token.get_grant_token(),
        token.get_expires_in(),
        token.get_redirect_url(),
        token.get_api_domain(),
    )


def table_records(store: SQLAlchemyTokenStore) -> list[TokenRecord]:
    return [record(token) for token in store.get_tokens()]


def pattern(tag: str, length: int) -> str:
    """A distinct value of exactly ``length`` characters that starts with ``tag``."""
    unit = f"{tag}-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ."
    return (unit * (length // len(unit) + 1))[:length]


def formatted_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def assert_contains_no_secret(text: str, secrets: dict[str, str]) -> None:
    leaked = sorted(name for name, value in secrets.items() if value in text)
    assert leaked == []


@pytest.fixture
def seeded(store: SQLAlchemyTokenStore) -> SQLAlchemyTokenStore:
    """The store with one row (Grace's), so "the table is unchanged" means something."""
    store.save_token(make_token(GRACE, GRACE_SECRETS, token_id="grace-row"))
    return store


def assert_refused(
    store: SQLAlchemyTokenStore, call: Callable[[], object], message: str
) -> InvalidTokenError:
    """``call`` raises InvalidTokenError with exactly ``message`` and writes nothing."""
    before = table_records(store)
    with pytest.raises(InvalidTokenError) as info:
        call()
    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message == message
    assert table_records(store) == before
    return info.value


# Bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "argument", "type_name"),
    [
        ("save_token", "not a token", "str"),
        ("save_token", None, "NoneType"),
        ("save_token", {"user_name": ADA}, "dict"),
        ("find_token", "not a token", "str"),
        ("find_token", UserSignature(ADA), "UserSignature"),
    ],
)
def test_a_non_oauth_token_argument_is_refused_naming_the_operation_and_type(
    seeded: SQLAlchemyTokenStore, operation: str, argument: object, type_name: str
) -> None:
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(argument),
        f"{operation}: expected an OAuthToken, got {type_name}",
    )


@pytest.mark.parametrize(
    "token_factory",
    [
        lambda: OAuthToken(user_signature=UserSignature(ADA)),
        lambda: OAuthToken(id="an-id-and-nothing-else"),
        # Empty strings count as "not carried", as in the SDK.
        lambda: OAuthToken(client_id=CLIENT_ID, client_secret="cs", refresh_token=""),
    ],
    ids=["user-name-only", "id-only", "empty-refresh-token"],
)
def test_saving_a_token_without_access_refresh_or_grant_token_is_refused(
    seeded: SQLAlchemyTokenStore, token_factory: Callable[[], OAuthToken]
) -> None:
    token = token_factory()
    assert_refused(
        seeded,
        lambda: seeded.save_token(token),
        "save_token: the token carries no access, refresh or grant token",
    )


NON_STRING_FIELDS = [
    ("set_id", 42, "id", "int"),
    ("set_client_id", 1000, "client_id", "int"),
    ("set_client_secret", b"secret-bytes", "client_secret", "bytes"),
    ("set_refresh_token", ["1000.rt"], "refresh_token", "list"),
    ("set_access_token", 12345, "access_token", "int"),
    ("set_grant_token", 1.5, "grant_token", "float"),
    ("set_redirect_url", {"url": "https://x"}, "redirect_url", "dict"),
    ("set_api_domain", True, "api_domain", "bool"),
    ("set_user_signature", UserSignature(7), "user_name", "int"),
]


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
@pytest.mark.parametrize(
    ("setter", "value", "field", "type_name"),
    NON_STRING_FIELDS,
    ids=[case[2] for case in NON_STRING_FIELDS],
)
def test_a_non_string_field_is_refused_naming_the_operation_and_field(
    seeded: SQLAlchemyTokenStore,
    operation: str,
    setter: str,
    value: object,
    field: str,
    type_name: str,
) -> None:
    token = make_token(ADA, ADA_SECRETS)
    getattr(token, setter)(value)
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: {field} must be a string, got {type_name}",
    )


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
def test_a_user_signature_that_is_not_a_user_signature_is_refused(
    seeded: SQLAlchemyTokenStore, operation: str
) -> None:
    token = make_token(None, ADA_SECRETS)
    token.set_user_signature(ADA)
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: user_signature must be a UserSignature, got str",
    )


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
def test_a_long_malformed_expires_in_is_refused_giving_its_length_not_its_value(
    seeded: SQLAlchemyTokenStore, operation: str
) -> None:
    # A token passed as the expiry (a CSV with shifted columns) is not echoed.
    token = make_token(ADA, ADA_SECRETS, expires_in=ADA_SECRETS["access_token"])
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: expires_in must be epoch milliseconds as a decimal string, got a "
        f"string of {len(ADA_SECRETS['access_token'])} characters",
    )


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
def test_a_non_string_expires_in_is_refused_naming_the_field_and_type(
    seeded: SQLAlchemyTokenStore, operation: str
) -> None:
    token = make_token(ADA, ADA_SECRETS, expires_in=None)
    token.set_expires_in(3600)
    before = table_records(seeded)
    with pytest.raises(InvalidTokenError) as info:
        getattr(seeded, operation)(token)
    message = info.value.error_message
    assert message.startswith(
        f"{operation}: expires_in must be epoch milliseconds as a decimal string, got "
    )
    assert message.endswith(" int")
    assert table_records(seeded) == before


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
@pytest.mark.parametrize(
    "expires_in", ["soon", "1.5", "-1", "0123", "1e3", " 1", "1234567890123456789"]
)
def test_a_malformed_expires_in_is_refused_quoting_the_value(
    seeded: SQLAlchemyTokenStore, operation: str, expires_in: str
) -> None:
    token = make_token(ADA, ADA_SECRETS, expires_in=expires_in)
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: expires_in must be epoch milliseconds as a decimal string, "
        f"got {expires_in!r}",
    )


NUL_FIELDS = [
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "client_id",
    "redirect_url",
    "api_domain",
    "id",
    "user_name",
]


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
@pytest.mark.parametrize("field", NUL_FIELDS)
def test_a_nul_character_is_refused_naming_the_field(
    seeded: SQLAlchemyTokenStore, operation: str, field: str
) -> None:
    token = make_token(ADA, ADA_SECRETS)
    if field == "user_name":
        token.set_user_signature(UserSignature("ada\x00@example.com"))
    else:
        getattr(token, f"set_{field}")("before\x00after")
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: {field} contains a NUL character",
    )


@pytest.mark.parametrize("operation", ["save_token", "find_token"])
def test_a_user_name_over_255_characters_is_refused(
    seeded: SQLAlchemyTokenStore, operation: str
) -> None:
    token = make_token("u" * 256, ADA_SECRETS)
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token),
        f"{operation}: user_name is 256 characters long; the limit is 255",
    )


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("access_token", MIB),
        ("refresh_token", MIB),
        ("grant_token", MIB),
        ("client_secret", MIB),
        ("redirect_url", 8192),
        ("id", 64),
        ("client_id", 255),
        ("api_domain", 255),
    ],
)
def test_a_value_one_character_over_its_limit_is_refused(
    seeded: SQLAlchemyTokenStore, field: str, limit: int
) -> None:
    token = make_token(ADA, ADA_SECRETS)
    getattr(token, f"set_{field}")(pattern(field, limit + 1))
    assert_refused(
        seeded,
        lambda: seeded.save_token(token),
        f"save_token: {field} is {limit + 1} characters long; the limit is {limit}",
    )


@pytest.mark.parametrize("operation", ["delete_token", "find_token_by_id"])
@pytest.mark.parametrize(
    ("token_id", "described"), [(None, "NoneType"), ("", "an empty string"), (7, "int")]
)
def test_a_missing_or_non_string_id_is_refused(
    seeded: SQLAlchemyTokenStore, operation: str, token_id: object, described: str
) -> None:
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)(token_id),
        f"{operation}: id must be a non-empty string, got {described}",
    )


# Values at the limits round-trip -----------------------------------------------------


@pytest.mark.parametrize("length", [KIB_64, MIB], ids=["64KiB", "1MiB"])
def test_long_tokens_round_trip_exactly_and_are_found_by_their_value(
    store: SQLAlchemyTokenStore, length: int
) -> None:
    secrets = {
        name: pattern(name, length)
        for name in ("client_secret", "refresh_token", "access_token", "grant_token")
    }
    saved = make_token(ADA, secrets)
    store.save_token(saved)
    row_id = saved.get_id()

    stored = store.find_token_by_id(row_id)
    assert stored is not None
    assert record(stored) == record(saved)
    assert [len(value) for value in record(stored)[3:7]] == [length] * 4

    by_access = store.find_token(OAuthToken(access_token=secrets["access_token"]))
    by_refresh = store.find_token(
        OAuthToken(
            client_id=CLIENT_ID,
            client_secret=secrets["client_secret"],
            refresh_token=secrets["refresh_token"],
        )
    )
    by_grant = store.find_token(
        OAuthToken(
            client_id=CLIENT_ID,
            client_secret=secrets["client_secret"],
            grant_token=secrets["grant_token"],
        )
    )
    assert by_access is not None and by_refresh is not None and by_grant is not None
    assert [record(found) for found in (by_access, by_refresh, by_grant)] == [record(saved)] * 3


def test_a_1_mib_token_of_four_byte_characters_round_trips_exactly(
    store: SQLAlchemyTokenStore,
) -> None:
    access_token = "\U0001d11e" * MIB  # MUSICAL SYMBOL G CLEF: four bytes in UTF-8
    token = make_token(ADA, {**ADA_SECRETS, "access_token": access_token})
    store.save_token(token)

    found = store.find_token(OAuthToken(access_token=access_token))
    assert found is not None
    assert found.get_id() == token.get_id()
    stored = store.find_token_by_id(token.get_id())
    assert stored is not None
    assert stored.get_access_token() == access_token


def test_a_redirect_url_at_its_8192_character_limit_round_trips_exactly(
    store: SQLAlchemyTokenStore,
) -> None:
    # 8192 four-byte characters still fit MySQL's 64 KiB TEXT column.
    redirect_url = "https://app.example.com/cb?" + "\U0001f600" * (8192 - 27)
    assert len(redirect_url) == 8192
    token = make_token(ADA, ADA_SECRETS)
    token.set_redirect_url(redirect_url)
    store.save_token(token)

    stored = store.find_token_by_id(token.get_id())
    assert stored is not None
    assert stored.get_redirect_url() == redirect_url


def test_values_exactly_at_the_short_limits_round_trip_exactly(
    store: SQLAlchemyTokenStore,
) -> None:
    user_name = "\u00e9" * 255
    token = make_token(user_name, ADA_SECRETS, token_id="i" * 64)
    token.set_client_id("c" * 255)
    token.set_api_domain("d" * 255)
    token.set_expires_in("999999999999999999")
    store.save_token(token)

    assert table_records(store) == [record(token)]
    found = store.find_token(OAuthToken(user_signature=UserSignature(user_name)))
    assert found is not None
    assert found.get_id() == "i" * 64


# No secret in errors, reprs or logs --------------------------------------------------


REFUSED = "refused@example.com"


@contextmanager
def database_refuses_user(store: SQLAlchemyTokenStore, user: str) -> Iterator[None]:
    """Make the database itself refuse rows for ``user``: a CHECK constraint, or a trigger."""
    table, name = store.table.name, f"{store.table.name}_refuse"
    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        install = [
            f"CREATE TRIGGER {name}_{event} BEFORE {event} ON {table} "
            f"WHEN NEW.user_name = '{user}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            for event in ("INSERT", "UPDATE")
        ]
        remove = [f"DROP TRIGGER {name}_{event}" for event in ("INSERT", "UPDATE")]
    else:
        install = [f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (user_name <> '{user}')"]
        remove = [f"ALTER TABLE {table} DROP CONSTRAINT {name}"]
    with store.engine.connect() as conn:
        for statement in install:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with store.engine.connect() as conn:
            for statement in remove:
                conn.exec_driver_sql(statement)


def test_a_database_error_reveals_no_secret_in_error_traceback_or_debug_logs(
    store: SQLAlchemyTokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.save_token(make_token(ADA, ADA_SECRETS))
    before = table_records(store)
    refused = make_token(REFUSED, GRACE_SECRETS)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    caplog.set_level(logging.DEBUG, logger="zoho_token_store")

    with database_refuses_user(store, REFUSED), pytest.raises(DatabaseError) as info:
        store.save_token(refused)

    error = info.value
    assert error.error_message.startswith("save_token failed: ")
    assert isinstance(error.cause, sa_exc.DBAPIError)
    assert error.__cause__ is error.cause
    logged = "\n".join([caplog.text, *(r.getMessage() for r in caplog.records)])
    # The statement was logged, with its parameters hidden.
    assert "[SQL parameters hidden due to hide_parameters=True]" in logged
    secrets = {**ADA_SECRETS, **{f"grace_{k}": v for k, v in GRACE_SECRETS.items()}}
    for text in (str(error), repr(error), str(error.cause), formatted_traceback(error), logged):
        assert_contains_no_secret(text, secrets)
    assert table_records(store) == before


def test_reading_tokens_with_sqlalchemy_debug_logging_logs_no_secret(
    store: SQLAlchemyTokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    # hide_parameters keeps token values out of the logged statements; the
    # rows SQLAlchemy logs at DEBUG carry them just the same.
    store.save_token(make_token(ADA, ADA_SECRETS))
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    caplog.set_level(logging.DEBUG, logger="zoho_token_store")

    assert [record(token)[1] for token in store.get_tokens()] == [ADA]
    found = store.find_token(OAuthToken(user_signature=UserSignature(ADA)))
    assert found is not None

    logged = "\n".join([caplog.text, *(r.getMessage() for r in caplog.records)])
    assert "[SQL parameters hidden due to hide_parameters=True]" in logged
    assert_contains_no_secret(logged, ADA_SECRETS)


def test_the_store_repr_names_the_resolved_url_and_the_table(
    store: SQLAlchemyTokenStore, backend: Any
) -> None:
    store.save_token(make_token(ADA, ADA_SECRETS))
    expected_url = backend.url + ("?charset=utf8mb4" if backend.name == "mariadb" else "")
    assert repr(store) == (
        f"SQLAlchemyTokenStore(url={expected_url!r}, table_name={backend.table_name!r})"
    )
    assert_contains_no_secret(repr(store), ADA_SECRETS)


def test_the_store_repr_masks_the_database_password() -> None:
    store = SQLAlchemyTokenStore(f"postgresql://zoho:{URL_PASSWORD}@127.0.0.1:1/tokens")
    try:
        assert repr(store) == (
            "SQLAlchemyTokenStore(url='postgresql+psycopg://zoho:***@127.0.0.1:1/tokens', "
            "table_name='oauthtoken')"
        )
    finally:
        store.close()


def test_an_orm_row_repr_shows_identifiers_and_expiry_but_no_secret() -> None:
    store = SQLAlchemyTokenStore("sqlite://")
    try:
        store.save_token(make_token(ADA, ADA_SECRETS, token_id="row-1"))
        with Session(store.engine) as session:
            row = session.scalars(select(OAuthTokenRow)).one()
            shown = repr(row)
        assert shown == (
            f"OAuthTokenRow(id='row-1', user_name='{ADA}', client_id='{CLIENT_ID}', "
            f"expiry_time={EXPIRY})"
        )
    finally:
        store.close()


def test_token_fields_and_lookup_key_reprs_mask_every_secret() -> None:
    fields = read_token(make_token(ADA, ADA_SECRETS, token_id="row-1"), "save_token")
    assert repr(fields) == (
        f"TokenFields(id='row-1', user_name='{ADA}', client_id='{CLIENT_ID}', "
        "client_secret=\u20265f60, refresh_token=1000.\u20264e5f, "
        "access_token=1000.\u20266d5c, grant_token=1000.\u20261c0d, "
        f"expiry_time={EXPIRY}, redirect_url='https://app.example.com/oauth/callback', "
        "api_domain='https://www.zohoapis.com')"
    )
    assert_contains_no_secret(repr(fields), ADA_SECRETS)

    anonymous = read_token(OAuthToken(access_token=ADA_SECRETS["access_token"]), "find_token")
    key = anonymous.key()
    assert key == LookupKey("access_token_digest", digest(ADA_SECRETS["access_token"]))
    assert repr(key) == f"LookupKey(access_token_digest=\u2026{key.value[-4:]})"
    assert_contains_no_secret(repr(key), ADA_SECRETS)
    assert repr(fields.key()) == f"LookupKey(user_name='{ADA}')"


# One error family ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error_type",
    [TokenStoreError, InvalidTokenError, SchemaMissingError, DatabaseError, MissingDependencyError],
)
def test_every_error_type_is_a_token_store_error_and_an_sdk_exception(
    error_type: type[TokenStoreError],
) -> None:
    error = error_type("find_token: something went wrong")
    assert isinstance(error, TokenStoreError)
    assert isinstance(error, SDKException)
    assert error.code == "TOKEN_STORE"
    assert str(error) == "Caused By: TOKEN_STORE - find_token: something went wrong"
    assert error.cause is None


def test_a_database_error_keeps_the_sqlalchemy_error_as_cause(
    store: SQLAlchemyTokenStore,
) -> None:
    with database_refuses_user(store, REFUSED), pytest.raises(TokenStoreError) as info:
        store.save_token(make_token(REFUSED, GRACE_SECRETS))
    error = info.value
    assert type(error) is DatabaseError
    assert isinstance(error, SDKException)
    assert error.code == "TOKEN_STORE"
    assert isinstance(error.cause, sa_exc.DBAPIError)
    assert error.__cause__ is error.cause
    assert str(error) == f"Caused By: TOKEN_STORE - {error.error_message}"


UNREACHABLE = [
    f"postgresql+psycopg://postgres:{URL_PASSWORD}@127.0.0.1:1/test",
    f"mysql+pymysql://root:{URL_PASSWORD}@127.0.0.1:1/test",
]

OPERATIONS: dict[str, Callable[[SQLAlchemyTokenStore], Any]] = {
    "find_token": lambda s: s.find_token(OAuthToken(user_signature=UserSignature(ADA))),
    "save_token": lambda s: s.save_token(make_token(ADA, ADA_SECRETS)),
    "get_tokens": lambda s: s.get_tokens(),
    "delete_token": lambda s: s.delete_token("row-1"),
    "delete_tokens": lambda s: s.delete_tokens(),
    "find_token_by_id": lambda s: s.find_token_by_id("row-1"),
}


@pytest.fixture(params=UNREACHABLE, ids=["postgresql", "mysql"])
def unreachable_store(request: pytest.FixtureRequest) -> Iterator[SQLAlchemyTokenStore]:
    store = SQLAlchemyTokenStore(
        request.param, engine_options={"connect_args": {"connect_timeout": 2}}
    )
    yield store
    store.close()


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_an_unreachable_server_gives_a_database_error_naming_the_operation(
    unreachable_store: SQLAlchemyTokenStore, operation: str
) -> None:
    with pytest.raises(DatabaseError) as info:
        OPERATIONS[operation](unreachable_store)
    error = info.value
    assert error.code == "TOKEN_STORE"
    assert error.error_message.startswith(f"{operation} failed: OperationalError: ")
    assert isinstance(error.cause, sa_exc.OperationalError)
    assert error.__cause__ is error.cause
    secrets = {**ADA_SECRETS, "url_password": URL_PASSWORD}
    for text in (str(error), repr(error), formatted_traceback(error)):
        assert_contains_no_secret(text, secrets)


# URLs and table names ------------------------------------------------------------------


DRIVER_FOR = {
    "sqlite": "sqlite",
    "sqlite_memory": "sqlite",
    "postgresql": "postgresql+psycopg",
    "mariadb": "mysql+pymysql",
}


def test_a_url_without_a_driver_gets_the_packaged_driver_and_works(
    store: SQLAlchemyTokenStore, backend: Any
) -> None:
    url = make_url(backend.url)
    plain = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)
    assert "+" not in plain.split("://", 1)[0]
    plain_store = SQLAlchemyTokenStore(plain, table_name=backend.table_name)
    try:
        assert plain_store.engine.url.drivername == DRIVER_FOR[backend.name]
        token = make_token(ADA, ADA_SECRETS, token_id="plain-url-row")
        plain_store.save_token(token)
        found = plain_store.find_token(OAuthToken(user_signature=UserSignature(ADA)))
        assert found is not None
        assert record(found) == record(token)
    finally:
        plain_store.close()


@pytest.mark.parametrize(
    ("url", "drivername", "query"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg", {}),
        ("mysql://u@h/db", "mysql+pymysql", {"charset": "utf8mb4"}),
        ("mariadb://u@h/db", "mariadb+pymysql", {"charset": "utf8mb4"}),
        ("mysql://u@h/db?charset=utf8mb4", "mysql+pymysql", {"charset": "utf8mb4"}),
        ("postgres://u@h/db", "postgresql+psycopg", {}),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2", {}),
        ("sqlite:///tokens.db", "sqlite", {}),
    ],
)
def test_resolve_url_picks_the_packaged_driver_only_when_none_is_given(
    url: str, drivername: str, query: dict[str, str]
) -> None:
    resolved = resolve_url(url)
    assert resolved.drivername == drivername
    assert dict(resolved.query) == query


@pytest.mark.parametrize(
    "url",
    [
        f"postgres ql://admin:{URL_PASSWORD}@db.internal/tokens",
        f"postgresql://admin:{URL_PASSWORD}@db.internal:notaport/tokens",
        f"admin:{URL_PASSWORD}",
    ],
    ids=["space-in-scheme", "bad-port", "no-scheme"],
)
def test_an_invalid_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore(url)
    error = info.value
    assert error.code == "TOKEN_STORE"
    assert error.error_message == (
        "invalid database URL: expected a form such as "
        "'postgresql://user@host/db', 'mysql://user@host/db' or 'sqlite:///path.db'"
    )
    for text in (str(error), repr(error), formatted_traceback(error)):
        assert URL_PASSWORD not in text


def test_a_url_naming_a_driver_that_is_not_installed_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError) as info:
        SQLAlchemyTokenStore(f"postgresql+nosuchdriver://admin:{URL_PASSWORD}@db/tokens")
    error = info.value
    assert isinstance(error, TokenStoreError)
    assert error.code == "TOKEN_STORE"
    # Only the drivers the extras install get an extra named; another is the app's to install.
    assert (
        error.error_message
        == "no database driver for 'postgresql+nosuchdriver': install its driver"
    )
    assert URL_PASSWORD not in formatted_traceback(error)


@pytest.mark.parametrize(
    "table_name",
    ["x; drop table y", "", "a" * 30, "1tokens", "tok-ens", "tok ens", "t\u00f6kens"],
    ids=["injection", "empty", "30-chars", "leading-digit", "dash", "space", "non-ascii"],
)
def test_an_invalid_table_name_is_refused(backend: Any, table_name: str) -> None:
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore(backend.url, table_name=table_name)
    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message == (
        f"invalid table name {table_name!r}: use 1 to 29 letters, digits or underscores, "
        "starting with a letter or underscore"
    )


def test_a_29_character_table_name_is_accepted(backend: Any) -> None:
    name = "t" * 29
    store = SQLAlchemyTokenStore(backend.url, table_name=name)
    try:
        assert store.table.name == name
        # Only in-memory SQLite creates its own schema; elsewhere it comes from
        # the migrations, so accepting the name creates nothing.
        assert inspect(store.engine).has_table(name) is (backend.name == "sqlite_memory")
    finally:
        store.close()


def test_a_lone_surrogate_is_refused_naming_the_field(seeded: SQLAlchemyTokenStore) -> None:
    token = make_token(ADA, ADA_SECRETS)
    token.set_access_token("1000.\ud800x")
    assert_refused(
        seeded,
        lambda: seeded.save_token(token),
        "save_token: access_token is not valid Unicode (it holds a lone surrogate)",
    )


@pytest.mark.parametrize("operation", ["find_token_by_id", "delete_token"])
def test_an_id_with_a_nul_character_is_refused_on_every_backend(
    seeded: SQLAlchemyTokenStore, operation: str
) -> None:
    assert_refused(
        seeded,
        lambda: getattr(seeded, operation)("a\x00b"),
        f"{operation}: id contains a NUL character",
    )


def test_a_mysql_url_without_a_database_is_refused() -> None:
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore(f"mysql://root:{URL_PASSWORD}@127.0.0.1")
    assert info.value.error_message == (
        "invalid database URL: a MySQL or MariaDB URL must name its database, "
        "as in 'mysql://user@host/dbname'"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"mysq://admin:{URL_PASSWORD}@db/tokens",
            "invalid database URL: unknown database 'mysq'; use 'postgresql://', 'mysql://', "
            "'mariadb://' or 'sqlite:///path.db'",
        ),
        (
            f"http://admin:{URL_PASSWORD}@db/tokens",
            "invalid database URL: unknown database 'http'; use 'postgresql://', 'mysql://', "
            "'mariadb://' or 'sqlite:///path.db'",
        ),
        (
            f"mysql://admin:{URL_PASSWORD}@db/tokens?charset=latin1",
            "invalid database URL: a MySQL or MariaDB connection must use charset=utf8mb4, "
            "not 'latin1'; leave charset out to get it",
        ),
        (
            f"mysql://admin:{URL_PASSWORD}@db/tokens?read_timeout=abc",
            "invalid engine option or URL query value: ValueError: invalid literal for int() "
            "with base 10: 'abc'",
        ),
        (
            f"mysql://admin:{URL_PASSWORD}@db/tokens?read_timeout={URL_PASSWORD}",
            "invalid engine option or URL query value: ValueError: invalid literal for int() "
            "with base 10: '***'",
        ),
    ],
    ids=[
        "misspelt-scheme",
        "http-scheme",
        "latin1-charset",
        "bad-query-value",
        "query-value-quoting-the-password",
    ],
)
def test_a_url_the_store_cannot_use_is_refused_at_once_naming_the_problem(
    url: str, message: str
) -> None:
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore(url)
    assert (info.value.code, info.value.error_message) == ("TOKEN_STORE", message)
    assert URL_PASSWORD not in formatted_traceback(info.value)


def test_an_engine_option_create_engine_rejects_is_refused_naming_it() -> None:
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore("sqlite://", engine_options={"bogus": 1})
    assert info.value.error_message.startswith(
        "invalid engine option or URL query value: TypeError: Invalid argument(s) 'bogus' "
        "sent to create_engine()"
    )
