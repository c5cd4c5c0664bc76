"""A real `assay run` on the reference target: every file, valid, mergeable.

Two shards run different controls against examples/acme with the repository's
assay.yaml, as two CI jobs would. Their folders must hold every evidence file,
validate against the shipped OSCAL and SARIF schemas, verify, merge and diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft4Validator, Draft7Validator, validators

from assay.evidence_cli import diff_evidence
from assay.manifest import verify_folder
from test_reports_oscal import _pattern

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).parent / "schemas"
EVIDENCE_FILES = {
    "evidence.json",
    "junit.xml",
    "manifest.json",
    "oscal-assessment-results.json",
    "public-key.pem",
    "report.html",
    "results.sarif",
}
SHARDS = {"static": "TI-1,TI-3", "policies": "TI-2,TI-5"}


def assay(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ASSAY_SIGNING_KEY"}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from assay.cli import main; sys.exit(main())",
         *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("acme")
    folders = {}
    for name, controls in SHARDS.items():
        folder = root / name
        result = assay("run", "--controls", controls, "--report-dir", str(folder))
        assert result.returncode in (0, 1), result.stderr[-3000:]
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def merged(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "evidence"
    result = assay("merge", *map(str, shards.values()), "-o", str(out))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return out


def oscal_errors(folder: Path) -> list[str]:
    schema = json.loads((SCHEMAS / "oscal_assessment-results_schema-1.0.4.json").read_text())
    cls = validators.extend(Draft7Validator, {"pattern": _pattern})
    validator = cls(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    document = json.loads((folder / "oscal-assessment-results.json").read_text())
    return [e.message[:200] for e in validator.iter_errors(document)]


def sarif_errors(folder: Path) -> list[str]:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    validator = Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    document = json.loads((folder / "results.sarif").read_text())
    return [e.message[:200] for e in validator.iter_errors(document)]


def test_run_writes_every_file(shards):
    for folder in shards.values():
        assert {p.name for p in folder.iterdir()} == EVIDENCE_FILES


def test_run_output_validates(shards):
    for folder in shards.values():
        assert oscal_errors(folder) == []
        assert sarif_errors(folder) == []


def test_run_output_verifies(shards):
    for folder in shards.values():
        result = verify_folder(folder)
        assert result.files == len(EVIDENCE_FILES) - 1
        assert result.self_made is True


def test_sarif_rules_match_controls(shards):
    sarif = json.loads((shards["policies"] / "results.sarif").read_text())
    rules = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    located = [
        r for r in sarif["runs"][0]["results"]
        if "physicalLocation" in (r.get("locations") or [{}])[0]
    ]

    assert rules == ["assay/TI-2", "assay/TI-5"]
    for result in located:
        region = result["locations"][0]["physicalLocation"]["region"]
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert (REPO / uri).is_file(), uri
        assert region["startLine"] >= 1


def test_merged_shards_cover_all_controls(shards, merged):
    evidence = json.loads((merged / "evidence.json").read_text())

    assert sorted(c["id"] for c in evidence["controls"]) == ["TI-1", "TI-2", "TI-3", "TI-5"]
    assert [s["folder"] for s in evidence["run"]["shards"]] == [
        str(shards["static"]),
        str(shards["policies"]),
    ]
    assert verify_folder(merged).files == len(EVIDENCE_FILES) - 1
    assert oscal_errors(merged) == []
    assert sarif_errors(merged) == []


def test_diff_of_shard_and_merge(shards, merged):
    base = json.loads((shards["static"] / "evidence.json").read_text())
    new = json.loads((merged / "evidence.json").read_text())

    result = diff_evidence(base, new)
    appeared = {c.subject for c in result.changes if c.kind == "control"}

    assert appeared == {"TI-2", "TI-5"}
    assert not any(c.text.startswith("disappeared") for c in result.changes)
