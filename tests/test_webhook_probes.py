"""The webhook probe engine without a server: forged deliveries, judgements, config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from assay.config import load_config
from assay.errors import ConfigError
from assay.webhooks.probes import (
    Delivery,
    Outcome,
    Prober,
    _judge_forged,
    _judge_raw,
    _judge_replay,
    forged_deliveries,
    probe_raw_body,
    probe_replays,
    probe_signatures,
    raw_body_deliveries,
    serialise,
    stale_age,
)
from assay.webhooks.receivers import (
    Receiver,
    WebhookTarget,
    compile_sql,
    method_and_path,
    redacted_headers,
)
from assay.webhooks.signers import get_signer

SECRET = "probe-test-secret"


class NoCounter:
    def count(self, event_id: str, marker: str) -> int:
        return 0

    def close(self) -> None:
        pass


def make_prober(tmp_path: Path, provider: str) -> Prober:
    config_file = tmp_path / "assay.yaml"
    config_file.write_text(
        "webhooks:\n"
        f"  {provider}:\n"
        f"    path: /webhooks/{provider}\n"
        "    side_effect_sql: select count(*) from t where x = {marker}\n"
    )
    config = load_config(config_file)
    target = WebhookTarget(
        url="http://127.0.0.1:9",
        http=httpx.Client(base_url="http://127.0.0.1:9"),
        dsn="",
        tenant_id="t-1",
        member_headers={},
    )
    receiver = Receiver(
        name=provider,
        config=config.webhooks[provider],
        signer=get_signer(provider),
        path=f"/webhooks/{provider}",
        secret=SECRET,
        counter=NoCounter(),
        tenant_id="t-1",
    )
    return Prober(config, target, receiver)


def github_valid(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def by_case(deliveries: list[Delivery]) -> dict[str, Delivery]:
    return {delivery.case: delivery for delivery in deliveries}


# Forged deliveries ----------------------------------------------------------------


def test_github_forged_cases(tmp_path):
    cases = by_case(forged_deliveries(make_prober(tmp_path, "github")))

    assert set(cases) == {
        "missing",
        "empty",
        "wrong",
        "truncated",
        "extended",
        "other_secret",
        "wrong_prefix",
        "uppercase_hex",
        "different_body",
        "tampered",
        "malformed_bad_signature",
    }


def test_github_forgeries_miss_by_design(tmp_path):
    cases = by_case(forged_deliveries(make_prober(tmp_path, "github")))
    header = "X-Hub-Signature-256"

    def sent(case: str) -> str:
        return cases[case].headers[header]

    def valid(case: str) -> str:
        return github_valid(cases[case].body)

    assert header not in cases["missing"].headers
    assert sent("empty") == ""
    assert sent("wrong") != valid("wrong")
    assert len(sent("wrong")) == len(valid("wrong"))
    assert valid("truncated").startswith(sent("truncated"))
    assert sent("truncated") != valid("truncated")
    assert sent("extended").startswith(valid("extended"))
    assert sent("extended") != valid("extended")
    assert sent("other_secret") != valid("other_secret")
    assert sent("wrong_prefix") == "sha1=" + valid("wrong_prefix")[len("sha256=") :]
    assert sent("uppercase_hex") == "sha256=" + valid("uppercase_hex")[7:].upper()


def test_different_body_signed_elsewhere(tmp_path):
    delivery = by_case(forged_deliveries(make_prober(tmp_path, "github")))[
        "different_body"
    ]
    sent, signed = delivery.events

    assert delivery.headers["X-Hub-Signature-256"] == github_valid(
        serialise(signed.payload)
    )
    assert delivery.body == serialise(sent.payload)
    assert delivery.headers["X-GitHub-Delivery"] == sent.event_id


def test_tampered_body_keeps_marker(tmp_path):
    delivery = by_case(forged_deliveries(make_prober(tmp_path, "github")))["tampered"]
    (event,) = delivery.events

    assert event.marker.encode() in delivery.body
    assert delivery.body != serialise(event.payload)
    assert delivery.headers["X-Hub-Signature-256"] == github_valid(
        serialise(event.payload)
    )


def test_malformed_body_is_not_json(tmp_path):
    delivery = by_case(forged_deliveries(make_prober(tmp_path, "github")))[
        "malformed_bad_signature"
    ]

    with pytest.raises(ValueError):
        json.loads(delivery.body)
    assert delivery.headers["X-Hub-Signature-256"] != github_valid(delivery.body)


def test_zendesk_other_timestamp_signed_for_another(tmp_path):
    delivery = by_case(forged_deliveries(make_prober(tmp_path, "zendesk")))[
        "other_timestamp"
    ]
    stamp = delivery.headers["X-Zendesk-Webhook-Signature-Timestamp"]
    valid = base64.b64encode(
        hmac.new(
            SECRET.encode(), stamp.encode() + delivery.body, hashlib.sha256
        ).digest()
    ).decode()

    assert delivery.headers["X-Zendesk-Webhook-Signature"] != valid


def test_zendesk_has_no_prefix_or_hex_cases(tmp_path):
    cases = by_case(forged_deliveries(make_prober(tmp_path, "zendesk")))

    assert "wrong_prefix" not in cases
    assert "uppercase_hex" not in cases
    assert "other_timestamp" in cases


def test_stripe_other_timestamp_in_same_header(tmp_path):
    delivery = by_case(forged_deliveries(make_prober(tmp_path, "stripe")))[
        "other_timestamp"
    ]
    header = delivery.headers["Stripe-Signature"]
    stamp, signature = header.split(",")
    signed = stamp[2:].encode() + b"." + delivery.body
    valid = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()

    assert signature.startswith("v1=")
    assert signature[3:] != valid


# Raw-body deliveries ---------------------------------------------------------------


def test_raw_body_deliveries_differ_and_verify(tmp_path):
    deliveries = raw_body_deliveries(make_prober(tmp_path, "github"))
    bodies = {d.case: d.body for d in deliveries}

    for delivery in deliveries:
        (event,) = delivery.events
        assert delivery.headers["X-Hub-Signature-256"] == github_valid(delivery.body)
        assert json.loads(delivery.body) == event.payload
    assert bodies["compact"] != serialise(json.loads(bodies["compact"]))
    assert bodies["trailing_newline"].endswith(b"\n")
    assert b"\\/" in bodies["unicode_escapes"]
    assert "\u00e9".encode() in bodies["utf8"]
    assert len(bodies["large_body"]) > 512 * 1024


def test_canonical_round_trips():
    payload = {"b": 1, "a": ["caf\u00e9", {"x": None}]}

    assert serialise(json.loads(serialise(payload))) == serialise(payload)


def test_stale_age_outside_window():
    assert stale_age(None) == 3600
    assert stale_age(300) == 600
    assert stale_age(60) == 360


# Judgements -----------------------------------------------------------------------


def outcome_for(tmp_path, case: str, status: int | None, effects: int = 0) -> tuple:
    prober = make_prober(tmp_path, "github")
    prober.control = "WH-1"
    delivery = by_case(forged_deliveries(prober))[case]
    return prober, Outcome(delivery, status, "", effects)


def rules(findings) -> list[str]:
    return [finding.rule for finding in findings]


def test_rejection_with_401_passes(tmp_path):
    prober, outcome = outcome_for(tmp_path, "truncated", 401)

    assert _judge_forged(prober, outcome) == []


def test_accepted_forgery_fails(tmp_path):
    prober, outcome = outcome_for(tmp_path, "truncated", 200, effects=1)
    findings = _judge_forged(prober, outcome)

    assert rules(findings) == ["forged-delivery-accepted"]
    assert findings[0].level == "error"
    assert "cut to half its length" in findings[0].message


def test_bad_json_400_names_parsing(tmp_path):
    prober, outcome = outcome_for(tmp_path, "malformed_bad_signature", 400)
    findings = _judge_forged(prober, outcome)

    assert rules(findings) == ["rejected-without-401"]
    assert "parsed before the signature is verified" in findings[0].message


def test_rejected_with_effect_fails(tmp_path):
    prober, outcome = outcome_for(tmp_path, "wrong", 401, effects=1)

    assert rules(_judge_forged(prober, outcome)) == ["processed-before-verification"]


def test_no_response_is_undecided(tmp_path):
    prober, outcome = outcome_for(tmp_path, "wrong", None)
    findings = _judge_forged(prober, outcome)

    assert rules(findings) == ["no-response"]
    assert findings[0].level == "undecided"


def test_finding_redacts_signature(tmp_path):
    prober, outcome = outcome_for(tmp_path, "truncated", 200, effects=1)
    request = _judge_forged(prober, outcome)[0].details["request"]

    assert request["method"] == "POST"
    assert request["path"] == "/webhooks/github"
    assert request["headers"]["X-Hub-Signature-256"].startswith("<redacted, ")
    assert request["headers"]["X-GitHub-Event"] == "issue_comment"
    assert request["body_excerpt"].startswith('{"action": "created"')


def test_raw_body_rejection_fails(tmp_path):
    prober = make_prober(tmp_path, "github")
    prober.control = "WH-2"
    delivery = raw_body_deliveries(prober)[0]

    findings = _judge_raw(prober, Outcome(delivery, 401, "", 0))
    accepted = _judge_raw(prober, Outcome(delivery, 200, "", 1))
    unseen = _judge_raw(prober, Outcome(delivery, 200, "", 0))

    assert rules(findings) == ["raw-body-not-verified"]
    assert accepted == []
    assert rules(unseen) == ["accepted-without-effect"]
    assert unseen[0].level == "undecided"


@pytest.mark.parametrize(
    ("statuses", "effects", "expected", "level"),
    [
        ([200, 200], 1, [], None),
        ([200, 200], 2, ["replay-processed-twice"], "error"),
        ([200, 500], 1, ["duplicate-answered-with-error"], "warning"),
        ([401, 401], 0, ["replay-not-accepted"], "undecided"),
        ([200, 200], 0, ["replay-without-effect"], "undecided"),
    ],
)
def test_replay_judgement(tmp_path, statuses, effects, expected, level):
    prober = make_prober(tmp_path, "github")
    prober.control = "WH-3"
    delivery = raw_body_deliveries(prober)[0]
    findings = _judge_replay(
        prober, Outcome(delivery, statuses[-1], "", effects), statuses, "twice"
    )

    assert rules(findings) == expected
    if level:
        assert findings[0].level == level


# Receivers and config --------------------------------------------------------------


def test_compile_sql_placeholders():
    assert compile_sql("select count(*) from t where a = {marker} and b like 'x%'") == (
        "select count(*) from t where a = %(marker)s and b like 'x%%'"
    )


def test_method_and_path():
    assert method_and_path("PUT /api/x") == ("PUT", "/api/x")
    assert method_and_path("/api/x") == ("POST", "/api/x")


def test_redacted_headers_keep_timestamp():
    shown = redacted_headers(
        {
            "X-Zendesk-Webhook-Signature": "abc=",
            "X-Zendesk-Webhook-Signature-Timestamp": "2024-01-01T00:00:00Z",
        },
        get_signer("zendesk"),
    )

    assert shown["X-Zendesk-Webhook-Signature"] == "<redacted, 4 characters>"
    assert shown["X-Zendesk-Webhook-Signature-Timestamp"] == "2024-01-01T00:00:00Z"


def write(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "assay.yaml"
    path.write_text("webhooks:\n" + entry)
    return path


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  zendsk:\n    path: /w\n    side_effect_sql: select {marker}\n",
            ":2: webhooks.zendsk='zendsk': unknown webhook provider. Did you mean "
            "'zendesk'? Known providers: github, intercom, jira, linear, razorpay, "
            "slack, standard-webhooks, stripe, zendesk",
        ),
        (
            "  billing:\n    provider: paypal\n    path: /w\n"
            "    side_effect_sql: select {marker}\n",
            ":3: webhooks.billing.provider='paypal': unknown webhook provider.",
        ),
        (
            "  github:\n    path: /w/{org}\n    side_effect_sql: select {marker}\n",
            ":3: webhooks.github.path='/w/{org}': unknown placeholder {org}. Use only "
            "{tenant_id}, {provider}",
        ),
        (
            "  github:\n    path: /w\n    side_effect_sql: select count(*) from t\n",
            ":4: webhooks.github.side_effect_sql='select count(*) from t': the "
            "side-effect SQL does not depend on the event",
        ),
        (
            "  github:\n    path: w\n    side_effect_sql: select {marker}\n",
            ":3: webhooks.github.path='w': the path must start with /",
        ),
        (
            "  github:\n    path: /w\n    side_effect_sql: select {marker}\n"
            "    concurrency: 1000\n",
            ":5: webhooks.github.concurrency=1000: concurrency must be between 2 "
            "and 64",
        ),
    ],
)
def test_webhook_config_errors(tmp_path, entry, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, entry))

    assert expected in str(raised.value)


def test_webhook_provider_defaults_to_key(tmp_path):
    config = load_config(
        write(
            tmp_path, "  github:\n    path: /w\n    side_effect_sql: select {marker}\n"
        )
    )

    assert config.webhooks["github"].provider is None
    assert config.webhooks["github"].register == (
        "PUT /api/orgs/{tenant_id}/webhook-secrets/{provider}"
    )
    assert config.webhooks["github"].concurrency == 8


# Whole probes against an in-process receiver ---------------------------------------


class MarkerCounter:
    """Counts the markers of bodies the mock receiver stored."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []

    def count(self, event_id: str, marker: str) -> int:
        return sum(marker.encode() in body for body in self.stored)

    def close(self) -> None:
        pass


def mock_prober(tmp_path: Path, respond) -> tuple[Prober, MarkerCounter]:
    """A GitHub prober whose HTTP requests go to `respond(request, counter)`."""
    prober = make_prober(tmp_path, "github")
    counter = MarkerCounter()
    transport = httpx.MockTransport(lambda request: respond(request, counter))
    prober.target.http = httpx.Client(
        base_url="http://127.0.0.1:9", transport=transport
    )
    prober.receiver.counter = counter
    return prober, counter


def verifying(request: httpx.Request, counter: MarkerCounter) -> httpx.Response:
    body = request.read()
    received = request.headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(github_valid(body).encode(), received.encode()):
        return httpx.Response(401)
    counter.stored.append(body)
    return httpx.Response(200)


def test_verifying_receiver_passes(tmp_path):
    prober, _ = mock_prober(tmp_path, verifying)
    report = probe_signatures(prober)

    assert report.findings == []
    assert report.examined == 11
    assert prober.sent == 12


def test_accepting_receiver_fails_every_case(tmp_path):
    def accept_all(request, counter):
        counter.stored.append(request.read())
        return httpx.Response(200)

    prober, _ = mock_prober(tmp_path, accept_all)
    report = probe_signatures(prober)
    failed = {f.details["case"] for f in report.findings if f.level == "error"}

    assert failed == {d["case"] for d in report.observations} - {"valid"}


def test_rejected_baseline_is_undecided(tmp_path):
    prober, _ = mock_prober(tmp_path, lambda request, counter: httpx.Response(403))
    report = probe_signatures(prober)

    assert "valid-event-rejected" in rules(report.findings)
    assert report.findings[0].level == "undecided"


def test_uncounted_baseline_is_undecided(tmp_path):
    prober, _ = mock_prober(tmp_path, lambda request, counter: httpx.Response(200))
    report = probe_raw_body(prober)

    assert rules(report.findings)[0] == "side-effect-not-counted"
    assert report.findings[0].level == "undecided"


def test_missing_route_raises_config_error(tmp_path):
    prober, _ = mock_prober(tmp_path, lambda request, counter: httpx.Response(404))

    with pytest.raises(ConfigError) as raised:
        probe_signatures(prober)

    assert "webhooks.github.path='/webhooks/github'" in str(raised.value)
    assert "returned 404" in str(raised.value)


def test_duplicates_stored_twice_fail(tmp_path):
    prober, _ = mock_prober(tmp_path, verifying)
    prober.target.url = "http://192.0.2.1"
    report = probe_replays(prober, concurrency=4)
    found = {(f.rule, f.details["case"], f.level) for f in report.findings}

    assert ("replay-processed-twice", "sent_twice", "error") in found
    assert ("replay-processed-twice", "redelivery", "error") in found
    assert ("concurrent-replay-not-run", "concurrent", "undecided") in found
