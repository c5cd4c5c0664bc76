"""Local fakes of the provider APIs an application calls with an OAuth token.

Each fake is an HTTP server on 127.0.0.1 that implements a provider's
documented OAuth token exchange and one identity endpoint, and records every
bearer token it receives. A check primes a fake with the tokens to grant for
an authorization code and lets the application run its OAuth callback and a
sync. It then compares the bearer tokens the fake received with the ones it
granted, which proves the value stored in the database decrypts to the token
in use.

Paths, from each provider's API reference:

- Zendesk: ``POST /oauth/tokens``, ``GET /api/v2/users/me.json``
- Intercom: ``POST /auth/eagle/token``, ``GET /me``
- GitHub: ``POST /login/oauth/access_token``, ``GET /user``
- Slack: ``POST /api/oauth.v2.access``, ``POST /api/auth.test``
- Jira (Atlassian): ``POST /oauth/token``, ``GET /oauth/token/accessible-resources``
- Linear: ``POST /oauth/token``, ``POST /graphql``

Every fake answers any path with a bearer token as an identity call, so an
application that calls another documented endpoint is still recorded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

__all__ = ["PROVIDERS", "ProviderFake", "Received", "TOKEN_PATHS", "start_fakes"]

logger = logging.getLogger(__name__)

PROVIDERS = ("zendesk", "intercom", "github", "slack", "jira", "linear")

TOKEN_PATHS = {
    "zendesk": "/oauth/tokens",
    "intercom": "/auth/eagle/token",
    "github": "/login/oauth/access_token",
    "slack": "/api/oauth.v2.access",
    "jira": "/oauth/token",
    "linear": "/oauth/token",
}


@dataclass(frozen=True)
class Received:
    """One request a fake received: the method, path and credential it carried."""

    method: str
    path: str
    bearer: str | None
    grant_type: str | None = None
    code: str | None = None
    refresh_token: str | None = None
    status: int = 200
    at: float = 0.0


@dataclass
class ProviderFake:
    """One provider's fake API: its grants, its scripted failures and its log."""

    name: str
    server: ThreadingHTTPServer | None = None
    grants: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    refresh_grants: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def grant(self, code: str, access_token: str, refresh_token: str | None) -> None:
        """Grant these tokens to a token exchange that presents `code`."""
        with self.lock:
            self.grants[code] = (access_token, refresh_token)
            if refresh_token:
                self.refresh_grants[refresh_token] = (access_token, refresh_token)
            self.valid_tokens.add(access_token)

    def fail_next(self, status: int = 500, count: int = 1) -> None:
        """Fail the next `count` API calls with `status` (a provider outage)."""
        with self.lock:
            self.failures.extend([status] * count)

    def mark(self) -> int:
        """Return a position in the log, for `since`."""
        with self.lock:
            return len(self.received)

    def since(self, position: int) -> list[Received]:
        with self.lock:
            return list(self.received[position:])

    def bearer_tokens(self, position: int = 0) -> list[str]:
        """Bearer tokens received by API calls after `position`."""
        return [r.bearer for r in self.since(position) if r.bearer is not None]

    # Request handling -------------------------------------------------------------

    def answer(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        form = _parse_form(headers.get("Content-Type", ""), body)
        bearer = _bearer(headers.get("Authorization", ""))
        if method == "POST" and path == TOKEN_PATHS[self.name] and bearer is None:
            return self._token_exchange(method, path, form)
        return self._api_call(method, path, bearer)

    def _token_exchange(
        self, method: str, path: str, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type")
        with self.lock:
            if grant_type == "refresh_token":
                tokens = self.refresh_grants.get(form.get("refresh_token", ""))
            else:
                tokens = self.grants.get(form.get("code", ""))
            status = 200 if tokens else 400
            self.received.append(
                Received(
                    method,
                    path,
                    None,
                    grant_type=grant_type,
                    code=form.get("code"),
                    refresh_token=form.get("refresh_token"),
                    status=status,
                    at=time.time(),
                )
            )
        if tokens is None:
            return 400, {"error": "invalid_grant"}
        access, refresh = tokens
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 7200,
            "scope": "read",
        }
        if refresh:
            body["refresh_token"] = refresh
        if self.name == "slack":
            body["ok"] = True
        if self.name == "intercom":
            body["token"] = access
        return 200, body

    def _api_call(
        self, method: str, path: str, bearer: str | None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.failures:
                status = self.failures.pop(0)
            elif bearer is None or bearer not in self.valid_tokens:
                status = 401
            else:
                status = 200
            self.received.append(
                Received(method, path, bearer, status=status, at=time.time())
            )
        if status == 401:
            return 401, {"error": "invalid_token"}
        if status >= 400:
            return status, {"error": "internal error at the provider"}
        return 200, _identity(self.name)


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    if not body:
        return {}
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return (
            {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        )
    parsed = parse_qs(body.decode("utf-8", errors="replace"))
    return {key: values[0] for key, values in parsed.items()}


def _identity(provider: str) -> dict[str, Any]:
    """Return an identity response in the shape each provider documents."""
    if provider == "slack":
        return {"ok": True, "user_id": "U0001", "team_id": "T0001"}
    if provider == "linear":
        return {
            "data": {"viewer": {"id": "lin-user-1", "email": "viewer@example.test"}}
        }
    if provider == "jira":
        return {"id": "cloud-1", "name": "acme", "scopes": ["read:jira-work"]}
    if provider == "zendesk":
        return {"user": {"id": 1, "email": "agent@example.test"}, "id": 1}
    return {"id": f"{provider}-user-1", "email": "user@example.test"}


def _handler(fake: ProviderFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            status, payload = fake.answer(self.command, path, self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # Request lines can carry codes; keep them out of Assay's own logs.
            pass

    return Handler


class _Fakes:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.fakes = {name: ProviderFake(name) for name in names}
        self.threads: list[threading.Thread] = []

    def start(self) -> dict[str, ProviderFake]:
        for fake in self.fakes.values():
            fake.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
            fake.server.daemon_threads = True
            thread = threading.Thread(
                target=fake.server.serve_forever,
                name=f"assay-fake-{fake.name}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
            logger.info("started the %s provider fake at %s", fake.name, fake.base_url)
        return self.fakes

    def stop(self) -> None:
        for fake in self.fakes.values():
            if fake.server is not None:
                fake.server.shutdown()
                fake.server.server_close()
        for thread in self.threads:
            thread.join(5)


@contextmanager
def start_fakes(
    names: tuple[str, ...] = PROVIDERS,
) -> Iterator[dict[str, ProviderFake]]:
    """Yield running fakes by provider name; stop them on exit."""
    unknown = [name for name in names if name not in TOKEN_PATHS]
    if unknown:
        raise ValueError(
            f"no provider fake for {', '.join(unknown)}; fakes exist for "
            + ", ".join(PROVIDERS)
        )
    fakes = _Fakes(tuple(names))
    try:
        yield fakes.start()
    finally:
        fakes.stop()
