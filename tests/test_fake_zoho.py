"""FakeZoho's own contract, over HTTP: Zoho's responses and Zoho's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from zoho_token_store.fake_zoho import FakeZoho, LoggedRequest, ManualClock

CLIENT_ID = "1000.FAKECLIENTID"
CLIENT_SECRET = "fake-client-secret-0123456789"
USER = "ada@example.com"
INVALID_TOKEN = {
    "code": "INVALID_TOKEN",
    "details": {},
    "message": "invalid oauth token",
    "status": "error",
}
TOO_MANY_REQUESTS = {
    "error": "Access Denied",
    "error_description": (
        "You have made too many requests continuously. Please try again after some time."
    ),
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_700_000_000.0)


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeZoho]:
    with FakeZoho(clock=clock) as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


def post(url: str, **form: str) -> tuple[int, dict[str, Any]]:
    response = requests.post(url, data=form, timeout=10)
    return response.status_code, response.json()


def exchange(fake: FakeZoho, code: str, **overrides: str) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": code,
        **overrides,
    }
    return post(fake.accounts_url, **form)


def refresh(fake: FakeZoho, refresh_token: str) -> dict[str, Any]:
    status, body = post(
        fake.accounts_url,
        grant_type="refresh_token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=refresh_token,
    )
    assert status == 200
    return body


def new_refresh_token(fake: FakeZoho) -> tuple[str, str]:
    """A fresh (refresh token, access token) pair for USER."""
    status, body = exchange(fake, fake.issue_grant_token(CLIENT_ID, USER))
    assert status == 200
    return body["refresh_token"], body["access_token"]


def crm_get(fake: FakeZoho, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Zoho-oauthtoken {token}"} if token else {}
    response = requests.get(f"{fake.api_url}{path}", headers=headers, timeout=10)
    return response.status_code, response.json()


def test_environment_points_the_sdk_at_the_fake(fake):
    environment = fake.environment()
    assert fake.api_url.startswith("http://127.0.0.1:")
    assert environment.url == fake.api_url
    assert environment.accounts_url == f"{fake.api_url}/oauth/v2/token"
    assert environment.file_upload_url == fake.api_url


def test_grant_exchange_returns_zohos_token_response(fake):
    status, body = exchange(fake, fake.issue_grant_token(CLIENT_ID, USER))

    assert status == 200
    assert sorted(body) == [
        "access_token",
        "api_domain",
        "expires_in",
        "refresh_token",
        "token_type",
    ]
    assert (body["api_domain"], body["token_type"], body["expires_in"]) == (
        fake.api_url,
        "Bearer",
        3600,
    )
    assert fake.refresh_tokens(CLIENT_ID, USER) == [body["refresh_token"]]
    assert fake.access_tokens(body["refresh_token"]) == [body["access_token"]]
    assert (fake.grant_exchange_count, fake.refresh_count) == (1, 0)


def test_a_grant_token_is_single_use(fake):
    code = fake.issue_grant_token(CLIENT_ID, USER)
    assert exchange(fake, code)[0] == 200

    assert exchange(fake, code) == (200, {"error": "invalid_code"})
    assert exchange(fake, "1000.unknown.code") == (200, {"error": "invalid_code"})
    assert fake.grant_exchange_count == 1


def test_a_grant_token_expires_after_three_minutes(fake, clock):
    early, late = fake.issue_grant_token(CLIENT_ID, USER), fake.issue_grant_token(CLIENT_ID, USER)
    clock.advance(179.5)
    assert exchange(fake, early)[0] == 200

    clock.advance(0.5)
    assert exchange(fake, late) == (200, {"error": "invalid_code"})
    assert fake.grant_exchange_count == 1


def test_client_credentials_are_checked(fake):
    code = fake.issue_grant_token(CLIENT_ID, USER)

    assert exchange(fake, code, client_id="1000.OTHER") == (200, {"error": "invalid_client"})
    assert exchange(fake, code, client_secret="wrong") == (200, {"error": "invalid_client_secret"})
    assert exchange(fake, code)[0] == 200


def test_a_refresh_returns_a_new_access_token_and_no_refresh_token(fake):
    refresh_token, first_access_token = new_refresh_token(fake)

    body = refresh(fake, refresh_token)

    assert sorted(body) == ["access_token", "api_domain", "expires_in", "token_type"]
    assert body["access_token"] != first_access_token
    assert fake.access_tokens(refresh_token) == [first_access_token, body["access_token"]]
    assert (fake.refresh_count, fake.refreshes_of(refresh_token)) == (1, 1)


def test_the_eleventh_refresh_in_ten_minutes_is_denied(fake, clock):
    refresh_token, _ = new_refresh_token(fake)
    for _ in range(10):
        assert "access_token" in refresh(fake, refresh_token)
        clock.advance(59)  # the tenth refresh happens at +531 s

    assert refresh(fake, refresh_token) == TOO_MANY_REQUESTS  # at +590 s
    assert fake.refreshes_of(refresh_token) == 10

    clock.advance(10)  # the first refresh, at +0 s, leaves the window at +600 s
    assert "access_token" in refresh(fake, refresh_token)
    assert refresh(fake, refresh_token) == TOO_MANY_REQUESTS
    assert (fake.refresh_count, fake.refreshes_of(refresh_token)) == (11, 11)


def test_the_sixteenth_access_token_invalidates_the_oldest(fake, clock):
    refresh_token, first = new_refresh_token(fake)
    issued = [first]
    for n in range(14):
        if n == 10:
            clock.advance(600)  # past the 10-refreshes window, well within an hour
        issued.append(refresh(fake, refresh_token)["access_token"])
    assert fake.access_tokens(refresh_token) == issued
    assert crm_get(fake, "/crm/v8/org", first)[0] == 200

    sixteenth = refresh(fake, refresh_token)["access_token"]

    assert fake.access_tokens(refresh_token) == [*issued[1:], sixteenth]
    assert crm_get(fake, "/crm/v8/org", first) == (401, INVALID_TOKEN)
    assert crm_get(fake, "/crm/v8/org", issued[1])[0] == 200


def test_the_twenty_first_refresh_token_revokes_the_oldest(fake):
    pairs = [new_refresh_token(fake) for _ in range(20)]
    assert fake.refresh_tokens(CLIENT_ID, USER) == [r for r, _ in pairs]

    newest, _ = new_refresh_token(fake)

    (oldest, oldest_access_token), *kept = pairs
    assert fake.refresh_tokens(CLIENT_ID, USER) == [*(r for r, _ in kept), newest]
    assert refresh(fake, oldest) == {"error": "invalid_code"}
    assert crm_get(fake, "/crm/v8/org", oldest_access_token) == (401, INVALID_TOKEN)
    assert "access_token" in refresh(fake, kept[0][0])


def test_an_access_token_expires_after_its_lifetime(fake, clock):
    fake.access_token_lifetime = 5
    status, body = exchange(fake, fake.issue_grant_token(CLIENT_ID, USER))
    assert (status, body["expires_in"]) == (200, 5)
    clock.advance(4.5)
    assert crm_get(fake, "/crm/v8/org", body["access_token"])[0] == 200

    clock.advance(0.5)
    assert crm_get(fake, "/crm/v8/org", body["access_token"]) == (401, INVALID_TOKEN)
    assert fake.access_tokens(body["refresh_token"]) == []


def test_revoking_a_refresh_token_revokes_its_access_tokens(fake):
    refresh_token, access_token = new_refresh_token(fake)

    assert post(f"{fake.accounts_url}/revoke", token=refresh_token) == (200, {"status": "success"})

    assert refresh(fake, refresh_token) == {"error": "invalid_code"}
    assert crm_get(fake, "/crm/v8/org", access_token) == (401, INVALID_TOKEN)
    assert fake.refresh_tokens(CLIENT_ID, USER) == []
    assert post(f"{fake.accounts_url}/revoke", token=refresh_token) == (
        200,
        {"error": "invalid_code"},
    )


def test_crm_calls_answer_for_the_tokens_user(fake):
    _, access_token = new_refresh_token(fake)

    status, body = crm_get(fake, "/crm/v8/users?type=CurrentUser", access_token)
    assert status == 200
    assert body["users"] == [
        {"id": "4876876000000225001", "email": USER, "status": "active", "full_name": "ada"}
    ]
    assert crm_get(fake, "/crm/v8/org", access_token) == (
        200,
        {"org": [{"id": "80001234000", "zgid": "80001234", "company_name": "Fake Zoho Org"}]},
    )
    status, body = crm_get(fake, "/crm/v8/Leads?fields=Last_Name", access_token)
    assert (status, body["data"]) == (
        200,
        [
            {"id": "4876876000000333001", "Last_Name": "Lovelace"},
            {"id": "4876876000000333002", "Last_Name": "Hopper"},
        ],
    )
    assert [(c.path, c.status, c.user_email, c.access_token) for c in fake.crm_calls] == [
        ("/crm/v8/users", 200, USER, access_token),
        ("/crm/v8/org", 200, USER, access_token),
        ("/crm/v8/Leads", 200, USER, access_token),
    ]


def test_crm_errors_have_zohos_shape(fake):
    _, access_token = new_refresh_token(fake)

    assert crm_get(fake, "/crm/v8/org", None) == (
        401,
        {
            "code": "AUTHENTICATION_FAILURE",
            "details": {},
            "message": "Authentication failed",
            "status": "error",
        },
    )
    assert crm_get(fake, "/crm/v8/org", "1000.not.issued") == (401, INVALID_TOKEN)
    assert crm_get(fake, "/crm/v8/Leads", access_token) == (
        400,
        {
            "code": "REQUIRED_PARAM_MISSING",
            "details": {"param": "fields"},
            "message": "One of the expected parameter is missing",
            "status": "error",
        },
    )
    assert crm_get(fake, "/crm/v8/Nothing", access_token)[0] == 404


def test_no_secret_appears_in_reprs_or_the_request_log(fake):
    refresh_token, access_token = new_refresh_token(fake)
    second_access_token = refresh(fake, refresh_token)["access_token"]
    crm_get(fake, "/crm/v8/org", access_token)
    post(f"{fake.accounts_url}/revoke", token=refresh_token)

    shown = repr(fake) + repr(fake.requests) + repr(fake.crm_calls)

    for secret in (CLIENT_SECRET, refresh_token, access_token, second_access_token):
        assert secret not in shown
    assert fake.requests == [
        LoggedRequest("POST", "/oauth/v2/token", "authorization_code", "ok"),
        LoggedRequest("POST", "/oauth/v2/token", "refresh_token", "ok"),
        LoggedRequest("GET", "/crm/v8/org", "crm", "ok"),
        LoggedRequest("POST", "/oauth/v2/token/revoke", "revoke", "ok"),
    ]
