"""A loopback stand-in for Zoho's accounts server and CRM API, for tests and the demo.

:class:`FakeZoho` serves, on ``127.0.0.1``, what the Zoho CRM SDK talks to:
the OAuth token endpoint (authorization-code and refresh-token grants, and
revocation) and the few CRM endpoints the SDK calls on its own (current user,
organization, field metadata) plus ``GET /crm/v8/Leads``. It answers in
Zoho's JSON shapes and enforces Zoho's documented limits:

- a grant token is single use and lives three minutes;
- at most 10 access tokens per refresh token in any 10-minute window;
- at most 15 live access tokens per refresh token, the oldest dropped first;
- at most 20 refresh tokens per client and user, the oldest revoked first.

Time comes from an injectable clock so tests advance it instead of sleeping.
Tokens and secrets live only in memory; no repr, log entry or printed message
of this module contains one.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

__all__ = ["CrmCall", "FakeZoho", "LoggedRequest", "ManualClock"]

Clock = Callable[[], float]
_Json = dict[str, Any]

MAX_REFRESHES_PER_WINDOW = 10
REFRESH_WINDOW_SECONDS = 600
MAX_ACCESS_TOKENS_PER_REFRESH_TOKEN = 15
MAX_REFRESH_TOKENS_PER_USER = 20

_TOO_MANY_REQUESTS = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}
_INVALID_TOKEN = {
    "code": "INVALID_TOKEN",
    "details": {},
    "message": "invalid oauth token",
    "status": "error",
}
_NO_AUTH = {
    "code": "AUTHENTICATION_FAILURE",
    "details": {},
    "message": "Authentication failed",
    "status": "error",
}
_BAD_URL = {
    "code": "INVALID_URL_PATTERN",
    "details": {},
    "message": "Please check if the URL trying to access is a correct one",
    "status": "error",
}
_NO_FIELDS = {
    "code": "REQUIRED_PARAM_MISSING",
    "details": {"param": "fields"},
    "message": "One of the expected parameter is missing",
    "status": "error",
}

_LEADS_FIELDS = ("Last_Name", "Email", "Company")
_LEADS = (
    {
        "id": "4876876000000333001",
        "Last_Name": "Lovelace",
        "Email": "ada@example.com",
        "Company": "Analytical Engines",
    },
    {
        "id": "4876876000000333002",
        "Last_Name": "Hopper",
        "Email": "grace@example.com",
        "Company": "Compilers Inc",
    },
)


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
    """One request the fake served: no token, code or secret, only what it was and how it ended."""

    method: str
    path: str
    kind: str  # "authorization_code", "refresh_token", "revoke" or "crm"
    outcome: str  # "ok", or the error Zoho would report


@dataclass(frozen=True)
class CrmCall:
    """One CRM API call and the access token it carried (kept out of the repr)."""

    method: str
    path: str
    status: int
    user_email: str | None
    access_token: str | None = field(repr=False)


@dataclass
class _RefreshToken:
    value: str = field(repr=False)
    client_id: str
    email: str
    refresh_times: deque[float] = field(default_factory=deque)
    access_tokens: deque[str] = field(default_factory=deque, repr=False)
    refreshes: int = 0


def _new_token() -> str:
    # Zoho's shape: a "1000." prefix and two 32-hex-digit parts.
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class FakeZoho:
    """An in-process fake of Zoho's accounts server and CRM API on a loopback port.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Register
    clients with :meth:`add_client`, then hand out grant tokens with
    :meth:`issue_grant_token`. ``access_token_lifetime`` (seconds) applies to the
    access tokens issued after it is set. The server thread answers concurrently;
    one lock guards all state.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        access_token_lifetime: int = 3600,
        grant_token_lifetime: int = 180,
        org_id: str = "80001234",
    ) -> None:
        self.clock = clock
        self.access_token_lifetime = access_token_lifetime
        self.grant_token_lifetime = grant_token_lifetime
        self.org_id = org_id
        self.grant_exchange_count = 0
        self.refresh_count = 0
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, str | None]] = {}
        self._user_ids: dict[str, str] = {}
        self._grants: dict[str, tuple[str, str, float]] = {}  # code -> client, email, expiry
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, tuple[_RefreshToken, float]] = {}  # -> owner, expiry
        self._log: list[LoggedRequest] = []
        self._crm_calls: list[CrmCall] = []
        self._server: ThreadingHTTPServer | None = None

    def __repr__(self) -> str:
        return f"FakeZoho(base_url={self.base_url if self._server else None!r})"

    # -- lifecycle and addresses ------------------------------------------------

    def start(self) -> FakeZoho:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        threading.Thread(target=server.serve_forever, name="fake-zoho", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeZoho:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeZoho is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def accounts_url(self) -> str:
        """The token endpoint; the SDK posts grants here and revocations to ``+ "/revoke"``."""
        return f"{self.base_url}/oauth/v2/token"

    @property
    def api_url(self) -> str:
        """The CRM API base, also returned as ``api_domain``; the SDK appends ``/crm/v8/...``."""
        return self.base_url

    def environment(self) -> Any:
        """A ``DataCenter.Environment`` pointing the SDK at this fake."""
        return DataCenter.Environment(self.api_url, self.accounts_url, self.api_url)

    # -- set-up by tests ----------------------------------------------------------

    def add_client(
        self, client_id: str, client_secret: str, redirect_url: str | None = None
    ) -> None:
        with self._lock:
            self._clients[client_id] = (client_secret, redirect_url)

    def add_user(self, email: str) -> str:
        """Register a CRM user of this fake's organization; return its CRM user id."""
        with self._lock:
            return self._user_ids.setdefault(email, str(4876876000000225001 + len(self._user_ids)))

    def issue_grant_token(
        self, client_id: str, user_email: str, *, lifetime: float | None = None
    ) -> str:
        """A single-use grant token (authorization code) of ``client_id`` for ``user_email``."""
        self.add_user(user_email)
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client_id {client_id!r}")
            code = _new_token()
            lifetime = self.grant_token_lifetime if lifetime is None else lifetime
            self._grants[code] = (client_id, user_email, self.clock() + lifetime)
            return code

    # -- inspection by tests ------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def crm_calls(self) -> list[CrmCall]:
        with self._lock:
            return list(self._crm_calls)

    def refresh_tokens(self, client_id: str, user_email: str) -> list[str]:
        """The live refresh tokens of a client and user, oldest first."""
        with self._lock:
            return [
                t.value
                for t in self._refresh_tokens.values()
                if (t.client_id, t.email) == (client_id, user_email)
            ]

    def access_tokens(self, refresh_token: str) -> list[str]:
        """The live (issued, unexpired, not dropped) access tokens of a refresh token, oldest first."""
        with self._lock:
            owner = self._refresh_tokens.get(refresh_token)
            return [] if owner is None else [a for a in owner.access_tokens if self._live(a)]

    def refreshes_of(self, refresh_token: str) -> int:
        """How many access tokens ``refresh_token`` has granted through refreshes."""
        with self._lock:
            owner = self._refresh_tokens.get(refresh_token)
            return 0 if owner is None else owner.refreshes

    # -- the accounts server --------------------------------------------------------

    def _token_endpoint(self, form: dict[str, str]) -> _Json:
        grant_type = form.get("grant_type", "")
        client = self._clients.get(form.get("client_id", ""))
        if client is None:
            return {"error": "invalid_client"}
        if not secrets.compare_digest(client[0], form.get("client_secret", "")):
            return {"error": "invalid_client_secret"}
        if grant_type == "authorization_code":
            return self._exchange(form, redirect_url=client[1])
        if grant_type == "refresh_token":
            return self._refresh(form)
        return {"error": "unsupported_grant_type"}

    def _exchange(self, form: dict[str, str], redirect_url: str | None) -> _Json:
        grant = self._grants.pop(form.get("code", ""), None)  # popped: single use
        if grant is None or grant[0] != form["client_id"] or grant[2] <= self.clock():
            return {"error": "invalid_code"}
        if "redirect_uri" in form and form["redirect_uri"] != redirect_url:
            return {"error": "invalid_redirect_uri"}
        owner = _RefreshToken(_new_token(), grant[0], grant[1])
        mine = [t for t in self._refresh_tokens.values() if (t.client_id, t.email) == grant[:2]]
        if len(mine) >= MAX_REFRESH_TOKENS_PER_USER:
            self._revoke(mine[0])
        self._refresh_tokens[owner.value] = owner
        self.grant_exchange_count += 1
        return {**self._issue_access_token(owner), "refresh_token": owner.value}

    def _refresh(self, form: dict[str, str]) -> _Json:
        owner = self._refresh_tokens.get(form.get("refresh_token", ""))
        if owner is None or owner.client_id != form["client_id"]:
            return {"error": "invalid_code"}
        now = self.clock()
        while owner.refresh_times and now - owner.refresh_times[0] >= REFRESH_WINDOW_SECONDS:
            owner.refresh_times.popleft()
        if len(owner.refresh_times) >= MAX_REFRESHES_PER_WINDOW:
            return dict(_TOO_MANY_REQUESTS)
        owner.refresh_times.append(now)
        owner.refreshes += 1
        self.refresh_count += 1
        return self._issue_access_token(owner)

    def _issue_access_token(self, owner: _RefreshToken) -> _Json:
        live = deque(a for a in owner.access_tokens if self._live(a))
        while len(live) >= MAX_ACCESS_TOKENS_PER_REFRESH_TOKEN:
            self._access_tokens.pop(live.popleft(), None)
        token = _new_token()
        live.append(token)
        owner.access_tokens = live
        self._access_tokens[token] = (owner, self.clock() + self.access_token_lifetime)
        return {
            "access_token": token,
            "api_domain": self.api_url,
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
        }

    def _revoke(self, owner: _RefreshToken) -> None:
        del self._refresh_tokens[owner.value]
        for access_token in owner.access_tokens:
            self._access_tokens.pop(access_token, None)

    def _live(self, access_token: str) -> bool:
        entry = self._access_tokens.get(access_token)
        return entry is not None and self.clock() < entry[1]

    # -- the CRM API -----------------------------------------------------------------

    def _crm(
        self, path: str, query: dict[str, str], authorization: str | None
    ) -> tuple[int, _Json]:
        prefix = "Zoho-oauthtoken "
        token = (
            authorization[len(prefix) :]
            if authorization and authorization.startswith(prefix)
            else None
        )
        owner = self._access_tokens[token][0] if token is not None and self._live(token) else None
        if token is None:
            status, body = 401, _NO_AUTH
        elif owner is None:
            status, body = 401, _INVALID_TOKEN
        else:
            status, body = self._crm_resource(path, query, owner.email)
        self._crm_calls.append(CrmCall("GET", path, status, owner.email if owner else None, token))
        return status, body

    def _crm_resource(self, path: str, query: dict[str, str], email: str) -> tuple[int, _Json]:
        if path == "/crm/v8/users" and query.get("type") == "CurrentUser":
            user = {
                "id": self._user_ids[email],
                "email": email,
                "full_name": email.split("@")[0],
                "status": "active",
            }
            return 200, {
                "users": [user],
                "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False},
            }
        if path == "/crm/v8/org":
            return 200, {
                "org": [
                    {
                        "id": f"{self.org_id}000",
                        "zgid": self.org_id,
                        "company_name": "Fake Zoho Org",
                    }
                ]
            }
        if path == "/crm/v8/settings/fields" and query.get("module") == "Leads":
            return 200, {
                "fields": [
                    {
                        "api_name": name,
                        "data_type": "text",
                        "json_type": "string",
                        "system_mandatory": name == "Last_Name",
                        "custom_field": False,
                    }
                    for name in _LEADS_FIELDS
                ]
            }
        if path == "/crm/v8/Leads":
            wanted = [f for f in query.get("fields", "").split(",") if f in _LEADS_FIELDS]
            if not wanted:
                return 400, _NO_FIELDS
            data = [{"id": lead["id"], **{f: lead[f] for f in wanted}} for lead in _LEADS]
            return 200, {
                "data": data,
                "info": {
                    "per_page": 200,
                    "count": len(data),
                    "page": 1,
                    "sort_by": "id",
                    "sort_order": "desc",
                    "more_records": False,
                },
            }
        return 404, _BAD_URL

    def _handle(
        self,
        method: str,
        raw_path: str,
        body: str,
        authorization: str | None,
    ) -> tuple[int, _Json]:
        url = urlsplit(raw_path)
        # Zoho reads OAuth parameters from the query string as well as the form body.
        params = dict(parse_qsl(url.query))
        params.update(parse_qsl(body))
        token_path = urlsplit(self.accounts_url).path
        with self._lock:
            if method == "POST" and url.path == token_path:
                kind, status, reply = (
                    params.get("grant_type", "-"),
                    200,
                    self._token_endpoint(params),
                )
            elif method == "POST" and url.path == f"{token_path}/revoke":
                owner = self._refresh_tokens.get(params.get("token", ""))
                if owner is not None:
                    self._revoke(owner)
                reply = {"status": "success"} if owner else {"error": "invalid_code"}
                kind, status = "revoke", 200
            elif method == "GET" and url.path.startswith("/crm/"):
                kind, (status, reply) = "crm", self._crm(url.path, params, authorization)
            else:
                kind, status, reply = "other", 404, _BAD_URL
            outcome = str(reply.get("error") or reply.get("code") or "ok")
            self._log.append(LoggedRequest(method, url.path, kind, outcome))
        return status, reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeZoho


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        status, reply = self.server.fake._handle(
            method, self.path, body, self.headers.get("Authorization")
        )
        payload = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request line to stderr, query strings and all:
        # a revocation can carry its token there.
        pass
