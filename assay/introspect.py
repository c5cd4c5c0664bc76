"""The live catalog of a migrated database, in the shape the rules read.

Objects here carry the same attribute names as the static model in
``assay.schema`` (``name``, ``kind``, ``columns``, ``rls``, ``policies`` ...),
so the tenancy rules judge either. ``LiveFacts`` adds what only the catalog
knows: role attributes, memberships, ownership and privileges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["LiveFacts", "LiveModel", "read_catalog"]

_KINDS = {
    "r": "table",
    "p": "partitioned",
    "v": "view",
    "m": "materialized_view",
    "f": "foreign",
}
_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


@dataclass
class LiveColumn:
    name: str
    type: str
    not_null: bool
    default: str | None


@dataclass
class LivePolicy:
    name: str
    table: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    location: Any = None


@dataclass
class LiveTable:
    name: str
    kind: str
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    rls: bool = False
    force_rls: bool = False
    policies: dict[str, LivePolicy] = field(default_factory=dict)
    parent: str | None = None
    owner: str | None = None
    security_invoker: bool = False
    definition: str | None = None
    created: Any = None
    rls_disabled_at: Any = None
    # Commands some application role may run on the table (schema USAGE and a
    # table or column privilege), or None when the roles were not examined.
    app_commands: set[str] | None = None


@dataclass
class LiveFunction:
    name: str
    signature: str
    args: list[tuple[str, str]]
    returns: str
    language: str
    security_definer: bool
    search_path: str | None
    body: str | None
    oid: int = 0
    location: Any = None


@dataclass
class LiveFacts:
    """Role, ownership and privilege facts for the application roles."""

    bypass_roles: dict[str, list[str]] = field(default_factory=dict)
    member_of: dict[str, set[str]] = field(default_factory=dict)
    owners: dict[str, tuple[str, bool]] = field(default_factory=dict)
    table_privileges: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    view_readers: dict[str, list[str]] = field(default_factory=dict)
    executable_definers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class LiveModel:
    tables: dict[str, LiveTable] = field(default_factory=dict)
    functions: dict[str, list[LiveFunction]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str = ""


_TABLES = """
select n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
       pg_get_userbyid(c.relowner), c.relispartition,
       coalesce(array_to_string(c.reloptions, ','), ''),
       case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid) end
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS = """
select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname = any(%s) and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""

_PARENTS = """
select cn.nspname, c.relname, pn.nspname, p.relname
from pg_inherits i
join pg_class c on c.oid = i.inhrelid join pg_namespace cn on cn.oid = c.relnamespace
join pg_class p on p.oid = i.inhparent join pg_namespace pn on pn.oid = p.relnamespace
where cn.nspname = any(%s)
"""

_POLICIES = """
select n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
       case when p.polroles = '{0}' then array['public']
            else array(select rolname from pg_roles where oid = any(p.polroles)
                       order by rolname) end,
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
from pg_policy p join pg_class c on c.oid = p.polrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s)
"""

_FUNCTIONS = """
select n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
       coalesce(p.proargnames, '{}'), array(select format_type(t, null)
       from unnest(p.proargtypes) t), pg_get_function_result(p.oid), l.lanname,
       p.prosecdef, p.proconfig, p.prosrc, p.oid
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
join pg_language l on l.oid = p.prolang
where n.nspname not in ('pg_catalog', 'information_schema') and p.prokind = 'f'
  and n.nspname not like 'pg_toast%%'
"""

_ROLES = """
select rolname, rolsuper, rolbypassrls, rolinherit, rolcanlogin from pg_roles
"""


def _search_path(config: list[str] | None) -> str | None:
    for setting in config or ():
        if setting.startswith("search_path="):
            return setting.split("=", 1)[1]
    return None


def read_catalog(
    conn: psycopg.Connection, schemas: list[str], app_roles: list[str]
) -> tuple[LiveModel, LiveFacts]:
    """Read tables, policies, functions and role facts from a live database."""
    model = LiveModel()
    facts = LiveFacts()
    with conn.cursor() as cur:
        cur.execute("show server_version")
        model.version = cur.fetchone()[0]
        _read_tables(cur, model, schemas)
        _read_functions(cur, model)
        cur.execute(_ROLES)
        for name, superuser, bypass, inherit, login in cur.fetchall():
            model.roles[name] = {
                "superuser": superuser,
                "bypassrls": bypass,
                "inherit": inherit,
                "login": login,
            }
        roles = [r for r in app_roles if r in model.roles]
        _read_facts(cur, model, facts, roles)
    return model, facts


def _read_tables(cur, model: LiveModel, schemas: list[str]) -> None:
    cur.execute(_TABLES, (schemas,))
    for schema, name, kind, rls, force, owner, partition, options, definition in (
        cur.fetchall()
    ):
        qualified = f"{schema}.{name}"
        invoker = any(
            opt.strip().lower() in ("security_invoker=true", "security_invoker=on", "security_invoker=1")
            for opt in options.split(",")
        )
        model.tables[qualified] = LiveTable(
            name=qualified,
            kind="partition" if partition else _KINDS[kind],
            rls=rls,
            force_rls=force,
            owner=owner,
            security_invoker=invoker,
            definition=definition,
        )
    cur.execute(_COLUMNS, (schemas,))
    for schema, name, column, type_, not_null, default in cur.fetchall():
        table = model.tables.get(f"{schema}.{name}")
        if table is not None:
            table.columns[column] = LiveColumn(column, type_, not_null, default)
    cur.execute(_PARENTS, (schemas,))
    for schema, name, parent_schema, parent in cur.fetchall():
        table = model.tables.get(f"{schema}.{name}")
        if table is not None:
            table.parent = f"{parent_schema}.{parent}"
    cur.execute(_POLICIES, (schemas,))
    for schema, name, policy, cmd, permissive, roles, using, check in cur.fetchall():
        qualified = f"{schema}.{name}"
        table = model.tables.get(qualified)
        if table is None:
            continue
        table.policies[policy] = LivePolicy(
            name=policy,
            table=qualified,
            command=_COMMANDS[cmd],
            permissive=permissive,
            roles=tuple(roles),
            using=using,
            check=check,
        )


def _read_functions(cur, model: LiveModel) -> None:
    cur.execute(_FUNCTIONS)
    for (
        schema,
        name,
        signature,
        arg_names,
        arg_types,
        returns,
        language,
        definer,
        config,
        body,
        oid,
    ) in cur.fetchall():
        qualified = f"{schema}.{name}"
        names = list(arg_names) + [""] * (len(arg_types) - len(arg_names))
        model.functions.setdefault(qualified, []).append(
            LiveFunction(
                name=qualified,
                signature=f"{qualified}({signature})",
                args=list(zip(names, arg_types)),
                returns=returns,
                language=language,
                security_definer=definer,
                search_path=_search_path(config),
                body=body,
                oid=oid,
            )
        )


def _read_facts(cur, model: LiveModel, facts: LiveFacts, roles: list[str]) -> None:
    for role in roles:
        cur.execute(
            "select rolname, rolsuper, rolbypassrls from pg_roles "
            "where pg_has_role(%s, oid, 'USAGE')",
            (role,),
        )
        rows = cur.fetchall()
        facts.member_of[role] = {name for name, _, _ in rows}
        facts.bypass_roles[role] = sorted(
            name for name, superuser, bypass in rows if superuser or bypass
        )
    for name, table in model.tables.items():
        facts.owners[name] = (table.owner, table.force_rls)
        privileges: dict[str, set[str]] = {}
        for role in roles:
            granted = set()
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                cur.execute(
                    "select has_table_privilege(%s, %s::regclass, %s)",
                    (role, _quote_name(name), privilege),
                )
                if cur.fetchone()[0]:
                    granted.add(privilege)
            if granted:
                privileges[role] = granted
        facts.table_privileges[name] = privileges
        # With no application role in the database nothing can be judged, so
        # every command stays under the policy rule.
        table.app_commands = _app_commands(cur, name, roles) if roles else None
        if table.kind in ("view", "materialized_view"):
            facts.view_readers[name] = sorted(
                role for role, granted in privileges.items() if "SELECT" in granted
            )
    for name, functions in model.functions.items():
        for function in functions:
            if not function.security_definer:
                continue
            callers = []
            for role in roles:
                cur.execute(
                    "select has_function_privilege(%s, %s::oid, 'EXECUTE') "
                    "and has_schema_privilege(%s, %s, 'USAGE')",
                    (role, function.oid, role, name.split(".", 1)[0]),
                )
                if cur.fetchone()[0]:
                    callers.append(role)
            if callers:
                facts.executable_definers[function.signature] = callers


_COMMANDS_ALLOWED = """
select has_schema_privilege(%(role)s, %(schema)s, 'USAGE'),
       has_any_column_privilege(%(role)s, %(table)s::regclass, 'SELECT'),
       has_any_column_privilege(%(role)s, %(table)s::regclass, 'INSERT'),
       has_any_column_privilege(%(role)s, %(table)s::regclass, 'UPDATE'),
       has_table_privilege(%(role)s, %(table)s::regclass, 'DELETE')
"""


def _app_commands(cur, name: str, roles: list[str]) -> set[str]:
    """Commands any of `roles` may run on table `name`, column grants included."""
    commands: set[str] = set()
    for role in roles:
        cur.execute(
            _COMMANDS_ALLOWED,
            {"role": role, "schema": name.split(".", 1)[0], "table": _quote_name(name)},
        )
        usage, *allowed = cur.fetchone()
        if usage:
            commands |= {
                command
                for command, granted in zip(("SELECT", "INSERT", "UPDATE", "DELETE"), allowed)
                if granted
            }
    return commands


def _quote_name(qualified: str) -> str:
    schema, name = qualified.split(".", 1)
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))
