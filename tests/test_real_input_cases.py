"""Shapes met in public projects' migrations, each as a small schema of our own.

Every case here is a defect Assay showed on a real project, reduced to the
smallest schema with the same shape. Seeding must get past triggers and
constraints, the rules must see policies inside DO blocks, and the probes must
tell a refusal from an undecided error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from assay.config import Config, load_config
from assay.migrations import apply, discover, parse_all
from assay.postgres import DatabaseSettings, Server, TemplateDatabase, provision
from assay.seeding import Seed, seed_database


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with provision(DatabaseSettings(provider="local")) as running:
        yield running


def write_project(folder: Path, migration: str, tenancy: str, flavor: str) -> Config:
    """Write one migration and an assay.yaml around it, and load the config."""
    migrations = folder / "migrations"
    migrations.mkdir()
    (migrations / "0001_schema.sql").write_text(migration)
    (folder / "assay.yaml").write_text(
        f"database: {{flavor: {flavor}}}\n"
        "migrations: {path: migrations}\n"
        "tenancy:\n" + tenancy
    )
    return load_config(folder / "assay.yaml")


def migrated_dsn(server: Server, config: Config, request) -> str:
    """A clone of a template migrated with the project's files."""
    files = parse_all(discover(config.path(config.migrations.path)), root=config.root)
    template = TemplateDatabase(
        server, lambda conn: apply(conn, files), flavor=config.database.flavor
    )
    request.addfinalizer(template.drop_all)
    return server.dsn(template.clone("case"))


def seed(server: Server, tmp_path: Path, request, migration: str, tenancy: str,
         flavor: str = "supabase") -> tuple[Seed, str]:
    config = write_project(tmp_path, migration, tenancy, flavor)
    dsn = migrated_dsn(server, config, request)
    return seed_database(dsn, config), dsn


def fetch(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


# Seeding ------------------------------------------------------------------------

ACCOUNTS = """
create table public.accounts (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null default auth.uid() references auth.users (id),
    name text
);
create table public.account_members (
    account_id uuid not null references public.accounts (id),
    user_id uuid not null references auth.users (id),
    primary key (account_id, user_id)
);
create function public.add_owner() returns trigger language plpgsql
security definer set search_path = '' as $$
begin
    if new.owner_id = auth.uid() then
        insert into public.account_members (account_id, user_id)
        values (new.id, auth.uid());
    end if;
    return new;
end $$;
create trigger add_owner after insert on public.accounts
    for each row execute function public.add_owner();
create table public.invites (
    id uuid primary key default gen_random_uuid(),
    account_id uuid not null references public.accounts (id),
    invited_by uuid not null references auth.users (id),
    email text
);
create function public.stamp_inviter() returns trigger language plpgsql as $$
begin
    new.invited_by = auth.uid();
    return new;
end $$;
create trigger stamp_inviter before insert on public.invites
    for each row execute function public.stamp_inviter();
"""

ACCOUNTS_TENANCY = """\
  column: account_id
  tenant_table: public.accounts
  membership: {table: public.account_members, tenant_column: account_id, user_column: user_id}
"""


def test_tenant_row_names_its_owner(server, tmp_path, request):
    result, dsn = seed(server, tmp_path, request, ACCOUNTS, ACCOUNTS_TENANCY)

    assert result.errors == {}
    owners = dict(fetch(dsn, "select id::text, owner_id::text from public.accounts"))
    for tenant in result.tenants:
        assert owners[str(tenant.id)] == tenant.members[0].id


def test_member_made_by_trigger_is_kept(server, tmp_path, request):
    result, dsn = seed(server, tmp_path, request, ACCOUNTS, ACCOUNTS_TENANCY)

    members = fetch(dsn, "select account_id::text, user_id::text from public.account_members")
    assert len(members) == 4
    assert len(result.rows["public.account_members"]["A"]) == 2
    assert len(result.rows["public.account_members"]["B"]) == 2


def test_trigger_stamps_tenant_member(server, tmp_path, request):
    result, dsn = seed(server, tmp_path, request, ACCOUNTS, ACCOUNTS_TENANCY)

    rows = result.rows["public.invites"]
    assert [r["invited_by"] for r in rows["A"]] == [result.tenant("A").members[0].id] * 2
    assert [r["invited_by"] for r in rows["B"]] == [result.tenant("B").members[0].id] * 2


CHECKED = """
create table public.teams (id uuid primary key default gen_random_uuid());
create table public.people (
    id uuid primary key default gen_random_uuid(),
    username text not null unique
        check (length(username) <= 24 and username ~ '^[a-zA-Z]([_]?[a-zA-Z0-9])+$'),
    avatar_url text check (avatar_url ~ '^https?://[^/]+')
);
create table public.team_members (
    team_id uuid not null references public.teams (id),
    person_id uuid not null references public.people (id),
    primary key (team_id, person_id)
);
create table public.team_invites (
    id uuid primary key default gen_random_uuid(),
    team_id uuid not null references public.teams (id),
    person_id uuid references public.people (id),
    email text,
    code text,
    check ((person_id is null) <> (email is null)),
    check ((code is null) = (email is null))
);
create table public.team_notes (
    id bigint generated always as identity primary key,
    team_id uuid not null references public.teams (id),
    author uuid not null default nullif(current_setting('app.person', true), '')::uuid,
    body text not null
);
"""

CHECKED_TENANCY = """\
  column: team_id
  tenant_table: public.teams
  membership: {table: public.team_members, tenant_column: team_id, user_column: person_id}
  act_as: "set local app.person = {user_id}"
  role: app_user
  anon_role: app_user
"""


def test_check_constraints_are_satisfied(server, tmp_path, request):
    result, _ = seed(
        server, tmp_path, request, CHECKED, CHECKED_TENANCY, flavor="postgres"
    )

    assert result.errors == {}
    for table in ("public.people", "public.team_invites"):
        assert result.rows[table]["A"], table
        assert result.rows[table]["B"], table


def test_null_default_gets_a_value(server, tmp_path, request):
    result, _ = seed(
        server, tmp_path, request, CHECKED, CHECKED_TENANCY, flavor="postgres"
    )

    notes = result.rows["public.team_notes"]["A"]
    assert len(notes) == 2
    assert all(note["author"] is not None for note in notes)


WORKSPACES = """
create table public.workspaces (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references auth.users (id),
    name text not null
);
create table public.chats (
    id uuid primary key default gen_random_uuid(),
    workspace_id uuid not null references public.workspaces (id),
    user_id uuid not null references auth.users (id),
    title text
);
"""

WORKSPACES_TENANCY = """\
  column: workspace_id
  tenant_table: public.workspaces
  membership: {table: public.workspaces, tenant_column: id, user_column: user_id}
"""


def test_tenant_table_is_its_own_membership(server, tmp_path, request):
    result, dsn = seed(server, tmp_path, request, WORKSPACES, WORKSPACES_TENANCY)

    assert result.errors == {}
    assert fetch(dsn, "select count(*) from public.workspaces") == [(2,)]
    for tenant in result.tenants:
        assert len(tenant.members) == 1
        owner = fetch(
            dsn, f"select user_id::text from public.workspaces where id = '{tenant.id}'"
        )
        assert owner == [(tenant.members[0].id,)]


# Tenancy rules ------------------------------------------------------------------

GUARDED_POLICIES = """
create table public.tenants (id uuid primary key default gen_random_uuid());
alter table public.tenants enable row level security;
create policy tenants_own on public.tenants
    using (id = current_setting('app.tenant')::uuid);
create table public.notes (
    id uuid primary key default gen_random_uuid(),
    tenant_id uuid not null references public.tenants (id)
);
alter table public.notes enable row level security;
do $$
begin
    if not exists (select 1 from pg_policies where policyname = 'notes_tenant') then
        create policy notes_tenant on public.notes
            using (tenant_id = current_setting('app.tenant')::uuid);
    end if;
end
$$;
"""

GUARDED_TENANCY = """\
  column: tenant_id
  tenant_table: public.tenants
  membership: null
  seed_sql: select 1
  act_as: "set local app.tenant = {tenant_id}"
"""


def test_policy_in_do_block_ships_in_file(tmp_path):
    from assay.schema import build_model
    from assay.tenancy import TenancyScope, check_same_file

    config = write_project(tmp_path, GUARDED_POLICIES, GUARDED_TENANCY, "postgres")
    files = parse_all(discover(config.path("migrations")), root=config.root)
    scope = TenancyScope.from_config(config.tenancy)

    findings, examined = check_same_file(files, build_model(files), scope)

    assert examined == 2
    assert findings == []


def test_insert_fix_uses_with_check(tmp_path):
    from assay.schema import build_model
    from assay.tenancy import TenancyScope, check_policies

    config = write_project(tmp_path, GUARDED_POLICIES, GUARDED_TENANCY, "postgres")
    text = GUARDED_POLICIES.replace("using (tenant_id", "for select using (tenant_id")
    (tmp_path / "migrations" / "0001_schema.sql").write_text(text)
    files = parse_all(discover(config.path("migrations")), root=config.root)
    scope = TenancyScope.from_config(config.tenancy)

    findings, _ = check_policies(build_model(files), scope, source="static")

    fixes = {
        f.message.split(" has no policy for ")[1].split(",")[0]: f.fix
        for f in findings
        if f.rule == "command-without-policy" and f.table == "public.notes"
    }
    assert "for insert to authenticated with check (" in fixes["INSERT"]
    assert "for update to authenticated using (" in fixes["UPDATE"]


GRANTED = """
create schema app;
grant usage on schema app to authenticated;
create table app.teams (id uuid primary key default gen_random_uuid());
create table app.items (
    id uuid primary key default gen_random_uuid(),
    team_id uuid not null references app.teams (id),
    name text
);
alter table app.items enable row level security;
grant select on app.items to authenticated;
grant update (name) on app.items to authenticated;
create policy items_read on app.items for select to authenticated
    using (team_id = (auth.jwt() ->> 'team')::uuid);
"""

GRANTED_TENANCY = """\
  column: team_id
  tenant_table: app.teams
  membership: null
  seed_sql: select 1
  schemas: [app]
"""


def test_ungranted_commands_need_no_policy(server, tmp_path, request):
    from assay.introspect import read_catalog
    from assay.tenancy import TenancyScope, check_policies

    config = write_project(tmp_path, GRANTED, GRANTED_TENANCY, "supabase")
    dsn = migrated_dsn(server, config, request)
    with psycopg.connect(dsn, autocommit=True) as conn:
        live, _ = read_catalog(conn, ["app"], ["anon", "authenticated"])
    scope = TenancyScope.from_config(config.tenancy)

    findings, _ = check_policies(live, scope, source="live")

    missing = {
        (f.table, f.message.split(" has no policy for ")[1].split(",")[0])
        for f in findings
        if f.rule == "command-without-policy"
    }
    # UPDATE is granted on one column, so it still needs a policy; INSERT and
    # DELETE are not granted at all, and SELECT has its policy.
    assert missing == {("app.items", "UPDATE")}


# Supabase flavor ----------------------------------------------------------------

PLATFORM = """
create extension if not exists pg_jsonschema with schema extensions;
create table public.teams (id uuid primary key default gen_random_uuid());
create table public.alerts (
    id uuid primary key default gen_random_uuid(),
    team_id uuid not null references public.teams (id)
);
create trigger alerts_webhook after insert on public.alerts for each row
    execute function supabase_functions.http_request(
        'http://127.0.0.1:9/hook', 'POST', '{}', '{}', '1000');
grant select on table storage.s3_multipart_uploads to postgres;
grant select on table storage.s3_multipart_uploads_parts to postgres;
"""

PLATFORM_TENANCY = """\
  column: team_id
  tenant_table: public.teams
  membership: null
  seed_sql: select 1
"""


def test_platform_objects_apply(server, tmp_path, request):
    from assay.session import RUN_INFO

    RUN_INFO.pop("skipped_statements", None)
    config = write_project(tmp_path, PLATFORM, PLATFORM_TENANCY, "supabase")

    dsn = migrated_dsn(server, config, request)

    assert fetch(dsn, "select count(*) from public.alerts") == [(0,)]
    skipped = RUN_INFO.pop("skipped_statements")
    assert len(skipped) == 1
    assert "0001_schema.sql:2: extension pg_jsonschema is not available" in skipped[0]


def test_platform_extension_needs_shim(server, tmp_path, request):
    from assay.errors import MigrationError

    config = write_project(tmp_path, PLATFORM, PLATFORM_TENANCY, "postgres")

    with pytest.raises(MigrationError) as caught:
        migrated_dsn(server, config, request)

    assert "Install the extension pg_jsonschema" in str(caught.value)
