"""Shared fixtures for Assay's own tests."""

from __future__ import annotations

pytest_plugins = ["pytester"]

from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def shared_postgres_url() -> Iterator[str]:
    """A local PostgreSQL server for `database.provider: url` runs in tests.

    One server for the session keeps the many seeded-violation runs fast; each
    run still creates and drops its own template and clones on it.
    """
    from assay.postgres import DatabaseSettings, provision

    with provision(DatabaseSettings(provider="local")) as server:
        yield server.dsn("postgres")
