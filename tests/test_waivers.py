"""Waivers: loading, scope matching, review of expired and unused ones, and runs."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest

from assay.cli import main
from assay.config import load_config
from assay.errors import ConfigError
from assay.findings import Finding
from assay.waivers import WaiverSet, load_waivers, review_waivers

TODAY = date(2026, 6, 1)
KNOWN = ["DM-3", "TI-6", "WH-1", "XX-1"]


def load(tmp_path: Path, text: str, *, config: str = "") -> WaiverSet:
    (tmp_path / "assay.yaml").write_text(config)
    (tmp_path / "waivers.yaml").write_text(textwrap.dedent(text))
    waivers = load_waivers(load_config(tmp_path / "assay.yaml"), known_controls=KNOWN)
    waivers.today = TODAY
    return waivers


VALID = """\
waivers:
  - control: DM-3
    scope: {table: legacy_payments}
    reason: Read-only archive, dropped next quarter
    approver: security@example.com
    expires: 2026-09-30
  - control: TI-6
    scope: {file: src/jobs.py}
    reason: Job rewrite in progress
    approver: cto@example.com
    expires: "2026-05-01"
"""


def test_valid_file_loads_with_lines(tmp_path):
    waivers = load(tmp_path, VALID)

    first, second = waivers.waivers
    assert (first.control, first.scope, first.value) == (
        "DM-3",
        "table",
        "legacy_payments",
    )
    assert first.expires == date(2026, 9, 30)
    assert first.line == 2
    assert second.line == 7
    assert second.expires == date(2026, 5, 1)
    assert first.file.endswith("waivers.yaml")


def test_missing_file_means_no_waivers(tmp_path):
    (tmp_path / "assay.yaml").write_text("")

    assert len(load_waivers(load_config(tmp_path / "assay.yaml"))) == 0


def test_named_file_must_exist(tmp_path):
    (tmp_path / "assay.yaml").write_text("waivers: policy/waivers.yaml\n")

    with pytest.raises(ConfigError) as raised:
        load_waivers(load_config(tmp_path / "assay.yaml"))

    assert raised.value.line == 1
    assert "waivers file not found" in str(raised.value)


def test_named_file_loaded(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "accepted.yaml").write_text(VALID)
    (tmp_path / "assay.yaml").write_text("waivers: policy/accepted.yaml\n")

    waivers = load_waivers(load_config(tmp_path / "assay.yaml"), known_controls=KNOWN)

    assert len(waivers) == 2


ENTRY = """\
waivers:
  - control: DM-3
    scope: {table: t}
    reason: r
    approver: a
    expires: 2026-09-30
"""


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        ("control: DM-3", "control: DM-9", 2, "unknown control"),
        ("control: DM-3", "control: dm3", 2, "unknown control"),
        ("scope: {table: t}", "scope: {schema: t}", 3, "unknown scope kind"),
        ("scope: {table: t}", "scope: {table: t, file: f}", 3, "exactly one"),
        ("scope: {table: t}", "scope: t", 3, "exactly one"),
        ("scope: {table: t}", "scope: {table: ''}", 3, "must be a text"),
        ("reason: r", "reason: ''", 4, "reason must be a non-empty text"),
        ("approver: a", "approver:", 5, "approver must be a non-empty text"),
        ("expires: 2026-09-30", "expires: next year", 6, "expires must be a date"),
        ("expires: 2026-09-30", "expires: 2026-09-30\n    owner: me", 7, "unknown key"),
        ("    approver: a\n", "", 2, "missing required key approver"),
    ],
)
def test_malformed_entry_names_line(tmp_path, old, new, line, message):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, ENTRY.replace(old, new))

    assert raised.value.file.endswith("waivers.yaml")
    assert raised.value.line == line
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- control: DM-3\n", "expected one key, waivers"),
        ("waivers: {control: DM-3}\n", "expected a list"),
        ("waivers:\n  - just text\n", "a waiver must be a mapping"),
        ("waivers: [\n", "invalid YAML"),
    ],
)
def test_malformed_document_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def finding(**fields) -> Finding:
    return Finding(**{"control": "DM-3", "rule": "r", "message": "m", **fields})


def test_table_scope_adds_public_schema(tmp_path):
    waivers = load(tmp_path, VALID)

    waived = waivers.waive(finding(table="public.legacy_payments"))

    assert waived.waived
    assert waived.waiver["line"] == 2
    assert waived.waiver["approver"] == "security@example.com"
    assert not waivers.waive(finding(table="archive.legacy_payments")).waived
    assert not waivers.waive(finding(control="TI-1", table="legacy_payments")).waived


def test_expired_waiver_waives_nothing(tmp_path):
    waivers = load(tmp_path, VALID)

    result = waivers.waive(finding(control="TI-6", file="src/jobs.py"))

    assert not result.waived
    assert result.blocking


def test_file_endpoint_provider_scopes(tmp_path):
    waivers = load(
        tmp_path,
        """\
        waivers:
          - {control: TI-6, scope: {file: ./src/jobs.py}, reason: r, approver: a, expires: 2027-01-01}
          - {control: WH-1, scope: {endpoint: POST /webhooks/zendesk}, reason: r, approver: a, expires: 2027-01-01}
          - {control: WH-1, scope: {provider: intercom}, reason: r, approver: a, expires: 2027-01-01}
          - {control: XX-1, scope: {endpoint: /health}, reason: r, approver: a, expires: 2027-01-01}
        """,
    )

    assert waivers.waive(finding(control="TI-6", file="src/jobs.py")).waived
    assert waivers.waive(
        finding(control="WH-1", details={"endpoint": "post /webhooks/zendesk"})
    ).waived
    assert not waivers.waive(
        finding(control="WH-1", details={"endpoint": "GET /webhooks/zendesk"})
    ).waived
    assert waivers.waive(
        finding(control="WH-1", details={"provider": "intercom"})
    ).waived
    assert waivers.waive(
        finding(control="XX-1", details={"endpoint": "GET /health"})
    ).waived


def test_info_findings_not_waived(tmp_path):
    waivers = load(tmp_path, VALID)

    assert not waivers.waive(finding(table="legacy_payments", level="info")).waived


def result_row(control: str, status: str, findings: list[Finding] = ()) -> dict:
    return {
        "id": control,
        "status": status,
        "reasons": [],
        "findings": [f.to_dict() for f in findings],
    }


def test_review_marks_applied_unused_expired(tmp_path):
    waivers = load(tmp_path, VALID)
    waived = waivers.waive(finding(table="legacy_payments"))
    results = [result_row("DM-3", "waived", [waived]), result_row("TI-6", "passed")]

    results, rows = review_waivers(waivers, results)

    assert [row["status"] for row in rows] == ["applied", "expired"]
    assert rows[0]["findings_waived"] == 1
    assert results[0]["status"] == "waived"
    assert results[1]["status"] == "failed"
    assert results[1]["findings"][0]["rule"] == "waiver-expired"
    assert results[1]["findings"][0]["line"] == 7
    assert "expired on 2026-05-01" in results[1]["reasons"][0]


def test_review_fails_unused_waiver(tmp_path):
    waivers = load(tmp_path, VALID.replace('"2026-05-01"', "2027-01-01"))
    results = [result_row("DM-3", "passed"), result_row("TI-6", "error")]

    results, rows = review_waivers(waivers, results)

    assert [row["status"] for row in rows] == ["unused", "not-evaluated"]
    assert results[0]["status"] == "failed"
    assert results[0]["findings"][0]["rule"] == "waiver-unused"
    assert results[1]["status"] == "error"


def test_review_skips_unselected_controls(tmp_path):
    waivers = load(tmp_path, VALID)

    _, rows = review_waivers(waivers, [])

    assert [row["status"] for row in rows] == ["not-selected", "not-selected"]


# Through the run plugin ----------------------------------------------------------

CATALOG = """\
family: sample
controls:
  - id: XX-1
    title: Sample control
    claim: The sample holds.
    criteria: [CC6.1]
    checks: [sample::test_sample]
"""

FINDING_CHECK = """
import pytest
from assay.findings import Finding

@pytest.mark.control("XX-1")
def test_sample(evidence):
    evidence.examined_count("tables", 2)
    evidence.add(Finding(control="XX-1", rule="r", message="bad table",
                         table="public.legacy"))
    evidence.verdict()
"""

SKIP_CHECK = """
import pytest

@pytest.mark.control("XX-1")
def test_sample(evidence):
    pytest.skip("known gap, waived anyway")
"""


def run_plugin(pytester, check: str, waivers: str | None):
    controls = pytester.mkdir("controls")
    (controls / "criteria.yaml").write_text("criteria:\n  CC6.1: Logical access\n")
    (controls / "sample.yaml").write_text(CATALOG)
    pytester.makefile(".yaml", assay="controls_dir: controls\n")
    if waivers is not None:
        (pytester.path / "waivers.yaml").write_text(textwrap.dedent(waivers))
    pytester.makepyfile(test_sample=check)
    # In process for speed, so the run's canary registry is set back afterwards.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_CANARY_DIR", str(pytester.path / "canaries"))
        result = pytester.runpytest_inprocess(
            "-p",
            "assay.fixtures.core",
            "--assay-config",
            str(pytester.path / "assay.yaml"),
            "--assay-report-dir",
            str(pytester.path / "out"),
            "-p",
            "no:cacheprovider",
        )
    evidence = json.loads((pytester.path / "out" / "evidence.json").read_text())
    return result, evidence


WAIVER = """\
waivers:
  - control: XX-1
    scope: {table: public.legacy}
    reason: Archive table, dropped next quarter
    approver: security@example.com
    expires: EXPIRES
"""


def test_waived_finding_stays_in_evidence(pytester):
    result, evidence = run_plugin(
        pytester, FINDING_CHECK, WAIVER.replace("EXPIRES", "2999-01-01")
    )

    (control,) = evidence["controls"]
    (kept,) = control["findings"]
    assert control["status"] == "waived"
    assert kept["waived"] is True
    assert kept["waiver"]["approver"] == "security@example.com"
    assert kept["message"] == "bad table"
    assert evidence["run"]["waivers"][0]["status"] == "applied"
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*WAIVED*XX-1*", "*public.legacy: bad table ?waived?"])


def test_expired_waiver_fails_control(pytester):
    _, evidence = run_plugin(
        pytester, FINDING_CHECK, WAIVER.replace("EXPIRES", "2020-01-01")
    )

    (control,) = evidence["controls"]
    assert control["status"] == "failed"
    assert [f["waived"] for f in control["findings"]] == [False, False]
    expired = control["findings"][1]
    assert expired["rule"] == "waiver-expired"
    assert (expired["file"], expired["line"]) == ("waivers.yaml", 2)
    assert evidence["run"]["waivers"][0]["status"] == "expired"


def test_unused_waiver_fails_control(pytester):
    check = FINDING_CHECK.replace("public.legacy", "public.current")
    _, evidence = run_plugin(pytester, check, WAIVER.replace("EXPIRES", "2999-01-01"))

    (control,) = evidence["controls"]
    assert control["status"] == "failed"
    unused = control["findings"][-1]
    assert unused["rule"] == "waiver-unused"
    assert (unused["file"], unused["line"]) == ("waivers.yaml", 2)


def test_malformed_waivers_are_usage_error(pytester):
    _, evidence = run_plugin(pytester, FINDING_CHECK, "waivers:\n  - control: XX-1\n")

    (message,) = evidence["usage_errors"]
    assert message.startswith("waivers.yaml:2: ")
    assert "missing required key scope" in message


def test_skip_with_waiver_is_error(pytester):
    _, evidence = run_plugin(
        pytester, SKIP_CHECK, WAIVER.replace("EXPIRES", "2999-01-01")
    )

    (control,) = evidence["controls"]
    assert control["status"] == "error"
    assert "a skip cannot silence a control" in control["reasons"][0]
    assert evidence["run"]["waivers"][0]["status"] == "not-evaluated"


# Exit statuses of `assay run` -----------------------------------------------------

UNJUSTIFIED = 'import os\n\nKEY = os.environ["SUPABASE_SERVICE_ROLE_KEY"]\n'


def cli_project(tmp_path: Path, waivers: str | None) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "jobs.py").write_text(UNJUSTIFIED)
    (tmp_path / "assay.yaml").write_text("service_role:\n  paths: [src]\n")
    if waivers is not None:
        (tmp_path / "waivers.yaml").write_text(waivers)
    return tmp_path


TI6_WAIVER = """\
waivers:
  - control: TI-6
    scope: {file: src/jobs.py}
    reason: The job moves to a user session next sprint
    approver: security@example.com
    expires: EXPIRES
"""


@pytest.mark.parametrize(
    "waivers, exit_status, status",
    [
        (None, 1, "failed"),
        (TI6_WAIVER.replace("EXPIRES", "2999-01-01"), 0, "waived"),
        (TI6_WAIVER.replace("EXPIRES", "2020-01-01"), 1, "failed"),
    ],
    ids=["no waiver", "valid waiver", "expired waiver"],
)
def test_cli_exit_status_with_waivers(
    tmp_path, monkeypatch, capsys, waivers, exit_status, status
):
    folder = cli_project(tmp_path, waivers)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ASSAY_CANARY_DIR", str(tmp_path / "canaries"))

    exit_code = main(["run", "--controls", "TI-6", "--report-dir", "out"])

    evidence = json.loads((folder / "out" / "evidence.json").read_text())
    assert exit_code == exit_status, capsys.readouterr().err
    assert evidence["controls"][0]["status"] == status


def test_cli_malformed_waivers_exit_2(tmp_path, monkeypatch, capsys):
    folder = cli_project(tmp_path, TI6_WAIVER.replace("EXPIRES", "someday"))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ASSAY_CANARY_DIR", str(tmp_path / "canaries"))

    exit_code = main(["run", "--controls", "TI-6", "--report-dir", "out"])

    assert exit_code == 2
    assert "waivers.yaml:6: waivers.0.expires='someday': expires must be a date" in (
        capsys.readouterr().err
    )
