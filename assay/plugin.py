"""Assay's pytest entry point.

Kept cheap on purpose: pytest imports it in every project where Assay is
installed. It declares the options and the ``control`` marker; the heavy
run plugin is imported only when ``--assay-config`` is given.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("assay", "Assay compliance checks")
    group.addoption(
        "--assay-config",
        default=None,
        metavar="PATH",
        help="assay.yaml of the target under test; turns on Assay's run plugin",
    )
    group.addoption(
        "--assay-report-dir",
        default=None,
        metavar="DIR",
        help="folder where evidence.json and the other evidence files are written",
    )
    group.addoption(
        "--assay-controls",
        default=None,
        metavar="IDS",
        help="comma-separated control ids to run, e.g. TI-1,TI-2 (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "control(id): the Assay control that this check proves"
    )
    if config.getoption("assay_config", default=None):
        from assay.session import AssayRun

        config.pluginmanager.register(AssayRun(config), "assay-run")
