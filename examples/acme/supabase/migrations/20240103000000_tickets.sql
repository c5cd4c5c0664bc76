-- Support tickets and their public comments, written by webhook receivers.

create table public.tickets (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id) on delete cascade,
    provider text not null,
    external_id text not null,
    subject text,
    status text not null default 'open',
    created_at timestamptz not null default now(),
    unique (organization_id, provider, external_id),
    unique (id, organization_id)
);

create table public.ticket_comments (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id) on delete cascade,
    ticket_id uuid not null,
    body text not null,
    author text,
    created_at timestamptz not null default now(),
    -- The composite key keeps a comment in its ticket's organisation: a member
    -- of one tenant cannot attach a comment to another tenant's ticket.
    foreign key (ticket_id, organization_id)
        references public.tickets (id, organization_id) on delete cascade
);

-- Deliveries already processed, so a replayed event has no second effect.
create table public.webhook_events (
    organization_id uuid not null references public.organizations (id) on delete cascade,
    provider text not null,
    event_id text not null,
    received_at timestamptz not null default now(),
    primary key (provider, event_id)
);

alter table public.tickets enable row level security;
alter table public.ticket_comments enable row level security;
alter table public.webhook_events enable row level security;

create policy tickets_select on public.tickets
    for select to authenticated using ((select private.is_member(organization_id)));
create policy tickets_insert on public.tickets
    for insert to authenticated with check ((select private.is_member(organization_id)));
create policy tickets_update on public.tickets
    for update to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));
create policy tickets_delete on public.tickets
    for delete to authenticated using ((select private.is_member(organization_id)));

create policy ticket_comments_all on public.ticket_comments
    for all to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));

create policy webhook_events_all on public.webhook_events
    for all to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));
