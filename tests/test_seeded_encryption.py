"""Seeded token-encryption violations: each fails exactly the control that owns it.

Every case runs `assay run --controls TE-1,TE-2,TE-3,TE-4` as a subprocess on
acme with one flaw switched on through ``ACME_FLAW``, against a shared local
PostgreSQL, and reads evidence.json. The runs are independent, so they run a
few at a time in one module fixture. acme itself must pass all four controls,
and no output of any run may contain a key or token the app handled.
"""

from __future__ import annotations

import base64
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from assay_testing import (
    ACME,
    REPO,
    TENANCY,
    AssayResult,
    copy_acme_migrations,
    run_assay,
)

from assay.canaries import encodings
from assay.crypto import key_forms

TE_CONTROLS = "TE-1,TE-2,TE-3,TE-4"
RECORDER = Path(__file__).resolve().parent / "acme_recorder.py"
PARALLEL_RUNS = 3


@dataclass(frozen=True)
class Flaw:
    control: str
    rule: str
    cause: str  # text the failing finding's message must contain


FLAWS = {
    "aes128": Flaw("TE-1", "not-aes-256-gcm", "AES-128-GCM"),
    "cbc": Flaw("TE-1", "not-aes-256-gcm", "AES-256-CBC"),
    "ctr": Flaw("TE-1", "tampering-accepted", "not the stored one"),
    "fixed-nonce": Flaw("TE-1", "nonce-reuse", "share 1 nonce"),
    "plaintext": Flaw("TE-1", "plaintext-at-rest", "in plaintext"),
    "base64": Flaw("TE-1", "not-aes-256-gcm", "base64"),
    "refresh-plaintext": Flaw("TE-1", "plaintext-at-rest", "refresh token"),
    "key-at-startup": Flaw("TE-3", "key-in-log", "stdout.log"),
    "key-in-error": Flaw("TE-3", "key-in-response", "tampered"),
    "token-in-listing": Flaw("TE-4", "secret-in-response", "the body"),
    "token-in-header": Flaw("TE-4", "secret-in-response", "the headers"),
    "webhook-plaintext": Flaw("TE-2", "plaintext-at-rest", "webhook secret"),
    "short-key": Flaw("TE-3", "short-key-accepted", "16-byte key"),
}


def acme_sections(
    folder: Path, database_url: str, **app_overrides: Any
) -> dict[str, Any]:
    """The root assay.yaml's app, encryption and webhooks sections, for acme.

    The migrations are copied into `folder`, because evidence records their
    paths relative to the folder holding assay.yaml.
    """
    copy_acme_migrations(folder)
    root = yaml.safe_load((REPO / "assay.yaml").read_text())
    app = {**root["app"], "cwd": str(ACME), **app_overrides}
    sections = {
        "database": {"provider": "url", "url": database_url, "flavor": "supabase"},
        "migrations": {"path": "supabase/migrations"},
        "tenancy": TENANCY,
        "app": app,
        "encryption": dict(root["encryption"]),
    }
    if root.get("webhooks"):
        sections["webhooks"] = root["webhooks"]
    return sections


def write(folder: Path, sections: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "assay.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


@dataclass
class Run:
    result: AssayResult
    folder: Path
    record: Path

    def handled(self) -> list[dict[str, str]]:
        """The key and every value acme sealed during the run."""
        if not self.record.is_file():
            return []
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def run_variant(base: Path, database_url: str, flaw: str | None) -> Run:
    folder = base / (flaw or "acme")
    record = folder / "handled.jsonl"
    env = {"ACME_DATABASE_URL": "{database_url}", "ACME_JWT_SECRET": "{jwt_secret}"}
    env["ASSAY_TEST_RECORD"] = str(record)
    if flaw:
        env["ACME_FLAW"] = flaw
    sections = acme_sections(
        folder,
        database_url,
        command=f"{{python}} {RECORDER} --port {{port}}",
        env=env,
    )
    config = write(folder, sections)
    result = run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        TE_CONTROLS,
        cwd=folder,
        report_dir=folder / "report",
    )
    return Run(result, folder, record)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_postgres_url) -> dict[str | None, Run]:
    base = tmp_path_factory.mktemp("seeded-encryption")
    variants: list[str | None] = [None, *FLAWS]
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        done = pool.map(
            lambda flaw: run_variant(base, shared_postgres_url, flaw), variants
        )
        return dict(zip(variants, done))


def test_acme_passes_all_four(runs):
    result = runs[None].result
    assert result.statuses() == {
        "TE-1": "passed",
        "TE-2": "passed",
        "TE-3": "passed",
        "TE-4": "passed",
    }, result.stdout + result.stderr
    assert result.status == 0


@pytest.mark.parametrize("flaw", list(FLAWS))
def test_flaw_fails_its_control(runs, flaw):
    expected = FLAWS[flaw]
    result = runs[flaw].result
    assert result.failed() == {expected.control}, result.statuses()
    assert result.status == 1
    others = {cid: s for cid, s in result.statuses().items() if cid != expected.control}
    assert set(others.values()) == {"passed"}, others


@pytest.mark.parametrize("flaw", list(FLAWS))
def test_flaw_cause_is_shown(runs, flaw):
    expected = FLAWS[flaw]
    findings = runs[flaw].result.findings(expected.control)
    rules = {f["rule"] for f in findings}
    assert expected.rule in rules, findings
    messages = " ".join(f["message"] for f in findings if f["rule"] == expected.rule)
    assert expected.cause in messages, messages


def output_files(run: Run) -> list[Path]:
    return [p for p in (run.folder / "report").rglob("*") if p.is_file()]


def leaked_forms(run: Run) -> dict[str, bytes]:
    forms: dict[str, bytes] = {}
    for item in run.handled():
        value = item["value"]
        if not value:
            continue
        if item["kind"] == "key":
            raw = base64.b64decode(value)
            forms.update({f"key {k}": v for k, v in key_forms(raw, value).items()})
        else:
            forms.update({f"sealed {k}": v for k, v in encodings(value).items()})
    return forms


@pytest.mark.parametrize(
    "variant", [None, "key-at-startup", "token-in-listing", "key-in-error"]
)
def test_outputs_hold_no_canary(runs, variant):
    run = runs[variant]
    forms = leaked_forms(run)
    assert any(name.startswith("key ") for name in forms), run.result.stderr
    assert any(name.startswith("sealed ") for name in forms), run.result.stderr
    files = output_files(run)
    assert {p.name for p in files} >= {"evidence.json", "junit.xml"}
    outputs = {p.name: p.read_bytes() for p in files}
    outputs["stdout"] = run.result.stdout.encode()
    outputs["stderr"] = run.result.stderr.encode()
    leaks = [
        (name, form)
        for name, data in outputs.items()
        for form, value in forms.items()
        if value in data
    ]
    assert leaks == []
    assert not run.result.evidence["run"].get("canary_leaks")


# Bad input ------------------------------------------------------------------


def bad_run(
    tmp_path: Path, database_url: str, *, controls: str = TE_CONTROLS, **app
) -> AssayResult:
    sections = acme_sections(tmp_path, database_url, **app)
    config = write(tmp_path, sections)
    return run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        controls,
        cwd=tmp_path,
        report_dir=tmp_path / "report",
    )


def test_app_never_ready_exits_2(tmp_path, shared_postgres_url):
    command = (
        "{python} -c \"import time; print('booting slowly', flush=True); "
        'time.sleep(60)"'
    )
    result = bad_run(
        tmp_path, shared_postgres_url, controls="TE-1", command=command, ready_timeout=2
    )
    assert result.status == 2, result.stderr
    assert "timed out after 2 s waiting for GET" in result.stderr
    assert "booting slowly" in result.stderr


def test_app_exits_early_exits_2(tmp_path, shared_postgres_url):
    command = (
        "{python} -c \"import sys; print('missing setting FOO', file=sys.stderr); "
        'sys.exit(3)"'
    )
    result = bad_run(tmp_path, shared_postgres_url, controls="TE-1", command=command)
    assert result.status == 2, result.stderr
    assert "exited with status 3" in result.stderr
    assert "missing setting FOO" in result.stderr


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_configured_port_taken_exits_2(tmp_path, shared_postgres_url, taken_port):
    result = bad_run(tmp_path, shared_postgres_url, controls="TE-1", port=taken_port)
    assert result.status == 2, result.stderr
    assert f"port {taken_port} on 127.0.0.1 is already in use" in result.stderr


def test_app_finds_port_taken_exits_2(tmp_path, shared_postgres_url, taken_port):
    command = f"{{python}} -m acme --port {taken_port}"
    result = bad_run(tmp_path, shared_postgres_url, controls="TE-1", command=command)
    assert result.status == 2, result.stderr
    assert "exited with status 3 before GET /health answered" in result.stderr
    assert "address already in use" in result.stderr


def test_missing_column_exits_2(tmp_path, shared_postgres_url):
    sections = acme_sections(tmp_path, shared_postgres_url)
    sections["encryption"]["token_columns"] = [
        "public.integrations.access_token",
        "public.integrations.acess_token",
    ]
    config = write(tmp_path, sections)
    result = run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        "TE-1",
        cwd=tmp_path,
        report_dir=tmp_path / "report",
    )
    assert result.status == 2, result.stderr
    line = next(
        number
        for number, text in enumerate(config.read_text().splitlines(), start=1)
        if "acess_token" in text
    )
    assert f"assay.yaml:{line}: encryption.token_columns.1=" in result.stderr
    assert "has no column 'acess_token'" in result.stderr


def test_no_canary_stored_is_error(tmp_path, shared_postgres_url):
    sections = acme_sections(tmp_path, shared_postgres_url)
    sections["encryption"]["oauth_start"] = "GET /connect/{provider}"
    config = write(tmp_path, sections)
    result = run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        "TE-1",
        cwd=tmp_path,
        report_dir=tmp_path / "report",
    )
    assert result.status == 1
    assert result.statuses() == {"TE-1": "error"}
    rules = {f["rule"] for f in result.findings("TE-1", level="undecided")}
    assert "no-canary-stored" in rules
    message = result.findings("TE-1", level="undecided")[0]["message"]
    assert "GET /connect/{provider} returned 404" in message


def test_app_url_not_applicable(tmp_path, shared_postgres_url):
    sections = acme_sections(tmp_path, shared_postgres_url)
    del sections["app"]["command"]
    sections["app"]["url"] = "http://127.0.0.1:9"
    config = write(tmp_path, sections)
    result = run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        TE_CONTROLS,
        cwd=tmp_path,
        report_dir=tmp_path / "report",
    )
    assert set(result.statuses().values()) == {"not_applicable"}, result.stderr
    reasons = " ".join(result.control("TE-1")["reasons"])
    assert "Assay did not start" in reasons
