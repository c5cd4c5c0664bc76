"""Probes that attack a running webhook receiver, one control at a time.

WH-1 sends forged deliveries (no, empty, wrong, truncated or foreign
signatures, tampered bodies, a bad signature on a malformed body): each must
be rejected with 401 or 403 and leave no side effect. WH-2 sends valid
signatures over bytes that differ from a canonical serialisation: each must
be accepted, which shows the receiver verifies the raw body. WH-3 replays
one event sequentially, as a redelivery and concurrently: it must have one
side effect.

Every event carries a fresh event id and a marker in its public text, so
the configured side-effect SQL counts exactly the effects of one delivery.
A probe that cannot show the receiver works at all (a valid event rejected,
or its effect not counted) ends undecided, never passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import httpx

from assay.config import Config
from assay.findings import Finding
from assay.target import redact
from assay.webhooks.payloads import Event, build_event
from assay.webhooks.receivers import (
    Receiver,
    WebhookTarget,
    not_found_error,
    redacted_headers,
)

__all__ = [
    "Delivery",
    "Outcome",
    "ProbeReport",
    "Prober",
    "probe_raw_body",
    "probe_replays",
    "probe_signatures",
    "serialise",
]

logger = logging.getLogger(__name__)

REJECTED = (401, 403)
EXCERPT_CHARS = 240
# Larger than the 100 kB default limit of Express's body-parser and smaller
# than nginx's default 1 MB client_max_body_size.
LARGE_BODY_BYTES = 512 * 1024
# A different prefix of the same family for each scheme, for the
# wrong-prefix probe.
OTHER_PREFIX = {
    "sha256=": "sha1=",
    "sha1=": "sha256=",
    "v0=": "v1=",
    "v1=": "v0=",
    "v1,": "v2,",
}


@dataclass(frozen=True)
class Delivery:
    """One request to a receiver and the events whose side effects it may cause."""

    case: str
    label: str
    body: bytes
    headers: dict[str, str]
    events: tuple[Event, ...]


@dataclass
class Outcome:
    """The result of a delivery: status, response excerpt and side effects counted."""

    delivery: Delivery
    status: int | None
    response: str
    effects: int
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def observation(self) -> dict[str, Any]:
        return {
            "case": self.delivery.case,
            "status": self.status,
            "side_effects": self.effects,
        }


@dataclass
class ProbeReport:
    """Findings, per-delivery observations and the count of deliveries examined."""

    findings: list[Finding] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    examined: int = 0

    def extend(self, other: "ProbeReport") -> None:
        self.findings.extend(other.findings)
        self.observations.extend(other.observations)
        self.examined += other.examined


def serialise(payload: Any, style: str = "canonical") -> bytes:
    """Serialise `payload` in one of the styles the raw-body probe sends.

    ``canonical`` is Python's default ``json.dumps``, the bytes a receiver
    that re-serialises a parsed body would produce, so a receiver with that
    bug still accepts the baseline and fails only the raw-body probe.
    """
    if style == "canonical":
        return json.dumps(payload).encode()
    if style == "key_order":
        return json.dumps(_reversed_keys(payload)).encode()
    if style == "compact":
        return json.dumps(payload, separators=(",", ":")).encode()
    if style == "pretty":
        return json.dumps(payload, indent=2).encode()
    if style == "utf8":
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")
    if style == "unicode_escapes":
        # HTML-safe escapes as Go's encoding/json writes them, and \/ as PHP's
        # json_encode does. These characters occur only inside JSON strings.
        text = json.dumps(payload)
        for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(char, escape)
        return text.replace("/", "\\/").encode()
    if style == "trailing_newline":
        return json.dumps(payload).encode() + b"\n"
    raise ValueError(f"unknown serialisation style {style!r}")


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(item) for item in value]
    return value


def _excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """Return the start of `data` as text; callers redact it before reporting it."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    size = len(data) if isinstance(data, bytes) else len(data.encode())
    if len(text) > limit:
        text = text[:limit] + f"... ({size} bytes in all)"
    return text


def _random_digest_like(encoded: str) -> str:
    """Return a random value of the same length and alphabet as `encoded`."""
    alphabet = "0123456789abcdef"
    if any(char not in alphabet for char in encoded):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = encoded.rstrip("=")
    forged = "".join(secrets.choice(alphabet) for _ in body)
    return forged + "=" * (len(encoded) - len(body))


class Prober:
    """Signs, sends and counts deliveries to one receiver of the application."""

    def __init__(self, config: Config, target: WebhookTarget, receiver: Receiver):
        self.config = config
        self.target = target
        self.receiver = receiver
        self.signer = receiver.signer
        self.control = ""
        # HTTP requests sent to the receiver, for evidence and benchmarks.
        self.sent = 0

    # Building deliveries ------------------------------------------------------

    def event(self, timestamp: int, *, filler: str = "") -> Event:
        return build_event(self.signer.name, timestamp=timestamp, filler=filler)

    def headers(
        self, event: Event, body: bytes, timestamp: int, *, secret: str | None = None
    ) -> dict[str, str]:
        """Return the headers of a delivery of `body`, signed as the provider signs."""
        headers = {"Content-Type": "application/json", "User-Agent": "Assay"}
        headers.update(event.headers)
        headers.update(
            self.signer.headers(
                body,
                secret or self.receiver.secret,
                timestamp=timestamp,
                event_id=event.event_id,
            )
        )
        return headers

    def signature_parts(
        self, event: Event, body: bytes, timestamp: int
    ) -> tuple[str, str]:
        """Return (scheme prefix, encoded digest) of the valid signature of `body`."""
        text = self.signer.signature(
            body, self.receiver.secret, timestamp=timestamp, event_id=event.event_id
        )
        prefix = self.signer.scheme_prefix
        return prefix, text[len(prefix) :]

    def valid(
        self, case: str, label: str, event: Event, body: bytes, timestamp: int
    ) -> Delivery:
        """Build a delivery of `body` with the valid signature for `timestamp`."""
        return Delivery(
            case, label, body, self.headers(event, body, timestamp), (event,)
        )

    # Sending -------------------------------------------------------------------

    def send(self, delivery: Delivery) -> Outcome:
        """Send one delivery, then count the side effects of its events."""
        self.sent += 1
        try:
            response = self.target.http.post(
                self.receiver.path, content=delivery.body, headers=delivery.headers
            )
        except httpx.HTTPError as error:
            return Outcome(delivery, None, "", self.effects(delivery), str(error))
        return Outcome(
            delivery,
            response.status_code,
            _excerpt(response.text),
            self.effects(delivery),
        )

    def send_concurrently(self, delivery: Delivery, copies: int) -> list[int | None]:
        """Send `copies` of one delivery at once; return their statuses."""
        self.sent += copies
        return asyncio.run(self._burst(delivery, copies))

    async def _burst(self, delivery: Delivery, copies: int) -> list[int | None]:
        limits = httpx.Limits(max_connections=copies, max_keepalive_connections=copies)
        async with httpx.AsyncClient(
            base_url=self.target.url, limits=limits, timeout=30.0
        ) as client:

            async def post() -> int | None:
                try:
                    response = await client.post(
                        self.receiver.path,
                        content=delivery.body,
                        headers=delivery.headers,
                    )
                except httpx.HTTPError:
                    return None
                return response.status_code

            return list(await asyncio.gather(*(post() for _ in range(copies))))

    def effects(self, delivery: Delivery) -> int:
        # NOTE: effects are counted as soon as the response arrives, so a
        # receiver that applies events in a background job could be counted early.
        return sum(
            self.receiver.counter.count(event.event_id, event.marker)
            for event in delivery.events
        )

    # Reporting -----------------------------------------------------------------

    def request_details(self, delivery: Delivery) -> dict[str, Any]:
        """Describe the request that broke a claim, with the signature redacted."""
        return {
            "method": "POST",
            "path": self.receiver.path,
            "headers": redacted_headers(delivery.headers, self.signer),
            "body_excerpt": redact(_excerpt(delivery.body)),
        }

    def finding(
        self,
        rule: str,
        outcome: Outcome,
        message: str,
        *,
        level: str = "error",
        fix: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Finding:
        delivery = outcome.delivery
        details = {
            "receiver": self.receiver.name,
            "provider": self.signer.name,
            "case": delivery.case,
            "request": self.request_details(delivery),
            "response": {
                "status": outcome.status,
                "body_excerpt": redact(outcome.response),
            },
            "side_effects": outcome.effects,
        }
        if outcome.error:
            details["transport_error"] = outcome.error
        details.update(extra or {})
        return Finding(
            control=self.control,
            rule=rule,
            message=f"{self.receiver.name}: POST {self.receiver.path} with "
            f"{delivery.label}: {message}",
            level=level,
            source="live",
            fix=fix,
            details=details,
        )

    def baseline(self, report: ProbeReport) -> Outcome:
        """Send one valid canonical event; it must be accepted and counted once."""
        now = int(time.time())
        event = self.event(now)
        outcome = self.send(
            self.valid(
                "valid", "a valid signature", event, serialise(event.payload), now
            )
        )
        report.observations.append(outcome.observation())
        if outcome.status in (404, 405):
            raise not_found_error(self.config, self.receiver, outcome.status)
        if not outcome.accepted:
            report.findings.append(
                self.finding(
                    "valid-event-rejected",
                    outcome,
                    f"a correctly signed event was not accepted ({_status(outcome)}), "
                    "so rejections prove nothing",
                    level="undecided",
                    fix="Check that the registered secret is the one the receiver "
                    "verifies with (webhooks.register, secret_field)",
                )
            )
        elif outcome.effects != 1:
            report.findings.append(
                self.finding(
                    "side-effect-not-counted",
                    outcome,
                    f"the event was accepted but the side-effect SQL counted "
                    f"{outcome.effects} effects for it instead of 1, so the probe "
                    "cannot see what a delivery does",
                    level="undecided",
                    fix="Make side_effect_sql count the rows one event creates, "
                    "matched by {event_id} or {marker}",
                )
            )
        return outcome


def _status(outcome: Outcome) -> str:
    if outcome.status is None:
        return f"no response: {outcome.error}"
    return f"status {outcome.status}"


# WH-1 ---------------------------------------------------------------------------


def forged_deliveries(prober: Prober) -> list[Delivery]:
    """Build every forged delivery that applies to the receiver's scheme."""
    signer = prober.signer
    now = int(time.time())
    header = signer.signature_header
    deliveries: list[Delivery] = []

    def forged(case: str, label: str, value: Callable[[str, str], str | None]) -> None:
        # `value` maps the valid (prefix, encoded digest) to the header sent.
        event = prober.event(now)
        body = serialise(event.payload)
        headers = prober.headers(event, body, now)
        forged_value = value(*prober.signature_parts(event, body, now))
        if forged_value is None:
            del headers[header]
        else:
            headers[header] = forged_value
        deliveries.append(Delivery(case, label, body, headers, (event,)))

    def wrapped(signature: str) -> str:
        return signer.header_value(signature, timestamp=now)

    forged("missing", "no signature header", lambda prefix, encoded: None)
    forged("empty", "an empty signature", lambda prefix, encoded: "")
    forged(
        "wrong",
        "a wrong signature",
        lambda prefix, encoded: wrapped(prefix + _random_digest_like(encoded)),
    )
    forged(
        "truncated",
        "the valid signature cut to half its length",
        lambda prefix, encoded: wrapped(prefix + encoded[: len(encoded) // 2]),
    )
    forged(
        "extended",
        "the valid signature with characters appended",
        lambda prefix, encoded: wrapped(prefix + encoded + encoded[:8]),
    )
    deliveries.append(_other_secret(prober, now))
    deliveries.extend(_prefix_and_case(prober, now))
    deliveries.append(_different_body(prober, now))
    deliveries.append(_tampered_body(prober, now))
    if signer.timestamp is not None and signer.timestamp.where == "header":
        deliveries.append(_other_timestamp(prober, now))
    deliveries.append(_malformed_body(prober, now))
    return deliveries


def _other_secret(prober: Prober, now: int) -> Delivery:
    event = prober.event(now)
    body = serialise(event.payload)
    headers = prober.headers(event, body, now, secret=prober.signer.new_secret())
    return Delivery(
        "other_secret", "a signature made with another secret", body, headers, (event,)
    )


def _prefix_and_case(prober: Prober, now: int) -> list[Delivery]:
    """Build a valid digest behind the wrong scheme prefix, and one in upper case."""
    signer = prober.signer
    deliveries = []
    other = OTHER_PREFIX.get(signer.scheme_prefix)
    if other:
        event = prober.event(now)
        body = serialise(event.payload)
        headers = prober.headers(event, body, now)
        _, encoded = prober.signature_parts(event, body, now)
        headers[signer.signature_header] = signer.header_value(
            other + encoded, timestamp=now
        )
        label = f"a valid digest behind the scheme prefix {other!r}"
        deliveries.append(Delivery("wrong_prefix", label, body, headers, (event,)))
    if signer.encoding == "hex":
        event = prober.event(now)
        body = serialise(event.payload)
        headers = prober.headers(event, body, now)
        prefix, encoded = prober.signature_parts(event, body, now)
        if encoded.upper() != encoded:
            headers[signer.signature_header] = signer.header_value(
                prefix + encoded.upper(), timestamp=now
            )
            label = "the valid digest in upper-case hex (the provider sends lower case)"
            deliveries.append(Delivery("uppercase_hex", label, body, headers, (event,)))
    return deliveries


def _different_body(prober: Prober, now: int) -> Delivery:
    sent, signed = prober.event(now), prober.event(now)
    signed_body = serialise(signed.payload)
    headers = prober.headers(signed, signed_body, now)
    # The event id header, where the provider has one, matches the body sent.
    if prober.signer.event_id.where == "header":
        headers[prober.signer.event_id.name] = sent.event_id
    return Delivery(
        "different_body",
        "a valid signature of a different body",
        serialise(sent.payload),
        headers,
        (sent, signed),
    )


def _tampered_body(prober: Prober, now: int) -> Delivery:
    event = prober.event(now)
    body = serialise(event.payload)
    headers = prober.headers(event, body, now)
    # The marker stays in the public text, so processing it is still counted.
    tampered = body.replace(event.marker.encode(), event.marker.encode() + b" (edited)")
    return Delivery(
        "tampered",
        "a body changed after signing",
        tampered,
        headers,
        (event,),
    )


def _other_timestamp(prober: Prober, now: int) -> Delivery:
    """Build a valid signature for one timestamp, sent with another."""
    signer = prober.signer
    event = prober.event(now)
    body = serialise(event.payload)
    headers = prober.headers(event, body, now)
    shifted = now - 30
    if signer.timestamp.name == signer.signature_header:
        prefix, encoded = prober.signature_parts(event, body, now)
        headers[signer.signature_header] = signer.header_value(
            prefix + encoded, timestamp=shifted
        )
    else:
        headers[signer.timestamp.name] = prober.headers(event, body, shifted)[
            signer.timestamp.name
        ]
    return Delivery(
        "other_timestamp",
        "a valid signature sent with another timestamp",
        body,
        headers,
        (event,),
    )


def _malformed_body(prober: Prober, now: int) -> Delivery:
    event = prober.event(now)
    whole = serialise(event.payload)
    body = whole[: len(whole) // 2]
    headers = prober.headers(event, body, now)
    prefix, encoded = prober.signature_parts(event, body, now)
    headers[prober.signer.signature_header] = prober.signer.header_value(
        prefix + _random_digest_like(encoded), timestamp=now
    )
    return Delivery(
        "malformed_bad_signature",
        "a wrong signature on a malformed JSON body",
        body,
        headers,
        (event,),
    )


def probe_signatures(prober: Prober) -> ProbeReport:
    """Send forged deliveries (WH-1): each must get 401 or 403 and change nothing."""
    prober.control = "WH-1"
    report = ProbeReport()
    prober.baseline(report)
    for delivery in forged_deliveries(prober):
        outcome = prober.send(delivery)
        report.observations.append(outcome.observation())
        report.examined += 1
        report.findings.extend(_judge_forged(prober, outcome))
    return report


def _judge_forged(prober: Prober, outcome: Outcome) -> list[Finding]:
    findings = []
    if outcome.status is None:
        findings.append(
            prober.finding(
                "no-response",
                outcome,
                f"no response ({outcome.error}), so the rejection is unknown",
                level="undecided",
            )
        )
    elif outcome.accepted:
        findings.append(
            prober.finding(
                "forged-delivery-accepted",
                outcome,
                f"accepted with status {outcome.status}; a delivery that fails "
                "signature verification must be rejected",
                fix="Verify the HMAC of the raw body against the provider's header "
                "with a constant-time comparison of the whole value, and reject a "
                "missing or malformed header with 401",
            )
        )
    elif outcome.status not in REJECTED:
        malformed = outcome.delivery.case == "malformed_bad_signature"
        reason = (
            "the body is parsed before the signature is verified"
            if malformed and outcome.status in (400, 415, 422)
            else "a delivery with a bad signature must be rejected as unauthorized"
        )
        findings.append(
            prober.finding(
                "rejected-without-401",
                outcome,
                f"rejected with status {outcome.status} instead of 401 or 403: "
                f"{reason}",
                fix="Verify the signature of the raw bytes first and answer 401 when "
                "it fails; parse the JSON only afterwards",
            )
        )
    if outcome.effects and not outcome.accepted:
        findings.append(
            prober.finding(
                "processed-before-verification",
                outcome,
                f"left {outcome.effects} side effect(s) although the signature is "
                "bad: the event was processed before (or without) verification",
                fix="Verify the signature before building or storing anything from "
                "the event",
            )
        )
    return findings


# WH-2 ---------------------------------------------------------------------------

RAW_BODY_STYLES = (
    ("key_order", "keys in reverse order"),
    ("compact", "compact JSON without spaces"),
    ("pretty", "indented JSON"),
    ("utf8", "unescaped UTF-8 text"),
    ("unicode_escapes", "\\u003c-style and \\/ escapes"),
    ("trailing_newline", "a trailing newline"),
)


def raw_body_deliveries(prober: Prober) -> list[Delivery]:
    """Build valid signatures over bytes that differ from the canonical form."""
    now = int(time.time())
    deliveries = []
    for style, label in RAW_BODY_STYLES:
        event = prober.event(now)
        body = serialise(event.payload, style)
        deliveries.append(
            prober.valid(style, f"a valid signature over {label}", event, body, now)
        )
    filler = " lorem ipsum" * (LARGE_BODY_BYTES // 12)
    event = prober.event(now, filler=filler)
    body = serialise(event.payload)
    label = f"a valid signature over a {len(body) // 1024} KiB body"
    deliveries.append(prober.valid("large_body", label, event, body, now))
    return deliveries


def probe_raw_body(prober: Prober) -> ProbeReport:
    """Send valid signatures over non-canonical bytes and a stale timestamp (WH-2)."""
    prober.control = "WH-2"
    report = ProbeReport()
    baseline = prober.baseline(report)
    for delivery in raw_body_deliveries(prober):
        outcome = prober.send(delivery)
        report.observations.append(outcome.observation())
        report.examined += 1
        report.findings.extend(_judge_raw(prober, outcome))
    if prober.signer.signs_timestamp and baseline.accepted:
        report.extend(_probe_stale(prober))
    return report


def _judge_raw(prober: Prober, outcome: Outcome) -> list[Finding]:
    if outcome.status is None:
        return [
            prober.finding(
                "no-response",
                outcome,
                f"no response ({outcome.error})",
                level="undecided",
            )
        ]
    if not outcome.accepted:
        return [
            prober.finding(
                "raw-body-not-verified",
                outcome,
                f"rejected with status {outcome.status} although the signature is "
                "valid for the bytes sent: the receiver verifies something other "
                "than the raw body (a re-serialised or re-encoded copy)",
                fix="Compute the HMAC over the request body exactly as received, "
                "before any JSON parsing or body-parser middleware",
            )
        ]
    if outcome.effects != 1:
        return [
            prober.finding(
                "accepted-without-effect",
                outcome,
                f"accepted, but the side-effect SQL counted {outcome.effects} "
                "effects instead of 1, so whether it was processed is unknown",
                level="undecided",
            )
        ]
    return []


def stale_age(window: int | None) -> int:
    """Return the age in seconds that makes a timestamp stale, well past the window."""
    if window is None:
        return 3600
    return max(2 * window, window + 300)


def _probe_stale(prober: Prober) -> ProbeReport:
    signer = prober.signer
    report = ProbeReport()

    age = stale_age(signer.window_seconds)
    then = int(time.time()) - age
    event = prober.event(then)
    delivery = prober.valid(
        "stale_timestamp",
        f"a valid signature over a timestamp {age} s old",
        event,
        serialise(event.payload),
        then,
    )
    outcome = prober.send(delivery)
    report.observations.append(outcome.observation())
    report.examined += 1
    if not (outcome.accepted or outcome.effects):
        return report

    if signer.window_seconds is None:
        message = (
            f"accepted a timestamp {age} s old; {signer.name} documents no replay "
            "window, but a receiver that ignores the signed timestamp lets a "
            "captured delivery be replayed forever"
        )
        level = "warning"
    else:
        message = (
            f"accepted a timestamp {age} s old although {signer.name} documents a "
            f"{signer.window_seconds} s window, so a captured delivery can be replayed"
        )
        level = "error"

    report.findings.append(
        prober.finding(
            "stale-timestamp-accepted",
            outcome,
            message,
            level=level,
            fix="Reject deliveries whose signed timestamp is outside the window",
            extra={"window_seconds": signer.window_seconds, "age_seconds": age},
        )
    )
    return report


# WH-3 ---------------------------------------------------------------------------


def probe_replays(prober: Prober, *, concurrency: int) -> ProbeReport:
    """Replay one event twice, as a redelivery and concurrently (WH-3): one effect."""
    prober.control = "WH-3"
    report = ProbeReport()
    baseline = prober.baseline(report)
    if not baseline.accepted:
        return report
    report.extend(_replay_sequential(prober))
    report.extend(_replay_redelivery(prober))
    report.extend(_replay_concurrent(prober, concurrency))
    return report


def _judge_replay(
    prober: Prober, outcome: Outcome, statuses: list[int | None], how: str
) -> list[Finding]:
    extra = {"statuses": statuses}
    if not statuses or not any(s is not None and 200 <= s < 300 for s in statuses):
        return [
            prober.finding(
                "replay-not-accepted",
                outcome,
                f"no copy was accepted ({statuses}), so deduplication was not tested",
                level="undecided",
                extra=extra,
            )
        ]
    if outcome.effects > 1:
        return [
            prober.finding(
                "replay-processed-twice",
                outcome,
                f"{how} left {outcome.effects} side effects instead of 1: the "
                "event was processed more than once",
                fix="Record the event id with INSERT ... ON CONFLICT DO NOTHING in "
                "the transaction that applies the event, and skip it when no row "
                "was inserted",
                extra=extra,
            )
        ]
    if outcome.effects == 0:
        return [
            prober.finding(
                "replay-without-effect",
                outcome,
                f"{how} was accepted but left no side effect",
                level="undecided",
                extra=extra,
            )
        ]
    rejected = [s for s in statuses if s is None or not 200 <= s < 300]
    if rejected:
        return [
            prober.finding(
                "duplicate-answered-with-error",
                outcome,
                f"{how} had one effect, but duplicates were answered {rejected}; "
                "providers retry a delivery that does not get a 2xx status",
                level="warning",
                extra=extra,
            )
        ]
    return []


def _replay_sequential(prober: Prober) -> ProbeReport:
    report = ProbeReport()
    now = int(time.time())
    event = prober.event(now)
    delivery = prober.valid(
        "sent_twice", "the same delivery twice", event, serialise(event.payload), now
    )
    first = prober.send(delivery)
    second = prober.send(delivery)
    report.observations.append(second.observation())
    report.examined += 2
    report.findings.extend(
        _judge_replay(
            prober, second, [first.status, second.status], "the same delivery twice"
        )
    )
    return report


def _replay_redelivery(prober: Prober) -> ProbeReport:
    """Send an event, then redeliver it: same event id and body, signed later."""
    report = ProbeReport()
    now = int(time.time())
    event = prober.event(now)
    body = serialise(event.payload)
    first = prober.send(prober.valid("original", "the original", event, body, now))
    later = now + 1 if prober.signer.signs_timestamp else now
    redelivery = prober.valid(
        "redelivery",
        f"a redelivery with the same {prober.signer.event_id}",
        event,
        body,
        later,
    )
    second = prober.send(redelivery)
    report.observations.append(second.observation())
    report.examined += 2
    report.findings.extend(
        _judge_replay(prober, second, [first.status, second.status], "a redelivery")
    )
    return report


def _replay_concurrent(prober: Prober, copies: int) -> ProbeReport:
    report = ProbeReport()
    now = int(time.time())
    event = prober.event(now)
    delivery = prober.valid(
        "concurrent",
        f"{copies} copies of one delivery sent at once",
        event,
        serialise(event.payload),
        now,
    )
    if not prober.target.on_loopback:
        # NOTE: the burst is aimed only at an application on this machine.
        outcome = Outcome(delivery, None, "", 0, "not on loopback")
        report.findings.append(
            prober.finding(
                "concurrent-replay-not-run",
                outcome,
                f"the concurrent replay was not sent because {prober.target.url} is "
                "not a loopback address",
                level="undecided",
            )
        )
        return report
    statuses = prober.send_concurrently(delivery, copies)
    outcome = Outcome(delivery, statuses[0], "", prober.effects(delivery))
    report.observations.append(dict(outcome.observation(), statuses=statuses))
    report.examined += copies
    report.findings.extend(
        _judge_replay(prober, outcome, statuses, f"{copies} concurrent copies")
    )
    return report


def close_all(probers: Iterable[Prober]) -> None:
    for prober in probers:
        prober.receiver.close()
