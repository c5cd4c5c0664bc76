"""Acting as an application user inside one transaction.

``supabase`` does what PostgREST does per request: ``set local role`` and the
transaction-local ``request.jwt.claims``. Any other ``act_as`` is a SQL
template with ``{user_id}`` and ``{tenant_id}``, run after ``set local role``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from assay.config import TenancyConfig

__all__ = ["Actor", "ActorKind", "become"]

# The kinds of caller every table is attacked as.
MEMBER = "member_of_A"
ANON = "anon"
OUTSIDER = "no_membership"
EMPTY_CLAIMS = "empty_claims"
MALFORMED_CLAIMS = "malformed_claims"
ActorKind = str
KINDS = (MEMBER, ANON, OUTSIDER, EMPTY_CLAIMS, MALFORMED_CLAIMS)


@dataclass(frozen=True)
class Actor:
    """A caller: its kind, database role, user id and tenant (either may be None)."""

    kind: ActorKind
    role: str
    user_id: str | None = None
    tenant_id: Any = None
    email: str | None = None

    @property
    def foreign_to_all(self) -> bool:
        """True when no tenant's rows are this caller's own."""
        return self.kind != MEMBER

    def claims(self) -> str | None:
        if self.kind == EMPTY_CLAIMS:
            return ""
        if self.kind == MALFORMED_CLAIMS:
            return '{"sub": '
        if self.kind == ANON:
            return json.dumps({"role": "anon"})
        return json.dumps(
            {
                "sub": self.user_id,
                "role": self.role,
                "aud": "authenticated",
                "email": self.email,
            }
        )


def become(cur: psycopg.Cursor, actor: Actor, tenancy: TenancyConfig) -> None:
    """Make the current transaction act as `actor` (call inside a transaction)."""
    if tenancy.act_as == "supabase":
        # One round trip: set_config('role', ..., true) is SET LOCAL ROLE.
        cur.execute(
            "select set_config('request.jwt.claims', %s, true), "
            "set_config('request.jwt.claim.sub', %s, true), "
            "set_config('request.jwt.claim.role', %s, true), "
            "set_config('role', %s, true)",
            (actor.claims(), actor.user_id or "", actor.role, actor.role),
        )
        return
    cur.execute(sql.SQL("set local role {}").format(sql.Identifier(actor.role)))
    statement = tenancy.act_as.format(
        user_id=_literal(actor.user_id), tenant_id=_literal(actor.tenant_id)
    )
    cur.execute(statement)


def _literal(value: Any) -> str:
    if value is None:
        return "''"
    return "'" + str(value).replace("'", "''") + "'"
