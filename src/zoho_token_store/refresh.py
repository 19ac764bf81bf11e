"""Single-flight token refresh across processes and machines.

The SDK refreshes a token inside ``OAuthToken.get_token()`` when its copy is
less than five seconds from expiry, and nothing stops every worker from doing
so at once. Zoho then throttles the refresh token (10 new access tokens per
10 minutes) and drops the oldest access tokens past 15. This module decides,
on each read of a stored token, whether the caller should

- **use** the stored token as it is (it is not due, or another caller is
  already refreshing it and it is still valid);
- **try to lease** it: the token is due, and nobody holds the lease. The
  caller that wins the lease, through one conditional UPDATE, is told to
  refresh now; every other caller keeps using the valid token;
- **wait** for the lease holder's new token, because the stored one is inside
  the SDK's own refresh window, where using it would make the SDK refresh too.

All times are epoch milliseconds on the database's clock (see clock.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from zoho_token_store.errors import TokenStoreError

__all__ = ["SDK_REFRESH_WINDOW_MS", "Action", "RefreshPolicy"]

# The SDK refreshes a token with less than this much life left
# (OAuthToken.get_token: int(expires_in) - now_ms < 5000), on the worker's
# own clock. Two more seconds cover clock drift between worker and database.
SDK_REFRESH_WINDOW_MS = 5_000 + 2_000


class Action(enum.Enum):
    """What a caller does with a stored token it has just read."""

    USE = "use"
    LEASE = "lease"
    WAIT = "wait"


@dataclass(frozen=True)
class RefreshPolicy:
    """When a token is due for refresh, and how long leases and waits last.

    ``margin`` is how long before expiry one caller refreshes, capped at
    ``margin_fraction`` of the token's lifetime: a token that lives shorter
    than the margin would otherwise be due as soon as it was saved.
    ``lease_timeout`` bounds how long a caller that died while refreshing
    holds everyone else up. ``max_wait`` bounds how long a caller waits for
    another's new token before it lets the SDK refresh by itself.
    ``enabled=False`` turns coordination off: reads return the stored token
    as it is, as the SDK's own stores do.
    """

    enabled: bool = True
    margin: float = 300.0
    margin_fraction: float = 0.5
    lease_timeout: float = 30.0
    max_wait: float = 10.0
    poll_interval: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TokenStoreError(
                f"RefreshPolicy: enabled must be True or False, got {type(self.enabled).__name__}"
            )
        for name in ("margin", "margin_fraction", "lease_timeout", "max_wait", "poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TokenStoreError(
                    f"RefreshPolicy: {name} must be a number of seconds, got {type(value).__name__}"
                )
        for name in ("margin", "lease_timeout", "max_wait"):
            if getattr(self, name) < 0:
                raise TokenStoreError(f"RefreshPolicy: {name} must not be negative")
        if self.poll_interval <= 0:
            # Zero would make a waiting caller poll the database without pause.
            raise TokenStoreError("RefreshPolicy: poll_interval must be more than 0")
        if not 0.0 < self.margin_fraction <= 1.0:
            raise TokenStoreError("RefreshPolicy: margin_fraction must be more than 0, at most 1")

    @property
    def lease_ms(self) -> int:
        return int(self.lease_timeout * 1000)

    def margin_ms(self, expiry: int, issued_at: int | None) -> int:
        """How long before ``expiry`` the token is due, in ms.

        Never less than the SDK's own refresh window: inside it the SDK
        refreshes regardless, so the store must coordinate there at least.
        """
        margin = int(self.margin * 1000)
        if issued_at is not None and expiry > issued_at:
            margin = min(margin, int((expiry - issued_at) * self.margin_fraction))
        return max(margin, SDK_REFRESH_WINDOW_MS)

    def action(
        self, expiry: int | None, issued_at: int | None, lease_until: int | None, now: int
    ) -> Action:
        """What to do with a stored token, given the database's ``now``."""
        if not self.enabled or expiry is None:
            return Action.USE
        remaining = expiry - now
        if remaining > self.margin_ms(expiry, issued_at):
            return Action.USE
        if lease_until is None or lease_until <= now:
            return Action.LEASE
        return Action.WAIT if remaining < SDK_REFRESH_WINDOW_MS else Action.USE
