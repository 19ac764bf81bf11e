"""Building SDK tokens for tests, through the SDK's own constructor and setters."""

from __future__ import annotations

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

CLIENT_ID = "1000.TESTCLIENTID0000000000000000"
CLIENT_SECRET = "client-secret-0123456789abcdef0123456789"


def make_token(
    *,
    user: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    refresh: str | None = None,
    access: str | None = None,
    grant: str | None = None,
    id: str | None = None,
    expires: str | None = None,
    redirect_url: str | None = None,
    api_domain: str | None = None,
) -> OAuthToken:
    """An ``OAuthToken`` holding exactly the given fields.

    Built with the SDK's constructor where it accepts the combination, and its
    setters for the rest, since the constructor refuses some partial tokens
    that the SDK itself creates later (for example, id alone plus a secret).
    """
    token = OAuthToken(id="placeholder")
    token.set_id(id)
    token.set_user_signature(UserSignature(user) if user is not None else None)
    token.set_client_id(client_id)
    token.set_client_secret(client_secret)
    token.set_refresh_token(refresh)
    token.set_access_token(access)
    token.set_grant_token(grant)
    token.set_expires_in(expires)
    token.set_redirect_url(redirect_url)
    token.set_api_domain(api_domain)
    return token


def full_token(user: str, n: int = 1, *, expires: str = "1893456000000") -> OAuthToken:
    """A token as the SDK saves it after a grant exchange, numbered ``n`` for distinct values."""
    return make_token(
        user=user,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh=f"1000.refresh.{user}.{n}.0123456789abcdef0123456789abcdef",
        access=f"1000.access.{user}.{n}.0123456789abcdef0123456789abcdef",
        expires=expires,
        redirect_url="https://app.example.com/oauth/callback",
        api_domain="https://www.zohoapis.com",
    )


def as_dict(token: OAuthToken | None) -> dict[str, str | None] | None:
    """Every field of a token, for exact comparisons."""
    if token is None:
        return None
    signature = token.get_user_signature()
    return {
        "id": token.get_id(),
        "user_name": signature.get_name() if signature is not None else None,
        "client_id": token.get_client_id(),
        "client_secret": token.get_client_secret(),
        "refresh_token": token.get_refresh_token(),
        "access_token": token.get_access_token(),
        "grant_token": token.get_grant_token(),
        "expires_in": token.get_expires_in(),
        "redirect_url": token.get_redirect_url(),
        "api_domain": token.get_api_domain(),
    }
