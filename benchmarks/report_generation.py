"""Benchmark report generation: time and size of each evidence file.

Builds an evidence document shaped like the one ``assay run`` writes, with
``--findings`` findings (10,000 by default) spread over 16 controls, every
one located at a migration file and line. It then times each step the run
plugin takes after the checks end: evidence.json, report.html, OSCAL, SARIF,
signing the manifest, and ``assay verify``'s check of the folder. Each step
is repeated ``--repeat`` times and the median is recorded with the file size.

Run from the repository root: ``python benchmarks/report_generation.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from record import RESULTS, machine_lines, wait_for_quiet, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assay.findings import Finding  # noqa: E402
from assay.manifest import load_signer, sign_folder, verify_folder  # noqa: E402
from assay.reports.html import HtmlReport  # noqa: E402
from assay.reports.oscal import OscalReport  # noqa: E402
from assay.reports.sarif import SarifReport  # noqa: E402

HEADING = "Report generation: time and size for many findings"
CONTROLS = 16
LEVELS = ("error", "error", "warning", "info")


def build_evidence(findings: int) -> dict:
    """Return an evidence document with `findings` findings over CONTROLS controls."""
    controls = []
    for number in range(CONTROLS):
        control_id = f"TI-{number + 1}"
        share = range(number, findings, CONTROLS)
        items = [
            Finding(
                control=control_id,
                rule="policy-not-tenant-scoped",
                message=f"policy p{index} on public.t{index % 300} uses USING (true)",
                level=LEVELS[index % len(LEVELS)],
                file=f"supabase/migrations/2024{index % 120:04d}_schema.sql",
                line=index % 900 + 1,
                table=f"public.t{index % 300}",
                policy=f"p{index}",
                fix="Compare organization_id with the member's tenant",
                details={"command": "SELECT", "predicate": "true"},
            ).to_dict()
            for index in share
        ]
        controls.append(
            {
                "id": control_id,
                "title": f"Control {control_id}",
                "claim": f"The claim of {control_id} holds.",
                "family": "tenant-isolation",
                "severity": "high",
                "type": "automated",
                "status": "failed" if items else "passed",
                "reasons": [f"{len(items)} finding(s)"],
                "criteria": ["CC6.1", "CC6.3"],
                "checks": [
                    {
                        "status": "failed",
                        "reason": "",
                        "check": f"checks/test_x.py::test_{number}",
                        "phase": "call",
                        "duration": 0.5,
                    }
                ],
                "findings": items,
                "observations": {},
            }
        )
    return {
        "schema": "assay-evidence/1",
        "run": {
            "started": "2026-01-05T10:00:00+00:00",
            "finished": "2026-01-05T10:01:00+00:00",
            "harness": {"name": "assay", "version": "0.1.0"},
            "git": {"commit": "0" * 40, "dirty": False},
            "config": {"file": "assay.yaml", "sha256": "a" * 64},
            "signature": {"self_made": True, "public_key_sha256": "b" * 64},
        },
        "criteria": {"CC6.1": "Logical access", "CC6.3": "Role-based access"},
        "summary": {"failed": CONTROLS},
        "usage_errors": [],
        "controls": controls,
    }


def median_seconds(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(findings: int, repeat: int) -> list[tuple[str, float, int | None]]:
    """Return (step, median seconds, bytes written) for each step."""
    evidence = build_evidence(findings)
    signer = load_signer(None, environ={})
    rows = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as temporary:
        folder = Path(temporary)
        evidence_file = folder / "evidence.json"

        def write_json() -> None:
            evidence_file.write_text(json.dumps(evidence, indent=2) + "\n")

        steps: list[tuple[str, Callable[[], object], str | None]] = [
            ("evidence.json", write_json, "evidence.json"),
            ("report.html", lambda: HtmlReport().write(folder, evidence), "report.html"),
            (
                "OSCAL assessment-results",
                lambda: OscalReport().write(folder, evidence),
                "oscal-assessment-results.json",
            ),
            ("SARIF", lambda: SarifReport().write(folder, evidence), "results.sarif"),
            ("sign manifest.json", lambda: sign_folder(folder, signer), "manifest.json"),
            ("verify folder", lambda: verify_folder(folder), None),
        ]
        for name, step, output in steps:
            seconds = median_seconds(step, repeat)
            size = (folder / output).stat().st_size if output else None
            rows.append((name, seconds, size))
    return rows


def render(findings: int, repeat: int, rows, load) -> str:
    lines = machine_lines() + [
        f"- input: {findings} findings over {CONTROLS} controls, every finding with "
        f"file, line, table, policy and fix; median of {repeat} runs per step",
        f"- machine load before measuring: {load}",
        "",
        "| step | median seconds | file size |",
        "| --- | ---: | ---: |",
    ]
    for name, seconds, size in rows:
        if size is None:
            shown = "-"
        elif size < 2**20:
            shown = f"{size / 2**10:.1f} KiB"
        else:
            shown = f"{size / 2**20:.2f} MiB"
        lines.append(f"| {name} | {seconds:.3f} | {shown} |")
    total = sum(seconds for name, seconds, _ in rows if name != "verify folder")
    lines += ["", f"All files written and signed in {total:.2f} s."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-record",
        action="store_true",
        help=f"print only; do not write {RESULTS.name}",
    )
    args = parser.parse_args()

    load = wait_for_quiet(timeout=60)
    rows = measure(args.findings, args.repeat)
    body = render(args.findings, args.repeat, rows, load)
    print(body)
    if not args.no_record:
        write_section(RESULTS, HEADING, body)


if __name__ == "__main__":
    main()
