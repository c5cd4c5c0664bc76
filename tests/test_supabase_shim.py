"""Tests of the Supabase shim on a real local PostgreSQL cluster.

The expected function results follow Supabase's definitions in supabase/auth
(migration 20240624145325_recreate_auth_functions): settings that are unset or empty
count as missing, and malformed claims raise instead of matching nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from assay.errors import ProvisionError
from assay.postgres import DatabaseSettings, Server, provision
from assay.supabase import install_shim

USER_A = "6f1c1f0e-7d4c-4a8e-9c1a-0b0d3d9a1a11"
USER_B = "0c2b6a55-2f0e-4b7e-8d8e-5e6c7f1b2b22"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with provision(DatabaseSettings(provider="local")) as running:
        yield running


@pytest.fixture(scope="module")
def databases(server: Server) -> list[str]:
    """Two databases of one cluster, each with the shim installed."""
    names = [server.unique_name("assay_shim"), server.unique_name("assay_shim")]
    for name in names:
        server.create_database(name)
        with server.connect(name) as conn:
            install_shim(conn)
    return names


@pytest.fixture
def conn(server: Server, databases: list[str]) -> Iterator[psycopg.Connection]:
    with server.connect(databases[0]) as connection:
        yield connection


def call_with(conn: psycopg.Connection, query: str, **settings: str) -> object:
    """Return the value of ``query`` in a transaction with ``settings`` set locally."""
    with conn.transaction():
        for name, value in settings.items():
            setting = "request.jwt." + name.replace("_", ".")
            conn.execute("select set_config(%s, %s, true)", (setting, value))
        return conn.execute(query).fetchone()[0]


def claims(**values: object) -> str:
    return json.dumps(values)


# auth.uid() ---------------------------------------------------------------------------


def test_uid_reads_sub_from_claims(conn: psycopg.Connection) -> None:
    value = call_with(conn, "select auth.uid()", claims=claims(sub=USER_A))
    assert value == uuid.UUID(USER_A)


def test_uid_prefers_claim_sub_setting(conn: psycopg.Connection) -> None:
    value = call_with(
        conn, "select auth.uid()", claim_sub=USER_B, claims=claims(sub=USER_A)
    )
    assert value == uuid.UUID(USER_B)


def test_uid_ignores_empty_claim_sub(conn: psycopg.Connection) -> None:
    value = call_with(
        conn, "select auth.uid()", claim_sub="", claims=claims(sub=USER_A)
    )
    assert value == uuid.UUID(USER_A)


def test_uid_null_without_claims(server: Server, databases: list[str]) -> None:
    with server.connect(databases[0]) as fresh:
        assert fresh.execute("select auth.uid()").fetchone()[0] is None


def test_uid_null_after_local_claims_expire(conn: psycopg.Connection) -> None:
    call_with(conn, "select 1", claims=claims(sub=USER_A))
    # The transaction ended, so the setting now reads as an empty string.
    assert (
        conn.execute("select current_setting('request.jwt.claims', true)").fetchone()[0]
        == ""
    )
    assert conn.execute("select auth.uid()").fetchone()[0] is None


def test_uid_null_when_claims_lack_sub(conn: psycopg.Connection) -> None:
    value = call_with(conn, "select auth.uid()", claims=claims(role="anon"))
    assert value is None


def test_uid_rejects_malformed_claims(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        call_with(conn, "select auth.uid()", claims='{"sub": ')


def test_uid_rejects_non_uuid_sub(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        call_with(conn, "select auth.uid()", claims=claims(sub="not-a-uuid"))


def test_uid_rejects_empty_sub_in_claims(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        call_with(conn, "select auth.uid()", claims=claims(sub=""))


# auth.role(), auth.email(), auth.jwt() ------------------------------------------------


def test_role_reads_claims(conn: psycopg.Connection) -> None:
    value = call_with(conn, "select auth.role()", claims=claims(role="authenticated"))
    assert value == "authenticated"


def test_role_prefers_claim_role_setting(conn: psycopg.Connection) -> None:
    value = call_with(
        conn,
        "select auth.role()",
        claim_role="service_role",
        claims=claims(role="anon"),
    )
    assert value == "service_role"


def test_role_null_without_claims(conn: psycopg.Connection) -> None:
    assert conn.execute("select auth.role()").fetchone()[0] is None


def test_email_reads_claims(conn: psycopg.Connection) -> None:
    value = call_with(conn, "select auth.email()", claims=claims(email="a@example.com"))
    assert value == "a@example.com"


def test_email_prefers_claim_email_setting(conn: psycopg.Connection) -> None:
    value = call_with(
        conn,
        "select auth.email()",
        claim_email="b@example.com",
        claims=claims(email="a@example.com"),
    )
    assert value == "b@example.com"


def test_jwt_returns_claims(conn: psycopg.Connection) -> None:
    payload = {"sub": USER_A, "role": "authenticated", "app_metadata": {"tenant": "t1"}}
    value = call_with(conn, "select auth.jwt()", claims=claims(**payload))
    assert value == payload


def test_jwt_prefers_claim_setting(conn: psycopg.Connection) -> None:
    value = call_with(
        conn, "select auth.jwt()", claim=claims(sub=USER_B), claims=claims(sub=USER_A)
    )
    assert value == {"sub": USER_B}


def test_jwt_null_without_claims(conn: psycopg.Connection) -> None:
    assert conn.execute("select auth.jwt()").fetchone()[0] is None


def test_jwt_rejects_malformed_claims(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        call_with(conn, "select auth.jwt()", claims="not json")


def test_auth_functions_stable_sql_empty_search_path(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        """
        select p.proname, p.provolatile, l.lanname, p.proconfig
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        join pg_language l on l.oid = p.prolang
        where n.nspname = 'auth' and p.proname in ('uid', 'role', 'email', 'jwt')
        order by p.proname
        """
    ).fetchall()
    assert [row[0] for row in rows] == ["email", "jwt", "role", "uid"]
    for name, volatility, language, config in rows:
        assert volatility == "s", name
        assert language == "sql", name
        assert config == ['search_path=""'], name


# Roles, schemas, tables ---------------------------------------------------------------


def test_roles_attributes(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        """
        select rolname, rolcanlogin, rolinherit, rolbypassrls, rolsuper
        from pg_roles
        where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')
        """
    ).fetchall()
    roles = {row[0]: row[1:] for row in rows}
    assert roles["anon"] == (False, True, False, False)
    assert roles["authenticated"] == (False, True, False, False)
    assert roles["service_role"] == (False, True, True, False)
    assert roles["authenticator"] == (True, False, False, False)


def test_authenticator_member_of_api_roles(conn: psycopg.Connection) -> None:
    for role in ("anon", "authenticated", "service_role"):
        member = conn.execute(
            "select pg_has_role('authenticator', %s, 'member')", (role,)
        ).fetchone()[0]
        assert member is True, role


def test_schema_usage_for_api_roles(conn: psycopg.Connection) -> None:
    for role in ("anon", "authenticated", "service_role"):
        for schema in ("public", "auth", "extensions", "storage"):
            usage = conn.execute(
                "select has_schema_privilege(%s, %s, 'usage')", (role, schema)
            ).fetchone()[0]
            assert usage is True, (role, schema)


def test_extensions_in_extensions_schema(conn: psycopg.Connection) -> None:
    available = {
        row[0]
        for row in conn.execute(
            "select name from pg_available_extensions"
            " where name in ('uuid-ossp', 'pgcrypto')"
        )
    }
    installed = dict(
        conn.execute(
            "select e.extname, n.nspname from pg_extension e"
            " join pg_namespace n on n.oid = e.extnamespace"
        ).fetchall()
    )
    for name in available:
        assert installed.get(name) == "extensions", name


def test_auth_users_columns_and_rls(conn: psycopg.Connection) -> None:
    columns = {
        row[0]: row[1]
        for row in conn.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'auth' and table_name = 'users'"
        )
    }
    expected = {
        "id": "uuid",
        "email": "character varying",
        "phone": "text",
        "role": "character varying",
        "aud": "character varying",
        "raw_app_meta_data": "jsonb",
        "raw_user_meta_data": "jsonb",
        "is_anonymous": "boolean",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    }
    for name, data_type in expected.items():
        assert columns.get(name) == data_type, name
    rls = conn.execute(
        "select relrowsecurity from pg_class where oid = 'auth.users'::regclass"
    )
    assert rls.fetchone()[0] is True


def test_auth_users_email_unique(conn: psycopg.Connection) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'x@example.com')", (USER_A,)
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "insert into auth.users (id, email) values (%s, 'x@example.com')",
                (USER_B,),
            )


def test_auth_users_hidden_from_api_roles(conn: psycopg.Connection) -> None:
    for role in ("anon", "authenticated"):
        readable = conn.execute(
            "select has_table_privilege(%s, 'auth.users', 'select')", (role,)
        ).fetchone()[0]
        assert readable is False, role


def test_storage_tables(conn: psycopg.Connection) -> None:
    columns = {
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'storage' and table_name = 'objects'"
        )
    }
    assert {"owner", "bucket_id", "name"} <= columns
    for table in ("storage.buckets", "storage.objects"):
        rls = conn.execute(
            "select relrowsecurity from pg_class where oid = %s::regclass", (table,)
        )
        assert rls.fetchone()[0] is True, table


def test_storage_path_functions(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "select storage.foldername('team/42/avatar.png'),"
        " storage.filename('team/42/avatar.png'),"
        " storage.extension('team/42/avatar.png'),"
        " storage.foldername('top.txt')"
    ).fetchone()
    assert row == (["team", "42"], "avatar.png", "png", [])


def test_realtime_publication_exists(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "select 1 from pg_publication where pubname = 'supabase_realtime'"
    )
    assert row.fetchone() is not None


# Default privileges -------------------------------------------------------------------


def test_definer_function_stays_executable(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create function public.shim_definer_probe() returns int
        language sql security definer set search_path = '' as $$ select 7 $$
        """
    )
    conn.execute("revoke execute on function public.shim_definer_probe() from public")

    for role in ("anon", "authenticated", "service_role"):
        allowed = conn.execute(
            "select has_function_privilege("
            "%s, 'public.shim_definer_probe()', 'execute')",
            (role,),
        ).fetchone()[0]
        assert allowed is True, role

    with conn.transaction():
        conn.execute("set local role anon")
        assert conn.execute("select public.shim_definer_probe()").fetchone()[0] == 7


def test_new_tables_and_sequences_granted(conn: psycopg.Connection) -> None:
    conn.execute("create table public.shim_grant_probe (id bigserial primary key)")
    for role in ("anon", "authenticated", "service_role"):
        for privilege in ("select", "insert", "update", "delete"):
            granted = conn.execute(
                "select has_table_privilege(%s, 'public.shim_grant_probe', %s)",
                (role, privilege),
            ).fetchone()[0]
            assert granted is True, (role, privilege)
        usage = conn.execute(
            "select has_sequence_privilege("
            "%s, 'public.shim_grant_probe_id_seq', 'usage')",
            (role,),
        ).fetchone()[0]
        assert usage is True, role


def test_rls_policy_with_auth_uid(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create table public.shim_notes (owner uuid not null, body text);
        alter table public.shim_notes enable row level security;
        create policy own_notes on public.shim_notes
          for all to authenticated
          using ((select auth.uid()) = owner)
          with check ((select auth.uid()) = owner);
        """
    )
    conn.execute(
        "insert into public.shim_notes values (%s, 'a'), (%s, 'b')", (USER_A, USER_B)
    )

    def visible(role: str, **settings: str) -> list[str]:
        with conn.transaction():
            conn.execute(f"set local role {role}")
            for name, value in settings.items():
                conn.execute(
                    "select set_config(%s, %s, true)", (f"request.jwt.{name}", value)
                )
            return [
                row[0] for row in conn.execute("select body from public.shim_notes")
            ]

    assert visible(
        "authenticated", claims=claims(sub=USER_A, role="authenticated")
    ) == ["a"]
    assert visible("authenticated") == []
    assert visible("anon") == []
    assert sorted(visible("service_role")) == ["a", "b"]

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)",
                (claims(sub=USER_A),),
            )
            conn.execute(
                "insert into public.shim_notes values (%s, 'forged')", (USER_B,)
            )


def test_search_path_includes_extensions(server: Server, databases: list[str]) -> None:
    with server.connect(databases[1]) as fresh:
        assert (
            fresh.execute("show search_path").fetchone()[0]
            == '"$user", public, extensions'
        )
        available = fresh.execute(
            "select 1 from pg_extension where extname = 'uuid-ossp'"
        ).fetchone()
        if available:
            assert isinstance(
                fresh.execute("select uuid_generate_v4()").fetchone()[0], uuid.UUID
            )


# Installing ---------------------------------------------------------------------------


def test_install_twice_in_one_database(server: Server, databases: list[str]) -> None:
    with server.connect(databases[0]) as again:
        install_shim(again)
        count = again.execute(
            "select count(*) from pg_roles where rolname in"
            " ('anon', 'authenticated', 'service_role', 'authenticator')"
        ).fetchone()[0]
    assert count == 4


def test_install_in_two_databases(server: Server, databases: list[str]) -> None:
    for name in databases:
        with server.connect(name) as each:
            assert each.execute("select to_regprocedure('auth.uid()')").fetchone()[0]
            assert each.execute("select to_regclass('auth.users')").fetchone()[0]


def test_install_requires_superuser(server: Server) -> None:
    name = server.unique_name("assay_shim_plain")
    server.create_database(name)
    try:
        with server.connect() as admin:
            admin.execute("create role assay_plain_user login")
        with server.connect(name, user="assay_plain_user") as plain:
            with pytest.raises(
                ProvisionError, match="'assay_plain_user': it is not a superuser"
            ):
                install_shim(plain)
    finally:
        server.drop_database(name)
        with server.connect() as admin:
            admin.execute("drop role assay_plain_user")


def test_install_rolls_back_on_conflict(server: Server) -> None:
    name = server.unique_name("assay_shim_conflict")
    server.create_database(name)
    try:
        with server.connect(name) as target:
            # An auth.users without an email column makes the shim's index fail.
            target.execute(
                "create schema auth; create table auth.users (id uuid primary key)"
            )
            with pytest.raises(
                ProvisionError, match="could not install the Supabase shim"
            ):
                install_shim(target)
            leftover = target.execute("select to_regnamespace('storage')").fetchone()[0]
            assert leftover is None
    finally:
        server.drop_database(name)
