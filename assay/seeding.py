"""Seed any schema with two tenants, their members and rows in every table.

Everything is read from the live catalog: column types, NOT NULL, defaults,
identity and generated columns, CHECK constraints with literal choices,
enum labels, unique keys and foreign keys (single or composite, including
self references). Rows are written as the superuser, which bypasses row
level security, in foreign-key order. Every text value carries the tenant's
label and a random marker, so a probe can tell whose row it is looking at.

A table that cannot be seeded is reported with PostgreSQL's reason; the
cross-tenant probe for that table is then an error, never a pass.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from assay.config import Config

__all__ = ["Seed", "SeededTenant", "SeededUser", "TableInfo", "seed_database"]

logger = logging.getLogger(__name__)

ROWS_PER_TENANT = 2
MEMBERS_PER_TENANT = 2
# Inserts tried per row while repairing NOT NULL and CHECK violations.
MAX_INSERT_ATTEMPTS = 8
# Types ValueMaker.make builds values for. A nullable column of another type
# (an extension's vector, a geometry) is left NULL.
KNOWN_TYPE_PREFIXES = (
    "uuid", "smallint", "integer", "bigint", "numeric", "real", "double precision",
    "boolean", "timestamp", "date", "time", "json", "bytea", "inet", "cidr",
    "interval", "citext", "text", "character", "varchar", "name", "money",
)


@dataclass(frozen=True)
class SeededUser:
    id: str
    email: str
    tenant: str | None


@dataclass(frozen=True)
class SeededTenant:
    id: Any
    label: str
    members: tuple[SeededUser, ...]


@dataclass
class ColumnInfo:
    name: str
    type: str
    type_oid: int
    not_null: bool
    has_default: bool
    identity: bool
    generated: bool
    enum_labels: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    element_type: str | None = None


@dataclass
class ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass
class TableInfo:
    name: str
    kind: str
    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...]
    unique_keys: list[tuple[str, ...]]
    foreign_keys: list[ForeignKey]
    parent: str | None = None
    partition_bound: str | None = None
    partition_key: str | None = None
    checks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    key_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def identity_columns(self) -> tuple[str, ...]:
        """Columns that identify a row: the primary key, else every column."""
        return self.primary_key or tuple(self.columns)


@dataclass
class Seed:
    """The result of seeding: tenants, users and each table's rows by tenant."""

    tenants: tuple[SeededTenant, ...]
    outsider: SeededUser
    tables: dict[str, TableInfo]
    rows: dict[str, dict[str, list[dict[str, Any]]]]
    errors: dict[str, str]
    markers: dict[str, str]
    tenant_table: str
    tenant_key: str
    tenant_column: str
    # User id to the ids (as text) of every tenant the membership table gives
    # the user, including tenants that triggers made (a personal account).
    memberships: dict[str, set[str]] = field(default_factory=dict)

    def tenant(self, label: str) -> SeededTenant:
        return next(t for t in self.tenants if t.label == label)

    def owner_of(self, table: str) -> str | None:
        """The column that names a row's tenant in `table`, if it has one."""
        if table == self.tenant_table:
            return self.tenant_key
        info = self.tables.get(table)
        if info and self.tenant_column in info.columns:
            return self.tenant_column
        return None


def _quote(name: str) -> sql.Composable:
    schema, table = name.split(".", 1)
    return sql.Identifier(schema, table)


_TABLES = """
select c.oid, n.nspname || '.' || c.relname, c.relkind, c.relispartition,
       pg_get_expr(c.relpartbound, c.oid),
       case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p')
"""

_COLUMNS = """
select a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
       a.atthasdef, a.attidentity <> '', a.attgenerated <> '',
       coalesce((select array_agg(e.enumlabel order by e.enumsortorder)
                 from pg_enum e where e.enumtypid = a.atttypid), '{}'),
       (select format_type(t.typelem, null) from pg_type t
        where t.oid = a.atttypid and t.typelem <> 0 and t.typcategory = 'A')
from pg_attribute a
where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""

_CONSTRAINTS = """
select con.contype,
       array(select a.attname from unnest(con.conkey) with ordinality k(n, i)
             join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n
             order by k.i),
       case when con.contype = 'f' then
         (select n.nspname || '.' || c.relname from pg_class c
          join pg_namespace n on n.oid = c.relnamespace where c.oid = con.confrelid)
       end,
       array(select a.attname from unnest(con.confkey) with ordinality k(n, i)
             join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n
             order by k.i),
       pg_get_constraintdef(con.oid), con.conname
from pg_constraint con
where con.conrelid = %s and con.contype in ('p', 'u', 'f', 'c')
"""


def read_tables(conn: psycopg.Connection, schemas: list[str]) -> dict[str, TableInfo]:
    """Read what seeding needs about every row table in `schemas` (and auth.users)."""
    tables: dict[str, TableInfo] = {}
    with conn.cursor() as cur:
        cur.execute(_TABLES, (schemas,))
        rows = cur.fetchall()
        parents: dict[str, str] = {}
        cur.execute(
            "select c.oid::regclass::text, p.oid::regclass::text from pg_inherits i "
            "join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent"
        )
        for child, parent in cur.fetchall():
            parents[_qualified(child)] = _qualified(parent)
        for oid, name, kind, is_partition, bound, partkey in rows:
            columns = _read_columns(cur, oid)
            info = TableInfo(
                name=name,
                kind="partitioned" if kind == "p" else "table",
                columns=columns,
                primary_key=(),
                unique_keys=[],
                foreign_keys=[],
                parent=parents.get(name),
                partition_bound=bound if is_partition else None,
                partition_key=partkey,
            )
            _read_constraints(cur, oid, info)
            tables[name] = info
    return tables


def _qualified(regclass_text: str) -> str:
    text = regclass_text.replace('"', "")
    return text if "." in text else f"public.{text}"


def _read_columns(cur, oid: int) -> dict[str, ColumnInfo]:
    cur.execute(_COLUMNS, (oid,))
    columns = {}
    for name, type_, type_oid, not_null, has_default, identity, generated, labels, elem in (
        cur.fetchall()
    ):
        columns[name] = ColumnInfo(
            name=name,
            type=type_,
            type_oid=type_oid,
            not_null=not_null,
            has_default=has_default,
            identity=identity,
            generated=generated,
            enum_labels=list(labels),
            element_type=elem,
        )
    return columns


_IN_LIST = re.compile(r"\(?\(?\s*\(?(\w+)\)?(?:::\w+)?\s*=\s*ANY\s*\(\s*(?:\()?ARRAY\[(.*?)\]")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def _read_constraints(cur, oid: int, info: TableInfo) -> None:
    cur.execute(_CONSTRAINTS, (oid,))
    for kind, columns, parent, parent_columns, definition, name in cur.fetchall():
        if kind in ("p", "u"):
            info.key_names[name] = tuple(columns)
        if kind == "p":
            info.primary_key = tuple(columns)
        elif kind == "u":
            info.unique_keys.append(tuple(columns))
        elif kind == "f":
            info.foreign_keys.append(
                ForeignKey(tuple(columns), parent, tuple(parent_columns))
            )
        elif kind == "c":
            info.checks[name] = tuple(columns)
            match = _IN_LIST.search(definition)
            if match and match.group(1) in info.columns:
                choices = [v.replace("''", "'") for v in _LITERAL.findall(match.group(2))]
                info.columns[match.group(1)].choices = choices


# Values ---------------------------------------------------------------------------


class ValueMaker:
    """Makes a value of a column's type that is unique within the run."""

    def __init__(self) -> None:
        self.counter = 0

    def next_number(self) -> int:
        self.counter += 1
        return self.counter

    def can_make(self, column: ColumnInfo) -> bool:
        """Return whether `make` knows the column's type (else it makes text)."""
        if column.enum_labels or column.choices or column.element_type:
            return True
        return column.type.lower().startswith(KNOWN_TYPE_PREFIXES)

    def make(self, column: ColumnInfo, label: str, marker: str) -> Any:
        n = self.next_number()
        if column.enum_labels:
            return column.enum_labels[n % len(column.enum_labels)]
        if column.choices:
            return column.choices[n % len(column.choices)]
        kind = column.type.lower()
        if column.element_type:
            element = ColumnInfo(column.name, column.element_type, 0, False, False, False, False)
            return [self.make(element, label, marker)]
        if kind == "uuid":
            return str(uuid.uuid4())
        if kind in ("smallint", "integer", "bigint") or kind.startswith("numeric") or kind in (
            "real",
            "double precision",
        ):
            return 1000 + n if kind != "smallint" else n % 30000 + 1
        if kind == "boolean":
            return n % 2 == 0
        if kind.startswith("timestamp"):
            return datetime(2024, 6, 1, tzinfo=timezone.utc) + timedelta(seconds=n)
        if kind == "date":
            return date(2024, 6, 1) + timedelta(days=n % 300)
        if kind.startswith("time"):
            return time(12, n % 60)
        if kind in ("json", "jsonb"):
            return json.dumps({"seed": f"{label}-{marker}-{n}"})
        if kind == "bytea":
            return f"{label}-{marker}-{n}".encode()
        if kind in ("inet", "cidr"):
            return f"10.{n // 250 % 250}.{n % 250}.1"
        if kind.startswith("interval"):
            return timedelta(minutes=n)
        if kind == "citext" or kind.startswith(("text", "character", "varchar", "name")):
            # Letters and digits only, starting with a letter: username and slug
            # CHECK patterns such as '^[a-zA-Z][a-zA-Z0-9_]+$' accept it.
            value = f"{label.lower()}{marker}{n}"
            match = re.search(r"\((\d+)\)", kind)
            if match:
                value = value[: int(match.group(1))]
            if column.name.lower() in ("email",) or column.name.lower().endswith("_email"):
                value = f"{label.lower()}.{marker}.{n}@example.test"
            return value
        if kind == "money":
            return Decimal(n)
        return f"{label.lower()}-{marker}-{n}"


# Seeding ---------------------------------------------------------------------------


def _topological(tables: dict[str, TableInfo], names: list[str]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            return  # a cycle: the later table takes NULL or an existing parent
        state[name] = 1
        for fk in tables[name].foreign_keys:
            if fk.parent in tables and fk.parent != name and fk.parent in names:
                visit(fk.parent)
        state[name] = 2
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


class Seeder:
    """Writes the seed rows through one superuser connection."""

    def __init__(self, conn: psycopg.Connection, config: Config, tables: dict[str, TableInfo]):
        tenancy = config.tenancy
        self.conn = conn
        self.config = config
        self.tenancy = tenancy
        self.tables = tables
        self.values = ValueMaker()
        self.markers = {"A": secrets.token_hex(4), "B": secrets.token_hex(4)}
        self.rows: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.errors: dict[str, str] = {}
        self.tenant_table = tenancy.tenant_table
        self.users: dict[str, list[SeededUser]] = {}

    # users

    def create_users(self) -> SeededUser:
        for label in ("A", "B"):
            self.users[label] = [
                SeededUser(str(uuid.uuid4()), f"{label.lower()}{i}.{self.markers[label]}@example.test", label)
                for i in range(MEMBERS_PER_TENANT)
            ]
        outsider = SeededUser(str(uuid.uuid4()), f"outsider.{secrets.token_hex(3)}@example.test", None)
        everyone = [u for users in self.users.values() for u in users] + [outsider]
        if self.config.database.flavor == "supabase":
            with self.conn.cursor() as cur:
                for user in everyone:
                    cur.execute(
                        "insert into auth.users (id, email, role, aud) "
                        "values (%s, %s, 'authenticated', 'authenticated')",
                        (user.id, user.email),
                    )
        return outsider

    def user_parent(self) -> str | None:
        """The table the membership's user column references, when not auth.users."""
        membership = self.tenancy.membership
        if membership is None:
            return None
        info = self.tables.get(_full(membership.table))
        if info is None:
            return None
        for fk in info.foreign_keys:
            if fk.columns == (membership.user_column,) and fk.parent != "auth.users":
                return fk.parent
        return None

    # rows

    def insert(
        self, table: str, values: dict[str, Any], label: str, *, conflict: str = ""
    ) -> dict[str, Any] | None:
        """Insert one row, repairing NOT NULL and CHECK violations a few times.

        A NOT NULL column whose default is NULL for the superuser (a default
        read from a session setting) gets a value, and a CHECK is retried with
        its nullable columns set to NULL one at a time, then all together.
        Returns the row, or None when the insert failed (the reason is kept in
        ``errors``) or `conflict` skipped it.
        """
        pending = [dict(values)]
        tried = 0
        while pending and tried < MAX_INSERT_ATTEMPTS:
            attempt = pending.pop(0)
            tried += 1
            try:
                row, names = self._insert_once(table, attempt, label, conflict)
            except psycopg.errors.UniqueViolation as exc:
                return self._adopt(table, attempt, exc, label)
            except psycopg.Error as exc:
                repairs = self._repairs(table, attempt, exc, label)
                if not repairs or tried == MAX_INSERT_ATTEMPTS:
                    return self._failed(table, exc)
                pending = repairs + pending
                continue
            if row is None:
                return None
            record = {k: _plain(v) for k, v in zip(names, row)}
            self.rows[table][label].append(record)
            return record
        return None

    def _adopt(
        self, table: str, values: dict[str, Any], exc: psycopg.Error, label: str
    ) -> dict[str, Any] | None:
        """Take over the row a trigger made with the same key, or give up quietly.

        Sign-up triggers create one row per user (a profile whose key is the
        user's id); that row becomes this tenant's. When the key belongs to a
        row this tenant already has, the table holds one row per parent and
        seeding it stops without an error.
        """
        info = self.tables[table]
        columns = info.key_names.get(exc.diag.constraint_name or "", ())
        if not columns or any(values.get(c) is None for c in columns):
            return self._failed(table, exc)
        query = sql.SQL("select * from {} where {}").format(
            _quote(table),
            sql.SQL(" and ").join(
                sql.SQL("{}::text = %s").format(sql.Identifier(c)) for c in columns
            ),
        )
        with self.conn.cursor() as cur:
            cur.execute(query, [str(values[c]) for c in columns])
            row = cur.fetchone()
            names = [d.name for d in cur.description]
        if row is None:
            return self._failed(table, exc)
        record = {k: _plain(v) for k, v in zip(names, row)}
        for rows in self.rows[table].values():
            if record in rows:
                return None
        self.rows[table][label].append(record)
        return record

    def _failed(self, table: str, exc: psycopg.Error) -> None:
        reason = (exc.diag.message_primary or str(exc)).strip()
        self.errors.setdefault(table, f"{type(exc).__name__}: {reason}")
        logger.info("could not seed %s: %s", table, reason)
        return None

    def _insert_once(self, table: str, values: dict[str, Any], label: str, conflict: str):
        columns = list(values)
        query = sql.SQL("insert into {} ({}) values ({}){} returning *").format(
            _quote(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            sql.SQL(conflict),
        )
        if not columns:
            query = sql.SQL("insert into {} default values returning *").format(_quote(table))
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._claim_member(cur, label)
            cur.execute(query, [_adapt(values[c]) for c in columns])
            row = cur.fetchone()
            return row, [d.name for d in cur.description]

    def _claim_member(self, cur: psycopg.Cursor, label: str) -> None:
        """Carry the JWT claims of the tenant's first member, as the superuser.

        Triggers and defaults such as ``invited_by = auth.uid()`` then fill in
        a member of the tenant, as they would when the application writes.
        NOTE: only the supabase flavor has claims to set. A SQL template in
        act_as may switch roles, so it is not run while seeding.
        """
        users = self.users.get(label)
        if self.config.database.flavor != "supabase" or not users:
            return
        claims = json.dumps(
            {"sub": users[0].id, "role": "authenticated", "email": users[0].email}
        )
        cur.execute(
            "select set_config('request.jwt.claims', %s, true), "
            "set_config('request.jwt.claim.sub', %s, true)",
            (claims, users[0].id),
        )

    def _repairs(
        self, table: str, values: dict[str, Any], exc: psycopg.Error, label: str
    ) -> list[dict[str, Any]]:
        """Other values worth trying after `exc`, most likely to work first."""
        info = self.tables[table]
        column = exc.diag.column_name
        if isinstance(exc, psycopg.errors.NotNullViolation):
            if column in info.columns and values.get(column) is None:
                made = self.values.make(info.columns[column], label, self.markers[label])
                return [{**values, column: made}]
            return []
        if not isinstance(exc, psycopg.errors.CheckViolation):
            return []
        checked = info.checks.get(exc.diag.constraint_name or "", ())
        nullable = [
            c
            for c in checked
            if c in values and values[c] is not None and not info.columns[c].not_null
        ]
        repairs = [{**values, c: None} for c in nullable]
        if len(nullable) > 1:
            repairs.append({**values, **{c: None for c in nullable}})
        return repairs

    def row_values(self, table: str, label: str, overrides: dict[str, Any]) -> dict[str, Any] | None:
        info = self.tables[table]
        values: dict[str, Any] = {}
        unset: set[str] = set()
        for fk in info.foreign_keys:
            if all(c in overrides for c in fk.columns):
                continue
            parent = self.pick_parent(fk, table, label)
            if parent is _MISSING:
                nullable = all(not info.columns[c].not_null for c in fk.columns)
                if nullable:
                    # No parent row (a self reference): the key stays NULL.
                    unset.update(fk.columns)
                    continue
                self.errors.setdefault(
                    table,
                    f"no row of {fk.parent} to reference from ({', '.join(fk.columns)})",
                )
                return None
            for child_column, parent_column in zip(fk.columns, fk.parent_columns):
                values[child_column] = parent[parent_column]
        tenant_column = self.tenancy.column
        known = label in self.tenant_ids
        if tenant_column in info.columns and tenant_column not in values and known:
            values[tenant_column] = self.tenant_ids[label]
        for name, column in info.columns.items():
            if name in values or name in overrides or column.identity or column.generated:
                continue
            if column.has_default or name in unset:
                continue
            if not column.not_null and not self.values.can_make(column):
                continue
            values[name] = self.values.make(column, label, self.markers[label])
        values.update(overrides)
        return values

    def pick_parent(self, fk: ForeignKey, table: str, label: str):
        if fk.parent == "auth.users":
            users = self.users.get(label) or self.users["A"]
            return {"id": users[0].id}
        if fk.parent == table:
            return _MISSING
        candidates = self.rows.get(fk.parent, {}).get(label) or []
        if not candidates:
            for other in self.rows.get(fk.parent, {}).values():
                candidates = other
                if candidates:
                    break
        if not candidates:
            return _MISSING
        return candidates[0]

    def seed(self) -> None:
        tenancy = self.tenancy
        self.tenant_ids: dict[str, Any] = {}
        tenant_info = self.tables.get(self.tenant_table)
        if tenant_info is None:
            raise self.config.error(
                ("tenancy", "tenant_table"),
                tenancy.tenant_table,
                "the migrated database has no such table",
                "Name the table whose primary key is the tenant id",
            )
        if len(tenant_info.primary_key) != 1:
            raise self.config.error(
                ("tenancy", "tenant_table"),
                tenancy.tenant_table,
                "the tenant table needs a single-column primary key",
                "Point tenant_table at the table whose primary key is the tenant id",
            )
        key = tenant_info.primary_key[0]
        user_parent = self.user_parent()
        if user_parent:
            for label, users in self.users.items():
                for user in users:
                    column = self.tenancy.membership.user_column
                    parent_fk = self.tables[_full(self.tenancy.membership.table)]
                    parent_column = next(
                        fk.parent_columns[0]
                        for fk in parent_fk.foreign_keys
                        if fk.columns == (column,)
                    )
                    self.insert(user_parent, self._plain_values(user_parent, label, {parent_column: user.id}), label)

        # A tenant table that is its own membership table (workspaces.user_id)
        # has one member per tenant: the user its row names.
        owned = tenancy.membership is not None and (
            _full(tenancy.membership.table) == self.tenant_table
        )
        for label in ("A", "B"):
            overrides = {}
            if owned:
                overrides[tenancy.membership.user_column] = self.users[label][0].id
                self.users[label] = self.users[label][:1]
            values = self.row_values(self.tenant_table, label, overrides)
            record = None
            if values is not None:
                record = self.insert(self.tenant_table, values, label)
            if record is None:
                raise self.config.error(
                    ("tenancy", "tenant_table"),
                    tenancy.tenant_table,
                    f"cannot insert a tenant: {self.errors.get(self.tenant_table)}",
                    "Assay writes tenant rows as the superuser; give each NOT NULL "
                    "column of the tenant table a default or a foreign key Assay "
                    "can fill",
                )
            self.tenant_ids[label] = record[key]

        if tenancy.membership is not None and not owned:
            for label, users in self.users.items():
                for user in users:
                    self.add_member(label, user)
        if tenancy.seed_sql:
            self.run_seed_sql()

        skip = {self.tenant_table, _full(tenancy.membership.table) if tenancy.membership else ""}
        if user_parent:
            skip.add(user_parent)
        names = [n for n, t in self.tables.items() if n not in skip]
        for table in _topological(self.tables, names):
            info = self.tables[table]
            if info.kind == "partitioned":
                self.seed_partitions(table)
                continue
            if info.parent and self.tables.get(info.parent, None) and self.tables[info.parent].kind == "partitioned":
                continue
            for label in ("A", "B"):
                for _ in range(ROWS_PER_TENANT):
                    values = self.row_values(table, label, {})
                    if values is None:
                        break
                    if self.insert(table, values, label) is None:
                        break

    def add_member(self, label: str, user: SeededUser) -> None:
        """Make `user` a member of tenant `label`, unless a trigger already did."""
        membership = self.tenancy.membership
        table = _full(membership.table)
        overrides = {
            membership.tenant_column: self.tenant_ids[label],
            membership.user_column: user.id,
        }
        values = self.row_values(table, label, overrides)
        if values is None:
            return
        if self.insert(table, values, label, conflict=" on conflict do nothing"):
            return
        if table in self.errors:
            return
        query = sql.SQL("select * from {} where {}::text = %s and {}::text = %s").format(
            _quote(table),
            sql.Identifier(membership.tenant_column),
            sql.Identifier(membership.user_column),
        )
        with self.conn.cursor() as cur:
            cur.execute(query, (str(self.tenant_ids[label]), user.id))
            row = cur.fetchone()
            names = [d.name for d in cur.description]
        if row is not None:
            record = {k: _plain(v) for k, v in zip(names, row)}
            self.rows[table][label].append(record)

    def _plain_values(self, table: str, label: str, overrides: dict[str, Any]) -> dict[str, Any]:
        info = self.tables[table]
        values = {}
        for name, column in info.columns.items():
            if name in overrides or column.identity or column.generated or column.has_default:
                continue
            values[name] = self.values.make(column, label, self.markers[label])
        values.update(overrides)
        return values

    def seed_partitions(self, table: str) -> None:
        """Put each tenant's rows into every partition, so each child can be probed."""
        children = [t for t in self.tables.values() if t.parent == table]
        info = self.tables[table]
        key_column = _partition_column(info.partition_key)
        for child in children:
            overrides = {}
            value = _bound_value(child.partition_bound)
            if key_column and value is not None:
                overrides[key_column] = value
            for label in ("A", "B"):
                for _ in range(ROWS_PER_TENANT):
                    values = self.row_values(child.name, label, overrides)
                    if values is None or self.insert(child.name, values, label) is None:
                        break
                    self.rows[table][label].append(self.rows[child.name][label][-1])

    def run_seed_sql(self) -> None:
        text = self.tenancy.seed_sql
        users = {
            f"user_{label.lower()}{i}": user.id
            for label, members in self.users.items()
            for i, user in enumerate(members)
        }
        params = {"tenant_a": self.tenant_ids["A"], "tenant_b": self.tenant_ids["B"], **users}
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(text.format(**{k: _literal(v) for k, v in params.items()}))
        except (psycopg.Error, KeyError, IndexError) as exc:
            raise self.config.error(
                ("tenancy", "seed_sql"),
                text[:60],
                f"seed_sql failed: {exc}",
                "Use {tenant_a}, {tenant_b}, {user_a0}, {user_a1}, {user_b0}, "
                "{user_b1} and make the SQL valid",
            ) from None


_MISSING = object()


def _full(name: str) -> str:
    return name if "." in name else f"public.{name}"


def _partition_column(partkey: str | None) -> str | None:
    if not partkey:
        return None
    match = re.match(r"\w+\s*\(\s*\"?(\w+)\"?\s*\)", partkey)
    return match.group(1) if match else None


def _bound_value(bound: str | None) -> str | None:
    if not bound or bound.strip().upper() == "DEFAULT":
        return None
    match = _LITERAL.search(bound)
    if match:
        return match.group(1)
    match = re.search(r"\(\s*(-?\d+)", bound)
    return match.group(1) if match else None


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _adapt(value: Any) -> Any:
    if isinstance(value, (dict, list)) and not isinstance(value, str):
        return psycopg.types.json.Jsonb(value) if isinstance(value, dict) else value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, (uuid.UUID, datetime, date, time, Decimal, timedelta)):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def _read_memberships(conn: psycopg.Connection, tenancy) -> dict[str, set[str]]:
    """Read which tenants each user belongs to, after seeding and its triggers."""
    membership = tenancy.membership
    if membership is None:
        return {}
    query = sql.SQL("select {}::text, {}::text from {}").format(
        sql.Identifier(membership.user_column),
        sql.Identifier(membership.tenant_column),
        _quote(_full(membership.table)),
    )
    found: dict[str, set[str]] = defaultdict(set)
    with conn.cursor() as cur:
        for user, tenant in cur.execute(query):
            found[user].add(tenant)
    return dict(found)


def seed_database(dsn: str, config: Config) -> Seed:
    """Seed tenants A and B, their members, an outsider and rows in every table."""
    tenancy = config.tenancy
    if tenancy is None:
        raise ValueError("seeding needs a tenancy section")
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = read_tables(conn, list(tenancy.schemas))
        seeder = Seeder(conn, config, tables)
        outsider = seeder.create_users()
        seeder.seed()
        memberships = _read_memberships(conn, tenancy)
    tenant_info = tables[tenancy.tenant_table]
    tenants = tuple(
        SeededTenant(
            id=seeder.tenant_ids[label],
            label=label,
            members=tuple(seeder.users[label]),
        )
        for label in ("A", "B")
    )
    rows = {table: dict(by_label) for table, by_label in seeder.rows.items()}
    logger.info(
        "seeded %d tables for tenants A and B (%d could not be seeded)",
        len(rows),
        len(seeder.errors),
    )
    return Seed(
        tenants=tenants,
        outsider=outsider,
        tables=tables,
        rows=rows,
        errors=dict(seeder.errors),
        markers=dict(seeder.markers),
        tenant_table=tenancy.tenant_table,
        tenant_key=tenant_info.primary_key[0],
        tenant_column=tenancy.column,
        memberships=memberships,
    )
