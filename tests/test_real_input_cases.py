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
    # UPDATE is granted on one column, so it still needs a policy. INSERT and
    # DELETE are not granted at all, and SELECT has its policy.
    assert missing == {("app.items", "UPDATE")}


# Probes -------------------------------------------------------------------------


def attack_all(server, tmp_path, request, migration, tenancy, flavor="supabase"):
    """Seed the schema, attack every table and return the probe results."""
    from assay.attack import Attack

    result, dsn = seed(server, tmp_path, request, migration, tenancy, flavor)
    config = load_config(tmp_path / "assay.yaml")
    attacker = Attack(dsn, result, config.tenancy)
    request.addfinalizer(attacker.close)
    probes = []
    for table in sorted(result.tables):
        probes.extend(attacker.attack_table(table))
    return attacker, probes


def outcomes(probes, outcome: str) -> list[str]:
    return [f"{p.table} {p.operation} {p.actor}: {p.detail}" for p in probes if p.outcome == outcome]


ORGS = """
create table public.orgs (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    settings jsonb not null default '{}'
);
create table public.org_members (
    org_id uuid not null references public.orgs (id),
    user_id uuid not null references auth.users (id),
    primary key (org_id, user_id)
);
create function public.is_member(org uuid) returns boolean language sql stable
security definer set search_path = '' as $$
    select exists (select 1 from public.org_members m
                   where m.org_id = org and m.user_id = auth.uid())
$$;
create table public.profiles (
    id uuid primary key references auth.users (id),
    bio text
);
create function public.personal_org() returns trigger language plpgsql
security definer set search_path = '' as $$
begin
    insert into public.orgs (id, name) values (new.id, 'personal');
    insert into public.org_members (org_id, user_id) values (new.id, new.id);
    insert into public.profiles (id) values (new.id);
    return new;
end $$;
create trigger personal_org after insert on auth.users
    for each row execute function public.personal_org();
create table public.docs (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references public.orgs (id),
    body jsonb not null,
    locked boolean not null default false
);
create function public.keep_locked() returns trigger language plpgsql as $$
begin
    if old.locked is distinct from new.locked then
        raise exception 'locked cannot change' using errcode = 'LOCKD';
    end if;
    return new;
end $$;
create trigger keep_locked before update on public.docs
    for each row execute function public.keep_locked();
alter table public.orgs enable row level security;
alter table public.org_members enable row level security;
alter table public.profiles enable row level security;
create policy profiles_own on public.profiles for select to authenticated
    using (id = (select auth.uid()));
create policy profiles_edit on public.profiles for update to authenticated
    using (id = (select auth.uid()));
alter table public.docs enable row level security;
create policy orgs_member on public.orgs for all to authenticated
    using ((select public.is_member(id)));
create policy members_own on public.org_members for select to authenticated
    using (user_id = (select auth.uid()));
create policy docs_member on public.docs for all to authenticated
    using ((select public.is_member(org_id)));
create type public.doc_state as enum ('open', 'closed');
create function public.my_docs(state public.doc_state) returns setof public.docs
language sql stable security definer set search_path = '' as $$
    select d.* from public.docs d join public.org_members m on m.org_id = d.org_id
    where m.user_id = auth.uid()
$$;
create function public.new_org(name text) returns public.orgs
language sql security definer set search_path = '' as $$
    insert into public.orgs (name) values (name) returning *
$$;
create function public.org_docs(org uuid) returns setof public.docs
language sql stable security definer set search_path = '' as $$
    select * from public.docs where org_id = org
$$;
"""

ORGS_TENANCY = """\
  column: org_id
  tenant_table: public.orgs
  membership: {table: public.org_members, tenant_column: org_id, user_column: user_id}
"""


def test_probes_on_supabase_shapes(server, tmp_path, request):
    attacker, probes = attack_all(server, tmp_path, request, ORGS, ORGS_TENANCY)

    # A jsonb column, a trigger that raises, the tenant table itself, and the
    # outsider's own personal org and profile are judged without an error or
    # a leak.
    assert outcomes(probes, "error") == []
    assert outcomes(probes, "leak") == []
    assert [p for p in probes if p.table == "public.orgs" and p.operation == "INSERT"] == []


def test_definer_calls_judge_each_shape(server, tmp_path, request):
    from assay.introspect import read_catalog

    attacker, _ = attack_all(server, tmp_path, request, ORGS, ORGS_TENANCY)
    live, _ = read_catalog(attacker.conn, ["public"], ["anon", "authenticated"])
    calls = {
        name: [r.outcome for r in attacker.call_definer(live.functions[name][0])]
        for name in ("public.my_docs", "public.new_org", "public.org_docs")
    }

    # An enum argument is filled with NULL, a function that echoes the name
    # it was given discloses nothing, and a lookup by B's id still leaks.
    assert set(calls["public.my_docs"]) == {"denied"}
    assert set(calls["public.new_org"]) == {"denied"}
    assert "leak" in calls["public.org_docs"]


TEMPLATE = """
create table public.shops (id uuid primary key default gen_random_uuid(), name text);
create table public.orders (
    id uuid primary key default gen_random_uuid(),
    shop_id uuid not null references public.shops (id),
    item text
);
create role shop_app;
grant select, insert, update, delete on public.shops, public.orders to shop_app;
alter table public.shops enable row level security;
alter table public.orders enable row level security;
create policy shops_own on public.shops
    using (id = current_setting('app.shop')::uuid);
create policy orders_own on public.orders
    using (shop_id = current_setting('app.shop')::uuid);
create table public.shop_members (
    shop_id uuid not null references public.shops (id),
    user_id uuid not null,
    primary key (shop_id, user_id)
);
"""

TEMPLATE_TENANCY = """\
  column: shop_id
  tenant_table: public.shops
  membership: {table: public.shop_members, tenant_column: shop_id, user_column: user_id}
  act_as: "set local app.shop = {tenant_id}"
  role: shop_app
  anon_role: shop_app
  schemas: [public]
  exempt: [{table: public.shop_members, reason: "membership, read by the server"}]
"""


def test_empty_tenant_setting_is_a_denial(server, tmp_path, request):
    # Roles are cluster-wide, so each test names its own.
    migration = TEMPLATE.replace("shop_app", "shop_app_1")
    tenancy = TEMPLATE_TENANCY.replace("shop_app", "shop_app_1")

    _, probes = attack_all(server, tmp_path, request, migration, tenancy, "postgres")

    # Callers without a shop set an empty app.shop, which the policies cannot
    # cast to uuid: the statement fails, which is a denial, not an error.
    assert outcomes(probes, "error") == []
    assert outcomes(probes, "leak") == []


def test_failing_act_as_is_an_error(server, tmp_path, request):
    migration = TEMPLATE.replace("shop_app", "shop_app_2")
    tenancy = TEMPLATE_TENANCY.replace("shop_app", "shop_app_2").replace(
        "set local app.shop = {tenant_id}",
        "select set_config('app.shop', (select {tenant_id}::text from public.missing), true)",
    )

    _, probes = attack_all(server, tmp_path, request, migration, tenancy, "postgres")

    member = [p for p in probes if p.actor == "member_of_A"]
    assert member
    assert {p.outcome for p in member} == {"error"}
    assert all(p.detail.startswith("tenancy.act_as failed: ") for p in member)


def test_profiles_made_by_trigger_are_seeded(server, tmp_path, request):
    result, _ = seed(server, tmp_path, request, ORGS, ORGS_TENANCY)

    assert result.errors == {}
    profiles = result.rows["public.profiles"]
    assert [row["id"] for row in profiles["A"]] == [result.tenant("A").members[0].id]
    assert [row["id"] for row in profiles["B"]] == [result.tenant("B").members[0].id]


def test_joining_another_tenant_is_a_leak(server, tmp_path, request):
    # Without the acting user in the key, the probe row repeated B's own
    # (org, user) key and ended in a duplicate key error instead of a verdict.
    migration = ORGS + (
        "create policy members_join on public.org_members for insert\n"
        "    to authenticated with check (true);\n"
    )

    _, probes = attack_all(server, tmp_path, request, migration, ORGS_TENANCY)

    joins = [
        p for p in probes if p.table == "public.org_members" and p.operation == "INSERT"
    ]
    member = [p for p in joins if p.actor == "member_of_A"]
    assert [p.outcome for p in member] == ["leak"]
    assert not [p for p in joins if p.outcome == "error"]


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


def test_unknown_nullable_type_left_null(server, tmp_path, request):
    # A column of a type the seeder has no value for (here point, in real
    # projects an extension's vector) stays NULL when it may.
    migration = CHECKED + "alter table public.team_notes add column spot point;\n"

    result, _ = seed(
        server, tmp_path, request, migration, CHECKED_TENANCY, flavor="postgres"
    )

    assert result.errors == {}
    assert [row["spot"] for row in result.rows["public.team_notes"]["A"]] == [None, None]


def test_live_definer_findings_keep_their_lines(server, tmp_path, request):
    from assay.introspect import read_catalog
    from assay.schema import build_model
    from assay.tenancy import TenancyScope, check_bypass

    migration = ORGS + (
        "create function public.first_helper() returns int language sql\n"
        "    security definer as $$ select 1 $$;\n"
        "create function public.second_helper() returns int language sql\n"
        "    security definer as $$ select 2 $$;\n"
    )
    config = write_project(tmp_path, migration, ORGS_TENANCY, "supabase")
    dsn = migrated_dsn(server, config, request)
    files = parse_all(discover(config.path("migrations")), root=config.root)
    with psycopg.connect(dsn, autocommit=True) as conn:
        live, facts = read_catalog(conn, ["public"], ["anon", "authenticated"])
    scope = TenancyScope.from_config(config.tenancy)

    findings, _ = check_bypass(
        live, scope, source="live", static=build_model(files), live=facts
    )

    lines = {
        f.message.split()[3]: f.line
        for f in findings
        if f.rule == "definer-function-search-path"
    }
    first = migration.splitlines().index(
        "create function public.first_helper() returns int language sql"
    )
    assert lines["public.first_helper"] == first + 1
    assert lines["public.second_helper"] == first + 3


def test_self_reference_stays_null(server, tmp_path, request):
    # A nullable reference to the same table has no parent row yet; a made-up
    # id there broke the foreign key and left the table unseeded.
    migration = CHECKED + (
        "alter table public.team_notes add column reply_to bigint\n"
        "    references public.team_notes (id);\n"
    )

    result, _ = seed(
        server, tmp_path, request, migration, CHECKED_TENANCY, flavor="postgres"
    )

    assert result.errors == {}
    assert [row["reply_to"] for row in result.rows["public.team_notes"]["B"]] == [None, None]


def test_seeded_admin_identity_applies(server, tmp_path, request):
    # Projects seed an admin user in a migration and link its sign-in identity.
    migration = PLATFORM + (
        "insert into auth.users (id, email) values\n"
        "    ('a0000001-0000-4000-8000-000000000001', 'admin@example.test');\n"
        "insert into auth.identities (id, user_id, identity_data, provider, provider_id)\n"
        "values ('a0000001-0000-4000-8000-000000000001',\n"
        "        'a0000001-0000-4000-8000-000000000001',\n"
        "        '{\"email\": \"Admin@example.test\"}', 'email',\n"
        "        'a0000001-0000-4000-8000-000000000001');\n"
    )
    config = write_project(tmp_path, migration, PLATFORM_TENANCY, "supabase")

    dsn = migrated_dsn(server, config, request)

    assert fetch(dsn, "select email from auth.identities") == [("admin@example.test",)]
