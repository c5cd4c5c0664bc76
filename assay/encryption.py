"""The token encryption probes: make the app store canaries, then read what it stored.

``store_tokens`` runs each provider's OAuth flow against the provider fakes
for a member of every seeded tenant, so the application stores canary access
and refresh tokens. ``store_secrets`` stores canary webhook signing secrets
through the configured request. ``analyse`` reads the configured columns of
the rows the flow wrote and decides, for each value, whether it is AES-256-GCM
ciphertext of a canary under Assay's key (``assay.crypto``). ``tamper_and_use``
changes one ciphertext byte in the database and asks the application to use
the value.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
from psycopg import sql

from assay.canaries import Canary, new_canary, register
from assay.config import Config
from assay.crypto import OpenResult, diagnose, open_value, plaintext_forms, tamper
from assay.errors import ConfigError
from assay.findings import Finding
from assay.providers import ProviderFake
from assay.target import AppClient

__all__ = [
    "Column",
    "FlowResult",
    "RequestSpec",
    "StoredValue",
    "analyse",
    "parse_request",
    "resolve_columns",
    "scan_database",
    "store_secrets",
    "store_tokens",
    "tamper_and_use",
]

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REQUEST_PLACEHOLDERS = ("provider", "tenant_id")

# Prefixes that make canaries look like each provider's real tokens.
TOKEN_PREFIXES = {
    "github": ("gho_", "ghr_"),
    "slack": ("xoxb-", "xoxe-"),
    "linear": ("lin_oauth_", "lin_refresh_"),
}


# Configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec:
    """A configured request, ``METHOD /path?query`` with placeholders."""

    method: str
    path: str
    keys: tuple

    def render(self, **values: str) -> str:
        return self.path.format_map(values)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def parse_request(config: Config, keys: tuple, text: str) -> RequestSpec:
    """Parse ``METHOD /path``; raise ConfigError located at `keys` when invalid."""
    method, _, path = text.strip().partition(" ")
    method = method.upper()
    path = path.strip()
    if method not in METHODS or not path.startswith("/"):
        raise config.error(
            keys,
            text,
            "expected a request written as METHOD /path",
            "Write e.g. POST /api/orgs/{tenant_id}/integrations/{provider}/sync",
        )
    for found in re.findall(r"\{(\w*)\}", path):
        if found not in REQUEST_PLACEHOLDERS:
            raise config.error(
                keys,
                text,
                f"unknown placeholder {{{found}}}",
                "Use only " + ", ".join("{" + p + "}" for p in REQUEST_PLACEHOLDERS),
            )
    return RequestSpec(method, path, keys)


@dataclass(frozen=True)
class Column:
    """A configured column, ``schema.table.column``."""

    schema: str
    table: str
    name: str

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"


def resolve_columns(config: Config, dsn: str, key: str) -> list[Column]:
    """Check each column of ``encryption.<key>`` exists in the migrated database."""
    names = getattr(config.encryption, key)
    columns = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for index, text in enumerate(names):
            parts = text.split(".")
            if len(parts) != 3 or not all(parts):
                raise config.error(
                    ("encryption", key, index),
                    text,
                    "expected schema.table.column",
                    "Write e.g. public.integrations.access_token",
                )
            schema, table, name = parts
            rows = conn.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                (schema, table),
            ).fetchall()
            existing = [row[0] for row in rows]
            if name not in existing:
                reason = (
                    f"table {schema}.{table} has no column {name!r}"
                    if existing
                    else f"table {schema}.{table} not found"
                )
                fix = (
                    f"Columns of {schema}.{table}: {', '.join(existing)}"
                    if existing
                    else "Name a table the migrations create"
                )
                raise config.error(
                    ("encryption", key, index),
                    text,
                    f"{reason} in the migrated database",
                    fix,
                )
            columns.append(Column(schema, table, name))
    return columns


def require_providers(
    config: Config, key: str, fakes: dict[str, ProviderFake] | None
) -> list[str]:
    """Return ``encryption.<key>``; each token provider must have a fake and a URL."""
    providers = list(getattr(config.encryption, key))
    if fakes is None:
        return providers
    for index, provider in enumerate(providers):
        if provider not in fakes:
            raise config.error(
                ("encryption", key, index),
                provider,
                "no provider fake is handed to the application for this provider",
                f"Add {provider}: ENV_VARIABLE under app.providers, the variable "
                "the application reads the provider's base URL from",
            )
    return providers


# Stored values -------------------------------------------------------------------


@dataclass(frozen=True)
class StoredValue:
    """One configured column's value in a row the flow wrote."""

    column: Column
    value: Any = field(repr=False)
    row: str = field(repr=False)


@dataclass
class StoredCanary:
    """A canary the flow made the application store, and where it came from."""

    canary: Canary
    role: str  # access token, refresh token or webhook secret
    provider: str
    tenant: str
    tenant_id: str


@dataclass
class FlowResult:
    """The record of a storing flow: canaries, each request's outcome, new rows."""

    canaries: list[StoredCanary] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    values: list[StoredValue] = field(default_factory=list)
    opened: dict[int, OpenResult] = field(default_factory=dict)

    def stored(self) -> list[StoredCanary]:
        """Canaries whose storing request succeeded."""
        done = {(a["provider"], a["tenant"]) for a in self.attempts if a["ok"]}
        return [c for c in self.canaries if (c.provider, c.tenant) in done]

    def tried(self) -> str:
        """Summarise the requests in one line, for an undecided finding."""
        parts = [
            f"{a['provider']}/tenant {a['tenant']}: {a['outcome']}"
            for a in self.attempts
        ]
        return "; ".join(parts[:12]) + (" ..." if len(parts) > 12 else "")


def _snapshot(dsn: str, tables: Iterable[str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            schema, name = table.split(".")
            query = sql.SQL("select row_to_json(t)::text from {} t").format(
                sql.Identifier(schema, name)
            )
            seen[table] = {row[0] for row in conn.execute(query)}
    return seen


def _changed_values(
    dsn: str, columns: list[Column], before: dict[str, set[str]]
) -> list[StoredValue]:
    values = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in sorted({c.qualified_table for c in columns}):
            wanted = [c for c in columns if c.qualified_table == table]
            schema, name = table.split(".")
            query = sql.SQL("select row_to_json(t)::text, {} from {} t").format(
                sql.SQL(", ").join(sql.Identifier("t", c.name) for c in wanted),
                sql.Identifier(schema, name),
            )
            for row in conn.execute(query):
                if row[0] in before.get(table, set()):
                    continue
                for column, value in zip(wanted, row[1:]):
                    if value is not None:
                        values.append(StoredValue(column, value, row[0]))
    return values


def _member(seed: Any, tenant: Any) -> Any:
    if not tenant.members:
        raise ConfigError(
            f"seeded tenant {tenant.label} has no member to act as",
            fix="Check the tenancy.membership section names the membership table",
        )
    return tenant.members[0]


def _token_canary(provider: str, role: str, tenant: str) -> Canary:
    prefixes = TOKEN_PREFIXES.get(provider, ("", ""))
    prefix = prefixes[0] if role == "access token" else prefixes[1]
    return new_canary("token", f"{provider} {role} of tenant {tenant}", prefix=prefix)


def store_tokens(
    client: AppClient, config: Config, columns: list[Column], fakes: dict
) -> FlowResult:
    """Run the OAuth flow per tenant and provider so the app stores canary tokens."""
    enc = config.encryption
    start = parse_request(config, ("encryption", "oauth_start"), enc.oauth_start)
    callback = parse_request(
        config, ("encryption", "oauth_callback"), enc.oauth_callback
    )
    providers = require_providers(config, "token_providers", fakes)
    before = _snapshot(client.dsn, {c.qualified_table for c in columns})

    result = FlowResult()
    for tenant in client.seed.tenants:
        user = _member(client.seed, tenant)
        for provider in providers:
            access = _token_canary(provider, "access token", tenant.label)
            refresh = _token_canary(provider, "refresh token", tenant.label)
            for canary, role in ((access, "access token"), (refresh, "refresh token")):
                result.canaries.append(
                    StoredCanary(canary, role, provider, tenant.label, str(tenant.id))
                )
            code = secrets.token_urlsafe(12)
            fakes[provider].grant(code, access.value, refresh.value)
            outcome = _oauth_flow(client, start, callback, provider, tenant, user, code)
            result.attempts.append(
                {
                    "provider": provider,
                    "tenant": tenant.label,
                    "ok": outcome == "stored",
                    "outcome": outcome,
                }
            )
    logger.info(
        "ran the OAuth flow %d times; %d stored",
        len(result.attempts),
        sum(a["ok"] for a in result.attempts),
    )
    result.values = _changed_values(client.dsn, columns, before)
    return result


def _oauth_flow(
    client: AppClient,
    start: RequestSpec,
    callback: RequestSpec,
    provider: str,
    tenant: Any,
    user: Any,
    code: str,
) -> str:
    values = {"provider": provider, "tenant_id": str(tenant.id)}
    first = client.request(start.method, start.render(**values), user=user)
    location = first.headers.get("location", "")
    state = parse_qs(urlsplit(location).query).get("state", [""])[0]
    if not 300 <= first.status_code < 400 or not state:
        return f"{start} returned {first.status_code} without a redirect carrying state"
    second = client.request(
        callback.method,
        callback.render(**values),
        params={"code": code, "state": state},
    )
    if second.status_code >= 400:
        return f"{callback} returned {second.status_code}"
    return "stored"


def store_secrets(
    client: AppClient, config: Config, columns: list[Column]
) -> FlowResult:
    """Store a canary webhook signing secret per tenant and configured provider."""
    enc = config.encryption
    request = parse_request(config, ("encryption", "store_secret"), enc.store_secret)
    before = _snapshot(client.dsn, {c.qualified_table for c in columns})
    result = FlowResult()
    for tenant in client.seed.tenants:
        user = _member(client.seed, tenant)
        for provider in enc.secret_providers:
            canary = _secret_canary(provider, tenant.label)
            result.canaries.append(
                StoredCanary(
                    canary, "webhook secret", provider, tenant.label, str(tenant.id)
                )
            )
            response = client.request(
                request.method,
                request.render(provider=provider, tenant_id=str(tenant.id)),
                user=user,
                json={enc.secret_field: canary.value},
            )
            ok = response.status_code < 400
            result.attempts.append(
                {
                    "provider": provider,
                    "tenant": tenant.label,
                    "ok": ok,
                    "outcome": "stored"
                    if ok
                    else f"{request} returned {response.status_code}",
                }
            )
    logger.info("stored %d webhook secrets", sum(a["ok"] for a in result.attempts))
    result.values = _changed_values(client.dsn, columns, before)
    return result


def _secret_canary(provider: str, tenant: str) -> Canary:
    """Make a canary secret, in the provider's own format when Assay has its signer."""
    label = f"{provider} webhook secret of tenant {tenant}"
    try:
        from assay.webhooks.signers import get_signer

        value = get_signer(provider).new_secret()
    except (ImportError, KeyError):
        return new_canary("secret", label, prefix="whsec_")
    canary = Canary(value=value, kind="secret", label=label)
    register(canary)
    return canary


# Analysis -------------------------------------------------------------------


def _finding(control: str, rule: str, message: str, **kwargs: Any) -> Finding:
    return Finding(control=control, rule=rule, message=message, source="live", **kwargs)


def analyse(
    control: str, flow: FlowResult, key: bytes, *, what: str
) -> tuple[list[Finding], dict[str, Any]]:
    """Judge every stored value of a flow: AES-256-GCM, a canary, a fresh 96-bit nonce.

    Returns the findings and an observation for the evidence (envelopes seen,
    nonce sizes, counts), never a value.
    """
    findings: list[Finding] = []
    by_value = {c.canary.value: c for c in flow.canaries}
    expected = list(by_value)
    found: dict[str, str] = {}
    nonces: Counter[bytes] = Counter()
    envelopes: Counter[str] = Counter()

    for index, stored in enumerate(flow.values):
        result = open_value(stored.value, key)
        flow.opened[index] = result
        table = stored.column.qualified_table
        if result.status == "ambiguous":
            findings.append(
                _finding(
                    control,
                    "ambiguous-envelope",
                    f"{stored.column} holds a value that decrypts in "
                    f"{len(result.alternatives)} different ways "
                    f"({'; '.join(o.envelope for o in result.alternatives[:3])}), so "
                    "Assay cannot tell which is meant",
                    level="undecided",
                    table=table,
                    fix="Store one unambiguous envelope per value",
                )
            )
            continue
        if not result.decrypted:
            reason = diagnose(stored.value, key, expected)
            owner = _owner(stored, flow.canaries)
            findings.append(
                _finding(
                    control,
                    "not-aes-256-gcm",
                    f"{stored.column}{owner} does not decrypt under AES-256-GCM with "
                    f"the application's key: {reason}",
                    table=table,
                    fix=f"Seal every {what} with AES-256-GCM and a fresh 96-bit nonce",
                    details={"envelopes_tried": result.tried},
                )
            )
            continue
        opened = result.opened
        envelopes[opened.envelope] += 1
        nonces[opened.nonce] += 1
        plaintext = opened.plaintext.decode("utf-8", errors="replace")
        canary = by_value.get(plaintext)
        if canary is None:
            findings.append(
                _finding(
                    control,
                    "unexpected-plaintext",
                    f"{stored.column} decrypts, but not to any {what} Assay stored "
                    "through the application",
                    level="warning",
                    table=table,
                )
            )
            continue
        found[plaintext] = str(stored.column)
        if len(opened.nonce) != 12:
            findings.append(
                _finding(
                    control,
                    "nonce-size",
                    f"{stored.column} ({canary.canary.redacted()}) uses a "
                    f"{len(opened.nonce) * 8}-bit nonce; AES-GCM is specified for "
                    "96-bit nonces",
                    table=table,
                    fix="Draw a fresh random 12-byte nonce per encryption",
                )
            )

    reused = {nonce: count for nonce, count in nonces.items() if count > 1}
    if reused:
        findings.append(
            _finding(
                control,
                "nonce-reuse",
                f"{sum(reused.values())} of {sum(nonces.values())} stored values share "
                f"{len(reused)} nonce(s); a repeated nonce under one key breaks "
                "AES-GCM's confidentiality and authenticity",
                fix="Draw a fresh random 12-byte nonce for every encryption",
            )
        )

    findings.extend(_missing(control, flow, found, what))
    observation = {
        "values_read": len(flow.values),
        "decrypted": sum(nonces.values()),
        "envelopes": dict(envelopes),
        "distinct_nonces": len(nonces),
        "nonce_bits": sorted({len(n) * 8 for n in nonces}),
        "canaries_found": {
            c.canary.redacted(): found.get(c.canary.value) for c in flow.stored()
        },
    }
    return findings, observation


def _owner(stored: StoredValue, canaries: list[StoredCanary]) -> str:
    """Name the provider and tenant of a row by the tenant id and provider it shows."""
    for canary in canaries:
        if canary.tenant_id in stored.row and f'"{canary.provider}"' in stored.row:
            return f" (row of {canary.provider}, tenant {canary.tenant})"
    return ""


def _missing(
    control: str, flow: FlowResult, found: dict[str, str], what: str
) -> list[Finding]:
    stored = flow.stored()
    if not stored:
        return [
            _finding(
                control,
                "no-canary-stored",
                f"no canary {what} was stored by the flow, so nothing was proved; "
                f"tried: {flow.tried() or 'no request'}",
                level="undecided",
                fix="Check the encryption requests and provider lists in assay.yaml",
            )
        ]
    if not flow.values:
        return [
            _finding(
                control,
                "no-canary-stored",
                f"the flow succeeded for {len(stored)} {what}s but no row of the "
                "configured columns changed, so they are stored elsewhere",
                level="undecided",
                fix="Name the columns that hold them under encryption",
            )
        ]
    findings = []
    for canary in stored:
        if canary.canary.value not in found:
            findings.append(
                _finding(
                    control,
                    "canary-not-encrypted",
                    f"{canary.canary.redacted()} was stored, but no configured column "
                    "holds it as AES-256-GCM ciphertext under the key",
                    fix=f"Seal every {what} before it is written",
                )
            )
    return findings


# Searching the database -----------------------------------------------------


def scan_database(
    dsn: str, forms: dict[str, dict[str, bytes]]
) -> list[tuple[str, str, str]]:
    """Search every row of every user table; return (table, label, form) per hit."""
    hits = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "select n.nspname, c.relname from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind = 'r' and n.nspname not in ('pg_catalog', "
            "'information_schema') and n.nspname not like 'pg_toast%%' "
            "order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("select row_to_json(t)::text from only {} t").format(
                sql.Identifier(schema, table)
            )
            data = "\n".join(row[0] for row in conn.execute(query)).encode()
            for label, named in forms.items():
                for name, form in named.items():
                    if form in data:
                        hits.append((f"{schema}.{table}", label, name))
    return hits


def plaintext_hits(dsn: str, flow: FlowResult) -> list[tuple[str, str, str]]:
    """Return where a stored canary shows in any table, in any encoding."""
    forms = {
        c.canary.redacted(): plaintext_forms(c.canary.value) for c in flow.stored()
    }
    return scan_database(dsn, forms)


# Tampering ------------------------------------------------------------------------


@dataclass
class TamperOutcome:
    """The app's response to a tampered value, and the provider calls it made."""

    status: int
    response: httpx.Response | None
    bearers: list[str]
    restored: bool
    written: bool


def write_value(dsn: str, column: Column, old: Any, new: Any) -> int:
    """Replace `old` with `new` in `column` as the owner; return the rows changed."""
    statement = sql.SQL("update {} set {} = %s where {} = %s").format(
        sql.Identifier(column.schema, column.table),
        sql.Identifier(column.name),
        sql.Identifier(column.name),
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement, (new, old)).rowcount


def tamper_and_use(
    client: AppClient,
    stored: StoredValue,
    result: OpenResult | None,
    use: RequestSpec,
    canary: StoredCanary,
    fake: ProviderFake | None,
) -> TamperOutcome:
    """Change one ciphertext byte of a stored value, use it, then put it back."""
    tampered = tamper(
        stored.value, result.opened if result and result.decrypted else None
    )
    written = write_value(client.dsn, stored.column, stored.value, tampered) == 1
    if not written:
        return TamperOutcome(0, None, [], False, False)
    user = _member(client.seed, client.seed.tenant(canary.tenant))
    mark = fake.mark() if fake else 0
    try:
        response = client.request(
            use.method,
            use.render(provider=canary.provider, tenant_id=canary.tenant_id),
            user=user,
        )
    finally:
        restored = write_value(client.dsn, stored.column, tampered, stored.value) == 1
    bearers = fake.bearer_tokens(mark) if fake else []
    logger.info(
        "used a tampered %s of %s: status %d, %d provider calls",
        canary.role,
        canary.provider,
        response.status_code,
        len(bearers),
    )
    return TamperOutcome(response.status_code, response, bearers, restored, True)


def random_text(length: int = 12) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(length))


# Using a stored webhook secret ------------------------------------------------------


@dataclass
class DeliveryOutcome:
    """Deliveries signed with a canary secret, before and after it was tampered."""

    provider: str
    receiver: str
    intact_status: int | None = None
    tampered_status: int | None = None
    written: bool = False

    @property
    def judged(self) -> bool:
        """True when the intact secret verified, so the tampered result counts."""
        return (
            self.written
            and self.intact_status is not None
            and (self.intact_status not in (401, 403, 404, 405))
        )

    def observation(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "receiver": self.receiver,
            "intact_status": self.intact_status,
            "tampered_status": self.tampered_status,
            "judged": self.judged,
        }

    def findings(self, control: str) -> list[Finding]:
        if not self.judged or self.tampered_status is None:
            return []
        if 200 <= self.tampered_status < 300:
            return [
                _finding(
                    control,
                    "tampering-accepted",
                    f"after one ciphertext byte of the stored {self.provider} webhook "
                    f"secret was changed, the {self.receiver} receiver still accepted "
                    f"a delivery ({self.tampered_status})",
                    fix="Open the secret with AES-256-GCM and reject the delivery when "
                    "the tag does not verify",
                )
            ]
        return []


def receivers_by_provider(config: Config) -> dict[str, tuple[str, Any]]:
    """Map a provider to the first configured webhook receiver that uses its scheme."""
    found: dict[str, tuple[str, Any]] = {}
    for name, webhook in config.webhooks.items():
        found.setdefault(webhook.provider or name, (name, webhook))
    return found


def _signed_delivery(provider: str, secret: str) -> tuple[bytes, dict[str, str]]:
    import json
    import time

    from assay.webhooks.signers import get_signer

    signer = get_signer(provider)
    event_id = "evt_assay_" + random_text()
    document: dict[str, Any] = {"type": "assay.ping"}
    if signer.event_id.where == "body":
        target = document
        *parents, last = signer.event_id.name.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = event_id
    body = json.dumps(document).encode()
    headers = signer.headers(
        body, secret, timestamp=int(time.time()), event_id=event_id
    )
    headers["Content-Type"] = "application/json"
    return body, headers


def deliver_signed(
    client: AppClient,
    receiver: tuple[str, Any],
    canary: StoredCanary,
    stored: StoredValue,
    result: OpenResult | None,
) -> DeliveryOutcome:
    """Send a delivery signed with the canary secret, then again after tampering."""
    name, webhook = receiver
    outcome = DeliveryOutcome(canary.provider, name)
    path = webhook.path.format_map(
        {"tenant_id": canary.tenant_id, "provider": canary.provider}
    )
    try:
        body, headers = _signed_delivery(canary.provider, canary.canary.value)
    except KeyError:
        return outcome
    outcome.intact_status = client.request(
        "POST", path, content=body, headers=headers
    ).status_code

    tampered = tamper(
        stored.value, result.opened if result and result.decrypted else None
    )
    outcome.written = (
        write_value(client.dsn, stored.column, stored.value, tampered) == 1
    )
    if not outcome.written:
        return outcome
    try:
        body, headers = _signed_delivery(canary.provider, canary.canary.value)
        outcome.tampered_status = client.request(
            "POST", path, content=body, headers=headers
        ).status_code
    finally:
        write_value(client.dsn, stored.column, tampered, stored.value)
    logger.info(
        "sent %s deliveries with an intact and a tampered secret: %s, %s",
        canary.provider,
        outcome.intact_status,
        outcome.tampered_status,
    )
    return outcome
