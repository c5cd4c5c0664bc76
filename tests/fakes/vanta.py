"""A local fake of the Vanta API endpoints that `assay upload vanta` calls.

It listens on 127.0.0.1 only and implements what developer.vanta.com
documents for them:

- ``POST /oauth/token``: JSON client credentials, ``grant_type`` must be
  ``client_credentials``, requested scopes must be granted to the
  application. One active token per application: a new token revokes the
  previous one. At most 5 token requests a minute per application, then 429
  with Retry-After.
- Bearer authentication on ``/v1``: a missing, unknown, revoked or expired
  token gets 401, a token without the endpoint's scope gets 403. At most
  100 API requests a minute per application.
- ``GET /v1/documents``, ``POST /v1/documents/{id}/uploads`` (multipart,
  ``file`` required, ``effectiveAtDate`` and ``description`` optional) and
  ``POST /v1/documents/{id}/submit``.
- ``PUT /v1/resources/custom_resource/sync_all``: replaces the whole set of
  resources of ``resourceId``; resources left out are deleted.

`inject` queues canned responses (429 with Retry-After, 401, 403, 500) for
the next matching requests. Every request is kept in `log`, secrets redacted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_LIMIT_PER_MINUTE = 5
API_LIMIT_PER_MINUTE = 100
TOKEN_SECONDS = 3600

READ_SCOPES = ("vanta-api.all:read",)
UPLOAD_SCOPES = ("vanta-api.documents:upload", "vanta-api.all:write")
RESOURCE_SCOPES = ("connectors.self:write-resource",)


@dataclass
class App:
    client_id: str
    client_secret: str
    scopes: set[str]
    token_requests: list[float] = field(default_factory=list)
    api_requests: list[float] = field(default_factory=list)
    active_token: str | None = None


@dataclass
class Token:
    value: str
    app: App
    scopes: set[str]
    expires: float
    revoked: bool = False


@dataclass
class Fault:
    method: str
    path: re.Pattern
    status: int
    body: dict[str, Any]
    retry_after: str | None
    remaining: int
    client_id: str | None


@dataclass
class Document:
    id: str
    pending: list[dict[str, Any]] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)


class FakeVanta:
    """The fake's state, shared by the handler threads under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.apps: dict[str, App] = {}
        self.tokens: dict[str, Token] = {}
        self.documents: dict[str, Document] = {}
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted: dict[str, list[str]] = {}
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # Set-up ------------------------------------------------------------------

    def start(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_app(self, scopes: list[str]) -> tuple[str, str]:
        """Register an application; return its client id and secret."""
        app = App(
            f"client-{secrets.token_hex(6)}", secrets.token_urlsafe(24), set(scopes)
        )
        with self.lock:
            self.apps[app.client_id] = app
        return app.client_id, app.client_secret

    def add_document(self, document_id: str | None = None) -> str:
        document_id = document_id or f"doc-{secrets.token_hex(6)}"
        with self.lock:
            self.documents[document_id] = Document(document_id)
        return document_id

    def add_resource_type(self, resource_id: str | None = None) -> str:
        resource_id = resource_id or secrets.token_hex(12)
        with self.lock:
            self.resources[resource_id] = {}
        return resource_id

    def inject(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        body: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> None:
        """Respond with `status` to the next `times` requests matching `path` (a regex).

        With `client_id`, only that application's requests match, so tests
        sharing one server do not consume each other's faults.
        """
        with self.lock:
            self.faults.append(
                Fault(
                    method,
                    re.compile(path),
                    status,
                    body or {"error": f"injected {status}"},
                    retry_after,
                    times,
                    client_id,
                )
            )

    def requests(self, client_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.log if client_id in (None, r.get("client_id"))]

    # Handling ----------------------------------------------------------------

    def take_fault(self, method: str, path: str, client_id: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.client_id not in (None, client_id):
                continue
            if fault.remaining and fault.method == method and fault.path.search(path):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _rate_limited(stamps: list[float], limit: int, now: float) -> float | None:
        """Return seconds to wait when `limit` requests fell in the last minute."""
        stamps[:] = [t for t in stamps if now - t < 60]
        if len(stamps) >= limit:
            return 60 - (now - stamps[0])
        stamps.append(now)
        return None

    def issue_token(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not isinstance(body, dict):
            return (
                400,
                {"error": "invalid_request", "error_description": "JSON body expected"},
                {},
            )
        if body.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        app = self.apps.get(str(body.get("client_id")))
        if app is None or not secrets.compare_digest(
            str(body.get("client_secret", "")), app.client_secret
        ):
            return 401, {"error": "invalid_client"}, {}
        wait = self._rate_limited(
            app.token_requests, TOKEN_LIMIT_PER_MINUTE, time.monotonic()
        )
        if wait is not None:
            return 429, {"error": "rate_limited"}, {"Retry-After": str(math.ceil(wait))}
        requested = set(str(body.get("scope", "")).split())
        if not requested or not requested <= app.scopes:
            return (
                400,
                {
                    "error": "invalid_scope",
                    "error_description": " ".join(sorted(requested - app.scopes)),
                },
                {},
            )
        if app.active_token in self.tokens:
            self.tokens[app.active_token].revoked = True
        token = Token(
            secrets.token_urlsafe(32), app, requested, time.monotonic() + TOKEN_SECONDS
        )
        self.tokens[token.value] = token
        app.active_token = token.value
        return (
            200,
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "expires_in": TOKEN_SECONDS,
                "scope": " ".join(sorted(requested)),
            },
            {},
        )

    def authorise(
        self, header: str, scopes: tuple[str, ...]
    ) -> tuple[Token | None, tuple]:
        value = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        token = self.tokens.get(value)
        if token is None or token.revoked or token.expires < time.monotonic():
            state = "revoked" if token is not None and token.revoked else "invalid"
            return None, (401, {"error": f"{state} access token"}, {})
        if not token.scopes & set(scopes):
            return None, (403, {"error": "missing scope", "required": list(scopes)}, {})
        wait = self._rate_limited(
            token.app.api_requests, API_LIMIT_PER_MINUTE, time.monotonic()
        )
        if wait is not None:
            return None, (
                429,
                {"error": "rate_limited"},
                {"Retry-After": str(math.ceil(wait))},
            )
        return token, ()

    def upload(self, document_id: str, content_type: str, body: bytes) -> tuple:
        document = self.documents.get(document_id)
        if document is None:
            return 404, {"error": f"document {document_id} not found"}, {}
        if not content_type.startswith("multipart/form-data"):
            return 415, {"error": "multipart/form-data expected"}, {}
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, Any] = {}
        upload: dict[str, Any] | None = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file" and part.get_filename():
                upload = {
                    "fileName": part.get_filename(),
                    "size": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "contentType": part.get_content_type(),
                }
            elif name:
                fields[name] = payload.decode()
        if upload is None:
            return 400, {"error": "file is required"}, {}
        if "effectiveAtDate" in fields:
            try:
                datetime.fromisoformat(fields["effectiveAtDate"])
            except ValueError:
                return 400, {"error": "effectiveAtDate is not a date"}, {}
        upload.update(fields)
        upload["id"] = f"upload-{secrets.token_hex(4)}"
        document.pending.append(upload)
        return 200, upload, {}

    def submit(self, document_id: str) -> tuple:
        document = self.documents.get(document_id)
        if document is None:
            return 404, {"error": f"document {document_id} not found"}, {}
        if not document.pending:
            return 400, {"error": "no uploaded file to submit"}, {}
        document.submitted += document.pending
        document.pending = []
        return 200, {"id": document_id, "submitted": len(document.submitted)}, {}

    def sync(self, body: Any) -> tuple:
        if not isinstance(body, dict) or not isinstance(body.get("resources"), list):
            return 400, {"error": "resourceId and resources expected"}, {}
        resource_id = body.get("resourceId")
        if resource_id not in self.resources:
            return 404, {"error": f"resource {resource_id} not found"}, {}
        new: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(body["resources"]):
            problem = _resource_problem(item)
            if problem:
                return 422, {"error": f"resources[{index}]: {problem}"}, {}
            if item["uniqueId"] in new:
                return 422, {"error": f"resources[{index}]: duplicate uniqueId"}, {}
            new[item["uniqueId"]] = item
        old = self.resources[resource_id]
        self.deleted[resource_id] = sorted(set(old) - set(new))
        self.resources[resource_id] = new
        return 200, {"success": True}, {}


def _resource_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "not an object"
    for key in ("displayName", "uniqueId", "externalUrl"):
        if not isinstance(item.get(key), str) or not item[key]:
            return f"{key} must be a non-empty string"
    for key, value in (item.get("customProperties") or {}).items():
        if isinstance(value, bool) or isinstance(value, str):
            continue
        if isinstance(value, int) and -(2**31) <= value < 2**31:
            continue
        return f"customProperties.{key} must be a boolean, Int32 or string"
    return None


def _handler(fake: FakeVanta) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests go to fake.log instead of stderr

        def do_GET(self) -> None:
            self.handle_request()

        def do_POST(self) -> None:
            self.handle_request()

        def do_PUT(self) -> None:
            self.handle_request()

        def handle_request(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            with fake.lock:
                status, payload, headers, client_id = self.route(path, body)
                fake.log.append(
                    {
                        "method": self.command,
                        "path": path,
                        "status": status,
                        "client_id": client_id,
                        "authorization": "Bearer <redacted>"
                        if self.headers.get("Authorization")
                        else None,
                    }
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def route(self, path: str, body: bytes) -> tuple:
            token_app = self.client_of(path, body)
            fault = fake.take_fault(self.command, path, token_app)
            if fault is not None:
                headers = (
                    {"Retry-After": fault.retry_after} if fault.retry_after else {}
                )
                return fault.status, fault.body, headers, token_app
            if path == "/oauth/token" and self.command == "POST":
                if not self.headers.get("Content-Type", "").startswith(
                    "application/json"
                ):
                    return 400, {"error": "invalid_request"}, {}, token_app
                return (*fake.issue_token(_json(body)), token_app)

            match = re.fullmatch(r"/v1/documents/([^/]+)/(uploads|submit)", path)
            if path == "/v1/documents" and self.command == "GET":
                scopes = READ_SCOPES
            elif match and self.command == "POST":
                scopes = UPLOAD_SCOPES
            elif (
                path == "/v1/resources/custom_resource/sync_all"
                and self.command == "PUT"
            ):
                scopes = RESOURCE_SCOPES
            else:
                return 404, {"error": f"no route {self.command} {path}"}, {}, token_app
            token, refusal = fake.authorise(
                self.headers.get("Authorization", ""), scopes
            )
            if token is None:
                return (*refusal, token_app)
            client_id = token.app.client_id
            if scopes is READ_SCOPES:
                data = [
                    {"id": d.id, "uploads": len(d.submitted)}
                    for d in fake.documents.values()
                ]
                return 200, {"results": {"data": data}}, {}, client_id
            if scopes is RESOURCE_SCOPES:
                return (*fake.sync(_json(body)), client_id)
            if match.group(2) == "uploads":
                answer = fake.upload(
                    match.group(1), self.headers.get("Content-Type", ""), body
                )
                return (*answer, client_id)
            return (*fake.submit(match.group(1)), client_id)

        def client_of(self, path: str, body: bytes) -> str | None:
            if path == "/oauth/token":
                parsed = _json(body)
                return parsed.get("client_id") if isinstance(parsed, dict) else None
            header = self.headers.get("Authorization", "")
            token = fake.tokens.get(header[len("Bearer ") :])
            return token.app.client_id if token else None

    return Handler


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return None
