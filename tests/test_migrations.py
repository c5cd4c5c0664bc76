"""Tests for migration discovery, psql preprocessing, splitting and applying."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pglast
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.errors import MigrationError
from assay.migrations import (
    MigrationFile,
    Statement,
    apply,
    discover,
    parse_all,
    parse_file,
)


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def parse_text(tmp_path: Path, text: str, **variables: str) -> list[Statement]:
    path = write(tmp_path, "m.sql", text)
    return list(parse_file(path, variables=variables, root=tmp_path).statements)


def lines_and_kinds(statements: list[Statement]) -> list[tuple[int, str]]:
    return [(statement.line, statement.kind) for statement in statements]


# ---------------------------------------------------------------------------
# discover


def test_discover_orders_by_full_name(tmp_path):
    for name in ("0002_b.sql", "0002_a.sql", "0001_init.sql", "0010_late.sql"):
        write(tmp_path, name, "select 1;")

    found = [path.name for path in discover(tmp_path)]

    assert found == ["0001_init.sql", "0002_a.sql", "0002_b.sql", "0010_late.sql"]


def test_discover_skips_rollbacks_and_hidden(tmp_path):
    write(tmp_path, "1_init.up.sql", "select 1;")
    write(tmp_path, "1_init.down.sql", "select 1;")
    write(tmp_path, "down/2_undo.sql", "select 1;")
    write(tmp_path, ".snapshots/3_copy.sql", "select 1;")
    write(tmp_path, "notes.txt", "not sql")
    write(tmp_path, "20240101_add/migration.sql", "select 1;")

    found = [path.relative_to(tmp_path).as_posix() for path in discover(tmp_path)]

    assert found == ["1_init.up.sql", "20240101_add/migration.sql"]


def test_discover_relative_to_root(tmp_path):
    write(tmp_path, "db/migrations/1.sql", "select 1;")

    found = discover(Path("db/migrations"), root=tmp_path)

    assert found == [tmp_path / "db/migrations/1.sql"]


def test_discover_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="migrations folder not found: .*nope"):
        discover(tmp_path / "nope")


def test_discover_folder_without_sql(tmp_path):
    write(tmp_path, "readme.md", "no migrations")
    write(tmp_path, "0001.down.sql", "drop table t;")

    with pytest.raises(FileNotFoundError, match="no .sql migration files in"):
        discover(tmp_path)


# ---------------------------------------------------------------------------
# parse_file: splitting and lines


def test_parse_file_records_path_and_sha256(tmp_path):
    raw = b"create table t (id int);\n"
    path = write(tmp_path, "sub/1.sql", raw)

    parsed = parse_file(path, root=tmp_path)

    assert parsed.path == "sub/1.sql"
    assert parsed.sha256 == hashlib.sha256(raw).hexdigest()
    assert parsed.statements[0].file == "sub/1.sql"


def test_lines_skip_leading_comments(tmp_path):
    text = (
        "-- header\n\n/* block\n comment */\n"
        "  create table t (id int);\n-- x\nselect 1;"
    )

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(5, "CreateStmt"), (7, "SelectStmt")]
    assert statements[0].sql == "create table t (id int)"


def test_lines_after_non_ascii_text(tmp_path):
    text = "select 'ééé ✓';\n-- ü\ncomment on table t is 'naïve';\n\nselect 2;"

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [
        (1, "SelectStmt"),
        (3, "CommentStmt"),
        (5, "SelectStmt"),
    ]
    assert statements[1].sql == "comment on table t is 'naïve'"
    assert statements[2].sql == "select 2"


def test_begin_atomic_body_is_one_statement(tmp_path):
    text = (
        "create function f(a int, b int) returns int language sql immutable\n"
        "begin atomic\n  select a + b;\nend;\nselect 1;"
    )

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(1, "CreateFunctionStmt"), (5, "SelectStmt")]
    assert statements[0].sql.endswith("end")


def test_return_sql_function(tmp_path):
    text = "create function g(x int) returns int language sql immutable return x * 2;"

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(1, "CreateFunctionStmt")]
    assert statements[0].node.sql_body is not None


def test_nested_dollar_quotes(tmp_path):
    text = (
        "create function h() returns text language sql as "
        "$fn$ select $q$ next: select 1; $q$::text $fn$;\nselect 2;"
    )

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(1, "CreateFunctionStmt"), (2, "SelectStmt")]


def test_several_policies_in_one_file(tmp_path):
    text = "\n".join(
        f"create policy p{index} on t for select using (owner = auth.uid());"
        for index in range(5)
    )

    statements = parse_text(tmp_path, text)

    assert [statement.node.policy_name for statement in statements] == [
        "p0",
        "p1",
        "p2",
        "p3",
        "p4",
    ]
    assert [statement.line for statement in statements] == [1, 2, 3, 4, 5]


def test_alter_policy_with_all_clauses(tmp_path):
    text = (
        "alter policy p on t to authenticated\n"
        "  using (owner = auth.uid()) with check (owner = auth.uid());"
    )

    (statement,) = parse_text(tmp_path, text)

    assert statement.kind == "AlterPolicyStmt"
    assert statement.node.qual is not None
    assert statement.node.with_check is not None
    assert statement.node.roles[0].rolename == "authenticated"


def test_generated_column(tmp_path):
    text = (
        "alter table invoices add column is_paid boolean\n"
        "  generated always as (paid_at is not null) stored not null;"
    )

    (statement,) = parse_text(tmp_path, text)

    assert statement.kind == "AlterTableStmt"


def test_concurrently_statements_marked(tmp_path):
    text = (
        "create table t (a int);\n"
        "create index concurrently t_a on t (a);\n"
        "create index t_b on t (a);\n"
        "drop index concurrently t_a;\n"
        "reindex index concurrently t_b;\n"
        "vacuum t;"
    )

    statements = parse_text(tmp_path, text)

    assert [statement.concurrently for statement in statements] == [
        False,
        True,
        False,
        True,
        True,
        True,
    ]


def test_node_built_lazily_matches_parser(tmp_path):
    text = (
        "create table t (id int primary key);\nalter table t enable row level security;"
    )

    statements = parse_text(tmp_path, text)

    expected = [
        raw.stmt for raw in pglast.parse_sql("".join(s.sql for s in statements[:1]))
    ]
    assert statements[0].node == expected[0]
    assert type(statements[1].node).__name__ == statements[1].kind


def test_statement_with_explicit_node():
    node = pglast.parse_sql("select 1")[0].stmt

    statement = Statement("f.sql", 3, "select 1", node)

    assert statement.node is node
    assert statement.kind == "SelectStmt"
    assert Statement("f.sql", 3, "select 1", None).node is None


def test_utf8_bom_is_ignored(tmp_path):
    path = write(tmp_path, "bom.sql", "\ufeffselect 1;".encode())

    (statement,) = parse_file(path).statements

    assert statement.sql == "select 1"


def test_invalid_utf8_names_line(tmp_path):
    path = write(tmp_path, "bad.sql", b"select 1;\nselect '\xff';\n")

    with pytest.raises(MigrationError) as caught:
        parse_file(path, root=tmp_path)

    assert caught.value.file == "bad.sql"
    assert caught.value.line == 2
    assert "invalid UTF-8" in str(caught.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(MigrationError, match="cannot read the migration file"):
        parse_file(tmp_path / "missing.sql")


def test_empty_file_has_no_statements(tmp_path):
    assert parse_text(tmp_path, "-- nothing here\n") == []


# ---------------------------------------------------------------------------
# parse errors


def test_parse_error_after_begin_atomic(tmp_path):
    text = (
        "select 1;\n"
        "create function f(a int) returns int language sql\n"
        "begin atomic select a; end;\n"
        "\n"
        "create policy p on t usin (true);\n"
        "select 2;"
    )

    with pytest.raises(MigrationError) as caught:
        parse_text(tmp_path, text)

    assert caught.value.line == 5
    assert 'syntax error at or near "usin"' in str(caught.value)
    assert str(caught.value).startswith("m.sql:5: ")


def test_parse_error_inside_begin_atomic(tmp_path):
    text = (
        "select 1;\n"
        "create function f(a int) returns int language sql begin atomic\n"
        "  selec a;\n"
        "end;\n"
    )

    with pytest.raises(MigrationError) as caught:
        parse_text(tmp_path, text)

    assert caught.value.line == 2
    assert "(line 3)" in str(caught.value)


def test_parse_error_line_after_non_ascii(tmp_path):
    text = "select 'ü';\n-- ☃\nselect 'é' frm x;"

    with pytest.raises(MigrationError) as caught:
        parse_text(tmp_path, text)

    assert caught.value.line == 3
    assert 'at or near "x"' in str(caught.value)


def test_unterminated_string(tmp_path):
    with pytest.raises(MigrationError) as caught:
        parse_text(tmp_path, "select 1;\nselect 'abc;\n")

    assert caught.value.line == 2
    assert "unterminated quoted string" in str(caught.value)


# ---------------------------------------------------------------------------
# psql meta-commands and variables


def test_meta_commands_blanked_keep_lines(tmp_path):
    text = "\\echo starting\n\\connect app\nselect 1;\n  \\i other.sql\nselect 2;"

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(3, "SelectStmt"), (5, "SelectStmt")]


def test_set_defines_variable(tmp_path):
    text = "\\set schema_name app\nselect :'schema_name' as s, :schema_name.t;"

    (statement,) = parse_text(tmp_path, text)

    assert statement.sql == "select 'app' as s, app.t"
    assert statement.line == 2


def test_set_joins_quoted_words(tmp_path):
    text = "\\set greeting 'it''s' ' ok'\nselect :'greeting';"

    (statement,) = parse_text(tmp_path, text)

    assert statement.sql == "select 'it''s ok'"


def test_config_variables_and_quoting(tmp_path):
    text = "select :limit, :'tenant', :\"tenant\";"

    (statement,) = parse_text(tmp_path, text, limit="5", tenant="ac\"me's")

    assert statement.sql == "select 5, 'ac\"me''s', \"ac\"\"me's\""


def test_literal_with_backslash_uses_escape_string(tmp_path):
    (statement,) = parse_text(tmp_path, "select :'path';", path="C:\\dir")

    assert statement.sql == "select E'C:\\\\dir'"
    assert statement.node is not None


def test_set_in_file_overrides_config(tmp_path):
    text = "select :'v';\n\\set v later\nselect :'v';"

    statements = parse_text(tmp_path, text, v="first")

    assert [statement.sql for statement in statements] == [
        "select 'first'",
        "select 'later'",
    ]


def test_placeholders_untouched_in_literals_and_comments(tmp_path):
    text = (
        "select ':x', E'\\':x', \":x\", $$ :x $$, $t$ :'x' $t$ -- :x\n"
        "  /* :x /* :x */ :x */, 1::int, f(a := 1), '12:30'::time, arr[1:2];"
    )

    (statement,) = parse_text(tmp_path, text)

    assert ":x" in statement.sql
    assert statement.sql == text.rstrip(";")


def test_undefined_variable(tmp_path):
    with pytest.raises(MigrationError) as caught:
        parse_text(tmp_path, "select 1;\n\nselect :missing;")

    assert caught.value.line == 3
    assert "undefined psql variable :missing" in str(caught.value)
    assert "migrations.variables" in str(caught.value)


def test_array_slice_with_name_is_not_a_variable(tmp_path):
    (statement,) = parse_text(tmp_path, "select a[lo:hi] from t;")

    assert statement.sql == "select a[lo:hi] from t"


def test_set_with_shell_command_rejected(tmp_path):
    with pytest.raises(MigrationError, match="runs a shell command"):
        parse_text(tmp_path, "\\set now `date`\nselect 1;")


def test_multiline_value_keeps_later_lines(tmp_path):
    text = "select :v;\nselect 2;\n\nselect 3;"

    statements = parse_text(tmp_path, text, v="1\n+\n1")

    assert [statement.line for statement in statements] == [1, 2, 4]
    assert statements[0].sql == "select 1\n+\n1"


def test_gset_ends_statement(tmp_path):
    statements = parse_text(tmp_path, "select 1 as one \\gset\nselect 2;")

    assert lines_and_kinds(statements) == [(1, "SelectStmt"), (2, "SelectStmt")]


# ---------------------------------------------------------------------------
# COPY FROM stdin


def test_copy_from_stdin_keeps_data(tmp_path):
    text = (
        "create table t (id int, name text);\n"
        "\\set x 1\n"
        "copy t (id, name) from stdin;\n"
        "1\tsemi;colon\n"
        "2\t:x 'quote\n"
        "\\.\n"
        "select 3;\n"
    )

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [
        (1, "CreateStmt"),
        (3, "CopyStmt"),
        (7, "SelectStmt"),
    ]
    assert statements[1].copy_data == "1\tsemi;colon\n2\t:x 'quote\n"
    assert statements[1].sql == "copy t (id, name) from stdin"


def test_copy_csv_options_with_semicolon(tmp_path):
    text = "copy t from stdin with (format csv, delimiter ';');\na;b\n\\.\n"

    (statement,) = parse_text(tmp_path, text)

    assert statement.copy_data == "a;b\n"


def test_copy_to_stdout_keeps_next_statement(tmp_path):
    text = "copy (select 'from stdin') to stdout;\nselect 1;\n"

    statements = parse_text(tmp_path, text)

    assert lines_and_kinds(statements) == [(1, "CopyStmt"), (2, "SelectStmt")]
    assert statements[0].copy_data is None


# ---------------------------------------------------------------------------
# hypothesis: splitting and substitution

SNIPPETS = [
    "select 1",
    "create table t (\n  id int,\n  note text default 'a;b'\n)",
    "create policy p on t for select\n  using (owner = (select auth.uid()))",
    "create function f(a int) returns int language sql\nbegin atomic\n  select a;\nend",
    "create function g() returns text language plpgsql as $$\nbegin\n"
    "  return 'x;y';\nend\n$$",
    "select 'é ✓ ü' as text",
    "comment on table t is 'line one\nline two'",
    "select $q$ nested $r$ ; $r$ $q$",
    "select 1::int",
]
SEPARATORS = ["\n", "\n\n", " ", "\n-- comment ; with semicolon\n", "\n/* ; */ ", "\t"]


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=8),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=8, max_size=8),
    trailing_semicolon=st.booleans(),
)
def test_split_keeps_text_and_lines(tmp_path, picks, separators, trailing_semicolon):
    text = ""
    expected = []
    for index, snippet in enumerate(picks):
        text += separators[index]
        expected.append((text.count("\n") + 1, snippet))
        text += snippet
        if index < len(picks) - 1 or trailing_semicolon:
            text += ";"

    statements = parse_text(tmp_path, text)

    assert [(statement.line, statement.sql) for statement in statements] == expected


literal_text = st.lists(
    st.sampled_from(list("ab :'\"$\\;-*/\n") + ["é", ":v", "::", ":'v'", "$$"]),
    max_size=20,
).map("".join)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=literal_text)
def test_substitution_never_touches_string_literals(tmp_path, content):
    literal = "'" + content.replace("'", "''") + "'"
    text = f"select {literal} as a, :v as b, {literal} as c;"

    (statement,) = parse_text(tmp_path, text, v="42")

    assert statement.sql == f"select {literal} as a, 42 as b, {literal} as c"
    assert statement.copy_data is None


dollar_text = st.lists(
    st.sampled_from(list("ab :'\";\\\n") + [":v", "--", "/*"]), max_size=20
).map("".join)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=dollar_text)
def test_substitution_never_touches_dollar_quotes(tmp_path, content):
    text = f"select $body${content}$body$, :v;\nselect 2;"

    statements = parse_text(tmp_path, text, v="7")

    assert statements[0].sql == f"select $body${content}$body$, 7"
    assert statements[1].line == 2 + content.count("\n")


# ---------------------------------------------------------------------------
# parse_all and its cache


def test_parse_all_in_order(tmp_path):
    first = write(tmp_path, "1.sql", "select 1;")
    second = write(tmp_path, "2.sql", "select 2;\nselect 3;")

    parsed = parse_all([first, second], root=tmp_path)

    assert [migration.path for migration in parsed] == ["1.sql", "2.sql"]
    assert [len(migration.statements) for migration in parsed] == [1, 2]


def test_cache_hit_reuses_stored_statements(tmp_path):
    path = write(tmp_path, "1.sql", "create table t (id int);\nselect 1;")
    cache = tmp_path / "cache"
    fresh = parse_all([path], root=tmp_path, cache_dir=cache)
    (entry,) = cache.glob("*.json")

    # Rewrite the cached text: a hit must return it instead of reparsing.
    data = json.loads(entry.read_text())
    data["statements"][1][1] = "select 42"
    entry.write_text(json.dumps(data))
    cached = parse_all([path], root=tmp_path, cache_dir=cache)

    assert fresh[0].statements[0] == cached[0].statements[0]
    assert cached[0].statements[1].sql == "select 42"
    assert cached[0].statements[1].node.targetList[0].val.val.ival == 42


def test_cache_invalidated_by_content_and_variables(tmp_path):
    path = write(tmp_path, "1.sql", "select :v;")
    cache = tmp_path / "cache"

    one = parse_all([path], variables={"v": "1"}, root=tmp_path, cache_dir=cache)
    two = parse_all([path], variables={"v": "2"}, root=tmp_path, cache_dir=cache)
    path.write_text("select :v + 1;")
    three = parse_all([path], variables={"v": "2"}, root=tmp_path, cache_dir=cache)

    assert one[0].statements[0].sql == "select 1"
    assert two[0].statements[0].sql == "select 2"
    assert three[0].statements[0].sql == "select 2 + 1"
    assert len(list(cache.glob("*.json"))) == 3


def test_corrupt_cache_entry_is_reparsed(tmp_path):
    path = write(tmp_path, "1.sql", "select 1;")
    cache = tmp_path / "cache"
    parse_all([path], root=tmp_path, cache_dir=cache)
    (entry,) = cache.glob("*.json")
    entry.write_text("{not json")

    parsed = parse_all([path], root=tmp_path, cache_dir=cache)

    assert parsed[0].statements[0].sql == "select 1"
    assert json.loads(entry.read_text())["statements"][0][1] == "select 1"


def test_failed_parse_not_cached(tmp_path):
    path = write(tmp_path, "1.sql", "selec 1;")
    cache = tmp_path / "cache"

    with pytest.raises(MigrationError):
        parse_all([path], root=tmp_path, cache_dir=cache)

    assert not cache.exists() or not list(cache.glob("*.json"))


# ---------------------------------------------------------------------------
# apply, against a throwaway PostgreSQL


@pytest.fixture
def conn(shared_postgres_url, request):
    """Yield an autocommit connection to a new, empty database."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg.conninfo import make_conninfo

    name = (
        "assay_migrations_"
        + hashlib.sha256(request.node.name.encode()).hexdigest()[:10]
    )
    with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
        admin.execute(f"drop database if exists {name} with (force)")
        admin.execute(f"create database {name}")
    connection = psycopg.connect(
        make_conninfo(shared_postgres_url, dbname=name), autocommit=True
    )
    try:
        yield connection
    finally:
        connection.close()
        with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
            admin.execute(f"drop database if exists {name} with (force)")


def migration(tmp_path: Path, name: str, text: str) -> MigrationFile:
    return parse_file(write(tmp_path, name, text), root=tmp_path)


def test_apply_runs_files_in_order(tmp_path, conn):
    files = [
        migration(tmp_path, "1.sql", "create table t (id int primary key, note text);"),
        migration(
            tmp_path,
            "2.sql",
            "insert into t values (1, '100% done');\n"
            "create function f(a int, b int) returns int language sql immutable\n"
            "begin atomic select a + b; end;",
        ),
    ]

    apply(conn, files)

    assert conn.execute("select note from t").fetchone() == ("100% done",)
    assert conn.execute("select f(2, 3)").fetchone() == (5,)


def test_apply_copy_from_stdin(tmp_path, conn):
    text = (
        "create table t (id int, name text);\n"
        "copy t (id, name) from stdin;\n"
        "1\tfirst\n"
        "2\t\\N\n"
        "\\.\n"
    )

    apply(conn, [migration(tmp_path, "1.sql", text)])

    assert conn.execute("select id, name from t order by id").fetchall() == [
        (1, "first"),
        (2, None),
    ]


def test_apply_concurrent_index_outside_transaction(tmp_path, conn):
    text = (
        "create table t (a int);\n"
        "create index concurrently t_a on t (a);\n"
        "insert into t values (1);"
    )

    apply(conn, [migration(tmp_path, "1.sql", text)])

    assert conn.execute(
        "select count(*) from pg_indexes where indexname = 't_a'"
    ).fetchone() == (1,)


def test_apply_file_with_own_transaction(tmp_path, conn):
    text = "begin;\ncreate table t (a int);\ncommit;\ncreate table u (a int);"

    apply(conn, [migration(tmp_path, "1.sql", text)])

    count = conn.execute(
        "select count(*) from pg_tables where tablename in ('t', 'u')"
    ).fetchone()
    assert count == (2,)


@pytest.fixture(scope="module")
def bare_cluster_conn():
    """A connection to a cluster of its own, where no Supabase role exists.

    Roles are cluster-wide, and other tests create anon on the shared server.
    """
    import psycopg

    from assay.postgres import DatabaseSettings, provision

    with provision(DatabaseSettings(provider="local")) as server:
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as connection:
            yield connection


def test_apply_failure_names_file_line_and_fix(tmp_path, bare_cluster_conn):
    conn = bare_cluster_conn
    good = migration(tmp_path, "1.sql", "create table kept (a int);")
    bad = migration(
        tmp_path,
        "2.sql",
        "create table rolled_back (a int);\n\ncreate policy p on rolled_back to anon\n"
        "  using (true);",
    )

    with pytest.raises(MigrationError) as caught:
        apply(conn, [good, bad])

    message = str(caught.value)
    assert caught.value.file == "2.sql"
    assert caught.value.line == 3
    assert 'role "anon" does not exist' in message
    assert "SQLSTATE 42704" in message
    assert "database.flavor: supabase" in message
    tables = conn.execute(
        "select tablename from pg_tables where schemaname = 'public' order by 1"
    ).fetchall()
    assert tables == [("kept",)]


def test_apply_failure_points_at_error_line(tmp_path, conn):
    text = "select 1;\nselect *\n  from\n  nowhere;"

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert caught.value.line == 2
    assert "(line 4)" in str(caught.value)
    assert "SQLSTATE 42P01" in str(caught.value)


def test_apply_missing_supabase_function_fix(tmp_path, conn):
    text = "create table t (owner uuid);\nselect auth.uid();"

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert caught.value.line == 2
    assert "database.flavor: supabase" in str(caught.value)


def test_apply_missing_extension_fix(tmp_path, conn):
    text = 'create extension if not exists "no_such_extension";'

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert "Install the extension no_such_extension" in str(caught.value)


def test_apply_requires_autocommit(shared_postgres_url, tmp_path):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(shared_postgres_url) as connection:
        with pytest.raises(ValueError, match="autocommit"):
            apply(connection, [migration(tmp_path, "1.sql", "select 1;")])


def test_apply_error_has_single_periods(tmp_path, conn):
    # PostgreSQL ends its detail and hint with a period; the message must not
    # double it before the next part.
    text = 'create extension if not exists "no_such_extension";'

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert "PostgreSQL hint:" in str(caught.value)
    assert ".." not in str(caught.value)


def test_apply_extension_schema_names_extension(tmp_path, conn):
    text = "grant usage on schema cron to public;"

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert "belongs to the extension pg_cron" in str(caught.value)
    assert "database.flavor" not in str(caught.value)


def test_apply_missing_type_names_extension(tmp_path, conn):
    text = "create table t (id int, shape geography);"

    with pytest.raises(MigrationError) as caught:
        apply(conn, [migration(tmp_path, "1.sql", text)])

    assert "Type geography belongs to the extension postgis" in str(caught.value)
