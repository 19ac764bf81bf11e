"""End to end: the real Zoho SDK drives SQLAlchemyTokenStore against FakeZoho.

Every test runs on each database backend through conftest's ``store`` fixture
(a store whose table starts empty). The SDK keeps its state in class
attributes; the ``sdk`` fixture points its files into ``tmp_path`` and resets
that state afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
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

import zoho_token_store
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.fake_zoho import FakeZoho, ManualClock

# The CRM API path of the installed SDK: /crm/v8 for zohocrmsdk8-0, /crm/v7 for 7-0.
CRM = f"/crm/{Constants.API_VERSION}"
CLIENT_ID = "1000.E2ECLIENTID"
CLIENT_SECRET = "e2e-client-secret-0123456789abcdef"
ADA = "ada@example.com"
GRACE = "grace@example.com"
LEAD_IDS = [4876876000000333001, 4876876000000333002]


# The flow runs with encryption at rest off and on.
@pytest.fixture
def store(store_either_way: SQLAlchemyTokenStore) -> SQLAlchemyTokenStore:
    return store_either_way


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeZoho]:
    with FakeZoho(clock=clock) as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``Initializer.initialize`` that keep the SDK's files in tmp_path."""
    sdk_logger = logging.getLogger("SDKLogger")
    handlers, level = list(sdk_logger.handlers), sdk_logger.level
    resources = tmp_path / "sdk-resources"
    resources.mkdir()
    yield {
        "sdk_config": SDKConfig(auto_refresh_fields=False),
        "resource_path": str(resources),
        "logger": Logger.get_instance(Logger.Levels.INFO, str(tmp_path / "sdk.log")),
    }
    # The SDK has no reset: clear what initialize() and switch_user() set, and
    # close the log file handler each initialize() adds to the SDKLogger logger.
    Initializer.initializer = None
    Initializer.LOCAL.init = None
    for handler in [h for h in sdk_logger.handlers if h not in handlers]:
        sdk_logger.removeHandler(handler)
        handler.close()
    sdk_logger.setLevel(level)


def initialize(
    fake: FakeZoho, store: SQLAlchemyTokenStore, sdk: dict[str, Any], grant: str
) -> None:
    token = OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_token=grant)
    Initializer.initialize(environment=fake.environment(), token=token, store=store, **sdk)


def get_lead_ids() -> list[int]:
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name,Email")
    response = RecordOperations("Leads").get_records(params)
    assert response.get_status_code() == 200
    body = response.get_object()
    assert isinstance(body, ResponseWrapper)
    return [record.get_id() for record in body.get_data()]


def rows_by_user(store: SQLAlchemyTokenStore) -> dict[str | None, OAuthToken]:
    tokens = store.get_tokens()
    return {t.get_user_signature() and t.get_user_signature().get_name(): t for t in tokens}


def test_grant_exchange_saves_the_row_under_the_current_user(fake, store, sdk):
    grant = fake.issue_grant_token(CLIENT_ID, ADA)
    started_ms = int(time.time() * 1000)

    initialize(fake, store, sdk, grant)

    # The SDK names the row "<email>:<org zgid>" from GET users?type=CurrentUser and GET org.
    rows = rows_by_user(store)
    assert list(rows) == [f"{ADA}:{fake.org_id}"]
    row = rows[f"{ADA}:{fake.org_id}"]
    [refresh_token] = fake.refresh_tokens(CLIENT_ID, ADA)
    [access_token] = fake.access_tokens(refresh_token)
    assert row.get_refresh_token() == refresh_token
    assert row.get_access_token() == access_token
    assert row.get_client_id() == CLIENT_ID
    assert row.get_grant_token() == grant
    assert row.get_api_domain() == fake.api_url
    # The SDK stores the expiry as epoch ms on its own clock: now + expires_in.
    assert started_ms + 3_600_000 <= int(row.get_expires_in()) <= time.time() * 1000 + 3_600_000
    assert (fake.grant_exchange_count, fake.refresh_count) == (1, 0)
    assert [(c.path, c.status, c.access_token) for c in fake.crm_calls] == [
        (f"{CRM}/users", 200, access_token),
        (f"{CRM}/org", 200, access_token),
    ]


def test_crm_records_call_carries_the_stored_access_token(fake, store, sdk):
    initialize(fake, store, sdk, fake.issue_grant_token(CLIENT_ID, ADA))

    assert get_lead_ids() == LEAD_IDS

    stored_access_token = rows_by_user(store)[f"{ADA}:{fake.org_id}"].get_access_token()
    # The SDK fetches the module's field metadata before its first records call.
    assert [(c.path, c.status, c.access_token) for c in fake.crm_calls[2:]] == [
        (f"{CRM}/settings/fields", 200, stored_access_token),
        (f"{CRM}/Leads", 200, stored_access_token),
    ]


_SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.api.logger import Logger
    from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
    from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zohocrmsdk.src.com.zoho.crm.api.record import GetRecordsParam, RecordOperations
    from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
    from zoho_token_store import SQLAlchemyTokenStore

    config = json.load(sys.stdin)
    api_url, accounts_url = config["api_url"], config["accounts_url"]
    Initializer.initialize(
        environment=DataCenter.Environment(api_url, accounts_url, api_url),
        token=OAuthToken(client_id=config["client_id"], client_secret=config["client_secret"],
                         grant_token=config["grant_token"]),
        store=SQLAlchemyTokenStore(config["url"], table_name=config["table_name"]),
        sdk_config=SDKConfig(),
        resource_path=config["resource_path"],
        logger=Logger.get_instance(Logger.Levels.INFO, config["log_path"]),
    )
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name")
    response = RecordOperations("Leads").get_records(params)
    ids = [record.get_id() for record in response.get_object().get_data()]
    print(json.dumps({"status": response.get_status_code(), "ids": ids}))
    """
)


def test_a_second_process_reuses_the_stored_token(fake, shared_store, sdk, tmp_path):
    store = shared_store
    url = store.engine.url
    grant = fake.issue_grant_token(CLIENT_ID, ADA)
    initialize(fake, store, sdk, grant)
    stored = rows_by_user(store)[f"{ADA}:{fake.org_id}"]
    calls_before = len(fake.crm_calls)
    (tmp_path / "child-resources").mkdir()

    # The same configuration an app restart would bring, grant token included:
    # the grant is spent, so only the stored row can get this process a token.
    config = {
        "url": url.render_as_string(hide_password=False),
        "table_name": store.table.name,
        "api_url": fake.api_url,
        "accounts_url": fake.accounts_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_token": grant,
        "resource_path": str(tmp_path / "child-resources"),
        "log_path": str(tmp_path / "child-sdk.log"),
    }
    src = Path(zoho_token_store.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"status": 200, "ids": LEAD_IDS}
    assert (fake.grant_exchange_count, fake.refresh_count) == (1, 0)
    assert [(c.path, c.status, c.access_token) for c in fake.crm_calls[calls_before:]] == [
        (f"{CRM}/settings/fields", 200, stored.get_access_token()),
        (f"{CRM}/Leads", 200, stored.get_access_token()),
    ]
    [row] = store.get_tokens()
    assert (row.get_access_token(), row.get_refresh_token()) == (
        stored.get_access_token(),
        stored.get_refresh_token(),
    )


def test_an_expired_access_token_is_refreshed_once_keeping_the_refresh_token(
    fake, clock, store, sdk
):
    # The SDK refreshes when less than 5 s of a token's life remain, by its own
    # clock: a 4 s token is due at once. The fake's clock then passes its
    # expiry too, so a call that carried it would be refused.
    fake.access_token_lifetime = 4
    initialize(fake, store, sdk, fake.issue_grant_token(CLIENT_ID, ADA))
    before = rows_by_user(store)[f"{ADA}:{fake.org_id}"]
    fake.access_token_lifetime = 3600
    clock.advance(5)
    calls_before = len(fake.crm_calls)

    assert get_lead_ids() == LEAD_IDS

    after = rows_by_user(store)[f"{ADA}:{fake.org_id}"]
    assert after.get_refresh_token() == before.get_refresh_token()
    assert after.get_access_token() != before.get_access_token()
    assert fake.access_tokens(after.get_refresh_token()) == [after.get_access_token()]
    assert (fake.grant_exchange_count, fake.refresh_count) == (1, 1)
    assert fake.refreshes_of(after.get_refresh_token()) == 1
    assert [(c.path, c.status, c.access_token) for c in fake.crm_calls[calls_before:]] == [
        (f"{CRM}/settings/fields", 200, after.get_access_token()),
        (f"{CRM}/Leads", 200, after.get_access_token()),
    ]


def test_switch_user_keeps_each_users_tokens_apart(fake, store, sdk):
    ada_grant = fake.issue_grant_token(CLIENT_ID, ADA)
    initialize(fake, store, sdk, ada_grant)
    Initializer.switch_user(
        token=OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_token=fake.issue_grant_token(CLIENT_ID, GRACE),
        )
    )
    grace_calls_from = len(fake.crm_calls)
    assert get_lead_ids() == LEAD_IDS

    # Back to Ada with her original configuration: the store finds her row.
    Initializer.switch_user(
        token=OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_token=ada_grant)
    )
    ada_calls_from = len(fake.crm_calls)
    assert get_lead_ids() == LEAD_IDS

    rows = rows_by_user(store)
    assert sorted(rows) == [f"{ADA}:{fake.org_id}", f"{GRACE}:{fake.org_id}"]
    ada, grace = rows[f"{ADA}:{fake.org_id}"], rows[f"{GRACE}:{fake.org_id}"]
    assert ada.get_refresh_token() == fake.refresh_tokens(CLIENT_ID, ADA)[0]
    assert grace.get_refresh_token() == fake.refresh_tokens(CLIENT_ID, GRACE)[0]
    assert ada.get_access_token() != grace.get_access_token()
    assert (fake.grant_exchange_count, fake.refresh_count) == (2, 0)
    calls = fake.crm_calls
    assert [(c.user_email, c.access_token) for c in calls[grace_calls_from:ada_calls_from]] == [
        (GRACE, grace.get_access_token()),  # fields
        (GRACE, grace.get_access_token()),  # Leads
    ]
    assert [(c.user_email, c.access_token) for c in calls[ada_calls_from:]] == [
        (ADA, ada.get_access_token()),  # fields
        (ADA, ada.get_access_token()),  # Leads
    ]
