"""A loopback stand-in for Zoho's accounts server and CRM API, for tests and the demo.

:class:`FakeZoho` serves on ``127.0.0.1`` what the Zoho CRM SDK talks to: the
OAuth token endpoint (authorization-code and refresh-token grants), token
revocation, the CRM calls the SDK makes by itself (current user, organization,
field metadata) and ``GET /crm/v8/Leads``. It answers in Zoho's JSON shapes,
errors included, and enforces Zoho's limits:

- a grant token is single use and lives three minutes;
- a refresh token grants at most 10 access tokens in any 10-minute window;
- a refresh token has at most 15 live access tokens; a new one drops the oldest;
- a client and user have at most 20 refresh tokens; a new one revokes the oldest.

It counts what those limits cost: grant exchanges, refreshes, refreshes denied
for going over the limit, and CRM calls refused for an invalid access token
(with the reason: expired, dropped past the 15, revoked or unknown). Every
answer of the token endpoint is kept, timestamped, as a :class:`TokenGrant`;
:meth:`FakeZoho.stats` sums them up.

The fake serves from threads of the process that starts it, so worker
processes reach it over HTTP, as they would reach Zoho; its records live in
that one process. Time comes from an injectable clock, so tests advance it
instead of sleeping; real time (the default) suits runs of several processes.
Tokens and secrets stay in memory: no repr, log entry or message shows one.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

__all__ = [
    "ACCESS_DENIED",
    "CrmCall",
    "FakeZoho",
    "FakeZohoStats",
    "LoggedRequest",
    "ManualClock",
    "TokenGrant",
]

MAX_REFRESHES_PER_WINDOW = 10
REFRESH_WINDOW_SECONDS = 600
MAX_ACCESS_TOKENS_PER_REFRESH_TOKEN = 15
MAX_REFRESH_TOKENS_PER_USER = 20

_Json = dict[str, Any]
_Reply = tuple[int, _Json]
ACCESS_DENIED = "Access Denied"
_TOO_MANY_REQUESTS = {
    "error": ACCESS_DENIED,
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}
_CRM_PATH = re.compile(r"/crm/v[0-9]+(/.*)")
_BAD_URL = "Please check if the URL trying to access is a correct one"
_LEAD_FIELDS = ("Last_Name", "Email", "Company")
_LEADS = (
    ("4876876000000333001", "Lovelace", "ada@example.com", "Analytical Engines"),
    ("4876876000000333002", "Hopper", "grace@example.com", "Compilers Inc"),
)


def _crm_error(status: int, code: str, message: str, **details: str) -> _Reply:
    return status, {"code": code, "details": details, "message": message, "status": "error"}


def _page(key: str, items: list[_Json]) -> _Json:
    return {
        key: items,
        "info": {"per_page": 200, "count": len(items), "page": 1, "more_records": False},
    }


def _new_token() -> str:
    # Zoho's shape: a "1000." prefix and two 32-hex-digit parts.
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class ManualClock:
    """A clock that stands still until :meth:`advance` moves it; pass it as ``clock=``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class LoggedRequest:
    """A request the fake served: which endpoint and how it ended, never a credential."""

    method: str
    path: str
    kind: str  # "authorization_code", "refresh_token", "revoke", "crm" or "other"
    outcome: str  # "ok", or the error or code Zoho would answer with
    at: float = field(default=0.0, compare=False)  # when it was served, on the fake's clock


@dataclass(frozen=True)
class CrmCall:
    """A CRM API call, whose user it acted for and the access token it carried (not in repr)."""

    method: str
    path: str
    status: int
    user_email: str | None
    access_token: str | None = field(repr=False)
    at: float = field(default=0.0, compare=False)  # when it was served, on the fake's clock
    # Why an INVALID_TOKEN call was refused: "expired", "dropped" (past the 15
    # live tokens of its refresh token), "revoked" or "unknown"; else None.
    invalid_reason: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TokenGrant:
    """One answer of the token endpoint to a grant exchange or a refresh; no secret in repr.

    ``outcome`` is "ok" or the error the fake answered with, "Access Denied"
    for a refresh over the limit. ``access_token`` and ``expires_at`` (on the
    fake's clock) are set when a token was issued.
    """

    at: float
    grant_type: str  # "authorization_code" or "refresh_token"
    outcome: str
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None

    @property
    def ok(self) -> bool:
        """True when an access token was issued."""
        return self.outcome == "ok"


@dataclass(frozen=True)
class FakeZohoStats:
    """What the fake has counted so far (see :meth:`FakeZoho.stats`)."""

    exchanges: int  # successful grant-token exchanges
    refreshes: int  # refreshes that issued an access token
    throttled_refreshes: int  # refreshes denied: over 10 in 10 minutes
    crm_calls: int
    invalid_token_calls: int  # CRM calls refused with INVALID_TOKEN
    invalid_token_reasons: dict[str, int]
    refresh_times: tuple[float, ...]  # of the successful refreshes, oldest first


@dataclass
class _RefreshToken:
    value: str = field(repr=False)
    client_id: str
    email: str
    access_tokens: deque[str] = field(default_factory=deque, repr=False)
    refresh_times: deque[float] = field(default_factory=deque)  # within the window
    refreshes: int = 0


class FakeZoho:
    """Zoho's accounts server and CRM API, faked on a free loopback port.

    Use it as a context manager: it serves inside the ``with`` block. Register
    clients with :meth:`add_client` and hand out grant tokens with
    :meth:`issue_grant_token`; the SDK does the rest through :meth:`environment`.
    ``access_token_lifetime`` (seconds) applies to tokens issued after it is set.
    ``grant_exchange_count`` and ``refresh_count`` count successful grants,
    ``throttled_refresh_count`` the refreshes denied for going over the limit,
    ``invalid_token_count`` the CRM calls refused for an invalid access token.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        access_token_lifetime: int = 3600,
        grant_token_lifetime: float = 180,
        org_id: str = "80001234",
    ) -> None:
        self.clock = clock
        self.access_token_lifetime = access_token_lifetime
        self.grant_token_lifetime = grant_token_lifetime
        self.org_id = org_id
        self.grant_exchange_count = 0
        self.refresh_count = 0
        self.throttled_refresh_count = 0
        self.invalid_token_count = 0
        # The server's threads and the test's thread share all of the below.
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, str | None]] = {}  # id -> secret, redirect URL
        self._user_ids: dict[str, str] = {}
        self._grants: dict[str, tuple[str, str, float]] = {}  # code -> client, email, expiry
        self._refresh_tokens: dict[str, _RefreshToken] = {}  # in issue order
        self._access_tokens: dict[str, tuple[_RefreshToken, float]] = {}  # -> owner, expiry
        self._dead: dict[str, str] = {}  # dropped or revoked access token -> which of the two
        self._invalid_reasons: dict[str, int] = {}  # why CRM calls got INVALID_TOKEN -> count
        self._log: list[LoggedRequest] = []
        self._crm_calls: list[CrmCall] = []
        self._grants_log: list[TokenGrant] = []
        self._server: _Server | None = None

    def __repr__(self) -> str:
        return f"FakeZoho(running={self._server is not None})"

    def __enter__(self) -> FakeZoho:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # A short poll interval: shutdown() waits for the next poll.
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def api_url(self) -> str:
        """The CRM API base URL, also the ``api_domain`` of every token response."""
        if self._server is None:
            raise RuntimeError("FakeZoho is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def accounts_url(self) -> str:
        """The token endpoint; the SDK posts revocations to this plus ``/revoke``."""
        return f"{self.api_url}/oauth/v2/token"

    def environment(self) -> Any:
        """A ``DataCenter.Environment`` that points the SDK at this fake."""
        return DataCenter.Environment(self.api_url, self.accounts_url, self.api_url)

    def add_client(
        self, client_id: str, client_secret: str, redirect_url: str | None = None
    ) -> None:
        with self._lock:
            self._clients[client_id] = (client_secret, redirect_url)

    def issue_grant_token(self, client_id: str, user_email: str) -> str:
        """A new single-use grant token of a registered client for ``user_email``.

        The user joins the fake's organization, as a CRM user, if new.
        """
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client_id {client_id!r}")
            self._user_ids.setdefault(user_email, str(4876876000000225001 + len(self._user_ids)))
            code = _new_token()
            self._grants[code] = (client_id, user_email, self.clock() + self.grant_token_lifetime)
            return code

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request served so far, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def crm_calls(self) -> list[CrmCall]:
        """Every CRM API call so far, oldest first."""
        with self._lock:
            return list(self._crm_calls)

    def refresh_tokens(self, client_id: str, user_email: str) -> list[str]:
        """The unrevoked refresh tokens of a client and user, oldest first."""
        with self._lock:
            owned = self._refresh_tokens.values()
            return [t.value for t in owned if (t.client_id, t.email) == (client_id, user_email)]

    def access_tokens(self, refresh_token: str) -> list[str]:
        """The access tokens of ``refresh_token`` that a CRM call would accept, oldest first."""
        with self._lock:
            owner = self._refresh_tokens.get(refresh_token)
            return [a for a in owner.access_tokens if self._live(a)] if owner else []

    def refreshes_of(self, refresh_token: str) -> int:
        """How many access tokens ``refresh_token`` has granted by refreshing."""
        with self._lock:
            owner = self._refresh_tokens.get(refresh_token)
            return owner.refreshes if owner else 0

    @property
    def grants(self) -> list[TokenGrant]:
        """Every answer to a grant exchange or a refresh, oldest first, denials included."""
        with self._lock:
            return list(self._grants_log)

    @property
    def refresh_times(self) -> list[float]:
        """When each successful refresh was answered, on the fake's clock, oldest first."""
        with self._lock:
            return [g.at for g in self._grants_log if g.grant_type == "refresh_token" and g.ok]

    def stats(self) -> FakeZohoStats:
        """The counters, taken together under the lock."""
        with self._lock:
            refresh_times = tuple(
                g.at for g in self._grants_log if g.grant_type == "refresh_token" and g.ok
            )
            return FakeZohoStats(
                exchanges=self.grant_exchange_count,
                refreshes=self.refresh_count,
                throttled_refreshes=self.throttled_refresh_count,
                crm_calls=len(self._crm_calls),
                invalid_token_calls=self.invalid_token_count,
                invalid_token_reasons=dict(self._invalid_reasons),
                refresh_times=refresh_times,
            )

    # The accounts server. Like Zoho, it reports every OAuth error with HTTP 200.

    def _token_endpoint(self, form: dict[str, str]) -> _Json:
        client = self._clients.get(form.get("client_id", ""))
        if client is None:
            return {"error": "invalid_client"}
        if form.get("client_secret") != client[0]:
            return {"error": "invalid_client_secret"}
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            reply = self._exchange(form, client[1])
        elif grant_type == "refresh_token":
            reply = self._refresh(form)
        else:
            return {"error": "unsupported_grant_type"}
        access_token = reply.get("access_token")
        self._grants_log.append(
            TokenGrant(
                at=self.clock(),
                grant_type=grant_type,
                outcome=str(reply.get("error") or "ok"),
                access_token=access_token,
                refresh_token=reply.get("refresh_token") or form.get("refresh_token"),
                expires_at=self._access_tokens[access_token][1] if access_token else None,
            )
        )
        return reply

    def _exchange(self, form: dict[str, str], redirect_url: str | None) -> _Json:
        grant = self._grants.pop(form.get("code", ""), None)  # popped: single use
        if grant is None or grant[0] != form["client_id"] or self.clock() >= grant[2]:
            return {"error": "invalid_code"}
        if "redirect_uri" in form and form["redirect_uri"] != redirect_url:
            return {"error": "invalid_redirect_uri"}
        owned = [t for t in self._refresh_tokens.values() if (t.client_id, t.email) == grant[:2]]
        if len(owned) >= MAX_REFRESH_TOKENS_PER_USER:
            self._revoke(owned[0])
        owner = _RefreshToken(_new_token(), grant[0], grant[1])
        self._refresh_tokens[owner.value] = owner
        self.grant_exchange_count += 1
        return {**self._issue_access_token(owner), "refresh_token": owner.value}

    def _refresh(self, form: dict[str, str]) -> _Json:
        owner = self._refresh_tokens.get(form.get("refresh_token", ""))
        if owner is None or owner.client_id != form["client_id"]:
            return {"error": "invalid_code"}
        now, times = self.clock(), owner.refresh_times
        while times and now - times[0] >= REFRESH_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= MAX_REFRESHES_PER_WINDOW:
            self.throttled_refresh_count += 1
            return dict(_TOO_MANY_REQUESTS)
        times.append(now)
        owner.refreshes += 1
        self.refresh_count += 1
        return self._issue_access_token(owner)

    def _issue_access_token(self, owner: _RefreshToken) -> _Json:
        live = deque(a for a in owner.access_tokens if self._live(a))
        while len(live) >= MAX_ACCESS_TOKENS_PER_REFRESH_TOKEN:
            dropped = live.popleft()
            del self._access_tokens[dropped]
            self._dead[dropped] = "dropped"
        token = _new_token()
        live.append(token)
        owner.access_tokens = live
        lifetime = self.access_token_lifetime
        self._access_tokens[token] = (owner, self.clock() + lifetime)
        return {
            "access_token": token,
            "api_domain": self.api_url,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    def _revoke(self, owner: _RefreshToken) -> None:
        del self._refresh_tokens[owner.value]
        for access_token in owner.access_tokens:
            if self._access_tokens.pop(access_token, None) is not None:
                self._dead[access_token] = "revoked"

    def _live(self, access_token: str) -> bool:
        entry = self._access_tokens.get(access_token)
        return entry is not None and self.clock() < entry[1]

    # The CRM API.

    def _crm(self, path: str, query: dict[str, str], authorization: str | None) -> _Reply:
        scheme, _, token = (authorization or "").partition(" ")
        email = reason = None
        if scheme != "Zoho-oauthtoken" or not token:
            status, body = _crm_error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        elif not self._live(token):
            status, body = _crm_error(401, "INVALID_TOKEN", "invalid oauth token")
            reason = self._dead.get(token, "expired" if token in self._access_tokens else "unknown")
            self.invalid_token_count += 1
            self._invalid_reasons[reason] = self._invalid_reasons.get(reason, 0) + 1
        else:
            email = self._access_tokens[token][0].email
            status, body = self._crm_resource(path, query, email)
        call = CrmCall("GET", path, status, email, token or None, self.clock(), reason)
        self._crm_calls.append(call)
        return status, body

    def _crm_resource(self, path: str, query: dict[str, str], email: str) -> _Reply:
        # The same resources under every API version the SDKs speak
        # (zohocrmsdk7-0 calls /crm/v7/..., zohocrmsdk8-0 /crm/v8/...).
        versioned = _CRM_PATH.fullmatch(path)
        path = versioned.group(1) if versioned else path
        if path == "/users" and query.get("type") == "CurrentUser":
            user = {"id": self._user_ids[email], "email": email, "status": "active"}
            return 200, _page("users", [{**user, "full_name": email.partition("@")[0]}])
        if path == "/org":
            org = {"id": f"{self.org_id}000", "zgid": self.org_id, "company_name": "Fake Zoho Org"}
            return 200, {"org": [org]}
        if path == "/settings/fields" and query.get("module") == "Leads":
            fields = [
                {"api_name": name, "data_type": "text", "system_mandatory": name == "Last_Name"}
                for name in _LEAD_FIELDS
            ]
            return 200, {"fields": fields}
        if path == "/Leads":
            wanted = [name for name in query.get("fields", "").split(",") if name in _LEAD_FIELDS]
            if not wanted:  # Zoho requires the fields parameter
                message = "One of the expected parameter is missing"
                return _crm_error(400, "REQUIRED_PARAM_MISSING", message, param="fields")
            leads = [dict(zip(("id", *_LEAD_FIELDS), lead)) for lead in _LEADS]
            return 200, _page("data", [{k: lead[k] for k in ("id", *wanted)} for lead in leads])
        return _crm_error(404, "INVALID_URL_PATTERN", _BAD_URL)

    def _handle(self, method: str, target: str, body: str, authorization: str | None) -> _Reply:
        url = urlsplit(target)
        # Zoho takes OAuth parameters from the query string as well as the form body.
        params = {**dict(parse_qsl(url.query)), **dict(parse_qsl(body))}
        with self._lock:
            if (method, url.path) == ("POST", "/oauth/v2/token"):
                kind, status = params.get("grant_type", "?"), 200
                reply = self._token_endpoint(params)
            elif (method, url.path) == ("POST", "/oauth/v2/token/revoke"):
                owner = self._refresh_tokens.get(params.get("token", ""))
                if owner is not None:
                    self._revoke(owner)
                kind, status = "revoke", 200
                reply = {"status": "success"} if owner else {"error": "invalid_code"}
            elif method == "GET" and url.path.startswith("/crm/"):
                kind, (status, reply) = "crm", self._crm(url.path, params, authorization)
            else:
                kind, (status, reply) = "other", _crm_error(404, "INVALID_URL_PATTERN", _BAD_URL)
            outcome = str(reply.get("error") or reply.get("code") or "ok")
            self._log.append(LoggedRequest(method, url.path, kind, outcome, self.clock()))
        return status, reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many worker processes connect at once, a new connection per SDK request:
    # socketserver's default backlog of 5 would drop SYNs, and each dropped one
    # costs the client a one-second retransmission.
    request_queue_size = 128
    fake: FakeZoho


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive; every response has a Content-Length

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
        authorization = self.headers.get("Authorization")
        status, reply = self.server.fake._handle(method, self.path, body, authorization)
        payload = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The default prints each request line to stderr, query string and all,
        # and a revocation may carry its token there.
        pass
