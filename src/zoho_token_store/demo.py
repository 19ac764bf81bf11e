"""An offline walk through the store with the real Zoho SDK: ``python -m zoho_token_store.demo``.

The SDK talks to :class:`~zoho_token_store.fake_zoho.FakeZoho` on a loopback
port instead of Zoho, and keeps its tokens in a real database: by default
``sqlite:///zohooauth.db`` in the current directory, else ``--url`` or
``ZOHO_TOKEN_STORE_URL``. The demo migrates the schema first, replaces only
its own two demo users' rows, and prints tokens masked, never in full.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.record import (
    GetRecordsParam,
    RecordOperations,
    ResponseWrapper,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.util.constants import Constants

from zoho_token_store import migrate
from zoho_token_store._sdk import OAuthToken, SDKException
from zoho_token_store.engine import is_memory_sqlite
from zoho_token_store.errors import wrap_database_error
from zoho_token_store.fake_zoho import FakeZoho
from zoho_token_store.masking import mask
from zoho_token_store.store import SQLAlchemyTokenStore

__all__ = ["main"]

DEFAULT_URL = "sqlite:///zohooauth.db"
CLIENT_ID = "1000.DEMOCLIENT"
USERS = ("ada.demo@example.com", "grace.demo@example.com")
# Ada's first access token lives 10 s instead of an hour, so that the demo can
# wait for it to come due. The SDK refreshes a token once less than 5 s of it
# remain; the store may schedule the refresh earlier, but not before 7 s
# remain, which leaves steps 1 to 3 three seconds to run on the first token.
SHORT_LIFETIME = 10
SDK_REFRESH_MARGIN = 5


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status (0 on success)."""
    parser = argparse.ArgumentParser(prog="python -m zoho_token_store.demo", description=__doc__)
    parser.add_argument(
        "--url", help=f"database URL (default: $ZOHO_TOKEN_STORE_URL or {DEFAULT_URL})"
    )
    args = parser.parse_args(argv)
    url: str = args.url or os.environ.get("ZOHO_TOKEN_STORE_URL") or DEFAULT_URL
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The URL is not echoed: it may hold a password.
        parser.error("the database URL is not a SQLAlchemy URL")
    if is_memory_sqlite(parsed):
        parser.error("an in-memory SQLite database cannot be shared by two store instances")
    print(f"Database: {parsed.render_as_string(hide_password=True)}")
    try:
        with _quiet_sdk_logger(), tempfile.TemporaryDirectory() as resources:
            _run(url, resources)
    except SDKException as exc:  # the store's errors, too, are SDKExceptions
        print(f"demo failed: {exc.code}: {exc.error_message}")
        return 1
    except SQLAlchemyError as exc:  # from the migration, which runs before any store
        print(f"demo failed: {wrap_database_error('migrating the schema', exc).error_message}")
        return 1
    finally:
        # The SDK keeps its session in class attributes; leave none behind.
        Initializer.initializer = None
        Initializer.LOCAL.init = None
    return 0


def _run(url: str, resources: str) -> None:
    migrate.upgrade(url)
    print("Schema migrated to head.")
    sdk: dict[str, Any] = {
        "sdk_config": SDKConfig(),
        "resource_path": resources,
        "logger": Logger.get_instance(Logger.Levels.WARNING, None),
    }
    client_secret = secrets.token_hex(16)  # never printed
    ada, grace = USERS
    with ExitStack() as stack:
        fake = stack.enter_context(FakeZoho(access_token_lifetime=SHORT_LIFETIME))
        fake.add_client(CLIENT_ID, client_secret)
        ada_grant = fake.issue_grant_token(CLIENT_ID, ada)
        environment = fake.environment()
        store = stack.enter_context(closing(SQLAlchemyTokenStore(url)))
        _forget_demo_users(store, fake)
        print(f"Fake Zoho at {fake.api_url}: client {CLIENT_ID}, users {ada} and {grace}.")

        _step(1, f"Grant-token exchange for {ada}")
        token = _token(client_secret, ada_grant)
        Initializer.initialize(environment=environment, token=token, store=store, **sdk)
        fake.access_token_lifetime = 3600  # tokens issued from now on live an hour, as on Zoho
        first = _row(store, ada, fake)
        print(f"  grant exchanges: {fake.grant_exchange_count}")
        print(f"  saved row {first.get_id()} for user {_user(first)}")
        print(f"  refresh token {mask(first.get_refresh_token())}")
        print(f"  access token  {mask(first.get_access_token())}")

        _step(2, f"CRM call: GET /crm/{Constants.API_VERSION}/Leads")
        _show_leads(fake)

        _step(3, "A second store instance on the same database, with the same app configuration")
        second_store = stack.enter_context(closing(SQLAlchemyTokenStore(url)))
        token = _token(client_secret, ada_grant)
        Initializer.initialize(environment=environment, token=token, store=second_store, **sdk)
        _show_leads(fake)
        print(f"  grant exchanges: {fake.grant_exchange_count}, refreshes: {fake.refresh_count}")
        print("  (the stored access token was reused)")

        _step(4, "The access token comes due, and the SDK refreshes it")
        due_in = int(first.get_expires_in()) / 1000 - SDK_REFRESH_MARGIN - time.time()
        if due_in > 0:
            print(f"  waiting {due_in:.1f} s, until less than {SDK_REFRESH_MARGIN} s of it remain")
            time.sleep(due_in + 0.1)
        _show_leads(fake)
        refreshed = _row(second_store, ada, fake)
        kept = refreshed.get_refresh_token() == first.get_refresh_token()
        print(f"  refreshes: {fake.refresh_count}; refresh token kept: {kept}")
        old, new = mask(first.get_access_token()), mask(refreshed.get_access_token())
        print(f"  access token {old} replaced by {new}")

        _step(5, f"Initializer.switch_user to {grace}")
        Initializer.switch_user(
            token=_token(client_secret, fake.issue_grant_token(CLIENT_ID, grace))
        )
        _show_leads(fake)
        untouched = _row(store, ada, fake).get_access_token() == refreshed.get_access_token()
        print(f"  grant exchanges: {fake.grant_exchange_count}; {ada}'s row untouched: {untouched}")

        _step(6, "The stored tokens, secrets masked")
        _print_table(store)


def _token(client_secret: str, grant_token: str) -> Any:
    return OAuthToken(client_id=CLIENT_ID, client_secret=client_secret, grant_token=grant_token)


def _step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}")


def _user(token: Any) -> str | None:
    signature = token.get_user_signature()
    return None if signature is None else str(signature.get_name())


def _row(store: SQLAlchemyTokenStore, email: str, fake: FakeZoho) -> Any:
    # The SDK names a user "<email>:<organization id>" (Utility.get_user_name).
    wanted = f"{email}:{fake.org_id}"
    return next(token for token in store.get_tokens() if _user(token) == wanted)


def _forget_demo_users(store: SQLAlchemyTokenStore, fake: FakeZoho) -> None:
    # A previous run's rows hold tokens of a fake that is gone; other rows stay.
    demo_users = {f"{email}:{fake.org_id}" for email in USERS}
    for token in store.get_tokens():
        if _user(token) in demo_users:
            store.delete_token(token.get_id())


def _show_leads(fake: FakeZoho) -> None:
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name,Company")
    response = RecordOperations("Leads").get_records(params)
    body = None if response is None else response.get_object()
    if not isinstance(body, ResponseWrapper):
        raise SDKException(
            code="DEMO", message=f"GET /crm/{Constants.API_VERSION}/Leads returned no records"
        )
    records = body.get_data()
    leads = ", ".join(
        f"{r.get_key_value('Last_Name')} ({r.get_key_value('Company')})" for r in records
    )
    call = fake.crm_calls[-1]  # what the fake saw: whose token, and which one
    print(f"  HTTP {response.get_status_code()}: {leads}")
    print(f"  sent as {call.user_email} with access token {mask(call.access_token)}")


def _print_table(store: SQLAlchemyTokenStore) -> None:
    header = ("id", "user", "client id", "refresh token", "access token", "expires in")
    rows = [header]
    for token in store.get_tokens():
        expiry = token.get_expires_in()
        expires = f"{int(expiry) / 1000 - time.time():.0f} s" if expiry else "-"
        rows.append(
            (
                str(token.get_id()),
                _user(token) or "-",
                str(token.get_client_id()),
                mask(token.get_refresh_token()),
                mask(token.get_access_token()),
                expires,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@contextmanager
def _quiet_sdk_logger() -> Iterator[None]:
    # The SDK logs to "SDKLogger", and sets its level on every initialize();
    # unhandled, its warnings and errors would reach stderr through logging's
    # last-resort handler. Everything is put back for a caller of main().
    sdk_logger = logging.getLogger("SDKLogger")
    null, propagate, level = logging.NullHandler(), sdk_logger.propagate, sdk_logger.level
    sdk_logger.addHandler(null)
    sdk_logger.propagate = False
    try:
        yield
    finally:
        sdk_logger.removeHandler(null)
        sdk_logger.propagate = propagate
        sdk_logger.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
