"""OAuth connections to the six providers, their sync, and webhook signing secrets.

Tokens and secrets are sealed by the vaults before they reach the database
and opened only here, at the moment a provider call needs them. No response
carries a token, a secret or an envelope.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from acme.auth import AuthError, request_claims
from acme.providers import PROVIDER_APIS, ProviderError, exchange_code, fetch_identity
from acme.settings import PROVIDERS
from acme.vault import DecryptionError

logger = logging.getLogger("acme.integrations")

STATE_TTL_SECONDS = 600
# Webhook senders are not limited to the OAuth providers (Razorpay, say).
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{1,31}")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def user_endpoint(handler: Callable[..., Response]) -> Callable[[Request], Response]:
    """Require a valid user JWT and a well-formed organization id in the path."""

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        try:
            claims = request_claims(request)
        except AuthError as error:
            return _error(401, str(error))
        org = request.path_params.get("org_id") or request.query_params.get(
            "organization_id"
        )
        try:
            organization_id = str(uuid.UUID(org or ""))
        except ValueError:
            return _error(404, "organization not found")
        return handler(request, claims, organization_id)

    wrapper.requires_user = True  # type: ignore[attr-defined]
    return wrapper


def _provider(
    request: Request, allowed: tuple[str, ...] | None = PROVIDERS
) -> str | None:
    """Return the path's provider if allowed (any well-formed name when None)."""
    provider = request.path_params["provider"]
    if allowed is None:
        return provider if PROVIDER_NAME.fullmatch(provider) else None
    return provider if provider in allowed else None


def _is_member(cur: Any, organization_id: str) -> bool:
    cur.execute("select 1 from public.organizations where id = %s", (organization_id,))
    return cur.fetchone() is not None


# OAuth state ------------------------------------------------------------------


def _state_key(request: Request) -> bytes:
    secret = request.app.state.settings.jwt_secret.encode()
    return hmac.new(secret, b"acme oauth state", hashlib.sha256).digest()


def sign_state(request: Request, payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    mac = hmac.new(_state_key(request), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def read_state(request: Request, state: str) -> dict[str, Any] | None:
    body, _, mac = state.partition(".")
    expected = hmac.new(_state_key(request), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
        return None
    return payload


def _redirect_uri(request: Request, provider: str) -> str:
    return str(request.url_for("oauth_callback", provider=provider))


@user_endpoint
def oauth_start(request: Request, claims: dict, organization_id: str) -> Response:
    """Redirect a member to the provider's consent page."""
    provider = _provider(request)
    if provider is None:
        return _error(404, "unknown provider")
    with request.app.state.db.as_user(claims) as cur:
        if not _is_member(cur, organization_id):
            return _error(404, "organization not found")
    state = sign_state(
        request,
        {
            "org": organization_id,
            "sub": claims["sub"],
            "provider": provider,
            "exp": int(time.time()) + STATE_TTL_SECONDS,
        },
    )
    query = urlencode(
        {
            "client_id": "acme",
            "response_type": "code",
            "redirect_uri": _redirect_uri(request, provider),
            "state": state,
        }
    )
    base = request.app.state.settings.provider_url(provider)
    return RedirectResponse(
        f"{base}{PROVIDER_APIS[provider].authorize_path}?{query}", status_code=302
    )


oauth_start.query_parameters = ("organization_id",)  # type: ignore[attr-defined]


def oauth_callback(request: Request) -> Response:
    """Store the tokens the provider grants for an authorization code."""
    provider = _provider(request)
    if provider is None:
        return _error(404, "unknown provider")
    state = read_state(request, request.query_params.get("state", ""))
    code = request.query_params.get("code", "")
    if state is None or state.get("provider") != provider or not code:
        return _error(400, "invalid or expired OAuth state")

    settings = request.app.state.settings
    try:
        grant = exchange_code(
            settings.provider_url(provider),
            provider,
            code=code,
            redirect_uri=_redirect_uri(request, provider),
        )
    except ProviderError as error:
        logger.warning(
            "OAuth exchange with %s failed: status %d", provider, error.status
        )
        return _error(502, f"{provider} rejected the authorization code")

    access = request.app.state.token_vault.seal(grant["access_token"])
    refresh_token = grant.get("refresh_token")
    refresh = (
        request.app.state.refresh_vault.seal(refresh_token) if refresh_token else None
    )
    # service-role: the provider redirects the browser here without the user's
    # session; the organization comes from the HMAC-signed state issued to a member.
    with request.app.state.db.as_service() as cur:
        cur.execute(
            """
            insert into public.integrations
                (organization_id, provider, access_token, refresh_token)
            values (%s, %s, %s, %s)
            on conflict (organization_id, provider) do update
                set access_token = excluded.access_token,
                    refresh_token = excluded.refresh_token
            """,
            (state["org"], provider, access, refresh),
        )
    logger.info("connected %s for organization %s", provider, state["org"])
    return JSONResponse(
        {"provider": provider, "organization_id": state["org"], "status": "connected"}
    )


# Integrations -----------------------------------------------------------------


@user_endpoint
def list_integrations(request: Request, claims: dict, organization_id: str) -> Response:
    """The organization's connected providers, without their tokens."""
    with request.app.state.db.as_user(claims) as cur:
        if not _is_member(cur, organization_id):
            return _error(404, "organization not found")
        cur.execute(
            "select id, provider, access_token, external_account, created_at "
            "from public.integrations where organization_id = %s order by provider",
            (organization_id,),
        )
        rows = cur.fetchall()
    listing = []
    for row in rows:
        item = {
            "id": str(row["id"]),
            "provider": row["provider"],
            "external_account": row["external_account"],
            "connected_at": row["created_at"].isoformat(),
        }
        if request.app.state.settings.flaw == "token-in-listing":
            item["access_token"] = _open_quietly(request, row["access_token"])
        listing.append(item)
    return JSONResponse({"integrations": listing})


def _open_quietly(request: Request, envelope: str) -> str | None:
    try:
        return request.app.state.token_vault.open(envelope)
    except DecryptionError:
        return None


@user_endpoint
def sync_integration(request: Request, claims: dict, organization_id: str) -> Response:
    """Call the provider with the stored token and record the account it names."""
    provider = _provider(request)
    if provider is None:
        return _error(404, "unknown provider")
    state = request.app.state
    with state.db.as_user(claims) as cur:
        cur.execute(
            "select access_token, refresh_token from public.integrations "
            "where organization_id = %s and provider = %s",
            (organization_id, provider),
        )
        row = cur.fetchone()
    if row is None:
        return _error(404, f"{provider} is not connected")

    try:
        access = state.token_vault.open(row["access_token"])
    except DecryptionError as error:
        logger.warning(
            "%s token of organization %s could not be decrypted: %s",
            provider,
            organization_id,
            error,
        )
        message = "the stored token could not be decrypted; reconnect the integration"
        if state.settings.flaw == "key-in-error":
            message += f" (key {state.settings.key.hex()})"
        return _error(409, message)

    base = state.settings.provider_url(provider)
    try:
        identity = fetch_identity(base, provider, access)
    except ProviderError as error:
        if error.status != 401 or not row["refresh_token"]:
            logger.warning("%s sync failed: status %d", provider, error.status)
            return _error(502, f"{provider} returned {error.status}")
        try:
            access = _refresh(request, claims, organization_id, provider, row)
            identity = fetch_identity(base, provider, access)
        except (ProviderError, DecryptionError) as retry_error:
            logger.warning("%s sync failed after refresh: %s", provider, retry_error)
            return _error(502, f"{provider} rejected the refreshed token")

    account = str(identity.get("id") or identity.get("user_id") or "")
    with state.db.as_user(claims) as cur:
        cur.execute(
            "update public.integrations set external_account = %s "
            "where organization_id = %s and provider = %s",
            (account, organization_id, provider),
        )
    response = JSONResponse({"provider": provider, "account": account, "status": "ok"})
    if state.settings.flaw == "token-in-header":
        response.headers["X-Provider-Token"] = access
    return response


def _refresh(
    request: Request, claims: dict, organization_id: str, provider: str, row: dict
) -> str:
    """Trade the refresh token for new tokens, store them, return the access token."""
    state = request.app.state
    refresh = state.refresh_vault.open(row["refresh_token"])
    grant = exchange_code(
        state.settings.provider_url(provider),
        provider,
        code=refresh,
        redirect_uri=_redirect_uri(request, provider),
        grant="refresh_token",
    )
    new_refresh = grant.get("refresh_token") or refresh
    with state.db.as_user(claims) as cur:
        cur.execute(
            "update public.integrations set access_token = %s, refresh_token = %s "
            "where organization_id = %s and provider = %s",
            (
                state.token_vault.seal(grant["access_token"]),
                state.refresh_vault.seal(new_refresh),
                organization_id,
                provider,
            ),
        )
    logger.info("refreshed the %s token of organization %s", provider, organization_id)
    return grant["access_token"]


@user_endpoint
def disconnect(request: Request, claims: dict, organization_id: str) -> Response:
    """Forget a provider connection and its tokens."""
    provider = _provider(request)
    if provider is None:
        return _error(404, "unknown provider")
    with request.app.state.db.as_user(claims) as cur:
        cur.execute(
            "delete from public.integrations "
            "where organization_id = %s and provider = %s",
            (organization_id, provider),
        )
        deleted = cur.rowcount
    if not deleted:
        return _error(404, f"{provider} is not connected")
    return JSONResponse({"provider": provider, "status": "disconnected"})


# Webhook signing secrets --------------------------------------------------------


@user_endpoint
def put_webhook_secret(
    request: Request, claims: dict, organization_id: str
) -> Response:
    """Store the signing secret of a provider's webhooks, sealed."""
    provider = _provider(request, None)
    if provider is None:
        return _error(404, "unknown provider")
    try:
        body = json.loads(_read_body(request))
    except ValueError:
        return _error(400, "the body must be JSON")
    secret = body.get("secret") if isinstance(body, dict) else None
    if not isinstance(secret, str) or not secret:
        return _error(400, "the body must carry a non-empty string field 'secret'")

    sealed = request.app.state.secret_vault.seal(secret)
    with request.app.state.db.as_user(claims) as cur:
        if not _is_member(cur, organization_id):
            return _error(404, "organization not found")
        cur.execute(
            """
            insert into public.webhook_secrets (organization_id, provider, secret)
            values (%s, %s, %s)
            on conflict (organization_id, provider)
                do update set secret = excluded.secret
            """,
            (organization_id, provider, sealed),
        )
    return JSONResponse({"provider": provider, "status": "stored"})


def _read_body(request: Request) -> bytes:
    # Sync endpoints run in a worker thread, where the body is read through anyio.
    import anyio.from_thread

    return anyio.from_thread.run(request.body)


@user_endpoint
def list_webhook_secrets(
    request: Request, claims: dict, organization_id: str
) -> Response:
    """The providers whose webhook signing secret is stored, without the secrets."""
    with request.app.state.db.as_user(claims) as cur:
        if not _is_member(cur, organization_id):
            return _error(404, "organization not found")
        cur.execute(
            "select provider, created_at from public.webhook_secrets "
            "where organization_id = %s order by provider",
            (organization_id,),
        )
        rows = cur.fetchall()
    return JSONResponse(
        {
            "webhook_secrets": [
                {"provider": r["provider"], "stored_at": r["created_at"].isoformat()}
                for r in rows
            ]
        }
    )


def webhook_secret(app_state: Any, organization_id: str, provider: str) -> str | None:
    """Return the opened signing secret for a webhook receiver, or None if unset.

    Raises DecryptionError when the stored value is not a valid envelope.
    """
    # service-role: an inbound webhook carries no user session; the receiver
    # reads only the one secret it needs to verify the signature.
    with app_state.db.as_service() as cur:
        cur.execute(
            "select secret from public.webhook_secrets "
            "where organization_id = %s and provider = %s",
            (organization_id, provider),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return app_state.secret_vault.open(row["secret"])


def routes() -> list[BaseRoute]:
    return [
        Route("/oauth/{provider}/start", oauth_start, methods=["GET"]),
        Route(
            "/oauth/{provider}/callback",
            oauth_callback,
            methods=["GET"],
            name="oauth_callback",
        ),
        Route("/api/orgs/{org_id}/integrations", list_integrations, methods=["GET"]),
        Route(
            "/api/orgs/{org_id}/integrations/{provider}/sync",
            sync_integration,
            methods=["POST"],
        ),
        Route(
            "/api/orgs/{org_id}/integrations/{provider}", disconnect, methods=["DELETE"]
        ),
        Route(
            "/api/orgs/{org_id}/webhook-secrets", list_webhook_secrets, methods=["GET"]
        ),
        Route(
            "/api/orgs/{org_id}/webhook-secrets/{provider}",
            put_webhook_secret,
            methods=["PUT"],
        ),
    ]
