"""Webhook signers: each provider's documented HMAC scheme, as a sender applies it.

A signer turns a raw body, a signing secret, a timestamp and an event id into
the headers the provider would send. Probes also need the parts of a
signature (header, scheme prefix, digest encoding) to forge near misses, so
a signer exposes them instead of hiding them behind ``headers``.

Sources for each scheme: Zendesk, Intercom, GitHub and Slack developer
documentation; razorpay/markdown-docs webhooks/validate-test.md; Linear's
SDK (packages/sdk/src/webhooks/client.ts); stripe-node src/Webhooks.ts; the
Standard Webhooks specification. Jira Cloud's admin webhook scheme and
Linear's delivery header come from secondary sources only.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "HmacSigner",
    "Location",
    "SIGNERS",
    "Signer",
    "get_signer",
    "known_providers",
]


@dataclass(frozen=True)
class Location:
    """The place in a delivery that carries a value: a header or a dotted body path."""

    where: Literal["header", "body"]
    name: str

    def __str__(self) -> str:
        return f"{self.where} {self.name}"


@runtime_checkable
class Signer(Protocol):
    """One provider's webhook signature scheme."""

    name: str
    signature_header: str
    scheme_prefix: str
    encoding: Literal["hex", "base64"]
    event_id: Location
    timestamp: Location | None
    window_seconds: int | None

    @property
    def signs_timestamp(self) -> bool:
        """True when the signed bytes cover a timestamp, so staleness is checkable."""
        ...

    def headers(
        self, body: bytes, secret: str, *, timestamp: int, event_id: str
    ) -> dict[str, str]:
        """Return the headers the provider sends with `body` (signature included)."""
        ...

    def signature(
        self, body: bytes, secret: str, *, timestamp: int, event_id: str
    ) -> str:
        """Return the signature text: scheme prefix plus encoded digest."""
        ...

    def header_value(self, signature: str, *, timestamp: int) -> str:
        """Wrap a signature text into the value of `signature_header`."""
        ...

    def new_secret(self) -> str:
        """Return a fresh random secret in the format the provider issues."""
        ...


@dataclass(frozen=True)
class HmacSigner:
    """A scheme that HMACs the raw body, or the body with a timestamp or id.

    ``window_seconds`` is the replay window the provider (or its official
    library) documents. It is None when the provider signs no timestamp, or
    signs one but states no window.
    """

    name: str
    signature_header: str
    event_id: Location
    algorithm: str = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    scheme_prefix: str = ""
    timestamp: Location | None = None
    window_seconds: int | None = None

    @property
    def signs_timestamp(self) -> bool:
        return self.timestamp is not None

    def key(self, secret: str) -> bytes:
        return secret.encode()

    def signed_bytes(self, body: bytes, *, timestamp: int, event_id: str) -> bytes:
        return body

    def digest(
        self, body: bytes, secret: str, *, timestamp: int, event_id: str
    ) -> bytes:
        """Return the raw HMAC over the bytes this provider signs."""
        message = self.signed_bytes(body, timestamp=timestamp, event_id=event_id)
        return hmac.new(self.key(secret), message, self.algorithm).digest()

    def encode(self, digest: bytes) -> str:
        if self.encoding == "hex":
            return digest.hex()
        return base64.b64encode(digest).decode("ascii")

    def signature(
        self, body: bytes, secret: str, *, timestamp: int, event_id: str
    ) -> str:
        digest = self.digest(body, secret, timestamp=timestamp, event_id=event_id)
        return self.scheme_prefix + self.encode(digest)

    def header_value(self, signature: str, *, timestamp: int) -> str:
        return signature

    def timestamp_text(self, timestamp: int) -> str:
        """Format a Unix time the way the provider writes it in its header."""
        return str(timestamp)

    def extra_headers(self, *, timestamp: int, event_id: str) -> dict[str, str]:
        """Return the headers besides the signature: timestamp and header event id."""
        headers = {}
        if self.timestamp is not None and self.timestamp.where == "header":
            if self.timestamp.name != self.signature_header:
                headers[self.timestamp.name] = self.timestamp_text(timestamp)
        if self.event_id.where == "header":
            headers[self.event_id.name] = event_id
        return headers

    def headers(
        self, body: bytes, secret: str, *, timestamp: int, event_id: str
    ) -> dict[str, str]:
        signature = self.signature(body, secret, timestamp=timestamp, event_id=event_id)
        headers = self.extra_headers(timestamp=timestamp, event_id=event_id)
        headers[self.signature_header] = self.header_value(
            signature, timestamp=timestamp
        )
        return headers

    def new_secret(self) -> str:
        return secrets.token_urlsafe(32)


class ZendeskSigner(HmacSigner):
    """base64(HMAC-SHA256(secret, timestamp + body)), keyed by the secret as written."""

    def signed_bytes(self, body: bytes, *, timestamp: int, event_id: str) -> bytes:
        return self.timestamp_text(timestamp).encode() + body

    def timestamp_text(self, timestamp: int) -> str:
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_secret(self) -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class SlackSigner(HmacSigner):
    """``v0=`` hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""

    def signed_bytes(self, body: bytes, *, timestamp: int, event_id: str) -> bytes:
        return b"v0:" + str(timestamp).encode() + b":" + body

    def new_secret(self) -> str:
        return secrets.token_hex(16)


class StripeSigner(HmacSigner):
    """``t={timestamp},v1={hex}`` over ``{timestamp}.{body}``, keyed by the secret."""

    def signed_bytes(self, body: bytes, *, timestamp: int, event_id: str) -> bytes:
        return str(timestamp).encode() + b"." + body

    def header_value(self, signature: str, *, timestamp: int) -> str:
        return f"t={timestamp},{signature}"

    def new_secret(self) -> str:
        return "whsec_" + secrets.token_hex(16)


class StandardWebhooksSigner(HmacSigner):
    """``v1,{base64}`` over ``{id}.{timestamp}.{body}``.

    The key is the base64-decoded part of the secret after ``whsec_``.
    """

    def key(self, secret: str) -> bytes:
        encoded = secret.removeprefix("whsec_")
        return base64.b64decode(encoded)

    def signed_bytes(self, body: bytes, *, timestamp: int, event_id: str) -> bytes:
        return f"{event_id}.{timestamp}.".encode() + body

    def new_secret(self) -> str:
        return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


class LinearSigner(HmacSigner):
    """Hex HMAC-SHA256 of the raw body, which carries ``webhookTimestamp``."""

    def new_secret(self) -> str:
        return "lin_wh_" + secrets.token_urlsafe(32)


class IntercomSigner(HmacSigner):
    """``sha1=`` hex HMAC-SHA1 of the raw body, keyed by the app's client secret."""

    def new_secret(self) -> str:
        return secrets.token_hex(20)


SIGNERS: dict[str, Signer] = {
    signer.name: signer
    for signer in (
        ZendeskSigner(
            name="zendesk",
            signature_header="X-Zendesk-Webhook-Signature",
            encoding="base64",
            event_id=Location("body", "id"),
            timestamp=Location("header", "X-Zendesk-Webhook-Signature-Timestamp"),
            # Zendesk signs the timestamp but documents no replay window.
            window_seconds=None,
        ),
        IntercomSigner(
            name="intercom",
            signature_header="X-Hub-Signature",
            algorithm="sha1",
            scheme_prefix="sha1=",
            event_id=Location("body", "id"),
        ),
        HmacSigner(
            name="github",
            signature_header="X-Hub-Signature-256",
            scheme_prefix="sha256=",
            # The same delivery id is sent again when a delivery is redelivered.
            event_id=Location("header", "X-GitHub-Delivery"),
        ),
        HmacSigner(
            name="razorpay",
            signature_header="X-Razorpay-Signature",
            event_id=Location("header", "x-razorpay-event-id"),
        ),
        SlackSigner(
            name="slack",
            signature_header="X-Slack-Signature",
            scheme_prefix="v0=",
            event_id=Location("body", "event_id"),
            timestamp=Location("header", "X-Slack-Request-Timestamp"),
            window_seconds=300,
        ),
        LinearSigner(
            name="linear",
            signature_header="Linear-Signature",
            # NOTE: the delivery header name is from secondary sources only.
            event_id=Location("header", "Linear-Delivery"),
            timestamp=Location("body", "webhookTimestamp"),
            window_seconds=60,
        ),
        HmacSigner(
            name="jira",
            signature_header="X-Hub-Signature",
            scheme_prefix="sha256=",
            # NOTE: Jira Cloud's scheme and this header are from secondary sources.
            event_id=Location("header", "X-Atlassian-Webhook-Identifier"),
        ),
        StripeSigner(
            name="stripe",
            signature_header="Stripe-Signature",
            scheme_prefix="v1=",
            event_id=Location("body", "id"),
            timestamp=Location("header", "Stripe-Signature"),
            window_seconds=300,
        ),
        StandardWebhooksSigner(
            name="standard-webhooks",
            signature_header="webhook-signature",
            encoding="base64",
            scheme_prefix="v1,",
            event_id=Location("header", "webhook-id"),
            timestamp=Location("header", "webhook-timestamp"),
            window_seconds=300,
        ),
    )
}


def known_providers() -> list[str]:
    """Return the provider names Assay can sign for, sorted."""
    return sorted(SIGNERS)


def get_signer(name: str) -> Signer:
    """Return the signer for `name`, or raise KeyError for an unknown provider."""
    return SIGNERS[name]
