"""Seeded webhook and internal-note violations: each fails exactly its control.

Every case starts acme with one ``ACME_FLAW`` and runs ``assay run --controls
WH-1,WH-2,WH-3,DM-1`` as a subprocess against a shared local PostgreSQL. The
runs are independent, so they go in parallel and are read by the tests.
The failing set is compared exactly, and the finding must carry the request
that broke the claim with its signature redacted.
"""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from assay_testing import (
    ACME,
    REPO,
    AssayResult,
    copy_acme_migrations,
    run_assay,
    write_config,
)

CONTROLS = "WH-1,WH-2,WH-3,DM-1"
PARALLEL_RUNS = 4


@dataclass(frozen=True)
class Violation:
    flaw: str
    control: str
    rule: str
    case: str | None = None


VIOLATIONS = {
    "re-serialised body verified": Violation(
        "webhook-reserialised", "WH-2", "raw-body-not-verified", "compact"
    ),
    "parser before verification": Violation(
        "webhook-parse-first",
        "WH-1",
        "rejected-without-401",
        "malformed_bad_signature",
    ),
    "missing header accepted": Violation(
        "webhook-missing-header", "WH-1", "forged-delivery-accepted", "missing"
    ),
    "comparison accepts a prefix": Violation(
        "webhook-prefix-compare", "WH-1", "forged-delivery-accepted", "truncated"
    ),
    "processing before verification": Violation(
        "webhook-process-first", "WH-1", "processed-before-verification", "wrong"
    ),
    "no deduplication": Violation(
        "webhook-no-dedup", "WH-3", "replay-processed-twice", "sent_twice"
    ),
    "deduplication races": Violation(
        "webhook-dedup-race", "WH-3", "replay-processed-twice", "concurrent"
    ),
    "internal note stored": Violation(
        "note-stored", "DM-1", "internal-note-stored", "zendesk_note"
    ),
    "note stored only in logs": Violation(
        "note-in-logs", "DM-1", "internal-note-stored", "zendesk_note"
    ),
}


# Bad webhook entries that only the running application can reveal.
BAD_ENTRIES = {
    "failing sql": {
        "side_effect_sql": "select count(*) from public.no_such_table "
        "where id = {event_id}"
    },
    "path not found": {"path": "/hooks/no-such-route/{tenant_id}"},
}


def acme_config(
    folder: Path, database_url: str, flaw: str = "", github: dict | None = None
) -> Path:
    """Write a copy of the repository's assay.yaml for acme with one flaw.

    `github` replaces keys of the GitHub receiver's entry.
    """
    sections = copy.deepcopy(yaml.safe_load((REPO / "assay.yaml").read_text()))
    sections["webhooks"]["github"].update(github or {})
    sections["database"] = {
        "provider": "url",
        "url": database_url,
        "flavor": "supabase",
    }
    copy_acme_migrations(folder)
    sections["migrations"]["path"] = "supabase/migrations"
    sections["app"]["cwd"] = str(ACME)
    if flaw:
        sections["app"]["env"]["ACME_FLAW"] = flaw
    return write_config(folder, sections)


def run_webhook_controls(
    folder: Path, database_url: str, flaw: str = "", github: dict | None = None
) -> AssayResult:
    folder.mkdir(parents=True)
    config = acme_config(folder, database_url, flaw, github)
    return run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        CONTROLS,
        cwd=folder,
        report_dir=folder / "report",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_postgres_url) -> dict[str, AssayResult]:
    """Acme's default and every seeded violation, run in parallel."""
    root = tmp_path_factory.mktemp("webhook-runs")
    flaws = {"default": ""} | {name: v.flaw for name, v in VIOLATIONS.items()}
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        futures = {
            name: pool.submit(
                run_webhook_controls,
                root / flaw_folder(name),
                shared_postgres_url,
                flaw,
            )
            for name, flaw in flaws.items()
        }
        for name, entry in BAD_ENTRIES.items():
            futures[name] = pool.submit(
                run_webhook_controls,
                root / flaw_folder(name),
                shared_postgres_url,
                github=entry,
            )
        return {name: future.result() for name, future in futures.items()}


def flaw_folder(name: str) -> str:
    return name.replace(" ", "-")


def test_acme_keeps_webhook_claims(runs):
    result = runs["default"]
    catalog_errors = result.evidence["run"].get("catalog_errors", [])

    assert not [e for e in catalog_errors if "webhooks::" in e], catalog_errors
    assert result.status == (1 if catalog_errors else 0), result.stderr
    assert result.statuses() == {
        "WH-1": "passed",
        "WH-2": "passed",
        "WH-3": "passed",
        "DM-1": "passed",
    }


def test_acme_observations_cover_every_receiver(runs):
    observed = runs["default"].control("WH-1")["observations"]
    receivers = observed["test_forged_deliveries_rejected"]

    for name in ("zendesk", "intercom", "github", "razorpay"):
        assert name in receivers
    cases = {row["case"] for row in receivers["github"]}
    assert {"missing", "truncated", "uppercase_hex", "wrong_prefix"} <= cases


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_violation_fails_its_control(runs, name):
    violation = VIOLATIONS[name]
    result = runs[name]

    assert result.status == 1, result.stderr
    assert result.failed() == {violation.control}, result.statuses()
    rules = {f["rule"] for f in result.findings(violation.control)}
    assert violation.rule in rules


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_finding_names_the_request(runs, name):
    violation = VIOLATIONS[name]
    findings = [
        f
        for f in runs[name].findings(violation.control)
        if f["rule"] == violation.rule and f["details"]["case"] == violation.case
    ]

    assert findings, runs[name].findings(violation.control)
    request = findings[0]["details"]["request"]
    assert request["method"] == "POST"
    assert request["path"].startswith("/webhooks/")
    assert request["body_excerpt"]
    signatures = [
        value
        for header, value in request["headers"].items()
        if header.lower().endswith("signature")
    ]
    for value in signatures:
        assert value.startswith("<redacted"), request["headers"]


def test_findings_carry_no_secret(runs):
    for name in VIOLATIONS:
        evidence = runs[name].evidence

        assert not evidence["run"].get("canary_leaks"), name
        assert "assay-note-" not in json.dumps(evidence), name


def test_failing_sql_exits_2_with_line(runs):
    result = runs["failing sql"]

    assert result.status == 2, result.stdout + result.stderr
    assert "assay.yaml:" in result.stderr
    assert "webhooks.github.side_effect_sql=" in result.stderr
    assert "UndefinedTable" in result.stderr
    assert "Write a query returning one integer" in result.stderr


def test_missing_path_exits_2_with_line(runs):
    result = runs["path not found"]

    assert result.status == 2, result.stdout + result.stderr
    assert "webhooks.github.path='/hooks/no-such-route/{tenant_id}'" in result.stderr
    assert "returned 404" in result.stderr
    assert "Set path to the route of the receiver" in result.stderr


def test_unknown_provider_exits_2(tmp_path, shared_postgres_url):
    config = acme_config(tmp_path, shared_postgres_url)
    text = config.read_text().replace("  razorpay:\n", "  razorpy:\n")
    config.write_text(text)

    result = run_assay(
        "run", "--config", str(config), "--controls", CONTROLS, cwd=tmp_path
    )

    line = text.splitlines().index("  razorpy:") + 1
    assert result.status == 2
    assert f"assay.yaml:{line}: webhooks.razorpy='razorpy'" in result.stderr
    assert "unknown webhook provider. Did you mean 'razorpay'?" in result.stderr
    assert "Known providers: github, intercom, jira" in result.stderr
