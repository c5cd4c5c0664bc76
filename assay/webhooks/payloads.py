"""Event bodies shaped like each provider's deliveries, carrying Assay's markers.

Every event puts its public text (a comment, a message, a description) in
the place the provider puts it, so a receiver that stores public content
stores the marker, and the side-effect SQL can count the event by it. The
shapes follow the providers' documented envelopes; fields a receiver would
not need are left out.

Zendesk and Intercom events can also carry private notes, which the
internal-notes probe uses.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

__all__ = [
    "Event",
    "EventBuilder",
    "BUILDERS",
    "build_event",
    "intercom_conversation",
    "new_event_id",
    "new_marker",
    "zendesk_comment",
]

# Unicode in every public text, so the body has non-ASCII characters to escape.
ACCENTED = "caf\u00e9 na\u00efve \u2713"


@dataclass(frozen=True)
class Event:
    """One delivery's content before serialisation: payload and provider headers."""

    event_id: str
    marker: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def new_event_id(provider: str) -> str:
    """Return an event id shaped like the provider's own ids."""
    token = secrets.token_hex(12)
    shapes = {
        "zendesk": f"01{token.upper()}",
        "intercom": f"notif_{token}",
        "github": str(uuid.uuid4()),
        "linear": str(uuid.uuid4()),
        "razorpay": f"evt_{token}",
        "slack": f"Ev{token.upper()}",
        "stripe": f"evt_{token}",
        "standard-webhooks": f"msg_{token}",
    }
    return shapes.get(provider, token)


def _iso(timestamp: int) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


Built = tuple[dict[str, Any], dict[str, str]]
# A builder takes (event id, public text, Unix time) and returns the payload
# and the provider's extra headers.
EventBuilder = Callable[[str, str, int], Built]


def _number() -> int:
    return secrets.randbelow(10**9) + 10**6


def zendesk_comment(
    event_id: str, text: str, *, timestamp: int, public: bool, ticket: int | None = None
) -> dict[str, Any]:
    """Build a Zendesk ``ticket.comment_added`` event-subscription payload.

    The comment's privacy is written both as ``is_public`` (event
    subscriptions) and ``public`` (the Tickets API and trigger payloads).
    NOTE: Zendesk's own page for this event was not read, so the envelope
    follows secondary sources and a receiver that reads yet another field
    name would not be tested by this payload.
    """
    ticket = ticket or _number()
    return {
        "type": "zen:event-type:ticket.comment_added",
        "account_id": 7001,
        "id": event_id,
        "time": _iso(timestamp),
        "zendesk_event_version": "2022-11-06",
        "subject": f"zen:ticket:{ticket}",
        "detail": {
            "id": str(ticket),
            "subject": f"Printer on fire ({ACCENTED})",
            "status": "OPEN",
            "via": {"channel": "web"},
            "url": f"https://acme.zendesk.com/agent/tickets/{ticket}",
        },
        "event": {
            "comment": {
                "id": str(_number()),
                "body": text,
                "is_public": public,
                "public": public,
                "author": {"id": str(_number()), "is_staff": not public, "name": "Ana"},
            }
        },
    }


def intercom_conversation(
    event_id: str,
    parts: list[tuple[str, str]],
    *,
    timestamp: int,
    topic: str = "conversation.admin.replied",
) -> dict[str, Any]:
    """Build an Intercom notification whose conversation carries `parts`.

    Each part is (part type, body). A part type of ``note`` is an admin-only
    note, and ``comment`` is a reply.
    """
    conversation = str(_number())
    return {
        "type": "notification_event",
        "app_id": "acme0001",
        "id": event_id,
        "topic": topic,
        "created_at": timestamp,
        "delivery_attempts": 1,
        "data": {
            "type": "notification_event_data",
            "item": {
                "type": "conversation",
                "id": conversation,
                "title": f"Billing question ({ACCENTED})",
                "state": "open",
                "conversation_parts": {
                    "type": "conversation_part.list",
                    "conversation_parts": [
                        {
                            "type": "conversation_part",
                            "id": str(_number()),
                            "part_type": part_type,
                            "body": f"<p>{body}</p>",
                            "created_at": timestamp,
                            "author": {"type": "admin", "id": "8001", "name": "Bo"},
                        }
                        for part_type, body in parts
                    ],
                    "total_count": len(parts),
                },
            },
        },
    }


def _zendesk(event_id: str, text: str, timestamp: int) -> Built:
    return zendesk_comment(event_id, text, timestamp=timestamp, public=True), {}


def _intercom(event_id: str, text: str, timestamp: int) -> Built:
    parts = [("comment", text)]
    return intercom_conversation(event_id, parts, timestamp=timestamp), {}


def _github(event_id: str, text: str, timestamp: int) -> Built:
    number = _number()
    payload = {
        "action": "created",
        "issue": {
            "id": _number(),
            "number": number,
            "title": f"Crash on login ({ACCENTED})",
            "state": "open",
            "html_url": f"https://github.com/acme/app/issues/{number}",
        },
        "comment": {
            "id": _number(),
            "body": text,
            "user": {"login": "octocat", "id": 1},
            "created_at": _iso(timestamp),
        },
        "repository": {"id": 42, "full_name": "acme/app"},
        "sender": {"login": "octocat", "id": 1},
    }
    return payload, {"X-GitHub-Event": "issue_comment"}


def _razorpay(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "entity": "event",
        "account_id": "acc_AcmeTest0001",
        "event": "payment.captured",
        "contains": ["payment"],
        "payload": {
            "payment": {
                "entity": {
                    "id": f"pay_{secrets.token_hex(7)}",
                    "entity": "payment",
                    "amount": 4900,
                    "currency": "INR",
                    "status": "captured",
                    "description": text,
                    "notes": {"plan": f"team ({ACCENTED})"},
                }
            }
        },
        "created_at": timestamp,
    }
    return payload, {}


def _slack(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "type": "event_callback",
        "team_id": "T0ACME",
        "api_app_id": "A0ACME",
        "event": {
            "type": "message",
            "channel": "C0SUPPORT",
            "user": "U0ANA",
            "text": text,
            "ts": f"{timestamp}.000100",
        },
        "event_id": event_id,
        "event_time": timestamp,
    }
    return payload, {}


def _linear(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "action": "create",
        "type": "Comment",
        "data": {
            "id": secrets.token_hex(8),
            "body": text,
            "issueId": secrets.token_hex(8),
            "createdAt": _iso(timestamp),
        },
        "url": "https://linear.app/acme/issue/ACME-1",
        "createdAt": _iso(timestamp),
        "organizationId": "org-acme",
        "webhookTimestamp": timestamp * 1000,
        "webhookId": "wh-acme",
    }
    return payload, {}


def _jira(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "timestamp": timestamp * 1000,
        "webhookEvent": "comment_created",
        "comment": {"id": str(_number()), "body": text, "created": _iso(timestamp)},
        "issue": {
            "id": str(_number()),
            "key": "ACME-1",
            "fields": {"summary": ACCENTED},
        },
    }
    return payload, {}


def _stripe(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "id": event_id,
        "object": "event",
        "type": "customer.updated",
        "created": timestamp,
        "livemode": False,
        "data": {
            "object": {
                "id": f"cus_{secrets.token_hex(7)}",
                "object": "customer",
                "description": text,
                "name": ACCENTED,
            }
        },
    }
    return payload, {}


def _standard_webhooks(event_id: str, text: str, timestamp: int) -> Built:
    payload = {
        "type": "message.created",
        "timestamp": _iso(timestamp),
        "data": {"text": text, "author": ACCENTED},
    }
    return payload, {}


BUILDERS: dict[str, EventBuilder] = {
    "zendesk": _zendesk,
    "intercom": _intercom,
    "github": _github,
    "razorpay": _razorpay,
    "slack": _slack,
    "linear": _linear,
    "jira": _jira,
    "stripe": _stripe,
    "standard-webhooks": _standard_webhooks,
}


def build_event(
    provider: str, *, timestamp: int, marker: str | None = None, filler: str = ""
) -> Event:
    """Build a fresh event of `provider` whose public text contains a marker.

    The marker is new unless given; `filler` is appended to the public text
    to make a large body.
    """
    event_id = new_event_id(provider)
    marker = marker or new_marker()
    payload, headers = BUILDERS[provider](
        event_id, f"{marker} {ACCENTED}{filler}", timestamp
    )
    return Event(event_id, marker, payload, headers)


def new_marker() -> str:
    """Return a unique, non-secret text that identifies one event's side effects."""
    return f"assay-{secrets.token_hex(8)}"
