-- Tenants, their members and the helper every policy uses.

create schema if not exists private;
grant usage on schema private to authenticated, service_role;

create table public.organizations (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    created_at timestamptz not null default now()
);

create table public.members (
    organization_id uuid not null references public.organizations (id) on delete cascade,
    user_id uuid not null references auth.users (id) on delete cascade,
    role text not null default 'member' check (role in ('owner', 'admin', 'member')),
    created_at timestamptz not null default now(),
    primary key (organization_id, user_id)
);

-- Runs as its owner so that policies on members can call it without recursing
-- into members' own policies; it answers only about the caller.
create function private.is_member(org uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
    select exists (
        select 1
        from public.members m
        where m.organization_id = org
          and m.user_id = (select auth.uid())
    );
$$;

revoke execute on function private.is_member(uuid) from public, anon;
grant execute on function private.is_member(uuid) to authenticated, service_role;

alter table public.organizations enable row level security;
alter table public.members enable row level security;

create policy organizations_select on public.organizations
    for select to authenticated using ((select private.is_member(id)));
create policy organizations_insert on public.organizations
    for insert to authenticated with check (false);
create policy organizations_update on public.organizations
    for update to authenticated using ((select private.is_member(id)));
create policy organizations_delete on public.organizations
    for delete to authenticated using (false);

create policy members_select on public.members
    for select to authenticated using ((select private.is_member(organization_id)));
create policy members_insert on public.members
    for insert to authenticated with check ((select private.is_member(organization_id)));
create policy members_update on public.members
    for update to authenticated using ((select private.is_member(organization_id)));
create policy members_delete on public.members
    for delete to authenticated using ((select private.is_member(organization_id)));

-- Global price list: no customer data, readable by everyone.
create table public.plans (
    id text primary key,
    name text not null,
    monthly_price_cents integer not null
);
alter table public.plans enable row level security;
create policy plans_read on public.plans for select using (true);
insert into public.plans (id, name, monthly_price_cents)
values ('starter', 'Starter', 0), ('team', 'Team', 4900);
