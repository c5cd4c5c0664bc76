"""Benchmark ``assay run`` on the reference target: wall time and peak memory.

Each run is cold in the sense that matters to CI: a fresh ``assay`` process
that provisions a fresh PostgreSQL cluster, migrates it and tears it down. The
operating system's file cache stays warm. While the run lasts, a thread polls
every 20 ms with psutil and keeps three peaks of resident set size (RSS). The
first is the ``assay`` Python process. The second sums the PostgreSQL
processes it started, and the third sums its other descendants (the acme
application, the indexer). The kernel's own maximum, from ``wait4``, is
recorded as a cross-check: it is the largest single process of the tree.

NOTE: summed RSS counts PostgreSQL's shared memory once per process that
touched it, so the PostgreSQL figure overstates what the cluster takes.

Run from the repository root: ``python benchmarks/run_time.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
from record import (
    REPO,
    RESULTS,
    Load,
    OthersCpu,
    machine_lines,
    others_cpu,
    quietest,
    wait_for_quiet,
    write_section,
)

HEADING = "assay run: wall time and peak RSS on the reference target"
TI_CONTROLS = "TI-1,TI-2,TI-3,TI-4,TI-5"
POLL_SECONDS = 0.02
TARGET_SECONDS = 30.0
TARGET_RSS_MB = 300.0
MB = 2**20
# pytest's own summary ends in its duration, e.g. "5 passed in 3.96s".
PYTEST_SUMMARY = re.compile(r" in [\d.]+s$")


@dataclass
class Peaks:
    """Peak RSS in bytes seen by the poller, per group of processes."""

    assay: int = 0
    postgres: int = 0
    postgres_processes: int = 0
    other: int = 0
    other_names: str = ""
    polls: int = 0


@dataclass
class RunResult:
    label: str
    command: list[str]
    seconds: float
    status: int
    summary: str
    peaks: Peaks
    kernel_max_rss: int
    load: Load
    others: OthersCpu

    @property
    def busy(self) -> float:
        """The larger CPU share of other processes: just before, or during."""
        return max(self.load.busy_percent, self.others.percent)


def is_postgres(process: psutil.Process) -> bool:
    try:
        return process.name() in ("postgres", "postmaster")
    except psutil.Error:
        return False


def poll(pid: int, peaks: Peaks, stop: threading.Event) -> None:
    """Record the peak RSS of ``pid`` and its descendants until ``stop`` is set."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            peaks.assay = max(peaks.assay, root.memory_info().rss)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        postgres = other = count = 0
        names: Counter[str] = Counter()
        for child in children:
            try:
                rss = child.memory_info().rss
                name = child.name()
            except psutil.Error:
                continue
            if is_postgres(child):
                postgres += rss
                count += 1
            else:
                other += rss
                names[name] += 1
        if postgres > peaks.postgres:
            peaks.postgres, peaks.postgres_processes = postgres, count
        if other > peaks.other:
            peaks.other = other
            peaks.other_names = ", ".join(f"{n} x{c}" for n, c in sorted(names.items()))
        peaks.polls += 1
        stop.wait(POLL_SECONDS)


def assay_command() -> list[str]:
    script = Path(sys.executable).with_name("assay")
    return [str(script)] if script.exists() else ["assay"]


def run_once(
    label: str, controls: str | None, config: Path, quiet_timeout: float
) -> RunResult:
    """Start ``assay run`` in a fresh process and measure it until it exits."""
    load = wait_for_quiet(quiet_timeout)
    with (
        tempfile.TemporaryDirectory(prefix="assay-bench-run-") as report_dir,
        others_cpu() as others,
    ):
        command = [*assay_command(), "run", "--config", os.path.relpath(config, REPO)]
        if controls:
            command += ["--controls", controls]
        command += ["--report-dir", report_dir]

        peaks = Peaks()
        stop = threading.Event()
        with tempfile.TemporaryFile() as output:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
            )
            poller = threading.Thread(target=poll, args=(process.pid, peaks, stop))
            poller.start()
            # wait4 returns the exit status and the kernel's usage of this child.
            _, wait_status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(wait_status)
            stop.set()
            poller.join()
            output.seek(0)
            text = output.read().decode(errors="replace")

    summary = summary_line(text)
    if process.returncode not in (0, 1):
        raise SystemExit(
            f"{' '.join(command)} exited with status {process.returncode}:\n{text[-3000:]}"
        )
    return RunResult(
        label,
        command,
        seconds,
        process.returncode,
        summary,
        peaks,
        usage.ru_maxrss * 1024,  # Linux reports kilobytes.
        load,
        others,
    )


def summary_line(output: str) -> str:
    """Return Assay's control summary, such as "4 passed, 1 failed"."""
    for line in reversed(output.splitlines()):
        text = line.strip()
        if not text[:1].isdigit() or PYTEST_SUMMARY.search(text):
            continue
        if "passed" in text or "failed" in text:
            return text
    return "no summary line found"


def measure(
    label: str,
    controls: str | None,
    config: Path,
    *,
    repeat: int,
    attempts: int,
    quiet_timeout: float,
) -> list[RunResult]:
    """Run ``repeat`` measured runs, each retaken while others keep the CPUs busy."""
    results = []
    for _ in range(repeat):
        result = quietest(
            lambda: run_once(label, controls, config, quiet_timeout),
            lambda run: run.busy,
            attempts,
        )
        results.append(result)
        print(
            f"{label}: {result.seconds:.2f} s, assay {result.peaks.assay / MB:.0f} MB,"
            f" postgres {result.peaks.postgres / MB:.0f} MB ({result.load};"
            f" {result.others})",
            file=sys.stderr,
        )
    return results


# Report -------------------------------------------------------------------------------


def table_rows(results: list[RunResult]) -> list[str]:
    rows = []
    for result in results:
        peaks = result.peaks
        rows.append(
            f"| {result.label} | {result.seconds:.2f} | {peaks.assay / MB:.0f}"
            f" | {peaks.postgres / MB:.0f} ({peaks.postgres_processes} processes)"
            f" | {peaks.other / MB:.0f} ({peaks.other_names or 'none'})"
            f" | {result.kernel_max_rss / MB:.0f}"
            f" | {result.status}: {result.summary} | {result.load}; {result.others} |"
        )
    return rows


def verdicts(groups: dict[str, list[RunResult]]) -> list[str]:
    lines = []
    for label, results in groups.items():
        seconds = statistics.median(r.seconds for r in results)
        rss = max(r.peaks.assay for r in results) / MB
        time_word = "meets" if seconds < TARGET_SECONDS else "MISSES"
        rss_word = "meets" if rss < TARGET_RSS_MB else "MISSES"
        lines.append(
            f"- {label}: median {seconds:.2f} s over {len(results)} run(s), which"
            f" **{time_word}** the {TARGET_SECONDS:.0f} s target; peak assay RSS"
            f" {rss:.0f} MB, which **{rss_word}** the {TARGET_RSS_MB:.0f} MB target."
        )
    return lines


def shown_command(command: list[str]) -> str:
    """Return ``command`` as typed at the repository root, report folder elided."""
    return shlex.join(["assay", *command[1:-2], "--report-dir", "TMP"])


def report(header: list[str], groups: dict[str, list[RunResult]]) -> str:
    commands = [
        f"- {label}: `{shown_command(results[0].command)}`"
        for label, results in groups.items()
    ]
    lines = (
        header
        + commands
        + [
            "- each run is a fresh process that provisions its database as the config"
            " says (provider auto: a throwaway local cluster on this machine)",
            f"- RSS polled every {POLL_SECONDS * 1000:.0f} ms with psutil; PostgreSQL"
            " RSS is summed over its processes, so shared buffers count once per process",
            "",
            "| run | wall s | assay RSS MB | PostgreSQL RSS MB (sum) | other children MB"
            " | kernel max RSS MB | exit status: summary | load before; others during |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
    )
    for results in groups.values():
        lines += table_rows(results)
    lines += ["", "Targets: under 30 s cold on 2 cores, under 300 MB."] + verdicts(
        groups
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "assay.yaml")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command")
    parser.add_argument(
        "--quick", action="store_true", help="one run of TI-1 only, no quiet wait"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="file to write")
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for other processes to leave the CPUs idle",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="times a run is repeated while other processes keep the CPUs busy",
    )
    args = parser.parse_args(argv)
    # Taken before measuring, so the date and commit are those of the figures.
    header = machine_lines()
    config = args.config.resolve()

    heading = HEADING
    if args.quick:
        plan = {"TI-1 only": "TI-1"}
        args.repeat, args.attempts, args.quiet_timeout = 1, 1, 0.0
        heading += " (quick mode)"
    else:
        plan = {f"--controls {TI_CONTROLS}": TI_CONTROLS, "full run": None}

    groups = {
        label: measure(
            label,
            controls,
            config,
            repeat=args.repeat,
            attempts=args.attempts,
            quiet_timeout=args.quiet_timeout,
        )
        for label, controls in plan.items()
    }
    body = report(header, groups)
    write_section(args.results, heading, body)
    print(f"## {heading}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
