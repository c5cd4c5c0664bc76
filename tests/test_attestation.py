"""Attested controls: evidence files, their dates, and the statuses they give."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from assay.attestation import attested_entry, evaluate
from assay.config import load_config
from assay.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2026, 6, 1)


def project(
    tmp_path: Path, entry: str, evidence: bytes | None = b"region: us-east-1\n"
):
    """Write an assay.yaml with one attested entry, and the evidence file."""
    if evidence is not None:
        (tmp_path / "evidence").mkdir(exist_ok=True)
        (tmp_path / "evidence" / "region.md").write_bytes(evidence)
    (tmp_path / "assay.yaml").write_text(
        "attested:\n"
        "  - control: OP-1\n"
        "    file: evidence/region.md\n"
        "    owner: platform@example.com\n"
        "    max_age_days: 30\n" + textwrap.indent(textwrap.dedent(entry), "    ")
    )
    config = load_config(tmp_path / "assay.yaml")
    index, settings = attested_entry(config, "OP-1")
    return config, index, settings


def test_fresh_evidence_attested_with_digest(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-05-20\n")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "attested"
    assert result.sha256 == hashlib.sha256(b"region: us-east-1\n").hexdigest()
    assert result.age_days == 12
    assert result.collected == date(2026, 5, 20)
    assert result.date_source.endswith("assay.yaml:6")
    assert result.to_dict()["expires"] == "2026-06-19"
    assert result.to_dict()["owner"] == "platform@example.com"


def test_missing_evidence_fails(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-05-20\n", evidence=None)

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "failed"
    assert result.reason == "evidence file evidence/region.md is not found"
    assert result.sha256 is None


def test_empty_evidence_fails(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-05-20\n", evidence=b" \n")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "failed"
    assert "is empty" in result.reason


def test_old_evidence_expired(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-04-01\n")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "expired"
    assert result.age_days == 61
    assert "61 days ago; its maximum age is 30 days" in result.reason
    assert "platform@example.com must collect it again" in result.reason


def test_last_valid_day_attested(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-05-02\n")

    assert evaluate(config, index, entry, today=TODAY).status == "attested"
    assert evaluate(config, index, entry, today=TODAY + timedelta(days=1)).status == (
        "expired"
    )


def test_future_date_is_error(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-07-01\n")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "error"
    assert "in the future" in result.reason


def test_invalid_collected_names_line(tmp_path):
    config, index, entry = project(tmp_path, "collected: last tuesday\n")

    with pytest.raises(ConfigError) as raised:
        evaluate(config, index, entry, today=TODAY)

    assert raised.value.line == 6
    assert raised.value.key == "attested.0.collected"


def test_zero_max_age_rejected(tmp_path):
    (tmp_path / "assay.yaml").write_text(
        "attested:\n  - {control: OP-1, file: x, owner: me, max_age_days: 0}\n"
    )
    config = load_config(tmp_path / "assay.yaml")

    with pytest.raises(ConfigError, match="max_age_days=0"):
        evaluate(config, 0, config.attested[0], today=TODAY)


def test_duplicate_entry_rejected(tmp_path):
    (tmp_path / "assay.yaml").write_text(
        "attested:\n"
        "  - {control: OP-1, file: a, owner: me, max_age_days: 5}\n"
        "  - {control: OP-1, file: b, owner: me, max_age_days: 5}\n"
    )

    with pytest.raises(ConfigError) as raised:
        attested_entry(load_config(tmp_path / "assay.yaml"), "OP-1")

    assert raised.value.line == 3


def test_sidecar_date_used(tmp_path):
    config, index, entry = project(tmp_path, "")
    (tmp_path / "evidence" / "region.md.attestation.yaml").write_text(
        "collected: 2026-05-30\ncollected_by: ops\n"
    )

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "attested"
    assert result.collected == date(2026, 5, 30)
    assert result.date_source == "evidence/region.md.attestation.yaml"


def test_config_date_beats_sidecar(tmp_path):
    config, index, entry = project(tmp_path, "collected: 2026-01-01\n")
    (tmp_path / "evidence" / "region.md.attestation.yaml").write_text(
        "collected: 2026-05-30\n"
    )

    assert evaluate(config, index, entry, today=TODAY).status == "expired"


def test_malformed_sidecar_names_line(tmp_path):
    config, index, entry = project(tmp_path, "")
    sidecar = tmp_path / "evidence" / "region.md.attestation.yaml"
    sidecar.write_text("collected_by: ops\ncollected: soon\n")

    with pytest.raises(ConfigError) as raised:
        evaluate(config, index, entry, today=TODAY)

    assert raised.value.line == 2
    assert raised.value.key == "collected"


def test_sidecar_unknown_key_rejected(tmp_path):
    config, index, entry = project(tmp_path, "")
    sidecar = tmp_path / "evidence" / "region.md.attestation.yaml"
    sidecar.write_text("collected: 2026-05-30\nexpires: 2027-01-01\n")

    with pytest.raises(ConfigError, match="expires='2027-01-01'|unknown key"):
        evaluate(config, index, entry, today=TODAY)


def git(folder: Path, *args: str, when: str | None = None) -> None:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    if when:
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)


def test_git_commit_date_fallback(tmp_path):
    config, index, entry = project(tmp_path, "")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "evidence/region.md")
    git(
        tmp_path, "commit", "-q", "-m", "Add evidence", when="2026-03-01T12:00:00+00:00"
    )
    # A checkout sets the modification time to now, which must not count.
    os.utime(tmp_path / "evidence" / "region.md")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "expired"
    assert result.collected == date(2026, 3, 1)
    assert result.date_source == "last git commit of the file"


def test_no_date_is_error_not_mtime(tmp_path):
    config, index, entry = project(tmp_path, "")

    result = evaluate(config, index, entry, today=TODAY)

    assert result.status == "error"
    assert "collection date of evidence/region.md is unknown" in result.reason


def test_acme_evidence_attested_when_collected():
    config = load_config(REPO / "assay.yaml")

    for control in ("OP-1", "OP-2", "OP-3"):
        index, entry = attested_entry(config, control)
        result = evaluate(config, index, entry, today=date(2026, 12, 4))

        assert result.status == "attested", result.reason
        assert result.date_source.endswith(".attestation.yaml")
        assert result.file.startswith("examples/acme/evidence/")


# Statuses through the run plugin -----------------------------------------------

CATALOG = """\
family: ops
controls:
  - id: OP-1
    title: Region
    claim: The region is attested.
    criteria: [CC6.1]
    type: attested
    checks: [ops::test_region]
"""

CHECK = """
import pytest
from assay.recorder import {name}

@pytest.mark.control("OP-1")
def test_region(evidence):
    evidence.observe("attestation", {{"sha256": "abc"}})
    raise {name}("evidence/region.md collected 3 days ago")
"""


@pytest.mark.parametrize(
    "name, status, junit",
    [("Attested", "attested", "passed"), ("Expired", "expired", "failed")],
)
def test_plugin_maps_attestation_status(pytester, monkeypatch, name, status, junit):
    controls = pytester.mkdir("controls")
    (controls / "criteria.yaml").write_text("criteria:\n  CC6.1: Logical access\n")
    (controls / "ops.yaml").write_text(CATALOG)
    pytester.makefile(".yaml", assay="controls_dir: controls\n")
    pytester.makepyfile(test_ops=CHECK.format(name=name))
    monkeypatch.setenv("ASSAY_CANARY_DIR", str(pytester.path / "canaries"))

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
    (control,) = evidence["controls"]

    assert control["status"] == status
    assert control["reasons"] == ["evidence/region.md collected 3 days ago"]
    assert control["observations"]["test_region"]["attestation"] == {"sha256": "abc"}
    result.assert_outcomes(**{junit: 1})
