-- Activity log, partitioned by month; each partition carries its own policies
-- because a partition queried by name is checked against its own RLS.

create table public.activity_log (
    id bigint generated always as identity,
    organization_id uuid not null references public.organizations (id) on delete cascade,
    action text not null,
    created_at timestamptz not null default now(),
    primary key (id, created_at)
) partition by range (created_at);

create table public.activity_log_2024 partition of public.activity_log
    for values from ('2024-01-01') to ('2025-01-01');
create table public.activity_log_default partition of public.activity_log default;

alter table public.activity_log enable row level security;
alter table public.activity_log_2024 enable row level security;
alter table public.activity_log_default enable row level security;

create policy activity_log_select on public.activity_log
    for select to authenticated using ((select private.is_member(organization_id)));
create policy activity_log_insert on public.activity_log
    for insert to authenticated with check ((select private.is_member(organization_id)));
create policy activity_log_update on public.activity_log
    for update to authenticated using ((select private.is_member(organization_id)));
create policy activity_log_delete on public.activity_log
    for delete to authenticated using ((select private.is_member(organization_id)));

create policy activity_log_2024_all on public.activity_log_2024
    for all to authenticated using ((select private.is_member(organization_id)));
create policy activity_log_default_all on public.activity_log_default
    for all to authenticated using ((select private.is_member(organization_id)));

-- Only members of the organisation see its ticket counts.
create view public.ticket_counts with (security_invoker = true) as
    select organization_id, count(*) as tickets
    from public.tickets
    group by organization_id;
