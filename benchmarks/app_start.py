"""Benchmark the application harness and TE-1..TE-4 on the reference target.

Two figures:

- app start to ready: the seconds from spawning acme (``python -m acme``)
  to its first 2xx on ``/health``, against a migrated and seeded clone on a
  throwaway PostgreSQL cluster, repeated in one process;
- TE-1..TE-4: the wall time of ``assay run --controls TE-1,TE-2,TE-3,TE-4``
  as a fresh subprocess (cluster, migration, seeding, app start, checks and
  evidence included), and the time pytest records for each check.

Run from the repository root: ``python benchmarks/app_start.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

from record import REPO, RESULTS, machine_lines, wait_for_quiet, write_section

sys.path.insert(0, str(REPO))

HEADING = "Application start and TE-1..TE-4 on the reference target"
TE_CONTROLS = "TE-1,TE-2,TE-3,TE-4"
CHECKS = {
    "TE-1": "test_tokens_sealed_at_rest",
    "TE-2": "test_webhook_secrets_sealed",
    "TE-3": "test_key_never_leaks",
    "TE-4": "test_tokens_never_returned",
}


def measure_starts(count: int, quiet_timeout: float) -> tuple[list[float], str]:
    """Start acme `count` times on one seeded clone; return seconds to ready."""
    from assay.fixtures.database import database_settings, load_migrations

    from assay.config import load_config
    from assay.migrations import apply
    from assay.postgres import TemplateDatabase, provision
    from assay.providers import start_fakes
    from assay.seeding import seed_database
    from assay.target import new_canary_key, start_app

    config = load_config(REPO / "assay.yaml")
    files = load_migrations(config)
    seconds = []
    with provision(database_settings(config)) as server:
        template = TemplateDatabase(
            server, lambda conn: apply(conn, files), flavor=config.database.flavor
        )
        try:
            dsn = server.dsn(template.clone("app"))
            seed_database(dsn, config)
            key = new_canary_key()
            with start_fakes() as fakes:
                urls = {name: fake.base_url for name, fake in fakes.items()}
                load = wait_for_quiet(quiet_timeout)
                for _ in range(count):
                    process = start_app(config, dsn=dsn, key=key, provider_urls=urls)
                    try:
                        started = time.monotonic()
                        process.wait_ready()
                        seconds.append(time.monotonic() - started)
                    finally:
                        process.stop()
                        process.remove_logs()
        finally:
            template.drop_all()
    return seconds, str(load)


def measure_run(quiet_timeout: float) -> dict:
    """Run the four controls as `assay run` in a subprocess; return its timings."""
    load = wait_for_quiet(quiet_timeout)
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as folder:
        report = Path(folder) / "report"
        command = [
            sys.executable,
            "-m",
            "assay.cli",
            "run",
            "--controls",
            TE_CONTROLS,
            "--report-dir",
            str(report),
        ]
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - started
        evidence = json.loads((report / "evidence.json").read_text())
        # junit.xml times each check with its setup and teardown.
        cases = ElementTree.parse(report / "junit.xml").iter("testcase")
        times = {case.get("name"): float(case.get("time", 0)) for case in cases}
    checks = {control: times.get(name, 0.0) for control, name in CHECKS.items()}
    statuses = {c["id"]: c["status"] for c in evidence["controls"]}
    return {
        "wall": wall,
        "status": done.returncode,
        "checks": checks,
        "statuses": statuses,
        "load": str(load),
    }


def render(starts: list[float], start_load: str, runs: list[dict], quick: bool) -> str:
    lines = machine_lines()
    lines.append(
        f"- input: acme from examples/acme against a seeded clone; {len(starts)} "
        f"starts; {len(runs)} `assay run --controls {TE_CONTROLS}` subprocesses"
    )
    lines += [
        "",
        "| figure | median s | min s | max s | machine load before |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    lines.append(
        f"| app start to ready (spawn to first 2xx on /health) | "
        f"{statistics.median(starts):.2f} | {min(starts):.2f} | {max(starts):.2f} | "
        f"{start_load} |"
    )
    walls = [run["wall"] for run in runs]
    lines.append(
        f"| `assay run --controls {TE_CONTROLS}` wall time | "
        f"{statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} | "
        f"{runs[0]['load']} |"
    )
    for control in ("TE-1", "TE-2", "TE-3", "TE-4"):
        times = [run["checks"].get(control, 0.0) for run in runs]
        lines.append(
            f"| {control} check, setup and teardown included | "
            f"{statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | |"
        )
    statuses = sorted({f"{k} {v}" for run in runs for k, v in run["statuses"].items()})
    lines += ["", f"Statuses seen: {', '.join(statuses)}."]
    lines.append(
        "Check times come from junit.xml and include setup and teardown: TE-1's "
        "setup provisions the cluster, migrates, seeds, starts acme and runs the "
        "OAuth flows, so it carries the fixed cost of the run."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one start and one run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="file to write")
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for an idle CPU before each measurement (default 120)",
    )
    args = parser.parse_args()
    count, run_count = (1, 1) if args.quick else (5, 3)

    starts, start_load = measure_starts(count, args.quiet_timeout)
    runs = [measure_run(args.quiet_timeout) for _ in range(run_count)]
    heading = HEADING + (" (quick mode)" if args.quick else "")
    write_section(args.results, heading, render(starts, start_load, runs, args.quick))
    print(f"wrote '## {heading}' to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
