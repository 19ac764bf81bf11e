"""The few Zoho SDK names this package uses, imported in one place.

``zohocrmsdk7-0`` and ``zohocrmsdk8-0`` both provide the ``zohocrmsdk`` import
package with the same authenticator classes, so either satisfies this module.
Neither is a hard dependency of this distribution; when none is installed the
import error names the extras that bring one in.
"""

from __future__ import annotations

try:
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
    from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
except ImportError as exc:  # pragma: no cover - exercised only without an SDK installed
    raise ImportError(
        "zoho-token-store needs the Zoho CRM Python SDK. Install it with "
        "`pip install 'zoho-token-store[sdk8]'` (or `[sdk7]` for an app on API v7)."
    ) from exc

__all__ = ["OAuthToken", "SDKException", "TokenStore", "UserSignature"]
