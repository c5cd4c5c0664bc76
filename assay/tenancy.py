"""Tenant-isolation rules TI-1, TI-2, TI-3 and TI-5 over a schema model.

The same rules judge two models: the one replayed from the migration files
(``assay lint``, with file and line) and the one read from the live catalog
of the migrated database (``assay run``). For live findings the location is
taken from the static model's matching object, so a live verdict still
points at the migration line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from assay.config import TenancyConfig
from assay.findings import Finding
from assay.predicates import analyse, function_infos

__all__ = [
    "COMMANDS",
    "TenancyScope",
    "check_bypass",
    "check_policies",
    "check_same_file",
    "check_tenant_column",
    "customer_tables",
]

COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")
ROW_KINDS = ("table", "partitioned", "partition")
FALSE_TEXTS = {"false", "(false)", "1 = 0", "(1 = 0)"}


def qualify(name: str, default_schema: str = "public") -> str:
    return name if "." in name else f"{default_schema}.{name}"


@dataclass(frozen=True)
class TenancyScope:
    """The tenancy section as the rules read it, with names schema-qualified."""

    column: str
    tenant_table: str
    membership_table: str | None
    schemas: tuple[str, ...]
    exempt: dict[str, str]
    app_roles: tuple[str, ...]
    anon_role: str
    user_role: str
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, tenancy: TenancyConfig) -> "TenancyScope":
        membership = tenancy.membership.table if tenancy.membership else None
        return cls(
            column=tenancy.column,
            tenant_table=qualify(tenancy.tenant_table),
            membership_table=qualify(membership) if membership else None,
            schemas=tuple(tenancy.schemas),
            exempt={qualify(e.table): e.reason for e in tenancy.exempt},
            app_roles=("public", tenancy.anon_role, tenancy.role),
            anon_role=tenancy.anon_role,
            user_role=tenancy.role,
        )


def customer_tables(model, scope: TenancyScope) -> list:
    """Return the tables the claim covers: row tables in exposed schemas, not exempt."""
    tables = []
    for name, table in sorted(model.tables.items()):
        schema = name.split(".", 1)[0]
        if schema not in scope.schemas or table.kind not in ROW_KINDS:
            continue
        if name in scope.exempt:
            continue
        tables.append(table)
    return tables


def _location(table, static) -> tuple[str | None, int | None]:
    """Where a table was created, from its own model or the static one."""
    source = table
    if static is not None and getattr(table, "created", None) is None:
        source = static.tables.get(table.name) or table
    created = getattr(source, "created", None)
    if created is None:
        return None, None
    return created.file, created.line


def _policy_location(policy, table_name: str, static) -> tuple[str | None, int | None]:
    source = policy
    if static is not None and getattr(policy, "location", None) is None:
        table = static.tables.get(table_name)
        source = table.policies.get(policy.name) if table else None
    location = getattr(source, "location", None) if source else None
    if location is None:
        return None, None
    return location.file, location.line


def _columns(model, table) -> dict:
    if table.columns:
        return table.columns
    parent = model.tables.get(table.parent) if table.parent else None
    return parent.columns if parent else {}


# TI-1 --------------------------------------------------------------------------


def check_tenant_column(model, scope: TenancyScope, *, source: str, static=None):
    """TI-1: every customer-data table has the tenant column."""
    findings: list[Finding] = []
    tables = customer_tables(model, scope)
    for table in tables:
        if table.name == scope.tenant_table:
            continue
        if scope.column in _columns(model, table):
            continue
        file, line = _location(table, static)
        findings.append(
            Finding(
                control="TI-1",
                rule="tenant-column-missing",
                message=(
                    f"table {table.name} has no {scope.column} column, so its rows "
                    "belong to no tenant"
                ),
                file=file,
                line=line,
                table=table.name,
                source=source,
                fix=(
                    f"add {scope.column} referencing {scope.tenant_table}, or list "
                    "the table under tenancy.exempt with the reason it holds no "
                    "customer data"
                ),
            )
        )
    for exempt in scope.exempt:
        if exempt not in model.tables:
            findings.append(
                Finding(
                    control="TI-1",
                    rule="exempt-table-missing",
                    level="warning",
                    message=f"tenancy.exempt names {exempt}, which no migration creates",
                    table=exempt,
                    source=source,
                    fix="remove the stale exemption or fix the table name",
                )
            )
    return findings, len(tables)


# TI-2 --------------------------------------------------------------------------


def _applies_to_app(policy, scope: TenancyScope) -> bool:
    roles = set(policy.roles or ("public",))
    return bool(roles & set(scope.app_roles)) or not roles


def _expressions(policy, command: str) -> list[tuple[str, str | None]]:
    """Return the predicate texts PostgreSQL evaluates for `command` under `policy`."""
    if command in ("SELECT", "DELETE"):
        return [("USING", policy.using)]
    if command == "INSERT":
        # A FOR ALL policy without WITH CHECK checks new rows with USING.
        if policy.check is None and policy.command == "ALL":
            return [("USING", policy.using)]
        return [("WITH CHECK", policy.check)]
    # UPDATE: USING picks the rows; WITH CHECK (or USING when absent) checks the result.
    if policy.check is None:
        return [("USING", policy.using)]
    return [("USING", policy.using), ("WITH CHECK", policy.check)]


def _clause_for(command: str) -> str:
    """Return the clause a new policy for `command` needs (INSERT takes WITH CHECK)."""
    return "with check" if command == "INSERT" else "using"


def _is_false(text: str | None) -> bool:
    return text is not None and text.strip().lower() in FALSE_TEXTS


def _analysis_context(model) -> tuple[dict, dict]:
    """Helper functions and table columns, computed once per model."""
    cached = getattr(model, "_assay_context", None)
    if cached is None:
        tables = {name: list(_columns(model, table)) for name, table in model.tables.items()}
        cached = (function_infos(model), tables)
        try:
            model._assay_context = cached
        except AttributeError:
            pass
    return cached


def _policy_problems(model, table, policy, command, scope) -> list[tuple[str, str, str]]:
    """Return (level, rule, reason) for each way `policy` fails to scope `command`."""
    problems = []
    columns = list(_columns(model, table))
    for clause, text in _expressions(policy, command):
        if text is None:
            problems.append(
                ("error", "policy-no-predicate", f"{clause} is missing, so it admits every row")
            )
            continue
        if _is_false(text):
            continue
        functions, tables = _analysis_context(model)
        result = analyse(
            text, table=table.name, columns=columns, functions=functions, tables=tables
        )
        if result.user_metadata:
            problems.append(
                (
                    "error",
                    "policy-trusts-user-metadata",
                    f"{clause} ({text}) reads user_metadata, which users can edit",
                )
            )
        if result.always_true:
            problems.append(
                ("error", "policy-always-true", f"{clause} ({text}) is always true")
            )
        elif result.scoped is False:
            why = "; ".join(result.reasons) or "it does not depend on the caller"
            problems.append(
                (
                    "error",
                    "policy-not-tenant-scoped",
                    f"{clause} ({text}) is not scoped to the caller's tenant: {why}",
                )
            )
        elif result.scoped is None:
            why = "; ".join(result.reasons) or "its meaning could not be resolved"
            problems.append(
                (
                    "undecided",
                    "policy-undecided",
                    f"{clause} ({text}) could not be judged: {why}",
                )
            )
    return problems


def check_policies(model, scope: TenancyScope, *, source: str, static=None):
    """TI-2: RLS is on and every command's policies are scoped to the caller."""
    findings: list[Finding] = []
    tables = customer_tables(model, scope)
    for table in tables:
        file, line = _location(table, static)
        if not table.rls:
            disabled = getattr(table, "rls_disabled_at", None)
            if disabled is None and static is not None and table.name in static.tables:
                disabled = static.tables[table.name].rls_disabled_at
            where = f" (disabled at {disabled.file}:{disabled.line})" if disabled else ""
            if disabled:
                file, line = disabled.file, disabled.line
            findings.append(
                Finding(
                    control="TI-2",
                    rule="rls-disabled",
                    message=f"row level security is not enabled on {table.name}{where}",
                    file=file,
                    line=line,
                    table=table.name,
                    source=source,
                    fix=f"alter table {table.name} enable row level security",
                )
            )
            continue
        findings.extend(_check_commands(model, table, scope, source, static, file, line))
    return findings, len(tables)


def _check_commands(model, table, scope, source, static, file, line) -> list[Finding]:
    findings = []
    policies = [p for p in table.policies.values() if _applies_to_app(p, scope)]
    # The live catalog records which commands the application roles hold a
    # privilege for. A command none of them may run fails before row level
    # security is consulted, so it needs no policy. NOTE: the static model
    # does not resolve privileges, so `assay lint` still reports such commands.
    allowed = getattr(table, "app_commands", None)
    for command in COMMANDS:
        if allowed is not None and command not in allowed:
            continue
        relevant = [p for p in policies if p.command in (command, "ALL")]
        permissive = [p for p in relevant if p.permissive]
        restrictive = [p for p in relevant if not p.permissive]
        if not permissive:
            findings.append(
                Finding(
                    control="TI-2",
                    rule="command-without-policy",
                    message=(
                        f"{table.name} has no policy for {command}, so the claim that "
                        f"policies cover {command} does not hold (the command is "
                        "silently denied)"
                    ),
                    file=file,
                    line=line,
                    table=table.name,
                    source=source,
                    fix=f"create policy ... on {table.name} for {command.lower()} "
                    f"to {scope.user_role} {_clause_for(command)} (<tenant predicate>)",
                )
            )
            continue
        if any(not _policy_problems(model, table, p, command, scope) for p in restrictive):
            continue
        for policy in permissive:
            for level, rule, reason in _policy_problems(model, table, policy, command, scope):
                p_file, p_line = _policy_location(policy, table.name, static)
                findings.append(
                    Finding(
                        control="TI-2",
                        rule=rule,
                        level=level,
                        message=(
                            f"policy {policy.name} on {table.name} for {command}: "
                            f"{reason}"
                        ),
                        file=p_file or file,
                        line=p_line or line,
                        table=table.name,
                        policy=policy.name,
                        source=source,
                        fix=(
                            "compare a row column to the caller's tenant, e.g. "
                            f"{scope.column} in (select ... where user_id = auth.uid())"
                        ),
                    )
                )
    return findings


# TI-3 --------------------------------------------------------------------------


def _range_name(node, default_schema: str = "public") -> str | None:
    relation = getattr(node, "relation", None) or getattr(node, "table", None)
    if relation is None:
        return None
    schema = getattr(relation, "schemaname", None) or default_schema
    return f"{schema}.{relation.relname}"


def _file_nodes(migration) -> Iterable[tuple[int, object]]:
    """Yield (line, node) for each statement, looking inside PL/pgSQL DO blocks.

    Migrations that must run twice guard CREATE POLICY with ``IF NOT EXISTS``
    in a DO block, and such a policy still ships in the file.
    """
    import pglast
    from pglast import ast

    from assay.schema import do_block_queries

    for statement in migration.statements:
        node = statement.node
        if not isinstance(node, ast.DoStmt):
            yield statement.line, node
            continue
        try:
            queries = do_block_queries(node, statement) or []
        except pglast.parser.ParseError:
            queries = []
        for kind, line, query in queries:
            if kind != "static":
                continue
            try:
                inner = pglast.parse_sql(query)
            except pglast.parser.ParseError:
                continue  # PL/pgSQL-only syntax such as SELECT ... INTO
            for raw in inner:
                yield line, raw.stmt


def check_same_file(files, model, scope: TenancyScope):
    """TI-3: a migration creating a customer-data table enables RLS and adds policies."""
    from pglast import ast

    covered = {t.name for t in customer_tables(model, scope)}
    findings: list[Finding] = []
    created_count = 0
    for migration in files:
        created: dict[str, int] = {}
        enabled: set[str] = set()
        with_policy: set[str] = set()
        for line, node in _file_nodes(migration):
            if isinstance(node, ast.CreateStmt):
                name = _range_name(node)
                if name:
                    created.setdefault(name, line)
            elif isinstance(node, ast.AlterTableStmt):
                name = _range_name(node)
                for command in node.cmds or ():
                    subtype = getattr(command, "subtype", None)
                    if subtype is not None and subtype.name == "AT_EnableRowSecurity":
                        enabled.add(name)
            elif isinstance(node, ast.CreatePolicyStmt):
                name = _range_name(node)
                if name:
                    with_policy.add(name)
        for name, line in created.items():
            if name not in covered:
                continue
            created_count += 1
            missing = []
            if name not in enabled:
                missing.append("does not enable row level security")
            if name not in with_policy:
                missing.append("creates no policy")
            if missing:
                findings.append(
                    Finding(
                        control="TI-3",
                        rule="table-without-policy-in-file",
                        message=(
                            f"{migration.path} creates {name} but "
                            + " and ".join(missing)
                            + " in the same file"
                        ),
                        file=migration.path,
                        line=line,
                        table=name,
                        source="static",
                        fix=(
                            f"add `alter table {name} enable row level security;` and "
                            "its policies to this migration"
                        ),
                    )
                )
    return findings, created_count


# TI-5 (catalog and static) -------------------------------------------------------


def check_bypass(model, scope: TenancyScope, *, source: str, static=None, live=None):
    """TI-5: definer views, unsafe definer functions, bypassing roles and owners.

    `live` carries what only the catalog knows (role attributes, privileges);
    without it the rule judges what the migrations declare.
    """
    findings: list[Finding] = []
    examined = 0
    covered = {t.name for t in customer_tables(model, scope)}

    for name, table in sorted(model.tables.items()):
        schema = name.split(".", 1)[0]
        if schema not in scope.schemas:
            continue
        if table.kind == "view":
            examined += 1
            if table.security_invoker:
                continue
            readable = True
            if live is not None:
                readable = bool(live.view_readers.get(name))
            if readable:
                file, line = _location(table, static)
                findings.append(
                    Finding(
                        control="TI-5",
                        rule="definer-view",
                        message=(
                            f"view {name} runs with its owner's rights (no "
                            "security_invoker), so it reads around the row level "
                            "security of the tables it selects from"
                        ),
                        file=file,
                        line=line,
                        table=name,
                        source=source,
                        fix=f"alter view {name} set (security_invoker = true)",
                    )
                )
        elif table.kind == "materialized_view":
            examined += 1
            file, line = _location(table, static)
            findings.append(
                Finding(
                    control="TI-5",
                    rule="materialized-view-exposed",
                    message=(
                        f"materialized view {name} is in an exposed schema; "
                        "materialized views have no row level security"
                    ),
                    file=file,
                    line=line,
                    table=name,
                    source=source,
                    fix="move it to a private schema or revoke select from API roles",
                )
            )

    for name, entry in sorted(model.functions.items()):
        for function in entry if isinstance(entry, list) else [entry]:
            if not function.security_definer:
                continue
            examined += 1
            if function.search_path is None:
                location = getattr(function, "location", None)
                if location is None and static is not None:
                    # The live catalog has no lines: point at the migration.
                    twins = static.functions.get(name) or []
                    location = twins[0].location if twins else None
                findings.append(
                    Finding(
                        control="TI-5",
                        rule="definer-function-search-path",
                        message=(
                            f"SECURITY DEFINER function {name} has no fixed "
                            "search_path, so a caller can shadow the objects it uses"
                        ),
                        file=location.file if location else None,
                        line=location.line if location else None,
                        source=source,
                        fix=f"alter function {name} set search_path = ''",
                    )
                )

    if live is not None:
        findings.extend(_check_roles_and_owners(live, scope, covered))
        examined += len(covered)
    else:
        findings.extend(_check_declared_roles(model, scope, covered))
    return findings, examined


def _check_declared_roles(model, scope: TenancyScope, covered: Iterable[str]):
    findings = []
    for role, attributes in sorted(model.roles.items()):
        if role in scope.app_roles and attributes.get("bypassrls"):
            findings.append(
                Finding(
                    control="TI-5",
                    rule="app-role-bypassrls",
                    message=f"role {role} is given BYPASSRLS",
                    source="static",
                    fix=f"alter role {role} nobypassrls",
                )
            )
    for name in covered:
        table = model.tables[name]
        if table.owner in scope.app_roles and not table.force_rls:
            location = table.created
            findings.append(
                Finding(
                    control="TI-5",
                    rule="app-role-owns-table",
                    message=(
                        f"{name} is owned by {table.owner} without FORCE ROW LEVEL "
                        "SECURITY, so its owner bypasses the policies"
                    ),
                    file=location.file if location else None,
                    line=location.line if location else None,
                    table=name,
                    source="static",
                    fix=f"alter table {name} force row level security",
                )
            )
    return findings


def _check_roles_and_owners(live, scope: TenancyScope, covered: Iterable[str]):
    findings = []
    for role in (scope.anon_role, scope.user_role):
        for bypass in live.bypass_roles.get(role, ()):
            findings.append(
                Finding(
                    control="TI-5",
                    rule="app-role-bypassrls",
                    message=(
                        f"role {role} can act as {bypass}, which has BYPASSRLS or "
                        "is a superuser"
                    ),
                    source="live",
                    fix=f"revoke {bypass} from {role}",
                )
            )
    for name in sorted(covered):
        owner, forced = live.owners.get(name, (None, True))
        acting = {r for r in (scope.anon_role, scope.user_role) if owner in live.member_of.get(r, ())}
        if acting and not forced:
            findings.append(
                Finding(
                    control="TI-5",
                    rule="app-role-owns-table",
                    message=(
                        f"{name} is owned by {owner}, which {', '.join(sorted(acting))} "
                        "acts as, without FORCE ROW LEVEL SECURITY: the owner bypasses "
                        "the policies"
                    ),
                    table=name,
                    source="live",
                    fix=f"alter table {name} force row level security, or change its owner",
                )
            )
        for role, privileges in live.table_privileges.get(name, {}).items():
            if "TRUNCATE" in privileges:
                findings.append(
                    Finding(
                        control="TI-5",
                        rule="truncate-granted",
                        level="warning",
                        message=(
                            f"{role} holds TRUNCATE on {name}; TRUNCATE ignores row "
                            "level security and empties every tenant's rows"
                        ),
                        table=name,
                        source="live",
                        fix=f"revoke truncate on {name} from {role}",
                    )
                )
    return findings


# Static versus live -------------------------------------------------------------


def _key(finding: Finding) -> tuple:
    return (finding.rule, finding.table, finding.policy)


def reconcile(static: list[Finding], live: list[Finding]) -> list[Finding]:
    """Let the live catalog decide; keep static-only findings as refuted notes.

    A live finding takes the migration location of its static twin when it has
    none. A static finding the catalog does not confirm is reported at level
    info, saying so, because the migrations and the database disagree.
    """
    from dataclasses import replace

    by_key = {_key(f): f for f in static}
    result = []
    for finding in live:
        twin = by_key.get(_key(finding))
        if twin is not None and finding.file is None:
            finding = replace(finding, file=twin.file, line=twin.line)
        result.append(finding)
    live_keys = {_key(f) for f in live}
    for finding in static:
        if _key(finding) in live_keys or finding.level not in ("error", "undecided"):
            continue
        result.append(
            replace(
                finding,
                level="info",
                message=(
                    f"static analysis reported: {finding.message}; the live catalog "
                    "of the migrated database does not confirm it"
                ),
            )
        )
    return result
