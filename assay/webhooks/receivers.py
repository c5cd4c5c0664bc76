"""Webhook receivers of the running application, ready to be attacked.

For each entry of ``webhooks:`` in assay.yaml, Assay registers a secret of
its own through the application, as a member of the receiver's tenant, so it
can sign valid deliveries. It also compiles the SQL that counts an event's
side effects. A path, a registration request or an SQL that does not work is
the user's to fix, so it raises ConfigError located at its key.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx
import psycopg

from assay.canaries import Canary, register
from assay.config import Config, WebhookConfig
from assay.errors import ConfigError, TargetError
from assay.webhooks.signers import Signer, get_signer

__all__ = [
    "EffectCounter",
    "Receiver",
    "SQL_PLACEHOLDERS",
    "WebhookTarget",
    "compile_sql",
    "prepare_receivers",
]

logger = logging.getLogger(__name__)

SQL_PLACEHOLDERS = ("event_id", "marker", "tenant_id", "provider")
PATH_PLACEHOLDERS = ("tenant_id", "provider")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass
class WebhookTarget:
    """The running application as the webhook probes see it.

    `member_headers` make a request act as a member of `tenant_id`.
    `read_logs` returns the application's log files. It is None when Assay
    did not start the application, because there are no logs to read then.
    """

    url: str
    http: httpx.Client
    dsn: str
    tenant_id: str
    member_headers: dict[str, str]
    read_logs: Callable[[], dict[Path, bytes]] | None = None

    @property
    def on_loopback(self) -> bool:
        return urlsplit(self.url).hostname in LOOPBACK_HOSTS


def compile_sql(template: str) -> str:
    """Turn ``{event_id}``-style placeholders into psycopg named parameters."""
    escaped = template.replace("%", "%%")
    return _PLACEHOLDER.sub(lambda match: f"%({match.group(1)})s", escaped)


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def method_and_path(text: str) -> tuple[str, str]:
    """Split ``"PUT /path"`` into method and path (POST when no method is given)."""
    parts = text.split(None, 1)
    if len(parts) == 2 and parts[0].isalpha():
        return parts[0].upper(), parts[1].strip()
    return "POST", text.strip()


class EffectCounter:
    """Runs one receiver's side-effect SQL on the application's database.

    One connection, opened lazily and reused; the lock makes the counter
    safe to call from the threads of a concurrent probe.
    """

    def __init__(self, dsn: str, template: str, *, tenant_id: str, provider: str):
        self.dsn = dsn
        self.query = compile_sql(template)
        self.values = {"tenant_id": tenant_id, "provider": provider}
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def count(self, event_id: str, marker: str) -> int:
        """Return the number of side effects the SQL counts for one event."""
        params = dict(self.values, event_id=event_id, marker=marker)
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True)
            row = self._conn.execute(self.query, params).fetchone()
        if row is None or len(row) != 1 or not isinstance(row[0], int):
            raise TypeError(f"expected one integer, got {row!r}")
        return row[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Receiver:
    """One configured receiver: its signer, resolved path, secret and counter."""

    name: str
    config: WebhookConfig
    signer: Signer
    path: str
    secret: str = field(repr=False)
    counter: EffectCounter
    tenant_id: str

    @property
    def provider(self) -> str:
        return self.signer.name

    def close(self) -> None:
        self.counter.close()


def provider_of(name: str, webhook: WebhookConfig) -> str:
    return webhook.provider or name


def prepare_receivers(config: Config, target: WebhookTarget) -> list[Receiver]:
    """Register Assay's secret for every receiver and check its SQL.

    Raises ConfigError for a registration request that fails and for a
    side-effect SQL that PostgreSQL rejects or that returns no integer.
    """
    receivers = []
    for name, webhook in config.webhooks.items():
        signer = get_signer(provider_of(name, webhook))
        values = {"tenant_id": str(target.tenant_id), "provider": signer.name}
        secret = _secret(config, name, webhook, signer, target, values)
        counter = EffectCounter(
            target.dsn,
            webhook.side_effect_sql,
            tenant_id=str(target.tenant_id),
            provider=signer.name,
        )
        _check_sql(config, name, counter)
        receivers.append(
            Receiver(
                name=name,
                config=webhook,
                signer=signer,
                path=_fill(webhook.path, values),
                secret=secret,
                counter=counter,
                tenant_id=str(target.tenant_id),
            )
        )
    return receivers


def _secret(
    config: Config,
    name: str,
    webhook: WebhookConfig,
    signer: Signer,
    target: WebhookTarget,
    values: dict[str, str],
) -> str:
    """Return the signing secret: a fresh canary registered through the app."""
    if webhook.secret is not None:
        register(Canary(webhook.secret, "webhook-secret", f"{name} configured secret"))
        return webhook.secret

    secret = signer.new_secret()
    register(Canary(secret, "webhook-secret", f"{name} signing secret"))
    method, path = method_and_path(_fill(webhook.register, values))
    try:
        response = target.http.request(
            method,
            path,
            json={webhook.secret_field: secret},
            headers=target.member_headers,
        )
    except httpx.HTTPError as error:
        raise TargetError(
            f"registering the {name} webhook secret with {method} {path} failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    logger.info(
        "registered the %s webhook secret: %s %s returned %d",
        name,
        method,
        path,
        response.status_code,
    )
    if not 200 <= response.status_code < 300:
        raise config.error(
            ("webhooks", name, "register"),
            webhook.register,
            f"{method} {path} as a member of the tenant returned "
            f"{response.status_code} ({response.text[:200]!r}), so Assay could not "
            "register its signing secret",
            "Name the request that stores a webhook signing secret, e.g. "
            "PUT /api/orgs/{tenant_id}/webhook-secrets/{provider}, and the JSON "
            "field that carries it in secret_field",
        )
    return secret


def _check_sql(config: Config, name: str, counter: EffectCounter) -> None:
    try:
        counter.count("assay-no-such-event", "assay-no-such-marker")
    except psycopg.Error as error:
        counter.close()
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise config.error(
            ("webhooks", name, "side_effect_sql"),
            config.webhooks[name].side_effect_sql,
            f"the side-effect SQL failed on the application's database: "
            f"{type(error).__name__}: {message}",
            "Write a query returning one integer, the count of an event's side "
            "effects, using {event_id}, {marker}, {tenant_id} or {provider}",
        ) from None
    except TypeError as error:
        counter.close()
        raise config.error(
            ("webhooks", name, "side_effect_sql"),
            config.webhooks[name].side_effect_sql,
            f"the side-effect SQL must return one integer ({error})",
            "Write it as select count(*) from ... where ...",
        ) from None


def not_found_error(config: Config, receiver: Receiver, status: int) -> ConfigError:
    """Build the error for a webhook path the application does not serve."""
    return config.error(
        ("webhooks", receiver.name, "path"),
        receiver.config.path,
        f"POST {receiver.path} returned {status}, so the application has no "
        "receiver at this path",
        "Set path to the route of the receiver, e.g. /webhooks/"
        f"{receiver.provider}/{{tenant_id}}",
    )


def describe_placeholders(kind: str) -> str:
    names = SQL_PLACEHOLDERS if kind == "sql" else PATH_PLACEHOLDERS
    return ", ".join("{" + name + "}" for name in names)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def redacted_headers(headers: dict[str, str], signer: Signer) -> dict[str, str]:
    """Return `headers` with the signature value replaced by its length."""
    shown = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == signer.signature_header.lower() or lowered.endswith("signature"):
            shown[name] = f"<redacted, {len(value)} characters>"
        else:
            shown[name] = value
    return shown
