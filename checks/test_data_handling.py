"""Data handling: DM-2 (no secrets in the repository index) and DM-3 (no card data).

DM-3 runs after every other check of its worker (the ``after_flows``
marker), so it scans the database the application wrote to during the run.
When the run started no application (no ``app`` section, or an ``app.url``
whose database Assay cannot read), it scans a freshly seeded clone instead:
then it proves the schema and seed data hold no card data, not the flows.
The observation ``database`` names the one scanned.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from assay.cards import ScanResult, scan_database
from assay.config import Config
from assay.findings import Finding
from assay.indexer_probe import (
    IndexerRun,
    StoredSource,
    judge,
    placeholder_values,
    read_stored,
    run_indexer,
)
from assay.secrets import ProbeRepository, build_probe_repository
from assay.target import conninfo_to_url


@dataclass(frozen=True)
class IndexerProbe:
    """One run of the team's indexer on the probe repository, and what it stored."""

    repo: ProbeRepository
    run: IndexerRun
    sources: list[StoredSource]
    counts: dict[str, int]
    organization_id: str


def _probe_tenant(dsn: str, config: Config) -> str:
    """Return the id of a tenant the indexer may write for."""
    if config.tenancy is None:
        # Without a tenancy section there is no tenant table to seed, so the
        # indexer gets a fresh id and must accept it as it is.
        return str(uuid.uuid4())
    from assay.seeding import seed_database

    seed = seed_database(dsn, config)
    return str(seed.tenants[0].id)


@pytest.fixture(scope="module")
def indexer_probe(assay_config: Config, clone_database) -> Iterator[IndexerProbe]:
    """The indexer run on a fresh probe repository against its own clone."""
    dsn = clone_database("indexer")
    organization_id = _probe_tenant(dsn, assay_config)
    # Not tmp_path: pytest keeps those folders, and these files hold canaries.
    with tempfile.TemporaryDirectory(prefix="assay-indexer-") as folder:
        repo = build_probe_repository(Path(folder) / "repo")
        workdir = Path(folder) / "work"
        workdir.mkdir()
        values = placeholder_values(
            repo.path, conninfo_to_url(dsn), organization_id, workdir
        )
        canaries = [probe.canary for probe in repo.files]
        run = run_indexer(assay_config, values, canaries)
        sources, counts = read_stored(assay_config, dsn, organization_id, values, run)
        yield IndexerProbe(repo, run, sources, counts, organization_id)


@pytest.mark.control("DM-2")
def test_secrets_excluded_from_index(evidence, indexer_probe: IndexerProbe):
    verdict = judge(indexer_probe.repo, indexer_probe.sources)
    evidence.observe(
        "probe",
        {
            "repository_commit": indexer_probe.repo.commit,
            "files": len(indexer_probe.repo.files),
            "indexer_seconds": round(indexer_probe.run.seconds, 3),
            "indexer_exit_status": indexer_probe.run.returncode,
            "places_searched": indexer_probe.counts["sources"],
            "read_sql_rows": indexer_probe.counts["read_sql_rows"],
            **verdict.counts,
        },
    )
    evidence.observe("files", verdict.inventory)
    evidence.examined_count(
        "secret files", len(indexer_probe.repo.of_kind("secret-file"))
    )
    evidence.examined_count(
        "credential files", len(indexer_probe.repo.of_kind("credential"))
    )
    evidence.examined_count(
        "ordinary files", len(indexer_probe.repo.of_kind("ordinary"))
    )
    evidence.extend(verdict.findings)
    evidence.verdict()


# DM-3 -----------------------------------------------------------------------


def _started_app(request: pytest.FixtureRequest):
    """Return the application fixture if this process already started it, else None."""
    # NOTE: pytest has no public way to ask whether a fixture was used, so
    # this reads FixtureDef.cached_result. A run that never needed the
    # application does not start it just for this scan.
    definitions = request._fixturemanager.getfixturedefs("target_app", request.node)
    for definition in definitions or ():
        cached = getattr(definition, "cached_result", None)
        if cached is not None and cached[2] is None:
            return cached[0]
    return None


@pytest.fixture
def card_scan_database(
    request: pytest.FixtureRequest, assay_config: Config, clone_database
) -> tuple[str, str]:
    """The database DM-3 scans, and which one it is."""
    app = _started_app(request)
    if app is not None and getattr(app, "dsn", None):
        return app.dsn, "the database the application used during this run"
    dsn = clone_database("card-scan")
    if assay_config.tenancy is not None:
        from assay.seeding import seed_database

        seed_database(dsn, assay_config)
        return dsn, "a seeded clone of the migrated database (no application ran)"
    return dsn, "a clone of the migrated database (no application ran, no tenancy)"


def _card_findings(result: ScanResult) -> list[Finding]:
    findings = []
    for hit in result.named:
        what = "view" if hit.relkind == "v" else "table"
        findings.append(
            Finding(
                control="DM-3",
                rule="card-data-column",
                message=(
                    f"{what} {hit.table} has a column {hit.column!r} named like "
                    f"card data ({hit.kind})"
                ),
                table=hit.table,
                source="live",
                fix=(
                    "Drop the column: card data belongs with the payment provider. "
                    "PCI DSS v4 3.3.1 forbids keeping a CVV after authorisation, "
                    "even encrypted"
                ),
                details={"column": hit.column, "kind": hit.kind},
            )
        )
    for value in result.values:
        findings.append(
            Finding(
                control="DM-3",
                rule="card-number-stored",
                message=(
                    f"{value.table}.{value.column} holds a Luhn-valid "
                    f"{'/'.join(sorted(value.issuers))} card number in {value.rows} "
                    f"row(s), e.g. {value.examples[0]['number']} in row "
                    f"{value.examples[0]['row']}"
                ),
                table=value.table,
                source="live",
                fix=(
                    "Find the flow that wrote it and stop it: card numbers must "
                    "never reach this database"
                ),
                details={
                    "column": value.column,
                    "rows": value.rows,
                    "examples": value.examples,
                },
            )
        )
    return findings


@pytest.mark.after_flows
@pytest.mark.control("DM-3")
def test_no_card_data_stored(evidence, card_scan_database, assay_config: Config):
    dsn, which = card_scan_database
    schemas = assay_config.card_scan.schemas if assay_config.card_scan else []
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = scan_database(conn, schemas=schemas)
    evidence.observe("database", which)
    evidence.observe(
        "scan",
        {
            "tables": result.tables,
            "columns": result.columns,
            "text_columns_scanned": result.scanned_columns,
            "rows": result.rows,
            "rows_with_long_digit_runs": result.candidate_rows,
        },
    )
    evidence.examined_count("columns", result.columns)
    evidence.examined_count("rows", result.rows)
    evidence.extend(_card_findings(result))
    evidence.verdict()
