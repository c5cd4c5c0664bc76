"""Tests for the static schema model replayed from migration statements."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.migrations import parse_all
from assay.schema import Location, SchemaModel, build_model


def build(tmp_path: Path, *texts: str, **options) -> SchemaModel:
    """Write each text as a numbered migration file and replay them in order."""
    paths = []
    for index, text in enumerate(texts, start=1):
        path = tmp_path / f"{index:04d}.sql"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return build_model(parse_all(paths, root=tmp_path), **options)


# ---------------------------------------------------------------------------
# tables


def test_create_table_columns(tmp_path):
    model = build(
        tmp_path,
        "create table public.docs (\n"
        "  id bigint generated always as identity,\n"
        "  organization_id uuid not null default gen_random_uuid(),\n"
        "  title varchar(200),\n"
        "  slug text generated always as (lower(title)) stored,\n"
        "  counter int4,\n"
        "  primary key (id)\n"
        ");",
    )

    docs = model.table("docs")
    assert docs is not None
    assert docs.name == "public.docs"
    assert docs.kind == "table"
    assert docs.created == Location("0001.sql", 1)
    assert list(docs.columns) == ["id", "organization_id", "title", "slug", "counter"]
    assert docs.columns["id"].identity
    assert docs.columns["id"].not_null
    assert docs.columns["organization_id"].not_null
    assert docs.columns["organization_id"].default == "gen_random_uuid()"
    assert docs.columns["title"].type == "character varying(200)"
    assert docs.columns["slug"].generated == "lower(title)"
    assert docs.columns["counter"].type == "integer"
    assert not docs.rls


def test_table_lookup_by_qualified_name(tmp_path):
    model = build(tmp_path, "create schema app;\ncreate table app.items (id int);")

    assert model.table("app.items") is not None
    assert model.table("items") is None
    assert "app" in model.schemas


def test_partitions_and_inheritance(tmp_path):
    model = build(
        tmp_path,
        "create table events (tenant_id uuid, at timestamptz)\n"
        "  partition by range (at);\n"
        "create table events_2024 partition of events\n"
        "  for values from ('2024-01-01') to ('2025-01-01');\n"
        "create table base (tenant_id uuid);\n"
        "create table child (extra int) inherits (base);\n"
        "create table copy (like base);",
    )

    assert model.table("events").kind == "partitioned"
    partition = model.table("events_2024")
    assert partition.kind == "partition"
    assert partition.parent == "public.events"
    assert list(partition.columns) == ["tenant_id", "at"]
    child = model.table("child")
    assert child.kind == "table"
    assert child.parent == "public.base"
    assert list(child.columns) == ["tenant_id", "extra"]
    assert list(model.table("copy").columns) == ["tenant_id"]


def test_alter_table_columns(tmp_path):
    model = build(
        tmp_path,
        "create table t (a int, b int, c int);",
        "alter table t add column d text not null default 'x',\n"
        "  drop column b, alter column c set not null;\n"
        "alter table t rename column a to a2;\n"
        "alter table t add column if not exists d int;\n"
        "alter table t alter column c type bigint;",
    )

    columns = model.table("t").columns
    assert list(columns) == ["c", "d", "a2"]
    assert columns["d"].type == "text"
    assert columns["d"].default == "'x'"
    assert columns["c"].not_null
    assert columns["c"].type == "bigint"


def test_add_column_reaches_partitions(tmp_path):
    model = build(
        tmp_path,
        "create table m (a int) partition by list (a);\n"
        "create table m1 partition of m for values in (1);\n"
        "alter table m add column tenant_id uuid;",
    )

    assert "tenant_id" in model.table("m1").columns


def test_generated_column_on_unknown_table(tmp_path):
    model = build(
        tmp_path,
        "alter table invoices add column is_paid boolean\n"
        "  generated always as (paid_at is not null) stored not null;",
    )

    invoices = model.table("invoices")
    assert invoices.external
    assert invoices.columns["is_paid"].generated == "paid_at IS NOT NULL"
    assert invoices.columns["is_paid"].not_null


def test_rename_table_moves_policies_and_grants(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int);\n"
        "create policy p on t using (true);\n"
        "grant select on t to anon;\n"
        "alter table t rename to renamed;",
    )

    assert model.table("t") is None
    renamed = model.table("renamed")
    assert renamed.policies["p"].table == "public.renamed"
    assert model.privileges("table", "renamed") == {"anon": {"SELECT"}}


def test_set_schema_moves_table(tmp_path):
    model = build(
        tmp_path, "create table t (id int);\nalter table t set schema private;"
    )

    assert model.table("private.t") is not None
    assert model.table("t") is None


def test_row_level_security_flags(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int);\n"
        "alter table t enable row level security;\n"
        "alter table t force row level security;",
        "alter table t disable row level security, no force row level security;\n"
        "alter table t owner to app_owner;",
    )

    table = model.table("t")
    assert not table.rls
    assert not table.force_rls
    assert table.rls_enabled_at == Location("0001.sql", 2)
    assert table.rls_disabled_at == Location("0002.sql", 1)
    assert table.owner == "app_owner"


def test_drop_table(tmp_path):
    model = build(
        tmp_path,
        "create table m (a int) partition by list (a);\n"
        "create table m1 partition of m for values in (1);\n"
        "create table keep (a int);\n"
        "grant select on m to anon;",
        "drop table if exists m, missing cascade;",
    )

    assert set(model.tables) == {"public.keep"}
    assert model.privileges("table", "m") == {}
    assert model.notes == []


# ---------------------------------------------------------------------------
# policies


def test_create_policy_fields(tmp_path):
    model = build(
        tmp_path,
        "create table docs (id int, owner uuid);\n"
        "create policy read_own on docs as restrictive for select\n"
        "  to authenticated, service_role using ((select auth.uid()) = owner);\n"
        'create policy "Anyone inserts" on docs for insert with check (true);',
    )

    policies = model.table("docs").policies
    read = policies["read_own"]
    assert read.table == "public.docs"
    assert read.command == "SELECT"
    assert not read.permissive
    assert read.roles == ("authenticated", "service_role")
    assert read.using == "(SELECT auth.uid()) = owner"
    assert read.check is None
    assert read.location == Location("0001.sql", 2)
    insert = policies["Anyone inserts"]
    assert insert.command == "INSERT"
    assert insert.permissive
    assert insert.roles == ("public",)
    assert insert.using is None
    assert insert.check == "TRUE"


def test_several_policies_all_modelled(tmp_path):
    statements = "\n".join(
        f"create policy p_{command} on t for {command} using (owner = auth.uid());"
        for command in ("select", "insert", "update", "delete", "all")
    )
    model = build(tmp_path, "create table t (owner uuid);\n" + statements)

    commands = [policy.command for policy in model.table("t").policies.values()]
    assert commands == ["SELECT", "INSERT", "UPDATE", "DELETE", "ALL"]


def test_alter_policy_applies_all_clauses(tmp_path):
    model = build(
        tmp_path,
        "create table t (owner uuid);\ncreate policy p on t for update using (true);",
        "alter policy p on t to authenticated\n"
        "  using (owner = auth.uid()) with check (owner = auth.uid());",
    )

    policy = model.table("t").policies["p"]
    assert policy.roles == ("authenticated",)
    assert policy.using == "owner = auth.uid()"
    assert policy.check == "owner = auth.uid()"
    assert policy.location == Location("0001.sql", 2)
    assert policy.altered_at == [Location("0002.sql", 1)]


def test_alter_policy_keeps_clauses_not_named(tmp_path):
    model = build(
        tmp_path,
        "create table t (owner uuid);\n"
        "create policy p on t using (owner = auth.uid()) with check (false);\n"
        "alter policy p on t to anon;",
    )

    policy = model.table("t").policies["p"]
    assert policy.roles == ("anon",)
    assert policy.using == "owner = auth.uid()"
    assert policy.check == "FALSE"


def test_policy_dropped_in_later_file(tmp_path):
    model = build(
        tmp_path,
        "create table t (owner uuid);\ncreate policy broad on t using (true);",
        "drop policy broad on t;\n"
        "drop policy if exists never_existed on t;\n"
        "create policy narrow on t using (owner = auth.uid());",
    )

    assert list(model.table("t").policies) == ["narrow"]
    assert model.notes == []


def test_rename_policy(tmp_path):
    model = build(
        tmp_path,
        "create table t (owner uuid);\n"
        "create policy old on t using (true);\n"
        "alter policy old on t rename to new;",
    )

    policy = model.table("t").policies["new"]
    assert policy.name == "new"
    assert policy.altered_at == [Location("0001.sql", 3)]


def test_alter_unknown_policy_is_noted(tmp_path):
    model = build(
        tmp_path, "create table t (a int);\nalter policy ghost on t using (true);"
    )

    assert len(model.notes) == 1
    assert model.notes[0].location == Location("0001.sql", 2)
    assert "ghost" in model.notes[0].message


def test_policy_on_table_outside_migrations(tmp_path):
    model = build(
        tmp_path,
        "create policy upload on storage.objects for insert to authenticated\n"
        "  with check (bucket_id = 'avatars');",
    )

    objects = model.table("storage.objects")
    assert objects.external
    assert objects.policies["upload"].check == "bucket_id = 'avatars'"


def test_policy_only_for_service_role_keeps_role(tmp_path):
    model = build(
        tmp_path,
        "create table t (a int);\n"
        "create policy backend on t to service_role using (true) with check (true);",
    )

    assert model.table("t").policies["backend"].roles == ("service_role",)


def test_do_block_policies_replayed_with_lines(tmp_path):
    model = build(
        tmp_path,
        "create table t (owner uuid);\n"
        "do $$\n"
        "begin\n"
        "  if not exists (select 1 from pg_policies where policyname = 'p') then\n"
        "    create policy p on t using (owner = auth.uid());\n"
        "  end if;\n"
        "  execute 'create policy dynamic on t using (true)';\n"
        "end\n"
        "$$;",
    )

    policy = model.table("t").policies["p"]
    assert policy.location == Location("0001.sql", 5)
    assert "dynamic" not in model.table("t").policies
    assert any("EXECUTE" in note.message for note in model.unmodelled)


# ---------------------------------------------------------------------------
# views and other relations


def test_view_security_invoker(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int, secret text);\n"
        "create view v_true with (security_invoker = true) as select id from t;\n"
        "create view v_on with (security_invoker = on) as select id from t;\n"
        "create view v_bare with (security_invoker) as select id from t;\n"
        "create view v_plain as select id, secret as hidden from t;",
    )

    assert model.table("v_true").security_invoker
    assert model.table("v_on").security_invoker
    assert model.table("v_bare").security_invoker
    plain = model.table("v_plain")
    assert plain.kind == "view"
    assert not plain.security_invoker
    assert plain.definition == "SELECT id, secret AS hidden FROM t"
    assert list(plain.columns) == ["id", "hidden"]


def test_alter_view_and_replace_view(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int);\n"
        "create view a as select id from t;\n"
        "alter view a set (security_invoker = on);\n"
        "create view b with (security_invoker = true) as select id from t;",
        "create or replace view b as select id from t;\n"
        "alter view a reset (security_invoker);",
    )

    assert not model.table("a").security_invoker
    replaced = model.table("b")
    assert not replaced.security_invoker
    assert replaced.created == Location("0002.sql", 1)


def test_materialized_and_foreign_tables(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int);\n"
        "create materialized view mv as select id from t;\n"
        "create foreign table remote (id int) server elsewhere;",
    )

    assert model.table("mv").kind == "materialized_view"
    assert model.table("mv").definition == "SELECT id FROM t"
    assert model.table("remote").kind == "foreign"
    assert list(model.table("remote").columns) == ["id"]


# ---------------------------------------------------------------------------
# functions


def test_function_definitions(tmp_path):
    model = build(
        tmp_path,
        "create or replace function public.is_member_of(org uuid, out ok boolean)\n"
        "  language sql stable security definer set search_path = ''\n"
        "  as $$ select exists (select 1 from members\n"
        "         where organization_id = org) $$;\n"
        "create function add(a int, b int) returns int language sql immutable\n"
        "  begin atomic select a + b; end;\n"
        "create function twice(x int) returns int language sql return x * 2;\n"
        "create function plp() returns trigger language plpgsql\n"
        "  set search_path = public, pg_temp as $$ begin return new; end $$;\n"
        "create procedure tidy() language sql as $$ select 1 $$;",
    )

    (member,) = model.function("is_member_of")
    assert member.name == "public.is_member_of"
    assert member.args == [("org", "uuid")]
    assert member.signature == "public.is_member_of(uuid)"
    assert member.returns == "record"
    assert member.language == "sql"
    assert member.security_definer
    assert member.search_path == ""
    assert "organization_id = org" in member.body
    assert member.location == Location("0001.sql", 1)
    (add,) = model.function("add")
    assert add.body == "BEGIN ATOMIC SELECT a + b; END"
    assert add.argument_types == ("integer", "integer")
    assert model.function("twice")[0].body == "RETURN x * 2"
    plp = model.function("plp")[0]
    assert plp.search_path == "public, pg_temp"
    assert not plp.security_definer
    assert plp.returns == "trigger"
    assert model.function("tidy")[0].kind == "procedure"


def test_overloads_and_replace(tmp_path):
    model = build(
        tmp_path,
        "create function f(a int) returns int language sql as 'select 1';\n"
        "create function f(a text) returns int language sql as 'select 2';\n"
        "create or replace function f(b integer) returns int\n"
        "  language sql as 'select 3';",
    )

    bodies = {f.signature: f.body for f in model.function("f")}
    assert bodies == {"public.f(integer)": "select 3", "public.f(text)": "select 2"}


def test_alter_and_drop_function(tmp_path):
    model = build(
        tmp_path,
        "create function f(a int) returns int language sql as 'select a';\n"
        "create function g() returns int language sql as 'select 1';\n"
        "create function h() returns int language sql as 'select 1';",
        "alter function f(int4) security definer set search_path to pg_catalog;\n"
        "alter function g reset search_path;\n"
        "alter function h() owner to admin;\n"
        "drop function if exists g(), missing(int);",
    )

    (f,) = model.function("f")
    assert f.security_definer
    assert f.search_path == "pg_catalog"
    assert f.altered_at == [Location("0002.sql", 1)]
    assert model.function("g") == []
    assert model.function("h")[0].owner == "admin"
    assert model.notes == []


def test_search_path_resolution(tmp_path):
    model = build(
        tmp_path,
        "create schema app;\n"
        "set search_path = app, public;\n"
        "create table items (id int);\n"
        "alter table items enable row level security;\n"
        "select pg_catalog.set_config('search_path', '', false);\n"
        "create table public.other (id int);",
        "create table later (id int);",
    )

    assert model.table("app.items").rls
    assert model.table("public.other") is not None
    # The empty search path persists into the next file, so unqualified names
    # fall back to the default schema.
    assert model.table("public.later") is not None


def test_set_local_search_path_ends_with_file(tmp_path):
    model = build(
        tmp_path,
        "set local search_path = app;\ncreate table a (id int);",
        "create table b (id int);",
    )

    assert model.table("app.a") is not None
    assert model.table("public.b") is not None


# ---------------------------------------------------------------------------
# grants, default privileges and roles


def test_grants_and_revokes(tmp_path):
    model = build(
        tmp_path,
        "create table t (a int, b int);\n"
        "grant select, insert (a) on table t to anon, authenticated;\n"
        "revoke insert on t from anon;\n"
        "grant usage on schema public to anon;\n"
        "revoke grant option for select on t from authenticated;",
    )

    assert model.privileges("table", "t") == {
        "anon": {"SELECT"},
        "authenticated": {"SELECT", "INSERT"},
    }
    column_grant = next(g for g in model.grants if g.privilege == "INSERT")
    assert column_grant.columns == ("a",)
    assert column_grant.location == Location("0001.sql", 2)
    assert model.privileges("schema", "public") == {"anon": {"USAGE"}}


def test_grant_all_tables_covers_existing_only(tmp_path):
    model = build(
        tmp_path,
        "create table a (id int);\n"
        "create view v as select id from a;\n"
        "grant all on all tables in schema public to anon;\n"
        "create table b (id int);",
    )

    assert model.privileges("table", "a")["anon"] >= {"SELECT", "TRUNCATE", "TRIGGER"}
    assert "anon" in model.privileges("table", "v")
    assert model.privileges("table", "b") == {}


def test_functions_executable_by_public_by_default(tmp_path):
    model = build(
        tmp_path,
        "create function f() returns int language sql as 'select 1';\n"
        "revoke execute on function f() from public;\n"
        "create function g() returns int language sql as 'select 1';",
    )

    assert model.privileges("function", "f", ["integer"]) == {}
    assert model.privileges("function", "f") == {}
    assert model.privileges("function", "g") == {"public": {"EXECUTE"}}


def test_supabase_defaults_outlive_public_revoke(tmp_path):
    model = build(
        tmp_path,
        "create function private_job(target uuid) returns void\n"
        "  language sql security definer set search_path = ''\n"
        "  as $$ delete from public.jobs where id = target $$;\n"
        "revoke execute on function private_job(uuid) from public;\n"
        "grant execute on function private_job(uuid) to service_role;",
        flavor="supabase",
    )

    holders = model.privileges("function", "private_job", ["uuid"])
    assert set(holders) == {"anon", "authenticated", "service_role"}
    implicit = [g for g in model.grants if g.implicit and g.role == "anon"]
    assert implicit[0].location == Location("0001.sql", 1)


def test_supabase_revoke_by_name_removes_api_roles(tmp_path):
    model = build(
        tmp_path,
        "create function private_job() returns void language sql as 'select 1';\n"
        "revoke execute on function private_job from public, anon, authenticated;",
        flavor="supabase",
    )

    assert set(model.privileges("function", "private_job")) == {"service_role"}


def test_alter_default_privileges(tmp_path):
    model = build(
        tmp_path,
        "alter default privileges revoke execute on functions from public;\n"
        "alter default privileges in schema public grant select on tables to reader;\n"
        "create function f() returns int language sql as 'select 1';\n"
        "create table t (id int);",
    )

    assert model.privileges("function", "f") == {}
    assert model.privileges("table", "t") == {"reader": {"SELECT"}}


def test_schema_default_revoke_keeps_global_grant(tmp_path):
    model = build(
        tmp_path,
        "alter default privileges in schema public\n"
        "  revoke execute on functions from public;\n"
        "alter default privileges in schema public\n"
        "  grant execute on functions to a;\n"
        "alter default privileges in schema public\n"
        "  revoke execute on functions from a;\n"
        "create function f() returns int language sql as 'select 1';",
    )

    assert model.privileges("function", "f") == {"public": {"EXECUTE"}}


def test_roles(tmp_path):
    model = build(
        tmp_path,
        "create role app_user login;\n"
        "create role bypasser with nologin bypassrls in role app_user;\n"
        "alter role app_user bypassrls;\n"
        "grant bypasser to app_user;\n"
        "create user reporter;\n"
        "drop role if exists nobody;",
    )

    app_user = model.roles["app_user"]
    assert app_user["login"]
    assert app_user["bypassrls"]
    assert app_user["member_of"] == ["bypasser"]
    assert app_user["location"] == Location("0001.sql", 1)
    assert model.roles["bypasser"]["member_of"] == ["app_user"]
    assert not model.roles["bypasser"]["login"]
    assert model.roles["reporter"]["login"]


def test_supabase_flavor_roles(tmp_path):
    model = build(tmp_path, "select 1;", flavor="supabase")

    assert model.roles["service_role"]["bypassrls"]
    assert not model.roles["anon"]["bypassrls"]
    assert not model.roles["anon"]["login"]


def test_unknown_flavor_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown database flavor 'mysql'"):
        build(tmp_path, "select 1;", flavor="mysql")


def test_unmodelled_statements_listed(tmp_path):
    model = build(
        tmp_path,
        "create table t (id int);\n"
        "insert into t values (1);\n"
        "create index i on t (id);",
    )

    assert [(note.location.line, note.message) for note in model.unmodelled] == [
        (2, "InsertStmt"),
        (3, "IndexStmt"),
    ]
