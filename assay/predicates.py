"""What a row level security predicate depends on, read with sqlglot.

:func:`analyse` parses one USING or WITH CHECK expression. It reports the row
columns, session values and functions that the expression reads, and whether it is
always true. It also decides whether the expression is *scoped*, which means that
every way it can admit a row ties a column of that row to the caller's identity.

The predicate is split into branches: OR separates branches and AND distributes
over them. A branch is scoped when one of its conditions binds a row column to a
session value. Examples of such conditions:

- ``user_id = auth.uid()`` or ``tenant_id = current_setting('app.tenant_id')::uuid``
- ``organization_id IN (SELECT organization_id FROM members WHERE user_id =
  auth.uid())``
- a correlated ``EXISTS`` whose WHERE binds the session
- a call to a helper function that reads the session and receives a row column

Values derived from ``user_metadata`` do not count, because users can edit them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

if TYPE_CHECKING:
    from assay.schema import Function, SchemaModel

__all__ = [
    "SESSION_FUNCTIONS",
    "FunctionInfo",
    "PredicateAnalysis",
    "analyse",
    "function_infos",
]

# Supabase's functions that read the JWT claims of the request.
SESSION_FUNCTIONS = frozenset({"auth.uid", "auth.jwt", "auth.role", "auth.email"})

# SQL keywords that name the current role. sqlglot reads some as columns.
_SESSION_KEYWORDS = {
    "current_user": "current_user",
    "current_role": "current_user",
    "user": "current_user",
    "session_user": "session_user",
}

_USER_METADATA = re.compile(r"raw_user_meta_data|user_metadata|user_meta_data", re.I)

# Built-in functions that sqlglot does not type and that read no session state.
_PURE_BUILT_INS = frozenset(
    {
        "array_append",
        "array_length",
        "array_position",
        "array_remove",
        "cardinality",
        "gen_random_uuid",
        "has_column_privilege",
        "has_schema_privilege",
        "has_table_privilege",
        "jsonb_array_elements_text",
        "jsonb_build_object",
        "jsonb_extract_path_text",
        "split_part",
        "starts_with",
        "storage.extension",
        "storage.filename",
        "storage.foldername",
        "string_to_array",
        "to_jsonb",
        "unnest",
        "uuid_generate_v4",
    }
)

# Comparisons that can bind a row column to a value of the caller. Inequality
# and ordering do not, because they match other callers' rows too.
_BINDING_COMPARISONS = (
    exp.EQ,
    exp.NullSafeEQ,
    exp.In,
    exp.ArrayContainsAll,
    exp.ArrayContainedBy,
    exp.ArrayOverlaps,
)

# Operators and expressions that sqlglot models as functions.
_NOT_FUNCTION_CALLS = (
    exp.Binary,
    exp.Unary,
    exp.Case,
    exp.If,
    exp.Bracket,
    exp.Cast,
    exp.TryCast,
    exp.JSONExtract,
    exp.JSONExtractScalar,
    exp.JSONBExtract,
    exp.JSONBExtractScalar,
    exp.JSONBContains,
    exp.ArrayContainsAll,
    exp.ArrayContainedBy,
    exp.ArrayOverlaps,
    exp.Array,
    exp.Exists,
)


@dataclass(frozen=True)
class FunctionInfo:
    """The parts of a helper function that the analysis reads."""

    name: str
    language: str = "sql"
    body: str | None = None
    arg_names: tuple[str, ...] = ()

    @classmethod
    def from_function(cls, function: Function) -> FunctionInfo:
        return cls(
            name=function.name,
            language=function.language,
            body=function.body,
            arg_names=tuple(name for name, _ in function.args),
        )


def function_infos(model: SchemaModel) -> dict[str, tuple[FunctionInfo, ...]]:
    """Return every function of a schema model, overloads together, by name."""
    return {
        name: tuple(FunctionInfo.from_function(function) for function in overloads)
        for name, overloads in model.functions.items()
    }


@dataclass(frozen=True)
class PredicateAnalysis:
    """The result of analysing a predicate: what it reads and whether it is scoped.

    ``scoped`` is True when every branch binds a row column to the caller,
    False when some branch does not, and None when Assay cannot decide, for
    example because the predicate calls a function whose body is unknown.
    """

    text: str
    always_true: bool
    row_columns: frozenset[str]
    session_refs: frozenset[str]
    functions: frozenset[str]
    user_metadata: bool
    scoped: bool | None
    reasons: tuple[str, ...]


FunctionMap = Mapping[str, "FunctionInfo | Sequence[FunctionInfo]"]


def analyse(
    text: str,
    *,
    table: str,
    columns: Collection[str],
    functions: FunctionMap | None = None,
    tables: Mapping[str, Collection[str]] | None = None,
) -> PredicateAnalysis:
    """Analyse one policy expression on ``table``, whose columns are ``columns``.

    ``functions`` lets the analysis follow helper functions by qualified name.
    ``tables`` gives the columns of other tables by name, so an unqualified
    column inside a subquery can be resolved to the subquery's table or to the
    protected row. Text that sqlglot cannot parse gives ``scoped=None``, with
    the parser's message in ``reasons``.
    """
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except (ParseError, TokenError) as error:
        return PredicateAnalysis(
            text=text,
            always_true=False,
            row_columns=frozenset(),
            session_refs=frozenset(),
            functions=frozenset(),
            user_metadata=bool(_USER_METADATA.search(text)),
            scoped=None,
            reasons=(
                f"sqlglot could not parse the predicate: {_parse_message(error)}",
            ),
        )

    _flatten_parenthesized_joins(tree)
    analyser = _Analyser(table, columns, functions or {}, tables or {})
    return analyser.run(text, tree)


def _flatten_parenthesized_joins(tree: exp.Expression) -> None:
    """Rewrite ``FROM (a JOIN b ON c)`` as ``FROM a JOIN b ON c``, in place.

    PostgreSQL's deparser (pg_get_expr, so the live catalog) wraps joins in
    parentheses, and sqlglot reads those as a subquery that hides the tables
    and the ON conditions from the analysis.
    """
    for subquery in list(tree.find_all(exp.Subquery)):
        inner = subquery.this
        if not isinstance(inner, exp.Table) or not inner.args.get("joins"):
            continue
        holder = subquery.parent
        select = holder.parent if holder is not None else None
        if not isinstance(holder, (exp.From, exp.Join)) or not isinstance(
            select, exp.Select
        ):
            continue
        nested = list(inner.args["joins"])
        inner.set("joins", None)
        subquery.replace(inner)
        joins = list(select.args.get("joins") or [])
        position = joins.index(holder) + 1 if isinstance(holder, exp.Join) else 0
        select.set("joins", joins[:position] + nested + joins[position:])


def _parse_message(error: Exception) -> str:
    details = getattr(error, "errors", None)
    if details:
        first = details[0]
        where = f"line {first.get('line')}, column {first.get('col')}"
        return f"{first.get('description')} ({where})"
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()


# ---------------------------------------------------------------------------
# Helper functions


@dataclass
class _HelperFacts:
    """The session values a helper's body reads, including the helpers it calls."""

    session: frozenset[str]
    user_metadata: bool


_BODY_SESSION_FUNCTION = re.compile(r"\bauth\s*\.\s*(uid|jwt|role|email)\s*\(", re.I)
_BODY_SETTING = re.compile(r"\bcurrent_setting\s*\(\s*'([^']*)'", re.I)
_BODY_KEYWORD = re.compile(r"\b(current_user|current_role|session_user)\b", re.I)
_BODY_CALL = re.compile(r"\b([A-Za-z_][\w$]*(?:\s*\.\s*[A-Za-z_][\w$]*)?)\s*\(")


def _strip_sql_comments(text: str) -> str:
    text = re.sub(r"--[^\n]*", " ", text)
    return re.sub(r"/\*[\s\S]*?\*/", " ", text)


# ---------------------------------------------------------------------------
# The analysis


@dataclass
class _Summary:
    """The row columns, session values and unknown functions a value reads."""

    row: bool = False
    session: set[str] = field(default_factory=set)
    tainted: bool = False
    opaque: set[str] = field(default_factory=set)
    ambiguous: set[str] = field(default_factory=set)

    def merge(self, other: _Summary) -> _Summary:
        self.row |= other.row
        self.session |= other.session
        self.tainted |= other.tainted
        self.opaque |= other.opaque
        self.ambiguous |= other.ambiguous
        return self


@dataclass
class _Verdict:
    """The binding verdict for an expression, with the branches that do not bind.

    ``unbound`` contains those branches as lists of their conditions, and
    ``undecided`` contains the reasons for a None value.
    """

    value: bool | None
    unbound: list[list[exp.Expression]] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)


def _all_of(verdicts: Sequence[_Verdict]) -> _Verdict:
    """Combine OR branches: every one of them must bind."""
    values = [verdict.value for verdict in verdicts]
    if False in values:
        value = False
    elif None in values:
        value = None
    else:
        value = True
    result = _Verdict(value)
    for verdict in verdicts:
        result.unbound.extend(verdict.unbound)
        result.undecided.extend(verdict.undecided)
    return result


def _any_of(verdicts: Sequence[_Verdict]) -> _Verdict:
    """Combine AND conditions: one binding condition binds the whole branch."""
    values = [verdict.value for verdict in verdicts]
    if True in values:
        return _Verdict(True)
    value = None if None in values else False
    branches: list[list[exp.Expression]] = [[]]
    for verdict in verdicts:
        if verdict.unbound:
            branches = [b + u for b in branches for u in verdict.unbound[:3]][:6]
    result = _Verdict(value, [b for b in branches if b])
    for verdict in verdicts:
        result.undecided.extend(verdict.undecided)
    return result


RowTest = Callable[[exp.Column], bool]


# Lower-cased copies of the function and table maps, by the map's identity.
# One schema's maps are passed for every policy of a lint run, and lowering
# thousands of tables per policy made lint quadratic in the schema's size.
_NORMALISED: dict[int, tuple[object, dict]] = {}
_NORMALISED_LIMIT = 8


def _lower_functions(functions: FunctionMap) -> dict:
    return {
        name.lower(): (info,) if isinstance(info, FunctionInfo) else tuple(info)
        for name, info in functions.items()
    }


def _lower_tables(tables: Mapping[str, Collection[str]]) -> dict:
    return {name.lower(): {c.lower() for c in cols} for name, cols in tables.items()}


def _normalised(mapping, build) -> dict:
    """Return `build(mapping)`, reusing the result while the same map is passed.

    NOTE: a map changed in place after its first use keeps its old copy.
    """
    cached = _NORMALISED.get(id(mapping))
    if cached is not None and cached[0] is mapping:
        return cached[1]
    result = build(mapping)
    if len(_NORMALISED) >= _NORMALISED_LIMIT:
        _NORMALISED.clear()
    # The map itself is kept, so its id cannot be reused while cached.
    _NORMALISED[id(mapping)] = (mapping, result)
    return result


class _Analyser:
    def __init__(
        self,
        table: str,
        columns: Collection[str],
        functions: FunctionMap,
        tables: Mapping[str, Collection[str]],
    ) -> None:
        self.table = table.lower()
        self.table_short = self.table.rsplit(".", 1)[-1]
        self.columns = {column.lower() for column in columns}
        self.functions = _normalised(functions, _lower_functions)
        self.tables = _normalised(tables, _lower_tables)
        self.helper_cache: dict[str, _HelperFacts] = {}
        self.metadata_reasons: list[str] = []

    # -- driving

    def run(self, text: str, tree: exp.Expression) -> PredicateAnalysis:
        row_columns = set()
        for column in tree.find_all(exp.Column):
            if self._session_keyword(column) is None and self._scope(column) == "outer":
                row_columns.add(column.name.lower())

        called = self._called_functions(tree)
        session_refs = set(self._summary(tree, self._is_row, deep=True).session)
        for name in called:
            facts = self._helper_facts(name)
            if facts is not None:
                session_refs |= facts.session

        user_metadata = bool(_USER_METADATA.search(text))
        if user_metadata:
            self.metadata_reasons.append(
                "reads user_metadata, which users can edit, so it cannot identify "
                "the caller"
            )
        for name in called:
            facts = self._helper_facts(name)
            if facts is not None and facts.user_metadata:
                user_metadata = True
                self.metadata_reasons.append(
                    f"calls {name}, which reads user_metadata, which users can edit"
                )

        always_true = _always_true(tree)
        if always_true:
            scoped: bool | None = False
            reasons = [f"`{_sql(tree)}` is always true, so it admits every row"]
        else:
            verdict = self._bound(tree, self._is_row, top_level=True)
            scoped = verdict.value
            reasons = self._reasons(verdict)

        return PredicateAnalysis(
            text=text,
            always_true=always_true,
            row_columns=frozenset(row_columns),
            session_refs=frozenset(session_refs),
            functions=frozenset(called),
            user_metadata=user_metadata,
            scoped=scoped,
            reasons=tuple(dict.fromkeys(reasons + self.metadata_reasons)),
        )

    def _reasons(self, verdict: _Verdict) -> list[str]:
        if verdict.value is True:
            return ["every branch compares a row column with the caller's identity"]
        reasons = [self._branch_reason(branch) for branch in verdict.unbound]
        return reasons + verdict.undecided

    def _branch_reason(self, branch: list[exp.Expression]) -> str:
        text = " AND ".join(_sql(condition) for condition in branch)
        summary = _Summary()
        for condition in branch:
            summary.merge(self._summary(condition, self._is_row, deep=True))

        null_checks = [
            condition
            for condition in branch
            if isinstance(condition, exp.Is)
            and isinstance(condition.expression, exp.Null)
            and not condition.args.get("negate")
            and self._summary(condition.this, self._is_row, deep=True).session
        ]
        finds_rows = isinstance(branch[0], exp.Exists) or (
            _is_scalar_subquery(branch[0]) and _source_nodes(branch[0].this)
        )

        if summary.tainted:
            return f"branch `{text}` relies on user_metadata, which users can edit"
        if len(branch) == 1 and finds_rows and summary.session:
            return (
                f"the subquery in branch `{text}` never refers to the protected row, "
                "so it admits every row once it finds the caller. Unqualified "
                "columns resolve to the subquery's own tables first"
            )
        if all(_always_true(condition) for condition in branch):
            return f"branch `{text}` is always true, so it admits every row"
        if null_checks:
            return f"branch `{text}` admits callers without a session"
        if summary.session and not summary.row:
            return (
                f"branch `{text}` checks who the caller is, but not which rows "
                "they may see"
            )
        if summary.row and not summary.session:
            return f"branch `{text}` does not compare the row with the caller"
        return f"branch `{text}` does not bind a row column to the caller"

    # -- names

    def _session_keyword(self, column: exp.Column) -> str | None:
        if column.table or column.this.args.get("quoted"):
            return None
        return _SESSION_KEYWORDS.get(column.name.lower())

    def _is_row(self, column: exp.Column) -> bool:
        return self._scope(column) == "outer"

    @staticmethod
    def _is_any_column(column: exp.Column) -> bool:
        return True

    def _scope(self, column: exp.Column) -> str:
        """Return whether a column is the protected row's: outer, inner or ambiguous."""
        selects = [node for node in _ancestors(column) if isinstance(node, exp.Select)]
        qualifier = column.table.lower()
        name = column.name.lower()
        if not selects:
            return "outer"

        if qualifier:
            for select in selects:
                if any(qualifier in names for names, _ in _sources(select)):
                    return "inner"
            return "outer" if qualifier in (self.table_short, self.table) else "inner"

        for select in selects:
            sources = _sources(select)
            unknown = False
            for _, table_name in sources:
                known = self._table_columns(table_name)
                if known is None:
                    unknown = True
                elif name in known:
                    return "inner"
            if unknown:
                return "ambiguous" if name in self.columns else "inner"
        return "outer" if name in self.columns else "inner"

    def _table_columns(self, table_name: str | None) -> set[str] | None:
        if table_name is None:
            return None
        if table_name in self.tables:
            return self.tables[table_name]
        if "." not in table_name:
            return self.tables.get(f"public.{table_name}")
        return None

    def _lookup(self, name: str) -> tuple[FunctionInfo, ...] | None:
        if name in self.functions:
            return self.functions[name]
        if "." not in name:
            if f"public.{name}" in self.functions:
                return self.functions[f"public.{name}"]
            matches = [k for k in self.functions if k.rsplit(".", 1)[-1] == name]
            if len(matches) == 1:
                return self.functions[matches[0]]
        return None

    # -- functions

    def _called_functions(self, tree: exp.Expression) -> set[str]:
        called = set()
        for node in tree.walk():
            name = _function_name(node)
            if name is not None:
                called.add(name)
        return called

    def _helper_facts(
        self, name: str, visiting: frozenset[str] = frozenset()
    ) -> _HelperFacts | None:
        """Return what a helper's body reads, or None when its body is unknown.

        Bodies are scanned as text after removing comments, which works for SQL
        and PL/pgSQL alike. Calls to other known helpers are followed.
        """
        if name in self.helper_cache:
            return self.helper_cache[name]
        infos = self._lookup(name)
        if not infos or all(info.body is None for info in infos):
            return None

        session: set[str] = set()
        user_metadata = False
        for info in infos:
            body = _strip_sql_comments(info.body or "")
            session |= _body_session_refs(body)
            user_metadata |= bool(_USER_METADATA.search(body))
            for call in _BODY_CALL.findall(body):
                callee = re.sub(r"\s+", "", call).lower()
                if callee == name or callee in visiting or callee in SESSION_FUNCTIONS:
                    continue
                facts = self._helper_facts(callee, visiting | {name})
                if facts is not None:
                    session |= facts.session
                    user_metadata |= facts.user_metadata

        facts = _HelperFacts(frozenset(session), user_metadata)
        self.helper_cache[name] = facts
        return facts

    def _helper_uses_argument(self, name: str, position: int) -> bool:
        """Return whether some overload's body refers to the argument at ``position``.

        NOTE: this is a textual check for the parameter's name or ``$n``. It
        does not prove that the body compares the argument with the session.
        """
        for info in self._lookup(name) or ():
            body = _strip_sql_comments(info.body or "")
            if re.search(rf"\${position + 1}\b", body):
                return True
            if position >= len(info.arg_names) or not info.arg_names[position]:
                return True
            if re.search(rf"\b{re.escape(info.arg_names[position])}\b", body, re.I):
                return True
        return False

    # -- value summaries

    def _summary(
        self, node: exp.Expression, row_test: RowTest, *, deep: bool = False
    ) -> _Summary:
        """Summarise what a value expression reads.

        A subquery counts as a session value only when its output or its WHERE
        clause binds to the session. With ``deep`` every session reference
        inside subqueries counts, which is what ``session_refs`` reports.
        """
        # Text search, because sqlglot turns JSON path keys into path nodes.
        summary = _Summary(tainted=bool(_USER_METADATA.search(_sql(node))))
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, exp.Select) and current is not node:
                summary.merge(self._select_summary(current, row_test, deep=deep))
                continue
            self._summarise_node(current, summary, row_test)
            stack.extend(current.iter_expressions())
        return summary

    def _summarise_node(
        self, node: exp.Expression, summary: _Summary, row_test: RowTest
    ) -> None:
        if isinstance(node, exp.Column):
            keyword = self._session_keyword(node)
            if keyword is not None:
                summary.session.add(keyword)
            elif row_test(node):
                summary.row = True
            elif self._scope(node) == "ambiguous":
                summary.ambiguous.add(node.name.lower())
        elif isinstance(node, exp.CurrentUser):
            summary.session.add("current_user")
        elif isinstance(node, exp.SessionUser):
            summary.session.add("session_user")

        name = _function_name(node)
        if name is None:
            return
        reference = _session_reference(name, node)
        if reference is not None:
            summary.session.add(reference)
            return
        facts = self._helper_facts(name)
        if facts is not None:
            summary.session |= facts.session
            summary.tainted |= facts.user_metadata
        elif not _is_built_in(node, name):
            summary.opaque.add(name)

    def _select_summary(
        self, select: exp.Select, row_test: RowTest, *, deep: bool
    ) -> _Summary:
        summary = _Summary()
        for projection in select.expressions:
            summary.merge(self._summary(projection, row_test, deep=deep))
        for source in _source_nodes(select):
            summary.merge(self._summary(source, row_test, deep=deep))

        conditions = _conditions(select)
        if conditions:
            inner = _Summary()
            for condition in conditions:
                inner.merge(self._summary(condition, self._is_any_column, deep=deep))
            verdict = self._bound_all(conditions, self._is_any_column)
            if deep or verdict.value is True:
                summary.session |= inner.session
            summary.tainted |= inner.tainted
            summary.opaque |= inner.opaque
            if verdict.value is None:
                summary.opaque.add("(subquery)")

        # Columns of the protected row used inside make the subquery correlated.
        for column in select.find_all(exp.Column):
            if self._session_keyword(column) is not None:
                continue
            scope = self._scope(column)
            if scope == "outer":
                summary.row = True
            elif scope == "ambiguous":
                summary.ambiguous.add(column.name.lower())
        return summary

    # -- binding

    def _bound(
        self, node: exp.Expression, row_test: RowTest, *, top_level: bool
    ) -> _Verdict:
        """Decide whether every branch of ``node`` binds a row column to the caller.

        ``row_test`` decides which columns count as the row: the protected row's at
        the top level, any column inside a subquery's WHERE.
        """
        recurse = partial(self._bound, row_test=row_test, top_level=top_level)
        if isinstance(node, exp.Paren):
            return recurse(node.this)
        if isinstance(node, exp.Or):
            return _all_of([recurse(node.this), recurse(node.expression)])
        if isinstance(node, exp.And):
            return _any_of([recurse(node.this), recurse(node.expression)])

        # FALSE and NULL admit no row, so they cannot leak one.
        if isinstance(node, exp.Boolean) and not node.this:
            return _Verdict(True)
        if isinstance(node, exp.Null):
            return _Verdict(True)

        if isinstance(node, exp.Case):
            return self._bound_case(node, row_test, top_level=top_level)
        if isinstance(node, exp.Coalesce):
            return _all_of([recurse(part) for part in [node.this, *node.expressions]])
        is_true = isinstance(node, exp.Is) and isinstance(node.expression, exp.Boolean)
        if is_true and node.expression.this:
            return recurse(node.this)

        # `f(x) = TRUE` binds as `f(x)` does.
        if isinstance(node, (exp.EQ, exp.NullSafeEQ)):
            for side, other in (
                (node.this, node.expression),
                (node.expression, node.this),
            ):
                if isinstance(other, exp.Boolean) and other.this:
                    return recurse(side)
                # A helper's result for the caller and the row, such as
                # role_in(workspace_id, auth.uid()) = 'admin', is non-NULL only
                # when the helper binds them, so equality to a constant binds
                # as the call does.
                if _is_helper_call(side) and _is_constant(other):
                    return recurse(side)
        if (
            isinstance(node, exp.In)
            and node.args.get("query") is None
            and _is_helper_call(node.this)
            and node.expressions
            and all(_is_constant(value) for value in node.expressions)
        ):
            return recurse(node.this)

        if isinstance(node, exp.Exists):
            return self._bound_exists(node, row_test, top_level=top_level)
        if _is_scalar_subquery(node):
            return self._bound_scalar_subquery(node, row_test, top_level=top_level)
        if isinstance(node, _BINDING_COMPARISONS):
            return self._bound_comparison(node, row_test)
        name = _function_name(node)
        if name is not None:
            return self._bound_call(node, name, row_test)
        return _Verdict(False, [[node]])

    def _bound_all(
        self, conditions: list[exp.Expression], row_test: RowTest
    ) -> _Verdict:
        """Bind a conjunction of conditions, such as a subquery's WHERE and ONs."""
        return _any_of([self._bound(c, row_test, top_level=False) for c in conditions])

    def _bound_case(
        self, node: exp.Case, row_test: RowTest, *, top_level: bool
    ) -> _Verdict:
        verdicts = []
        for branch in node.args.get("ifs") or ():
            verdicts.append(
                _any_of(
                    [
                        self._bound(branch.this, row_test, top_level=top_level),
                        self._bound(branch.args["true"], row_test, top_level=top_level),
                    ]
                )
            )
        default = node.args.get("default")
        if default is not None:
            verdicts.append(self._bound(default, row_test, top_level=top_level))
        return _all_of(verdicts) if verdicts else _Verdict(True)

    def _bound_comparison(self, node: exp.Expression, row_test: RowTest) -> _Verdict:
        if isinstance(node, exp.In):
            right = _Summary()
            for value in node.expressions:
                right.merge(self._summary(value, row_test))
            query = node.args.get("query")
            if query is not None:
                right.merge(self._summary(query, row_test))
        else:
            right = self._summary(node.expression, row_test)
        left = self._summary(node.this, row_test)

        for row_side, caller_side in ((left, right), (right, left)):
            if row_side.row and caller_side.session and not caller_side.tainted:
                return _Verdict(True)
        return self._undecided_or_unbound(node, left.merge(right))

    def _undecided_or_unbound(
        self, node: exp.Expression, summary: _Summary
    ) -> _Verdict:
        if summary.tainted:
            return _Verdict(False, [[node]])
        if summary.opaque - {"(subquery)"} and (summary.row or summary.ambiguous):
            names = ", ".join(sorted(summary.opaque - {"(subquery)"}))
            return _Verdict(
                None,
                undecided=[
                    f"`{_sql(node)}` calls {names}, whose body Assay cannot see; "
                    "pass it in functions"
                ],
            )
        if summary.ambiguous and summary.session:
            names = ", ".join(sorted(summary.ambiguous))
            return _Verdict(
                None,
                undecided=[
                    f"in `{_sql(node)}`, column {names} may belong to the subquery's "
                    "table or to the protected row; qualify it with the table name"
                ],
            )
        return _Verdict(False, [[node]])

    def _bound_exists(
        self, node: exp.Exists, row_test: RowTest, *, top_level: bool
    ) -> _Verdict:
        select = node.this
        if not isinstance(select, exp.Select):
            return _Verdict(None, undecided=[f"`{_sql(node)}` is not a plain SELECT"])
        return self._bound_rows(node, select, row_test, top_level=top_level)

    def _bound_scalar_subquery(
        self, node: exp.Subquery, row_test: RowTest, *, top_level: bool
    ) -> _Verdict:
        """Bind a one-column subquery used as a condition, e.g. ``(SELECT f(x))``.

        Policies wrap calls in a subquery so PostgreSQL evaluates them once. The
        value binds through its expression, or like EXISTS through a WHERE that
        binds the caller and refers to the protected row.
        """
        select = node.this
        projection = select.expressions[0]
        if isinstance(projection, exp.Alias):
            projection = projection.this
        through_value = self._bound(projection, row_test, top_level=top_level)
        if not _source_nodes(select):
            return through_value
        through_rows = self._bound_rows(node, select, row_test, top_level=top_level)
        verdict = _any_of([through_value, through_rows])
        if verdict.value is False:
            verdict.unbound = [[node]]
        return verdict

    def _bound_rows(
        self,
        node: exp.Expression,
        select: exp.Select,
        row_test: RowTest,
        *,
        top_level: bool,
    ) -> _Verdict:
        """Bind a subquery through the rows it finds, as EXISTS does."""
        conditions = _conditions(select)
        if not conditions:
            return _Verdict(False, [[node]])
        inner = self._bound_all(conditions, self._is_any_column)
        if inner.value is not True:
            return _Verdict(
                inner.value, [[node]] if inner.value is False else [], inner.undecided
            )
        if not top_level:
            return _Verdict(True)

        summary = self._select_summary(select, row_test, deep=False)
        if summary.row:
            return _Verdict(True)
        if summary.ambiguous:
            names = ", ".join(sorted(summary.ambiguous))
            return _Verdict(
                None,
                undecided=[
                    f"in `{_sql(node)}`, column {names} may belong to the subquery's "
                    "table or to the protected row; qualify it with the table name"
                ],
            )
        return _Verdict(False, [[node]])

    def _bound_call(
        self, node: exp.Expression, name: str, row_test: RowTest
    ) -> _Verdict:
        call = node.expression if isinstance(node, exp.Dot) else node
        arguments = (
            list(call.expressions)
            if isinstance(call, exp.Anonymous)
            else list(call.iter_expressions())
        )
        summaries = [self._summary(argument, row_test) for argument in arguments]
        row_positions = [
            position for position, summary in enumerate(summaries) if summary.row
        ]
        # The caller may come in as an argument, has_access(workspace_id,
        # auth.uid()), instead of being read inside the helper's body.
        session_positions = [
            position
            for position, summary in enumerate(summaries)
            if summary.session and not summary.row and not summary.tainted
        ]
        if _session_reference(name, node) is not None or _is_built_in(node, name):
            return _Verdict(False, [[node]])

        facts = self._helper_facts(name)
        if facts is None:
            if row_positions:
                return _Verdict(
                    None,
                    undecided=[
                        f"`{_sql(node)}` calls {name}, whose body Assay cannot see; "
                        "pass it in functions"
                    ],
                )
            return _Verdict(False, [[node]])
        passes_session = any(
            self._helper_uses_argument(name, position) for position in session_positions
        )
        if facts.user_metadata or not (facts.session or passes_session):
            return _Verdict(False, [[node]])
        if any(
            self._helper_uses_argument(name, position) for position in row_positions
        ):
            return _Verdict(True)
        return _Verdict(False, [[node]])


# ---------------------------------------------------------------------------
# sqlglot helpers


def _unwrapped(node: exp.Expression) -> exp.Expression:
    while isinstance(node, (exp.Paren, exp.Cast, exp.TryCast)):
        node = node.this
    return node


def _is_helper_call(node: exp.Expression) -> bool:
    """Return whether `node` calls a user-defined function, not a session value."""
    node = _unwrapped(node)
    name = _function_name(node)
    return (
        name is not None
        and _session_reference(name, node) is None
        and not _is_built_in(node, name)
    )


def _is_constant(node: exp.Expression) -> bool:
    """Return whether `node` is a non-NULL literal, or an array or ANY of them."""
    node = _unwrapped(node)
    if isinstance(node, exp.Any):
        return _is_constant(node.this)
    if isinstance(node, (exp.Array, exp.Tuple)):
        return bool(node.expressions) and all(_is_constant(e) for e in node.expressions)
    return isinstance(node, exp.Literal)


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="postgres", normalize_functions=False)


def _ancestors(node: exp.Expression) -> Iterable[exp.Expression]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _sources(select: exp.Select) -> list[tuple[set[str], str | None]]:
    """Return the names a SELECT's FROM and JOIN sources can be referred to by.

    Each entry is (names, table) where table is the qualified or bare table name,
    or None for a subquery or function source.
    """
    found = []
    for source in _source_nodes(select):
        names = {source.alias_or_name.lower()} if source.alias_or_name else set()
        table_name = None
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            table_name = source.name.lower()
            if source.db:
                table_name = f"{source.db.lower()}.{table_name}"
            names.add(source.name.lower())
        found.append((names, table_name))
    return found


def _source_nodes(select: exp.Select) -> list[exp.Expression]:
    nodes = []
    from_clause = select.args.get("from_") or select.args.get("from")
    if from_clause is not None:
        nodes.append(from_clause.this)
        nodes.extend(from_clause.expressions or ())
    for join in select.args.get("joins") or ():
        nodes.append(join.this)
    return nodes


def _is_scalar_subquery(node: exp.Expression) -> bool:
    select = node.this if isinstance(node, exp.Subquery) else None
    return isinstance(select, exp.Select) and len(select.expressions) == 1


def _conditions(select: exp.Select) -> list[exp.Expression]:
    """Return the WHERE and JOIN ... ON conditions of a SELECT, which all apply.

    They stay separate nodes because building an AND node would move them out
    of the SELECT, and column scoping walks up to the enclosing SELECT.
    """
    parts = []
    where = select.args.get("where")
    if where is not None:
        parts.append(where.this)
    for join in select.args.get("joins") or ():
        on = join.args.get("on")
        if on is not None:
            parts.append(on)
    return parts


def _function_name(node: exp.Expression) -> str | None:
    """Return the name of a function call, qualified when written so."""
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        qualifier = (
            node.this.name if isinstance(node.this, exp.Identifier) else _sql(node.this)
        )
        return f"{qualifier}.{node.expression.name}".lower()
    if isinstance(node, exp.Anonymous):
        if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            return None  # named by its Dot parent
        return node.name.lower()
    if isinstance(node, exp.Func) and not isinstance(node, _NOT_FUNCTION_CALLS):
        return node.sql_name().lower()
    return None


def _session_reference(name: str, node: exp.Expression) -> str | None:
    bare = name.removeprefix("pg_catalog.")
    if name in SESSION_FUNCTIONS:
        return name
    if bare in ("current_user", "session_user"):
        return bare
    if bare == "current_setting":
        call = node.expression if isinstance(node, exp.Dot) else node
        arguments = list(getattr(call, "expressions", ()))
        if (
            arguments
            and isinstance(arguments[0], exp.Literal)
            and arguments[0].is_string
        ):
            return f"current_setting:{arguments[0].this}"
        return "current_setting:?"
    return None


def _is_built_in(node: exp.Expression, name: str) -> bool:
    call = node.expression if isinstance(node, exp.Dot) else node
    if not isinstance(call, exp.Anonymous):
        return True  # sqlglot has typed classes only for functions it recognises
    return name in _PURE_BUILT_INS or name.startswith("pg_catalog.")


def _body_session_refs(body: str) -> set[str]:
    found = {f"auth.{name.lower()}" for name in _BODY_SESSION_FUNCTION.findall(body)}
    found |= {f"current_setting:{name}" for name in _BODY_SETTING.findall(body)}
    for keyword in _BODY_KEYWORD.findall(body):
        found.add(_SESSION_KEYWORDS[keyword.lower()])
    return found


def _always_true(node: exp.Expression) -> bool:
    """Return whether an expression is true for every row, e.g. TRUE or 1 = 1.

    A comparison of an expression with itself, such as ``col = col``, counts
    as true although it is NULL for a NULL column, as database linters treat it.
    """
    if isinstance(node, exp.Paren):
        return _always_true(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Or):
        return _always_true(node.this) or _always_true(node.expression)
    if isinstance(node, exp.And):
        return _always_true(node.this) and _always_true(node.expression)
    if isinstance(node, exp.Not):
        inner = node.this.unnest() if isinstance(node.this, exp.Paren) else node.this
        return isinstance(inner, exp.Boolean) and not inner.this
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        negated = bool(node.args.get("negate"))
        if isinstance(node.this, exp.Literal):
            return negated
        return isinstance(node.this, exp.Null) and not negated
    if isinstance(node, (exp.EQ, exp.NullSafeEQ, exp.GTE, exp.LTE)):
        left, right = node.this, node.expression
        if left == right and not _has_volatile_call(left):
            return True
        return _literal_comparison(node) is True
    if isinstance(node, (exp.NEQ, exp.GT, exp.LT)):
        return _literal_comparison(node) is True
    return False


def _has_volatile_call(node: exp.Expression) -> bool:
    return any(isinstance(n, (exp.Anonymous, exp.Rand)) for n in node.walk())


def _literal_comparison(node: exp.Expression) -> bool | None:
    left, right = node.this, node.expression
    if not (isinstance(left, exp.Literal) and isinstance(right, exp.Literal)):
        return None
    if left.is_string != right.is_string:
        return None
    try:
        a, b = (
            (left.this, right.this)
            if left.is_string
            else (float(left.this), float(right.this))
        )
    except ValueError:
        return None
    comparisons = {
        exp.EQ: a == b,
        exp.NullSafeEQ: a == b,
        exp.NEQ: a != b,
        exp.GT: a > b,
        exp.LT: a < b,
        exp.GTE: a >= b,
        exp.LTE: a <= b,
    }
    return comparisons.get(type(node))
