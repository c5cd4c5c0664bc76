"""The provider APIs Acme calls: OAuth token exchange and one identity request.

Paths follow each provider's documented OAuth and REST endpoints. Each
provider has one base URL (``ACME_<PROVIDER>_URL``). In production the
authorization and API hosts differ for some providers, so a deployment maps
them with its own proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ProviderApi:
    authorize_path: str
    token_path: str
    identity_method: str
    identity_path: str
    identity_body: dict[str, Any] | None = None


PROVIDER_APIS = {
    "zendesk": ProviderApi(
        "/oauth/authorizations/new", "/oauth/tokens", "GET", "/api/v2/users/me.json"
    ),
    "intercom": ProviderApi("/oauth", "/auth/eagle/token", "GET", "/me"),
    "github": ProviderApi(
        "/login/oauth/authorize", "/login/oauth/access_token", "GET", "/user"
    ),
    "slack": ProviderApi(
        "/oauth/v2/authorize", "/api/oauth.v2.access", "POST", "/api/auth.test"
    ),
    "jira": ProviderApi(
        "/authorize", "/oauth/token", "GET", "/oauth/token/accessible-resources"
    ),
    "linear": ProviderApi(
        "/oauth/authorize",
        "/oauth/token",
        "POST",
        "/graphql",
        {"query": "{ viewer { id email } }"},
    ),
}


# One client for every provider call: building a client loads the CA bundle,
# which costs more CPU than the request itself.
_http = httpx.Client(timeout=10.0)


class ProviderError(Exception):
    """A provider returned an error status or an unusable body."""

    def __init__(self, provider: str, status: int, reason: str) -> None:
        super().__init__(f"{provider} returned {status}: {reason}")
        self.provider = provider
        self.status = status


def exchange_code(
    base_url: str, provider: str, *, code: str, redirect_uri: str, grant: str = "code"
) -> dict[str, Any]:
    """Trade an authorization code (or a refresh token) for tokens."""
    api = PROVIDER_APIS[provider]
    form = {
        "client_id": "acme",
        "client_secret": "acme-client-secret",
        "redirect_uri": redirect_uri,
    }
    if grant == "code":
        form.update(grant_type="authorization_code", code=code)
    else:
        form.update(grant_type="refresh_token", refresh_token=code)
    response = _http.post(
        base_url + api.token_path, data=form, headers={"Accept": "application/json"}
    )
    if response.status_code >= 400:
        raise ProviderError(provider, response.status_code, "token exchange failed")
    body = response.json()
    if not isinstance(body, dict) or not body.get("access_token"):
        raise ProviderError(provider, response.status_code, "no access_token returned")
    return body


def fetch_identity(base_url: str, provider: str, access_token: str) -> dict[str, Any]:
    """Call the provider's identity endpoint with the access token."""
    api = PROVIDER_APIS[provider]
    response = _http.request(
        api.identity_method,
        base_url + api.identity_path,
        json=api.identity_body,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
        },
    )
    if response.status_code >= 400:
        raise ProviderError(provider, response.status_code, "identity request failed")
    body = response.json()
    return body if isinstance(body, dict) else {"result": body}
