"""The target contract, ``assay.yaml``, as one frozen object.

Each section of the file is a frozen dataclass below. The loader walks the
dataclass fields, so a section documents its keys once: the field name is the
key, the type is what is accepted, the default is what an absent key means.
Unknown keys are rejected with the nearest valid key suggested, and every
error names the file, the line, the key and the value.

Precedence is command line, then file, then default: the CLI passes its
options to ``load_config`` as overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from assay.errors import ConfigError
from assay.yamlfile import LocatedYaml, load_yaml

__all__ = [
    "AppConfig",
    "AttestedConfig",
    "CardScanConfig",
    "Config",
    "DatabaseConfig",
    "EncryptionConfig",
    "EvidenceConfig",
    "ExemptTable",
    "IndexerConfig",
    "MembershipConfig",
    "MigrationsConfig",
    "ServiceRoleConfig",
    "TenancyConfig",
    "VantaConfig",
    "WebhookConfig",
    "find_config",
    "load_config",
]

CONFIG_NAME = "assay.yaml"


@dataclass(frozen=True)
class DatabaseConfig:
    """The PostgreSQL server Assay migrates and attacks, and how to get it."""

    provider: Literal["auto", "url", "docker", "local", "pypi"] = "auto"
    url: str | None = None
    flavor: Literal["supabase", "postgres"] = "supabase"
    image: str = "postgres:15"
    bindir: str | None = None


@dataclass(frozen=True)
class MigrationsConfig:
    """The migrations folder and the settings for reading its files."""

    path: str = "supabase/migrations"
    variables: dict[str, str] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MembershipConfig:
    """The table that records which user belongs to which tenant."""

    table: str = "public.members"
    tenant_column: str = "organization_id"
    user_column: str = "user_id"


@dataclass(frozen=True)
class ExemptTable:
    """A table outside the tenant-isolation claim, with the reason why."""

    table: str
    reason: str


@dataclass(frozen=True)
class TenancyConfig:
    """What a tenant is and how a session acts as one of its users."""

    column: str = "organization_id"
    tenant_table: str = "public.organizations"
    membership: MembershipConfig | None = field(default_factory=MembershipConfig)
    act_as: str = "supabase"
    role: str = "authenticated"
    anon_role: str = "anon"
    schemas: list[str] = field(default_factory=lambda: ["public"])
    exempt: list[ExemptTable] = field(default_factory=list)
    seed_sql: str | None = None


@dataclass(frozen=True)
class AppConfig:
    """The application under test: started by Assay, or already running.

    `command`, the values of `env` and `logs` may use {port}, {host},
    {database_url} (a postgresql:// URL), {dsn} (libpq key=value), {key} (the
    encoded encryption key), {jwt_secret}, {log_dir} and {python} (the
    interpreter running Assay). `url` instead names an application someone
    else started; checks that need Assay's own key are then not applicable.
    """

    command: str | None = None
    url: str | None = None
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    ready_path: str = "/health"
    ready_timeout: float = 20.0
    jwt_secret: str | None = None
    logs: list[str] = field(default_factory=list)
    providers: dict[str, str] = field(default_factory=dict)
    openapi_path: str | None = "/openapi.json"


@dataclass(frozen=True)
class EncryptionConfig:
    """Where the application keeps encrypted tokens and which key it reads.

    Columns are ``schema.table.column``. Requests are ``METHOD /path`` with
    {provider} filled in; `oauth_start` must answer with a redirect whose
    ``state`` parameter is passed on to `oauth_callback` with a ``code``.
    """

    key_env: str = "TOKEN_ENCRYPTION_KEY"
    key_encoding: Literal["base64", "hex", "raw"] = "base64"
    token_columns: list[str] = field(default_factory=list)
    secret_columns: list[str] = field(default_factory=list)
    token_providers: list[str] = field(default_factory=list)
    secret_providers: list[str] = field(default_factory=list)
    oauth_start: str = "GET /oauth/{provider}/start"
    oauth_callback: str = "GET /oauth/{provider}/callback"
    use_token: str = "POST /api/integrations/{provider}/sync"
    store_secret: str = "PUT /api/webhook-secrets/{provider}"
    secret_field: str = "secret"
    use_secret: str | None = None
    endpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookConfig:
    """One inbound webhook receiver of the application, keyed by a name.

    `provider` names the signature scheme (the key when absent). `path` may
    use {tenant_id} and {provider}. `register` is the request, ``METHOD
    /path`` with the same placeholders, that stores a signing secret as a
    member of the tenant; Assay sends a fresh secret of its own in the JSON
    field `secret_field`. `secret` instead names a secret the application
    already has. `side_effect_sql` returns the count of one event's side
    effects, using {event_id}, {marker} (a text the event's public content
    carries), {tenant_id} or {provider}. `concurrency` is how many copies of
    one event the replay probe sends at once.
    """

    path: str
    side_effect_sql: str
    provider: str | None = None
    register: str = "PUT /api/orgs/{tenant_id}/webhook-secrets/{provider}"
    secret_field: str = "secret"
    secret: str | None = None
    concurrency: int = 8


@dataclass(frozen=True)
class IndexerConfig:
    """The command or endpoint that indexes a repository, and where it stores.

    `command` is run without a shell, from `cwd`, with `env` added to the
    environment. Both may use {repo} (the probe repository), {database_url},
    {organization_id}, {workdir} (an empty folder for files it writes) and
    {python} (the interpreter running Assay). `read_sql` selects what was
    stored for the organization, using {organization_id}; every table of the
    database is searched too. `outputs` lists files or folders the indexer
    writes, with the same placeholders; they are searched as well.
    """

    command: str | None = None
    endpoint: str | None = None
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    read_sql: str | None = None
    outputs: list[str] = field(default_factory=list)
    timeout: float = 120.0


@dataclass(frozen=True)
class ServiceRoleConfig:
    """Where to look for service-role client use and how it is justified."""

    paths: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    marker: str = "service-role:"
    # The Supabase client patterns of assay.service_role, kept unless false.
    defaults: bool = True
    # How many comment lines just above a use may hold the marker.
    lines_above: int = 3
    extensions: list[str] = field(
        default_factory=lambda: [
            ".py", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".sql", ".sh",
            ".go", ".rb", ".php",
        ]
    )


@dataclass(frozen=True)
class AttestedConfig:
    """An attested control's evidence file, owner and maximum age.

    `collected` is the date the evidence was collected. Without it, Assay
    reads ``collected:`` from a sidecar file named FILE.attestation.yaml,
    then falls back to the date of the last git commit that changed the file.
    """

    control: str
    file: str
    owner: str
    max_age_days: int
    collected: date | None = None


@dataclass(frozen=True)
class CardScanConfig:
    """Which schemas the payment-card scan reads; empty means all but PostgreSQL's."""

    schemas: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvidenceConfig:
    """The evidence folder and the keys that sign it."""

    report_dir: str = "reports"
    signing_key_env: str = "ASSAY_SIGNING_KEY"
    public_key: str | None = None
    # A PEM private key file, read when the environment variable is unset.
    signing_key_file: str | None = None


@dataclass(frozen=True)
class VantaConfig:
    """Where `assay upload vanta` sends evidence, and the credentials it reads.

    `documents` maps a file of the evidence folder (report.html) to the id
    of the Vanta document it is uploaded to. `resource_id` names the custom
    resource type that receives one resource per control. Secrets are never
    written here: the file names the environment variables that hold them.
    """

    base_url: str = "https://api.vanta.com"
    client_id_env: str = "VANTA_CLIENT_ID"
    client_secret_env: str = "VANTA_CLIENT_SECRET"
    scopes: list[str] = field(default_factory=list)
    documents: dict[str, str] = field(default_factory=dict)
    resource_id: str | None = None
    # Link shown on each resource in Vanta; {control} and {commit} are filled in.
    external_url: str | None = None
    max_retries: int = 5
    max_wait_seconds: float = 60.0
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class Config:
    """The whole of assay.yaml, resolved. Paths are relative to `root`."""

    file: str
    root: Path
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    migrations: MigrationsConfig = field(default_factory=MigrationsConfig)
    tenancy: TenancyConfig | None = None
    app: AppConfig | None = None
    encryption: EncryptionConfig | None = None
    webhooks: dict[str, WebhookConfig] = field(default_factory=dict)
    indexer: IndexerConfig | None = None
    service_role: ServiceRoleConfig | None = None
    attested: list[AttestedConfig] = field(default_factory=list)
    # waivers.yaml next to assay.yaml unless this names another file.
    waivers: str | None = None
    card_scan: CardScanConfig | None = None
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    vanta: VantaConfig | None = None
    controls_dir: str | None = None
    lines: dict = field(default_factory=dict, repr=False, compare=False)

    def catalog_dir(self) -> Path | None:
        """The folder of a team's own control catalog, if it has one."""
        return self.path(self.controls_dir) if self.controls_dir else None

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the folder holding assay.yaml."""
        return (self.root / os.path.expandvars(relative)).resolve()

    def where(self, *keys: str | int) -> tuple[str, int | None]:
        """Return (file, line) of a key path, for error messages."""
        path = tuple(keys)
        while path:
            if path in self.lines:
                return self.file, self.lines[path]
            path = path[:-1]
        return self.file, None

    def error(self, keys: tuple, value: object, reason: str, fix: str) -> ConfigError:
        """Build a ConfigError located at a key path of this file."""
        file, line = self.where(*keys)
        return ConfigError(
            reason,
            file=file,
            line=line,
            key=".".join(map(str, keys)),
            value=value,
            fix=fix,
        )


_TOP_LEVEL_SKIP = {"file", "root", "lines"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    return getattr(tp, "__name__", str(tp))


# Longest repr of a mapping or list value that an error message shows in full.
_MAX_VALUE_CHARS = 60


class _Elided:
    """A mapping or list too long for an error message, shown as {...} or [...]."""

    def __init__(self, value: dict | list) -> None:
        self.text = "{...}" if isinstance(value, dict) else "[...]"

    def __repr__(self) -> str:
        return self.text


class _Builder:
    """Turns located YAML data into the frozen dataclasses, or fails precisely."""

    def __init__(self, located: LocatedYaml) -> None:
        self.located = located

    def fail(self, path: tuple, value: object, reason: str, fix: str) -> ConfigError:
        if isinstance(value, (dict, list)) and len(repr(value)) > _MAX_VALUE_CHARS:
            value = _Elided(value)
        return ConfigError(
            reason,
            file=self.located.file,
            line=self.located.line(path),
            key=".".join(map(str, path)) or "(document)",
            value=value,
            fix=fix,
        )

    def build(self, tp: Any, value: Any, path: tuple) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)

        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.build(inner[0], value, path)

        if origin is Literal:
            if value not in args:
                close = difflib.get_close_matches(str(value), [str(a) for a in args], 1)
                hint = f"Did you mean {close[0]!r}? " if close else ""
                raise self.fail(
                    path, value, "invalid value", f"{hint}Use {_type_name(tp)}"
                )
            return value

        if origin is list or origin is tuple:
            if value is None:
                return [] if origin is list else ()
            if not isinstance(value, list):
                raise self.fail(path, value, "expected a list", "Write it as a YAML list")
            items = [self.build(args[0], v, path + (i,)) for i, v in enumerate(value)]
            return items if origin is list else tuple(items)

        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise self.fail(path, value, "expected a mapping", "Write key: value pairs")
            return {
                str(k): self.build(args[1], v, path + (k,)) for k, v in value.items()
            }

        if dataclasses.is_dataclass(tp):
            return self.build_dataclass(tp, value, path)

        return self.build_scalar(tp, value, path)

    def build_scalar(self, tp: Any, value: Any, path: tuple) -> Any:
        if tp is bool:
            if isinstance(value, bool):
                return value
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif tp is str:
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
        else:
            return value
        raise self.fail(
            path, value, f"expected {_type_name(tp)}", f"Write {_type_name(tp)}"
        )

    def build_dataclass(self, cls: type, value: Any, path: tuple) -> Any:
        if value is None:
            value = {}
        hints = typing.get_type_hints(cls)
        fields = {
            f.name: f
            for f in dataclasses.fields(cls)
            if not (cls is Config and f.name in _TOP_LEVEL_SKIP)
        }
        if not isinstance(value, dict):
            raise self.fail(
                path,
                value,
                "expected a mapping",
                "Write it as key: value lines with the keys " + ", ".join(fields),
            )
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), 1, 0.5)
                fix = (
                    f"Did you mean {close[0]!r}?"
                    if close
                    else "Valid keys: " + ", ".join(sorted(fields))
                )
                raise self.fail(path + (key,), value[key], "unknown key", fix)

        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = self.build(hints[name], value[name], path + (name,))
            elif f.default is dataclasses.MISSING and (
                f.default_factory is dataclasses.MISSING
            ):
                raise self.fail(
                    path + (name,),
                    None,
                    "missing required key",
                    f"Add {name}: ({_type_name(hints[name])}) under "
                    f"{'.'.join(map(str, path)) or 'the document'}",
                )
        return cls, kwargs


def _materialise(built: Any) -> Any:
    """Instantiate the (cls, kwargs) pairs produced by the builder, inside out."""
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], type):
        cls, kwargs = built
        return cls(**{k: _materialise(v) for k, v in kwargs.items()})
    if isinstance(built, list):
        return [_materialise(v) for v in built]
    if isinstance(built, tuple):
        return tuple(_materialise(v) for v in built)
    if isinstance(built, dict):
        return {k: _materialise(v) for k, v in built.items()}
    return built


def find_config(start: Path | None = None) -> Path:
    """Return ./assay.yaml, or raise a ConfigError saying how to point at one."""
    candidate = (start or Path.cwd()) / CONFIG_NAME
    if candidate.is_file():
        return candidate
    raise ConfigError(
        "no assay.yaml in the current folder",
        file=str(candidate),
        fix="Run Assay from the project root or pass --config PATH",
    )


def load_config(path: Path | None = None) -> Config:
    """Load and validate assay.yaml; every problem raises ConfigError."""
    path = path or find_config()
    display = str(path)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        # Shorter, and still a path the user can open from where they ran Assay.
        display = os.path.relpath(path)
    located = load_yaml(path, display=display)
    data = located.data if located.data is not None else {}
    builder = _Builder(located)
    if not isinstance(data, dict):
        raise builder.fail((), data, "expected a mapping of sections", "See README")

    cls, kwargs = builder.build_dataclass(Config, data, ())
    sections = {k: _materialise(v) for k, v in kwargs.items()}
    config = Config(
        file=display,
        root=path.resolve().parent,
        lines=dict(located.lines),
        **sections,
    )
    _check(config)
    return config


def _qualified(name: str) -> bool:
    return "." in name and all(part for part in name.split("."))


def _check(config: Config) -> None:
    """Cross-field rules that the types alone cannot express."""
    db = config.database
    if db.provider == "url" and not db.url:
        raise config.error(
            ("database", "provider"),
            db.provider,
            "provider url needs database.url",
            "Add url: postgresql://USER@HOST/DB or use provider auto",
        )
    scheme = db.url.split("://", 1)[0] if db.url and "://" in db.url else None
    if scheme is not None and scheme not in ("postgresql", "postgres"):
        raise config.error(
            ("database", "url"),
            re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", db.url),
            f"Assay needs PostgreSQL, not a {scheme}:// URL",
            "Write it as postgresql://USER:PASSWORD@HOST:PORT/DB",
        )

    tenancy = config.tenancy
    if tenancy is not None:
        if not _qualified(tenancy.tenant_table):
            raise config.error(
                ("tenancy", "tenant_table"),
                tenancy.tenant_table,
                "table name must be schema-qualified",
                f"Write public.{tenancy.tenant_table}",
            )
        if tenancy.act_as != "supabase" and not any(
            marker in tenancy.act_as for marker in ("{user_id}", "{tenant_id}")
        ):
            raise config.error(
                ("tenancy", "act_as"),
                tenancy.act_as,
                "act_as is neither 'supabase' nor a SQL template",
                "Write supabase, or SQL using {user_id} and {tenant_id}, e.g. "
                "set local app.tenant_id = {tenant_id}",
            )
        if tenancy.membership is None and not tenancy.seed_sql:
            raise config.error(
                ("tenancy", "membership"),
                None,
                "no membership table and no seed_sql",
                "Name the membership table, or give seed_sql that creates members",
            )
        for index, exempt in enumerate(tenancy.exempt):
            if not exempt.reason.strip():
                raise config.error(
                    ("tenancy", "exempt", index, "reason"),
                    exempt.reason,
                    "an exemption needs a reason",
                    "Say why the table holds no customer data",
                )

    app = config.app
    if app is not None and app.port is not None and not 1 <= app.port <= 65535:
        raise config.error(
            ("app", "port"),
            app.port,
            "a TCP port must be between 1 and 65535",
            "Give a free port, or remove app.port to let Assay pick one",
        )

    vanta = config.vanta
    if vanta is not None:
        # Each limit: the key, its bound, and whether the bound itself is invalid.
        limits = (
            ("max_retries", 0, False),
            ("max_wait_seconds", 0, False),
            ("timeout_seconds", 0, True),
        )
        for key, lowest, exclusive in limits:
            value = getattr(vanta, key)
            if value < lowest or (exclusive and value == lowest):
                expected = f"more than {lowest}" if exclusive else f"{lowest} or more"
                raise config.error(
                    ("vanta", key),
                    value,
                    f"{key} must be {expected}",
                    f"Give {key} as a number {expected}, or remove it for the default",
                )

    for name, webhook in config.webhooks.items():
        _check_webhook(config, name, webhook)


_WEBHOOK_PLACEHOLDERS = {
    "path": ("tenant_id", "provider"),
    "register": ("tenant_id", "provider"),
    "side_effect_sql": ("event_id", "marker", "tenant_id", "provider"),
}


def _check_webhook(config: Config, name: str, webhook: WebhookConfig) -> None:
    """Reject an unknown provider, unknown placeholders and an unbounded burst."""
    from assay.webhooks.signers import known_providers

    provider = webhook.provider or name
    if provider not in known_providers():
        key = "provider" if webhook.provider else None
        close = difflib.get_close_matches(provider, known_providers(), 1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise config.error(
            ("webhooks", name, key) if key else ("webhooks", name),
            provider,
            "unknown webhook provider",
            f"{hint}Known providers: {', '.join(known_providers())}; name the "
            "entry after one, or set provider:",
        )
    for key, allowed in _WEBHOOK_PLACEHOLDERS.items():
        template = getattr(webhook, key)
        for found in re.findall(r"\{(\w*)\}", template):
            if found not in allowed:
                raise config.error(
                    ("webhooks", name, key),
                    template,
                    f"unknown placeholder {{{found}}}",
                    "Use only " + ", ".join("{" + a + "}" for a in allowed),
                )
    if not re.search(r"\{(event_id|marker)\}", webhook.side_effect_sql):
        raise config.error(
            ("webhooks", name, "side_effect_sql"),
            webhook.side_effect_sql,
            "the side-effect SQL does not depend on the event",
            "Count the effects of one event with {event_id} or {marker}, e.g. "
            "select count(*) from public.comments where strpos(body, {marker}) > 0",
        )
    if not webhook.path.startswith("/"):
        raise config.error(
            ("webhooks", name, "path"),
            webhook.path,
            "the path must start with /",
            f"Write the path of the receiver, e.g. /webhooks/{provider}/{{tenant_id}}",
        )
    if not 2 <= webhook.concurrency <= 64:
        raise config.error(
            ("webhooks", name, "concurrency"),
            webhook.concurrency,
            "concurrency must be between 2 and 64",
            "Use a small number of simultaneous copies, e.g. 8",
        )
