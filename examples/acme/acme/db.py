"""Database access: as the signed-in user (row level security applies) or as owner.

``as_user`` does per transaction what PostgREST does per request: it switches
to the ``authenticated`` role and sets ``request.jwt.claims``, so every policy
that calls ``auth.uid()`` gets the caller's id. ``as_service`` keeps the owner
connection, which bypasses row level security; each call site carries a
``# service-role:`` comment saying why it needs to.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row


class Database:
    """Opens one connection per unit of work; no pool, because traffic is low."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def as_user(self, claims: dict[str, Any]) -> Iterator[psycopg.Cursor]:
        """Yield a cursor in a transaction that acts as the token's user."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            with conn.cursor() as cur:
                cur.execute("set local role authenticated")
                cur.execute(
                    "select set_config('request.jwt.claims', %s, true)",
                    (json.dumps(claims),),
                )
                yield cur

    @contextmanager
    def as_service(self) -> Iterator[psycopg.Cursor]:
        """Yield a cursor on the owner connection: row level security does not apply."""
        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            with conn.cursor() as cur:
                yield cur

    def ping(self) -> None:
        with psycopg.connect(self.url, connect_timeout=2) as conn:
            conn.execute("select 1")
