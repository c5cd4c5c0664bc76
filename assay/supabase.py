"""Supabase compatibility shim, so Supabase migrations apply to vanilla PostgreSQL.

The shim reproduces what a Supabase project gives a migration and an RLS policy,
following the init scripts of supabase/postgres and the migrations of supabase/auth:

- the roles anon, authenticated and service_role (NOLOGIN INHERIT, service_role with
  BYPASSRLS), authenticator (LOGIN NOINHERIT, granted the three), and supabase_admin,
  supabase_auth_admin and supabase_storage_admin as object owners;
- the schemas auth, extensions and storage, with USAGE for the three API roles;
- uuid-ossp and pgcrypto in schema extensions, when the server has them;
- auth.users and auth.identities with row level security enabled, and auth.uid(), auth.role(),
  auth.email() and auth.jwt() with Supabase's definitions;
- storage.buckets, storage.objects and the two multipart upload tables with RLS
  enabled, storage.foldername(), storage.filename() and storage.extension();
- supabase_functions.http_request(), the trigger function of database webhooks, as
  a stand-in that sends nothing;
- the publication supabase_realtime;
- default privileges: ALL on tables, sequences and functions that the installing role
  (and postgres and supabase_admin) later creates in schema public, granted to the
  three API roles. A SECURITY DEFINER function created by a migration therefore stays
  executable by anon and authenticated after ``revoke execute ... from public``, as on
  Supabase.

Differences from Supabase: supabase_admin is an ordinary NOLOGIN role, not a superuser,
and no member of authenticator. The auth schema holds only users and identities, not
sessions or the other GoTrue tables. Roles, role settings and the search_path of the
installing role are cluster-wide, so installing into one database changes them for all.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from assay.errors import ProvisionError

__all__ = ["API_ROLES", "EXTENSIONS", "install_shim"]

logger = logging.getLogger(__name__)

API_ROLES = ("anon", "authenticated", "service_role")
EXTENSIONS = ("uuid-ossp", "pgcrypto")

# Extensions a Supabase project can enable that a plain PostgreSQL server
# usually does not ship. Under this flavor a migration's CREATE EXTENSION of
# one the server lacks is skipped with a warning, so the schema around it still
# applies. A statement that then uses the extension fails with its own error.
PLATFORM_EXTENSIONS = frozenset(
    {
        "http", "pg_net", "pg_graphql", "pg_jsonschema", "pg_cron", "pgjwt",
        "pgsodium", "supabase_vault", "vector", "wrappers", "pg_hashids", "plv8",
        "pg_stat_monitor", "pgroonga", "rum", "hypopg", "index_advisor", "pgmq",
        "pg_tle", "plpgsql_check", "pgtap", "postgis", "postgis_topology",
        "postgis_raster", "pgrouting", "timescaledb", "pg_repack", "pgaudit",
    }
)
# The comment on schema extensions that marks a database holding the shim.
SHIM_MARK = "Supabase shim installed by Assay"

# Role name and the options it is created with. An existing role is left unchanged.
ROLES = (
    ("anon", "NOLOGIN INHERIT"),
    ("authenticated", "NOLOGIN INHERIT"),
    ("service_role", "NOLOGIN INHERIT BYPASSRLS"),
    ("authenticator", "LOGIN NOINHERIT"),
    ("supabase_admin", "NOLOGIN NOINHERIT"),
    ("supabase_auth_admin", "NOLOGIN NOINHERIT"),
    ("supabase_storage_admin", "NOLOGIN NOINHERIT"),
)

# A concurrent session may create the same role between the check and CREATE ROLE.
# CREATE ROLE then fails with duplicate_object, or with unique_violation on pg_authid.
CREATE_ROLE_SQL = """
do $roles$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = {name}) then
    begin
      create role {role} {options};
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;
end
$roles$
"""

SCHEMAS_SQL = """
grant anon, authenticated, service_role to authenticator;

create schema if not exists extensions;
create schema if not exists auth authorization supabase_admin;
create schema if not exists storage authorization supabase_admin;

grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema storage to anon, authenticated, service_role;
grant all on schema auth to supabase_auth_admin;
grant all on schema storage to supabase_storage_admin;
"""

AUTH_SQL = """
create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  phone_change text default '',
  phone_change_token varchar(255) default '',
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz
    generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  email_change_token_current varchar(255) default '',
  email_change_confirm_status smallint default 0,
  banned_until timestamptz,
  reauthentication_token varchar(255) default '',
  reauthentication_sent_at timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
-- Supabase keeps e-mail addresses unique among users that do not sign in through SSO.
create unique index if not exists users_email_partial_key
  on auth.users (email) where (is_sso_user = false);
alter table auth.users enable row level security;
alter table auth.users owner to supabase_auth_admin;

-- Sign-in identities; seed migrations that create a user link one here.
create table if not exists auth.identities (
  provider_id text not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  identity_data jsonb not null,
  provider text not null,
  last_sign_in_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz,
  email text generated always as (lower(identity_data ->> 'email')) stored,
  id uuid not null default gen_random_uuid() primary key,
  unique (provider_id, provider)
);
alter table auth.identities enable row level security;
alter table auth.identities owner to supabase_auth_admin;

-- The functions read the claims that PostgREST sets per transaction. The older
-- request.jwt.claim.* settings win when non-empty. A malformed claims value or a
-- sub that is not a uuid raises an error, as on Supabase.
create or replace function auth.uid()
returns uuid
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role()
returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email()
returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
"""

STORAGE_SQL = """
create table if not exists storage.buckets (
  id text not null primary key,
  name text not null,
  owner uuid,
  owner_id text,
  public boolean default false,
  avif_autodetection boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create unique index if not exists bname on storage.buckets (name);

create table if not exists storage.objects (
  id uuid not null default gen_random_uuid() primary key,
  bucket_id text references storage.buckets (id),
  name text,
  owner uuid,
  owner_id text,
  metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  version text,
  user_metadata jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now()
);
create unique index if not exists bucketid_objname on storage.objects (bucket_id, name);

-- Resumable uploads; migrations dumped from a project grant on these tables.
create table if not exists storage.s3_multipart_uploads (
  id text primary key,
  in_progress_size bigint not null default 0,
  upload_signature text not null,
  bucket_id text not null references storage.buckets (id),
  key text not null,
  version text not null,
  owner_id text,
  created_at timestamptz not null default now(),
  user_metadata jsonb
);
create table if not exists storage.s3_multipart_uploads_parts (
  id uuid primary key default gen_random_uuid(),
  upload_id text not null references storage.s3_multipart_uploads (id) on delete cascade,
  size bigint not null default 0,
  part_number int not null,
  bucket_id text not null references storage.buckets (id),
  key text not null,
  etag text not null,
  owner_id text,
  version text not null,
  created_at timestamptz not null default now()
);

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
alter table storage.s3_multipart_uploads enable row level security;
alter table storage.s3_multipart_uploads_parts enable row level security;
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table storage.s3_multipart_uploads owner to supabase_storage_admin;
alter table storage.s3_multipart_uploads_parts owner to supabase_storage_admin;
grant all on storage.buckets, storage.objects to anon, authenticated, service_role;
grant all on storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts
  to service_role;
grant select on storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts
  to authenticated, anon;

-- 'a/b/c.png' -> {a,b}
create or replace function storage.foldername(name text)
returns text[]
language plpgsql immutable
as $$
declare
  parts text[];
begin
  parts := string_to_array(name, '/');
  return parts[1:array_length(parts, 1) - 1];
end
$$;

-- 'a/b/c.png' -> 'c.png'
create or replace function storage.filename(name text)
returns text
language plpgsql immutable
as $$
declare
  parts text[];
begin
  parts := string_to_array(name, '/');
  return parts[array_length(parts, 1)];
end
$$;

-- 'a/b/c.png' -> 'png'
create or replace function storage.extension(name text)
returns text
language plpgsql immutable
as $$
declare
  parts text[];
  filename text;
begin
  parts := string_to_array(name, '/');
  filename := parts[array_length(parts, 1)];
  return reverse(split_part(reverse(filename), '.', 1));
end
$$;

alter function storage.foldername(text) owner to supabase_storage_admin;
alter function storage.filename(text) owner to supabase_storage_admin;
alter function storage.extension(text) owner to supabase_storage_admin;
"""

# Database webhooks: Supabase runs supabase_functions.http_request() as the
# trigger function of each hook. The stand-in sends nothing.
WEBHOOKS_SQL = """
create schema if not exists supabase_functions authorization supabase_admin;
grant usage on schema supabase_functions to anon, authenticated, service_role;
create or replace function supabase_functions.http_request()
returns trigger
language plpgsql
as $$
begin
  return new;
end
$$;
"""

PUBLICATION_SQL = """
do $publication$
begin
  if not exists (
    select from pg_catalog.pg_publication where pubname = 'supabase_realtime'
  ) then
    create publication supabase_realtime;
  end if;
end
$publication$
"""

# Applied for each role whose new objects in schema public the API roles should get.
DEFAULT_PRIVILEGES_SQL = """
alter default privileges for role {role} in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role {role} in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role {role} in schema public
  grant all on functions to anon, authenticated, service_role;
"""


def install_shim(conn: psycopg.Connection) -> None:
    """Install the Supabase shim into the database ``conn`` is connected to.

    Running it again, on the same or another database of the cluster, is safe,
    because roles are created only when missing and every other step replaces or
    skips what exists. The whole install runs in one transaction. The connected role
    must be a superuser. The shim sets ``search_path = "$user", public, extensions``
    on that role, as Supabase does for postgres, which applies to sessions opened
    afterwards. Extensions the server lacks are skipped with a warning.
    """
    user, is_superuser = conn.execute(
        "select current_user, rolsuper from pg_catalog.pg_roles"
        " where rolname = current_user"
    ).fetchone()
    if not is_superuser:
        raise ProvisionError(
            f"could not install the Supabase shim as role {user!r}: it is not a"
            " superuser, which creating roles and changing owners requires. Connect"
            " as a superuser, or set database.flavor to postgres"
        )

    try:
        with conn.transaction():
            _install(conn, user)
    except psycopg.Error as error:
        raise ProvisionError(
            f"could not install the Supabase shim into database"
            f" {conn.info.dbname!r}: {error}. The database is unchanged. Check"
            " whether an earlier migration created conflicting objects"
        ) from error


def _install(conn: psycopg.Connection, user: str) -> None:
    for name, options in ROLES:
        conn.execute(
            sql.SQL(CREATE_ROLE_SQL).format(
                name=sql.Literal(name),
                role=sql.Identifier(name),
                options=sql.SQL(options),
            )
        )

    conn.execute(SCHEMAS_SQL)
    conn.execute(
        sql.SQL("comment on schema extensions is {}").format(sql.Literal(SHIM_MARK))
    )
    _create_extensions(conn)
    conn.execute(AUTH_SQL)
    conn.execute(STORAGE_SQL)
    conn.execute(WEBHOOKS_SQL)
    conn.execute(PUBLICATION_SQL)

    owners = {user, "postgres", "supabase_admin"}
    existing = {
        row[0]
        for row in conn.execute(
            "select rolname from pg_catalog.pg_roles where rolname = any(%s)",
            (sorted(owners),),
        )
    }
    for role in sorted(existing):
        quoted = sql.Identifier(role).as_string(conn)
        conn.execute(DEFAULT_PRIVILEGES_SQL.format(role=quoted))

    conn.execute(
        sql.SQL('alter role {} set search_path = "$user", public, extensions').format(
            sql.Identifier(user)
        )
    )


def _create_extensions(conn: psycopg.Connection) -> None:
    available = {
        row[0]
        for row in conn.execute(
            "select name from pg_catalog.pg_available_extensions where name = any(%s)",
            (list(EXTENSIONS),),
        )
    }
    for name in EXTENSIONS:
        if name not in available:
            logger.warning(
                "extension %s is not available on this server, so the Supabase shim"
                " skips it. Install the PostgreSQL contrib package to get it",
                name,
            )
            continue
        conn.execute(
            sql.SQL("create extension if not exists {} with schema extensions").format(
                sql.Identifier(name)
            )
        )
