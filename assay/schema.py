"""A static schema model replayed from parsed migration statements.

:func:`build_model` replays every statement in file order and keeps what the
tenant-isolation controls judge: tables and their columns, row level security
flags and policies, views and their ``security_invoker`` option, functions with
``SECURITY DEFINER`` and ``search_path``, grants, default privileges and roles.
Later statements win, so a broad policy that a later file drops is gone from the
model, as it is from the database.

The model is static. It reads only the migrations, so objects created elsewhere
(for example Supabase's ``storage.objects``) appear as ``external`` tables as soon
as a migration refers to them. Statement kinds that are not modelled are listed in
``SchemaModel.unmodelled``, and inconsistencies such as altering a policy that
does not exist are listed in ``SchemaModel.notes``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import pglast
from pglast import ast, enums
from pglast.stream import RawStream

from assay.migrations import MigrationFile, Statement

__all__ = [
    "SUPABASE_DEFAULT_PRIVILEGES",
    "SUPABASE_ROLES",
    "Column",
    "DefaultPrivilege",
    "Function",
    "Grant",
    "Location",
    "Note",
    "Policy",
    "SchemaModel",
    "Table",
    "build_model",
    "do_block_queries",
]

logger = logging.getLogger(__name__)

TABLE_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
)
_ALL_PRIVILEGES = {
    "table": TABLE_PRIVILEGES,
    "sequence": ("USAGE", "SELECT", "UPDATE"),
    "function": ("EXECUTE",),
    "schema": ("USAGE", "CREATE"),
}
_RELATION_KINDS = (
    "table",
    "partitioned",
    "partition",
    "view",
    "materialized_view",
    "foreign",
)


@dataclass(frozen=True)
class Location:
    """The start of a statement: a migration file and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @classmethod
    def of(cls, statement: Statement) -> Location:
        return cls(statement.file, statement.line)


@dataclass
class Column:
    """A table column. ``generated`` is the expression of a generated column."""

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    generated: str | None = None
    identity: bool = False


@dataclass
class Policy:
    """A row level security policy as the migrations leave it.

    ``using`` and ``check`` are the USING and WITH CHECK expressions deparsed to
    SQL text. ``location`` is the CREATE POLICY, and ``altered_at`` lists every
    ALTER POLICY that changed it since.
    """

    name: str
    table: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    location: Location
    altered_at: list[Location] = field(default_factory=list)


@dataclass
class Table:
    """A relation: table, partitioned table, partition, view or the like.

    ``kind`` is one of table, partitioned, partition, view, materialized_view or
    foreign. ``parent`` is the partitioned table of a partition, or the first
    parent of an inheriting table. ``created`` is the CREATE statement, or the
    latest CREATE OR REPLACE of a view. An ``external`` table was never created
    by the migrations, only referred to, so its columns are unknown.
    """

    name: str
    kind: str
    created: Location
    columns: dict[str, Column] = field(default_factory=dict)
    rls: bool = False
    force_rls: bool = False
    policies: dict[str, Policy] = field(default_factory=dict)
    parent: str | None = None
    rls_enabled_at: Location | None = None
    rls_disabled_at: Location | None = None
    security_invoker: bool = False
    definition: str | None = None
    owner: str | None = None
    external: bool = False

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass
class Function:
    """A function or procedure.

    ``args`` contains the input parameters as (name, type) pairs, with an empty name
    for unnamed ones. ``search_path`` is the value fixed by ``SET search_path``
    (``""`` when set to empty), or None when the function has none. ``body`` is
    the source text of the function, or the deparsed SQL-standard body for
    ``BEGIN ATOMIC`` and ``RETURN`` forms.
    """

    name: str
    args: list[tuple[str, str]]
    returns: str
    language: str
    security_definer: bool
    search_path: str | None
    body: str | None
    location: Location
    kind: str = "function"
    owner: str | None = None
    altered_at: list[Location] = field(default_factory=list)

    @property
    def argument_types(self) -> tuple[str, ...]:
        return tuple(type_name for _, type_name in self.args)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.argument_types)})"


@dataclass
class Grant:
    """One privilege granted to or revoked from one role on one object.

    ``object_kind`` is table (which includes views), function, schema or
    sequence. ``arguments`` are the argument types of a function grant, or None
    when the statement named the function without them. ``grant_option`` on a
    revoke means only the right to grant further was revoked. ``implicit`` marks
    a grant that default privileges made when the object was created.
    """

    privilege: str
    object_kind: str
    object: str
    role: str
    location: Location | None
    revoke: bool = False
    columns: tuple[str, ...] = ()
    arguments: tuple[str, ...] | None = None
    grant_option: bool = False
    implicit: bool = False


@dataclass(frozen=True)
class DefaultPrivilege:
    """An ALTER DEFAULT PRIVILEGES entry: what new objects of a kind receive.

    ``schema`` None means every schema. ``location`` is None for entries that
    come from the database flavor rather than from a migration.
    """

    object_kind: str
    schema: str | None
    privilege: str
    role: str
    revoke: bool = False
    location: Location | None = None


@dataclass(frozen=True)
class Note:
    """A statement the model skipped or could not apply, and why."""

    location: Location
    message: str


# Supabase creates these roles and default privileges on every project, so
# migrations written for it rely on them. From supabase/postgres init scripts:
# anon and authenticated cannot log in, service_role bypasses RLS, and objects
# that postgres creates in public are granted to all three API roles.
SUPABASE_ROLES: dict[str, dict[str, object]] = {
    "anon": {"login": False, "bypassrls": False},
    "authenticated": {"login": False, "bypassrls": False},
    "service_role": {"login": False, "bypassrls": True},
    "authenticator": {
        "login": True,
        "bypassrls": False,
        "inherit": False,
        "member_of": ["anon", "authenticated", "service_role"],
    },
}
SUPABASE_DEFAULT_PRIVILEGES: tuple[DefaultPrivilege, ...] = tuple(
    DefaultPrivilege(kind, "public", privilege, role)
    for kind in ("table", "function", "sequence")
    for privilege in _ALL_PRIVILEGES[kind]
    for role in ("anon", "authenticated", "service_role")
)

# PostgreSQL grants EXECUTE on new functions to PUBLIC unless ALTER DEFAULT
# PRIVILEGES revokes it.
_BUILT_IN_DEFAULTS = (DefaultPrivilege("function", None, "EXECUTE", "public"),)


@dataclass
class SchemaModel:
    """The schema that the migrations leave behind, keyed by schema-qualified name."""

    default_schema: str = "public"
    tables: dict[str, Table] = field(default_factory=dict)
    functions: dict[str, list[Function]] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    default_privileges: list[DefaultPrivilege] = field(default_factory=list)
    roles: dict[str, dict[str, object]] = field(default_factory=dict)
    schemas: dict[str, Location | None] = field(default_factory=dict)
    sequences: dict[str, Location] = field(default_factory=dict)
    unmodelled: list[Note] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def qualify(self, name: str) -> str:
        """Return ``name`` with the default schema added when it has none."""
        return name if "." in name else f"{self.default_schema}.{name}"

    def table(self, name: str) -> Table | None:
        return self.tables.get(self.qualify(name))

    def function(self, name: str) -> list[Function]:
        """Return every overload of the function ``name``."""
        return self.functions.get(self.qualify(name), [])

    def policies(self) -> Iterator[Policy]:
        for table in self.tables.values():
            yield from table.policies.values()

    def privileges(
        self,
        object_kind: str,
        name: str,
        arguments: Sequence[str] | None = None,
    ) -> dict[str, set[str]]:
        """Return the privileges each role holds on an object after all grants.

        Grants and revokes are replayed in order. Column grants count as the
        privilege on the table. For a function, ``arguments`` selects the
        overload. Membership in other roles and PUBLIC is not expanded.
        """
        if object_kind != "schema":
            name = self.qualify(name)
        privileges_by_role: dict[str, set[str]] = {}
        for grant in self.grants:
            if grant.object_kind != object_kind or grant.object != name:
                continue
            if arguments is not None and grant.arguments is not None:
                if tuple(grant.arguments) != tuple(arguments):
                    continue
            if grant.revoke:
                if not grant.grant_option:
                    privileges_by_role.get(grant.role, set()).discard(grant.privilege)
            else:
                privileges_by_role.setdefault(grant.role, set()).add(grant.privilege)
        return {
            role: privileges
            for role, privileges in privileges_by_role.items()
            if privileges
        }


def build_model(
    files: Sequence[MigrationFile],
    *,
    default_schema: str = "public",
    flavor: str | None = None,
) -> SchemaModel:
    """Replay the statements of ``files`` in order into a :class:`SchemaModel`.

    Unqualified names resolve through ``search_path`` as the statements set it,
    starting from ``default_schema``. With ``flavor="supabase"`` the model starts
    with Supabase's API roles and default privileges.
    """
    model = SchemaModel(default_schema=default_schema)
    model.default_privileges.extend(_BUILT_IN_DEFAULTS)
    if flavor == "supabase":
        for role, attributes in SUPABASE_ROLES.items():
            model.roles[role] = _role_attributes(attributes, None)
        model.default_privileges.extend(SUPABASE_DEFAULT_PRIVILEGES)
        for schema in ("auth", "storage", "extensions"):
            model.schemas[schema] = None
    elif flavor is not None:
        raise ValueError(f"unknown database flavor {flavor!r}; expected 'supabase'")
    model.schemas.setdefault(default_schema, None)

    replayer = _Replayer(model)
    for migration in files:
        for statement in migration.statements:
            replayer.replay(statement)
        replayer.end_of_file()
    return model


# ---------------------------------------------------------------------------
# Helpers on pglast nodes


_TYPE_ALIASES = {
    "int4": "integer",
    "int": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "float8": "double precision",
    "float4": "real",
    "varchar": "character varying",
    "bpchar": "character",
    "char": "character",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
}


def _deparse(node: object) -> str:
    return RawStream()(node)


def _type_name(type_name: ast.TypeName, *, modifiers: bool = True) -> str:
    """Return a type as PostgreSQL names it, e.g. ``character varying(20)[]``."""
    names = [name.sval for name in type_name.names or ()]
    if names and names[0] == "pg_catalog":
        names = names[1:]
    base = ".".join(names)
    base = _TYPE_ALIASES.get(base, base)
    if modifiers and type_name.typmods:
        base += "(" + ", ".join(_deparse(mod) for mod in type_name.typmods) + ")"
    base += "[]" * len(type_name.arrayBounds or ())
    if type_name.pct_type:
        base += "%TYPE"
    if type_name.setof:
        base = "SETOF " + base
    return base


def _role_name(role: ast.RoleSpec) -> str:
    kind = role.roletype
    if kind == enums.RoleSpecType.ROLESPEC_CSTRING:
        return role.rolename
    if kind == enums.RoleSpecType.ROLESPEC_PUBLIC:
        return "public"
    if kind == enums.RoleSpecType.ROLESPEC_CURRENT_USER:
        return "current_user"
    if kind == enums.RoleSpecType.ROLESPEC_SESSION_USER:
        return "session_user"
    return "current_role"


def _boolean(value: object) -> bool:
    """Interpret a reloption or DefElem argument as PostgreSQL parses booleans."""
    if value is None:
        return True
    if isinstance(value, ast.Boolean):
        return bool(value.boolval)
    if isinstance(value, ast.Integer):
        return value.ival != 0
    text = getattr(value, "sval", value)
    return str(text).strip().lower() in ("true", "on", "yes", "1", "t", "y")


def _string_value(node: object) -> str:
    value = getattr(node, "val", node)
    for attribute in ("sval", "ival", "fval", "boolval"):
        if hasattr(value, attribute):
            return str(getattr(value, attribute))
    return _deparse(node)


def _role_attributes(attributes: dict[str, object], location: Location | None) -> dict:
    role = {
        "login": False,
        "superuser": False,
        "bypassrls": False,
        "inherit": True,
        "createrole": False,
        "createdb": False,
        "member_of": [],
        "location": location,
    }
    role.update(attributes)
    role["member_of"] = list(role["member_of"])  # type: ignore[arg-type]
    return role


_ROLE_OPTIONS = {
    "canlogin": "login",
    "superuser": "superuser",
    "bypassrls": "bypassrls",
    "inherit": "inherit",
    "createrole": "createrole",
    "createdb": "createdb",
}

_GRANT_KINDS = {
    enums.ObjectType.OBJECT_TABLE: "table",
    enums.ObjectType.OBJECT_SEQUENCE: "sequence",
    enums.ObjectType.OBJECT_FUNCTION: "function",
    enums.ObjectType.OBJECT_PROCEDURE: "function",
    enums.ObjectType.OBJECT_ROUTINE: "function",
    enums.ObjectType.OBJECT_SCHEMA: "schema",
}

_DROPPABLE_RELATIONS = {
    enums.ObjectType.OBJECT_TABLE,
    enums.ObjectType.OBJECT_VIEW,
    enums.ObjectType.OBJECT_MATVIEW,
    enums.ObjectType.OBJECT_FOREIGN_TABLE,
}

_INPUT_MODES = {
    enums.FunctionParameterMode.FUNC_PARAM_IN,
    enums.FunctionParameterMode.FUNC_PARAM_INOUT,
    enums.FunctionParameterMode.FUNC_PARAM_VARIADIC,
    enums.FunctionParameterMode.FUNC_PARAM_DEFAULT,
}


# ---------------------------------------------------------------------------
# Replaying


class _Replayer:
    """Replay of statements into a model, with the session's search_path."""

    def __init__(self, model: SchemaModel) -> None:
        self.model = model
        self.search_path: list[str] = [model.default_schema]
        self.session_search_path = self.search_path
        self.statement: Statement | None = None
        self.location = Location("", 0)
        self.handlers: dict[str, Callable[[object], None]] = {
            "CreateStmt": self._create_table,
            "CreateForeignTableStmt": self._create_foreign_table,
            "CreateTableAsStmt": self._create_table_as,
            "ViewStmt": self._create_view,
            "AlterTableStmt": self._alter_table,
            "RenameStmt": self._rename,
            "AlterObjectSchemaStmt": self._set_schema,
            "DropStmt": self._drop,
            "CreatePolicyStmt": self._create_policy,
            "AlterPolicyStmt": self._alter_policy,
            "CreateFunctionStmt": self._create_function,
            "AlterFunctionStmt": self._alter_function,
            "AlterOwnerStmt": self._alter_owner,
            "GrantStmt": self._grant,
            "AlterDefaultPrivilegesStmt": self._alter_default_privileges,
            "CreateRoleStmt": self._create_role,
            "AlterRoleStmt": self._alter_role,
            "DropRoleStmt": self._drop_role,
            "GrantRoleStmt": self._grant_role,
            "VariableSetStmt": self._set_variable,
            "SelectStmt": self._select,
            "CreateSchemaStmt": self._create_schema,
            "CreateSeqStmt": self._create_sequence,
            "DoStmt": self._do_block,
        }

    # -- driving

    def replay(self, statement: Statement, *, location: Location | None = None) -> None:
        handler = self.handlers.get(statement.kind)
        self.statement = statement
        self.location = location or Location.of(statement)
        if handler is None:
            self.model.unmodelled.append(Note(self.location, statement.kind))
            return
        try:
            handler(statement.node)
        except (AttributeError, IndexError, KeyError, TypeError) as error:
            # A statement shape the handler does not expect must not stop the
            # replay of the remaining migrations.
            logger.warning(
                "%s: cannot model %s: %r", self.location, statement.kind, error
            )
            self.note(f"{statement.kind} not modelled: {error!r}")

    def end_of_file(self) -> None:
        # SET LOCAL lasts until the end of the transaction, which is the file.
        self.search_path = self.session_search_path

    def note(self, message: str) -> None:
        self.model.notes.append(Note(self.location, message))

    # -- names

    def creation_schema(self) -> str:
        for schema in self.search_path:
            if schema not in ("$user", "pg_catalog", "pg_temp"):
                return schema
        return self.model.default_schema

    def qualify_new(self, schema: str | None, name: str) -> str:
        return f"{schema or self.creation_schema()}.{name}"

    def resolve_relation(self, schema: str | None, name: str) -> str:
        if schema:
            return f"{schema}.{name}"
        for candidate in self.search_path:
            if f"{candidate}.{name}" in self.model.tables:
                return f"{candidate}.{name}"
        return self.qualify_new(None, name)

    def resolve_range(self, relation: ast.RangeVar) -> str:
        return self.resolve_relation(relation.schemaname, relation.relname)

    def resolve_names(self, names: Sequence[object]) -> str:
        parts = [part.sval for part in names]
        return self.resolve_relation(".".join(parts[:-1]) or None, parts[-1])

    def resolve_function(self, names: Sequence[object]) -> str:
        parts = [part.sval for part in names]
        if len(parts) > 1:
            return f"{parts[-2]}.{parts[-1]}"
        for candidate in self.search_path:
            if f"{candidate}.{parts[0]}" in self.model.functions:
                return f"{candidate}.{parts[0]}"
        return self.qualify_new(None, parts[0])

    def existing_table(
        self, relation: ast.RangeVar, *, missing_ok: bool
    ) -> Table | None:
        """Return the table a statement refers to.

        A table the migrations never created must exist outside them, because
        PostgreSQL rejects the statement otherwise. It is added as an external
        table, unless the statement uses IF EXISTS.
        """
        name = self.resolve_range(relation)
        table = self.model.tables.get(name)
        if table is None and not missing_ok:
            table = Table(name, "table", self.location, external=True)
            self.model.tables[name] = table
        return table

    # -- tables

    def _create_table(self, node: ast.CreateStmt, kind: str | None = None) -> None:
        name = self.qualify_new(node.relation.schemaname, node.relation.relname)
        if name in self.model.tables and not self.model.tables[name].external:
            if node.if_not_exists:
                return
            self.note(f"CREATE TABLE {name} replaces a table that already exists")

        columns: dict[str, Column] = {}
        parent = None
        for inherited in node.inhRelations or ():
            parent_name = self.resolve_range(inherited)
            parent = parent or parent_name
            parent_table = self.model.tables.get(parent_name)
            if parent_table is not None:
                columns.update({k: replace(v) for k, v in parent_table.columns.items()})

        if kind is None:
            if node.partbound is not None:
                kind = "partition"
            elif node.partspec is not None:
                kind = "partitioned"
            else:
                kind = "table"

        table = Table(name, kind, self.location, columns=columns, parent=parent)
        for element in node.tableElts or ():
            self._add_table_element(table, element)
        self.model.tables[name] = table
        if node.relation.relpersistence != "t":
            self._apply_default_privileges("table", name)

    def _add_table_element(self, table: Table, element: object) -> None:
        if isinstance(element, ast.ColumnDef):
            column = self._column(element)
            table.columns[column.name] = column
            if column.type in ("serial", "bigserial", "smallserial"):
                self.model.sequences[f"{table.name}_{column.name}_seq"] = self.location
        elif isinstance(element, ast.Constraint):
            if element.contype == enums.ConstrType.CONSTR_PRIMARY:
                for key in element.keys or ():
                    if key.sval in table.columns:
                        table.columns[key.sval].not_null = True
        elif isinstance(element, ast.TableLikeClause):
            source = self.model.tables.get(self.resolve_range(element.relation))
            if source is not None:
                for column in source.columns.values():
                    table.columns[column.name] = replace(column)

    def _column(self, definition: ast.ColumnDef) -> Column:
        column = Column(
            definition.colname,
            _type_name(definition.typeName) if definition.typeName else "",
            not_null=bool(definition.is_not_null),
        )
        for constraint in definition.constraints or ():
            contype = constraint.contype
            if contype in (
                enums.ConstrType.CONSTR_NOTNULL,
                enums.ConstrType.CONSTR_PRIMARY,
            ):
                column.not_null = True
            elif contype == enums.ConstrType.CONSTR_DEFAULT:
                column.default = _deparse(constraint.raw_expr)
            elif contype == enums.ConstrType.CONSTR_GENERATED:
                column.generated = _deparse(constraint.raw_expr)
            elif contype == enums.ConstrType.CONSTR_IDENTITY:
                column.identity = True
                column.not_null = True
        return column

    def _create_foreign_table(self, node: ast.CreateForeignTableStmt) -> None:
        self._create_table(node.base, kind="foreign")

    def _create_table_as(self, node: ast.CreateTableAsStmt) -> None:
        into = node.into
        name = self.qualify_new(into.rel.schemaname, into.rel.relname)
        if name in self.model.tables and node.if_not_exists:
            return
        materialized = node.objtype == enums.ObjectType.OBJECT_MATVIEW
        table = Table(
            name,
            "materialized_view" if materialized else "table",
            self.location,
            columns=_output_columns(node.query, into.colNames),
            definition=_deparse(node.query) if materialized else None,
        )
        self.model.tables[name] = table
        self._apply_default_privileges("table", name)

    def _create_view(self, node: ast.ViewStmt) -> None:
        name = self.qualify_new(node.view.schemaname, node.view.relname)
        existing = self.model.tables.get(name)
        if existing is not None and not node.replace and not existing.external:
            self.note(f"CREATE VIEW {name} replaces a view that already exists")

        # CREATE OR REPLACE VIEW replaces the options too, so a view that loses
        # WITH (security_invoker) on replacement no longer has it.
        security_invoker = False
        for option in node.options or ():
            if option.defname == "security_invoker":
                security_invoker = _boolean(option.arg)

        table = Table(
            name,
            "view",
            self.location,
            columns=_output_columns(node.query, node.aliases),
            security_invoker=security_invoker,
            definition=_deparse(node.query),
            owner=existing.owner if existing else None,
        )
        self.model.tables[name] = table
        if existing is None:
            self._apply_default_privileges("table", name)

    def _alter_table(self, node: ast.AlterTableStmt) -> None:
        table = self.existing_table(node.relation, missing_ok=bool(node.missing_ok))
        if table is None:
            self.note(
                f"ALTER on {self.resolve_range(node.relation)}, which does not exist"
            )
            return
        for command in node.cmds or ():
            self._alter_table_command(table, command, recurse=bool(node.relation.inh))

    def _alter_table_command(
        self, table: Table, command: ast.AlterTableCmd, *, recurse: bool
    ) -> None:
        subtype = command.subtype
        types = enums.AlterTableType
        if subtype == types.AT_AddColumn:
            column = self._column(command.def_)
            if column.name in table.columns and command.missing_ok:
                return
            for target in self._with_children(table, recurse):
                target.columns[column.name] = replace(column)
        elif subtype == types.AT_DropColumn:
            for target in self._with_children(table, recurse):
                target.columns.pop(command.name, None)
        elif subtype == types.AT_EnableRowSecurity:
            table.rls = True
            table.rls_enabled_at = self.location
        elif subtype == types.AT_DisableRowSecurity:
            table.rls = False
            table.rls_disabled_at = self.location
        elif subtype == types.AT_ForceRowSecurity:
            table.force_rls = True
        elif subtype == types.AT_NoForceRowSecurity:
            table.force_rls = False
        elif subtype == types.AT_ChangeOwner:
            table.owner = _role_name(command.newowner)
        elif subtype in (types.AT_SetRelOptions, types.AT_ResetRelOptions):
            for option in command.def_ or ():
                if option.defname == "security_invoker":
                    reset = subtype == types.AT_ResetRelOptions
                    table.security_invoker = False if reset else _boolean(option.arg)
        elif subtype in (types.AT_SetNotNull, types.AT_DropNotNull):
            column = table.columns.get(command.name)
            if column is not None:
                column.not_null = subtype == types.AT_SetNotNull
        elif subtype == types.AT_ColumnDefault:
            column = table.columns.get(command.name)
            if column is not None:
                column.default = _deparse(command.def_) if command.def_ else None
        elif subtype == types.AT_AlterColumnType:
            column = table.columns.get(command.name)
            if column is not None:
                column.type = _type_name(command.def_.typeName)
        elif subtype == types.AT_AddConstraint:
            self._add_table_element(table, command.def_)
        elif subtype == types.AT_AttachPartition:
            child = self.existing_table(command.def_.name, missing_ok=False)
            child.kind = "partition"
            child.parent = table.name
        elif subtype == types.AT_DetachPartition:
            child = self.model.tables.get(self.resolve_range(command.def_.name))
            if child is not None:
                child.kind = "table"
                child.parent = None
        elif subtype == types.AT_AddInherit:
            table.parent = self.resolve_range(command.def_)
        elif subtype == types.AT_DropInherit:
            table.parent = None

    def _with_children(self, table: Table, recurse: bool) -> list[Table]:
        """Return the table and, when recursing, its partitions and children."""
        found = [table]
        if recurse:
            for candidate in self.model.tables.values():
                if candidate.parent == table.name and candidate is not table:
                    found.extend(self._with_children(candidate, True))
        return found

    def _rename(self, node: ast.RenameStmt) -> None:
        kind = node.renameType
        types = enums.ObjectType
        if kind == types.OBJECT_COLUMN:
            table = self.existing_table(node.relation, missing_ok=bool(node.missing_ok))
            if table is None:
                return
            for target in self._with_children(table, bool(node.relation.inh)):
                column = target.columns.pop(node.subname, None)
                if column is not None:
                    column.name = node.newname
                    target.columns[node.newname] = column
        elif kind == types.OBJECT_POLICY:
            table = self.existing_table(node.relation, missing_ok=False)
            policy = table.policies.pop(node.subname, None)
            if policy is None:
                self.note(f"policy {node.subname} on {table.name} does not exist")
                return
            policy.name = node.newname
            policy.altered_at.append(self.location)
            table.policies[node.newname] = policy
        elif kind in _DROPPABLE_RELATIONS:
            old = self.resolve_range(node.relation)
            if old in self.model.tables:
                self._move_relation(old, f"{old.split('.', 1)[0]}.{node.newname}")
        elif kind in (
            types.OBJECT_FUNCTION,
            types.OBJECT_PROCEDURE,
            types.OBJECT_ROUTINE,
        ):
            self._rename_function(node.object, node.newname)
        else:
            self.model.unmodelled.append(Note(self.location, f"RenameStmt {kind.name}"))

    def _set_schema(self, node: ast.AlterObjectSchemaStmt) -> None:
        if node.objectType in _DROPPABLE_RELATIONS:
            old = self.resolve_range(node.relation)
            if old in self.model.tables:
                short = old.split(".", 1)[1]
                self._move_relation(old, f"{node.newschema}.{short}")
        elif node.objectType in (enums.ObjectType.OBJECT_FUNCTION,):
            for function in self._matching_functions(node.object):
                old = function.name
                function.name = f"{node.newschema}.{old.split('.', 1)[1]}"
                self._reindex_function(old, function)
        else:
            self.model.unmodelled.append(Note(self.location, "AlterObjectSchemaStmt"))

    def _move_relation(self, old: str, new: str) -> None:
        tables = self.model.tables
        table = tables.pop(old)
        table.name = new
        tables[new] = table
        for policy in table.policies.values():
            policy.table = new
        for other in tables.values():
            if other.parent == old:
                other.parent = new
        for grant in self.model.grants:
            if grant.object_kind == "table" and grant.object == old:
                grant.object = new

    def _drop(self, node: ast.DropStmt) -> None:
        kind = node.removeType
        types = enums.ObjectType
        if kind in _DROPPABLE_RELATIONS:
            for names in node.objects:
                self._drop_relation(self.resolve_names(names), bool(node.missing_ok))
        elif kind == types.OBJECT_POLICY:
            for names in node.objects:
                table_name = self.resolve_names(names[:-1])
                policy_name = names[-1].sval
                table = self.model.tables.get(table_name)
                if table is None or table.policies.pop(policy_name, None) is None:
                    if not node.missing_ok:
                        self.note(
                            f"policy {policy_name} on {table_name} does not exist"
                        )
        elif kind in (
            types.OBJECT_FUNCTION,
            types.OBJECT_PROCEDURE,
            types.OBJECT_ROUTINE,
        ):
            for signature in node.objects:
                self._drop_function(signature, bool(node.missing_ok))
        elif kind == types.OBJECT_SEQUENCE:
            for names in node.objects:
                self.model.sequences.pop(self.resolve_names(names), None)
        elif kind == types.OBJECT_SCHEMA:
            for name in node.objects:
                self.model.schemas.pop(name.sval, None)
        else:
            self.model.unmodelled.append(Note(self.location, f"DropStmt {kind.name}"))

    def _drop_relation(self, name: str, missing_ok: bool) -> None:
        table = self.model.tables.pop(name, None)
        if table is None:
            if not missing_ok:
                self.note(f"DROP of {name}, which does not exist")
            return
        self.model.grants = [
            grant
            for grant in self.model.grants
            if not (grant.object_kind == "table" and grant.object == name)
        ]
        # Partitions go with their partitioned table.
        for child in list(self.model.tables.values()):
            if child.parent == name and child.kind == "partition":
                self._drop_relation(child.name, True)

    # -- policies

    def _create_policy(self, node: ast.CreatePolicyStmt) -> None:
        table = self.existing_table(node.table, missing_ok=False)
        if node.policy_name in table.policies:
            self.note(f"policy {node.policy_name} on {table.name} is created twice")
        roles = tuple(_role_name(role) for role in node.roles or ()) or ("public",)
        table.policies[node.policy_name] = Policy(
            name=node.policy_name,
            table=table.name,
            command=(node.cmd_name or "all").upper(),
            permissive=bool(node.permissive),
            roles=roles,
            using=_deparse(node.qual) if node.qual is not None else None,
            check=_deparse(node.with_check) if node.with_check is not None else None,
            location=self.location,
        )

    def _alter_policy(self, node: ast.AlterPolicyStmt) -> None:
        table = self.existing_table(node.table, missing_ok=False)
        policy = table.policies.get(node.policy_name)
        if policy is None:
            self.note(
                f"ALTER POLICY {node.policy_name} on {table.name}: no such policy"
            )
            return
        if node.roles:
            policy.roles = tuple(_role_name(role) for role in node.roles)
        if node.qual is not None:
            policy.using = _deparse(node.qual)
        if node.with_check is not None:
            policy.check = _deparse(node.with_check)
        policy.altered_at.append(self.location)

    # -- functions

    def _create_function(self, node: ast.CreateFunctionStmt) -> None:
        name = self.resolve_new_function(node.funcname)
        options = {option.defname: option.arg for option in node.options or ()}
        inputs = [
            (parameter.name or "", _type_name(parameter.argType, modifiers=False))
            for parameter in node.parameters or ()
            if parameter.mode in _INPUT_MODES
        ]
        function = Function(
            name=name,
            args=inputs,
            returns=_return_type(node),
            language=_string_value(options.get("language", "sql")).lower(),
            security_definer=_boolean(options["security"])
            if "security" in options
            else False,
            search_path=_search_path_option(options.get("set")),
            body=_function_body(node, options),
            location=self.location,
            kind="procedure" if node.is_procedure else "function",
        )
        overloads = self.model.functions.setdefault(name, [])
        for index, existing in enumerate(overloads):
            if existing.argument_types == function.argument_types:
                if not node.replace:
                    self.note(f"CREATE FUNCTION {function.signature} already exists")
                function.owner = existing.owner
                overloads[index] = function
                return
        overloads.append(function)
        self._apply_default_privileges("function", name, function.argument_types)

    def resolve_new_function(self, names: Sequence[object]) -> str:
        parts = [part.sval for part in names]
        return self.qualify_new(parts[-2] if len(parts) > 1 else None, parts[-1])

    def _matching_functions(self, signature: ast.ObjectWithArgs) -> list[Function]:
        name = self.resolve_function(signature.objname)
        overloads = self.model.functions.get(name, [])
        if signature.args_unspecified:
            return list(overloads)
        argument_types = _signature_types(signature)
        return [f for f in overloads if f.argument_types == argument_types]

    def _alter_function(self, node: ast.AlterFunctionStmt) -> None:
        functions = self._matching_functions(node.func)
        if not functions:
            self.note(f"ALTER FUNCTION {_deparse(node.func)}: no such function")
            return
        for function in functions:
            for action in node.actions or ():
                if action.defname == "security":
                    function.security_definer = _boolean(action.arg)
                elif action.defname in ("set", "reset"):
                    self._alter_function_setting(function, action.arg)
            function.altered_at.append(self.location)

    @staticmethod
    def _alter_function_setting(
        function: Function, setting: ast.VariableSetStmt
    ) -> None:
        kinds = enums.VariableSetKind
        if setting.kind == kinds.VAR_RESET_ALL:
            function.search_path = None
        elif setting.name == "search_path":
            if setting.kind == kinds.VAR_RESET:
                function.search_path = None
            else:
                function.search_path = _search_path_option(setting)

    def _alter_owner(self, node: ast.AlterOwnerStmt) -> None:
        owner = _role_name(node.newowner)
        if node.objectType in (
            enums.ObjectType.OBJECT_FUNCTION,
            enums.ObjectType.OBJECT_PROCEDURE,
        ):
            for function in self._matching_functions(node.object):
                function.owner = owner
        else:
            self.model.unmodelled.append(
                Note(self.location, f"AlterOwnerStmt {node.objectType.name}")
            )

    def _rename_function(self, signature: ast.ObjectWithArgs, new_name: str) -> None:
        for function in self._matching_functions(signature):
            old = function.name
            function.name = f"{old.split('.', 1)[0]}.{new_name}"
            self._reindex_function(old, function)

    def _reindex_function(self, old: str, function: Function) -> None:
        overloads = self.model.functions.get(old, [])
        if function in overloads:
            overloads.remove(function)
        if not overloads:
            self.model.functions.pop(old, None)
        self.model.functions.setdefault(function.name, []).append(function)
        for grant in self.model.grants:
            if grant.object_kind == "function" and grant.object == old:
                if grant.arguments in (None, function.argument_types):
                    grant.object = function.name

    def _drop_function(self, signature: ast.ObjectWithArgs, missing_ok: bool) -> None:
        matches = self._matching_functions(signature)
        if not matches:
            if not missing_ok:
                self.note(f"DROP FUNCTION {_deparse(signature)}: no such function")
            return
        for function in matches:
            overloads = self.model.functions[function.name]
            overloads.remove(function)
            if not overloads:
                del self.model.functions[function.name]
            self.model.grants = [
                grant
                for grant in self.model.grants
                if not (
                    grant.object_kind == "function"
                    and grant.object == function.name
                    and grant.arguments in (None, function.argument_types)
                )
            ]

    # -- privileges

    def _grant(self, node: ast.GrantStmt) -> None:
        object_kind = _GRANT_KINDS.get(node.objtype)
        if object_kind is None:
            self.model.unmodelled.append(
                Note(self.location, f"GrantStmt {node.objtype.name}")
            )
            return
        roles = [_role_name(role) for role in node.grantees or ()]
        privileges = _privileges(node.privileges, object_kind)
        for target, arguments in self._grant_targets(node, object_kind):
            for role in roles:
                for privilege, columns in privileges:
                    self.model.grants.append(
                        Grant(
                            privilege=privilege,
                            object_kind=object_kind,
                            object=target,
                            role=role,
                            location=self.location,
                            revoke=not node.is_grant,
                            columns=columns,
                            arguments=arguments,
                            grant_option=bool(node.grant_option) and not node.is_grant,
                        )
                    )

    def _grant_targets(
        self, node: ast.GrantStmt, object_kind: str
    ) -> Iterable[tuple[str, tuple[str, ...] | None]]:
        if node.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
            schemas = {schema.sval for schema in node.objects}
            yield from self._all_in_schemas(schemas, object_kind, node.objtype)
            return
        for target in node.objects:
            if object_kind == "function":
                name = self.resolve_function(target.objname)
                if target.args_unspecified:
                    yield name, None
                else:
                    yield name, _signature_types(target)
            elif object_kind == "schema":
                yield target.sval, None
            else:
                name = self.resolve_range(target)
                if object_kind == "table":
                    self.existing_table(target, missing_ok=False)
                yield name, None

    def _all_in_schemas(
        self, schemas: set[str], object_kind: str, objtype: enums.ObjectType
    ) -> Iterable[tuple[str, tuple[str, ...] | None]]:
        """Expand ON ALL ... IN SCHEMA to the objects that exist at this point."""
        if object_kind == "table":
            for name, table in list(self.model.tables.items()):
                if table.schema in schemas and table.kind in _RELATION_KINDS:
                    yield name, None
        elif object_kind == "sequence":
            for name in list(self.model.sequences):
                if name.split(".", 1)[0] in schemas:
                    yield name, None
        elif object_kind == "function":
            included_kinds = {
                enums.ObjectType.OBJECT_FUNCTION: {"function"},
                enums.ObjectType.OBJECT_PROCEDURE: {"procedure"},
            }.get(objtype, {"function", "procedure"})
            for name, overloads in list(self.model.functions.items()):
                if name.split(".", 1)[0] not in schemas:
                    continue
                for function in overloads:
                    if function.kind in included_kinds:
                        yield name, function.argument_types

    def _alter_default_privileges(self, node: ast.AlterDefaultPrivilegesStmt) -> None:
        schemas: list[str | None] = [None]
        for option in node.options or ():
            if option.defname == "schemas":
                schemas = [schema.sval for schema in option.arg]
            # NOTE: FOR ROLE is ignored, so every entry is assumed to apply to
            # the role that runs the migrations.
        action = node.action
        object_kind = _GRANT_KINDS.get(action.objtype)
        if object_kind is None:
            self.model.unmodelled.append(
                Note(self.location, "AlterDefaultPrivilegesStmt")
            )
            return
        for schema in schemas:
            for role in (_role_name(grantee) for grantee in action.grantees or ()):
                for privilege, _ in _privileges(action.privileges, object_kind):
                    self.model.default_privileges.append(
                        DefaultPrivilege(
                            object_kind,
                            schema,
                            privilege,
                            role,
                            revoke=not action.is_grant,
                            location=self.location,
                        )
                    )

    def _apply_default_privileges(
        self, object_kind: str, name: str, arguments: tuple[str, ...] | None = None
    ) -> None:
        """Add the grants that default privileges give a new object.

        Global entries (no schema) replace PostgreSQL's built-in defaults.
        Per-schema entries can only add to them: a per-schema REVOKE removes an
        earlier per-schema GRANT, never a global one, as the ALTER DEFAULT
        PRIVILEGES documentation states.
        """
        schema = name.split(".", 1)[0]
        global_grants: dict[tuple[str, str], bool] = {}
        schema_grants: dict[tuple[str, str], bool] = {}
        for entry in self.model.default_privileges:
            if entry.object_kind != object_kind:
                continue
            if entry.schema is None:
                global_grants[(entry.role, entry.privilege)] = not entry.revoke
            elif entry.schema == schema:
                schema_grants[(entry.role, entry.privilege)] = not entry.revoke

        default_grants = {key for key, granted in global_grants.items() if granted} | {
            key for key, granted in schema_grants.items() if granted
        }
        for role, privilege in sorted(default_grants):
            self.model.grants.append(
                Grant(
                    privilege=privilege,
                    object_kind=object_kind,
                    object=name,
                    role=role,
                    location=self.location,
                    arguments=arguments,
                    implicit=True,
                )
            )

    # -- roles

    def _create_role(self, node: ast.CreateRoleStmt) -> None:
        attributes: dict[str, object] = {}
        if node.stmt_type == enums.RoleStmtType.ROLESTMT_USER:
            attributes["login"] = True
        self._role_options(attributes, node.options)
        self.model.roles[node.role] = _role_attributes(attributes, self.location)

    def _alter_role(self, node: ast.AlterRoleStmt) -> None:
        name = _role_name(node.role)
        role = self.model.roles.get(name)
        if role is None:
            role = _role_attributes({}, None)
            self.model.roles[name] = role
        self._role_options(role, node.options)

    def _role_options(
        self, role: dict[str, object], options: Iterable[ast.DefElem]
    ) -> None:
        for option in options or ():
            if option.defname in _ROLE_OPTIONS:
                role[_ROLE_OPTIONS[option.defname]] = _boolean(option.arg)
            elif option.defname == "addroleto":
                member_of = list(role.get("member_of", []))  # type: ignore[call-overload]
                member_of.extend(_role_name(parent) for parent in option.arg)
                role["member_of"] = member_of

    def _drop_role(self, node: ast.DropRoleStmt) -> None:
        for role in node.roles:
            self.model.roles.pop(_role_name(role), None)

    def _grant_role(self, node: ast.GrantRoleStmt) -> None:
        granted = [role.priv_name for role in node.granted_roles]
        for grantee in node.grantee_roles:
            name = _role_name(grantee)
            role = self.model.roles.setdefault(name, _role_attributes({}, None))
            member_of: list[str] = role["member_of"]  # type: ignore[assignment]
            for parent in granted:
                if node.is_grant and parent not in member_of:
                    member_of.append(parent)
                elif not node.is_grant and parent in member_of:
                    member_of.remove(parent)

    # -- session and schemas

    def _set_variable(self, node: ast.VariableSetStmt) -> None:
        if node.name != "search_path":
            return
        kinds = enums.VariableSetKind
        if node.kind == kinds.VAR_SET_VALUE:
            path = [_string_value(arg) for arg in node.args or ()]
        elif node.kind in (kinds.VAR_SET_DEFAULT, kinds.VAR_RESET):
            path = [self.model.default_schema]
        else:
            return
        self._set_search_path(path, local=bool(node.is_local))

    def _set_search_path(self, path: list[str], *, local: bool) -> None:
        self.search_path = path
        if not local:
            self.session_search_path = path

    def _select(self, node: ast.SelectStmt) -> None:
        """Follow ``select set_config('search_path', ...)``, which pg_dump writes."""
        for target in node.targetList or ():
            call = target.val
            if not isinstance(call, ast.FuncCall):
                continue
            if call.funcname[-1].sval != "set_config" or len(call.args or ()) != 3:
                continue
            setting, value, is_local = call.args
            constants = (setting, value, is_local)
            if not all(isinstance(arg, ast.A_Const) for arg in constants):
                continue
            if _string_value(setting) != "search_path":
                continue
            path = [part.strip().strip('"') for part in _string_value(value).split(",")]
            local = _string_value(is_local).lower() in ("true", "t", "on", "1")
            self._set_search_path([part for part in path if part], local=local)

    def _create_schema(self, node: ast.CreateSchemaStmt) -> None:
        name = node.schemaname or (node.authrole.rolename if node.authrole else "")
        self.model.schemas.setdefault(name, self.location)
        if node.schemaElts:
            saved = self.search_path
            self.search_path = [name]
            for element in node.schemaElts:
                kind = type(element).__name__
                handler = self.handlers.get(kind)
                if handler is not None:
                    handler(element)
            self.search_path = saved

    def _create_sequence(self, node: ast.CreateSeqStmt) -> None:
        name = self.qualify_new(node.sequence.schemaname, node.sequence.relname)
        self.model.sequences[name] = self.location
        self._apply_default_privileges("sequence", name)

    def _do_block(self, node: ast.DoStmt) -> None:
        """Replay the static SQL statements inside a PL/pgSQL DO block.

        Migrations often wrap CREATE POLICY in ``IF NOT EXISTS`` guards. The
        conditions are not evaluated: every static statement is replayed, which
        matches a fresh database. Dynamic EXECUTE strings are listed as
        unmodelled.
        """
        outer = self.statement
        outer_location = self.location
        try:
            queries = do_block_queries(node, outer)
        except pglast.parser.ParseError as error:
            self.note(f"DO block not modelled: PL/pgSQL parse error: {error}")
            return
        if queries is None:
            self.model.unmodelled.append(Note(self.location, "DoStmt"))
            return

        for kind, line, query in queries:
            location = Location(outer_location.file, line)
            if kind == "dynamic":
                self.model.unmodelled.append(Note(location, "EXECUTE in a DO block"))
                continue
            try:
                inner = pglast.parse_sql(query)
            except pglast.parser.ParseError:
                continue  # PL/pgSQL-only syntax such as SELECT ... INTO
            for raw in inner:
                statement = Statement(
                    outer_location.file,
                    location.line,
                    query,
                    raw.stmt,
                    kind=type(raw.stmt).__name__,
                )
                self.replay(statement, location=location)
        self.statement = outer
        self.location = outer_location


# ---------------------------------------------------------------------------
# Function helpers


def _signature_types(signature: ast.ObjectWithArgs) -> tuple[str, ...]:
    if signature.objfuncargs:
        return tuple(
            _type_name(parameter.argType, modifiers=False)
            for parameter in signature.objfuncargs
            if parameter.mode in _INPUT_MODES
        )
    return tuple(
        _type_name(argument, modifiers=False) for argument in signature.objargs or ()
    )


def _return_type(node: ast.CreateFunctionStmt) -> str:
    table_columns = [
        f"{parameter.name} {_type_name(parameter.argType)}"
        for parameter in node.parameters or ()
        if parameter.mode == enums.FunctionParameterMode.FUNC_PARAM_TABLE
    ]
    if table_columns:
        return f"TABLE({', '.join(table_columns)})"
    if node.returnType is not None:
        return _type_name(node.returnType)
    return "" if node.is_procedure else "record"


def _search_path_option(setting: object) -> str | None:
    if not isinstance(setting, ast.VariableSetStmt) or setting.name != "search_path":
        return None
    if setting.kind == enums.VariableSetKind.VAR_SET_CURRENT:
        return "FROM CURRENT"
    return ", ".join(_string_value(arg) for arg in setting.args or ())


def _function_body(
    node: ast.CreateFunctionStmt, options: dict[str, object]
) -> str | None:
    if node.sql_body is not None:
        if isinstance(node.sql_body, ast.ReturnStmt):
            return _deparse(node.sql_body)
        statements = [
            _deparse(statement)
            for block in node.sql_body
            for statement in (block if isinstance(block, tuple) else (block,))
        ]
        return "BEGIN ATOMIC " + "".join(f"{s}; " for s in statements) + "END"
    definition = options.get("as")
    if not definition:
        return None
    return definition[0].sval


def _output_columns(
    query: object, aliases: Sequence[object] | None
) -> dict[str, Column]:
    """Return the columns a view's query outputs when their names are visible."""
    names: list[str] = []
    for target in getattr(query, "targetList", None) or ():
        if target.name:
            names.append(target.name)
        elif isinstance(target.val, ast.ColumnRef):
            last = target.val.fields[-1]
            if isinstance(last, ast.String):
                names.append(last.sval)
    for index, alias in enumerate(aliases or ()):
        if index < len(names):
            names[index] = alias.sval
        else:
            names.append(alias.sval)
    return {name: Column(name, "") for name in names}


def _privileges(
    privileges: Sequence[ast.AccessPriv] | None, object_kind: str
) -> list[tuple[str, tuple[str, ...]]]:
    if not privileges:
        return [(privilege, ()) for privilege in _ALL_PRIVILEGES[object_kind]]
    expanded = []
    for privilege in privileges:
        columns = tuple(column.sval for column in privilege.cols or ())
        name = (privilege.priv_name or "all").upper()
        if name == "ALL":
            expanded.extend((p, columns) for p in _ALL_PRIVILEGES[object_kind])
        else:
            expanded.append((name, columns))
    return expanded


def do_block_queries(
    node: ast.DoStmt, statement: Statement
) -> list[tuple[str, int, str]] | None:
    """Return (kind, line, query) for each SQL statement inside a DO block.

    ``kind`` is ``static`` for embedded SQL and ``dynamic`` for EXECUTE, and
    ``line`` is the line in the migration file. Returns None for a block in a
    language other than PL/pgSQL; raises pglast's ParseError for a body that
    does not parse.
    """
    body = language = None
    for option in node.args or ():
        if option.defname == "as":
            body = option.arg.sval
        elif option.defname == "language":
            language = option.arg.sval
    if body is None or (language or "plpgsql").lower() != "plpgsql":
        return None

    body_offset = max(statement.sql.find(body), 0)
    body_line = statement.line + statement.sql.count("\n", 0, body_offset)
    wrapped = (
        "CREATE FUNCTION assay_do_block() RETURNS void LANGUAGE plpgsql AS "
        + _dollar_quote(body)
    )
    tree = pglast.parse_plpgsql(wrapped)
    return [
        (kind, body_line + max(line_number, 1) - 1, query)
        for kind, line_number, query in _plpgsql_statements(tree)
    ]


def _dollar_quote(body: str) -> str:
    tag = "$assay$"
    while tag in body:
        tag = tag[:-1] + "_$"
    return f"{tag}{body}{tag}"


def _plpgsql_statements(tree: object) -> Iterator[tuple[str, int, str]]:
    """Yield (kind, line, query) for the SQL statements in a PL/pgSQL tree.

    ``kind`` is ``static`` for embedded SQL and ``dynamic`` for EXECUTE.
    """
    if isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_statements(item)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            if key == "PLpgSQL_stmt_execsql":
                query = value["sqlstmt"]["PLpgSQL_expr"]["query"]
                yield "static", value.get("lineno", 1), query
            elif key == "PLpgSQL_stmt_dynexecute":
                yield "dynamic", value.get("lineno", 1), json.dumps(value)
            else:
                yield from _plpgsql_statements(value)
