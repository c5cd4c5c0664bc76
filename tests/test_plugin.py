"""The run plugin end to end with pytester: statuses, skips and the catalog join."""

from __future__ import annotations

import json
import textwrap

import pytest

CATALOG = """\
family: sample
controls:
  - id: XX-1
    title: Sample control
    claim: The sample holds.
    criteria: [CC6.1]
    severity: high
    checks: [sample::test_sample]
"""


@pytest.fixture
def project(pytester):
    controls = pytester.mkdir("controls")
    (controls / "criteria.yaml").write_text("criteria:\n  CC6.1: Logical access\n")
    (controls / "sample.yaml").write_text(CATALOG)
    pytester.makefile(".yaml", assay="controls_dir: controls\n")
    return pytester


def run_check(project, body: str, *extra: str):
    project.makepyfile(test_sample=textwrap.dedent(body))
    report_dir = project.path / "out"
    result = project.runpytest_subprocess(
        "-p",
        "assay.fixtures.core",
        "--assay-config",
        str(project.path / "assay.yaml"),
        "--assay-report-dir",
        str(report_dir),
        "-p",
        "no:cacheprovider",
        *extra,
    )
    evidence = json.loads((report_dir / "evidence.json").read_text())
    return result, {c["id"]: c for c in evidence["controls"]}, evidence


PASSING = """
import pytest

@pytest.mark.control("XX-1")
def test_sample(evidence):
    evidence.examined_count("things", 3)
    evidence.verdict()
"""


def test_passing_check_passes_control(project):
    result, controls, _ = run_check(project, PASSING)

    result.assert_outcomes(passed=1)
    assert controls["XX-1"]["status"] == "passed"
    assert controls["XX-1"]["criteria"] == ["CC6.1"]


def test_finding_fails_control_with_location(project):
    body = """
    import pytest
    from assay.findings import Finding

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        evidence.examined_count("things", 1)
        evidence.add(Finding(control="XX-1", rule="r", message="broken here",
                             file="m.sql", line=7))
        evidence.verdict()
    """
    result, controls, _ = run_check(project, body)

    result.assert_outcomes(failed=1)
    assert controls["XX-1"]["status"] == "failed"
    assert controls["XX-1"]["findings"][0]["line"] == 7
    result.stdout.fnmatch_lines(["*FAIL*XX-1*", "*m.sql:7: broken here*"])


def test_inline_skip_is_error_not_pass(project):
    body = """
    import pytest

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        pytest.skip("flaky today")
    """
    result, controls, _ = run_check(project, body)

    assert controls["XX-1"]["status"] == "error"
    assert "a skip cannot silence a control" in controls["XX-1"]["reasons"][0]
    result.assert_outcomes(failed=1)


def test_nothing_examined_is_error(project):
    body = """
    import pytest

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        evidence.verdict()
    """
    _, controls, _ = run_check(project, body)

    assert controls["XX-1"]["status"] == "error"
    assert "found nothing to examine" in controls["XX-1"]["reasons"][0]


def test_not_applicable_carries_reason(project):
    body = """
    import pytest
    from assay.recorder import NotApplicable

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        raise NotApplicable("no webhooks configured")
    """
    _, controls, _ = run_check(project, body)

    assert controls["XX-1"]["status"] == "not_applicable"
    assert controls["XX-1"]["reasons"] == ["no webhooks configured"]


def test_unexpected_exception_is_error(project):
    body = """
    import pytest

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        raise RuntimeError("server went away")
    """
    _, controls, _ = run_check(project, body)

    assert controls["XX-1"]["status"] == "error"
    assert "RuntimeError: server went away" in controls["XX-1"]["reasons"][0]


def test_check_without_control_is_catalog_error(project):
    body = """
    import pytest

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        evidence.examined_count("things", 1)
        evidence.verdict()

    def test_orphan():
        pass
    """
    _, _, evidence = run_check(project, body)

    assert evidence["run"]["catalog_errors"] == [
        "check sample::test_orphan has no @pytest.mark.control"
    ]


def test_control_without_check_is_error(project):
    (project.path / "controls" / "sample.yaml").write_text(
        CATALOG
        + "  - id: XX-2\n    title: Unproved\n    claim: Nothing proves it.\n"
        "    criteria: [CC6.1]\n    checks: [sample::test_missing]\n"
    )
    _, controls, evidence = run_check(project, PASSING)

    assert controls["XX-2"]["status"] == "error"
    assert (
        "control XX-2 names check sample::test_missing, which was not found"
        in evidence["run"]["catalog_errors"]
    )


def test_xdist_workers_report_to_controller(project):
    result, controls, _ = run_check(project, PASSING, "-n", "2")

    result.assert_outcomes(passed=1)
    assert controls["XX-1"]["status"] == "passed"


def test_canary_in_evidence_is_redacted_and_reported(project):
    body = """
    import pytest
    from assay.canaries import new_canary
    from assay.findings import Finding

    @pytest.mark.control("XX-1")
    def test_sample(evidence):
        canary = new_canary("token", "sample", prefix="ghp_")
        evidence.examined_count("things", 1)
        evidence.add(Finding(control="XX-1", rule="r", level="warning",
                             message=f"saw {canary.value} in a response"))
        evidence.verdict()
    """
    result, controls, evidence = run_check(project, body)

    leaks = evidence["run"]["canary_leaks"]
    assert {leak["file"] for leak in leaks} >= {"evidence.json"}
    assert all(leak["canary"] == "<token canary sample>" for leak in leaks)
    text = (project.path / "out" / "evidence.json").read_text()
    assert "ghp_" not in text
    assert "<token canary sample>" in text
