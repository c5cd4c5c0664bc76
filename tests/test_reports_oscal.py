"""OSCAL assessment-results: schema-valid, no empty arrays, stable UUIDs."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft7Validator, validators

from assay.reports.oscal import build_oscal
from fakes.evidence import control, evidence_document, rls_finding, write_folder

SCHEMA = Path(__file__).parent / "schemas" / "oscal_assessment-results_schema-1.0.4.json"


def _python_pattern(pattern: str) -> str:
    # The OSCAL schema writes letters and digits as \p{L} and \p{N}, which
    # Python's re lacks; [^\W\d_] and \d are their Unicode equivalents in re.
    return pattern.replace(r"\p{L}", r"[^\W\d_]").replace(r"\p{N}", r"\d")


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not re.search(
        _python_pattern(pattern), instance
    ):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    cls = validators.extend(Draft7Validator, {"pattern": _pattern})
    return cls(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def schema_errors(validator, document) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(document)
    ]


def empty_arrays(node, path="") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += empty_arrays(value, f"{path}/{key}")
    elif isinstance(node, list):
        if not node:
            found.append(path)
        for index, value in enumerate(node):
            found += empty_arrays(value, f"{path}/{index}")
    return found


def test_oscal_validates_against_schema(validator):
    document = build_oscal(evidence_document())

    assert schema_errors(validator, document) == []


def test_oscal_has_no_empty_array(validator):
    evidence = evidence_document(
        [control("TI-1", "passed", criteria=("CC6.1",))], signature={"self_made": True}
    )
    document = build_oscal(evidence)

    assert empty_arrays(document) == []
    assert schema_errors(validator, document) == []


def test_oscal_without_controls_still_validates(validator):
    document = build_oscal(evidence_document([]))

    assert empty_arrays(document) == []
    assert schema_errors(validator, document) == []


def test_validator_rejects_seeded_empty_array(validator):
    document = build_oscal(evidence_document())
    document["assessment-results"]["results"][0]["findings"] = []

    errors = schema_errors(validator, document)

    assert any("results/0/findings" in e for e in errors), errors


def test_validator_rejects_seeded_bad_state(validator):
    document = build_oscal(evidence_document())
    target = document["assessment-results"]["results"][0]["findings"][0]["target"]
    target["status"]["state"] = "passed"

    errors = schema_errors(validator, document)

    assert any("status/state" in e for e in errors), errors


def test_oscal_states_follow_control_status():
    document = build_oscal(evidence_document())
    findings = document["assessment-results"]["results"][0]["findings"]
    states = {f["target"]["target-id"]: f["target"]["status"] for f in findings}

    assert states["TI-1"] == {"state": "satisfied", "reason": "pass"}
    assert states["TI-2"]["state"] == "not-satisfied"
    assert states["TI-2"]["reason"] == "fail"
    assert states["TI-3"]["state"] == "not-satisfied"
    assert states["TI-4"]["state"] == "satisfied"
    assert states["TI-4"]["reason"] == "other"


def test_oscal_finding_links_its_observations():
    document = build_oscal(evidence_document())
    result = document["assessment-results"]["results"][0]
    observations = {o["uuid"]: o for o in result["observations"]}
    ti2 = next(f for f in result["findings"] if f["target"]["target-id"] == "TI-2")
    linked = [observations[r["observation-uuid"]] for r in ti2["related-observations"]]

    assert len(linked) == 2
    assert linked[1]["description"].startswith("policy tickets_select")
    props = {p["name"]: p["value"] for p in linked[1]["props"]}
    assert props["line"] == "14"
    assert props["file"].endswith("20240102000000_tenancy.sql")


def test_oscal_uuids_stable_per_run():
    evidence = evidence_document()
    first = build_oscal(evidence)
    again = build_oscal(copy.deepcopy(evidence))
    other_run = build_oscal(evidence_document(started="2026-02-01T10:00:00+00:00"))

    assert first == again
    assert first["assessment-results"]["uuid"] != other_run["assessment-results"]["uuid"]


def test_oscal_says_signature_is_self_made():
    document = build_oscal(evidence_document(signature={"self_made": True}))
    metadata = document["assessment-results"]["metadata"]

    assert "self-made" in metadata["remarks"]
    assert {"name": "signature", "ns": "urn:assay:evidence", "value": "self-made"} in (
        metadata["props"]
    )


def test_oscal_written_by_folder_validates(tmp_path, validator):
    folder = write_folder(tmp_path / "run", evidence_document())
    document = json.loads((folder / "oscal-assessment-results.json").read_text())

    assert schema_errors(validator, document) == []
    assert document["assessment-results"]["metadata"]["oscal-version"] == "1.0.4"


def test_oscal_many_findings_validate(validator):
    findings = [rls_finding(line=i + 1, message=f"finding {i}") for i in range(200)]
    document = build_oscal(evidence_document([control("TI-2", "failed", findings)]))
    result = document["assessment-results"]["results"][0]

    assert schema_errors(validator, document) == []
    assert len(result["observations"]) == 201
    assert len({o["uuid"] for o in result["observations"]}) == 201
