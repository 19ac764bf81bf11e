"""What a run tells each worker, and what each worker reports back.

Plain picklable dataclasses: they cross process boundaries through
``multiprocessing`` pipes. No token value crosses: workers report access
tokens as their SHA-256 digests (:func:`token_digest`; not the table's digest
columns, which depend on the store's encryption keys).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from zoho_token_store.refresh import RefreshPolicy

__all__ = [
    "KILL_AFTER_LEASE",
    "KILL_BEFORE_SAVE",
    "NO_KILL",
    "OUTCOME_OK",
    "Go",
    "Scenario",
    "WorkerResult",
    "token_digest",
]


def token_digest(token: str) -> str:
    """How the harness names a token without showing it: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# Call outcomes a worker records.
OUTCOME_OK = "ok"
OUTCOME_INVALID_TOKEN = "invalid_token"  # HTTP 401 INVALID_TOKEN from the CRM API
OUTCOME_REFRESH_DENIED = "refresh_denied"  # the SDK's refresh got "Access Denied"
OUTCOME_STORE_ERROR = "store_error"  # the token store raised

# Where the first lease holder of a run is killed, if anywhere.
NO_KILL = "none"
KILL_AFTER_LEASE = "after_lease"  # the store has just told it to refresh
KILL_BEFORE_SAVE = "before_save"  # it has refreshed, and is about to save


@dataclass(frozen=True)
class Scenario:
    """One run, as every worker of it sees it."""

    name: str
    url: str  # the database URL, password included: workers connect with it
    table_name: str
    policy: RefreshPolicy
    api_url: str
    accounts_url: str
    client_id: str
    client_secret: str = field(repr=False)
    grant_token: str = field(repr=False)  # already exchanged by the parent: find_token's key
    pause: float = 0.02  # seconds between two calls of one worker
    # Every this many calls a worker starts over with a new OAuthToken through
    # Initializer.switch_user, whose first read goes through find_token
    # instead of find_token_by_id. 0: never.
    reinit_every: int = 0
    kill: str = NO_KILL
    # The first ``skewed_workers`` workers run the SDK's token clock ``skew``
    # seconds ahead (negative: behind) of the real one, as on a machine whose
    # clock has drifted. Only the SDK's expiry arithmetic sees it.
    skew: float = 0.0
    skewed_workers: int = 0
    slot: int = 0  # this worker's place in the pool, set by WorkerPool.prepare


@dataclass(frozen=True)
class Go:
    """Start calling now, and stop at ``deadline`` (epoch seconds)."""

    deadline: float


@dataclass
class WorkerResult:
    """What one worker did in one run. Times are epoch seconds."""

    index: int
    pid: int
    # (start, end, outcome) of each CRM call, in order.
    calls: list[tuple[float, float, str]] = field(default_factory=list)
    # (when, method) each time the store told this worker to refresh now.
    leases: list[tuple[float, str]] = field(default_factory=list)
    # (when, digest of the access token, committed) of each save_token.
    saves: list[tuple[float, str, bool]] = field(default_factory=list)
    # (start, end, outcome) of each token read outside a CRM call: the first
    # one in Initializer.initialize, and those of switch_user.
    inits: list[tuple[float, float, str]] = field(default_factory=list)
    # The first message seen for each kind of failure.
    errors: dict[str, str] = field(default_factory=dict)
