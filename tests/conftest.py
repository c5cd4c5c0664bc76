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


@pytest.fixture(scope="session", autouse=True)
def canary_registry(tmp_path_factory) -> Iterator[None]:
    """Keep canaries planted by in-process tests in a folder removed afterwards."""
    import os
    import shutil

    folder = tmp_path_factory.mktemp("canaries")
    previous = os.environ.get("ASSAY_CANARY_DIR")
    os.environ["ASSAY_CANARY_DIR"] = str(folder)
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop("ASSAY_CANARY_DIR", None)
        else:
            os.environ["ASSAY_CANARY_DIR"] = previous
