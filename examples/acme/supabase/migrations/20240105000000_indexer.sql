-- Files of a connected repository, stored by the indexer for search. The
-- indexer never stores secret files or files holding credentials.

create table public.indexed_files (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id) on delete cascade,
    path text not null,
    sha256 text not null,
    content text not null,
    indexed_at timestamptz not null default now(),
    unique (organization_id, path)
);

alter table public.indexed_files enable row level security;

create policy indexed_files_select on public.indexed_files
    for select to authenticated using ((select private.is_member(organization_id)));
create policy indexed_files_insert on public.indexed_files
    for insert to authenticated with check ((select private.is_member(organization_id)));
create policy indexed_files_update on public.indexed_files
    for update to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));
create policy indexed_files_delete on public.indexed_files
    for delete to authenticated using ((select private.is_member(organization_id)));
