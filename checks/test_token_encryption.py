"""Token encryption: TE-1 to TE-4, against the app Assay started with its own key."""

from __future__ import annotations

from typing import Any

import pytest

from assay.config import Config
from assay.crypto import key_forms, plaintext_forms, search_forms
from assay.encryption import (
    FlowResult,
    RequestSpec,
    StoredCanary,
    StoredValue,
    analyse,
    deliver_signed,
    parse_request,
    plaintext_hits,
    receivers_by_provider,
    resolve_columns,
    scan_database,
    store_secrets,
    store_tokens,
    tamper_and_use,
)
from assay.endpoints import collect_endpoints, response_text
from assay.findings import Finding
from assay.recorder import NotApplicable, Recorder, Undecided
from assay.target import AppClient, new_canary_key

# Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_app(assay_config: Config, own_app: AppClient) -> AppClient:
    """The app Assay started, with an encryption section and seeded tenants."""
    if assay_config.encryption is None:
        raise NotApplicable(f"{assay_config.file} has no encryption section")
    if own_app.seed is None:
        raise Undecided(
            "the encryption checks act as a member of a seeded tenant, and "
            f"{assay_config.file} has no tenancy section to seed tenants from"
        )
    return own_app


@pytest.fixture(scope="module")
def token_flow(assay_config: Config, encrypted_app: AppClient) -> FlowResult:
    """Canary tokens stored through each provider's OAuth flow, per tenant."""
    columns = resolve_columns(assay_config, encrypted_app.dsn, "token_columns")
    if not columns:
        raise assay_config.error(
            ("encryption", "token_columns"),
            [],
            "no token column is configured",
            "List the columns holding OAuth tokens, e.g. "
            "public.integrations.access_token",
        )
    return store_tokens(encrypted_app, assay_config, columns, encrypted_app.providers)


@pytest.fixture(scope="module")
def secret_flow(assay_config: Config, encrypted_app: AppClient) -> FlowResult:
    """Canary webhook signing secrets stored through the configured request."""
    columns = resolve_columns(assay_config, encrypted_app.dsn, "secret_columns")
    if not columns or not assay_config.encryption.secret_providers:
        raise NotApplicable(
            f"{assay_config.file} names no webhook secret columns or providers "
            "under encryption, so there is no stored secret to test"
        )
    return store_secrets(encrypted_app, assay_config, columns)


def use_request(config: Config) -> RequestSpec:
    return parse_request(
        config, ("encryption", "use_token"), config.encryption.use_token
    )


def value_of(flow: FlowResult, canary: StoredCanary) -> tuple[StoredValue, Any] | None:
    """The stored value holding `canary`: by decryption, else by its row."""
    for index, stored in enumerate(flow.values):
        result = flow.opened.get(index)
        if (
            result
            and result.decrypted
            and result.opened.plaintext == canary.canary.value.encode()
        ):
            return stored, result
    for index, stored in enumerate(flow.values):
        if canary.tenant_id in stored.row and f'"{canary.provider}"' in stored.row:
            return stored, flow.opened.get(index)
    return None


def finding(control: str, rule: str, message: str, **kwargs: Any) -> Finding:
    return Finding(control=control, rule=rule, message=message, source="live", **kwargs)


# TE-1 ---------------------------------------------------------------------------------


@pytest.mark.control("TE-1")
def test_tokens_sealed_at_rest(evidence, assay_config, encrypted_app, token_flow):
    findings, observed = analyse("TE-1", token_flow, encrypted_app.key, what="token")
    evidence.extend(findings)
    evidence.observe("stored_values", observed)
    evidence.observe("oauth_flows", token_flow.attempts)
    record_plaintext(evidence, "TE-1", encrypted_app, token_flow)
    if token_flow.stored() and token_flow.values:
        probe_token_use(evidence, assay_config, encrypted_app, token_flow)
    evidence.examined_count("stored token values", observed["decrypted"])
    evidence.verdict()


def record_plaintext(
    evidence: Recorder, control: str, app: AppClient, flow: FlowResult
) -> None:
    hits = plaintext_hits(app.dsn, flow)
    for table, label, form in hits:
        evidence.add(
            finding(
                control,
                "plaintext-at-rest",
                f"{table} holds {label} in plaintext ({form} form)",
                table=table,
                fix="Store only the AES-256-GCM envelope, never the value or an "
                "encoding of it",
            )
        )
    evidence.observe(
        "plaintext_search", {"tables_with_hits": sorted({h[0] for h in hits})}
    )


def probe_token_use(
    evidence: Recorder, config: Config, app: AppClient, flow: FlowResult
) -> None:
    """Use each provider's stored token, then a tampered copy, for tenant A."""
    use = use_request(config)
    first = app.seed.tenants[0]
    access = [
        c for c in flow.stored() if c.role == "access token" and c.tenant == first.label
    ]
    used, tampered = [], []
    for canary in access:
        fake = app.providers.get(canary.provider)
        located = value_of(flow, canary)
        if located is None or fake is None:
            continue
        stored, result = located

        mark = fake.mark()
        response = app.request(
            use.method,
            use.render(provider=canary.provider, tenant_id=canary.tenant_id),
            user=first.members[0],
        )
        sent = fake.bearer_tokens(mark)
        used.append(
            {
                "provider": canary.provider,
                "status": response.status_code,
                "sent_stored_token": canary.canary.value in sent,
            }
        )
        if canary.canary.value in sent:
            evidence.examined_count("provider calls with the stored token", 1)

        outcome = tamper_and_use(app, stored, result, use, canary, fake)
        tampered.append(
            {
                "provider": canary.provider,
                "status": outcome.status,
                "provider_calls": len(outcome.bearers),
                "restored": outcome.restored,
            }
        )
        judge_tamper(evidence, "TE-1", use, canary, stored, outcome)
    evidence.observe("token_use", used)
    evidence.observe("tampered_use", tampered)
    if not any(item["sent_stored_token"] for item in used):
        evidence.add(
            finding(
                "TE-1",
                "token-never-used",
                f"{use} never made the application call a provider with a stored "
                f"token (responses: {[u['status'] for u in used]}), so Assay could "
                "not test that a tampered value is rejected",
                level="undecided",
                fix="Point encryption.use_token at a request that calls the provider",
            )
        )


def judge_tamper(
    evidence: Recorder,
    control: str,
    use: RequestSpec,
    canary: StoredCanary,
    stored: StoredValue,
    outcome: Any,
) -> None:
    where = f"{stored.column} ({canary.provider}, tenant {canary.tenant})"
    if not outcome.written:
        evidence.add(
            finding(
                control,
                "tamper-not-written",
                f"Assay could not write a tampered value into {where}",
                level="undecided",
            )
        )
        return
    evidence.examined_count("tampered values used", 1)
    if outcome.bearers:
        garbled = any(bearer != canary.canary.value for bearer in outcome.bearers)
        evidence.add(
            finding(
                control,
                "tampering-accepted",
                f"after one ciphertext byte of {where} was changed, {use} made the "
                f"application call {canary.provider} with "
                + (
                    "a token that is not the stored one"
                    if garbled
                    else "the original token"
                )
                + f" (status {outcome.status}); an authenticated cipher rejects it",
                table=stored.column.qualified_table,
                fix="Use AES-256-GCM and refuse any value whose tag does not verify",
            )
        )
    elif 200 <= outcome.status < 300:
        evidence.add(
            finding(
                control,
                "tampering-accepted",
                f"after one ciphertext byte of {where} was changed, {use} still "
                f"returned {outcome.status}",
                table=stored.column.qualified_table,
                fix="Fail the request when the stored value does not authenticate",
            )
        )


# TE-2 ---------------------------------------------------------------------------------


@pytest.mark.control("TE-2")
def test_webhook_secrets_sealed(evidence, assay_config, encrypted_app, secret_flow):
    findings, observed = analyse(
        "TE-2", secret_flow, encrypted_app.key, what="webhook secret"
    )
    evidence.extend(findings)
    evidence.observe("stored_values", observed)
    evidence.observe("secret_requests", secret_flow.attempts)
    record_plaintext(evidence, "TE-2", encrypted_app, secret_flow)
    probe_secret_use(evidence, assay_config, encrypted_app, secret_flow)
    evidence.examined_count("stored secret values", observed["decrypted"])
    evidence.verdict()


def probe_secret_use(
    evidence: Recorder, config: Config, app: AppClient, flow: FlowResult
) -> None:
    """Tamper each stored secret of tenant A and send a delivery signed with it."""
    receivers = receivers_by_provider(config)
    first = app.seed.tenants[0]
    results = []
    for canary in flow.stored():
        if canary.tenant != first.label or canary.provider not in receivers:
            continue
        located = value_of(flow, canary)
        if located is None:
            continue
        stored, result = located
        outcome = deliver_signed(
            app, receivers[canary.provider], canary, stored, result
        )
        results.append(outcome.observation())
        evidence.extend(outcome.findings("TE-2"))
        if outcome.judged:
            evidence.examined_count("deliveries signed with a tampered secret", 1)
    evidence.observe("tampered_secret_deliveries", results)
    if not results:
        evidence.add(
            finding(
                "TE-2",
                "secret-tamper-untested",
                "no configured webhook receiver uses a stored secret, so Assay did "
                "not test that a tampered secret is rejected",
                level="warning",
                fix="Configure the providers' receivers under webhooks",
            )
        )


# TE-3 ---------------------------------------------------------------------------------


@pytest.mark.control("TE-3")
def test_key_never_leaks(
    evidence, assay_config, encrypted_app, token_flow, app_launcher
):
    key = encrypted_app.key
    forms = key_forms(key)
    responses = provoke_errors(evidence, assay_config, encrypted_app, token_flow)

    short = new_canary_key(
        assay_config.encryption.key_encoding, length=16, label="16-byte key"
    )
    refusal = start_with_short_key(evidence, app_launcher, short)
    short_forms = key_forms(short.raw, short.encoded)

    searched = 0
    for label, data in responses:
        searched += 1
        for name in search_forms(data, forms):
            evidence.add(
                finding(
                    "TE-3",
                    "key-in-response",
                    f"the response to {label} contains the encryption key ({name})",
                    fix="Return a generic error; never put key material in a response",
                )
            )
    for path, data in encrypted_app.process.read_logs().items():
        searched += 1
        for name in search_forms(data, forms):
            evidence.add(
                finding(
                    "TE-3",
                    "key-in-log",
                    f"the application's {path.name} contains the encryption key "
                    f"({name})",
                    fix="Never log the key or the environment that holds it",
                )
            )
    for path, data in refusal.items():
        searched += 1
        for name in search_forms(data, short_forms):
            evidence.add(
                finding(
                    "TE-3",
                    "key-in-log",
                    f"the {path.name} of the start with a 16-byte key contains that "
                    f"key ({name})",
                    fix="Report the key's length, never the key",
                )
            )
    hits = scan_database(encrypted_app.dsn, {"the encryption key": forms})
    for table, _, name in hits:
        evidence.add(
            finding(
                "TE-3",
                "key-in-database",
                f"{table} contains the encryption key ({name})",
                table=table,
                fix="Keep the key out of the database",
            )
        )
    evidence.examined_count("logs, responses and database scans", searched + 1)
    evidence.verdict()


def provoke_errors(
    evidence: Recorder, config: Config, app: AppClient, flow: FlowResult
) -> list[tuple[str, bytes]]:
    """Make the app fail: tampered ciphertext, provider errors, bad requests."""
    use = use_request(config)
    first = app.seed.tenants[0]
    member = first.members[0]
    collected: list[tuple[str, bytes]] = []
    statuses = {}

    access = [
        c for c in flow.stored() if c.role == "access token" and c.tenant == first.label
    ]
    for canary in access[:2]:
        located = value_of(flow, canary)
        if located is None:
            continue
        stored, result = located
        outcome = tamper_and_use(
            app, stored, result, use, canary, app.providers.get(canary.provider)
        )
        if outcome.response is not None:
            label = f"{use} with a tampered {canary.provider} token"
            collected.append((label, response_text(outcome.response)))
            statuses[label] = outcome.status

    for canary in access[:2]:
        fake = app.providers.get(canary.provider)
        if fake is None:
            continue
        fake.fail_next(500, count=3)
        response = app.request(
            use.method,
            use.render(provider=canary.provider, tenant_id=canary.tenant_id),
            user=member,
        )
        fake.failures.clear()
        label = f"{use} while {canary.provider} returns 500"
        collected.append((label, response_text(response)))
        statuses[label] = response.status_code

    path = use.render(provider="no-such-provider", tenant_id=str(first.id))
    for label, kwargs in (
        ("a request with a forged JWT", {"headers": {"Authorization": "Bearer x.y.z"}}),
        ("a request for an unknown provider", {"user": member}),
    ):
        response = app.request(use.method, path, **kwargs)
        collected.append((label, response_text(response)))
        statuses[label] = response.status_code
    evidence.observe("provoked_errors", statuses)
    return collected


def start_with_short_key(evidence: Recorder, launch, short) -> dict:
    """Start the app a second time with a 16-byte key; it must exit without serving."""
    process = launch(short)
    refusal = process.wait_refusal()
    process.stop()
    logs = process.read_logs()
    process.remove_logs()
    evidence.observe(
        "start_with_16_byte_key",
        {
            "exited": refusal.exited,
            "returncode": refusal.returncode,
            "served": refusal.served,
            "seconds": round(refusal.seconds, 2),
        },
    )
    evidence.examined_count("starts with a wrong-length key", 1)
    if refusal.served:
        evidence.add(
            finding(
                "TE-3",
                "short-key-accepted",
                "the application started and served its readiness path with a 16-byte "
                "key; AES-256 needs 32 bytes, so it must refuse to start",
                fix="Check the decoded key is exactly 32 bytes at start-up and exit "
                "non-zero otherwise",
            )
        )
    elif refusal.exited and refusal.returncode == 0:
        evidence.add(
            finding(
                "TE-3",
                "short-key-exit-zero",
                "with a 16-byte key the application exited with status 0, so a "
                "supervisor would not see the failure",
                fix="Exit with a non-zero status when the key is invalid",
            )
        )
    elif not refusal.exited:
        evidence.add(
            finding(
                "TE-3",
                "short-key-hangs",
                f"with a 16-byte key the application neither served nor exited within "
                f"{refusal.seconds:.0f} s",
                fix="Exit non-zero at start-up when the key is invalid",
            )
        )
    return logs


# TE-4 ---------------------------------------------------------------------------------


@pytest.mark.control("TE-4")
def test_tokens_never_returned(
    evidence, assay_config, encrypted_app, token_flow, request
):
    flows = [token_flow]
    if (
        assay_config.encryption.secret_columns
        and assay_config.encryption.secret_providers
    ):
        flows.append(request.getfixturevalue("secret_flow"))
    forms = response_forms(encrypted_app, flows)
    endpoints, skipped, source = collect_endpoints(assay_config, encrypted_app)
    evidence.observe("endpoint_sources", source)
    evidence.observe("endpoints_not_called", skipped)

    calls = []
    for tenant in encrypted_app.seed.tenants:
        member = tenant.members[0]
        for method, path in endpoints(str(tenant.id)):
            response = encrypted_app.request(
                method,
                path,
                user=member,
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            calls.append(
                {"request": f"{method} {path}", "status": response.status_code}
            )
            parts = {
                "headers": response_text(response).split(b"\n\n", 1)[0],
                "body": response.content,
            }
            for part, data in parts.items():
                for label, named in forms.items():
                    for name in search_forms(data, named):
                        evidence.add(
                            finding(
                                "TE-4",
                                "secret-in-response",
                                f"the {part} of the response to {method} {path} as a "
                                f"member of tenant {tenant.label} "
                                f"{'contain' if part == 'headers' else 'contains'} "
                                f"{label} ({name})",
                                fix="Return integration metadata only; tokens, secrets "
                                "and their ciphertexts stay on the server",
                            )
                        )
    evidence.observe("calls", calls)
    evidence.examined_count("endpoint calls", len(calls))
    evidence.verdict()


def response_forms(
    app: AppClient, flows: list[FlowResult]
) -> dict[str, dict[str, bytes]]:
    """Every canary, stored ciphertext and the key, in every form a leak takes."""
    forms: dict[str, dict[str, bytes]] = {"the encryption key": key_forms(app.key)}
    for flow in flows:
        for canary in flow.stored():
            forms[canary.canary.redacted()] = plaintext_forms(canary.canary.value)
        for index, stored in enumerate(flow.values):
            label = f"the stored ciphertext of {stored.column}"
            value = stored.value
            text = value if isinstance(value, str) else bytes(value).hex()
            named = forms.setdefault(label, {})
            named[f"as stored #{index}"] = text.encode()
            result = flow.opened.get(index)
            if result is not None and result.decrypted:
                blob = b"".join(result.opened.candidate.parts)
                for name, form in plaintext_forms(blob).items():
                    if name != "raw":
                        named[f"payload #{index} {name}"] = form
    return forms
