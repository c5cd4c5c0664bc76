"""Benchmark the webhook controls on the reference target: probes per second, wall time.

Each run is a fresh ``assay run --controls WH-1,WH-2,WH-3,DM-1`` process on
the repository's assay.yaml: it provisions a PostgreSQL cluster, starts acme
and attacks its four receivers. From evidence.json the script reads, per
control, the HTTP requests the probes sent (``requests_sent``) and the
check's own duration, so probes per second counts the probe phase only:
each request, its side-effect SQL and the table searches. Wall time is the
whole command, start-up and teardown included.

Run from the repository root: ``python benchmarks/webhook_rate.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from record import REPO, RESULTS, Load, machine_lines, wait_for_quiet, write_section

HEADING = "Webhook probes per second and WH wall time on the reference target"
CONTROLS = ("WH-1", "WH-2", "WH-3", "DM-1")


@dataclass
class Run:
    """One ``assay run`` of the webhook controls and what its evidence recorded."""

    seconds: float
    status: int
    load: Load
    requests: dict[str, int]
    check_seconds: dict[str, float]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def probe_seconds(self) -> float:
        return sum(self.check_seconds.values())


def run_once(controls: str, quiet_timeout: float) -> Run:
    """Run the webhook controls once in a fresh process and read its evidence."""
    load = wait_for_quiet(quiet_timeout)
    with tempfile.TemporaryDirectory(prefix="assay-webhook-bench-") as folder:
        report = Path(folder) / "report"
        command = [
            sys.executable,
            "-m",
            "assay.cli",
            "run",
            "--controls",
            controls,
            "--report-dir",
            str(report),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        evidence = json.loads((report / "evidence.json").read_text())

    requests, check_seconds = {}, {}
    for control in evidence["controls"]:
        for observed in control["observations"].values():
            requests[control["id"]] = observed.get("requests_sent", 0)
        check_seconds[control["id"]] = sum(
            outcome["duration"]
            for outcome in control["checks"]
            if outcome.get("phase") == "call"
        )
    if any(c["status"] != "passed" for c in evidence["controls"]):
        statuses = {c["id"]: c["status"] for c in evidence["controls"]}
        print(f"warning: not every control passed: {statuses}", file=sys.stderr)
    return Run(seconds, done.returncode, load, requests, check_seconds)


def render(runs: list[Run], controls: list[str], quick: bool) -> str:
    lines = machine_lines()
    lines.append(
        f"- runs: {len(runs)} fresh `assay run --controls {','.join(controls)}` "
        "processes on the repository's assay.yaml (acme with four receivers: "
        "Zendesk, Intercom, GitHub, Razorpay); median reported"
    )
    lines.append(
        "- probes per second: HTTP requests sent by the probes over the checks' "
        "own duration (each request includes counting its side effects by SQL)"
    )
    lines += [
        "",
        "| control | requests | check seconds (median) | requests per second |",
    ]
    lines.append("| --- | ---: | ---: | ---: |")
    for control in controls:
        seconds = statistics.median(r.check_seconds.get(control, 0.0) for r in runs)
        count = runs[0].requests.get(control, 0)
        rate = count / seconds if seconds else 0.0
        lines.append(f"| {control} | {count} | {seconds:.2f} | {rate:.0f} |")

    total = statistics.median(r.total_requests / r.probe_seconds for r in runs)
    wall = statistics.median(r.seconds for r in runs)
    probe = statistics.median(r.probe_seconds for r in runs)
    lines += [
        "",
        f"All probes: {runs[0].total_requests} requests at a median {total:.0f} "
        f"requests per second, {probe:.2f} s of checks.",
        f"Wall time of the whole command (median): {wall:.2f} s; "
        f"per run: {', '.join(f'{r.seconds:.2f}' for r in runs)} s.",
        "Exit statuses: " + ", ".join(str(r.status) for r in runs) + ".",
        "Load before each run: " + "; ".join(str(r.load) for r in runs) + ".",
    ]
    if quick:
        lines.append("Quick mode: WH-1 only, one run.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of WH-1 only")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="Markdown file to write into"
    )
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for idle CPUs before each run (default 120)",
    )
    args = parser.parse_args(argv)

    controls = ["WH-1"] if args.quick else list(CONTROLS)
    count = 1 if args.quick else max(args.runs, 1)
    runs = [run_once(",".join(controls), args.quiet_timeout) for _ in range(count)]
    heading = HEADING + (" (quick mode)" if args.quick else "")
    write_section(args.results, heading, render(runs, controls, args.quick))
    print(f"wrote the section {heading!r} to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
