"""Inbound webhook receivers for Zendesk, Intercom, GitHub and Razorpay.

``POST /webhooks/{provider}/{org_id}``. A receiver reads the raw body, opens
the organization's signing secret (stored sealed by ``acme.integrations``)
and compares the provider's HMAC with ``hmac.compare_digest`` before it
parses anything. It then records the event id with ``INSERT ... ON CONFLICT
DO NOTHING`` in the transaction that applies the event, so a replay, even a
concurrent one, is acknowledged and changes nothing. Private notes (a
Zendesk comment that is not public, an Intercom ``note`` part) are dropped
before anything is stored or logged.

``ACME_FLAW`` selects one deliberate violation for Assay's own tests; each
name in ``WEBHOOK_FLAWS`` breaks one claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from acme.integrations import webhook_secret
from acme.vault import DecryptionError

logger = logging.getLogger("acme.webhooks")

# Zendesk signs a timestamp but documents no window, so Acme allows five
# minutes, the window Slack, Stripe and Standard Webhooks use.
TIMESTAMP_WINDOW_SECONDS = 300
# The time a flawed receiver spends between its duplicate check and recording
# the event, standing in for a provider API call made while processing.
ENRICHMENT_SECONDS = 0.05

WEBHOOK_FLAWS = (
    "webhook-reserialised",  # the HMAC is checked over json.dumps(json.loads(body))
    "webhook-parse-first",  # the body is parsed first: bad JSON gets 400, not 401
    "webhook-missing-header",  # a delivery without a signature header is accepted
    "webhook-prefix-compare",  # a signature that is a prefix of the expected one passes
    "webhook-process-first",  # the event is applied, then its signature checked
    "webhook-no-dedup",  # every delivery is applied, replays included
    "webhook-dedup-race",  # check-then-insert deduplication, racy under concurrency
    "note-stored",  # private notes are stored as comments
    "note-in-logs",  # the whole payload, notes included, is logged
)


class Rejected(Exception):
    """A delivery that must not be processed, with the status to respond with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# Signatures ----------------------------------------------------------------------


def _hex(secret: str, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret.encode(), message, algorithm).hexdigest()


def _zendesk_expected(secret: str, headers: Headers, body: bytes) -> str:
    stamp = headers.get("x-zendesk-webhook-signature-timestamp", "")
    try:
        signed_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise Rejected(401, "missing or malformed signature timestamp") from None
    if abs(time.time() - signed_at) > TIMESTAMP_WINDOW_SECONDS:
        raise Rejected(401, "signature timestamp outside the allowed window")
    digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Scheme:
    """A provider's scheme: signature header, expected value, event id, effects."""

    signature_header: str
    expected: Callable[[str, Headers, bytes], str]
    event_id: Callable[[Headers, dict[str, Any]], str | None]
    apply: Callable[[Any, str, Headers, dict[str, Any], str], None]


def verify(
    scheme: Scheme, secret: str, headers: Headers, body: bytes, flaw: str
) -> None:
    """Raise Rejected(401) unless the header carries the HMAC of the raw body."""
    received = headers.get(scheme.signature_header)
    if received is None:
        if flaw == "webhook-missing-header":
            logger.warning("accepting a webhook without %s", scheme.signature_header)
            return
        raise Rejected(401, f"missing {scheme.signature_header}")

    signed = body
    if flaw == "webhook-reserialised":
        try:
            signed = json.dumps(json.loads(body)).encode()
        except ValueError:
            raise Rejected(401, "invalid signature") from None
    expected = scheme.expected(secret, headers, signed)
    if flaw == "webhook-prefix-compare":
        if not expected.startswith(received):
            raise Rejected(401, "invalid signature")
        return
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise Rejected(401, "invalid signature")


# Side effects --------------------------------------------------------------------


def _ticket(cur: Any, org: str, provider: str, external_id: str, subject: str) -> Any:
    cur.execute(
        """
        insert into public.tickets (organization_id, provider, external_id, subject)
        values (%s, %s, %s, %s)
        on conflict (organization_id, provider, external_id)
            do update set subject = excluded.subject
        returning id
        """,
        (org, provider, external_id, subject),
    )
    return cur.fetchone()["id"]


def _comment(cur: Any, org: str, ticket_id: Any, body: str, author: str) -> None:
    cur.execute(
        "insert into public.ticket_comments (organization_id, ticket_id, body, author) "
        "values (%s, %s, %s, %s)",
        (org, ticket_id, body, author),
    )


def _is_public(comment: dict[str, Any]) -> bool:
    # Event subscriptions write is_public, the Tickets API public; a comment
    # whose privacy is not stated is treated as private.
    flag = comment.get("is_public", comment.get("public", False))
    return flag is True


def _apply_zendesk(cur: Any, org: str, headers: Headers, payload: dict, flaw: str):
    detail = payload.get("detail") or {}
    comment = (payload.get("event") or {}).get("comment") or {}
    ticket_id = _ticket(
        cur, org, "zendesk", str(detail.get("id", "")), str(detail.get("subject", ""))
    )
    if comment.get("body") and (_is_public(comment) or flaw == "note-stored"):
        author = str((comment.get("author") or {}).get("name", ""))
        _comment(cur, org, ticket_id, str(comment["body"]), author)


def _apply_intercom(cur: Any, org: str, headers: Headers, payload: dict, flaw: str):
    item = (payload.get("data") or {}).get("item") or {}
    parts = (item.get("conversation_parts") or {}).get("conversation_parts") or []
    ticket_id = _ticket(
        cur, org, "intercom", str(item.get("id", "")), str(item.get("title", ""))
    )
    for part in parts:
        # Only replies are customer-visible; notes and every other part type stay out.
        if part.get("part_type") != "comment" and flaw != "note-stored":
            continue
        if part.get("body"):
            author = str((part.get("author") or {}).get("name", ""))
            _comment(cur, org, ticket_id, str(part["body"]), author)


def _apply_github(cur: Any, org: str, headers: Headers, payload: dict, flaw: str):
    if headers.get("x-github-event") not in ("issues", "issue_comment"):
        return
    issue = payload.get("issue") or {}
    repository = (payload.get("repository") or {}).get("full_name", "")
    external_id = f"{repository}#{issue.get('number', '')}"
    ticket_id = _ticket(cur, org, "github", external_id, str(issue.get("title", "")))
    comment = payload.get("comment") or {}
    if comment.get("body"):
        author = str((comment.get("user") or {}).get("login", ""))
        _comment(cur, org, ticket_id, str(comment["body"]), author)


def _apply_razorpay(cur: Any, org: str, headers: Headers, payload: dict, flaw: str):
    entity = ((payload.get("payload") or {}).get("payment") or {}).get("entity") or {}
    action = (
        f"razorpay {payload.get('event', 'event')}: {entity.get('id', '')} "
        f"{entity.get('description', '')}"
    ).strip()
    cur.execute(
        "insert into public.activity_log (organization_id, action) values (%s, %s)",
        (org, action),
    )


def _body_id(headers: Headers, payload: dict[str, Any]) -> str | None:
    value = payload.get("id")
    return str(value) if value else None


def _header_id(name: str) -> Callable[[Headers, dict[str, Any]], str | None]:
    def read(headers: Headers, payload: dict[str, Any]) -> str | None:
        return headers.get(name) or None

    return read


SCHEMES = {
    "zendesk": Scheme(
        "x-zendesk-webhook-signature", _zendesk_expected, _body_id, _apply_zendesk
    ),
    "intercom": Scheme(
        "x-hub-signature",
        lambda secret, headers, body: "sha1=" + _hex(secret, body, "sha1"),
        _body_id,
        _apply_intercom,
    ),
    "github": Scheme(
        "x-hub-signature-256",
        lambda secret, headers, body: "sha256=" + _hex(secret, body),
        _header_id("x-github-delivery"),
        _apply_github,
    ),
    "razorpay": Scheme(
        "x-razorpay-signature",
        lambda secret, headers, body: _hex(secret, body),
        _header_id("x-razorpay-event-id"),
        _apply_razorpay,
    ),
}


# Processing ----------------------------------------------------------------------


def _process(
    state: Any, org: str, provider: str, headers: Headers, payload: dict, flaw: str
) -> str:
    """Apply the event once; return "processed" or "duplicate"."""
    scheme = SCHEMES[provider]
    event_id = scheme.event_id(headers, payload)
    if not event_id:
        raise Rejected(400, "the delivery carries no event id")
    if flaw == "webhook-dedup-race":
        return _process_racy(state, org, provider, headers, payload, event_id)

    # service-role: a webhook carries no user session; the organization comes
    # from the URL and is trusted because the delivery verified under its secret.
    with state.db.as_service() as cur:
        if flaw != "webhook-no-dedup":
            cur.execute(
                """
                insert into public.webhook_events (organization_id, provider, event_id)
                values (%s, %s, %s)
                on conflict (provider, event_id) do nothing
                returning event_id
                """,
                (org, provider, event_id),
            )
            if cur.fetchone() is None:
                logger.info("ignored duplicate %s event %s", provider, event_id)
                return "duplicate"
        scheme.apply(cur, org, headers, payload, flaw)
    logger.info("processed %s event %s for organization %s", provider, event_id, org)
    return "processed"


def _process_racy(
    state: Any, org: str, provider: str, headers: Headers, payload: dict, event_id: str
) -> str:
    # This variant checks, applies and records in three transactions, so
    # concurrent copies of one event all pass the check before any is recorded.
    # service-role: a webhook has no user session; the signature verified.
    with state.db.as_service() as cur:
        cur.execute(
            "select 1 from public.webhook_events where provider = %s and event_id = %s",
            (provider, event_id),
        )
        if cur.fetchone() is not None:
            return "duplicate"

    # service-role: a webhook has no user session; the signature verified.
    with state.db.as_service() as cur:
        SCHEMES[provider].apply(cur, org, headers, payload, "")
    time.sleep(ENRICHMENT_SECONDS)

    # service-role: a webhook has no user session; the signature verified.
    with state.db.as_service() as cur:
        cur.execute(
            "insert into public.webhook_events (organization_id, provider, event_id) "
            "values (%s, %s, %s) on conflict (provider, event_id) do nothing",
            (org, provider, event_id),
        )
    return "processed"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise Rejected(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "the body is not a JSON object")
    return payload


def _receive(state: Any, provider: str, org: str, headers: Headers, body: bytes) -> str:
    """Verify, parse and apply one delivery; raise Rejected to refuse it."""
    flaw = state.settings.flaw
    scheme = SCHEMES[provider]
    if flaw == "note-in-logs":
        logger.info(
            "received %s webhook: %s", provider, body.decode("utf-8", "replace")
        )
    if flaw == "webhook-parse-first":
        _parse(body)

    try:
        secret = webhook_secret(state, org, provider)
    except DecryptionError:
        logger.warning("the %s signing secret of %s could not be opened", provider, org)
        raise Rejected(401, "the signing secret cannot be used; register it again")
    if secret is None:
        raise Rejected(401, f"no {provider} signing secret is registered")

    if flaw == "webhook-process-first":
        try:
            status = _process(state, org, provider, headers, _parse(body), flaw)
        except Rejected:
            status = "rejected"
        verify(scheme, secret, headers, body, flaw)
        return status

    verify(scheme, secret, headers, body, flaw)
    return _process(state, org, provider, headers, _parse(body), flaw)


async def receive_webhook(request: Request) -> Response:
    """Receive a provider's webhook delivery for an organization."""
    provider = request.path_params["provider"]
    if provider not in SCHEMES:
        return JSONResponse({"error": "unknown provider"}, status_code=404)
    try:
        org = str(uuid.UUID(request.path_params["org_id"]))
    except ValueError:
        return JSONResponse({"error": "organization not found"}, status_code=404)

    body = await request.body()
    try:
        status = await run_in_threadpool(
            _receive, request.app.state, provider, org, request.headers, body
        )
    except Rejected as rejection:
        logger.warning(
            "rejected a %s webhook for organization %s: %s",
            provider,
            org,
            rejection.reason,
        )
        return JSONResponse({"error": rejection.reason}, status_code=rejection.status)
    return JSONResponse({"status": status})


def routes() -> list[BaseRoute]:
    return [Route("/webhooks/{provider}/{org_id}", receive_webhook, methods=["POST"])]
