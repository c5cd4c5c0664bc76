"""report.html: a page per criterion and control, signature notice, Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from assay.reports.html import render_html
from fakes.evidence import control, evidence_document, rls_finding, write_folder

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_html_has_page_per_criterion_and_control():
    html = render_html(evidence_document())

    assert re.findall(r'id="control-(TI-\d)"', html) == ["TI-1", "TI-2", "TI-3", "TI-4"]
    assert re.findall(r'id="criterion-([A-Z0-9.]+)"', html) == ["CC6.1", "CC6.3", "CC7.1"]
    assert html.count('class="page control"') == 4
    assert ".page { break-before: page;" in html


def test_html_shows_claim_finding_and_fix():
    html = render_html(evidence_document())

    assert "The claim that TI-2 proves holds." in html
    assert "20240102000000_tenancy.sql:14" in html
    assert "policy tickets_select on public.tickets uses USING (true)" in html
    assert "Compare organization_id with the member&#39;s tenant" in html


def test_html_lists_waiver_with_approver():
    html = render_html(evidence_document())
    waivers = html[html.index('id="waivers"') :]

    assert "security-lead@example.com" in waivers
    assert "legacy table, rewritten next quarter" in waivers
    assert "(waived)" in html


def test_html_states_self_made_signature():
    html = render_html(evidence_document(signature={"self_made": True}))

    assert "The signature on this evidence is self-made" in html
    assert 'class="notice self-made"' in html


def test_html_names_configured_key():
    signature = {
        "self_made": False,
        "public_key_sha256": "ab12" * 16,
        "key_source": "environment variable ASSAY_SIGNING_KEY",
    }
    html = render_html(evidence_document(signature=signature))

    assert "The signature on this evidence is self-made" not in html
    assert 'class="notice self-made"' not in html
    assert "sha256:ab12ab12ab12ab12 from environment variable ASSAY_SIGNING_KEY" in html


def test_html_escapes_finding_text():
    finding = rls_finding(message="<script>alert(1)</script> in policy")
    html = render_html(evidence_document([control("TI-2", "failed", [finding])]))

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; in policy" in html


def test_html_shows_request_of_live_finding():
    finding = rls_finding(
        file=None, line=None, source="live", details={"request": "GET /api/tickets/42"}
    )
    html = render_html(evidence_document([control("TI-4", "failed", [finding])]))

    assert "request GET /api/tickets/42" in html


def _chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.fail(
            "chromium is not installed, so the HTML report cannot be rendered; "
            "run `apt-get install chromium` (.ci/run installs it)"
        )
    return path


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_html_renders_in_chromium(tmp_path):
    folder = write_folder(tmp_path / "run", evidence_document())
    url = (folder / "report.html").as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)

    shot = _run_chromium(
        tmp_path, "--window-size=1280,2400", f"--screenshot={screenshot}", url
    )
    dom = _run_chromium(tmp_path, "--dump-dom", url)

    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank 1280x2400 page compresses to a few kilobytes; text and tables
    # make it far larger.
    assert screenshot.stat().st_size > 50_000
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="control-TI-4"' in dom.stdout
    assert "The signature on this evidence is self-made" in dom.stdout


def test_html_prints_page_per_section(tmp_path):
    folder = write_folder(tmp_path / "run", evidence_document())
    pdf = ARTIFACTS / "report.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    pdf.unlink(missing_ok=True)

    printed = _run_chromium(
        tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
        (folder / "report.html").as_uri(),
    )

    assert printed.returncode == 0, printed.stderr[-2000:]
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    # Cover, run, 3 criteria, 4 controls and the waivers each start a page.
    assert pages >= 1 + 1 + 3 + 4 + 1
