"""Machine facts, quiet-machine waits and section writing for ``results.md``.

Each benchmark script owns one ``## `` section of ``results.md`` per
benchmark. A rerun replaces that section in place and leaves every other
section, including ones other engineers appended, as it was.
"""

from __future__ import annotations

import cProfile
import datetime
import os
import platform
import pstats
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().with_name("results.md")
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Each section below was written by the script named in its command line, run\n"
    "from the repository root. A rerun replaces only its own section.\n"
)

# Share of all CPUs that other processes may use while a measurement waits to
# start. A test suite running beside the benchmark uses far more.
QUIET_BUSY_PERCENT = 15.0

T = TypeVar("T")


@dataclass(frozen=True)
class Load:
    """The machine's load: load averages and the share of CPU busy over a sample."""

    averages: tuple[float, float, float]
    busy_percent: float

    def __str__(self) -> str:
        one, five, fifteen = self.averages
        return f"load {one:.2f} {five:.2f} {fifteen:.2f}, CPU {self.busy_percent:.0f}% busy"

    @property
    def quiet(self) -> bool:
        return self.busy_percent <= QUIET_BUSY_PERCENT


def measure_load(interval: float = 1.0) -> Load:
    """Return the load averages and the share of all CPUs busy over ``interval`` s."""
    busy = psutil.cpu_percent(interval=interval)
    return Load(os.getloadavg(), busy)


def wait_for_quiet(timeout: float) -> Load:
    """Wait up to ``timeout`` seconds for other processes to leave the CPUs idle.

    Returns the last load seen, quiet or not, because the caller records it next
    to the figure: a figure measured on a busy machine shows that load.
    """
    deadline = time.monotonic() + timeout
    # Without a wait (quick modes), a short sample keeps the script fast.
    load = measure_load(1.0 if timeout > 0 else 0.1)
    while not load.quiet and time.monotonic() < deadline:
        load = measure_load(2.0)
    return load


def cpu_model() -> str:
    """Return the first ``model name`` of /proc/cpuinfo, else the platform's name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_count() -> int:
    """Return the CPUs this process may run on, as ``nproc`` prints them."""
    return len(os.sched_getaffinity(0))


def command_line() -> str:
    """Return the command that started this script, relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(REPO).as_posix()
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def machine_lines() -> list[str]:
    """Return the Markdown lines that describe the command, machine and date."""
    now = datetime.datetime.now(datetime.UTC)
    return [
        f"- command (from the repository root): `{command_line()}`",
        f"- machine: nproc {cpu_count()}, CPU {cpu_model()}, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"Python {platform.python_version()}",
        f"- date: {now.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- code: {code_version()}",
    ]


def code_version() -> str:
    """Return the git commit, and how many files of the engine differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "assay", "fixtures", "checks"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not changed:
        return f"commit {commit}"
    return (
        f"commit {commit} with {len(changed)} uncommitted file(s) in assay/,"
        " fixtures/ or checks/"
    )


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the section titled ``heading`` in ``path``, or append it.

    A section runs from its ``## `` heading line to the next ``## `` heading or
    the end of the file. A missing file is created with a short header.
    """
    section = f"## {heading}\n\n{body.strip()}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_HEADER
    lines = text.splitlines(keepends=True)

    start = next(
        (i for i, line in enumerate(lines) if line.rstrip("\n") == f"## {heading}"),
        None,
    )
    if start is None:
        joined = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        after = "".join(lines[end:])
        joined = "".join(lines[:start]) + section + ("\n" + after if after else "")

    # Written to a neighbour and renamed, so a reader never sees half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(joined, encoding="utf-8")
    os.replace(temporary, path)


def profile_top(function: Callable[[], T], limit: int = 12) -> tuple[T, list[str]]:
    """Call ``function`` under cProfile; return its result and two Markdown tables.

    The first table ranks every function by its own time (``tottime``). The
    second ranks Assay's own functions by cumulative time, which shows the
    phase that spends the time.
    """
    profiler = cProfile.Profile()
    result = profiler.runcall(function)
    rows = list(pstats.Stats(profiler).stats.items())  # type: ignore[attr-defined]

    by_own = sorted(rows, key=lambda row: row[1][2], reverse=True)[:limit]
    in_assay = [row for row in rows if f"{os.sep}assay{os.sep}" in row[0][0]]
    by_cumulative = sorted(in_assay, key=lambda row: row[1][3], reverse=True)[:limit]

    lines = ["By own time:", ""] + _profile_table(by_own)
    lines += ["", "Assay's functions by cumulative time:", ""]
    lines += _profile_table(by_cumulative)
    return result, lines


def _profile_table(rows: list) -> list[str]:
    lines = ["| function | calls | own s | cumulative s |", "| --- | --- | --- | --- |"]
    for (file, line, name), (_, calls, own, cumulative, _) in rows:
        where = name if file == "~" else f"{_short_path(file)}:{line} {name}"
        lines.append(f"| `{where}` | {calls} | {own:.3f} | {cumulative:.3f} |")
    return lines


def _short_path(file: str) -> str:
    path = Path(file)
    for marker in ("site-packages", "assay", "benchmarks"):
        if marker in path.parts:
            index = len(path.parts) - 1 - path.parts[::-1].index(marker)
            start = index + 1 if marker == "site-packages" else index
            return "/".join(path.parts[start:])
    return path.name


def quietest(
    measure: Callable[[], T], busy_of: Callable[[T], float], attempts: int
) -> T:
    """Call ``measure`` until a result was measured on a quiet machine.

    ``busy_of`` returns the CPU percentage other processes used for a result.
    At most ``attempts`` calls are made, and the result with the lowest share
    is returned, so a figure taken while others were busy is taken again.
    """
    best: T | None = None
    for _ in range(max(attempts, 1)):
        result = measure()
        if best is None or busy_of(result) < busy_of(best):
            best = result
        if busy_of(result) <= QUIET_BUSY_PERCENT:
            break
    assert best is not None
    return best


@dataclass
class OthersCpu:
    """CPU used by processes outside this script's process tree during a block."""

    percent: float = 0.0

    def __str__(self) -> str:
        return f"others {self.percent:.0f}% CPU during"


@contextmanager
def others_cpu() -> Iterator[OthersCpu]:
    """Measure the CPU share that other processes used while the block ran.

    The share is the machine's busy CPU time less the time of this process and
    its descendants (live ones, and exited ones through ``children_user`` and
    ``children_system``), over the wall time times the number of CPUs.
    """
    result = OthersCpu()
    started = time.monotonic()
    system_before, own_before = _system_busy(), _own_tree_cpu()
    yield result
    wall = time.monotonic() - started
    others = (_system_busy() - system_before) - (_own_tree_cpu() - own_before)
    result.percent = max(others, 0.0) / (wall * (psutil.cpu_count() or 1)) * 100


def _system_busy() -> float:
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(times, name, 0.0) for name in busy)


def _own_tree_cpu() -> float:
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total
