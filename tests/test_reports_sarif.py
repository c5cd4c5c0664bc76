"""SARIF 2.1.0: schema-valid, one rule per control, results on file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from assay.reports.sarif import build_sarif
from fakes.evidence import MIGRATION, control, evidence_document, rls_finding, write_folder

SCHEMA = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def schema_errors(validator, document) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]


def test_sarif_validates_against_schema(validator):
    assert schema_errors(validator, build_sarif(evidence_document())) == []


def test_validator_rejects_seeded_bad_level(validator):
    document = build_sarif(evidence_document())
    document["runs"][0]["results"][0]["level"] = "critical"

    errors = schema_errors(validator, document)

    assert any("results/0/level" in e for e in errors), errors


def test_sarif_one_rule_per_control():
    document = build_sarif(evidence_document())
    rules = document["runs"][0]["tool"]["driver"]["rules"]

    assert [r["id"] for r in rules] == ["assay/TI-1", "assay/TI-2", "assay/TI-3", "assay/TI-4"]
    assert rules[1]["fullDescription"]["text"] == "The claim that TI-2 proves holds."
    assert "CC6.1" in rules[1]["properties"]["tags"]


def test_sarif_result_on_migration_line():
    document = build_sarif(evidence_document())
    result = next(r for r in document["runs"][0]["results"] if r["ruleId"] == "assay/TI-2")
    location = result["locations"][0]["physicalLocation"]

    assert result["level"] == "error"
    assert location["artifactLocation"]["uri"] == MIGRATION
    assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert location["region"] == {"startLine": 14}
    assert result["ruleIndex"] == 1
    assert "Fix: Compare organization_id" in result["message"]["text"]


def test_sarif_waived_finding_is_suppressed():
    document = build_sarif(evidence_document())
    result = next(r for r in document["runs"][0]["results"] if r["ruleId"] == "assay/TI-3")

    assert result["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "legacy table, rewritten next quarter",
        }
    ]


def test_sarif_failed_control_without_finding_has_result(validator):
    evidence = evidence_document(
        [control("TI-5", "error", reasons=["no check ran for this control"])]
    )
    document = build_sarif(evidence)
    results = document["runs"][0]["results"]

    assert len(results) == 1
    assert results[0]["ruleId"] == "assay/TI-5"
    assert "no check ran" in results[0]["message"]["text"]
    assert schema_errors(validator, document) == []


def test_sarif_finding_without_file_uses_table(validator):
    finding = rls_finding(file=None, line=None, source="live")
    document = build_sarif(evidence_document([control("TI-4", "failed", [finding])]))
    result = document["runs"][0]["results"][0]

    assert result["locations"] == [
        {
            "logicalLocations": [
                {"name": "public.tickets", "kind": "table"},
                {"name": "tickets_select", "kind": "policy"},
            ]
        }
    ]
    assert schema_errors(validator, document) == []


def test_sarif_fingerprint_ignores_line():
    moved = build_sarif(evidence_document([control("TI-2", "failed", [rls_finding(line=20)])]))
    original = build_sarif(evidence_document([control("TI-2", "failed", [rls_finding()])]))

    assert (
        moved["runs"][0]["results"][0]["partialFingerprints"]
        == original["runs"][0]["results"][0]["partialFingerprints"]
    )


def test_sarif_written_by_folder_validates(tmp_path, validator):
    folder = write_folder(tmp_path / "run", evidence_document())
    document = json.loads((folder / "results.sarif").read_text())

    assert schema_errors(validator, document) == []
