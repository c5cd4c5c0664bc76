"""Upload an evidence folder to Vanta through its public API.

What is sent (developer.vanta.com, API v1):

- ``POST /oauth/token`` with JSON client credentials and the scopes. An
  application has one active token, and asking for a new one revokes the
  old, so one upload requests a token once and shares it across calls.
  The endpoint allows 5 requests a minute.
- ``POST /v1/documents/{id}/uploads`` (multipart, ``file``, with
  ``description`` and ``effectiveAtDate``) for each configured file, then
  ``POST /v1/documents/{id}/submit`` for each document.
- ``PUT /v1/resources/custom_resource/sync_all`` with one resource per
  control. The call replaces the whole set, so every control of the
  evidence is always sent; a control left out would be deleted in Vanta.

A 429 is retried after its Retry-After (or 1, 2, 4 ... seconds), at most
``max_retries`` times and never waiting longer than ``max_wait_seconds``.
401, 403 and other errors stop the upload with a message saying what was
already sent. The uploader only reads the evidence folder.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import mimetypes
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO
from urllib.parse import urlsplit

import httpx

from assay.config import Config, VantaConfig
from assay.errors import AssayError, ConfigError, UsageError
from assay.reports import PASSING

__all__ = ["Step", "VantaClient", "VantaError", "plan_upload", "resources", "upload"]

logger = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"
SYNC_PATH = "/v1/resources/custom_resource/sync_all"
DOCUMENT_SCOPE = "vanta-api.documents:upload"
RESOURCE_SCOPE = "connectors.self:write-resource"
INT32 = (-(2**31), 2**31 - 1)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class VantaError(AssayError):
    """Vanta rejected a request or could not be reached; the upload stopped."""


@dataclass(frozen=True)
class Step:
    """One API call of an upload, planned before anything is sent."""

    method: str
    path: str
    what: str
    json_body: Any = None
    file: Path | None = None
    form: dict[str, str] = field(default_factory=dict)


# Planning --------------------------------------------------------------------


def _summary_text(evidence: dict[str, Any]) -> str:
    counts = evidence.get("summary") or {}
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())


def resources(evidence: dict[str, Any], external_url: str) -> list[dict[str, Any]]:
    """Return one Vanta custom resource per control of the evidence."""
    run = evidence.get("run", {})
    commit = (run.get("git") or {}).get("commit") or "unknown"
    rows = []
    for control in evidence["controls"]:
        findings = control.get("findings", [])
        blocking = [
            f for f in findings if f.get("level") in ("error", "undecided")
            and not f.get("waived")
        ]
        rows.append(
            {
                "displayName": f"{control['id']} {control.get('title', '')}".strip(),
                "uniqueId": f"assay-{control['id']}",
                "externalUrl": external_url.format(
                    control=control["id"], commit=commit
                ),
                "customProperties": {
                    "controlId": control["id"],
                    "status": control["status"],
                    "passing": control["status"] in PASSING,
                    "findings": min(len(findings), INT32[1]),
                    "blockingFindings": min(len(blocking), INT32[1]),
                    "criteria": ", ".join(control.get("criteria", [])),
                    "runStarted": str(run.get("started", "")),
                    "gitCommit": commit,
                },
            }
        )
    return rows


def plan_upload(
    folder: Path, evidence: dict[str, Any], settings: VantaConfig, config: Config
) -> list[Step]:
    """Return every call of the upload, or raise before anything is sent."""
    if not settings.documents and not settings.resource_id:
        raise config.error(
            ("vanta",),
            None,
            "nothing to upload: no documents and no resource_id",
            "Map evidence files to Vanta document ids under vanta.documents, "
            "or set vanta.resource_id",
        )
    run = evidence.get("run", {})
    description = (
        f"Assay evidence of the run started {run.get('started', '?')} "
        f"(commit {str((run.get('git') or {}).get('commit') or '?')[:12]}): "
        f"{_summary_text(evidence)}"
    )
    effective = str(run.get("finished") or datetime.now(timezone.utc).isoformat())
    steps: list[Step] = []
    for name, document_id in settings.documents.items():
        if not str(document_id).strip():
            raise config.error(
                ("vanta", "documents", name),
                document_id,
                "missing document id",
                "Copy the id of the Vanta document this file is evidence for",
            )
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise config.error(
                ("vanta", "documents", name),
                name,
                f"no such file in {folder}",
                "Name a file of the evidence folder, e.g. report.html",
            )
        steps.append(
            Step(
                "POST",
                f"/v1/documents/{document_id}/uploads",
                f"upload {name} to document {document_id}",
                file=path,
                form={"description": description, "effectiveAtDate": effective},
            )
        )
    for document_id in dict.fromkeys(settings.documents.values()):
        steps.append(
            Step("POST", f"/v1/documents/{document_id}/submit", f"submit document {document_id}")
        )
    if settings.resource_id:
        steps.append(_sync_step(evidence, settings, config))
    return steps


def _sync_step(evidence: dict[str, Any], settings: VantaConfig, config: Config) -> Step:
    if not settings.external_url:
        raise config.error(
            ("vanta", "external_url"),
            None,
            "resources need an external URL",
            "Set external_url, e.g. the CI run's page; {control} and {commit} are "
            "filled in",
        )
    if not evidence["controls"]:
        raise UsageError(
            "the evidence has no controls, and syncing an empty set would delete "
            "every Assay resource in Vanta; upload the folder of a run with controls"
        )
    body = {"resourceId": settings.resource_id, "resources": resources(evidence, settings.external_url)}
    return Step(
        "PUT",
        SYNC_PATH,
        f"sync {len(body['resources'])} controls to resource {settings.resource_id}",
        json_body=body,
    )


def scopes_for(settings: VantaConfig) -> list[str]:
    """Return the configured scopes, or the ones the planned calls need."""
    if settings.scopes:
        return list(settings.scopes)
    needed = []
    if settings.documents:
        needed.append(DOCUMENT_SCOPE)
    if settings.resource_id:
        needed.append(RESOURCE_SCOPE)
    return needed


def check_base_url(settings: VantaConfig, config: Config) -> str:
    """Return the base URL without a trailing slash; plain http only on loopback."""
    parts = urlsplit(settings.base_url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in LOOPBACK
    )
    if not parts.hostname or not secure:
        raise config.error(
            ("vanta", "base_url"),
            settings.base_url,
            "client secrets travel only over https (plain http only to loopback)",
            "Use https://api.vanta.com, or https://api.vanta-gov.com for Vanta Gov",
        )
    return settings.base_url.rstrip("/")


# Sending ---------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


class VantaClient:
    """Sends planned steps with one shared token, or prints them in a dry run."""

    def __init__(
        self,
        settings: VantaConfig,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        dry_run: bool = False,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.dry_run = dry_run
        self.http = http or httpx.Client(timeout=settings.timeout_seconds)
        self.sleep = sleep
        self.out = out or sys.stdout
        self.access_token: str | None = None
        self.sent: list[str] = []

    # Output ------------------------------------------------------------------

    def redact(self, text: str) -> str:
        for secret in (self.client_secret, self.access_token):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    def _print_request(self, method: str, url: str, step: Step | None, body: Any) -> None:
        lines = [f"{method} {url}"]
        if step is not None:
            lines.append("  Authorization: Bearer <redacted>")
        if step is not None and step.file is not None:
            data = step.file.read_bytes()
            lines.append(
                f"  multipart file={step.file.name} ({len(data)} bytes, sha256 "
                f"{hashlib.sha256(data).hexdigest()})"
            )
            lines += [f"  multipart {key}={value}" for key, value in step.form.items()]
        if body is not None:
            lines.append("  " + json.dumps(body, indent=2).replace("\n", "\n  "))
        self.out.write(self.redact("\n".join(lines)) + "\n")

    # Transport ---------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request, retrying on 429 within the configured bounds."""
        url = self.base_url + path
        for attempt in range(self.settings.max_retries + 1):
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise VantaError(
                    f"{method} {url}: could not reach Vanta ({type(exc).__name__}: "
                    f"{self.redact(str(exc))}){self._sent_note()}"
                ) from None
            logger.info("%s %s -> %d", method, path, response.status_code)
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            wait = wait if wait is not None else float(2**attempt)
            if attempt == self.settings.max_retries or wait > self.settings.max_wait_seconds:
                raise VantaError(
                    f"{method} {url}: Vanta responded 429 (rate limited) "
                    f"{attempt + 1} times; the last Retry-After was {wait:g} s, and "
                    f"the limits are {self.settings.max_retries} retries and "
                    f"{self.settings.max_wait_seconds:g} s. Retry later"
                    f"{self._sent_note()}"
                )
            logger.warning("%s %s: 429, retrying in %.1f s", method, path, wait)
            self.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _sent_note(self) -> str:
        if not self.sent:
            return "; nothing was sent"
        return "; already sent: " + "; ".join(self.sent)

    def _fail(self, method: str, path: str, response: httpx.Response) -> VantaError:
        status = response.status_code
        body = self.redact(response.text[:300].strip())
        url = self.base_url + path
        if path == TOKEN_PATH and status in (400, 401):
            reason = (
                f"Vanta rejected the client credentials or scopes ({status}: {body}); "
                f"check {self.settings.client_id_env}, {self.settings.client_secret_env} "
                f"and that the application is granted {' '.join(self.scopes)}"
            )
        elif status == 401:
            reason = (
                f"Vanta rejected the access token (401: {body}); another process may "
                "have asked for a new token for this application, which revokes "
                "the old one. Run one upload at a time"
            )
        elif status == 403:
            reason = (
                f"Vanta refused the call (403: {body}); the application lacks the "
                "scope for it. Grant the scope in Vanta's developer console and "
                "list it under vanta.scopes"
            )
        else:
            reason = f"Vanta responded {status} ({body})"
        return VantaError(f"{method} {url}: {reason}{self._sent_note()}")

    # Calls -------------------------------------------------------------------

    def token(self) -> str:
        """Ask for the run's access token once; later calls reuse it."""
        if self.access_token is not None:
            return self.access_token
        body = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": " ".join(self.scopes),
            "grant_type": "client_credentials",
        }
        if self.dry_run:
            shown = "<redacted>" if self.client_secret else (
                f"<unset: {self.settings.client_secret_env}>"
            )
            self._print_request(
                "POST", self.base_url + TOKEN_PATH, None, {**body, "client_secret": shown}
            )
            self.access_token = "dry-run-token"
            return self.access_token
        response = self._send("POST", TOKEN_PATH, json=body)
        if response.status_code != 200:
            raise self._fail("POST", TOKEN_PATH, response)
        try:
            self.access_token = str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError):
            raise VantaError(
                f"POST {self.base_url}{TOKEN_PATH}: the response contains no access_token"
            ) from None
        self.out.write(f"POST {self.base_url}{TOKEN_PATH}: 200, token received\n")
        return self.access_token

    def run(self, step: Step) -> None:
        """Send one planned step with the shared token."""
        token = self.token()
        if self.dry_run:
            self._print_request(step.method, self.base_url + step.path, step, step.json_body)
            return
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers}
        if step.json_body is not None:
            kwargs["json"] = step.json_body
        if step.file is not None:
            media = mimetypes.guess_type(step.file.name)[0] or "application/octet-stream"
            kwargs["files"] = {"file": (step.file.name, step.file.read_bytes(), media)}
            kwargs["data"] = step.form
        response = self._send(step.method, step.path, **kwargs)
        if not 200 <= response.status_code < 300:
            raise self._fail(step.method, step.path, response)
        self.sent.append(step.what)
        self.out.write(f"{step.method} {self.base_url}{step.path}: {response.status_code}\n")


def _credential(environ: Mapping[str, str], name: str, key: str, config: Config) -> str:
    value = environ.get(name, "")
    if not value:
        raise config.error(
            ("vanta", key),
            name,
            f"environment variable {name} is not set",
            f"Export {name} from your CI secrets, or name another variable in {key}",
        )
    return value


def upload(
    folder: Path,
    evidence: dict[str, Any],
    config: Config,
    *,
    dry_run: bool = False,
    environ: Mapping[str, str] = os.environ,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> list[str]:
    """Upload a verified evidence folder as configured; return what was sent."""
    settings = config.vanta
    if settings is None:
        raise ConfigError(
            "no vanta section",
            file=config.file,
            fix="Add vanta: with documents (file: document id) and/or resource_id",
        )
    base_url = check_base_url(settings, config)
    steps = plan_upload(folder, evidence, settings, config)
    if dry_run:
        client_id = environ.get(settings.client_id_env) or f"${settings.client_id_env}"
        client_secret = environ.get(settings.client_secret_env, "")
    else:
        client_id = _credential(environ, settings.client_id_env, "client_id_env", config)
        client_secret = _credential(
            environ, settings.client_secret_env, "client_secret_env", config
        )
    client = VantaClient(
        settings,
        base_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes_for(settings),
        dry_run=dry_run,
        http=http,
        sleep=sleep,
        out=out,
    )
    try:
        for step in steps:
            client.run(step)
    finally:
        if http is None:
            client.http.close()
    return client.sent
