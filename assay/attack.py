"""The live cross-tenant attack: TI-4 probes and TI-5 definer probes.

Each probe runs in its own transaction on one reused connection. It acts
as a caller and runs one statement. Then it switches back to the superuser
inside the same transaction to see what the statement did to rows the
caller does not own, and rolls back. Writes carry no RETURNING, because
RETURNING needs SELECT rights on the new row and would turn a successful
write into a permission error.

Reading another tenant's rows, writing a row into another tenant, moving a
row there, or touching its rows is a leak. A permission error (SQLSTATE
42501) is the expected denial. Any other error is an error result, never a
pass.

Hypothesis searches WHERE-clause shapes per table and operation and shrinks a
leak to the smallest statement that shows it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import psycopg
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from psycopg import sql

from assay.actors import (
    ANON,
    EMPTY_CLAIMS,
    KINDS,
    MALFORMED_CLAIMS,
    MEMBER,
    OUTSIDER,
    Actor,
    become,
)
from assay.config import TenancyConfig
from assay.seeding import ColumnInfo, Seed, TableInfo, ValueMaker

__all__ = ["Attack", "ProbeResult", "OPERATIONS"]

logger = logging.getLogger(__name__)

OPERATIONS = ("SELECT", "INSERT", "UPDATE", "UPDATE_BARE", "DELETE", "UPSERT")
DENIED_STATES = {"42501"}
# Bad claims make auth helpers fail to parse them: that rejects the caller.
CLAIM_PARSE_STATES = {"22P02", "22023", "22P05", "22007", "22008"}
SEARCH_EXAMPLES = 20
# Definer function argument types that cannot carry a row's identifier.
FIXED_TYPES = {"boolean", "date", "interval", "real", "double precision", "numeric"}
FIXED_PREFIXES = ("timestamp", "time ", "numeric(")
MAX_ROWS_SHOWN = 3


@dataclass
class ProbeResult:
    table: str
    operation: str
    actor: str
    statement: str
    outcome: str  # denied | leak | error
    detail: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    sqlstate: str | None = None


def _ident(table: str) -> sql.Composable:
    schema, name = table.split(".", 1)
    return sql.Identifier(schema, name)


def _render(conn: psycopg.Connection, query: sql.Composable, params: list) -> str:
    """Return the statement with its parameters inlined, for findings."""
    text = query.as_string(conn)
    for value in params:
        literal = "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"
        text = text.replace("%s", literal, 1)
    return text


class Attack:
    """Runs every probe against one seeded database."""

    def __init__(self, dsn: str, seed: Seed, tenancy: TenancyConfig) -> None:
        # Autocommit: each probe sends its own begin and rollback statements.
        self.conn = psycopg.connect(dsn, autocommit=True)

        self.seed = seed
        self.tenancy = tenancy
        self.values = ValueMaker()
        self.values.counter = 10_000
        self.probes = 0
        self.seconds = 0.0
        self._counts: dict[tuple[str, str], int] = {}
        a, b = seed.tenant("A"), seed.tenant("B")
        member = a.members[0]
        self.actors = {
            MEMBER: Actor(MEMBER, tenancy.role, member.id, a.id, member.email),
            ANON: Actor(ANON, tenancy.anon_role),
            OUTSIDER: Actor(
                OUTSIDER, tenancy.role, seed.outsider.id, None, seed.outsider.email
            ),
            EMPTY_CLAIMS: Actor(EMPTY_CLAIMS, tenancy.role),
            MALFORMED_CLAIMS: Actor(MALFORMED_CLAIMS, tenancy.role),
        }
        self.tenant_a, self.tenant_b = a.id, b.id

    def close(self) -> None:
        self.conn.close()

    # What "another tenant's rows" means for a caller ---------------------------------

    def foreign_rows(self, table: str, actor: Actor) -> list[dict[str, Any]]:
        by_label = self.seed.rows.get(table, {})
        if actor.kind == MEMBER:
            return list(by_label.get("B", []))
        return [row for rows in by_label.values() for row in rows]

    def foreign_filter(self, table: str, actor: Actor) -> tuple[sql.Composable, list]:
        """A superuser-side WHERE selecting the rows `actor` must not reach."""
        owner = self.seed.owner_of(table)
        if actor.kind != MEMBER:
            own = self.own_tenants(actor)
            if owner and own:
                return sql.SQL("{}::text <> all(%s)").format(sql.Identifier(owner)), [own]
            users = self._user_columns(self.seed.tables[table]) if not owner else []
            if users and actor.user_id:
                return (
                    sql.SQL(" and ").join(
                        sql.SQL("{}::text is distinct from %s").format(sql.Identifier(c))
                        for c in users
                    ),
                    [actor.user_id] * len(users),
                )
            return sql.SQL("true"), []
        if owner:
            return sql.SQL("{}::text = %s").format(sql.Identifier(owner)), [
                str(self.tenant_b)
            ]
        return self._identity_filter(table, self.foreign_rows(table, actor))

    def own_tenants(self, actor: Actor) -> list[str]:
        """Return the tenants a caller other than A's member belongs to.

        Sign-up triggers give some projects' users a tenant of their own (a
        personal account), so the outsider may own rows it is allowed to see.
        """
        if actor.user_id is None:
            return []
        return sorted(self.seed.memberships.get(actor.user_id, ()))

    def _identity_filter(self, table: str, rows: list[dict[str, Any]]):
        info = self.seed.tables[table]
        columns = info.identity_columns
        if not rows:
            return sql.SQL("false"), []
        clauses, params = [], []
        for row in rows:
            parts = []
            for column in columns:
                parts.append(sql.SQL("{}::text = %s").format(sql.Identifier(column)))
                params.append(None if row.get(column) is None else str(row.get(column)))
            clauses.append(sql.SQL("(") + sql.SQL(" and ").join(parts) + sql.SQL(")"))
        return sql.SQL(" or ").join(clauses), params

    def is_foreign(self, table: str, actor: Actor, row: dict[str, Any]) -> bool:
        owner = self.seed.owner_of(table)
        if actor.kind != MEMBER:
            own = self.own_tenants(actor)
            if owner and owner in row:
                return str(row[owner]) not in own
            users = self._user_columns(self.seed.tables[table]) if not owner else []
            return not any(
                actor.user_id and str(row.get(c)) == actor.user_id for c in users
            )
        if owner and owner in row:
            return str(row[owner]) == str(self.tenant_b)
        identity = self.seed.tables[table].identity_columns
        key = tuple(str(row.get(c)) for c in identity)
        return any(
            key == tuple(str(r.get(c)) for c in identity)
            for r in self.foreign_rows(table, actor)
        )

    # Running one probe -------------------------------------------------------------

    def run(
        self,
        table: str,
        operation: str,
        actor: Actor,
        query: sql.Composable,
        params: list,
        *,
        clear_dependents: bool = False,
    ) -> ProbeResult:
        statement = _render(self.conn, query, params)
        result = ProbeResult(table, operation, actor.kind, statement, "denied")
        writes = operation != "SELECT"
        started = time.perf_counter()
        self.probes += 1
        if writes:
            with self.conn.cursor() as cur:
                before, count_query, touched_query, where_params = self._baseline(
                    cur, table, actor
                )
        # No savepoint: rows written in a subtransaction would carry its xid,
        # and the xmin test below looks for the top-level one.
        cur = self.conn.cursor()
        try:
            cur.execute("begin")
            if clear_dependents:
                self._clear_dependents(cur, table)
            if not self._become(cur, actor, result):
                return result
            cur.execute(query, params)
            rows = []
            if cur.description is not None:
                names = [d.name for d in cur.description]
                rows = [dict(zip(names, r)) for r in cur.fetchall()]
            if writes:
                cur.execute("reset role")
                cur.execute(count_query, where_params)
                after = cur.fetchone()[0]
                cur.execute(touched_query, where_params)
                touched = cur.fetchone()[0]
        except psycopg.Error as exc:
            self.seconds += time.perf_counter() - started
            result.sqlstate = exc.sqlstate
            if _refused(exc) or self._rejects_identity(actor, exc):
                result.detail = _error_text(exc)
                return result
            result.outcome = "error"
            result.detail = _error_text(exc, with_state=True)
            return result
        finally:
            cur.execute("rollback")
            cur.close()
        self.seconds += time.perf_counter() - started
        if True:
            seen = [r for r in rows if self.is_foreign(table, actor, r)]
            if not writes and seen:
                result.outcome = "leak"
                result.detail = f"read {len(seen)} row(s) of another tenant"
            elif writes and (touched or after != before):
                result.outcome = "leak"
                changes = []
                if touched:
                    changes.append(f"{touched} row(s) of another tenant written")
                if after < before:
                    changes.append(f"{before - after} row(s) of another tenant deleted")
                if after > before and not touched:
                    changes.append(f"{after - before} row(s) added to another tenant")
                result.detail = "; ".join(changes)
            if result.outcome == "leak":
                result.rows = [_shown(r) for r in (seen or rows)[:MAX_ROWS_SHOWN]]
            return result

    def _become(self, cur, actor: Actor, result: ProbeResult) -> bool:
        """Act as `actor`; on failure record why in `result` and return False.

        A caller without a tenant whose empty identity the act_as template
        cannot even set is rejected, which is a denial. Any other failure of
        act_as is an error, never a denial: the statement was not tried.
        """
        try:
            become(cur, actor, self.tenancy)
        except psycopg.Error as exc:
            result.sqlstate = exc.sqlstate
            if self._rejects_identity(actor, exc):
                result.detail = _error_text(exc)
                return False
            result.outcome = "error"
            result.detail = "tenancy.act_as failed: " + _error_text(exc, with_state=True)
            return False
        return True

    def _rejects_identity(self, actor: Actor, exc: psycopg.Error) -> bool:
        """Return whether `exc` rejects the caller's missing or malformed identity.

        Malformed claims fail to parse. With a SQL template a caller without a
        tenant sets an empty tenant or user, and a policy that casts it fails
        on that empty value.
        """
        if exc.sqlstate not in CLAIM_PARSE_STATES:
            return False
        if actor.kind == MALFORMED_CLAIMS:
            return True
        empty_identity = actor.tenant_id is None or actor.user_id is None
        message = exc.diag.message_primary or ""
        return (
            self.tenancy.act_as != "supabase" and empty_identity and message.endswith('""')
        )

    def _clear_dependents(self, cur, table: str) -> None:
        """Empty, inside the probe's transaction, the tables whose keys point at `table`.

        A row with dependents cannot move to another tenant when a composite
        foreign key carries the tenant, nor be deleted under ON DELETE RESTRICT,
        which says nothing about the policy that would otherwise let it. The
        truncate cascades to tables that point at those, and everything is
        rolled back afterwards.
        """
        children = sorted(
            name
            for name, info in self.seed.tables.items()
            if name != table and any(fk.parent == table for fk in info.foreign_keys)
        )
        if children:
            cur.execute(
                sql.SQL("truncate {} cascade").format(
                    sql.SQL(", ").join(_ident(name) for name in children)
                )
            )

    def _baseline(self, cur, table: str, actor: Actor):
        """Count the rows `actor` must not reach; cached, since every probe rolls back."""
        where, where_params = self.foreign_filter(table, actor)
        count_query = sql.SQL("select count(*) from {} where {}").format(
            _ident(table), where
        )
        touched_query = sql.SQL(
            "select count(*) from {} where ({}) and xmin::text = "
            "(pg_current_xact_id()::text::bigint %% 4294967296)::text"
        ).format(_ident(table), where)
        key = (table, actor.kind)
        if key not in self._counts:
            cur.execute(count_query, where_params)
            self._counts[key] = cur.fetchone()[0]
        return self._counts[key], count_query, touched_query, where_params

    # Statements ----------------------------------------------------------------------

    def _sample(self, table: str, label: str) -> dict[str, Any] | None:
        rows = self.seed.rows.get(table, {}).get(label) or []
        return rows[0] if rows else None

    def _set_column(self, info: TableInfo) -> str | None:
        owner = self.seed.owner_of(info.name)
        for name, column in info.columns.items():
            if column.identity or column.generated or name in info.primary_key:
                continue
            if name == owner:
                continue
            return name
        return owner if owner and not info.columns[owner].generated else None

    def _identity_where(self, info: TableInfo, row: dict[str, Any]):
        parts, params = [], []
        for column in info.identity_columns:
            parts.append(sql.SQL("{}::text = %s").format(sql.Identifier(column)))
            params.append(str(row.get(column)))
        return sql.SQL(" and ").join(parts), params

    def new_row(
        self, info: TableInfo, base: dict[str, Any], label: str, user_id: str | None = None
    ) -> dict[str, Any]:
        """Return a fresh row like `base` (same tenant and parents), keys renewed.

        A key made only of references, such as a membership's (team, user),
        takes `user_id` (or the outsider) as its user: the row then joins B's
        tenant for a user B does not have, which is the attack itself.
        """
        unique = set(info.primary_key) | {c for key in info.unique_keys for c in key}
        foreign_columns = {c for fk in info.foreign_keys for c in fk.columns}
        owner = self.seed.owner_of(info.name)
        values = {}
        for name, column in info.columns.items():
            if column.identity or column.generated:
                continue
            if name in unique and name not in foreign_columns and name != owner:
                if column.has_default:
                    continue
                values[name] = self.values.make(column, label, "probe")
                continue
            if name in base:
                values[name] = base[name]
        keys = [info.primary_key, *info.unique_keys]
        for key in keys:
            if not key or not all(c in foreign_columns or c == owner for c in key):
                continue
            for column in self._user_columns(info):
                if column in key:
                    values[column] = user_id or self.seed.outsider.id
        return values

    def _user_columns(self, info: TableInfo) -> list[str]:
        """Return the columns of `info` that reference a user (auth.users or users)."""
        user_tables = {"auth.users"}
        membership = self.tenancy.membership
        if membership is not None:
            table = self.seed.tables.get(_qualified_name(membership.table))
            for fk in table.foreign_keys if table else ():
                if fk.columns == (membership.user_column,):
                    user_tables.add(fk.parent)
        return [
            fk.columns[0]
            for fk in info.foreign_keys
            if len(fk.columns) == 1 and fk.parent in user_tables
        ]

    def insert_statement(self, info: TableInfo, values: dict[str, Any], conflict: str = ""):
        columns = list(values)
        query = sql.SQL("insert into {} ({}) values ({}){}").format(
            _ident(info.name),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.SQL("%s") for _ in columns),
            sql.SQL(conflict),
        )
        return query, [_parameter(info.columns.get(c), values[c]) for c in columns]

    def deterministic(self, table: str, operation: str, actor: Actor):
        """Return the canonical probes for one cell of the matrix, simplest first."""
        info = self.seed.tables[table]
        target = self._sample(table, "B")
        own = self._sample(table, "A")
        owner = self.seed.owner_of(table)
        ident = _ident(table)
        # A tenant row's tenant is its own primary key: it cannot move to B or
        # be inserted into B without colliding with B's row, so those probes
        # would only show a duplicate key.
        movable = owner is not None and table != self.seed.tenant_table
        probes = []
        if operation == "SELECT":
            probes.append((sql.SQL("select * from {}").format(ident), []))
            if owner:
                probes.append(
                    (
                        sql.SQL("select * from {} where {}::text = %s").format(
                            ident, sql.Identifier(owner)
                        ),
                        [str(self.tenant_b)],
                    )
                )
        elif operation in ("UPDATE", "UPDATE_BARE"):
            column = self._set_column(info)
            if column is None:
                return []
            assignment = sql.SQL("{} = {}").format(
                sql.Identifier(column), sql.Identifier(column)
            )
            if operation == "UPDATE_BARE":
                probes.append(
                    (sql.SQL("update {} set {}").format(ident, assignment), [])
                )
                if movable and actor.kind == MEMBER and not info.columns[owner].generated:
                    # Moving rows to tenant B. Without a WHERE clause PostgreSQL
                    # does not apply SELECT policies to the new row, so only the
                    # UPDATE policy's WITH CHECK can reject the move.
                    probes.append(
                        (
                            sql.SQL("update {} set {} = %s").format(
                                ident, sql.Identifier(owner)
                            ),
                            [self.tenant_b],
                        )
                    )
            elif target is not None:
                where, params = self._identity_where(info, target)
                probes.append(
                    (
                        sql.SQL("update {} set {} where {}").format(
                            ident, assignment, where
                        ),
                        params,
                    )
                )
                if movable and own is not None and actor.kind == MEMBER:
                    where, params = self._identity_where(info, own)
                    probes.append(
                        (
                            sql.SQL("update {} set {} = %s where {}").format(
                                ident, sql.Identifier(owner), where
                            ),
                            [self.tenant_b, *params],
                        )
                    )
        elif operation == "DELETE":
            if target is not None:
                where, params = self._identity_where(info, target)
                probes.append(
                    (
                        sql.SQL("delete from {} where {}").format(ident, where),
                        params,
                    )
                )
            probes.append((sql.SQL("delete from {}").format(ident), []))
        elif operation == "INSERT" and target is not None and table != self.seed.tenant_table:
            values = self.new_row(info, target, "B", actor.user_id)
            probes.append(self.insert_statement(info, values))
        elif operation == "UPSERT" and target is not None and info.primary_key:
            column = self._set_column(info)
            if column is not None:
                values = {c: target[c] for c in info.columns if c in target and not (
                    info.columns[c].identity or info.columns[c].generated
                )}
                conflict = " on conflict ({}) do update set {} = excluded.{}".format(
                    ", ".join(f'"{c}"' for c in info.primary_key), f'"{column}"', f'"{column}"'
                )
                if all(c in values for c in info.primary_key):
                    probes.append(self.insert_statement(info, values, conflict))
        return probes

    # Hypothesis search ------------------------------------------------------------------

    def where_atoms(self, table: str) -> list[tuple[str, list]]:
        owner = self.seed.owner_of(table)
        atoms: list[tuple[str, list]] = [("true", [])]
        if owner:
            column = f'"{owner}"::text'
            atoms += [
                (f"{column} = %s", [str(self.tenant_b)]),
                (f"{column} in (%s, %s)", [str(self.tenant_a), str(self.tenant_b)]),
                (f"not ({column} = %s)", [str(self.tenant_a)]),
                (f"{column} is not null", []),
            ]
        target = self._sample(table, "B")
        info = self.seed.tables[table]
        if target is not None:
            for column in info.identity_columns[:2]:
                atoms.append((f'"{column}"::text = %s', [str(target.get(column))]))
        return atoms

    def search(self, table: str, operation: str) -> ProbeResult | None:
        """Let Hypothesis look for a leaking WHERE shape; return the shrunk leak."""
        if operation not in ("SELECT", "UPDATE", "DELETE"):
            return None
        info = self.seed.tables[table]
        atoms = self.where_atoms(table)
        column = self._set_column(info)
        if operation == "UPDATE" and column is None:
            return None
        strategy = st.tuples(
            st.sampled_from([MEMBER, ANON, OUTSIDER, EMPTY_CLAIMS]),
            st.lists(st.sampled_from(range(len(atoms))), min_size=1, max_size=3),
            st.sampled_from(["or", "and"]),
        )
        found: dict[str, ProbeResult] = {}

        def leaks(example) -> bool:
            kind, picks, joiner = example
            parts = [atoms[i] for i in picks]
            where = f" {joiner} ".join(f"({text})" for text, _ in parts)
            params = [p for _, ps in parts for p in ps]
            ident = _ident(table)
            if operation == "SELECT":
                query = sql.SQL("select * from {} where " + where).format(ident)
            elif operation == "UPDATE":
                query = sql.SQL("update {} set {} = {} where " + where).format(
                    ident, sql.Identifier(column), sql.Identifier(column)
                )
            else:
                query = sql.SQL("delete from {} where " + where).format(ident)
            result = self.run(table, operation, self.actors[kind], query, params)
            if result.outcome == "leak":
                found["last"] = result
                return True
            return False

        try:
            find(
                strategy,
                leaks,
                settings=settings(
                    max_examples=SEARCH_EXAMPLES,
                    database=None,
                    deadline=None,
                    phases=[Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except NoSuchExample:
            return None
        return found.get("last")

    # Whole tables ---------------------------------------------------------------------

    def attack_table(self, table: str) -> list[ProbeResult]:
        results = []
        for operation in OPERATIONS:
            for kind in KINDS:
                actor = self.actors[kind]
                for query, params in self.deterministic(table, operation, actor):
                    result = self.run(table, operation, actor, query, params)
                    if result.sqlstate == "23503" and operation != "INSERT":
                        result = self.run(
                            table, operation, actor, query, params, clear_dependents=True
                        )
                    results.append(result)
            shrunk = self.search(table, operation)
            if shrunk is not None:
                results.append(shrunk)
        results.extend(self.foreign_key_channel(table))
        return results

    def foreign_key_channel(self, table: str) -> list[ProbeResult]:
        """A's row pointing at B's parent row: the reference itself must be refused."""
        info = self.seed.tables[table]
        owner = self.seed.owner_of(table)
        own = self._sample(table, "A")
        if own is None or owner is None:
            return []
        results = []
        for fk in info.foreign_keys:
            if fk.parent in ("auth.users", self.seed.tenant_table) or fk.columns == (owner,):
                continue
            parent_owner = self.seed.owner_of(fk.parent)
            parent_row = self._sample(fk.parent, "B")
            if parent_owner is None or parent_row is None:
                continue
            values = self.new_row(info, own, "A")
            for child_column, parent_column in zip(fk.columns, fk.parent_columns):
                if child_column != owner:
                    values[child_column] = parent_row[parent_column]
            query, params = self.insert_statement(info, values)
            result = self.run_fk(table, self.actors[MEMBER], query, params, fk.parent)
            results.append(result)
        return results

    def run_fk(self, table, actor, query, params, parent) -> ProbeResult:
        statement = _render(self.conn, query, params)
        result = ProbeResult(table, "FK_CHANNEL", actor.kind, statement, "denied")
        self.probes += 1
        started = time.perf_counter()
        self.conn.execute("begin")
        try:
            with self.conn.cursor() as cur:
                if not self._become(cur, actor, result):
                    return result
                try:
                    cur.execute(query, params)
                except psycopg.Error as exc:
                    result.sqlstate = exc.sqlstate
                    if _refused(exc) or exc.sqlstate == "23503":
                        result.detail = _error_text(exc)
                        return result
                    result.outcome = "error"
                    result.detail = _error_text(exc, with_state=True)
                    return result
            result.outcome = "leak"
            result.detail = (
                f"a row of tenant A was accepted pointing at a row of {parent} that "
                "belongs to tenant B"
            )
            return result
        finally:
            self.conn.execute("rollback")
            self.seconds += time.perf_counter() - started

    # TI-5: definer functions and views ------------------------------------------------

    def foreign_markers(self) -> set[str]:
        """Values that only tenant B's rows contain: ids and marked text."""
        values: set[str] = set()
        marker = self.seed.markers["B"]
        for by_label in self.seed.rows.values():
            for row in by_label.get("B", []):
                for value in row.values():
                    text = str(value)
                    if marker in text or (len(text) == 36 and text.count("-") == 4):
                        values.add(text)
        values.discard(str(self.tenant_a))
        for member in self.seed.tenant("A").members:
            values.discard(member.id)
        return values

    def read_view(self, view: str) -> ProbeResult:
        actor = self.actors[MEMBER]
        query = sql.SQL("select * from {}").format(_ident(view))
        result = ProbeResult(view, "SELECT", actor.kind, _render(self.conn, query, []), "denied")
        self.probes += 1
        markers = self.foreign_markers() | {str(self.tenant_b)}
        self.conn.execute("begin")
        try:
            with self.conn.cursor() as cur:
                if not self._become(cur, actor, result):
                    return result
                try:
                    cur.execute(query)
                    names = [d.name for d in cur.description]
                    rows = [dict(zip(names, r)) for r in cur.fetchall()]
                except psycopg.Error as exc:
                    if _refused(exc):
                        return result
                    result.outcome = "error"
                    result.detail = _error_text(exc, with_state=True)
                    return result
            leaked = [r for r in rows if any(str(v) in markers for v in r.values())]
            if leaked:
                result.outcome = "leak"
                result.detail = f"read {len(leaked)} row(s) holding tenant B's data"
                result.rows = [_shown(r) for r in leaked[:MAX_ROWS_SHOWN]]
            return result
        finally:
            self.conn.execute("rollback")

    def call_definer(self, function) -> list[ProbeResult]:
        """Call a definer function as a member of A with B's identifiers."""
        candidates = self._argument_candidates(function)
        if candidates is None:
            return [
                ProbeResult(
                    function.signature,
                    "CALL",
                    MEMBER,
                    "",
                    "error",
                    detail=(
                        "cannot build arguments of types "
                        + ", ".join(t for _, t in function.args)
                        + "; the function was not probed"
                    ),
                )
            ]
        results = []
        markers = self.foreign_markers() | {str(self.tenant_b)}
        for args, decoys in candidates:
            probe = self._call(function, args)
            if probe.outcome != "denied":
                results.append(probe)
                continue
            # What the caller passed in and gets back proves nothing (a function
            # that creates a row returns the name it was given).
            passed = _passed_values(args)
            values = probe.rows
            leaked = [
                v for v in values if any(str(x) in markers - passed for x in v.values())
            ]
            if leaked:
                probe.outcome = "leak"
                probe.detail = "returned tenant B's data"
                probe.rows = leaked[:MAX_ROWS_SHOWN]
            elif decoys and values and self._answers_differently(
                function, args, values, decoys
            ):
                probe.outcome = "leak"
                probe.detail = (
                    "answers differently for tenant B's identifier than for an "
                    "unknown one, so it discloses B's data"
                )
            if probe.outcome != "leak":
                probe.rows = []
            results.append(probe)
        return results

    def _answers_differently(self, function, args, values, decoys) -> bool:
        """Compare the answer for B's identifiers with answers for unknown ones.

        Echoed arguments are masked. When two unknown identifiers already get
        different answers (new ids, timestamps), the function is not a lookup
        and the comparison says nothing.
        """
        answers = []
        for decoy in decoys:
            baseline = self._call(function, decoy)
            if baseline.outcome != "denied":
                return False
            answers.append(_masked(baseline.rows, decoy))
        if any(answer != answers[0] for answer in answers[1:]):
            return False
        return _masked(values, args) != answers[0]

    def _argument_candidates(self, function):
        """Argument lists holding B's identifiers, each with two lists of unknown ids.

        An argument of a table's row type gets B's seeded row. Any other type
        gets NULL, unless no argument can carry an identifier: then None.
        """
        import uuid as uuid_module

        b_values: dict[str, list[Any]] = {"uuid": [], "text": [], "bigint": []}
        b_values["uuid"].append(str(self.tenant_b))
        for member in self.seed.tenant("B").members:
            b_values["uuid"].append(member.id)
        for by_label in self.seed.rows.values():
            for row in by_label.get("B", [])[:1]:
                for value in row.values():
                    text = str(value)
                    if len(text) == 36 and text.count("-") == 4:
                        b_values["uuid"].append(text)
                    elif isinstance(value, int) and not isinstance(value, bool):
                        b_values["bigint"].append(value)
        b_values["uuid"] = list(dict.fromkeys(b_values["uuid"]))[:6]
        b_values["text"] = b_values["uuid"][:3]
        b_values["bigint"] = list(dict.fromkeys(b_values["bigint"]))[:3]
        if not function.args:
            return [([], [])]
        kinds = [self._argument_kind(type_) for _, type_ in function.args]
        if all(kind == "fixed" for kind in kinds):
            # No argument can carry an identifier, so the function can only
            # answer about the caller: call it once and read what it returns.
            return [([None] * len(kinds), [])]
        if all(kind in (None, "fixed") for kind in kinds):
            return None
        lists = []
        for index, kind in enumerate(kinds):
            if kind in (None, "fixed"):
                continue
            if kind.startswith("row:"):
                pool = [self._row_literal(kind[4:])]
            else:
                pool = b_values[kind] or (
                    [1] if kind == "bigint" else [str(uuid_module.uuid4())]
                )
            for value in pool:
                args, decoys = [], [[], []]
                for other_index, other in enumerate(kinds):
                    if other_index == index:
                        args.append(value)
                        for number, decoy in enumerate(decoys):
                            decoy.append(_decoy(kind, number))
                        continue
                    fill = None
                    if other in b_values and b_values[other]:
                        fill = b_values[other][0]
                    elif other in b_values:
                        fill = _decoy(other, 0)
                    args.append(fill)
                    for decoy in decoys:
                        decoy.append(fill)
                lists.append((args, decoys))
        return lists[:12]

    def _argument_kind(self, type_: str) -> str | None:
        """Return how an argument of `type_` is filled, or None when unknown.

        uuid, text or bigint carry B's identifiers, ``row:<table>`` B's seeded
        row of that table, and ``fixed`` (enums, booleans, dates, fractions)
        cannot carry one and gets NULL.
        """
        kind = _type_kind(type_)
        if kind is not None:
            return kind
        if type_.lower() in FIXED_TYPES or type_.lower().startswith(FIXED_PREFIXES):
            return "fixed"
        table = type_ if "." in type_ else f"public.{type_}"
        if self.seed.rows.get(table, {}).get("B"):
            return f"row:{table}"
        with self.conn.cursor() as cur:
            cur.execute("select typtype from pg_type where oid = to_regtype(%s)", (type_,))
            found = cur.fetchone()
        return "fixed" if found and found[0] == "e" else None

    def _row_literal(self, table: str) -> str:
        """Return B's first seeded row of `table` as a record literal, ("v1",,"v3")."""
        info = self.seed.tables[table]
        row = self.seed.rows[table]["B"][0]
        fields = []
        for name, column in info.columns.items():
            value = row.get(name)
            if value is None:
                fields.append("")
                continue
            if column.type == "bytea":
                text = "\\x" + str(value)
            elif column.type.endswith("[]") and isinstance(value, list):
                text = "{" + ",".join(_quoted(str(item)) for item in value) + "}"
            elif isinstance(value, (dict, list)):
                text = json.dumps(value)
            else:
                text = str(value)
            fields.append(_quoted(text))
        return "(" + ",".join(fields) + ")"

    def _call(self, function, args: list) -> ProbeResult:
        actor = self.actors[MEMBER]
        schema, name = function.name.split(".", 1)
        placeholders = sql.SQL(", ").join(
            sql.SQL("%s::{}").format(sql.SQL(t)) for _, t in function.args
        )
        query = sql.SQL("select * from {}({})").format(
            sql.Identifier(schema, name), placeholders
        )
        result = ProbeResult(
            function.signature, "CALL", actor.kind, _render(self.conn, query, args), "denied"
        )
        self.probes += 1
        self.conn.execute("begin")
        try:
            with self.conn.cursor() as cur:
                if not self._become(cur, actor, result):
                    return result
                try:
                    cur.execute(query, args)
                    names = [d.name for d in cur.description]
                    result.rows = [_shown(dict(zip(names, r))) for r in cur.fetchall()]
                except psycopg.Error as exc:
                    if _refused(exc):
                        return result
                    result.outcome = "error"
                    result.detail = _error_text(exc, with_state=True)
            return result
        finally:
            self.conn.execute("rollback")


def _qualified_name(name: str) -> str:
    return name if "." in name else f"public.{name}"


def _refused(exc: psycopg.Error) -> bool:
    """Return whether PostgreSQL or the application refused the statement.

    A permission error is the database's refusal. An exception raised by
    PL/pgSQL (RAISE, in a trigger, a policy helper or the called function) is
    the application's refusal, whatever error code it chose.
    """
    if exc.sqlstate in DENIED_STATES or exc.sqlstate == "P0001":
        return True
    return " at RAISE" in (exc.diag.context or "")


def _error_text(exc: psycopg.Error, *, with_state: bool = False) -> str:
    message = (exc.diag.message_primary or str(exc)).strip()
    if with_state and exc.sqlstate:
        return f"SQLSTATE {exc.sqlstate}: {message}"
    return message


def _parameter(column: ColumnInfo | None, value: Any) -> Any:
    """Return `value` ready to bind: seeded json rows come back as dicts and lists."""
    if column is not None and column.type in ("json", "jsonb") and value is not None:
        return value if isinstance(value, str) else json.dumps(value)
    return value


def _type_kind(type_: str) -> str | None:
    text = type_.lower()
    if text == "uuid":
        return "uuid"
    if text in ("text", "character varying", "varchar", "citext"):
        return "text"
    if text in ("bigint", "integer", "smallint"):
        return "bigint"
    return None


def _decoy(kind: str | None, number: int) -> Any:
    """Return an identifier of `kind` that no seeded row has (`number` is 0 or 1)."""
    import uuid as uuid_module

    if kind is not None and kind.startswith("row:"):
        return None
    if kind == "bigint":
        return 987_654_321 + number
    return str(uuid_module.UUID(int=0x5EED + number))


def _quoted(text: str) -> str:
    """Quote one field of a record or array literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _passed_values(args: list) -> set[str]:
    """Return the arguments as text, and each field of a record literal argument."""
    passed = set()
    for value in args:
        if value is None:
            continue
        text = str(value)
        passed.add(text)
        if text.startswith("(") and text.endswith(")"):
            passed |= {field.strip('"') for field in text[1:-1].split(",")}
    return passed


def _masked(rows: list[dict[str, Any]], args: list) -> list[dict[str, Any]]:
    """Return `rows` with every value that equals an argument replaced by a mark."""
    passed = _passed_values(args)
    return [
        {key: "<argument>" if str(value) in passed else value for key, value in row.items()}
        for row in rows
    ]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    shown = {}
    for key, value in list(row.items())[:8]:
        text = str(value)
        shown[key] = text if len(text) <= 80 else text[:77] + "..."
    return shown


def summarise(results: Iterable[ProbeResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Fold probe results into table -> operation -> actor -> {probes, outcome}."""
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    rank = {"leak": 0, "error": 1, "denied": 2}
    for result in results:
        cell = (
            matrix.setdefault(result.table, {})
            .setdefault(result.operation, {})
            .setdefault(result.actor, {"probes": 0, "outcome": "denied"})
        )
        cell["probes"] += 1
        if rank[result.outcome] < rank[cell["outcome"]]:
            cell["outcome"] = result.outcome
    return matrix


# Findings ---------------------------------------------------------------------------

ACTOR_WORDS = {
    MEMBER: "a member of tenant A",
    ANON: "an anonymous caller",
    OUTSIDER: "a signed-in user with no membership",
    EMPTY_CLAIMS: "a caller with empty claims",
    MALFORMED_CLAIMS: "a caller with malformed claims",
}


def probe_findings(control: str, results: Iterable[ProbeResult], locate) -> list:
    """Turn leaks into error findings and errors into undecided ones.

    `locate(table)` returns (file, line) of the statement that created the
    table, so a leak still points at a migration.
    """
    from assay.findings import Finding

    findings = []
    seen: set[tuple] = set()
    for result in results:
        if result.outcome == "denied":
            continue
        key = (result.table, result.operation, result.actor, result.outcome)
        if key in seen:
            continue
        seen.add(key)
        file, line = locate(result.table)
        who = ACTOR_WORDS.get(result.actor, result.actor)
        if result.outcome == "leak":
            message = (
                f"{result.operation} on {result.table} as {who}: {result.detail}; "
                f"statement: {result.statement}"
            )
            level = "error"
            rule = "cross-tenant-" + result.operation.lower()
        else:
            message = (
                f"{result.operation} on {result.table} as {who} could not be judged: "
                f"{result.detail}; statement: {result.statement}"
            )
            level = "undecided"
            rule = "probe-error"
        findings.append(
            Finding(
                control=control,
                rule=rule,
                level=level,
                message=message,
                file=file,
                line=line,
                table=result.table,
                source="probe",
                details={
                    "actor": result.actor,
                    "operation": result.operation,
                    "statement": result.statement,
                    "rows_seen": result.rows,
                    "sqlstate": result.sqlstate,
                },
            )
        )
    return findings


def matrix_lines(matrix: dict) -> list[str]:
    """Return one terminal line per table: probes and the worst outcome per operation."""
    lines = []
    for table, operations in sorted(matrix.items()):
        cells = []
        total = 0
        for operation, actors in operations.items():
            probes = sum(cell["probes"] for cell in actors.values())
            total += probes
            worst = "denied"
            for cell in actors.values():
                if cell["outcome"] == "leak" or (
                    cell["outcome"] == "error" and worst == "denied"
                ):
                    worst = cell["outcome"]
            cells.append(f"{operation.lower()}:{worst}")
        lines.append(f"{table}: {total} probes; " + " ".join(cells))
    return lines


def own_rows_visible(attack: Attack, table: str) -> int | None:
    """Count the own rows a member of A can read, or return None if the read failed."""
    actor = attack.actors[MEMBER]
    owner = attack.seed.owner_of(table)
    if owner is None:
        return None
    query = sql.SQL("select count(*) from {} where {}::text = %s").format(
        _ident(table), sql.Identifier(owner)
    )
    attack.conn.execute("begin")
    try:
        with attack.conn.cursor() as cur:
            become(cur, actor, attack.tenancy)
            cur.execute(query, [str(attack.tenant_a)])
            return cur.fetchone()[0]
    except psycopg.Error:
        return None
    finally:
        attack.conn.execute("rollback")
