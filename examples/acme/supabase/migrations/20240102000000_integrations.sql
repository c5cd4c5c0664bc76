-- OAuth tokens and webhook signing secrets, stored as AES-256-GCM envelopes.

create table public.integrations (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id) on delete cascade,
    provider text not null check (provider in ('zendesk', 'intercom', 'github', 'slack', 'jira', 'linear')),
    access_token text not null,
    refresh_token text,
    external_account text,
    created_at timestamptz not null default now(),
    unique (organization_id, provider)
);

create table public.webhook_secrets (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references public.organizations (id) on delete cascade,
    provider text not null,
    secret text not null,
    created_at timestamptz not null default now(),
    unique (organization_id, provider)
);

alter table public.integrations enable row level security;
alter table public.webhook_secrets enable row level security;

create policy integrations_all on public.integrations
    for all to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));

create policy webhook_secrets_all on public.webhook_secrets
    for all to authenticated
    using ((select private.is_member(organization_id)))
    with check ((select private.is_member(organization_id)));
